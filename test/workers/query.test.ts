import { env, runDurableObjectAlarm, SELF } from "cloudflare:test";
import { and, eq, sql } from "drizzle-orm";
import { describe, expect, it, vi } from "vitest";
import { encode as encodeSketch, freeze, keyOf, nearestRank } from "../../core/ddsketch";
import { TOPK_ITEMS } from "../../core/dims";
import { distinctOfEncoded, encodeRegisters, hashUser } from "../../core/hll";
import { parseServerMessage, type QueryResultMessage } from "../../core/live";
import { FrequentItems } from "../../core/topk";
import { withDb } from "../../db/client";
import {
  type DimPeriodInsert,
  type MinutePeriod,
  mergePeriods,
  type StoredDimAggregate,
  upsertDimPeriods,
  upsertPeriods,
} from "../../db/history";
import { metricsDimHour, metricsDimMinute, metricsMinute } from "../../db/schema";
import type { DimRow } from "../../durable-objects/metric-actor/dims";
import { runMaintenance } from "../../workers/maintenance";
import { BASE, createTenant, expectError, sendJson, type TenantKeys } from "./helpers";

const MINUTE = 60_000;

async function query(t: TenantKeys, body: unknown, format = "") {
  return SELF.fetch(`${BASE}/v1/query${format}`, {
    method: "POST",
    headers: { authorization: `Bearer ${t.read}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

interface Result {
  columns: string[];
  rows: Array<Array<string | number | boolean | null>>;
  meta: { missing: unknown[]; sources: string[]; truncated: boolean; freshness_ms: number | null; groups: number };
}

async function ok(t: TenantKeys, body: unknown): Promise<Result> {
  const res = await query(t, body);
  if (res.status !== 200) throw new Error(`query ${res.status}: ${await res.text()}`);
  return (await res.json()) as Result;
}

/** Rows as objects keyed by column. */
const objects = (r: Result) => r.rows.map((row) => Object.fromEntries(r.columns.map((c, i) => [c, row[i]])));

const actor = (t: TenantKeys, stream: string) => env.METRIC_ACTOR.getByName(`${t.tenantId}/${stream}`);

/** The setting that lets a transaction past `holdWrites` (the test's own writes). */
const HOLD_BYPASS = "edgepulse_test.hold_bypass";
const HOLD_TABLES = ["metrics_minute", "metrics_dim_minute"];

/**
 * Makes PostgreSQL refuse every write of one tenant's stream to the minute tables, except in a transaction
 * that sets HOLD_BYPASS: the actor keeps its minutes owed (its writes fail and are retried) until
 * `releaseWrites`, however long that takes; no other stream is touched.
 */
async function holdWrites(tenantId: string, stream: string) {
  expect(tenantId).toMatch(/^[A-Za-z0-9_-]+$/);
  expect(stream).toMatch(/^[a-z.-]+$/);
  await withDb(env, async (db) => {
    await db.execute(
      sql.raw(`CREATE OR REPLACE FUNCTION edgepulse_test_hold() RETURNS trigger AS $$
        BEGIN
          IF NEW.tenant_id = '${tenantId}' AND NEW.stream = '${stream}'
             AND current_setting('${HOLD_BYPASS}', true) IS DISTINCT FROM 'on' THEN
            RAISE EXCEPTION 'held for the test' USING ERRCODE = '55000';
          END IF;
          RETURN NEW;
        END $$ LANGUAGE plpgsql`),
    );
    for (const table of HOLD_TABLES) {
      await db.execute(
        sql.raw(
          `CREATE OR REPLACE TRIGGER edgepulse_test_hold BEFORE INSERT OR UPDATE ON ${table} FOR EACH ROW EXECUTE FUNCTION edgepulse_test_hold()`,
        ),
      );
    }
  });
}

async function releaseWrites() {
  await withDb(env, async (db) => {
    for (const table of HOLD_TABLES)
      await db.execute(sql.raw(`DROP TRIGGER IF EXISTS edgepulse_test_hold ON ${table}`));
  });
}

/** Runs the stream's alarm until its history (stream and dimension rows) has been written. */
async function flushed(t: TenantKeys, stream: string) {
  await vi.waitFor(
    async () => {
      await runDurableObjectAlarm(actor(t, stream));
      const s = (await actor(t, stream).flushStatus()) as {
        pending_minutes: number;
        dimension_minutes_pending: number;
      };
      expect(s).toMatchObject({ pending_minutes: 0, dimension_minutes_pending: 0 });
    },
    { timeout: 20_000, interval: 50 },
  );
}

describe("POST /v1/query: by dimension", () => {
  it("groups a live window by a key, exactly, with __other__ beyond the value budget; groups add up to the stream", async () => {
    const t = await createTenant();
    const countries = ["DE", "FR", "US", "JP", "BR", "IN", "GB"];
    const events = Array.from({ length: 140 }, (_, i) => ({
      name: "checkout",
      value: 10 + ((i * 37) % 200),
      user: `u${i % 23}`,
      dims: { country: countries[i % 7] },
    }));
    for (let i = 0; i < events.length; i += 50) await sendJson(t.ingest, events.slice(i, i + 50));
    const r = await ok(t, {
      stream: "checkout",
      measures: ["count", "sum", "p95", "distinct_users"],
      group_by: ["country"],
      range: { window: "5m" },
      order_by: { measure: "count", dir: "desc" },
    });
    expect(r.columns).toEqual([
      "country",
      "count",
      "sum",
      "p95",
      "distinct_users",
      "count_low",
      "count_high",
      "guaranteed",
      "estimated",
    ]);
    // The test config tracks 5 values per key: the first five seen, and __other__ for the rest. Values
    // folded into __other__ also appear as estimated rows (from its summary), ranked with their bounds.
    const all = objects(r);
    expect(all.filter((x) => x.estimated).map((x) => [x.country, x.count_low, x.count_high])).toEqual([
      ["GB", 20, 20],
      ["IN", 20, 20],
    ]);
    const rows = all.filter((x) => !x.estimated);
    expect(rows.map((x) => x.country).sort()).toEqual(["BR", "DE", "FR", "JP", "US", "__other__"]);
    for (const row of rows) {
      const mine = events.filter((e) =>
        row.country === "__other__" ? ["IN", "GB"].includes(e.dims.country) : e.dims.country === row.country,
      );
      expect(row.count).toBe(mine.length);
      expect(row.sum).toBe(mine.reduce((a, e) => a + e.value, 0));
      if (row.country !== "__other__") {
        const vals = mine.map((e) => e.value).sort((a, b) => a - b);
        const exact = vals[nearestRank(0.95, vals.length)];
        expect(Math.abs((row.p95 as number) - exact) / exact).toBeLessThanOrEqual(0.01);
        expect(row.distinct_users).toBe(new Set(mine.map((e) => e.user)).size);
      }
    }
    expect(rows.reduce((a, x) => a + (x.count as number), 0)).toBe(events.length);
    expect(r.meta.freshness_ms).toBe(0);
    expect(r.meta.sources).toContain("actor");
  });

  it("counts events without the grouped key as __none__, so groups add up to the stream", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [
      { name: "partial", value: 2, dims: { plan: "pro" } },
      { name: "partial", value: 3, dims: { plan: "free" } },
      { name: "partial", value: 4 },
      { name: "partial", value: 5, dims: { other: "x" } },
    ]);
    const rows = objects(
      await ok(t, {
        stream: "partial",
        measures: ["count", "sum", "p50"],
        group_by: ["plan"],
        range: { window: "1m" },
      }),
    );
    expect(rows).toEqual([
      { plan: "__none__", count: 2, sum: 9, p50: null },
      { plan: "free", count: 1, sum: 3, p50: 3 },
      { plan: "pro", count: 1, sum: 2, p50: 2 },
    ]);
  });

  it("filters (in, not_in, prefix) on the grouped key and refuses a filter on another key without a dimension set", async () => {
    const t = await createTenant();
    const events = ["DE", "DK", "FR", "DE", "US"].map((country, i) => ({
      name: "f",
      value: i + 1,
      dims: { country, plan: i % 2 ? "pro" : "free" },
    }));
    await sendJson(t.ingest, events);
    const base = { stream: "f", measures: ["count", "sum"], group_by: ["country"], range: { window: "1m" } };
    const inRows = objects(await ok(t, { ...base, filters: [{ dim: "country", op: "in", values: ["DE", "US"] }] }));
    expect(inRows.map((x) => [x.country, x.count])).toEqual([
      ["DE", 2],
      ["US", 1],
    ]);
    const prefixRows = objects(await ok(t, { ...base, filters: [{ dim: "country", op: "prefix", value: "D" }] }));
    expect(prefixRows.map((x) => x.country)).toEqual(["DE", "DK"]);
    const notIn = objects(await ok(t, { ...base, filters: [{ dim: "country", op: "not_in", values: ["DE"] }] }));
    expect(notIn.reduce((a, x) => a + (x.count as number), 0)).toBe(3);
    // Filtering by plan while grouping by country needs both keys aggregated jointly.
    const refused = await expectError(
      await query(t, { ...base, filters: [{ dim: "plan", op: "eq", value: "pro" }] }),
      400,
      "invalid_query",
    );
    expect(refused.message).toContain("PUT /v1/streams/f/config");
  });

  it("aggregates a declared dimension set jointly, from its declaration on, and says so", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "sets", dims: { country: "DE", plan: "pro" } }]);
    const put = await SELF.fetch(`${BASE}/v1/streams/sets/config`, {
      method: "PUT",
      headers: { authorization: `Bearer ${t.admin}`, "content-type": "application/json" },
      body: JSON.stringify({ dimension_sets: [["country", "plan"]] }),
    });
    expect(put.status).toBe(200);
    const reply = (await put.json()) as { dimension_sets: string[][]; applies_from: string; note: string };
    expect(reply.dimension_sets).toEqual([["country", "plan"]]);
    expect(reply.note).toContain("from now on");
    const events = [
      { country: "DE", plan: "pro", value: 10 },
      { country: "DE", plan: "free", value: 20 },
      { country: "FR", plan: "pro", value: 30 },
      { country: "DE", plan: "pro", value: 40 },
    ].map(({ value, ...dims }) => ({ name: "sets", value, dims }));
    await sendJson(t.ingest, events);
    const rows = objects(
      await ok(t, {
        stream: "sets",
        measures: ["count", "sum"],
        group_by: ["plan"],
        filters: [{ dim: "country", op: "eq", value: "DE" }],
        range: { window: "1m" },
      }),
    );
    // Only events after the declaration count in the set (the first event predates it).
    expect(rows).toEqual([
      { plan: "free", count: 1, sum: 20 },
      { plan: "pro", count: 2, sum: 50 },
    ]);
    const config = (await (
      await SELF.fetch(`${BASE}/v1/streams/sets/config`, { headers: { authorization: `Bearer ${t.read}` } })
    ).json()) as { dimension_sets: string[][]; dimensions: Array<{ name: string }> };
    expect(config.dimension_sets).toEqual([["country", "plan"]]);
    expect(config.dimensions.map((d) => d.name)).toEqual(expect.arrayContaining(["country", "plan", "country+plan"]));
    await expectError(
      await SELF.fetch(`${BASE}/v1/streams/sets/config`, {
        method: "PUT",
        headers: { authorization: `Bearer ${t.admin}`, "content-type": "application/json" },
        body: JSON.stringify({ dimension_sets: [["a", "a"]] }),
      }),
      400,
      "invalid_config",
    );
  });

  it("joins history and the live minutes at the seam: nothing counted twice or lost, also during a database outage", async () => {
    const t = await createTenant();
    const now = Date.now();
    // One batch (the test config's limit is 50): a later batch into the same minutes would reopen them.
    const old = Array.from({ length: 50 }, (_, i) => ({
      name: "seam",
      value: i,
      ts: now - 10 * MINUTE + (i % 5) * MINUTE,
      dims: { region: i % 2 ? "eu" : "us" },
    }));
    await sendJson(t.ingest, old);
    await flushed(t, "seam");
    const recent = Array.from({ length: 20 }, (_, i) => ({
      name: "seam",
      value: 100 + i,
      dims: { region: i % 2 ? "eu" : "us" },
    }));
    const q = { stream: "seam", measures: ["count", "sum"], group_by: ["region"], range: { last: "2h" } };
    const all = [...old, ...recent];
    const expected = ["eu", "us"].map((region) => {
      const mine = all.filter((e) => e.dims.region === region);
      return { region, count: mine.length, sum: mine.reduce((a, e) => a + e.value, 0) };
    });
    // With PostgreSQL unreachable, the answer holds what the actor has and says what is missing. Down before the
    // recent events are sent: should their minute end meanwhile, the actor cannot hand it over to PostgreSQL.
    expect((await fetch(`http://${env.PG_BRIDGE}/__bridge/down`, { method: "POST" })).status).toBe(200);
    try {
      await sendJson(t.ingest, recent);
      const down = await ok(t, q);
      expect(down.meta.missing).toEqual([expect.objectContaining({ stream: "seam", part: "history" })]);
      expect(objects(down).reduce((a, x) => a + (x.count as number), 0)).toBe(recent.length);
    } finally {
      expect((await fetch(`http://${env.PG_BRIDGE}/__bridge/up`, { method: "POST" })).status).toBe(200);
    }
    // With PostgreSQL back: history and the actor's minutes together, each counted once (whether or not the
    // recent minute has been written by now).
    const r = await ok(t, q);
    expect(objects(r)).toEqual(expected);
    expect(r.meta.sources).toEqual(expect.arrayContaining(["actor", "postgres:metrics_dim_minute"]));
    expect(r.meta.missing).toEqual([]);
  });

  it("counts a rewritten minute once, before and during its write: PostgreSQL has a version, its actor holds the newest", async () => {
    const t = await createTenant();
    const now = Date.now();
    const batch = (minutesAgo: number, n: number, base: number) =>
      Array.from({ length: n }, (_, i) => ({
        name: "rewrite",
        value: base + i,
        ts: now - minutesAgo * MINUTE,
        dims: { region: i % 2 ? "eu" : "us" },
      }));
    const first = [...batch(10, 20, 0), ...batch(6, 10, 50)];
    await sendJson(t.ingest, first);
    await flushed(t, "rewrite");
    // Late events into a minute already written, and into a new one. PostgreSQL refuses the actor's writes of
    // this stream (a trigger, for this tenant's stream only), so however often its alarm runs and retries, it
    // holds both minutes, owed to PostgreSQL, for as long as the test needs. (A stalled connection would not
    // do: past FLUSH_TIMEOUT_MS the actor gives it up and writes on a new one.) The test's own writes pass.
    const late = [...batch(10, 8, 100), ...batch(8, 6, 200)];
    const all = [...first, ...late];
    const q = { stream: "rewrite", measures: ["count", "sum"], group_by: ["region"], range: { last: "2h" } };
    const expected = ["eu", "us"].map((region) => {
      const mine = all.filter((e) => e.dims.region === region);
      return { region, count: mine.length, sum: mine.reduce((a, e) => a + e.value, 0) };
    });
    await holdWrites(t.tenantId, "rewrite");
    try {
      await sendJson(t.ingest, late);
      const stub = actor(t, "rewrite");
      expect(await stub.flushStatus()).toMatchObject({ pending_minutes: 2 });
      // Before the write: PostgreSQL has the minute's older version.
      const before = await ok(t, q);
      expect(objects(before)).toEqual(expected); // no __none__ row either: the stream's totals are not doubled
      expect(before.meta.sources).toEqual(expect.arrayContaining(["actor", "postgres:metrics_dim_minute"]));
      // During the write: its rows have landed (the actor's own absolute rows, as its flush writes them) but the
      // actor has not heard back, so it still holds the minutes.
      const from = now - 2 * 3_600_000;
      const dimRows = (await stub.dimRows(from, now + MINUTE, ["region"])) as DimRow[];
      const streamRows = (await stub.streamRows(from, now + MINUTE)) as MinutePeriod[];
      const minuteOfAgo = (m: number) => Math.floor((now - m * MINUTE) / MINUTE) * MINUTE;
      expect(new Set(dimRows.map((r) => r.bucket))).toEqual(new Set([minuteOfAgo(10), minuteOfAgo(8)]));
      await withDb(env, (db) =>
        db.transaction(async (tx) => {
          await tx.execute(sql`SELECT set_config(${HOLD_BYPASS}, 'on', true)`);
          await upsertDimPeriods(
            tx,
            metricsDimMinute,
            dimRows.map((r) => ({ ...r, tenantId: t.tenantId, stream: "rewrite", bucket: new Date(r.bucket) })),
          );
          await upsertPeriods(
            tx,
            metricsMinute,
            streamRows.map((r) => ({ ...r, tenantId: t.tenantId, stream: "rewrite", bucket: new Date(r.bucket) })),
          );
        }),
      );
      expect(await stub.flushStatus()).toMatchObject({ pending_minutes: 2 });
      const during = await ok(t, q);
      expect(objects(during)).toEqual(expected);
      expect(during.meta.missing).toEqual([]);
    } finally {
      await releaseWrites();
    }
    // After the write.
    await flushed(t, "rewrite");
    expect(objects(await ok(t, q))).toEqual(expected);
  });

  it("ranks on sums, then reads sketches and users only for the groups it returns: figures match the events", async () => {
    const t = await createTenant();
    const now = Date.now();
    const products = ["a", "b", "c", "d"];
    const old = Array.from({ length: 48 }, (_, i) => ({
      name: "shop",
      value: 5 + ((i * 13) % 90),
      user: `u${i % 11}`,
      ts: now - 10 * MINUTE + (i % 4) * MINUTE,
      dims: { product: products[(i * 5) % 4] },
    }));
    await sendJson(t.ingest, old);
    await flushed(t, "shop");
    const recent = Array.from({ length: 40 }, (_, i) => ({
      name: "shop",
      value: 50 + ((i * 7) % 60),
      user: `v${i % 9}`,
      ts: now,
      dims: { product: products[i % 5 === 0 ? 3 : i % 3] },
    }));
    await sendJson(t.ingest, recent);
    const all = [...old, ...recent];
    const truth = (mine: typeof all) => {
      const vals = mine.map((e) => e.value).sort((a, b) => a - b);
      return {
        count: mine.length,
        sum: mine.reduce((a, e) => a + e.value, 0),
        p95: vals[nearestRank(0.95, vals.length)],
        users: new Set(mine.map((e) => e.user)).size,
      };
    };
    const expected = products
      .map((product) => ({ product, ...truth(all.filter((e) => e.dims.product === product)) }))
      .sort((x, y) => y.sum - x.sum)
      .slice(0, 2);
    const body = {
      stream: "shop",
      measures: ["count", "sum", "p95", "distinct_users"],
      group_by: ["product"],
      range: { last: "2h" },
      order_by: { measure: "sum", dir: "desc" },
      limit: 2,
    };
    const r = await ok(t, body);
    expect(r.meta.sources).toEqual(expect.arrayContaining(["actor", "postgres:metrics_dim_minute"]));
    expect(r.meta.truncated).toBe(true);
    const rows = objects(r);
    expect(rows.map((x) => x.product)).toEqual(expected.map((e) => e.product));
    rows.forEach((row, i) => {
      const e = expected[i];
      expect([row.count, row.sum, row.distinct_users, row.sum_low, row.sum_high]).toEqual([
        e.count,
        e.sum,
        e.users,
        e.sum,
        e.sum,
      ]);
      expect(Math.abs((row.p95 as number) - e.p95) / e.p95).toBeLessThanOrEqual(0.01);
    });
    // With a step, each bucket of a returned group carries its own sketch.
    const stepped = objects(await ok(t, { ...body, step: "1h" }));
    for (const e of expected) {
      const mine = stepped.filter((x) => x.product === e.product);
      expect(mine.reduce((a, x) => a + (x.count as number), 0)).toBe(e.count);
      for (const x of mine) {
        const inBucket = all.filter(
          (ev) =>
            ev.dims.product === e.product && Math.floor(ev.ts / 3_600_000) * 3_600_000 === Date.parse(x.t as string),
        );
        expect(x.count).toBe(inBucket.length);
        const p95 = truth(inBucket).p95;
        expect(Math.abs((x.p95 as number) - p95) / p95).toBeLessThanOrEqual(0.01);
      }
    }
    // Without sketches, PostgreSQL adds the rows up per step itself: the same groups and totals.
    const sums = await ok(t, { ...body, step: "1h", measures: ["count", "sum"] });
    expect(sums.meta.missing).toEqual([]);
    for (const e of expected) {
      const mine = objects(sums).filter((x) => x.product === e.product);
      expect(mine.reduce((a, x) => a + (x.count as number), 0)).toBe(e.count);
      expect(mine.reduce((a, x) => a + (x.sum as number), 0)).toBe(e.sum);
    }
  });

  it("answers formulas across streams, per group: completion rate by course", async () => {
    const t = await createTenant();
    const started = ["c1", "c1", "c1", "c1", "c2", "c2"].map((course) => ({
      name: "course.started",
      dims: { course },
    }));
    const completed = ["c1", "c1", "c2"].map((course) => ({ name: "course.completed", dims: { course } }));
    await sendJson(t.ingest, [...started, ...completed]);
    const rows = objects(
      await ok(t, {
        streams: { s: "course.started", c: "course.completed" },
        measures: ["s.count", "c.count", { name: "completion_rate", expr: "c.count / s.count" }],
        group_by: ["course"],
        range: { window: "5m" },
      }),
    );
    expect(rows).toEqual([
      { course: "c1", "s.count": 4, "c.count": 2, completion_rate: 0.5 },
      { course: "c2", "s.count": 2, "c.count": 1, completion_rate: 0.5 },
    ]);
  });

  it("compares with the previous period, steps through time, and exports CSV", async () => {
    const t = await createTenant();
    const now = Date.now();
    const minute = Math.floor(now / MINUTE) * MINUTE;
    await sendJson(t.ingest, [
      { name: "cmp", value: 5, ts: minute - 3 * MINUTE + 1000 },
      { name: "cmp", value: 7, ts: minute - 8 * MINUTE + 1000 },
      { name: "cmp", value: 9, ts: minute - 8 * MINUTE + 2000 },
    ]);
    const cmp = objects(
      await ok(t, { stream: "cmp", measures: ["count", "sum"], range: { last: "5m" }, compare: "previous_period" }),
    );
    expect(cmp).toEqual([{ count: 1, sum: 5, count_previous: 2, sum_previous: 16 }]);
    const series = await ok(t, {
      stream: "cmp",
      measures: ["count"],
      range: { from: minute - 10 * MINUTE, to: minute },
      step: "1m",
    });
    expect(series.columns).toEqual(["t", "count"]);
    expect(series.rows).toEqual([
      [new Date(minute - 8 * MINUTE).toISOString(), 2],
      [new Date(minute - 3 * MINUTE).toISOString(), 1],
    ]);
    const csv = await query(t, { stream: "cmp", measures: ["count", "sum"], range: { last: "15m" } }, "?format=csv");
    expect(csv.headers.get("content-type")).toContain("text/csv");
    expect(await csv.text()).toBe("count,sum\r\n3,21\r\n");
  });

  it("ranks values folded into __other__ from their summary, with bounds that hold", async () => {
    const t = await createTenant();
    // Zipf-like product views: the first five products seen are tracked; heavier ones arrive later.
    const views: Array<{ name: string; dims: { product: string } }> = [];
    for (let p = 0; p < 5; p++) views.push({ name: "views", dims: { product: `cold${p}` } });
    const heavy = { hot1: 30, hot2: 20, hot3: 12 } as Record<string, number>;
    for (const [product, n] of Object.entries(heavy))
      for (let i = 0; i < n; i++) views.push({ name: "views", dims: { product } });
    for (let i = 0; i < 40; i++) views.push({ name: "views", dims: { product: `tail${i}` } });
    for (let i = 0; i < views.length; i += 50) await sendJson(t.ingest, views.slice(i, i + 50));
    const r = await ok(t, {
      stream: "views",
      measures: ["count"],
      group_by: ["product"],
      range: { window: "5m" },
      order_by: { measure: "count", dir: "desc" },
      limit: 3,
    });
    const rows = objects(r);
    expect(rows.map((x) => [x.product, x.estimated])).toEqual([
      ["__other__", false],
      ["hot1", true],
      ["hot2", true],
    ]);
    for (const row of rows.slice(1)) {
      const real = heavy[row.product as string];
      expect(row.count_low as number).toBeLessThanOrEqual(real);
      expect(row.count_high as number).toBeGreaterThanOrEqual(real);
    }
    expect(r.meta.truncated).toBe(true);
  });

  it("refuses bad and expensive queries before running them, naming the field", async () => {
    const t = await createTenant();
    const bad = async (body: unknown, field: string) => {
      const err = await expectError(await query(t, body), 400, "invalid_query");
      expect(err.message).toContain(field);
    };
    await bad({ stream: "x", measures: ["p42"], range: { window: "1m" } }, "p42");
    await bad({ stream: "x", measures: ["count"], range: { last: "forever" } }, "range");
    await bad({ stream: "x", measures: ["count"], range: { last: "30d" }, step: "1m" }, "step");
    await bad({ stream: "x", measures: ["count"], range: { window: "1m" }, order_by: { measure: "sum" } }, "order_by");
    await bad(
      {
        stream: "x",
        measures: ["count"],
        range: { window: "1m" },
        filters: [{ dim: "a", op: "eq", values: ["1", "2"] }],
      },
      "filters.0",
    );
    await bad({ streams: { a: "x" }, measures: ["b.count"], range: { window: "1m" } }, "measures.0");
    await bad({ stream: "x", measures: ["count"], range: { window: "1m" }, colour: "red" }, "colour");
    const empty = await expectError(
      await SELF.fetch(`${BASE}/v1/query`, { method: "POST", headers: { authorization: `Bearer ${t.read}` } }),
      400,
      "invalid_query",
    );
    expect(empty.message).toContain("measures");
    await expectError(
      await SELF.fetch(`${BASE}/v1/query`, {
        method: "POST",
        headers: { authorization: `Bearer ${t.read}`, "content-type": "application/json" },
        body: "{nope",
      }),
      400,
      "malformed_body",
    );
  });

  it("reads only the key's own tenant", async () => {
    const a = await createTenant("a");
    const b = await createTenant("b");
    await sendJson(a.ingest, [{ name: "secret", value: 42, dims: { k: "v" } }]);
    const r = await ok(b, { stream: "secret", measures: ["count", "sum"], range: { window: "5m" } });
    expect(r.rows).toEqual([]);
    await expectError(
      await query(b, { stream: "secret", measures: ["count"], group_by: ["k"], range: { window: "5m" } }),
      400,
      "invalid_query",
    );
  });

  it("pushes a live query's answer when it changes (GET /v1/query/live)", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "livequery", value: 1, dims: { country: "DE" } }]);
    const q = { stream: "livequery", measures: ["count", "sum"], group_by: ["country"], range: { window: "5m" } };
    const res = await SELF.fetch(`${BASE}/v1/query/live?q=${encodeURIComponent(JSON.stringify(q))}`, {
      headers: { upgrade: "websocket", "sec-websocket-protocol": `edgepulse.v1, bearer.${t.read}` },
    });
    expect(res.status).toBe(101);
    const ws = res.webSocket as WebSocket;
    ws.accept();
    const results: QueryResultMessage[] = [];
    let wake: (() => void) | null = null;
    ws.addEventListener("message", (e) => {
      const m = parseServerMessage(String(e.data));
      if (m?.type === "result") results.push(m);
      wake?.();
    });
    const next = async (pred: (m: QueryResultMessage) => boolean) => {
      for (;;) {
        const hit = results.find(pred);
        if (hit) return hit;
        await new Promise<void>((r) => {
          wake = r;
        });
      }
    };
    const first = await next(() => true);
    expect(first.rows).toEqual([["DE", 1, 1]]);
    await sendJson(t.ingest, [
      { name: "livequery", value: 5, dims: { country: "DE" } },
      { name: "livequery", value: 7, dims: { country: "FR" } },
    ]);
    const changed = await next((m) => m.rows.length === 2);
    expect(changed.rows).toEqual([
      ["DE", 2, 6],
      ["FR", 1, 7],
    ]);
    ws.close();
    // A bad query is refused before the socket opens.
    const bad = await SELF.fetch(`${BASE}/v1/query/live?q=${encodeURIComponent(JSON.stringify({ stream: "x" }))}`, {
      headers: { upgrade: "websocket", "sec-websocket-protocol": `edgepulse.v1, bearer.${t.read}` },
    });
    await expectError(bad, 400, "invalid_query");
  });
});

