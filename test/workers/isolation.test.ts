/**
 * Tenant isolation: every endpoint, REST and WebSocket, tried with another
 * tenant's keys and with each wrong scope.
 */
import { SELF } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import type { Scope } from "../../core/keys";
import { parseServerMessage, type ServerMessage } from "../../core/live";
import { BASE, createTenant, sendJson, type TenantKeys } from "./helpers";

let a: TenantKeys;
let b: TenantKeys;
let ruleA: string;
const STREAM = "a.private";

const call = (method: string, path: string, key: string, body?: unknown) =>
  SELF.fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined || method === "GET" ? undefined : JSON.stringify(body),
  });

beforeAll(async () => {
  a = await createTenant("a");
  b = await createTenant("b");
  await sendJson(a.ingest, [{ name: STREAM, value: 42, user: "alice" }]);
  const res = await call("POST", "/v1/alerts/rules", a.admin, {
    stream: STREAM,
    aggregate: "count",
    window: "1h",
    threshold: 1000,
  });
  ruleA = ((await res.json()) as { rule: { id: string } }).rule.id;
});

/** Every REST endpoint: method, path, the scope it needs, a body. `{rule}`/`{key}` name tenant A's resources. */
const ENDPOINTS: Array<[string, string, Scope, unknown?]> = [
  ["POST", "/v1/events", "ingest", [{ name: STREAM }]],
  ["GET", "/v1/streams", "read"],
  ["GET", `/v1/streams/${STREAM}`, "read"],
  ["GET", `/v1/streams/${STREAM}/history?step=1m`, "read"],
  ["GET", "/v1/tenant", "read"],
  ["GET", "/v1/keys", "admin"],
  ["POST", "/v1/keys", "admin", { scope: "read" }],
  ["DELETE", "/v1/keys/{key}", "admin"],
  ["GET", "/v1/alerts", "read"],
  ["GET", "/v1/alerts/rules", "read"],
  ["POST", "/v1/alerts/rules", "admin", { stream: STREAM, threshold: 1 }],
  ["GET", "/v1/alerts/rules/{rule}", "read"],
  ["PATCH", "/v1/alerts/rules/{rule}", "admin", { threshold: 2 }],
  ["POST", "/v1/alerts/rules/{rule}/disable", "admin"],
  ["POST", "/v1/alerts/rules/{rule}/enable", "admin"],
  ["DELETE", "/v1/alerts/rules/{rule}", "admin"],
  ["GET", "/v1/alerts/events", "read"],
  ["GET", "/v1/alerts/secret", "admin"],
  ["POST", "/v1/query", "read", { stream: STREAM, measures: ["count", "max"], range: { last: "1h" } }],
  [
    "POST",
    "/v1/query",
    "read",
    { stream: STREAM, measures: ["count"], group_by: ["k"], range: { window: "5m" }, order_by: { measure: "count" } },
  ],
  ["GET", `/v1/streams/${STREAM}/config`, "read"],
  ["PUT", `/v1/streams/${STREAM}/config`, "admin", { dimension_sets: [["k", "j"]] }],
];

const allows = (have: Scope, need: Scope) => have === need || have === "admin";
const resolve = (path: string) => path.replace("{rule}", ruleA).replace("{key}", a.keyIds.read);

describe("every endpoint with each wrong scope", () => {
  for (const [method, path, need] of ENDPOINTS) {
    for (const have of ["ingest", "read"] as const) {
      if (allows(have, need)) continue;
      it(`${method} ${path} with a ${have} key → 403`, async () => {
        const res = await call(method, resolve(path), b[have], ENDPOINTS.find((e) => e[1] === path)?.[3]);
        expect(res.status).toBe(403);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe("insufficient_scope");
      });
    }
  }
});

