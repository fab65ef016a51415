import { abortAllDurableObjects, env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { decodeAggregate } from "../../core/aggregate";
import { StreamWindows } from "../../core/window";
import { createTenant, expectError, get, sendJson, stream } from "./helpers";

describe("GET /v1/streams", () => {
  it("lists the tenant's streams with their latest 1m figures, in pages", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [
      { name: "b.stream", value: 1 },
      { name: "a.stream", value: 2 },
      { name: "a.stream", value: 4 },
      { name: "c.stream" },
    ]);
    // Served by the tenant's hub, which each actor updates within about a second.
    await vi.waitFor(
      async () => {
        const res = await get("/v1/streams", t.read);
        expect(res.status).toBe(200);
        const body = (await res.json()) as {
          window: string;
          streams: Array<{ name: string; count: number; mean: number | null }>;
        };
        expect(body.window).toBe("1m");
        expect(body.streams.map((s) => [s.name, s.count, s.mean])).toEqual([
          ["a.stream", 2, 3],
          ["b.stream", 1, 1],
          ["c.stream", 1, null],
        ]);
      },
      { timeout: 10_000, interval: 100 },
    );
    const page1 = (await (await get("/v1/streams?limit=2", t.read)).json()) as {
      streams: Array<{ name: string }>;
      next_cursor: string;
    };
    expect(page1.streams.map((s) => s.name)).toEqual(["a.stream", "b.stream"]);
    const page2 = (await (await get(`/v1/streams?limit=2&cursor=${page1.next_cursor}`, t.read)).json()) as {
      streams: Array<{ name: string }>;
      next_cursor: string | null;
    };
    expect(page2.streams.map((s) => s.name)).toEqual(["c.stream"]);
    expect(page2.next_cursor).toBeNull();
    await expectError(await get("/v1/streams?limit=0", t.read), 400, "invalid_request");
  });
});

describe("GET /v1/streams/:name", () => {
  it("returns every window's aggregates, or one window", async () => {
    const t = await createTenant();
    const now = Date.now();
    // Three groups, each far from the window edges that separate them, so the read below has a wide margin:
    // i = 0..9 at 0-18 s ago (1m and up), i = 10..29 at 120-215 s ago (5m and up), i = 30..49 at 400-590 s ago
    // (15m and 1h only). An event can only leave a window as time passes, never enter one.
    const age = (i: number) => (i < 10 ? i * 2_000 : i < 30 ? 120_000 + (i - 10) * 5_000 : 400_000 + (i - 30) * 10_000);
    const events = Array.from({ length: 50 }, (_, i) => ({
      name: "latency",
      value: i + 1,
      user: `u${i % 10}`,
      ts: now - age(i),
    }));
    await sendJson(t.ingest, events);
    const all = await stream(t.read, "latency");
    expect(Object.keys(all.windows)).toEqual(["1m", "5m", "15m", "1h"]);
    expect(all.windows["1h"]).toMatchObject({ count: 50, sum: 1275, min: 1, max: 50, distinct_users: 10 });
    expect(all.windows["15m"].count).toBe(50);
    expect(all.windows["5m"].count).toBe(30);
    expect(all.windows["1m"].count).toBe(10);
    const p95 = all.windows["1h"].p95 as number;
    // Nearest rank: p95 of 1..50 is the 48th value.
    expect(Math.abs(p95 - 48) / 48).toBeLessThanOrEqual(0.01);
    const one = await stream(t.read, "latency", "5m");
    expect(Object.keys(one.windows)).toEqual(["5m"]);
  });

  it("explains bad names, bad windows and unknown streams", async () => {
    const t = await createTenant();
    await expectError(await get("/v1/streams/no%20spaces", t.read), 400, "invalid_stream_name");
    await expectError(await get("/v1/streams/x?window=2m", t.read), 400, "invalid_window");
    await expectError(await get("/v1/streams/never.seen", t.read), 404, "stream_not_found");
  });

  it("serves health, version and JSON 404s", async () => {
    expect(await (await get("/healthz")).json()).toEqual({ ok: true });
    expect(await (await get("/v1/version")).json()).toMatchObject({ name: "edgepulse" });
    await expectError(await get("/v1/nothing-here"), 404, "not_found");
  });
});