describe("history by dimension: rollups", () => {
  it("rolls dimension minutes up into hours: sums add, sketches and users merge, __other__'s summaries merge; queries read the hour rows", async () => {
    const t = await createTenant();
    // The actor learns the key from one event now (outside the range asked about below).
    await sendJson(t.ingest, [{ name: "rolled", value: 1, dims: { country: "DE" } }]);
    const hourNow = Math.floor(Date.now() / 3_600_000) * 3_600_000;
    const first = hourNow - 6 * 3_600_000;
    const users = (prefix: string, n: number) => {
      const regs = new Map<number, number>();
      for (let u = 0; u < n; u++) {
        const { reg, rank } = hashUser(`${prefix}${u}`);
        if (rank > (regs.get(reg) ?? 0)) regs.set(reg, rank);
      }
      return encodeRegisters(regs);
    };
    const summary = (items: Array<[string, number]>) => {
      const s = new FrequentItems(TOPK_ITEMS);
      for (const [item, w] of items) s.add(item, w);
      return s.encode();
    };
    const rows: DimPeriodInsert[] = [];
    for (let h = 0; h < 3; h++) {
      for (let m = 0; m < 6; m++) {
        const bucket = new Date(first + h * 3_600_000 + m * 10 * MINUTE);
        const at = (value: string, count: number, v: number) => ({
          tenantId: t.tenantId,
          stream: "rolled",
          bucket,
          dim: "country",
          value,
          aggregate: {
            count,
            valueCount: count,
            sum: count * v,
            min: v,
            max: v,
            sketch: encodeSketch(freeze(new Map([[keyOf(v), count]]))),
          },
          hll: users(`${value}-${h}-${m}-`, 4),
        });
        rows.push(at("DE", 5, 10), at("FR", 3, 20), {
          ...at("__other__", 2, 30),
          topkCount: summary([
            ["IT", 1],
            ["ES", 1],
          ]),
          topkSum: summary([
            ["IT", 30],
            ["ES", 30],
          ]),
        });
      }
    }
    await withDb(env, (db) => upsertDimPeriods(db, metricsDimMinute, rows));
    await runMaintenance(env);
    const hours = (await withDb(env, (db) =>
      db
        .select()
        .from(metricsDimHour)
        .where(and(eq(metricsDimHour.tenantId, t.tenantId), eq(metricsDimHour.stream, "rolled"))),
    )) as StoredDimAggregate[];
    expect(hours).toHaveLength(9);
    for (const r of hours) {
      const mine = rows.filter(
        (x) =>
          x.value === r.value &&
          x.bucket.getTime() >= r.bucket.getTime() &&
          x.bucket.getTime() < r.bucket.getTime() + 3_600_000,
      );
      expect(mine).toHaveLength(6);
      const merged = mergePeriods(mine);
      expect(r).toMatchObject({ count: merged.aggregate.count, sum: merged.aggregate.sum });
      // Precomputed for plain-SQL readers: p95 and distinct users of the merged hour.
      expect(Math.abs((r.p95 as number) - (mine[0].aggregate.max as number)) / (r.p95 as number)).toBeLessThanOrEqual(
        0.01,
      );
      expect(r.distinctUsers).toBe(distinctOfEncoded(merged.hll));
      expect(r.distinctUsers).toBe(24);
      if (r.value === "__other__") {
        expect(FrequentItems.decode(r.topkCount as Uint8Array).top(2)).toEqual([
          expect.objectContaining({ item: "ES", low: 6, high: 6 }),
          expect.objectContaining({ item: "IT", low: 6, high: 6 }),
        ]);
      } else {
        expect(r.topkCount).toBeNull();
      }
    }
    // Tamper with a minute behind the rollup's back: the answer comes from the hour rows, so it does not see it.
    await withDb(env, (db) =>
      db.execute(
        sql`UPDATE metrics_dim_minute SET count = 1000 WHERE tenant_id = ${t.tenantId} AND stream = 'rolled' AND bucket = ${new Date(first)} AND value = 'DE'`,
      ),
    );
    const r = await ok(t, {
      stream: "rolled",
      measures: ["count", "sum", "p95", "distinct_users"],
      group_by: ["country"],
      range: { from: first, to: first + 3 * 3_600_000 },
      order_by: { measure: "count", dir: "desc" },
    });
    // Dimension rows from the hour table only (the stream's own rows are read for the __none__ group).
    expect(r.meta.sources).toEqual(["actor", "postgres:metrics_dim_hour", "postgres:metrics_hour"]);
    const got = objects(r).filter((x) => !x.estimated);
    expect(got.map((x) => [x.country, x.count, x.sum, x.distinct_users])).toEqual([
      ["DE", 90, 900, 72],
      ["FR", 54, 1080, 72],
      ["__other__", 36, 1080, 72],
    ]);
    // Values folded into __other__ are ranked from the merged summaries, exactly here (nothing was evicted).
    expect(
      objects(r)
        .filter((x) => x.estimated)
        .map((x) => [x.country, x.count_low, x.count_high]),
    ).toEqual([
      ["ES", 18, 18],
      ["IT", 18, 18],
    ]);
  });
});
