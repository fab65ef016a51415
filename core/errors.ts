/**
 * Every error edgepulse returns has a stable code. The HTTP status and a
 * default message live here so the API, the docs and the tests agree.
 */
export const ERRORS = {
  // request-level
  malformed_body: { status: 400, message: "The body could not be parsed." },
  empty_batch: { status: 400, message: "The body holds no events." },
  unsupported_content_type: {
    status: 415,
    message: "Send application/json, application/x-ndjson or text/plain.",
  },
  unsupported_content_encoding: { status: 415, message: "Only gzip and identity encodings are accepted." },
  body_too_large: { status: 413, message: "The body is larger than the configured limit." },
  too_many_events: { status: 413, message: "The batch holds more events than the configured limit." },
  all_events_invalid: { status: 422, message: "No event in the batch was accepted; see details.rejected." },
  missing_key: { status: 401, message: "Send an API key as 'Authorization: Bearer <key>'." },
  invalid_key: { status: 401, message: "The API key is not valid." },
  revoked_key: { status: 401, message: "The API key has been revoked." },
  insufficient_scope: { status: 403, message: "The API key's scope does not allow this." },
  invalid_token: {
    status: 401,
    message: "The bearer token is not valid (signature, issuer, audience, algorithm or key id); see details.reason.",
  },
  token_expired: { status: 401, message: "The bearer token has expired; sign in again for a fresh one." },
  role_not_mapped: {
    status: 403,
    message: "The token is valid but none of its roles maps to a scope in the tenant's OIDC configuration.",
  },
  identity_provider_unavailable: {
    status: 503,
    message: "The identity provider's signing keys (JWKS) could not be fetched; retry shortly.",
  },
  stream_not_allowed: {
    status: 403,
    message: "This credential is limited to stream prefixes that do not cover this stream.",
  },
  restricted_credential: {
    status: 403,
    message: "This credential is limited to stream prefixes; this needs an admin credential without stream_prefixes.",
  },
  invalid_oidc_config: { status: 400, message: "The OIDC configuration is not valid." },
  oidc_not_configured: { status: 404, message: "This tenant has no OIDC identity provider registered." },
  issuer_taken: {
    status: 409,
    message: "Another tenant has registered this issuer with one of these audiences.",
  },
  oidc_discovery_failed: {
    status: 502,
    message: "The issuer's discovery document (/.well-known/openid-configuration) could not be read.",
  },
  admin_disabled: { status: 503, message: "Set the ADMIN_TOKEN secret to use the operator API." },
  invalid_request: { status: 400, message: "The request is not valid." },
  unknown_parameter: { status: 400, message: "The request has a query parameter this endpoint does not take." },
  invalid_window: { status: 400, message: "window must be one of 1m, 5m, 15m, 1h." },
  invalid_stream_name: { status: 400, message: "Stream names match [A-Za-z0-9_.:-]{1,128} and are not only dots." },
  not_found: { status: 404, message: "No such resource." },
  stream_not_found: { status: 404, message: "No events have been received for this stream." },
  tenant_not_found: { status: 404, message: "No such tenant." },
  key_not_found: { status: 404, message: "No such key for this tenant." },
  method_not_allowed: { status: 405, message: "Method not allowed." },
  stream_unavailable: { status: 503, message: "The stream's actor could not be reached; retry the request." },
  rate_limited: { status: 429, message: "Too many requests for this tenant; see Retry-After." },
  body_too_deep: { status: 400, message: "The JSON nests deeper than events can." },
  invalid_rule: { status: 400, message: "The alert rule is not valid." },
  rule_not_found: { status: 404, message: "No such alert rule for this tenant." },
  upgrade_required: { status: 426, message: "This endpoint is a WebSocket: connect with Upgrade: websocket." },
  history_disabled: { status: 503, message: "History is off: set DATABASE_URL to a PostgreSQL (Neon) database." },
  archive_disabled: { status: 503, message: "The raw archive is off: bind an R2 bucket as ARCHIVE in wrangler.toml." },
  replay_running: { status: 409, message: "A replay of this stream is running; wait for it to finish." },
  invalid_step: { status: 400, message: "step must be one of 1m, 1h, 1d." },
  invalid_range: { status: 400, message: "from and to must be timestamps with from before to." },
  range_too_large: { status: 400, message: "The range holds too many steps; use a coarser step or a shorter range." },
  invalid_query: { status: 400, message: "The query is not valid; see message and details." },
  invalid_config: { status: 400, message: "The stream configuration is not valid." },
  invalid_source: { status: 400, message: "The source is not valid." },
  source_not_found: { status: 404, message: "No such source for this tenant." },
  source_limit: { status: 409, message: "The tenant has the most sources allowed; delete one first." },
  invalid_sink: { status: 400, message: "The sink is not valid." },
  sink_not_found: { status: 404, message: "No such sink for this tenant." },
  sink_limit: { status: 409, message: "The tenant has the most sinks allowed; delete one first." },
  invalid_entity: { status: 400, message: "The catalog entity is not valid." },
  catalog_kind_not_found: { status: 404, message: "No such catalog kind: use products, users or courses." },
  entity_not_found: { status: 404, message: "No such entity in this tenant's catalog." },
  entity_conflict: {
    status: 409,
    message: "Another entity of this kind has this id, or the same name (first and last name, title).",
  },
  catalog_limit: { status: 409, message: "The tenant's catalog holds the most entities of this kind allowed." },
  invalid_board: { status: 400, message: "The board is not valid." },
  board_not_found: { status: 404, message: "No such board for this tenant." },
  board_conflict: {
    status: 409,
    message: "The board was changed since this version was read; read it again and reapply the change.",
  },
  board_limit: { status: 409, message: "The tenant has the most boards allowed; delete one first." },
  database_unavailable: {
    status: 503,
    message: "PostgreSQL could not be reached; retry the request shortly.",
  },
  catalog_unavailable: {
    status: 503,
    message: "The catalog (in PostgreSQL) could not be read; retry the request shortly.",
  },
  invalid_funnel: { status: 400, message: "The funnel is not valid." },
  funnel_not_found: { status: 404, message: "No such funnel for this tenant." },
  funnel_conflict: {
    status: 409,
    message: "A different funnel has this name; funnels cannot be changed: delete it first or choose another name.",
  },
  funnel_limit: { status: 409, message: "The tenant has the most funnels allowed; delete one first." },
  internal_error: { status: 500, message: "Something went wrong on our side." },
} as const;

