/**
 * Runs a query (core/query.ts) for one tenant: for each stream, history rows
 * from PostgreSQL (the coarsest final table for each part of the range, only
 * the columns the measures need, aggregated in PostgreSQL when no sketch is
 * needed) and the rows the stream's actor holds that PostgreSQL does not have
 * in full yet (the open minute, minutes not yet written). The actor's rows
 * are absolute and newer, so PostgreSQL's rows for those minutes are left
 * out: nothing is counted twice or lost at the seam. If PostgreSQL or an
 * actor cannot be reached, the answer holds what could be read and
 * `meta.missing` says what is not in it. Grouping by a catalog attribute
 * (workers/query/attributes.ts) is the exception: without the catalog its
 * groups would be wrong, so the query is refused (503).
 *
 * Every read is scoped to the caller's tenant: actors are addressed by
 * `${tenant}/${stream}` and every SQL condition starts with the tenant id.
 */
import { Accumulator, type Aggregate } from "../../core/aggregate";
import { estimateSparse } from "../../core/hll";
import {
  chooseSource,
  type DimensionInfo,
  evaluate,
  groupKeyOf,
  type Measure,
  planPieces,
  QUERY_STEPS,
  type Query,
  type QueryResult,
  refs,
} from "../../core/query";
import { isoTime } from "../../core/time";
import { entityLabels } from "../../db/catalog";
import { type Db, historyEnabled, openDb } from "../../db/client";
import type { MinutePeriod } from "../../db/history";
import { type FetchedRow, type FinalBoundaries, finalBoundaries, readPiece } from "../../db/query";
import type { DimRow } from "../../durable-objects/metric-actor/dims";
import { actor } from "../lib/registry";
import { AttributeMap, assertCatalogConfigured } from "./attributes";
import { type AliasPlan, type Cell, Cells } from "./cells";

/** Measures that need the sketch, and the one that needs the HyperLogLog. */
const SKETCH_MEASURES = new Set<Measure>(["p50", "p90", "p95", "p99"]);

/** A group in the ranking; estimated rows come from the summary of values folded into __other__. */
interface Ranked {
  key: string;
  group: string[];
  values: Array<number | null>;
  low?: number;
  high?: number;
  estimated?: boolean;
  guaranteed?: boolean;
}

interface Missing {
  stream: string;
  part: "history" | "live";
  reason: string;
}

/** Adds the __none__ group: per bucket and over the range, the stream's count and sum minus the groups'. */
function addResidual(cells: Cells, totals: Cells, alias: string): void {
  const none = JSON.stringify(["__none__"]);
  const residual = (stream: Cell | undefined, groups: Map<string, Map<string, Cell>> | undefined): Cell | null => {
    if (!stream) return null;
    const r: Cell = { acc: new Accumulator(), users: null, topkCount: null, topkSum: null, residual: true };
    r.acc.count = stream.acc.count;
    r.acc.valueCount = stream.acc.valueCount;
    r.acc.sum = stream.acc.sum;
    for (const per of groups?.values() ?? []) {
      const c = per.get(alias);
      if (!c) continue;
      r.acc.count -= c.acc.count;
      r.acc.valueCount -= c.acc.valueCount;
      r.acc.sum -= c.acc.sum;
    }
    return r.acc.count > 0 ? r : null;
  };
  let any = false;
  for (const [bucket, per] of totals.byBucket) {
    const r = residual(per.get("[]")?.get(alias), cells.byBucket.get(bucket));
    if (!r) continue;
    any = true;
    let b = cells.byBucket.get(bucket);
    if (!b) {
      b = new Map();
      cells.byBucket.set(bucket, b);
    }
    b.set(none, new Map([[alias, r]]));
  }
  const whole = residual(totals.totals.get("[]")?.get(alias), cells.totals);
  if (any && whole) {
    cells.totals.set(none, new Map([[alias, whole]]));
    cells.groups.set(none, ["__none__"]);
  }
}

const RESIDUAL_MEASURES = new Set<Measure>(["count", "value_count", "rate", "sum", "mean"]);

