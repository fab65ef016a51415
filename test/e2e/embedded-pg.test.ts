/**
 * `npm start`'s embedded PostgreSQL (PGlite behind pglite-socket) under the dashboard's load: a board
 * refreshes all its panels at once, and each query may read PostgreSQL over several connections. Every
 * one of 40 concurrent queries must be answered from PostgreSQL too (no `meta.missing`), and concurrent
 * catalog writes must all land. With pglite-socket's connection cap at 8 (the earlier setting), most of
 * these answers came back without history.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTenant, type Keys, type Stack, startStack } from "../support/stack";

let stack: Stack;
let keys: Keys;

beforeAll(async () => {
  stack = await startStack({ extraEnv: { DATABASE_URL: "", EDGEPULSE_NO_REDIS: "1" } });
  keys = await createTenant(stack, "embedded-pg");
  const now = Date.now();
  const events = Array.from({ length: 300 }, (_, i) => ({
    name: `pg.s${i % 3}`,
    value: i,
    user: `u${i % 11}`,
    ts: now - (i % 50) * 60_000,
    dims: { country: i % 2 ? "DE" : "FR" },
  }));
  const res = await fetch(`${stack.url}/v1/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
    body: JSON.stringify(events),
  });
  expect(res.status).toBe(200);
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

describe("the embedded PostgreSQL", () => {
  it("answers a burst of concurrent queries, each with its history", async () => {
    const query = (i: number) => ({
      streams: { a: `pg.s${i % 3}`, b: `pg.s${(i + 1) % 3}` },
      measures: ["a.count", "b.sum", { name: "r", expr: "a.count / b.count" }],
      group_by: ["country"],
      range: { last: i % 2 ? "24h" : "7d" },
      step: i % 2 ? "1h" : "1d",
    });
    const answers = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const res = await fetch(`${stack.url}/v1/query`, {
          method: "POST",
          headers: { authorization: `Bearer ${keys.read}`, "content-type": "application/json" },
          body: JSON.stringify(query(i)),
        });
        const body = (await res.json()) as { meta?: { missing?: unknown[] } };
        return { status: res.status, missing: body.meta?.missing ?? ["no meta"] };
      }),
    );
    expect(answers.filter((a) => a.status !== 200 || a.missing.length > 0)).toEqual([]);
  });

  it("takes concurrent catalog writes", async () => {
    const statuses = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const res = await fetch(`${stack.url}/v1/catalog/products`, {
          method: "POST",
          headers: { authorization: `Bearer ${keys.admin}`, "content-type": "application/json" },
          body: JSON.stringify({ id: `p${i}`, name: `Product ${i}`, price: i }),
        });
        return res.status;
      }),
    );
    expect(statuses).toEqual(Array.from({ length: 30 }, () => 201));
  });
});
