/**
 * Pull sources (/v1/sources), the runtime-free part: the create body (zod,
 * one schema per kind), the small JSON-path language of mappings, mapping a
 * record to an event (checked by the event validator, core/event.ts, so a bad
 * record is a rejection with the same codes as POST /v1/events), the event
 * ids derived from a record's position, CSV parsing, backoff, and every
 * bound a source keeps (each written next to its constant). The actor
 * (durable-objects/source-actor.ts) moves records in and out of this.
 */
import { z } from "zod";
import type { EventErrorCode } from "./errors.ts";
import { isStreamName, type Validation, validateEvent } from "./event.ts";
import { murmur3 } from "./hll.ts";

// ---------------------------------------------------------------------------
// Bounds and defaults.
// ---------------------------------------------------------------------------

/** Sources per tenant (each is one Durable Object with its alarm). */
export const MAX_SOURCES_PER_TENANT = 100;
/** Records one poll takes (a source's `max_records`: default, ceiling). Also the outbox's bound: see below. */
export const DEFAULT_RECORDS_PER_POLL = 500;
export const MAX_RECORDS_PER_POLL = 1000;
/**
 * The outbox holds the events of at most one poll: a source polls only when its outbox is empty, so it
 * never holds more than `max_records` (≤ MAX_RECORDS_PER_POLL) events waiting for their streams.
 */
export const OUTBOX_MAX_EVENTS = MAX_RECORDS_PER_POLL;
/** Between polls when nothing more is waiting (a source's `interval_ms`). */
export const DEFAULT_INTERVAL_MS = 30_000;
export const MIN_INTERVAL_MS = 1000;
export const MAX_INTERVAL_MS = 86_400_000;
/** When a poll left more waiting (a full page, an unfinished object), the next one comes this soon. */
export const CATCH_UP_DELAY_MS = 50;
/** Longest a request to the source's endpoint, database or proxy may take (a source's `timeout_ms`). */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** Backoff after a failure: 1 s, doubling, capped at the source's `max_backoff_ms` (default 5 min). */
export const BACKOFF_BASE_MS = 1000;
export const DEFAULT_MAX_BACKOFF_MS = 300_000;
/** Largest HTTP page read (bytes, after decoding); a larger one is an error (`response_too_large`). */
export const HTTP_MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** PostgreSQL: rows read within `commit_grace_ms` are remembered to catch late commits (see postgres.ts). */
export const DEFAULT_COMMIT_GRACE_MS = 30_000;
export const PG_RECENT_MAX = 100_000;
/** PostgreSQL lag is counted up to this many rows (beyond: reported as this many, `lag_capped`). */
export const PG_LAG_CAP = 100_000;
/** R2: object keys remembered as ingested; past it the smallest keys are let go behind a floor (see r2.ts). */
export const R2_DONE_MAX = 10_000;
/** R2: bytes read per request from an object; a record longer than this is rejected and skipped. */
export const R2_CHUNK_BYTES = 1024 * 1024;
/** R2: listing pages (of up to 1,000 keys) one poll reads to find the next object. */
export const R2_LIST_PAGES_PER_POLL = 10;
/** Kafka: partitions whose offsets a source keeps (topics × partitions). */
export const KAFKA_MAX_PARTITIONS = 256;
/** Kafka: bytes asked for per GET …/records (`max_bytes`). */
export const KAFKA_MAX_BYTES = 1024 * 1024;

// ---------------------------------------------------------------------------
// JSON paths: `$`, then `.field`, `['field']` / `["field"]`, or `[index]` steps. No wildcards, no filters.
// ---------------------------------------------------------------------------

export type PathStep = string | number;
export const MAX_PATH_STEPS = 16;
const PATH_LENGTH = 256;
const STEP = /^(?:\.([A-Za-z0-9_-]+)|\[(\d{1,9})\]|\['((?:[^'\\]|\\.)*)'\]|\["((?:[^"\\]|\\.)*)"\])/;

