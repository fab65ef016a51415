/**
 * Replay: rebuilds the stream's history over a range from the raw archive (after a fix, to repair
 * history, or after declaring a dimension set so that queries by it cover the past): its minute rows and
 * its dimension minute rows, into shadow state that replaces PostgreSQL's rows in one transaction.
 *
 * Cut: at the start the replay records the archive log's last seq; it reads exactly the events at or
 * before it (segments whose last seq is at or below it, and log rows not yet written), so every event
 * counted before the start is in, and none counted after. Only minutes older than the live windows
 * (start − ALLOWED_LATENESS_MS) are replaced: newer minutes, which live ingest may still change, are left
 * as live ingest wrote them. Before reading, the replay waits for backfill batches admitted before the
 * start, and for the range's live minutes and dimension minutes still owed to PostgreSQL (their later
 * absolute writes would undo it); batches admitted during the replay wait for it (their events are not in
 * its cut), so they land on the replayed rows and are counted once.
 *
 * Order: the archive is read hour by hour of event time (segments hold one hour each and are read in hour
 * and seq order; the log rows of an hour follow that hour's segments, as they follow them in admission).
 * Each unit (a segment, or an hour of log rows) is folded in one SQLite transaction with the job's
 * progress, so a restart never counts a unit twice.
 *
 * Dimensions: every event is applied to a DimState (core/dims.ts) set up like the stream's at the start:
 * its dimensions, its declared sets (sets no longer declared get nothing), its key budget (MAX_DIM_KEYS,
 * counting the keys it knows) and value budget (MAX_DIM_VALUES per dimension). Each touched minute is
 * packed (DimState.pack) onto its shadow block in `replay_dim_blocks`; the write turns the blocks into rows
 * with the live path's row builder (dims.ts dimMinuteRows: aggregate, users' HyperLogLog, and for
 * "__other__" the top-k summaries) and, in the minute rows' transaction, replaces the rows of every key and
 * every declared set over [from, cutoff). Rows of sets no longer declared are left as they are. Keys met
 * only in the archive (backfilled events are not aggregated by dimension live) are adopted by the stream,
 * within its key budget, so queries can group by them.
 *
 * Value budget: as in live ingest, a value takes a free slot or else goes to "__other__" (and its top-k
 * summaries), and lets its slot go once it has had no event for the ring (the longest window). The
 * replay's clock is event time: when it starts reading an hour, values with no event in the ring before
 * that hour's start are let go (live ingest does the same every minute of wall-clock time). Differences:
 * the dictionaries start empty at `from` (values live ingest held from before it are unknown), a value may
 * keep its slot up to 59 minutes longer than live (slots are freed at hour starts), and events come in
 * archive order (event hour, then admission), not interleaved with other hours' late arrivals.
 *
 * Bound of the dimension state: blocks name values by id, and an id is reused once its value is let go;
 * so each block is stored with the values its groups name (`vals`), recorded whenever it is written.
 * Values are let go only between hours and a minute's block is written only while its hour is read, so no
 * block is ever written after one of its ids changed hands. The dictionaries (`replay_dim_values`) hold at
 * most MAX_DIM_VALUES values per dimension at any time (≤ MAX_DIM_KEYS + MAX_DIM_SETS dimensions), and
 * `replay_dim_blocks` at most one row per minute of the range, like `replay_minutes`.
 *
 * State: one job (≤ REPLAY_MAX_SEGMENTS segment keys), its shadow minutes and blocks (≤ REPLAY_MAX_DAYS of
 * minutes) and dictionaries in the actor's SQLite, cleared when a replay starts and ends; progress is
 * reported through the API; a replay of the same range is idempotent (rows are replaced, never added to).
 */
