/**
 * Funnels (/v1/funnels) in the real Workers runtime: step events from three streams, sent in mixed batches
 * with duplicates and retries, counted exactly as the oracle (test/support/funnel-oracle.ts) counts them, per
 * step, per breakdown value and per day; live updates; memory let go once journeys end; validation, conflicts,
 * limits, deletion, scopes and tenant isolation.
 */
import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { DAY_MS, encodeItems, FUNNEL_SHARDS, type LogEntry, MAX_FUNNELS_PER_TENANT } from "../../core/funnels";
import { seededRandom } from "../../core/random";
import { shardName } from "../../core/shards";
import { oracleJourneys } from "../support/funnel-oracle";
import { call, createTenant, expectError, sendJson, type TenantKeys, until } from "./helpers";

interface Results {
  from: string;
  to: string;
  steps: Array<{ index: number; stream: string; journeys: number; conversion: number; from_previous: number }>;
  breakdown: Array<{ value: string; journeys: number[] }>;
  days: Array<{ day: string; journeys: number[] }>;
  state: { users: number; bytes: number; late: number; overflow: number };
}

const STEPS = ["fn.view", "fn.cart", "fn.paid"];
const WINDOW_MS = 60_000;
const COUNTRIES = ["DE", "FR", "US"];

const rng = seededRandom;

interface Sent {
  name: string;
  id: string;
  ts: number;
  user?: string;
  dims: Record<string, string>;
}

/** Random journeys of `users` users over the last 2 minutes (well inside the funnel horizon): unique times per user, some steps filtered out. */
function traffic(seed: number, users: number, now: number): Sent[] {
  const r = rng(seed);
  const out: Sent[] = [];
  let n = 0;
  for (let u = 0; u < users; u++) {
    const user = `user-${seed}-${u}`;
    const used = new Set<number>();
    for (let k = 0; k < 2 + Math.floor(r() * 8); k++) {
      let ts = now - Math.floor(r() * 2 * 60_000) - 1000;
      while (used.has(ts)) ts++;
      used.add(ts);
      const step = Math.floor(r() * 3);
      const dims: Record<string, string> = { country: COUNTRIES[Math.floor(r() * 3)] };
      if (step === 1 && r() < 0.2) dims.source = "test"; // filtered out of the cart step
      out.push({ name: STEPS[step], id: `e-${seed}-${n++}`, ts, user, dims });
    }
  }
  // Events without a user never count.
  out.push({ name: STEPS[0], id: `e-${seed}-anon`, ts: now - 1000, dims: { country: "DE" } });
  return out;
}

/** What the oracle says the results are for `events`. */
function expected(events: Sent[], days: number[]) {
  const byUser = new Map<string, Sent[]>();
  for (const e of events) {
    if (e.user === undefined) continue;
    if (e.name === STEPS[1] && e.dims.source === "test") continue;
    const list = byUser.get(e.user) ?? [];
    list.push(e);
    byUser.set(e.user, list);
  }
  const total = [0, 0, 0];
  const byValue = new Map<string, number[]>();
  const byDay = new Map<number, number[]>(days.map((d) => [d, [0, 0, 0]]));
  for (const list of byUser.values()) {
    const log: LogEntry[] = list.map((e) => [e.ts, STEPS.indexOf(e.name), null]);
    for (const j of oracleJourneys(log, WINDOW_MS)) {
      const first = list.find((e) => e.ts === j.start && e.name === STEPS[0]) as Sent;
      const v = byValue.get(first.dims.country) ?? [0, 0, 0];
      byValue.set(first.dims.country, v);
      const d = byDay.get(Math.floor(j.start / DAY_MS)) as number[];
      for (let s = 0; s <= j.reached; s++) {
        total[s]++;
        v[s]++;
        d[s]++;
      }
    }
  }
  return {
    total,
    breakdown: [...byValue.entries()]
      .map(([value, journeys]) => ({ value, journeys }))
      .sort((a, b) => b.journeys[0] - a.journeys[0] || (a.value < b.value ? -1 : 1)),
    days: [...byDay.values()],
  };
}

/** Sends in batches of up to 50, mixing the streams, each batch twice when `again` says so. */
async function sendAll(key: string, events: Sent[], seed: number): Promise<void> {
  const r = rng(seed);
  const shuffled = [...events].sort(() => r() - 0.5);
  for (let i = 0; i < shuffled.length; i += 50) {
    const batch = shuffled.slice(i, i + 50);
    const res = await sendJson(key, batch);
    expect(res.status).toBe(200);
    if (r() < 0.3) expect((await sendJson(key, batch)).status).toBe(200); // a retry: all duplicates
  }
}

