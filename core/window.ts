/**
 * Sliding-window state of one stream: per-second event-time aggregates for
 * the longest window (plus the future skew), minute summaries for fast reads,
 * and a sliding HyperLogLog for distinct users.
 *
 * Window semantics (what the oracle tests check): the window W at time now
 * holds every admitted event whose event-time second is ≥ floor(now/1000) - W + 1.
 * Events stamped a little ahead of the clock (admitted up to the future skew)
 * therefore count in the current windows at once.
 *
 * Memory. A second is its scalars plus its encoded DDSketch (about one byte
 * per bin). A minute is "open" (seconds as separate records, cheap to
 * update; stored one row per second) until it has ended, then "packed": one
 * byte block holding its summary and its 60 seconds, which is also its
 * storage row, so waking up reads rows and decodes nothing. A late event
 * into a packed minute unpacks, applies and repacks it.
 *
 * Bounds, whatever the input (each written next to its constant):
 *   - seconds kept: the longest window plus a minute of expiry slack plus the
 *     future skew (≤ ~3,900 at the defaults);
 *   - bins per second: SECOND_MAX_BINS; bytes per packed minute:
 *     MINUTE_BLOCK_MAX_BYTES (collapsing lowest bins beyond, see ddsketch.ts);
 *   - the sliding HLL: see core/hll.ts.
 */
import {
  Accumulator,
  type Aggregate,
  EMPTY_AGGREGATE,
  type Figures,
  mergeAggregates,
  readAggregate,
  writeAggregate,
} from "./aggregate.ts";
import { ByteReader, ByteWriter } from "./bytes.ts";
import { addEncoded, type Bins, binCount, encodeBins, MAX_BINS } from "./ddsketch.ts";
import { hashUser, PeriodHll, SlidingHll } from "./hll.ts";

export { type Figures, QUANTILES } from "./aggregate.ts";

/** The live windows, declared once: every list of windows in the code reads this. */
export const WINDOWS = { "1m": 60, "5m": 300, "15m": 900, "1h": 3600 } as const;
export type WindowName = keyof typeof WINDOWS;
export const WINDOW_NAMES = Object.keys(WINDOWS) as WindowName[];
export const LONGEST_WINDOW_SECONDS = Math.max(...Object.values(WINDOWS));

export function isWindowName(s: unknown): s is WindowName {
  return typeof s === "string" && Object.hasOwn(WINDOWS, s);
}

/**
 * Bins per one-second sketch. A second whose values fall in ≤ 512 bins (a
 * value ratio of 1.0202^512 ≈ 26,000 : 1 within that second) is exact; beyond,
 * its lowest bins collapse (high quantiles keep the 1 % guarantee).
 */
export const SECOND_MAX_BINS = 512;
/**
 * Bytes per packed minute. Real traffic stays far below (≈ 6 KB at 100
 * events/s, ≈ 30 KB at 1,000 events/s with a wide spread); crafted values
 * that would exceed it make the minute's seconds collapse further (halving
 * their bin cap until the block fits), so ~65 minutes cost ≤ ~2 MiB at worst.
 */
export const MINUTE_BLOCK_MAX_BYTES = 32 * 1024;

export interface Aggregates extends Figures {
  window: WindowName;
  seconds: number;
}

