/**
 * What the API answers, declared once as schemas (zod): the API description
 * (workers/openapi/) is generated from them, the end-to-end tests check real
 * responses against that description, and workers/openapi/shapes.ts checks at
 * compile time that each one is exactly the type the code that builds the
 * response returns. Runtime-free; nothing parses responses with them.
 *
 * Each schema has an `id`: its name in the document's components.
 */
import { z } from "zod";
import { AGGREGATES, COMPARATORS } from "./alerts.ts";
import { ERRORS, type ErrorCode, EVENT_ERRORS, type EventErrorCode } from "./errors.ts";
import { SCOPES } from "./keys.ts";
import { QUERY_STEPS, type QueryStep } from "./measures.ts";
import { KafkaSink } from "./sinks.ts";
import { HttpSource, KafkaSource, PostgresFields, R2Source, SOURCE_ERRORS, type SourceErrorCode } from "./sources.ts";
import { WINDOW_NAMES, type WindowName } from "./window.ts";

const windowName = z.enum(WINDOW_NAMES as [WindowName, ...WindowName[]]);
const step = z.enum(Object.keys(QUERY_STEPS) as [QueryStep, ...QueryStep[]]);

/** A point in time as every response carries it (core/time.ts isoTime). */
export const Time = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
  .meta({ format: "date-time", examples: ["2026-11-22T09:00:00.000Z"] });
const timeOrNull = Time.nullable();

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

export const ERROR_CODES = Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]];

/** The one error shape (workers/lib/errors.ts): a stable code, a message a person can act on, details. */
export const ErrorBody = z
  .object({
    error: z.object({
      code: z.enum(ERROR_CODES).describe("Stable: branch on it (the message may change)."),
      message: z.string(),
      details: z.unknown().optional().describe("Field issues, a receipt, …: depends on the code."),
    }),
  })
  .meta({ id: "Error", description: "Every error: `{error: {code, message, details?}}`." });

// ---------------------------------------------------------------------------
// Ingest.
// ---------------------------------------------------------------------------

export const Rejection = z
  .object({
    index: z.int().min(0).describe("The event's position in the batch (the line among non-empty NDJSON lines)."),
    code: z.enum(Object.keys(EVENT_ERRORS) as [EventErrorCode, ...EventErrorCode[]]),
    message: z.string(),
  })
  .meta({ id: "Rejection", description: "An event refused, and why." });

export const Receipt = z
  .object({
    accepted: z.int().min(0).describe("Events stored (durable before this reply)."),
    duplicates: z.int().min(0).describe("Events whose id was already seen: counted once, not again."),
    rejected: z.array(Rejection),
  })
  .meta({ id: "Receipt", description: "What happened to each event of a batch." });

export const QueuedReceipt = z
  .object({
    queued: z.int().min(0),
    rejected: z.array(Rejection),
    mode: z.literal("queued"),
    request_id: z.string(),
    note: z.string(),
  })
  .meta({ id: "QueuedReceipt", description: "Events queued durably (?mode=queued); counted once applied." });

// ---------------------------------------------------------------------------
// Streams.
// ---------------------------------------------------------------------------

const nullableNumber = z.number().nullable();

/** The figures of any period: a live window or a history step (core/aggregate.ts Figures). */
const figureFields = {
  count: z.int().min(0),
  rate: z.number().describe("Events per second over the period."),
  value_count: z.int().min(0).describe("Events that carried a value."),
  sum: nullableNumber.describe("Over events with a value; null when none had one."),
  min: nullableNumber,
  max: nullableNumber,
  mean: nullableNumber,
  p50: nullableNumber.describe("Within 1 % of the exact value at that rank (DDSketch)."),
  p90: nullableNumber,
  p95: nullableNumber,
  p99: nullableNumber,
  distinct_users: z.int().min(0).describe("HyperLogLog estimate (≈0.6 % standard error)."),
};

export const Figures = z.object(figureFields).meta({ id: "Figures", description: "A period's figures." });

export const WindowFigures = z
  .object({ window: windowName, seconds: z.int().min(1), ...figureFields })
  .meta({ id: "WindowFigures", description: "A live sliding window's figures." });

const rejectedCounts = z.partialRecord(
  z.enum(Object.keys(EVENT_ERRORS) as [EventErrorCode, ...EventErrorCode[]]),
  z.int().min(0),
);