const FUNNEL = {
  name: "purchase",
  steps: [
    { stream: STEPS[0] },
    { stream: STEPS[1], filters: [{ dim: "source", op: "neq", value: "test" }] },
    { stream: STEPS[2] },
  ],
  window: "1m",
  breakdown: "country",
};

let t: TenantKeys;
let other: TenantKeys;
let funnelId: string;

const results = async (key = t.read, id = funnelId, days = 2): Promise<Results> => {
  const res = await call("GET", `/v1/funnels/${id}/results?days=${days}`, key);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as Results;
};

beforeAll(async () => {
  t = await createTenant("funnels");
  other = await createTenant("funnels-other");
  const res = await call("POST", "/v1/funnels", t.admin, FUNNEL);
  expect(res.status, await res.clone().text()).toBe(201);
  funnelId = ((await res.json()) as { funnel: { id: string } }).funnel.id;
});

describe("funnel counts", () => {
  it("count every journey exactly as the oracle does, through duplicates, retries and mixed arrival", async () => {
    const now = Date.now();
    const events = traffic(1, 60, now);
    await sendAll(t.ingest, events, 2);
    const today = Math.floor(now / DAY_MS);
    const want = expected(events, [today - 1, today]);
    const got = await until(results, (r) => r.steps.map((s) => s.journeys).join() === want.total.join());
    expect(got.steps.map((s) => s.journeys)).toEqual(want.total);
    expect(got.steps[0].journeys).toBeGreaterThan(20);
    expect(got.steps[2].journeys).toBeGreaterThan(0);
    expect(got.steps[1].conversion).toBeCloseTo(want.total[1] / want.total[0], 4);
    expect(got.steps[2].from_previous).toBeCloseTo(want.total[2] / want.total[1], 4);
    expect(got.breakdown).toEqual(want.breakdown);
    expect(got.days.map((d) => d.journeys)).toEqual(want.days);
    // Memory: only users with journeys inside the horizon are kept, each within the per-user bound.
    expect(got.state.users).toBeGreaterThan(0);
    expect(got.state.users).toBeLessThanOrEqual(60);
    expect(got.state.bytes / got.state.users).toBeLessThan(2048);
    expect(got.state.late).toBe(0);
    // Every stream's batches applied: nothing left waiting, the taps in place.
    for (const name of STEPS) {
      const v = await until(
        async () =>
          (await (await call("GET", `/v1/streams/${name}`, t.read)).json()) as {
            funnels: { taps: number; pending: number };
          },
        (x) => x.funnels.pending === 0,
      );
      expect(v.funnels).toEqual({ taps: 1, pending: 0, dropped: 0 });
    }
  });

  it("apply a redelivered batch once, and a stream's taps only from the newest definitions", async () => {
    // A shard answered but its answer was lost: the stream's actor sends the same batches again.
    const shard = env.FUNNEL_ACTOR.getByName("redelivery-test#funnels#0");
    const now = Date.now();
    const items = (u: string) =>
      encodeItems([
        { f: "f_r", s: 0, n: 2, w: 60_000, u, t: now - 2000, b: "DE" },
        { f: "f_r", s: 1, n: 2, w: 60_000, u, t: now - 1000 },
      ]);
    const day = Math.floor(now / DAY_MS);
    const counts = async () => (await shard.results("f_r", day - 1, day)).rows.reduce((a, r) => a + r.n, 0);
    expect(await shard.apply("s.view", [{ seq: 1, items: items("a") }], now)).toBe(1);
    expect(await counts()).toBe(2);
    expect(await shard.apply("s.view", [{ seq: 1, items: items("a") }], now)).toBe(1);
    expect(
      await shard.apply(
        "s.view",
        [
          { seq: 1, items: items("a") },
          { seq: 2, items: items("b") },
        ],
        now,
      ),
    ).toBe(2);
    expect(await counts()).toBe(4);
    // Another stream's numbers are its own.
    expect(await shard.apply("s.cart", [{ seq: 1, items: items("c") }], now)).toBe(1);
    expect(await counts()).toBe(6);
    // Taps: an older version (a request that lost a race) never replaces a newer one.
    const stream = env.METRIC_ACTOR.getByName(shardName(t.tenantId, "fn.versioned", 0));
    const tap = { f: "f_x", s: 0, n: 2, w: 60_000, filters: [], b: null };
    await stream.setFunnelTaps(t.tenantId, "fn.versioned", [tap, { ...tap, f: "f_y" }], 5);
    await stream.setFunnelTaps(t.tenantId, "fn.versioned", [tap], 4);
    expect((await stream.funnelStatus()).taps).toBe(2);
    await stream.setFunnelTaps(t.tenantId, "fn.versioned", [], 6);
    expect((await stream.funnelStatus()).taps).toBe(0);
  });

  it("move live as more step events arrive", async () => {
    const before = await results();
    const user = "live-user";
    const now = Date.now();
    await sendJson(t.ingest, [{ name: STEPS[0], id: "live-1", ts: now - 3000, user, dims: { country: "SE" } }]);
    const one = await until(results, (r) => r.steps[0].journeys === before.steps[0].journeys + 1);
    expect(one.breakdown.find((b) => b.value === "SE")?.journeys).toEqual([1, 0, 0]);
    await sendJson(t.ingest, [
      { name: STEPS[2], id: "live-3", ts: now - 1000, user },
      { name: STEPS[1], id: "live-2", ts: now - 2000, user, dims: { source: "web" } },
    ]);
    const three = await until(results, (r) => r.steps[2].journeys === before.steps[2].journeys + 1);
    expect(three.steps.map((s) => s.journeys)).toEqual(before.steps.map((s) => s.journeys + 1));
    expect(three.breakdown.find((b) => b.value === "SE")?.journeys).toEqual([1, 1, 1]);
  });

  it("count a step event that reaches the funnel past its horizon as late, changing nothing", async () => {
    const before = await results();
    // Accepted by the stream (within ALLOWED_LATENESS_MS), but older than the funnel horizon (FUNNEL_LATENESS_MS).
    await sendJson(t.ingest, [
      { name: STEPS[0], id: "late-1", ts: Date.now() - 20 * 60_000, user: "late-user", dims: { country: "DE" } },
    ]);
    const after = await until(results, (r) => r.state.late === before.state.late + 1);
    expect(after.state.late).toBe(before.state.late + 1);
    expect(after.steps).toEqual(before.steps);
  });

  it("let go of every user's state once the horizon passes their journeys, leaving the counts as they were", async () => {
    const before = await results();
    const later = Date.now() + 3 * 3_600_000;
    let remaining = 0;
    for (let k = 0; k < FUNNEL_SHARDS; k++) {
      remaining += (await env.FUNNEL_ACTOR.getByName(`${t.tenantId}#funnels#${k}`).sweep(later)).remaining;
    }
    expect(remaining).toBe(0);
    const after = await results();
    expect(after.state.users).toBe(0);
    expect(after.steps).toEqual(before.steps);
    expect(after.breakdown).toEqual(before.breakdown);
  });
});

