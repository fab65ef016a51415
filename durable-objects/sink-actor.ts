/**
 * SinkActor: one per sink (`<tenant>/<sink id>`, /v1/sinks), driven by its alarm. A Kafka sink produces
 * the events of the raw archive's segments (core/sinks.ts) to a topic through a Kafka REST Proxy v3.
 *
 *   1. A stream's actor writes a segment to R2 and then calls `enqueue` here (metric-actor/archive.ts),
 *      before it forgets the segment's rows: a crash between the two writes the segment again under the
 *      same key and enqueues it again, which is a no-op (the key is queued, or remembered as done).
 *   2. The alarm takes the oldest queued segment, reads it from R2 and produces its records in requests of
 *      SINK_RECORDS_PER_REQUEST; after each request whose delivery reports are all 200, the number of its
 *      records written is stored. A finished segment leaves the queue and is remembered as done.
 *   3. A failure (the proxy down, refusing, a report that is not 200) backs off from 1 s doubling to
 *      max_backoff_ms; 401/403 and other client errors stop the sink (`failed`) until it is resumed.
 *
 * Exactly what the archive holds reaches the topic, in each stream's order, with one exception stated in
 * the README: a request whose records the proxy wrote but whose answer was lost (a timeout, a dropped
 * connection, a restart before the count was stored) is sent again (≤ SINK_RECORDS_PER_REQUEST records). Bounds: SINK_MAX_QUEUED_SEGMENTS
 * queued (the oldest let go past it, counted), SINK_DONE_MAX keys remembered as done.
 */
import { DurableObject } from "cloudflare:workers";
import { archivePrefix, gunzip } from "../core/archive";
import {
  deliveryReports,
  produceRecord,
  type SegmentWritten,
  SINK_DONE_MAX,
  SINK_MAX_QUEUED_SEGMENTS,
  SINK_MAX_RESPONSE_BYTES,
  SINK_RECORDS_PER_REQUEST,
  type SinkConfig,
  type SinkView,
} from "../core/sinks";
import { backoffMs, redact, SourceError, type SourceErrorCode, type SourceState } from "../core/sources";
import { isoOrNull, isoTime } from "../core/time";
import { KV_SCHEMA, KvState } from "./kv-state";
import { call, readCapped } from "./sources/fetch";
import { proxyError } from "./sources/kafka";

const SCHEMA = [
  KV_SCHEMA,
  // Segments to produce, oldest first; `produced` = records of it already written to the topic.
  `CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,
     stream TEXT NOT NULL, count INTEGER NOT NULL, queued_at INTEGER NOT NULL, produced INTEGER NOT NULL DEFAULT 0)`,
  // Segments produced (at most SINK_DONE_MAX, the oldest forgotten first).
  "CREATE TABLE IF NOT EXISTS done (key TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID",
];

/** Segments one alarm produces before it lets the next alarm go on (keeps one invocation short). */
const SEGMENTS_PER_TICK = 20;

interface Meta {
  tenant: string;
  id: string;
  name: string;
  created_at: number;
  updated_at: number;
}

interface Run {
  state: SourceState;
  failures: number;
  last_error: { at: number; code: SourceErrorCode; message: string } | null;
  last_success_at: number | null;
  next_attempt_at: number | null;
}

interface Counters {
  events: number;
  segments: number;
  skipped: number;
}

interface QueueRow {
  seq: number;
  key: string;
  stream: string;
  count: number;
  queued_at: number;
  produced: number;
  [k: string]: SqlStorageValue;
}

