import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Accumulator } from "./aggregate.ts";
import {
  addEncoded,
  addValue,
  type Bins,
  binCount,
  decode,
  encode,
  freeze,
  keyOf,
  MAX_BINS,
  merge,
  nearestRank,
  quantile,
  valueOfKey,
} from "./ddsketch.ts";
import { seededRandom } from "./random.ts";

/** Nearest rank: the smallest value with at least q·n values at or below it. */
const exactQuantile = (sorted: number[], q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)];
const relErr = (got: number, want: number) => (want === 0 ? Math.abs(got) : Math.abs(got - want) / Math.abs(want));

function sketchOf(values: number[]) {
  const bins: Bins = new Map();
  for (const v of values) addValue(bins, v);
  return freeze(bins);
}

describe("DDSketch", () => {
  it("keeps key order equal to value order, across sign and zero", () => {
    const values = [-1e9, -5, -1, -0.001, 0, 1e-6, 0.5, 1, 2, 1000, 1e12];
    const keys = values.map(keyOf);
    expect([...keys].sort((a, b) => a - b)).toEqual(keys);
    for (const v of values) expect(relErr(valueOfKey(keyOf(v)), v)).toBeLessThanOrEqual(0.01);
  });

  it.each([
    ["uniform 1..1000", (r: () => number) => 1 + r() * 999],
    [
      "log-normal latencies",
      (r: () => number) => Math.exp(4 + 1.2 * Math.sqrt(-2 * Math.log(r() || 1e-12)) * Math.cos(2 * Math.PI * r())),
    ],
    ["pareto amounts", (r: () => number) => 10 / (1 - r()) ** 0.7],
    ["mixed sign", (r: () => number) => (r() - 0.3) * 2000],
  ])("answers p50/p90/p95/p99 within one percent relative error: %s", (_name, gen) => {
    const r = seededRandom(42);
    const values = Array.from({ length: 100_000 }, () => gen(r));
    const sorted = [...values].sort((a, b) => a - b);
    const s = sketchOf(values);
    for (const q of [0, 0.5, 0.9, 0.95, 0.99, 1]) {
      expect(relErr(quantile(s, q) as number, exactQuantile(sorted, q))).toBeLessThanOrEqual(0.01);
    }
  });

  it("quantile error stays within 1% for arbitrary inputs (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -1e9, max: 1e9, noNaN: true, noDefaultInfinity: true }), {
          minLength: 1,
          maxLength: 300,
        }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (values, q) => {
          const sorted = [...values].sort((a, b) => a - b);
          const want = exactQuantile(sorted, q);
          const got = quantile(sketchOf(values), q) as number;
          // Subnormal magnitudes share the zero-adjacent bins; compare absolutely there.
          return Math.abs(want) < 1e-300 ? Math.abs(got) < 1e-300 : relErr(got, want) <= 0.01 + 1e-12;
        },
      ),
      { numRuns: 300 },
    );
  });

  it("merging sketches equals sketching the union", () => {
    const r = seededRandom(7);
    const a = Array.from({ length: 5000 }, () => r() * 100);
    const b = Array.from({ length: 3000 }, () => 50 + r() * 500);
    const merged = merge([sketchOf(a), sketchOf(b)]);
    const whole = sketchOf([...a, ...b]);
    expect(Array.from(merged.keys)).toEqual(Array.from(whole.keys));
    expect(Array.from(merged.counts)).toEqual(Array.from(whole.counts));
  });

  it("round-trips through its byte encoding, including odd lengths", () => {
    for (const values of [[], [1], [1, 2, 3], [-4, 0, 5.5, 1e6, 1e6]]) {
      const s = sketchOf(values);
      const bytes = encode(s);
      // Storage may return a view at an unaligned offset.
      const shifted = new Uint8Array(bytes.length + 3);
      shifted.set(bytes, 3);
      const back = decode(shifted.subarray(3));
      expect(Array.from(back.keys)).toEqual(Array.from(s.keys));
      expect(Array.from(back.counts)).toEqual(Array.from(s.counts));
    }
  });

  it("returns undefined for an empty sketch or an out-of-range q", () => {
    expect(quantile(sketchOf([]), 0.5)).toBeUndefined();
    expect(quantile(sketchOf([1]), 1.5)).toBeUndefined();
  });

  it("never holds more than its bin cap, whatever the values (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -1e300, max: 1e300, noNaN: true, noDefaultInfinity: true }), { maxLength: 3000 }),
        fc.integer({ min: 1, max: 600 }),
        (values, cap) => {
          const bins: Bins = new Map();
          for (const v of values) addValue(bins, v);
          const s = freeze(bins, cap);
          const total = s.counts.reduce((a, b) => a + b, 0);
          return s.keys.length <= cap && total === values.length;
        },
      ),
      { numRuns: 200 },
    );
  });

  it("keeps every quantile at or above the collapsed range within 1 % (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 1e-6, max: 1e12, noNaN: true }), { minLength: 50, maxLength: 2000 }),
        fc.integer({ min: 8, max: 200 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (values, cap, q) => {
          const bins: Bins = new Map();
          for (const v of values) addValue(bins, v);
          const s = freeze(bins, cap);
          const sorted = [...values].sort((a, b) => a - b);
          const want = exactQuantile(sorted, q);
          if (keyOf(want) < s.keys[0]) return true; // in the collapsed low tail: no guarantee claimed
          return relErr(quantile(s, q) as number, want) <= 0.01 + 1e-12;
        },
      ),
      { numRuns: 300 },
    );
  });

  it("caps merged sketches at MAX_BINS", () => {
    const parts = Array.from({ length: 10 }, (_, p) =>
      sketchOf(Array.from({ length: 500 }, (_, i) => 1.03 ** (p * 500 + i))),
    );
    expect(merge(parts).keys.length).toBe(MAX_BINS);
  });

  it("encodes real latency data in about one byte per bin", () => {
    const r = seededRandom(3);
    const s = sketchOf(Array.from({ length: 100 }, () => Math.exp(4 + r())));
    expect(encode(s).length).toBeLessThanOrEqual(8 + s.keys.length * 1.3);
  });

  it("round-trips large counts, large key gaps and both signs", () => {
    const bins: Bins = new Map([
      [keyOf(-1e200), 3],
      [keyOf(-1), 2 ** 40],
      [keyOf(0), 9],
      [keyOf(1e-200), 1],
      [keyOf(1), 7],
      [keyOf(1.0202), 8],
      [keyOf(1e250), 2 ** 52],
    ]);
    const s = freeze(bins);
    const back = decode(encode(s));
    expect(Array.from(back.keys)).toEqual(Array.from(s.keys));
    expect(Array.from(back.counts)).toEqual(Array.from(s.counts));
    expect(binCount(encode(s))).toBe(s.keys.length);
    const again: Bins = new Map();
    addEncoded(again, encode(s));
    expect(again).toEqual(bins);
  });

  it("still reads sketches in the earlier fixed-width format (rows written by earlier releases)", () => {
    const s = sketchOf([-4, 0, 5.5, 1e6, 1e6, 42]);
    const n = s.keys.length;
    const pad = (n * 4) % 8 === 0 ? 0 : 4;
    const legacy = new ArrayBuffer(8 + n * 4 + pad + n * 8);
    new DataView(legacy).setUint32(0, n, true);
    new Int32Array(legacy, 8, n).set(s.keys);
    new Float64Array(legacy, 8 + n * 4 + pad, n).set(s.counts);
    const back = decode(new Uint8Array(legacy));
    expect(Array.from(back.keys)).toEqual(Array.from(s.keys));
    expect(Array.from(back.counts)).toEqual(Array.from(s.counts));
    expect(() => decode(new Uint8Array([1, 2, 3]))).toThrow();
  });
});

