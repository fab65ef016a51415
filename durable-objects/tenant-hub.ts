/**
 * TenantHub: one per tenant. Keeps the tenant's stream directory with each
 * stream's latest figures (each MetricActor updates it at most once a
 * second, so many busy streams cannot swamp it) and pushes it to overview
 * sockets (hibernating). A new socket gets the whole directory, then only
 * the entries that changed, coalesced.
 */
import { DurableObject } from "cloudflare:workers";
import { type AlertEvent, type DirectoryEntry, HEARTBEAT, type ServerMessage } from "../core/live";
import { acceptSocket, answerClientMessage, closeSocket, send } from "./sockets";

const BROADCAST_MS = 250;
const PERSIST_MS = 3000;
const TAG = "overview";

export class TenantHub extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  #entries = new Map<string, DirectoryEntry>();
  #changed = new Set<string>();
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** Entries changed since they were last written to storage (written together by the alarm). */
  #unsaved = new Set<string>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(HEARTBEAT.request, HEARTBEAT.response));
    ctx.blockConcurrencyWhile(async () => {
      this.#sql.exec("CREATE TABLE IF NOT EXISTS directory (name TEXT PRIMARY KEY, entry TEXT NOT NULL)");
      this.#sql.exec("CREATE TABLE IF NOT EXISTS firing (rule_id TEXT PRIMARY KEY, event TEXT NOT NULL)");
      for (const row of this.#sql.exec<{ name: string; entry: string }>("SELECT name, entry FROM directory")) {
        this.#entries.set(row.name, JSON.parse(row.entry) as DirectoryEntry);
      }
    });
  }

  /** Called by a stream's actor with its latest figures. */
  update(entry: DirectoryEntry): void {
    const prev = this.#entries.get(entry.name);
    if (prev && prev.at > entry.at) return; // an older update overtaken by a newer one
    this.#entries.set(entry.name, entry);
    // Thousands of streams update the hub every second: persist them in one write every few seconds,
    // not one commit per update. Losing a few seconds of the overview on eviction is harmless: actors resend.
    if (this.#unsaved.size === 0) void this.ctx.storage.setAlarm(Date.now() + PERSIST_MS);
    this.#unsaved.add(entry.name);
    this.#changed.add(entry.name);
    if (this.#timer === null && this.ctx.getWebSockets(TAG).length > 0) {
      this.#timer = setTimeout(() => this.#broadcast(), BROADCAST_MS);
    }
  }

  override async alarm(): Promise<void> {
    const names = [...this.#unsaved];
    this.#unsaved.clear();
    this.ctx.storage.transactionSync(() => {
      for (const n of names) {
        const e = this.#entries.get(n);
        if (e) this.#sql.exec("INSERT OR REPLACE INTO directory (name, entry) VALUES (?, ?)", n, JSON.stringify(e));
      }
    });
  }

  /** An alert fired or resolved in one of the tenant's streams: keep the firing set and push it. */
  alertEvent(event: AlertEvent): void {
    if (event.kind === "firing") {
      this.#sql.exec(
        "INSERT OR REPLACE INTO firing (rule_id, event) VALUES (?, ?)",
        event.rule_id,
        JSON.stringify(event),
      );
    } else if (event.kind === "resolved") {
      this.#sql.exec("DELETE FROM firing WHERE rule_id = ?", event.rule_id);
    } else {
      return;
    }
    const text = JSON.stringify(this.#alertsMessage());
    for (const ws of this.ctx.getWebSockets(TAG)) send(ws, text);
  }

  firingAlerts(): AlertEvent[] {
    return this.#sql
      .exec<{ event: string }>("SELECT event FROM firing ORDER BY rule_id")
      .toArray()
      .map((r) => JSON.parse(r.event) as AlertEvent);
  }

  #alertsMessage(): ServerMessage {
    return { type: "alerts", at: Date.now(), firing: this.firingAlerts() };
  }

  directory(): DirectoryEntry[] {
    return [...this.#entries.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  override async fetch(request: Request): Promise<Response> {
    return acceptSocket(this.ctx, request, TAG, () => [
      { type: "directory", at: Date.now(), streams: this.directory() },
      this.#alertsMessage(),
    ]);
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    answerClientMessage(ws, message);
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    closeSocket(ws, code);
  }

  #broadcast(): void {
    this.#timer = null;
    const streams = [...this.#changed].flatMap((n) => this.#entries.get(n) ?? []);
    this.#changed.clear();
    if (streams.length === 0) return;
    const text = JSON.stringify({ type: "streams", at: Date.now(), streams } satisfies ServerMessage);
    for (const ws of this.ctx.getWebSockets(TAG)) send(ws, text);
  }
}