/** Parses a path into its steps, or returns null if it is not one. */
export function parsePath(path: string): PathStep[] | null {
  if (typeof path !== "string" || path.length > PATH_LENGTH || !path.startsWith("$")) return null;
  const steps: PathStep[] = [];
  let rest = path.slice(1);
  while (rest.length > 0) {
    const m = STEP.exec(rest);
    if (!m || steps.length === MAX_PATH_STEPS) return null;
    if (m[1] !== undefined) steps.push(m[1]);
    else if (m[2] !== undefined) steps.push(Number(m[2]));
    else steps.push((m[3] ?? m[4]).replace(/\\(.)/g, "$1"));
    rest = rest.slice(m[0].length);
  }
  return steps;
}

export const isJsonPath = (s: string): boolean => parsePath(s) !== null;

/** The value at `steps` (own properties and array elements only), or undefined. */
export function readPath(doc: unknown, steps: readonly PathStep[]): unknown {
  let cur = doc;
  for (const s of steps) {
    if (typeof s === "number") {
      if (!Array.isArray(cur) || s >= cur.length) return undefined;
      cur = cur[s];
    } else {
      if (cur === null || typeof cur !== "object" || Array.isArray(cur) || !Object.hasOwn(cur, s)) return undefined;
      cur = (cur as Record<string, unknown>)[s];
    }
  }
  return cur;
}

// ---------------------------------------------------------------------------
// The create body.
// ---------------------------------------------------------------------------

const PATH_HELP =
  "a JSON path: $ then .field, ['field'] or [index] steps (e.g. $.data.items[0].id); no wildcards or filters";
const jsonPath = z.string().max(PATH_LENGTH).refine(isJsonPath, PATH_HELP);

export const Mapping = z
  .strictObject({
    name: z
      .string()
      .max(PATH_LENGTH)
      .refine(
        (s) => isJsonPath(s) || isStreamName(s),
        "a stream name for every record (e.g. orders.created) or a JSON path to read it from (e.g. $.type)",
      )
      .describe("The stream: a name for every record, or a JSON path (starting with $) read from each record."),
    ts: jsonPath.optional().describe("Event time: epoch ms (or s with ts_unit), ISO-8601 or a date. Default: now."),
    ts_unit: z.enum(["ms", "s"]).default("ms").describe("The unit of a numeric ts."),
    value: jsonPath.optional().describe("A number, or a string holding one."),
    user: jsonPath.optional().describe("A string or number."),
    dims: z
      .record(z.string().min(1).max(64), jsonPath)
      .refine((d) => Object.keys(d).length <= 16, "at most 16 dims")
      .optional()
      .describe('Dimension key → JSON path, e.g. {"country": "$.address.country"}; a missing value is left out.'),
  })
  // No component id: the request (ts_unit optional) and the response (ts_unit set) read differently.
  .describe("How a record becomes an event. Paths are read from each record.");
export type MappingConfig = z.output<typeof Mapping>;

/** A request's time limit and the failures' backoff: sources and sinks take the same two settings. */
export function retrySettings(peer: string) {
  return {
    timeout_ms: z
      .int()
      .min(1000)
      .max(60_000)
      .default(DEFAULT_TIMEOUT_MS)
      .describe(`Longest one request to ${peer} may take (ms).`),
    max_backoff_ms: z
      .int()
      .min(1000)
      .max(3_600_000)
      .default(DEFAULT_MAX_BACKOFF_MS)
      .describe("Longest wait between retries after failures (ms); backoff starts at 1 s and doubles."),
  };
}

const common = {
  name: z.string().trim().min(1).max(128).describe("A label for the source."),
  mapping: Mapping,
  interval_ms: z
    .int()
    .min(MIN_INTERVAL_MS)
    .max(MAX_INTERVAL_MS)
    .default(DEFAULT_INTERVAL_MS)
    .describe("Between polls when nothing more is waiting (ms)."),
  max_records: z
    .int()
    .min(1)
    .max(MAX_RECORDS_PER_POLL)
    .default(DEFAULT_RECORDS_PER_POLL)
    .describe("Records one poll takes."),
  ...retrySettings("the endpoint, database or proxy"),
};

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;
/** An auth header whose value is a secret (sources and sinks). */
export const Auth = z
  .strictObject({
    header: z.string().regex(HEADER_NAME, "an HTTP header name").describe("e.g. Authorization"),
    value: z
      .string()
      .min(1)
      .max(4096)
      .refine((v) => !/[\r\n]/.test(v), "no line breaks")
      .describe("The secret: stored only in the source's own storage, never shown again."),
  })
  .describe("A header sent with every request; its value is a secret (GET shows only whether it is set).");

