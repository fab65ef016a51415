import { Agent, request } from "node:http";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { nearestRank } from "../../core/ddsketch";
import { createTestDatabase } from "../support/pg";
import { createTenant, type Keys, type Stack, startStack } from "../support/stack";

let stack: Stack;
let keys: Keys;
let databaseUrl: string;

beforeAll(async () => {
  databaseUrl = await createTestDatabase("edgepulse_test_e2e");
  stack = await startStack({ extraEnv: { DATABASE_URL: databaseUrl } });
  keys = await createTenant(stack, "e2e");
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

const post = (body: string | Uint8Array<ArrayBuffer>, headers: Record<string, string> = {}) =>
  fetch(`${stack.url}/v1/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json", ...headers },
    body,
  });

const read = async (path: string) => {
  const res = await fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${keys.read}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown> & {
    windows: Record<string, { count: number; sum: number; p95: number | null; distinct_users: number }>;
    counters: { accepted: number; duplicates: number };
  };
};

describe("npm start's stack, over HTTP", () => {
  it("ingests in every body format and serves the live figures", async () => {
    const now = Date.now();
    const events = Array.from({ length: 300 }, (_, i) => ({
      id: `e2e-${i}`,
      name: "checkout.completed",
      value: 100 + (i % 100),
      user: `user-${i % 75}`,
      // Spread over 10 s, so all 300 are well inside the 1m window read below (~50 s of margin).
      ts: now - (i % 50) * 200,
    }));
    const json = await post(JSON.stringify(events.slice(0, 100)));
    expect(await json.json()).toEqual({ accepted: 100, duplicates: 0, rejected: [] });
    const ndjson = await post(
      events
        .slice(100, 200)
        .map((e) => JSON.stringify(e))
        .join("\n"),
      {
        "content-type": "application/x-ndjson",
      },
    );
    expect(await ndjson.json()).toEqual({ accepted: 100, duplicates: 0, rejected: [] });
    const gz = await post(new Uint8Array(gzipSync(JSON.stringify(events.slice(200)))), { "content-encoding": "gzip" });
    expect(await gz.json()).toEqual({ accepted: 100, duplicates: 0, rejected: [] });
    // A retry of the first batch is recognised.
    expect(await (await post(JSON.stringify(events.slice(0, 100)))).json()).toEqual({
      accepted: 0,
      duplicates: 100,
      rejected: [],
    });

    const s = await read("/v1/streams/checkout.completed?window=1m");
    expect(s.windows["1m"].count).toBe(300);
    expect(s.windows["1m"].sum).toBe(events.reduce((a, e) => a + e.value, 0));
    expect(Math.abs(s.windows["1m"].distinct_users - 75)).toBeLessThanOrEqual(1);
    const values = events.map((e) => e.value).sort((a, b) => a - b);
    const exactP95 = values[nearestRank(0.95, values.length)];
    expect(Math.abs((s.windows["1m"].p95 as number) - exactP95) / exactP95).toBeLessThanOrEqual(0.01);
    expect(s.counters).toMatchObject({ accepted: 300, duplicates: 100 });

    // The list is served by the tenant's hub, which the stream's actor updates within about a second.
    await vi.waitFor(
      async () => {
        const list = (await read("/v1/streams")) as unknown as { streams: Array<{ name: string; count: number }> };
        expect(list.streams).toEqual([expect.objectContaining({ name: "checkout.completed", count: 300 })]);
      },
      { timeout: 10_000, interval: 100 },
    );
  });

  it("answers bad requests with stable codes", async () => {
    const bad = await post("{nope");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("malformed_body");
    const unauth = await fetch(`${stack.url}/v1/streams`);
    expect(unauth.status).toBe(401);
  });

  it("keeps a keep-alive connection usable after an error answered before the body was read", async () => {
    // One socket for every request: a refusal sent before the body is read (wrong content type, no key)
    // must not leave the connection closed under the next request.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const send = (headers: Record<string, string>, body: string) =>
      new Promise<{ status: number; socket: number }>((resolve, reject) => {
        const req = request(
          `${stack.url}/v1/events`,
          { method: "POST", agent, headers: { "content-length": String(Buffer.byteLength(body)), ...headers } },
          (res) => {
            res.resume();
            res.on("end", () =>
              resolve({ status: res.statusCode ?? 0, socket: (req.socket as { localPort?: number }).localPort ?? 0 }),
            );
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    const json = { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" };
    const body = JSON.stringify([{ name: "keepalive.test", value: 1 }]);
    try {
      const refusals = [
        await send(
          { authorization: `Bearer ${keys.ingest}`, "content-type": "application/x-www-form-urlencoded" },
          "a=1".repeat(2000),
        ),
        await send({ "content-type": "application/json" }, body),
        await send({ ...json, authorization: `Bearer ${keys.read}` }, body),
      ];
      expect(refusals.map((r) => r.status)).toEqual([415, 401, 403]);
      const ok = await send(json, body);
      expect(ok.status).toBe(200);
      expect(new Set([...refusals, ok].map((r) => r.socket)).size).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  it("queues events on request (?mode=queued) and counts them once its queue consumer has applied them", async () => {
    const events = Array.from({ length: 30 }, (_, i) => ({ name: "queued.e2e", value: i }));
    const res = await fetch(`${stack.url}/v1/events?mode=queued`, {
      method: "POST",
      headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
      body: JSON.stringify(events),
    });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ queued: 30, rejected: [], mode: "queued" });
    await vi.waitFor(
      async () => {
        const s = await fetch(`${stack.url}/v1/streams/queued.e2e`, {
          headers: { authorization: `Bearer ${keys.read}` },
        });
        expect(s.status).toBe(200);
        const body = (await s.json()) as { windows: Record<string, { count: number; sum: number }> };
        expect(body.windows["1h"]).toMatchObject({ count: 30, sum: 435 });
      },
      { timeout: 20_000, interval: 200 },
    );
  });

  it("writes the same figures to PostgreSQL history within seconds", async () => {
    const history = await vi.waitFor(
      async () => {
        const h = (await read("/v1/streams/checkout.completed/history?step=1m")) as unknown as {
          points: Array<{ count: number; sum: number }>;
        };
        expect(h.points.reduce((a, p) => a + p.count, 0)).toBe(300);
        return h;
      },
      { timeout: 30_000, interval: 250 },
    );
    const live = await read("/v1/streams/checkout.completed?window=1h");
    expect(history.points.reduce((a, p) => a + p.sum, 0)).toBe(live.windows["1h"].sum);
  });

  it("keeps every figure across a full restart of the stack (workerd and all actors)", async () => {
    const before = await read("/v1/streams/checkout.completed");
    await stack.stop();
    stack = await startStack({
      state: stack.state,
      vars: stack.vars,
      port: stack.port,
      extraEnv: { DATABASE_URL: databaseUrl },
    });
    const after = await read("/v1/streams/checkout.completed");
    for (const w of ["5m", "15m", "1h"]) expect(after.windows[w]).toEqual(before.windows[w]);
    expect(after.counters).toEqual(before.counters);
  }, 180_000);
});

describe("npm start with no database configured", () => {
  it("runs an embedded PostgreSQL, so history works with nothing installed", async () => {
    const embedded = await startStack({ extraEnv: { DATABASE_URL: "" } });
    try {
      const k = await createTenant(embedded, "embedded");
      const res = await fetch(`${embedded.url}/v1/events`, {
        method: "POST",
        headers: { authorization: `Bearer ${k.ingest}`, "content-type": "application/json" },
        body: JSON.stringify([
          { name: "signup", value: 1, user: "a" },
          { name: "signup", value: 2, user: "b" },
        ]),
      });
      expect(await res.json()).toEqual({ accepted: 2, duplicates: 0, rejected: [] });
      await vi.waitFor(
        async () => {
          const h = await fetch(`${embedded.url}/v1/streams/signup/history?step=1m`, {
            headers: { authorization: `Bearer ${k.read}` },
          });
          const body = (await h.json()) as { points: Array<{ count: number; sum: number; distinct_users: number }> };
          expect(body.points).toEqual([expect.objectContaining({ count: 2, sum: 3, distinct_users: 2 })]);
        },
        { timeout: 30_000, interval: 250 },
      );
    } finally {
      await embedded.stop();
    }
  }, 180_000);
});
