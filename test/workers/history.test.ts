import { abortAllDurableObjects, env, runDurableObjectAlarm } from "cloudflare:test";
import { and, eq, sql } from "drizzle-orm";
import { describe, expect, it, vi } from "vitest";
import { decode as decodeSketch, encode as encodeSketch, freeze, keyOf, quantile } from "../../core/ddsketch";
import { PeriodHll } from "../../core/hll";
import type { FlushStatus } from "../../core/protocol";
import { withDb } from "../../db/client";
import { type AggregateInsert, mergeRows, type StoredAggregate, upsertAggregates } from "../../db/history";
import { metricsHour, metricsMinute } from "../../db/schema";
import { runMaintenance } from "../../workers/maintenance";
import { createTenant, expectError, get, sendJson } from "./helpers";

const MINUTE = 60_000;

async function minuteRows(tenantId: string, stream: string): Promise<StoredAggregate[]> {
  return withDb(env, (db) =>
    db
      .select()
      .from(metricsMinute)
      .where(and(eq(metricsMinute.tenantId, tenantId), eq(metricsMinute.stream, stream)))
      .orderBy(metricsMinute.bucket),
  ) as Promise<StoredAggregate[]>;
}

const actor = (tenantId: string, stream: string) => env.METRIC_ACTOR.getByName(`${tenantId}/${stream}`);
const status = (tenantId: string, stream: string) => actor(tenantId, stream).flushStatus() as Promise<FlushStatus>;

/** Runs the actor's alarm until its outbox is empty (the flush itself is awaited; retries back off in real time). */
async function flushed(tenantId: string, stream: string): Promise<void> {
  await vi.waitFor(
    async () => {
      await runDurableObjectAlarm(actor(tenantId, stream));
      expect(await status(tenantId, stream)).toMatchObject({ pending_minutes: 0, failures: 0 });
    },
    { timeout: 15_000, interval: 50 },
  );
}

const bridge = (state: "up" | "down") => fetch(`http://${env.PG_BRIDGE}/__bridge/${state}`, { method: "POST" });

