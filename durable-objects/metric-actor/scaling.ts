/**
 * Scale-out, as the stream's primary sees it: counts the requests reaching
 * the stream (direct calls and those its shards relay), sizes the stream's
 * shards with the policy of core/shards.ts, logs and stores each decision,
 * and tells every ingest reply the current shard count so collectors follow.
 *
 * State: the shard count, the stream's scaling settings and the last
 * DECISIONS_KEPT decisions, one `meta` row written only when one of them
 * changes; the per-second load (≤ 600 numbers) is memory only: after a
 * restart the stream keeps its shard count and judges load afresh.
 */
import type { Config } from "../../core/config";
import {
  DECISIONS_KEPT,
  ScalePolicy,
  type ScalingDecision,
  type ScalingSettings,
  type ScalingStatus,
  ShardLoads,
} from "../../core/shards";
import { isoTime } from "../../core/time";
import type { Wakeable } from "../planner";

/** A stream's own scaling settings (PUT /v1/streams/:name/config); unset fields follow the Worker's config. */
export interface StreamScaling {
  min_shards?: number;
  max_shards?: number;
  target_requests_per_s?: number;
}

interface Stored {
  shards: number;
  since: number;
  settings: StreamScaling;
  decisions: ScalingDecision[];
}

/** How often (at most) a sharded stream re-judges its load without traffic, to fold back when requests stop. */
const IDLE_CHECK_MS = 5000;

export class Scaling implements Wakeable {
  readonly name = "scaling";
  #state: Stored = { shards: 1, since: 0, settings: {}, decisions: [] };
  readonly #policy: ScalePolicy;
  readonly #loads = new ShardLoads();
  /** When the alarm last judged the load. */
  #checked = 0;

  constructor(
    readonly sql: SqlStorage,
    readonly config: Config,
    readonly label: () => string,
  ) {
    this.#policy = new ScalePolicy(this.#settings({}));
  }

  load(): void {
    const row = this.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'scaling'").toArray()[0];
    if (row) this.#state = JSON.parse(row.v) as Stored;
    this.#policy.settings = this.#settings(this.#state.settings);
  }

  #settings(s: StreamScaling): ScalingSettings {
    return {
      targetPerShard: s.target_requests_per_s ?? this.config.SHARD_TARGET_RPS,
      minShards: Math.min(s.min_shards ?? 1, this.config.SHARD_MAX),
      maxShards: Math.min(s.max_shards ?? this.config.SHARD_MAX, this.config.SHARD_MAX),
      foldAfterMs: this.config.SHARD_FOLD_AFTER_MS,
    };
  }

  get shards(): number {
    return this.#state.shards;
  }

  /**
   * Counts requests reaching the stream (relayed by `shard`, or direct) and applies a split at once (folds
   * wait for the alarm or traffic).
   */
  record(now: number, requests: number, shard?: number): void {
    this.#policy.record(now, requests);
    if (shard !== undefined) this.#loads.record(shard, now, requests);
    this.#judge(now);
  }

  /** Replaces the stream's scaling settings and applies their bounds now. */
  configure(settings: StreamScaling, now: number): ScalingStatus {
    this.#state = { ...this.#state, settings };
    this.#policy.settings = this.#settings(settings);
    if (!this.#judge(now)) this.#store();
    return this.status(now);
  }

  settings(): StreamScaling {
    return this.#state.settings;
  }

  /** Decides; stores and logs a change. True if the shard count changed. */
  #judge(now: number): boolean {
    const d = this.#policy.decide(now, this.#state.shards, this.#state.since);
    if (d === null) return false;
    this.#state = {
      ...this.#state,
      shards: d.to,
      since: now,
      decisions: [d, ...this.#state.decisions].slice(0, DECISIONS_KEPT),
    };
    this.#store();
    this.#loads.reset();
    console.log(
      `edgepulse: stream ${this.label()} ${d.to > d.from ? "split" : "folded"} ${d.from} → ${d.to} shards: ${d.reason}`,
    );
    return true;
  }

  #store(): void {
    this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('scaling', ?)", JSON.stringify(this.#state));
  }

  status(now: number): ScalingStatus {
    const s = this.#policy.settings;
    return {
      shards: this.#state.shards,
      shard_load: this.#state.shards > 1 ? this.#loads.loads(now) : [],
      requests_per_s: this.#policy.rate(now),
      target_per_shard: s.targetPerShard,
      min_shards: Math.max(1, s.minShards),
      max_shards: s.maxShards,
      decisions: this.#state.decisions.map((d) => ({ ...d, at: isoTime(d.at) })),
    };
  }

  nextWake(_now: number): number | null {
    // Nothing to fold: one shard, or as few as the stream's bounds allow.
    if (this.#state.shards <= Math.max(1, this.#policy.settings.minShards)) return null;
    const every = Math.min(IDLE_CHECK_MS, this.config.SHARD_FOLD_AFTER_MS);
    return Math.max(this.#state.since + this.config.SHARD_FOLD_AFTER_MS, this.#checked + every);
  }

  wake(now: number): void {
    this.#checked = now;
    this.#judge(now);
  }
}
