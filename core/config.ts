/**
 * Limits and defaults, declared once. Validation, the actors and the README
 * all read this table; each entry can be overridden by the Worker var of the
 * same name (wrangler.toml [vars] or `--var`).
 */
export interface ConfigEntry {
  readonly default: number;
  readonly min: number;
  readonly max: number;
  readonly description: string;
}

export const CONFIG = {
  MAX_BODY_BYTES: {
    default: 1_048_576,
    min: 1024,
    max: 16_777_216,
    description: "Largest request body accepted, after gzip decoding (bytes).",
  },
  MAX_EVENTS_PER_BATCH: {
    default: 1000,
    min: 1,
    max: 10_000,
    description: "Most events in one request.",
  },
  MAX_FUTURE_SKEW_MS: {
    default: 300_000,
    min: 0,
    max: 86_400_000,
    description: "How far in the future an event's ts may be (ms).",
  },
  ALLOWED_LATENESS_MS: {
    default: 3_600_000,
    min: 0,
    max: 3_600_000,
    description: "How late an event may arrive, relative to receive time (ms). At most the longest window.",
  },
  FUNNEL_LATENESS_MS: {
    default: 300_000,
    min: 1000,
    max: 3_900_000,
    description:
      "How late a step event may reach its funnel (ms, by the funnel's clock); later ones are counted as late. Each user's kept events span this long.",
  },
  DEDUP_HORIZON_MS: {
    default: 3_600_000,
    min: 0,
    max: 86_400_000,
    description: "How long an event id is remembered for de-duplication (ms).",
  },
  DEDUP_MAX_IDS: {
    default: 500_000,
    min: 1000,
    max: 10_000_000,
    description: "Most event ids remembered per stream; the oldest are forgotten first.",
  },
  KEY_CACHE_TTL_MS: {
    default: 5000,
    min: 0,
    max: 300_000,
    description: "How long a verified API key is cached in a Worker isolate (ms); bounds revocation delay.",
  },
  OIDC_JWKS_TIMEOUT_MS: {
    default: 3000,
    min: 100,
    max: 30_000,
    description:
      "How long fetching an identity provider's JWKS may take before the request is answered 503 identity_provider_unavailable (ms).",
  },
  OIDC_JWKS_COOLDOWN_MS: {
    default: 30_000,
    min: 0,
    max: 600_000,
    description:
      "After a JWKS fetch, how long a token with an unknown key id is refused without fetching the JWKS again (ms); bounds refetches a forged kid can cause.",
  },
  RATE_LIMIT_INGEST_PER_SEC: {
    default: 500,
    min: 1,
    max: 1_000_000,
    description:
      "Default ingest requests per second per tenant (sliding window); per-tenant overrides via the operator API.",
  },
  RATE_LIMIT_READ_PER_SEC: {
    default: 200,
    min: 1,
    max: 1_000_000,
    description: "Default read requests per second per tenant (API and socket upgrades).",
  },
  RATE_LIMIT_TIMEOUT_MS: {
    default: 200,
    min: 10,
    max: 5000,
    description: "How long the Redis rate-limit check may take before the request is let through (fail open).",
  },
  MAX_STREAMS_PER_TENANT: {
    default: 1000,
    min: 1,
    max: 1_000_000,
    description: "Most distinct streams a tenant may have; events for further streams are refused (stream_limit).",
  },
  METRICS_MAX_SERIES: {
    default: 20_000,
    min: 10,
    max: 1_000_000,
    description:
      "Most series on one GET /v1/metrics page; further series (dimension breakdowns first) are left off and counted.",
  },
  METRICS_MAX_BREAKDOWNS: {
    default: 200,
    min: 0,
    max: 10_000,
    description:
      "Most breakdowns (a stream's dimension key or declared set) one GET /v1/metrics runs; the rest are counted as unavailable.",
  },
  ARCHIVE_ENABLED: {
    default: 1,
    min: 0,
    max: 1,
    description:
      "1 keeps every accepted event in the raw archive (the ARCHIVE R2 bucket); 0 keeps none (then no export, replay or sinks).",
  },
  ARCHIVE_FLUSH_MS: {
    default: 10_000,
    min: 50,
    max: 600_000,
    description: "How often an actor writes its accepted events to the raw archive in R2 (ms).",
  },
  ARCHIVE_MAX_PENDING_EVENTS: {
    default: 2_000_000,
    min: 1000,
    max: 50_000_000,
    description:
      "Most accepted events an actor holds for the archive (an R2 outage); past it the stream refuses events (503) rather than lose any.",
  },
  ARCHIVE_RETENTION_DAYS: {
    default: 365,
    min: 1,
    max: 3650,
    description:
      "How long raw archive segments are kept (days, by the events' date); per-tenant overrides via the operator API.",
  },
  BACKFILL_MAX_IDS: {
    default: 5_000_000,
    min: 1000,
    max: 100_000_000,
    description:
      "Most backfilled event ids a stream remembers (so a repeated backfill counts nothing twice); past it, backfilled events with an id are refused (503).",
  },
  MAX_DIM_KEYS: {
    default: 32,
    min: 1,
    max: 256,
    description: "Most distinct dimension keys per stream; further keys are dropped from events and counted.",
  },
  MAX_DIM_VALUES: {
    default: 1000,
    min: 1,
    max: 100_000,
    description: "Most distinct values per dimension key per stream; further values become __other__ and are counted.",
  },
  FLUSH_INTERVAL_MS: {
    default: 2000,
    min: 50,
    max: 600_000,
    description: "How often an actor with changed minutes writes them to PostgreSQL (ms).",
  },
  FLUSH_TIMEOUT_MS: {
    default: 15_000,
    min: 100,
    max: 120_000,
    description:
      "A history write with no answer within this long is abandoned: its connection is dropped and the write retried with backoff (ms). Writes are absolute, so one that lands late is harmless.",
  },
  SHARD_TARGET_RPS: {
    default: 500,
    min: 1,
    max: 100_000,
    description:
      "Ingest requests per second one shard of a stream is sized for; a stream whose load passes it splits over more shards (a stream's config may set its own).",
  },
  SHARD_MAX: {
    default: 16,
    min: 1,
    max: 64,
    description: "Most shards a stream spreads over (1 turns scale-out off; a stream's config may lower it).",
  },
  SHARD_FOLD_AFTER_MS: {
    default: 60_000,
    min: 1000,
    max: 600_000,
    description: "How long a sharded stream's load must stay below what fewer shards serve before it folds back (ms).",
  },
  SHARD_QUEUE_MAX_EVENTS: {
    default: 50_000,
    min: 100,
    max: 1_000_000,
    description:
      "Most events a shard holds waiting for its relay to the stream's primary; past it a shard refuses with stream_unavailable (503, retry), never acknowledging what it cannot relay.",
  },
  SHARD_CACHE_MS: {
    default: 5000,
    min: 0,
    max: 60_000,
    description:
      "How long an isolate trusts what it last learned of a stream's shard count without hearing from the stream (ms); every ingest reply refreshes it.",
  },
  SHARD_WAIT_MS: {
    default: 10_000,
    min: 100,
    max: 60_000,
    description:
      "How long a request waits in a shard to be relayed to the stream's primary before it is refused with stream_unavailable (nothing sent, a retry is safe); one already relayed waits up to 6× as long for its answer (ms).",
  },
  FLUSH_MAX_BACKOFF_MS: {
    default: 300_000,
    min: 1000,
    max: 3_600_000,
    description: "Longest wait between flush retries while PostgreSQL is unreachable (ms).",
  },
  RETENTION_MINUTE_DAYS: {
    default: 7,
    min: 1,
    max: 3650,
    description: "Days of one-minute history kept.",
  },
  RETENTION_HOUR_DAYS: {
    default: 90,
    min: 1,
    max: 3650,
    description: "Days of hourly history kept.",
  },
  RETENTION_DAY_DAYS: {
    default: 730,
    min: 1,
    max: 36_500,
    description: "Days of daily history kept.",
  },
} as const satisfies Record<string, ConfigEntry>;

export type ConfigName = keyof typeof CONFIG;
export type Config = { readonly [K in ConfigName]: number };

/** Reads overrides from a Worker env; ignores values that are not sane numbers in range. */
export function loadConfig(env: Readonly<Record<string, unknown>>): Config {
  const out = {} as Record<ConfigName, number>;
  for (const name of Object.keys(CONFIG) as ConfigName[]) {
    const entry: ConfigEntry = CONFIG[name];
    const raw = env[name];
    const n = typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : Number.NaN;
    out[name] = Number.isFinite(n) && n >= entry.min && n <= entry.max ? Math.floor(n) : entry.default;
  }
  return out;
}

export const DEFAULT_CONFIG: Config = loadConfig({});