describe("durability", () => {
  it("loses nothing when every actor is evicted: state is rebuilt from storage", async () => {
    const t = await createTenant();
    const now = Date.now();
    const events = Array.from({ length: 40 }, (_, i) => ({
      id: `e${i}`,
      name: "durable",
      value: (i * 37) % 101,
      user: `user-${i % 13}`,
      ts: now - i * 60_000,
    }));
    expect(await (await sendJson(t.ingest, events)).json()).toMatchObject({ accepted: 40 });
    const before = await stream(t.read, "durable");

    await abortAllDurableObjects();

    const after = await stream(t.read, "durable");
    expect(after.windows).toEqual(before.windows);
    expect(after.counters).toEqual(before.counters);
    // Dedup memory survived too: a retry after the restart is recognised.
    expect(await (await sendJson(t.ingest, events.slice(0, 5))).json()).toEqual({
      accepted: 0,
      duplicates: 5,
      rejected: [],
    });
  });

  it("persists each batch before replying: the actor's tables hold it", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [
      { id: "x1", name: "stored", value: 5, user: "u" },
      { id: "x2", name: "stored", value: 7 },
    ]);
    const stub = env.METRIC_ACTOR.getByName(`${t.tenantId}/stored`);
    const rows = await runInDurableObject(stub, (_instance, state) => ({
      seconds: state.storage.sql
        .exec<{ agg: ArrayBuffer }>("SELECT agg FROM seconds")
        .toArray()
        .reduce((n, r) => n + decodeAggregate(r.agg).count, 0),
      dedup: state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM dedup").one().n,
      hll: state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM hll").one().n,
    }));
    expect(rows.seconds).toBe(2);
    expect(rows.dedup).toBe(2);
    expect(rows.hll).toBe(1);
  });

  it("schedules housekeeping and keeps in-window data through it", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "kept", value: 1 }]);
    const stub = env.METRIC_ACTOR.getByName(`${t.tenantId}/kept`);
    const alarm = () => runInDurableObject(stub, (_i, state) => state.storage.getAlarm());
    // The ingest armed the alarm (it may already have fired on its own: it re-arms while data is held).
    await vi.waitFor(async () => expect(await alarm()).not.toBeNull(), { timeout: 10_000, interval: 100 });
    await runDurableObjectAlarm(stub);
    expect((await stream(t.read, "kept")).windows["1m"].count).toBe(1);
    await vi.waitFor(async () => expect(await alarm()).not.toBeNull(), { timeout: 10_000, interval: 100 });
  });

  it("forgets buckets, registers and event ids older than their horizon on the alarm", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ id: "fresh", name: "aging", value: 1, user: "new-user" }]);
    const stub = env.METRIC_ACTOR.getByName(`${t.tenantId}/aging`);
    const oldSec = Math.floor(Date.now() / 1000) - 2 * 3600;
    // Plant state from two hours ago, as if the actor had been running then.
    const old = new StreamWindows();
    old.apply([{ ts: oldSec * 1000, value: 5 }]);
    old.packEnded(Date.now());
    const oldMinute = Math.floor(oldSec / 60);
    await runInDurableObject(stub, (_i, state) => {
      const sql = state.storage.sql;
      sql.exec("INSERT INTO minutes (minute, block) VALUES (?, ?)", oldMinute, old.minuteBlock(oldMinute));
      sql.exec("INSERT INTO hll (reg, pairs) VALUES (?, ?)", 3, new Uint8Array(new Int32Array([oldSec, 4]).buffer));
      sql.exec("INSERT INTO dedup (id, seen) VALUES ('stale', ?)", (oldSec - 10) * 1000);
    });
    await abortAllDurableObjects();
    const fresh = env.METRIC_ACTOR.getByName(`${t.tenantId}/aging`);
    expect(await runDurableObjectAlarm(fresh)).toBe(true);
    // Housekeeping runs once per minute, from 250 ms into it: an alarm in the first 250 ms of a minute (with
    // nothing else due) runs nothing yet, so the alarm is run again until housekeeping has been.
    await vi.waitFor(
      async () => {
        const left = await runInDurableObject(fresh, (_i, state) => {
          const sql = state.storage.sql;
          return {
            old: sql.exec<{ n: number }>("SELECT count(*) AS n FROM minutes WHERE minute = ?", oldMinute).one().n,
            buckets:
              sql.exec<{ n: number }>("SELECT count(*) AS n FROM minutes").one().n +
              sql.exec<{ n: number }>("SELECT count(*) AS n FROM seconds").one().n,
            reg3: sql.exec<{ n: number }>("SELECT count(*) AS n FROM hll WHERE reg = 3").one().n,
            ids: sql
              .exec<{ id: string }>("SELECT id FROM dedup")
              .toArray()
              .map((r) => r.id),
          };
        });
        if (left.old !== 0) await runDurableObjectAlarm(fresh);
        expect(left).toEqual({ old: 0, buckets: 1, reg3: 0, ids: ["fresh"] });
      },
      { timeout: 5_000, interval: 100 },
    );
    expect((await stream(t.read, "aging")).windows["1h"]).toMatchObject({ count: 1, distinct_users: 1 });
  });
});
