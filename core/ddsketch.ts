/**
 * DDSketch (Masson, Rim, Lee; VLDB 2019) with 1 % relative accuracy.
 *
 * Values map to logarithmic bins; a quantile comes back within 1 % of the
 * exact value at that rank. Positive, negative and zero values all live in
 * one sorted key space (key order = value order), so a sketch is a sorted
 * list of (key, count) pairs: compact in memory, cheap to merge, and stored
 * as-is.
 *
 * Bounded: a sketch holds at most `maxBins` bins (MAX_BINS = 2048 unless the
 * caller asks for fewer). Beyond that the LOWEST bins are collapsed into the
 * lowest bin kept, as DDSketch's collapsing-lowest stores do. Collapsing only
 * ever moves values upward, so:
 *   the answer for quantile q keeps the 1 % guarantee whenever the exact
 *   value at rank nearestRank(q, n) is at or above the lowest key kept;
 * in words: high quantiles (p50, p90, p95, p99 in practice) stay exact to
 * 1 % and only the low tail of a pathological spread loses resolution.
 * 2048 bins span a value ratio of 1.0202^2048 ≈ 10^17, far more than any
 * real measurement spreads over.
 */
import { ByteReader, ByteWriter } from "./bytes.ts";

export const RELATIVE_ACCURACY = 0.01;
/** The most bins any sketch holds (window merges, minute and history rows). */
export const MAX_BINS = 2048;
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

/** Collapses the lowest bins of sorted (keys, counts) so at most `maxBins` remain. */
function collapse(keys: Int32Array, counts: Float64Array, maxBins: number): Sketch {
  const n = keys.length;
  if (n <= maxBins) return { keys, counts };
  const first = n - maxBins;
  let low = 0;
  for (let i = 0; i <= first; i++) low += counts[i];
  const k = keys.slice(first);
  const c = counts.slice(first);
  c[0] = low;
  return { keys: k, counts: c };
}

/** A sketch of the bins, with at most `maxBins` bins (the lowest collapsed). */
export function freeze(bins: Bins, maxBins = MAX_BINS): Sketch {
  const keys = Int32Array.from(bins.keys()).sort();
  const counts = new Float64Array(keys.length);
  for (let i = 0; i < keys.length; i++) counts[i] = bins.get(keys[i]) ?? 0;
  return collapse(keys, counts, maxBins);
}

/** Merges sketches into a new one. */
export function merge(sketches: Iterable<Sketch>, maxBins = MAX_BINS): Sketch {
  const bins: Bins = new Map();
  for (const s of sketches) addSketch(bins, s);
  return freeze(bins, maxBins);
}

export function totalCount(s: Sketch): number {
  let n = 0;
  for (let i = 0; i < s.counts.length; i++) n += s.counts[i];
  return n;
}

/**
 * The rank (0-based, in the sorted values) of quantile q among n values: the nearest-rank
 * definition, as PostgreSQL's percentile_disc — the smallest value with at least q·n values at or
 * below it. So p50 of two values is the smaller, p90/p95/p99 of two values the larger.
 */
export function nearestRank(q: number, n: number): number {
  return Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
}

/**
 * The value at quantile q (0..1): within 1 % of the exact element of rank
 * nearestRank(q, n) in the sorted input (see the collapsing note above).
 * Undefined for an empty sketch.
 */
export function quantile(s: Sketch, q: number, n = totalCount(s)): number | undefined {
  if (n === 0 || !(q >= 0 && q <= 1)) return undefined;
  const rank = nearestRank(q, n);
  let seen = 0;
  for (let i = 0; i < s.keys.length; i++) {
    seen += s.counts[i];
    if (seen > rank) return valueOfKey(s.keys[i]);
  }
  return valueOfKey(s.keys[s.keys.length - 1]);
}

// ---------------------------------------------------------------------------
// Byte encoding.
//
// Compact (what is written): 0xD5 0x02, varint n, then for the first bin a
// zigzag-varint key and a varint count, then per further bin ONE byte
// (delta << 3 | count) when the key delta is 1..31 and the count 1..7 (the
// common case: neighbouring bins of a latency distribution), else 0x00
// followed by a varint delta and a varint count. Real data costs about one
// byte per bin. Counts are integers (event counts) up to 2^53.
//
// Legacy (still read: history rows written by earlier releases): u32 n,
// n int32 keys, padding to 8, n float64 counts.
// ---------------------------------------------------------------------------
const MAGIC0 = 0xd5;
const MAGIC1 = 0x02;

