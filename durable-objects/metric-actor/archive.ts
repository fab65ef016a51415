/**
 * The raw archive (core/archive.ts): every event this actor accepts, written to R2 as gzipped NDJSON
 * segments partitioned by the events' hour.
 *
 * Exactly once: accepted events are appended to `archive_log` in the same transaction that admits them
 * (so an acknowledged event is in the log, and a duplicate never reaches it). A flush first records its
 * plan, the segments it will write (hour, first and last log seq), then writes each segment and, in one
 * transaction, deletes its log rows and its plan entry. A crash between the write and that transaction
 * leaves the plan: the next flush writes the same rows under the same key again (same bytes), so R2
 * ends up holding each event once. Log rows get ever-growing seqs (AUTOINCREMENT), so a plan's rows
 * never change under it.
 *
 * Not on the acknowledgement's path beyond the log row: segments are written every ARCHIVE_FLUSH_MS (or
 * sooner once SEGMENT_MAX_EVENTS are waiting). Bound: at most ARCHIVE_MAX_PENDING_EVENTS events wait
 * (an R2 outage); past that the actor refuses new events (503 stream_unavailable) rather than lose any.
 */
import {
  archiveEnabled,
  archiveLines,
  gzip,
  hourOf,
  manifestMetadata,
  SEGMENT_MAX_EVENTS,
  segmentKey,
  sha256Hex,
} from "../../core/archive";
import { deadline } from "../../core/async";
import type { Config } from "../../core/config";
import type { StreamEvent } from "../../core/event";
import { streamAllowed } from "../../core/keys";
import type { ArchiveStatus } from "../../core/protocol";
import { type SegmentWritten, SINK_LIST_TTL_MS, type SinkRoute } from "../../core/sinks";
import { isoOrNull } from "../../core/time";
import type { Wakeable } from "../planner";
import { rootCause } from "./history";
import type { Meta } from "./ingest";

/** Segments planned per flush. */
const PLAN_MAX_SEGMENTS = 20;

interface Planned {
  key: string;
  hour: number;
  first_seq: number;
  last_seq: number;
  [k: string]: SqlStorageValue;
}

export class Archive implements Wakeable {
  readonly name = "archive";
  readonly enabled: boolean;
  /** Events in the log (kept in memory; counted again on load). */
  pending = 0;
  #dueAt: number | null = null;
  #failures = 0;
  #nextAt = 0;
  #written = 0;
  #lastAt: number | null = null;
  #lastError: string | null = null;
  /** The tenant's sinks, as last read from its registry (re-read after SINK_LIST_TTL_MS). */
  #sinks: { at: number; list: SinkRoute[] } | null = null;
  /** Writes one segment (R2 by default; tests put a failing writer here to stop a flush half-way). */
  put: (key: string, body: Uint8Array, options: R2PutOptions) => Promise<unknown>;

  constructor(
    readonly env: Env,
    readonly config: Config,
    readonly sql: SqlStorage,
    readonly storage: DurableObjectStorage,
    readonly meta: () => Meta | null,
    /** True while a replay holds the archive's log where it is (replay.ts). */
    readonly held: () => boolean = () => false,
  ) {
    this.enabled = archiveEnabled(env, config);
    this.put = (key, body, options) => (env.ARCHIVE as R2Bucket).put(key, body, options);
  }

  load(now: number): void {
    this.pending = this.sql.exec<{ n: number }>("SELECT coalesce(sum(count), 0) AS n FROM archive_log").one().n;
    const planned = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM archive_plan").one().n;
    this.#dueAt = this.pending > 0 || planned > 0 ? now : null;
  }

  /** Whether the log is full (an R2 outage): the actor then refuses events instead of losing them. */
  full(): boolean {
    return this.enabled && this.pending >= this.config.ARCHIVE_MAX_PENDING_EVENTS;
  }

  /** Appends accepted events to the log, one row per event hour. Call inside the admitting transaction. */
  append(stream: string, events: StreamEvent[], now: number): void {
    if (!this.enabled || events.length === 0) return;
    const byHour = new Map<number, { events: StreamEvent[]; min: number; max: number }>();
    for (const e of events) {
      const h = hourOf(e.ts);
      let g = byHour.get(h);
      if (g === undefined) {
        g = { events: [], min: e.ts, max: e.ts };
        byHour.set(h, g);
      }
      g.events.push(e);
      if (e.ts < g.min) g.min = e.ts;
      if (e.ts > g.max) g.max = e.ts;
    }
    for (const [hour, g] of byHour) {
      this.sql.exec(
        "INSERT INTO archive_log (hour, count, min_ts, max_ts, lines) VALUES (?, ?, ?, ?, ?)",
        hour,
        g.events.length,
        g.min,
        g.max,
        archiveLines(stream, g.events),
      );
    }
    this.pending += events.length;
    const soon = this.pending >= SEGMENT_MAX_EVENTS ? now : now + this.config.ARCHIVE_FLUSH_MS;
    this.#dueAt = this.#dueAt === null ? soon : Math.min(this.#dueAt, soon);
  }

