/**
 * Partition upkeep, retention and rollups: run by the Worker's cron (and
 * partitions also by `npm run db:migrate`). Works with any drizzle
 * PostgreSQL database (neon-serverless in the Worker, node-postgres in tools).
 */
import { and, eq, gte, lt, sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import {
  mergePeriods,
  mergeTopk,
  periodOfRow,
  type StoredAggregate,
  type StoredDimAggregate,
  upsertDimPeriods,
  upsertPeriods,
} from "./history";
import {
  type AggregateTable,
  type DimTable,
  metricsDay,
  metricsDimDay,
  metricsDimHour,
  metricsDimMinute,
  metricsHour,
  metricsMinute,
  rollupState,
} from "./schema";

// biome-ignore lint/suspicious/noExplicitAny: any drizzle PostgreSQL driver
export type Db = PgDatabase<PgQueryResultHKT, any>;

const DAY = 86_400_000;
export const PARTITIONED = [
  "metrics_minute",
  "metrics_hour",
  "metrics_day",
  "metrics_dim_minute",
  "metrics_dim_hour",
  "metrics_dim_day",
] as const;

/** Creates partitions from yesterday to a week ahead (hours: this and next month; days: this and next year). */
export async function ensurePartitions(db: Db, now: Date): Promise<void> {
  for (const table of PARTITIONED) {
    await db.execute(
      sql`SELECT edgepulse_ensure_partitions(${table}, ${new Date(now.getTime() - DAY)}, ${new Date(now.getTime() + 7 * DAY)})`,
    );
  }
}

export interface Retention {
  minuteDays: number;
  hourDays: number;
  dayDays: number;
}

/** Drops whole partitions older than each table's retention. Returns how many were dropped. */
export async function applyRetention(db: Db, now: Date, r: Retention): Promise<number> {
  let dropped = 0;
  const plan: Array<[string, number]> = [
    ["metrics_minute", r.minuteDays],
    ["metrics_hour", r.hourDays],
    ["metrics_day", r.dayDays],
    ["metrics_dim_minute", r.minuteDays],
    ["metrics_dim_hour", r.hourDays],
    ["metrics_dim_day", r.dayDays],
  ];
  for (const [table, days] of plan) {
    const res = (await db.execute(
      sql`SELECT edgepulse_drop_partitions(${table}, ${new Date(now.getTime() - days * DAY)}) AS n`,
    )) as unknown as { rows: Array<{ n: number }> };
    dropped += Number(res.rows[0]?.n ?? 0);
  }
  return dropped;
}

/** Rows written by concurrent transactions may carry a timestamp slightly before the run: look back this far. */
const WATERMARK_SAFETY_MS = 60_000;

interface RollupStep {
  name: string;
  unit: "hour" | "day";
  /** Stream rows, or dimension rows (grouped by dimension and value within each stream). */
  kind: "stream" | "dim";
  source: AggregateTable | DimTable;
  target: AggregateTable | DimTable;
}

const STEPS: RollupStep[] = [
  { name: "hour", unit: "hour", kind: "stream", source: metricsMinute, target: metricsHour },
  { name: "day", unit: "day", kind: "stream", source: metricsHour, target: metricsDay },
  { name: "dim_hour", unit: "hour", kind: "dim", source: metricsDimMinute, target: metricsDimHour },
  { name: "dim_day", unit: "day", kind: "dim", source: metricsDimHour, target: metricsDimDay },
];

const byTime = (x: { bucket: Date }, y: { bucket: Date }) => x.bucket.getTime() - y.bucket.getTime();

/**
 * Recomputes every hour (and then day) that has a source row updated since
 * the last run, from all of its source rows: sums added, sketches and HLLs
 * (and the frequent-items summaries of "__other__") merged, never averaged.
 * Absolute upserts, so reruns are harmless. Dimension rows are recomputed per
 * touched (stream, period): one read, then chunked upserts of every value.
 */
export async function rollup(db: Db): Promise<{ hours: number; days: number; dimHours: number; dimDays: number }> {
  const out = { hours: 0, days: 0, dimHours: 0, dimDays: 0 };
  for (const step of STEPS) {
    const runStart = new Date();
    const state = await db.select().from(rollupState).where(eq(rollupState.name, step.name));
    const since = state[0]?.watermark ?? new Date(0);
    const src = step.source;
    const touched = await db
      .selectDistinct({
        tenantId: src.tenantId,
        stream: src.stream,
        period: sql<number>`floor(extract(epoch from ${src.bucket}) / ${step.unit === "hour" ? 3600 : 86400})::int`,
      })
      .from(src)
      .where(gte(src.updatedAt, since));
    const size = step.unit === "hour" ? 3_600_000 : DAY;
    for (const t of touched) {
      const start = new Date(Number(t.period) * size);
      const end = new Date(start.getTime() + size);
      const where = and(
        eq(src.tenantId, t.tenantId),
        eq(src.stream, t.stream),
        gte(src.bucket, start),
        lt(src.bucket, end),
      );
      if (step.kind === "stream") {
        // Ascending time, so float sums do not depend on the order rows come back in.
        const rows = ((await db.select().from(src).where(where)) as StoredAggregate[]).sort(byTime);
        await upsertPeriods(db, step.target as AggregateTable, [
          { ...mergePeriods(rows.map(periodOfRow)), tenantId: t.tenantId, stream: t.stream, bucket: start },
        ]);
      } else {
        const rows = ((await db.select().from(src).where(where)) as StoredDimAggregate[]).sort(byTime);
        const groups = new Map<string, StoredDimAggregate[]>();
        for (const r of rows) {
          const k = JSON.stringify([r.dim, r.value]);
          const g = groups.get(k);
          if (g) g.push(r);
          else groups.set(k, [r]);
        }
        await upsertDimPeriods(
          db,
          step.target as DimTable,
          [...groups.values()].map((g) => ({
            ...mergePeriods(g.map(periodOfRow)),
            tenantId: t.tenantId,
            stream: t.stream,
            bucket: start,
            dim: g[0].dim,
            value: g[0].value,
            topkCount: mergeTopk(g.map((r) => r.topkCount)),
            topkSum: mergeTopk(g.map((r) => r.topkSum)),
          })),
        );
      }
    }
    const key = { hour: "hours", day: "days", dim_hour: "dimHours", dim_day: "dimDays" }[step.name] as keyof typeof out;
    out[key] = touched.length;
    const watermark = new Date(runStart.getTime() - WATERMARK_SAFETY_MS);
    await db
      .insert(rollupState)
      .values({ name: step.name, watermark })
      .onConflictDoUpdate({ target: rollupState.name, set: { watermark } });
  }
  return out;
}
