/**
 * The stream's part in funnels: its taps (which funnel steps its events feed, set by the funnels API) and
 * the delivery of its accepted step events to the tenant's funnel shards (durable-objects/funnel-actor.ts).
 *
 * Exactly once: the step events of a commit are written to the outbox in the commit's own transaction,
 * as one numbered batch per funnel shard ("funnel" topic, key "<shard>:<seq>"). Each shard's batches are
 * delivered in number order, one delivery at a time; the shard applies a batch once (it keeps the last number
 * it applied per stream with its counts) and answers the last number applied, and only then are the
 * batches let go. A duplicate never reaches a funnel (the commit admits an event once); a lost answer is
 * redelivered and skipped.
 *
 * Bounds: at most FUNNEL_MAX_PENDING_PER_SHARD batches wait per shard (e.g. while that shard is
 * unreachable); past that its oldest are let go and counted as `dropped` (the other shards' batches are
 * untouched). A delivery carries at most PER_DELIVERY batches and DELIVERY_MAX_BYTES, and waits at most
 * DELIVERY_TIMEOUT_MS for its answer (the alarm's other work is never held up longer; a late answer is
 * harmless: the shard applies a batch once). Taps ≤ MAX_FUNNELS_PER_TENANT × MAX_FUNNEL_STEPS.
 */

import { deadline } from "../../core/async";
import type { StreamEvent } from "../../core/event";
import { encodeItems, FUNNEL_SHARDS, type FunnelItem, funnelShardOf, type Tap, tapEvent } from "../../core/funnels";
import type { FunnelBatch } from "../funnel-actor";
import type { Wakeable } from "../planner";
import type { Meta } from "./ingest";
import type { Outbox, OutboxEntry } from "./outbox";

/** Batches waiting at most per shard (each holds one commit's step events for that shard). */
export const FUNNEL_MAX_PENDING_PER_SHARD = 2500;
/** Batches sent per delivery, and their bytes at most (one batch is always sent, whatever its size). */
const PER_DELIVERY = 100;
const DELIVERY_MAX_BYTES = 2 * 1024 * 1024;
const DELIVERY_TIMEOUT_MS = 10_000;
const MAX_BACKOFF_MS = 60_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const keyOf = (shard: number, seq: number) => `${shard}:${String(seq).padStart(15, "0")}`;

export class FunnelFeed implements Wakeable {
  readonly name = "funnels";
  #taps: Tap[] = [];
  #tapsVersion = 0;
  #seq = 0;
  #dropped = 0;
  #busy = false;
  /** Whether batches may be waiting: lets nextWake skip the outbox query on every commit of a stream without funnels. */
  #pending = false;
  #failures = 0;
  #retryAt = 0;

  constructor(
    readonly env: Env,
    readonly sql: SqlStorage,
    readonly outbox: Outbox,
    readonly meta: () => Meta | null,
  ) {}

  load(): void {
    const get = (k: string) =>
      this.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = ?", k).toArray()[0]?.v ?? null;
    this.#taps = JSON.parse(get("funnel_taps") ?? "[]") as Tap[];
    this.#tapsVersion = Number(get("funnel_taps_version") ?? 0);
    this.#seq = Number(get("funnel_seq") ?? 0);
    this.#dropped = Number(get("funnel_dropped") ?? 0);
    this.#pending = this.outbox.nextDue("funnel") !== null;
  }

  taps(): Tap[] {
    return this.#taps;
  }

  /**
   * Replaces the stream's taps (every funnel step it feeds) with those of the tenant's definitions at
   * `version`, unless it holds a newer version's; applies to events accepted from now on.
   */
  setTaps(taps: Tap[], version: number): void {
    if (version < this.#tapsVersion) return;
    this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('funnel_taps', ?)", JSON.stringify(taps));
    this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('funnel_taps_version', ?)", String(version));
    this.#taps = taps;
    this.#tapsVersion = version;
  }

  /** Batches still owed to funnel shards, and batches let go past the bound. */
  status(): { pending: number; dropped: number } {
    return { pending: this.outbox.pendingCount("funnel"), dropped: this.#dropped };
  }

  /** Inside the commit's transaction: the admitted events' step items, one numbered batch per shard. */
  append(admitted: StreamEvent[], now: number): void {
    if (this.#taps.length === 0 || admitted.length === 0) return;
    const items: FunnelItem[] = [];
    for (const e of admitted) tapEvent(this.#taps, e, items);
    if (items.length === 0) return;
    const byShard = new Map<number, FunnelItem[]>();
    for (const it of items) {
      const k = funnelShardOf(it.u);
      const list = byShard.get(k);
      if (list) list.push(it);
      else byShard.set(k, [it]);
    }
    let dropped = 0;
    for (const [k, list] of byShard) {
      this.#seq++;
      this.outbox.mark("funnel", keyOf(k, this.#seq), now, encoder.encode(encodeItems(list)));
      this.#pending = true;
      dropped += this.outbox.dropOldestPending("funnel", FUNNEL_MAX_PENDING_PER_SHARD, `${k}:`).length;
    }
    this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('funnel_seq', ?)", String(this.#seq));
    if (dropped > 0) {
      this.#dropped += dropped;
      this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('funnel_dropped', ?)", String(this.#dropped));
    }
  }

  nextWake(): number | null {
    // While a delivery is under way the planner re-arms when it ends (no alarm spins meanwhile).
    if (this.#busy || !this.#pending) return null;
    const due = this.outbox.nextDue("funnel");
    if (due === null) this.#pending = false;
    return due === null ? null : Math.max(due, this.#retryAt);
  }

  async wake(now: number): Promise<void> {
    const meta = this.meta();
    if (this.#busy || meta === null || now < this.#retryAt) return;
    this.#busy = true;
    try {
      const shards: Array<Promise<void>> = [];
      for (let k = 0; k < FUNNEL_SHARDS; k++) {
        const entries = this.outbox.byPrefix("funnel", `${k}:`, { pendingOnly: true, limit: PER_DELIVERY });
        let bytes = 0;
        const n = entries.findIndex((e, i) => {
          bytes += (e.payload as ArrayBuffer).byteLength;
          return i > 0 && bytes > DELIVERY_MAX_BYTES;
        });
        const take = n === -1 ? entries : entries.slice(0, n);
        if (take.length > 0) shards.push(this.#deliver(meta, k, take));
      }
      const results = await Promise.allSettled(shards);
      const failed = results.find((r) => r.status === "rejected") as PromiseRejectedResult | undefined;
      if (failed) {
        this.#failures++;
        this.#retryAt = Date.now() + Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(this.#failures, 8));
        console.error(`edgepulse: funnel delivery failed (retrying): ${String(failed.reason).slice(0, 200)}`);
      } else {
        this.#failures = 0;
        this.#retryAt = 0;
      }
    } finally {
      this.#busy = false;
    }
  }

  async #deliver(meta: Meta, shard: number, entries: OutboxEntry[]): Promise<void> {
    const batches: FunnelBatch[] = entries.map((e) => ({
      seq: Number(e.key.slice(e.key.indexOf(":") + 1)),
      items: decoder.decode(e.payload as ArrayBuffer),
    }));
    const stub = this.env.FUNNEL_ACTOR.getByName(`${meta.tenant}#funnels#${shard}`);
    const last = await deadline(stub.apply(meta.stream, batches), DELIVERY_TIMEOUT_MS, `funnel shard ${shard}`);
    const now = Date.now();
    for (const e of entries) {
      if (Number(e.key.slice(e.key.indexOf(":") + 1)) <= last) this.outbox.done(e, now, false);
    }
  }
}
