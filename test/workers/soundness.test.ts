/**
 * Sound actors: every dependency failure survived, every state bounded, idle figures that decay, and
 * storage from the first release carried forward.
 */
import {
  abortAllDurableObjects,
  createExecutionContext,
  runDurableObjectAlarm,
  runInDurableObject,
  SELF,
} from "cloudflare:test";
import { Redis } from "@upstash/redis/cloudflare";
import { describe, expect, it, vi } from "vitest";
import { decodeAggregate } from "../../core/aggregate";
import { binCount } from "../../core/ddsketch";
import { hashKey } from "../../core/keys";
import {
  type DirectoryMessage,
  parseServerMessage,
  type ServerMessage,
  type StreamRecord,
  type StreamsMessage,
  type StreamUpdateMessage,
} from "../../core/live";
import { SECOND_MAX_BINS, unpackMinute } from "../../core/window";
import type { ActorStats } from "../../durable-objects/metric-actor";
import { app } from "../../workers/index";
import { testEnv as env } from "./env";
import { ADMIN_TOKEN, BASE, createTenant, expectError, get, send, sendJson, stream } from "./helpers";

const actor = (tenant: string, name: string) => env.METRIC_ACTOR.getByName(`${tenant}/${name}`);
const stats = (tenant: string, name: string) => actor(tenant, name).stats() as Promise<ActorStats>;

/** Calls the Worker with some bindings replaced (a Redis that is unreachable, say). */
function withEnv(overrides: Partial<Record<string, string>>) {
  const e = { ...env, ...overrides } as unknown as Env;
  return (path: string, init: RequestInit = {}) => app.request(`${BASE}${path}`, init, e, createExecutionContext());
}

const chaos = (what: string) =>
  fetch(`${env.TEST_CHAOS_REDIS_URL}/__bridge/${what}`, {
    method: "POST",
    headers: { authorization: `Bearer ${env.TEST_CHAOS_REDIS_TOKEN}` },
  });
const viaChaos = withEnv({
  UPSTASH_REDIS_REST_URL: env.TEST_CHAOS_REDIS_URL,
  UPSTASH_REDIS_REST_TOKEN: env.TEST_CHAOS_REDIS_TOKEN,
});
/**
 * The chaos bridge with the default Redis timeout (200 ms), for the cases that wait it out: the test config
 * allows 2 s, so that a busy machine never turns the working Redis's answers into timeouts.
 */
const viaChaosShortTimeout = withEnv({
  UPSTASH_REDIS_REST_URL: env.TEST_CHAOS_REDIS_URL,
  UPSTASH_REDIS_REST_TOKEN: env.TEST_CHAOS_REDIS_TOKEN,
  RATE_LIMIT_TIMEOUT_MS: "200",
});
/** The chaos bridge after switching a failure on. */
const chaosWith =
  (what: string, call = viaChaos) =>
  async () => {
    expect((await chaos(what)).status).toBe(200);
    return call;
  };

const ingestVia = (call: ReturnType<typeof withEnv>, key: string, body: unknown) =>
  call("/v1/events", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });

describe("Redis failures degrade like a slow Redis: fail open, marked, never a 500", () => {
  const cases: Array<[string, () => Promise<ReturnType<typeof withEnv>>, () => Promise<unknown>, string]> = [
    [
      "connection refused",
      async () => withEnv({ UPSTASH_REDIS_REST_URL: "http://127.0.0.1:1" }),
      async () => {},
      "redis-error",
    ],
    [
      "DNS failure",
      async () => withEnv({ UPSTASH_REDIS_REST_URL: "http://edgepulse-redis.invalid" }),
      async () => {},
      "redis-error",
    ],
    ["HTTP 503 from the REST endpoint", chaosWith("fail/503"), () => chaos("fail/0"), "redis-error"],
    ["a body that is not JSON", chaosWith("fail/garbage"), () => chaos("fail/0"), "redis-error"],
    // Blackholed: the endpoint accepts and never answers; the check gives up after RATE_LIMIT_TIMEOUT_MS.
    ["blackholed", chaosWith("delay/600000", viaChaosShortTimeout), () => chaos("delay/0"), "redis-timeout"],
  ];
  it.each(cases)("%s", async (_name, setUp, tearDown, degraded) => {
    const t = await createTenant();
    const call = await setUp();
    try {
      // An uncached key: the key lookup and the rate limit both meet the failure.
      const ingest = await ingestVia(call, t.ingest, [{ name: "r", value: 1 }]);
      expect(ingest.status).toBe(200);
      expect(ingest.headers.get("x-ratelimit-degraded")).toBe(degraded);
      expect(await ingest.json()).toMatchObject({ accepted: 1 });
      const read = await call("/v1/streams/r", { headers: { authorization: `Bearer ${t.read}` } });
      expect(read.status).toBe(200);
      expect(read.headers.get("x-ratelimit-degraded")).toBe(degraded);
    } finally {
      await tearDown();
    }
    expect((await stream(t.read, "r")).counters.accepted).toBe(1);
  });

  it("revokes a key with Redis down: 200 once committed, and the cached grant is dropped when Redis answers again", async () => {
    const t = await createTenant();
    const redis = new Redis({
      url: env.UPSTASH_REDIS_REST_URL,
      token: env.UPSTASH_REDIS_REST_TOKEN,
      enableTelemetry: false,
    });
    const hash = await hashKey(t.ingest);
    // The key is verified once, so its grant is cached in Redis.
    expect((await sendJson(t.ingest, { name: "k" })).status).toBe(200);
    expect(await redis.get(`ep:key:${hash}`)).toMatchObject({ tenantId: t.tenantId });
    const down = withEnv({ UPSTASH_REDIS_REST_URL: "http://127.0.0.1:1" });
    const res = await down(`/v1/keys/${t.keyIds.ingest}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${t.admin}` },
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { revoked_at: string | null }).revoked_at).not.toBeNull();
    // The registry owes Redis the delete, and its alarm makes it: nothing can read the stale grant afterwards.
    const registry = env.TENANT_REGISTRY.getByName(t.tenantId);
    await vi.waitFor(
      async () => {
        await runDurableObjectAlarm(registry);
        expect(await registry.pendingInvalidations()).toBe(0);
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(await redis.get(`ep:key:${hash}`)).toBeNull();
    await expectError(await sendJson(t.ingest, { name: "k" }), 401, "revoked_key");
  });
});