import { Accumulator } from "../../core/aggregate";
import {
  archivePrefix,
  datesOf,
  gunzip,
  hourOf,
  manifestOf,
  parseSegmentKey,
  type SegmentKeyParts,
} from "../../core/archive";
import type { Config } from "../../core/config";
import {
  type DimEvent,
  type Dimension,
  DimState,
  dimOfGid,
  gidOf,
  OTHER,
  OTHER_VID,
  readBlock,
  vidOfGid,
} from "../../core/dims";
import { PeriodHll } from "../../core/hll";
import { isoOrNull } from "../../core/time";
import { LONGEST_WINDOW_SECONDS } from "../../core/window";
import { type Db, openDb } from "../../db/client";
import { type DimPeriodInsert, type MinutePeriod, replaceMinutes } from "../../db/history";
import type { Wakeable } from "../planner";
import { type Dims, dimMinuteRows } from "./dims";
import { decodeFrozen, encodeFrozen, rootCause } from "./history";
import type { Meta } from "./ingest";
import type { Outbox } from "./outbox";

export const REPLAY_MAX_DAYS = 31;
export const REPLAY_MAX_SEGMENTS = 10_000;
/** Units (segments, or an hour of log rows) read per wake (each wake is one alarm). */
const SEGMENTS_PER_WAKE = 20;
/** Minutes a value keeps its slot without an event (the ring: the longest window). */
const RING_MINUTES = LONGEST_WINDOW_SECONDS / 60;

export interface ReplayStatus {
  id: string;
  from: string;
  to: string;
  /** Minutes from here on were left to live ingest. */
  replaced_until: string;
  state: "waiting" | "listing" | "reading" | "writing" | "done" | "failed";
  segments_total: number;
  segments_done: number;
  events_read: number;
  minutes_written: number;
  started_at: string;
  finished_at: string | null;
  error: string | null;
}

interface Job {
  id: string;
  from: number;
  to: number;
  cutoff: number;
  seqMark: number;
  backfillMark: string;
  state: ReplayStatus["state"];
  keys: string[];
  done: number;
  events: number;
  written: number;
  startedAt: number;
  finishedAt: number | null;
  error: string | null;
  /** Hours of the log rows in the cut (epoch hours), each read after that hour's segments. */
  logHours: number[];
  logDone: number;
  /** The hour being read (values are let go when a later one starts). */
  hour: number | null;
  /** The replay's dimensions (the stream's at the start, then keys met in the archive), and declared sets. */
  dims: Dimension[];
  sets: string[][];
  /** Dimension rows written. */
  dimRows: number;
}

/** An archived event (core/archive.ts archiveLine), as the replay reads it. */
type ArchivedEvent = DimEvent;

/** The next unit to read: a segment, or (key null) the log rows of an hour. */
interface Unit {
  hour: number;
  key: string | null;
}

export class Replay implements Wakeable {
  readonly name = "replay";
  #job: Job | null = null;
  /** The replay's dimension state (rebuilt from the job and `replay_dim_values` when null). */
  #state: DimState | null = null;

  constructor(
    readonly env: Env,
    readonly config: Config,
    readonly sql: SqlStorage,
    readonly storage: DurableObjectStorage,
    readonly outbox: Outbox,
    readonly meta: () => Meta | null,
    /** The stream's live dimensions: the replay starts from their setup and adopts the keys it meets. */
    readonly dims: Dims,
  ) {}

  load(): void {
    const row = this.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'replay'").toArray()[0];
    const j = row ? (JSON.parse(row.v) as Job) : null;
    if (j !== null && this.#runs(j) && !Array.isArray(j.logHours)) {
      // Started by a version that did not rebuild dimensions: its shadow state is not this version's.
      j.state = "failed";
      j.error = "The replay was interrupted by an upgrade; start it again.";
      j.finishedAt = Date.now();
    }
    this.#job = j;
    this.#state = null;
    this.#nextAt = Date.now();
  }

