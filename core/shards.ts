/**
 * Scale-out of one stream: shard names, routing, and the policy that sizes a
 * stream's shards from its load. Runtime-free (the actors and the collector
 * use it; tests drive it with an injected clock).
 *
 * A stream is its primary actor (`tenant/stream`), which owns every figure,
 * plus 0..N-1 shard actors (`tenant/stream#k`, k = 1..N). With one shard the
 * collector calls the primary directly. With N > 1 it spreads a stream's
 * requests over the N shards, which combine the requests that arrive while
 * their previous relay is in flight into one call to the primary: the
 * primary takes a few large calls instead of thousands of small ones, and
 * applies each combined call as one group commit. Shards hold no state of
 * their own (nothing to lose, merge or drain when N changes), and every
 * answer (windows, dims, top-k, alerts, history, sockets) stays the
 * primary's, so it is exact whatever N is and however often N changes.
 */
import { murmur3 } from "./hll.ts";

/** Most shards a stream spreads over (the hard cap; a stream's config may lower it). */
export const MAX_SHARDS = 64;

/** The actor name of shard k of a stream: k = 0 is the primary. */
export function shardName(tenant: string, stream: string, k: number): string {
  return k === 0 ? `${tenant}/${stream}` : `${tenant}/${stream}#${k}`;
}

const utf8 = new TextEncoder();

/**
 * The shard (1..n) an event goes to: by a hash of its id when it has one (a retry of the same id
 * reaches the same shard while n holds), else by `spread` (the caller's rotating counter).
 */
export function shardOf(id: string | undefined, n: number, spread: number): number {
  if (n <= 1) return 0;
  const h = id === undefined ? spread : murmur3(utf8.encode(id), 0x5eed);
  return 1 + ((h >>> 0) % n);
}

export interface ScalingSettings {
  /** Requests per second one shard is sized for; past it the stream splits. */
  targetPerShard: number;
  /** Shards never fall below min or rise above max. */
  minShards: number;
  maxShards: number;
  /** Load must stay low this long before the stream folds back (ms). */
  foldAfterMs: number;
}

export interface ScalingDecision {
  at: number;
  from: number;
  to: number;
  reason: string;
}

/** One shard's share of the load, as the primary sees its relays. */
export interface ShardLoad {
  shard: number;
  /** Requests it relayed over the last LOAD_SECONDS complete seconds, per second. */
  requests_per_s: number;
  /** Requests it has relayed since the shard count last changed. */
  requests: number;
}

/** Seconds behind a shard's reported rate. */
export const LOAD_SECONDS = 10;

/**
 * Requests relayed per shard (bounded: shards 1..MAX_SHARDS, LOAD_SECONDS + 1 counters each). Reset
 * when the shard count changes, so it describes the current layout only.
 */
export class ShardLoads {
  readonly #shards = new Map<number, { total: number; counts: Float64Array; last: number }>();

  record(shard: number, now: number, requests: number): void {
    if (!Number.isInteger(shard) || shard < 1 || shard > MAX_SHARDS) return;
    const s = Math.floor(now / 1000);
    let e = this.#shards.get(shard);
    if (e === undefined) {
      e = { total: 0, counts: new Float64Array(LOAD_SECONDS + 1), last: s };
      this.#shards.set(shard, e);
    }
    this.#advance(e, s);
    e.counts[s % (LOAD_SECONDS + 1)] += requests;
    e.total += requests;
  }

  #advance(e: { counts: Float64Array; last: number }, s: number): void {
    for (let t = Math.max(e.last + 1, s - LOAD_SECONDS); t <= s; t++) e.counts[t % (LOAD_SECONDS + 1)] = 0;
    e.last = Math.max(e.last, s);
  }

  reset(): void {
    this.#shards.clear();
  }

  loads(now: number): ShardLoad[] {
    const s = Math.floor(now / 1000);
    return [...this.#shards.entries()]
      .sort(([a], [b]) => a - b)
      .map(([shard, e]) => {
        this.#advance(e, s);
        let sum = 0;
        for (let t = s - LOAD_SECONDS; t < s; t++) sum += e.counts[t % (LOAD_SECONDS + 1)];
        return { shard, requests_per_s: sum / LOAD_SECONDS, requests: e.total };
      });
  }
}

export interface ScalingStatus {
  shards: number;
  /** Each shard's relayed load since the shard count last changed (empty with one shard). */
  shard_load: ShardLoad[];
  /** Requests per second reaching the stream, averaged over the last SPLIT_SECONDS complete seconds. */
  requests_per_s: number;
  target_per_shard: number;
  min_shards: number;
  max_shards: number;
  /** Most recent first; `at` as an ISO-8601 time (the API's form). */
  decisions: Array<Omit<ScalingDecision, "at"> & { at: string }>;
}

