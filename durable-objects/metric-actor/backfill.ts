/**
 * Backfill: events older than the live windows (POST /v1/events?mode=backfill, pull sources, the CLI's
 * import of old data) go into history and the archive, never into the live windows.
 *
 * Admission, in one transaction: ids already seen (the live dedup table, or `backfill_ids`, which keeps
 * every backfilled id up to BACKFILL_MAX_IDS per stream) are duplicates; the rest are aggregated per
 * minute (sums, sketch, distinct-user registers) into one outbox entry (topic "backfill"), appended to the
 * archive log, and their ids recorded. The flush merges each entry's minute deltas into PostgreSQL's
 * minute rows in one PostgreSQL transaction that also records the entry's key (backfill_batches), so a
 * retried flush merges nothing twice; rollups follow from the rows' updated_at. An entry waits while a
 * live minute it touches is still owed to PostgreSQL (an outage), so the live row's absolute write comes
 * first and the merge lands on top of it. Dimensions of backfilled events are archived, not aggregated
 * into dimension history (a replay from the archive rebuilds them).
 */
import { Accumulator, readAggregate, writeAggregate } from "../../core/aggregate";
import { ByteReader, ByteWriter } from "../../core/bytes";
import type { Config } from "../../core/config";
import type { StreamEvent } from "../../core/event";
import { PeriodHll } from "../../core/hll";
import type { IngestResult } from "../../core/protocol";
import type { MinutePeriod } from "../../db/history";
import type { Archive } from "./archive";
import type { Meta } from "./ingest";
import type { Outbox } from "./outbox";

/** Events older than this are refused on the backfill path (history's longest retention is 2 years). */
export const BACKFILL_MAX_AGE_MS = 400 * 86_400_000;

const seqKey = (n: number) => String(n).padStart(12, "0");

/** Backfill batches waiting for PostgreSQL (an outage) before the stream refuses more backfill (503). */
export const BACKFILL_MAX_PENDING_BATCHES = 10_000;

export function encodeMinutes(rows: MinutePeriod[]): Uint8Array {
  const w = new ByteWriter();
  w.varint(rows.length);
  for (const r of rows) {
    w.varint(r.bucket / 60_000);
    writeAggregate(w, r.aggregate);
    w.varint(r.hll.length);
    w.raw(r.hll);
  }
  return w.bytes();
}

export function decodeMinutes(bytes: ArrayBuffer): MinutePeriod[] {
  const r = new ByteReader(new Uint8Array(bytes));
  const n = r.varint();
  const out: MinutePeriod[] = [];
  for (let i = 0; i < n; i++) {
    const bucket = r.varint() * 60_000;
    const a = readAggregate(r);
    const hll = r.raw(r.varint()).slice();
    out.push({ bucket, aggregate: { ...a, sketch: a.sketch.slice() }, hll });
  }
  return out;
}

export class Backfill {
  /** Ids remembered in backfill_ids (counted on load). */
  ids = 0;
  /** Entries written so far: each entry's outbox key is unique. */
  #seq = 0;

  constructor(
    readonly config: Config,
    readonly sql: SqlStorage,
    readonly storage: DurableObjectStorage,
    readonly outbox: Outbox,
    readonly archive: Archive,
    readonly historyEnabled: boolean,
  ) {}

  load(): void {
    this.ids = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM backfill_ids").one().n;
    const row = this.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'backfill_seq'").toArray()[0];
    this.#seq = row ? Number(row.v) : 0;
  }

  #seen(id: string, horizon: number): boolean {
    if (this.sql.exec("SELECT 1 FROM backfill_ids WHERE id = ?", id).toArray().length > 0) return true;
    return this.sql.exec("SELECT 1 FROM dedup WHERE id = ? AND seen >= ?", id, horizon).toArray().length > 0;
  }

  /**
   * Admits old events (the caller sends events young enough for the live windows down the live path).
   * `meta` is the stream's meta, updated in place with the counters; `persistMeta` writes it in the same
   * transaction.
   */
  admit(events: StreamEvent[], meta: Meta, now: number, persistMeta: () => void): IngestResult {
    const result: IngestResult = { accepted: 0, duplicates: 0, rejected: [] };
    const horizon = now - this.config.DEDUP_HORIZON_MS;
    const fresh = new Set<string>();
    const admitted: StreamEvent[] = [];
    events.forEach((e, i) => {
      if (e.ts < now - BACKFILL_MAX_AGE_MS) {
        result.rejected.push({ i, code: "too_late" });
        return;
      }
      if (e.id !== undefined) {
        if (fresh.has(e.id) || this.#seen(e.id, horizon)) {
          result.duplicates++;
          return;
        }
        if (this.ids + fresh.size >= this.config.BACKFILL_MAX_IDS) {
          // Remembering no more ids would let a repeated backfill count twice: refuse instead.
          result.rejected.push({ i, code: "stream_unavailable" });
          return;
        }
        fresh.add(e.id);
      }
      admitted.push(e);
    });
    result.accepted = admitted.length;
    const counters = meta.counters;
    counters.duplicates += result.duplicates;
    counters.backfilled = (counters.backfilled ?? 0) + admitted.length;
    for (const r of result.rejected) counters.rejected[r.code] = (counters.rejected[r.code] ?? 0) + 1;
    if (admitted.length === 0 && result.duplicates === 0 && result.rejected.length === 0) return result;
    const minutes = new Map<number, { acc: Accumulator; users: PeriodHll }>();
    for (const e of admitted) {
      const m = Math.floor(e.ts / 60_000);
      let g = minutes.get(m);
      if (g === undefined) {
        g = { acc: new Accumulator(), users: new PeriodHll() };
        minutes.set(m, g);
      }
      g.acc.addEvent(e.value);
      if (e.user !== undefined) g.users.addUser(e.user);
    }
    const rows: MinutePeriod[] = [...minutes]
      .sort(([a], [b]) => a - b)
      .map(([m, g]) => ({ bucket: m * 60_000, aggregate: g.acc.toAggregate(), hll: g.users.encode() }));
    this.storage.transactionSync(() => {
      for (const id of fresh) this.sql.exec("INSERT INTO backfill_ids (id) VALUES (?)", id);
      if (rows.length > 0 && this.historyEnabled) {
        const seq = this.#seq + 1;
        this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('backfill_seq', ?)", String(seq));
        this.outbox.mark("backfill", seqKey(seq), now, encodeMinutes(rows));
      }
      this.archive.append(meta.stream, admitted, now);
      persistMeta();
    });
    this.ids += fresh.size;
    if (rows.length > 0 && this.historyEnabled) this.#seq++;
    return result;
  }

  /** Minutes (epoch-minute numbers) an entry touches. */
  static minutesOf(payload: ArrayBuffer): number[] {
    return decodeMinutes(payload).map((r) => r.bucket / 60_000);
  }
}