/** One chart point: a period's count and value percentiles. */
export interface SeriesPoint {
  t: number;
  count: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

function seriesPoint(t: number, a: Aggregate): SeriesPoint {
  const f = new Accumulator().add(a).figures(1, 0);
  return { t, count: a.count, p50: f.p50, p95: f.p95, p99: f.p99 };
}

export interface WindowEvent {
  ts: number;
  value?: number;
  user?: string;
}

export interface ApplyResult {
  /** Seconds of open minutes whose record changed (persist these rows). */
  seconds: Set<number>;
  /** Packed minutes whose block changed (late events): persist these blocks. */
  blocks: Set<number>;
  /** HLL registers whose list changed (persist these rows). */
  registers: Set<number>;
  /** Minutes (epoch seconds / 60) that received events: their history rows are out of date. */
  minutes: Set<number>;
  /** Per-minute HyperLogLog registers raised: flat triples [minute, register, rank, …]. */
  minuteRegs: number[];
}

export const minuteOf = (sec: number): number => Math.floor(sec / 60);
export const secondOf = (ms: number): number => Math.floor(ms / 1000);

/** The first second kept: the start of the minute holding now − the longest window. */
export function expiryCutoff(nowMs: number): number {
  return minuteOf(secondOf(nowMs) - LONGEST_WINDOW_SECONDS) * 60;
}

/** A minute still receiving events: one aggregate per second with events. */
interface OpenMinute {
  kind: "open";
  seconds: Map<number, Aggregate>;
  summary: Aggregate | null;
  /** Seconds with events, ascending (cached). */
  present: number[] | null;
}

/** An ended minute: one block (see packMinute), its summary read from the head of the block. */
interface PackedMinute {
  kind: "packed";
  block: Uint8Array;
  summary: Aggregate | null;
  present: number[] | null;
}

type Minute = OpenMinute | PackedMinute;

const BLOCK_VERSION = 1;

/**
 * Block layout: u8 version, the minute's summary aggregate, varint n, then n
 * times (u8 second offset 0..59, the second's aggregate).
 */
function packMinute(seconds: Map<number, Aggregate>, summary: Aggregate): Uint8Array {
  const w = new ByteWriter();
  w.byte(BLOCK_VERSION);
  writeAggregate(w, summary);
  const secs = [...seconds.keys()].sort((a, b) => a - b);
  w.varint(secs.length);
  for (const s of secs) {
    w.byte(((s % 60) + 60) % 60);
    writeAggregate(w, seconds.get(s) as Aggregate);
  }
  return w.bytes();
}

function blockSummary(block: Uint8Array): Aggregate {
  const r = new ByteReader(block);
  if (r.byte() !== BLOCK_VERSION) throw new Error("unknown minute block version");
  return readAggregate(r);
}

/** The seconds of a packed minute's block, by epoch second. */
export function unpackMinute(m: number, block: Uint8Array): Map<number, Aggregate> {
  const r = new ByteReader(block);
  if (r.byte() !== BLOCK_VERSION) throw new Error("unknown minute block version");
  readAggregate(r);
  const n = r.varint();
  const out = new Map<number, Aggregate>();
  for (let i = 0; i < n; i++) {
    const off = r.byte();
    out.set(m * 60 + off, readAggregate(r));
  }
  return out;
}

/** The aggregates of the seconds ≥ `from`, in ascending time. */
function inOrder(seconds: Map<number, Aggregate>, from = Number.NEGATIVE_INFINITY): Aggregate[] {
  return [...seconds]
    .filter(([s]) => s >= from)
    .sort((a, b) => a[0] - b[0])
    .map(([, a]) => a);
}

/** Re-encodes every second's sketch with at most `maxBins` bins. */
function recap(seconds: Map<number, Aggregate>, maxBins: number): Map<number, Aggregate> {
  const out = new Map<number, Aggregate>();
  for (const [s, a] of seconds) {
    if (binCount(a.sketch) <= maxBins) out.set(s, a);
    else {
      const bins: Bins = new Map();
      addEncoded(bins, a.sketch);
      out.set(s, { ...a, sketch: encodeBins(bins, maxBins) });
    }
  }
  return out;
}

export interface StreamWindowsOptions {
  /** Keep a HyperLogLog per minute (for history rows). */
  minuteUsers?: boolean;
}

export class StreamWindows {
  readonly hll = new SlidingHll();
  /** Distinct-user registers per minute, for history (the sliding HLL cannot split by minute). */
  readonly minuteUsers = new Map<number, PeriodHll>();
  readonly #minutes = new Map<number, Minute>();
  readonly #trackMinuteUsers: boolean;

  constructor(options: StreamWindowsOptions = {}) {
    this.#trackMinuteUsers = options.minuteUsers ?? false;
  }

  /** Minutes held (open or packed). */
  get minuteCount(): number {
    return this.#minutes.size;
  }

