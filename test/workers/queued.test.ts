/**
 * Buffered ingest (POST /v1/events?mode=queued, workers/collector/queued.ts):
 * 202 once the events are in the queue; counted once the consumer has
 * applied them, exactly once through redelivery; a message that cannot be
 * applied is retried, never dropped.
 */
import { createExecutionContext, createMessageBatch, env, getQueueResult } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import type { StreamEvent } from "../../core/event";
import { enqueue, type QueuedEvents, toMessages } from "../../workers/collector/queued";
import worker from "../../workers/index";
import { createTenant, send, stream } from "./helpers";

describe("queued ingest", () => {
  it("answers 202 with what was queued, and counts the events once the consumer has applied them", async () => {
    const t = await createTenant("queued");
    const now = Date.now();
    const events = [
      { name: "signup", id: "a", ts: now, value: 1 },
      { name: "signup", ts: now, value: 2 },
      { name: "signup", ts: now, value: 3 },
      { name: "signup", value: "oops" },
      { name: "signup", id: "b", ts: now, value: 4 },
      { name: "signup", id: "a", ts: now, value: 1 }, // a duplicate: judged when applied
    ];
    const res = await send(t.ingest, JSON.stringify(events), {}, "?mode=queued");
    expect(res.status).toBe(202);
    const body = (await res.json()) as {
      queued: number;
      rejected: Array<{ index: number; code: string }>;
      mode: string;
    };
    expect(body).toMatchObject({ queued: 5, mode: "queued", rejected: [{ index: 3, code: "invalid_value" }] });
    await vi.waitFor(
      async () => {
        const s = await stream(t.read, "signup");
        expect(s.windows["1h"].count).toBe(4);
        expect(s.windows["1h"].sum).toBe(10);
        expect(s.counters).toMatchObject({ accepted: 4, duplicates: 1, rejected: { invalid_value: 1 } });
      },
      { timeout: 15_000, interval: 100 },
    );
  });

  it("counts a redelivered message once, its rejections included", async () => {
    const t = await createTenant("queued-redelivery");
    const now = Date.now();
    const events: StreamEvent[] = Array.from({ length: 20 }, (_, i) => ({ id: `q:req-1:${i}`, ts: now, value: i }));
    const [body] = toMessages(t.tenantId, "orders", events, { invalid_value: 2 }, "req-1", now);
    let attempts = 0;
    for (const ids of [["m1", "m1-again"], ["m1-third"]]) {
      const batch = createMessageBatch<QueuedEvents>(
        "edgepulse-ingest",
        ids.map((id) => ({ id, timestamp: new Date(), attempts: ++attempts, body })),
      );
      const ctx = createExecutionContext();
      await worker.queue(batch as MessageBatch<unknown>, env, ctx);
      const result = await getQueueResult(batch, ctx);
      expect(result.explicitAcks.sort()).toEqual([...ids].sort());
      expect(result.retryMessages).toEqual([]);
    }
    const s = await stream(t.read, "orders");
    expect(s.windows["1h"].count).toBe(20);
    expect(s.windows["1h"].sum).toBe(190);
    expect(s.counters).toMatchObject({ accepted: 20, duplicates: 40, rejected: { invalid_value: 2 } });
  });

  it("acks what it applied and retries what it cannot, one stream's failure never another's", async () => {
    const t = await createTenant("queued-failure");
    const now = Date.now();
    const [good] = toMessages(t.tenantId, "clicks", [{ id: "c1", ts: now, value: 5 }], undefined, "req-2", now);
    const batch = createMessageBatch<unknown>("edgepulse-ingest", [
      { id: "good", timestamp: new Date(), attempts: 1, body: good },
      { id: "foreign", timestamp: new Date(), attempts: 1, body: { hello: "world" } },
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual(["good"]);
    expect(result.retryMessages.map((m: { msgId: string }) => m.msgId)).toEqual(["foreign"]);
    expect((await stream(t.read, "clicks")).windows["1h"].count).toBe(1);
  });

  it("reports how many messages went out when the queue refuses a later sendBatch (the rest is not acknowledged)", async () => {
    const now = Date.now();
    const events: StreamEvent[] = Array.from({ length: 5000 }, (_, i) => ({
      id: `e${i}`,
      ts: now,
      dims: { p: "x".repeat(60) },
    }));
    const messages = toMessages("t", "views", events, undefined, "req-4", now);
    expect(messages.length).toBeGreaterThan(3);
    const batches: number[] = [];
    // The queue takes the first sendBatch and refuses the next (as an outage mid-request would).
    const refusing = {
      async sendBatch(batch: unknown[]) {
        if (batches.length > 0) throw new Error("Queue send failed: 503");
        batches.push(batch.length);
      },
    } as unknown as Queue<QueuedEvents>;
    const sent = await enqueue(refusing, messages);
    expect(sent).toBe(batches[0]);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(messages.length);
  });

  it("splits a large request into messages under the queue's size limit, each carrying the rejections once", () => {
    const now = Date.now();
    const events: StreamEvent[] = Array.from({ length: 3000 }, (_, i) => ({
      id: `e${i}`,
      ts: now,
      value: i,
      dims: { page: `/products/${"x".repeat(40)}/${i}` },
    }));
    const messages = toMessages("t", "views", events, { invalid_value: 3 }, "req-3", now);
    expect(messages.length).toBeGreaterThan(1);
    for (const m of messages) expect(JSON.stringify(m).length).toBeLessThan(128_000);
    expect(messages.flatMap((m) => m.events)).toEqual(events);
    expect(messages.filter((m) => m.invalid !== undefined)).toHaveLength(1);
    expect(new Set(messages.map((m) => m.key)).size).toBe(messages.length);
  });
});