/** Seconds of load behind a split (short, so a step is absorbed quickly; two, so one burst is not enough). */
export const SPLIT_SECONDS = 2;
/** Per-second request counts kept: the longest fold window the policy can judge (bound: 600 numbers). */
const HISTORY_SECONDS = 600;
/** Decisions kept for the API and the dashboard (older ones are in the logs). */
export const DECISIONS_KEPT = 20;

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

/**
 * Sizes a stream's shards from the requests reaching it. Split: as soon as each of the last
 * SPLIT_SECONDS complete seconds carried more than `targetPerShard × shards`, to the shards that load
 * needs (at least double, so a 10× step takes one or two decisions). Fold: once every second of the last
 * `foldAfterMs` needed fewer shards than the stream has, down to what the busiest of them needed.
 */
export class ScalePolicy {
  /** Requests per second over the last HISTORY_SECONDS seconds, a ring indexed by second. */
  readonly #counts = new Float64Array(HISTORY_SECONDS);
  #lastSecond = -1;

  constructor(public settings: ScalingSettings) {}

  /** Counts `requests` arriving at `now`. */
  record(now: number, requests: number): void {
    const s = Math.floor(now / 1000);
    this.#advance(s);
    if (s > this.#lastSecond - HISTORY_SECONDS) this.#counts[s % HISTORY_SECONDS] += requests;
  }

  #advance(s: number): void {
    if (this.#lastSecond < 0) this.#lastSecond = s - 1;
    if (s <= this.#lastSecond) return;
    for (let t = Math.max(this.#lastSecond + 1, s - HISTORY_SECONDS + 1); t <= s; t++)
      this.#counts[t % HISTORY_SECONDS] = 0;
    this.#lastSecond = s;
  }

  /** Requests in second `s` (0 outside what is kept). */
  #at(s: number): number {
    return s < 0 || s > this.#lastSecond || s <= this.#lastSecond - HISTORY_SECONDS
      ? 0
      : this.#counts[s % HISTORY_SECONDS];
  }

  /** The load sustained through each of the last SPLIT_SECONDS complete seconds (their minimum). */
  sustained(now: number): number {
    const s = Math.floor(now / 1000);
    this.#advance(s);
    let min = Number.POSITIVE_INFINITY;
    for (let t = s - SPLIT_SECONDS; t < s; t++) min = Math.min(min, this.#at(t));
    return min;
  }

  /** Average requests/s over the last SPLIT_SECONDS complete seconds. */
  rate(now: number): number {
    const s = Math.floor(now / 1000);
    this.#advance(s);
    let sum = 0;
    for (let t = s - SPLIT_SECONDS; t < s; t++) sum += this.#at(t);
    return sum / SPLIT_SECONDS;
  }

  #clamp(n: number): number {
    const { minShards, maxShards } = this.settings;
    return Math.max(Math.max(1, minShards), Math.min(Math.min(MAX_SHARDS, maxShards), n));
  }

  /** What shards should serve the stream now, given `current`: null if it should stay as it is. */
  decide(now: number, current: number, since: number): ScalingDecision | null {
    const { targetPerShard, foldAfterMs } = this.settings;
    const bounded = this.#clamp(current);
    if (bounded !== current) {
      return { at: now, from: current, to: bounded, reason: `the stream's shard bounds are now ${this.#bounds()}` };
    }
    const rate = this.sustained(now);
    const needed = Math.ceil(rate / targetPerShard);
    if (needed > current) {
      const to = this.#clamp(Math.max(needed, current * 2));
      if (to > current) {
        return {
          at: now,
          from: current,
          to,
          reason: `at least ${fmt(rate)} requests/s in each of the last ${SPLIT_SECONDS} s > ${fmt(targetPerShard)}/s per shard × ${current}`,
        };
      }
      return null;
    }
    // Fold only after a full fold window at this size, every second of it below what the stream has.
    const s = Math.floor(now / 1000);
    const windowSeconds = Math.min(HISTORY_SECONDS, Math.ceil(foldAfterMs / 1000));
    if (current <= 1 || now - since < foldAfterMs) return null;
    let peak = 0;
    for (let t = s - windowSeconds; t < s; t++) peak = Math.max(peak, this.#at(t));
    const to = this.#clamp(Math.ceil(peak / targetPerShard));
    if (to >= current) return null;
    return {
      at: now,
      from: current,
      to,
      reason: `at most ${fmt(peak)} requests/s in every second of the last ${fmt(foldAfterMs / 1000)} s (${fmt(targetPerShard)}/s per shard)`,
    };
  }

  #bounds(): string {
    const { minShards, maxShards } = this.settings;
    return `${Math.max(1, minShards)}..${Math.min(MAX_SHARDS, maxShards)}`;
  }
}
