/**
 * The API's one style, checked structurally: every key of every JSON response is snake_case, and every
 * point in time (`*_at`, `*_since`, `at`, `t`, `now`, `applies_from`) is an ISO-8601 UTC string or null.
 * Walks the main responses of a tenant with data (streams, history, alerts with a firing rule, a pending
 * rule and a delivered webhook, keys with a revoked one, the tenant, the operator's views, stream config
 * with a scaling decision, a query), so a field added or changed in the wrong style fails here.
 */
import { env, runDurableObjectAlarm, SELF } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { ADMIN_TOKEN, BASE, createTenant, get, sendJson, type TenantKeys } from "./helpers";

const RECEIVER = (env as unknown as { TEST_WEBHOOK_URL: string }).TEST_WEBHOOK_URL;
const STREAM = "shape.checkout";

const CAMEL = /[a-z0-9][A-Z]/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const isTimeKey = (k: string) =>
  k === "at" || k === "t" || k === "since" || k === "now" || k === "applies_from" || /_(at|since)$/.test(k);
const isIso = (v: unknown) => typeof v === "string" && ISO.test(v) && new Date(v).toISOString() === v;

/** Every key in `v` that breaks the style, with its path; `seen` collects the time keys met (with a value). */
function problems(v: unknown, path: string, seen: Set<string>): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => problems(x, `${path}[${i}]`, seen));
  if (v === null || typeof v !== "object") return [];
  return Object.entries(v).flatMap(([k, x]) => {
    const here = `${path}.${k}`;
    const out: string[] = [];
    if (CAMEL.test(k)) out.push(`${here}: camelCase key`);
    if (isTimeKey(k)) {
      if (x !== null && !isIso(x)) out.push(`${here}: ${JSON.stringify(x)} is not an ISO-8601 UTC time`);
      if (x !== null) seen.add(k);
    }
    return [...out, ...problems(x, here, seen)];
  });
}

const call = (method: string, path: string, key: string, body?: unknown) =>
  SELF.fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

async function json(res: Response | Promise<Response>, status = 200): Promise<unknown> {
  const r = await res;
  const body = await r.json();
  expect(r.status, JSON.stringify(body)).toBe(status);
  return body;
}

let t: TenantKeys;
/** Responses of writes, checked with the reads. */
const writes: Record<string, unknown> = {};

beforeAll(async () => {
  const created = await json(
    SELF.fetch(`${BASE}/v1/admin/tenants`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "shape" }),
    }),
    201,
  );
  writes["POST /v1/admin/tenants"] = created;
  t = await createTenant("shape-data");
  const now = Date.now();
  await sendJson(t.ingest, [
    { name: STREAM, value: 120, user: "u1", ts: now - 2000, dims: { country: "DE", plan: "pro" } },
    { name: STREAM, value: 80, user: "u2", ts: now, dims: { country: "FR", plan: "free" } },
  ]);
  // A scaling decision (the bounds move the stream to 2 shards) and a dimension set.
  writes["PUT config"] = await json(
    call("PUT", `/v1/streams/${STREAM}/config`, t.admin, {
      dimension_sets: [["country", "plan"]],
      scaling: { min_shards: 2 },
    }),
  );
  // One rule firing at once (with a webhook), one pending for an hour.
  const firing = (await json(
    call("POST", "/v1/alerts/rules", t.admin, {
      name: "any checkout",
      stream: STREAM,
      aggregate: "count",
      window: "1h",
      threshold: 0,
      labels: { team: "shop" },
      targets: [`${RECEIVER}/hook/api-shape`],
    }),
    201,
  )) as { rule: { id: string } };
  writes["POST /v1/alerts/rules"] = firing;
  writes["POST pending rule"] = await json(
    call("POST", "/v1/alerts/rules", t.admin, { stream: STREAM, threshold: 0, for: "1h" }),
    201,
  );
  writes["PATCH rule"] = await json(call("PATCH", `/v1/alerts/rules/${firing.rule.id}`, t.admin, { threshold: 1 }));
  const key = (await json(call("POST", "/v1/keys", t.admin, { scope: "read", name: "wall" }), 201)) as { id: string };
  writes["POST /v1/keys"] = key;
  writes["DELETE /v1/keys/:id"] = await json(call("DELETE", `/v1/keys/${key.id}`, t.admin));
  // The webhook delivered (so `delivered_at` holds a time), and the hub has the stream's record.
  const stub = env.METRIC_ACTOR.getByName(`${t.tenantId}/${STREAM}`);
  await vi.waitFor(
    async () => {
      await runDurableObjectAlarm(stub);
      const ev = (await json(get("/v1/alerts/events", t.read))) as {
        events: Array<{ deliveries: Array<{ status: string }> }>;
      };
      expect(ev.events.some((e) => e.deliveries.some((d) => d.status === "delivered"))).toBe(true);
      const list = (await json(get("/v1/streams", t.read))) as { streams: Array<{ name: string }> };
      expect(list.streams.map((s) => s.name)).toContain(STREAM);
    },
    { timeout: 20_000, interval: 100 },
  );
});