describe("percentiles of small samples (nearest rank, as PostgreSQL's percentile_disc)", () => {
  const figuresOf = (values: number[]) => {
    const acc = new Accumulator();
    for (const v of values) acc.addEvent(v);
    return acc.figures(60, 0);
  };
  it("p50 of two values is the smaller, p90/p95/p99 the larger, exactly", () => {
    expect(figuresOf([80, 129.5])).toMatchObject({ p50: 80, p90: 129.5, p95: 129.5, p99: 129.5 });
    expect(figuresOf([129.5, 80])).toMatchObject({ p50: 80, p99: 129.5 });
  });
  it("one value is every percentile; three values give the middle one for p50", () => {
    expect(figuresOf([42])).toMatchObject({ p50: 42, p90: 42, p95: 42, p99: 42 });
    const f = figuresOf([10, 20, 1000]);
    expect(Math.abs((f.p50 as number) - 20) / 20).toBeLessThanOrEqual(0.01);
    expect(f.p99).toBe(1000);
  });
  it("ranks: p of n values is the ceil(p·n)-th smallest", () => {
    expect([0, 0.5, 0.9, 0.99, 1].map((q) => nearestRank(q, 10))).toEqual([0, 4, 8, 9, 9]);
    expect(nearestRank(0.5, 1)).toBe(0);
    expect(nearestRank(0.95, 100)).toBe(94);
  });
});
