/**
 * Reading and writing period aggregates. A row is an aggregate in the shape
 * of core/aggregate.ts plus the period's serialised HyperLogLog, so any set
 * of rows merges into the exact aggregate of their union: sums add, min/max
 * compare, DDSketches add bin-wise, HyperLogLogs take register-wise max.
 */
import { type AnyColumn, and, asc, eq, gte, inArray, lt, notExists, sql } from "drizzle-orm";
import { Accumulator, type Aggregate, type Figures, figuresOf } from "../core/aggregate";
import { HISTORY_STEP_MS, type HistoryStepName } from "../core/history-query";
import { distinctOfEncoded, PeriodHll } from "../core/hll";
import type { AlertEvent } from "../core/live";
import { FrequentItems } from "../core/topk";
import type { Db } from "./maintenance";
import {
  type AggregateTable,
  alertEvents,
  backfillBatches,
  type DimTable,
  metricsDay,
  metricsDimDay,
  metricsDimHour,
  metricsDimMinute,
  metricsHour,
  metricsMinute,
  rollupState,
} from "./schema";

export type StoredAggregate = typeof metricsMinute.$inferSelect;

/** One period's aggregate and distinct-user registers. */
export interface Period {
  aggregate: Aggregate;
  hll: Uint8Array;
}

export interface PeriodInsert extends Period {
  tenantId: string;
  stream: string;
  bucket: Date;
}

/** A minute as an actor holds it: the absolute aggregate, and registers to union with the row's. */
export interface MinutePeriod extends Period {
  /** Start of the minute, epoch ms. */
  bucket: number;
}

export function periodOfRow(r: StoredAggregate | StoredDimAggregate): Period {
  return {
    aggregate: {
      count: Number(r.count),
      valueCount: Number(r.valueCount),
      sum: r.sum,
      min: r.min,
      max: r.max,
      sketch: r.sketch,
    },
    hll: r.hll,
  };
}

/** The columns every row carries beside its sketches: p50…p99 and distinct users, for plain-SQL readers. */
export function precomputed(p: Period) {
  const distinct = distinctOfEncoded(p.hll);
  const f = figuresOf(p.aggregate, 60, distinct);
  return { p50: f.p50, p90: f.p90, p95: f.p95, p99: f.p99, distinctUsers: distinct };
}

function measureValues(p: Period) {
  const a = p.aggregate;
  return {
    count: a.count,
    valueCount: a.valueCount,
    sum: a.sum,
    min: a.min,
    max: a.max,
    sketch: a.sketch,
    hll: p.hll,
    ...precomputed(p),
  };
}

function rowValues(p: PeriodInsert) {
  return { tenantId: p.tenantId, stream: p.stream, bucket: p.bucket, ...measureValues(p) };
}

/** Set on conflict: every measure, absolute. */
const measureSet = {
  count: sql`excluded.count`,
  valueCount: sql`excluded.value_count`,
  sum: sql`excluded.sum`,
  min: sql`excluded.min`,
  max: sql`excluded.max`,
  sketch: sql`excluded.sketch`,
  hll: sql`excluded.hll`,
  p50: sql`excluded.p50`,
  p90: sql`excluded.p90`,
  p95: sql`excluded.p95`,
  p99: sql`excluded.p99`,
  distinctUsers: sql`excluded.distinct_users`,
  updatedAt: sql`now()`,
};

const UPSERT_CHUNK = 500;

/** Sets rows to absolute values (insert, or overwrite on conflict): retries and replays are harmless. */
export async function upsertPeriods(db: Db, table: AggregateTable, rows: PeriodInsert[]): Promise<void> {
  for (let i = 0; i < rows.length; i += UPSERT_CHUNK) {
    await db
      .insert(table)
      .values(rows.slice(i, i + UPSERT_CHUNK).map(rowValues))
      .onConflictDoUpdate({ target: [table.tenantId, table.stream, table.bucket], set: measureSet });
  }
}

/** One dimension value's period: the dimension ("country", or a set "country+plan") and the value. */
export interface DimPeriodInsert extends PeriodInsert {
  dim: string;
  value: string;
  /** For "__other__": frequent-items summaries of the folded values, by count and by sum. */
  topkCount?: Uint8Array | null;
  topkSum?: Uint8Array | null;
}

export type StoredDimAggregate = typeof metricsDimMinute.$inferSelect;