  /** Every minute held, ascending. */
  minutesHeld(): number[] {
    return [...this.#minutes.keys()].sort((a, b) => a - b);
  }

  /** Minutes held as separate seconds (not yet packed). */
  get openMinuteCount(): number {
    let n = 0;
    for (const m of this.#minutes.values()) if (m.kind === "open") n++;
    return n;
  }

  /** Applies admitted events. The caller has already checked lateness and dedup. */
  apply(events: Iterable<WindowEvent>): ApplyResult {
    const result: ApplyResult = {
      seconds: new Set(),
      blocks: new Set(),
      registers: new Set(),
      minutes: new Set(),
      minuteRegs: [],
    };
    // Group the batch by second first: each touched second is re-encoded once.
    const bySecond = new Map<number, Accumulator>();
    for (const e of events) {
      const sec = secondOf(e.ts);
      let acc = bySecond.get(sec);
      if (acc === undefined) {
        acc = new Accumulator();
        bySecond.set(sec, acc);
      }
      acc.addEvent(e.value);
      if (e.user !== undefined) {
        const { reg, rank } = hashUser(e.user);
        if (this.hll.insert(reg, sec, rank)) result.registers.add(reg);
        if (this.#trackMinuteUsers) {
          const m = minuteOf(sec);
          let period = this.minuteUsers.get(m);
          if (period === undefined) {
            period = new PeriodHll();
            this.minuteUsers.set(m, period);
          }
          if (period.set(reg, rank)) result.minuteRegs.push(m, reg, rank);
        }
      }
    }
    const repack = new Set<number>();
    for (const [sec, acc] of bySecond) {
      const m = minuteOf(sec);
      result.minutes.add(m);
      let minute = this.#minutes.get(m);
      if (minute?.kind === "packed") {
        minute = { kind: "open", seconds: unpackMinute(m, minute.block), summary: null, present: null };
        this.#minutes.set(m, minute);
        repack.add(m);
      }
      if (minute === undefined) {
        minute = { kind: "open", seconds: new Map(), summary: null, present: null };
        this.#minutes.set(m, minute);
      }
      const prev = minute.seconds.get(sec);
      if (prev !== undefined) acc.add(prev);
      minute.seconds.set(sec, acc.toAggregate(SECOND_MAX_BINS));
      minute.summary = null;
      minute.present = null;
      if (!repack.has(m)) result.seconds.add(sec);
    }
    for (const m of repack) {
      this.#pack(m);
      result.blocks.add(m);
    }
    return result;
  }

  #pack(m: number): void {
    const minute = this.#minutes.get(m);
    if (minute === undefined || minute.kind === "packed") return;
    let seconds = minute.seconds;
    let summary = mergeAggregates(inOrder(seconds));
    let block = packMinute(seconds, summary);
    for (let cap = SECOND_MAX_BINS / 2; block.length > MINUTE_BLOCK_MAX_BYTES && cap >= 1; cap = Math.floor(cap / 2)) {
      seconds = recap(seconds, cap);
      summary = mergeAggregates(inOrder(seconds), Math.min(MAX_BINS, cap * 4));
      block = packMinute(seconds, summary);
    }
    this.#minutes.set(m, { kind: "packed", block, summary: null, present: null });
  }

  /**
   * Packs every open minute that ended before `nowMs` (its seconds become one
   * block). Returns the minutes packed: store their blocks, drop their second rows.
   */
  packEnded(nowMs: number): number[] {
    const current = minuteOf(secondOf(nowMs));
    const packed: number[] = [];
    for (const [m, minute] of this.#minutes) {
      if (minute.kind === "open" && m < current) {
        this.#pack(m);
        packed.push(m);
      }
    }
    return packed;
  }

  /** The stored record of a second of an open minute, or null if the second is empty or packed. */
  secondRecord(sec: number): Aggregate | null {
    const minute = this.#minutes.get(minuteOf(sec));
    return minute?.kind === "open" ? (minute.seconds.get(sec) ?? null) : null;
  }

  /** The block of a packed minute, or null. */
  minuteBlock(m: number): Uint8Array | null {
    const minute = this.#minutes.get(m);
    return minute?.kind === "packed" ? minute.block : null;
  }

  /** Restores a second of an open minute from storage. */
  loadSecond(sec: number, a: Aggregate): void {
    const m = minuteOf(sec);
    let minute = this.#minutes.get(m);
    if (minute === undefined || minute.kind === "packed") {
      minute = {
        kind: "open",
        seconds: minute ? unpackMinute(m, minute.block) : new Map(),
        summary: null,
        present: null,
      };
      this.#minutes.set(m, minute);
    }
    minute.seconds.set(sec, a);
    minute.summary = null;
    minute.present = null;
  }

  /** Restores a packed minute from storage. */
  loadMinute(m: number, block: Uint8Array): void {
    blockSummary(block); // validates the header
    this.#minutes.set(m, { kind: "packed", block, summary: null, present: null });
  }

  /** The full aggregate of one minute (all its seconds merged); cached until the minute changes. */
  minute(m: number): Aggregate {
    const minute = this.#minutes.get(m);
    if (minute === undefined) return EMPTY_AGGREGATE;
    if (minute.summary === null) {
      minute.summary = minute.kind === "packed" ? blockSummary(minute.block) : mergeAggregates(inOrder(minute.seconds));
    }
    return minute.summary;
  }

  #seconds(m: number): Map<number, Aggregate> {
    const minute = this.#minutes.get(m);
    if (minute === undefined) return new Map();
    return minute.kind === "open" ? minute.seconds : unpackMinute(m, minute.block);
  }

