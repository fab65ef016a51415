/**
 * MetricActor: one per (tenant, stream). A thin shell that wires the
 * stream's parts together and exposes them over typed RPC:
 *
 *   ingest.ts    admission, dedup, group commit          store.ts     the window state in SQLite
 *   history.ts   the history outbox → PostgreSQL          live.ts      sockets, hub updates, decay
 *   alerts.ts    rules and their state machines           webhooks.ts  signed deliveries
 *   outbox.ts    the one outbox (history, alerts, hooks)  planner.ts   the one alarm
 *
 * Storage is the truth and memory a cache: every ingest is durable before
 * its RPC returns, and the constructor rebuilds memory from storage.
 */
import { DurableObject } from "cloudflare:workers";
import type { AlertRule } from "../../core/alerts";
import { type Config, loadConfig } from "../../core/config";
import type { Tap } from "../../core/funnels";
import { type AlertEvent, HEARTBEAT } from "../../core/live";
import {
  type FlushStatus,
  type IngestRequest,
  type IngestResult,
  type StreamSnapshot,
  unavailable,
} from "../../core/protocol";
import type { ScalingStatus } from "../../core/shards";
import { isoOrNull, isoTime } from "../../core/time";
import { expiryCutoff, minuteOf, secondOf, WINDOW_NAMES, WINDOWS, type WindowName } from "../../core/window";
import type { MinutePeriod } from "../../db/history";
import { type Wakeable, WakePlanner } from "../planner";
import { Alerts, type RuleStatus } from "./alerts";
import { Archive } from "./archive";
import { BACKFILL_MAX_PENDING_BATCHES, Backfill } from "./backfill";
import { type BreakdownFigures, type DimRow, Dims } from "./dims";
import { FunnelFeed } from "./funnels";
import { History } from "./history";
import { Ingest, type Meta } from "./ingest";
import { Live } from "./live";
import { migrate } from "./migrate";
import { Outbox } from "./outbox";
import { Replay, type ReplayStatus } from "./replay";
import { Scaling, type StreamScaling } from "./scaling";
import { WindowStore } from "./store";
import { DELIVERIES_KEPT, Webhooks } from "./webhooks";

export type { RuleStatus };

export interface DeliveryInfo {
  target: string;
  status: "pending" | "delivered" | "failed";
  attempts: number;
  last_error: string | null;
  delivered_at: number | null;
}

/** What an actor holds (operators, benchmarks and tests). */
export interface ActorStats {
  /** The actor's SQLite database size (what the runtime reports and bills). */
  storage_bytes: number;
  /** Minutes held in the ring, and how many of them are still open (one row per second). */
  minutes: number;
  open_minutes: number;
  /** Sliding HyperLogLog registers in use (≤ 32,768). */
  registers: number;
  /** Event ids remembered for dedup (≤ DEDUP_MAX_IDS). */
  dedup_ids: number;
  /** Outbox entries waiting (history minutes, alert rows, webhook deliveries). */
  outbox_pending: number;
  /** Database connections this instance has opened (one is kept across flushes). */
  db_connections_opened: number;
  /** Dimensions (keys and sets), values tracked, minutes of dimension blocks in memory. */
  dimensions: number;
  values: number;
  hot_minutes: number;
}

const HOUSEKEEPING_SLACK_MS = 250;

/** The actor's parts (each file of this folder), wired once per instance. */
export interface Parts {
  storage: DurableObjectStorage;
  sql: SqlStorage;
  outbox: Outbox;
  store: WindowStore;
  ingest: Ingest;
  history: History;
  live: Live;
  alerts: Alerts;
  webhooks: Webhooks;
  dims: Dims;
  scaling: Scaling;
  archive: Archive;
  backfill: Backfill;
  replay: Replay;
  funnels: FunnelFeed;
}

/**
 * Housekeeping, once per minute while the actor holds data: packs ended
 * minutes into blocks, freezes minutes history still owes before they leave
 * the ring, expires the ring, trims dedup ids and finished outbox entries.
 */
class Housekeeping implements Wakeable {
  readonly name = "housekeeping";
  #lastRun = 0;

  constructor(readonly parts: Parts) {}

