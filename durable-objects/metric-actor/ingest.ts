/**
 * Ingest and dedup: admits a stream's events and makes them durable.
 *
 * Group commit: batches that arrive while one is being prepared join it,
 * and the whole group is admitted in arrival order and written in one
 * transaction (windows, dedup ids, dimension values, counters and the
 * history outbox together). Each caller still gets its own receipt, and none
 * returns before the shared write is durable (the output gate holds the
 * replies). If storage refuses the write, the actor reloads the truth and
 * every caller of the group is failed, so the collector reports those events
 * as not accepted.
 */
import type { Config } from "../../core/config";
import type { DimApplyResult } from "../../core/dims";
import type { EventErrorCode } from "../../core/errors";
import type { StreamEvent } from "../../core/event";
import { admitTime } from "../../core/event";
import type { IngestRequest, IngestResult, StreamCounters } from "../../core/protocol";
import type { ApplyResult, WindowEvent } from "../../core/window";
import type { WindowStore } from "./store";

export interface Meta {
  tenant: string;
  stream: string;
  counters: StreamCounters;
  firstEventAt: number | null;
  lastEventAt: number | null;
}

export const emptyCounters = (): StreamCounters => ({ accepted: 0, duplicates: 0, late: 0, future: 0, rejected: {} });

export function emptyMeta(tenant: string, stream: string): Meta {
  return { tenant, stream, counters: emptyCounters(), firstEventAt: null, lastEventAt: null };
}

export interface IngestHooks {
  /** Before the commit's transaction: apply the admitted events to the dimension state (in memory). */
  applyDims(events: WindowEvent[]): DimApplyResult;
  /**
   * Inside the commit's transaction, after the windows were persisted: persist dimensions, record what
   * history owes, append the admitted events to the archive log.
   */
  inTransaction(changed: ApplyResult, dims: DimApplyResult, admitted: StreamEvent[], meta: Meta, now: number): void;
  /** After the commit: the stream's events are durable. */
  committed(admitted: number, now: number): void;
  /** Storage refused a write: reload everything from storage. */
  reload(): void;
}

interface Waiting {
  req: IngestRequest;
  resolve: (r: IngestResult) => void;
  reject: (e: unknown) => void;
}

export class Ingest {
  meta: Meta | null = null;
  /** Ids remembered (rows of `dedup`), bounded by DEDUP_MAX_IDS at each housekeeping. */
  dedupCount = 0;
  #waiting: Waiting[] = [];

  constructor(
    readonly sql: SqlStorage,
    readonly storage: DurableObjectStorage,
    readonly config: Config,
    readonly store: WindowStore,
    readonly hooks: IngestHooks,
  ) {}

  load(): void {
    const row = this.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'meta'").toArray()[0];
    this.meta = row ? (JSON.parse(row.v) as Meta) : null;
    this.dedupCount = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM dedup").one().n;
  }

  /** The meta of a stream that has not received an event yet (rules may be set first). */
  ensureMeta(tenant: string, stream: string): Meta {
    this.meta ??= emptyMeta(tenant, stream);
    return this.meta;
  }

