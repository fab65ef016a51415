/**
 * Kafka sinks (/v1/sinks) against the Kafka REST Proxy stand-in (tools/kafka-rest.ts, its v3 produce API;
 * no broker runs here), fed by the real raw archive (miniflare's R2). What reached the topic is read back
 * from the stand-in and compared with what was acknowledged.
 */
import { abortAllDurableObjects, runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import type { SinkView } from "../../core/sinks";
import type { SinkActor } from "../../durable-objects/sink-actor";
import { testEnv as env } from "./env";
import { BASE, createTenant, expectError, sendJson, type TenantKeys } from "./helpers";

const SECRET = "Bearer kafka-sink-secret-77";
const WAIT = { timeout: 25_000, interval: 100 };
const proxy = env.TEST_KAFKA_SINK_URL;
const bodies: string[] = [];

async function call(method: string, path: string, key: string, body?: unknown): Promise<Response> {
  const res = await SELF.fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  bodies.push(text);
  return new Response(text, { status: res.status, headers: res.headers });
}

/** A control call to the stand-in, its body read (an unread body holds one of workerd's connections). */
async function control(path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${proxy}${path}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
  expect(res.status).toBe(200);
  return res.json();
}

interface Produced {
  partition: number;
  offset: number;
  key: unknown;
  value: { name: string; id?: string; ts: number; value?: number; user?: string };
}
const topicRecords = async (topic: string) => (await control(`/__control/topics/${topic}/records`)) as Produced[];

const sinkBody = (topic: string, extra: Record<string, unknown> = {}) => ({
  kind: "kafka",
  name: `to ${topic}`,
  url: proxy,
  topic,
  auth: { header: "Authorization", value: SECRET },
  ...extra,
});

async function create(t: TenantKeys, body: Record<string, unknown>): Promise<SinkView> {
  const res = await call("POST", "/v1/sinks", t.admin, body);
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as SinkView;
}

async function view(t: TenantKeys, id: string): Promise<SinkView> {
  const res = await call("GET", `/v1/sinks/${id}`, t.admin);
  expect(res.status).toBe(200);
  return (await res.json()) as SinkView;
}

const stub = (t: TenantKeys, id: string) => env.SINK_ACTOR.getByName(`${t.tenantId}/${id}`);

const events = (stream: string, from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({
    name: stream,
    id: `${stream}-${from + i}`,
    ts: Date.now() - 1000,
    value: from + i,
    user: `u${(from + i) % 7}`,
  }));

/** Sends events in requests of at most 50 (the test deployment's MAX_EVENTS_PER_BATCH). */
async function ingest(t: TenantKeys, batch: unknown[]): Promise<void> {
  for (let i = 0; i < batch.length; i += 50) {
    const res = await sendJson(t.ingest, batch.slice(i, i + 50));
    expect(res.status).toBe(200);
    await res.body?.cancel();
  }
}

/** Waits until the topic holds `n` records from `stream` and the sink has nothing queued. */
async function reached(t: TenantKeys, id: string, topic: string, stream: string, n: number): Promise<Produced[]> {
  return vi.waitFor(async () => {
    const got = (await topicRecords(topic)).filter((r) => r.value.name === stream);
    expect(got.length).toBe(n);
    expect((await view(t, id)).status.queued_segments).toBe(0);
    return got;
  }, WAIT);
}

describe("/v1/sinks: create, list, get, pause, resume, delete", () => {
  it("manages a sink, keeps its secret to itself, and answers bad bodies and wrong keys with their codes", async () => {
    const t = await createTenant("sinks-crud");
    const s = await create(t, sinkBody("crud"));
    expect(s).toMatchObject({
      kind: "kafka",
      state: "running",
      secrets: { auth: "set" },
      config: { topic: "crud", key: "stream", auth_header: "Authorization" },
      status: { queued_segments: 0, events_produced: 0, segments_skipped: 0 },
    });
    expect(s.id).toMatch(/^snk_/);
    const list = (await (await call("GET", "/v1/sinks", t.admin)).json()) as { sinks: SinkView[] };
    expect(list.sinks.map((x) => x.id)).toEqual([s.id]);
    expect(((await (await call("POST", `/v1/sinks/${s.id}/pause`, t.admin)).json()) as SinkView).state).toBe("paused");
    expect(((await (await call("POST", `/v1/sinks/${s.id}/resume`, t.admin)).json()) as SinkView).state).toBe(
      "running",
    );

    const bad = await expectError(
      await call("POST", "/v1/sinks", t.admin, sinkBody("x", { topic: "no spaces allowed" })),
      400,
      "invalid_sink",
    );
    expect(bad.message).toContain("topic");
    await expectError(
      await call("POST", "/v1/sinks", t.admin, sinkBody("x", { streams: ["a.*"] })),
      400,
      "invalid_sink",
    );
    await expectError(await call("POST", "/v1/sinks", t.admin, { kind: "s3", name: "x" }), 400, "invalid_sink");
    await expectError(await call("GET", "/v1/sinks", t.read), 403, "insufficient_scope");
    const limited = await call("POST", "/v1/keys", t.admin, { scope: "admin", stream_prefixes: ["orders."] });
    const key = ((await limited.json()) as { key: string }).key;
    await expectError(await call("POST", "/v1/sinks", key, sinkBody("x")), 403, "restricted_credential");
    // The tenant's registry holds at most MAX_SINKS_PER_TENANT: at the cap it refuses.
    const reg = env.TENANT_REGISTRY.getByName(t.tenantId);
    expect(await reg.addSink("snk_a", Date.now(), null, 2)).toBe(true);
    expect(await reg.addSink("snk_b", Date.now(), ["x."], 2)).toBe(false);
    await reg.deleteSink("snk_a");
    await expectError(await call("GET", "/v1/sinks/snk_nope", t.admin), 404, "sink_not_found");
    // Another tenant cannot see or touch it.
    const other = await createTenant("sinks-other");
    await expectError(await call("GET", `/v1/sinks/${s.id}`, other.admin), 404, "sink_not_found");
    await expectError(await call("DELETE", `/v1/sinks/${s.id}`, other.admin), 404, "sink_not_found");

    const deleted = await call("DELETE", `/v1/sinks/${s.id}`, t.admin);
    expect(await deleted.json()).toEqual({ deleted: s.id, queued_segments: 0 });
    await expectError(await call("GET", `/v1/sinks/${s.id}`, t.admin), 404, "sink_not_found");
    // A stream's actor that still lists the deleted sink is told it is gone (never an error that would
    // hold the archive back), and the sink keeps nothing.
    const gone = await runInDurableObject(stub(t, s.id), (a: SinkActor) =>
      a.enqueue([
        { key: `raw/${t.tenantId}/x/2026-01-01/00/000000000001-000000000001.ndjson.gz`, stream: "x", count: 1 },
      ]),
    );
    expect(gone).toBe(false);
    expect(await runInDurableObject(stub(t, s.id), (a: SinkActor) => a.view())).toBeNull();
    for (const text of bodies) expect(text.includes("kafka-sink-secret-77")).toBe(false);
  });
});

describe("producing accepted events", () => {
  it("produces every accepted event once, in each stream's order, only from the streams it takes", async () => {
    const t = await createTenant("sinks-produce");
    const s = await create(t, sinkBody("orders-out", { streams: ["orders."], key: "id" }));
    // Another tenant's stream of the same name never reaches this tenant's sink.
    const other = await createTenant("sinks-produce-other");
    await ingest(
      other,
      events("orders.paid", 0, 40).map((e) => ({ ...e, id: `other-${e.id}` })),
    );
    const sent = events("orders.paid", 0, 120);
    await ingest(t, sent.slice(0, 50));
    await ingest(t, [...sent.slice(30, 50), ...sent.slice(50, 120)]); // 20 duplicates, acknowledged once
    await ingest(t, events("views.page", 0, 30)); // not under orders.
    const got = await reached(t, s.id, "orders-out", "orders.paid", 120);
    expect(got.map((r) => r.value.id).sort()).toEqual(sent.map((e) => e.id).sort());
    expect((await topicRecords("orders-out")).some((r) => r.value.id?.startsWith("other-"))).toBe(false);
    expect(got.every((r) => r.key === r.value.id)).toBe(true);
    // One stream's events keep their order on each partition.
    const byPartition = new Map<number, number[]>();
    for (const r of got) byPartition.set(r.partition, [...(byPartition.get(r.partition) ?? []), r.value.value ?? -1]);
    for (const values of byPartition.values()) expect(values).toEqual([...values].sort((a, b) => a - b));
    expect((await topicRecords("orders-out")).some((r) => r.value.name === "views.page")).toBe(false);
    const v = await view(t, s.id);
    expect(v.status).toMatchObject({ events_produced: 120, queued_events: 0, segments_skipped: 0, last_error: null });
  });

  it("backs off while the proxy fails, reports it without the secret, then catches up: nothing lost or doubled", async () => {
    const t = await createTenant("sinks-outage");
    const s = await create(t, sinkBody("outage-out"));
    await control("/__control/fail", { count: 3, status: 503 });
    await ingest(t, events("clicks", 0, 40));
    const failing = await vi.waitFor(async () => {
      const v = await view(t, s.id);
      expect(v.status.last_error?.code).toBe("kafka_error");
      return v;
    }, WAIT);
    expect(failing.status.last_error?.message).toContain("503");
    await ingest(t, events("clicks", 40, 40));
    const got = await reached(t, s.id, "outage-out", "clicks", 80);
    expect(new Set(got.map((r) => r.value.id)).size).toBe(80);
    expect(got.every((r) => r.key === "clicks")).toBe(true);
    const v = await view(t, s.id);
    expect(v).toMatchObject({ state: "running", status: { consecutive_failures: 0, events_produced: 80 } });
    for (const text of bodies) expect(text.includes("kafka-sink-secret-77")).toBe(false);
  });

  it("stops on refused credentials (failed, no retries) and produces everything once resumed", async () => {
    const t = await createTenant("sinks-401");
    const s = await create(t, sinkBody("refused-out"));
    await control("/__control/fail", { count: 1, status: 401 });
    await ingest(t, events("logins", 0, 10));
    await vi.waitFor(async () => {
      const v = await view(t, s.id);
      expect(v.state).toBe("failed");
      expect(v.status.last_error?.code).toBe("auth_failed");
      expect(v.status.next_attempt_at).toBeNull();
    }, WAIT);
    await call("POST", `/v1/sinks/${s.id}/resume`, t.admin);
    await reached(t, s.id, "refused-out", "logins", 10);
  });

  it("keeps what is queued across a restart, and takes a segment announced again only once", async () => {
    const t = await createTenant("sinks-restart");
    const s = await create(t, sinkBody("restart-out"));
    await call("POST", `/v1/sinks/${s.id}/pause`, t.admin);
    await ingest(t, events("carts", 0, 25));
    await ingest(t, events("carts", 25, 25));
    const queued = await vi.waitFor(async () => {
      const v = await view(t, s.id);
      expect(v.status.queued_events).toBe(50);
      return v;
    }, WAIT);
    expect(queued.status.queued_segments).toBeGreaterThanOrEqual(1);
    await abortAllDurableObjects();
    await call("POST", `/v1/sinks/${s.id}/resume`, t.admin);
    const got = await reached(t, s.id, "restart-out", "carts", 50);
    expect(new Set(got.map((r) => r.value.id)).size).toBe(50);

    // The archive announcing a segment again (a crash after its write) produces nothing more…
    const first = (await topicRecords("restart-out")).length;
    const again = await runInDurableObject(stub(t, s.id), async (a: SinkActor) => {
      const keys = (await env.ARCHIVE.list({ prefix: `raw/${t.tenantId}/carts/` })).objects.map((o) => o.key);
      // …and a key outside the sink's tenant is never taken.
      const foreign = `raw/t_someone_else/carts/2026-01-01/00/000000000001-000000000001.ndjson.gz`;
      await a.enqueue([...keys, foreign].map((key) => ({ key, stream: "carts", count: 25 })));
      return a.produce();
    });
    expect(again).toBe(0);
    expect((await topicRecords("restart-out")).length).toBe(first);
  });
});
