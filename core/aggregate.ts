/**
 * The aggregate of a period (a second, a minute, a window, a history step),
 * declared once: the ring, minute blocks, history rows and rollups all use
 * this shape and this accumulator, so a conversion exists in one place.
 *
 * `sketch` is always the encoded DDSketch (core/ddsketch.ts): aggregates
 * merge exactly (counts and sums add, min/max compare, sketch bins add).
 */
import { ByteReader, ByteWriter } from "./bytes.ts";
import {
  addEncoded,
  addValue,
  type Bins,
  EMPTY_ENCODED,
  encodeBins,
  freeze,
  MAX_BINS,
  nearestRank,
  quantile,
} from "./ddsketch.ts";

export interface Aggregate {
  count: number;
  /** Events that carried a value; sum/min/max/sketch cover those only. */
  valueCount: number;
  sum: number;
  /** null when no event carried a value. */
  min: number | null;
  max: number | null;
  /** Encoded DDSketch of the values. */
  sketch: Uint8Array;
}

export const EMPTY_AGGREGATE: Aggregate = Object.freeze({
  count: 0,
  valueCount: 0,
  sum: 0,
  min: null,
  max: null,
  sketch: EMPTY_ENCODED,
}) as Aggregate;

/** The figures reported for any period: a live window or a history step. */
export interface Figures {
  count: number;
  rate: number;
  /** Aggregates over events that carry a value; null when none did. */
  value_count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  mean: number | null;
  p50: number | null;
  p90: number | null;
  p95: number | null;
  p99: number | null;
  distinct_users: number;
}

/** The reported percentiles, declared once. */
export const QUANTILES = { p50: 0.5, p90: 0.9, p95: 0.95, p99: 0.99 } as const;

/** Sums, extremes and sketch bins of many aggregates or values, merged exactly. */
export class Accumulator {
  count = 0;
  valueCount = 0;
  sum = 0;
  min = Number.POSITIVE_INFINITY;
  max = Number.NEGATIVE_INFINITY;
  bins: Bins = new Map();

  addEvent(value: number | undefined): void {
    this.count++;
    if (value === undefined) return;
    this.valueCount++;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
    addValue(this.bins, value);
  }

  add(a: Aggregate): this {
    this.count += a.count;
    if (a.valueCount === 0) return this;
    this.valueCount += a.valueCount;
    this.sum += a.sum;
    if (a.min !== null && a.min < this.min) this.min = a.min;
    if (a.max !== null && a.max > this.max) this.max = a.max;
    addEncoded(this.bins, a.sketch);
    return this;
  }

  /** Adds another accumulator's events (its bins are read, not shared). */
  merge(other: Accumulator): this {
    this.count += other.count;
    if (other.valueCount === 0) return this;
    this.valueCount += other.valueCount;
    this.sum += other.sum;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
    for (const [k, c] of other.bins) this.bins.set(k, (this.bins.get(k) ?? 0) + c);
    return this;
  }

  toAggregate(maxBins = MAX_BINS): Aggregate {
    const has = this.valueCount > 0;
    return {
      count: this.count,
      valueCount: this.valueCount,
      sum: has ? this.sum : 0,
      min: has ? this.min : null,
      max: has ? this.max : null,
      sketch: has ? encodeBins(this.bins, maxBins) : EMPTY_ENCODED,
    };
  }

  /**
   * The figures over `seconds`. Quantiles by nearest rank (core/ddsketch.ts): the first and last
   * ranks are the exact min and max, the others within 1 % and clamped to them.
   */
  figures(seconds: number, distinctUsers: number): Figures {
    const has = this.valueCount > 0;
    const sketch = has ? freeze(this.bins) : null;
    const n = this.valueCount;
    const q = (p: number): number | null => {
      if (sketch === null) return null;
      const rank = nearestRank(p, n);
      if (rank === 0) return this.min;
      if (rank === n - 1) return this.max;
      return Math.min(this.max, Math.max(this.min, quantile(sketch, p, n) as number));
    };
    return {
      count: this.count,
      rate: this.count / seconds,
      value_count: this.valueCount,
      sum: has ? this.sum : null,
      min: has ? this.min : null,
      max: has ? this.max : null,
      mean: has ? this.sum / this.valueCount : null,
      p50: q(QUANTILES.p50),
      p90: q(QUANTILES.p90),
      p95: q(QUANTILES.p95),
      p99: q(QUANTILES.p99),
      distinct_users: distinctUsers,
    };
  }
}

/** Merges aggregates into one. */
export function mergeAggregates(parts: Iterable<Aggregate>, maxBins = MAX_BINS): Aggregate {
  const acc = new Accumulator();
  for (const p of parts) acc.add(p);
  return acc.toAggregate(maxBins);
}

/** Figures of one aggregate. */
export function figuresOf(a: Aggregate, seconds: number, distinctUsers: number): Figures {
  return new Accumulator().add(a).figures(seconds, distinctUsers);
}

// ---------------------------------------------------------------------------
// Byte form of an aggregate, for packed blocks: varint count, varint
// valueCount, then (if valueCount > 0) a kind byte:
//   0  float64 sum, min, max, and the sketch with a varint length;
//   1  one float64: every value was this one, and sum = value × valueCount
//      exactly (the common case of a group that saw one event in a minute);
// the sketch of kind 1 is the single bin of that value.
// ---------------------------------------------------------------------------

const KIND_FULL = 0;
const KIND_UNIFORM = 1;

export function writeAggregate(w: ByteWriter, a: Aggregate): void {
  w.varint(a.count);
  w.varint(a.valueCount);
  if (a.valueCount === 0) return;
  const v = a.min as number;
  if (v === a.max && v * a.valueCount === a.sum) {
    w.byte(KIND_UNIFORM);
    w.f64(v);
    return;
  }
  w.byte(KIND_FULL);
  w.f64(a.sum);
  w.f64(v);
  w.f64(a.max as number);
  w.varint(a.sketch.length);
  w.raw(a.sketch);
}

/** Reads an aggregate; its sketch may be a view into the reader's bytes (copy it to keep it past them). */
export function readAggregate(r: ByteReader): Aggregate {
  const count = r.varint();
  const valueCount = r.varint();
  if (valueCount === 0) return { count, valueCount, sum: 0, min: null, max: null, sketch: EMPTY_ENCODED };
  const kind = r.byte();
  if (kind === KIND_UNIFORM) {
    const v = r.f64();
    const bins: Bins = new Map();
    addValue(bins, v, valueCount);
    return { count, valueCount, sum: v * valueCount, min: v, max: v, sketch: encodeBins(bins) };
  }
  if (kind !== KIND_FULL) throw new Error("unknown aggregate kind");
  const sum = r.f64();
  const min = r.f64();
  const max = r.f64();
  const sketch = r.raw(r.varint());
  return { count, valueCount, sum, min, max, sketch };
}

export function encodeAggregate(a: Aggregate): Uint8Array {
  const w = new ByteWriter();
  writeAggregate(w, a);
  return w.bytes();
}

export function decodeAggregate(bytes: Uint8Array | ArrayBuffer): Aggregate {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const a = readAggregate(new ByteReader(u8));
  return { ...a, sketch: a.sketch.slice() };
}
