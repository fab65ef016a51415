/**
 * The live protocol: every message between the server (MetricActor,
 * TenantHub) and the dashboard, defined once and validated on both ends.
 *
 * Stream socket (GET /v1/streams/:name/live): a `snapshot` first (all windows,
 * counters and recent per-second / per-minute series for the charts), then an
 * `update` whenever events have been applied, coalesced over LIVE_COALESCE_MS.
 * Tenant socket (GET /v1/live): a `directory` of the tenant's streams first,
 * then `streams` messages with the entries that changed.
 * Heartbeat: the client sends the text "ping" and gets "pong" (answered
 * without waking a hibernating object).
 */
import type { StreamCounters } from "./protocol";
import type { Aggregates, SeriesPoint, WindowName } from "./window";

export type { SeriesPoint };

export const LIVE_PROTOCOL = "edgepulse.v1";
/** Sockets cannot carry an Authorization header from browsers: the key travels as a second subprotocol. */
export const KEY_PROTOCOL_PREFIX = "bearer.";
export const LIVE_COALESCE_MS = 50;
/** Each actor updates its tenant's hub at most this often. */
export const HUB_UPDATE_MS = 1000;
export const HEARTBEAT = { request: "ping", response: "pong" } as const;

export interface StreamSnapshotMessage {
  type: "snapshot";
  stream: string;
  at: number;
  windows: Record<WindowName, Aggregates>;
  counters: StreamCounters;
  /** Last 300 seconds, one point per second; last 60 minutes, one point per minute. Empty periods omitted. */
  seconds: SeriesPoint[];
  minutes: SeriesPoint[];
}

export interface StreamUpdateMessage {
  type: "update";
  stream: string;
  at: number;
  /** Events applied since the previous message. */
  applied: number;
  windows: Record<WindowName, Aggregates>;
  counters: StreamCounters;
  /** The current and previous second and minute, recomputed (late events may touch older ones: the snapshot heals). */
  seconds: SeriesPoint[];
  minutes: SeriesPoint[];
}

export interface DirectoryEntry {
  name: string;
  at: number;
  count: number;
  rate: number;
  mean: number | null;
  p95: number | null;
  distinct_users: number;
  rejected: number;
  late: number;
  duplicates: number;
}

export interface DirectoryMessage {
  type: "directory";
  at: number;
  streams: DirectoryEntry[];
}

export interface StreamsMessage {
  type: "streams";
  at: number;
  streams: DirectoryEntry[];
}

/** One alert transition, as stored, pushed and delivered. */
export interface AlertEvent {
  id: string;
  stream: string;
  rule_id: string;
  rule_name: string;
  kind: "pending" | "firing" | "resolved" | "cancelled";
  at: number;
  value: number | null;
  labels: Record<string, string>;
}

export interface AlertMessage {
  type: "alert";
  event: AlertEvent;
}

/** The tenant's currently firing alerts (sent by the hub on connect and on every change). */
export interface AlertsMessage {
  type: "alerts";
  at: number;
  firing: AlertEvent[];
}

export interface LiveErrorMessage {
  type: "error";
  code: string;
  message: string;
}

export type ServerMessage =
  | StreamSnapshotMessage
  | StreamUpdateMessage
  | DirectoryMessage
  | StreamsMessage
  | AlertMessage
  | AlertsMessage
  | LiveErrorMessage;

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isNumOrNull = (v: unknown) => v === null || isNum(v);

function isSeries(v: unknown): boolean {
  return (
    Array.isArray(v) &&
    v.every(
      (p) => isObj(p) && isNum(p.t) && isNum(p.count) && isNumOrNull(p.p50) && isNumOrNull(p.p95) && isNumOrNull(p.p99),
    )
  );
}

function isWindows(v: unknown): boolean {
  return (
    isObj(v) && ["1m", "5m", "15m", "1h"].every((w) => isObj(v[w]) && isNum((v[w] as Record<string, unknown>).count))
  );
}

function isEntry(v: unknown): v is DirectoryEntry {
  return isObj(v) && typeof v.name === "string" && isNum(v.at) && isNum(v.count) && isNum(v.rate) && isNumOrNull(v.p95);
}

function isAlertEvent(v: unknown): v is AlertEvent {
  return (
    isObj(v) &&
    typeof v.id === "string" &&
    typeof v.stream === "string" &&
    typeof v.rule_id === "string" &&
    typeof v.rule_name === "string" &&
    ["pending", "firing", "resolved", "cancelled"].includes(v.kind as string) &&
    isNum(v.at) &&
    isNumOrNull(v.value) &&
    isObj(v.labels)
  );
}

/** Parses and validates a server message; returns null for anything malformed. */
export function parseServerMessage(text: string): ServerMessage | null {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObj(m)) return null;
  switch (m.type) {
    case "snapshot":
    case "update":
      return typeof m.stream === "string" &&
        isNum(m.at) &&
        isWindows(m.windows) &&
        isObj(m.counters) &&
        isSeries(m.seconds) &&
        isSeries(m.minutes) &&
        (m.type === "snapshot" || isNum(m.applied))
        ? (m as unknown as ServerMessage)
        : null;
    case "directory":
    case "streams":
      return isNum(m.at) && Array.isArray(m.streams) && m.streams.every(isEntry)
        ? (m as unknown as ServerMessage)
        : null;
    case "alert":
      return isAlertEvent(m.event) ? (m as unknown as ServerMessage) : null;
    case "alerts":
      return isNum(m.at) && Array.isArray(m.firing) && m.firing.every(isAlertEvent)
        ? (m as unknown as ServerMessage)
        : null;
    case "error":
      return typeof m.code === "string" && typeof m.message === "string" ? (m as unknown as ServerMessage) : null;
    default:
      return null;
  }
}

/** Clients may only send the heartbeat. */
export function isClientMessage(text: unknown): boolean {
  return text === HEARTBEAT.request;
}

export function directoryEntry(name: string, at: number, w: Aggregates, c: StreamCounters): DirectoryEntry {
  const rejected = Object.values(c.rejected).reduce((a: number, n) => a + (n ?? 0), 0);
  return {
    name,
    at,
    count: w.count,
    rate: w.rate,
    mean: w.mean,
    p95: w.p95,
    distinct_users: w.distinct_users,
    rejected,
    late: c.late,
    duplicates: c.duplicates,
  };
}

/** Reads the API key from the WebSocket subprotocols header (`edgepulse.v1, bearer.<key>`). */
export function keyFromProtocols(header: string | null): string | undefined {
  if (!header) return undefined;
  const parts = header.split(",").map((s) => s.trim());
  if (!parts.includes(LIVE_PROTOCOL)) return undefined;
  const k = parts.find((p) => p.startsWith(KEY_PROTOCOL_PREFIX));
  return k ? k.slice(KEY_PROTOCOL_PREFIX.length) : undefined;
}
