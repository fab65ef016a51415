/**
 * The query language (POST /v1/query), declared once: its schema, the
 * checks that refuse a query before it runs, and the plan the executor
 * follows. Runtime-free; the executor (workers/query/) fetches the rows.
 *
 *   {"stream": "checkout.completed",
 *    "measures": ["count", "sum", "p95", "distinct_users"],
 *    "filters": [{"dim": "country", "op": "in", "values": ["DE", "FR"]}],
 *    "group_by": ["product"],
 *    "range": {"last": "24h"},            // or {"from": …, "to": …}, or {"window": "5m"}
 *    "step": "1h",                        // optional: none = one row per group
 *    "order_by": {"measure": "sum", "dir": "desc"},
 *    "limit": 10,
 *    "compare": "previous_period",
 *    "labels": {"product": "products"}}   // optional: a product_label column from the catalog
 *
 * Grouping by a catalog attribute: "attributes": {"product": "products.category"} replaces the product
 * column with product_category and merges the groups whose products share a category (exactly: the
 * groups' aggregates are merged, then the measures computed).
 *
 * Several streams: "streams": {"s": "course.started", "c": "course.completed"}
 * and measures as "s.count" or formulas {"name": "rate", "expr": "c.count / s.count"}.
 */
import { z } from "zod";
import { CATALOG_KINDS, type CatalogKind, isCatalogKind, KIND_FIELDS } from "./catalog.ts";
import { CodedError } from "./errors.ts";
import { isStreamName, MAX_DIM_KEY_LENGTH, MAX_DIM_VALUE_LENGTH, parseTimestamp } from "./event.ts";
import { FILTER_OPS, type FilterOp, MEASURES, type Measure, QUERY_STEPS, type QueryStep } from "./measures.ts";
import { describeIssues } from "./schemas.ts";
import { WINDOW_NAMES, WINDOWS, type WindowName } from "./window.ts";

export { FILTER_OPS, type FilterOp, MEASURES, type Measure, QUERY_STEPS, type QueryStep } from "./measures.ts";

/** Limits, refused before anything runs (never a timeout). */
export const QUERY_LIMITS = {
  /** Groups returned (the `limit`). */
  maxGroups: 1000,
  /** Points per group: steps in the range. */
  maxSteps: 1500,
  /** Cells in the answer: groups × steps. */
  maxCells: 50_000,
  /** Longest range. */
  maxRangeMs: 400 * 86_400_000,
  /** Streams in one query. */
  maxStreams: 5,
  maxMeasures: 20,
  maxFilters: 10,
  maxFilterValues: 100,
  /**
   * Groups read before they are merged by a catalog attribute (`attributes`): each one's value is looked up
   * in the catalog, so a query finding more is refused (invalid_query) rather than cut.
   */
  maxAttributeGroups: 10_000,
} as const;

const DURATION = /^(\d+)(m|h|d)$/;
const DURATION_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

const dimKey = z.string().min(1).max(MAX_DIM_KEY_LENGTH);
const alias = z.string().regex(/^[a-z][a-z0-9_]{0,31}$/, "must match [a-z][a-z0-9_]{0,31}");
const time = z.union([z.number(), z.string()]);

/** The attributes a query may group a kind's entities by: the kind's catalog attributes, in order. */
export const attributesOf = (kind: CatalogKind): string[] => [
  ...KIND_FIELDS[kind].required,
  ...KIND_FIELDS[kind].optional,
];

/** "products.name, products.price, …" for messages and the description. */
function attributeList(): string {
  return CATALOG_KINDS.flatMap((k) => attributesOf(k).map((a) => `${k}.${a}`)).join(", ");
}

/** A filter as written (`value` or `values`); normalizeFilters checks and normalizes a list of them. */
export const FilterSpec = z.strictObject({
  dim: dimKey,
  op: z.enum(FILTER_OPS),
  value: z.string().max(MAX_DIM_VALUE_LENGTH).optional(),
  values: z.array(z.string().max(MAX_DIM_VALUE_LENGTH)).min(1).max(QUERY_LIMITS.maxFilterValues).optional(),
});

const MeasureSpec = z.union([
  z.string().min(1).max(64),
  z.strictObject({ name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/), expr: z.string().min(1).max(500) }),
]);

