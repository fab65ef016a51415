/**
 * SourceActor: one per pull source (`<tenant>/<source id>`, /v1/sources), driven by its alarm. Each tick:
 *
 *   1. deliver the outbox (events produced earlier) to their streams (sources/deliver.ts);
 *   2. poll: the kind (sources/http.ts, postgres.ts, r2.ts, kafka.ts) reads up to max_records records
 *      past the stored cursor; each is mapped and validated (core/sources.ts, the event validator); the
 *      valid events (ids derived from the source and the record's position), the new cursor, the counts
 *      and the kind's bookkeeping are written in ONE SQLite transaction;
 *   3. deliver what the poll produced, and acknowledge (delete) it once every event has an outcome;
 *   4. set the alarm: at once if more is waiting, after interval_ms if not, after a backoff if a step
 *      failed (1 s doubling to max_backoff_ms; a permanent failure stops the source: `failed`).
 *
 * A restart between 2 and 3 finds the events in the outbox and the cursor past them: nothing is read twice
 * and nothing is skipped. A restart during 3 (events handed over, not yet acknowledged) delivers them again
 * with the same ids, and the streams count each once (dedup within DEDUP_HORIZON_MS). A source polls only
 * when its outbox is empty, so the outbox never holds more than one poll (≤ max_records ≤ 1,000 events).
 *
 * Secrets (an auth header's value, a connection string) live only in this object's storage, under their
 * own key, and never leave it: views say "set" or "unset", and error messages are redacted.
 */
import { DurableObject } from "cloudflare:workers";
import { type Config, loadConfig } from "../core/config";
import type { EventErrorCode } from "../core/errors";
import type { StreamEvent } from "../core/event";
import {
  backoffMs,
  CATCH_UP_DELAY_MS,
  type CompiledMapping,
  compileMapping,
  eventId,
  type HttpConfig,
  type KafkaConfig,
  mapRecord,
  type PostgresConfig,
  type R2Config,
  redact,
  type SourceConfig,
  SourceError,
  type SourceErrorCode,
  type SourceKind,
  type SourceSecrets,
  type SourceState,
  type SourceView,
  secretsView,
} from "../core/sources";
import { isoOrNull, isoTime } from "../core/time";
import { KV_SCHEMA, KvState } from "./kv-state";
import { type Delivery, type OutboxRow, sendOutbox } from "./sources/deliver";
import { httpPuller } from "./sources/http";
import { kafkaPuller } from "./sources/kafka";
import { PG_SCHEMA, postgresPuller } from "./sources/postgres";
import { R2_SCHEMA, r2Puller } from "./sources/r2";
import type { PullContext, Puller } from "./sources/types";

const SCHEMA = [
  KV_SCHEMA,
  // Events produced and not yet delivered: at most one poll's (≤ max_records), see above.
  "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, event TEXT NOT NULL)",
  ...PG_SCHEMA,
  ...R2_SCHEMA,
];

interface Meta {
  tenant: string;
  id: string;
  name: string;
  kind: SourceKind;
  created_at: number;
  updated_at: number;
}

interface Run {
  state: SourceState;
  failures: number;
  last_error: { at: number; code: SourceErrorCode; message: string } | null;
  last_poll_at: number | null;
  last_success_at: number | null;
  next_poll_at: number | null;
}

interface Counters {
  produced: number;
  delivered: number;
  duplicates: number;
  rejected: Partial<Record<EventErrorCode, number>>;
  lag: number | null;
}

export interface PollResult {
  produced: number;
  rejected: number;
  more: boolean;
}

const add = (into: Partial<Record<EventErrorCode, number>>, from: Partial<Record<EventErrorCode, number>>) => {
  for (const [code, n] of Object.entries(from)) {
    into[code as EventErrorCode] = (into[code as EventErrorCode] ?? 0) + (n ?? 0);
  }
};

