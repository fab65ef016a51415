/**
 * Offset audits against `npm start`'s real stack: pull sources are killed with SIGKILL (the whole stack,
 * workerd included) while they work, restarted on the same state folder, and every record must be counted
 * exactly once, read back from the stream API. Beside the stack run real local servers: a paged JSON
 * endpoint (test/support/source-endpoint.ts) and the Kafka REST Proxy stand-in (tools/kafka-rest.ts).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { SourceView } from "../../core/sources";
import { type KafkaRest, startKafkaRest } from "../../tools/kafka-rest";
import { createTestDatabase } from "../support/pg";
import { type SourceEndpoint, startSourceEndpoint } from "../support/source-endpoint";
import { createTenant, type Keys, type Stack, startStack } from "../support/stack";

let stack: Stack;
let keys: Keys;
let databaseUrl: string;
let endpoint: SourceEndpoint;
let kafka: KafkaRest;

const restart = () =>
  startStack({ state: stack.state, vars: stack.vars, port: stack.port, extraEnv: { DATABASE_URL: databaseUrl } });

/** SIGKILL to the stack's whole process group (dev.ts, workerd, the bridges): no shutdown, no flush. */
async function kill9(s: Stack): Promise<void> {
  const exited = new Promise<void>((r) =>
    s.child.exitCode !== null || s.child.signalCode !== null ? r() : s.child.once("exit", () => r()),
  );
  try {
    process.kill(-(s.child.pid as number), "SIGKILL");
  } catch {
    // already gone
  }
  await exited;
}

async function api(method: string, path: string, key: string, body?: unknown): Promise<Response> {
  return fetch(`${stack.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

const sourceView = async (id: string): Promise<SourceView> => {
  const res = await api("GET", `/v1/sources/${id}`, keys.admin);
  expect(res.status).toBe(200);
  return (await res.json()) as SourceView;
};

async function counted(stream: string) {
  const res = await api("GET", `/v1/streams/${stream}?window=1h`, keys.read);
  expect(res.status).toBe(200);
  return (await res.json()) as {
    windows: Record<string, { count: number; sum: number | null }>;
    counters: { accepted: number; duplicates: number };
  };
}

/** Waits until the source has produced `n` events and delivered them all. */
const caughtUp = (id: string, n: number) =>
  vi.waitFor(
    async () => {
      const v = await sourceView(id);
      expect(v.status.events_produced).toBe(n);
      expect(v.status.pending).toBe(0);
      return v;
    },
    { timeout: 120_000, interval: 250 },
  );

beforeAll(async () => {
  databaseUrl = await createTestDatabase("edgepulse_test_e2e_sources");
  endpoint = await startSourceEndpoint();
  kafka = await startKafkaRest();
  stack = await startStack({ extraEnv: { DATABASE_URL: databaseUrl } });
  keys = await createTenant(stack, "sources-e2e");
}, 180_000);

afterAll(async () => {
  endpoint.onPage = undefined;
  await stack?.stop();
  await endpoint?.close();
  await kafka?.close();
});

describe("pull sources through kill -9", () => {
  it("an HTTP source killed mid-batch three times produces every record exactly once", async () => {
    const now = Date.now();
    const records = Array.from({ length: 1500 }, (_, i) => ({
      seq: i,
      amount: (i % 10) + 1,
      at: new Date(now - 120_000 + i * 10).toISOString(),
    }));
    endpoint.setFeed("e2e-orders", records, { pageSize: 100, mode: "response" });
    // Three times: kill the stack just after it is handed its third page since it (re)started, while it
    // stores that page, delivers it or acknowledges it.
    const KILLS = 3;
    let pages = 0;
    let sinceStart = 0;
    let armed = true;
    let killed: () => void = () => {};
    const kill = new Promise<void>((r) => {
      killed = r;
    });
    let nextKill = kill;
    endpoint.onPage = () => {
      pages++;
      if (!armed || ++sinceStart < 3) return;
      armed = false;
      const victim = stack;
      const done = killed;
      setImmediate(() => void kill9(victim).then(done));
    };
    const res = await api("POST", "/v1/sources", keys.admin, {
      kind: "http",
      name: "orders api",
      url: `${endpoint.url}/feed/e2e-orders`,
      records: "$.data",
      cursor: { param: "after", next: "$.next" },
      max_records: 100,
      interval_ms: 1000,
      max_backoff_ms: 2000,
      mapping: { name: "e2e.http", ts: "$.at", value: "$.amount" },
    });
    expect(res.status).toBe(201);
    const id = ((await res.json()) as SourceView).id;
    for (let k = 0; k < KILLS; k++) {
      await nextKill;
      nextKill = new Promise<void>((r) => {
        killed = r;
      });
      stack = await restart();
      sinceStart = 0;
      armed = k + 1 < KILLS;
    }
    endpoint.onPage = undefined;
    expect(pages).toBeGreaterThanOrEqual(9);
    const v = await caughtUp(id, 1500);
    expect(v.status.rejected).toEqual({});
    const s = await counted("e2e.http");
    expect(s.windows["1h"].count).toBe(1500);
    expect(s.windows["1h"].sum).toBe(records.reduce((a, r) => a + r.amount, 0));
    expect(s.counters.accepted).toBe(1500);
    // Whatever was delivered before a kill and acknowledged after it is a duplicate, not a second count.
    expect(s.counters.duplicates).toBe(v.status.duplicates);
  }, 600_000);

  it("a Kafka source consumes every record exactly once across a kill -9, and commits the offsets", async () => {
    kafka.createTopic("e2e-orders", 3);
    const values = Array.from({ length: 600 }, (_, i) => ({ amount: i + 1, user: `u${i % 17}` }));
    kafka.produce(
      "e2e-orders",
      values.map((value, i) => ({ key: `k${i % 11}`, value })),
    );
    const res = await api("POST", "/v1/sources", keys.admin, {
      kind: "kafka",
      name: "orders topic",
      url: kafka.url,
      topics: ["e2e-orders"],
      max_records: 40,
      interval_ms: 1000,
      max_backoff_ms: 2000,
      mapping: { name: "e2e.kafka", value: "$.value.amount", user: "$.value.user" },
    });
    expect(res.status).toBe(201);
    const id = ((await res.json()) as SourceView).id;
    await vi.waitFor(async () => expect((await sourceView(id)).status.events_produced).toBeGreaterThanOrEqual(120), {
      timeout: 60_000,
      interval: 20,
    });
    await kill9(stack);
    stack = await restart();
    const v = await caughtUp(id, 600);
    expect(v.status.rejected).toEqual({});
    const s = await counted("e2e.kafka");
    expect(s.windows["1h"].count).toBe(600);
    expect(s.windows["1h"].sum).toBe((600 * 601) / 2);
    expect(s.counters.accepted).toBe(600);
    // Kafka's committed offsets follow the stored ones: the group has consumed every partition to its end.
    await vi.waitFor(
      () => {
        const end: Record<string, number> = {};
        for (const r of kafka.records("e2e-orders")) end[`e2e-orders/${r.partition}`] = r.offset + 1;
        expect(kafka.committed(`edgepulse-${id}`)).toEqual(end);
      },
      { timeout: 30_000, interval: 250 },
    );
  }, 600_000);
});