/** An absolute http(s) URL (sources and sinks; https only unless the deployment allows http). */
export const url = z
  .string()
  .max(2048)
  .refine((u) => {
    try {
      const p = new URL(u).protocol;
      return p === "https:" || p === "http:";
    } catch {
      return false;
    }
  }, "an absolute http(s) URL");

export const HttpSource = z.strictObject({
  kind: z.literal("http"),
  ...common,
  url: url.describe("The JSON endpoint (https; http only where ALLOW_HTTP_WEBHOOKS=true)."),
  records: jsonPath.default("$").describe("Where the array of records is in each response (default: the body)."),
  cursor: z
    .strictObject({
      param: z.string().min(1).max(64).describe("The query parameter carrying the cursor, e.g. after."),
      next: jsonPath.describe("Where the next cursor is: in the response, or in each record (see from)."),
      from: z
        .enum(["response", "record"])
        .default("response")
        .describe("response: `next` is read from the body; record: from the last record taken."),
    })
    .optional()
    .describe("Paging. Without it the endpoint must return one list that only grows at its end."),
  auth: Auth.optional(),
});

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
const ident = z.string().regex(IDENT, "an identifier: letters, digits, _ and $, not starting with a digit");

/** The PostgreSQL kind's fields (PostgresSource adds the table-or-query rule). */
export const PostgresFields = z.strictObject({
  kind: z.literal("postgres"),
  ...common,
  connection_string: z
    .string()
    .max(2048)
    .regex(/^postgres(?:ql)?:\/\//, "a postgres:// or postgresql:// URL")
    .describe("The secret: stored only in the source's own storage, never shown again."),
  table: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_$]{0,62}(?:\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$/, "a table name, optionally schema.table")
    .optional()
    .describe("A table (or schema.table). Give table or query."),
  query: z
    .string()
    .min(1)
    .max(10_000)
    .refine((q) => !q.includes(";"), "one SELECT, no ';'")
    .optional()
    .describe("A SELECT whose rows are the records (run as a subquery, read-only). Give table or query."),
  cursor: z
    .union([ident, z.array(ident).min(1).max(2)])
    .describe('The cursor column(s), ascending and monotonic: "id", or ["updated_at", "id"].'),
  commit_grace_ms: z
    .int()
    .min(0)
    .max(600_000)
    .default(DEFAULT_COMMIT_GRACE_MS)
    .describe("How long after a row is read a row with a lower cursor may still commit and be picked up (ms)."),
});
export const PostgresSource = PostgresFields.refine(
  (s) => (s.table === undefined) !== (s.query === undefined),
  "give exactly one of table and query",
);

export const R2Source = z.strictObject({
  kind: z.literal("r2"),
  ...common,
  prefix: z
    .string()
    .max(512)
    .refine((p) => !p.startsWith("/") && !p.includes(".."), "a key prefix, no leading / and no ..")
    .describe("Objects under drops/<tenant>/<prefix> in the DROPS bucket are ingested, each once, in key order."),
  format: z
    .enum(["ndjson", "csv"])
    .optional()
    .describe("Default by extension: .csv is CSV (a header row first), anything else NDJSON."),
});

/** A Kafka topic (or consumer group) name. */
export const TOPIC = /^[A-Za-z0-9._-]{1,249}$/;
export const KafkaSource = z.strictObject({
  kind: z.literal("kafka"),
  ...common,
  url: url.describe("The Kafka REST Proxy (v2 consumer API), e.g. https://rest-proxy:8082."),
  topics: z
    .array(z.string().regex(TOPIC, "a topic name"))
    .min(1)
    .max(10)
    .describe("Topics to consume (records map from {topic, key, value, partition, offset})."),
  group: z
    .string()
    .regex(TOPIC, "a consumer group name")
    .optional()
    .describe("The consumer group. Default: edgepulse-<source id>."),
  auth: Auth.optional(),
});

