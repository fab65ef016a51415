/**
 * TenantHub: one per tenant. Keeps each stream's latest record (overview
 * entry, every window, counters, alerts firing), sent by the stream's actor
 * at most once a second while anything changes (window decay included), and
 *   - pushes the overview to sockets (hibernating): the whole directory on
 *     connect, then the entries that changed, coalesced over BROADCAST_MS;
 *   - serves GET /v1/streams from the records, without waking any actor;
 *   - keeps the tenant's firing set: each record replaces its stream's part
 *     of it, so a lost message cannot leave a banner up.
 *
 * A socket opened with a stream-prefix-limited credential (core/keys.ts
 * streamAllowed) holds its prefixes in its attachment and is sent only the
 * entries and alerts of the streams they allow; GET /v1/streams filters the
 * same way.
 *
 * Writes are batched: records are persisted together every PERSIST_MS (an
 * evicted hub loses at most those seconds, which the actors resend).
 * Bounds: one record per stream (≤ MAX_STREAMS_PER_TENANT), one firing entry per rule.
 */
import { DurableObject } from "cloudflare:workers";
import { CodedError } from "../core/errors";
import { streamAllowed } from "../core/keys";
import {
  type AlertEvent,
  type DirectoryEntry,
  HEARTBEAT,
  QUERY_PUSH_MS,
  type ServerMessage,
  type StreamRecord,
} from "../core/live";
import { parseQuery } from "../core/query";
import { isoOrNull } from "../core/time";
import type { Aggregates, WindowName } from "../core/window";
import { STREAM_PREFIXES_HEADER } from "../workers/lib/sockets";
import { executeQuery } from "../workers/query/execute";
import { type Wakeable, WakePlanner } from "./planner";
import { acceptSocket, answerClientMessage, closeSocket, send } from "./sockets";

const BROADCAST_MS = 250;
const PERSIST_MS = 3000;
const TAG = "overview";
/** Sockets of live queries (GET /v1/query/live): each holds its query in its attachment. */
const QUERY_TAG = "query";
/** Live queries per tenant hub at once (each is re-run every second). */
const MAX_LIVE_QUERIES = 50;

/** An overview socket's attachment: the stream prefixes its credential is limited to (null: every stream). */
interface OverviewSocket {
  streamPrefixes: string[] | null;
}

/** The overview socket's prefixes; sockets accepted by earlier releases have no attachment (every stream). */
const prefixesOf = (ws: WebSocket): string[] | null =>
  (ws.deserializeAttachment() as OverviewSocket | null)?.streamPrefixes ?? null;

/**
 * Sends each overview socket the message built for its prefixes: built once per distinct set of prefixes,
 * never carrying a stream the socket's credential may not see.
 */
function sendFiltered(sockets: WebSocket[], build: (allowed: (name: string) => boolean) => ServerMessage | null): void {
  const texts = new Map<string, string | null>();
  for (const ws of sockets) {
    const streamPrefixes = prefixesOf(ws);
    const key = JSON.stringify(streamPrefixes);
    let text = texts.get(key);
    if (text === undefined) {
      const m = build((name) => streamAllowed({ streamPrefixes }, name));
      text = m === null ? null : JSON.stringify(m);
      texts.set(key, text);
    }
    if (text !== null) send(ws, text);
  }
}

interface LiveQuery {
  tenant: string;
  body: unknown;
  /** The last answer sent (its JSON without the time), so an unchanged answer is not sent again. */
  last: string | null;
}

/** A stream as GET /v1/streams lists it. */
export type StreamListing =
  | ({ name: string } & Aggregates & {
        counters: StreamRecord["counters"];
        first_event_at: string | null;
        last_event_at: string | null;
      })
  | { name: string; available: false };

