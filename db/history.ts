/**
 * Reading and writing period aggregates. Rows carry serialised sketches, so
 * any set of rows merges into an exact aggregate of their union: sums add,
 * min/max compare, DDSketches add bin-wise, HyperLogLogs take register-wise max.
 */
import { and, asc, eq, gte, lt, sql } from "drizzle-orm";
import { decode as decodeSketch, encode as encodeSketch, merge as mergeSketches } from "../core/ddsketch";
import { HISTORY_STEP_MS, type HistoryStepName } from "../core/history-query";
import { PeriodHll } from "../core/hll";
import { type Figures, figures } from "../core/window";
import type { Db } from "./maintenance";
import { type AggregateTable, metricsDay, metricsHour, metricsMinute, rollupState } from "./schema";

export type StoredAggregate = typeof metricsMinute.$inferSelect;
export type AggregateValues = Omit<StoredAggregate, "tenantId" | "stream" | "bucket" | "updatedAt">;
export type AggregateInsert = AggregateValues & { tenantId: string; stream: string; bucket: Date };

const UPSERT_CHUNK = 500;

/** Sets rows to absolute values (insert, or overwrite on conflict): retries and replays are harmless. */
export async function upsertAggregates(db: Db, table: AggregateTable, rows: AggregateInsert[]): Promise<void> {
  for (let i = 0; i < rows.length; i += UPSERT_CHUNK) {
    await db
      .insert(table)
      .values(rows.slice(i, i + UPSERT_CHUNK))
      .onConflictDoUpdate({
        target: [table.tenantId, table.stream, table.bucket],
        set: {
          count: sql`excluded.count`,
          valueCount: sql`excluded.value_count`,
          sum: sql`excluded.sum`,
          min: sql`excluded.min`,
          max: sql`excluded.max`,
          sketch: sql`excluded.sketch`,
          hll: sql`excluded.hll`,
          updatedAt: sql`now()`,
        },
      });
  }
}

export function mergeRows(rows: AggregateValues[]): AggregateValues {
  let count = 0;
  let valueCount = 0;
  let sum = 0;
  let min: number | null = null;
  let max: number | null = null;
  for (const r of rows) {
    count += Number(r.count);
    valueCount += Number(r.valueCount);
    sum += r.sum;
    if (r.min !== null && (min === null || r.min < min)) min = r.min;
    if (r.max !== null && (max === null || r.max > max)) max = r.max;
  }
  return {
    count,
    valueCount,
    sum,
    min,
    max,
    sketch: encodeSketch(mergeSketches(rows.map((r) => decodeSketch(r.sketch)))),
    hll: PeriodHll.union(rows.map((r) => PeriodHll.decode(r.hll))).encode(),
  };
}

export interface HistoryPoint extends Figures {
  t: string;
}

export function toPoint(bucket: Date, stepSeconds: number, a: AggregateValues): HistoryPoint {
  const has = a.valueCount > 0 && a.min !== null && a.max !== null;
  const b = {
    count: a.count,
    valueCount: a.valueCount,
    sum: a.sum,
    min: has ? (a.min as number) : Number.POSITIVE_INFINITY,
    max: has ? (a.max as number) : Number.NEGATIVE_INFINITY,
    sketch: decodeSketch(a.sketch),
  };
  return { t: bucket.toISOString(), ...figures(b, stepSeconds, PeriodHll.decode(a.hll).estimate()) };
}

/** One tenant's stream's rows of one table in [from, to), oldest first. */
export async function readRows(
  db: Db,
  table: AggregateTable,
  tenantId: string,
  stream: string,
  from: Date,
  to: Date,
): Promise<StoredAggregate[]> {
  if (from >= to) return [];
  return (await db
    .select()
    .from(table)
    .where(and(eq(table.tenantId, tenantId), eq(table.stream, stream), gte(table.bucket, from), lt(table.bucket, to)))
    .orderBy(asc(table.bucket))) as StoredAggregate[];
}

/**
 * Rollup rows are final only once every late update to their source rows
 * has been rolled up: minutes can change for up to the allowed lateness (1 h)
 * after they end, plus flush delay. Periods newer than this margin before the
 * rollup watermark are merged from the finer table instead.
 */
const FINAL_MARGIN_MS = 2 * 3_600_000;

async function watermark(db: Db, name: string): Promise<number> {
  const rows = await db.select().from(rollupState).where(eq(rollupState.name, name));
  return rows[0]?.watermark.getTime() ?? 0;
}

type Periods = Map<number, AggregateValues>;

function groupInto(source: Periods, size: number, into: Periods): void {
  const groups = new Map<number, AggregateValues[]>();
  for (const [t, v] of source) {
    const k = Math.floor(t / size) * size;
    const g = groups.get(k);
    if (g) g.push(v);
    else groups.set(k, [v]);
  }
  for (const [k, g] of groups) into.set(k, mergeRows(g));
}

const rowsToPeriods = (rows: StoredAggregate[], into: Periods = new Map()): Periods => {
  for (const r of rows) into.set(r.bucket.getTime(), r);
  return into;
};

/** The tenant's stream aggregated per step over [from, to): coarsest exact source for each part of the range. */
export async function queryHistory(
  db: Db,
  tenantId: string,
  stream: string,
  from: Date,
  to: Date,
  step: HistoryStepName,
): Promise<HistoryPoint[]> {
  const minutes = async (a: number, b: number) =>
    rowsToPeriods(await readRows(db, metricsMinute, tenantId, stream, new Date(a), new Date(b)));
  const hourFinal =
    Math.floor(((await watermark(db, "hour")) - FINAL_MARGIN_MS) / HISTORY_STEP_MS["1h"]) * HISTORY_STEP_MS["1h"];
  const hours = async (a: number, b: number): Promise<Periods> => {
    const split = Math.min(Math.max(a, hourFinal), b);
    const out = rowsToPeriods(await readRows(db, metricsHour, tenantId, stream, new Date(a), new Date(split)));
    if (split < b) groupInto(await minutes(split, b), HISTORY_STEP_MS["1h"], out);
    return out;
  };
  const days = async (a: number, b: number): Promise<Periods> => {
    const dayWm = (await watermark(db, "day")) - FINAL_MARGIN_MS;
    const dayFinal = Math.floor(Math.min(dayWm, hourFinal) / HISTORY_STEP_MS["1d"]) * HISTORY_STEP_MS["1d"];
    const split = Math.min(Math.max(a, dayFinal), b);
    const out = rowsToPeriods(await readRows(db, metricsDay, tenantId, stream, new Date(a), new Date(split)));
    if (split < b) groupInto(await hours(split, b), HISTORY_STEP_MS["1d"], out);
    return out;
  };
  const size = HISTORY_STEP_MS[step];
  const a = Math.floor(from.getTime() / size) * size;
  const b = Math.ceil(to.getTime() / size) * size;
  const periods = step === "1m" ? await minutes(a, b) : step === "1h" ? await hours(a, b) : await days(a, b);
  return [...periods.entries()].sort((x, y) => x[0] - y[0]).map(([t, v]) => toPoint(new Date(t), size / 1000, v));
}
