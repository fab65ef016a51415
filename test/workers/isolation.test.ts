/**
 * Tenant isolation: every endpoint, REST and WebSocket, tried with another
 * tenant's keys and with each wrong scope.
 */
import { env, runDurableObjectAlarm, SELF } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
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

describe("pull sources with another tenant's keys", () => {
  it("never show, pause, resume or delete tenant A's source; wrong scopes are refused", async () => {
    const created = await call("POST", "/v1/sources", a.admin, {
      kind: "r2",
      name: "a's drops",
      prefix: "a/",
      interval_ms: 3_600_000,
      mapping: { name: STREAM },
    });
    expect(created.status).toBe(201);
    const src = (await created.json()) as { id: string };
    const listed = await call("GET", "/v1/sources", b.admin);
    expect(listed.status).toBe(200);
    expect(await listed.json()).toEqual({ sources: [] });
    for (const [method, path] of [
      ["GET", `/v1/sources/${src.id}`],
      ["POST", `/v1/sources/${src.id}/pause`],
      ["POST", `/v1/sources/${src.id}/resume`],
      ["DELETE", `/v1/sources/${src.id}`],
    ] as const) {
      const res = await call(method, path, b.admin);
      expect(res.status, `${method} ${path}`).toBe(404);
      const text = await res.text();
      expect(JSON.parse(text).error.code).toBe("source_not_found");
      expect(text.includes(a.tenantId)).toBe(false);
      for (const key of [a.read, a.ingest, b.read]) {
        const refused = await call(method, path, key);
        expect(refused.status, `${method} ${path}`).toBe(403);
        expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("insufficient_scope");
      }
    }
    // A's source is untouched: there, and running.
    const own = await call("GET", `/v1/sources/${src.id}`, a.admin);
    expect(own.status).toBe(200);
    expect(await own.json()).toMatchObject({ id: src.id, state: "running" });
    expect(((await (await call("GET", "/v1/sources", a.admin)).json()) as { sources: unknown[] }).sources).toHaveLength(
      1,
    );
  });
});

