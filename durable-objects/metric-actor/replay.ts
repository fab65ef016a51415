/**
 * Replay: rebuilds the stream's minute history over a range from the raw archive (after a fix, or to
 * repair history), into shadow rows that replace PostgreSQL's in one transaction.
 *
 * Cut: at the start the replay records the archive log's last seq; it reads exactly the events at or
 * before it (segments whose last seq is at or below it, and log rows not yet written), so every event
 * counted before the start is in, and none counted after. Only minutes older than the live windows
 * (start − ALLOWED_LATENESS_MS) are replaced: newer minutes, which live ingest may still change, are left
 * as live ingest wrote them. Backfill batches admitted before the start are merged first (the replay
 * waits for them); batches admitted during the replay wait for it (their events are not in its cut), so
 * they land on the replayed rows and are counted once.
 *
 * State: one job (≤ REPLAY_MAX_SEGMENTS segment keys) and its shadow minutes (≤ one row per minute of the
 * range, ≤ REPLAY_MAX_DAYS of them) in the actor's SQLite; progress is reported through the API; a replay
 * of the same range is idempotent (rows are replaced, never added to).
 */
import { Accumulator } from "../../core/aggregate";
import { archivePrefix, datesOf, gunzip, manifestOf, parseSegmentKey } from "../../core/archive";
import type { Config } from "../../core/config";
import { PeriodHll } from "../../core/hll";
import { isoOrNull } from "../../core/time";
import { type Db, openDb } from "../../db/client";
import { type MinutePeriod, replaceMinutes } from "../../db/history";
import type { Wakeable } from "../planner";
import { decodeFrozen, encodeFrozen, rootCause } from "./history";
import type { Meta } from "./ingest";
import type { Outbox } from "./outbox";

export const REPLAY_MAX_DAYS = 31;
export const REPLAY_MAX_SEGMENTS = 10_000;
/** Segments read per wake (each wake is one alarm). */
const SEGMENTS_PER_WAKE = 20;

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
}

export class Replay implements Wakeable {
  readonly name = "replay";
  #job: Job | null = null;

  constructor(
    readonly env: Env,
    readonly config: Config,
    readonly sql: SqlStorage,
    readonly storage: DurableObjectStorage,
    readonly outbox: Outbox,
    readonly meta: () => Meta | null,
  ) {}

  load(): void {
    const row = this.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'replay'").toArray()[0];
    this.#job = row ? (JSON.parse(row.v) as Job) : null;
    this.#nextAt = Date.now();
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
    };
    this.storage.transactionSync(() => {
      this.sql.exec("DELETE FROM replay_minutes");
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
        if (earlier.length > 0 || planned > 0) {
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
        const batch = j.keys.slice(j.done, j.done + SEGMENTS_PER_WAKE);
        for (const key of batch) await this.#read(j, key);
        if (j.done >= j.keys.length) {
          this.#readLog(j);
          j.state = "writing";
        }
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
      if (j.state === "done" || j.state === "failed") this.sql.exec("DELETE FROM replay_minutes");
      this.#save();
    });
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
  }

  #fold(j: Job, lines: string[]): void {
    const minutes = new Map<number, { acc: Accumulator; users: PeriodHll }>();
    for (const line of lines) {
      if (!line) continue;
      const e = JSON.parse(line) as { ts: number; value?: number; user?: string };
      if (e.ts < j.from || e.ts >= j.cutoff) continue;
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
      j.events++;
    }
    this.storage.transactionSync(() => {
      for (const [m, g] of minutes) {
        this.sql.exec(
          "INSERT OR REPLACE INTO replay_minutes (minute, data) VALUES (?, ?)",
          m,
          encodeFrozen(g.acc.toAggregate(), g.users),
        );
      }
    });
  }

  async #read(j: Job, key: string): Promise<void> {
    const obj = await (this.env.ARCHIVE as R2Bucket).get(key);
    if (obj !== null) this.#fold(j, (await gunzip(await obj.arrayBuffer())).split("\n"));
    j.done++;
    this.#save();
  }

  /** Events admitted before the cut and not yet in a segment. */
  #readLog(j: Job): void {
    const rows = this.sql.exec<{ lines: string }>("SELECT lines FROM archive_log WHERE seq <= ?", j.seqMark).toArray();
    this.#fold(
      j,
      rows.flatMap((r) => r.lines.split("\n")),
    );
  }

  async #write(meta: Meta, j: Job): Promise<void> {
    const rows: MinutePeriod[] = this.sql
      .exec<{ minute: number; data: ArrayBuffer }>("SELECT minute, data FROM replay_minutes ORDER BY minute")
      .toArray()
      .map((r) => ({ bucket: r.minute * 60_000, ...decodeFrozen(r.data) }));
    const conn = openDb(this.env);
    try {
      await replaceMinutes(conn.db as Db, meta.tenant, meta.stream, j.from, j.cutoff, rows);
    } finally {
      await conn.pool.end();
    }
    j.written = rows.length;
  }
}
