/**
 * History reads for the query engine: one table piece at a time (core/query.ts
 * planPieces), stream rows or one dimension's rows, tenant-scoped, parameters
 * only. When a query needs no sketch, HyperLogLog or summary (count, sum,
 * min, max, mean, rate), PostgreSQL aggregates the rows itself (GROUP BY
 * value and, with a step, a UTC-anchored date_bin), so only a row per value
 * and step comes back; otherwise the rows come back whole and merge exactly.
 */
import { and, eq, gte, inArray, lt, notInArray, type SQL, sql } from "drizzle-orm";
import { type Aggregate, EMPTY_AGGREGATE } from "../core/aggregate";
import { OTHER } from "../core/dims";
import type { Piece } from "../core/query";
import type { Db } from "./maintenance";
import {
  metricsDay,
  metricsDimDay,
  metricsDimHour,
  metricsDimMinute,
  metricsHour,
  metricsMinute,
  rollupState,
} from "./schema";

export interface ReadSpec {
  tenantId: string;
  stream: string;
  /** A dimension's rows, or null for the stream's own rows. */
  dim: string | null;
  /** Only these values (a filter pushed down), or all. */
  values?: string[];
  /** Minute buckets (epoch ms) to leave out: the actor holds newer copies. */
  exclude: number[];
  /** Whole rows (sketch, HyperLogLog, summaries) rather than sums per value and step. */
  full: boolean;
  /** With `full`: also the HyperLogLog registers (up to 32 KiB a row: read only for distinct users). */
  users?: boolean;
  /**
   * With `full` false: also the frequent-items summaries of "__other__" rows (for top-k bounds), as
   * rows with an empty aggregate beside the sums (so nothing is counted twice).
   */
  topk?: boolean;
  /** Output step (ms) for aggregated reads; null: one row per value over the piece. */
  stepMs: number | null;
}

export interface FetchedRow {
  bucket: number;
  value: string | null;
  aggregate: Aggregate;
  hll: Uint8Array | null;
  topkCount: Uint8Array | null;
  topkSum: Uint8Array | null;
}

const tables = {
  stream: { minute: metricsMinute, hour: metricsHour, day: metricsDay },
  dim: { minute: metricsDimMinute, hour: metricsDimHour, day: metricsDimDay },
} as const;

type AnyTable = (typeof tables.stream)[keyof typeof tables.stream] | (typeof tables.dim)[keyof typeof tables.dim];

/** The tenant, stream and piece range every read is held to; minute rows the actor holds newer are left out. */
function pieceWhere(t: AnyTable, spec: ReadSpec, piece: Piece): SQL[] {
  const where = [
    eq(t.tenantId, spec.tenantId),
    eq(t.stream, spec.stream),
    gte(t.bucket, new Date(piece.from)),
    lt(t.bucket, new Date(piece.to)),
  ];
  if (piece.grain === "minute" && spec.exclude.length) {
    where.push(
      notInArray(
        t.bucket,
        spec.exclude.map((m) => new Date(m)),
      ),
    );
  }
  return where;
}

/** The columns PostgreSQL sums itself when no sketch is needed. */
const sumsOf = (t: AnyTable) => ({
  count: sql<string>`sum(${t.count})`,
  valueCount: sql<string>`sum(${t.valueCount})`,
  sum: sql<number>`sum(${t.sum})`,
  min: sql<number | null>`min(${t.min})`,
  max: sql<number | null>`max(${t.max})`,
});

/** The columns of a whole row (the HyperLogLog only when distinct users are asked for). */
const wholeOf = (t: AnyTable, spec: ReadSpec) => ({
  bucket: t.bucket,
  count: t.count,
  valueCount: t.valueCount,
  sum: t.sum,
  min: t.min,
  max: t.max,
  sketch: t.sketch,
  hll: spec.users ? t.hll : sql<Uint8Array | null>`null`,
});

type Whole = {
  bucket: Date;
  count: number | string;
  valueCount: number | string;
  sum: number;
  min: number | null;
  max: number | null;
  sketch: Uint8Array;
  hll: Uint8Array | null;
};

function wholeRow(
  r: Whole,
  value: string | null,
  topkCount: Uint8Array | null = null,
  topkSum: Uint8Array | null = null,
): FetchedRow {
  return {
    bucket: r.bucket.getTime(),
    value,
    aggregate: {
      count: Number(r.count),
      valueCount: Number(r.valueCount),
      sum: r.sum,
      min: r.min,
      max: r.max,
      sketch: r.sketch,
    },
    hll: r.hll,
    topkCount,
    topkSum,
  };
}