/** POST /v1/sources. Each kind has its own fields; every kind has name, mapping and the polling settings. */
export const SourceCreate = z
  .discriminatedUnion("kind", [HttpSource, PostgresSource, R2Source, KafkaSource])
  .meta({ id: "SourceCreate", description: "A pull source: where to read records and how to map them to events." });
export type SourceInput = z.output<typeof SourceCreate>;
export type SourceKind = SourceInput["kind"];

/** What a source keeps that is never shown: the auth header's value, the connection string. */
export interface SourceSecrets {
  auth?: string;
  connection_string?: string;
}

/** The settings of a kind with an auth header: its name is shown (auth_header), its value never. */
type Public<T, Drop extends string> = Omit<T, Drop | "name"> & { auth_header: string | null };
export type HttpConfig = Public<z.output<typeof HttpSource>, "auth">;
export type PostgresConfig = Omit<z.output<typeof PostgresSource>, "connection_string" | "name">;
export type R2Config = Omit<z.output<typeof R2Source>, "name">;
export type KafkaConfig = Public<z.output<typeof KafkaSource>, "auth">;
/** A source's settings as stored and shown (no secret). */
export type SourceConfig = HttpConfig | PostgresConfig | R2Config | KafkaConfig;

/** Splits a validated body into its label, its settings (shown by GET) and its secrets (never shown). */
export function splitSecrets(input: SourceInput): { name: string; config: SourceConfig; secrets: SourceSecrets } {
  if (input.kind === "postgres") {
    const { connection_string, name, ...config } = input;
    return { name, config, secrets: { connection_string } };
  }
  if (input.kind === "r2") {
    const { name, ...config } = input;
    return { name, config, secrets: {} };
  }
  const { auth, name, ...rest } = input;
  return {
    name,
    config: { ...rest, auth_header: auth?.header ?? null },
    secrets: auth ? { auth: auth.value } : {},
  };
}

/** Which secrets a view reports, as set or unset (never their values). */
export function secretsView(kind: SourceKind, secrets: SourceSecrets): SourceView["secrets"] {
  if (kind === "postgres") return { connection_string: secrets.connection_string ? "set" : "unset" };
  if (kind === "r2") return {};
  return { auth: secrets.auth ? "set" : "unset" };
}

/** The URLs a source calls (checked against the deployment's https-only rule). */
export function sourceUrls(input: SourceInput): string[] {
  return input.kind === "http" || input.kind === "kafka" ? [input.url] : [];
}

// ---------------------------------------------------------------------------
// Records → events.
// ---------------------------------------------------------------------------

/** A mapping with its paths parsed once. */
export interface CompiledMapping {
  name: { stream: string } | { path: PathStep[] };
  ts?: PathStep[];
  tsUnit: "ms" | "s";
  value?: PathStep[];
  user?: PathStep[];
  dims: Array<[string, PathStep[]]>;
}

const mustPath = (p: string): PathStep[] => {
  const steps = parsePath(p);
  if (steps === null) throw new Error(`not a JSON path: ${p}`);
  return steps;
};

export function compileMapping(m: MappingConfig): CompiledMapping {
  return {
    name: m.name.startsWith("$") ? { path: mustPath(m.name) } : { stream: m.name },
    ts: m.ts === undefined ? undefined : mustPath(m.ts),
    tsUnit: m.ts_unit ?? "ms",
    value: m.value === undefined ? undefined : mustPath(m.value),
    user: m.user === undefined ? undefined : mustPath(m.user),
    dims: Object.entries(m.dims ?? {}).map(([k, p]) => [k, mustPath(p)]),
  };
}

const NUMERIC = /^\s*-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$/;
const isDate = (v: unknown): v is Date => v instanceof Date || Object.prototype.toString.call(v) === "[object Date]";
const absent = (v: unknown) => v === undefined || v === null;

/** A value, with the coercions documented in the README: numbers in strings, dates, numbers as ids. */
const coerce = {
  ts(v: unknown, unit: "ms" | "s"): unknown {
    if (isDate(v)) return v.getTime();
    const n = typeof v === "string" && NUMERIC.test(v) ? Number(v) : v;
    return typeof n === "number" && unit === "s" ? Math.round(n * 1000) : n;
  },
  value: (v: unknown): unknown => (typeof v === "string" && NUMERIC.test(v) ? Number(v) : v),
  text: (v: unknown): unknown =>
    typeof v === "number" || typeof v === "bigint" || typeof v === "boolean" ? String(v) : v,
};