export const StreamCounters = z
  .object({
    accepted: z.int().min(0),
    duplicates: z.int().min(0),
    late: z.int().min(0),
    future: z.int().min(0),
    rejected: rejectedCounts.describe("Every rejection of an event that named this stream, by code."),
    dims_overflow: z.int().min(0).optional().describe("Dimension values folded into __other__."),
    dim_keys_overflow: z.int().min(0).optional().describe("Dimensions dropped past MAX_DIM_KEYS keys."),
    backfilled: z.int().min(0).optional().describe("Events accepted on the backfill path (history and archive only)."),
  })
  .meta({ id: "StreamCounters", description: "Lifetime totals of a stream." });

export const HistoryStatus = z
  .object({
    enabled: z.boolean(),
    pending_minutes: z.int().min(0),
    open_minutes: z.int().min(0),
    failures: z.int().min(0),
    last_flush_at: timeOrNull,
    last_error: z
      .object({ category: z.enum(["unreachable", "timeout", "rejected", "unknown"]), message: z.string() })
      .nullable(),
    minutes_flushed: z.int().min(0),
    dropped_minutes: z.int().min(0),
    dimension_minutes_pending: z.int().min(0),
  })
  .meta({ id: "HistoryStatus", description: "How far the stream's history (PostgreSQL) is behind." });

export const Scaling = z
  .object({
    shards: z.int().min(1),
    shard_load: z.array(z.object({ shard: z.int().min(1), requests_per_s: z.number(), requests: z.number() })),
    requests_per_s: z.number(),
    target_per_shard: z.number(),
    min_shards: z.int().min(1),
    max_shards: z.int().min(1),
    decisions: z.array(z.object({ at: Time, from: z.int(), to: z.int(), reason: z.string() })),
  })
  .meta({ id: "Scaling", description: "The stream's shards, their load and the last scaling decisions." });

export const ArchiveStatus = z
  .object({
    enabled: z.boolean(),
    pending_events: z.int().min(0).describe("Events accepted and not yet in a written segment."),
    segments_written: z.int().min(0).describe("Segments this actor instance wrote."),
    last_write_at: timeOrNull,
    last_error: z.string().nullable(),
  })
  .meta({ id: "ArchiveStatus", description: "The stream's raw archive (R2): what waits, what was written." });

export const FunnelFeedStatus = z
  .object({
    taps: z.int().min(0).describe("Funnel steps this stream's events feed."),
    pending: z.int().min(0).describe("Batches of step events not yet applied by the funnel shards."),
    dropped: z.int().min(0).describe("Batches let go past the bound (20,000 waiting)."),
  })
  .meta({ id: "FunnelFeedStatus", description: "The stream's part in funnels: what it feeds, what waits." });

export const Segment = z
  .object({
    key: z.string().describe("raw/<tenant>/<stream>/<YYYY-MM-DD>/<HH>/<first seq>-<last seq>.ndjson.gz"),
    stream: z.string(),
    count: z.int().min(0).describe("Events in the segment."),
    from_ts: z.number().describe("Earliest event time in the segment, epoch ms."),
    to_ts: z.number().describe("Latest event time in the segment, epoch ms."),
    sha256: z.string().describe("Hex SHA-256 of the object's bytes (gzip)."),
    bytes: z.int().min(0),
  })
  .meta({ id: "ArchiveSegment", description: "One segment of the raw archive: its manifest entry." });

export const SegmentList = z
  .object({ from: Time, to: Time, segments: z.array(Segment), next_cursor: z.string().nullable() })
  .meta({ id: "ArchiveSegmentList", description: "A page of the archive's manifest." });

export const ReplayStatus = z
  .object({
    id: z.string(),
    from: Time,
    to: Time,
    replaced_until: Time.describe("Minutes from here on are left to live ingest."),
    state: z.enum(["waiting", "listing", "reading", "writing", "done", "failed"]),
    segments_total: z.int().min(0),
    segments_done: z.int().min(0),
    events_read: z.int().min(0),
    minutes_written: z.int().min(0),
    started_at: Time,
    finished_at: timeOrNull,
    error: z.string().nullable(),
  })
  .meta({ id: "ReplayStatus", description: "A replay of a stream's history from the archive, and its progress." });

export const StreamSnapshot = z
  .object({
    stream: z.string(),
    now: Time,
    windows: z.partialRecord(windowName, WindowFigures).describe("Every window, or the one asked for."),
    counters: StreamCounters,
    first_event_at: timeOrNull,
    last_event_at: timeOrNull,
    history: HistoryStatus,
    scaling: Scaling,
    archive: ArchiveStatus,
    funnels: FunnelFeedStatus,
  })
  .meta({ id: "StreamSnapshot", description: "All aggregates of one stream, live." });

