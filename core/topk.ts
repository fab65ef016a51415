/**
 * Frequent items: a Misra–Gries summary over non-negative weights (a count
 * of 1 per event, or an event's value for "top by sum"), mergeable without
 * losing its guarantee (Agarwal et al., "Mergeable Summaries", 2012).
 *
 * It keeps at most `k` items. Every estimate is a lower bound, and the true
 * weight of any item is at most its estimate plus `error`:
 *     estimate(x) ≤ true(x) ≤ estimate(x) + error,    error ≤ W / (k + 1)
 * where W is the total weight summarised; an item not kept has true weight
 * ≤ error. Merging adds the counters and then reduces to k again, so a
 * summary of many minutes keeps the same bound over their total.
 *
 * Bounded: ≤ 2k items in memory between reductions, ≤ k once reduced.
 */
import { ByteReader, ByteWriter } from "./bytes.ts";

export class FrequentItems {
  readonly k: number;
  readonly counters = new Map<string, number>();
  /** Total weight subtracted from counters so far: the error bound of every estimate. */
  error = 0;
  /** Total weight summarised. */
  total = 0;

  constructor(k: number) {
    this.k = k;
  }

  add(item: string, weight = 1): void {
    if (!(weight > 0)) return;
    this.total += weight;
    this.counters.set(item, (this.counters.get(item) ?? 0) + weight);
    if (this.counters.size > 2 * this.k) this.#reduce();
  }

  /** Adds another summary (its items and its error). */
  merge(other: FrequentItems): this {
    this.total += other.total;
    this.error += other.error;
    for (const [item, w] of other.counters) this.counters.set(item, (this.counters.get(item) ?? 0) + w);
    if (this.counters.size > this.k) this.#reduce();
    return this;
  }

  /** Keeps the k heaviest: subtracts the (k+1)-th largest weight from every counter and drops what reaches 0. */
  #reduce(): void {
    if (this.counters.size <= this.k) return;
    const weights = [...this.counters.values()].sort((a, b) => b - a);
    const cut = weights[this.k];
    this.error += cut;
    for (const [item, w] of this.counters) {
      if (w <= cut) this.counters.delete(item);
      else this.counters.set(item, w - cut);
    }
  }

  /** The heaviest items, with bounds: low = estimate, high = estimate + error. */
  top(n: number): Array<{ item: string; low: number; high: number }> {
    this.#reduce();
    return [...this.counters]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, n)
      .map(([item, w]) => ({ item, low: w, high: w + this.error }));
  }

  /** Bounds of one item's weight (an item not kept: 0 … error). */
  bounds(item: string): { low: number; high: number } {
    const w = this.counters.get(item) ?? 0;
    return { low: w, high: w + this.error };
  }

  encode(): Uint8Array {
    this.#reduce();
    const w = new ByteWriter();
    const enc = new TextEncoder();
    w.varint(this.k);
    w.f64(this.error);
    w.f64(this.total);
    w.varint(this.counters.size);
    for (const [item, weight] of this.counters) {
      const bytes = enc.encode(item);
      w.varint(bytes.length);
      w.raw(bytes);
      w.f64(weight);
    }
    return w.bytes();
  }

  static decode(bytes: Uint8Array | ArrayBuffer): FrequentItems {
    const r = new ByteReader(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
    const dec = new TextDecoder();
    const s = new FrequentItems(r.varint());
    s.error = r.f64();
    s.total = r.f64();
    const n = r.varint();
    for (let i = 0; i < n; i++) {
      const item = dec.decode(r.raw(r.varint()));
      s.counters.set(item, r.f64());
    }
    return s;
  }
}
