import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeAggregate, encodeAggregate } from "./aggregate.ts";
import { binCount } from "./ddsketch.ts";
import { hashUser, type PeriodHll } from "./hll.ts";
import { seededRandom } from "./random.ts";
import {
  expiryCutoff,
  MINUTE_BLOCK_MAX_BYTES,
  minuteOf,
  SECOND_MAX_BINS,
  StreamWindows,
  secondOf,
  WINDOW_NAMES,
  WINDOWS,
  type WindowEvent,
} from "./window.ts";

const NOW = Date.UTC(2026, 10, 22, 10, 0, 0, 500);

/** Brute force: the window's events, then the aggregates computed directly. */
function oracle(events: WindowEvent[], seconds: number, nowMs: number) {
  const start = secondOf(nowMs) - seconds + 1;
  const inWindow = events.filter((e) => secondOf(e.ts) >= start);
  const values = inWindow.flatMap((e) => (e.value === undefined ? [] : [e.value])).sort((a, b) => a - b);
  const users = new Set(inWindow.flatMap((e) => (e.user === undefined ? [] : [e.user])));
  // Nearest rank: the smallest value with at least p·n values at or below it.
  const q = (p: number) => (values.length ? values[Math.max(0, Math.ceil(p * values.length) - 1)] : null);
  return {
    count: inWindow.length,
    sum: values.reduce((a, b) => a + b, 0),
    min: values.length ? values[0] : null,
    max: values.length ? values[values.length - 1] : null,
    p50: q(0.5),
    p90: q(0.9),
    p95: q(0.95),
    p99: q(0.99),
    distinct: users.size,
  };
}

const within = (got: number | null, want: number | null, rel: number) =>
  got === null || want === null ? got === want : Math.abs(got - want) <= rel * Math.abs(want) + 1e-9;

const eventArb = fc.record(
  {
    ts: fc.integer({ min: NOW - 3_600_000, max: NOW + 300_000 }),
    value: fc.oneof(fc.integer({ min: -1000, max: 100_000 }), fc.double({ min: 0.001, max: 1e6, noNaN: true })),
    user: fc.integer({ min: 0, max: 300 }).map((u) => `user-${u}`),
  },
  { requiredKeys: ["ts"] },
);

