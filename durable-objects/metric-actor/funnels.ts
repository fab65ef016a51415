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
 * Bounds: at most FUNNEL_MAX_PENDING batches wait (e.g. while a shard is unreachable); past that the
 * oldest are let go and counted in the stream's counters as funnel_dropped. Taps ≤ MAX_FUNNELS_PER_TENANT ×
 * MAX_FUNNEL_STEPS.
 */

import type { StreamEvent } from "../../core/event";
import { encodeItems, FUNNEL_SHARDS, type FunnelItem, funnelShardOf, type Tap, tapEvent } from "../../core/funnels";
import type { FunnelBatch } from "../funnel-actor";
import type { Wakeable } from "../planner";
import type { Meta } from "./ingest";
import type { Outbox } from "./outbox";

/** Batches waiting at most (each holds one commit's step events for one shard). */
export const FUNNEL_MAX_PENDING = 20_000;
/** Batches sent per delivery. */
const PER_DELIVERY = 100;
const MAX_BACKOFF_MS = 60_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const keyOf = (shard: number, seq: number) => `${shard}:${String(seq).padStart(15, "0")}`;

export class FunnelFeed implements Wakeable {
  readonly name = "funnels";
  #taps: Tap[] = [];
  #seq = 0;
  #dropped = 0;
  #busy = false;
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
    this.#seq = Number(get("funnel_seq") ?? 0);
    this.#dropped = Number(get("funnel_dropped") ?? 0);
  }

  taps(): Tap[] {
    return this.#taps;
  }

  /** Replaces the stream's taps (every funnel step it feeds); applies to events accepted from now on. */
  setTaps(taps: Tap[]): void {
    this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('funnel_taps', ?)", JSON.stringify(taps));
    this.#taps = taps;
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
    for (const [k, list] of byShard) {
      this.#seq++;
      this.outbox.mark("funnel", keyOf(k, this.#seq), now, encoder.encode(encodeItems(list)));
    }
    this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('funnel_seq', ?)", String(this.#seq));
    const dropped = this.outbox.dropOldestPending("funnel", FUNNEL_MAX_PENDING).length;
    if (dropped > 0) {
      this.#dropped += dropped;
      this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('funnel_dropped', ?)", String(this.#dropped));
    }
  }

  nextWake(): number | null {
    // While a delivery is under way the planner re-arms when it ends (no alarm spins meanwhile).
    if (this.#busy) return null;
    const due = this.outbox.nextDue("funnel");
    return due === null ? null : Math.max(due, this.#retryAt);
  }

  async wake(now: number): Promise<void> {
    const meta = this.meta();
    if (this.#busy || meta === null || now < this.#retryAt) return;
    this.#busy = true;
    try {
      const shards: Array<Promise<void>> = [];
      for (let k = 0; k < FUNNEL_SHARDS; k++) {
        const entries = this.outbox.pendingByKey("funnel", `${k}:`, PER_DELIVERY);
        if (entries.length > 0) shards.push(this.#deliver(meta, k, entries));
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

  async #deliver(meta: Meta, shard: number, entries: ReturnType<Outbox["pendingByKey"]>): Promise<void> {
    const batches: FunnelBatch[] = entries.map((e) => ({
      seq: Number(e.key.slice(e.key.indexOf(":") + 1)),
      items: decoder.decode(e.payload as ArrayBuffer),
    }));
    const stub = this.env.FUNNEL_ACTOR.getByName(`${meta.tenant}#funnels#${shard}`);
    const last = await stub.apply(meta.stream, batches);
    const now = Date.now();
    for (const e of entries) {
      if (Number(e.key.slice(e.key.indexOf(":") + 1)) <= last) this.outbox.done(e, now, false);
    }
  }
}
