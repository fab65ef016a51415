/**
 * The history outbox: writes the stream's ended minutes to PostgreSQL.
 *
 * A minute that receives events is marked in the outbox in the same
 * transaction as the events. Once the minute has ended (plus
 * FLUSH_INTERVAL_MS for stragglers, and coalescing later late events over the
 * same interval) its full aggregate is written as absolute values: a retry,
 * or a late event that sets the row again, never adds anything twice. The
 * open minute is not written at all: the history API reads it from the actor
 * (`pendingRows`) and merges it at the seam, so PostgreSQL sees each minute
 * about once instead of every flush interval.
 *
 * Distinct users: a minute's HyperLogLog is held only until the minute is in
 * history; a later late event starts a fresh (delta) HyperLogLog, and every
 * write unions the actor's registers with the row's (register-wise max is
 * idempotent), so the row always holds the whole minute.
 *
 * An entry is cleared only if its minute did not change while the write was
 * in flight. While PostgreSQL is unreachable the outbox waits and retries
 * back off (up to FLUSH_MAX_BACKOFF_MS); a minute about to leave the ring is
 * first frozen into its outbox entry. Bound: at most OUTBOX_MAX_MINUTES
 * minutes wait (24 h of a busy stream); past that the oldest are dropped and
 * counted (history.dropped_minutes), so a day-long outage cannot grow the
 * actor without limit.
 */
import type { Pool } from "@neondatabase/serverless";
import { type Aggregate, readAggregate, writeAggregate } from "../../core/aggregate";
import { deadline, within } from "../../core/async";
import { ByteReader, ByteWriter } from "../../core/bytes";
import type { Config } from "../../core/config";
import { PeriodHll } from "../../core/hll";
import type { AlertEvent } from "../../core/live";
import type { FlushError, FlushStatus } from "../../core/protocol";
import { isoOrNull } from "../../core/time";
import { minuteOf, secondOf } from "../../core/window";
import { type Db, historyEnabled, openDb } from "../../db/client";
import { applyBackfill, type MinutePeriod, upsertAlertEvents, upsertMinutesMergingUsers } from "../../db/history";
import type { Wakeable } from "../planner";
import { Backfill, decodeMinutes } from "./backfill";
import type { Dims } from "./dims";
import type { Meta } from "./ingest";
import type { Outbox, OutboxEntry } from "./outbox";
import type { WindowStore } from "./store";

/** Most minutes waiting for PostgreSQL (24 h); older ones are dropped and counted. */
export const OUTBOX_MAX_MINUTES = 1440;
/** Minutes and alert rows written per flush. */
const FLUSH_BATCH = 200;
/** A connection unused this long is closed (the next flush opens one). */
const DB_IDLE_MS = 60_000;

const minuteKey = (m: number) => String(m).padStart(10, "0");

export function encodeFrozen(a: Aggregate, hll: PeriodHll | undefined): Uint8Array {
  const w = new ByteWriter();
  writeAggregate(w, a);
  const h = hll?.encode() ?? new Uint8Array(0);
  w.varint(h.length);
  w.raw(h);
  return w.bytes();
}

export function decodeFrozen(bytes: ArrayBuffer): { aggregate: Aggregate; hll: Uint8Array } {
  const r = new ByteReader(new Uint8Array(bytes));
  const aggregate = readAggregate(r);
  const hll = r.raw(r.varint());
  return { aggregate: { ...aggregate, sketch: aggregate.sketch.slice() }, hll: hll.slice() };
}

