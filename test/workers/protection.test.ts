import { env, SELF } from "cloudflare:test";
import { Ratelimit } from "@upstash/ratelimit";
import { Redis } from "@upstash/redis/cloudflare";
import { describe, expect, it, vi } from "vitest";
import { hashKey } from "../../core/keys";
import type { LimitDecision } from "../../core/ratelimit";
import { ADMIN_TOKEN, BASE, createTenant, expectError, get, send, sendJson, stream } from "./helpers";

const redis = new Redis({
  url: env.UPSTASH_REDIS_REST_URL,
  token: env.UPSTASH_REDIS_REST_TOKEN,
  enableTelemetry: false,
});

const setLimits = async (tenantId: string, limits: Record<string, number | null>) => {
  const res = await SELF.fetch(`${BASE}/v1/admin/tenants/${tenantId}/limits`, {
    method: "PUT",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(limits),
  });
  expect(res.status).toBe(200);
};

/**
 * Runs `fn` with the clock pinned 1 ms into a one-second window: the Worker, the Upstash limiter and the
 * Durable Object limiter all read this clock, so a burst is judged within one window whatever the
 * machine's load (no sleeping to a window start, no wall-clock bounds).
 */
async function atWindowStart<T>(fn: () => Promise<T>): Promise<T> {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(Math.floor(Date.now() / 1000) * 1000 + 1001);
  try {
    return await fn();
  } finally {
    vi.useRealTimers();
  }
}

describe("rate limits (Upstash Redis through the local bridge)", () => {
  it("allows N requests per second per tenant, then answers 429 with Retry-After and standard headers", async () => {
    const t = await createTenant();
    const other = await createTenant();
    await setLimits(t.tenantId, { ingest_per_sec: 5, read_per_sec: 50 });
    const results = await atWindowStart(async () => {
      const out = [];
      for (let i = 0; i < 8; i++) out.push(await sendJson(t.ingest, { name: "limited" }));
      return out;
    });
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    expect(results.slice(0, 5).map((r) => r.headers.get("ratelimit-remaining"))).toEqual(["4", "3", "2", "1", "0"]);
    for (const r of results) {
      expect(r.headers.get("ratelimit-limit")).toBe("5");
      expect(r.headers.get("ratelimit-reset")).toBe("1");
    }
    const refused = results[5];
    expect(refused.headers.get("retry-after")).toBe("1");
    const err = await expectError(refused, 429, "rate_limited");
    expect(err.message).toContain("5 requests per second");
    // Refused requests were not counted: the actor saw exactly five.
    expect((await stream(t.read, "limited")).counters.accepted).toBe(5);
    // Another tenant, and this tenant's reads, have their own budgets.
    expect((await sendJson(other.ingest, { name: "limited" })).status).toBe(200);
    expect((await get("/v1/streams", t.read)).status).toBe(200);
  });

  it("the Durable Object fallback decides exactly like the Upstash limiter", async () => {
    const id = crypto.randomUUID();
    const upstash = new Ratelimit({
      redis,
      limiter: Ratelimit.slidingWindow(4, "1 s"),
      prefix: `ep:eq:${id}`,
      ephemeralCache: false,
      analytics: false,
    });
    const fallback = env.RATE_LIMITER.getByName(`eq-${id}`);
    const a: Array<[boolean, number]> = [];
    const b: Array<[boolean, number]> = [];
    await atWindowStart(async () => {
      for (let i = 0; i < 7; i++) {
        const u = await upstash.limit("tenant");
        const d = (await fallback.limit("ingest", 4)) as LimitDecision;
        a.push([u.success, Math.max(0, u.remaining)]);
        b.push([d.success, d.remaining]);
      }
    });
    expect(b).toEqual(a);
    expect(a.map((x) => x[0])).toEqual([true, true, true, true, false, false, false]);
  });
});

describe("the shared key cache", () => {
  it("keeps verified keys in Redis and drops them on revocation", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, { name: "cached" });
    const hash = await hashKey(t.ingest);
    expect(await redis.get(`ep:key:${hash}`)).toMatchObject({ tenantId: t.tenantId, scope: "ingest", revoked: false });
    await SELF.fetch(`${BASE}/v1/keys/${t.keyIds.ingest}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${t.admin}` },
    });
    // Dropped at once, or (when that Redis call gives up) by the registry's retry a second later.
    await vi.waitFor(async () => expect(await redis.get(`ep:key:${hash}`)).toBeNull(), {
      timeout: 10_000,
      interval: 100,
    });
    await expectError(await sendJson(t.ingest, { name: "cached" }), 401, "revoked_key");
  });
});

describe("hardened input", () => {
  it("refuses nesting deeper than events need, before parsing", async () => {
    const t = await createTenant();
    await expectError(
      await send(t.ingest, `[{"name":"a","dims":{"x":${"[".repeat(5000)}${"]".repeat(5000)}}}]`),
      400,
      "body_too_deep",
    );
    await expectError(await send(t.ingest, "[[[[1]]]]"), 400, "body_too_deep");
    // Brackets inside strings do not count.
    expect((await send(t.ingest, JSON.stringify([{ name: "a", dims: { x: "[[[[[{{{{" } }]))).status).toBe(200);
  });

  it("treats 1e999 (Infinity after parsing) and odd timestamps as invalid events", async () => {
    const t = await createTenant();
    const res = await send(
      t.ingest,
      '[{"name":"a","value":1e999},{"name":"a","ts":"2026-02-30T00:00:00Z"},{"name":"a","ts":-1},{"name":"a","ts":"1732240000"},{"name":"a"}]',
    );
    expect(await res.json()).toMatchObject({
      accepted: 1,
      rejected: [
        { index: 0, code: "invalid_value" },
        { index: 1, code: "invalid_timestamp" },
        { index: 2, code: "invalid_timestamp" },
        { index: 3, code: "invalid_timestamp" },
      ],
    });
  });

  it("sends security headers on API responses", async () => {
    const res = await get("/healthz");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
  });

  it("caps distinct streams per tenant and counts what it refused", async () => {
    const t = await createTenant();
    const first = await sendJson(
      t.ingest,
      Array.from({ length: 30 }, (_, i) => ({ name: `s${i}` })),
    );
    expect(await first.json()).toMatchObject({ accepted: 30 });
    const res = await sendJson(t.ingest, [{ name: "s0" }, { name: "one-too-many" }, { name: "s29" }]);
    expect(await res.json()).toMatchObject({ accepted: 2, rejected: [{ index: 1, code: "stream_limit" }] });
    const usage = (await (await get("/v1/tenant", t.read)).json()) as {
      usage: { streams: number; streams_refused: number };
    };
    expect(usage.usage).toEqual({ streams: 30, streams_refused: 1 });
  });

  it("caps distinct values per dimension, folding the rest into __other__", async () => {
    const t = await createTenant();
    const events = Array.from({ length: 8 }, (_, i) => ({ name: "dims", dims: { country: `C${i}`, plan: "pro" } }));
    expect(await (await sendJson(t.ingest, events)).json()).toMatchObject({ accepted: 8 });
    expect((await stream(t.read, "dims")).counters).toMatchObject({ accepted: 8, dims_overflow: 3 });
  });
});