export type ErrorCode = keyof typeof ERRORS;

/** An error with a stable code, thrown by runtime-free code; the API renders it like any client error. */
export class CodedError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;

  constructor(code: ErrorCode, message?: string, details?: unknown) {
    super(message ?? ERRORS[code].message);
    this.name = "CodedError";
    this.code = code;
    this.details = details;
  }
}

/** Per-event rejection codes, reported in receipts and counted per stream. */
export const EVENT_ERRORS = {
  not_an_object: "Each event must be a JSON object.",
  malformed_json: "This NDJSON line is not valid JSON.",
  too_deep: "This NDJSON line nests deeper than an event can (event → dims).",
  unknown_field: "Unknown field.",
  invalid_name: "name is required and must match [A-Za-z0-9_.:-]{1,128} (and not be only dots).",
  invalid_id: "id must be a non-empty string of at most 128 characters.",
  invalid_timestamp: "ts must be epoch milliseconds or an ISO-8601 string with a time zone.",
  invalid_value: "value must be a finite number between -1e15 and 1e15.",
  invalid_user: "user must be a non-empty string of at most 256 characters.",
  invalid_dims: "dims must be an object of at most 16 string values.",
  too_late: "The event is older than the allowed lateness.",
  too_far_in_future: "The event's ts is too far in the future.",
  stream_unavailable: "The stream's actor could not be reached; resend this event (with an id, resending is safe).",
  stream_limit:
    "The tenant has reached its limit of distinct streams (MAX_STREAMS_PER_TENANT); send to an existing stream.",
  stream_not_allowed:
    "This credential is limited to stream prefixes that do not cover this event's name; the event was not stored.",
} as const;

export type EventErrorCode = keyof typeof EVENT_ERRORS;

/** Event-time limits a rejection message states (the deployment's own ALLOWED_LATENESS_MS and MAX_FUTURE_SKEW_MS). */
export interface TimeLimits {
  ALLOWED_LATENESS_MS: number;
  MAX_FUTURE_SKEW_MS: number;
}

const duration = (ms: number): string =>
  ms % 3_600_000 === 0 && ms > 0
    ? `${ms / 3_600_000} h`
    : ms % 60_000 === 0 && ms > 0
      ? `${ms / 60_000} min`
      : `${ms / 1000} s`;

/** A rejection's message, with the limit it refers to where there is one. */
export function eventErrorMessage(code: EventErrorCode, limits: TimeLimits): string {
  if (code === "too_late") {
    return `The event is older than the allowed lateness: ts must be at most ${duration(limits.ALLOWED_LATENESS_MS)} before the server's clock (ALLOWED_LATENESS_MS).`;
  }
  if (code === "too_far_in_future") {
    return `The event's ts is too far in the future: at most ${duration(limits.MAX_FUTURE_SKEW_MS)} ahead of the server's clock (MAX_FUTURE_SKEW_MS); check the sender's clock.`;
  }
  return EVENT_ERRORS[code];
}

export interface Rejection {
  index: number;
  code: EventErrorCode;
  message: string;
}