export const StreamListing = z
  .union([
    z.object({
      name: z.string(),
      window: windowName,
      seconds: z.int().min(1),
      ...figureFields,
      counters: StreamCounters,
      first_event_at: timeOrNull,
      last_event_at: timeOrNull,
    }),
    z.object({ name: z.string(), available: z.literal(false) }),
  ])
  .meta({ id: "StreamListing", description: "A stream with its figures for the window asked for." });

export const StreamList = z
  .object({
    window: windowName,
    streams: z.array(StreamListing),
    next_cursor: z.string().nullable().describe("Pass as `cursor` for the next page; null on the last one."),
  })
  .meta({ id: "StreamList" });

export const HistoryPoint = z
  .object({ t: Time.describe("The step's start."), ...figureFields })
  .meta({ id: "HistoryPoint" });

export const History = z
  .object({ stream: z.string(), step, from: Time, to: Time, points: z.array(HistoryPoint) })
  .meta({ id: "History", description: "Every aggregate per step over [from, to); only steps with events." });

const Dimension = z.object({ name: z.string(), keys: z.array(z.string()), values: z.int().min(0) });

export const StreamConfiguration = z
  .object({
    stream: z.string(),
    dimension_sets: z.array(z.array(z.string())),
    scaling: z.object({
      min_shards: z.int().optional(),
      max_shards: z.int().optional(),
      target_requests_per_s: z.int().optional(),
    }),
    dimensions: z.array(Dimension).describe("Dimensions seen, with their number of values."),
  })
  .meta({ id: "StreamConfiguration" });

export const StreamConfigSaved = z
  .object({
    stream: z.string(),
    dimension_sets: z.array(z.array(z.string())),
    scaling: Scaling,
    applies_from: Time.describe("Sets aggregate events accepted from then on."),
    note: z.string(),
  })
  .meta({ id: "StreamConfigSaved" });

export const ActorStats = z
  .object({
    storage_bytes: z.int().min(0),
    minutes: z.int().min(0),
    open_minutes: z.int().min(0),
    registers: z.int().min(0),
    dedup_ids: z.int().min(0),
    outbox_pending: z.int().min(0),
    db_connections_opened: z.int().min(0),
    dimensions: z.int().min(0),
    values: z.int().min(0),
    hot_minutes: z.int().min(0),
  })
  .meta({ id: "ActorStats", description: "What a stream's actor holds (capacity planning)." });

// ---------------------------------------------------------------------------
// Queries.
// ---------------------------------------------------------------------------

const cell = z.union([z.string(), z.number(), z.boolean(), z.null()]);

export const QueryResult = z
  .object({
    columns: z.array(z.string()),
    rows: z.array(z.array(cell)).describe("One array per group (and step), in the order of columns."),
    meta: z
      .looseObject({
        span: z.object({ from: Time, to: Time }),
        step: step.nullable(),
        streams: z.array(z.object({ alias: z.string(), stream: z.string(), source: z.string() })),
        sources: z.array(z.string()),
        freshness_ms: z.number().nullable(),
        groups: z.int().min(0),
        truncated: z.boolean(),
        error_bounds: z.record(z.string(), z.string()),
        missing: z.array(z.looseObject({ stream: z.string() })),
        statistics: z.looseObject({ elapsed_ms: z.number() }),
        labels: z
          .record(
            z.string(),
            z.object({
              kind: z.string(),
              values: z.int().min(0).describe("Distinct values of the key among the groups returned."),
              found: z.int().min(0).describe("How many of them the catalog holds (the others' labels are null)."),
              reason: z.string().optional().describe("Why the catalog was not read: every label of the key is null."),
            }),
          )
          .optional()
          .describe('With "labels" in the query: per labelled key, what the catalog answered.'),
      })
      .describe("How the answer was made: span, sources, freshness, bounds, what is missing."),
  })
  .meta({ id: "QueryResult" });

// ---------------------------------------------------------------------------
// Alerts.
// ---------------------------------------------------------------------------

export const AlertRule = z
  .object({
    id: z.string(),
    name: z.string(),
    stream: z.string(),
    kind: z.enum(["threshold", "no_data"]),
    aggregate: z.enum(AGGREGATES),
    window: windowName,
    comparator: z.enum(COMPARATORS),
    threshold: z.number(),
    resolve_threshold: z.number().nullable(),
    for_ms: z.int().min(0),
    keep_firing_for_ms: z.int().min(0),
    no_data_ms: z.int().min(0),
    labels: z.record(z.string(), z.string()),
    targets: z.array(z.string()),
    enabled: z.boolean(),
    created_at: Time,
    updated_at: Time,
  })
  .meta({ id: "AlertRule" });