  nextWake(now: number): number | null {
    const p = this.parts;
    const pack = p.dims.nextPack(now);
    if (p.store.windows.minuteCount === 0 && p.ingest.dedupCount === 0 && pack === null) return null;
    const minuteStart = minuteOf(secondOf(now)) * 60_000 + HOUSEKEEPING_SLACK_MS;
    // Due now if it has not run since this minute began; else at the next minute.
    const next =
      this.#lastRun < minuteStart && now >= minuteStart ? now : minuteStart + (now >= minuteStart ? 60_000 : 0);
    return pack === null ? next : Math.min(next, Math.max(pack + HOUSEKEEPING_SLACK_MS, this.#lastRun + 1000));
  }

  wake(now: number): void {
    this.#lastRun = now;
    const p = this.parts;
    p.storage.transactionSync(() => {
      p.history.freezeBefore(minuteOf(expiryCutoff(now)));
      p.store.packEnded(now);
      p.store.expire(now);
      p.dims.housekeep(now);
      p.ingest.trimDedup(now);
      p.outbox.pruneFinished("webhook", DELIVERIES_KEPT);
    });
  }
}

export class MetricActor extends DurableObject<Env> {
  readonly config: Config;
  readonly parts: Parts;
  readonly #planner: WakePlanner;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.config = loadConfig(env as unknown as Record<string, unknown>);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(HEARTBEAT.request, HEARTBEAT.response));
    this.#planner = new WakePlanner(ctx.storage);
    this.parts = this.#build();
    for (const p of [
      new Housekeeping(this.parts),
      this.parts.alerts,
      this.parts.live,
      this.parts.webhooks,
      this.parts.history,
      this.parts.scaling,
      this.parts.archive,
      this.parts.replay,
      this.parts.funnels,
    ])
      this.#planner.add(p);
    ctx.blockConcurrencyWhile(async () => {
      migrate(ctx.storage.sql, ctx.storage);
      this.#load();
      this.#planner.init(await ctx.storage.getAlarm());
      await this.#planner.arm();
    });
  }

  #build(): Parts {
    const ctx = this.ctx;
    const sql = ctx.storage.sql;
    const storage = ctx.storage;
    const outbox = new Outbox(sql);
    const store = new WindowStore(sql, Boolean(this.env.DATABASE_URL));
    const meta = (): Meta | null => ingest.meta;
    const dims = new Dims(sql, this.config, outbox, Boolean(this.env.DATABASE_URL));
    const scaling = new Scaling(sql, this.config, () =>
      ingest.meta ? `${ingest.meta.tenant}/${ingest.meta.stream}` : "?",
    );
    const history = new History(
      this.env,
      this.config,
      sql,
      storage,
      outbox,
      store,
      meta,
      () => dims,
      (key) => replay.holdsBackfill(key),
    );
    const live: Live = new Live(
      ctx,
      this.env,
      store,
      meta,
      () => alerts.firing(),
      () => dims.breakdowns(),
    );
    const alerts: Alerts = new Alerts(sql, storage, store, outbox, history, live, meta);
    const webhooks = new Webhooks(this.env, storage, outbox, history, meta);
    const archive = new Archive(this.env, this.config, sql, storage, meta, () => replay.holdsArchive());
    const replay: Replay = new Replay(this.env, this.config, sql, storage, outbox, meta, dims);
    const funnels = new FunnelFeed(this.env, sql, outbox, meta);
    const backfill = new Backfill(this.config, sql, storage, outbox, archive, Boolean(this.env.DATABASE_URL));
    const ingest: Ingest = new Ingest(sql, storage, this.config, store, {
      applyDims: (events) => dims.apply(events),
      inTransaction: (changed, dimsResult, admitted, m, now) => {
        dims.persist(dimsResult);
        history.markMinutes(changed.minutes, now);
        archive.append(m.stream, admitted, now);
        funnels.append(admitted, now);
      },
      committed: (admitted, now) => {
        live.committed(admitted, now);
        alerts.committed(now);
        this.#armSoon();
      },
      reload: () => this.#reset(),
    });
    return {
      storage,
      sql,
      outbox,
      store,
      history,
      live,
      alerts,
      webhooks,
      ingest,
      dims,
      scaling,
      archive,
      backfill,
      replay,
      funnels,
    };
  }

