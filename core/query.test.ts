import { describe, expect, it } from "vitest";
import { CodedError } from "./errors.ts";
import {
  attributeValue,
  checkAttributeGroups,
  chooseSource,
  type DimensionInfo,
  entityValues,
  evaluate,
  type FilterOp,
  groupKeyOf,
  MEASURES,
  matches,
  type Piece,
  parseExpr,
  parseQuery,
  planPieces,
  QUERY_LIMITS,
  type QueryInput,
  type QueryResult,
  type QueryStep,
  refs,
  toCsv,
} from "./query.ts";
import { seededRandom } from "./random.ts";

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** Deliberately not on a minute boundary: 10:30:15.500 UTC. */
const NOW = Date.UTC(2026, 10, 22, 10, 30, 15, 500);
/** On an hour boundary, for step counts without rounding. */
const NOW_HOUR = Date.UTC(2026, 10, 22, 10, 0, 0, 0);

const body = (over: Partial<QueryInput> = {}): QueryInput => ({
  stream: "checkout",
  measures: ["count"],
  range: { last: "1h" },
  ...over,
});

/** The CodedError parseQuery throws for a body (fails the test if it accepts it or throws something else). */
function refusal(input: unknown, now = NOW): CodedError {
  try {
    parseQuery(input, now);
  } catch (err) {
    if (err instanceof CodedError) return err;
    throw err;
  }
  throw new Error(`parseQuery accepted ${JSON.stringify(input)}`);
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("parseQuery: valid queries", () => {
  it("normalizes a single-stream query with the documented defaults", () => {
    const q = parseQuery(
      body({
        stream: "checkout.completed",
        measures: ["count", "sum", "p95", "distinct_users"],
        range: { last: "24h" },
      }),
      NOW,
    );
    expect(q.streams).toEqual([{ alias: "s", stream: "checkout.completed" }]);
    expect(q.outputs).toEqual([
      { name: "count", expr: { kind: "ref", alias: "s", measure: "count" } },
      { name: "sum", expr: { kind: "ref", alias: "s", measure: "sum" } },
      { name: "p95", expr: { kind: "ref", alias: "s", measure: "p95" } },
      { name: "distinct_users", expr: { kind: "ref", alias: "s", measure: "distinct_users" } },
    ]);
    expect(q.needs).toEqual(new Map([["s", new Set(["count", "sum", "p95", "distinct_users"])]]));
    expect(q).toMatchObject({
      filters: [],
      groupBy: [],
      from: NOW - 24 * HOUR,
      to: NOW,
      endsNow: true,
      window: null,
      step: null,
      order: null,
      limit: 100,
      compare: false,
    });
  });

  it("reads streams as aliases, measures as alias.measure strings and {name, expr} formulas", () => {
    const q = parseQuery(
      {
        streams: { s: "course.started", c: "course.completed", x: "course.abandoned" },
        measures: ["s.count", { name: "completion", expr: "c.count / s.count" }, "c.p95"],
        range: { last: "7d" },
      },
      NOW,
    );
    expect(q.streams).toEqual([
      { alias: "s", stream: "course.started" },
      { alias: "c", stream: "course.completed" },
      { alias: "x", stream: "course.abandoned" },
    ]);
    expect(q.outputs.map((o) => o.name)).toEqual(["s.count", "completion", "c.p95"]);
    expect(q.outputs[1].expr).toEqual({
      kind: "op",
      op: "/",
      left: { kind: "ref", alias: "c", measure: "count" },
      right: { kind: "ref", alias: "s", measure: "count" },
    });
    // Every alias has an entry, even one no measure reads.
    expect(q.needs).toEqual(
      new Map([
        ["s", new Set(["count"])],
        ["c", new Set(["count", "p95"])],
        ["x", new Set()],
      ]),
    );
  });

  it("reads labels as group_by keys → catalog kinds, in group_by order", () => {
    const q = parseQuery(
      body({ group_by: ["user", "product", "country"], labels: { product: "products", user: "users" } }),
      NOW,
    );
    expect(q.labels).toEqual([
      { key: "user", kind: "users" },
      { key: "product", kind: "products" },
    ]);
    expect(parseQuery(body({ group_by: ["constructor"] }), NOW).labels).toEqual([]);
    expect(refusal(body({ group_by: ["product"], labels: { product: "orders" as "products" } })).message).toContain(
      "labels.product",
    );
  });

  it("accepts a formula over the single stream's bare measures", () => {
    const q = parseQuery(body({ measures: [{ name: "avg", expr: "sum / value_count" }] }), NOW);
    expect(q.outputs[0].name).toBe("avg");
    expect(q.needs.get("s")).toEqual(new Set(["sum", "value_count"]));
  });

  it("turns value into a one-element values list and keeps values as given", () => {
    const q = parseQuery(
      body({
        filters: [
          { dim: "country", op: "eq", value: "DE" },
          { dim: "plan", op: "in", values: ["pro", "team"] },
          { dim: "path", op: "prefix", value: "/api/" },
        ],
      }),
      NOW,
    );
    expect(q.filters).toEqual([
      { dim: "country", op: "eq", values: ["DE"] },
      { dim: "plan", op: "in", values: ["pro", "team"] },
      { dim: "path", op: "prefix", values: ["/api/"] },
    ]);
  });

  const FROM = Date.UTC(2026, 10, 21, 8, 0, 0, 0);
  const TO = Date.UTC(2026, 10, 21, 9, 0, 0, 0);
  it.each<[string, QueryInput["range"], { from: number; to: number; endsNow: boolean; window: string | null }]>([
    ["last 15m", { last: "15m" }, { from: NOW - 15 * MIN, to: NOW, endsNow: true, window: null }],
    ["last 24h", { last: "24h" }, { from: NOW - DAY, to: NOW, endsNow: true, window: null }],
    ["last 7d", { last: "7d" }, { from: NOW - 7 * DAY, to: NOW, endsNow: true, window: null }],
    [
      "last 400d (the longest range)",
      { last: "400d" },
      { from: NOW - 400 * DAY, to: NOW, endsNow: true, window: null },
    ],
    [
      "window 5m: five whole minutes and the current one so far",
      { window: "5m" },
      { from: Date.UTC(2026, 10, 22, 10, 25), to: NOW, endsNow: true, window: "5m" },
    ],
    ["window 1h", { window: "1h" }, { from: Date.UTC(2026, 10, 22, 9, 30), to: NOW, endsNow: true, window: "1h" }],
    ["epoch ms from/to in the past", { from: FROM, to: TO }, { from: FROM, to: TO, endsNow: false, window: null }],
    [
      "epoch ms given as digit strings",
      { from: String(FROM), to: String(TO) },
      { from: FROM, to: TO, endsNow: false, window: null },
    ],
    [
      "ISO-8601 strings with zones",
      { from: "2026-11-21T08:00:00Z", to: "2026-11-21T10:00:00+01:00" },
      { from: FROM, to: TO, endsNow: false, window: null },
    ],
    ["from without to ends now", { from: FROM }, { from: FROM, to: NOW, endsNow: true, window: null }],
    ["to exactly now ends now", { from: FROM, to: NOW }, { from: FROM, to: NOW, endsNow: true, window: null }],
    [
      "to in the future is clamped to now",
      { from: FROM, to: NOW + 3 * HOUR },
      { from: FROM, to: NOW, endsNow: true, window: null },
    ],
  ])("range %s", (_, range, want) => {
    const q = parseQuery(body({ range }), NOW);
    expect({ from: q.from, to: q.to, endsNow: q.endsNow, window: q.window }).toEqual(want);
  });

  it("keeps step, order (desc by default) and compare", () => {
    const q = parseQuery(
      body({
        measures: ["count", "sum"],
        step: "1h",
        order_by: { measure: "sum" },
        compare: "previous_period",
      }),
      NOW,
    );
    expect(q.step).toBe("1h");
    expect(q.order).toEqual({ output: "sum", dir: "desc" });
    expect(q.compare).toBe(true);
    expect(parseQuery(body({ order_by: { measure: "count", dir: "asc" } }), NOW).order).toEqual({
      output: "count",
      dir: "asc",
    });
  });

  it("orders by a formula's name", () => {
    const q = parseQuery(
      body({ measures: ["count", { name: "avg", expr: "sum / count" }], order_by: { measure: "avg" } }),
      NOW,
    );
    expect(q.order).toEqual({ output: "avg", dir: "desc" });
  });

  it.each<[string, Partial<QueryInput>, number]>([
    ["group_by and a step: 10", { group_by: ["country"], step: "1h" }, 10],
    ["group_by without a step: 100", { group_by: ["country"] }, 100],
    ["a step without group_by: 100", { step: "1h" }, 100],
    ["neither: 100", {}, 100],
    ["an explicit limit wins", { group_by: ["country"], step: "1h", limit: 7 }, 7],
    ["an explicit limit without step", { group_by: ["country"], limit: 1000 }, 1000],
  ])("default limit, %s", (_, over, limit) => {
    expect(parseQuery(body(over), NOW).limit).toBe(limit);
  });

  it("accepts the most steps and cells the limits allow, and refuses one more", () => {
    // 1500 one-minute steps over a minute-aligned range; a now 15.5 s into its minute touches 1501.
    const atMinute = Date.UTC(2026, 10, 22, 10, 30);
    expect(parseQuery(body({ range: { last: "1500m" }, step: "1m" }), atMinute).step).toBe("1m");
    expect(refusal(body({ range: { last: "1500m" }, step: "1m" }), NOW).message).toMatch(
      /^step: the range holds 1501 /,
    );
    // 168 hourly steps × 297 groups = 49,896 cells; × 298 = 50,064.
    const week = body({ group_by: ["country"], range: { last: "7d" }, step: "1h" });
    expect(parseQuery({ ...week, limit: 297 }, NOW_HOUR).limit).toBe(297);
    expect(refusal({ ...week, limit: 298 }, NOW_HOUR).message).toBe(
      "limit: 298 groups × 168 steps is more than 50000 cells; lower limit or use a coarser step.",
    );
    // Without group_by there is one group: the limit does not multiply the steps.
    expect(parseQuery(body({ range: { last: "7d" }, step: "1h", limit: 1000 }), NOW_HOUR).limit).toBe(1000);
  });
});

describe("parseQuery: refusals", () => {
  it.each<[string, unknown, string]>([
    [
      "an unknown measure",
      body({ measures: ["count", "median"] }),
      `measures.1: "median" is not a measure (${MEASURES.join(", ")}).`,
    ],
    ["a measure named twice", body({ measures: ["count", "sum", "count"] }), 'measures: "count" appears twice.'],
    [
      "a formula named like another measure",
      body({ measures: ["sum", { name: "sum", expr: "s.sum * 2" }] }),
      'measures: "sum" appears twice.',
    ],
    [
      "both stream and streams",
      { stream: "a", streams: { s: "b" }, measures: ["s.count"], range: { last: "1h" } },
      "stream: give either stream or streams.",
    ],
    [
      "neither stream nor streams",
      { measures: ["count"], range: { last: "1h" } },
      "stream: give either stream or streams.",
    ],
    ["a bad stream name", body({ stream: "has space" }), "stream: must be a stream name ([A-Za-z0-9_.:-]{1,128})."],
    [
      "a bad stream name under an alias",
      { streams: { s: "ok", c: "..." }, measures: ["s.count"], range: { last: "1h" } },
      "streams.c: must be a stream name ([A-Za-z0-9_.:-]{1,128}).",
    ],
    [
      "an empty streams map",
      { streams: {}, measures: ["count"], range: { last: "1h" } },
      "streams: name at least one stream.",
    ],
    [
      "more streams than allowed",
      {
        streams: Object.fromEntries(
          Array.from({ length: QUERY_LIMITS.maxStreams + 1 }, (_, i) => [`a${i}`, `stream${i}`]),
        ),
        measures: ["a0.count"],
        range: { last: "1h" },
      },
      "streams: at most 5 streams.",
    ],
    [
      "eq with two values",
      body({ filters: [{ dim: "country", op: "eq", values: ["DE", "FR"] }] }),
      'filters.0.op: "eq" takes one value; use "in" or "not_in".',
    ],
    [
      "neq with two values (second filter)",
      body({
        filters: [
          { dim: "plan", op: "in", values: ["pro"] },
          { dim: "country", op: "neq", values: ["DE", "FR"] },
        ],
      }),
      'filters.1.op: "neq" takes one value; use "in" or "not_in".',
    ],
    [
      "a filter with neither value nor values",
      body({ filters: [{ dim: "country", op: "in" }] }),
      'filters.0: give "value" or "values".',
    ],
    ["a group_by key twice", body({ group_by: ["country", "plan", "country"] }), "group_by: a key appears twice."],
    [
      "labels naming a key not grouped by",
      body({ group_by: ["product"], labels: { course: "courses" } }),
      "labels.course: labels name group_by keys (product).",
    ],
    [
      "labels without group_by",
      body({ labels: { product: "products" } }),
      "labels.product: labels name group_by keys (none given).",
    ],
    [
      "a label column repeating a group_by key",
      body({ group_by: ["product", "product_label"], labels: { product: "products" } }),
      'labels.product: the label column "product_label" would repeat a group_by key or a measure\'s name.',
    ],

    ["from equal to to", body({ range: { from: NOW - HOUR, to: NOW - HOUR } }), "range: from must be before to."],
    ["from after to", body({ range: { from: NOW - HOUR, to: NOW - 2 * HOUR } }), "range: from must be before to."],
    ["from in the future, to omitted", body({ range: { from: NOW + MIN } }), "range: from must be before to."],
    ["last 0m", body({ range: { last: "0m" } }), "range: from must be before to."],
    ["a range longer than 400 days", body({ range: { last: "401d" } }), "range: at most 400 days."],
    [
      "from/to spanning more than 400 days",
      body({ range: { from: NOW - 400 * DAY - 1, to: NOW } }),
      "range: at most 400 days.",
    ],
    [
      "too many steps",
      body({ range: { last: "26h" }, step: "1m" }),
      // 26 h plus the 15.5 s the range starts into its first minute.
      "step: the range holds 1561 1m steps; the limit is 1500. Use a coarser step or a shorter range.",
    ],
    [
      "too many cells",
      body({ group_by: ["country"], range: { last: "30d" }, step: "1h", limit: 100 }),
      "limit: 100 groups × 721 steps is more than 50000 cells; lower limit or use a coarser step.",
    ],
    [
      "order_by naming no measure",
      body({ measures: ["count", "sum"], order_by: { measure: "p95" } }),
      "order_by.measure: must be one of the measures (count, sum).",
    ],
    [
      "a from that is no timestamp",
      body({ range: { from: "yesterday" } }),
      "range.from: must be epoch milliseconds or ISO-8601 with a zone.",
    ],
    [
      "an ISO time without a zone",
      body({ range: { from: "2026-11-21T08:00:00" } }),
      "range.from: must be epoch milliseconds or ISO-8601 with a zone.",
    ],
    [
      "a to that is no timestamp",
      body({ range: { from: NOW - HOUR, to: "soon" } }),
      "range.to: must be epoch milliseconds or ISO-8601 with a zone.",
    ],
    ["an unknown top-level field", { ...body(), where: "x" }, "(body): unknown field 'where'."],
    [
      "an unknown field in a filter",
      body({ filters: [{ dim: "country", op: "eq", value: "DE", negate: true } as never] }),
      "filters.0: unknown field 'negate'.",
    ],
  ])("refuses %s", (_, input, message) => {
    const err = refusal(input);
    expect(err.code).toBe("invalid_query");
    expect(err.message).toBe(message);
  });

  it.each<[string, unknown, string]>([
    ["no measures", body({ measures: [] }), "measures"],
    ["too many measures", body({ measures: Array(QUERY_LIMITS.maxMeasures + 1).fill("count") }), "measures"],
    ["a measure that is not a string or object", body({ measures: [42 as never] }), "measures.0"],
    ["a formula that does not parse", body({ measures: [{ name: "r", expr: "count +" }] }), "measures.0.expr"],
    ["a formula naming an unknown alias", body({ measures: [{ name: "r", expr: "x.count" }] }), "measures.0.expr"],
    ["a formula name with a space", body({ measures: [{ name: "my rate", expr: "count" }] }), "measures.0"],
    [
      "an alias that is not lower-case",
      { streams: { Bad: "checkout" }, measures: ["Bad.count"], range: { last: "1h" } },
      "streams",
    ],
    ["an unknown filter op", body({ filters: [{ dim: "country", op: "like" as never, value: "D" }] }), "filters.0.op"],
    ["an empty values list", body({ filters: [{ dim: "country", op: "in", values: [] }] }), "filters.0.values"],
    ["an empty dim key", body({ filters: [{ dim: "", op: "eq", value: "DE" }] }), "filters.0.dim"],
    [
      "too many filters",
      body({ filters: Array(QUERY_LIMITS.maxFilters + 1).fill({ dim: "country", op: "eq", value: "DE" }) }),
      "filters",
    ],
    ["four group_by keys", body({ group_by: ["a", "b", "c", "d"] }), "group_by"],
    ["a duration in weeks", body({ range: { last: "1w" } }), "range"],
    ["an unknown window", body({ range: { window: "2m" as never } }), "range"],
    ["an unknown field in range", body({ range: { last: "1h", tz: "UTC" } as never }), "range"],
    ["no range", { stream: "checkout", measures: ["count"] }, "range"],
    ["a 5m step", body({ step: "5m" as never }), "step"],
    ["a limit of 0", body({ limit: 0 }), "limit"],
    ["a limit above maxGroups", body({ limit: QUERY_LIMITS.maxGroups + 1 }), "limit"],
    ["a fractional limit", body({ limit: 2.5 }), "limit"],
    ["an order_by direction", body({ order_by: { measure: "count", dir: "up" as never } }), "order_by.dir"],
    ["an unknown field in order_by", body({ order_by: { measure: "count", by: 1 } as never }), "order_by"],
    ["an unknown compare", body({ compare: "last_year" as never }), "compare"],
    ["a body that is not an object", "count please", "(body)"],
  ])("refuses %s, naming the field", (_, input, field) => {
    const err = refusal(input);
    expect(err.code).toBe("invalid_query");
    expect(err.message).toMatch(new RegExp(`^${escapeRegExp(field)}[.:]`));
  });
});

describe("parseExpr and evaluate", () => {
  const run = (text: string, values: Record<string, number | null> = {}, aliases = ["s"]) =>
    evaluate(parseExpr(text, aliases, "measures.0"), (a, m) => {
      const v = values[`${a}.${m}`];
      if (v === undefined) throw new Error(`read ${a}.${m}, which the test did not provide`);
      return v;
    });

  it.each<[string, number]>([
    ["10 - 4 - 3", 3],
    ["12 / 3 * 2", 8],
    ["100 / 10 / 5", 2],
    ["2 + 3 * 4", 14],
    ["2 * 3 + 4", 10],
    ["(2 + 3) * 4", 20],
    ["2 * (3 + 4) - 1", 13],
    ["2*(3+4)-1", 13],
    ["((1))", 1],
    ["-2 * 3", -6],
    ["-(2 + 3)", -5],
    ["2 - -3", 5],
    ["- - 4", 4],
    ["10 - 2 * -3", 16],
    ["1.5 * 2", 3],
    ["10 / 4", 2.5],
    ["0.25", 0.25],
  ])("%s = %s", (text, want) => {
    expect(run(text)).toBe(want);
  });

  it("reads bare measures from the single alias and alias.measure from any", () => {
    expect(parseExpr("count", ["s"], "f")).toEqual({ kind: "ref", alias: "s", measure: "count" });
    expect(parseExpr("c.p95", ["s", "c"], "f")).toEqual({ kind: "ref", alias: "c", measure: "p95" });
    expect(run("sum / count - 1", { "s.sum": 30, "s.count": 6 })).toBe(4);
    expect(run("s.sum / s.count", { "s.sum": 30, "s.count": 6 })).toBe(5);
    expect(run("c.count / s.count * 100", { "s.count": 8, "c.count": 2 }, ["s", "c"])).toBe(25);
  });

  it.each<[string, string[], string]>([
    ["x.count", ["s", "c"], `"x.count" names no stream alias (s, c).`],
    ["count", ["s", "c"], `"count" names no stream alias (s, c).`],
    ["s.bogus", ["s"], `"bogus" is not a measure (${MEASURES.join(", ")}).`],
    ["medianish", ["s"], `"medianish" is not a measure (${MEASURES.join(", ")}).`],
    ["(count + 1", ["s"], "a parenthesis is not closed."],
    ["((count + 1) * 2", ["s"], "a parenthesis is not closed."],
    ["count )", ["s"], 'unexpected ")".'],
    ["count 2", ["s"], 'unexpected "2".'],
    ["(count) (sum)", ["s"], 'unexpected "(".'],
    ["count +", ["s"], "the expression ends too early."],
    ["count $ 2", ["s"], `cannot read "count $ 2"; use numbers, alias.measure, + - * / and parentheses.`],
    ["count % 2", ["s"], `cannot read "count % 2"; use numbers, alias.measure, + - * / and parentheses.`],
    ["s.count.x", ["s"], `cannot read "s.count.x"; use numbers, alias.measure, + - * / and parentheses.`],
    ["   ", ["s"], `cannot read "   "; use numbers, alias.measure, + - * / and parentheses.`],
  ])("refuses %j (aliases %j)", (text, aliases, message) => {
    let err: unknown;
    try {
      parseExpr(text, aliases, "measures.3.expr");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CodedError);
    expect(err).toMatchObject({ code: "invalid_query", message: `measures.3.expr: ${message}` });
  });

  it.each<[string, Record<string, number | null>]>([
    ["s.count / s.sum", { "s.count": 5, "s.sum": 0 }],
    ["0 / 0", {}],
    ["1 + 1 / 0", {}],
    ["1 / (s.count - s.count)", { "s.count": 3 }],
    ["s.mean + 1", { "s.mean": null }],
    ["1 + s.mean", { "s.mean": null }],
    ["s.mean / 2", { "s.mean": null }],
    ["2 / s.mean", { "s.mean": null }],
    ["-s.mean", { "s.mean": null }],
    ["(s.count + s.p95) * 0", { "s.count": 4, "s.p95": null }],
  ])("%s is null", (text, values) => {
    expect(run(text, values)).toBeNull();
  });

  it("keeps zero and negative results (only a null input or a zero divisor gives null)", () => {
    expect(run("s.count - s.count", { "s.count": 7 })).toBe(0);
    expect(run("0 / s.count", { "s.count": 7 })).toBe(0);
    expect(run("s.min / 2", { "s.min": -3 })).toBe(-1.5);
  });
});

describe("refs", () => {
  it("lists every (alias, measure) an expression reads, in order, repeats included", () => {
    const e = parseExpr("(a.count + b.sum) / -a.count * (2 - b.p99)", ["a", "b"], "f");
    expect(refs(e)).toEqual([
      { alias: "a", measure: "count" },
      { alias: "b", measure: "sum" },
      { alias: "a", measure: "count" },
      { alias: "b", measure: "p99" },
    ]);
  });

  it("is empty for a constant and appends to a given list", () => {
    expect(refs(parseExpr("1 + 2 * -3", ["s"], "f"))).toEqual([]);
    const into = [{ alias: "s", measure: "max" as const }];
    const out = refs(parseExpr("min", ["s"], "f"), into);
    expect(out).toBe(into);
    expect(out).toEqual([
      { alias: "s", measure: "max" },
      { alias: "s", measure: "min" },
    ]);
  });
});

describe("matches", () => {
  it.each<[FilterOp, string[], string, boolean]>([
    ["eq", ["DE"], "DE", true],
    ["eq", ["DE"], "FR", false],
    ["eq", ["DE"], "de", false],
    ["neq", ["DE"], "DE", false],
    ["neq", ["DE"], "FR", true],
    ["in", ["DE", "FR"], "FR", true],
    ["in", ["DE", "FR"], "US", false],
    ["not_in", ["DE", "FR"], "US", true],
    ["not_in", ["DE", "FR"], "DE", false],
    ["prefix", ["/api/", "/v1"], "/api/users", true],
    ["prefix", ["/api/", "/v1"], "/v1", true],
    ["prefix", ["/api/", "/v1"], "/ap", false],
    ["prefix", ["/api/", "/v1"], "/web/api/", false],
    ["prefix", [""], "anything", true],
  ])("%s %j on %j is %s", (op, values, value, want) => {
    expect(matches({ dim: "d", op, values }, value)).toBe(want);
  });
});

const query = (over: Partial<QueryInput>) => parseQuery(body(over), NOW);

describe("chooseSource", () => {
  const dims: DimensionInfo[] = [
    { name: "country+plan+device", keys: ["country", "plan", "device"] },
    { name: "country+plan", keys: ["country", "plan"] },
    { name: "country", keys: ["country"] },
    { name: "plan", keys: ["plan"] },
    { name: "browser", keys: ["browser"] },
  ];

  it("needs no dimension when nothing is grouped or filtered", () => {
    expect(chooseSource(query({}), dims, "checkout")).toBeNull();
    expect(chooseSource(query({}), [], "checkout")).toBeNull();
  });

  it.each<[string, Partial<QueryInput>, string]>([
    ["a group_by key: its own rows, not a set holding it", { group_by: ["country"] }, "country"],
    ["a filtered key", { filters: [{ dim: "plan", op: "eq", value: "pro" }] }, "plan"],
    [
      "the same key grouped and filtered",
      { group_by: ["country"], filters: [{ dim: "country", op: "neq", value: "DE" }] },
      "country",
    ],
    [
      "two keys: the smallest set holding both",
      { group_by: ["country"], filters: [{ dim: "plan", op: "eq", value: "pro" }] },
      "country+plan",
    ],
    ["two keys in the other order", { group_by: ["plan", "country"] }, "country+plan"],
    ["three keys: the set holding all three", { group_by: ["device", "country"] }, "country+plan+device"],
    ["a key only a set holds", { group_by: ["device"] }, "country+plan+device"],
  ])("%s", (_, over, name) => {
    expect(chooseSource(query(over), dims, "checkout")?.name).toBe(name);
  });

  it("refuses a key the stream has no rows for", () => {
    expect(() => chooseSource(query({ group_by: ["referrer"] }), dims, "checkout")).toThrow(
      expect.objectContaining({
        code: "invalid_query",
        message: "group_by: stream 'checkout' has no events with the dim 'referrer' in its history.",
      }),
    );
  });

  it("names filters, not group_by, when only a filter uses the missing key", () => {
    const q = query({ filters: [{ dim: "referrer", op: "eq", value: "ads" }] });
    expect(() => chooseSource(q, dims, "checkout")).toThrow(
      expect.objectContaining({
        message: "filters: stream 'checkout' has no events with the dim 'referrer' in its history.",
      }),
    );
  });

  it("refuses keys no declared set holds together, saying how to declare one", () => {
    const q = query({ group_by: ["country"], filters: [{ dim: "browser", op: "eq", value: "firefox" }] });
    expect(() => chooseSource(q, dims, "checkout")).toThrow(
      expect.objectContaining({
        code: "invalid_query",
        message:
          'group_by/filters: grouping or filtering \'checkout\' by country and browser together needs a dimension set with those keys; declare it with PUT /v1/streams/checkout/config {"dimension_sets": [["country","browser"]]} (it applies to events from then on).',
      }),
    );
    // Single keys alone are not enough: it takes a set.
    expect(() => chooseSource(query({ group_by: ["country", "plan"] }), dims.slice(2), "orders")).toThrow(
      /PUT \/v1\/streams\/orders\/config \{"dimension_sets": \[\["country","plan"\]\]\}/,
    );
  });
});

describe("groupKeyOf", () => {
  const country: DimensionInfo = { name: "country", keys: ["country"] };
  const set: DimensionInfo = { name: "country+plan", keys: ["country", "plan"] };
  const inDEFR = { dim: "country", op: "in" as const, values: ["DE", "FR"] };
  const planPro = { dim: "plan", op: "eq" as const, value: "pro" };

  it.each<[string, Partial<QueryInput>, string, string[] | null | "other"]>([
    ["grouped, a value", { group_by: ["country"] }, "DE", ["DE"]],
    ["grouped, __other__", { group_by: ["country"] }, "__other__", ["__other__"]],
    ["filtered, a matching value", { filters: [inDEFR] }, "FR", []],
    ["filtered, a value filtered out", { filters: [inDEFR] }, "US", null],
    ["filtered, __other__", { filters: [inDEFR] }, "__other__", "other"],
    ["grouped and filtered, a matching value", { group_by: ["country"], filters: [inDEFR] }, "DE", ["DE"]],
    ["grouped and filtered, a value filtered out", { group_by: ["country"], filters: [inDEFR] }, "JP", null],
    ["grouped and filtered, __other__", { group_by: ["country"], filters: [inDEFR] }, "__other__", "other"],
    ["neither, a value", {}, "DE", []],
    ["neither, __other__", {}, "__other__", []],
  ])("single key: %s", (_, over, value, want) => {
    expect(groupKeyOf(query(over), country, value)).toEqual(want);
  });

  it.each<[string, Partial<QueryInput>, string, string[] | null | "other"]>([
    ["grouped by a subset", { group_by: ["plan"] }, '["DE","pro"]', ["pro"]],
    ["grouped in the query's order, not the set's", { group_by: ["plan", "country"] }, '["DE","pro"]', ["pro", "DE"]],
    ["a null member grouped", { group_by: ["country", "plan"] }, '[null,"pro"]', ["__none__", "pro"]],
    ["filtered on the other member", { group_by: ["country"], filters: [planPro] }, '["DE","pro"]', ["DE"]],
    ["filtered out on the other member", { group_by: ["country"], filters: [planPro] }, '["DE","free"]', null],
    ["a null filtered member is filtered out", { group_by: ["country"], filters: [planPro] }, '["DE",null]', null],
    [
      "a null member under a negative filter is filtered out",
      { group_by: ["country"], filters: [{ dim: "plan", op: "neq", value: "pro" }] },
      '["DE",null]',
      null,
    ],
    ["filtered on both members", { filters: [inDEFR, planPro] }, '["FR","pro"]', []],
    ["__other__ grouped", { group_by: ["country", "plan"] }, "__other__", ["__other__", "__other__"]],
    ["__other__ filtered", { group_by: ["country"], filters: [planPro] }, "__other__", "other"],
  ])("dimension set: %s", (_, over, value, want) => {
    expect(groupKeyOf(query(over), set, value)).toEqual(want);
  });
});

describe("planPieces", () => {
  const T0 = Date.UTC(2026, 10, 20);
  const FAR = T0 + 100 * DAY;
  const piece = (grain: Piece["grain"], from: number, to: number): Piece => ({ grain, from, to });

  it.each<[string, [number, number, QueryStep | null, number[], number, number], Piece[]]>([
    ["two final days: one merged day piece", [T0, T0 + 2 * DAY, null, [], FAR, FAR], [piece("day", T0, T0 + 2 * DAY)]],
    [
      "minutes, hours, a day, hours, minutes around the boundaries",
      [T0 - 90 * MIN + 30_000, T0 + DAY + 2 * HOUR + 10 * MIN + 5_000, null, [], FAR, FAR],
      [
        piece("minute", T0 - 90 * MIN, T0 - HOUR),
        piece("hour", T0 - HOUR, T0),
        piece("day", T0, T0 + DAY),
        piece("hour", T0 + DAY, T0 + DAY + 2 * HOUR),
        piece("minute", T0 + DAY + 2 * HOUR, T0 + DAY + 2 * HOUR + 11 * MIN),
      ],
    ],
    [
      "a day not yet final: hours instead",
      [T0, T0 + 2 * DAY, null, [], FAR, T0 + DAY],
      [piece("day", T0, T0 + DAY), piece("hour", T0 + DAY, T0 + 2 * DAY)],
    ],
    [
      "a day final one millisecond too late: hours",
      [T0, T0 + DAY, null, [], FAR, T0 + DAY - 1],
      [piece("hour", T0, T0 + DAY)],
    ],
    [
      "hours not yet final: minutes",
      [T0, T0 + 8 * HOUR, null, [], T0 + 5 * HOUR + 1, T0],
      [piece("hour", T0, T0 + 5 * HOUR), piece("minute", T0 + 5 * HOUR, T0 + 8 * HOUR)],
    ],
    ["nothing final: minutes only", [T0, T0 + 2 * DAY, null, [], 0, 0], [piece("minute", T0, T0 + 2 * DAY)]],
    [
      "a held minute turns its day into hours and its hour into minutes",
      [T0, T0 + DAY, null, [T0 + 3 * HOUR + 7 * MIN], FAR, FAR],
      [
        piece("hour", T0, T0 + 3 * HOUR),
        piece("minute", T0 + 3 * HOUR, T0 + 4 * HOUR),
        piece("hour", T0 + 4 * HOUR, T0 + DAY),
      ],
    ],
    [
      "held minutes given unsorted",
      [T0, T0 + 6 * HOUR, "1h", [T0 + 4 * HOUR + 59 * MIN, T0 + HOUR], FAR, FAR],
      [
        piece("hour", T0, T0 + HOUR),
        piece("minute", T0 + HOUR, T0 + 2 * HOUR),
        piece("hour", T0 + 2 * HOUR, T0 + 4 * HOUR),
        piece("minute", T0 + 4 * HOUR, T0 + 5 * HOUR),
        piece("hour", T0 + 5 * HOUR, T0 + 6 * HOUR),
      ],
    ],
    [
      "a held minute at the range's first minute",
      [T0, T0 + 2 * HOUR, null, [T0], FAR, FAR],
      [piece("minute", T0, T0 + HOUR), piece("hour", T0 + HOUR, T0 + 2 * HOUR)],
    ],
    [
      "a held minute just past a day does not touch it",
      [T0, T0 + DAY + HOUR, null, [T0 + DAY], FAR, FAR],
      [piece("day", T0, T0 + DAY), piece("minute", T0 + DAY, T0 + DAY + HOUR)],
    ],
    ["step 1m never reads hours or days", [T0, T0 + 2 * DAY, "1m", [], FAR, FAR], [piece("minute", T0, T0 + 2 * DAY)]],
    ["step 1h never reads days", [T0, T0 + 2 * DAY, "1h", [], FAR, FAR], [piece("hour", T0, T0 + 2 * DAY)]],
    ["step 1d reads days", [T0, T0 + 2 * DAY, "1d", [], FAR, FAR], [piece("day", T0, T0 + 2 * DAY)]],
    [
      "a sub-minute range widens to its minute",
      [T0 + 10_000, T0 + 20_000, null, [], FAR, FAR],
      [piece("minute", T0, T0 + MIN)],
    ],
    ["an empty range has no pieces", [T0, T0, null, [], FAR, FAR], []],
  ])("%s", (_, args, want) => {
    expect(planPieces(...args)).toEqual(want);
  });

  it("tiles [floor(from), ceil(to)) exactly, coarse only where final and unheld, and as coarse as allowed (property)", () => {
    const rand = seededRandom(20261122);
    const int = (n: number) => Math.floor(rand() * n);
    const steps: Array<QueryStep | null> = [null, "1m", "1h", "1d"];
    const seen = new Set<Piece["grain"]>();
    for (let run = 0; run < 1000; run++) {
      const from = T0 + int(3 * DAY);
      const to = from + 1 + int(rand() < 0.3 ? 3 * HOUR : 4 * DAY);
      const start = Math.floor(from / MIN) * MIN;
      const end = Math.ceil(to / MIN) * MIN;
      const step = steps[int(steps.length)];
      const held = Array.from(
        { length: int(6) },
        () => Math.floor((start - HOUR + int(end - start + 2 * HOUR)) / MIN) * MIN,
      );
      const hourFinal = start + int(end - start + 2 * HOUR);
      const dayFinal = start + int(end - start + 2 * DAY);
      const pieces = planPieces(from, to, step, held, hourFinal, dayFinal);
      const holds = (a: number, b: number) => held.some((m) => m >= a && m < b);
      const canHour = step !== "1m";
      const canDay = step === null || step === "1d";
      const hourFits = (h: number) => canHour && h + HOUR <= hourFinal && !holds(h, h + HOUR);
      const dayFits = (d: number) => canDay && d + DAY <= dayFinal && !holds(d, d + DAY);
      const problems: string[] = [];
      const check = (ok: boolean, what: string) => {
        if (!ok) problems.push(what);
      };
      check(pieces.length > 0 && pieces[0].from === start, "starts at floor(from)");
      check(pieces.length > 0 && pieces[pieces.length - 1].to === end, "ends at ceil(to)");
      pieces.forEach((p, i) => {
        const at = `piece ${i} (${p.grain})`;
        seen.add(p.grain);
        check(p.from < p.to && p.from % MIN === 0 && p.to % MIN === 0, `${at}: whole minutes, not empty`);
        if (i > 0) {
          check(p.from === pieces[i - 1].to, `${at}: starts where the previous ends`);
          check(p.grain !== pieces[i - 1].grain, `${at}: not merged with the previous`);
        }
        if (p.grain === "day") {
          check(canDay, `${at}: step allows days`);
          check(p.from % DAY === 0 && p.to % DAY === 0, `${at}: whole days`);
          check(p.to <= dayFinal, `${at}: final`);
          check(!holds(p.from, p.to), `${at}: holds no held minute`);
        }
        if (p.grain === "hour") {
          check(canHour, `${at}: step allows hours`);
          check(p.from % HOUR === 0 && p.to % HOUR === 0, `${at}: whole hours`);
          check(p.to <= hourFinal, `${at}: final`);
          check(!holds(p.from, p.to), `${at}: holds no held minute`);
          for (let d = Math.ceil(p.from / DAY) * DAY; d + DAY <= p.to; d += DAY) {
            check(!dayFits(d), `${at}: day ${d} could be read from the day table`);
          }
        }
        if (p.grain === "minute") {
          for (let h = Math.ceil(p.from / HOUR) * HOUR; h + HOUR <= p.to; h += HOUR) {
            check(!hourFits(h), `${at}: hour ${h} could be read from the hour table`);
            check(
              !(h % DAY === 0 && h + DAY <= p.to && dayFits(h)),
              `${at}: day ${h} could be read from the day table`,
            );
          }
        }
      });
      expect(problems, JSON.stringify({ from, to, step, held, hourFinal, dayFinal, pieces })).toEqual([]);
    }
    // The generator reaches every grain (the checks above are not vacuous).
    expect([...seen].sort()).toEqual(["day", "hour", "minute"]);
  });
});

describe("toCsv", () => {
  it("writes a header and rows with CRLF line ends and a trailing CRLF, null as empty", () => {
    const r: QueryResult = {
      columns: ["country", "count", "p95", "ok"],
      rows: [
        ["DE", 3, 12.5, true],
        ["FR", 0, null, false],
      ],
      meta: { ignored: true },
    };
    expect(toCsv(r)).toBe("country,count,p95,ok\r\nDE,3,12.5,true\r\nFR,0,,false\r\n");
    expect(toCsv({ columns: ["count"], rows: [], meta: {} })).toBe("count\r\n");
  });

  it.each<[string | number | boolean | null, string]>([
    ["plain", "plain"],
    ["", ""],
    [null, ""],
    [-1.5, "-1.5"],
    ["a,b", '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
    ['"', '""""'],
    ["line\nbreak", '"line\nbreak"'],
    ["carriage\rreturn", '"carriage\rreturn"'],
    ["both\r\nends", '"both\r\nends"'],
    [" spaced ", " spaced "],
  ])("quotes %j as %j", (cell, want) => {
    expect(toCsv({ columns: ["x"], rows: [[cell]], meta: {} })).toBe(`x\r\n${want}\r\n`);
    expect(toCsv({ columns: [String(cell ?? "")], rows: [], meta: {} })).toBe(`${want}\r\n`);
  });

  /** A strict RFC 4180 reader, to read the output back. */
  function readCsv(text: string): string[][] {
    const rows: string[][] = [];
    let row: string[] = [];
    let i = 0;
    while (i < text.length) {
      let cell = "";
      if (text[i] === '"') {
        i++;
        for (;;) {
          if (text[i] === '"' && text[i + 1] === '"') {
            cell += '"';
            i += 2;
          } else if (text[i] === '"') {
            i++;
            break;
          } else if (i >= text.length) throw new Error("unclosed quote");
          else cell += text[i++];
        }
      } else {
        while (i < text.length && text[i] !== "," && text[i] !== "\r") {
          if (text[i] === '"' || text[i] === "\n") throw new Error(`bare ${JSON.stringify(text[i])} at ${i}`);
          cell += text[i++];
        }
      }
      row.push(cell);
      if (text[i] === ",") i++;
      else if (text.startsWith("\r\n", i)) {
        rows.push(row);
        row = [];
        i += 2;
      } else throw new Error(`unexpected ${JSON.stringify(text[i])} at ${i}`);
    }
    if (row.length) throw new Error("no trailing CRLF");
    return rows;
  }

  it("reads back cell for cell with an RFC 4180 reader (seeded random cells)", () => {
    const rand = seededRandom(4180);
    const alphabet = ['"', ",", "\n", "\r", " ", "a", "Z", "é", "0", ";"];
    const text = () => Array.from({ length: Math.floor(rand() * 6) }, () => alphabet[Math.floor(rand() * 10)]).join("");
    for (let run = 0; run < 300; run++) {
      const width = 1 + Math.floor(rand() * 4);
      const columns = Array.from({ length: width }, text);
      const rows = Array.from({ length: Math.floor(rand() * 4) }, () =>
        Array.from({ length: width }, (): string | number | null => {
          const k = rand();
          return k < 0.15 ? null : k < 0.3 ? Math.round(rand() * 1e6) / 100 : text();
        }),
      );
      const back = readCsv(toCsv({ columns, rows, meta: {} }));
      expect(back).toEqual([columns, ...rows.map((row) => row.map((c) => (c === null ? "" : String(c))))]);
    }
  });
});

describe("attributes (grouping by a catalog attribute)", () => {
  it("reads group_by key → kind.attribute in group_by order, each with the column replacing the key's", () => {
    const q = parseQuery(
      body({
        group_by: ["course", "country", "product"],
        attributes: { product: "products.category", course: "courses.level" },
        labels: { country: "users" },
      }),
      NOW,
    );
    expect(q.attributes).toEqual([
      { key: "course", kind: "courses", attribute: "level", column: "course_level" },
      { key: "product", kind: "products", attribute: "category", column: "product_category" },
    ]);
    expect(parseQuery(body({ group_by: ["product"] }), NOW).attributes).toEqual([]);
    // Every attribute of every kind is accepted, the required ones too.
    for (const a of ["products.name", "products.price", "users.first_name", "users.plan", "courses.instructor"]) {
      expect(parseQuery(body({ group_by: ["k"], attributes: { k: a } }), NOW).attributes[0].column).toBe(
        `k_${a.split(".")[1]}`,
      );
    }
  });

  it.each<[string, Partial<QueryInput>, string]>([
    [
      "a key not grouped by",
      { group_by: ["product"], attributes: { course: "courses.level" } },
      "attributes.course: attributes name group_by keys (product).",
    ],
    [
      "no group_by at all",
      { attributes: { product: "products.category" } },
      "attributes.product: attributes name group_by keys (none given).",
    ],
    [
      "a kind alone",
      { group_by: ["product"], attributes: { product: "products" } },
      'attributes.product: give "<kind>.<attribute>" like "products.category"; the kinds are products, users, courses.',
    ],
    [
      "an unknown kind",
      { group_by: ["product"], attributes: { product: "orders.category" } },
      'attributes.product: give "<kind>.<attribute>" like "products.category"; the kinds are products, users, courses.',
    ],
    [
      "an attribute of another kind",
      { group_by: ["product"], attributes: { product: "products.level" } },
      'attributes.product: products have no attribute "level"; use one of name, price, category.',
    ],
    [
      "an inherited property name",
      { group_by: ["user"], attributes: { user: "users.constructor" } },
      'attributes.user: users have no attribute "constructor"; use one of first_name, last_name, plan, country.',
    ],
    [
      "labels on the same key",
      { group_by: ["product"], attributes: { product: "products.category" }, labels: { product: "products" } },
      "attributes.product: a key grouped by an attribute has no label column (its values are merged); drop labels.product.",
    ],
    [
      "a column repeating another group_by key",
      { group_by: ["product", "product_category"], attributes: { product: "products.category" } },
      'attributes.product: the column "product_category" would repeat a group_by key, a label column, a measure\'s name or another attribute column.',
    ],
    [
      "a column repeating a measure's name",
      {
        group_by: ["course"],
        measures: [{ name: "course_level", expr: "count" }],
        attributes: { course: "courses.level" },
      },
      'attributes.course: the column "course_level" would repeat a group_by key, a label column, a measure\'s name or another attribute column.',
    ],
    [
      "two attribute columns alike",
      { group_by: ["u", "u_first"], attributes: { u: "users.first_name", u_first: "products.name" } },
      'attributes.u_first: the column "u_first_name" would repeat a group_by key, a label column, a measure\'s name or another attribute column.',
    ],
  ])("refuses %s", (_, over, message) => {
    const err = refusal(body(over));
    expect(err.code).toBe("invalid_query");
    expect(err.message).toBe(message);
  });

  it("shows the attribute, __unset__ for an entity without it, __unknown__ for a value not in the catalog", () => {
    const found = new Map<string, string | null>([
      ["p1", "kitchen"],
      ["p2", null],
    ]);
    expect(attributeValue("p1", found)).toBe("kitchen");
    expect(attributeValue("p2", found)).toBe("__unset__");
    expect(attributeValue("p3", found)).toBe("__unknown__");
    // Values naming no entity are never looked up and keep their meaning.
    expect(attributeValue("__none__", found)).toBe("__none__");
    expect(attributeValue("__other__", found)).toBe("__other__");
    expect(entityValues(["p1", "__none__", "p2", "p1", "__other__"])).toEqual(["p1", "p2"]);
  });

  it("refuses more groups than are looked up, naming the limit", () => {
    expect(() => checkAttributeGroups(QUERY_LIMITS.maxAttributeGroups)).not.toThrow();
    let err: unknown;
    try {
      checkAttributeGroups(QUERY_LIMITS.maxAttributeGroups + 1);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CodedError);
    expect((err as CodedError).code).toBe("invalid_query");
    expect((err as CodedError).message).toBe(
      `attributes: the range holds ${QUERY_LIMITS.maxAttributeGroups + 1} groups before they are merged by attribute; at most ${QUERY_LIMITS.maxAttributeGroups} are looked up in the catalog. Shorten the range or filter the grouped keys.`,
    );
  });
});