export class SourceActor extends DurableObject<Env> {
  readonly #config: Config;
  readonly #sql: SqlStorage;
  /** Its settings, run state and counters (kv), its one-at-a-time queue and its deleted flag. */
  readonly #kv: KvState;
  #puller: Puller | null = null;
  #mapping: CompiledMapping | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#config = loadConfig(env as unknown as Record<string, unknown>);
    this.#sql = ctx.storage.sql;
    this.#kv = new KvState(this.#sql);
    ctx.blockConcurrencyWhile(async () => {
      for (const stmt of SCHEMA) this.#sql.exec(stmt);
    });
  }

  // Storage -----------------------------------------------------------------

  #pending(): number {
    if (this.#kv.deleted) return 0;
    return this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM outbox").one().n;
  }

  /** Changes the run state (read and written with no await between, so concurrent steps cannot lose a change). */
  #run(change: (r: Run) => void): Run {
    return this.#kv.change<Run>("run", change);
  }

  // RPC ---------------------------------------------------------------------

  /** Sets the source up (the Worker validated it) and polls at once. */
  async create(input: {
    tenant: string;
    id: string;
    name: string;
    config: SourceConfig;
    secrets: SourceSecrets;
  }): Promise<SourceView> {
    const now = Date.now();
    const meta: Meta = {
      tenant: input.tenant,
      id: input.id,
      name: input.name,
      kind: input.config.kind,
      created_at: now,
      updated_at: now,
    };
    this.ctx.storage.transactionSync(() => {
      this.#kv.put("meta", meta);
      this.#kv.put("config", input.config);
      this.#kv.put("secrets", input.secrets);
      this.#kv.put("run", {
        state: "running",
        failures: 0,
        last_error: null,
        last_poll_at: null,
        last_success_at: null,
        next_poll_at: now,
      } satisfies Run);
      this.#kv.put("counters", {
        produced: 0,
        delivered: 0,
        duplicates: 0,
        rejected: {},
        lag: null,
      } satisfies Counters);
    });
    await this.ctx.storage.setAlarm(now);
    return this.view() as SourceView;
  }

  view(): SourceView | null {
    const meta = this.#kv.get<Meta>("meta");
    if (meta === null) return null;
    const config = this.#kv.get<SourceConfig>("config") as SourceConfig;
    const run = this.#kv.get<Run>("run") as Run;
    const counters = this.#kv.get<Counters>("counters") as Counters;
    const puller = this.#pullerFor(meta, config);
    return {
      id: meta.id,
      name: meta.name,
      kind: meta.kind,
      state: run.state,
      created_at: isoTime(meta.created_at),
      updated_at: isoTime(meta.updated_at),
      config,
      secrets: secretsView(meta.kind, this.#kv.get<SourceSecrets>("secrets") ?? {}),
      status: {
        cursor: puller.cursorView(this.#kv.get("cursor"), this.#sql),
        lag: counters.lag,
        lag_unit: puller.lagUnit,
        events_produced: counters.produced,
        events_delivered: counters.delivered,
        duplicates: counters.duplicates,
        pending: this.#pending(),
        rejected: counters.rejected,
        last_error: run.last_error && { ...run.last_error, at: isoTime(run.last_error.at) },
        consecutive_failures: run.failures,
        last_poll_at: isoOrNull(run.last_poll_at),
        last_success_at: isoOrNull(run.last_success_at),
        next_poll_at: isoOrNull(run.next_poll_at),
      },
    };
  }

  /** Stops polling (what the outbox holds is still delivered). */
  async pause(): Promise<SourceView | null> {
    if (this.#kv.get<Meta>("meta") === null) return null;
    const pending = this.#pending();
    this.#run((r) => {
      r.state = "paused";
      r.next_poll_at = null;
    });
    this.#kv.touch();
    if (pending === 0) await this.ctx.storage.deleteAlarm();
    return this.view();
  }

  /** Polls again at once, whatever the state (a failed source after its cause was fixed). */
  async resume(): Promise<SourceView | null> {
    if (this.#kv.get<Meta>("meta") === null) return null;
    const now = Date.now();
    this.#run((r) => {
      r.state = "running";
      r.failures = 0;
      r.next_poll_at = now;
    });
    this.#kv.touch();
    await this.ctx.storage.setAlarm(now);
    return this.view();
  }

  /** Deletes the source: one last delivery of the outbox, then everything this object holds. */
  async destroy(): Promise<{ undelivered: number } | null> {
    const meta = this.#kv.get<Meta>("meta");
    if (meta === null) return null;
    const undelivered = await this.#kv.serial(async () => {
      if (this.#pending() > 0) await this.deliver().catch(() => undefined);
      const left = this.#pending();
      const puller = this.#pullerFor(meta, this.#kv.get("config") as SourceConfig);
      const ctx = this.#context(meta, Date.now());
      this.#kv.deleted = true;
      await puller.close?.(ctx).catch(() => {});
      return left;
    });
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    return { undelivered };
  }

  // The steps (the alarm runs them in order; tests run them one by one) ----------

  #pullerFor(meta: Meta, config: SourceConfig): Puller {
    if (this.#puller === null) {
      this.#puller =
        config.kind === "http"
          ? httpPuller(config as HttpConfig)
          : config.kind === "postgres"
            ? postgresPuller(config as PostgresConfig)
            : config.kind === "r2"
              ? r2Puller(config as R2Config)
              : kafkaPuller(config as KafkaConfig, meta.id);
      this.#mapping = compileMapping(config.mapping);
    }
    return this.#puller;
  }

  #context(meta: Meta, now: number): PullContext {
    const config = this.#kv.get<SourceConfig>("config") as SourceConfig;
    return {
      tenant: meta.tenant,
      sourceId: meta.id,
      secrets: this.#kv.get<SourceSecrets>("secrets") ?? {},
      cursor: this.#kv.get("cursor"),
      env: this.env,
      sql: this.#sql,
      now,
      maxRecords: config.max_records,
      timeoutMs: config.timeout_ms,
    };
  }

  /**
   * Reads the next records and stores their events with the new cursor, in one transaction. Does nothing
   * while the outbox still holds events (deliver them first).
   */
  poll(): Promise<PollResult> {
    return this.#kv.serial(() => this.#poll());
  }

  async #poll(): Promise<PollResult> {
    const meta = this.#kv.get<Meta>("meta");
    if (meta === null || this.#kv.deleted || this.#pending() > 0) return { produced: 0, rejected: 0, more: false };
    const config = this.#kv.get<SourceConfig>("config") as SourceConfig;
    const puller = this.#pullerFor(meta, config);
    const mapping = this.#mapping as CompiledMapping;
    const pulled = await puller.pull(this.#context(meta, Date.now()));
    if (this.#kv.deleted) return { produced: 0, rejected: 0, more: false };
    const now = Date.now();
    const rows: Array<[string, StreamEvent]> = [];
    const rejected: Partial<Record<EventErrorCode, number>> = {};
    for (const { record, position } of pulled.records) {
      const v = mapRecord(record, mapping, eventId(meta.id, position), now);
      if (v.ok) rows.push([v.name, v.event]);
      else rejected[v.code] = (rejected[v.code] ?? 0) + 1;
    }
    for (const m of pulled.malformed) rejected[m.code] = (rejected[m.code] ?? 0) + 1;
    this.ctx.storage.transactionSync(() => {
      for (const [stream, event] of rows) {
        this.#sql.exec("INSERT INTO outbox (stream, event) VALUES (?, ?)", stream, JSON.stringify(event));
      }
      // The kind's bookkeeping may move its cursor (a settled key, a floor): it runs before the cursor is stored.
      pulled.commit?.(this.#sql, now);
      this.#kv.put("cursor", pulled.cursor);
      const counters = this.#kv.get<Counters>("counters") as Counters;
      counters.produced += rows.length;
      add(counters.rejected, rejected);
      if (pulled.lag !== null) counters.lag = pulled.lag;
      this.#kv.put("counters", counters);
    });
    const nRejected = Object.values(rejected).reduce((a, n) => a + (n ?? 0), 0);
    return { produced: rows.length, rejected: nRejected, more: pulled.more };
  }

  /** Hands the outbox to the streams; returns what happened, without acknowledging anything. */
  send(): Promise<Delivery> {
    return this.#kv.serial(() => this.#send());
  }

  async #send(): Promise<Delivery> {
    const meta = this.#kv.get<Meta>("meta");
    const rows = this.#sql
      .exec<{ seq: number; stream: string; event: string }>("SELECT seq, stream, event FROM outbox ORDER BY seq")
      .toArray()
      .map((r): OutboxRow => ({ seq: r.seq, stream: r.stream, event: JSON.parse(r.event) as StreamEvent }));
    if (meta === null || rows.length === 0) return { done: [], accepted: 0, duplicates: 0, rejected: {}, waiting: 0 };
    try {
      return await sendOutbox(this.env, this.#config, meta.tenant, rows);
    } catch (err) {
      throw new SourceError("delivery_failed", `The streams could not be reached (${(err as Error).name}).`);
    }
  }

  /** Deletes the delivered events from the outbox and counts them, in one transaction. */
  ack(d: Delivery): void {
    if (this.#kv.deleted || this.#kv.get<Meta>("meta") === null) return;
    this.ctx.storage.transactionSync(() => {
      for (const seq of d.done) this.#sql.exec("DELETE FROM outbox WHERE seq = ?", seq);
      const counters = this.#kv.get<Counters>("counters") as Counters;
      counters.delivered += d.accepted;
      counters.duplicates += d.duplicates;
      add(counters.rejected, d.rejected);
      this.#kv.put("counters", counters);
    });
  }

  /** send + ack; fails when events had to stay in the outbox (their stream could not take them). */
  async deliver(): Promise<Delivery> {
    const d = await this.#send();
    this.ack(d);
    if (d.waiting > 0) {
      throw new SourceError(
        "delivery_failed",
        `${d.waiting} events could not be handed to their streams; they wait in the outbox.`,
      );
    }
    return d;
  }

  // The alarm ---------------------------------------------------------------

  override async alarm(): Promise<void> {
    await this.#kv.serial(() => this.#tick());
  }

  async #tick(): Promise<void> {
    const meta = this.#kv.get<Meta>("meta");
    if (meta === null || this.#kv.deleted) return;
    const config = this.#kv.get<SourceConfig>("config") as SourceConfig;
    const puller = this.#pullerFor(meta, config);
    const started = Date.now();
    let more = false;
    try {
      if (this.#pending() > 0) await this.deliver();
      const state = (this.#kv.get<Run>("run") as Run).state;
      if (state === "paused" || state === "failed") return;
      this.#run((r) => {
        r.last_poll_at = started;
      });
      await puller.delivered?.(this.#context(meta, started));
      const polled = await this.#poll();
      more = polled.more;
      if (this.#pending() > 0) await this.deliver();
      await puller.delivered?.(this.#context(meta, Date.now()));
      if (this.#kv.deleted) return;
      const now = Date.now();
      const next = now + (more ? CATCH_UP_DELAY_MS : config.interval_ms);
      const run = this.#run((r) => {
        r.failures = 0;
        r.last_success_at = now;
        if (r.state !== "paused") {
          r.state = "running";
          r.next_poll_at = next;
        }
      });
      if (run.state === "running") await this.ctx.storage.setAlarm(next);
    } catch (err) {
      if (this.#kv.deleted) return;
      await this.#failed(meta, config, err);
    }
  }

  async #failed(meta: Meta, config: SourceConfig, err: unknown): Promise<void> {
    const e =
      err instanceof SourceError
        ? err
        : new SourceError("internal", `${(err as Error).name}: ${(err as Error).message}`);
    const message = redact(e.message, this.#kv.get<SourceSecrets>("secrets") ?? {});
    const now = Date.now();
    console.error(`edgepulse: source ${meta.tenant}/${meta.id} (${meta.kind}): ${e.code}: ${message}`);
    const waiting = this.#pending() > 0;
    const run = this.#run((r) => {
      r.failures++;
      r.last_error = { at: now, code: e.code, message };
      const retry = now + backoffMs(r.failures, config.max_backoff_ms);
      if (r.state === "paused") r.next_poll_at = waiting ? retry : null;
      else if (e.permanent) {
        r.state = "failed";
        r.next_poll_at = waiting ? retry : null;
      } else {
        r.state = "backing_off";
        r.next_poll_at = retry;
      }
    });
    if (run.next_poll_at !== null) await this.ctx.storage.setAlarm(run.next_poll_at);
  }
}