  #load(): void {
    const p = this.parts;
    p.store.load();
    p.dims.load(Date.now());
    p.ingest.load();
    p.history.load();
    p.alerts.load();
    p.live.load(Date.now());
    p.scaling.load();
    p.archive.load(Date.now());
    p.backfill.load();
    p.replay.load();
    p.funnels.load();
  }

  /**
   * Storage refused a write: memory may now be ahead of storage. Rebuild it from storage; if even that
   * fails, reset the object so the next call starts from storage (never go on from a partial state).
   */
  #reset(): void {
    try {
      this.#load();
    } catch (err) {
      console.error(`edgepulse: reload after a refused write failed, resetting: ${(err as Error).message}`);
      this.ctx.abort("storage refused a write");
    }
  }

  /** Re-arms the alarm after a commit (the callers already have their receipts; a failure is logged). */
  #armSoon(): void {
    this.#planner.arm().catch((err: Error) => {
      console.error(`edgepulse: could not set the alarm: ${err.name}: ${err.message}`);
    });
  }
  /** Applies a batch of one stream's events; resolves once they are durable. The reply carries the shard count. */
  async ingest(req: IngestRequest): Promise<IngestResult> {
    const scaling = this.parts.scaling;
    this.#recordLoad(1);
    // An R2 outage has filled the archive log: refuse rather than acknowledge what could not be archived.
    if (this.parts.archive.full()) return { ...unavailable(req), shards: scaling.shards };
    const result = await this.parts.ingest.ingest(req);
    return { ...result, shards: scaling.shards };
  }

  /**
   * The requests a shard combined while its previous relay was in flight (stream-shard.ts): all join one
   * group commit, each gets its own receipt; a refused write fails them all (nothing acknowledged).
   */
  async ingestRelayed(reqs: IngestRequest[]): Promise<{ results: IngestResult[]; shards: number }> {
    this.#recordLoad(reqs.length, reqs[0]?.shard);
    if (this.parts.archive.full()) return { results: reqs.map(unavailable), shards: this.parts.scaling.shards };
    const results = await Promise.all(reqs.map((r) => this.parts.ingest.ingest(r)));
    return { results, shards: this.parts.scaling.shards };
  }

  /**
   * The backfill path (backfill.ts): events young enough for the live windows go through the live path
   * as usual; older ones into history and the archive only. One receipt for both, in the request's order.
   */
  async backfill(req: IngestRequest): Promise<IngestResult> {
    const p = this.parts;
    // Bounds: the archive log, and backfill batches waiting for PostgreSQL (an outage): refuse, never lose.
    if (p.archive.full() || p.outbox.pendingCount("backfill") >= BACKFILL_MAX_PENDING_BATCHES) return unavailable(req);
    const now = Date.now();
    const liveFrom = now - this.config.ALLOWED_LATENESS_MS;
    const young: number[] = [];
    const old: number[] = [];
    req.events.forEach((e, i) => {
      (e.ts >= liveFrom ? young : old).push(i);
    });
    const meta = p.ingest.ensureMeta(req.tenant, req.stream);
    const b = p.backfill.admit(
      old.map((i) => req.events[i]),
      meta,
      now,
      () => p.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('meta', ?)", JSON.stringify(meta)),
    );
    const result: IngestResult = {
      accepted: b.accepted,
      duplicates: b.duplicates,
      rejected: b.rejected.map((r) => ({ i: old[r.i], code: r.code })),
    };
    if (young.length > 0) {
      const l = await p.ingest.ingest({ ...req, events: young.map((i) => req.events[i]) });
      result.accepted += l.accepted;
      result.duplicates += l.duplicates;
      result.rejected.push(...l.rejected.map((r) => ({ i: young[r.i], code: r.code })));
      result.rejected.sort((a, z) => a.i - z.i);
    }
    await this.#planner.arm();
    return { ...result, shards: p.scaling.shards };
  }

  /**
   * Starts rebuilding the stream's minute and dimension history over [from, to) from the archive
   * (replay.ts). Null when a replay is already running (its status is returned instead, with `running: true`).
   */
  async startReplay(
    tenant: string,
    stream: string,
    from: number,
    to: number,
  ): Promise<{ started: boolean; replay: ReplayStatus }> {
    const p = this.parts;
    if (p.replay.running()) return { started: false, replay: p.replay.status() as ReplayStatus };
    p.ingest.ensureMeta(tenant, stream);
    const seq = p.sql.exec<{ n: number }>("SELECT coalesce(max(seq), 0) AS n FROM archive_log").one().n;
    const lastSegmentSeq = p.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'archive_seq'").toArray()[0];
    const mark = Math.max(seq, lastSegmentSeq ? Number(lastSegmentSeq.v) : 0);
    const backfillMark = p.outbox.byPrefix("backfill", "").reduce((m, e) => (e.key > m ? e.key : m), "");
    const replay = p.replay.start(crypto.randomUUID(), from, to, Date.now(), mark, backfillMark);
    await this.#planner.arm();
    return { started: true, replay };
  }

  replayStatus(): ReplayStatus | null {
    return this.parts.replay.status();
  }

  #recordLoad(requests: number, shard?: number): void {
    const before = this.parts.scaling.shards;
    this.parts.scaling.record(Date.now(), requests, shard);
    if (this.parts.scaling.shards !== before) this.#armSoon();
  }

  /** Live aggregates for one window or all four, plus the stream's counters. Null if the stream never received an event. */
  snapshot(window?: WindowName): StreamSnapshot | null {
    const meta = this.parts.ingest.meta;
    if (meta === null) return null;
    const now = Date.now();
    const names = window ? [window] : WINDOW_NAMES;
    return {
      stream: meta.stream,
      now: isoTime(now),
      windows: Object.fromEntries(names.map((w) => [w, this.parts.store.windows.aggregates(w, now)])),
      counters: meta.counters,
      first_event_at: isoOrNull(meta.firstEventAt),
      last_event_at: isoOrNull(meta.lastEventAt),
      history: this.parts.history.status(now),
      scaling: this.parts.scaling.status(now),
      archive: this.parts.archive.status(),
      funnels: this.funnelStatus(),
    };
  }

  /** How far history lags: minutes waiting for PostgreSQL, and the last flush's outcome. */
  flushStatus(): FlushStatus {
    return this.parts.history.status();
  }

  /** The minutes this actor holds that history does not have in full yet (the seam of the history API). */
  pendingRows(fromMs: number, toMs: number): MinutePeriod[] {
    return this.parts.history.pendingRows(fromMs, toMs);
  }

  /**
   * Stream minutes over [fromMs, toMs) the query engine needs from this actor: with history on, those
   * PostgreSQL does not have in full yet (the seam); with history off, every minute held (their distinct
   * users are unknown: no per-minute registers are kept without history).
   */
  streamRows(fromMs: number, toMs: number): MinutePeriod[] {
    const p = this.parts;
    if (p.history.enabled) return p.history.pendingRows(fromMs, toMs);
    return p.store.windows
      .minutesHeld()
      .filter((m) => m * 60_000 >= fromMs && m * 60_000 < toMs)
      .map((m) => ({ bucket: m * 60_000, aggregate: p.store.windows.minute(m), hll: new Uint8Array(0) }));
  }

  /** Dimension rows over [fromMs, toMs) the query engine needs from this actor (see Dims.rows). */
  dimRows(fromMs: number, toMs: number, dims: string[], values?: string[]): DimRow[] {
    return this.parts.dims.rows(fromMs, toMs, dims, values);
  }

  /**
   * GET /v1/metrics: every breakdown's groups over a live window, minute-aligned as the query engine's
   * `{"window"}` range (the window's whole minutes before the current one, and the current one so far).
   */
  breakdownFigures(window: WindowName): BreakdownFigures[] {
    const now = Date.now();
    const current = Math.floor(now / 60_000);
    const first = current - WINDOWS[window] / 60;
    return this.parts.dims.breakdownFigures(first, current, (now - first * 60_000) / 1000);
  }

  /** The stream's dimensions: keys seen and declared sets. */
  dimensions(): Array<{ name: string; keys: string[]; values: number }> {
    const d = this.parts.dims;
    return d.dimensions().map((x) => ({ name: x.name, keys: x.keys, values: d.state.dicts.get(x.id)?.size ?? 0 }));
  }

  /** The stream's configuration: its declared dimension sets and scaling settings. */
  streamConfig(): { dimension_sets: string[][]; scaling: StreamScaling } {
    return { dimension_sets: this.parts.dims.sets(), scaling: this.parts.scaling.settings() };
  }

  /** Declares the stream's dimension sets (validated by the Worker); they apply to events accepted from now on. */
  async setConfig(
    tenant: string,
    stream: string,
    config: { dimension_sets?: string[][]; scaling?: StreamScaling },
  ): Promise<{ dimension_sets: string[][]; scaling: ScalingStatus; applies_from: number }> {
    const p = this.parts;
    const meta = p.ingest.ensureMeta(tenant, stream);
    const now = Date.now();
    let scaling: ScalingStatus = p.scaling.status(now);
    p.storage.transactionSync(() => {
      if (config.dimension_sets) p.dims.declareSets(config.dimension_sets);
      if (config.scaling) scaling = p.scaling.configure(config.scaling, now);
      p.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('meta', ?)", JSON.stringify(meta));
    });
    // The hub's record carries the declared sets (GET /v1/metrics breaks the stream down by them).
    p.live.hubSoon(now);
    await this.#planner.arm();
    return { dimension_sets: p.dims.sets(), scaling, applies_from: now };
  }

  /**
   * Sets the funnel steps this stream's events feed (the funnels API computes them), from now on; taps of a
   * version older than the one held are ignored.
   */
  async setFunnelTaps(tenant: string, stream: string, taps: Tap[], version: number): Promise<void> {
    const p = this.parts;
    const meta = p.ingest.ensureMeta(tenant, stream);
    p.storage.transactionSync(() => {
      p.funnels.setTaps(taps, version);
      p.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('meta', ?)", JSON.stringify(meta));
    });
  }

  /** Step-event batches still owed to funnel shards, and batches let go past the bound. */
  funnelStatus(): { pending: number; dropped: number; taps: number } {
    return { ...this.parts.funnels.status(), taps: this.parts.funnels.taps().length };
  }

  /** Adds or replaces an alert rule (the Worker has validated it); evaluates it at once. */
  async setRule(rule: AlertRule, tenant: string): Promise<RuleStatus> {
    this.parts.ingest.ensureMeta(tenant, rule.stream);
    const status = this.parts.alerts.setRule(rule, Date.now());
    await this.#planner.arm();
    return status;
  }

  getRule(id: string): RuleStatus | null {
    return this.parts.alerts.getRule(id);
  }

  /** Removes a rule; a firing alert is resolved (and notified) first. */
  async deleteRule(id: string): Promise<boolean> {
    const deleted = this.parts.alerts.deleteRule(id, Date.now());
    await this.#planner.arm();
    return deleted;
  }

  ruleStatuses(): RuleStatus[] {
    return this.parts.alerts.statuses();
  }

  /** Recent alert transitions, newest first, each with its webhook deliveries. */
  alertEvents(limit = 100): Array<AlertEvent & { deliveries: DeliveryInfo[] }> {
    return this.parts.alerts
      .events(limit)
      .map((e) => ({ ...e, deliveries: this.parts.history.deliveries(e.id) as DeliveryInfo[] }));
  }

  stats(): ActorStats {
    const p = this.parts;
    return {
      storage_bytes: p.sql.databaseSize,
      minutes: p.store.windows.minuteCount,
      open_minutes: p.store.windows.openMinuteCount,
      registers: p.store.windows.hll.size,
      dedup_ids: p.ingest.dedupCount,
      outbox_pending:
        p.outbox.pendingCount("minute") + p.outbox.pendingCount("alert") + p.outbox.pendingCount("webhook"),
      db_connections_opened: p.history.connectionsOpened,
      ...p.dims.stats(),
    };
  }

  /** A dashboard's socket for this stream (the Worker has checked the key). Hibernates between messages. */
  override async fetch(request: Request): Promise<Response> {
    const res = this.parts.live.accept(request);
    await this.#planner.arm();
    return res;
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    this.parts.live.message(ws, message);
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    this.parts.live.close(ws, code);
  }

  /** The one alarm: every part that is due runs (see planner.ts). */
  override async alarm(): Promise<void> {
    await this.#planner.fire();
  }
}