/** The query's fields, unnamed: QueryBody names them for the API; a stored copy (a board's panel) names its own. */
export const QueryFields = z.strictObject({
  stream: z.string().optional().describe("The stream (or use streams for several)."),
  streams: z.record(alias, z.string()).optional().describe("Aliases → streams, for formulas across streams."),
  measures: z.array(MeasureSpec).min(1).max(QUERY_LIMITS.maxMeasures),
  filters: z.array(FilterSpec).max(QUERY_LIMITS.maxFilters).optional(),
  group_by: z.array(dimKey).max(3).optional(),
  range: z.union([
    z.strictObject({ last: z.string().regex(DURATION, 'a duration like "15m", "24h" or "7d"') }),
    z.strictObject({ from: time, to: time.optional() }),
    z.strictObject({ window: z.enum(WINDOW_NAMES as [WindowName, ...WindowName[]]) }),
  ]),
  step: z.enum(["1m", "1h", "1d"]).optional(),
  order_by: z.strictObject({ measure: z.string(), dir: z.enum(["asc", "desc"]).default("desc") }).optional(),
  limit: z.int().min(1).max(QUERY_LIMITS.maxGroups).optional(),
  compare: z.literal("previous_period").optional(),
  labels: z
    .record(dimKey, z.enum(CATALOG_KINDS))
    .optional()
    .describe(
      'Group-by key → catalog kind ({"product": "products"}): a "<key>_label" column after the group keys holds each value\'s label from the tenant\'s catalog (a product\'s name, a user\'s first and last name, a course\'s title), null when the catalog does not hold it.',
    ),
  attributes: z
    .record(dimKey, z.string().max(64))
    .optional()
    .describe(
      `Group-by key → "<kind>.<attribute>" ({"product": "products.category"}): the key's column is replaced by "<key>_<attribute>" (product_category) holding each value's attribute from the tenant's catalog, and groups sharing it are merged into one with exact measures (formulas computed after the merge; order_by and limit apply to the merged groups). Attributes: ${attributeList()}. A value the catalog does not hold groups under "__unknown__", an entity without the attribute under "__unset__" (events without the key stay under "__none__"). The catalog must be readable (503 otherwise); at most ${QUERY_LIMITS.maxAttributeGroups} groups are read before the merge.`,
    ),
});
export const QueryBody = QueryFields.meta({
  id: "Query",
  description: "A query over one stream's (or several streams') figures, by dimension and time.",
});
export type QueryInput = z.input<typeof QueryBody>;

const fail = (field: string, message: string): never => {
  throw new CodedError("invalid_query", `${field}: ${message}`);
};

// ---------------------------------------------------------------------------
// Formulas: + - * / and parentheses over numbers and alias.measure terms.
// ---------------------------------------------------------------------------

export type Expr =
  | { kind: "num"; value: number }
  | { kind: "ref"; alias: string; measure: Measure }
  | { kind: "op"; op: "+" | "-" | "*" | "/"; left: Expr; right: Expr }
  | { kind: "neg"; expr: Expr };

export function parseExpr(text: string, aliases: string[], field: string): Expr {
  const tokens = text.match(/\s*(\d+(?:\.\d+)?|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?|[-+*/()])/g);
  if (!tokens || tokens.join("").replace(/\s/g, "") !== text.replace(/\s/g, "")) {
    fail(field, `cannot read "${text.slice(0, 80)}"; use numbers, alias.measure, + - * / and parentheses.`);
  }
  const t = (tokens as string[]).map((x) => x.trim());
  let i = 0;
  const peek = () => t[i];
  const term = (): Expr => {
    const tok = t[i++];
    if (tok === undefined) return fail(field, "the expression ends too early.");
    if (tok === "(") {
      const e = sum();
      if (t[i++] !== ")") fail(field, "a parenthesis is not closed.");
      return e;
    }
    if (tok === "-") return { kind: "neg", expr: term() };
    if (/^\d/.test(tok)) return { kind: "num", value: Number(tok) };
    const [a, m] = tok.includes(".") ? tok.split(".") : [aliases.length === 1 ? aliases[0] : "", tok];
    if (!aliases.includes(a)) fail(field, `"${tok}" names no stream alias (${aliases.join(", ")}).`);
    if (!(MEASURES as readonly string[]).includes(m)) fail(field, `"${m}" is not a measure (${MEASURES.join(", ")}).`);
    return { kind: "ref", alias: a, measure: m as Measure };
  };
  const product = (): Expr => {
    let left = term();
    while (peek() === "*" || peek() === "/") {
      const op = t[i++] as "*" | "/";
      left = { kind: "op", op, left, right: term() };
    }
    return left;
  };
  const sum = (): Expr => {
    let left = product();
    while (peek() === "+" || peek() === "-") {
      const op = t[i++] as "+" | "-";
      left = { kind: "op", op, left, right: product() };
    }
    return left;
  };
  const e = sum();
  if (i !== t.length) fail(field, `unexpected "${t[i]}".`);
  return e;
}

