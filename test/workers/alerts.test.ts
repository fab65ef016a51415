import { abortAllDurableObjects, env, runDurableObjectAlarm, runInDurableObject, SELF } from "cloudflare:test";
import { eq } from "drizzle-orm";
import { describe, expect, it, vi } from "vitest";
import { type AlertEventView, signWebhook } from "../../core/alerts";
import { withDb } from "../../db/client";
import { alertEvents } from "../../db/schema";
import { BASE, createTenant, expectError, sendJson, type TenantKeys } from "./helpers";

const RECEIVER = (env as unknown as { TEST_WEBHOOK_URL: string }).TEST_WEBHOOK_URL;

interface Received {
  status: number;
  headers: Record<string, string>;
  body: string;
}

const received = async (name: string) => (await (await fetch(`${RECEIVER}/__received/${name}`)).json()) as Received[];
const receiver = (op: "down" | "up", name: string) => fetch(`${RECEIVER}/__${op}/${name}`, { method: "POST" });

const api = (method: string, path: string, key: string, body?: unknown) =>
  SELF.fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

async function createRule(t: TenantKeys, rule: Record<string, unknown>) {
  const res = await api("POST", "/v1/alerts/rules", t.admin, rule);
  expect(res.status).toBe(201);
  return ((await res.json()) as { rule: { id: string } }).rule.id;
}

const actor = (t: TenantKeys, stream: string) => env.METRIC_ACTOR.getByName(`${t.tenantId}/${stream}`);

/** Runs the stream's alarm until `check` passes (the alarm delivers webhooks; retries back off in real time). */
async function untilDelivered<T>(t: TenantKeys, stream: string, check: () => Promise<T>): Promise<T> {
  return vi.waitFor(
    async () => {
      await runDurableObjectAlarm(actor(t, stream));
      return check();
    },
    { timeout: 20_000, interval: 100 },
  );
}

async function verify(t: TenantKeys, r: Received): Promise<AlertEventView> {
  const secret = ((await (await api("GET", "/v1/alerts/secret", t.admin)).json()) as { secret: string }).secret;
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(r.headers["x-edgepulse-signature"]);
  expect(m).not.toBeNull();
  expect(await signWebhook(secret, Number(m?.[1]), r.body)).toBe(m?.[2]);
  const event = JSON.parse(r.body) as AlertEventView;
  expect(r.headers["idempotency-key"]).toBe(event.id);
  // The body is in the API's form: the transition's time as an ISO-8601 string.
  expect(new Date(event.at).toISOString()).toBe(event.at);
  return event;
}

describe("alert rules API", () => {
  it("validates rules with clear errors and needs an admin key to write", async () => {
    const t = await createTenant();
    const err = await expectError(
      await api("POST", "/v1/alerts/rules", t.admin, { stream: "x", aggregate: "p42", threshold: 1 }),
      400,
      "invalid_rule",
    );
    expect(err.message).toContain("aggregate");
    await expectError(
      await api("POST", "/v1/alerts/rules", t.read, { stream: "x", threshold: 1 }),
      403,
      "insufficient_scope",
    );
    await expectError(
      await api("PATCH", "/v1/alerts/rules/rule_nope", t.admin, { threshold: 2 }),
      404,
      "rule_not_found",
    );
  });

  it("creates, lists, updates, disables and deletes a rule, scoped to the tenant", async () => {
    const t = await createTenant();
    const other = await createTenant();
    const id = await createRule(t, {
      stream: "checkout",
      aggregate: "p95",
      window: "5m",
      threshold: 800,
      for: "2m",
      resolve_threshold: 600,
      labels: { team: "shop" },
    });
    const list = (await (await api("GET", "/v1/alerts/rules", t.read)).json()) as {
      rules: Array<{ rule: { id: string; for_ms: number }; state: { state: string } }>;
    };
    expect(list.rules).toEqual([
      expect.objectContaining({
        rule: expect.objectContaining({ id, for_ms: 120_000 }),
        state: expect.objectContaining({ state: "inactive" }),
      }),
    ]);
    expect(((await (await api("GET", "/v1/alerts/rules", other.read)).json()) as { rules: unknown[] }).rules).toEqual(
      [],
    );
    await expectError(await api("GET", `/v1/alerts/rules/${id}`, other.read), 404, "rule_not_found");
    const patched = (await (await api("PATCH", `/v1/alerts/rules/${id}`, t.admin, { threshold: 900 })).json()) as {
      rule: { threshold: number; resolve_threshold: number };
    };
    expect(patched.rule).toMatchObject({ threshold: 900, resolve_threshold: 600 });
    const disabled = (await (await api("POST", `/v1/alerts/rules/${id}/disable`, t.admin)).json()) as {
      rule: { enabled: boolean };
    };
    expect(disabled.rule.enabled).toBe(false);
    expect((await api("DELETE", `/v1/alerts/rules/${id}`, t.admin)).status).toBe(200);
    await expectError(await api("GET", `/v1/alerts/rules/${id}`, t.read), 404, "rule_not_found");
  });
});

