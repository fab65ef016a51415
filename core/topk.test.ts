import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { seededRandom } from "./random.ts";
import { FrequentItems } from "./topk.ts";

/** Zipf(s) over n values: a sampler by inverse CDF. */
function zipf(n: number, s: number, rand: () => number) {
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let i = 0; i < n; i++) {
    acc += 1 / (i + 1) ** s;
    cdf[i] = acc;
  }
  return () => {
    const u = rand() * acc;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return `v${lo}`;
  };
}

describe("frequent items (Misra–Gries, mergeable)", () => {
  it("bounds every item's true weight, whatever the stream and however it is split and merged (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 1, max: 50 })), { maxLength: 600 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 6 }),
        (items, k, parts) => {
          const truth = new Map<string, number>();
          const pieces = Array.from({ length: parts }, () => new FrequentItems(k));
          items.forEach(([id, w], i) => {
            const item = `i${id}`;
            truth.set(item, (truth.get(item) ?? 0) + w);
            pieces[i % parts].add(item, w);
          });
          const merged = pieces.reduce((a, b) => a.merge(b), new FrequentItems(k));
          const total = [...truth.values()].reduce((a, b) => a + b, 0);
          if (merged.error > total / (k + 1) + 1e-9) return false;
          for (const [item, w] of truth) {
            const b = merged.bounds(item);
            if (!(b.low <= w + 1e-9 && w <= b.high + 1e-9)) return false;
          }
          return merged.counters.size <= k;
        },
      ),
      { numRuns: 300 },
    );
  });

  it("finds the true top 10 of Zipf(1.1) over 100,000 values, merged from per-minute summaries, with bounds that hold", () => {
    let recall = 0;
    const trials = 5;
    for (let trial = 0; trial < trials; trial++) {
      const draw = zipf(100_000, 1.1, seededRandom(100 + trial));
      const truth = new Map<string, number>();
      const minutes: FrequentItems[] = [];
      for (let m = 0; m < 60; m++) {
        const fi = new FrequentItems(64);
        for (let i = 0; i < 3000; i++) {
          const v = draw();
          fi.add(v);
          truth.set(v, (truth.get(v) ?? 0) + 1);
        }
        minutes.push(FrequentItems.decode(fi.encode()));
      }
      const merged = minutes.reduce((a, b) => a.merge(b), new FrequentItems(64));
      const trueTop = [...truth]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 10)
        .map(([v]) => v);
      const got = merged.top(10);
      recall += got.filter((g) => trueTop.includes(g.item)).length / 10;
      for (const g of got) {
        const t = truth.get(g.item) ?? 0;
        expect(g.low).toBeLessThanOrEqual(t);
        expect(g.high).toBeGreaterThanOrEqual(t);
      }
    }
    expect(recall / trials).toBeGreaterThanOrEqual(0.99);
  });

  it("weights by value for top by sum, ignoring non-positive weights", () => {
    const fi = new FrequentItems(2);
    fi.add("a", 10);
    fi.add("b", 1);
    fi.add("c", -5);
    fi.add("a", 2.5);
    expect(fi.top(1)).toEqual([{ item: "a", low: 12.5, high: 12.5 }]);
    expect(fi.total).toBe(13.5);
  });

  it("round-trips through bytes, unicode included", () => {
    const fi = new FrequentItems(8);
    for (const [v, w] of [
      ["Zürich", 3],
      ["東京", 2],
      ["a\u0000b", 1],
    ] as const)
      fi.add(v, w);
    const back = FrequentItems.decode(fi.encode());
    expect(back.top(8)).toEqual(fi.top(8));
    expect(back.error).toBe(fi.error);
    expect(back.total).toBe(fi.total);
  });
});