describe("flush to PostgreSQL", () => {
  it("writes each minute's full aggregate: rows equal the events, exactly", async () => {
    const t = await createTenant();
    const base = Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE;
    const events = Array.from({ length: 240 }, (_, i) => ({
      name: "orders",
      value: 10 + ((i * 37) % 500),
      user: `u${i % 30}`,
      ts: base + (i % 3) * MINUTE + (i % 60) * 1000,
    }));
    expect(await (await sendJson(t.ingest, events.slice(0, 50))).json()).toMatchObject({ accepted: 50 });
    for (let i = 50; i < events.length; i += 50) await sendJson(t.ingest, events.slice(i, i + 50));
    expect(await status(t.tenantId, "orders")).toMatchObject({ enabled: true, pending_minutes: 3 });
    await flushed(t.tenantId, "orders");

    const rows = await minuteRows(t.tenantId, "orders");
    expect(rows.map((r) => r.bucket.getTime())).toEqual([base, base + MINUTE, base + 2 * MINUTE]);
    for (const row of rows) {
      const mine = events.filter((e) => Math.floor(e.ts / MINUTE) * MINUTE === row.bucket.getTime());
      const values = mine.map((e) => e.value).sort((a, b) => a - b);
      expect(row.count).toBe(mine.length);
      expect(row.valueCount).toBe(mine.length);
      expect(row.sum).toBe(values.reduce((a, b) => a + b, 0));
      expect(row.min).toBe(values[0]);
      expect(row.max).toBe(values[values.length - 1]);
      const p95 = values[Math.floor(0.95 * (values.length - 1))];
      const got = quantile(decodeSketch(row.sketch), 0.95) as number;
      expect(Math.abs(got - p95) / p95).toBeLessThanOrEqual(0.01);
      expect(PeriodHll.decode(row.hll).estimate()).toBe(new Set(mine.map((e) => e.user)).size);
    }
  });

  it("sets a flushed minute to its new absolute value when a late event arrives, and an idle actor writes nothing", async () => {
    const t = await createTenant();
    const minute = Math.floor(Date.now() / MINUTE) * MINUTE - 10 * MINUTE;
    await sendJson(t.ingest, [{ name: "late", value: 5, ts: minute + 1000 }]);
    await flushed(t.tenantId, "late");
    const [first] = await minuteRows(t.tenantId, "late");
    expect(first).toMatchObject({ count: 1, sum: 5 });

    await sendJson(t.ingest, [{ name: "late", value: 7, ts: minute + 30_000 }]);
    await flushed(t.tenantId, "late");
    const [second] = await minuteRows(t.tenantId, "late");
    expect(second).toMatchObject({ count: 2, sum: 12, min: 5, max: 7 });

    // Nothing changed: more alarms must not rewrite the row.
    await runDurableObjectAlarm(actor(t.tenantId, "late"));
    await runDurableObjectAlarm(actor(t.tenantId, "late"));
    const [third] = await minuteRows(t.tenantId, "late");
    expect(third.updatedAt.getTime()).toBe(second.updatedAt.getTime());
  });

  it("rides out a database outage: ingest goes on, history waits, then holds every event exactly once", async () => {
    const t = await createTenant();
    const now = Date.now();
    let sent = 0;
    let valueSum = 0;
    const sendSome = async (k: number) => {
      const events = Array.from({ length: 40 }, (_, i) => ({
        id: `o${k}-${i}`,
        name: "outage",
        value: k * 100 + i,
        ts: now - ((k * 40 + i) % 300) * 1000,
      }));
      const receipt = (await (await sendJson(t.ingest, events)).json()) as { accepted: number };
      expect(receipt.accepted).toBe(40);
      sent += 40;
      valueSum += events.reduce((a, e) => a + e.value, 0);
    };
    await sendSome(0);
    await flushed(t.tenantId, "outage");

    expect((await bridge("down")).status).toBe(200);
    try {
      for (let k = 1; k <= 5; k++) {
        await sendSome(k);
        await runDurableObjectAlarm(actor(t.tenantId, "outage"));
      }
      // A retry of an already-accepted batch during the outage is still recognised.
      const retry = await sendJson(t.ingest, [{ id: "o1-0", name: "outage", value: 100, ts: now - 40_000 }]);
      expect(await retry.json()).toMatchObject({ accepted: 0, duplicates: 1 });
      const s = await status(t.tenantId, "outage");
      expect(s.failures).toBeGreaterThan(0);
      expect(s.pending_minutes).toBeGreaterThan(0);
      expect(s.last_error).toBeTruthy();
    } finally {
      expect((await bridge("up")).status).toBe(200);
    }
    await flushed(t.tenantId, "outage");

    const rows = await minuteRows(t.tenantId, "outage");
    expect(rows.reduce((a, r) => a + r.count, 0)).toBe(sent);
    expect(rows.reduce((a, r) => a + r.sum, 0)).toBe(valueSum);
    expect(new Set(rows.map((r) => r.bucket.getTime())).size).toBe(rows.length);
  });

  it("persists the outbox: an evicted actor still flushes what it owed", async () => {
    const t = await createTenant();
    await bridge("down");
    try {
      await sendJson(t.ingest, [{ name: "evicted", value: 3 }]);
      await runDurableObjectAlarm(actor(t.tenantId, "evicted"));
    } finally {
      await bridge("up");
    }
    expect(await status(t.tenantId, "evicted")).toMatchObject({ pending_minutes: 1 });
    await abortAllDurableObjects();
    await flushed(t.tenantId, "evicted");
    expect(await minuteRows(t.tenantId, "evicted")).toEqual([expect.objectContaining({ count: 1, sum: 3 })]);
  });
});

