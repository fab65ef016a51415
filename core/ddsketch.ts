/**
 * DDSketch (Masson, Rim, Lee; VLDB 2019) with 1 % relative accuracy.
 *
 * Values map to logarithmic bins; a quantile comes back within 1 % of the
 * exact value at that rank. Positive, negative and zero values all live in
 * one sorted key space (key order = value order), so a sketch is a sorted
 * list of (key, count) pairs: compact in memory, cheap to merge, and stored
 * as-is. Bins are bounded by the float range (~72k keys in the worst case,
 * a few hundred for real latency data).
 */
export const RELATIVE_ACCURACY = 0.01;
const GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY);
const LN_GAMMA = Math.log(GAMMA);
/** Offsets that place negative values, zero and positive values in one ordered key space. */
const NEG_BASE = -200_000;
const ZERO_KEY = -100_000;

function indexOf(magnitude: number): number {
  return Math.ceil(Math.log(magnitude) / LN_GAMMA);
}

function valueOfIndex(index: number): number {
  return (2 * GAMMA ** index) / (GAMMA + 1);
}

export function keyOf(value: number): number {
  if (value > 0) return indexOf(value);
  if (value < 0) return NEG_BASE - indexOf(-value);
  return ZERO_KEY;
}

export function valueOfKey(key: number): number {
  if (key === ZERO_KEY) return 0;
  if (key < (NEG_BASE + ZERO_KEY) / 2) return -valueOfIndex(NEG_BASE - key);
  return valueOfIndex(key);
}

/** Key → count, for building a sketch. */
export type Bins = Map<number, number>;

/** A frozen sketch: keys ascending, counts aligned. */
export interface Sketch {
  keys: Int32Array;
  counts: Float64Array;
}

export const EMPTY_SKETCH: Sketch = { keys: new Int32Array(0), counts: new Float64Array(0) };

export function addValue(bins: Bins, value: number, count = 1): void {
  const k = keyOf(value);
  bins.set(k, (bins.get(k) ?? 0) + count);
}

export function addSketch(bins: Bins, s: Sketch): void {
  for (let i = 0; i < s.keys.length; i++) bins.set(s.keys[i], (bins.get(s.keys[i]) ?? 0) + s.counts[i]);
}

export function freeze(bins: Bins): Sketch {
  const keys = Int32Array.from(bins.keys()).sort();
  const counts = new Float64Array(keys.length);
  for (let i = 0; i < keys.length; i++) counts[i] = bins.get(keys[i]) ?? 0;
  return { keys, counts };
}

/** Merges sketches into a new one. */
export function merge(sketches: Iterable<Sketch>): Sketch {
  const bins: Bins = new Map();
  for (const s of sketches) addSketch(bins, s);
  return freeze(bins);
}

export function totalCount(s: Sketch): number {
  let n = 0;
  for (let i = 0; i < s.counts.length; i++) n += s.counts[i];
  return n;
}

/**
 * The value at quantile q (0..1): within 1 % of the exact element of rank
 * floor(q * (n - 1)) in the sorted input. Undefined for an empty sketch.
 */
export function quantile(s: Sketch, q: number, n = totalCount(s)): number | undefined {
  if (n === 0 || !(q >= 0 && q <= 1)) return undefined;
  const rank = Math.floor(q * (n - 1));
  let seen = 0;
  for (let i = 0; i < s.keys.length; i++) {
    seen += s.counts[i];
    if (seen > rank) return valueOfKey(s.keys[i]);
  }
  return valueOfKey(s.keys[s.keys.length - 1]);
}

/** Serialises to bytes: u32 n, then n int32 keys, then n float64 counts. */
export function encode(s: Sketch): Uint8Array {
  const n = s.keys.length;
  const pad = (n * 4) % 8 === 0 ? 0 : 4;
  const buf = new ArrayBuffer(8 + n * 4 + pad + n * 8);
  new DataView(buf).setUint32(0, n, true);
  new Int32Array(buf, 8, n).set(s.keys);
  new Float64Array(buf, 8 + n * 4 + pad, n).set(s.counts);
  return new Uint8Array(buf);
}

export function decode(bytes: Uint8Array | ArrayBuffer): Sketch {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  // Copy into an aligned buffer: storage may hand back views at any offset.
  const buf = u8.slice().buffer;
  const n = new DataView(buf).getUint32(0, true);
  const pad = (n * 4) % 8 === 0 ? 0 : 4;
  return {
    keys: new Int32Array(buf.slice(8, 8 + n * 4)),
    counts: new Float64Array(buf.slice(8 + n * 4 + pad, 8 + n * 4 + pad + n * 8)),
  };
}