describe("funnel definitions", () => {
  it("refuse what cannot be counted, naming the field", async () => {
    const bad = async (body: unknown, field: RegExp) => {
      const err = await expectError(await call("POST", "/v1/funnels", t.admin, body), 400, "invalid_funnel");
      expect(err.message).toMatch(field);
    };
    await bad({ ...FUNNEL, name: "one", steps: [FUNNEL.steps[0]] }, /steps/);
    await bad({ ...FUNNEL, name: "w", window: "8d" }, /window/);
    await bad({ ...FUNNEL, name: "w2", window: "soon" }, /window/);
    await bad({ ...FUNNEL, name: "s", steps: [{ stream: "bad stream!" }, FUNNEL.steps[0]] }, /steps\.0\.stream/);
    await bad(
      {
        ...FUNNEL,
        name: "f",
        steps: [{ stream: "a", filters: [{ dim: "x", op: "eq", values: ["1", "2"] }] }, FUNNEL.steps[0]],
      },
      /steps\.0\.filters\.0/,
    );
    await bad({ ...FUNNEL, name: "x", extra: 1 }, /extra/);
  });

  it("are idempotent by definition, and conflict by name", async () => {
    const again = await call("POST", "/v1/funnels", t.admin, FUNNEL);
    expect(again.status).toBe(200);
    expect(((await again.json()) as { funnel: { id: string } }).funnel.id).toBe(funnelId);
    await expectError(await call("POST", "/v1/funnels", t.admin, { ...FUNNEL, window: "2m" }), 409, "funnel_conflict");
  });

  it("stop at the tenant's limit", async () => {
    const u = await createTenant("funnels-limit");
    for (let i = 0; i < MAX_FUNNELS_PER_TENANT; i++) {
      const res = await call("POST", "/v1/funnels", u.admin, { ...FUNNEL, name: `f${i}` });
      expect(res.status).toBe(201);
    }
    await expectError(await call("POST", "/v1/funnels", u.admin, { ...FUNNEL, name: "one more" }), 409, "funnel_limit");
    const list = (await (await call("GET", "/v1/funnels", u.read)).json()) as { funnels: unknown[] };
    expect(list.funnels.length).toBe(MAX_FUNNELS_PER_TENANT);
  });

  it("delete: the funnel, its counts and the streams' taps go", async () => {
    const res = await call("POST", "/v1/funnels", t.admin, {
      ...FUNNEL,
      name: "doomed",
      steps: [{ stream: "fn.a" }, { stream: "fn.b" }],
    });
    const id = ((await res.json()) as { funnel: { id: string } }).funnel.id;
    const a = env.METRIC_ACTOR.getByName(shardName(t.tenantId, "fn.a", 0));
    expect((await a.funnelStatus()).taps).toBe(1);
    expect((await call("DELETE", `/v1/funnels/${id}`, t.admin)).status).toBe(204);
    expect((await a.funnelStatus()).taps).toBe(0);
    await expectError(await call("GET", `/v1/funnels/${id}`, t.read), 404, "funnel_not_found");
    await expectError(await call("GET", `/v1/funnels/${id}/results`, t.read), 404, "funnel_not_found");
    await expectError(await call("DELETE", `/v1/funnels/${id}`, t.admin), 404, "funnel_not_found");
    // The purchase funnel's streams still feed it.
    expect((await env.METRIC_ACTOR.getByName(shardName(t.tenantId, STEPS[0], 0)).funnelStatus()).taps).toBe(1);
  });

  it("refuse a bad days parameter", async () => {
    await expectError(await call("GET", `/v1/funnels/${funnelId}/results?days=0`, t.read), 400, "invalid_request");
    await expectError(await call("GET", `/v1/funnels/${funnelId}/results?days=91`, t.read), 400, "invalid_request");
    await expectError(await call("GET", `/v1/funnels/${funnelId}/results?from=1`, t.read), 400, "unknown_parameter");
  });
});

