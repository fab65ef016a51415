/**
 * The API description's one registry: what each route answers. To describe a
 * new route, add one entry to OPERATIONS below, keyed by its method and Hono
 * path exactly as registered ("GET /v1/streams/:name"). Who may call it, its
 * query parameters and its JSON body are not written here: the generator
 * (document.ts) reads them from the route's own middleware (requireKey,
 * onlyParams, jsonBody, …; see tag.ts). An entry gives the rest: a summary,
 * the success responses (schemas from core/responses.ts), the error codes the
 * handler itself throws, and a schema for any parameter it parses by hand.
 * test/workers/openapi.test.ts fails for a route with no entry here.
 */
import { z } from "zod";
import { SIGNATURE_HEADER } from "../../core/alerts";
import { CATALOG_KINDS, CATALOG_PAGE, MAX_ENTITIES_PER_KIND } from "../../core/catalog";
import { CONFIG } from "../../core/config";
import type { ErrorCode } from "../../core/errors";
import { NAME_PATTERN } from "../../core/event";
import { EventSchema } from "../../core/event-schema";
import {
  DEFAULT_HISTORY_SPAN_MS,
  DEFAULT_HISTORY_STEP,
  HISTORY_STEP_MS,
  MAX_HISTORY_POINTS,
} from "../../core/history-query";
import { KEY_PROTOCOL_PREFIX, LIVE_PROTOCOL } from "../../core/live";
import { QueryBody } from "../../core/query";
import * as R from "../../core/responses";
import { MAX_SINKS_PER_TENANT, SINK_MAX_QUEUED_SEGMENTS } from "../../core/sinks";
import { MAX_SOURCES_PER_TENANT } from "../../core/sources";
import { WINDOW_NAMES, type WindowName } from "../../core/window";
import { ALERT_EVENTS } from "../aggregator/alerts";
import { STREAM_LIST } from "../aggregator/app";
import { BOARD_OPERATIONS } from "./routes-boards";
import { FUNNEL_OPERATIONS } from "./routes-funnels";

export const TAGS = {
  Ingest: "Send events.",
  Streams: "Live figures, history and configuration of the tenant's streams.",
  Query: "One JSON query language over live figures and history.",
  Live: "WebSockets: pushed snapshots and updates.",
  Alerts: "Alert rules, firing alerts, transitions and webhooks.",
  Keys: "The tenant's API keys (admin key).",
  Auth: "Sign-in with the tenant's OpenID Connect identity provider: tokens accepted as keys, dashboard sign-in.",
  Tenant: "The tenant's usage and limits.",
  Operator: "Tenants, their keys and limits (the operator token, ADMIN_TOKEN).",
  Integrations: "Prometheus scrapes and rule files.",
  Sources: "Pull sources: HTTP APIs, PostgreSQL, R2 file drops and Kafka, polled into streams (admin key).",
  Sinks: "Sinks: every accepted event produced to Kafka through a REST Proxy (admin key).",
  Archive: "The raw archive: every accepted event, kept in R2.",
  Catalog: "The entities dimension values name: products, users and courses (PostgreSQL).",
  Funnels: "Ordered steps within a conversion window per user: live conversion, by a dim and per day.",
  Boards: "Saved dashboards: named, ordered panels, each a query or a funnel (PostgreSQL).",
  Service: "Health, version and this description.",
} as const;
export type Tag = keyof typeof TAGS;

export interface ResponseDoc {
  description: string;
  /** An application/json body. */
  json?: z.ZodType;
  /** Bodies of other media types (text as z.string()). */
  content?: Record<string, z.ZodType>;
}

/** A parameter: a schema (its .describe() is the parameter's description), or JSON carried in the query string. */
export type ParamDoc = z.ZodType | { json: z.ZodType; description: string };

export interface OperationDoc {
  /** Unique; generated clients name their functions after it. */
  operationId: string;
  tag: Tag;
  summary: string;
  /** Markdown. */
  description?: string;
  /** Success responses, by status. */
  responses: Record<number, ResponseDoc>;
  /**
   * Error codes the handler itself answers with. Those of its middleware (keys, the operator token,
   * unknown parameters, a refused body, a missing upgrade) are added from its tags (MIDDLEWARE_ERRORS).
   */
  errors?: ErrorCode[];
  /** Query parameters, by name: the route's onlyParams names which ones it takes. Shared ones: QUERY_PARAMS. */
  query?: Record<string, ParamDoc>;
  /** A body the handler reads by hand (a jsonBody body is described from its schema), by media type. */
  body?: { description: string; content: Record<string, z.ZodType> };
}

export type RouteKey = `${"GET" | "POST" | "PUT" | "PATCH" | "DELETE"} /${string}`;

// ---------------------------------------------------------------------------
// Shared pieces.
// ---------------------------------------------------------------------------

