/**
 * MetricActor: one per (tenant, stream). Owns the stream's sliding windows,
 * its dedup memory and its counters. Every ingest is written to the actor's
 * SQLite storage in one transaction before the RPC returns (the output gate
 * holds the reply until the write is durable), so eviction, restart and
 * redeploy lose nothing: memory is a cache rebuilt from storage on start.
 *
 * History: each minute that received events is marked in an outbox (in the
 * same transaction). The alarm writes those minutes' full aggregates to
 * PostgreSQL as absolute values, so retries and late events are harmless,
 * and clears an outbox entry only if the minute did not change meanwhile.
 * While PostgreSQL is unreachable the outbox waits (backing off); a minute
 * about to leave the ring is frozen into the outbox first, so nothing is lost.
 */
import { DurableObject } from "cloudflare:workers";
import {
  type AlertRule,
  type AlertState,
  DELIVERY_MAX_ATTEMPTS,
  deliveryBackoffMs,
  evaluate,
  INITIAL_STATE,
  nextDeadline,
  SIGNATURE_HEADER,
  signWebhook,
  stateAfterEdit,
} from "../core/alerts";
import { type Config, loadConfig } from "../core/config";
import { decode as decodeSketch, encode as encodeSketch } from "../core/ddsketch";
import type { EventErrorCode } from "../core/errors";
import { admitTime } from "../core/event";
import { PeriodHll } from "../core/hll";
import {
  type AlertEvent,
  directoryEntry,
  HEARTBEAT,
  HUB_UPDATE_MS,
  LIVE_COALESCE_MS,
  type StreamSnapshotMessage,
  type StreamUpdateMessage,
} from "../core/live";
import type { FlushStatus, IngestRequest, IngestResult, StreamCounters, StreamSnapshot } from "../core/protocol";
import { expiryCutoff, StreamWindows, WINDOW_NAMES, type WindowEvent, type WindowName } from "../core/window";
import { historyEnabled, withDb } from "../db/client";
import { type AggregateInsert, upsertAggregates } from "../db/history";
import { alertEvents, metricsMinute } from "../db/schema";
import { acceptSocket, answerClientMessage, closeSocket, send } from "./sockets";

/** Expiry runs at least this often while the actor holds data. */
const HOUSEKEEPING_MS = 60_000;

interface Meta {
  tenant: string;
  stream: string;
  counters: StreamCounters;
  firstEventAt: number | null;
  lastEventAt: number | null;
}

const SCHEMA = [
  "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
  `CREATE TABLE IF NOT EXISTS buckets (
     sec INTEGER PRIMARY KEY, count INTEGER NOT NULL, value_count INTEGER NOT NULL,
     sum REAL NOT NULL, min REAL, max REAL, sketch BLOB NOT NULL)`,
  "CREATE TABLE IF NOT EXISTS hll (reg INTEGER PRIMARY KEY, pairs BLOB NOT NULL)",
  "CREATE TABLE IF NOT EXISTS dedup (id TEXT PRIMARY KEY, seen INTEGER NOT NULL) WITHOUT ROWID",
  "CREATE INDEX IF NOT EXISTS dedup_seen ON dedup (seen)",
  "CREATE TABLE IF NOT EXISTS minute_hll (minute INTEGER PRIMARY KEY, regs BLOB NOT NULL)",
  // Minutes whose history row is out of date. `version` grows with every change; a frozen row holds the
  // minute's final aggregate once its buckets have left the ring.
  `CREATE TABLE IF NOT EXISTS outbox (
     minute INTEGER PRIMARY KEY, version INTEGER NOT NULL, frozen INTEGER NOT NULL DEFAULT 0,
     count INTEGER, value_count INTEGER, sum REAL, min REAL, max REAL, sketch BLOB, hll BLOB)`,
  "CREATE TABLE IF NOT EXISTS dim_values (key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (key, value)) WITHOUT ROWID",
  "CREATE TABLE IF NOT EXISTS alert_rules (id TEXT PRIMARY KEY, rule TEXT NOT NULL, state TEXT NOT NULL)",
  // Alert transitions (the last ALERT_EVENTS_KEPT), with pg_flushed = 0 until written to PostgreSQL.
  `CREATE TABLE IF NOT EXISTS alert_events (
     seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, event TEXT NOT NULL, pg_flushed INTEGER NOT NULL DEFAULT 0)`,
  // The webhook outbox: one row per (event, target); retried with backoff, given up after DELIVERY_MAX_ATTEMPTS.
  `CREATE TABLE IF NOT EXISTS deliveries (
     id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, target TEXT NOT NULL, status TEXT NOT NULL,
     attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, last_error TEXT, delivered_at INTEGER)`,
  "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at)",
];