/** Evaluates a formula; null when any input is null or a division is by zero. */
export function evaluate(e: Expr, value: (alias: string, m: Measure) => number | null): number | null {
  switch (e.kind) {
    case "num":
      return e.value;
    case "ref":
      return value(e.alias, e.measure);
    case "neg": {
      const v = evaluate(e.expr, value);
      return v === null ? null : -v;
    }
    case "op": {
      const a = evaluate(e.left, value);
      const b = evaluate(e.right, value);
      if (a === null || b === null) return null;
      if (e.op === "/") return b === 0 ? null : a / b;
      return e.op === "+" ? a + b : e.op === "-" ? a - b : a * b;
    }
  }
}

/** The (alias, measure) pairs an expression reads. */
export function refs(
  e: Expr,
  into: Array<{ alias: string; measure: Measure }> = [],
): Array<{ alias: string; measure: Measure }> {
  if (e.kind === "ref") into.push({ alias: e.alias, measure: e.measure });
  else if (e.kind === "neg") refs(e.expr, into);
  else if (e.kind === "op") {
    refs(e.left, into);
    refs(e.right, into);
  }
  return into;
}

// ---------------------------------------------------------------------------
// The normalized query.
// ---------------------------------------------------------------------------

export interface Filter {
  dim: string;
  op: FilterOp;
  values: string[];
}

export function matches(f: Filter, value: string): boolean {
  switch (f.op) {
    case "eq":
    case "in":
      return f.values.includes(value);
    case "neq":
    case "not_in":
      return !f.values.includes(value);
    case "prefix":
      return f.values.some((p) => value.startsWith(p));
  }
}

/** Filters as written → normalized; refuses (invalid_query, naming `field`.i) a filter without values or an eq/neq with several. */
export function normalizeFilters(specs: Array<z.infer<typeof FilterSpec>>, field: string): Filter[] {
  return specs.map((f, i): Filter => {
    const values = f.values ?? (f.value !== undefined ? [f.value] : []);
    if (values.length === 0) fail(`${field}.${i}`, 'give "value" or "values".');
    if ((f.op === "eq" || f.op === "neq") && values.length !== 1)
      fail(`${field}.${i}.op`, `"${f.op}" takes one value; use "in" or "not_in".`);
    return { dim: f.dim, op: f.op, values };
  });
}

export interface Output {
  /** Column name. */
  name: string;
  expr: Expr;
}

export interface Query {
  streams: Array<{ alias: string; stream: string }>;
  outputs: Output[];
  /** Base measures each alias needs. */
  needs: Map<string, Set<Measure>>;
  filters: Filter[];
  groupBy: string[];
  /** [from, to) in ms; `to` is now for ranges that end now. */
  from: number;
  to: number;
  /** Whether the range ends now (history and the actors' live state are merged). */
  endsNow: boolean;
  window: WindowName | null;
  step: QueryStep | null;
  order: { output: string; dir: "asc" | "desc" } | null;
  limit: number;
  compare: boolean;
  /** Group-by keys whose values are labelled from the catalog, in group_by order. */
  labels: Array<{ key: string; kind: CatalogKind }>;
  /** Group-by keys whose values are replaced by a catalog attribute (groups then merged), in group_by order. */
  attributes: AttributeGroup[];
}

/** A group-by key grouped by its entities' attribute: `"attributes": {"product": "products.category"}`. */
export interface AttributeGroup {
  key: string;
  kind: CatalogKind;
  attribute: string;
  /** The column replacing the key's: `<key>_<attribute>`. */
  column: string;
}

/**
 * Validates a body and normalizes it. `now` anchors "last", "window" and a missing "to". Refuses what
 * cannot run, or would exceed a limit, with `400 invalid_query` naming the field.
 */