  /** The aggregate of every second ≥ startSec, merged into `acc`. */
  #accumulateSince(startSec: number, acc: Accumulator): void {
    // Ascending time, so a float sum is the same whatever order the state was built or restored in.
    const edge = minuteOf(startSec);
    for (const m of [...this.#minutes.keys()].sort((a, b) => a - b)) {
      if (m < edge) continue;
      if (m > edge || startSec % 60 === 0) acc.add(this.minute(m));
      else for (const a of inOrder(this.#seconds(m), startSec)) acc.add(a);
    }
  }

  aggregates(window: WindowName, nowMs: number): Aggregates {
    const seconds = WINDOWS[window];
    const start = secondOf(nowMs) - seconds + 1;
    const acc = new Accumulator();
    this.#accumulateSince(start, acc);
    return { window, seconds, ...acc.figures(seconds, this.hll.distinctSince(start)) };
  }

  /**
   * The next time (ms) after `nowMs` at which some window's figures change
   * without new events: when the oldest second still inside a window leaves
   * it. Null when every window is empty.
   */
  nextChangeAfter(nowMs: number): number | null {
    const now = secondOf(nowMs);
    let next = Number.POSITIVE_INFINITY;
    for (const w of WINDOW_NAMES) {
      const start = now - WINDOWS[w] + 1;
      const oldest = this.#oldestSecondSince(start);
      if (oldest !== null) next = Math.min(next, (oldest + WINDOWS[w]) * 1000);
    }
    return Number.isFinite(next) ? next : null;
  }

  /** Seconds of a minute that hold events, ascending (cached until the minute changes). */
  #present(m: number): number[] {
    const minute = this.#minutes.get(m);
    if (minute === undefined) return [];
    minute.present ??= [...this.#seconds(m).keys()].sort((a, b) => a - b);
    return minute.present;
  }

  #oldestSecondSince(startSec: number): number | null {
    const edge = minuteOf(startSec);
    const ms = [...this.#minutes.keys()].filter((m) => m >= edge).sort((a, b) => a - b);
    for (const m of ms) {
      for (const s of this.#present(m)) if (s >= startSec) return s;
    }
    return null;
  }

  /** Chart points for the last `n` seconds (one per second with events), oldest first. */
  secondSeries(nowMs: number, n: number): SeriesPoint[] {
    const out: SeriesPoint[] = [];
    const end = secondOf(nowMs);
    const start = end - n + 1;
    for (let m = minuteOf(start); m <= minuteOf(end); m++) {
      const secs = [...this.#seconds(m)].filter(([s]) => s >= start && s <= end).sort((a, b) => a[0] - b[0]);
      for (const [s, a] of secs) out.push(seriesPoint(s * 1000, a));
    }
    return out;
  }

  /** Chart points for the last `n` minutes (one per minute with events), oldest first. */
  minuteSeries(nowMs: number, n: number): SeriesPoint[] {
    const out: SeriesPoint[] = [];
    const end = minuteOf(secondOf(nowMs));
    for (let m = end - n + 1; m <= end; m++) {
      const a = this.minute(m);
      if (a.count > 0) out.push(seriesPoint(m * 60_000, a));
    }
    return out;
  }

  /**
   * Forgets everything older than the longest window, a whole minute at a
   * time: an admitted event (lateness ≤ the longest window) always finds its
   * whole minute still here, so a minute's aggregate is always complete.
   * Returns what stored rows must be deleted or rewritten.
   */
  expire(nowMs: number): { minutes: Array<{ minute: number; open: number[] }>; registers: number[]; users: number[] } {
    const cutoffMinute = minuteOf(expiryCutoff(nowMs));
    const minutes: Array<{ minute: number; open: number[] }> = [];
    for (const [m, minute] of this.#minutes) {
      if (m >= cutoffMinute) continue;
      minutes.push({ minute: m, open: minute.kind === "open" ? [...minute.seconds.keys()] : [] });
      this.#minutes.delete(m);
    }
    const users: number[] = [];
    for (const m of this.minuteUsers.keys()) {
      if (m < cutoffMinute) {
        users.push(m);
        this.minuteUsers.delete(m);
      }
    }
    return { minutes, registers: this.hll.expire(cutoffMinute * 60), users };
  }
}