describe("alerts evaluated in the actor, delivered to webhooks", () => {
  it("fires once, signed, when the condition holds, and again once when it resolves", async () => {
    const t = await createTenant();
    const hook = `fire-${t.tenantId}`;
    await createRule(t, {
      stream: "payments.failed",
      aggregate: "count",
      window: "1m",
      comparator: ">=",
      threshold: 3,
      targets: [`${RECEIVER}/hook/${hook}`],
      labels: { severity: "page" },
    });
    await sendJson(t.ingest, [{ name: "payments.failed" }, { name: "payments.failed" }]);
    await sendJson(t.ingest, [{ name: "payments.failed" }]);
    const [firing] = await untilDelivered(t, "payments.failed", async () => {
      const got = await received(hook);
      expect(got).toHaveLength(1);
      return got;
    });
    const event = await verify(t, firing);
    expect(event).toMatchObject({
      kind: "firing",
      rule_name: "payments.failed threshold",
      value: 3,
      labels: { severity: "page" },
    });
    // Still true: more events, more evaluations, no second notification.
    await sendJson(t.ingest, [{ name: "payments.failed" }]);
    await runDurableObjectAlarm(actor(t, "payments.failed"));
    expect(await received(hook)).toHaveLength(1);
    const live = (await (await api("GET", "/v1/alerts", t.read)).json()) as { firing: AlertEventView[] };
    expect(live.firing.map((e) => e.kind)).toEqual(["firing"]);

    // Raise the threshold: the condition no longer holds → resolved, delivered once.
    const rules = (await (await api("GET", "/v1/alerts/rules", t.read)).json()) as {
      rules: Array<{ rule: { id: string } }>;
    };
    await api("PATCH", `/v1/alerts/rules/${rules.rules[0].rule.id}`, t.admin, { threshold: 100 });
    const all = await untilDelivered(t, "payments.failed", async () => {
      const got = await received(hook);
      expect(got).toHaveLength(2);
      return got;
    });
    expect((await verify(t, all[1])).kind).toBe("resolved");
    const events = (await (await api("GET", "/v1/alerts/events", t.read)).json()) as {
      events: Array<AlertEventView & { deliveries: Array<{ status: string; delivered_at: string | null }> }>;
    };
    expect(events.events.map((e) => e.kind)).toEqual(["resolved", "firing"]);
    expect(events.events.every((e) => e.deliveries[0].status === "delivered")).toBe(true);
    for (const e of events.events) {
      expect(Date.parse(e.deliveries[0].delivered_at ?? "")).toBeGreaterThanOrEqual(Date.parse(e.at));
    }
    // The transitions go to PostgreSQL with the history, delivery outcomes included.
    const rows = await vi.waitFor(
      async () => {
        await runDurableObjectAlarm(actor(t, "payments.failed"));
        const r = await withDb(env, (db) =>
          db.select().from(alertEvents).where(eq(alertEvents.tenantId, t.tenantId)).orderBy(alertEvents.at),
        );
        expect(r.map((x) => x.kind)).toEqual(["firing", "resolved"]);
        return r;
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(rows[0]).toMatchObject({ stream: "payments.failed", value: 3, labels: { severity: "page" } });
    expect(rows[0].deliveries).toEqual([expect.objectContaining({ status: "delivered", attempts: 1 })]);
  });

  it("retries while the receiver is down and delivers each event exactly once when it is back", async () => {
    const t = await createTenant();
    const hook = `retry-${t.tenantId}`;
    await receiver("down", hook);
    try {
      await createRule(t, {
        stream: "orders",
        aggregate: "count",
        window: "1m",
        threshold: 0,
        targets: [`${RECEIVER}/hook/${hook}`],
      });
      await sendJson(t.ingest, [{ name: "orders" }]);
      await untilDelivered(t, "orders", async () => expect((await received(hook)).length).toBeGreaterThanOrEqual(2));
      const events = (await (await api("GET", "/v1/alerts/events", t.read)).json()) as {
        events: Array<{ deliveries: Array<{ status: string; attempts: number; last_error: string }> }>;
      };
      expect(events.events[0].deliveries[0]).toMatchObject({ status: "pending", last_error: "HTTP 503" });
    } finally {
      await receiver("up", hook);
    }
    const ok = await untilDelivered(t, "orders", async () => {
      const got = (await received(hook)).filter((r) => r.status === 200);
      expect(got.length).toBeGreaterThanOrEqual(1);
      return got;
    });
    // Settle: further alarms must not deliver again.
    await runDurableObjectAlarm(actor(t, "orders"));
    await runDurableObjectAlarm(actor(t, "orders"));
    const delivered = (await received(hook)).filter((r) => r.status === 200);
    expect(delivered).toHaveLength(1);
    const all = await received(hook);
    // Every attempt carried the same idempotency key.
    expect(new Set(all.map((r) => r.headers["idempotency-key"])).size).toBe(1);
    expect((await verify(t, ok[0])).kind).toBe("firing");
  });

  it("keeps a bounded log of transitions: the last 1,000 (older ones live in PostgreSQL)", async () => {
    const t = await createTenant();
    await createRule(t, { stream: "pruned", aggregate: "count", window: "1m", threshold: 0 });
    await runInDurableObject(actor(t, "pruned"), (_i, state) => {
      for (let i = 0; i < 1100; i++) {
        state.storage.sql.exec("INSERT INTO alert_events (id, event) VALUES (?, ?)", `old-${i}`, "{}");
      }
    });
    await sendJson(t.ingest, [{ name: "pruned" }]);
    await vi.waitFor(
      async () => {
        const count = (where: string) =>
          runInDurableObject(
            actor(t, "pruned"),
            (_i, state) =>
              state.storage.sql.exec<{ n: number }>(`SELECT count(*) AS n FROM alert_events WHERE ${where}`).one().n,
          );
        // The oldest are gone, the new firing transition is kept, and exactly 1,000 remain.
        expect(await count("id IN ('old-0', 'old-99')")).toBe(0);
        expect(await count("id LIKE '%:firing:%'")).toBe(1);
        expect(await count("1 = 1")).toBe(1000);
      },
      { timeout: 10_000, interval: 100 },
    );
  });

  it("keeps a pending alert's timer across eviction and fires after `for`", async () => {
    const t = await createTenant();
    const hook = `evict-${t.tenantId}`;
    await createRule(t, {
      stream: "latency",
      aggregate: "max",
      window: "1m",
      threshold: 100,
      // Long enough that "pending" is seen however slowly the machine runs, short enough to fire within the test.
      for: "8s",
      targets: [`${RECEIVER}/hook/${hook}`],
    });
    await sendJson(t.ingest, [{ name: "latency", value: 500 }]);
    // Evaluated as data arrives (coalesced over a few ms): pending, waiting out `for` (past it, it would fire).
    await vi.waitFor(
      async () => {
        const st = (await (await api("GET", "/v1/alerts/rules", t.read)).json()) as {
          rules: Array<{ state: { state: string } }>;
        };
        expect(st.rules[0].state.state).toBe("pending");
      },
      { timeout: 8_000, interval: 50 },
    );
    await abortAllDurableObjects();
    const [got] = await untilDelivered(t, "latency", async () => {
      const r = await received(hook);
      expect(r).toHaveLength(1);
      return r;
    });
    expect((await verify(t, got)).kind).toBe("firing");
  }, 60_000);
});
