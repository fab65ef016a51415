import { describe, expect, it } from "vitest";
import { Accumulator } from "../../core/aggregate";
import { nearestRank, RELATIVE_ACCURACY } from "../../core/ddsketch";
import { CodedError, ERRORS } from "../../core/errors";
import { encodeRegisters, hashUser } from "../../core/hll";
import { parseQuery } from "../../core/query";
import { seededRandom } from "../../core/random";
import { isoTime } from "../../core/time";
import { type AliasPlan, Cells } from "../../workers/query/cells";
import { executeQuery } from "../../workers/query/execute";
import { testEnv } from "./env";
import { addEntity, call, createTenant, expectError, queryOk, sendJson, type TenantKeys } from "./helpers";

type CellValue = string | number | boolean | null;
interface Result {
  columns: string[];
  rows: CellValue[][];
  meta: {
    groups: number;
    truncated: boolean;
    missing: unknown[];
    attributes?: Record<string, { kind: string; attribute: string; column: string; values: number; found: number }>;
  };
}

const MINUTE = 60_000;

const ok = (t: TenantKeys, body: unknown) => queryOk<Result>(t, body);
const catalog = addEntity;

/** Sends events in batches the test config accepts (50 a batch). */
async function send(t: TenantKeys, events: unknown[]) {
  for (let i = 0; i < events.length; i += 50) {
    const res = await sendJson(t.ingest, events.slice(i, i + 50));
    expect(res.status).toBe(200);
    const receipt = (await res.json()) as { accepted: number };
    expect(receipt.accepted).toBe(Math.min(50, events.length - i));
  }
}

/** Rows as objects keyed by column. */
const objects = (r: Result) => r.rows.map((row) => Object.fromEntries(r.columns.map((c, i) => [c, row[i]])));

/** Groups sorted as the executor sorts them without order_by (by the JSON of the group's values). */
const byGroup = <T>(groups: Map<string, T>): Array<[string, T]> =>
  [...groups].sort(([a], [b]) => (JSON.stringify([a]) < JSON.stringify([b]) ? -1 : 1));

/** Exact figures of a set of events, the oracle every answer is compared with. */
interface Sale {
  product?: string;
  value: number;
  user?: string;
}
function oracle(sales: Sale[]) {
  const values = sales.map((s) => s.value).sort((a, b) => a - b);
  return {
    count: sales.length,
    sum: values.reduce((a, v) => a + v, 0),
    min: values[0],
    max: values[values.length - 1],
    p50: values[nearestRank(0.5, values.length)],
    distinct_users: new Set(sales.map((s) => s.user).filter((u) => u !== undefined)).size,
  };
}

function groupBy<T>(items: T[], key: (x: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const x of items) out.set(key(x), [...(out.get(key(x)) ?? []), x]);
  return out;
}