  nextWake(): number | null {
    if (!this.enabled || this.#dueAt === null) return null;
    return Math.max(this.#dueAt, this.#nextAt);
  }

  async wake(now: number): Promise<void> {
    if (now < this.#nextAt) return;
    if (this.held()) {
      this.#dueAt = now + 1000;
      return;
    }
    this.#dueAt = null;
    const meta = this.meta();
    if (meta === null) return;
    try {
      const plan = this.#plan();
      for (const p of plan) await this.#write(p);
      this.#failures = 0;
      this.#nextAt = 0;
      this.#lastError = null;
    } catch (err) {
      this.#failures++;
      this.#nextAt =
        Date.now() + Math.min(this.config.ARCHIVE_FLUSH_MS * 2 ** this.#failures, this.config.FLUSH_MAX_BACKOFF_MS);
      this.#lastError = `The archive write failed: ${rootCause(err)}`.slice(0, 300);
      console.error(`edgepulse: archive flush of ${meta.tenant}/${meta.stream} failed: ${rootCause(err)}`);
    }
    const left = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM archive_plan").one().n;
    if (left > 0 || this.pending > 0) this.#dueAt = Math.max(Date.now(), this.#nextAt);
  }

  /** The segments to write: a plan left by an interrupted flush, else a new one recorded now. */
  #plan(): Planned[] {
    const left = this.sql.exec<Planned>("SELECT * FROM archive_plan ORDER BY first_seq").toArray();
    if (left.length > 0) return left;
    const meta = this.meta() as Meta;
    const rows = this.sql
      .exec<{ seq: number; hour: number; count: number }>("SELECT seq, hour, count FROM archive_log ORDER BY seq")
      .toArray();
    // Per hour, consecutive runs of rows of at most SEGMENT_MAX_EVENTS events (a row larger than that is
    // a segment of its own).
    const open = new Map<number, { first: number; last: number; events: number }>();
    const plan: Array<{ hour: number; first: number; last: number }> = [];
    for (const r of rows) {
      const cur = open.get(r.hour);
      if (cur && cur.events + r.count > SEGMENT_MAX_EVENTS) {
        plan.push({ hour: r.hour, first: cur.first, last: cur.last });
        open.delete(r.hour);
      }
      const o = open.get(r.hour);
      if (o) {
        o.last = r.seq;
        o.events += r.count;
      } else open.set(r.hour, { first: r.seq, last: r.seq, events: r.count });
      if (plan.length >= PLAN_MAX_SEGMENTS) break;
    }
    for (const [hour, o] of open)
      if (plan.length < PLAN_MAX_SEGMENTS) plan.push({ hour, first: o.first, last: o.last });
    const planned = plan.map((p) => ({
      key: segmentKey(meta.tenant, meta.stream, p.hour, p.first, p.last),
      hour: p.hour,
      first_seq: p.first,
      last_seq: p.last,
    }));
    this.storage.transactionSync(() => {
      for (const p of planned) {
        this.sql.exec(
          "INSERT INTO archive_plan (key, hour, first_seq, last_seq) VALUES (?, ?, ?, ?)",
          p.key,
          p.hour,
          p.first_seq,
          p.last_seq,
        );
      }
    });
    return planned;
  }

  /** Tells each of the tenant's sinks that takes this stream about a written segment (core/sinks.ts). */
  async #announce(meta: Meta, segment: SegmentWritten): Promise<void> {
    const now = Date.now();
    if (this.#sinks === null || now - this.#sinks.at > SINK_LIST_TTL_MS) {
      this.#sinks = { at: now, list: await this.env.TENANT_REGISTRY.getByName(meta.tenant).listSinks() };
    }
    for (const r of this.#sinks.list) {
      if (!streamAllowed({ streamPrefixes: r.streams }, segment.stream)) continue;
      const exists = await this.env.SINK_ACTOR.getByName(`${meta.tenant}/${r.id}`).enqueue([segment]);
      if (!exists) this.#sinks.list = this.#sinks.list.filter((x) => x.id !== r.id);
    }
  }

  async #write(p: Planned): Promise<void> {
    const meta = this.meta() as Meta;
    const rows = this.sql
      .exec<{ count: number; min_ts: number; max_ts: number; lines: string }>(
        "SELECT count, min_ts, max_ts, lines FROM archive_log WHERE hour = ? AND seq BETWEEN ? AND ? ORDER BY seq",
        p.hour,
        p.first_seq,
        p.last_seq,
      )
      .toArray();
    const count = rows.reduce((n, r) => n + r.count, 0);
    if (rows.length > 0) {
      const body = gzip(`${rows.map((r) => r.lines).join("\n")}\n`);
      const sha256 = await sha256Hex(body);
      const from = Math.min(...rows.map((r) => r.min_ts));
      const to = Math.max(...rows.map((r) => r.max_ts));
      await deadline(
        this.put(p.key, body, {
          httpMetadata: { contentType: "application/x-ndjson", contentEncoding: "gzip" },
          customMetadata: manifestMetadata({ count, from_ts: from, to_ts: to, sha256 }),
          sha256,
        }),
        this.config.FLUSH_TIMEOUT_MS,
        "R2 write",
      );
      // Sinks hear of the segment before its rows are let go: a crash in between writes and announces it
      // again (the same key; a sink takes a key once).
      await this.#announce(meta, { key: p.key, stream: meta.stream, count });
    }
    this.storage.transactionSync(() => {
      this.sql.exec("DELETE FROM archive_log WHERE hour = ? AND seq BETWEEN ? AND ?", p.hour, p.first_seq, p.last_seq);
      this.sql.exec("DELETE FROM archive_plan WHERE key = ?", p.key);
      // The highest seq in a segment: with the log's own seqs, where a replay's cut lies (replay.ts).
      this.sql.exec(
        `INSERT INTO meta (k, v) VALUES ('archive_seq', ?)
         ON CONFLICT (k) DO UPDATE SET v = max(CAST(v AS INTEGER), CAST(excluded.v AS INTEGER))`,
        String(p.last_seq),
      );
    });
    this.pending -= count;
    this.#written++;
    this.#lastAt = Date.now();
  }

  status(): ArchiveStatus {
    return {
      enabled: this.enabled,
      pending_events: this.pending,
      segments_written: this.#written,
      last_write_at: isoOrNull(this.#lastAt),
      last_error: this.#lastError,
    };
  }
}
