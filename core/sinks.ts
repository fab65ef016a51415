/**
 * Sinks (/v1/sinks), the runtime-free part: the create body, the record a Kafka sink produces, the
 * parsing of the REST Proxy's delivery reports, and every bound a sink keeps.
 *
 * A Kafka sink produces every event its tenant's streams accept (or only those of streams under its
 * `streams` prefixes) to one topic, through a Kafka REST Proxy's v3 produce API
 * (`POST /v3/clusters/{cluster_id}/topics/{topic}/records`, Confluent's kafka-rest; Redpanda and Karapace
 * serve it too). It reads from the raw archive (core/archive.ts): each segment a stream's actor writes is
 * queued in the sink's actor, read back from R2 and produced in order. So the ingest path never waits for
 * Kafka, a Kafka outage costs nothing but the sink's lag, and what reaches Kafka is exactly what the archive
 * holds: each acknowledged event, once per segment (see durable-objects/sink-actor.ts for the one case a
 * record is produced twice).
 */
import { z } from "zod";
import { StreamPrefixes } from "./schemas.ts";
import { Auth, retrySettings, type SourceErrorCode, type SourceState, TOPIC, url } from "./sources.ts";

/** Sinks per tenant (each is one Durable Object; every archive write of a matching stream notifies each). */
export const MAX_SINKS_PER_TENANT = 10;
/**
 * Segments a sink keeps queued (keys only, ~150 bytes each). A sink that falls this far behind (Kafka down
 * for long) lets the oldest go, counted in `segments_skipped` and named in its last error: the events are
 * still in the archive (GET /v1/archive/export). Ingest never waits for a sink.
 */
export const SINK_MAX_QUEUED_SEGMENTS = 10_000;
/** Segment keys remembered as produced, so a segment the archive writes again (after a crash) is not produced twice. */
export const SINK_DONE_MAX = 10_000;
/** Records per produce request (one request's body: at most ~500 × 1 KiB). */
export const SINK_RECORDS_PER_REQUEST = 500;
/** Largest answer (the delivery reports) read from the proxy. */
export const SINK_MAX_RESPONSE_BYTES = 1024 * 1024;
/** How long an actor trusts its copy of the tenant's sink list before asking the registry again. */
export const SINK_LIST_TTL_MS = 30_000;

export const KafkaSink = z
  .strictObject({
    kind: z.literal("kafka"),
    name: z.string().trim().min(1).max(128).describe("A label for the sink."),
    url: url.describe("The Kafka REST Proxy (v3 API), e.g. https://rest-proxy:8082."),
    cluster_id: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, "a cluster id")
      .optional()
      .describe("The cluster to produce to. Default: the first of GET /v3/clusters."),
    topic: z.string().regex(TOPIC, "a topic name").describe("The topic every event goes to."),
    streams: StreamPrefixes.optional().describe(
      "Only streams whose names start with one of these (≤ 10). Omitted: every stream of the tenant.",
    ),
    key: z
      .enum(["stream", "id", "user"])
      .default("stream")
      .describe(
        "The record key: the stream name (a stream's events stay in order on one partition), the event id, or its user (events without one get no key).",
      ),
    auth: Auth.optional(),
    ...retrySettings("the proxy"),
  })
  .meta({ id: "SinkCreate", description: "A sink: where accepted events are produced." });
export type SinkInput = z.output<typeof KafkaSink>;
export type SinkConfig = Omit<SinkInput, "auth" | "name"> & { auth_header: string | null };

/** Splits a validated body into its label, its settings (shown) and its secret (never shown). */
export function splitSinkSecrets(input: SinkInput): { name: string; config: SinkConfig; secrets: { auth?: string } } {
  const { auth, name, ...rest } = input;
  return { name, config: { ...rest, auth_header: auth?.header ?? null }, secrets: auth ? { auth: auth.value } : {} };
}

/** What an archive write tells a sink: one segment written (core/archive.ts segmentKey). */
export interface SegmentWritten {
  key: string;
  stream: string;
  count: number;
}

/** A sink as the stream actors see it: which streams it takes. */
export interface SinkRoute {
  id: string;
  streams: string[] | null;
}

/**
 * One produce record (v3, JSON data): the archived event as the value, with its stream, and the key the
 * sink is set to. `line` is the archive's line (core/archive.ts archiveLine: name, ts, id, value, user, dims).
 */
export function produceRecord(line: Record<string, unknown>, key: SinkConfig["key"]): Record<string, unknown> {
  const k = key === "stream" ? line.name : key === "id" ? line.id : line.user;
  const record: Record<string, unknown> = { value: { type: "JSON", data: line } };
  if (k !== undefined && k !== null) record.key = { type: "STRING", data: String(k) };
  return record;
}

/**
 * The delivery reports of one produce request (several records concatenated in one body: one JSON report
 * per record, in order, each with `error_code` 200 when written). Returns how many records, from the first,
 * were written, and the first failure's code and message.
 */
export function deliveryReports(
  text: string,
  expected: number,
): { written: number; failure: { error_code: number; message: string } | null } {
  let written = 0;
  for (const chunk of splitConcatenated(text)) {
    let r: { error_code?: unknown; message?: unknown };
    try {
      r = JSON.parse(chunk) as typeof r;
    } catch {
      return { written, failure: { error_code: 0, message: "a delivery report is not JSON" } };
    }
    if (r.error_code !== 200) {
      const code = typeof r.error_code === "number" ? r.error_code : 0;
      return { written, failure: { error_code: code, message: String(r.message ?? "").slice(0, 200) } };
    }
    written++;
    if (written === expected) break;
  }
  return written === expected
    ? { written, failure: null }
    : { written, failure: { error_code: 0, message: `${expected - written} records got no delivery report` } };
}

/** Splits concatenated JSON values (objects), as a streaming produce answers, without parsing them. */
export function splitConcatenated(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === "{") {
      if (depth === 0) start = i;
      depth++;
    } else if (c === "}") {
      depth--;
      if (depth === 0 && start >= 0) {
        out.push(text.slice(start, i + 1));
        start = -1;
      }
    }
  }
  return out;
}

export interface SinkStatus {
  /** Segments queued and not yet fully produced, and the events they hold. */
  queued_segments: number;
  queued_events: number;
  /** The oldest queued segment's age (ms): how far behind the archive the sink is; null when none. */
  lag_ms: number | null;
  /** The segment being produced and how many of its records are written. */
  current: { key: string; produced: number; count: number } | null;
  events_produced: number;
  segments_produced: number;
  /** Segments let go because the queue was full (SINK_MAX_QUEUED_SEGMENTS); they are still in the archive. */
  segments_skipped: number;
  last_error: { at: string; code: SourceErrorCode; message: string } | null;
  consecutive_failures: number;
  last_success_at: string | null;
  next_attempt_at: string | null;
}

export interface SinkView {
  id: string;
  name: string;
  kind: "kafka";
  state: SourceState;
  created_at: string;
  updated_at: string;
  config: SinkConfig;
  secrets: { auth: "set" | "unset" };
  status: SinkStatus;
}