  /** Applies a batch of one stream's events; resolves once they are durable. */
  ingest(req: IngestRequest): Promise<IngestResult> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ req, resolve, reject });
      // Let concurrent calls join this group before it is committed.
      if (this.#waiting.length === 1) setTimeout(() => this.#commit(), 0);
    });
  }

  #commit(): void {
    const group = this.#waiting;
    this.#waiting = [];
    try {
      this.#commitGroup(group);
    } catch (err) {
      // Storage refused the write (or the state could not be applied): fail every caller, so the
      // collector reports their events as not accepted, then rebuild memory from storage.
      for (const p of group) p.reject(err);
      try {
        this.hooks.reload();
      } catch (resetErr) {
        // ctx.abort() throws to unwind: the object is being reset; nothing else to do here.
        console.error(`edgepulse: actor reset after a refused write: ${(resetErr as Error).message}`);
      }
    }
  }

  #commitGroup(group: Waiting[]): void {
    const now = Date.now();
    const meta = this.meta ?? emptyMeta(group[0].req.tenant, group[0].req.stream);
    const counters: StreamCounters = structuredClone(meta.counters);
    const horizon = now - this.config.DEDUP_HORIZON_MS;
    const newIds = new Set<string>();
    const admitted: StreamEvent[] = [];
    const countRejection = (code: EventErrorCode, n = 1) => {
      counters.rejected[code] = (counters.rejected[code] ?? 0) + n;
    };
    const results = group.map(({ req }): IngestResult => {
      const result: IngestResult = { accepted: 0, duplicates: 0, rejected: [] };
      const invalid = Object.entries(req.invalid ?? {});
      // A redelivered request (same key) has had its rejections counted already.
      const counted =
        invalid.length > 0 && req.key !== undefined && (newIds.has(req.key) || this.#seen(req.key, horizon));
      if (invalid.length > 0 && req.key !== undefined) newIds.add(req.key);
      if (!counted) for (const [code, n] of invalid) countRejection(code as EventErrorCode, n ?? 0);
      req.events.forEach((e, i) => {
        if (e.id !== undefined && (newIds.has(e.id) || this.#seen(e.id, horizon))) {
          result.duplicates++;
          return;
        }
        const code = admitTime(e.ts, now, this.config);
        if (code) {
          result.rejected.push({ i, code });
          countRejection(code);
          if (code === "too_late") counters.late++;
          else counters.future++;
          return;
        }
        if (e.id !== undefined) newIds.add(e.id);
        admitted.push(e);
        result.accepted++;
      });
      counters.duplicates += result.duplicates;
      return result;
    });
    counters.accepted += admitted.length;
    const changed = this.store.windows.apply(admitted);
    const dims = this.hooks.applyDims(admitted);
    // Values past a dimension's budget are counted in __other__; keys past MAX_DIM_KEYS are dropped.
    if (dims.folded) counters.dims_overflow = (counters.dims_overflow ?? 0) + dims.folded;
    if (dims.droppedKeys) counters.dim_keys_overflow = (counters.dim_keys_overflow ?? 0) + dims.droppedKeys;
    const next: Meta = {
      ...meta,
      counters,
      firstEventAt: meta.firstEventAt ?? (admitted.length ? now : null),
      lastEventAt: admitted.length ? now : meta.lastEventAt,
    };
    this.storage.transactionSync(() => {
      this.store.persistApply(changed);
      this.hooks.inTransaction(changed, dims, admitted, next, now);
      for (const id of newIds) this.sql.exec("INSERT OR REPLACE INTO dedup (id, seen) VALUES (?, ?)", id, now);
      this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('meta', ?)", JSON.stringify(next));
    });
    this.meta = next;
    this.dedupCount += newIds.size;
    group.forEach((p, k) => {
      p.resolve(results[k]);
    });
    this.hooks.committed(admitted.length, now);
  }

  #seen(id: string, horizon: number): boolean {
    return this.sql.exec("SELECT 1 FROM dedup WHERE id = ? AND seen >= ?", id, horizon).toArray().length > 0;
  }

  /** Forgets ids past the horizon and the oldest beyond DEDUP_MAX_IDS. Call inside a transaction. */
  trimDedup(now: number): void {
    const removed = this.sql.exec("DELETE FROM dedup WHERE seen < ?", now - this.config.DEDUP_HORIZON_MS).rowsWritten;
    const excess = this.dedupCount - removed - this.config.DEDUP_MAX_IDS;
    if (excess > 0) {
      this.sql.exec("DELETE FROM dedup WHERE id IN (SELECT id FROM dedup ORDER BY seen LIMIT ?)", excess);
    }
    this.dedupCount = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM dedup").one().n;
  }
}
