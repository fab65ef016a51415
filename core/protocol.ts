/** Shapes exchanged between the Worker and its actors (typed RPC), and returned by the API. */

import type { EventErrorCode } from "./errors.ts";
import type { StreamEvent } from "./event.ts";
import type { Scope } from "./keys.ts";
import type { ScalingStatus } from "./shards.ts";
import type { Aggregates, WindowName } from "./window.ts";

export interface IngestRequest {
  tenant: string;
  stream: string;
  events: StreamEvent[];
  /** Events of this stream that the collector already rejected, by code, so the stream counts them. */
  invalid?: Partial<Record<EventErrorCode, number>>;
  /** For a request that may be delivered again (queued ingest): its `invalid` counts are counted once per key. */
  key?: string;
  /** The shard (1..N) the collector sent it through, when the stream is spread over shards. */
  shard?: number;
}

export interface IngestResult {
  accepted: number;
  duplicates: number;
  /** Indices into IngestRequest.events. */
  rejected: Array<{ i: number; code: EventErrorCode }>;
  /** The stream's shard count when it replied (core/shards.ts): the collector routes by it. */
  shards?: number;
}

/** Every event of a request refused as unavailable (the collector answers 503 with Retry-After). */
export const unavailable = (req: IngestRequest): IngestResult => ({
  accepted: 0,
  duplicates: 0,
  rejected: req.events.map((_, i) => ({ i, code: "stream_unavailable" as const })),
});

export interface StreamCounters {
  accepted: number;
  duplicates: number;
  late: number;
  future: number;
  /** Every rejection of an event that named this stream, by code. */
  rejected: Partial<Record<EventErrorCode, number>>;
  /** Dimension values beyond MAX_DIM_VALUES per key, folded into "__other__". */
  dims_overflow?: number;
  /** Dimensions dropped because the stream already has MAX_DIM_KEYS distinct keys. */
  dim_keys_overflow?: number;
  /** Events accepted on the backfill path (into history and the archive, not the live windows). */
  backfilled?: number;
}

/** Why history is lagging, as API clients see it: a category and a short message (details stay in server logs). */
export interface FlushError {
  category: "unreachable" | "timeout" | "rejected" | "unknown";
  message: string;
}

export interface FlushStatus {
  /** Whether history (PostgreSQL) is configured. */
  enabled: boolean;
  /** Ended minutes whose history row is waiting to be written. */
  pending_minutes: number;
  /** Minutes still open (served from the actor; written once they end). */
  open_minutes: number;
  /** Consecutive failed flushes (0 when healthy). */
  failures: number;
  last_flush_at: string | null;
  last_error: FlushError | null;
  /** Minute rows written since this actor instance started. */
  minutes_flushed: number;
  /** Minutes given up after waiting past the outbox bound (a PostgreSQL outage longer than a day). */
  dropped_minutes: number;
  /** Ended minutes whose dimension rows are waiting to be written. */
  dimension_minutes_pending: number;
}

export interface StreamSnapshot {
  stream: string;
  now: string;
  windows: Partial<Record<WindowName, Aggregates>>;
  counters: StreamCounters;
  first_event_at: string | null;
  last_event_at: string | null;
  history: FlushStatus;
  /** The stream's shards, its load and the last scaling decisions (core/shards.ts). */
  scaling: ScalingStatus;
  /** The raw archive: events waiting for R2, segments written, the last error. */
  archive: ArchiveStatus;
  /** Funnel steps the stream feeds, and its step-event batches waiting for the funnel shards. */
  funnels: { taps: number; pending: number; dropped: number };
}

export interface ArchiveStatus {
  enabled: boolean;
  /** Events accepted and not yet in a written segment. */
  pending_events: number;
  segments_written: number;
  last_write_at: string | null;
  last_error: string | null;
}

export interface KeyInfo {
  id: string;
  tenant_id: string;
  scope: Scope;
  name: string;
  prefix: string;
  /** Stream-name prefixes the key is limited to (core/keys.ts streamAllowed); null: every stream. */
  stream_prefixes: string[] | null;
  created_at: string;
  revoked_at: string | null;
}

export interface Tenant {
  id: string;
  name: string;
  created_at: string;
}

/** What a verified key (or OIDC token, workers/lib/oidc.ts) grants. */
export interface KeyGrant {
  /** The key's id, or `oidc:<sub>` for a token. */
  keyId: string;
  tenantId: string;
  scope: Scope;
  revoked: boolean;
  /**
   * Stream-name prefixes the credential is limited to (core/keys.ts streamAllowed); null or absent (grants
   * cached by earlier releases): every stream of the tenant.
   */
  streamPrefixes?: string[] | null;
  /** Per-tenant rate limits (requests/s); null fields fall back to the configured defaults. */
  limits: TenantLimits | null;
}

export interface TenantLimits {
  ingest_per_sec: number | null;
  read_per_sec: number | null;
}
