/**
 * Sliding-window state of one stream: a ring of per-second event-time
 * buckets covering the longest window, with minute summaries cached for
 * fast reads, and a sliding HyperLogLog for distinct users.
 *
 * Window semantics (what the oracle tests check): the window W at time now
 * holds every admitted event whose event-time second is ≥ floor(now/1000) - W + 1.
 * Events stamped a little ahead of the clock (admitted up to the future skew)
 * therefore count in the current windows at once.
 */
import { addSketch, addValue, type Bins, EMPTY_SKETCH, freeze, quantile, type Sketch } from "./ddsketch";
import { hashUser, PeriodHll, SlidingHll } from "./hll";

export const WINDOWS = { "1m": 60, "5m": 300, "15m": 900, "1h": 3600 } as const;
export type WindowName = keyof typeof WINDOWS;
export const WINDOW_NAMES = Object.keys(WINDOWS) as WindowName[];
export const LONGEST_WINDOW_SECONDS = 3600;
export const QUANTILES = { p50: 0.5, p90: 0.9, p95: 0.95, p99: 0.99 } as const;

export function isWindowName(s: unknown): s is WindowName {
  return typeof s === "string" && Object.hasOwn(WINDOWS, s);
}

export interface Bucket {
  count: number;
  valueCount: number;
  sum: number;
  min: number;
  max: number;
  sketch: Sketch;
}

/** The figures reported for any period: a live window or a history step. */
export interface Figures {
  count: number;
  rate: number;
  /** Aggregates over events that carry a value; null when none did. */
  value_count: number;
  sum: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  p50: number | null;
  p90: number | null;
  p95: number | null;
  p99: number | null;
  distinct_users: number;
}

export interface Aggregates extends Figures {
  window: WindowName;
  seconds: number;
}

/** Computes the reported figures of a merged period. Quantiles are clamped to the exact min and max. */
export function figures(b: Bucket, seconds: number, distinctUsers: number): Figures {
  const hasValues = b.valueCount > 0;
  const q = (p: number): number | null =>
    hasValues ? Math.min(b.max, Math.max(b.min, quantile(b.sketch, p, b.valueCount) as number)) : null;
  return {
    count: b.count,
    rate: b.count / seconds,
    value_count: b.valueCount,
    sum: b.sum,
    min: hasValues ? b.min : null,
    max: hasValues ? b.max : null,
    mean: hasValues ? b.sum / b.valueCount : null,
    p50: q(0.5),
    p90: q(0.9),
    p95: q(0.95),
    p99: q(0.99),
    distinct_users: distinctUsers,
  };
}

/** One chart point: a period's count and value percentiles. */
export interface SeriesPoint {
  t: number;
  count: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

function seriesPoint(t: number, b: Bucket): SeriesPoint {
  const f = figures(b, 1, 0);
  return { t, count: b.count, p50: f.p50, p95: f.p95, p99: f.p99 };
}

export interface WindowEvent {
  ts: number;
  value?: number;
  user?: string;
}

export interface ApplyResult {
  /** Seconds whose bucket changed (persist these rows). */
  seconds: Set<number>;
  /** HLL registers whose list changed (persist these rows). */
  registers: Set<number>;
  /** Minutes (epoch seconds / 60) that received events: their history rows are out of date. */
  minutes: Set<number>;
  /** Minutes whose distinct-user registers changed (persist these). */
  minuteUsers: Set<number>;
}

export const minuteOf = (sec: number): number => Math.floor(sec / 60);

const emptyBucket = (): Bucket => ({
  count: 0,
  valueCount: 0,
  sum: 0,
  min: Number.POSITIVE_INFINITY,
  max: Number.NEGATIVE_INFINITY,
  sketch: EMPTY_SKETCH,
});

function mergeInto(acc: Bucket, b: Bucket, bins: Bins): void {
  acc.count += b.count;
  acc.valueCount += b.valueCount;
  acc.sum += b.sum;
  if (b.min < acc.min) acc.min = b.min;
  if (b.max > acc.max) acc.max = b.max;
  addSketch(bins, b.sketch);
}

export const secondOf = (ms: number): number => Math.floor(ms / 1000);

export class StreamWindows {
  readonly buckets = new Map<number, Bucket>();
  readonly hll = new SlidingHll();
  /** Distinct-user registers per minute, for history (the sliding HLL cannot split by minute). */
  readonly minuteUsers = new Map<number, PeriodHll>();
  readonly #minutes = new Map<number, Bucket>();

