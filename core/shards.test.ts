import { describe, expect, it } from "vitest";
import {
  MAX_SHARDS,
  ScalePolicy,
  type ScalingSettings,
  ShardLoads,
  SPLIT_SECONDS,
  shardName,
  shardOf,
} from "./shards.ts";

const settings = (over: Partial<ScalingSettings> = {}): ScalingSettings => ({
  targetPerShard: 100,
  minShards: 1,
  maxShards: 16,
  foldAfterMs: 60_000,
  ...over,
});

/** Feeds `perSecond` requests in each second of [fromS, toS), spread over the second. */
function feed(p: ScalePolicy, fromS: number, toS: number, perSecond: number): void {
  for (let s = fromS; s < toS; s++) {
    for (let i = 0; i < perSecond; i++) p.record(s * 1000 + Math.floor((i * 1000) / Math.max(1, perSecond)), 1);
  }
}

describe("shardName", () => {
  it("names the primary tenant/stream and shard k tenant/stream#k", () => {
    expect(shardName("t1", "page.view", 0)).toBe("t1/page.view");
    expect(shardName("t1", "page.view", 3)).toBe("t1/page.view#3");
  });
});

describe("shardOf", () => {
  it("is 0 (the primary) for one shard, and 1..n otherwise", () => {
    expect(shardOf("a", 1, 7)).toBe(0);
    for (let i = 0; i < 1000; i++) {
      const k = shardOf(`id-${i}`, 5, i);
      expect(k).toBeGreaterThanOrEqual(1);
      expect(k).toBeLessThanOrEqual(5);
    }
  });

  it("sends the same id to the same shard whatever the rotation (a retry meets its first copy)", () => {
    for (let i = 0; i < 200; i++) expect(shardOf(`order-${i}`, 8, 0)).toBe(shardOf(`order-${i}`, 8, 12345 + i));
  });

  it("spreads ids and id-less events evenly", () => {
    const n = 8;
    const byId = new Array(n + 1).fill(0);
    const byTurn = new Array(n + 1).fill(0);
    for (let i = 0; i < 80_000; i++) {
      byId[shardOf(`evt_${i}`, n, 0)]++;
      byTurn[shardOf(undefined, n, i)]++;
    }
    for (let k = 1; k <= n; k++) {
      expect(Math.abs(byId[k] - 10_000)).toBeLessThan(500);
      expect(byTurn[k]).toBe(10_000);
    }
  });
});