describe("StreamWindows against a brute-force oracle", () => {
  it("matches every window's aggregates for random, out-of-order, late and early events (property)", () => {
    fc.assert(
      fc.property(
        fc.array(eventArb, { maxLength: 400 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 120_000 }),
        (events, batches, advance) => {
          const w = new StreamWindows();
          const size = Math.ceil(events.length / batches) || 1;
          for (let i = 0; i < events.length; i += size) w.apply(events.slice(i, i + size));
          const now = NOW + advance;
          for (const name of WINDOW_NAMES) {
            const got = w.aggregates(name, now);
            const want = oracle(events, WINDOWS[name], now);
            expect(got.count).toBe(want.count);
            expect(got.sum).toBeCloseTo(want.sum, 4);
            expect(got.min).toBe(want.min);
            expect(got.max).toBe(want.max);
            expect(got.rate).toBeCloseTo(want.count / WINDOWS[name], 10);
            for (const p of ["p50", "p90", "p95", "p99"] as const) {
              expect(within(got[p], want[p], 0.01), `${name} ${p}: ${got[p]} vs ${want[p]}`).toBe(true);
            }
            expect(Math.abs(got.distinct_users - want.distinct)).toBeLessThanOrEqual(Math.max(1, 0.02 * want.distinct));
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it("reports distinct users within 2% and p95 within 1% at scale", () => {
    const w = new StreamWindows();
    const events: WindowEvent[] = [];
    for (let i = 0; i < 120_000; i++) {
      events.push({ ts: NOW - (i % 3000) * 1000, value: 5 + ((i * 7919) % 10_000) / 10, user: `u${i % 50_000}` });
    }
    for (let i = 0; i < events.length; i += 1000) w.apply(events.slice(i, i + 1000));
    for (const name of WINDOW_NAMES) {
      const got = w.aggregates(name, NOW);
      const want = oracle(events, WINDOWS[name], NOW);
      expect(got.count).toBe(want.count);
      expect(Math.abs(got.distinct_users - want.distinct) / want.distinct).toBeLessThanOrEqual(0.02);
      expect(within(got.p95, want.p95, 0.01)).toBe(true);
    }
  });

  it("leaves value aggregates null when no event carries a value", () => {
    const w = new StreamWindows();
    w.apply([{ ts: NOW }, { ts: NOW - 1000, user: "a" }]);
    const a = w.aggregates("1m", NOW);
    // Regression: sum used to be 0 here while min, mean and the percentiles were null.
    expect(a).toMatchObject({
      count: 2,
      value_count: 0,
      sum: null,
      min: null,
      max: null,
      mean: null,
      p95: null,
      distinct_users: 1,
    });
  });

  it("slides: events leave each window exactly when they fall out of it", () => {
    const w = new StreamWindows();
    w.apply([{ ts: NOW, value: 1, user: "a" }]);
    expect(w.aggregates("1m", NOW + 59_000).count).toBe(1);
    expect(w.aggregates("1m", NOW + 60_000).count).toBe(0);
    expect(w.aggregates("1m", NOW + 60_000).distinct_users).toBe(0);
    expect(w.aggregates("5m", NOW + 60_000).count).toBe(1);
  });

  it("expires whole minutes older than the longest window, and reports what to delete", () => {
    const w = new StreamWindows();
    w.apply([
      { ts: NOW - 3_500_000, value: 1, user: "old" },
      { ts: NOW, value: 2, user: "new" },
    ]);
    const later = NOW + 200_000;
    const before = w.aggregates("1h", later);
    const gone = w.expire(later);
    expect(gone.minutes).toEqual([{ minute: minuteOf(secondOf(NOW - 3_500_000)), open: [secondOf(NOW - 3_500_000)] }]);
    expect(gone.registers).toEqual([hashUser("old").reg]);
    expect(w.aggregates("1h", later)).toEqual(before);
    expect(w.minuteCount).toBe(1);
  });

  it("never expires part of a minute: a late event still finds its whole minute", () => {
    const w = new StreamWindows();
    const now = Date.UTC(2026, 10, 22, 10, 0, 30, 0); // 30 s into a minute
    const edge = now - 3_600_000; // the oldest admissible instant, mid-minute
    w.apply([{ ts: edge - 20_000, value: 1 }]); // same minute, 20 s earlier: already too late
    w.expire(now);
    expect(w.minuteCount).toBe(1);
    w.apply([{ ts: edge, value: 2 }]);
    expect(w.minute(minuteOf(secondOf(edge)))).toMatchObject({ count: 2, sum: 3 });
    expect(expiryCutoff(now) % 60).toBe(0);
  });

  it("keeps each minute's full aggregate and distinct users", () => {
    const w = new StreamWindows({ minuteUsers: true });
    const m0 = minuteOf(secondOf(NOW));
    const events: WindowEvent[] = [];
    for (let i = 0; i < 600; i++) events.push({ ts: NOW - 60_000 + i * 200, value: i, user: `u${i % 40}` });
    const r = w.apply(events);
    expect([...r.minutes].sort()).toEqual([m0 - 1, m0, m0 + 1].filter((m) => r.minutes.has(m)));
    let total = 0;
    for (const m of r.minutes) {
      const inMinute = events.filter((e) => minuteOf(secondOf(e.ts)) === m);
      const b = w.minute(m);
      expect(b.count).toBe(inMinute.length);
      expect(b.sum).toBe(inMinute.reduce((a, e) => a + (e.value as number), 0));
      const users = new Set(inMinute.map((e) => e.user)).size;
      expect(Math.abs((w.minuteUsers.get(m) as PeriodHll).estimate() - users)).toBeLessThanOrEqual(1);
      total += b.count;
    }
    expect(total).toBe(600);
  });

  it("reports which seconds and registers a batch changed", () => {
    const w = new StreamWindows();
    const r1 = w.apply([{ ts: NOW, user: "a" }, { ts: NOW + 1000 }]);
    expect([...r1.seconds].sort()).toEqual([secondOf(NOW), secondOf(NOW) + 1]);
    expect([...r1.registers]).toEqual([hashUser("a").reg]);
    const r2 = w.apply([{ ts: NOW - 5000, user: "a" }]);
    // An earlier sighting of the same user is dominated: the register does not change.
    expect([...r2.registers]).toEqual([]);
  });
});

describe("StreamWindows state: packed minutes, storage round-trips, bounds", () => {
  const hour = (n: number, seed: number): WindowEvent[] => {
    const r = seededRandom(seed);
    return Array.from({ length: n }, () => ({
      ts: NOW - Math.floor(r() * 3_600_000),
      value: Math.round(Math.exp(4 + r() * 3) * 100) / 100,
      user: `u${Math.floor(r() * 2000)}`,
    }));
  };

  it("answers the same after ended minutes are packed, and after late events repack them", () => {
    const events = hour(20_000, 3);
    const w = new StreamWindows();
    w.apply(events);
    const before = WINDOW_NAMES.map((n) => w.aggregates(n, NOW));
    const packed = w.packEnded(NOW);
    expect(packed.length).toBeGreaterThan(55);
    for (const m of packed) expect(w.minuteBlock(m)).not.toBeNull();
    expect(WINDOW_NAMES.map((n) => w.aggregates(n, NOW))).toEqual(before);
    // A late event into a packed minute: the block is rewritten, the figures move exactly.
    const late = { ts: NOW - 1_800_000, value: 12_345, user: "late-user" };
    const r = w.apply([late]);
    expect([...r.blocks]).toEqual([minuteOf(secondOf(late.ts))]);
    expect([...r.seconds]).toEqual([]);
    const all = [...events, late];
    for (const name of WINDOW_NAMES) {
      const got = w.aggregates(name, NOW);
      const want = oracle(all, WINDOWS[name], NOW);
      expect(got.count).toBe(want.count);
      expect(got.max).toBe(want.max);
      expect(within(got.p99, want.p99, 0.01)).toBe(true);
    }
  });

  it("restores from its stored rows (open seconds, packed blocks, HLL registers) to identical answers", () => {
    const events = hour(10_000, 4);
    const w = new StreamWindows();
    w.apply(events);
    w.packEnded(NOW - 120_000); // all but the last two minutes packed
    const copy = new StreamWindows();
    for (let m = minuteOf(secondOf(NOW - 3_700_000)); m <= minuteOf(secondOf(NOW)); m++) {
      const block = w.minuteBlock(m);
      if (block) copy.loadMinute(m, block.slice());
      for (let s = m * 60; s < m * 60 + 60; s++) {
        const rec = w.secondRecord(s);
        if (rec) copy.loadSecond(s, decodeAggregate(encodeAggregate(rec)));
      }
    }
    for (const [reg] of w.hll.lists()) copy.hll.loadRegister(reg, w.hll.encodeRegister(reg) as Uint8Array);
    for (const name of WINDOW_NAMES) expect(copy.aggregates(name, NOW)).toEqual(w.aggregates(name, NOW));
  });

  it("stays bounded under crafted values: ≤ SECOND_MAX_BINS bins per second, ≤ MINUTE_BLOCK_MAX_BYTES per minute", () => {
    // Values spread over the whole float range, thousands of distinct bins in every second.
    const r = seededRandom(9);
    const w = new StreamWindows();
    const minutes = 3;
    for (let s = 0; s < minutes * 60; s++) {
      const batch: WindowEvent[] = [];
      for (let i = 0; i < 4000; i++) {
        const mag = 10 ** (r() * 200 - 100);
        batch.push({ ts: NOW - 300_000 + s * 1000, value: r() < 0.5 ? -mag : mag });
      }
      w.apply(batch);
      const rec = w.secondRecord(secondOf(NOW - 300_000 + s * 1000)) as NonNullable<
        ReturnType<StreamWindows["secondRecord"]>
      >;
      expect(binCount(rec.sketch)).toBeLessThanOrEqual(SECOND_MAX_BINS);
    }
    for (const m of w.packEnded(NOW)) {
      expect((w.minuteBlock(m) as Uint8Array).length).toBeLessThanOrEqual(MINUTE_BLOCK_MAX_BYTES);
    }
    // Counts, sums and extremes stay exact; the high quantiles keep their guarantee.
    const got = w.aggregates("15m", NOW);
    expect(got.count).toBe(minutes * 60 * 4000);
    expect(got.p99).not.toBeNull();
  });

  it("keeps the high quantiles exact to 1 % when the lowest bins collapse", () => {
    // One second with 3,000 values spread over ~2,600 bins: far beyond SECOND_MAX_BINS.
    const values = Array.from({ length: 3000 }, (_, i) => 1.0202 ** i);
    const w = new StreamWindows();
    w.apply(values.map((value) => ({ ts: NOW, value })));
    const got = w.aggregates("1m", NOW);
    const sorted = [...values].sort((a, b) => a - b);
    for (const [p, q] of [
      ["p90", 0.9],
      ["p95", 0.95],
      ["p99", 0.99],
    ] as const) {
      expect(within(got[p], sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)], 0.01)).toBe(true);
    }
    expect(got.min).toBe(sorted[0]);
    expect(got.max).toBe(sorted[sorted.length - 1]);
  });

  it("knows when the figures next change without new events", () => {
    const w = new StreamWindows();
    expect(w.nextChangeAfter(NOW)).toBeNull();
    w.apply([{ ts: NOW - 10_000 }]);
    // The event at second s leaves the 1m window at second s + 60.
    expect(w.nextChangeAfter(NOW)).toBe((secondOf(NOW - 10_000) + 60) * 1000);
    expect(w.aggregates("1m", (secondOf(NOW - 10_000) + 60) * 1000).count).toBe(0);
    expect(w.aggregates("1m", (secondOf(NOW - 10_000) + 59) * 1000).count).toBe(1);
    // After it left the 1m window, the next change is its exit from 5m.
    expect(w.nextChangeAfter((secondOf(NOW - 10_000) + 60) * 1000)).toBe((secondOf(NOW - 10_000) + 300) * 1000);
  });
});