/** Sets dimension rows to absolute values, like upsertPeriods. */
export async function upsertDimPeriods(db: Db, table: DimTable, rows: DimPeriodInsert[]): Promise<void> {
  for (let i = 0; i < rows.length; i += UPSERT_CHUNK) {
    await db
      .insert(table)
      .values(
        rows.slice(i, i + UPSERT_CHUNK).map((p) => ({
          ...rowValues(p),
          dim: p.dim,
          value: p.value,
          topkCount: p.topkCount ?? null,
          topkSum: p.topkSum ?? null,
        })),
      )
      .onConflictDoUpdate({
        target: [table.tenantId, table.stream, table.dim, table.value, table.bucket],
        set: { ...measureSet, topkCount: sql`excluded.topk_count`, topkSum: sql`excluded.topk_sum` },
      });
  }
}

/** Rows of some dimensions of one stream in [from, to), optionally only some values. */
export async function readDimRows(
  db: Db,
  table: DimTable,
  tenantId: string,
  stream: string,
  dims: string[],
  from: Date,
  to: Date,
  values?: string[],
): Promise<StoredDimAggregate[]> {
  if (from >= to || dims.length === 0) return [];
  const where = [
    eq(table.tenantId, tenantId),
    eq(table.stream, stream),
    inArray(table.dim, dims),
    gte(table.bucket, from),
    lt(table.bucket, to),
  ];
  if (values !== undefined) where.push(inArray(table.value, values));
  return (await db
    .select()
    .from(table)
    .where(and(...where))) as StoredDimAggregate[];
}

/** Merges frequent-items summaries (encoded), or null if none. */
export function mergeTopk(parts: Array<Uint8Array | null | undefined>): Uint8Array | null {
  let out: FrequentItems | null = null;
  for (const p of parts) {
    if (!p) continue;
    const s = FrequentItems.decode(p);
    out = out === null ? s : out.merge(s);
  }
  return out?.encode() ?? null;
}

/** The stream's minute rows at the buckets of `rows` (the merges below read them before writing). */
const minutesAt = (tenantId: string, stream: string, rows: MinutePeriod[]) =>
  and(
    eq(metricsMinute.tenantId, tenantId),
    eq(metricsMinute.stream, stream),
    inArray(
      metricsMinute.bucket,
      rows.map((r) => new Date(r.bucket)),
    ),
  );

/**
 * Writes an actor's minutes: the aggregate is absolute; the HyperLogLog is unioned with the row's
 * (the actor may hold only the registers raised since the minute was last written). The actor is the
 * only writer of its rows, so read-then-write needs no lock.
 */
export async function upsertMinutesMergingUsers(
  db: Db,
  tenantId: string,
  stream: string,
  rows: MinutePeriod[],
): Promise<void> {
  for (let i = 0; i < rows.length; i += UPSERT_CHUNK) {
    const chunk = rows.slice(i, i + UPSERT_CHUNK);
    const existing = await db
      .select({ bucket: metricsMinute.bucket, hll: metricsMinute.hll })
      .from(metricsMinute)
      .where(minutesAt(tenantId, stream, chunk));
    const before = new Map(existing.map((r) => [r.bucket.getTime(), r.hll]));
    await upsertPeriods(
      db,
      metricsMinute,
      chunk.map((r) => {
        const old = before.get(r.bucket);
        const hll = old ? PeriodHll.union([PeriodHll.decode(old), PeriodHll.decode(r.hll)]).encode() : r.hll;
        return { tenantId, stream, bucket: new Date(r.bucket), aggregate: r.aggregate, hll };
      }),
    );
  }
}

/**
 * Merges a backfill batch's minute deltas into the minute rows, exactly once: the batch key is recorded
 * in the same transaction (a retried batch finds it and merges nothing). Partitions for the minutes, and
 * for the hours and days the rollup will write, are created first. Returns whether it merged.
 */
export async function applyBackfill(
  db: Db,
  tenantId: string,
  stream: string,
  batch: string,
  rows: MinutePeriod[],
): Promise<boolean> {
  if (rows.length === 0) return false;
  return db.transaction(async (tx) => {
    const first = new Date(Math.min(...rows.map((r) => r.bucket)));
    const last = new Date(Math.max(...rows.map((r) => r.bucket)) + 60_000);
    for (const table of ["metrics_minute", "metrics_hour", "metrics_day"]) {
      await tx.execute(sql`SELECT edgepulse_ensure_partitions(${table}, ${first}, ${last})`);
    }
    const recorded = await tx
      .insert(backfillBatches)
      .values({ tenantId, stream, batch })
      .onConflictDoNothing()
      .returning({ batch: backfillBatches.batch });
    if (recorded.length === 0) return false;
    for (let i = 0; i < rows.length; i += UPSERT_CHUNK) {
      const chunk = rows.slice(i, i + UPSERT_CHUNK);
      const existing = (await tx
        .select()
        .from(metricsMinute)
        .where(minutesAt(tenantId, stream, chunk))
        .for("update")) as StoredAggregate[];
      const before = new Map(existing.map((r) => [r.bucket.getTime(), periodOfRow(r)]));
      await upsertPeriods(
        tx as unknown as Db,
        metricsMinute,
        chunk.map((r) => {
          const old = before.get(r.bucket);
          const merged = old ? mergePeriods([old, r]) : { aggregate: r.aggregate, hll: r.hll };
          return { tenantId, stream, bucket: new Date(r.bucket), ...merged };
        }),
      );
    }
    return true;
  });
}

