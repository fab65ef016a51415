import { env, runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { gunzip, hourOf, sha256Hex } from "../../core/archive";
import type { MetricActor } from "../../durable-objects/metric-actor";
import { actor } from "../../workers/lib/registry";
import { runMaintenance } from "../../workers/maintenance";
import { BASE, createTenant, expectError, get, sendJson, stream } from "./helpers";

interface Line {
  id?: string;
  name: string;
  ts: number;
  value?: number;
  user?: string;
  dims?: Record<string, string>;
}

/** Every segment of a stream: key, metadata and its lines. */
async function segments(tenant: string, name: string) {
  const list = await env.ARCHIVE.list({ prefix: `raw/${tenant}/${name}/`, include: ["customMetadata"] });
  return Promise.all(
    list.objects.map(async (o) => {
      const bytes = new Uint8Array(await ((await env.ARCHIVE.get(o.key)) as R2ObjectBody).arrayBuffer());
      const lines = (await gunzip(bytes))
        .split("\n")
        .filter((l) => l)
        .map((l) => JSON.parse(l) as Line);
      return { key: o.key, meta: o.customMetadata ?? {}, sha256: await sha256Hex(bytes), lines };
    }),
  );
}

/** Waits until the stream's actor has written every accepted event to the archive. */
async function drained(read: string, name: string) {
  await vi.waitFor(
    async () => {
      const s = (await stream(read, name)) as unknown as { archive: { pending_events: number } };
      expect(s.archive.pending_events).toBe(0);
    },
    { timeout: 15_000, interval: 50 },
  );
}

const byId = (a: Line, b: Line) => String(a.id).localeCompare(String(b.id));

describe("raw archive", () => {
  it("keeps exactly the accepted events, once each, in segments by event hour with their manifest", async () => {
    const t = await createTenant();
    const now = Date.now();
    // Two event times 40 minutes apart: the same hour or two, whatever the clock says; expected by their ts.
    const events = Array.from({ length: 30 }, (_, i) => ({
      id: `e${String(i).padStart(2, "0")}`,
      name: "arch.orders",
      ts: i % 2 ? now - 40 * 60_000 : now - i * 1000,
      value: i,
      user: `u${i % 3}`,
      dims: { country: i % 3 ? "DE" : "FR" },
    }));
    const first = await sendJson(t.ingest, events.slice(0, 20));
    expect(((await first.json()) as { accepted: number }).accepted).toBe(20);
    // A retry of the first half with the rest, a duplicate within the batch, and an invalid event.
    const again = await sendJson(t.ingest, [...events, events[25], { name: "arch.orders", value: "x" }]);
    expect(await again.json()).toMatchObject({ accepted: 10, duplicates: 21 });
    await drained(t.read, "arch.orders");

    const segs = await segments(t.tenantId, "arch.orders");
    const lines = segs.flatMap((s) => s.lines).sort(byId);
    expect(lines).toEqual([...events].sort(byId));
    for (const s of segs) {
      const hours = new Set(s.lines.map((l) => hourOf(l.ts)));
      expect(hours.size).toBe(1);
      const start = new Date([...hours][0] * 3_600_000).toISOString();
      expect(s.key).toMatch(
        new RegExp(
          `^raw/${t.tenantId}/arch\\.orders/${start.slice(0, 10)}/${start.slice(11, 13)}/\\d{12}-\\d{12}\\.ndjson\\.gz$`,
        ),
      );
      expect(s.meta).toEqual({
        count: String(s.lines.length),
        from_ts: String(Math.min(...s.lines.map((l) => l.ts))),
        to_ts: String(Math.max(...s.lines.map((l) => l.ts))),
        sha256: s.sha256,
      });
    }
  });

  it("a flush stopped after its write and before its commit writes the same segment again: no event twice", async () => {
    const t = await createTenant();
    const stub = actor(env, t.tenantId, "arch.crash");
    // The first write reaches R2, then the flush fails as if the object had been killed right after it.
    await runInDurableObject(stub, (instance: MetricActor) => {
      const a = instance.parts.archive;
      const real = a.put;
      a.put = async (key, body, options) => {
        await real(key, body, options);
        a.put = real;
        throw new Error("stopped after the write");
      };
    });
    const events = Array.from({ length: 12 }, (_, i) => ({ id: `c${i}`, name: "arch.crash", value: i }));
    expect(await (await sendJson(t.ingest, events)).json()).toMatchObject({ accepted: 12 });
    await drained(t.read, "arch.crash");
    const s = (await stream(t.read, "arch.crash")) as unknown as { archive: { segments_written: number } };
    expect(s.archive.segments_written).toBeGreaterThanOrEqual(1);
    const segs = await segments(t.tenantId, "arch.crash");
    expect(segs.flatMap((x) => x.lines.map((l) => l.id)).sort()).toEqual(events.map((e) => e.id).sort());
  });

  it("refuses events (503) while R2 is down and its log is full, then drains and accepts again", async () => {
    const t = await createTenant();
    const stub = actor(env, t.tenantId, "arch.full");
    await runInDurableObject(stub, (instance: MetricActor) => {
      const a = instance.parts.archive;
      (a as unknown as { real: typeof a.put }).real = a.put;
      a.put = async () => {
        throw new Error("R2 is down");
      };
    });
    // The test config holds at most ARCHIVE_MAX_PENDING_EVENTS=1000 events for the archive.
    for (let i = 0; i < 20; i++) {
      const batch = Array.from({ length: 50 }, (_, k) => ({ id: `f${i}-${k}`, name: "arch.full" }));
      expect(await (await sendJson(t.ingest, batch)).json()).toMatchObject({ accepted: 50 });
    }
    const refused = await sendJson(t.ingest, [{ id: "late-one", name: "arch.full" }]);
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({
      error: { code: "stream_unavailable", details: { rejected: [{ code: "stream_unavailable" }] } },
    });
    const before = (await stream(t.read, "arch.full")) as unknown as {
      archive: { pending_events: number; last_error: string | null };
      counters: { accepted: number };
    };
    expect(before.archive.pending_events).toBe(1000);
    expect(before.archive.last_error).toContain("R2 is down");
    expect(before.counters.accepted).toBe(1000);
    await runInDurableObject(stub, (instance: MetricActor) => {
      const a = instance.parts.archive;
      a.put = (a as unknown as { real: typeof a.put }).real;
    });
    await drained(t.read, "arch.full");
    expect(await (await sendJson(t.ingest, [{ id: "late-one", name: "arch.full" }])).json()).toMatchObject({
      accepted: 1,
    });
    await drained(t.read, "arch.full");
    const ids = (await segments(t.tenantId, "arch.full")).flatMap((x) => x.lines.map((l) => l.id));
    expect(ids.length).toBe(1001);
    expect(new Set(ids).size).toBe(1001);
  });
});

describe("archive API", () => {
  it("lists the manifest and exports a range as NDJSON, for the caller's tenant only", async () => {
    const t = await createTenant();
    const other = await createTenant("other");
    const now = Date.now();
    const events = Array.from({ length: 10 }, (_, i) => ({
      id: `x${i}`,
      name: "arch.api",
      ts: now - i * 60_000,
      value: i,
    }));
    await sendJson(t.ingest, events);
    await drained(t.read, "arch.api");

    const res = await get("/v1/archive?stream=arch.api", t.read);
    expect(res.status).toBe(200);
    const page = (await res.json()) as { segments: Array<{ key: string; count: number; stream: string }> };
    expect(page.segments.reduce((n, s) => n + s.count, 0)).toBe(10);
    expect(page.segments.every((s) => s.stream === "arch.api")).toBe(true);
    const theirs = (await (await get("/v1/archive", other.read)).json()) as { segments: unknown[] };
    expect(theirs.segments).toEqual([]);

    // Events of the last 4.5 minutes: i = 0..4.
    const from = now - 4.5 * 60_000;
    const exp = await get(`/v1/archive/export?stream=arch.api&from=${Math.round(from)}&to=${now + 1}`, t.read);
    expect(exp.status).toBe(200);
    expect(exp.headers.get("content-type")).toBe("application/x-ndjson; charset=utf-8");
    const lines = (await exp.text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Line);
    expect(lines.map((l) => l.id).sort()).toEqual(["x0", "x1", "x2", "x3", "x4"]);

    await expectError(await get("/v1/archive/export?stream=arch.api&from=0&to=1", t.read), 400, "invalid_range");
    await expectError(
      await get(`/v1/archive/export?stream=arch.api&from=${now - 40 * 86_400_000}&to=${now}`, t.read),
      400,
      "range_too_large",
    );
    await expectError(await get("/v1/archive/export", t.read), 400, "invalid_request");
    expect((await get("/v1/archive", t.ingest)).status).toBe(403);
  });

  it("retention deletes segments past ARCHIVE_RETENTION_DAYS, keeping newer ones", async () => {
    const old = "raw/t_retention/s.old/2020-01-01/00/000000000001-000000000001.ndjson.gz";
    const recent = `raw/t_retention/s.old/${new Date().toISOString().slice(0, 10)}/00/000000000002-000000000002.ndjson.gz`;
    await env.ARCHIVE.put(old, new Uint8Array([1]));
    await env.ARCHIVE.put(recent, new Uint8Array([2]));
    const report = await runMaintenance(env);
    expect(report?.segmentsDeleted).toBeGreaterThanOrEqual(1);
    expect(await env.ARCHIVE.head(old)).toBeNull();
    expect(await env.ARCHIVE.head(recent)).not.toBeNull();
  });

  it("keeps each tenant's own retention, within the deployment's", async () => {
    const short = await createTenant("retention-short");
    const other = await createTenant("retention-default");
    const put = (key: string, body: unknown) =>
      SELF.fetch(`${BASE}/v1/archive/retention`, {
        method: "PUT",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const set = await put(short.admin, { days: 3 });
    expect(await set.json()).toEqual({ days: 3, tenant_days: 3, deployment_days: 365 });
    expect(await (await get("/v1/archive/retention", other.read)).json()).toEqual({
      days: 365,
      tenant_days: null,
      deployment_days: 365,
    });
    const over = await expectError(await put(short.admin, { days: 400 }), 400, "invalid_request");
    expect(over.message).toContain("at most 365 days");
    await expectError(await put(short.read, { days: 5 }), 403, "insufficient_scope");
    await expectError(await put(short.admin, { days: 0 }), 400, "invalid_request");

    // Segments five days old: the 3-day tenant loses its own; the other tenant keeps its.
    const day = new Date(Date.now() - 5 * 86_400_000).toISOString().slice(0, 10);
    const key = (t: string) => `raw/${t}/s.kept/${day}/00/000000000001-000000000001.ndjson.gz`;
    await env.ARCHIVE.put(key(short.tenantId), new Uint8Array([1]));
    await env.ARCHIVE.put(key(other.tenantId), new Uint8Array([1]));
    await runMaintenance(env);
    expect(await env.ARCHIVE.head(key(short.tenantId))).toBeNull();
    expect(await env.ARCHIVE.head(key(other.tenantId))).not.toBeNull();

    // A replay cannot reach before the tenant's retention: the archive no longer holds those events.
    const replay = await SELF.fetch(`${BASE}/v1/streams/s.kept/replay`, {
      method: "POST",
      headers: { authorization: `Bearer ${short.admin}`, "content-type": "application/json" },
      body: JSON.stringify({ from: Date.now() - 10 * 86_400_000, to: Date.now() - 9 * 86_400_000 }),
    });
    const refused = await expectError(replay, 400, "invalid_range");
    expect(refused.message).toContain("keeps 3 days");

    // Back to the deployment's: null.
    expect(await (await put(short.admin, { days: null })).json()).toMatchObject({ days: 365, tenant_days: null });
  });
});