export class TenantHub extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  #records = new Map<string, StreamRecord | { entry: DirectoryEntry; windows: null }>();
  #firing = new Map<string, AlertEvent>();
  #changed = new Set<string>();
  #unsaved = new Set<string>();
  #firingChanged = false;
  #broadcastAt: number | null = null;
  #persistAt: number | null = null;
  #queriesRunAt = 0;
  readonly #planner: WakePlanner;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(HEARTBEAT.request, HEARTBEAT.response));
    this.#planner = new WakePlanner(ctx.storage);
    const broadcast: Wakeable = {
      name: "broadcast",
      nextWake: () => this.#broadcastAt,
      wake: () => this.#broadcast(),
    };
    const persist: Wakeable = { name: "persist", nextWake: () => this.#persistAt, wake: () => this.#persist() };
    const queries: Wakeable = {
      name: "queries",
      nextWake: () => (this.ctx.getWebSockets(QUERY_TAG).length ? this.#queriesRunAt + QUERY_PUSH_MS : null),
      wake: () => this.#runQueries(),
    };
    this.#planner.add(broadcast);
    this.#planner.add(persist);
    this.#planner.add(queries);
    ctx.blockConcurrencyWhile(async () => {
      this.#sql.exec("CREATE TABLE IF NOT EXISTS directory (name TEXT PRIMARY KEY, entry TEXT NOT NULL)");
      this.#sql.exec("CREATE TABLE IF NOT EXISTS firing (rule_id TEXT PRIMARY KEY, event TEXT NOT NULL)");
      for (const row of this.#sql.exec<{ name: string; entry: string }>("SELECT name, entry FROM directory")) {
        const v = JSON.parse(row.entry) as StreamRecord | DirectoryEntry;
        // Entries written by earlier releases hold the overview only; the stream's next update replaces them.
        this.#records.set(row.name, "entry" in v ? v : { entry: v, windows: null });
      }
      for (const row of this.#sql.exec<{ rule_id: string; event: string }>("SELECT rule_id, event FROM firing")) {
        this.#firing.set(row.rule_id, JSON.parse(row.event) as AlertEvent);
      }
      this.#planner.init(await ctx.storage.getAlarm());
    });
  }

  /** A stream's actor reports its latest record. */
  async update(record: StreamRecord): Promise<void> {
    const name = record.entry.name;
    const prev = this.#records.get(name);
    if (prev && prev.entry.at > record.entry.at) return; // an older update overtaken by a newer one
    this.#records.set(name, record);
    this.#reconcileFiring(name, record.firing);
    const now = Date.now();
    this.#unsaved.add(name);
    this.#persistAt ??= now + PERSIST_MS;
    if (this.ctx.getWebSockets(TAG).length > 0) {
      this.#changed.add(name);
      this.#broadcastAt ??= now + BROADCAST_MS;
    }
    await this.#planner.arm();
  }

  /** The stream's part of the firing set becomes exactly what its actor says is firing. */
  #reconcileFiring(stream: string, firing: AlertEvent[]): void {
    const keep = new Set(firing.map((e) => e.rule_id));
    for (const [id, e] of this.#firing) {
      if (e.stream === stream && !keep.has(id)) {
        this.#firing.delete(id);
        this.#sql.exec("DELETE FROM firing WHERE rule_id = ?", id);
        this.#firingChanged = true;
      }
    }
    for (const e of firing) {
      const had = this.#firing.get(e.rule_id);
      if (had && had.id === e.id) continue;
      this.#firing.set(e.rule_id, e);
      this.#sql.exec("INSERT OR REPLACE INTO firing (rule_id, event) VALUES (?, ?)", e.rule_id, JSON.stringify(e));
      this.#firingChanged = true;
    }
    if (this.#firingChanged) {
      this.#firingChanged = false;
      sendFiltered(this.ctx.getWebSockets(TAG), (allowed) => this.#alertsMessage(allowed));
    }
  }

  #persist(): void {
    this.#persistAt = null;
    const names = [...this.#unsaved];
    this.#unsaved.clear();
    this.ctx.storage.transactionSync(() => {
      for (const n of names) {
        const r = this.#records.get(n);
        if (r) this.#sql.exec("INSERT OR REPLACE INTO directory (name, entry) VALUES (?, ?)", n, JSON.stringify(r));
      }
    });
  }

  #broadcast(): void {
    this.#broadcastAt = null;
    const streams = [...this.#changed].flatMap((n) => this.#records.get(n)?.entry ?? []);
    this.#changed.clear();
    if (streams.length === 0) return;
    const at = Date.now();
    sendFiltered(this.ctx.getWebSockets(TAG), (allowed) => {
      const visible = streams.filter((e) => allowed(e.name));
      return visible.length === 0 ? null : { type: "streams", at, streams: visible };
    });
  }

  override async alarm(): Promise<void> {
    await this.#planner.fire();
  }

  firingAlerts(): AlertEvent[] {
    return [...this.#firing.values()].sort((a, b) => a.rule_id.localeCompare(b.rule_id));
  }

  #alertsMessage(allowed: (name: string) => boolean = () => true): ServerMessage {
    return { type: "alerts", at: Date.now(), firing: this.firingAlerts().filter((a) => allowed(a.stream)) };
  }

  directory(allowed: (name: string) => boolean = () => true): DirectoryEntry[] {
    return [...this.#records.values()]
      .map((r) => r.entry)
      .filter((e) => allowed(e.name))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Every stream's record (≤ MAX_STREAMS_PER_TENANT), name order, for GET /v1/metrics; no actor is woken. */
  records(): StreamRecord[] {
    const out: StreamRecord[] = [];
    for (const [, r] of [...this.#records].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (r.windows !== null) out.push(r as StreamRecord);
    }
    return out;
  }

  /**
   * A page of the tenant's streams in name order after `cursor`, with one window's figures each; only
   * the streams `streamPrefixes` allow (null: all).
   */
  streams(
    window: WindowName,
    limit: number,
    cursor = "",
    streamPrefixes: string[] | null = null,
  ): { streams: StreamListing[]; next_cursor: string | null } {
    const names = [...this.#records.keys()].filter((n) => n > cursor && streamAllowed({ streamPrefixes }, n)).sort();
    const page = names.slice(0, limit);
    const streams = page.map((name): StreamListing => {
      const r = this.#records.get(name) as StreamRecord | { windows: null };
      if (r.windows === null) return { name, available: false };
      const rec = r as StreamRecord;
      return {
        name,
        ...rec.windows[window],
        counters: rec.counters,
        first_event_at: isoOrNull(rec.first_event_at),
        last_event_at: isoOrNull(rec.last_event_at),
      };
    });
    return { streams, next_cursor: names.length > limit ? page[page.length - 1] : null };
  }

  override async fetch(request: Request): Promise<Response> {
    const query = request.headers.get("x-edgepulse-query");
    if (query !== null) {
      if (this.ctx.getWebSockets(QUERY_TAG).length >= MAX_LIVE_QUERIES) {
        return Response.json(
          { error: { code: "rate_limited", message: `At most ${MAX_LIVE_QUERIES} live queries per tenant at once.` } },
          { status: 429 },
        );
      }
      const live: LiveQuery = {
        tenant: request.headers.get("x-edgepulse-tenant") ?? "",
        body: JSON.parse(query) as unknown,
        last: null,
      };
      const res = acceptSocket(this.ctx, request, QUERY_TAG, () => [], live);
      // The first answer at once, then at most once a second while it changes.
      this.#queriesRunAt = 0;
      await this.#planner.arm();
      return res;
    }
    const limited = request.headers.get(STREAM_PREFIXES_HEADER);
    const streamPrefixes = limited === null ? null : (JSON.parse(limited) as string[]);
    const allowed = (name: string) => streamAllowed({ streamPrefixes }, name);
    return acceptSocket(
      this.ctx,
      request,
      TAG,
      () => [{ type: "directory", at: Date.now(), streams: this.directory(allowed) }, this.#alertsMessage(allowed)],
      { streamPrefixes } satisfies OverviewSocket,
    );
  }

  /** Re-runs each distinct live query once and sends its answer to the sockets whose last answer differs. */
  async #runQueries(): Promise<void> {
    this.#queriesRunAt = Date.now();
    const byQuery = new Map<string, Array<{ ws: WebSocket; q: LiveQuery }>>();
    for (const ws of this.ctx.getWebSockets(QUERY_TAG)) {
      const q = ws.deserializeAttachment() as LiveQuery | null;
      if (!q) continue;
      const key = JSON.stringify([q.tenant, q.body]);
      const list = byQuery.get(key) ?? [];
      list.push({ ws, q });
      byQuery.set(key, list);
    }
    for (const list of byQuery.values()) {
      const { tenant, body } = list[0].q;
      let text: string;
      let key: string;
      try {
        const now = Date.now();
        const result = await executeQuery(this.env, tenant, parseQuery(body, now));
        const { span: _span, ...stable } = result.meta;
        key = JSON.stringify([result.columns, result.rows, stable]);
        text = JSON.stringify({ type: "result", at: now, ...result } satisfies ServerMessage);
      } catch (err) {
        const code = err instanceof CodedError ? err.code : "internal_error";
        const message = err instanceof CodedError ? err.message : "The query could not be run; it is retried.";
        text = JSON.stringify({ type: "error", code, message } satisfies ServerMessage);
        key = text;
      }
      for (const { ws, q } of list) {
        if (q.last === key) continue;
        send(ws, text);
        try {
          ws.serializeAttachment({ ...q, last: key });
        } catch {
          // the socket is closing
        }
      }
    }
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    answerClientMessage(ws, message);
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    closeSocket(ws, code);
  }
}