export const Rule = z
  .object({
    rule: AlertRule,
    state: z.object({
      state: z.enum(["inactive", "pending", "firing"]),
      active_since: timeOrNull,
      firing_since: timeOrNull,
      last_true_at: timeOrNull,
      value: z.number().nullable(),
    }),
  })
  .meta({ id: "Rule", description: "An alert rule with its current state." });

export const RuleList = z.object({ rules: z.array(Rule) }).meta({ id: "RuleList" });

export const RuleDeleted = z.object({ deleted: z.string().describe("The rule's id.") }).meta({ id: "RuleDeleted" });

const alertEventFields = {
  id: z.string(),
  stream: z.string(),
  rule_id: z.string(),
  rule_name: z.string(),
  kind: z.enum(["pending", "firing", "resolved", "cancelled"]),
  at: Time,
  value: z.number().nullable(),
  labels: z.record(z.string(), z.string()),
};

export const AlertEvent = z
  .object(alertEventFields)
  .meta({ id: "AlertEvent", description: "An alert transition (also the body of a webhook)." });

export const FiringAlerts = z.object({ firing: z.array(AlertEvent) }).meta({ id: "FiringAlerts" });

export const Delivery = z
  .object({
    target: z.string(),
    status: z.enum(["pending", "delivered", "failed"]),
    attempts: z.int().min(0),
    last_error: z.string().nullable(),
    delivered_at: timeOrNull,
  })
  .meta({ id: "Delivery", description: "A webhook delivery of a transition." });

export const AlertEventList = z
  .object({ events: z.array(z.object({ ...alertEventFields, deliveries: z.array(Delivery) })) })
  .meta({ id: "AlertEventList", description: "Recent transitions, newest first." });

export const WebhookSecret = z
  .object({ secret: z.string(), header: z.string(), scheme: z.string() })
  .meta({ id: "WebhookSecret", description: "How webhook deliveries are signed." });

// ---------------------------------------------------------------------------
// Keys and tenants.
// ---------------------------------------------------------------------------

const keyFields = {
  id: z.string(),
  tenant_id: z.string(),
  scope: z.enum(SCOPES),
  name: z.string(),
  prefix: z.string().describe("The key's first characters, to recognise it."),
  stream_prefixes: z
    .array(z.string())
    .nullable()
    .describe("Stream-name prefixes the key is limited to; null: every stream."),
  created_at: Time,
  revoked_at: timeOrNull,
};

export const Key = z.object(keyFields).meta({ id: "Key", description: "An API key (never the key itself)." });

export const NewKey = z
  .object({ ...keyFields, key: z.string().describe("The key: shown this once.") })
  .meta({ id: "NewKey", description: "A key just created, with the key itself (shown once)." });

export const KeyList = z.object({ keys: z.array(Key) }).meta({ id: "KeyList" });

export const Tenant = z.object({ id: z.string(), name: z.string(), created_at: Time }).meta({ id: "Tenant" });

export const TenantCreated = z
  .object({ tenant: Tenant, keys: z.array(NewKey).describe("One key of each scope, shown this once.") })
  .meta({ id: "TenantCreated" });

export const TenantList = z.object({ tenants: z.array(Tenant) }).meta({ id: "TenantList" });

export const TenantLimits = z
  .object({
    ingest_per_sec: z.int().nullable().describe("null: the default (RATE_LIMIT_INGEST_PER_SEC)."),
    read_per_sec: z.int().nullable().describe("null: the default (RATE_LIMIT_READ_PER_SEC)."),
  })
  .meta({ id: "TenantLimits", description: "Per-tenant rate limits in requests per second." });

export const TenantUsage = z
  .object({
    tenant_id: z.string(),
    limits: z.object({ ingest_per_sec: z.int(), read_per_sec: z.int(), max_streams: z.int() }),
    usage: z.object({ streams: z.int().min(0), streams_refused: z.int().min(0) }),
  })
  .meta({ id: "TenantUsage", description: "The tenant's usage against its limits." });

// ---------------------------------------------------------------------------
// Sign-in with an identity provider (OIDC).
// ---------------------------------------------------------------------------