describe("sinks with another tenant's keys", () => {
  it("never show, pause, resume or delete tenant A's sink; wrong scopes are refused", async () => {
    const created = await call("POST", "/v1/sinks", a.admin, {
      kind: "kafka",
      name: "a's sink",
      url: "http://127.0.0.1:9",
      topic: "a-events",
    });
    expect(created.status).toBe(201);
    const sink = (await created.json()) as { id: string };
    expect(await (await call("GET", "/v1/sinks", b.admin)).json()).toEqual({ sinks: [] });
    for (const [method, path] of [
      ["GET", `/v1/sinks/${sink.id}`],
      ["POST", `/v1/sinks/${sink.id}/pause`],
      ["POST", `/v1/sinks/${sink.id}/resume`],
      ["DELETE", `/v1/sinks/${sink.id}`],
    ] as const) {
      const res = await call(method, path, b.admin);
      expect(res.status, `${method} ${path}`).toBe(404);
      const text = await res.text();
      expect(JSON.parse(text).error.code).toBe("sink_not_found");
      expect(text.includes(a.tenantId)).toBe(false);
      for (const key of [a.read, a.ingest, b.read]) {
        const refused = await call(method, path, key);
        expect(refused.status, `${method} ${path}`).toBe(403);
        expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("insufficient_scope");
      }
    }
    const own = await call("GET", `/v1/sinks/${sink.id}`, a.admin);
    expect(await own.json()).toMatchObject({ id: sink.id, state: "running" });
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

describe("a client's own x-edgepulse-* headers on a socket upgrade", () => {
  it("never reach the object: B's read key with A's tenant and a query in headers gets B's overview", async () => {
    // Regression: forwarded upgrades kept the client's headers, and the hub took `x-edgepulse-query` and
    // `x-edgepulse-tenant` as the Worker's word, running the query against the tenant the client named.
    const res = await SELF.fetch(`${BASE}/v1/live`, {
      headers: {
        upgrade: "websocket",
        "sec-websocket-protocol": `edgepulse.v1, bearer.${b.read}`,
        "x-edgepulse-query": JSON.stringify({ stream: STREAM, measures: ["count", "max"], range: { window: "1h" } }),
        "x-edgepulse-tenant": a.tenantId,
      },
    });
    expect(res.status).toBe(101);
    const ws = res.webSocket as WebSocket;
    const got: ServerMessage[] = [];
    const first = new Promise<void>((resolve) => {
      ws.addEventListener("message", (e) => {
        const m = parseServerMessage(String(e.data));
        if (m) got.push(m);
        if (m?.type === "alerts" || m?.type === "result") resolve();
      });
    });
    ws.accept();
    await first;
    ws.close();
    // No query result at all (A's query never ran), and B's own overview: B's stream of that name (if its
    // hub has it yet) holds one value-less event, A's holds the value 42. (Not a substring check on the
    // JSON: a timestamp may contain "42".)
    expect(got.map((m) => m.type)).toEqual(["directory", "alerts"]);
    const dir = got[0] as Extract<ServerMessage, { type: "directory" }>;
    expect(dir.streams.every((s) => s.mean === null && s.p95 === null)).toBe(true);
  });
});

/**
 * Stream-prefix-limited credentials: a key limited to `checkout.` is refused (or shown nothing) outside
 * its prefix on every route and socket that names or lists streams, and cannot mint a broader key.
 */
describe("keys limited to stream prefixes", () => {
  let t: TenantKeys;
  const IN = "checkout.done";
  const OUT = "cart.added";
  const limited = { read: "", ingest: "", admin: "" };
  let ruleIn: string;
  let ruleOut: string;

  const sent = async (key: string, events: unknown) => {
    const res = await call("POST", "/v1/events", key, events);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const code = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;
  const firingOf = async (key: string) =>
    ((await (await call("GET", "/v1/alerts", key)).json()) as { firing: Array<{ stream: string }> }).firing;

  beforeAll(async () => {
    t = await createTenant("prefixes");
    for (const scope of ["read", "ingest", "admin"] as const) {
      const res = await call("POST", "/v1/keys", t.admin, {
        scope,
        name: `checkout ${scope}`,
        stream_prefixes: ["checkout."],
      });
      expect(res.status).toBe(201);
      const body = (await res.json()) as { key: string; stream_prefixes: string[] | null };
      expect(body.stream_prefixes).toEqual(["checkout."]);
      limited[scope] = body.key;
    }
    expect(
      (
        await sent(t.ingest, [
          { name: IN, value: 1 },
          { name: OUT, value: 7 },
        ])
      ).status,
    ).toBe(200);
    const rule = async (stream: string) => {
      const res = await call("POST", "/v1/alerts/rules", t.admin, {
        stream,
        aggregate: "count",
        window: "1h",
        comparator: ">=",
        threshold: 1,
      });
      expect(res.status).toBe(201);
      return ((await res.json()) as { rule: { id: string } }).rule.id;
    };
    ruleIn = await rule(IN);
    ruleOut = await rule(OUT);
    // Both rules fire (each stream holds an event); the hub learns it from each actor's record.
    await sent(t.ingest, [{ name: IN }, { name: OUT }]);
    await vi.waitFor(
      async () => {
        for (const s of [IN, OUT]) await runDurableObjectAlarm(env.METRIC_ACTOR.getByName(`${t.tenantId}/${s}`));
        expect((await firingOf(t.read)).map((f) => f.stream).sort()).toEqual([OUT, IN].sort());
      },
      { timeout: 20_000, interval: 200 },
    );
  });

  it("ingest: events outside the prefix are rejected one by one, the rest accepted", async () => {
    const before = (await (await call("GET", `/v1/streams/${OUT}?window=1h`, t.read)).json()) as {
      counters: { accepted: number; rejected: Record<string, number> };
    };
    const mixed = await sent(limited.ingest, [{ name: IN, value: 2 }, { name: OUT, value: 3 }, { name: "checkout.x" }]);
    expect(mixed.status).toBe(200);
    expect(mixed.body).toMatchObject({ accepted: 2, rejected: [{ index: 1, code: "stream_not_allowed" }] });
    const all = await sent(limited.ingest, [{ name: OUT }, { name: "other", value: "bad" }]);
    expect(all.status).toBe(422);
    expect(all.body).toMatchObject({
      error: {
        code: "all_events_invalid",
        details: {
          rejected: [
            { index: 0, code: "stream_not_allowed" },
            { index: 1, code: "invalid_value" },
          ],
        },
      },
    });
    // Nothing reached the stream outside: not its events, not even a rejection count.
    const after = (await (await call("GET", `/v1/streams/${OUT}?window=1h`, t.read)).json()) as typeof before;
    expect(after.counters).toEqual(before.counters);
    // Queued ingest filters the same way before anything is queued.
    const queued = await call("POST", "/v1/events?mode=queued", limited.ingest, [{ name: OUT }, { name: IN }]);
    expect(queued.status).toBe(202);
    expect(await queued.json()).toMatchObject({ queued: 1, rejected: [{ index: 0, code: "stream_not_allowed" }] });
  });

  /** Every REST route that names a stream: [method, path, credential, body]; `{s}` is the stream. */
  const NAMED: Array<[string, string, keyof typeof limited, ((s: string) => unknown)?]> = [
    ["GET", "/v1/streams/{s}", "read"],
    ["GET", "/v1/streams/{s}?window=1m", "read"],
    ["GET", "/v1/streams/{s}/history?step=1m", "read"],
    ["GET", "/v1/streams/{s}/config", "read"],
    ["PUT", "/v1/streams/{s}/config", "admin", () => ({ dimension_sets: [["k", "j"]] })],
    ["POST", "/v1/query", "read", (s) => ({ stream: s, measures: ["count"], range: { last: "1h" } })],
    [
      "POST",
      "/v1/query",
      "read",
      (s) => ({
        streams: { a: IN, b: s },
        measures: [{ name: "r", expr: "a.count / b.count" }],
        range: { window: "5m" },
      }),
    ],
    ["POST", "/v1/alerts/rules", "admin", (s) => ({ stream: s, threshold: 5 })],
    ["GET", "/v1/alerts/events?stream={s}", "read"],
  ];

  it("every route naming a stream outside the prefix answers 403 stream_not_allowed; inside it works", async () => {
    for (const [method, path, who, body] of NAMED) {
      const out = await call(method, path.replace("{s}", OUT), limited[who], body?.(OUT));
      expect(out.status, `${method} ${path} outside`).toBe(403);
      expect(await code(out), `${method} ${path} outside`).toBe("stream_not_allowed");
      const inside = await call(method, path.replace("{s}", IN), limited[who], body?.(IN));
      const text = await inside.text();
      expect(inside.status, `${method} ${path} inside: ${text.slice(0, 200)}`).toBeLessThan(300);
    }
  });

  it("rules: outside ones are not found, cannot be moved out to, and listings and firing alerts are filtered", async () => {
    for (const [method, path] of [
      ["GET", `/v1/alerts/rules/${ruleOut}`],
      ["PATCH", `/v1/alerts/rules/${ruleOut}`],
      ["POST", `/v1/alerts/rules/${ruleOut}/disable`],
      ["DELETE", `/v1/alerts/rules/${ruleOut}`],
    ]) {
      const res = await call(method, path, limited.admin, method === "PATCH" ? { threshold: 9 } : undefined);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(await code(res)).toBe("rule_not_found");
    }
    const moved = await call("PATCH", `/v1/alerts/rules/${ruleIn}`, limited.admin, { stream: OUT });
    expect(moved.status).toBe(403);
    expect(await code(moved)).toBe("stream_not_allowed");
    const rules = (await (await call("GET", "/v1/alerts/rules", limited.read)).json()) as {
      rules: Array<{ rule: { id: string; stream: string } }>;
    };
    expect(rules.rules.map((r) => r.rule.id)).toContain(ruleIn);
    expect(rules.rules.every((r) => r.rule.stream === IN)).toBe(true);
    expect((await firingOf(limited.read)).map((f) => f.stream)).toEqual([IN]);
    const events = (await (await call("GET", "/v1/alerts/events", limited.read)).json()) as {
      events: Array<{ stream: string }>;
    };
    expect(events.events.length).toBeGreaterThan(0);
    expect(events.events.every((e) => e.stream === IN)).toBe(true);
    // The rule outside is untouched.
    const still = (await (await call("GET", `/v1/alerts/rules/${ruleOut}`, t.read)).json()) as {
      rule: { enabled: boolean; threshold: number };
    };
    expect(still.rule).toMatchObject({ enabled: true, threshold: 1 });
  });

  const listed = async (key: string) =>
    (
      (await (await call("GET", "/v1/streams?limit=1000&window=1h", key)).json()) as {
        streams: Array<{ name: string; count: number }>;
      }
    ).streams;

  it("GET /v1/streams lists only the streams the prefixes allow", async () => {
    // The hub holds each stream's record within about a second of its events.
    await vi.waitFor(async () => expect((await listed(t.read)).map((s) => s.name)).toContain("checkout.x"), {
      timeout: 10_000,
      interval: 100,
    });
    expect((await listed(t.read)).map((s) => s.name)).toContain(OUT);
    expect((await listed(limited.read)).map((s) => s.name).sort()).toEqual(["checkout.done", "checkout.x"]);
  });

  it("GET /v1/metrics scrapes only the streams the prefixes allow", async () => {
    const res = await call("GET", "/v1/metrics", limited.read);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain(`"${IN}"`);
    expect(text).not.toContain(OUT);
    expect(await (await call("GET", "/v1/metrics", t.read)).text()).toContain(`"${OUT}"`);
  });

  const upgrade = (path: string, key: string) =>
    SELF.fetch(`${BASE}${path}`, {
      headers: { upgrade: "websocket", "sec-websocket-protocol": `edgepulse.v1, bearer.${key}` },
    });

  it("sockets: the stream socket and live queries outside are refused before the upgrade", async () => {
    const stream = await upgrade(`/v1/streams/${OUT}/live`, limited.read);
    expect(stream.status).toBe(403);
    expect(await code(stream)).toBe("stream_not_allowed");
    const q = encodeURIComponent(JSON.stringify({ stream: OUT, measures: ["count"], range: { window: "5m" } }));
    const live = await upgrade(`/v1/query/live?q=${q}`, limited.read);
    expect(live.status).toBe(403);
    expect(await code(live)).toBe("stream_not_allowed");
    const ok = await upgrade(`/v1/streams/${IN}/live`, limited.read);
    expect(ok.status).toBe(101);
    (ok.webSocket as WebSocket).accept();
    (ok.webSocket as WebSocket).close();
  });

  it("the overview socket sends only the allowed streams and alerts, on connect and after", async () => {
    const res = await upgrade("/v1/live", limited.read);
    expect(res.status).toBe(101);
    const ws = res.webSocket as WebSocket;
    const got: ServerMessage[] = [];
    let waiting: { until: (m: ServerMessage[]) => boolean; resolve: () => void } | null = null;
    const until = (cond: (m: ServerMessage[]) => boolean) =>
      new Promise<void>((resolve) => {
        if (cond(got)) resolve();
        else waiting = { until: cond, resolve };
      });
    ws.addEventListener("message", (e) => {
      const m = parseServerMessage(String(e.data));
      if (m) got.push(m);
      if (waiting?.until(got)) waiting.resolve();
    });
    ws.accept();
    await until((m) => m.some((x) => x.type === "alerts"));
    const dir = got.find((m) => m.type === "directory");
    if (dir?.type !== "directory") throw new Error("no directory");
    expect(dir.streams.map((s) => s.name).sort()).toEqual(["checkout.done", "checkout.x"]);
    const alerts = got.find((m) => m.type === "alerts");
    expect(alerts?.type === "alerts" && alerts.firing.map((f) => f.stream)).toEqual([IN]);
    // A change outside first, seen by the hub (so its broadcast, had there been one, came first), then one inside.
    const countOut = async () => (await listed(t.read)).find((s) => s.name === OUT)?.count ?? 0;
    await sent(t.ingest, [{ name: OUT, value: 5 }]);
    const own = (await (await call("GET", `/v1/streams/${OUT}?window=1h`, t.read)).json()) as {
      windows: Record<string, { count: number }>;
    };
    await vi.waitFor(async () => expect(await countOut()).toBe(own.windows["1h"].count), {
      timeout: 10_000,
      interval: 100,
    });
    await sent(t.ingest, [{ name: IN, value: 5 }]);
    await until((m) => m.some((x) => x.type === "streams" && x.streams.some((s) => s.name === IN)));
    ws.close();
    const names = got.flatMap((m) =>
      m.type === "streams" || m.type === "directory" ? m.streams.map((s) => s.name) : [],
    );
    expect(names).not.toContain(OUT);
    expect(JSON.stringify(got)).not.toContain(OUT);
  });

  it("a limited admin hands out and revokes only keys within its prefixes, and manages nothing tenant-wide", async () => {
    const inherit = await call("POST", "/v1/keys", limited.admin, { scope: "read" });
    expect(inherit.status).toBe(201);
    const inherited = (await inherit.json()) as { id: string; stream_prefixes: string[] | null };
    expect(inherited.stream_prefixes).toEqual(["checkout."]);
    const narrower = await call("POST", "/v1/keys", limited.admin, {
      scope: "read",
      stream_prefixes: ["checkout.eu."],
    });
    expect(narrower.status).toBe(201);
    for (const stream_prefixes of [["cart."], ["check"], ["checkout.", "cart."]]) {
      const broader = await call("POST", "/v1/keys", limited.admin, { scope: "admin", stream_prefixes });
      expect(broader.status, JSON.stringify(stream_prefixes)).toBe(403);
      expect(await code(broader)).toBe("stream_not_allowed");
    }
    const listed = (await (await call("GET", "/v1/keys", limited.admin)).json()) as {
      keys: Array<{ id: string; stream_prefixes: string[] | null }>;
    };
    expect(listed.keys.every((k) => k.stream_prefixes !== null)).toBe(true);
    expect(listed.keys.map((k) => k.id)).not.toContain(t.keyIds.read);
    const revokeOther = await call("DELETE", `/v1/keys/${t.keyIds.read}`, limited.admin);
    expect(revokeOther.status).toBe(404);
    expect((await call("GET", "/v1/streams", t.read)).status).toBe(200);
    expect((await call("DELETE", `/v1/keys/${inherited.id}`, limited.admin)).status).toBe(200);
    for (const [method, path, body] of [
      ["GET", "/v1/alerts/secret", undefined],
      [
        "PUT",
        "/v1/auth/oidc",
        {
          issuer: "https://idp.example.com",
          jwks_uri: "https://idp.example.com/jwks",
          audience: "x",
          roles: [{ role: "r", scope: "admin" }],
        },
      ],
      ["DELETE", "/v1/auth/oidc", undefined],
    ] as const) {
      const res = await call(method, path, limited.admin, body);
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(await code(res)).toBe("restricted_credential");
    }
  });
});