/** Alert transitions kept in the actor (older ones live in PostgreSQL). */
const ALERT_EVENTS_KEPT = 1000;
/** How often rules are re-evaluated while the actor has enabled rules (windows slide without new events). */
const ALERT_EVAL_MS = 5000;
const WEBHOOK_TIMEOUT_MS = 10_000;

export interface DeliveryInfo {
  target: string;
  status: "pending" | "delivered" | "failed";
  attempts: number;
  last_error: string | null;
  delivered_at: number | null;
}

export interface RuleStatus {
  rule: AlertRule;
  state: AlertState;
}

interface OutboxRow {
  minute: number;
  version: number;
  frozen: number;
  count: number | null;
  value_count: number | null;
  sum: number | null;
  min: number | null;
  max: number | null;
  sketch: ArrayBuffer | null;
  hll: ArrayBuffer | null;
  [k: string]: SqlStorageValue;
}

export class MetricActor extends DurableObject<Env> {
  readonly #config: Config;
  readonly #sql: SqlStorage;
  #windows = new StreamWindows();
  #meta: Meta | null = null;
  #dedupCount = 0;
  /** When the alarm is set for (ms), as far as this instance knows; null = unknown, ask storage. */
  #alarmAt: number | null = null;
  /** Minute → version of unflushed changes (mirror of the outbox table). */
  #outbox = new Map<number, number>();
  /** Live push state: events applied since the last socket message, and the coalescing timer. */
  #live = { applied: 0, timer: null as ReturnType<typeof setTimeout> | null };
  #hub = { lastAt: 0, timer: null as ReturnType<typeof setTimeout> | null };
  #rules = new Map<string, RuleStatus>();
  /** Distinct values seen per dimension key (capped at MAX_DIM_VALUES each). */
  #dimValues = new Map<string, Set<string>>();
  #secret: string | null = null;
  #alertTimer: ReturnType<typeof setTimeout> | null = null;
  #flush = { failures: 0, nextAt: 0, lastAt: null as number | null, lastError: null as string | null, flushed: 0 };
  /** Ingest calls waiting for the next group commit. */
  #pending: Array<{ req: IngestRequest; resolve: (r: IngestResult) => void; reject: (e: unknown) => void }> = [];

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#config = loadConfig(env as unknown as Record<string, unknown>);
    this.#sql = ctx.storage.sql;
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(HEARTBEAT.request, HEARTBEAT.response));
    ctx.blockConcurrencyWhile(async () => this.#load());
  }

  #load(): void {
    for (const stmt of SCHEMA) this.#sql.exec(stmt);
    const windows = new StreamWindows();
    const metaRow = this.#sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'meta'").toArray()[0];
    this.#meta = metaRow ? (JSON.parse(metaRow.v) as Meta) : null;
    for (const row of this.#sql.exec<{
      sec: number;
      count: number;
      value_count: number;
      sum: number;
      min: number | null;
      max: number | null;
      sketch: ArrayBuffer;
    }>("SELECT sec, count, value_count, sum, min, max, sketch FROM buckets")) {
      windows.load(row.sec, {
        count: row.count,
        valueCount: row.value_count,
        sum: row.sum,
        min: row.min ?? Number.POSITIVE_INFINITY,
        max: row.max ?? Number.NEGATIVE_INFINITY,
        sketch: decodeSketch(row.sketch),
      });
    }
    for (const row of this.#sql.exec<{ reg: number; pairs: ArrayBuffer }>("SELECT reg, pairs FROM hll")) {
      windows.hll.loadRegister(row.reg, row.pairs);
    }
    for (const row of this.#sql.exec<{ minute: number; regs: ArrayBuffer }>("SELECT minute, regs FROM minute_hll")) {
      windows.minuteUsers.set(row.minute, PeriodHll.decode(row.regs));
    }
    this.#outbox = new Map(
      this.#sql
        .exec<{ minute: number; version: number }>("SELECT minute, version FROM outbox")
        .toArray()
        .map((r) => [r.minute, r.version]),
    );
    this.#dedupCount = this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM dedup").one().n;
    this.#windows = windows;
    this.#rules = new Map(
      this.#sql
        .exec<{ id: string; rule: string; state: string }>("SELECT id, rule, state FROM alert_rules")
        .toArray()
        .map((r) => [r.id, { rule: JSON.parse(r.rule) as AlertRule, state: JSON.parse(r.state) as AlertState }]),
    );
    this.#secret =
      this.#sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'webhook_secret'").toArray()[0]?.v ?? null;
    this.#dimValues = new Map();
    for (const r of this.#sql.exec<{ key: string; value: string }>("SELECT key, value FROM dim_values")) {
      const set = this.#dimValues.get(r.key) ?? new Set<string>();
      set.add(r.value);
      this.#dimValues.set(r.key, set);
    }
  }

  /**
   * Applies a batch of one stream's events; resolves once they are durable.
   *
   * Group commit: batches that arrive while one is being prepared join it,
   * and the whole group is admitted in arrival order and written in one
   * transaction. Each caller still gets its own receipt, and none returns
   * before the shared write is durable (the output gate holds the replies).
   */
  ingest(req: IngestRequest): Promise<IngestResult> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ req, resolve, reject });
      if (this.#pending.length === 1) setTimeout(() => void this.#commitPending(), 0);
    });
  }

  async #commitPending(): Promise<void> {
    const group = this.#pending;
    this.#pending = [];
    const now = Date.now();
    const meta: Meta = this.#meta ?? this.#emptyMeta(group[0].req.tenant, group[0].req.stream);
    const counters = structuredClone(meta.counters);
    const horizon = now - this.#config.DEDUP_HORIZON_MS;
    const newIds = new Set<string>();
    const newDims: Array<[string, string]> = [];
    const admitted: WindowEvent[] = [];
    const countRejection = (code: EventErrorCode, n = 1) => {
      counters.rejected[code] = (counters.rejected[code] ?? 0) + n;
    };
    const results = group.map(({ req }): IngestResult => {
      const result: IngestResult = { accepted: 0, duplicates: 0, rejected: [] };
      for (const [code, n] of Object.entries(req.invalid ?? {})) countRejection(code as EventErrorCode, n ?? 0);
      req.events.forEach((e, i) => {
        if (e.id !== undefined && (newIds.has(e.id) || this.#seen(e.id, horizon))) {
          result.duplicates++;
          return;
        }
        const code = admitTime(e.ts, now, this.#config);
        if (code) {
          result.rejected.push({ i, code });
          countRejection(code);
          if (code === "too_late") counters.late++;
          else counters.future++;
          return;
        }
        if (e.id !== undefined) newIds.add(e.id);
        if (e.dims) counters.dims_overflow = (counters.dims_overflow ?? 0) + this.#guardDims(e.dims, newDims);
        admitted.push(e);
        result.accepted++;
      });
      counters.duplicates += result.duplicates;
      return result;
    });
    counters.accepted += admitted.length;
    const next: Meta = {
      ...meta,
      counters,
      firstEventAt: meta.firstEventAt ?? (admitted.length ? now : null),
      lastEventAt: admitted.length ? now : meta.lastEventAt,
    };
    const history = historyEnabled(this.env);
    try {
      const changed = this.#windows.apply(admitted);
      this.ctx.storage.transactionSync(() => {
        this.#writeBuckets(changed.seconds);
        this.#writeRegisters(changed.registers);
        if (history) {
          for (const m of changed.minuteUsers) {
            const regs = this.#windows.minuteUsers.get(m)?.encode();
            if (regs) this.#sql.exec("INSERT OR REPLACE INTO minute_hll (minute, regs) VALUES (?, ?)", m, regs);
          }
          for (const m of changed.minutes) {
            const version = (this.#outbox.get(m) ?? 0) + 1;
            this.#sql.exec(
              "INSERT INTO outbox (minute, version) VALUES (?, ?) ON CONFLICT (minute) DO UPDATE SET version = excluded.version",
              m,
              version,
            );
            this.#outbox.set(m, version);
          }
        }
        for (const id of newIds) this.#sql.exec("INSERT OR REPLACE INTO dedup (id, seen) VALUES (?, ?)", id, now);
        for (const [k, v] of newDims)
          this.#sql.exec("INSERT OR IGNORE INTO dim_values (key, value) VALUES (?, ?)", k, v);
        this.#sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('meta', ?)", JSON.stringify(next));
      });
    } catch (err) {
      // Storage refused the write: reload the truth (dropping the in-memory changes) and fail every
      // caller of the group, so the collector reports their events as not accepted.
      this.#load();
      for (const p of group) p.reject(err);
      return;
    }
    this.#meta = next;
    this.#dedupCount += newIds.size;
    group.forEach((p, k) => {
      p.resolve(results[k]);
    });
    this.#afterApply(admitted.length);
    await this.#ensureAlarm(Date.now() + (this.#outbox.size > 0 ? this.#config.FLUSH_INTERVAL_MS : HOUSEKEEPING_MS));
  }

  /** Admits an event's dimension values up to MAX_DIM_VALUES per key; folds the rest into "__other__". Returns how many were folded. */
  #guardDims(dims: Record<string, string>, added: Array<[string, string]>): number {
    let folded = 0;
    for (const [k, v] of Object.entries(dims)) {
      let set = this.#dimValues.get(k);
      if (set === undefined) {
        set = new Set();
        this.#dimValues.set(k, set);
      }
      if (set.has(v)) continue;
      if (set.size < this.#config.MAX_DIM_VALUES) {
        set.add(v);
        added.push([k, v]);
      } else {
        dims[k] = "__other__";
        folded++;
      }
    }
    return folded;
  }

  #seen(id: string, horizon: number): boolean {
    return this.#sql.exec("SELECT 1 FROM dedup WHERE id = ? AND seen >= ?", id, horizon).toArray().length > 0;
  }

  /** Live aggregates for one window or all four, plus the stream's counters. Null if the stream never received an event. */
  snapshot(window?: WindowName): StreamSnapshot | null {
    const meta = this.#meta;
    if (meta === null) return null;
    const now = Date.now();
    const names = window ? [window] : WINDOW_NAMES;
    return {
      stream: meta.stream,
      now: new Date(now).toISOString(),
      windows: Object.fromEntries(names.map((w) => [w, this.#windows.aggregates(w, now)])),
      counters: meta.counters,
      first_event_at: meta.firstEventAt === null ? null : new Date(meta.firstEventAt).toISOString(),
      last_event_at: meta.lastEventAt === null ? null : new Date(meta.lastEventAt).toISOString(),
      history: this.flushStatus(),
    };
  }

  /** How far history lags: minutes waiting for PostgreSQL, and the last flush's outcome. */
  flushStatus(): FlushStatus {
    return {
      enabled: historyEnabled(this.env),
      pending_minutes: this.#outbox.size,
      failures: this.#flush.failures,
      last_flush_at: this.#flush.lastAt === null ? null : new Date(this.#flush.lastAt).toISOString(),
      last_error: this.#flush.lastError,
      minutes_flushed: this.#flush.flushed,
    };
  }

  /** A dashboard's socket for this stream (the Worker has checked the key). Hibernates between messages. */
  override async fetch(request: Request): Promise<Response> {
    const stream = request.headers.get("x-edgepulse-stream") ?? "";
    return acceptSocket(this.ctx, request, "stream", () => [this.#liveSnapshot(stream, Date.now())], { stream });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    answerClientMessage(ws, message);
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    closeSocket(ws, code);
  }

  /** The full picture: every window, counters, and the chart series (5 min per second, 1 h per minute). */
  #liveSnapshot(stream: string, now: number, seconds = 300, minutes = 60): StreamSnapshotMessage {
    return {
      type: "snapshot",
      stream,
      at: now,
      windows: Object.fromEntries(
        WINDOW_NAMES.map((w) => [w, this.#windows.aggregates(w, now)]),
      ) as StreamSnapshotMessage["windows"],
      counters: this.#meta?.counters ?? { accepted: 0, duplicates: 0, late: 0, future: 0, rejected: {} },
      seconds: this.#windows.secondSeries(now, seconds),
      minutes: this.#windows.minuteSeries(now, minutes),
    };
  }

  /** After a group commit: schedule a coalesced push to sockets, and a rate-limited update of the tenant hub. */
  #afterApply(applied: number): void {
    if (this.ctx.getWebSockets("stream").length > 0) {
      this.#live.applied += applied;
      this.#live.timer ??= setTimeout(() => this.#pushLive(), LIVE_COALESCE_MS);
    }
    if (this.#hub.timer === null) {
      const wait = Math.max(0, this.#hub.lastAt + HUB_UPDATE_MS - Date.now());
      this.#hub.timer = setTimeout(() => this.#updateHub(), wait);
    }
    if (this.#rules.size > 0 && this.#alertTimer === null) {
      this.#alertTimer = setTimeout(() => void this.#evaluateRules(), LIVE_COALESCE_MS);
    }
  }

  /** Adds or replaces an alert rule (the Worker has validated it); evaluates it at once. */
  async setRule(rule: AlertRule, tenant: string, secret: string): Promise<RuleStatus> {
    const before = this.#rules.get(rule.id);
    const state = before ? stateAfterEdit(before.rule, rule, before.state) : INITIAL_STATE;
    this.#rules.set(rule.id, { rule, state });
    this.#secret = secret;
    this.#sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('webhook_secret', ?)", secret);
    this.#sql.exec(
      "INSERT OR REPLACE INTO alert_rules (id, rule, state) VALUES (?, ?, ?)",
      rule.id,
      JSON.stringify(rule),
      JSON.stringify(state),
    );
    this.#meta ??= this.#emptyMeta(tenant, rule.stream);
    await this.#evaluateRules();
    return this.#rules.get(rule.id) as RuleStatus;
  }

  /** Removes a rule; a firing alert is resolved (and notified) first. */
  async deleteRule(id: string): Promise<boolean> {
    const r = this.#rules.get(id);
    if (!r) return false;
    if (r.state.state === "firing") {
      this.#rules.set(id, { rule: { ...r.rule, enabled: false }, state: r.state });
      await this.#evaluateRules();
    }
    this.#rules.delete(id);
    this.#sql.exec("DELETE FROM alert_rules WHERE id = ?", id);
    return true;
  }

  ruleStatuses(): RuleStatus[] {
    return [...this.#rules.values()];
  }

  /** Recent alert transitions, newest first, each with its webhook deliveries. */
  alertEvents(limit = 100): Array<AlertEvent & { deliveries: DeliveryInfo[] }> {
    const events = this.#sql
      .exec<{ event: string }>("SELECT event FROM alert_events ORDER BY seq DESC LIMIT ?", limit)
      .toArray()
      .map((r) => JSON.parse(r.event) as AlertEvent);
    return events.map((e) => ({ ...e, deliveries: this.#deliveries(e.id) }));
  }

  #deliveries(eventId: string): DeliveryInfo[] {
    return this.#sql
      .exec<{
        target: string;
        status: DeliveryInfo["status"];
        attempts: number;
        last_error: string | null;
        delivered_at: number | null;
      }>(
        "SELECT target, status, attempts, last_error, delivered_at FROM deliveries WHERE event_id = ? ORDER BY id",
        eventId,
      )
      .toArray()
      .map((d) => ({ ...d }));
  }

  #emptyMeta(tenant: string, stream: string): Meta {
    return {
      tenant,
      stream,
      counters: { accepted: 0, duplicates: 0, late: 0, future: 0, rejected: {} },
      firstEventAt: null,
      lastEventAt: null,
    };
  }

  /**
   * Evaluates every rule against the live windows now. Transitions are stored
   * with their webhook deliveries in one transaction, then pushed live.
   */
  async #evaluateRules(): Promise<void> {
    this.#alertTimer = null;
    const meta = this.#meta;
    if (meta === null || this.#rules.size === 0) return;
    const now = Date.now();
    const figures = new Map<WindowName, ReturnType<StreamWindows["aggregates"]>>();
    const fresh: AlertEvent[] = [];
    const history = historyEnabled(this.env);
    this.ctx.storage.transactionSync(() => {
      for (const [id, r] of this.#rules) {
        if (r.rule.kind === "threshold" && !figures.has(r.rule.window)) {
          figures.set(r.rule.window, this.#windows.aggregates(r.rule.window, now));
        }
        const res = evaluate(r.rule, r.state, {
          now,
          figures: r.rule.kind === "threshold" ? (figures.get(r.rule.window) ?? null) : null,
          lastEventAt: meta.lastEventAt,
        });
        const changed = res.transitions.length > 0 || res.state.state !== r.state.state;
        r.state = res.state;
        if (changed) this.#sql.exec("UPDATE alert_rules SET state = ? WHERE id = ?", JSON.stringify(r.state), id);
        for (const t of res.transitions) {
          const event: AlertEvent = {
            id: `${id}:${t.kind}:${t.at}`,
            stream: meta.stream,
            rule_id: id,
            rule_name: r.rule.name,
            kind: t.kind,
            at: t.at,
            value: t.value,
            labels: r.rule.labels,
          };
          this.#sql.exec(
            // Without history there is nothing to flush: mark the event done, so the log is pruned all the same.
            "INSERT OR IGNORE INTO alert_events (id, event, pg_flushed) VALUES (?, ?, ?)",
            event.id,
            JSON.stringify(event),
            history ? 0 : 1,
          );
          if (t.kind === "firing" || t.kind === "resolved") {
            for (const target of r.rule.targets) {
              this.#sql.exec(
                "INSERT INTO deliveries (event_id, target, status, next_at) VALUES (?, ?, 'pending', ?)",
                event.id,
                target,
                now,
              );
            }
          }
          fresh.push(event);
        }
      }
      this.#sql.exec(
        "DELETE FROM alert_events WHERE pg_flushed = 1 AND seq <= (SELECT max(seq) FROM alert_events) - ?",
        ALERT_EVENTS_KEPT,
      );
    });
    for (const event of fresh) {
      const text = JSON.stringify({ type: "alert", event });
      for (const ws of this.ctx.getWebSockets("stream")) send(ws, text);
      if (event.kind === "firing" || event.kind === "resolved") {
        this.env.TENANT_HUB.getByName(meta.tenant)
          .alertEvent(event)
          .catch(() => {});
      }
    }
    if (fresh.some((e) => e.kind === "firing" || e.kind === "resolved")) {
      await this.#ensureAlarm(Date.now());
    } else {
      await this.#ensureAlarm(this.#nextAlertWake(now));
    }
  }

  /** When rules next need the alarm: their timers, or the periodic re-evaluation. */
  #nextAlertWake(now: number): number {
    let next = Number.POSITIVE_INFINITY;
    for (const r of this.#rules.values()) {
      if (!r.rule.enabled) continue;
      next = Math.min(
        next,
        now + ALERT_EVAL_MS,
        nextDeadline(r.rule, r.state, this.#meta?.lastEventAt ?? null) ?? next,
      );
    }
    const due = this.#sql
      .exec<{ t: number | null }>("SELECT min(next_at) AS t FROM deliveries WHERE status = 'pending'")
      .one().t;
    if (due !== null) next = Math.min(next, due);
    return next;
  }

  /** Posts due webhooks: signed, with the event id as idempotency key; backs off; gives up and reports after the limit. */
  async #deliverWebhooks(): Promise<void> {
    const now = Date.now();
    const due = this.#sql
      .exec<{ id: number; event_id: string; target: string; attempts: number }>(
        "SELECT id, event_id, target, attempts FROM deliveries WHERE status = 'pending' AND next_at <= ? ORDER BY id LIMIT 20",
        now,
      )
      .toArray();
    if (due.length === 0) return;
    // Claim the rows before the first await: an overlapping run (a manual alarm, a retry) must not post them again.
    for (const d of due) {
      this.#sql.exec("UPDATE deliveries SET next_at = ? WHERE id = ?", now + WEBHOOK_TIMEOUT_MS + 1000, d.id);
    }
    const secret = this.#secret ?? "";
    await Promise.all(
      due.map(async (d) => {
        const event = this.#sql
          .exec<{ event: string }>("SELECT event FROM alert_events WHERE id = ?", d.event_id)
          .toArray()[0];
        const body = event?.event ?? JSON.stringify({ id: d.event_id });
        const ts = Math.floor(Date.now() / 1000);
        let error: string | null = null;
        try {
          const res = await fetch(d.target, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              "user-agent": "edgepulse-webhooks/1",
              "idempotency-key": d.event_id,
              "x-edgepulse-event-id": d.event_id,
              [SIGNATURE_HEADER]: `t=${ts},v1=${await signWebhook(secret, ts, body)}`,
            },
            body,
            signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
          });
          await res.body?.cancel();
          if (!res.ok) error = `HTTP ${res.status}`;
        } catch (err) {
          error = `${(err as Error).name}: ${(err as Error).message}`.slice(0, 200);
        }
        const attempts = d.attempts + 1;
        if (error === null) {
          this.#sql.exec(
            "UPDATE deliveries SET status = 'delivered', attempts = ?, delivered_at = ?, last_error = NULL WHERE id = ?",
            attempts,
            Date.now(),
            d.id,
          );
        } else {
          const failed = attempts >= DELIVERY_MAX_ATTEMPTS;
          this.#sql.exec(
            "UPDATE deliveries SET status = ?, attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
            failed ? "failed" : "pending",
            attempts,
            Date.now() + deliveryBackoffMs(attempts),
            error,
            d.id,
          );
        }
        if (historyEnabled(this.env)) this.#sql.exec("UPDATE alert_events SET pg_flushed = 0 WHERE id = ?", d.event_id);
      }),
    );
  }

  #pushLive(): void {
    this.#live.timer = null;
    const sockets = this.ctx.getWebSockets("stream");
    if (sockets.length === 0 || this.#meta === null) return;
    const now = Date.now();
    // Only the current and previous second and minute: the client merges them into its series.
    const update: StreamUpdateMessage = {
      ...this.#liveSnapshot(this.#meta.stream, now, 2, 2),
      type: "update",
      applied: this.#live.applied,
    };
    this.#live.applied = 0;
    const text = JSON.stringify(update);
    for (const ws of sockets) send(ws, text);
  }

  #updateHub(): void {
    this.#hub.timer = null;
    const meta = this.#meta;
    if (meta === null) return;
    const now = Date.now();
    this.#hub.lastAt = now;
    const entry = directoryEntry(meta.stream, now, this.#windows.aggregates("1m", now), meta.counters);
    this.env.TENANT_HUB.getByName(meta.tenant)
      .update(entry)
      .catch(() => {
        // The overview is best effort; the next update carries the latest figures anyway.
      });
  }

  /** The one alarm: expiry and dedup cleanup, then the history flush, then the next wake-up. */
  override async alarm(): Promise<void> {
    this.#alarmAt = null;
    const now = Date.now();
    this.#expire(now);
    if (this.#rules.size > 0) await this.#evaluateRules();
    await this.#deliverWebhooks();
    const history = historyEnabled(this.env);
    const unflushedAlerts = () =>
      this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM alert_events WHERE pg_flushed = 0").one().n > 0;
    const pending = () => this.#outbox.size > 0 || unflushedAlerts();
    if (history && pending() && now >= this.#flush.nextAt) await this.#flushOutbox();
    const wakes = [this.#rules.size > 0 ? this.#nextAlertWake(Date.now()) : Number.POSITIVE_INFINITY];
    if (history && pending()) wakes.push(Math.max(Date.now() + this.#config.FLUSH_INTERVAL_MS, this.#flush.nextAt));
    if (this.#windows.buckets.size > 0 || this.#dedupCount > 0) wakes.push(Date.now() + HOUSEKEEPING_MS);
    const next = Math.min(...wakes);
    if (Number.isFinite(next)) await this.#ensureAlarm(next);
  }

  #expire(now: number): void {
    const cutoff = expiryCutoff(now);
    this.ctx.storage.transactionSync(() => {
      // Freeze unflushed minutes about to leave the ring: their aggregate is final (too late for new events).
      for (const m of this.#outbox.keys()) {
        if (m * 60 >= cutoff) continue;
        const frozen = this.#sql.exec<{ frozen: number }>("SELECT frozen FROM outbox WHERE minute = ?", m).one().frozen;
        if (frozen) continue;
        const row = this.#minuteRow(m);
        this.#sql.exec(
          "UPDATE outbox SET frozen = 1, count = ?, value_count = ?, sum = ?, min = ?, max = ?, sketch = ?, hll = ? WHERE minute = ?",
          row.count,
          row.valueCount,
          row.sum,
          row.min,
          row.max,
          row.sketch,
          row.hll,
          m,
        );
      }
      const gone = this.#windows.expire(now);
      for (const sec of gone.seconds) this.#sql.exec("DELETE FROM buckets WHERE sec = ?", sec);
      for (const m of gone.minutes) this.#sql.exec("DELETE FROM minute_hll WHERE minute = ?", m);
      this.#writeRegisters(gone.registers);
      const horizon = now - this.#config.DEDUP_HORIZON_MS;
      const removed = this.#sql.exec("DELETE FROM dedup WHERE seen < ?", horizon).rowsWritten;
      const excess = this.#dedupCount - removed - this.#config.DEDUP_MAX_IDS;
      if (excess > 0) {
        this.#sql.exec("DELETE FROM dedup WHERE id IN (SELECT id FROM dedup ORDER BY seen LIMIT ?)", excess);
      }
      this.#dedupCount = this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM dedup").one().n;
    });
  }

  /** The minute's full aggregate, as a history row. */
  #minuteRow(m: number): AggregateInsert {
    const b = this.#windows.minute(m);
    const meta = this.#meta as Meta;
    return {
      tenantId: meta.tenant,
      stream: meta.stream,
      bucket: new Date(m * 60_000),
      count: b.count,
      valueCount: b.valueCount,
      sum: b.sum,
      min: b.valueCount > 0 ? b.min : null,
      max: b.valueCount > 0 ? b.max : null,
      sketch: encodeSketch(b.sketch),
      hll: (this.#windows.minuteUsers.get(m) ?? new PeriodHll()).encode(),
    };
  }

  /** Writes every outbox minute to PostgreSQL; clears the entries that did not change meanwhile. */
  async #flushOutbox(): Promise<void> {
    const meta = this.#meta as Meta;
    const versions = new Map(this.#outbox);
    const frozen = new Map(
      this.#sql
        .exec<OutboxRow>("SELECT * FROM outbox WHERE frozen = 1")
        .toArray()
        .map((r) => [r.minute, r]),
    );
    const rows: AggregateInsert[] = [...versions.keys()].map((m) => {
      const f = frozen.get(m);
      if (!f) return this.#minuteRow(m);
      return {
        tenantId: meta.tenant,
        stream: meta.stream,
        bucket: new Date(m * 60_000),
        count: f.count as number,
        valueCount: f.value_count as number,
        sum: f.sum as number,
        min: f.min,
        max: f.max,
        sketch: new Uint8Array(f.sketch as ArrayBuffer),
        hll: new Uint8Array(f.hll as ArrayBuffer),
      };
    });
    const alerts = this.#sql
      .exec<{ seq: number; id: string; event: string }>(
        "SELECT seq, id, event FROM alert_events WHERE pg_flushed = 0 ORDER BY seq",
      )
      .toArray();
    const maxSeq = alerts.length ? alerts[alerts.length - 1].seq : 0;
    try {
      await withDb(this.env, async (db) => {
        if (rows.length) await upsertAggregates(db, metricsMinute, rows);
        for (const a of alerts) {
          const e = JSON.parse(a.event) as AlertEvent;
          const values = {
            id: e.id,
            tenantId: meta.tenant,
            stream: e.stream,
            ruleId: e.rule_id,
            ruleName: e.rule_name,
            kind: e.kind,
            at: new Date(e.at),
            value: e.value,
            labels: e.labels,
            deliveries: this.#deliveries(e.id),
          };
          await db
            .insert(alertEvents)
            .values(values)
            .onConflictDoUpdate({ target: alertEvents.id, set: { deliveries: values.deliveries } });
        }
      });
    } catch (err) {
      this.#flush.failures++;
      this.#flush.lastError = `${(err as Error).name}: ${(err as Error).message}`.slice(0, 300);
      const backoff = Math.min(
        this.#config.FLUSH_INTERVAL_MS * 2 ** this.#flush.failures,
        this.#config.FLUSH_MAX_BACKOFF_MS,
      );
      this.#flush.nextAt = Date.now() + backoff;
      return;
    }
    this.ctx.storage.transactionSync(() => {
      // Deliveries only change in the alarm, before this flush; new events get higher seq and stay unflushed.
      this.#sql.exec("UPDATE alert_events SET pg_flushed = 1 WHERE pg_flushed = 0 AND seq <= ?", maxSeq);
      for (const [m, version] of versions) {
        if (this.#outbox.get(m) !== version) continue; // changed while we wrote: flush again next time
        this.#sql.exec("DELETE FROM outbox WHERE minute = ? AND version = ?", m, version);
        this.#outbox.delete(m);
      }
    });
    this.#flush.failures = 0;
    this.#flush.nextAt = 0;
    this.#flush.lastAt = Date.now();
    this.#flush.lastError = null;
    this.#flush.flushed += rows.length;
  }

  /** Makes sure the alarm fires no later than `at`. */
  async #ensureAlarm(at: number): Promise<void> {
    if (this.#alarmAt === null) this.#alarmAt = await this.ctx.storage.getAlarm();
    if (this.#alarmAt !== null && this.#alarmAt <= at) return;
    await this.ctx.storage.setAlarm(at);
    this.#alarmAt = at;
  }

  #writeBuckets(seconds: Iterable<number>): void {
    for (const sec of seconds) {
      const b = this.#windows.buckets.get(sec);
      if (b === undefined) continue;
      this.#sql.exec(
        "INSERT OR REPLACE INTO buckets (sec, count, value_count, sum, min, max, sketch) VALUES (?, ?, ?, ?, ?, ?, ?)",
        sec,
        b.count,
        b.valueCount,
        b.sum,
        b.valueCount > 0 ? b.min : null,
        b.valueCount > 0 ? b.max : null,
        encodeSketch(b.sketch),
      );
    }
  }

  #writeRegisters(registers: Iterable<number>): void {
    for (const reg of registers) {
      const bytes = this.#windows.hll.encodeRegister(reg);
      if (bytes === null) this.#sql.exec("DELETE FROM hll WHERE reg = ?", reg);
      else this.#sql.exec("INSERT OR REPLACE INTO hll (reg, pairs) VALUES (?, ?)", reg, bytes);
    }
  }
}