describe("ScalePolicy", () => {
  it("stays at one shard while the load fits it", () => {
    const p = new ScalePolicy(settings());
    feed(p, 1000, 1010, 90);
    expect(p.rate(1010_000)).toBe(90);
    expect(p.decide(1010_000, 1, 0)).toBeNull();
  });

  it("splits after SPLIT_SECONDS complete seconds above the target, to what the load needs (at least double)", () => {
    const p = new ScalePolicy(settings());
    feed(p, 1000, 1010, 50);
    // A 10× step: 500 requests/s. One second of it is not enough to judge...
    feed(p, 1010, 1011, 500);
    expect(p.decide(1011_000, 1, 0)).toBeNull();
    // ...two are.
    feed(p, 1011, 1012, 500);
    const d = p.decide(1012_000, 1, 0);
    expect(d).toEqual({
      at: 1012_000,
      from: 1,
      to: 5,
      reason: `at least 500 requests/s in each of the last ${SPLIT_SECONDS} s > 100/s per shard × 1`,
    });
    // At 5 shards the load fits: no further change.
    feed(p, 1012, 1014, 500);
    expect(p.decide(1014_000, 5, 1012_000)).toBeNull();
  });

  it("at least doubles, and never exceeds max_shards or MAX_SHARDS", () => {
    const p = new ScalePolicy(settings({ maxShards: 6 }));
    feed(p, 0, 2, 350);
    expect(p.decide(2000, 3, 0)?.to).toBe(6);
    const q = new ScalePolicy(settings({ maxShards: 1000, targetPerShard: 1 }));
    feed(q, 0, 2, 500);
    expect(q.decide(2000, 1, 0)?.to).toBe(MAX_SHARDS);
    // At the cap, more load changes nothing.
    expect(q.decide(2000, MAX_SHARDS, 0)).toBeNull();
  });

  it("folds back only after a whole fold window at low load, to what its busiest second needed", () => {
    const p = new ScalePolicy(settings({ foldAfterMs: 30_000 }));
    feed(p, 0, 10, 800); // split to 8 at t = 10 s
    const split = p.decide(10_000, 1, 0);
    expect(split?.to).toBe(8);
    feed(p, 10, 20, 800);
    feed(p, 20, 60, 150); // load drops to 150/s: 2 shards would do
    // Not before the fold window has passed since the last decision and been low throughout.
    expect(p.decide(39_000, 8, 10_000)).toBeNull();
    expect(p.decide(45_000, 8, 10_000)).toBeNull(); // the window [15 s, 45 s) still holds 800/s seconds
    const fold = p.decide(51_000, 8, 10_000);
    expect(fold).toEqual({
      at: 51_000,
      from: 8,
      to: 2,
      reason: "at most 150 requests/s in every second of the last 30 s (100/s per shard)",
    });
    // Traffic stops: from 2 shards down to 1 once a full window has passed since that decision.
    expect(p.decide(70_000, 2, 51_000)).toBeNull();
    expect(p.decide(81_000, 2, 51_000)).toBeNull(); // the window [51 s, 81 s) still holds 150/s seconds
    expect(p.decide(91_000, 2, 51_000)?.to).toBe(1);
  });

  it("does not flap: a load between the fold and split points keeps the shard count", () => {
    const p = new ScalePolicy(settings({ foldAfterMs: 10_000 }));
    let shards = 1;
    let since = 0;
    const decisions: number[] = [];
    for (let s = 0; s < 300; s++) {
      // Oscillates between 250 and 390 requests/s: splits once, to what the sustained 250/s needs.
      feed(p, s, s + 1, s % 2 ? 250 : 390);
      const d = p.decide((s + 1) * 1000, shards, since);
      if (d) {
        decisions.push(d.to);
        shards = d.to;
        since = d.at;
      }
    }
    expect(decisions).toEqual([3]);
  });

  it("applies new bounds at once, naming them", () => {
    const p = new ScalePolicy(settings({ minShards: 4 }));
    expect(p.decide(5000, 1, 0)).toEqual({
      at: 5000,
      from: 1,
      to: 4,
      reason: "the stream's shard bounds are now 4..16",
    });
    p.settings = settings({ maxShards: 2 });
    expect(p.decide(6000, 4, 5000)?.to).toBe(2);
  });

  it("keeps a bounded history: a clock far ahead or behind does not grow or corrupt it", () => {
    const p = new ScalePolicy(settings());
    feed(p, 1000, 1002, 300);
    p.record(100_000, 5); // older than the kept seconds: ignored
    expect(p.rate(1002_000)).toBe(300);
    expect(p.sustained(1002_000)).toBe(300);
    p.record(10_000_000_000, 1); // far ahead: the old seconds are gone
    expect(p.rate(10_000_002_000)).toBe(0.5);
  });
});

describe("ShardLoads", () => {
  it("reports each shard's requests per second over the last complete seconds, and its total", () => {
    const l = new ShardLoads();
    for (let s = 100; s < 110; s++) {
      l.record(1, s * 1000 + 10, 30);
      l.record(2, s * 1000 + 500, 10);
    }
    l.record(2, 110_200, 99); // the current second: in the total, not yet in the rate
    expect(l.loads(110_500)).toEqual([
      { shard: 1, requests_per_s: 30, requests: 300 },
      { shard: 2, requests_per_s: 10, requests: 199 },
    ]);
    // Seconds slide out of the rate; the totals stay until the layout changes.
    expect(l.loads(125_000)).toEqual([
      { shard: 1, requests_per_s: 0, requests: 300 },
      { shard: 2, requests_per_s: 0, requests: 199 },
    ]);
    l.reset();
    expect(l.loads(125_000)).toEqual([]);
  });

  it("ignores shard numbers outside 1..MAX_SHARDS (bounded whatever a caller sends)", () => {
    const l = new ShardLoads();
    for (const k of [0, -1, 1.5, MAX_SHARDS + 1, Number.NaN]) l.record(k, 1000, 1);
    l.record(MAX_SHARDS, 1000, 1);
    expect(l.loads(2000).map((x) => x.shard)).toEqual([MAX_SHARDS]);
  });
});