const zigzag = (v: number) => (v >= 0 ? v * 2 : -v * 2 - 1);
const unzigzag = (v: number) => (v % 2 === 0 ? v / 2 : -(v + 1) / 2);

function writeBins(w: ByteWriter, keys: ArrayLike<number>, counts: ArrayLike<number>, n: number): void {
  w.varint(n);
  if (n === 0) return;
  w.varint(zigzag(keys[0]));
  w.varint(Math.round(counts[0]));
  for (let i = 1; i < n; i++) {
    const d = keys[i] - keys[i - 1];
    const c = Math.round(counts[i]);
    if (d < 32 && c > 0 && c < 8) w.byte((d << 3) | c);
    else {
      w.byte(0);
      w.varint(d);
      w.varint(c);
    }
  }
}

/** Encodes a sketch compactly (see the format above). */
export function encode(s: Sketch): Uint8Array {
  const w = new ByteWriter();
  w.byte(MAGIC0);
  w.byte(MAGIC1);
  writeBins(w, s.keys, s.counts, s.keys.length);
  return w.bytes();
}

/** Encodes bins straight from a map, with at most `maxBins` bins. */
export function encodeBins(bins: Bins, maxBins = MAX_BINS): Uint8Array {
  return encode(freeze(bins, maxBins));
}

/** Calls `f(key, count)` for every bin of an encoded sketch, in key order. */
export function forEachBin(bytes: Uint8Array, f: (key: number, count: number) => void): void {
  if (isLegacy(bytes)) {
    const s = decodeLegacy(bytes);
    for (let i = 0; i < s.keys.length; i++) f(s.keys[i], s.counts[i]);
    return;
  }
  const r = new ByteReader(bytes);
  r.pos = 2;
  const n = r.varint();
  if (n === 0) return;
  let key = unzigzag(r.varint());
  f(key, r.varint());
  for (let i = 1; i < n; i++) {
    const b = r.byte();
    if (b !== 0) {
      key += b >> 3;
      f(key, b & 7);
    } else {
      key += r.varint();
      f(key, r.varint());
    }
  }
}

/** Adds an encoded sketch's bins into `bins` without materialising it. */
export function addEncoded(bins: Bins, bytes: Uint8Array): void {
  forEachBin(bytes, (k, c) => {
    bins.set(k, (bins.get(k) ?? 0) + c);
  });
}

/** Number of bins in an encoded sketch. */
export function binCount(bytes: Uint8Array): number {
  if (isLegacy(bytes)) return new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
  const r = new ByteReader(bytes);
  r.pos = 2;
  return r.varint();
}

function isLegacy(u8: Uint8Array): boolean {
  if (u8.length >= 2 && u8[0] === MAGIC0 && u8[1] === MAGIC1) return false;
  return true;
}

function decodeLegacy(u8: Uint8Array): Sketch {
  if (u8.length < 8) throw new Error("corrupt sketch");
  // Copy into an aligned buffer: storage may hand back views at any offset.
  const buf = u8.slice().buffer;
  const n = new DataView(buf).getUint32(0, true);
  const pad = (n * 4) % 8 === 0 ? 0 : 4;
  if (buf.byteLength !== 8 + n * 4 + pad + n * 8) throw new Error("corrupt sketch");
  return {
    keys: new Int32Array(buf.slice(8, 8 + n * 4)),
    counts: new Float64Array(buf.slice(8 + n * 4 + pad, 8 + n * 4 + pad + n * 8)),
  };
}

export function decode(bytes: Uint8Array | ArrayBuffer): Sketch {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (isLegacy(u8)) return decodeLegacy(u8);
  const n = binCount(u8);
  const keys = new Int32Array(n);
  const counts = new Float64Array(n);
  let i = 0;
  forEachBin(u8, (k, c) => {
    keys[i] = k;
    counts[i] = c;
    i++;
  });
  return { keys, counts };
}

/** An encoded empty sketch. */
export const EMPTY_ENCODED: Uint8Array = encode(EMPTY_SKETCH);
