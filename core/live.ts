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
import type { StreamCounters } from "./protocol.ts";
import { type Aggregates, type SeriesPoint, WINDOW_NAMES, type WindowName } from "./window.ts";

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
  /**
   * Events per minute over the last SPARK_MINUTES minutes, oldest first, ending with the minute of `at`.
   * Optional: records written by earlier releases have none.
   */
  spark?: number[];
}

/** Minutes in an overview entry's sparkline; a parsed message may hold at most MAX_SPARK_POINTS. */
export const SPARK_MINUTES = 30;
export const MAX_SPARK_POINTS = 60;

/**
 * What a stream's actor tells its tenant's hub (≤ 1/s while anything changes, decay included):
 * the overview entry, every window (the hub serves GET /v1/streams from these), counters, and the
 * alerts firing now (the hub's firing set for the stream is replaced by this list, so it reconciles).
 */
export interface StreamRecord {
  entry: DirectoryEntry;
  windows: Record<WindowName, Aggregates>;
  counters: StreamCounters;
  first_event_at: number | null;
  last_event_at: number | null;
  firing: AlertEvent[];
  /**
   * What GET /v1/metrics breaks the stream down by: each dimension key seen (≤ MAX_DIM_KEYS) and each
   * declared set (≤ 3), as key lists. Absent in records of earlier releases.
   */
  breakdowns?: string[][];
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

/** A live query's answer (GET /v1/query/live), sent when it changes, at most once per QUERY_PUSH_MS. */
export interface QueryResultMessage {
  type: "result";
  at: number;
  columns: string[];
  rows: Array<Array<string | number | boolean | null>>;
  meta: Record<string, unknown>;
}

/** Live queries are re-run at most this often. */
export const QUERY_PUSH_MS = 1000;

export type ServerMessage =
  | StreamSnapshotMessage
  | StreamUpdateMessage
  | DirectoryMessage
  | StreamsMessage
  | AlertMessage
  | AlertsMessage
  | QueryResultMessage
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

const NULLABLE_FIGURES = ["sum", "min", "max", "mean", "p50", "p90", "p95", "p99"] as const;

function isAggregates(v: unknown): boolean {
  return (
    isObj(v) &&
    isNum(v.count) &&
    isNum(v.rate) &&
    isNum(v.value_count) &&
    isNum(v.distinct_users) &&
    NULLABLE_FIGURES.every((k) => isNumOrNull(v[k]))
  );
}

function isWindows(v: unknown): boolean {
  return isObj(v) && WINDOW_NAMES.every((w) => isAggregates(v[w]));
}

const isOptNum = (v: unknown) => v === undefined || isNum(v);

function isCounters(v: unknown): boolean {
  return (
    isObj(v) &&
    isNum(v.accepted) &&
    isNum(v.duplicates) &&
    isNum(v.late) &&
    isNum(v.future) &&
    isObj(v.rejected) &&
    Object.values(v.rejected).every(isNum) &&
    isOptNum(v.dims_overflow) &&
    isOptNum(v.dim_keys_overflow)
  );
}

const isCell = (v: unknown) => v === null || typeof v === "string" || typeof v === "boolean" || isNum(v);

const isSpark = (v: unknown) => v === undefined || (Array.isArray(v) && v.length <= MAX_SPARK_POINTS && v.every(isNum));

function isEntry(v: unknown): v is DirectoryEntry {
  return (
    isObj(v) &&
    typeof v.name === "string" &&
    isNum(v.at) &&
    isNum(v.count) &&
    isNum(v.rate) &&
    isNumOrNull(v.mean) &&
    isNumOrNull(v.p95) &&
    isNum(v.distinct_users) &&
    isNum(v.rejected) &&
    isNum(v.late) &&
    isNum(v.duplicates) &&
    isSpark(v.spark)
  );
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
    isObj(v.labels) &&
    Object.values(v.labels).every((l) => typeof l === "string")
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
        isCounters(m.counters) &&
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
    case "result":
      return isNum(m.at) &&
        Array.isArray(m.columns) &&
        m.columns.every((c) => typeof c === "string") &&
        Array.isArray(m.rows) &&
        m.rows.every((r) => Array.isArray(r) && r.every(isCell)) &&
        isObj(m.meta)
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

export function directoryEntry(
  name: string,
  at: number,
  w: Aggregates,
  c: StreamCounters,
  spark?: number[],
): DirectoryEntry {
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
    ...(spark ? { spark } : {}),
  };
}

/** Reads the API key from the WebSocket subprotocols header (`edgepulse.v1, bearer.<key>`). */
export function keyFromProtocols(header: string | null): string | undefined {
  if (!header) return undefined;
  const parts = header.split(",").map((s) => s.trim());
  if (!parts.includes(LIVE_PROTOCOL)) return undefined;
  const k = parts.find((p) => p.startsWith(KEY_PROTOCOL_PREFIX))?.slice(KEY_PROTOCOL_PREFIX.length);
  return k ? k : undefined;
}