/**
 * Maps one record to an event with the given id and validates it with the event validator (the same codes
 * and messages as POST /v1/events). `now` is the default event time.
 */
export function mapRecord(record: unknown, m: CompiledMapping, id: string, now: number): Validation {
  const raw: Record<string, unknown> = { id };
  raw.name = "stream" in m.name ? m.name.stream : coerce.text(readPath(record, m.name.path));
  if (m.ts) {
    const v = readPath(record, m.ts);
    if (!absent(v)) raw.ts = coerce.ts(v, m.tsUnit);
  }
  if (m.value) {
    const v = readPath(record, m.value);
    if (!absent(v)) raw.value = coerce.value(v);
  }
  if (m.user) {
    const v = readPath(record, m.user);
    if (!absent(v)) raw.user = coerce.text(v);
  }
  if (m.dims.length > 0) {
    const dims: Record<string, unknown> = {};
    for (const [k, p] of m.dims) {
      const v = readPath(record, p);
      if (!absent(v)) dims[k] = coerce.text(v);
    }
    raw.dims = dims;
  }
  if (raw.name === undefined) delete raw.name;
  return validateEvent(raw, now);
}

// ---------------------------------------------------------------------------
// Ids: deterministic, from the source and the record's position, so a record produced again after a
// restart carries the same id (and the stream counts it once: dedup within DEDUP_HORIZON_MS).
// ---------------------------------------------------------------------------

const utf8 = new TextEncoder();

/** 64 bits of murmur3 (two seeds), as 16 hex characters: positions of any length fit an id. */
export function hash64(s: string): string {
  const b = utf8.encode(s);
  const hex = (h: number) => (h >>> 0).toString(16).padStart(8, "0");
  return hex(murmur3(b, 0x5eed)) + hex(murmur3(b, 0xc0ffee));
}

/** The event id of the record at `position` of source `sourceId` (≤ 128 characters: the event limit). */
export const eventId = (sourceId: string, position: string): string => `s:${sourceId}:${position}`.slice(0, 128);

// ---------------------------------------------------------------------------
// Backoff and errors.
// ---------------------------------------------------------------------------

/** The wait after the `failures`-th consecutive failure: 1 s, 2 s, 4 s … capped at `maxMs`. */
export function backoffMs(failures: number, maxMs: number): number {
  return Math.min(maxMs, BACKOFF_BASE_MS * 2 ** Math.min(Math.max(failures, 1) - 1, 30));
}

/** Why a poll or a delivery failed, as GET shows it. */
export const SOURCE_ERRORS = {
  timeout: "The endpoint, database or proxy did not answer within timeout_ms.",
  unreachable: "The endpoint, database or proxy could not be reached.",
  http_status: "The endpoint answered with an error status.",
  malformed_page: "The response is not JSON, or holds no array where `records` points.",
  response_too_large: "The response is larger than 4 MiB.",
  auth_failed: "The credentials were refused.",
  query_failed: "The database refused the query.",
  object_unreadable: "An object under the prefix could not be read.",
  kafka_error: "The Kafka REST Proxy answered with an error.",
  delivery_failed: "Events could not be handed to their streams (they wait in the outbox).",
  internal: "Something failed inside edgepulse (the server log has the details).",
} as const;
export type SourceErrorCode = keyof typeof SOURCE_ERRORS;

/** A failure of a source. Permanent ones stop it (`failed`) until it is resumed; the others back off. */
export class SourceError extends Error {
  override name = "SourceError";
  constructor(
    readonly code: SourceErrorCode,
    message: string,
    readonly permanent = false,
  ) {
    super(message);
  }
}

/** Replaces every occurrence of each secret (and a URL's password) in a message by "***": messages are shown and logged. */
export function redact(message: string, secrets: SourceSecrets): string {
  let out = message;
  const values = [secrets.auth, secrets.connection_string].filter((s): s is string => !!s && s.length >= 4);
  if (secrets.connection_string) {
    try {
      const pw = decodeURIComponent(new URL(secrets.connection_string).password);
      if (pw.length >= 4) values.push(pw, encodeURIComponent(pw));
    } catch {
      // not a URL: the whole string is redacted above
    }
  }
  for (const v of values.sort((a, b) => b.length - a.length)) out = out.split(v).join("***");
  return out.slice(0, 300);
}