describe("rollups and the history API", () => {
  it("rolls minutes up into hours that equal the merge of their minutes", async () => {
    const t = await createTenant();
    const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3 * 3_600_000;
    const rows = Array.from({ length: 12 }, (_, i) => {
      const p = new PeriodHll();
      for (let u = 0; u < 20 + i; u++) p.addUser(`user-${u}`);
      return {
        tenantId: t.tenantId,
        stream: "rolled",
        bucket: new Date(hour + i * 5 * MINUTE),
        count: 10 + i,
        valueCount: 10 + i,
        sum: 100 * i,
        min: i,
        max: 50 + i,
        sketch: new Uint8Array(mergeRows([]).sketch),
        hll: p.encode(),
      };
    });
    await withDb(env, (db) => upsertAggregates(db, metricsMinute, rows));
    await runMaintenance(env);
    const [hourRow] = (await withDb(env, (db) =>
      db
        .select()
        .from(metricsHour)
        .where(and(eq(metricsHour.tenantId, t.tenantId), eq(metricsHour.stream, "rolled"))),
    )) as StoredAggregate[];
    const merged = mergeRows(rows);
    expect(hourRow.bucket.getTime()).toBe(hour);
    expect(hourRow).toMatchObject({ count: merged.count, sum: merged.sum, min: 0, max: 61 });
    expect(PeriodHll.decode(hourRow.hll).registers()).toEqual(PeriodHll.decode(merged.hll).registers());
    expect(PeriodHll.decode(hourRow.hll).estimate()).toBe(31);
  });

  it("answers history per step from the coarsest table that is exact, across resolutions", async () => {
    const t = await createTenant();
    const now = Date.now();
    const hourNow = Math.floor(now / 3_600_000) * 3_600_000;
    // One event-minute per 10 minutes over the last 6 hours, written as the actors would.
    const rows: AggregateInsert[] = [];
    for (let m = hourNow - 6 * 3_600_000; m < hourNow; m += 10 * MINUTE) {
      const hll = new PeriodHll();
      hll.addUser(`u${m}`);
      rows.push({
        tenantId: t.tenantId,
        stream: "hist",
        bucket: new Date(m),
        count: 6,
        valueCount: 6,
        sum: 60,
        min: 10,
        max: 10,
        sketch: encodeSketch(freeze(new Map([[keyOf(10), 6]]))),
        hll: hll.encode(),
      });
    }
    await withDb(env, (db) => upsertAggregates(db, metricsMinute, rows));
    await runMaintenance(env);
    // Tamper with an old minute behind the rollup's back: an answer from the hour table will not see it,
    // one merged from minutes would.
    const oldHour = hourNow - 5 * 3_600_000;
    await withDb(env, (db) =>
      db.execute(
        sql`UPDATE metrics_minute SET count = 1000 WHERE tenant_id = ${t.tenantId} AND stream = 'hist' AND bucket = ${new Date(oldHour)}`,
      ),
    );
    const res = await get(`/v1/streams/hist/history?from=${hourNow - 6 * 3_600_000}&to=${hourNow}&step=1h`, t.read);
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      step: string;
      points: Array<{ t: string; count: number; distinct_users: number; p95: number; rate: number }>;
    };
    expect(body.step).toBe("1h");
    expect(body.points).toHaveLength(6);
    for (const p of body.points) {
      expect(p.count).toBe(36);
      expect(p.distinct_users).toBe(6);
      expect(Math.abs(p.p95 - 10) / 10).toBeLessThanOrEqual(0.01);
      expect(p.rate).toBeCloseTo(36 / 3600, 10);
    }
    // The last hours come from minutes (newer than the rollup's exactness margin) and agree with them.
    const minutes = (await (
      await get(`/v1/streams/hist/history?from=${hourNow - 3_600_000}&to=${hourNow}&step=1m`, t.read)
    ).json()) as { points: Array<{ count: number }> };
    expect(minutes.points).toHaveLength(6);
    expect(minutes.points.reduce((a, p) => a + p.count, 0)).toBe(36);
    // Days merge hours and minutes the same way.
    const days = (await (
      await get(`/v1/streams/hist/history?from=${hourNow - 6 * 3_600_000}&to=${hourNow}&step=1d`, t.read)
    ).json()) as {
      points: Array<{ count: number; distinct_users: number }>;
    };
    expect(days.points.reduce((a, p) => a + p.count, 0)).toBe(36 * 6);
  });

  it("explains bad history queries", async () => {
    const t = await createTenant();
    await expectError(await get("/v1/streams/x/history?step=5m", t.read), 400, "invalid_step");
    await expectError(await get("/v1/streams/x/history?from=yesterday", t.read), 400, "invalid_range");
    await expectError(await get("/v1/streams/x/history?from=2000&to=1000", t.read), 400, "invalid_range");
    await expectError(
      await get("/v1/streams/x/history?from=2026-01-01T00:00:00Z&to=2026-06-01T00:00:00Z&step=1m", t.read),
      400,
      "range_too_large",
    );
    await expectError(await get("/v1/streams/x/history", t.ingest), 403, "insufficient_scope");
  });
});