  /** Applies admitted events. The caller has already checked lateness and dedup. */
  apply(events: Iterable<WindowEvent>): ApplyResult {
    const seconds = new Set<number>();
    const registers = new Set<number>();
    const minuteUsers = new Set<number>();
    const pending = new Map<number, Bins>();
    for (const e of events) {
      const sec = secondOf(e.ts);
      let b = this.buckets.get(sec);
      if (b === undefined) {
        b = emptyBucket();
        this.buckets.set(sec, b);
      }
      b.count++;
      if (e.value !== undefined) {
        b.valueCount++;
        b.sum += e.value;
        if (e.value < b.min) b.min = e.value;
        if (e.value > b.max) b.max = e.value;
        let bins = pending.get(sec);
        if (bins === undefined) {
          bins = new Map();
          pending.set(sec, bins);
        }
        addValue(bins, e.value);
      }
      if (e.user !== undefined) {
        const { reg, rank } = hashUser(e.user);
        if (this.hll.insert(reg, sec, rank)) registers.add(reg);
        const m = minuteOf(sec);
        let period = this.minuteUsers.get(m);
        if (period === undefined) {
          period = new PeriodHll();
          this.minuteUsers.set(m, period);
        }
        if (period.set(reg, rank)) minuteUsers.add(m);
      }
      seconds.add(sec);
    }
    for (const [sec, bins] of pending) {
      const b = this.buckets.get(sec) as Bucket;
      addSketch(bins, b.sketch);
      b.sketch = freeze(bins);
    }
    const minutes = new Set<number>();
    for (const sec of seconds) minutes.add(minuteOf(sec));
    for (const m of minutes) this.#minutes.delete(m);
    return { seconds, registers, minutes, minuteUsers };
  }

  /** Sets a bucket loaded from storage. */
  load(sec: number, bucket: Bucket): void {
    this.buckets.set(sec, bucket);
    this.#minutes.delete(Math.floor(sec / 60));
  }

  /** The full aggregate of one minute (all its seconds merged); cached until the minute changes. */
  minute(m: number): Bucket {
    const cached = this.#minutes.get(m);
    if (cached) return cached;
    const acc = emptyBucket();
    const bins: Bins = new Map();
    for (let s = m * 60; s < m * 60 + 60; s++) {
      const b = this.buckets.get(s);
      if (b) mergeInto(acc, b, bins);
    }
    acc.sketch = freeze(bins);
    this.#minutes.set(m, acc);
    return acc;
  }

  #lastSecond(): number {
    let last = Number.NEGATIVE_INFINITY;
    for (const s of this.buckets.keys()) if (s > last) last = s;
    return last;
  }

  aggregates(window: WindowName, nowMs: number): Aggregates {
    const seconds = WINDOWS[window];
    const start = secondOf(nowMs) - seconds + 1;
    const acc = emptyBucket();
    const bins: Bins = new Map();
    const firstFullMinute = Math.ceil(start / 60);
    for (let s = start; s < firstFullMinute * 60; s++) {
      const b = this.buckets.get(s);
      if (b) mergeInto(acc, b, bins);
    }
    const last = this.#lastSecond();
    for (let m = firstFullMinute; m * 60 <= last; m++) mergeInto(acc, this.minute(m), bins);
    acc.sketch = freeze(bins);
    return { window, seconds, ...figures(acc, seconds, this.hll.distinctSince(start)) };
  }

  /** Chart points for the last `n` seconds (one per second with events), oldest first. */
  secondSeries(nowMs: number, n: number): SeriesPoint[] {
    const out: SeriesPoint[] = [];
    const end = secondOf(nowMs);
    for (let s = end - n + 1; s <= end; s++) {
      const b = this.buckets.get(s);
      if (b) out.push(seriesPoint(s * 1000, b));
    }
    return out;
  }

  /** Chart points for the last `n` minutes (one per minute with events), oldest first. */
  minuteSeries(nowMs: number, n: number): SeriesPoint[] {
    const out: SeriesPoint[] = [];
    const end = minuteOf(secondOf(nowMs));
    for (let m = end - n + 1; m <= end; m++) {
      const b = this.minute(m);
      if (b.count > 0) out.push(seriesPoint(m * 60_000, b));
    }
    return out;
  }

  /**
   * Forgets everything older than the longest window, a whole minute at a
   * time: an admitted event (lateness ≤ the longest window) always finds its
   * whole minute still here, so a minute's aggregate is always complete.
   * Returns what stored rows must be deleted or rewritten.
   */
  expire(nowMs: number): { seconds: number[]; registers: number[]; minutes: number[] } {
    const cutoff = expiryCutoff(nowMs);
    const seconds: number[] = [];
    for (const s of this.buckets.keys()) {
      if (s < cutoff) {
        seconds.push(s);
        this.buckets.delete(s);
        this.#minutes.delete(minuteOf(s));
      }
    }
    const minutes: number[] = [];
    for (const m of this.minuteUsers.keys()) {
      if (m * 60 < cutoff) {
        minutes.push(m);
        this.minuteUsers.delete(m);
      }
    }
    return { seconds, registers: this.hll.expire(cutoff), minutes };
  }
}

/** The first second kept: the start of the minute holding now − the longest window. */
export function expiryCutoff(nowMs: number): number {
  return minuteOf(secondOf(nowMs) - LONGEST_WINDOW_SECONDS) * 60;
}