export function parseQuery(body: unknown, now: number): Query {
  const parsed = QueryBody.safeParse(body);
  if (!parsed.success) {
    const { message, details } = describeIssues(parsed.error);
    throw new CodedError("invalid_query", message, details);
  }
  const q = parsed.data;
  if ((q.stream === undefined) === (q.streams === undefined)) fail("stream", "give either stream or streams.");
  const streams =
    q.stream !== undefined
      ? [{ alias: "s", stream: q.stream }]
      : Object.entries(q.streams ?? {}).map(([alias, stream]) => ({ alias, stream }));
  if (streams.length === 0) fail("streams", "name at least one stream.");
  if (streams.length > QUERY_LIMITS.maxStreams) fail("streams", `at most ${QUERY_LIMITS.maxStreams} streams.`);
  for (const s of streams)
    if (!isStreamName(s.stream))
      fail(q.stream !== undefined ? "stream" : `streams.${s.alias}`, "must be a stream name ([A-Za-z0-9_.:-]{1,128}).");
  const aliases = streams.map((s) => s.alias);
  const outputs: Output[] = q.measures.map((m, i): Output => {
    const field = `measures.${i}`;
    if (typeof m === "string") return { name: m, expr: parseExpr(m, aliases, field) };
    return { name: m.name, expr: parseExpr(m.expr, aliases, `${field}.expr`) };
  });
  const names = new Set<string>();
  for (const o of outputs) {
    if (names.has(o.name)) fail("measures", `"${o.name}" appears twice.`);
    names.add(o.name);
  }
  const needs = new Map<string, Set<Measure>>(aliases.map((a) => [a, new Set<Measure>()]));
  for (const o of outputs) {
    const r: Array<{ alias: string; measure: Measure }> = [];
    refs(o.expr, r);
    for (const x of r) needs.get(x.alias)?.add(x.measure);
  }
  const filters = normalizeFilters(q.filters ?? [], "filters");
  const groupBy = q.group_by ?? [];
  if (new Set(groupBy).size !== groupBy.length) fail("group_by", "a key appears twice.");

  let from: number;
  let to: number;
  let endsNow = false;
  let window: WindowName | null = null;
  const minute = 60_000;
  if ("last" in q.range) {
    const [, n, unit] = DURATION.exec(q.range.last) as RegExpExecArray;
    to = now;
    from = now - Number(n) * DURATION_MS[unit as keyof typeof DURATION_MS];
    endsNow = true;
  } else if ("window" in q.range) {
    window = q.range.window;
    to = now;
    // Whole minutes before the current one, and the current one so far (dimension rows are per minute).
    from = Math.floor(now / minute) * minute - WINDOWS[window] * 1000;
    endsNow = true;
  } else {
    const t = (raw: string | number, field: string): number => {
      const v = parseTimestamp(typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : raw);
      return v === undefined ? fail(field, "must be epoch milliseconds or ISO-8601 with a zone.") : v;
    };
    from = t(q.range.from, "range.from");
    to = q.range.to === undefined ? now : t(q.range.to, "range.to");
    endsNow = q.range.to === undefined || to >= now;
    if (to > now) to = now;
  }
  if (from >= to) fail("range", "from must be before to.");
  if (to - from > QUERY_LIMITS.maxRangeMs) fail("range", `at most ${QUERY_LIMITS.maxRangeMs / 86_400_000} days.`);
  const step = q.step ?? null;
  if (step !== null) {
    const steps = Math.ceil((to - Math.floor(from / QUERY_STEPS[step]) * QUERY_STEPS[step]) / QUERY_STEPS[step]);
    if (steps > QUERY_LIMITS.maxSteps) {
      fail(
        "step",
        `the range holds ${steps} ${step} steps; the limit is ${QUERY_LIMITS.maxSteps}. Use a coarser step or a shorter range.`,
      );
    }
    const limit = q.limit ?? (groupBy.length ? 10 : 1);
    if (groupBy.length && steps * limit > QUERY_LIMITS.maxCells) {
      fail(
        "limit",
        `${limit} groups × ${steps} steps is more than ${QUERY_LIMITS.maxCells} cells; lower limit or use a coarser step.`,
      );
    }
  }
  const labelled = q.labels ?? {};
  for (const key of Object.keys(labelled))
    if (!groupBy.includes(key))
      fail(`labels.${key}`, `labels name group_by keys (${groupBy.length ? groupBy.join(", ") : "none given"}).`);
  const labels = groupBy
    .filter((k) => Object.hasOwn(labelled, k))
    .map((key) => ({ key, kind: labelled[key] as CatalogKind }));
  for (const { key } of labels) {
    const column = `${key}_label`;
    if (groupBy.includes(column) || names.has(column))
      fail(`labels.${key}`, `the label column "${column}" would repeat a group_by key or a measure's name.`);
  }
  const attributes = parseAttributes(q.attributes ?? {}, groupBy, labels, names);
  let order: Query["order"] = null;
  if (q.order_by) {
    if (!names.has(q.order_by.measure))
      fail("order_by.measure", `must be one of the measures (${[...names].join(", ")}).`);
    order = { output: q.order_by.measure, dir: q.order_by.dir };
  }
  return {
    streams,
    outputs,
    needs,
    filters,
    groupBy,
    from,
    to,
    endsNow,
    window,
    step,
    order,
    limit: q.limit ?? (step !== null && groupBy.length ? 10 : 100),
    compare: q.compare === "previous_period",
    labels,
    attributes,
  };
}

