/**
 * History in PostgreSQL. One row per (tenant, stream, period) for minutes,
 * hours and days, each holding the period's full aggregate: counts and sums
 * as numbers, the DDSketch and HyperLogLog serialised so ranges merge
 * exactly. All three tables are range-partitioned on `bucket` (see the
 * migration): minutes by day, hours by month, days by year; retention drops
 * whole partitions.
 */
import {
  bigint,
  customType,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
} from "drizzle-orm/pg-core";

export const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({
  dataType: () => "bytea",
});

/**
 * A period's aggregate. The sketch and HyperLogLog merge exactly across any range; the precomputed
 * p50…p99 and distinct_users let plain-SQL tools (Grafana, Metabase, psql) chart a row without
 * decoding them (NULL on rows written before they existed).
 */
const measures = {
  count: bigint("count", { mode: "number" }).notNull(),
  valueCount: bigint("value_count", { mode: "number" }).notNull(),
  sum: doublePrecision("sum").notNull(),
  min: doublePrecision("min"),
  max: doublePrecision("max"),
  sketch: bytea("sketch").notNull(),
  hll: bytea("hll").notNull(),
  p50: doublePrecision("p50"),
  p90: doublePrecision("p90"),
  p95: doublePrecision("p95"),
  p99: doublePrecision("p99"),
  distinctUsers: bigint("distinct_users", { mode: "number" }),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
};

const aggregate = {
  tenantId: text("tenant_id").notNull(),
  stream: text("stream").notNull(),
  bucket: timestamp("bucket", { withTimezone: true, mode: "date" }).notNull(),
  ...measures,
};

/**
 * A period's aggregate for one value of a dimension: a dim key ("country") or a declared set
 * ("country+plan", whose value is the JSON array of its keys' values). "__other__" holds what went
 * past the dimension's value budget, with frequent-items summaries (by count and by sum) of those values.
 */
const dimAggregate = {
  tenantId: text("tenant_id").notNull(),
  stream: text("stream").notNull(),
  dim: text("dim").notNull(),
  value: text("value").notNull(),
  bucket: timestamp("bucket", { withTimezone: true, mode: "date" }).notNull(),
  ...measures,
  topkCount: bytea("topk_count"),
  topkSum: bytea("topk_sum"),
};

export const metricsMinute = pgTable("metrics_minute", aggregate, (t) => [
  primaryKey({ columns: [t.tenantId, t.stream, t.bucket] }),
  index("metrics_minute_updated_at_idx").on(t.updatedAt),
]);
export const metricsHour = pgTable("metrics_hour", aggregate, (t) => [
  primaryKey({ columns: [t.tenantId, t.stream, t.bucket] }),
  index("metrics_hour_updated_at_idx").on(t.updatedAt),
]);
export const metricsDay = pgTable("metrics_day", aggregate, (t) => [
  primaryKey({ columns: [t.tenantId, t.stream, t.bucket] }),
  index("metrics_day_updated_at_idx").on(t.updatedAt),
]);

/**
 * The key leads with the time after the dimension, so one index serves the upserts (its columns are the
 * conflict target, in any order) and every read (a time range of one dimension, optionally some values):
 * a planner with stale statistics cannot pick a scan over all of a dimension's values instead.
 */
const dimTable = (name: string) =>
  pgTable(name, dimAggregate, (t) => [
    primaryKey({ name: `${name}_pk`, columns: [t.tenantId, t.stream, t.dim, t.bucket, t.value] }),
    index(`${name}_updated_at_idx`).on(t.updatedAt),
  ]);

export const metricsDimMinute = dimTable("metrics_dim_minute");
export const metricsDimHour = dimTable("metrics_dim_hour");
export const metricsDimDay = dimTable("metrics_dim_day");

/** Rollup progress: rows of the source table updated after `watermark` are rolled up on the next run. */
export const rollupState = pgTable("rollup_state", {
  name: text("name").primaryKey(),
  watermark: timestamp("watermark", { withTimezone: true, mode: "date" }).notNull(),
});

export type AggregateTable = typeof metricsMinute | typeof metricsHour | typeof metricsDay;
export type DimTable = typeof metricsDimMinute | typeof metricsDimHour | typeof metricsDimDay;
export type AggregateRow = typeof metricsMinute.$inferInsert;

/** Every alert transition (pending, firing, resolved, cancelled), with its webhook deliveries. */
export const alertEvents = pgTable(
  "alert_events",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    stream: text("stream").notNull(),
    ruleId: text("rule_id").notNull(),
    ruleName: text("rule_name").notNull(),
    kind: text("kind").notNull(),
    at: timestamp("at", { withTimezone: true, mode: "date" }).notNull(),
    value: doublePrecision("value"),
    labels: jsonb("labels").$type<Record<string, string>>().notNull(),
    deliveries: jsonb("deliveries").$type<unknown[]>().notNull(),
  },
  (t) => [index("alert_events_tenant_at_idx").on(t.tenantId, t.at)],
);

/**
 * Backfill batches applied to history (the stream actor's outbox entries): a batch's minute deltas are
 * merged into the minute rows in the same transaction that records it here, so a retried flush merges
 * nothing twice. Rows are kept BACKFILL_BATCH_DAYS (the cron deletes older ones; an actor retries a batch
 * for at most a day).
 */
export const backfillBatches = pgTable(
  "backfill_batches",
  {
    tenantId: text("tenant_id").notNull(),
    stream: text("stream").notNull(),
    batch: text("batch").notNull(),
    appliedAt: timestamp("applied_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.stream, t.batch] }),
    index("backfill_batches_applied_idx").on(t.appliedAt),
  ],
);

/**
 * The catalog (core/catalog.ts): the entities dimension values name (products, users, courses), one row each,
 * keyed by the id events carry in their dims. `data` holds the kind's attributes; `unique_key` is what makes
 * two entities of a kind the same one (a product's name, a user's first and last name, a course's title,
 * normalised), unique within the tenant's catalog of that kind. Nothing else references these rows: deleting
 * one leaves the analytics as they are.
 */
export const catalogEntities = pgTable(
  "catalog_entities",
  {
    tenantId: text("tenant_id").notNull(),
    kind: text("kind").notNull(),
    id: text("id").notNull(),
    data: jsonb("data").$type<Record<string, string | number>>().notNull(),
    uniqueKey: text("unique_key").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.kind, t.id] }),
    unique("catalog_entities_unique_key").on(t.tenantId, t.kind, t.uniqueKey),
  ],
);

/**
 * Boards (core/boards.ts): a tenant's saved dashboards, one row each. `panels` holds the panels in display
 * order (each with its query, or its funnel), at most MAX_PANELS and MAX_BOARD_BYTES; `version` is bumped by
 * every change (a replace names the version it read: a conditional UPDATE … WHERE version = $v). At most
 * MAX_BOARDS_PER_TENANT rows per tenant.
 */
export const boards = pgTable(
  "boards",
  {
    tenantId: text("tenant_id").notNull(),
    id: text("id").notNull(),
    name: text("name").notNull(),
    description: text("description"),
    panels: jsonb("panels").$type<unknown[]>().notNull(),
    version: integer("version").notNull().default(1),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.id] })],
);