describe("POST /v1/query: grouping by a catalog attribute", () => {
  it("merges products by category exactly (counts, sums, min, max, distinct users, p50); unknown ids and absent categories apart", async () => {
    const t = await createTenant("attributes-category");
    await catalog(t, "products", { id: "p1", name: "Kettle", category: "kitchen", price: 30 });
    await catalog(t, "products", { id: "p2", name: "Pan", category: "kitchen", price: 20 });
    await catalog(t, "products", { id: "p3", name: "Rake", category: "garden", price: 15 });
    await catalog(t, "products", { id: "p4", name: "Gift card", price: 50 }); // no category
    // p5 is never catalogued. Five products: the test config tracks five values per key, so none is folded.
    const products = ["p1", "p2", "p3", "p4", "p5"];
    const rand = seededRandom(2026);
    const sales: Sale[] = Array.from({ length: 120 }, (_, i) => ({
      product: products[i % 5],
      value: 1 + Math.floor(rand() * 500) / 4,
      // Each product's buyers overlap the next product's in part: p1 u0–u3, p2 u2–u5, …
      user: `u${(i % 5) * 2 + Math.floor(rand() * 4)}`,
    }));
    await send(
      t,
      sales.map((s) => ({ name: "order", value: s.value, user: s.user, dims: { product: s.product } })),
    );
    const category: Record<string, string> = {
      p1: "kitchen",
      p2: "kitchen",
      p3: "garden",
      p4: "__unset__",
      p5: "__unknown__",
    };

    const q = {
      stream: "order",
      measures: ["count", "sum", "min", "max", "p50", "distinct_users"],
      group_by: ["product"],
      range: { last: "1h" },
      attributes: { product: "products.category" },
    };
    const r = await ok(t, q);
    expect(r.columns).toEqual(["product_category", "count", "sum", "min", "max", "p50", "distinct_users"]);
    const expected = byGroup(groupBy(sales, (s) => category[s.product as string]));
    expect(objects(r).map((o) => o.product_category)).toEqual(["__unknown__", "__unset__", "garden", "kitchen"]);
    expect(expected.map(([c]) => c)).toEqual(["__unknown__", "__unset__", "garden", "kitchen"]);
    for (const [i, [, group]] of expected.entries()) {
      const want = oracle(group);
      const got = objects(r)[i];
      expect(got.count).toBe(want.count);
      expect(got.sum).toBeCloseTo(want.sum, 6);
      expect(got.min).toBe(want.min);
      expect(got.max).toBe(want.max);
      expect(got.distinct_users).toBe(want.distinct_users);
      expect(Math.abs((got.p50 as number) - want.p50)).toBeLessThanOrEqual(RELATIVE_ACCURACY * want.p50);
    }
    // The merged distinct users are a union, neither a sum nor one product's: kitchen's two products share some.
    const kitchen = objects(r)[3];
    const perProduct = ["p1", "p2"].map((p) => oracle(sales.filter((s) => s.product === p)).distinct_users);
    expect(kitchen.distinct_users).toBeLessThan(perProduct[0] + perProduct[1]);
    expect(kitchen.distinct_users).toBeGreaterThan(Math.max(...perProduct));
    expect(r.meta.groups).toBe(4);
    expect(r.meta.attributes).toEqual({
      product: { kind: "products", attribute: "category", column: "product_category", values: 5, found: 4 },
    });

    // Deleting an entity leaves the analytics intact: its id then groups under __unknown__.
    expect((await call("DELETE", "/v1/catalog/products/p3", t.admin)).status).toBe(200);
    const after = await ok(t, { ...q, measures: ["count", "sum", "distinct_users"] });
    category.p3 = "__unknown__";
    const expectedAfter = byGroup(groupBy(sales, (s) => category[s.product as string]));
    expect(objects(after)).toEqual(
      expectedAfter.map(([c, group]) => {
        const o = oracle(group);
        return { product_category: c, count: o.count, sum: expect.closeTo(o.sum, 6), distinct_users: o.distinct_users };
      }),
    );
    expect(after.meta.attributes?.product).toMatchObject({ values: 5, found: 3 });
  });

  it("orders and limits after the merge: the top categories, not the top products' categories", async () => {
    const t = await createTenant("attributes-top");
    await catalog(t, "products", { id: "p1", name: "Kettle", category: "kitchen", price: 30 });
    await catalog(t, "products", { id: "p2", name: "Pan", category: "kitchen", price: 20 });
    await catalog(t, "products", { id: "p3", name: "Rake", category: "garden", price: 15 });
    await catalog(t, "products", { id: "p4", name: "Gift card", price: 50 });
    // By product the top two by revenue are p3 and p5; by category, kitchen (p1 + p2) then garden.
    const revenue: Record<string, number[]> = {
      p1: [25, 15],
      p2: [30, 10],
      p3: [70],
      p4: [4, 6],
      p5: [35, 25],
    };
    await send(
      t,
      Object.entries(revenue).flatMap(([product, values]) =>
        values.map((value) => ({ name: "sale", value, dims: { product } })),
      ),
    );
    const q = {
      stream: "sale",
      measures: ["sum", "count"],
      group_by: ["product"],
      range: { window: "5m" },
      order_by: { measure: "sum", dir: "desc" },
      limit: 2,
      attributes: { product: "products.category" },
    };
    const byProduct = await ok(t, { ...q, attributes: undefined });
    expect(objects(byProduct).map((o) => [o.product, o.sum])).toEqual([
      ["p3", 70],
      ["p5", 60],
    ]);

    const top = await ok(t, q);
    // No top-k bounds: every group was read whole before the merge.
    expect(top.columns).toEqual(["product_category", "sum", "count"]);
    expect(objects(top)).toEqual([
      { product_category: "kitchen", sum: 80, count: 4 },
      { product_category: "garden", sum: 70, count: 1 },
    ]);
    expect(top.meta).toMatchObject({ groups: 4, truncated: true });
    const bottom = await ok(t, { ...q, order_by: { measure: "sum", dir: "asc" }, limit: 1 });
    expect(objects(bottom)).toEqual([{ product_category: "__unset__", sum: 10, count: 2 }]);

    // After p3 is deleted its revenue joins p5's under __unknown__, now the top.
    expect((await call("DELETE", "/v1/catalog/products/p3", t.admin)).status).toBe(200);
    expect(objects(await ok(t, q))).toEqual([
      { product_category: "__unknown__", sum: 130, count: 3 },
      { product_category: "kitchen", sum: 80, count: 4 },
    ]);
  });

  it("computes completion rate by course level across two streams, per step, with the previous period", async () => {
    const t = await createTenant("attributes-courses");
    await catalog(t, "courses", { id: "c1", title: "Intro to SQL", level: "beginner" });
    await catalog(t, "courses", { id: "c2", title: "Intro to Git", level: "beginner" });
    await catalog(t, "courses", { id: "c3", title: "Query planning", level: "advanced", instructor: "Ada" });
    // c4 is never catalogued.
    const level: Record<string, string> = { c1: "beginner", c2: "beginner", c3: "advanced", c4: "__unknown__" };
    const now = Date.now();
    // Events per course at 5 and 3 minutes ago (the range) and 15 minutes ago (the previous period).
    const plan: Record<string, { started: [number, number, number]; completed: [number, number, number] }> = {
      c1: { started: [4, 2, 3], completed: [2, 1, 1] },
      c2: { started: [2, 2, 1], completed: [1, 2, 0] },
      c3: { started: [5, 0, 2], completed: [1, 0, 2] },
      c4: { started: [1, 1, 0], completed: [0, 1, 0] },
    };
    const ago = [5, 3, 15].map((m) => now - m * MINUTE);
    const events: Array<{ name: string; ts: number; dims: { course: string } }> = [];
    for (const [course, p] of Object.entries(plan)) {
      for (const [stream, counts] of [
        ["course.started", p.started],
        ["course.completed", p.completed],
      ] as const) {
        counts.forEach((n, i) => {
          for (let k = 0; k < n; k++) events.push({ name: stream, ts: ago[i], dims: { course } });
        });
      }
    }
    await send(t, events);

    /** Started and completed counts per level over the events `keep` selects, by bucket when `bucket` is given. */
    const tally = (keep: (ts: number) => boolean, bucket: (ts: number) => number = () => 0) => {
      const out = new Map<string, { s: number; c: number }>();
      for (const e of events) {
        if (!keep(e.ts)) continue;
        const k = JSON.stringify([level[e.dims.course], bucket(e.ts)]);
        const x = out.get(k) ?? { s: 0, c: 0 };
        if (e.name === "course.started") x.s++;
        else x.c++;
        out.set(k, x);
      }
      return out;
    };
    const rate = (x: { s: number; c: number } | undefined) => (x && x.s > 0 ? x.c / x.s : null);
    const recent = (ts: number) => ts > now - 10 * MINUTE;
    const earlier = (ts: number) => !recent(ts);

    const body = {
      streams: { s: "course.started", c: "course.completed" },
      measures: [{ name: "completion_rate", expr: "c.count / s.count" }, "s.count", "c.count"],
      group_by: ["course"],
      range: { last: "10m" },
      attributes: { course: "courses.level" },
      compare: "previous_period",
    };
    const whole = await ok(t, body);
    expect(whole.columns).toEqual([
      "course_level",
      "completion_rate",
      "s.count",
      "c.count",
      "completion_rate_previous",
      "s.count_previous",
      "c.count_previous",
    ]);
    const cur = tally(recent);
    const prev = tally(earlier);
    expect(objects(whole)).toEqual(
      ["__unknown__", "advanced", "beginner"].map((l) => {
        const k = JSON.stringify([l, 0]);
        return {
          course_level: l,
          completion_rate: rate(cur.get(k)),
          "s.count": cur.get(k)?.s ?? 0,
          "c.count": cur.get(k)?.c ?? 0,
          completion_rate_previous: rate(prev.get(k)),
          "s.count_previous": prev.get(k)?.s ?? 0,
          "c.count_previous": prev.get(k)?.c ?? 0,
        };
      }),
    );
    // beginner = (c1 + c2): (2 + 1 + 1 + 2) / (4 + 2 + 2 + 2), not the mean of the two courses' rates.
    expect(objects(whole)[2].completion_rate).toBe(6 / 10);

    // Per minute: one row per level and minute with events, the previous period's figures ten minutes earlier.
    const stepped = await ok(t, { ...body, step: "1m" });
    expect(stepped.columns).toEqual(["course_level", "t", ...whole.columns.slice(1)]);
    const minute = (ts: number) => Math.floor(ts / MINUTE) * MINUTE;
    const curSteps = tally(recent, minute);
    const prevSteps = tally(earlier, (ts) => minute(ts) + 10 * MINUTE);
    const rows = [...curSteps.keys()]
      .map((k) => JSON.parse(k) as [string, number])
      .sort((a, b) => (a[0] === b[0] ? a[1] - b[1] : a[0] < b[0] ? -1 : 1))
      .map(([l, b]) => {
        const k = JSON.stringify([l, b]);
        return {
          course_level: l,
          t: isoTime(b),
          completion_rate: rate(curSteps.get(k)),
          "s.count": curSteps.get(k)?.s ?? 0,
          "c.count": curSteps.get(k)?.c ?? 0,
          completion_rate_previous: rate(prevSteps.get(k)),
          "s.count_previous": prevSteps.get(k)?.s ?? 0,
          "c.count_previous": prevSteps.get(k)?.c ?? 0,
        };
      });
    expect(rows.length).toBe(5); // advanced has no events 3 minutes ago
    expect(objects(stepped)).toEqual(rows);
  });

  it("groups with another key, under filters: category × country, and a filter on the grouped key", async () => {
    const t = await createTenant("attributes-filters");
    const config = await call("PUT", "/v1/streams/purchase/config", t.admin, {
      dimension_sets: [["product", "country"]],
    });
    expect(config.status).toBe(200);
    await catalog(t, "products", { id: "p1", name: "Kettle", category: "kitchen", price: 30 });
    await catalog(t, "products", { id: "p2", name: "Pan", category: "kitchen", price: 20 });
    await catalog(t, "products", { id: "p3", name: "Rake", category: "garden", price: 15 });
    const category: Record<string, string> = { p1: "kitchen", p2: "kitchen", p3: "garden", p5: "__unknown__" };
    const sales = [
      ...[3, 5, 7].map((value) => ({ product: "p1", country: "DE", value })),
      ...[11, 13].map((value) => ({ product: "p2", country: "DE", value })),
      ...[17, 19].map((value) => ({ product: "p3", country: "DE", value })),
      ...[23, 29].map((value) => ({ product: "p1", country: "FR", value })),
      { product: "p5", country: "FR", value: 31 },
    ];
    await send(
      t,
      sales.map((s) => ({ name: "purchase", value: s.value, dims: { product: s.product, country: s.country } })),
    );
    const expectRows = (r: Result, kept: typeof sales, keys: Array<"category" | "country">) => {
      const groups = groupBy(kept, (s) =>
        JSON.stringify(keys.map((k) => (k === "category" ? category[s.product] : s.country))),
      );
      const want = [...groups]
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, g]) => {
          const vals = JSON.parse(k) as string[];
          return {
            ...Object.fromEntries(keys.map((c, i) => [c === "category" ? "product_category" : "country", vals[i]])),
            count: g.length,
            sum: g.reduce((a, s) => a + s.value, 0),
          };
        });
      expect(objects(r)).toEqual(want);
    };
    const q = {
      stream: "purchase",
      measures: ["count", "sum"],
      group_by: ["product", "country"],
      range: { window: "5m" },
      attributes: { product: "products.category" },
    };
    const both = await ok(t, q);
    expect(both.columns).toEqual(["product_category", "country", "count", "sum"]);
    expectRows(both, sales, ["category", "country"]);
    expect(both.rows.length).toBe(4);

    const de = await ok(t, { ...q, filters: [{ dim: "country", op: "eq", value: "DE" }] });
    expectRows(
      de,
      sales.filter((s) => s.country === "DE"),
      ["category", "country"],
    );
    const some = await ok(t, {
      ...q,
      group_by: ["product"],
      filters: [{ dim: "product", op: "in", values: ["p1", "p3", "p5"] }],
    });
    expectRows(
      some,
      sales.filter((s) => s.product !== "p2"),
      ["category"],
    );
  });

  it("counts users by plan: events by users grouped under their catalogued plan", async () => {
    const t = await createTenant("attributes-plans");
    await catalog(t, "users", { id: "u1", first_name: "Ada", last_name: "Lovelace", plan: "pro" });
    await catalog(t, "users", { id: "u2", first_name: "Alan", last_name: "Turing", plan: "pro", country: "GB" });
    await catalog(t, "users", { id: "u3", first_name: "Grace", last_name: "Hopper", plan: "free" });
    await catalog(t, "users", { id: "u4", first_name: "Edsger", last_name: "Dijkstra" }); // no plan
    const sessions: Record<string, number> = { u1: 3, u2: 2, u3: 4, u4: 1, u5: 2 };
    const plan: Record<string, string> = { u1: "pro", u2: "pro", u3: "free", u4: "__unset__", u5: "__unknown__" };
    const events = Object.entries(sessions).flatMap(([user, n]) =>
      Array.from({ length: n }, () => ({ name: "session", user, dims: { user } })),
    );
    await send(t, events);
    const r = await ok(t, {
      stream: "session",
      measures: ["count", "distinct_users"],
      group_by: ["user"],
      range: { window: "5m" },
      attributes: { user: "users.plan" },
    });
    const want = byGroup(groupBy(events, (e) => plan[e.user])).map(([p, g]) => ({
      user_plan: p,
      count: g.length,
      distinct_users: new Set(g.map((e) => e.user)).size,
    }));
    expect(objects(r)).toEqual(want);
    expect(want.find((w) => w.user_plan === "pro")).toEqual({ user_plan: "pro", count: 5, distinct_users: 2 });
    const byCountry = await ok(t, {
      stream: "session",
      measures: ["count"],
      group_by: ["user"],
      range: { window: "5m" },
      attributes: { user: "users.country" },
    });
    expect(objects(byCountry)).toEqual([
      { user_country: "GB", count: 2 },
      { user_country: "__unknown__", count: 2 },
      { user_country: "__unset__", count: 8 },
    ]);
  });

  it("keeps events without the key (__none__, counts and sums only) apart from entities lacking the attribute (__unset__)", async () => {
    const t = await createTenant("attributes-none");
    await catalog(t, "products", { id: "p1", name: "Kettle", category: "kitchen", price: 30 });
    await catalog(t, "products", { id: "p4", name: "Gift card", price: 50 });
    await send(t, [
      { name: "tip", value: 10, dims: { product: "p1" } },
      { name: "tip", value: 5, dims: { product: "p4" } },
      { name: "tip", value: 7, dims: { product: "p4" } },
      { name: "tip", value: 1 },
      { name: "tip", value: 2 },
      { name: "tip", value: 3 },
    ]);
    const r = await ok(t, {
      stream: "tip",
      measures: ["count", "sum", "p50"],
      group_by: ["product"],
      range: { window: "5m" },
      attributes: { product: "products.category" },
    });
    // Events without a product are known only as the stream's total minus its groups: p50 is not known there.
    const rows = objects(r);
    expect(rows.map((o) => o.product_category)).toEqual(["__none__", "__unset__", "kitchen"]);
    expect(rows[0]).toEqual({ product_category: "__none__", count: 3, sum: 6, p50: null });
    // The gift card's own events keep every measure: they are a group of their own, not the residual.
    expect(rows[1]).toMatchObject({ product_category: "__unset__", count: 2, sum: 12 });
    expect(rows[1].p50).toBeGreaterThanOrEqual(5 * 0.99);
    expect(rows[1].p50).toBeLessThanOrEqual(7 * 1.01);
    expect(rows[2]).toEqual({ product_category: "kitchen", count: 1, sum: 10, p50: 10 });
  });

  it("refuses attributes a kind does not have, naming the ones it has, and keys not grouped by", async () => {
    const t = await createTenant("attributes-refusals");
    const q = { stream: "sale", measures: ["count"], group_by: ["product"], range: { window: "5m" } };
    const err = await expectError(
      await call("POST", "/v1/query", t.read, { ...q, attributes: { product: "products.colour" } }),
      400,
      "invalid_query",
    );
    expect(err.message).toBe(
      'attributes.product: products have no attribute "colour"; use one of name, price, category.',
    );
    const key = await expectError(
      await call("POST", "/v1/query", t.read, { ...q, attributes: { course: "courses.level" } }),
      400,
      "invalid_query",
    );
    expect(key.message).toBe("attributes.course: attributes name group_by keys (product).");
  });

  it("answers 503 (history_disabled without a database, catalog_unavailable when it cannot be read), not wrong groups, when the catalog cannot be read", async () => {
    const t = await createTenant("attributes-outage");
    await send(t, [{ name: "sale", value: 3, dims: { product: "p1" } }]);
    const q = parseQuery(
      {
        stream: "sale",
        measures: ["count"],
        group_by: ["product"],
        range: { window: "5m" },
        attributes: { product: "products.category" },
      },
      Date.now(),
    );
    const refusal = async (env: Env): Promise<CodedError> => {
      try {
        await executeQuery(env, t.tenantId, q);
      } catch (err) {
        if (err instanceof CodedError) return err;
        throw err;
      }
      throw new Error("the query was answered");
    };
    expect(ERRORS.history_disabled.status).toBe(503);
    // No database configured: refused before anything is read.
    const none = await refusal({ ...testEnv, DATABASE_URL: "" });
    expect(none.code).toBe("history_disabled");
    expect(none.message).toContain("the catalog is unavailable");
    expect(none.message).toContain("DATABASE_URL");
    // A database that cannot be reached (an address nothing listens on, through the same bridge).
    const down = await refusal({ ...testEnv, DATABASE_URL: "postgres://edgepulse@127.0.0.1:1/none" });
    expect(down.code).toBe("catalog_unavailable");
    expect(down.message).toContain("attributes.product: the catalog is unavailable: PostgreSQL could not be read");
    // The same query without attributes is answered from the actor, saying history is missing.
    const plain = await executeQuery(
      { ...testEnv, DATABASE_URL: "postgres://edgepulse@127.0.0.1:1/none" },
      t.tenantId,
      { ...q, attributes: [] },
    );
    expect(plain.rows).toEqual([["p1", 1]]);
    expect(plain.meta.missing).toEqual([expect.objectContaining({ part: "history" })]);
  });
});