describe("API shape: snake_case keys, ISO-8601 times", () => {
  it("holds for every main response of a tenant with data", async () => {
    const reads: Record<string, unknown> = {
      "GET /v1/streams": await json(get("/v1/streams?window=5m", t.read)),
      "GET /v1/streams/:name": await json(get(`/v1/streams/${STREAM}`, t.read)),
      "GET /v1/streams/:name/history": await json(get(`/v1/streams/${STREAM}/history?step=1m`, t.read)),
      "GET /v1/streams/:name/config": await json(get(`/v1/streams/${STREAM}/config`, t.read)),
      "GET /v1/alerts/rules": await json(get("/v1/alerts/rules", t.read)),
      "GET /v1/alerts/events": await json(get("/v1/alerts/events", t.read)),
      "GET /v1/alerts": await json(get("/v1/alerts", t.read)),
      "GET /v1/keys": await json(get("/v1/keys", t.admin)),
      "GET /v1/tenant": await json(get("/v1/tenant", t.read)),
      "GET /v1/admin/tenants": await json(get("/v1/admin/tenants", ADMIN_TOKEN)),
      "GET stats": await json(get(`/v1/admin/tenants/${t.tenantId}/streams/${STREAM}/stats`, ADMIN_TOKEN)),
      "POST /v1/query": await json(
        call("POST", "/v1/query", t.read, {
          stream: STREAM,
          measures: ["count", "p95"],
          group_by: ["country"],
          range: { last: "1h" },
          step: "1m",
        }),
      ),
    };
    const rules = reads["GET /v1/alerts/rules"] as { rules: Array<{ rule: { id: string } }> };
    reads["GET /v1/alerts/rules/:id"] = await json(get(`/v1/alerts/rules/${rules.rules[0].rule.id}`, t.read));

    const seen = new Set<string>();
    const found = Object.entries({ ...writes, ...reads }).flatMap(([route, body]) => problems(body, route, seen));
    expect(found).toEqual([]);
    // The walk met the times it is meant to check (a field renamed away would otherwise pass unseen).
    expect([...seen].sort()).toEqual(
      expect.arrayContaining([
        "active_since",
        "applies_from",
        "at",
        "created_at",
        "delivered_at",
        "first_event_at",
        "firing_since",
        "last_event_at",
        "last_true_at",
        "now",
        "revoked_at",
        "t",
        "updated_at",
      ]),
    );
  });

  it("the checker itself flags camelCase keys and epoch times", () => {
    const seen = new Set<string>();
    expect(problems({ a: [{ firingSince: 1, at: 1763805600000, t: "2026-11-22T09:00:00Z" }] }, "x", seen)).toEqual([
      "x.a[0].firingSince: camelCase key",
      "x.a[0].at: 1763805600000 is not an ISO-8601 UTC time",
      'x.a[0].t: "2026-11-22T09:00:00Z" is not an ISO-8601 UTC time',
    ]);
  });
});