describe("funnel access", () => {
  it("is scoped: read keys read, only unrestricted admin keys write", async () => {
    await expectError(await call("POST", "/v1/funnels", t.read, { ...FUNNEL, name: "r" }), 403, "insufficient_scope");
    await expectError(await call("DELETE", `/v1/funnels/${funnelId}`, t.read), 403, "insufficient_scope");
    const limited: Record<string, string> = {};
    for (const scope of ["read", "admin"]) {
      const res = await call("POST", "/v1/keys", t.admin, { scope, stream_prefixes: ["shop."] });
      limited[scope] = ((await res.json()) as { key: string }).key;
    }
    await expectError(
      await call("POST", "/v1/funnels", limited.admin, { ...FUNNEL, name: "l" }),
      403,
      "restricted_credential",
    );
    const list = (await (await call("GET", "/v1/funnels", limited.read)).json()) as { funnels: unknown[] };
    expect(list.funnels).toEqual([]);
    await expectError(await call("GET", `/v1/funnels/${funnelId}/results`, limited.read), 403, "stream_not_allowed");
  });

  it("never reaches another tenant's funnel", async () => {
    await expectError(await call("GET", `/v1/funnels/${funnelId}`, other.read), 404, "funnel_not_found");
    await expectError(await call("GET", `/v1/funnels/${funnelId}/results`, other.read), 404, "funnel_not_found");
    await expectError(await call("DELETE", `/v1/funnels/${funnelId}`, other.admin), 404, "funnel_not_found");
    expect(((await (await call("GET", "/v1/funnels", other.read)).json()) as { funnels: unknown[] }).funnels).toEqual(
      [],
    );
    // The other tenant's events on the same stream names feed nothing of this tenant's.
    const before = await results();
    await sendJson(other.ingest, [
      { name: STEPS[0], id: "o1", ts: Date.now() - 1000, user: "x", dims: { country: "DE" } },
    ]);
    const res = await call("POST", "/v1/funnels", other.admin, FUNNEL);
    expect(res.status).toBe(201);
    const theirs = ((await res.json()) as { funnel: { id: string } }).funnel.id;
    expect(theirs).not.toBe(funnelId);
    await sendJson(other.ingest, [
      { name: STEPS[0], id: "o2", ts: Date.now() - 500, user: "y", dims: { country: "DE" } },
    ]);
    const mine = await until(
      () => results(other.read, theirs),
      (r) => r.steps[0].journeys === 1,
    );
    expect(mine.steps[0].journeys).toBe(1);
    expect((await results()).steps).toEqual(before.steps);
  });
});