/**
 * A replay's dimension rows (db side of durable-objects/metric-actor/replay.ts): the dimensions it rebuilt
 * (their rows over the range are replaced; other dimensions' rows are left alone) and the new minute rows,
 * in batches (a minute's rows at a time, so a long range is never held at once).
 */
export interface DimReplacement {
  dims: string[];
  batches: Iterable<DimPeriodInsert[]>;
}

/**
 * A replay's swap: the stream's minute rows over [from, to) become exactly `rows`, and with `dims` its
 * dimension minute rows of those dimensions become exactly the rows given, in one transaction (readers
 * see the old rows or the new, never a mix). Hour and day rows wholly inside the range that no longer
 * have a minute (for dimension rows: a minute of their dimension and value) are deleted; the others are
 * redone by the next rollup (their minutes' updated_at). Returns the dimension rows written.
 */
export async function replaceMinutes(
  db: Db,
  tenantId: string,
  stream: string,
  from: number,
  to: number,
  rows: MinutePeriod[],
  dims?: DimReplacement,
): Promise<number> {
  return db.transaction(async (tx) => {
    const t = tx as unknown as Db;
    for (const table of ["metrics_minute", "metrics_hour", "metrics_day"]) {
      await tx.execute(sql`SELECT edgepulse_ensure_partitions(${table}, ${new Date(from)}, ${new Date(to)})`);
    }
    const scope = (table: AggregateTable, lo: number, hi: number) =>
      and(
        eq(table.tenantId, tenantId),
        eq(table.stream, stream),
        gte(table.bucket, new Date(lo)),
        lt(table.bucket, new Date(hi)),
      );
    await tx.delete(metricsMinute).where(scope(metricsMinute, from, to));
    await upsertPeriods(
      t,
      metricsMinute,
      rows.map((r) => ({ tenantId, stream, bucket: new Date(r.bucket), aggregate: r.aggregate, hll: r.hll })),
    );
    // Hour and day rows touching the range (its partial first and last periods too) that no longer have a
    // minute anywhere in their period: the rollup, which works from minutes, would never revisit them.
    const m = metricsMinute;
    for (const [table, unit, size] of [
      [metricsHour, "1 hour", 3_600_000],
      [metricsDay, "1 day", 86_400_000],
    ] as const) {
      const minutes = tx
        .select({ one: sql`1` })
        .from(m)
        .where(and(eq(m.tenantId, tenantId), eq(m.stream, stream), withinPeriod(m.bucket, table.bucket, unit)));
      const [lo, hi] = periodsTouching(from, to, size);
      await tx.delete(table).where(and(scope(table, lo, hi), notExists(minutes)));
    }
    return dims ? await replaceDimMinutes(t, tenantId, stream, from, to, dims) : 0;
  });
}

/** Minute buckets inside the period that starts at `period` and lasts `unit` ("1 hour", "1 day"). */
const withinPeriod = (minute: AnyColumn, period: AnyColumn, unit: "1 hour" | "1 day") =>
  and(gte(minute, period), lt(minute, sql`${period} + ${sql.raw(`interval '${unit}'`)}`));

/** Start of the first and end of the last period of `size` ms that touch [from, to). */
const periodsTouching = (from: number, to: number, size: number): [number, number] => [
  Math.floor(from / size) * size,
  Math.ceil(to / size) * size,
];