export class SinkActor extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  /** Its settings, run state and counters (kv), its one-at-a-time queue and its deleted flag. */
  readonly #kv: KvState;
  /** The proxy's cluster id when the config names none (asked once per incarnation). */
  #clusterId: string | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#kv = new KvState(this.#sql);
    ctx.blockConcurrencyWhile(async () => {
      for (const stmt of SCHEMA) this.#sql.exec(stmt);
    });
  }

  #run(change: (r: Run) => void): Run {
    return this.#kv.change<Run>("run", change);
  }

  #counters(change: (c: Counters) => void): void {
    this.#kv.change<Counters>("counters", change);
  }

  // RPC ---------------------------------------------------------------------

  async create(input: { tenant: string; id: string; name: string; config: SinkConfig; secrets: { auth?: string } }) {
    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
      this.#kv.put("meta", { tenant: input.tenant, id: input.id, name: input.name, created_at: now, updated_at: now });
      this.#kv.put("config", input.config);
      this.#kv.put("secrets", input.secrets);
      this.#kv.put("run", {
        state: "running",
        failures: 0,
        last_error: null,
        last_success_at: null,
        next_attempt_at: null,
      } satisfies Run);
      this.#kv.put("counters", { events: 0, segments: 0, skipped: 0 } satisfies Counters);
    });
    return this.view() as SinkView;
  }

  view(): SinkView | null {
    const meta = this.#kv.get<Meta>("meta");
    if (meta === null) return null;
    const run = this.#kv.get<Run>("run") as Run;
    const counters = this.#kv.get<Counters>("counters") as Counters;
    const q = this.#sql
      .exec<{ n: number; events: number; oldest: number | null }>(
        "SELECT count(*) AS n, coalesce(sum(count - produced), 0) AS events, min(queued_at) AS oldest FROM queue",
      )
      .one();
    const head = this.#head();
    return {
      id: meta.id,
      name: meta.name,
      kind: "kafka",
      state: run.state,
      created_at: isoTime(meta.created_at),
      updated_at: isoTime(meta.updated_at),
      config: this.#kv.get<SinkConfig>("config") as SinkConfig,
      secrets: { auth: this.#kv.get<{ auth?: string }>("secrets")?.auth ? "set" : "unset" },
      status: {
        queued_segments: q.n,
        queued_events: q.events,
        lag_ms: q.oldest === null ? null : Math.max(0, Date.now() - q.oldest),
        current: head && { key: head.key, produced: head.produced, count: head.count },
        events_produced: counters.events,
        segments_produced: counters.segments,
        segments_skipped: counters.skipped,
        last_error: run.last_error && { ...run.last_error, at: isoTime(run.last_error.at) },
        consecutive_failures: run.failures,
        last_success_at: isoOrNull(run.last_success_at),
        next_attempt_at: isoOrNull(run.next_attempt_at),
      },
    };
  }

  /**
   * Queues segments the archive wrote (called by a stream's actor after each write). False when this sink
   * does not exist (deleted: the caller forgets it). Never waits for Kafka.
   */
  async enqueue(segments: SegmentWritten[]): Promise<boolean> {
    const meta = this.#kv.get<Meta>("meta");
    if (meta === null) return false;
    const now = Date.now();
    let skipped: string | null = null;
    // Only this sink's tenant's segments (its streams' actors are the only callers; this makes it a rule).
    const own = archivePrefix(meta.tenant);
    this.ctx.storage.transactionSync(() => {
      for (const s of segments) {
        if (!s.key.startsWith(own)) continue;
        if (this.#sql.exec("SELECT 1 FROM done WHERE key = ?", s.key).toArray().length > 0) continue;
        this.#sql.exec(
          "INSERT OR IGNORE INTO queue (key, stream, count, queued_at) VALUES (?, ?, ?, ?)",
          s.key,
          s.stream,
          s.count,
          now,
        );
      }
      const n = this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM queue").one().n;
      if (n > SINK_MAX_QUEUED_SEGMENTS) {
        // The oldest waiting ones; never the head, which may be being produced right now.
        const over = this.#sql
          .exec<{ seq: number; key: string }>(
            "SELECT seq, key FROM queue ORDER BY seq LIMIT ? OFFSET 1",
            n - SINK_MAX_QUEUED_SEGMENTS,
          )
          .toArray();
        for (const r of over) this.#sql.exec("DELETE FROM queue WHERE seq = ?", r.seq);
        this.#counters((c) => {
          c.skipped += over.length;
        });
        skipped = over[over.length - 1].key;
      }
    });
    if (skipped !== null) {
      this.#run((r) => {
        r.last_error = {
          at: now,
          code: "delivery_failed",
          message: `More than ${SINK_MAX_QUEUED_SEGMENTS} segments waited; the oldest were let go (up to ${skipped}). They are in the archive: GET /v1/archive/export.`,
        };
      });
    }
    const run = this.#kv.get<Run>("run") as Run;
    if (run.state === "running" && (await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now);
    return true;
  }

  async pause(): Promise<SinkView | null> {
    if (this.#kv.get<Meta>("meta") === null) return null;
    this.#run((r) => {
      r.state = "paused";
      r.next_attempt_at = null;
    });
    this.#kv.touch();
    await this.ctx.storage.deleteAlarm();
    return this.view();
  }

  async resume(): Promise<SinkView | null> {
    if (this.#kv.get<Meta>("meta") === null) return null;
    const now = Date.now();
    this.#run((r) => {
      r.state = "running";
      r.failures = 0;
      r.next_attempt_at = now;
    });
    this.#kv.touch();
    await this.ctx.storage.setAlarm(now);
    return this.view();
  }

  /** Deletes the sink: what is queued is not produced (it stays in the archive). */
  async destroy(): Promise<{ queued_segments: number } | null> {
    if (this.#kv.get<Meta>("meta") === null) return null;
    const queued = await this.#kv.serial(
      async () => this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM queue").one().n,
    );
    this.#kv.deleted = true;
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    return { queued_segments: queued };
  }

  // Producing ---------------------------------------------------------------

  #head(): QueueRow | null {
    if (this.#kv.deleted) return null;
    return this.#sql.exec<QueueRow>("SELECT * FROM queue ORDER BY seq LIMIT 1").toArray()[0] ?? null;
  }

  /** Produces up to `maxSegments` queued segments (the alarm's step; tests call it directly). */
  produce(maxSegments = SEGMENTS_PER_TICK): Promise<number> {
    return this.#kv.serial(async () => {
      let n = 0;
      for (let row = this.#head(); row !== null && n < maxSegments; row = this.#head(), n++) await this.#segment(row);
      return n;
    });
  }

  async #segment(row: QueueRow): Promise<void> {
    const config = this.#kv.get<SinkConfig>("config") as SinkConfig;
    const object = await (this.env.ARCHIVE as R2Bucket).get(row.key);
    if (object === null) {
      // Gone from R2 (the archive's retention removed it while the sink waited): skipped, counted, named.
      this.ctx.storage.transactionSync(() => {
        this.#sql.exec("DELETE FROM queue WHERE seq = ?", row.seq);
        this.#counters((c) => {
          c.skipped++;
        });
        this.#run((r) => {
          r.last_error = {
            at: Date.now(),
            code: "object_unreadable",
            message: `Segment ${row.key} is no longer in the archive (retention); its ${row.count} events were not produced.`,
          };
        });
      });
      return;
    }
    const lines = (await gunzip(await object.arrayBuffer()))
      .split("\n")
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (let at = row.produced; at < lines.length; ) {
      const chunk = lines.slice(at, at + SINK_RECORDS_PER_REQUEST);
      const written = await this.#request(config, chunk, row.seq);
      at += written;
      this.ctx.storage.transactionSync(() => {
        this.#sql.exec("UPDATE queue SET produced = ? WHERE seq = ?", at, row.seq);
        this.#counters((c) => {
          c.events += written;
        });
      });
    }
    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
      this.#sql.exec("DELETE FROM queue WHERE seq = ?", row.seq);
      this.#sql.exec("INSERT OR REPLACE INTO done (key, at) VALUES (?, ?)", row.key, now);
      const n = this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM done").one().n;
      if (n > SINK_DONE_MAX) {
        this.#sql.exec(
          "DELETE FROM done WHERE key IN (SELECT key FROM done ORDER BY at, key LIMIT ?)",
          n - SINK_DONE_MAX,
        );
      }
      this.#counters((c) => {
        c.segments++;
      });
    });
  }

  /** One produce request; returns how many records were written, all of them or it throws. */
  async #request(config: SinkConfig, lines: Array<Record<string, unknown>>, seq: number): Promise<number> {
    const root = config.url.replace(/\/+$/, "");
    const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
    const secret = this.#kv.get<{ auth?: string }>("secrets")?.auth;
    if (config.auth_header && secret) headers[config.auth_header] = secret;
    const clusterId = config.cluster_id ?? (await this.#cluster(root, headers, config.timeout_ms));
    const body = lines.map((l) => JSON.stringify(produceRecord(l, config.key))).join("\n");
    const bytes = new TextEncoder().encode(body);
    // Streaming mode (the documented way to send several records in one request): a chunked body.
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytes);
        c.close();
      },
    });
    const url = `${root}/v3/clusters/${encodeURIComponent(clusterId)}/topics/${encodeURIComponent(config.topic)}/records`;
    const res = await call(url, { method: "POST", headers, body: stream }, config.timeout_ms, "The Kafka REST Proxy");
    if (!res.ok) throw await proxyError(res, "The Kafka REST Proxy");
    const reports = deliveryReports(
      await readCapped(res, SINK_MAX_RESPONSE_BYTES, "The Kafka REST Proxy"),
      lines.length,
    );
    if (reports.failure !== null) {
      if (reports.written > 0) {
        // Keep what was written: store it, then fail (the rest is retried after the backoff).
        this.ctx.storage.transactionSync(() => {
          this.#sql.exec("UPDATE queue SET produced = produced + ? WHERE seq = ?", reports.written, seq);
          this.#counters((c) => {
            c.events += reports.written;
          });
        });
      }
      const f = reports.failure;
      throw new SourceError(
        "kafka_error",
        `The Kafka REST Proxy did not write record ${reports.written + 1} of ${lines.length} (error_code ${f.error_code}${f.message ? `: ${f.message}` : ""}).`,
      );
    }
    return reports.written;
  }

  async #cluster(root: string, headers: Record<string, string>, timeoutMs: number): Promise<string> {
    if (this.#clusterId !== null) return this.#clusterId;
    const res = await call(`${root}/v3/clusters`, { headers }, timeoutMs, "The Kafka REST Proxy");
    if (!res.ok) throw await proxyError(res, "The Kafka REST Proxy");
    let id: unknown;
    try {
      id = (
        JSON.parse(await readCapped(res, SINK_MAX_RESPONSE_BYTES, "The Kafka REST Proxy")) as {
          data?: Array<{ cluster_id?: unknown }>;
        }
      ).data?.[0]?.cluster_id;
    } catch {
      id = undefined;
    }
    if (typeof id !== "string" || id.length === 0) {
      throw new SourceError("kafka_error", "GET /v3/clusters named no cluster; set cluster_id on the sink.", true);
    }
    this.#clusterId = id;
    return id;
  }

  // The alarm ---------------------------------------------------------------

  override async alarm(): Promise<void> {
    const meta = this.#kv.get<Meta>("meta");
    if (meta === null) return;
    const run = this.#kv.get<Run>("run") as Run;
    if (run.state === "paused" || run.state === "failed") return;
    try {
      await this.produce();
      const now = Date.now();
      const more = this.#head() !== null;
      this.#run((r) => {
        r.failures = 0;
        r.last_success_at = now;
        if (r.state !== "paused") r.state = "running";
        r.next_attempt_at = more ? now : null;
      });
      if (more) await this.ctx.storage.setAlarm(now);
    } catch (err) {
      if (this.#kv.get<Meta>("meta") === null) return; // deleted meanwhile
      await this.#failed(meta, err);
    }
  }

  async #failed(meta: Meta, err: unknown): Promise<void> {
    const config = this.#kv.get<SinkConfig>("config") as SinkConfig;
    const e =
      err instanceof SourceError
        ? err
        : new SourceError("internal", `${(err as Error).name}: ${(err as Error).message}`);
    const message = redact(e.message, this.#kv.get<{ auth?: string }>("secrets") ?? {});
    const now = Date.now();
    console.error(`edgepulse: sink ${meta.tenant}/${meta.id}: ${e.code}: ${message}`);
    const run = this.#run((r) => {
      r.failures++;
      r.last_error = { at: now, code: e.code, message };
      if (r.state === "paused") r.next_attempt_at = null;
      else if (e.permanent) {
        r.state = "failed";
        r.next_attempt_at = null;
      } else {
        r.state = "backing_off";
        r.next_attempt_at = now + backoffMs(r.failures, config.max_backoff_ms);
      }
    });
    if (run.next_attempt_at !== null) await this.ctx.storage.setAlarm(run.next_attempt_at);
  }
}