/** Rows of one table piece. */
export async function readPiece(db: Db, spec: ReadSpec, piece: Piece): Promise<FetchedRow[]> {
  if (spec.dim === null) {
    const t = tables.stream[piece.grain];
    const where = and(...pieceWhere(t, spec, piece));
    if (spec.full) {
      const rows = await db.select(wholeOf(t, spec)).from(t).where(where);
      return rows.map((r) => wholeRow(r, null));
    }
    if (spec.stepMs === null) {
      const rows = await db.select(sumsOf(t)).from(t).where(where);
      return rows.filter((r) => r.count !== null).map((r) => aggregated({ ...r, bucket: new Date(piece.from) }, null));
    }
    const bin = binOf(t.bucket, spec.stepMs);
    const rows = await db
      .select({ bucket: bin, ...sumsOf(t) })
      .from(t)
      .where(where)
      .groupBy(bin);
    return rows.map((r) => aggregated(r, null));
  }
  const t = tables.dim[piece.grain];
  const clauses = [...pieceWhere(t, spec, piece), eq(t.dim, spec.dim)];
  if (spec.values) clauses.push(inArray(t.value, spec.values));
  const where = and(...clauses);
  if (spec.full) {
    const rows = await db
      .select({ ...wholeOf(t, spec), value: t.value, topkCount: t.topkCount, topkSum: t.topkSum })
      .from(t)
      .where(where);
    return rows.map((r) => wholeRow(r, r.value, r.topkCount, r.topkSum));
  }
  const sums = { value: t.value, ...sumsOf(t) };
  const bin = spec.stepMs === null ? null : binOf(t.bucket, spec.stepMs);
  const out =
    bin === null
      ? (await db.select(sums).from(t).where(where).groupBy(t.value)).map((r) =>
          aggregated({ ...r, bucket: new Date(piece.from) }, r.value),
        )
      : (
          await db
            .select({ bucket: bin, ...sums })
            .from(t)
            .where(where)
            .groupBy(bin, t.value)
        ).map((r) => aggregated(r, r.value));
  if (spec.topk && (spec.values === undefined || spec.values.includes(OTHER))) {
    const summaries = await db
      .select({ bucket: t.bucket, topkCount: t.topkCount, topkSum: t.topkSum })
      .from(t)
      .where(and(...clauses, eq(t.value, OTHER)));
    for (const r of summaries) {
      out.push({
        bucket: r.bucket.getTime(),
        value: OTHER,
        aggregate: EMPTY_AGGREGATE,
        hll: null,
        topkCount: r.topkCount,
        topkSum: r.topkSum,
      });
    }
  }
  return out;
}

/** The step a row falls in, anchored at the Unix epoch in UTC (whatever the session's time zone). */
function binOf(bucket: typeof metricsMinute.bucket | typeof metricsDimMinute.bucket, stepMs: number) {
  const seconds = stepMs / 1000;
  if (!Number.isSafeInteger(seconds) || seconds <= 0) throw new Error(`not a step: ${stepMs} ms`);
  // The interval is inlined (a checked integer), not a parameter: GROUP BY repeats the expression, and
  // PostgreSQL only matches it to the SELECT's when both are the same text (two parameters are not).
  return sql<Date>`date_bin(${sql.raw(`'${seconds} seconds'`)}::interval, ${bucket}, timestamptz '1970-01-01 00:00:00+00')`;
}

function aggregated(
  r: { bucket: Date | string; count: string; valueCount: string; sum: number; min: number | null; max: number | null },
  value: string | null,
): FetchedRow {
  const valueCount = Number(r.valueCount);
  return {
    bucket: new Date(r.bucket).getTime(),
    value,
    aggregate: {
      ...EMPTY_AGGREGATE,
      count: Number(r.count),
      valueCount,
      sum: valueCount > 0 ? Number(r.sum) : 0,
      min: valueCount > 0 ? Number(r.min) : null,
      max: valueCount > 0 ? Number(r.max) : null,
    },
    hll: null,
    topkCount: null,
    topkSum: null,
  };
}

/** Rollup rows are final once every late update to their source rows has been rolled up (see db/history.ts). */
const FINAL_MARGIN_MS = 2 * 3_600_000;

export interface FinalBoundaries {
  hourFinal: number;
  dayFinal: number;
}

/** Until when hour and day rows are final, for stream rows and for dimension rows (one read). */
export async function finalBoundaries(db: Db): Promise<{ stream: FinalBoundaries; dims: FinalBoundaries }> {
  const rows = await db.select().from(rollupState);
  const wm = (name: string) => rows.find((r) => r.name === name)?.watermark.getTime() ?? 0;
  const of = (hour: string, day: string): FinalBoundaries => {
    const hourFinal = Math.floor((wm(hour) - FINAL_MARGIN_MS) / 3_600_000) * 3_600_000;
    const dayFinal = Math.floor(Math.min(wm(day) - FINAL_MARGIN_MS, hourFinal) / 86_400_000) * 86_400_000;
    return { hourFinal, dayFinal };
  };
  return { stream: of("hour", "day"), dims: of("dim_hour", "dim_day") };
}
