/**
 * Dimensions in the actor: moves the stream's dimension state (core/dims.ts)
 * in and out of SQLite, packs ended minutes, and writes dimension rows to
 * PostgreSQL through the one outbox.
 *
 * Storage: `dim_defs` (dimensions: keys seen, declared sets), `dim_values`
 * (each dimension's value dictionary), `dim_log` (one row per commit and
 * minute: the contributions not yet packed, replayed on wake-up), and
 * `dim_blocks` (one packed block per ended minute, kept for the ring's
 * hour so late events rewrite whole rows). Memory holds the open minutes'
 * columns and DIM_HOT_MINUTES of blocks.
 *
 * History: once a minute is packed, its rows are owed to PostgreSQL
 * (outbox topic "dims"): every value's absolute aggregate and HyperLogLog,
 * and for "__other__" the frequent-items summaries of what was folded.
 */
import type { Aggregate, Figures } from "../../core/aggregate";
import type { Config } from "../../core/config";
import {
  type DimApplyResult,
  type DimEvent,
  type Dimension,
  DimState,
  dimOfGid,
  distinctOf,
  OTHER_VID,
  readBlock,
  vidOfGid,
} from "../../core/dims";
import { encodeRegisters } from "../../core/hll";
import { expiryCutoff, minuteOf, secondOf } from "../../core/window";
import type { Db } from "../../db/client";
import { type DimPeriodInsert, upsertDimPeriods } from "../../db/history";
import { metricsDimMinute } from "../../db/schema";
import type { Meta } from "./ingest";
import type { Outbox, OutboxEntry } from "./outbox";

const minuteKey = (m: number) => String(m).padStart(10, "0");

/** A dimension row as the query engine reads it (the same shape whether it comes from PostgreSQL or an actor). */
export interface DimRow {
  /** Start of the minute, epoch ms. */
  bucket: number;
  dim: string;
  value: string;
  aggregate: Aggregate;
  hll: Uint8Array;
  topkCount: Uint8Array | null;
  topkSum: Uint8Array | null;
}

/** One group of one breakdown over a window (GET /v1/metrics). */
export interface BreakdownFigures {
  keys: string[];
  values: string[];
  figures: Figures;
}

const NONE = "__none__";

export class Dims {
  state: DimState;
  #seq = 0;

  constructor(
    readonly sql: SqlStorage,
    readonly config: Config,
    readonly outbox: Outbox,
    readonly history: boolean,
  ) {
    this.state = new DimState({ maxKeys: config.MAX_DIM_KEYS, maxValues: config.MAX_DIM_VALUES });
  }

  /** Rebuilds the dimension state: definitions, dictionaries, hot blocks, then the log of open minutes. */
  load(now: number): void {
    const s = new DimState({ maxKeys: this.config.MAX_DIM_KEYS, maxValues: this.config.MAX_DIM_VALUES });
    this.state = s;
    const active: string[][] = [];
    for (const r of this.sql.exec<{ id: number; name: string; keys: string; active: number }>(
      "SELECT id, name, keys, active FROM dim_defs ORDER BY id",
    )) {
      const keys = JSON.parse(r.keys) as string[];
      s.loadDimension({ id: r.id, name: r.name, keys });
      if (r.active && !(keys.length === 1 && keys[0] === r.name)) active.push(keys);
    }
    s.retireSets(active);
    for (const r of this.sql.exec<{ dim: number; vid: number; value: string; last: number }>(
      "SELECT dim, vid, value, last FROM dim_values",
    )) {
      s.dicts.get(r.dim)?.load(r.vid, r.value, r.last);
    }
    const hotFrom = minuteOf(secondOf(now)) - 15;
    for (const r of this.sql.exec<{ minute: number; block: ArrayBuffer }>(
      "SELECT minute, block FROM dim_blocks WHERE minute >= ?",
      hotFrom,
    )) {
      s.hot.set(r.minute, new Uint8Array(r.block));
    }
    for (const r of this.sql.exec<{ minute: number; seq: number; data: ArrayBuffer }>(
      "SELECT minute, seq, data FROM dim_log ORDER BY seq",
    )) {
      s.replay(r.minute, new Uint8Array(r.data));
      this.#seq = Math.max(this.#seq, r.seq);
    }
  }