export const OidcConfigView = z
  .object({
    issuer: z.string(),
    jwks_uri: z.string().describe("Given, or read from the issuer's discovery document."),
    audience: z.array(z.string()).describe("A token's aud must hold one of these."),
    role_claim: z.string(),
    roles: z.array(
      z.object({
        role: z.string(),
        scope: z.enum(SCOPES),
        stream_prefixes: z.array(z.string()).nullable(),
      }),
    ),
    dashboard: z
      .object({
        client_id: z.string(),
        scopes: z.string(),
        authorization_endpoint: z.string(),
        token_endpoint: z.string(),
        redirect_uri: z.string().describe("Register this as a redirect URI of the client at the provider."),
      })
      .nullable(),
    algorithms: z.array(z.string()).describe("The signature algorithms accepted (asymmetric only)."),
    clock_tolerance_s: z.number().describe("Seconds of clock skew tolerated on exp, nbf and iat."),
    jwks_cache_s: z.number().describe("How long a fetched JWKS is used before it is fetched again."),
    updated_at: Time,
  })
  .meta({ id: "OidcConfig", description: "The tenant's identity provider, and what the server enforces." });

export const OidcPublicConfig = z
  .object({
    tenant_id: z.string(),
    issuer: z.string(),
    client_id: z.string(),
    scopes: z.string(),
    audiences: z.array(z.string()),
    authorization_endpoint: z.string(),
    token_endpoint: z.string(),
  })
  .meta({ id: "OidcPublicConfig", description: "What the dashboard needs to sign in to a tenant; nothing secret." });

export const OidcDeleted = z.object({ deleted: z.literal(true), issuer: z.string() }).meta({ id: "OidcDeleted" });

// ---------------------------------------------------------------------------
// Pull sources.
// ---------------------------------------------------------------------------

const authHeader = {
  auth_header: z.string().nullable().describe("The auth header's name (its value is never shown)."),
};

/** The last failure of a source or a sink. */
const LastSourceError = z
  .object({
    at: Time,
    code: z.enum(Object.keys(SOURCE_ERRORS) as [SourceErrorCode, ...SourceErrorCode[]]),
    message: z.string().describe("Safe to show: never a secret, a body or a header."),
  })
  .nullable();

export const SourceStatus = z
  .object({
    cursor: z
      .record(z.string(), z.unknown())
      .nullable()
      .describe(
        "Where the source is, by kind: HTTP {cursor, taken}; PostgreSQL {last, settled, …}; R2 {object, offset, …}; Kafka {offsets, group}.",
      ),
    lag: z.number().nullable().describe("What waits at the source, as far as the kind can tell (null: unknown)."),
    lag_unit: z.enum(["rows", "objects", "records"]).nullable(),
    events_produced: z.int().min(0).describe("Events made from records (stored with the cursor, in one transaction)."),
    events_delivered: z.int().min(0).describe("Events their streams accepted."),
    duplicates: z.int().min(0).describe("Events their streams already had (a delivery repeated after a restart)."),
    pending: z.int().min(0).describe("Events waiting in the outbox for their streams."),
    rejected: rejectedCounts.describe("Records refused, by the event validator's codes and those the streams gave."),
    last_error: LastSourceError,
    consecutive_failures: z.int().min(0),
    last_poll_at: timeOrNull,
    last_success_at: timeOrNull,
    next_poll_at: timeOrNull,
  })
  .meta({ id: "SourceStatus", description: "How a source is doing." });

export const Source = z
  .object({
    id: z.string(),
    name: z.string(),
    kind: z.enum(["http", "postgres", "r2", "kafka"]),
    state: z
      .enum(["running", "paused", "backing_off", "failed"])
      .describe("failed: a failure retrying cannot fix (refused credentials, a bad query); resume once fixed."),
    created_at: Time,
    updated_at: Time,
    config: z
      .discriminatedUnion("kind", [
        HttpSource.omit({ auth: true, name: true }).extend(authHeader),
        PostgresFields.omit({ connection_string: true, name: true }),
        R2Source.omit({ name: true }),
        KafkaSource.omit({ auth: true, name: true }).extend(authHeader),
      ])
      .describe("The source's settings, without its secrets."),
    secrets: z
      .object({
        auth: z.enum(["set", "unset"]).optional(),
        connection_string: z.enum(["set", "unset"]).optional(),
      })
      .describe("Whether each secret of the kind is set; never its value."),
    status: SourceStatus,
  })
  .meta({ id: "Source", description: "A pull source, its settings and its status." });

export const SourceList = z.object({ sources: z.array(Source) }).meta({ id: "SourceList" });