/** The error and its causes, outermost first (drizzle wraps the driver's error as `cause`). */
function causes(err: unknown): Array<{ name?: string; message?: string; code?: unknown }> {
  const out: Array<{ name?: string; message?: string; code?: unknown }> = [];
  let e: unknown = err;
  for (let depth = 0; e !== null && typeof e === "object" && depth < 5; depth++) {
    out.push(e as { name?: string; message?: string; code?: unknown });
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

/** The innermost error's class and message, for server logs. */
export function rootCause(err: unknown): string {
  const chain = causes(err);
  const root = chain[chain.length - 1] ?? {};
  return `${root.name ?? "Error"}: ${root.message ?? String(err)}`.slice(0, 300);
}

/** What an API client may see of a failed flush: a category and a short message, never SQL or hosts. */
export function describeFlushError(err: unknown): FlushError {
  const chain = causes(err);
  const sqlState = chain.map((e) => e.code).find((c) => typeof c === "string" && /^[0-9A-Z]{5}$/.test(c));
  if (sqlState !== undefined) {
    return { category: "rejected", message: `PostgreSQL refused the write (SQLSTATE ${sqlState}).` };
  }
  // Judge by the driver's own errors, not drizzle's wrapper (whose message quotes the query).
  const inner = chain.length > 1 ? chain.slice(1) : chain;
  const text = inner
    .map((e) => `${e.name ?? ""} ${e.message ?? ""}`)
    .join(" ")
    .toLowerCase();
  if (text.includes("timeout") || text.includes("timed out") || inner.some((e) => e.name === "AbortError")) {
    return { category: "timeout", message: "PostgreSQL did not answer in time." };
  }
  if (/connect|network|socket|websocket|refused|reset|closed|lost|terminat|unreachable|fetch failed|econn/.test(text)) {
    return { category: "unreachable", message: "PostgreSQL could not be reached." };
  }
  return { category: "unknown", message: "The write to PostgreSQL failed." };
}

export class History implements Wakeable {
  readonly name = "history";
  readonly enabled: boolean;
  #flush = {
    failures: 0,
    nextAt: 0,
    lastAt: null as number | null,
    lastError: null as FlushError | null,
    flushed: 0,
  };
  #db: { pool: Pool; db: Db } | null = null;
  #dbUsedAt = 0;
  /** Connections this instance opened (one is kept across flushes; a new one only after an error or idling). */
  connectionsOpened = 0;
  #dropped = 0;

  constructor(
    readonly env: Env,
    readonly config: Config,
    readonly sql: SqlStorage,
    readonly storage: DurableObjectStorage,
    readonly outbox: Outbox,
    readonly store: WindowStore,
    readonly meta: () => Meta | null,
    readonly dims: () => Dims,
    /** Backfill entries a running replay holds back (replay.ts). */
    readonly holdsBackfill: (key: string) => boolean = () => false,
  ) {
    this.enabled = historyEnabled(env);
  }

  load(): void {
    const row = this.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'history'").toArray()[0];
    this.#dropped = row ? (JSON.parse(row.v) as { dropped: number }).dropped : 0;
  }

  /** Marks changed minutes for history. Call inside the ingest's transaction. */
  markMinutes(minutes: Iterable<number>, now: number): void {
    if (!this.enabled) return;
    for (const m of minutes) {
      this.outbox.mark("minute", minuteKey(m), Math.max((m + 1) * 60_000, now) + this.config.FLUSH_INTERVAL_MS);
    }
  }

  /** Marks an alert transition for its PostgreSQL row (again, when its deliveries change). */
  markAlert(event: AlertEvent, now: number): void {
    if (!this.enabled) return;
    this.outbox.mark("alert", event.id, now, new TextEncoder().encode(JSON.stringify(event)));
  }

  nextWake(): number | null {
    if (!this.enabled) return null;
    let next = Number.POSITIVE_INFINITY;
    for (const t of [
      this.outbox.nextDue("minute"),
      this.outbox.nextDue("dims"),
      this.outbox.nextDue("alert"),
      this.outbox.nextDue("backfill"),
    ]) {
      if (t !== null) next = Math.min(next, t);
    }
    if (Number.isFinite(next)) next = Math.max(next, this.#flush.nextAt);
    if (this.#db !== null) next = Math.min(next, this.#dbUsedAt + DB_IDLE_MS);
    return Number.isFinite(next) ? next : null;
  }

  async wake(now: number): Promise<void> {
    const ready = now >= this.#flush.nextAt;
    const minutes = ready ? this.outbox.due("minute", now, FLUSH_BATCH) : [];
    const alerts = ready ? this.outbox.due("alert", now, FLUSH_BATCH) : [];
    // Dimension minutes hold up to thousands of rows each: a few per flush.
    const dims = ready ? this.outbox.due("dims", now, 5) : [];
    // A backfill entry waits while a live minute it touches is owed: the live row's absolute write first.
    const owed = new Set(
      this.outbox
        .byPrefix("minute", "")
        .filter((e) => e.state === "pending")
        .map((e) => Number(e.key)),
    );
    const backfills = ready
      ? this.outbox
          .due("backfill", now, 5)
          .filter((e) => !this.holdsBackfill(e.key))
          .filter((e) => !Backfill.minutesOf(e.payload as ArrayBuffer).some((m) => owed.has(m)))
      : [];
    if (minutes.length + alerts.length + dims.length + backfills.length > 0)
      await this.#write(minutes, alerts, dims, backfills);
    if (this.#db !== null && Date.now() - this.#dbUsedAt >= DB_IDLE_MS) await this.#closeDb();
  }

  /**
   * Freezes unflushed minutes about to leave the ring into their outbox entries (their aggregate is
   * final: too late for new events), and drops the oldest beyond OUTBOX_MAX_MINUTES. Call inside a transaction.
   */
  freezeBefore(cutoffMinute: number): void {
    if (!this.enabled) return;
    const w = this.store.windows;
    for (const e of this.outbox.byPrefix("minute", "")) {
      const m = Number(e.key);
      if (m >= cutoffMinute || e.payload !== null || e.state !== "pending") continue;
      this.outbox.setPayload("minute", e.key, encodeFrozen(w.minute(m), w.minuteUsers.get(m)));
    }
    const dropped = this.outbox.dropOldestPending("minute", OUTBOX_MAX_MINUTES);
    if (dropped.length > 0) {
      this.#dropped += dropped.length;
      this.sql.exec(
        "INSERT OR REPLACE INTO meta (k, v) VALUES ('history', ?)",
        JSON.stringify({ dropped: this.#dropped }),
      );
    }
  }

  #rowOf(e: OutboxEntry): MinutePeriod | null {
    const m = Number(e.key);
    if (e.payload !== null) return { bucket: m * 60_000, ...decodeFrozen(e.payload) };
    const w = this.store.windows;
    const aggregate = w.minute(m);
    if (aggregate.count === 0 && !w.minuteUsers.has(m)) return null;
    return { bucket: m * 60_000, aggregate, hll: (w.minuteUsers.get(m) ?? new PeriodHll()).encode() };
  }

  /** Minutes the actor holds that history does not (yet) have in full, within [fromMs, toMs). */
  pendingRows(fromMs: number, toMs: number): MinutePeriod[] {
    if (!this.enabled) return [];
    const out: MinutePeriod[] = [];
    for (const e of this.outbox.byPrefix("minute", "")) {
      if (e.state !== "pending") continue;
      const m = Number(e.key);
      if (m * 60_000 < fromMs || m * 60_000 >= toMs) continue;
      const row = this.#rowOf(e);
      if (row) out.push(row);
    }
    return out;
  }

  async #connection(): Promise<Db> {
    if (this.#db === null) {
      this.#db = openDb(this.env);
      this.connectionsOpened++;
    }
    this.#dbUsedAt = Date.now();
    return this.#db.db;
  }

  async #closeDb(): Promise<void> {
    const conn = this.#db;
    this.#db = null;
    // A connection that stopped answering may not answer the goodbye either: never wait on it for long.
    if (conn) await within(conn.pool.end(), 1000, undefined);
  }

  async #write(
    minutes: OutboxEntry[],
    alerts: OutboxEntry[],
    dims: OutboxEntry[],
    backfills: OutboxEntry[],
  ): Promise<void> {
    const meta = this.meta();
    if (meta === null) {
      // Cannot happen (entries are written with the stream's meta), but never spin the alarm on it.
      this.#flush.nextAt = Date.now() + this.config.FLUSH_MAX_BACKOFF_MS;
      return;
    }
    const rows: MinutePeriod[] = [];
    const written: OutboxEntry[] = [];
    const orphans: OutboxEntry[] = [];
    for (const e of minutes) {
      const row = this.#rowOf(e);
      if (row === null) orphans.push(e);
      else {
        rows.push(row);
        written.push(e);
      }
    }
    const events = alerts.map((e) => ({
      entry: e,
      event: JSON.parse(new TextDecoder().decode(e.payload as ArrayBuffer)) as AlertEvent,
    }));
    try {
      const db = await this.#connection();
      // A write that hangs (a stalled connection, a locked row) must not hold the alarm, and with it
      // housekeeping, live pushes and alerts: past FLUSH_TIMEOUT_MS it is abandoned and retried.
      await deadline(
        (async () => {
          if (rows.length) await upsertMinutesMergingUsers(db, meta.tenant, meta.stream, rows);
          if (dims.length) await this.dims().flush(db, meta, dims);
          for (const e of backfills) {
            await applyBackfill(db, meta.tenant, meta.stream, e.key, decodeMinutes(e.payload as ArrayBuffer));
          }
          if (events.length) {
            await upsertAlertEvents(
              db,
              meta.tenant,
              events.map((x) => ({ event: x.event, deliveries: this.deliveries(x.event.id) })),
            );
          }
        })(),
        this.config.FLUSH_TIMEOUT_MS,
        "PostgreSQL write",
      );
      this.#dbUsedAt = Date.now();
    } catch (err) {
      await this.#closeDb();
      this.#flush.failures++;
      this.#flush.lastError = describeFlushError(err);
      this.#flush.nextAt =
        Date.now() +
        Math.min(this.config.FLUSH_INTERVAL_MS * 2 ** this.#flush.failures, this.config.FLUSH_MAX_BACKOFF_MS);
      // Server logs get the class and message (never connection strings; the driver's messages hold none).
      console.error(`edgepulse: history flush failed (${this.#flush.lastError.category}): ${rootCause(err)}`);
      return;
    }
    const now = Date.now();
    const current = minuteOf(secondOf(now));
    this.storage.transactionSync(() => {
      for (const e of [...written, ...orphans]) {
        // Changed while we wrote: it stays pending and is written again.
        if (!this.outbox.done(e, now, false)) continue;
        const m = Number(e.key);
        if (m < current) this.store.dropMinuteUsers(m);
      }
      for (const x of events) this.outbox.done(x.entry, now, false);
      for (const e of dims) this.outbox.done(e, now, false);
      for (const e of backfills) this.outbox.done(e, now, false);
    });
    this.#flush.failures = 0;
    this.#flush.nextAt = 0;
    this.#flush.lastAt = now;
    this.#flush.lastError = null;
    this.#flush.flushed += rows.length;
  }

  /** Delivery status of a transition's webhooks (kept by the webhook part in the outbox). */
  deliveries(eventId: string): unknown[] {
    return this.outbox.byPrefix("webhook", `${eventId}|`).map((d) => ({
      target: d.key.slice(eventId.length + 1),
      status: d.state === "done" ? "delivered" : d.state,
      attempts: d.attempts,
      last_error: d.last_error,
      delivered_at: d.state === "done" ? d.done_at : null,
    }));
  }

  status(now = Date.now()): FlushStatus {
    const current = minuteOf(secondOf(now));
    let pending = 0;
    let open = 0;
    if (this.enabled) {
      for (const e of this.outbox.byPrefix("minute", "")) {
        if (e.state !== "pending") continue;
        if (Number(e.key) < current) pending++;
        else open++;
      }
    }
    const dimsPending = this.enabled ? this.outbox.pendingCount("dims") : 0;
    return {
      enabled: this.enabled,
      pending_minutes: pending,
      open_minutes: open,
      failures: this.#flush.failures,
      last_flush_at: isoOrNull(this.#flush.lastAt),
      last_error: this.#flush.lastError,
      minutes_flushed: this.#flush.flushed,
      dropped_minutes: this.#dropped,
      dimension_minutes_pending: dimsPending,
    };
  }
}