/** Bearer credentials, as OpenAPI security schemes. */
export const SECURITY_SCHEMES = {
  ingestKey: {
    type: "http",
    scheme: "bearer",
    description: "An ingest key (`ep_ingest_…`) in `Authorization: Bearer <key>`. An admin key works too.",
  },
  readKey: {
    type: "http",
    scheme: "bearer",
    description: `A read key (\`ep_read_…\`). An admin key works too. Browsers' WebSockets send it as the subprotocols \`${LIVE_PROTOCOL}\` and \`${KEY_PROTOCOL_PREFIX}<key>\`.`,
  },
  adminKey: {
    type: "http",
    scheme: "bearer",
    description: "An admin key (`ep_admin_…`): manages the tenant's keys and rules, and may read and send.",
  },
  operatorToken: {
    type: "http",
    scheme: "bearer",
    description: "The operator token: the deployment's `ADMIN_TOKEN` secret. Without it set, `503 admin_disabled`.",
  },
  beaconKey: {
    type: "apiKey",
    in: "query",
    name: "key",
    description:
      "An ingest key as `?key=`, for `navigator.sendBeacon` (which cannot set headers): text/plain bodies only.",
  },
} as const;
export type SecuritySchemeName = keyof typeof SECURITY_SCHEMES;

/** The error codes each kind of middleware answers with (tag.ts): added to every route that uses it. */
export const MIDDLEWARE_ERRORS = {
  key: [
    "missing_key",
    "invalid_key",
    "revoked_key",
    "insufficient_scope",
    "rate_limited",
    // An OIDC token in place of a key (workers/lib/oidc.ts).
    "invalid_token",
    "token_expired",
    "role_not_mapped",
    "identity_provider_unavailable",
  ],
  operator: ["missing_key", "invalid_key", "admin_disabled"],
  query: ["unknown_parameter"],
  body: ["malformed_body"],
  websocket: ["upgrade_required"],
  every: ["internal_error"],
} as const satisfies Record<string, readonly ErrorCode[]>;

const streamName = z.string().regex(NAME_PATTERN).describe("A stream name: [A-Za-z0-9_.:-]{1,128}, not only dots.");

/** Path parameters, by the name routes give them (`:name`). */
export const PATH_PARAMS: Record<string, z.ZodType> = {
  name: streamName,
  tenant: z.string().describe("A tenant's id (`t_…`)."),
  key: z.string().describe("A key's id (`key_…`, as listed), not the key itself."),
  id: z.string().describe("An alert rule's id (`rule_…`)."),
  source: z.string().describe("A source's id (`src_…`)."),
  sink: z.string().describe("A sink's id (`snk_…`)."),
  kind: z.enum(CATALOG_KINDS).describe("The catalog: products, users or courses."),
  entity: z.string().describe("An entity's id: the value its events carry in their dims (URL-encoded)."),
  board: z.string().describe("A board's id (`b_…`)."),
};

const windowName = z.enum(WINDOW_NAMES as [WindowName, ...WindowName[]]);
const time = z.string().describe("Epoch milliseconds or ISO-8601 with a zone.");

/** Query parameters several routes share, by name; an entry's own `query` overrides these. */
export const QUERY_PARAMS: Record<string, ParamDoc> = {
  window: windowName.optional().describe("A live window. Omitted: all of them."),
  cursor: z.string().optional().describe("`next_cursor` of the previous page."),
};

const historySteps = Object.keys(HISTORY_STEP_MS) as [
  keyof typeof HISTORY_STEP_MS,
  ...(keyof typeof HISTORY_STEP_MS)[],
];
const hoursOrDays = (ms: number) => (ms % 86_400_000 === 0 ? `${ms / 86_400_000} d` : `${ms / 3_600_000} h`);
const spans = historySteps.map((s) => `${hoursOrDays(DEFAULT_HISTORY_SPAN_MS[s])} for ${s}`).join(", ");

const KEYS_NOTE = "Keys are shown once, at creation; listings show a short `prefix`.";

// ---------------------------------------------------------------------------
// Every route.
// ---------------------------------------------------------------------------