describe("bounded state, whatever a client sends", () => {
  it("caps every second's sketch and keeps storage within the stated bound under a flood of crafted values", async () => {
    const t = await createTenant();
    const base = Math.floor(Date.now() / 1000) * 1000 - 40_000;
    await sendJson(t.ingest, [{ name: "flood", value: 1, ts: base - 5000 }]);
    const before = (await stats(t.tenantId, "flood")).storage_bytes;
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const seconds = 3;
    const perSecond = 1500;
    // The raw archive keeps each accepted event's line in the actor until its segment is written (bounded on
    // its own: archive.test.ts): at most every line at once, so the bound below adds their bytes.
    let archiveBytes = 0;
    for (let s = 0; s < seconds; s++) {
      for (let b = 0; b < perSecond / 50; b++) {
        const events = Array.from({ length: 50 }, () => {
          const mag = 10 ** (rand() * 30 - 15);
          return { name: "flood", ts: base + s * 1000, value: rand() < 0.5 ? -mag : mag };
        });
        for (const e of events) archiveBytes += JSON.stringify(e).length + 1;
        // A 503 stream_unavailable accepted nothing and says to resend: as a client does, up to twice (the
        // test pool's runtime has reset an actor mid-file now and then). Exact counts below catch any double.
        let res = await (await sendJson(t.ingest, events)).json();
        for (
          let retry = 0;
          retry < 2 && (res as { error?: { code: string } }).error?.code === "stream_unavailable";
          retry++
        ) {
          expect((res as { error: { details: { accepted: number } } }).error.details.accepted).toBe(0);
          res = await (await sendJson(t.ingest, events)).json();
        }
        expect(res).toMatchObject({ accepted: 50 });
      }
    }
    // Every stored second: rows of open minutes, and the seconds inside packed minute blocks.
    const rows = await runInDurableObject(actor(t.tenantId, "flood"), (_i, state) => {
      const sql = state.storage.sql;
      const open = sql
        .exec<{ sec: number; agg: ArrayBuffer }>("SELECT sec, agg FROM seconds")
        .toArray()
        .map((r) => ({ sec: r.sec, agg: decodeAggregate(r.agg) }));
      const packed = sql
        .exec<{ minute: number; block: ArrayBuffer }>("SELECT minute, block FROM minutes")
        .toArray()
        .flatMap((r) => [...unpackMinute(r.minute, new Uint8Array(r.block))].map(([sec, agg]) => ({ sec, agg })));
      return [...open, ...packed];
    });
    const flooded = rows.filter((r) => r.agg.count === perSecond);
    expect(flooded).toHaveLength(seconds);
    for (const r of flooded) expect(binCount(r.agg.sketch)).toBeLessThanOrEqual(SECOND_MAX_BINS);
    // At most SECOND_MAX_BINS bins of ≤ 3 bytes plus the scalars per second, the archive log's lines, plus
    // SQLite's page slack.
    const grown = (await stats(t.tenantId, "flood")).storage_bytes - before;
    expect(grown).toBeLessThanOrEqual(seconds * (SECOND_MAX_BINS * 3 + 64) + archiveBytes + 16 * 1024);
    // Counts stay exact, and the state reloads from storage to the same answers.
    const live = await stream(t.read, "flood", "5m");
    expect(live.windows["5m"].count).toBe(seconds * perSecond + 1);
    await abortAllDurableObjects();
    expect(await stream(t.read, "flood", "5m")).toMatchObject({ windows: live.windows });
  });

  it("caps distinct dimension keys per stream (MAX_DIM_KEYS) and counts what it dropped", async () => {
    const t = await createTenant();
    const batches = 10;
    for (let b = 0; b < batches; b++) {
      const dims = Object.fromEntries(Array.from({ length: 16 }, (_, k) => [`key${b}_${k}`, "v"]));
      expect(await (await sendJson(t.ingest, [{ name: "dimflood", dims }])).json()).toMatchObject({ accepted: 1 });
    }
    const keys = await runInDurableObject(
      actor(t.tenantId, "dimflood"),
      (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM dim_defs").one().n,
    );
    expect(keys).toBe(32);
    expect((await stream(t.read, "dimflood")).counters).toMatchObject({ accepted: 10, dim_keys_overflow: 160 - 32 });
  });

  it("prunes finished webhook deliveries to the last 1,000", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "hooks", ts: Date.now() - 120_000 }]);
    await runInDurableObject(actor(t.tenantId, "hooks"), (_i, state) => {
      for (let i = 0; i < 1200; i++) {
        state.storage.sql.exec(
          "INSERT INTO outbox (topic, key, version, state, due, done_at) VALUES ('webhook', ?, 1, 'done', 0, ?)",
          `evt-${String(i).padStart(5, "0")}|https://example.com`,
          i,
        );
      }
    });
    await abortAllDurableObjects();
    // Housekeeping runs on the next alarm after waking.
    await vi.waitFor(
      async () => {
        await runDurableObjectAlarm(actor(t.tenantId, "hooks"));
        const left = await runInDurableObject(actor(t.tenantId, "hooks"), (_i, state) =>
          state.storage.sql
            .exec<{ n: number; oldest: number }>(
              "SELECT count(*) AS n, min(done_at) AS oldest FROM outbox WHERE topic = 'webhook'",
            )
            .one(),
        );
        expect(left).toEqual({ n: 1000, oldest: 200 });
      },
      { timeout: 10_000, interval: 100 },
    );
  });
});

/** A socket that records validated messages and lets a test await the next match. */
async function open(path: string, key: string) {
  const res = await SELF.fetch(`${BASE}${path}`, {
    headers: { upgrade: "websocket", "sec-websocket-protocol": `edgepulse.v1, bearer.${key}` },
  });
  expect(res.status).toBe(101);
  const ws = res.webSocket as WebSocket;
  ws.accept();
  const messages: ServerMessage[] = [];
  const waiters: Array<{ pred: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }> = [];
  ws.addEventListener("message", (e) => {
    const m = parseServerMessage(String(e.data));
    if (m === null) return;
    messages.push(m);
    for (const w of waiters.splice(0)) {
      if (w.pred(m)) w.resolve(m);
      else waiters.push(w);
    }
  });
  return {
    ws,
    next<T extends ServerMessage>(pred: (m: ServerMessage) => boolean): Promise<T> {
      const seen = messages.find(pred);
      if (seen) return Promise.resolve(seen as T);
      return new Promise((resolve) => waiters.push({ pred, resolve: resolve as (m: ServerMessage) => void }));
    },
  };
}