describe("Cells.regroup", () => {
  it("merges exactly: regrouping read cells equals reading straight into the merged groups", () => {
    const rand = seededRandom(77);
    const plan: AliasPlan = { alias: "s", stream: "x", source: null, full: true, distinct: true, topk: false };
    const map = (g: string[]) => [g[0] === "p5" ? "__unknown__" : Number(g[0].slice(1)) % 2 ? "odd" : "even", g[1]];
    const read = new Cells();
    const direct = new Cells();
    for (let i = 0; i < 300; i++) {
      const group = [`p${1 + Math.floor(rand() * 5)}`, rand() < 0.5 ? "DE" : "FR"];
      const bucket = Math.floor(rand() * 4) * MINUTE;
      const acc = new Accumulator();
      const users = new Map<number, number>();
      for (let k = 0; k < 1 + Math.floor(rand() * 3); k++) {
        acc.addEvent(Math.floor(rand() * 1000)); // integers: sums are exact in any order
        const { reg, rank } = hashUser(`u${Math.floor(rand() * 40)}`);
        if (rank > (users.get(reg) ?? 0)) users.set(reg, rank);
      }
      const aggregate = acc.toAggregate();
      const hll = encodeRegisters(users);
      const value = JSON.stringify(group);
      read.add(plan, bucket, group, aggregate, hll, [null, null], value);
      direct.add(plan, bucket, map(group), aggregate, hll, [null, null], value);
    }
    read.otherUnfiltered = 4;
    const merged = read.regroup(map);
    expect(merged.otherUnfiltered).toBe(4);
    expect([...merged.groups].sort()).toEqual([...direct.groups].sort());
    expect(merged.sourceValues).toEqual(direct.sourceValues);
    const same = (a: Cells["totals"], b: Cells["totals"]) => {
      expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
      for (const [key, per] of b) {
        const x = a.get(key)?.get("s");
        const y = per.get("s");
        expect(x?.acc.figures(60, 0)).toEqual(y?.acc.figures(60, 0));
        expect(new Map([...(x?.users ?? [])].sort())).toEqual(new Map([...(y?.users ?? [])].sort()));
      }
    };
    same(merged.totals, direct.totals);
    expect([...merged.byBucket.keys()].sort()).toEqual([...direct.byBucket.keys()].sort());
    for (const [bucket, groups] of direct.byBucket) same(merged.byBucket.get(bucket) ?? new Map(), groups);
  });
});