/** The dimension half of a replay's swap; call inside replaceMinutes's transaction. */
async function replaceDimMinutes(
  tx: Db,
  tenantId: string,
  stream: string,
  from: number,
  to: number,
  r: DimReplacement,
): Promise<number> {
  if (r.dims.length === 0) return 0;
  for (const table of ["metrics_dim_minute", "metrics_dim_hour", "metrics_dim_day"]) {
    await tx.execute(sql`SELECT edgepulse_ensure_partitions(${table}, ${new Date(from)}, ${new Date(to)})`);
  }
  const scope = (table: DimTable, lo: number, hi: number) =>
    and(
      eq(table.tenantId, tenantId),
      eq(table.stream, stream),
      inArray(table.dim, r.dims),
      gte(table.bucket, new Date(lo)),
      lt(table.bucket, new Date(hi)),
    );
  await tx.delete(metricsDimMinute).where(scope(metricsDimMinute, from, to));
  let written = 0;
  let chunk: DimPeriodInsert[] = [];
  const put = async () => {
    await upsertDimPeriods(tx, metricsDimMinute, chunk);
    written += chunk.length;
    chunk = [];
  };
  for (const batch of r.batches) {
    for (const row of batch) chunk.push(row);
    if (chunk.length >= UPSERT_CHUNK) await put();
  }
  if (chunk.length > 0) await put();
  const m = metricsDimMinute;
  for (const [table, unit, size] of [
    [metricsDimHour, "1 hour", 3_600_000],
    [metricsDimDay, "1 day", 86_400_000],
  ] as const) {
    // Partial first and last periods too: the check looks at the whole period's minutes.
    const [lo, hi] = periodsTouching(from, to, size);
    const minutes = tx
      .select({ one: sql`1` })
      .from(m)
      .where(
        and(
          eq(m.tenantId, tenantId),
          eq(m.stream, stream),
          eq(m.dim, table.dim),
          eq(m.value, table.value),
          withinPeriod(m.bucket, table.bucket, unit),
        ),
      );
    await tx.delete(table).where(and(scope(table, lo, hi), notExists(minutes)));
  }
  return written;
}

/** Alert transitions with their webhook deliveries; a repeated write updates the deliveries. */
export async function upsertAlertEvents(
  db: Db,
  tenantId: string,
  events: Array<{ event: AlertEvent; deliveries: unknown[] }>,
): Promise<void> {
  for (const { event: e, deliveries } of events) {
    await db
      .insert(alertEvents)
      .values({
        id: e.id,
        tenantId,
        stream: e.stream,
        ruleId: e.rule_id,
        ruleName: e.rule_name,
        kind: e.kind,
        at: new Date(e.at),
        value: e.value,
        labels: e.labels,
        deliveries,
      })
      .onConflictDoUpdate({ target: alertEvents.id, set: { deliveries } });
  }
}

export function mergePeriods(parts: Period[]): Period {
  const acc = new Accumulator();
  for (const p of parts) acc.add(p.aggregate);
  return { aggregate: acc.toAggregate(), hll: PeriodHll.union(parts.map((p) => PeriodHll.decode(p.hll))).encode() };
}

export interface HistoryPoint extends Figures {
  t: string;
}

export function toPoint(bucket: Date, stepSeconds: number, p: Period): HistoryPoint {
  return {
    t: bucket.toISOString(),
    ...new Accumulator().add(p.aggregate).figures(stepSeconds, PeriodHll.decode(p.hll).estimate()),
  };
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

type Periods = Map<number, Period>;

function groupInto(source: Periods, size: number, into: Periods): void {
  const groups = new Map<number, Period[]>();
  for (const [t, v] of [...source].sort((a, b) => a[0] - b[0])) {
    const k = Math.floor(t / size) * size;
    const g = groups.get(k);
    if (g) g.push(v);
    else groups.set(k, [v]);
  }
  for (const [k, g] of groups) into.set(k, mergePeriods(g));
}

const rowsToPeriods = (rows: StoredAggregate[], into: Periods = new Map()): Periods => {
  for (const r of rows) into.set(r.bucket.getTime(), periodOfRow(r));
  return into;
};

/**
 * The tenant's stream aggregated per step over [from, to): the coarsest exact source for each part of
 * the range, and, at the seam, the minutes the actor holds (`live`: its open and not yet written
 * minutes), which replace PostgreSQL's aggregate and union its distinct-user registers.
 */
export async function queryHistory(
  db: Db,
  tenantId: string,
  stream: string,
  from: Date,
  to: Date,
  step: HistoryStepName,
  live: MinutePeriod[] = [],
): Promise<HistoryPoint[]> {
  const minutes = async (a: number, b: number) => {
    const out = rowsToPeriods(await readRows(db, metricsMinute, tenantId, stream, new Date(a), new Date(b)));
    for (const l of live) {
      if (l.bucket < a || l.bucket >= b) continue;
      const old = out.get(l.bucket);
      out.set(l.bucket, {
        aggregate: l.aggregate,
        hll: old ? PeriodHll.union([PeriodHll.decode(old.hll), PeriodHll.decode(l.hll)]).encode() : l.hll,
      });
    }
    return out;
  };
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
  return [...periods.entries()]
    .filter(([, p]) => p.aggregate.count > 0)
    .sort((x, y) => x[0] - y[0])
    .map(([t, v]) => toPoint(new Date(t), size / 1000, v));
}