export const OPERATIONS: Record<RouteKey, OperationDoc> = {
  // Service ------------------------------------------------------------------
  "GET /healthz": {
    operationId: "health",
    tag: "Service",
    summary: "Liveness",
    responses: { 200: { description: "The Worker answers.", json: R.Health } },
  },
  "GET /v1/version": {
    operationId: "version",
    tag: "Service",
    summary: "Name and version",
    responses: { 200: { description: "The deployed package's name and version.", json: R.Version } },
  },
  "GET /openapi.json": {
    operationId: "openapi",
    tag: "Service",
    summary: "This description (OpenAPI 3.1)",
    description: "Generated from the schemas the routes validate with. No key; any origin may fetch it (CORS).",
    responses: { 200: { description: "The OpenAPI document.", json: z.looseObject({ openapi: z.string() }) } },
  },
  "GET /docs": {
    operationId: "reference",
    tag: "Service",
    summary: "The API reference, as a page",
    description: "A self-contained HTML page rendered from this description (no scripts).",
    responses: { 200: { description: "The reference page.", content: { "text/html": z.string() } } },
  },

  // Ingest -------------------------------------------------------------------
  "POST /v1/events": {
    operationId: "ingestEvents",
    tag: "Ingest",
    summary: "Send events",
    description: `One event, an array, or NDJSON (one event per line; a bad line rejects only that event). \`Content-Encoding: gzip\` is accepted. Replies once every accepted event is durable; good events are stored even when others are rejected, and a batch of duplicates only is a \`200\` (a safe retry). Limits (the deployment's settings; defaults in parentheses): at most \`MAX_EVENTS_PER_BATCH\` (${CONFIG.MAX_EVENTS_PER_BATCH.default}) events and \`MAX_BODY_BYTES\` (${CONFIG.MAX_BODY_BYTES.default}) bytes after decoding; events older than \`ALLOWED_LATENESS_MS\` (${CONFIG.ALLOWED_LATENESS_MS.default} ms) or more than \`MAX_FUTURE_SKEW_MS\` (${CONFIG.MAX_FUTURE_SKEW_MS.default} ms) ahead are rejected.`,
    body: {
      description: "The events.",
      content: {
        "application/json": z.union([EventSchema, z.array(EventSchema)]),
        "application/x-ndjson": z.string().describe("One event (JSON) per line."),
        "text/plain": z.string().describe("JSON or NDJSON, for navigator.sendBeacon."),
      },
    },
    query: {
      mode: z
        .enum(["direct", "queued", "backfill"])
        .optional()
        .describe(
          "`queued`: put the events in the ingest queue and answer 202 at once (counted once applied). `backfill`: events older than the live windows (up to 400 days) go into history and the archive, never the live windows; ids dedup across backfills.",
        ),
    },
    responses: {
      200: { description: "Every event is accounted for: accepted, duplicate or rejected.", json: R.Receipt },
      202: { description: "Queued (`?mode=queued`).", json: R.QueuedReceipt },
    },
    errors: [
      "malformed_body",
      "unsupported_content_type",
      "unsupported_content_encoding",
      "body_too_large",
      "body_too_deep",
      "empty_batch",
      "too_many_events",
      "invalid_request",
      "all_events_invalid",
      "stream_unavailable",
    ],
  },

  // Streams ------------------------------------------------------------------
  "GET /v1/streams": {
    operationId: "listStreams",
    tag: "Streams",
    summary: "The tenant's streams, with their figures",
    description:
      "In name order, with one window's figures, served by the tenant's hub (within about a second of each stream's own figures) without waking the streams.",
    query: {
      window: windowName.default(STREAM_LIST.window).describe("The window whose figures are listed."),
      limit: z.int().min(1).max(STREAM_LIST.maxLimit).default(STREAM_LIST.limit).describe("Streams per page."),
    },
    responses: { 200: { description: "A page of streams.", json: R.StreamList } },
    errors: ["invalid_window", "invalid_request"],
  },
  "GET /v1/streams/:name": {
    operationId: "getStream",
    tag: "Streams",
    summary: "All aggregates of one stream",
    description:
      "`count` and `rate` count every event; `sum`, `min`, `max`, `mean` and the percentiles cover events with a `value` (null when none had one).",
    responses: { 200: { description: "The stream's live figures.", json: R.StreamSnapshot } },
    errors: ["invalid_stream_name", "invalid_window", "stream_not_found", "stream_not_allowed"],
  },
  "GET /v1/streams/:name/history": {
    operationId: "getStreamHistory",
    tag: "Streams",
    summary: "History from PostgreSQL, per step",
    description: `Every aggregate per step over [from, to), at most ${MAX_HISTORY_POINTS} points. The minutes the stream's actor still holds replace PostgreSQL's, so the newest point is exact to the second.`,
    query: {
      from: time.optional().describe(`Start (epoch ms or ISO-8601 with a zone). Default: ${spans} before \`to\`.`),
      to: time.optional().describe("End, exclusive (epoch ms or ISO-8601 with a zone). Default: now."),
      step: z.enum(historySteps).default(DEFAULT_HISTORY_STEP),
    },
    responses: { 200: { description: "The points with events, oldest first.", json: R.History } },
    errors: [
      "invalid_stream_name",
      "history_disabled",
      "invalid_step",
      "invalid_range",
      "range_too_large",
      "stream_not_found",
      "stream_not_allowed",
    ],
  },
  "GET /v1/streams/:name/config": {
    operationId: "getStreamConfig",
    tag: "Streams",
    summary: "A stream's dimension sets, scaling settings and dimensions",
    responses: { 200: { description: "The stream's configuration.", json: R.StreamConfiguration } },
    errors: ["invalid_stream_name", "stream_not_allowed"],
  },
  "PUT /v1/streams/:name/config": {
    operationId: "setStreamConfig",
    tag: "Streams",
    summary: "Declare dimension sets and scaling bounds",
    description:
      "Sets aggregate events accepted from now on (earlier ones are not re-aggregated); shard bounds apply at once. Each part omitted is left as it is.",
    responses: { 200: { description: "Saved.", json: R.StreamConfigSaved } },
    errors: ["invalid_stream_name", "stream_not_allowed"],
  },

  // Query --------------------------------------------------------------------
  "POST /v1/query": {
    operationId: "query",
    tag: "Query",
    summary: "Run a query",
    description:
      'Live and history joined at the seam: nothing is counted twice or lost. An expensive query is refused before it runs, naming the limit. With `labels`, each labelled group-by key has a `<key>_label` column from the tenant\'s catalog (null for values the catalog does not hold, and for all when no database is configured: `meta.labels` says why). With `attributes` (`{"product": "products.category"}`), a key\'s column is replaced by `<key>_<attribute>` (`product_category`) and the groups whose entities share the attribute are merged into one, with exact measures (formulas, `order_by` and `limit` apply after the merge): `__unknown__` for values the catalog does not hold (never added or deleted), `__unset__` for entities without the attribute (`__none__` stays the events without the key); `meta.attributes` says how many values were looked up and found. Grouping by an attribute needs the catalog: 503 `history_disabled` without a database, 503 `catalog_unavailable` when PostgreSQL cannot be read.',
    query: { format: z.enum(["csv"]).optional().describe("`csv`: RFC 4180 CSV instead of JSON.") },
    responses: {
      200: {
        description: "The answer.",
        json: R.QueryResult,
        content: { "text/csv": z.string().describe("With `?format=csv`.") },
      },
    },
    errors: ["invalid_query", "stream_not_allowed", "history_disabled", "catalog_unavailable"],
  },

  // Live ---------------------------------------------------------------------
  "GET /v1/streams/:name/live": {
    operationId: "streamSocket",
    tag: "Live",
    summary: "WebSocket: one stream's snapshot, then updates",
    description: `Messages (JSON): \`snapshot\`, then \`update\` (core/live.ts). Send \`ping\` for \`pong\`. Offer the subprotocol \`${LIVE_PROTOCOL}\`.`,
    responses: { 101: { description: "Switching to the WebSocket protocol." } },
    errors: ["invalid_stream_name", "stream_not_allowed"],
  },
  "GET /v1/live": {
    operationId: "overviewSocket",
    tag: "Live",
    summary: "WebSocket: the stream directory, then changed entries",
    description: "Messages (JSON): `directory`, then `streams` with changed entries, and `alerts`.",
    responses: { 101: { description: "Switching to the WebSocket protocol." } },
  },
  "GET /v1/query/live": {
    operationId: "querySocket",
    tag: "Live",
    summary: "WebSocket: a live query",
    description:
      'The answer of the query in `q` is pushed as `{type: "result", at, columns, rows, meta}` whenever it changes, at most once a second. A bad query is refused before the upgrade.',
    query: { q: { json: QueryBody, description: "The query, as URL-encoded JSON (as the body of POST /v1/query)." } },
    responses: { 101: { description: "Switching to the WebSocket protocol." } },
    errors: ["invalid_query", "malformed_body", "stream_not_allowed"],
  },

  // Alerts -------------------------------------------------------------------
  "POST /v1/alerts/rules": {
    operationId: "createRule",
    tag: "Alerts",
    summary: "Create an alert rule",
    responses: { 201: { description: "Created, and evaluated at once.", json: R.Rule } },
    errors: ["invalid_rule", "stream_not_allowed"],
  },
  "GET /v1/alerts/rules": {
    operationId: "listRules",
    tag: "Alerts",
    summary: "The tenant's alert rules with their state",
    query: {
      format: z
        .enum(["json", "prometheus"])
        .default("json")
        .describe("`prometheus`: the rules as a Prometheus rule file (YAML)."),
    },
    responses: {
      200: {
        description: "The rules.",
        json: R.RuleList,
        content: { "application/yaml": z.string().describe("With `?format=prometheus`.") },
      },
    },
    errors: ["invalid_request"],
  },
  "GET /v1/archive": {
    operationId: "listArchive",
    tag: "Archive",
    summary: "The manifest of the raw archive's segments",
    description:
      "Segments overlapping [from, to) (event time; default the last 24 h), one R2 listing page at a time (`next_cursor`).",
    query: {
      stream: z.string().optional().describe("One stream; omitted: every stream of the tenant."),
      from: z.string().optional().describe("Epoch ms or ISO-8601; default: 24 h before `to`."),
      to: z.string().optional().describe("Epoch ms or ISO-8601; default: now."),
      limit: z.int().min(1).max(1000).default(100).describe("Objects listed per page (before the range filter)."),
      cursor: z.string().optional(),
    },
    responses: { 200: { description: "A page of the manifest.", json: R.SegmentList } },
    errors: ["invalid_stream_name", "invalid_range", "invalid_request", "archive_disabled"],
  },
  "GET /v1/archive/retention": {
    operationId: "getArchiveRetention",
    tag: "Archive",
    summary: "How many days of events the tenant's archive keeps",
    responses: {
      200: { description: "The retention in force, the tenant's own and the deployment's.", json: R.ArchiveRetention },
    },
    errors: [],
  },
  "PUT /v1/archive/retention": {
    operationId: "setArchiveRetention",
    tag: "Archive",
    summary: "Set the tenant's archive retention (at most the deployment's ARCHIVE_RETENTION_DAYS)",
    description:
      "The daily maintenance deletes segments whose events' date is older; `null` goes back to the deployment's. An admin credential without stream prefixes.",
    responses: { 200: { description: "The retention now in force.", json: R.ArchiveRetention } },
    errors: ["invalid_request", "restricted_credential", "tenant_not_found"],
  },
  "GET /v1/archive/export": {
    operationId: "exportArchive",
    tag: "Archive",
    summary: "A stream's archived events over a range, as NDJSON",
    description: "Streamed segment by segment; at most 31 days and 10,000 segments per export.",
    query: {
      stream: z.string().describe("The stream to export."),
      from: z.string().optional().describe("Epoch ms or ISO-8601; default: 24 h before `to`."),
      to: z.string().optional().describe("Epoch ms or ISO-8601; default: now."),
    },
    responses: {
      200: {
        description: "One event per line, in the ingest API's shape.",
        content: { "application/x-ndjson": z.string() },
      },
    },
    errors: ["invalid_stream_name", "invalid_range", "range_too_large", "invalid_request", "archive_disabled"],
  },
  "POST /v1/streams/:name/replay": {
    operationId: "startReplay",
    tag: "Archive",
    summary: "Rebuild a stream's minute history over a range from the archive",
    description:
      "Shadow rows replace PostgreSQL's in one transaction; minutes newer than the live windows are left to live ingest; idempotent. At most 31 days.",
    responses: { 202: { description: "Started.", json: z.object({ replay: R.ReplayStatus }) } },
    errors: ["invalid_range", "range_too_large", "replay_running", "archive_disabled", "history_disabled"],
  },
  "GET /v1/streams/:name/replay": {
    operationId: "replayStatus",
    tag: "Archive",
    summary: "The stream's last replay and its progress",
    responses: { 200: { description: "The replay.", json: z.object({ replay: R.ReplayStatus }) } },
    errors: ["not_found"],
  },
  "GET /v1/metrics": {
    operationId: "metrics",
    tag: "Integrations",
    summary: "The tenant's live figures for Prometheus",
    description:
      "Text format 0.0.4, or OpenMetrics 1.0 when `Accept` asks for it. Counters per stream, gauges per stream and window, and per dimension key and declared set over `dim_window`; at most `METRICS_MAX_SERIES` series, the rest counted in `edgepulse_scrape_series_dropped`.",
    query: {
      dim_window: windowName.default("1m").describe("The live window of the dimension series."),
    },
    responses: {
      200: {
        description: "The exposition page.",
        content: {
          "text/plain": z.string().describe("Prometheus text format 0.0.4."),
          "application/openmetrics-text": z.string().describe("OpenMetrics 1.0, ending in `# EOF`."),
        },
      },
    },
    errors: ["invalid_window"],
  },
  "GET /v1/alerts/rules/:id": {
    operationId: "getRule",
    tag: "Alerts",
    summary: "One alert rule with its state",
    responses: { 200: { description: "The rule.", json: R.Rule } },
    errors: ["rule_not_found"],
  },
  "PATCH /v1/alerts/rules/:id": {
    operationId: "updateRule",
    tag: "Alerts",
    summary: "Change an alert rule (any subset of fields)",
    description: "Editing a pending rule's condition restarts its `for` clock.",
    responses: { 200: { description: "The rule as saved.", json: R.Rule } },
    errors: ["rule_not_found", "invalid_rule", "stream_not_allowed"],
  },
  "POST /v1/alerts/rules/:id/enable": {
    operationId: "enableRule",
    tag: "Alerts",
    summary: "Enable an alert rule",
    responses: { 200: { description: "The rule as saved.", json: R.Rule } },
    errors: ["rule_not_found"],
  },
  "POST /v1/alerts/rules/:id/disable": {
    operationId: "disableRule",
    tag: "Alerts",
    summary: "Disable an alert rule",
    responses: { 200: { description: "The rule as saved.", json: R.Rule } },
    errors: ["rule_not_found"],
  },
  "DELETE /v1/alerts/rules/:id": {
    operationId: "deleteRule",
    tag: "Alerts",
    summary: "Delete an alert rule",
    responses: { 200: { description: "Deleted.", json: R.RuleDeleted } },
    errors: ["rule_not_found"],
  },
  "GET /v1/alerts": {
    operationId: "firingAlerts",
    tag: "Alerts",
    summary: "Alerts firing now",
    responses: { 200: { description: "Across the tenant's streams.", json: R.FiringAlerts } },
  },
  "GET /v1/alerts/events": {
    operationId: "alertEvents",
    tag: "Alerts",
    summary: "Recent transitions with their webhook deliveries",
    description: "Newest first. Older ones are in PostgreSQL's `alert_events`.",
    query: {
      limit: z
        .int()
        .min(1)
        .max(ALERT_EVENTS.maxLimit)
        .default(ALERT_EVENTS.limit)
        .describe(`Transitions returned (a value beyond ${ALERT_EVENTS.maxLimit} is clamped).`),
      stream: streamName.optional().describe("Only this stream's."),
    },
    responses: { 200: { description: "The transitions.", json: R.AlertEventList } },
    errors: ["stream_not_allowed"],
  },
  "GET /v1/alerts/secret": {
    operationId: "webhookSecret",
    tag: "Alerts",
    summary: "The webhook signing secret",
    description: `Deliveries carry \`${SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>\`.`,
    responses: { 200: { description: "The secret and how it signs.", json: R.WebhookSecret } },
    errors: ["restricted_credential"],
  },

  // Sources ------------------------------------------------------------------
  "POST /v1/sources": {
    operationId: "createSource",
    tag: "Sources",
    summary: "Create a pull source",
    description: `One of four kinds (\`http\`, \`postgres\`, \`r2\`, \`kafka\`), each with a \`mapping\` from records to events (JSON paths) and its polling settings. Its secrets (an auth header's value, a connection string) are stored only in the source and never shown again. It polls at once, then every \`interval_ms\`; at most ${MAX_SOURCES_PER_TENANT} sources per tenant. An admin credential without stream prefixes.`,
    responses: { 201: { description: "Created; the first poll is under way.", json: R.Source } },
    errors: ["invalid_source", "source_limit", "restricted_credential", "tenant_not_found"],
  },
  "GET /v1/sources": {
    operationId: "listSources",
    tag: "Sources",
    summary: "The tenant's sources with their status",
    responses: { 200: { description: "Oldest first.", json: R.SourceList } },
    errors: ["restricted_credential"],
  },
  "GET /v1/sources/:source": {
    operationId: "getSource",
    tag: "Sources",
    summary: "One source: its settings (no secrets), state, cursor, lag, counts and last error",
    responses: { 200: { description: "The source.", json: R.Source } },
    errors: ["source_not_found", "restricted_credential"],
  },
  "POST /v1/sources/:source/pause": {
    operationId: "pauseSource",
    tag: "Sources",
    summary: "Stop polling (events already produced are still delivered)",
    responses: { 200: { description: "Paused.", json: R.Source } },
    errors: ["source_not_found", "restricted_credential"],
  },
  "POST /v1/sources/:source/resume": {
    operationId: "resumeSource",
    tag: "Sources",
    summary: "Poll again at once (also a failed source, once its cause is fixed)",
    responses: { 200: { description: "Running.", json: R.Source } },
    errors: ["source_not_found", "restricted_credential"],
  },
  "DELETE /v1/sources/:source": {
    operationId: "deleteSource",
    tag: "Sources",
    summary: "Delete a source",
    description: "Delivers what its outbox holds one last time, then forgets the source, its cursor and its secrets.",
    responses: { 200: { description: "Deleted.", json: R.SourceDeleted } },
    errors: ["source_not_found", "restricted_credential"],
  },

  // Sinks --------------------------------------------------------------------
  "POST /v1/sinks": {
    operationId: "createSink",
    tag: "Sinks",
    summary: "Create a Kafka sink",
    description: `Produces every event the tenant's streams accept (or those of streams under \`streams\` prefixes) to \`topic\` through a Kafka REST Proxy's v3 produce API, read from the raw archive segment by segment (so it follows the archive by about ARCHIVE_FLUSH_MS). The auth header's value is stored only in the sink. At most ${MAX_SINKS_PER_TENANT} sinks per tenant; at most ${SINK_MAX_QUEUED_SEGMENTS} segments wait in one (the oldest are let go past that, counted). An admin credential without stream prefixes.`,
    responses: { 201: { description: "Created; it produces from the next archive write on.", json: R.Sink } },
    errors: ["invalid_sink", "sink_limit", "restricted_credential", "tenant_not_found"],
  },
  "GET /v1/sinks": {
    operationId: "listSinks",
    tag: "Sinks",
    summary: "The tenant's sinks with their status",
    responses: { 200: { description: "Oldest first.", json: R.SinkList } },
    errors: ["restricted_credential"],
  },
  "GET /v1/sinks/:sink": {
    operationId: "getSink",
    tag: "Sinks",
    summary: "One sink: its settings (no secret), state, queue, lag, counts and last error",
    responses: { 200: { description: "The sink.", json: R.Sink } },
    errors: ["sink_not_found", "restricted_credential"],
  },
  "POST /v1/sinks/:sink/pause": {
    operationId: "pauseSink",
    tag: "Sinks",
    summary: "Stop producing (segments keep queueing)",
    responses: { 200: { description: "Paused.", json: R.Sink } },
    errors: ["sink_not_found", "restricted_credential"],
  },
  "POST /v1/sinks/:sink/resume": {
    operationId: "resumeSink",
    tag: "Sinks",
    summary: "Produce again at once (also a failed sink, once its cause is fixed)",
    responses: { 200: { description: "Running.", json: R.Sink } },
    errors: ["sink_not_found", "restricted_credential"],
  },
  "DELETE /v1/sinks/:sink": {
    operationId: "deleteSink",
    tag: "Sinks",
    summary: "Delete a sink",
    description: "Stops it at once; what it had not produced stays in the archive.",
    responses: { 200: { description: "Deleted.", json: R.SinkDeleted } },
    errors: ["sink_not_found", "restricted_credential"],
  },

  // Catalog ------------------------------------------------------------------
  "POST /v1/catalog/:kind": {
    operationId: "createCatalogEntity",
    tag: "Catalog",
    summary: "Add an entity to the catalog",
    description: `The body is the kind's: a product (\`id\`, \`name\`, \`price\`, \`category\`), a user (\`id\`, \`first_name\`, \`last_name\`, \`plan\`, \`country\`) or a course (\`id\`, \`title\`, \`level\`, \`instructor\`). The id is the value events carry in their dims. Unique within the kind: the id, and a product's name, a user's first and last name together, a course's title (case-insensitively, white space trimmed). At most ${MAX_ENTITIES_PER_KIND} entities of a kind per tenant. An admin credential without stream prefixes.`,
    responses: { 201: { description: "Added.", json: R.CatalogEntity } },
    errors: [
      "catalog_kind_not_found",
      "entity_conflict",
      "catalog_limit",
      "restricted_credential",
      "history_disabled",
      "database_unavailable",
    ],
  },
  "GET /v1/catalog/:kind": {
    operationId: "listCatalogEntities",
    tag: "Catalog",
    summary: "A page of the catalog, filtered",
    description: `Ordered by id, ${CATALOG_PAGE.default} a page (at most ${CATALOG_PAGE.max}). Filters match case-insensitively; each kind takes only its own.`,
    query: {
      limit: z.int().min(1).max(CATALOG_PAGE.max).default(CATALOG_PAGE.default).describe("Entities per page."),
      q: z
        .string()
        .optional()
        .describe("A prefix of the product's name, the user's last name or the course's title (case-insensitive)."),
      category: z.string().optional().describe("products only: the category."),
      min_price: z.number().min(0).optional().describe("products only: the lowest price."),
      max_price: z.number().min(0).optional().describe("products only: the highest price."),
      plan: z.string().optional().describe("users only: the plan."),
      country: z.string().optional().describe("users only: the country."),
      level: z.string().optional().describe("courses only: the level."),
      instructor: z.string().optional().describe("courses only: the instructor."),
    },
    responses: { 200: { description: "A page.", json: R.CatalogPage } },
    errors: [
      "catalog_kind_not_found",
      "invalid_request",
      "unknown_parameter",
      "history_disabled",
      "database_unavailable",
    ],
  },
  "GET /v1/catalog/:kind/:entity": {
    operationId: "getCatalogEntity",
    tag: "Catalog",
    summary: "One entity",
    responses: { 200: { description: "The entity.", json: R.CatalogEntity } },
    errors: ["catalog_kind_not_found", "entity_not_found", "history_disabled", "database_unavailable"],
  },
  "PATCH /v1/catalog/:kind/:entity": {
    operationId: "updateCatalogEntity",
    tag: "Catalog",
    summary: "Change an entity's attributes",
    description:
      "Any of the kind's attributes but the id; `null` removes an optional one. The uniqueness rules apply to the result. An admin credential without stream prefixes.",
    responses: { 200: { description: "The entity now.", json: R.CatalogEntity } },
    errors: [
      "catalog_kind_not_found",
      "entity_not_found",
      "entity_conflict",
      "restricted_credential",
      "history_disabled",
      "database_unavailable",
    ],
  },
  "DELETE /v1/catalog/:kind/:entity": {
    operationId: "deleteCatalogEntity",
    tag: "Catalog",
    summary: "Remove an entity",
    description:
      "Only the catalog's row goes: events and history that name the id are left as they are. An admin credential without stream prefixes.",
    responses: { 200: { description: "Removed.", json: R.CatalogDeleted } },
    errors: [
      "catalog_kind_not_found",
      "entity_not_found",
      "restricted_credential",
      "history_disabled",
      "database_unavailable",
    ],
  },

  // Boards (routes-boards.ts) ------------------------------------------------
  ...BOARD_OPERATIONS,

  // Funnels (routes-funnels.ts) ----------------------------------------------
  ...FUNNEL_OPERATIONS,

  // Keys ---------------------------------------------------------------------
  "GET /v1/keys": {
    operationId: "listKeys",
    tag: "Keys",
    summary: "The tenant's keys",
    description: KEYS_NOTE,
    responses: { 200: { description: "Every key, revoked ones included.", json: R.KeyList } },
  },
  "POST /v1/keys": {
    operationId: "createKey",
    tag: "Keys",
    summary: "Create a key",
    description: KEYS_NOTE,
    responses: { 201: { description: "Created; `key` is shown this once.", json: R.NewKey } },
    errors: ["stream_not_allowed"],
  },
  "DELETE /v1/keys/:key": {
    operationId: "revokeKey",
    tag: "Keys",
    summary: "Revoke a key",
    description: "Idempotent. The key stops at once here and everywhere within `KEY_CACHE_TTL_MS`.",
    responses: { 200: { description: "Revoked.", json: R.Key } },
    errors: ["key_not_found"],
  },

  // Sign-in with an identity provider (OIDC) ---------------------------------
  "PUT /v1/auth/oidc": {
    operationId: "setOidcProvider",
    tag: "Auth",
    summary: "Register the tenant's identity provider",
    description:
      "One per tenant. Tokens its issuer signs (asymmetric algorithms only; `iss`, `aud`, `exp`, `nbf` checked with 30 s of tolerance) are then accepted as bearer credentials with the scope (and stream prefixes) of the first role mapping the token holds. Without `jwks_uri` (or with `dashboard`), the issuer's discovery document is read. An admin credential without stream prefixes.",
    responses: { 200: { description: "Registered.", json: R.OidcConfigView } },
    errors: ["restricted_credential", "oidc_discovery_failed", "issuer_taken", "tenant_not_found"],
  },
  "GET /v1/auth/oidc": {
    operationId: "getOidcProvider",
    tag: "Auth",
    summary: "The tenant's identity provider",
    responses: { 200: { description: "As stored, with what is enforced.", json: R.OidcConfigView } },
    errors: ["oidc_not_configured"],
  },
  "DELETE /v1/auth/oidc": {
    operationId: "deleteOidcProvider",
    tag: "Auth",
    summary: "Remove the tenant's identity provider",
    description: "Its tokens stop at once here and everywhere within `KEY_CACHE_TTL_MS`.",
    responses: { 200: { description: "Removed.", json: R.OidcDeleted } },
    errors: ["restricted_credential", "oidc_not_configured"],
  },
  "GET /v1/auth/oidc/public/:tenant": {
    operationId: "getOidcPublicConfig",
    tag: "Auth",
    summary: "What the dashboard needs to sign in to a tenant (no key)",
    description:
      "The provider's authorization and token endpoints, the dashboard's public client id, scopes and audiences: for the authorization code flow with PKCE (S256). Nothing secret.",
    responses: { 200: { description: "The public sign-in configuration.", json: R.OidcPublicConfig } },
    errors: ["oidc_not_configured"],
  },

  // Tenant -------------------------------------------------------------------
  "GET /v1/tenant": {
    operationId: "tenantUsage",
    tag: "Tenant",
    summary: "The tenant's usage against its limits",
    responses: { 200: { description: "Limits and usage.", json: R.TenantUsage } },
  },

  // Operator -----------------------------------------------------------------
  "POST /v1/admin/tenants": {
    operationId: "createTenant",
    tag: "Operator",
    summary: "Create a tenant, with one key of each scope",
    responses: { 201: { description: "Created; the keys are shown this once.", json: R.TenantCreated } },
  },
  "GET /v1/admin/tenants": {
    operationId: "listTenants",
    tag: "Operator",
    summary: "Every tenant",
    responses: { 200: { description: "The tenants.", json: R.TenantList } },
  },
  "POST /v1/admin/tenants/:tenant/keys": {
    operationId: "createTenantKey",
    tag: "Operator",
    summary: "Create a key for a tenant",
    responses: { 201: { description: "Created; `key` is shown this once.", json: R.NewKey } },
    errors: ["tenant_not_found"],
  },
  "DELETE /v1/admin/tenants/:tenant/keys/:key": {
    operationId: "revokeTenantKey",
    tag: "Operator",
    summary: "Revoke a tenant's key",
    responses: { 200: { description: "Revoked.", json: R.Key } },
    errors: ["tenant_not_found", "key_not_found"],
  },
  "PUT /v1/admin/tenants/:tenant/limits": {
    operationId: "setTenantLimits",
    tag: "Operator",
    summary: "Set a tenant's rate limits",
    description: "Requests per second; null restores the default. Every isolate applies it within `KEY_CACHE_TTL_MS`.",
    responses: { 200: { description: "The limits now.", json: R.TenantLimits } },
    errors: ["tenant_not_found"],
  },
  "GET /v1/admin/tenants/:tenant/streams/:name/stats": {
    operationId: "streamStats",
    tag: "Operator",
    summary: "What a stream's actor holds",
    responses: { 200: { description: "Storage, minutes, registers, dedup ids, outbox.", json: R.ActorStats } },
    errors: ["invalid_stream_name", "tenant_not_found"],
  },
};

/** Alert webhooks (the document's `webhooks`): what edgepulse sends to a rule's targets. */
export const WEBHOOKS = {
  alertTransition: {
    summary: "An alert transition",
    description: `A \`POST\` of the transition as JSON, signed: \`${SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>\` (the secret: GET /v1/alerts/secret), with \`Idempotency-Key: <event id>\`. Verify the signature, reject old timestamps, deduplicate on the key; answer 2xx to acknowledge.`,
    headers: {
      [SIGNATURE_HEADER]: "`t=<unix seconds>,v1=<hex HMAC-SHA256>`",
      "idempotency-key": "The transition's id.",
    },
    body: R.AlertEvent,
  },
};
