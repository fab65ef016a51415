import { abortAllDurableObjects, env, runDurableObjectAlarm } from "cloudflare:test";
import { and, eq, sql } from "drizzle-orm";
import { describe, expect, it, vi } from "vitest";
import { EMPTY_AGGREGATE } from "../../core/aggregate";
import {
  decode as decodeSketch,
  encode as encodeSketch,
  freeze,
  keyOf,
  nearestRank,
  quantile,
} from "../../core/ddsketch";
import { PeriodHll } from "../../core/hll";
import type { FlushStatus } from "../../core/protocol";
import { withDb } from "../../db/client";
import { mergePeriods, type PeriodInsert, type StoredAggregate, upsertPeriods } from "../../db/history";
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
    // The minutes have ended, so they are due at once: with the database unreachable, nothing is flushed before
    // the status is read, however long the sends take.
    expect((await bridge("down")).status).toBe(200);
    try {
      expect(await (await sendJson(t.ingest, events.slice(0, 50))).json()).toMatchObject({ accepted: 50 });
      for (let i = 50; i < events.length; i += 50) await sendJson(t.ingest, events.slice(i, i + 50));
      expect(await status(t.tenantId, "orders")).toMatchObject({ enabled: true, pending_minutes: 3 });
    } finally {
      expect((await bridge("up")).status).toBe(200);
    }
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
      const p95 = values[nearestRank(0.95, values.length)];
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
      // The ended minutes come due and their writes fail: the status says so, by category, without SQL or hosts.
      await vi.waitFor(
        async () => {
          await runDurableObjectAlarm(actor(t.tenantId, "outage"));
          expect((await status(t.tenantId, "outage")).failures).toBeGreaterThan(0);
        },
        { timeout: 15_000, interval: 50 },
      );
      const s = await status(t.tenantId, "outage");
      expect(s.pending_minutes).toBeGreaterThan(0);
      expect(s.last_error).toEqual({ category: "unreachable", message: "PostgreSQL could not be reached." });
    } finally {
      expect((await bridge("up")).status).toBe(200);
    }
    await flushed(t.tenantId, "outage");

    // Ended minutes are in PostgreSQL; the open minute is served from the actor at the seam. Together: exact.
    const res = await get(`/v1/streams/outage/history?step=1m&from=${now - 600_000}&to=${Date.now() + 60_000}`, t.read);
    const points = ((await res.json()) as { points: Array<{ count: number; sum: number }> }).points;
    expect(points.reduce((a, p) => a + p.count, 0)).toBe(sent);
    expect(points.reduce((a, p) => a + p.sum, 0)).toBe(valueSum);
    const rows = await minuteRows(t.tenantId, "outage");
    expect(new Set(rows.map((r) => r.bucket.getTime())).size).toBe(rows.length);
    expect(rows.every((r) => r.bucket.getTime() < Math.floor(Date.now() / MINUTE) * MINUTE)).toBe(true);
  });

  it("persists the outbox: an evicted actor still flushes what it owed", async () => {
    const t = await createTenant();
    // Down until the actor has been evicted: what it owes must come back from storage, not from memory.
    expect((await bridge("down")).status).toBe(200);
    try {
      await sendJson(t.ingest, [{ name: "evicted", value: 3, ts: Date.now() - 2 * MINUTE }]);
      await runDurableObjectAlarm(actor(t.tenantId, "evicted"));
      expect(await status(t.tenantId, "evicted")).toMatchObject({ pending_minutes: 1 });
      await abortAllDurableObjects();
    } finally {
      expect((await bridge("up")).status).toBe(200);
    }
    await flushed(t.tenantId, "evicted");
    expect(await minuteRows(t.tenantId, "evicted")).toEqual([expect.objectContaining({ count: 1, sum: 3 })]);
  });
});