  #runs(j: Job): boolean {
    return j.state !== "done" && j.state !== "failed";
  }

  #clearShadow(): void {
    this.sql.exec("DELETE FROM replay_minutes");
    this.sql.exec("DELETE FROM replay_dim_blocks");
    this.sql.exec("DELETE FROM replay_dim_values");
  }

  #save(): void {
    this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('replay', ?)", JSON.stringify(this.#job));
  }

  /** Whether backfill entry `key` must wait (admitted during a running replay). */
  holdsBackfill(key: string): boolean {
    const j = this.#job;
    return j !== null && j.state !== "done" && j.state !== "failed" && key > j.backfillMark;
  }

  running(): boolean {
    return this.#job !== null && this.#job.state !== "done" && this.#job.state !== "failed";
  }

  /**
   * Whether the archive must not write segments now: from listing to writing, the replay's cut is the
   * segments listed plus the log rows at or before its seq mark, so no log row may move into a segment.
   */
  holdsArchive(): boolean {
    return this.running() && this.#job?.state !== "waiting";
  }

  /** Starts a replay of [from, to); the caller validated the range. */
  start(id: string, from: number, to: number, now: number, archiveSeq: number, backfillMark: string): ReplayStatus {
    const cutoff = Math.min(to, Math.floor((now - this.config.ALLOWED_LATENESS_MS) / 60_000) * 60_000);
    this.#job = {
      id,
      from,
      to,
      cutoff,
      seqMark: archiveSeq,
      backfillMark,
      state: "waiting",
      keys: [],
      done: 0,
      events: 0,
      written: 0,
      startedAt: now,
      finishedAt: null,
      error: null,
      logHours: [],
      logDone: 0,
      hour: null,
      dims: this.dims.dimensions().map((d) => ({ id: d.id, name: d.name, keys: d.keys })),
      sets: this.dims.sets(),
      dimRows: 0,
    };
    this.#state = null;
    this.storage.transactionSync(() => {
      this.#clearShadow();
      this.#save();
    });
    this.#nextAt = now;
    return this.status() as ReplayStatus;
  }

  status(): ReplayStatus | null {
    const j = this.#job;
    if (j === null) return null;
    return {
      id: j.id,
      from: new Date(j.from).toISOString(),
      to: new Date(j.to).toISOString(),
      replaced_until: new Date(j.cutoff).toISOString(),
      state: j.state,
      segments_total: j.keys.length,
      segments_done: j.done,
      events_read: j.events,
      minutes_written: j.written,
      started_at: new Date(j.startedAt).toISOString(),
      finished_at: isoOrNull(j.finishedAt),
      error: j.error,
    };
  }

  /** When to look again (an absolute time: the planner compares it with its own clock). */
  #nextAt = 0;

  nextWake(): number | null {
    return this.running() ? this.#nextAt : null;
  }

  async wake(now: number): Promise<void> {
    this.#nextAt = now;
    const j = this.#job;
    const meta = this.meta();
    if (j === null || !this.running() || meta === null) return;
    try {
      if (j.state === "waiting") {
        // Backfill batches admitted before the start must be in PostgreSQL before their minutes are replaced.
        const earlier = this.outbox
          .byPrefix("backfill", "")
          .filter((e) => e.state === "pending" && e.key <= j.backfillMark);
        // An archive flush in progress (a plan) must finish: from here on the archive waits for the replay.
        const planned = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM archive_plan").one().n;
        if (earlier.length > 0 || planned > 0 || this.#owed(j)) {
          // Look again shortly.
          this.#nextAt = Date.now() + 250;
          return;
        }
        j.state = "listing";
      }
      if (j.state === "listing") {
        await this.#list(meta, j);
        j.state = "reading";
      } else if (j.state === "reading") {
        for (let n = 0; n < SEGMENTS_PER_WAKE; n++) {
          const unit = this.#nextUnit(j);
          if (unit === null) break;
          await this.#read(j, unit);
        }
        if (this.#nextUnit(j) === null) j.state = "writing";
      } else if (j.state === "writing") {
        await this.#write(meta, j);
        j.state = "done";
        j.finishedAt = Date.now();
      }
    } catch (err) {
      j.state = "failed";
      j.error = `The replay failed: ${rootCause(err)}`.slice(0, 300);
      j.finishedAt = Date.now();
    }
    this.storage.transactionSync(() => {
      if (j.state === "done" || j.state === "failed") {
        this.#clearShadow();
        this.#state = null;
      }
      this.#save();
    });
  }

  /**
   * Whether live ingest still owes PostgreSQL a minute of the range (an outage), or still has to pack a
   * dimension minute of it: its absolute write, coming after the replay's, would undo it.
   */
  #owed(j: Job): boolean {
    const inRange = (m: number) => m * 60_000 < j.cutoff && (m + 1) * 60_000 > j.from;
    for (const topic of ["minute", "dims"] as const) {
      if (this.outbox.byPrefix(topic, "").some((e) => e.state === "pending" && inRange(Number(e.key)))) return true;
    }
    return [...this.dims.state.open.keys()].some(inRange);
  }

  async #list(meta: Meta, j: Job): Promise<void> {
    const bucket = this.env.ARCHIVE as R2Bucket;
    const prefix = archivePrefix(meta.tenant, meta.stream);
    for (const date of datesOf(j.from, j.cutoff)) {
      let cursor: string | undefined;
      do {
        const page = await bucket.list({
          prefix: `${prefix}${date}/`,
          cursor,
          limit: 1000,
          include: ["customMetadata"],
        });
        for (const o of page.objects) {
          const m = manifestOf(o.key, o.size, o.customMetadata);
          const parts = parseSegmentKey(o.key);
          if (m === null || parts === null || m.to_ts < j.from || m.from_ts >= j.cutoff) continue;
          if (parts.lastSeq > j.seqMark) continue; // written after the cut
          if (j.keys.length >= REPLAY_MAX_SEGMENTS) throw new Error(`more than ${REPLAY_MAX_SEGMENTS} segments`);
          j.keys.push(o.key);
        }
        cursor = page.truncated ? page.cursor : undefined;
      } while (cursor);
    }
    // Hour, then seq order (keys share the prefix; dates, hours and seqs are zero-padded).
    j.keys.sort();
    j.logHours = this.sql
      .exec<{ hour: number }>(
        "SELECT DISTINCT hour FROM archive_log WHERE seq <= ? AND hour >= ? AND hour <= ? ORDER BY hour",
        j.seqMark,
        hourOf(j.from),
        hourOf(j.cutoff - 1),
      )
      .toArray()
      .map((r) => r.hour);
  }

  #nextUnit(j: Job): Unit | null {
    const key = j.done < j.keys.length ? j.keys[j.done] : null;
    const logHour = j.logDone < j.logHours.length ? j.logHours[j.logDone] : null;
    if (key === null && logHour === null) return null;
    const segHour = key === null ? null : hourOf((parseSegmentKey(key) as SegmentKeyParts).hourStart);
    if (segHour !== null && (logHour === null || segHour <= logHour)) return { hour: segHour, key };
    return { hour: logHour as number, key: null };
  }

  /** Reads one unit and folds its events in range into the shadow state with the job's progress, in one transaction. */
  async #read(j: Job, unit: Unit): Promise<void> {
    let lines: string[];
    if (unit.key !== null) {
      const obj = await (this.env.ARCHIVE as R2Bucket).get(unit.key);
      lines = obj === null ? [] : (await gunzip(await obj.arrayBuffer())).split("\n");
    } else {
      lines = this.sql
        .exec<{ lines: string }>(
          "SELECT lines FROM archive_log WHERE seq <= ? AND hour = ? ORDER BY seq",
          j.seqMark,
          unit.hour,
        )
        .toArray()
        .flatMap((r) => r.lines.split("\n"));
    }
    const events: ArchivedEvent[] = [];
    for (const line of lines) {
      if (!line) continue;
      const e = JSON.parse(line) as ArchivedEvent;
      if (e.ts < j.from || e.ts >= j.cutoff) continue;
      // The archive partitions by event hour; the value budget's order relies on it (see the header).
      if (hourOf(e.ts) !== unit.hour)
        throw new Error(`${unit.key ?? "the archive log"} holds an event of another hour`);
      events.push(e);
    }
    const now = Date.now();
    try {
      this.storage.transactionSync(() => {
        if (j.hour === null || unit.hour > j.hour) {
          this.#letGo(j, unit.hour);
          j.hour = unit.hour;
        }
        this.#foldMinutes(events);
        this.#foldDims(j, events, now);
        if (unit.key !== null) j.done++;
        else j.logDone++;
        j.events += events.length;
        this.#save();
      });
    } catch (err) {
      // Memory may be ahead of storage: rebuild the dimension state from storage if it is used again.
      this.#state = null;
      throw err;
    }
  }

  /** Adds events to their shadow minutes. Call inside the unit's transaction. */
  #foldMinutes(events: ArchivedEvent[]): void {
    const minutes = new Map<number, { acc: Accumulator; users: PeriodHll }>();
    for (const e of events) {
      const m = Math.floor(e.ts / 60_000);
      let g = minutes.get(m);
      if (g === undefined) {
        const row = this.sql
          .exec<{ data: ArrayBuffer }>("SELECT data FROM replay_minutes WHERE minute = ?", m)
          .toArray()[0];
        const acc = new Accumulator();
        let users = new PeriodHll();
        if (row) {
          const d = decodeFrozen(row.data);
          acc.add(d.aggregate);
          users = PeriodHll.decode(d.hll);
        }
        g = { acc, users };
        minutes.set(m, g);
      }
      g.acc.addEvent(e.value);
      if (e.user !== undefined) g.users.addUser(e.user);
    }
    for (const [m, g] of minutes) {
      this.sql.exec(
        "INSERT OR REPLACE INTO replay_minutes (minute, data) VALUES (?, ?)",
        m,
        encodeFrozen(g.acc.toAggregate(), g.users),
      );
    }
  }

  /** The replay's dimension state: set up at the start like the stream's, then as stored since. */
  #dimState(j: Job): DimState {
    if (this.#state !== null) return this.#state;
    const s = new DimState({ maxKeys: this.config.MAX_DIM_KEYS, maxValues: this.config.MAX_DIM_VALUES });
    for (const d of j.dims) s.loadDimension(d);
    s.retireSets(j.sets);
    for (const r of this.sql.exec<{ dim: number; vid: number; value: string; last: number }>(
      "SELECT dim, vid, value, last FROM replay_dim_values",
    )) {
      s.dicts.get(r.dim)?.load(r.vid, r.value, r.last);
    }
    this.#state = s;
    return s;
  }

  /** A new hour starts: values with no event in the ring before it let their slots go (as live housekeeping). */
  #letGo(j: Job, hour: number): void {
    const s = this.#dimState(j);
    const first = hour * 60 - RING_MINUTES;
    for (const [dim, dict] of s.dicts) {
      for (const vid of dict.evictBefore(first)) {
        this.sql.exec("DELETE FROM replay_dim_values WHERE dim = ? AND vid = ?", dim, vid);
      }
    }
  }

  /**
   * Applies events to the replay's dimension state and packs every touched minute onto its shadow block
   * (the live path's apply and pack), storing with each block the values its groups name. Call inside the
   * unit's transaction.
   */
  #foldDims(j: Job, events: ArchivedEvent[], now: number): void {
    const s = this.#dimState(j);
    const r = s.apply(events);
    for (const d of r.newDims) j.dims.push({ id: d.id, name: d.name, keys: d.keys });
    for (const v of r.newValues) {
      this.sql.exec(
        "INSERT OR REPLACE INTO replay_dim_values (dim, vid, value, last) VALUES (?, ?, ?, ?)",
        v.dim,
        v.vid,
        v.value,
        v.minute,
      );
    }
    for (const [m, open] of [...s.open]) {
      const touched = new Set(open.gids.subarray(0, open.n));
      const row = this.sql
        .exec<{ block: ArrayBuffer; vals: string }>("SELECT block, vals FROM replay_dim_blocks WHERE minute = ?", m)
        .toArray()[0];
      const block = s.pack(m, row ? new Uint8Array(row.block) : null, now);
      const named = new Map<number, string>(row ? (JSON.parse(row.vals) as Array<[number, string]>) : []);
      for (const g of readBlock(block).groups) {
        const vid = vidOfGid(g.gid);
        if (vid === OTHER_VID || named.has(g.gid)) continue;
        const value = s.valueOf(dimOfGid(g.gid), vid);
        if (value === undefined) throw new Error("a dimension block names a value no longer held");
        named.set(g.gid, value);
      }
      this.sql.exec(
        "INSERT OR REPLACE INTO replay_dim_blocks (minute, block, vals) VALUES (?, ?, ?)",
        m,
        block,
        JSON.stringify([...named]),
      );
      for (const gid of touched) {
        if (vidOfGid(gid) === OTHER_VID) continue;
        this.sql.exec(
          "UPDATE replay_dim_values SET last = max(last, ?) WHERE dim = ? AND vid = ?",
          m,
          dimOfGid(gid),
          vidOfGid(gid),
        );
      }
    }
    // Blocks live in the shadow table only (pack keeps recent ones in memory for the live path).
    s.hot.clear();
  }

  async #write(meta: Meta, j: Job): Promise<void> {
    const rows: MinutePeriod[] = this.sql
      .exec<{ minute: number; data: ArrayBuffer }>("SELECT minute, data FROM replay_minutes ORDER BY minute")
      .toArray()
      .map((r) => ({ bucket: r.minute * 60_000, ...decodeFrozen(r.data) }));
    // The dimensions replaced: every key the stream knows (keys met only in the archive are adopted, within
    // its key budget) and every declared set.
    const s = this.#dimState(j);
    const keys = s.dims.filter((d) => d !== undefined && d.keys.length === 1 && d.keys[0] === d.name);
    let known = new Set<string>();
    this.storage.transactionSync(() => {
      known = new Set(this.dims.adoptKeys(keys.map((d) => d.name)));
    });
    const names = [...keys.filter((d) => known.has(d.name)), ...s.sets].map((d) => d.name);
    const only = new Set(names);
    const minutes = this.sql
      .exec<{ minute: number }>("SELECT minute FROM replay_dim_blocks ORDER BY minute")
      .toArray()
      .map((r) => r.minute);
    const sql = this.sql;
    // One minute's rows at a time, read as the transaction goes.
    function* batches(): Generator<DimPeriodInsert[]> {
      for (const m of minutes) {
        const r = sql
          .exec<{ block: ArrayBuffer; vals: string }>("SELECT block, vals FROM replay_dim_blocks WHERE minute = ?", m)
          .one();
        const named = new Map<number, string>(JSON.parse(r.vals) as Array<[number, string]>);
        const nameOf = (dim: number, vid: number) => (vid === OTHER_VID ? OTHER : named.get(gidOf(dim, vid)));
        yield dimMinuteRows(s, m, new Uint8Array(r.block), { dims: only, nameOf }).map((x) => ({
          tenantId: meta.tenant,
          stream: meta.stream,
          bucket: new Date(x.bucket),
          dim: x.dim,
          value: x.value,
          aggregate: x.aggregate,
          hll: x.hll,
          topkCount: x.topkCount,
          topkSum: x.topkSum,
        }));
      }
    }
    const conn = openDb(this.env);
    try {
      j.dimRows = await replaceMinutes(conn.db as Db, meta.tenant, meta.stream, j.from, j.cutoff, rows, {
        dims: names,
        batches: batches(),
      });
    } finally {
      await conn.pool.end();
    }
    j.written = rows.length;
  }
}
