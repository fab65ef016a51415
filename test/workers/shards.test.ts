/**
 * Scale-out (core/shards.ts, durable-objects/stream-shard.ts): a stream spread
 * over shards counts exactly what it acknowledged, through splits, folds and
 * changes of the shard count under load; the primary sizes the shards by
 * itself and says why.
 */
import { abortAllDurableObjects, env, runDurableObjectAlarm, SELF } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import type { ScalingStatus } from "../../core/shards";
import type { ShardStats } from "../../durable-objects/stream-shard";
import { BASE, createTenant, sendJson, type TenantKeys } from "./helpers";

interface Receipt {
  accepted: number;
  duplicates: number;
  rejected: Array<{ index: number; code: string }>;
}

const primary = (t: TenantKeys, name: string) => env.METRIC_ACTOR.getByName(`${t.tenantId}/${name}`);
const shardStub = (t: TenantKeys, name: string, k: number) => env.STREAM_SHARD.getByName(`${t.tenantId}/${name}#${k}`);

async function configure(t: TenantKeys, name: string, body: unknown) {
  const res = await SELF.fetch(`${BASE}/v1/streams/${name}/config`, {
    method: "PUT",
    headers: { authorization: `Bearer ${t.admin}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { scaling: ScalingStatus };
}

async function snapshot(t: TenantKeys, name: string) {
  const res = await SELF.fetch(`${BASE}/v1/streams/${name}`, { headers: { authorization: `Bearer ${t.read}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as {
    windows: Record<string, { count: number; sum: number | null }>;
    counters: { accepted: number; duplicates: number };
    scaling: ScalingStatus;
  };
}

async function post(t: TenantKeys, events: unknown[]): Promise<Receipt> {
  const res = await sendJson(t.ingest, events);
  expect(res.status).toBe(200);
  return (await res.json()) as Receipt;
}

/** Requests and relays the stream's shards 1..n have carried. */
async function shardTotals(t: TenantKeys, name: string, n: number) {
  const stats = (await Promise.all(
    Array.from({ length: n }, (_, i) => shardStub(t, name, i + 1).stats()),
  )) as ShardStats[];
  return {
    requests: stats.reduce((a, s) => a + s.requests, 0),
    relays: stats.reduce((a, s) => a + s.relays, 0),
    used: stats.filter((s) => s.requests > 0).length,
  };
}

describe("scale-out", () => {
  it("spreads a stream over its shards and counts exactly: receipts, duplicates across requests and shards", async () => {
    const t = await createTenant("shards-exact");
    const name = "page.view";
    const set = await configure(t, name, { scaling: { min_shards: 4 } });
    expect(set.scaling).toMatchObject({ shards: 4, min_shards: 4 });
    expect(set.scaling.decisions[0]).toMatchObject({
      from: 1,
      to: 4,
      reason: "the stream's shard bounds are now 4..16",
    });

    const now = Date.now();
    // The first request learns the shard count from the primary's reply; the rest go through the shards.
    const receipts: Receipt[] = [await post(t, [{ name, id: "first", ts: now, value: 1 }])];
    const sent = Array.from({ length: 24 }, (_, r) =>
      Array.from({ length: 10 }, (_, i) =>
        // Every third request repeats the previous request's ids (a client retry), and one event in five has no id.
        i % 5 === 4
          ? { name, ts: now, value: 1 }
          : { name, id: `e-${r % 3 === 2 ? r - 1 : r}-${i}`, ts: now, value: 1 },
      ),
    );
    receipts.push(...(await Promise.all(sent.map((events) => post(t, events)))));

    const accepted = receipts.reduce((a, r) => a + r.accepted, 0);
    const duplicates = receipts.reduce((a, r) => a + r.duplicates, 0);
    // 1 + 24 × 2 id-less; ids: 16 distinct requests' worth of 8 ids each; 8 repeated requests × 8 ids are duplicates.
    expect(accepted).toBe(1 + 48 + 16 * 8);
    expect(duplicates).toBe(8 * 8);
    const s = await snapshot(t, name);
    expect(s.windows["1h"].count).toBe(accepted);
    expect(s.windows["1h"].sum).toBe(accepted);
    expect(s.counters).toMatchObject({ accepted, duplicates });
    expect(s.scaling.shards).toBe(4);

    const totals = await shardTotals(t, name, 4);
    expect(totals.requests).toBeGreaterThanOrEqual(24 * 2); // each request splits over the shards its events map to
    expect(totals.used).toBe(4);
    expect(totals.relays).toBeLessThanOrEqual(totals.requests);
    // The primary's view of each shard's load matches what the shards relayed.
    expect(s.scaling.shard_load.map((l) => l.shard)).toEqual([1, 2, 3, 4]);
    expect(s.scaling.shard_load.reduce((a, l) => a + l.requests, 0)).toBe(totals.requests);
  });

  it("splits by itself under load, says why, and folds back once the load stays low", async () => {
    const t = await createTenant("shards-auto");
    const name = "beacon";
    await configure(t, name, { scaling: { target_requests_per_s: 5, max_shards: 8 } });
    let acknowledged = 0;
    let n = 0;
    // Waves of 12 single-event requests until the primary splits (each second carries well over 5).
    await vi.waitFor(
      async () => {
        const wave = await Promise.all(
          Array.from({ length: 12 }, () => post(t, [{ name, id: `b-${n++}`, ts: Date.now(), value: 2 }])),
        );
        acknowledged += wave.reduce((a, r) => a + r.accepted, 0);
        expect((await snapshot(t, name)).scaling.shards).toBeGreaterThan(1);
      },
      { timeout: 25_000, interval: 0 },
    );
    const split = (await snapshot(t, name)).scaling;
    const first = split.decisions[split.decisions.length - 1];
    expect(first.from).toBe(1);
    expect(first.reason).toMatch(/^at least \d+ requests\/s in each of the last 2 s > 5\/s per shard × 1$/);

    // The collector follows: the next requests go through the shards.
    const more = await Promise.all(
      Array.from({ length: 10 }, () => post(t, [{ name, id: `b-${n++}`, ts: Date.now(), value: 2 }])),
    );
    acknowledged += more.reduce((a, r) => a + r.accepted, 0);
    expect((await shardTotals(t, name, split.shards)).requests).toBeGreaterThan(0);

    // Quiet: the alarm folds the stream back to one shard (SHARD_FOLD_AFTER_MS is 1 s in the test config).
    await vi.waitFor(
      async () => {
        await runDurableObjectAlarm(primary(t, name));
        expect((await snapshot(t, name)).scaling.shards).toBe(1);
      },
      { timeout: 20_000, interval: 200 },
    );
    const folded = await snapshot(t, name);
    expect(folded.scaling.decisions[0]).toMatchObject({ to: 1 });
    expect(folded.scaling.decisions[0].reason).toMatch(/^at most \d+ requests\/s in every second of the last 1 s/);
    // Nothing lost or double-counted through the split and the fold.
    expect(folded.windows["1h"].count).toBe(acknowledged);
    expect(folded.windows["1h"].sum).toBe(2 * acknowledged);
    expect(acknowledged).toBe(n);
  });

  it("changes the shard count under load without losing or double-counting an event", async () => {
    const t = await createTenant("shards-reshard");
    const name = "checkout";
    const ids = new Set<string>();
    let sentEvents = 0;
    const receipts: Receipt[] = [];
    const load = (async () => {
      for (let r = 0; r < 40; r++) {
        const events = Array.from({ length: 5 }, (_, i) => {
          // Each request repeats one id of the request before (a retry that may now reach another shard).
          const id = i === 0 && r > 0 ? `c-${r - 1}-1` : `c-${r}-${i}`;
          ids.add(id);
          sentEvents++;
          return { name, id, ts: Date.now(), value: 3 };
        });
        receipts.push(...(await Promise.all([post(t, events), post(t, [{ name, ts: Date.now(), value: 3 }])])));
        sentEvents++;
      }
    })();
    let step = 0;
    for (const min_shards of [6, 2, 8, 1, 3, 1]) {
      // Each change lands while requests are in flight: after every few receipts.
      step++;
      await vi.waitFor(() => expect(receipts.length).toBeGreaterThanOrEqual(step * 10), {
        timeout: 20_000,
        interval: 5,
      });
      await configure(t, name, { scaling: { min_shards, max_shards: min_shards } });
    }
    await load;
    await configure(t, name, { scaling: {} });
    const accepted = receipts.reduce((a, r) => a + r.accepted, 0);
    const duplicates = receipts.reduce((a, r) => a + r.duplicates, 0);
    expect(accepted + duplicates).toBe(sentEvents);
    expect(accepted).toBe(ids.size + 40); // every distinct id once, and each id-less event
    const s = await snapshot(t, name);
    expect(s.windows["1h"].count).toBe(accepted);
    expect(s.windows["1h"].sum).toBe(3 * accepted);
    expect(s.counters).toMatchObject({ accepted, duplicates });
    expect(s.scaling.decisions.map((d) => d.to).slice(0, 6)).toEqual([1, 3, 1, 8, 2, 6]);
  });

  it("loses and double-counts nothing when every shard and the primary restart mid-change; failed events resent", async () => {
    const t = await createTenant("shards-restart");
    const name = "restarts";
    await configure(t, name, { scaling: { min_shards: 3, max_shards: 3 } });
    await post(t, [{ name, id: "warm", ts: Date.now(), value: 1 }]); // the collector learns N = 3
    const ids = new Set<string>(["warm"]);
    let accepted = 1;
    /** Sends events until none is unavailable: what failed is resent with the same ids. */
    const deliver = async (events: Array<{ name: string; id: string; ts: number; value: number }>) => {
      let pending = events;
      for (let attempt = 0; pending.length > 0; attempt++) {
        expect(attempt).toBeLessThan(20);
        const res = await sendJson(t.ingest, pending);
        if (res.status === 503) continue; // nothing acknowledged: resend all
        expect(res.status).toBe(200);
        const r = (await res.json()) as Receipt;
        accepted += r.accepted;
        const failed = new Set(r.rejected.filter((x) => x.code === "stream_unavailable").map((x) => x.index));
        pending = pending.filter((_, i) => failed.has(i));
      }
    };
    const batches = Array.from({ length: 30 }, (_, r) =>
      Array.from({ length: 4 }, (_, i) => {
        ids.add(`r-${r}-${i}`);
        return { name, id: `r-${r}-${i}`, ts: Date.now(), value: 1 };
      }),
    );
    const load = Promise.all(batches.map((b) => deliver(b)));
    // Mid-load: every object restarts (shards lose their queues, the primary reloads from storage), then N changes.
    await abortAllDurableObjects();
    await configure(t, name, { scaling: { min_shards: 5, max_shards: 5 } });
    await abortAllDurableObjects();
    await load;
    const s = await snapshot(t, name);
    expect(accepted).toBe(ids.size);
    expect(s.windows["1h"].count).toBe(ids.size);
    expect(s.counters.accepted).toBe(ids.size);
    expect(s.scaling.shards).toBe(5);
  });

  it("refuses at once what a shard cannot hold (SHARD_QUEUE_MAX_EVENTS), acknowledging none of it", async () => {
    const t = await createTenant("shards-full");
    const name = "flood";
    const events = Array.from({ length: 101 }, (_, i) => ({ id: `f-${i}`, ts: Date.now(), value: 1 }));
    const refused = await shardStub(t, name, 1).ingest({ tenant: t.tenantId, stream: name, events });
    expect(refused).toEqual({
      accepted: 0,
      duplicates: 0,
      rejected: events.map((_, i) => ({ i, code: "stream_unavailable" })),
    });
    expect(await primary(t, name).snapshot()).toBeNull();
    expect(((await shardStub(t, name, 1).stats()) as ShardStats).refused).toBe(1);
  });

  it("validates scaling settings, naming the field", async () => {
    const t = await createTenant("shards-invalid");
    for (const [scaling, field] of [
      [{ min_shards: 0 }, "scaling.min_shards"],
      [{ max_shards: 65 }, "scaling.max_shards"],
      [{ min_shards: 5, max_shards: 2 }, "scaling"],
      [{ target_requests_per_s: 1.5 }, "scaling.target_requests_per_s"],
      [{ shards: 3 }, "scaling"],
    ] as const) {
      const res = await SELF.fetch(`${BASE}/v1/streams/s/config`, {
        method: "PUT",
        headers: { authorization: `Bearer ${t.admin}`, "content-type": "application/json" },
        body: JSON.stringify({ scaling }),
      });
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("invalid_config");
      expect(body.error.message.startsWith(`${field}:`)).toBe(true);
    }
  });
});