describe("every endpoint with another tenant's keys", () => {
  it("never returns or changes tenant A's data", async () => {
    const secretA = ((await (await call("GET", "/v1/alerts/secret", a.admin)).json()) as { secret: string }).secret;
    for (const [method, path, , body] of ENDPOINTS) {
      const res = await call(method, resolve(path), b.admin, body);
      const text = await res.text();
      const where = `${method} ${path} → ${res.status} ${text.slice(0, 200)}`;
      expect(res.status, where).toBeLessThan(500);
      // Nothing of A's appears: not its tenant id, key ids, rule id, secret, or its user and value.
      for (const secret of [a.tenantId, a.keyIds.read, a.keyIds.admin, ruleA, secretA, a.read, a.admin]) {
        expect(text.includes(secret), `${where} leaked ${secret.slice(0, 12)}`).toBe(false);
      }
      if (path.includes("{rule}")) expect(res.status, where).toBe(404);
      if (path.includes("{key}")) expect(res.status, where).toBe(404);
    }
    // B's view of the stream name is its own: it never saw A's value 42.
    const own = (await (await call("GET", `/v1/streams/${STREAM}`, b.read)).json()) as {
      windows?: Record<string, { max: number | null }>;
    };
    expect(own.windows?.["1h"]?.max ?? null).not.toBe(42);
    const asked = (await (
      await call("POST", "/v1/query", b.read, { stream: STREAM, measures: ["count", "max"], range: { last: "1h" } })
    ).json()) as { rows: unknown[][] };
    expect(asked.rows.flat()).not.toContain(42);
    // A is untouched: its key works, its rule is still there and enabled, its figures unchanged.
    expect((await call("GET", "/v1/streams", a.read)).status).toBe(200);
    const rule = (await (await call("GET", `/v1/alerts/rules/${ruleA}`, a.read)).json()) as {
      rule: { enabled: boolean; threshold: number };
    };
    expect(rule.rule).toMatchObject({ enabled: true, threshold: 1000 });
    const s = (await (await call("GET", `/v1/streams/${STREAM}?window=1h`, a.read)).json()) as {
      windows: Record<string, { count: number; max: number }>;
    };
    expect(s.windows["1h"]).toMatchObject({ count: 1, max: 42 });
  });

  it("refuses tenant keys on the operator API", async () => {
    for (const key of [b.admin, b.read, b.ingest]) {
      for (const [method, path] of [
        ["GET", "/v1/admin/tenants"],
        ["POST", `/v1/admin/tenants/${a.tenantId}/keys`],
        ["DELETE", `/v1/admin/tenants/${a.tenantId}/keys/${a.keyIds.read}`],
        ["PUT", `/v1/admin/tenants/${a.tenantId}/limits`],
      ] as const) {
        const res = await call(method, path, key, { scope: "admin" });
        expect(res.status, `${method} ${path}`).toBe(401);
      }
    }
  });
});

describe("WebSockets with another tenant's keys and wrong scopes", () => {
  const open = async (path: string, key: string): Promise<{ status: number; first?: ServerMessage[] }> => {
    const res = await SELF.fetch(`${BASE}${path}`, {
      headers: { upgrade: "websocket", "sec-websocket-protocol": `edgepulse.v1, bearer.${key}` },
    });
    if (res.status !== 101) return { status: res.status };
    const ws = res.webSocket as WebSocket;
    const got: ServerMessage[] = [];
    const done = new Promise<void>((resolve) => {
      ws.addEventListener("message", (e) => {
        const m = parseServerMessage(String(e.data));
        if (m) got.push(m);
        if (
          got.some((x) => x.type === "snapshot" || x.type === "directory") &&
          (path !== "/v1/live" || got.some((x) => x.type === "alerts"))
        )
          resolve();
      });
    });
    ws.accept();
    await done;
    ws.close();
    return { status: 101, first: got };
  };

  it("refuse ingest keys on both sockets", async () => {
    expect((await open(`/v1/streams/${STREAM}/live`, b.ingest)).status).toBe(403);
    expect((await open("/v1/live", b.ingest)).status).toBe(403);
  });

  it("show B only B's own view of a stream name, never A's figures", async () => {
    // B sent one value-less event to its own stream of the same name above; A's stream holds the value 42.
    const stream = await open(`/v1/streams/${STREAM}/live`, b.read);
    const snap = stream.first?.find((m) => m.type === "snapshot");
    if (snap?.type !== "snapshot") throw new Error("no snapshot");
    expect(snap.windows["1h"]).toMatchObject({ count: 1, max: null, distinct_users: 0 });
    const overview = await open("/v1/live", b.read);
    const dir = overview.first?.find((m) => m.type === "directory");
    if (dir?.type !== "directory") throw new Error("no directory");
    expect(dir.streams.every((s) => s.mean !== 42 && s.distinct_users === 0)).toBe(true);
    const alerts = overview.first?.find((m) => m.type === "alerts");
    expect(alerts?.type === "alerts" && alerts.firing).toEqual([]);
  });
});