/** The `attributes` field checked against the group-by keys, the label columns and the measures' names. */
function parseAttributes(
  given: Record<string, string>,
  groupBy: string[],
  labels: Query["labels"],
  names: Set<string>,
): AttributeGroup[] {
  for (const key of Object.keys(given))
    if (!groupBy.includes(key))
      fail(
        `attributes.${key}`,
        `attributes name group_by keys (${groupBy.length ? groupBy.join(", ") : "none given"}).`,
      );
  const out = groupBy
    .filter((k) => Object.hasOwn(given, k))
    .map((key): AttributeGroup => {
      const field = `attributes.${key}`;
      const text = given[key];
      const dot = text.indexOf(".");
      const kind = dot < 0 ? "" : text.slice(0, dot);
      const attribute = dot < 0 ? "" : text.slice(dot + 1);
      if (!isCatalogKind(kind))
        fail(field, `give "<kind>.<attribute>" like "products.category"; the kinds are ${CATALOG_KINDS.join(", ")}.`);
      const allowed = attributesOf(kind as CatalogKind);
      if (!allowed.includes(attribute))
        fail(field, `${kind} have no attribute "${attribute.slice(0, 64)}"; use one of ${allowed.join(", ")}.`);
      if (labels.some((l) => l.key === key))
        fail(field, `a key grouped by an attribute has no label column (its values are merged); drop labels.${key}.`);
      return { key, kind: kind as CatalogKind, attribute, column: `${key}_${attribute}` };
    });
  const taken = new Set([
    ...groupBy.filter((k) => !Object.hasOwn(given, k)),
    ...labels.map((l) => `${l.key}_label`),
    ...names,
  ]);
  for (const a of out) {
    if (taken.has(a.column))
      fail(
        `attributes.${a.key}`,
        `the column "${a.column}" would repeat a group_by key, a label column, a measure's name or another attribute column.`,
      );
    taken.add(a.column);
  }
  return out;
}

/** Group values that name no entity (events without the key, values folded by the dimension budget). */
const NOT_ENTITIES = new Set(["__none__", "__other__"]);

/**
 * What an attribute column shows for a group value, given what the catalog answered for the values looked up
 * (`found`: id → the attribute, null when the entity has none): the attribute; "__unset__" for an entity
 * without it; "__unknown__" for a value the catalog does not hold (never added, or deleted). "__none__" (events
 * without the key) and "__other__" (values the dimension budget folded together) name no entity and stay:
 * entities lacking the attribute are a group of their own, never merged into the residual of events
 * without the key (whose measures beyond counts and sums may be unknown).
 */
export function attributeValue(value: string, found: ReadonlyMap<string, string | null>): string {
  if (NOT_ENTITIES.has(value)) return value;
  if (!found.has(value)) return "__unknown__";
  return found.get(value) ?? "__unset__";
}

/** The values of a group-by key to look up in the catalog: those naming an entity, each once. */
export function entityValues(values: Iterable<string>): string[] {
  return [...new Set(values)].filter((v) => !NOT_ENTITIES.has(v));
}

/** Refuses (invalid_query) a query grouping by an attribute that found more groups than can be looked up. */
export function checkAttributeGroups(groups: number): void {
  if (groups > QUERY_LIMITS.maxAttributeGroups) {
    fail(
      "attributes",
      `the range holds ${groups} groups before they are merged by attribute; at most ${QUERY_LIMITS.maxAttributeGroups} are looked up in the catalog. Shorten the range or filter the grouped keys.`,
    );
  }
}

/** A stream's dimension as the planner sees it. */
export interface DimensionInfo {
  name: string;
  keys: string[];
}

/**
 * Which rows answer the query for a stream: stream rows (no dims needed), a single key's rows, or the
 * smallest declared set holding every key the query groups or filters by. Refuses with what to declare.
 */