  /** The stream's declared dimension sets. */
  sets(): string[][] {
    return this.state.sets.map((d) => d.keys);
  }

  /** Each key seen (a dimension of its own) and each declared set: GET /v1/metrics's breakdowns. */
  #breakdownDims(): Dimension[] {
    const singles = this.dimensions().filter((d) => d.keys.length === 1 && d.keys[0] === d.name);
    return [...singles, ...this.state.sets];
  }

  /** The breakdowns as key lists (the hub's record carries them). */
  breakdowns(): string[][] {
    return this.#breakdownDims().map((d) => d.keys);
  }

  /**
   * Every group of every breakdown over minutes [fromMinute, toMinute], from this actor's own blocks and
   * open minutes (it holds the last hour whether or not history is on): GET /v1/metrics's dimension
   * series, one call per stream and no PostgreSQL read. A set's group lists its keys' values in order
   * (`__none__` for a key an event did not carry); values past the budget are the `__other__` group.
   */
  breakdownFigures(fromMinute: number, toMinute: number, seconds: number): BreakdownFigures[] {
    const dims = this.#breakdownDims();
    const cold = new Map<number, Uint8Array>();
    for (const r of this.sql.exec<{ minute: number; block: ArrayBuffer }>(
      "SELECT minute, block FROM dim_blocks WHERE minute >= ? AND minute <= ?",
      fromMinute,
      toMinute,
    )) {
      if (!this.state.isHot(r.minute)) cold.set(r.minute, new Uint8Array(r.block));
    }
    const span = this.state.span(
      fromMinute,
      toMinute,
      dims.map((d) => d.id),
      cold,
    );
    const out: BreakdownFigures[] = [];
    for (const d of dims) {
      for (const [vid, g] of span.groups.get(d.id) ?? []) {
        const value = this.state.valueOf(d.id, vid);
        if (value === undefined || g.acc.count === 0) continue;
        const values =
          d.keys.length === 1
            ? [value]
            : vid === OTHER_VID
              ? d.keys.map(() => value)
              : (JSON.parse(value) as Array<string | null>).map((v) => v ?? NONE);
        out.push({ keys: d.keys, values, figures: g.acc.figures(seconds, distinctOf(g.users)) });
      }
    }
    return out;
  }

  dimensions(): Dimension[] {
    return this.state.dims.filter((d) => d !== undefined);
  }

  /**
   * Declares the stream's dimension sets (replacing the previous declaration). Applies from the next
   * event on; sets no longer declared keep their history. Call inside a transaction.
   */
  declareSets(sets: string[][]): void {
    const created = this.state.declareSets(sets);
    this.state.retireSets(sets);
    for (const d of created) this.#writeDim(d, true);
    const names = new Set(sets.map((k) => k.join("+")));
    for (const d of this.state.dims) {
      if (d && !(d.keys.length === 1 && d.keys[0] === d.name)) {
        this.sql.exec("UPDATE dim_defs SET active = ? WHERE id = ?", names.has(d.name) ? 1 : 0, d.id);
      }
    }
  }

  #writeDim(d: Dimension, active: boolean): void {
    this.sql.exec(
      "INSERT OR REPLACE INTO dim_defs (id, name, keys, active) VALUES (?, ?, ?, ?)",
      d.id,
      d.name,
      JSON.stringify(d.keys),
      active ? 1 : 0,
    );
  }

  /**
   * Makes the stream know these keys as dimensions (a replay found them in the archive: backfilled events
   * are not aggregated by dimension live), within the key budget. Returns the keys the stream knows
   * (refused ones are left out). Call inside a transaction.
   */
  adoptKeys(keys: string[]): string[] {
    const known: string[] = [];
    for (const k of keys) {
      const d = this.state.addKey(k);
      if (d === null) continue;
      if (d.created) this.#writeDim(d.dim, true);
      known.push(k);
    }
    return known;
  }

  /** Applies admitted events in memory; returns what persist() must write in the commit's transaction. */
  apply(events: DimEvent[]): DimApplyResult {
    return this.state.apply(events);
  }

  /** Writes an apply's log rows, new dimensions and new values. Call inside the ingest's transaction. */
  persist(r: DimApplyResult): void {
    for (const d of r.newDims) this.#writeDim(d, true);
    for (const v of r.newValues) {
      this.sql.exec(
        "INSERT OR REPLACE INTO dim_values (dim, vid, value, last) VALUES (?, ?, ?, ?)",
        v.dim,
        v.vid,
        v.value,
        v.minute,
      );
    }
    for (const [minute, data] of r.log) {
      this.#seq++;
      this.sql.exec("INSERT INTO dim_log (minute, seq, data) VALUES (?, ?, ?)", minute, this.#seq, data);
    }
  }

  #block(minute: number): Uint8Array | null {
    const hot = this.state.hot.get(minute);
    if (hot) return hot;
    const row = this.sql
      .exec<{ block: ArrayBuffer }>("SELECT block FROM dim_blocks WHERE minute = ?", minute)
      .toArray()[0];
    return row ? new Uint8Array(row.block) : null;
  }

  /**
   * Housekeeping: packs every ended minute (its block merged with the contributions since), stores the
   * block, drops its log, marks its rows for history, records when values were last seen; expires
   * blocks, hot blocks and values past the ring. Call inside a transaction.
   */
  housekeep(now: number): void {
    for (const m of this.state.ended(now)) {
      const block = this.state.pack(m, this.#block(m), now);
      this.sql.exec("INSERT OR REPLACE INTO dim_blocks (minute, block) VALUES (?, ?)", m, block);
      this.sql.exec("DELETE FROM dim_log WHERE minute = ?", m);
      if (this.history) this.outbox.mark("dims", minuteKey(m), now + this.config.FLUSH_INTERVAL_MS);
      const seen = new Set<number>();
      for (const g of readBlock(block).groups) if (vidOfGid(g.gid) !== OTHER_VID) seen.add(g.gid);
      for (const gid of seen) {
        this.sql.exec(
          "UPDATE dim_values SET last = max(last, ?) WHERE dim = ? AND vid = ?",
          m,
          dimOfGid(gid),
          vidOfGid(gid),
        );
      }
    }
    const first = minuteOf(expiryCutoff(now));
    for (const { dim, vid } of this.state.expire(now, first)) {
      this.sql.exec("DELETE FROM dim_values WHERE dim = ? AND vid = ?", dim, vid);
    }
    this.sql.exec("DELETE FROM dim_blocks WHERE minute < ?", first);
    this.sql.exec("DELETE FROM dim_log WHERE minute < ?", first);
  }

  /** When housekeeping must next pack: the end of the earliest open minute. */
  nextPack(now: number): number | null {
    let first: number | null = null;
    for (const m of this.state.open.keys()) if (first === null || m < first) first = m;
    if (first === null) return null;
    return Math.max(now, (first + 1) * 60_000);
  }

  /**
   * Rows for the query engine over [fromMs, toMs): with history on, the minutes PostgreSQL does not
   * have in full yet (open, and packed but not yet written); with history off, every minute held.
   */
  rows(fromMs: number, toMs: number, dims: string[], values?: string[]): DimRow[] {
    const only = new Set(dims);
    const onlyValues = values ? new Set(values) : undefined;
    const minutes = new Set<number>();
    const lo = Math.floor(fromMs / 60_000);
    const hi = Math.ceil(toMs / 60_000);
    for (const m of this.state.open.keys()) if (m >= lo && m < hi) minutes.add(m);
    if (this.history) {
      for (const e of this.outbox.byPrefix("dims", "")) {
        const m = Number(e.key);
        if (e.state === "pending" && m >= lo && m < hi) minutes.add(m);
      }
    } else {
      for (const r of this.sql.exec<{ minute: number }>(
        "SELECT minute FROM dim_blocks WHERE minute >= ? AND minute < ?",
        lo,
        hi,
      )) {
        minutes.add(r.minute);
      }
    }
    const out: DimRow[] = [];
    for (const m of [...minutes].sort((a, b) => a - b))
      out.push(...dimMinuteRows(this.state, m, this.#block(m), { dims: only, values: onlyValues }));
    return out;
  }

  /** Writes owed minutes' rows to PostgreSQL; returns the entries written (to be cleared by the caller). */
  async flush(db: Db, meta: Meta, entries: OutboxEntry[]): Promise<OutboxEntry[]> {
    const rows: DimPeriodInsert[] = [];
    for (const e of entries) {
      const m = Number(e.key);
      for (const r of dimMinuteRows(this.state, m, this.#block(m))) {
        rows.push({
          tenantId: meta.tenant,
          stream: meta.stream,
          bucket: new Date(r.bucket),
          dim: r.dim,
          value: r.value,
          aggregate: r.aggregate,
          hll: r.hll,
          topkCount: r.topkCount,
          topkSum: r.topkSum,
        });
      }
    }
    if (rows.length) await upsertDimPeriods(db, metricsDimMinute, rows);
    return entries;
  }

  /** Counts for stats: dimensions, values tracked, open contributions, hot blocks. */
  stats(): { dimensions: number; values: number; hot_minutes: number } {
    let values = 0;
    for (const d of this.state.dicts.values()) values += d.size;
    return { dimensions: this.dimensions().length, values, hot_minutes: this.state.hot.size };
  }
}

/**
 * The rows of one minute of `state`: every value of every dimension, from `block` and the minute's open
 * contributions (live history and queries, and replay.ts's rebuilt history). `nameOf` names a group's
 * value (by default the state's dictionary); `dims` and `values` keep only those dimensions and values.
 */
export function dimMinuteRows(
  state: DimState,
  minute: number,
  block: Uint8Array | null,
  only: {
    dims?: Set<string>;
    values?: Set<string>;
    nameOf?: (dim: number, vid: number) => string | undefined;
  } = {},
): DimRow[] {
  const span = state.span(
    minute,
    minute,
    state.dims.filter((d) => d !== undefined).map((d) => d.id),
    block ? new Map([[minute, block]]) : new Map(),
  );
  const nameOf = only.nameOf ?? ((dim: number, vid: number) => state.valueOf(dim, vid));
  const out: DimRow[] = [];
  for (const [dimId, groups] of span.groups) {
    const d = state.dims[dimId];
    if (!d || (only.dims && !only.dims.has(d.name))) continue;
    const over = span.overflow.get(dimId);
    for (const [vid, g] of groups) {
      const value = nameOf(dimId, vid);
      if (value === undefined || (only.values && !only.values.has(value))) continue;
      out.push({
        bucket: minute * 60_000,
        dim: d.name,
        value,
        aggregate: g.acc.toAggregate(),
        hll: encodeUsers(g.users),
        topkCount: vid === OTHER_VID && over ? over.count.encode() : null,
        topkSum: vid === OTHER_VID && over ? over.sum.encode() : null,
      });
    }
  }
  return out;
}

/** Encoded HLL registers of a group (an empty sparse HLL when it had no users). */
function encodeUsers(users: Map<number, number>): Uint8Array {
  return users.size > 0 ? encodeRegisters(users) : new Uint8Array([1]);
}