// ---------------------------------------------------------------------------
// CSV (RFC 4180): quoted fields may hold commas, quotes ("") and line breaks.
// ---------------------------------------------------------------------------

export interface CsvChunk {
  /**
   * Complete records, in order: their fields (null for one that cannot be parsed: a stray quote) and the
   * character just after the record (after its line break).
   */
  records: Array<{ fields: string[] | null; end: number }>;
  /** Characters of the text the records used (up to and including the last record's line break, blank lines too). */
  consumed: number;
}

/**
 * Parses the complete records at the start of `text`. A record is complete when its line break is
 * outside quotes, or at the end of `text` when `atEnd`. Blank lines are skipped.
 */
export function parseCsv(text: string, atEnd: boolean): CsvChunk {
  const records: CsvChunk["records"] = [];
  let consumed = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const start = i;
    const fields: string[] = [];
    let field = "";
    let bad = false;
    let complete = false;
    let quoted = false;
    let fieldStart = true;
    while (i < n) {
      const ch = text[i];
      if (quoted) {
        if (ch === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          quoted = false;
          i++;
          // After a closing quote only a separator or a line break may follow.
          if (i < n && text[i] !== "," && text[i] !== "\n" && text[i] !== "\r") bad = true;
          continue;
        }
        field += ch;
        i++;
        continue;
      }
      if (ch === '"' && fieldStart) {
        quoted = true;
        fieldStart = false;
        i++;
        continue;
      }
      if (ch === ",") {
        fields.push(field);
        field = "";
        fieldStart = true;
        i++;
        continue;
      }
      if (ch === "\n" || ch === "\r") {
        const crlf = ch === "\r" && text[i + 1] === "\n";
        i += crlf ? 2 : 1;
        if (ch === "\r" && !crlf && i >= n && !atEnd) {
          // A "\r" at the end of the text may be the first half of "\r\n": wait for more.
          i = start;
          break;
        }
        complete = true;
        break;
      }
      field += ch;
      fieldStart = false;
      i++;
    }
    if (!complete) {
      if (i >= n && atEnd && i > start) {
        // The last record, with no line break after it (or an unclosed quote: bad).
        complete = true;
        if (quoted) bad = true;
      } else break;
    }
    fields.push(field);
    consumed = i;
    const blank = fields.length === 1 && fields[0] === "" && !bad;
    if (!blank) records.push({ fields: bad ? null : fields, end: i });
  }
  return { records, consumed };
}

// ---------------------------------------------------------------------------
// What GET /v1/sources/:id answers.
// ---------------------------------------------------------------------------

export type SourceState = "running" | "paused" | "backing_off" | "failed";

export interface SourceStatus {
  /** Where the source is: kind-specific (an HTTP cursor, the last key read, an object and offset, offsets). */
  cursor: Record<string, unknown> | null;
  /** What is waiting at the source, as far as the kind can tell (null: it cannot). */
  lag: number | null;
  lag_unit: "rows" | "objects" | "records" | null;
  /** Events made from records (put in the outbox with the cursor, in one transaction). */
  events_produced: number;
  /** Events their streams accepted, and those they already had (a redelivery after a restart). */
  events_delivered: number;
  duplicates: number;
  /** Events waiting in the outbox for their streams. */
  pending: number;
  /** Records refused, by code: the event validator's codes, and those the streams gave (too_far_in_future…). */
  rejected: Partial<Record<EventErrorCode, number>>;
  last_error: { at: string; code: SourceErrorCode; message: string } | null;
  consecutive_failures: number;
  last_poll_at: string | null;
  last_success_at: string | null;
  next_poll_at: string | null;
}

export interface SourceView {
  id: string;
  name: string;
  kind: SourceKind;
  state: SourceState;
  created_at: string;
  updated_at: string;
  config: SourceConfig;
  /** Whether each secret of the kind is set: never its value. */
  secrets: { auth?: "set" | "unset"; connection_string?: "set" | "unset" };
  status: SourceStatus;
}