export function chooseSource(q: Query, dims: DimensionInfo[], stream: string): DimensionInfo | null {
  const keys = [...new Set([...q.groupBy, ...q.filters.map((f) => f.dim)])];
  if (keys.length === 0) return null;
  if (keys.length === 1) {
    const single = dims.find((d) => d.keys.length === 1 && d.name === keys[0]);
    if (single) return single;
  }
  const sets = dims.filter((d) => keys.every((k) => d.keys.includes(k))).sort((a, b) => a.keys.length - b.keys.length);
  if (sets.length > 0) return sets[0];
  if (keys.length === 1) {
    throw new CodedError(
      "invalid_query",
      `${q.groupBy.includes(keys[0]) ? "group_by" : "filters"}: stream '${stream}' has no events with the dim '${keys[0]}' in its history.`,
    );
  }
  throw new CodedError(
    "invalid_query",
    `group_by/filters: grouping or filtering '${stream}' by ${keys.join(" and ")} together needs a dimension set with those keys; declare it with PUT /v1/streams/${stream}/config {"dimension_sets": [${JSON.stringify(keys)}]} (it applies to events from then on).`,
  );
}

/** The group key of a row of `source`: the values of the group-by keys, or null if the row is filtered out. */
export function groupKeyOf(q: Query, source: DimensionInfo, value: string): string[] | null | "other" {
  if (source.keys.length === 1) {
    if (value === "__other__") return q.filters.length ? "other" : q.groupBy.length ? ["__other__"] : [];
    for (const f of q.filters) if (!matches(f, value)) return null;
    return q.groupBy.length ? [value] : [];
  }
  if (value === "__other__") return q.filters.length ? "other" : q.groupBy.map(() => "__other__");
  const tuple = JSON.parse(value) as Array<string | null>;
  const at = (k: string) => tuple[source.keys.indexOf(k)];
  for (const f of q.filters) {
    const v = at(f.dim);
    if (v === null || !matches(f, v)) return null;
  }
  return q.groupBy.map((k) => at(k) ?? "__none__");
}

/** The answer's shape. */
export interface QueryResult {
  columns: string[];
  rows: Array<Array<string | number | boolean | null>>;
  meta: Record<string, unknown>;
}

const csvCell = (v: string | number | boolean | null): string => {
  if (v === null) return "";
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

/** RFC 4180 CSV of a result. */
export function toCsv(r: QueryResult): string {
  return `${[r.columns.map(csvCell).join(","), ...r.rows.map((row) => row.map(csvCell).join(","))].join("\r\n")}\r\n`;
}

/** A part of the range read from one table granularity. */
export interface Piece {
  grain: "minute" | "hour" | "day";
  from: number;
  to: number;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/**
 * Which table answers which part of [from, to): whole days from the day table and whole hours from the
 * hour table where those rows are final (older than the rollups' exactness margins) and the actor holds
 * no minute inside them (its newer copy would be counted twice), minutes for the rest. Coarse tables
 * are used only where the output step allows (a 1h step never reads day rows).
 */
export function planPieces(
  from: number,
  to: number,
  step: QueryStep | null,
  held: number[],
  hourFinal: number,
  dayFinal: number,
): Piece[] {
  const start = Math.floor(from / MINUTE_MS) * MINUTE_MS;
  const end = Math.ceil(to / MINUTE_MS) * MINUTE_MS;
  const canDay = step === null || step === "1d";
  const canHour = step !== "1m";
  const sorted = [...held].sort((a, b) => a - b);
  const holds = (a: number, b: number) => {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid] < a) lo = mid + 1;
      else hi = mid;
    }
    return lo < sorted.length && sorted[lo] < b;
  };
  const out: Piece[] = [];
  const push = (grain: Piece["grain"], a: number, b: number) => {
    const last = out[out.length - 1];
    if (last && last.grain === grain && last.to === a) last.to = b;
    else out.push({ grain, from: a, to: b });
  };
  let c = start;
  while (c < end) {
    if (canDay && c % DAY_MS === 0 && c + DAY_MS <= end && c + DAY_MS <= dayFinal && !holds(c, c + DAY_MS)) {
      push("day", c, c + DAY_MS);
      c += DAY_MS;
    } else if (
      canHour &&
      c % HOUR_MS === 0 &&
      c + HOUR_MS <= end &&
      c + HOUR_MS <= hourFinal &&
      !holds(c, c + HOUR_MS)
    ) {
      push("hour", c, c + HOUR_MS);
      c += HOUR_MS;
    } else {
      const next = Math.min(end, (Math.floor(c / HOUR_MS) + 1) * HOUR_MS);
      push("minute", c, next);
      c = next;
    }
  }
  return out;
}