describe("figures decay while a stream is idle", () => {
  it("shows the decayed figures on the stream socket, the overview socket and GET /v1/streams", async () => {
    const t = await createTenant();
    // Three events that leave the 1m window about 20 s from now (time enough to see them in it first, however
    // slow the machine); nothing else arrives.
    const ts = Date.now() - 40_000;
    await sendJson(t.ingest, [
      { name: "idle", ts, value: 1 },
      { name: "idle", ts, value: 2 },
      { name: "idle", ts, value: 3 },
    ]);
    const streamSocket = await open("/v1/streams/idle/live", t.read);
    const overview = await open("/v1/live", t.read);
    const snap = await streamSocket.next((m) => m.type === "snapshot");
    expect(snap).toMatchObject({ windows: { "1m": { count: 3 } } });
    await overview.next<DirectoryMessage>(
      (m) =>
        (m.type === "directory" || m.type === "streams") && m.streams.some((s) => s.name === "idle" && s.count === 3),
    );
    // Without any new event, both sockets are told that the 1m window emptied; the 5m window still holds them.
    const decayed = await streamSocket.next<StreamUpdateMessage>(
      (m) => m.type === "update" && m.windows["1m"].count === 0,
    );
    expect(decayed.applied).toBe(0);
    expect(decayed.windows["5m"]).toMatchObject({ count: 3, sum: 6 });
    expect(decayed.windows["1m"]).toMatchObject({ rate: 0, sum: null, p95: null });
    await overview.next<StreamsMessage>(
      (m) => m.type === "streams" && m.streams.some((s) => s.name === "idle" && s.count === 0 && s.rate === 0),
    );
    await vi.waitFor(
      async () => {
        const list = (await (await get("/v1/streams", t.read)).json()) as {
          streams: Array<{ name: string; count: number }>;
        };
        expect(list.streams).toEqual([expect.objectContaining({ name: "idle", count: 0 })]);
        const five = (await (await get("/v1/streams?window=5m", t.read)).json()) as {
          streams: Array<{ count: number }>;
        };
        expect(five.streams[0].count).toBe(3);
      },
      { timeout: 10_000, interval: 100 },
    );
    streamSocket.ws.close();
    overview.ws.close();
  }, 60_000);

  it("reconciles the hub's firing set: a stale firing entry goes with the stream's next record", async () => {
    const t = await createTenant();
    // The hub holds a firing alert for "calm" whose "resolved" never arrived.
    const stale = {
      id: "rule_lost:firing:1",
      stream: "calm",
      rule_id: "rule_lost",
      rule_name: "lost",
      kind: "firing" as const,
      at: 1,
      value: 1,
      labels: {},
    };
    const old: StreamRecord = {
      entry: {
        name: "calm",
        at: Date.now(),
        count: 1,
        rate: 0,
        mean: null,
        p95: null,
        distinct_users: 0,
        rejected: 0,
        late: 0,
        duplicates: 0,
      },
      windows: {} as StreamRecord["windows"],
      counters: { accepted: 1, duplicates: 0, late: 0, future: 0, rejected: {} },
      first_event_at: 1,
      last_event_at: 1,
      firing: [stale],
    };
    const hub = env.TENANT_HUB.getByName(t.tenantId);
    await hub.update(old);
    expect(((await (await get("/v1/alerts", t.read)).json()) as { firing: unknown[] }).firing).toHaveLength(1);
    // The actor's next record says nothing is firing on "calm".
    await sendJson(t.ingest, [{ name: "calm" }]);
    await vi.waitFor(
      async () => {
        expect(((await (await get("/v1/alerts", t.read)).json()) as { firing: unknown[] }).firing).toEqual([]);
      },
      { timeout: 10_000, interval: 100 },
    );
  });
});