const figure = (c: Cell | undefined, m: Measure, seconds: number): number | null => {
  if (c === undefined) return m === "count" || m === "value_count" || m === "rate" ? 0 : null;
  if (c.residual) {
    if (!RESIDUAL_MEASURES.has(m)) return null;
    const a = c.acc;
    if (m === "count") return a.count;
    if (m === "value_count") return a.valueCount;
    if (m === "rate") return a.count / seconds;
    if (a.valueCount === 0) return null;
    return m === "sum" ? a.sum : a.sum / a.valueCount;
  }
  const distinct = c.users ? (c.users.size ? estimateSparse(c.users.values()) : 0) : 0;
  const f = c.acc.figures(seconds, distinct);
  if (m === "distinct_users" && c.users === null) return null;
  return f[m];
};

/** Connections a query may use at once: the pieces of a range are read side by side. */
const QUERY_CONNECTIONS = 4;

/**
 * One query's shared reads: a PostgreSQL pool opened on first use and ended once, the rollups' final
 * boundaries read once, what was read from where (meta.sources, meta.statistics), what is missing.
 */
class Run {
  readonly started = Date.now();
  readonly missing: Missing[] = [];
  readonly sources = new Set<string>();
  readonly stats = { actor_calls: 0, actor_rows: 0, postgres_queries: 0, postgres_rows: 0 };
  #pool: ReturnType<typeof openDb> | null = null;
  #bounds: ReturnType<typeof finalBoundaries> | null = null;

  constructor(
    readonly env: Env,
    readonly tenantId: string,
  ) {}

  get db(): Db {
    this.#pool ??= openDb(this.env, QUERY_CONNECTIONS);
    return this.#pool.db;
  }

  async bounds(dims: boolean): Promise<FinalBoundaries> {
    if (this.#bounds === null) {
      this.stats.postgres_queries++;
      this.#bounds = finalBoundaries(this.db);
    }
    const b = await this.#bounds;
    return dims ? b.dims : b.stream;
  }

  async close(): Promise<void> {
    await this.#pool?.pool.end().catch(() => {});
  }
}

/** Reads one stream's rows for [from, to) into `cells`; with `only`, just those values of the plan's source. */
async function gather(
  run: Run,
  q: Query,
  plan: AliasPlan,
  from: number,
  to: number,
  cells: Cells,
  only?: string[],
): Promise<{ live: boolean }> {
  const { env, tenantId, missing, sources } = run;
  const stepMs = q.step ? QUERY_STEPS[q.step] : null;
  const bucketOf = (t: number) => (stepMs ? Math.floor(t / stepMs) * stepMs : from);
  const fold = (
    bucket: number,
    value: string | null,
    aggregate: Aggregate,
    hll: Uint8Array | null,
    topk: [Uint8Array | null, Uint8Array | null],
  ) => {
    let group: string[] = [];
    if (plan.source) {
      const g = groupKeyOf(q, plan.source, value as string);
      if (g === null) return;
      if (g === "other") {
        cells.otherUnfiltered += aggregate.count;
        return;
      }
      group = g;
    }
    cells.add(plan, bucketOf(bucket), group, aggregate, hll, topk, value);
  };
  // The actor first: its minutes are newer than PostgreSQL's copies.
  let held: number[] = [];
  let live = false;
  const stub = actor(env, tenantId, plan.stream);
  run.stats.actor_calls++;
  try {
    if (plan.source) {
      const rows = (await stub.dimRows(from, to, [plan.source.name], only)) as DimRow[];
      run.stats.actor_rows += rows.length;
      for (const r of rows) fold(r.bucket, r.value, r.aggregate, r.hll, [r.topkCount, r.topkSum]);
      held = [...new Set(rows.map((r) => r.bucket))];
    } else {
      const rows = (await stub.streamRows(from, to)) as MinutePeriod[];
      run.stats.actor_rows += rows.length;
      for (const r of rows) fold(r.bucket, null, r.aggregate, r.hll, [null, null]);
      held = rows.map((r) => r.bucket);
    }
    live = true;
    sources.add("actor");
  } catch (err) {
    missing.push({
      stream: plan.stream,
      part: "live",
      reason: `the stream's actor could not be reached (${(err as Error).name})`,
    });
  }
  if (!historyEnabled(env)) return { live };
  try {
    const { hourFinal, dayFinal } = await run.bounds(plan.source !== null);
    const pieces = planPieces(from, to, q.step, held, hourFinal, dayFinal);
    const values = only ?? pushdown(q, plan.source);
    const spec = {
      tenantId,
      stream: plan.stream,
      dim: plan.source?.name ?? null,
      values,
      exclude: held,
      full: plan.full,
      users: plan.distinct,
      topk: plan.topk,
      stepMs,
    };
    // Side by side, folded in range order (float sums do not depend on which read answered first).
    const read: FetchedRow[][] = await Promise.all(pieces.map((piece) => readPiece(run.db, spec, piece)));
    pieces.forEach((piece, i) => {
      run.stats.postgres_queries += plan.topk && !plan.full && plan.source ? 2 : 1;
      run.stats.postgres_rows += read[i].length;
      sources.add(`postgres:metrics_${plan.source ? "dim_" : ""}${piece.grain}`);
      for (const r of read[i]) fold(r.bucket, r.value, r.aggregate, r.hll, [r.topkCount, r.topkSum]);
    });
  } catch (err) {
    missing.push({
      stream: plan.stream,
      part: "history",
      reason: `PostgreSQL could not be read (${(err as Error).name}); only minutes the actor still holds are included`,
    });
  }
  return { live };
}