export const SourceDeleted = z
  .object({
    deleted: z.string().describe("The source's id."),
    undelivered: z.int().min(0).describe("Events still waiting for their streams after a last delivery, now dropped."),
  })
  .meta({ id: "SourceDeleted" });

export const ArchiveRetention = z
  .object({
    days: z.int().min(1).describe("Days of events (by their date) this tenant's archive keeps."),
    tenant_days: z.int().min(1).nullable().describe("The tenant's own setting; null: the deployment's."),
    deployment_days: z.int().min(1).describe("The deployment's ARCHIVE_RETENTION_DAYS: the default and the most."),
  })
  .meta({ id: "ArchiveRetention" });

// ---------------------------------------------------------------------------
// Sinks.
// ---------------------------------------------------------------------------

export const SinkStatus = z
  .object({
    queued_segments: z.int().min(0).describe("Archive segments waiting to be produced."),
    queued_events: z.int().min(0).describe("Events they hold (not yet written to the topic)."),
    lag_ms: z.number().nullable().describe("Age of the oldest queued segment (ms); null when none waits."),
    current: z
      .object({ key: z.string(), produced: z.int().min(0), count: z.int().min(0) })
      .nullable()
      .describe("The segment being produced and how many of its records are written."),
    events_produced: z.int().min(0),
    segments_produced: z.int().min(0),
    segments_skipped: z
      .int()
      .min(0)
      .describe("Segments let go because too many waited (they are still in the archive)."),
    last_error: LastSourceError,
    consecutive_failures: z.int().min(0),
    last_success_at: timeOrNull,
    next_attempt_at: timeOrNull,
  })
  .meta({ id: "SinkStatus", description: "How a sink is doing." });

export const Sink = z
  .object({
    id: z.string(),
    name: z.string(),
    kind: z.literal("kafka"),
    state: z
      .enum(["running", "paused", "backing_off", "failed"])
      .describe("failed: a failure retrying cannot fix (refused credentials); resume once fixed."),
    created_at: Time,
    updated_at: Time,
    config: KafkaSink.omit({ auth: true, name: true }).extend(authHeader).describe("The settings, without the secret."),
    secrets: z.object({ auth: z.enum(["set", "unset"]) }).describe("Whether the auth header's value is set."),
    status: SinkStatus,
  })
  .meta({ id: "Sink", description: "A sink, its settings and its status." });

export const SinkList = z.object({ sinks: z.array(Sink) }).meta({ id: "SinkList" });

export const SinkDeleted = z
  .object({
    deleted: z.string().describe("The sink's id."),
    queued_segments: z.int().min(0).describe("Segments it had not produced (they stay in the archive)."),
  })
  .meta({ id: "SinkDeleted" });

// ---------------------------------------------------------------------------
// Catalog.
// ---------------------------------------------------------------------------

const entityStamps = {
  id: z.string().describe("The value events carry in their dims for this entity."),
  created_at: Time,
  updated_at: Time,
};

export const Product = z
  .object({
    kind: z.literal("products"),
    ...entityStamps,
    name: z.string(),
    category: z.string().nullable(),
    price: z.number(),
  })
  .meta({ id: "Product" });

export const CatalogUser = z
  .object({
    kind: z.literal("users"),
    ...entityStamps,
    first_name: z.string(),
    last_name: z.string(),
    plan: z.string().nullable(),
    country: z.string().nullable(),
  })
  .meta({ id: "CatalogUser" });

export const Course = z
  .object({
    kind: z.literal("courses"),
    ...entityStamps,
    title: z.string(),
    level: z.string().nullable(),
    instructor: z.string().nullable(),
  })
  .meta({ id: "Course" });

export const CatalogEntity = z
  .discriminatedUnion("kind", [Product, CatalogUser, Course])
  .meta({ id: "CatalogEntity", description: "An entity of the catalog: a product, a user or a course." });

export const CatalogPage = z
  .object({
    items: z.array(CatalogEntity).describe("Ordered by id."),
    next_cursor: z.string().nullable().describe("Pass as `cursor` for the next page; null on the last."),
  })
  .meta({ id: "CatalogPage" });

export const CatalogDeleted = z
  .object({ deleted: z.string().describe("The entity's id.") })
  .meta({ id: "CatalogEntityDeleted" });

// ---------------------------------------------------------------------------
// Service.
// ---------------------------------------------------------------------------

export const Health = z.object({ ok: z.literal(true) }).meta({ id: "Health" });

export const Version = z.object({ name: z.string(), version: z.string() }).meta({ id: "Version" });