describe("a write PostgreSQL never answers", () => {
  it("is abandoned after FLUSH_TIMEOUT_MS, so the actor's alarm goes on; the retry writes it", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "stalled", value: 1, ts: Date.now() - 3 * MINUTE }]);
    await flushed(t.tenantId, "stalled"); // the actor's connection is open now
    // Replies on the open connections are held: a write is sent, and no answer comes.
    await fetch(`http://${env.PG_BRIDGE}/__bridge/stall`, { method: "POST" });
    try {
      await sendJson(t.ingest, [{ name: "stalled", value: 2, ts: Date.now() - 2 * MINUTE }]);
      // Each alarm returns: the write is given up after FLUSH_TIMEOUT_MS (2 s in the test config).
      await vi.waitFor(
        async () => {
          await runDurableObjectAlarm(actor(t.tenantId, "stalled"));
          expect(await status(t.tenantId, "stalled")).toMatchObject({
            pending_minutes: 1,
            last_error: { category: "timeout", message: "PostgreSQL did not answer in time." },
          });
        },
        { timeout: 20_000, interval: 50 },
      );
    } finally {
      await fetch(`http://${env.PG_BRIDGE}/__bridge/resume`, { method: "POST" });
    }
    await flushed(t.tenantId, "stalled");
    expect((await minuteRows(t.tenantId, "stalled")).map((r) => [r.count, r.sum])).toEqual([
      [1, 1],
      [1, 2],
    ]);
  });
});

describe("rollups and the history API", () => {
  it("rolls minutes up into hours that equal the merge of their minutes", async () => {
    const t = await createTenant();
    const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3 * 3_600_000;
    const rows: PeriodInsert[] = Array.from({ length: 12 }, (_, i) => {
      const p = new PeriodHll();
      for (let u = 0; u < 20 + i; u++) p.addUser(`user-${u}`);
      return {
        tenantId: t.tenantId,
        stream: "rolled",
        bucket: new Date(hour + i * 5 * MINUTE),
        aggregate: {
          count: 10 + i,
          valueCount: 10 + i,
          sum: 100 * i,
          min: i,
          max: 50 + i,
          sketch: EMPTY_AGGREGATE.sketch,
        },
        hll: p.encode(),
      };
    });
    await withDb(env, (db) => upsertPeriods(db, metricsMinute, rows));
    await runMaintenance(env);
    const [hourRow] = (await withDb(env, (db) =>
      db
        .select()
        .from(metricsHour)
        .where(and(eq(metricsHour.tenantId, t.tenantId), eq(metricsHour.stream, "rolled"))),
    )) as StoredAggregate[];
    const merged = mergePeriods(rows);
    expect(hourRow.bucket.getTime()).toBe(hour);
    expect(hourRow).toMatchObject({ count: merged.aggregate.count, sum: merged.aggregate.sum, min: 0, max: 61 });
    expect(PeriodHll.decode(hourRow.hll).registers()).toEqual(PeriodHll.decode(merged.hll).registers());
    expect(PeriodHll.decode(hourRow.hll).estimate()).toBe(31);
  });

  it("answers history per step from the coarsest table that is exact, across resolutions", async () => {
    const t = await createTenant();
    const now = Date.now();
    const hourNow = Math.floor(now / 3_600_000) * 3_600_000;
    // One event-minute per 10 minutes over the last 6 hours, written as the actors would.
    const rows: PeriodInsert[] = [];
    for (let m = hourNow - 6 * 3_600_000; m < hourNow; m += 10 * MINUTE) {
      const hll = new PeriodHll();
      hll.addUser(`u${m}`);
      rows.push({
        tenantId: t.tenantId,
        stream: "hist",
        bucket: new Date(m),
        aggregate: {
          count: 6,
          valueCount: 6,
          sum: 60,
          min: 10,
          max: 10,
          sketch: encodeSketch(freeze(new Map([[keyOf(10), 6]]))),
        },
        hll: hll.encode(),
      });
    }
    await withDb(env, (db) => upsertPeriods(db, metricsMinute, rows));
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
    // A stream that never received an event answers like the live read; a real one with an empty range, [].
    await expectError(await get("/v1/streams/never-sent/history", t.read), 404, "stream_not_found");
    await sendJson(t.ingest, [{ name: "sent", value: 1 }]);
    const empty = await get("/v1/streams/sent/history?from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z", t.read);
    expect(empty.status).toBe(200);
    expect(((await empty.json()) as { points: unknown[] }).points).toEqual([]);
  });
});