/** Values to ask PostgreSQL for when a single-key source is filtered by eq/in on that key (plus __other__). */
function pushdown(q: Query, source: DimensionInfo | null): string[] | undefined {
  if (!source || source.keys.length !== 1) return undefined;
  const f = q.filters.find((x) => x.dim === source.keys[0] && (x.op === "eq" || x.op === "in"));
  return f ? [...f.values, "__other__"] : undefined;
}

/** Group values that name no entity: they are never looked up, their label is null. */
const UNLABELLED = new Set(["__other__", "__none__"]);

/** What meta.labels says of one labelled key. */
interface LabelMeta {
  kind: string;
  /** Distinct values of the key among the groups returned (the ones looked up). */
  values: number;
  /** How many of them the catalog holds. */
  found: number;
  /** Why the catalog was not read (every label of the key is then null). */
  reason?: string;
}

/**
 * The labels of the returned groups' values, per labelled key: one catalog read per key, bounded by the
 * groups returned, scoped to the tenant. Without a database, or when it cannot be read, the labels are null
 * and meta says why: the figures are answered all the same.
 */
async function lookUpLabels(
  run: Run,
  q: Query,
  selected: Ranked[],
): Promise<{ found: Array<Map<string, string>>; meta: Record<string, LabelMeta> }> {
  const meta: Record<string, LabelMeta> = {};
  const found = await Promise.all(
    q.labels.map(async ({ key, kind }) => {
      const at = q.groupBy.indexOf(key);
      const ids = [...new Set(selected.map((r) => r.group[at]))].filter((v) => v !== undefined && !UNLABELLED.has(v));
      const m: LabelMeta = { kind, values: ids.length, found: 0 };
      meta[key] = m;
      if (ids.length === 0) return new Map<string, string>();
      if (!historyEnabled(run.env)) {
        m.reason = "the catalog is in PostgreSQL and no database is configured (DATABASE_URL)";
        return new Map<string, string>();
      }
      try {
        run.stats.postgres_queries++;
        const labels = await entityLabels(run.db, run.tenantId, kind, ids);
        run.stats.postgres_rows += labels.size;
        m.found = labels.size;
        return labels;
      } catch (err) {
        m.reason = `the catalog could not be read (${(err as Error).name})`;
        return new Map<string, string>();
      }
    }),
  );
  return { found, meta };
}

export async function executeQuery(env: Env, tenantId: string, q: Query): Promise<QueryResult> {
  const run = new Run(env, tenantId);
  try {
    return await execute(run, q);
  } finally {
    await run.close();
  }
}

