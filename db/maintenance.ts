/**
 * Partition upkeep, retention and rollups: run by the Worker's cron (and
 * partitions also by `npm run db:migrate`). Works with any drizzle
 * PostgreSQL database (neon-serverless in the Worker, node-postgres in tools).
 */
import { and, eq, gte, lt, sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { mergeRows, type StoredAggregate, upsertAggregates } from "./history";
import { type AggregateTable, metricsDay, metricsHour, metricsMinute, rollupState } from "./schema";

// biome-ignore lint/suspicious/noExplicitAny: any drizzle PostgreSQL driver
export type Db = PgDatabase<PgQueryResultHKT, any>;

const DAY = 86_400_000;
export const PARTITIONED = ["metrics_minute", "metrics_hour", "metrics_day"] as const;

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
  source: AggregateTable;
  target: AggregateTable;
  unit: "hour" | "day";
}

const STEPS: RollupStep[] = [
  { name: "hour", source: metricsMinute, target: metricsHour, unit: "hour" },
  { name: "day", source: metricsHour, target: metricsDay, unit: "day" },
];

/**
 * Recomputes every hour (and then day) that has a source row updated since
 * the last run, from all of its source rows: sums added, sketches and HLLs
 * merged, never averaged. Absolute upserts, so reruns are harmless.
 */
export async function rollup(db: Db): Promise<{ hours: number; days: number }> {
  const out = { hours: 0, days: 0 };
  for (const step of STEPS) {
    const runStart = new Date();
    const state = await db.select().from(rollupState).where(eq(rollupState.name, step.name));
    const since = state[0]?.watermark ?? new Date(0);
    const touched = await db
      .selectDistinct({
        tenantId: step.source.tenantId,
        stream: step.source.stream,
        period: sql<number>`floor(extract(epoch from ${step.source.bucket}) / ${step.unit === "hour" ? 3600 : 86400})::int`,
      })
      .from(step.source)
      .where(gte(step.source.updatedAt, since));
    for (const t of touched) {
      const size = step.unit === "hour" ? 3_600_000 : DAY;
      const start = new Date(Number(t.period) * size);
      const end = new Date(start.getTime() + size);
      const rows = (await db
        .select()
        .from(step.source)
        .where(
          and(
            eq(step.source.tenantId, t.tenantId),
            eq(step.source.stream, t.stream),
            gte(step.source.bucket, start),
            lt(step.source.bucket, end),
          ),
        )) as StoredAggregate[];
      await upsertAggregates(db, step.target, [
        { ...mergeRows(rows), tenantId: t.tenantId, stream: t.stream, bucket: start },
      ]);
    }
    if (step.name === "hour") out.hours = touched.length;
    else out.days = touched.length;
    const watermark = new Date(runStart.getTime() - WATERMARK_SAFETY_MS);
    await db
      .insert(rollupState)
      .values({ name: step.name, watermark })
      .onConflictDoUpdate({ target: rollupState.name, set: { watermark } });
  }
  return out;
}
