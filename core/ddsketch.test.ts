import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { addValue, type Bins, decode, encode, freeze, keyOf, merge, quantile, valueOfKey } from "./ddsketch";
import { seededRandom } from "./random";

const exactQuantile = (sorted: number[], q: number) => sorted[Math.floor(q * (sorted.length - 1))];
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
});
