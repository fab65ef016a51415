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
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
} from "drizzle-orm/pg-core";

export const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({
  dataType: () => "bytea",
});

const aggregate = {
  tenantId: text("tenant_id").notNull(),
  stream: text("stream").notNull(),
  bucket: timestamp("bucket", { withTimezone: true, mode: "date" }).notNull(),
  count: bigint("count", { mode: "number" }).notNull(),
  valueCount: bigint("value_count", { mode: "number" }).notNull(),
  sum: doublePrecision("sum").notNull(),
  min: doublePrecision("min"),
  max: doublePrecision("max"),
  sketch: bytea("sketch").notNull(),
  hll: bytea("hll").notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
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

/** Rollup progress: rows of the source table updated after `watermark` are rolled up on the next run. */
export const rollupState = pgTable("rollup_state", {
  name: text("name").primaryKey(),
  watermark: timestamp("watermark", { withTimezone: true, mode: "date" }).notNull(),
});

export type AggregateTable = typeof metricsMinute | typeof metricsHour | typeof metricsDay;
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