describe("the seam: ended minutes in PostgreSQL, open ones from the actor", () => {
  it("keeps one database connection across flushes instead of opening one per flush", async () => {
    const t = await createTenant();
    const base = Math.floor(Date.now() / MINUTE) * MINUTE - 10 * MINUTE;
    for (let k = 0; k < 3; k++) {
      await sendJson(t.ingest, [{ name: "conn", value: k, ts: base + k * MINUTE }]);
      await flushed(t.tenantId, "conn");
    }
    expect(await minuteRows(t.tenantId, "conn")).toHaveLength(3);
    const s = (await actor(t.tenantId, "conn").stats()) as { db_connections_opened: number };
    expect(s.db_connections_opened).toBe(1);
  });

  it("never writes an open minute, yet the history API includes it", async () => {
    const t = await createTenant();
    // Stamped two minutes ahead (within the allowed skew): that minute stays open throughout the test.
    const ahead = Math.floor(Date.now() / MINUTE) * MINUTE + 2 * MINUTE;
    await sendJson(t.ingest, [
      { name: "open", value: 4, user: "a", ts: ahead + 1000 },
      { name: "open", value: 6, user: "b", ts: ahead + 2000 },
    ]);
    for (let i = 0; i < 3; i++) await runDurableObjectAlarm(actor(t.tenantId, "open"));
    expect(await status(t.tenantId, "open")).toMatchObject({ pending_minutes: 0, open_minutes: 1, minutes_flushed: 0 });
    expect(await minuteRows(t.tenantId, "open")).toEqual([]);
    const res = await get(`/v1/streams/open/history?step=1m&from=${ahead - MINUTE}&to=${ahead + MINUTE}`, t.read);
    const body = (await res.json()) as {
      points: Array<{ t: string; count: number; sum: number; distinct_users: number }>;
    };
    expect(body.points).toEqual([
      expect.objectContaining({ t: new Date(ahead).toISOString(), count: 2, sum: 10, distinct_users: 2 }),
    ]);
  });

  it("adds a late event's users to a written minute (the actor let go of that minute's registers)", async () => {
    const t = await createTenant();
    const minute = Math.floor(Date.now() / MINUTE) * MINUTE - 5 * MINUTE;
    await sendJson(t.ingest, [
      { name: "users", user: "a", ts: minute + 1000 },
      { name: "users", user: "b", ts: minute + 2000 },
    ]);
    await flushed(t.tenantId, "users");
    const [first] = await minuteRows(t.tenantId, "users");
    expect(PeriodHll.decode(first.hll).estimate()).toBe(2);
    // The minute's registers are no longer held by the actor: a late event starts a delta.
    await sendJson(t.ingest, [{ name: "users", user: "c", ts: minute + 3000 }]);
    await flushed(t.tenantId, "users");
    const [second] = await minuteRows(t.tenantId, "users");
    expect(second.count).toBe(3);
    // Overwriting with the delta would say 1; the row must hold all three users.
    expect(PeriodHll.decode(second.hll).estimate()).toBe(3);
  });

  it("reports a write PostgreSQL refuses as a category with its SQLSTATE, never the SQL", async () => {
    const t = await createTenant();
    const stream = "refused-by-pg";
    await withDb(env, async (db) => {
      await db.execute(
        sql.raw(`CREATE OR REPLACE FUNCTION edgepulse_test_refuse() RETURNS trigger AS $$
          BEGIN IF NEW.stream = '${stream}' THEN RAISE EXCEPTION 'refused for the test' USING ERRCODE = '23514'; END IF;
          RETURN NEW; END $$ LANGUAGE plpgsql`),
      );
      await db.execute(
        sql.raw(
          "CREATE OR REPLACE TRIGGER edgepulse_test_refuse BEFORE INSERT OR UPDATE ON metrics_minute FOR EACH ROW EXECUTE FUNCTION edgepulse_test_refuse()",
        ),
      );
    });
    try {
      await sendJson(t.ingest, [{ name: stream, value: 1, ts: Date.now() - 3 * MINUTE }]);
      await vi.waitFor(
        async () => {
          await runDurableObjectAlarm(actor(t.tenantId, stream));
          expect((await status(t.tenantId, stream)).failures).toBeGreaterThan(0);
        },
        { timeout: 15_000, interval: 50 },
      );
      const s = await status(t.tenantId, stream);
      expect(s.last_error).toEqual({ category: "rejected", message: "PostgreSQL refused the write (SQLSTATE 23514)." });
      const snapshot = await (await get(`/v1/streams/${stream}`, t.read)).text();
      expect(snapshot.toLowerCase()).not.toContain("insert");
      expect(snapshot).not.toContain("metrics_minute");
    } finally {
      await withDb(env, (db) => db.execute(sql.raw("DROP TRIGGER IF EXISTS edgepulse_test_refuse ON metrics_minute")));
    }
    // Once PostgreSQL accepts again, the minute is written.
    await flushed(t.tenantId, stream);
    expect(await minuteRows(t.tenantId, stream)).toEqual([expect.objectContaining({ count: 1, sum: 1 })]);
  });
});
