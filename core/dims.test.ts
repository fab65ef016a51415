import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { nearestRank } from "./ddsketch.ts";
import { type DimEvent, DimState, distinctOf, OTHER, OTHER_VID, type SpanResult, tupleValue } from "./dims.ts";
import { seededRandom } from "./random.ts";
import { minuteOf, secondOf } from "./window.ts";

const NOW = Date.UTC(2026, 10, 22, 10, 30, 0, 0);
const M = minuteOf(secondOf(NOW));

const within = (got: number | null, want: number | null, rel: number) =>
  got === null || want === null ? got === want : Math.abs(got - want) <= rel * Math.abs(want) + 1e-9;

/** The groups of one dimension in a span result, by value. */
function byValue(d: DimState, r: SpanResult, name: string) {
  const dim = d.byName(name);
  if (!dim) throw new Error(`no dimension ${name}`);
  const out = new Map<string, { count: number; sum: number | null; p95: number | null; distinct: number }>();
  for (const [vid, g] of r.groups.get(dim.id) ?? []) {
    const f = g.acc.figures(60, distinctOf(g.users));
    out.set(d.valueOf(dim.id, vid) as string, { count: f.count, sum: f.sum, p95: f.p95, distinct: f.distinct_users });
  }
  return out;
}

const eventArb = fc.record(
  {
    ts: fc.integer({ min: NOW - 20 * 60_000, max: NOW + 30_000 }),
    value: fc.integer({ min: 1, max: 10_000 }),
    user: fc.integer({ min: 0, max: 40 }).map((u) => `u${u}`),
    dims: fc.record(
      { country: fc.constantFrom("DE", "FR", "US", "JP", "BR", "IN", "GB"), plan: fc.constantFrom("free", "pro") },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: ["ts", "dims"] },
);

describe("DimState against a brute-force oracle", () => {
  it("is exact per value and for __other__, and groups add up to every event carrying the key (property)", () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 300 }), fc.integer({ min: 1, max: 4 }), (events, budget) => {
        const d = new DimState({ maxKeys: 8, maxValues: budget });
        d.declareSets([["country", "plan"]]);
        for (let i = 0; i < events.length; i += 37) d.apply(events.slice(i, i + 37));
        // Pack some minutes, as housekeeping would, then send a late event into a packed one.
        for (const m of d.ended(NOW - 5 * 60_000)) d.pack(m, null, NOW);
        const from = M - 15;
        const r = d.span(
          from,
          M + 1,
          d.dims.map((x) => x.id),
        );
        for (const name of ["country", "country+plan"]) {
          const dim = d.byName(name);
          if (!dim) continue;
          const groups = byValue(d, r, name);
          const carrying = events.filter((e) => {
            const v = name === "country" ? e.dims.country : tupleValue(["country", "plan"], e.dims);
            return v !== undefined && v !== null && minuteOf(secondOf(e.ts)) >= from;
          });
          const total = [...groups.values()].reduce((a, g) => a + g.count, 0);
          expect(total).toBe(carrying.length);
          const sum = [...groups.values()].reduce((a, g) => a + (g.sum ?? 0), 0);
          expect(sum).toBe(carrying.reduce((a, e) => a + (e.value ?? 0), 0));
          for (const [value, g] of groups) {
            if (value === OTHER) continue;
            const mine = carrying.filter(
              (e) => (name === "country" ? e.dims.country : tupleValue(["country", "plan"], e.dims)) === value,
            );
            expect(g.count).toBe(mine.length);
            const vals = mine.flatMap((e) => (e.value === undefined ? [] : [e.value])).sort((a, b) => a - b);
            expect(within(g.p95, vals[nearestRank(0.95, vals.length)] ?? null, 0.01)).toBe(true);
            expect(g.distinct).toBe(new Set(mine.flatMap((e) => (e.user === undefined ? [] : [e.user]))).size);
          }
          expect(d.dicts.get(dim.id)?.size).toBeLessThanOrEqual(budget);
        }
      }),
      { numRuns: 120 },
    );
  });

  it("counts distinct users per group within 2 % from 1,000 users up", () => {
    const d = new DimState({ maxKeys: 4, maxValues: 100 });
    const events: DimEvent[] = [];
    for (let i = 0; i < 60_000; i++) {
      events.push({ ts: NOW - (i % 600) * 1000, user: `user-${i % 20_000}`, dims: { tier: `t${i % 3}` } });
    }
    for (let i = 0; i < events.length; i += 1000) d.apply(events.slice(i, i + 1000));
    for (const m of d.ended(NOW)) d.pack(m, null, NOW);
    const groups = byValue(d, d.span(M - 15, M, [0]), "tier");
    for (let t = 0; t < 3; t++) {
      const truth = new Set(events.filter((e) => e.dims?.tier === `t${t}`).map((e) => e.user)).size;
      expect(truth).toBeGreaterThan(1000);
      const got = groups.get(`t${t}`)?.distinct as number;
      expect(Math.abs(got - truth) / truth).toBeLessThanOrEqual(0.02);
    }
  });

  it("folds values beyond the budget into __other__ and summarises them with bounds that hold", () => {
    const d = new DimState({ maxKeys: 4, maxValues: 3 });
    const rand = seededRandom(5);
    const truth = new Map<string, number>();
    const events: DimEvent[] = [];
    for (let i = 0; i < 5000; i++) {
      const product = `p${Math.floor(rand() ** 3 * 200)}`;
      truth.set(product, (truth.get(product) ?? 0) + 1);
      events.push({ ts: NOW - (i % 300) * 1000, value: 2, dims: { product } });
    }
    const res = d.apply(events);
    expect(res.newValues).toHaveLength(3);
    const r = d.span(M - 15, M, [0]);
    const groups = byValue(d, r, "product");
    expect(groups.size).toBe(4);
    const other = groups.get(OTHER)?.count as number;
    expect(res.folded).toBe(other);
    expect([...groups.values()].reduce((a, g) => a + g.count, 0)).toBe(5000);
    const overflow = r.overflow.get(0);
    if (!overflow) throw new Error("no overflow summary");
    for (const t of overflow.count.top(10)) {
      const real = truth.get(t.item) as number;
      expect(t.low).toBeLessThanOrEqual(real);
      expect(t.high).toBeGreaterThanOrEqual(real);
    }
    for (const t of overflow.sum.top(5)) expect(t.low).toBeLessThanOrEqual(2 * (truth.get(t.item) as number));
  });

  it("rebuilds the same state from its log and blocks (wake-up), and packs late events into their minute", () => {
    const d = new DimState({ maxKeys: 4, maxValues: 50 });
    const rand = seededRandom(9);
    const events: DimEvent[] = Array.from({ length: 2000 }, () => ({
      ts: NOW - Math.floor(rand() * 10 * 60_000),
      value: Math.round(rand() * 1000),
      user: `u${Math.floor(rand() * 300)}`,
      dims: { country: `c${Math.floor(rand() * 8)}`, device: rand() < 0.5 ? "ios" : "web" },
    }));
    const logs: Array<[number, Uint8Array]> = [];
    const blocks = new Map<number, Uint8Array>();
    const dicts: Array<{ dim: number; vid: number; value: string; minute: number }> = [];
    for (let i = 0; i < events.length; i += 100) {
      const res = d.apply(events.slice(i, i + 100));
      for (const [m, bytes] of res.log) logs.push([m, bytes]);
      dicts.push(...res.newValues);
    }
    for (const m of d.ended(NOW - 4 * 60_000)) {
      blocks.set(m, d.pack(m, null, NOW));
      for (let i = logs.length - 1; i >= 0; i--) if (logs[i][0] === m) logs.splice(i, 1);
    }
    const copy = new DimState({ maxKeys: 4, maxValues: 50 });
    for (const dim of d.dims) copy.loadDimension(dim);
    for (const v of dicts) copy.dicts.get(v.dim)?.load(v.vid, v.value, v.minute);
    for (const [m, b] of blocks) copy.hot.set(m, b);
    for (const [m, bytes] of logs) copy.replay(m, bytes);
    const ids = d.dims.map((x) => x.id);
    const a = d.span(M - 15, M, ids);
    const b = copy.span(M - 15, M, ids);
    for (const name of ["country", "device"]) expect(byValue(copy, b, name)).toEqual(byValue(d, a, name));
    // A late event into a packed minute stays exact after packing again.
    const m0 = [...blocks.keys()][0];
    d.apply([{ ts: m0 * 60_000 + 5000, value: 7, dims: { country: "c1" } }]);
    d.pack(m0, d.hot.get(m0) ?? null, NOW);
    const after = byValue(d, d.span(m0, m0, ids), "country");
    const before = byValue(copy, copy.span(m0, m0, ids), "country");
    expect(after.get("c1")?.count).toBe((before.get("c1")?.count ?? 0) + 1);
  });

  it("caps keys per stream and lets values go once they leave the ring, reusing their slots", () => {
    const d = new DimState({ maxKeys: 2, maxValues: 2 });
    const res = d.apply([{ ts: NOW, dims: { a: "1", b: "1", c: "1" } }]);
    expect(res.droppedKeys).toBe(1);
    expect(d.byKey("c")).toBeUndefined();
    d.apply([{ ts: NOW - 50 * 60_000, dims: { a: "old" } }]);
    expect(d.dicts.get(0)?.size).toBe(2);
    expect(d.apply([{ ts: NOW, dims: { a: "new" } }]).folded).toBe(1);
    const gone = d.expire(NOW, M - 45);
    expect(gone).toEqual([{ dim: 0, vid: 2 }]);
    const again = d.apply([{ ts: NOW, dims: { a: "newer" } }]);
    expect(again.newValues).toEqual([{ dim: 0, vid: 2, value: "newer", minute: M }]);
    expect(OTHER_VID).toBe(0);
  });
});
