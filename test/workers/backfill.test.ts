import { env, SELF } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { gunzip } from "../../core/archive";
import { runMaintenance } from "../../workers/maintenance";
import { BASE, createTenant, get, stream } from "./helpers";

const post = (key: string, events: unknown) =>
  SELF.fetch(`${BASE}/v1/events?mode=backfill`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify(events),
  });

interface Point {
  t: string;
  count: number;
  sum: number | null;
  max: number | null;
}

/** Minute points of [from, to) once history holds `total` events there. */
async function minutes(read: string, name: string, from: number, to: number, total: number): Promise<Point[]> {
  let points: Point[] = [];
  await vi.waitFor(
    async () => {
      const res = await get(`/v1/streams/${name}/history?step=1m&from=${from}&to=${to}`, read);
      expect(res.status).toBe(200);
      points = ((await res.json()) as { points: Point[] }).points.filter((p) => p.count > 0);
      expect(points.reduce((n, p) => n + p.count, 0)).toBe(total);
    },
    { timeout: 15_000, interval: 100 },
  );
  return points;
}

// Three days back, on a whole hour: minutes 0..4 of that hour.
const hourStart = Math.floor((Date.now() - 3 * 86_400_000) / 3_600_000) * 3_600_000;
const at = (minute: number, second: number) => hourStart + minute * 60_000 + second * 1000;

describe("backfill (POST /v1/events?mode=backfill)", () => {
  it("puts old events into history by minute and the archive, never the live windows; a repeat counts nothing twice", async () => {
    const t = await createTenant();
    const events = Array.from({ length: 40 }, (_, i) => ({
      id: `b${i}`,
      name: "bf.orders",
      ts: at(i % 5, i),
      value: i + 1,
      user: `u${i % 4}`,
    }));
    const res = await post(t.ingest, events);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ accepted: 40, duplicates: 0, rejected: [] });

    const points = await minutes(t.read, "bf.orders", hourStart, hourStart + 3_600_000, 40);
    for (let m = 0; m < 5; m++) {
      const mine = events.filter((_, i) => i % 5 === m);
      const p = points.find((x) => Date.parse(x.t) === hourStart + m * 60_000);
      expect(p).toMatchObject({
        count: mine.length,
        sum: mine.reduce((s, e) => s + e.value, 0),
        max: Math.max(...mine.map((e) => e.value)),
      });
    }
    // Not in the live windows; counted as backfilled.
    const live = await stream(t.read, "bf.orders");
    expect(live.windows["1h"].count).toBe(0);
    expect(live.counters).toMatchObject({ accepted: 0, backfilled: 40 });

    // The same events again (a re-run of an import): all duplicates, history unchanged.
    expect(await (await post(t.ingest, events)).json()).toMatchObject({ accepted: 0, duplicates: 40 });
    const again = await minutes(t.read, "bf.orders", hourStart, hourStart + 3_600_000, 40);
    expect(again).toEqual(points);

    // The archive holds them, once each, in the events' own date folder.
    const date = new Date(hourStart).toISOString().slice(0, 10);
    await vi.waitFor(
      async () => {
        const list = await env.ARCHIVE.list({ prefix: `raw/${t.tenantId}/bf.orders/${date}/` });
        const ids: string[] = [];
        for (const o of list.objects) {
          const text = await gunzip(await ((await env.ARCHIVE.get(o.key)) as R2ObjectBody).arrayBuffer());
          for (const l of text.split("\n").filter(Boolean)) ids.push((JSON.parse(l) as { id: string }).id);
        }
        expect(ids.sort()).toEqual(events.map((e) => e.id).sort());
      },
      { timeout: 15_000, interval: 100 },
    );
  });

  it("merges a second batch into minutes that already hold rows, exactly, and rollups follow", async () => {
    const t = await createTenant();
    const first = Array.from({ length: 10 }, (_, i) => ({ id: `m1-${i}`, name: "bf.merge", ts: at(1, i), value: 2 }));
    const second = Array.from({ length: 6 }, (_, i) => ({
      id: `m2-${i}`,
      name: "bf.merge",
      ts: at(1, 30 + i),
      value: 5,
    }));
    await post(t.ingest, first);
    await minutes(t.read, "bf.merge", hourStart, hourStart + 3_600_000, 10);
    await post(t.ingest, second);
    const points = await minutes(t.read, "bf.merge", hourStart, hourStart + 3_600_000, 16);
    expect(points).toHaveLength(1);
    expect(points[0]).toMatchObject({ count: 16, sum: 50, max: 5 });
    await runMaintenance(env);
    const res = await get(`/v1/streams/bf.merge/history?step=1h&from=${hourStart}&to=${hourStart + 3_600_000}`, t.read);
    const hour = ((await res.json()) as { points: Point[] }).points;
    expect(hour).toHaveLength(1);
    expect(hour[0]).toMatchObject({ count: 16, sum: 50 });
  });

  it("sends events young enough for the live windows down the live path, in one receipt", async () => {
    const t = await createTenant();
    const now = Date.now();
    const res = await post(t.ingest, [
      { id: "young", name: "bf.mixed", ts: now - 1000, value: 1 },
      { id: "old", name: "bf.mixed", ts: at(2, 0), value: 2 },
      { id: "ancient", name: "bf.mixed", ts: now - 500 * 86_400_000, value: 3 },
    ]);
    expect(await res.json()).toMatchObject({ accepted: 2, rejected: [{ index: 2, code: "too_late" }] });
    const live = await stream(t.read, "bf.mixed");
    expect(live.windows["1h"].count).toBe(1);
    expect(live.counters).toMatchObject({ accepted: 1, backfilled: 1 });
    await minutes(t.read, "bf.mixed", hourStart, hourStart + 3_600_000, 1);
  });
});