describe("names, values and paths that could never be served", () => {
  it("refuses stream names made only of dots at ingest and on every path", async () => {
    const t = await createTenant();
    const res = await sendJson(t.ingest, [{ name: "." }, { name: ".." }, { name: "ok" }]);
    expect(await res.json()).toMatchObject({
      accepted: 1,
      rejected: [
        { index: 0, code: "invalid_name" },
        { index: 1, code: "invalid_name" },
      ],
    });
    // Why: URL parsing removes "." and ".." segments (also as %2E), so such a stream could never be read;
    // "/v1/streams/.." is "/v1/", not a stream named "..".
    expect(new URL(`${BASE}/v1/streams/%2E%2E/ok`).pathname).toBe("/v1/ok");
    expect((await get("/v1/streams/%2E%2E", t.read)).status).toBe(404);
    const rule = await SELF.fetch(`${BASE}/v1/alerts/rules`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.admin}`, "content-type": "application/json" },
      body: JSON.stringify({ stream: "..", threshold: 1 }),
    });
    const err = await expectError(rule, 400, "invalid_rule");
    expect(err.message).toContain("stream");
  });

  it("refuses values that would overflow a sum (|value| > 1e15), and keeps sums finite", async () => {
    const t = await createTenant();
    const res = await sendJson(t.ingest, [
      { name: "big", value: 1.7e308 },
      { name: "big", value: -1.7e308 },
      { name: "big", value: 1e15 },
      { name: "big", value: 1e15 },
    ]);
    expect(await res.json()).toMatchObject({
      accepted: 2,
      rejected: [
        { index: 0, code: "invalid_value" },
        { index: 1, code: "invalid_value" },
      ],
    });
    expect((await stream(t.read, "big")).windows["1m"]).toMatchObject({ sum: 2e15, max: 1e15 });
  });

  it("reports sum as null, like mean and the percentiles, when no event had a value", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "novalue", user: "a" }, { name: "novalue" }]);
    expect((await stream(t.read, "novalue")).windows["1m"]).toMatchObject({
      count: 2,
      sum: null,
      min: null,
      distinct_users: 1,
    });
  });
});

describe("storage that refuses a write", () => {
  it("fails the batch (nothing acknowledged), keeps serving, and accepts again once storage works", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "fragile", value: 1 }]);
    await runInDurableObject(actor(t.tenantId, "fragile"), (_i, state) => {
      state.storage.sql.exec("ALTER TABLE seconds RENAME TO seconds_away");
    });
    const refused = await sendJson(t.ingest, [{ id: "e1", name: "fragile", value: 5 }]);
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("stream_unavailable");
    // Storage works again (the reset actor recreated an empty table: put the real one back).
    await runInDurableObject(actor(t.tenantId, "fragile"), (_i, state) => {
      state.storage.sql.exec("DROP TABLE IF EXISTS seconds");
      state.storage.sql.exec("ALTER TABLE seconds_away RENAME TO seconds");
    });
    await abortAllDurableObjects();
    // The refused event was not counted, so resending it (same id) counts it once.
    expect(await (await sendJson(t.ingest, [{ id: "e1", name: "fragile", value: 5 }])).json()).toMatchObject({
      accepted: 1,
      duplicates: 0,
    });
    expect((await stream(t.read, "fragile")).windows["1m"]).toMatchObject({ count: 2, sum: 6 });
  });
});

describe("control-plane bodies are validated by their schemas", () => {
  it("names the field that is wrong, refuses unknown fields, and refuses a body that is not an object", async () => {
    const t = await createTenant();
    const call = (path: string, body: string) =>
      SELF.fetch(`${BASE}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${t.admin}`, "content-type": "application/json" },
        body,
      });
    const bad = await expectError(
      await call("/v1/keys", JSON.stringify({ scope: "read", nmae: "typo" })),
      400,
      "invalid_request",
    );
    expect(bad.message).toContain("nmae");
    expect((await expectError(await call("/v1/keys", "{}"), 400, "invalid_request")).message).toContain("scope");
    await expectError(await call("/v1/keys", "[1]"), 400, "malformed_body");
    await expectError(await call("/v1/keys", "{nope"), 400, "malformed_body");
    const rule = await expectError(
      await call("/v1/alerts/rules", JSON.stringify({ stream: "s", threshold: "high" })),
      400,
      "invalid_rule",
    );
    expect(rule.message).toContain("threshold");
    const op = await SELF.fetch(`${BASE}/v1/admin/tenants/${t.tenantId}/limits`, {
      method: "PUT",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ ingest_per_sec: 0 }),
    });
    expect((await expectError(op, 400, "invalid_request")).message).toContain("ingest_per_sec");
  });
});

describe("sending raw text", () => {
  it("rejects only the NDJSON lines that nest too deep, never the whole batch", async () => {
    const t = await createTenant();
    const body = [
      '{"name":"nd","value":1}',
      "{{",
      "{{",
      '{"name":"nd","dims":{"k":[[[1]]]}}',
      '{"name":"nd","value":2}',
    ].join("\n");
    const res = await send(t.ingest, body, { "content-type": "application/x-ndjson" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      accepted: 2,
      rejected: [
        { index: 1, code: "malformed_json" },
        { index: 2, code: "malformed_json" },
        { index: 3, code: "too_deep" },
      ],
    });
  });
});