async function execute(run: Run, q: Query): Promise<QueryResult> {
  const { env, tenantId, missing, sources } = run;
  assertCatalogConfigured(env, q);
  const dimsOf = await Promise.all(
    q.streams.map((s) =>
      q.groupBy.length || q.filters.length
        ? (actor(env, tenantId, s.stream).dimensions() as Promise<DimensionInfo[]>)
        : null,
    ),
  );
  const plans: AliasPlan[] = [];
  for (const [i, s] of q.streams.entries()) {
    const needs = q.needs.get(s.alias) ?? new Set<Measure>();
    const dims = dimsOf[i];
    const source = dims ? chooseSource(q, dims, s.stream) : null;
    const sketch = [...needs].some((m) => SKETCH_MEASURES.has(m));
    const distinct = needs.has("distinct_users");
    const orderRef = q.order ? q.outputs.find((o) => o.name === q.order?.output)?.expr : undefined;
    // Not when grouping by an attribute: groups are ranked only once merged, so every one is read whole.
    const topk =
      source !== null &&
      q.attributes.length === 0 &&
      q.groupBy.length === 1 &&
      orderRef?.kind === "ref" &&
      (orderRef.measure === "count" || orderRef.measure === "sum");
    plans.push({ alias: s.alias, stream: s.stream, source, full: sketch || distinct, distinct, topk });
  }
  // Two phases when the ranking needs only sums (count, sum, min, max, mean, rate) but another measure
  // needs whole rows (a percentile, distinct users): every group is ranked on sums PostgreSQL adds up
  // itself, then whole rows are read only for the groups selected (a 24 h top 10 merges ten values'
  // sketches, not a thousand).
  const orderOutput = q.order ? q.outputs.find((o) => o.name === q.order?.output) : undefined;
  const twoPhase =
    q.groupBy.length > 0 &&
    q.attributes.length === 0 &&
    orderOutput !== undefined &&
    refs(orderOutput.expr).every((r) => !SKETCH_MEASURES.has(r.measure) && r.measure !== "distinct_users") &&
    plans.some((p) => p.full && p.source !== null);
  const rankPlans = twoPhase ? plans.map((p) => ({ ...p, full: false, distinct: false })) : plans;
  let cells = new Cells();
  // Events without the grouped key: the stream's total minus its groups (exact for counts and sums).
  const residual =
    plans.length === 1 && q.groupBy.length === 1 && q.filters.length === 0 && plans[0].source?.keys.length === 1
      ? { totals: new Cells(), plan: { ...plans[0], source: null, full: false, distinct: false, topk: false } }
      : null;
  const reads = await Promise.all([
    ...rankPlans.map((p) => gather(run, q, p, q.from, q.to, cells)),
    ...(residual ? [gather(run, q, residual.plan, q.from, q.to, residual.totals)] : []),
  ]);
  const live = reads.every((r) => r.live);
  if (residual) addResidual(cells, residual.totals, plans[0].alias);
  // Grouping by a catalog attribute: the groups as read are merged by what the catalog says of their values.
  const attributes = q.attributes.length ? new AttributeMap(q) : null;
  if (attributes) cells = await attributes.regroup(run, cells);
  const stepMs = q.step ? QUERY_STEPS[q.step] : null;
  const secondsOf = (bucket: number) =>
    stepMs === null ? (q.to - q.from) / 1000 : (Math.min(bucket + stepMs, q.to) - Math.max(bucket, q.from)) / 1000;
  const measureOf = (per: Map<string, Cell> | undefined, seconds: number) => (alias: string, m: Measure) =>
    figure(per?.get(alias), m, seconds);
  const outputsOf = (per: Map<string, Cell> | undefined, seconds: number) =>
    q.outputs.map((o) => evaluate(o.expr, measureOf(per, seconds)));

  // Rank groups over the whole range.
  const totalSeconds = (q.to - q.from) / 1000;
  const ranked: Ranked[] = [...cells.groups].map(([key, group]) => ({
    key,
    group,
    values: outputsOf(cells.totals.get(key), totalSeconds),
  }));
  const orderIdx = q.order ? q.outputs.findIndex((o) => o.name === q.order?.output) : -1;
  const topkPlan = plans.find((p) => p.topk);
  let topkError: number | null = null;
  if (topkPlan && orderIdx >= 0) {
    // Values folded into __other__: add the summary's heaviest as estimated rows, with bounds.
    const m = (q.outputs[orderIdx].expr as { measure: Measure }).measure;
    const other = cells.totals.get(JSON.stringify(["__other__"]))?.get(topkPlan.alias);
    const summary = m === "count" ? other?.topkCount : other?.topkSum;
    for (const r of ranked) {
      const v = r.values[orderIdx];
      r.low = v ?? 0;
      r.high = v ?? 0;
    }
    if (summary) {
      topkError = summary.error;
      const tracked = new Set(ranked.map((r) => r.group[0]));
      for (const t of summary.top(q.limit)) {
        if (tracked.has(t.item)) continue;
        ranked.push({
          key: JSON.stringify([t.item]),
          group: [t.item],
          values: q.outputs.map((_, i) => (i === orderIdx ? t.low : null)),
          low: t.low,
          high: t.high,
          estimated: true,
        });
      }
    }
  }
  const dir = q.order?.dir === "asc" ? 1 : -1;
  const byOrder = (a: Ranked, b: Ranked) => {
    if (orderIdx < 0) return a.key < b.key ? -1 : 1;
    const x = a.values[orderIdx];
    const y = b.values[orderIdx];
    if (x === null && y === null) return a.key < b.key ? -1 : 1;
    if (x === null) return 1;
    if (y === null) return -1;
    return (x - y) * dir || (a.key < b.key ? -1 : 1);
  };
  ranked.sort(byOrder);
  const groupsTotal = ranked.length;
  const selected = ranked.slice(0, q.groupBy.length ? q.limit : ranked.length);
  const truncated = groupsTotal > selected.length;
  // An estimated value at rank r is certain to belong to the top `limit` if its lower bound beats every upper bound below it.
  if (topkPlan && orderIdx >= 0 && q.order?.dir === "desc") {
    const rest = Math.max(topkError ?? 0, ...ranked.slice(selected.length).map((r) => r.high ?? 0));
    for (const r of selected) r.guaranteed = (r.low ?? 0) >= rest;
  }

  // The source values of the selected groups, per stream: what later reads need.
  const selectedValues = (alias: string): string[] => {
    const out = new Set<string>();
    for (const r of selected) for (const v of cells.sourceValues.get(r.key)?.get(alias) ?? []) out.add(v);
    return [...out];
  };
  if (twoPhase) {
    const detail = new Cells();
    for (const p of plans) {
      if (!p.full || p.source === null) continue;
      const only = selectedValues(p.alias);
      if (only.length) await gather(run, q, p, q.from, q.to, detail, only);
    }
    // The whole rows replace the ranking's sums for their streams (they are as new or newer).
    const overlay = (into: Map<string, Map<string, Cell>>, from: Map<string, Map<string, Cell>>) => {
      for (const [key, per] of from) {
        let target = into.get(key);
        if (target === undefined) {
          target = new Map();
          into.set(key, target);
        }
        for (const [alias, c] of per) target.set(alias, c);
      }
    };
    overlay(cells.totals, detail.totals);
    for (const [bucket, groups] of detail.byBucket) {
      let b = cells.byBucket.get(bucket);
      if (b === undefined) {
        b = new Map();
        cells.byBucket.set(bucket, b);
      }
      overlay(b, groups);
    }
    for (const r of selected) {
      if (r.estimated) continue;
      r.values = outputsOf(cells.totals.get(r.key), totalSeconds);
      if (r.low !== undefined) r.low = r.high = r.values[orderIdx] ?? 0;
    }
    selected.sort(byOrder);
  }

  // The previous period, for comparison (only the selected groups' values are read).
  let previous: Cells | null = null;
  if (q.compare) {
    previous = new Cells();
    const len = q.to - q.from;
    const prevQuery: Query = { ...q, from: q.from - len, to: q.to - len, endsNow: false };
    for (const p of plans) {
      const only = p.source !== null && q.groupBy.length ? selectedValues(p.alias) : undefined;
      if (only?.length === 0) continue;
      await gather(run, prevQuery, p, prevQuery.from, prevQuery.to, previous, only);
    }
    if (attributes) previous = await attributes.regroup(run, previous);
  }

  const labels = q.labels.length ? await lookUpLabels(run, q, selected) : null;
  const labelAt = q.labels.map((l) => q.groupBy.indexOf(l.key));
  const labelsOf = (group: string[]): Array<string | null> =>
    labels ? labelAt.map((at, i) => labels.found[i].get(group[at]) ?? null) : [];
  const columns = [
    ...q.groupBy.map((k) => q.attributes.find((a) => a.key === k)?.column ?? k),
    ...q.labels.map((l) => `${l.key}_label`),
    ...(stepMs ? ["t"] : []),
    ...q.outputs.map((o) => o.name),
  ];
  const bounded = topkPlan && orderIdx >= 0;
  if (bounded) {
    const m = (q.outputs[orderIdx].expr as { measure: Measure }).measure;
    columns.push(`${m}_low`, `${m}_high`, "guaranteed", "estimated");
  }
  if (previous) columns.push(...q.outputs.map((o) => `${o.name}_previous`));
  const rows: QueryResult["rows"] = [];
  const len = q.to - q.from;
  for (const r of selected) {
    const extra = (values: Array<number | null>) => {
      const out: Array<string | number | boolean | null> = [];
      if (bounded) {
        out.push(r.low ?? values[orderIdx], r.high ?? values[orderIdx], r.guaranteed ?? null, r.estimated === true);
      }
      return out;
    };
    if (stepMs === null) {
      const prev = previous ? outputsOf(previous.totals.get(r.key), totalSeconds) : [];
      rows.push([...r.group, ...labelsOf(r.group), ...r.values, ...extra(r.values), ...prev]);
      continue;
    }
    const buckets = [...cells.byBucket.keys()].sort((a, b) => a - b);
    for (const b of buckets) {
      const per = cells.byBucket.get(b)?.get(r.key);
      if (per === undefined) continue;
      const values = outputsOf(per, secondsOf(b));
      const prev = previous ? outputsOf(previous.byBucket.get(b - len)?.get(r.key), secondsOf(b)) : [];
      rows.push([...r.group, ...labelsOf(r.group), isoTime(b), ...values, ...extra(values), ...prev]);
    }
  }

  return {
    columns,
    rows,
    meta: {
      span: { from: isoTime(q.from), to: isoTime(q.to) },
      step: q.step,
      streams: plans.map((p) => ({ alias: p.alias, stream: p.stream, source: p.source?.name ?? "stream" })),
      sources: [...sources].sort(),
      // Everything acknowledged up to the query is included when the range ends now and the actors answered.
      freshness_ms: q.endsNow && live && missing.length === 0 ? 0 : null,
      groups: groupsTotal,
      truncated,
      error_bounds: {
        count: "exact",
        sum: "exact",
        min: "exact",
        max: "exact",
        p50_p99: "within 1% of the exact value at that rank (DDSketch), for quantiles above any collapsed low tail",
        distinct_users: "HyperLogLog, 32,768 registers: standard error 0.57% (within 2% with high probability)",
        ...(bounded
          ? {
              top_k: `values folded into __other__ are estimated; each row's true value lies within [low, high] (summary error ${topkError ?? 0})`,
            }
          : {}),
      },
      ...(cells.otherUnfiltered ? { other_unfiltered: cells.otherUnfiltered } : {}),
      ...(labels ? { labels: labels.meta } : {}),
      ...(attributes ? { attributes: attributes.meta } : {}),
      missing: [...new Map(missing.map((m) => [JSON.stringify(m), m])).values()],
      statistics: { elapsed_ms: Date.now() - run.started, ...run.stats },
    },
  };
}
