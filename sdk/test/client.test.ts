import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createClient } from "../src/index.ts";
import { backoffDelay, parseRetryAfter, toBatches } from "../src/util.ts";
import { error, fakeFetch, ok } from "./helpers.ts";

const base = { endpoint: "https://collector.test/", key: "ep_ingest_k", clock: { random: () => 0 } };

beforeEach(() => {
  vi.useFakeTimers({ now: 1_800_000_000_000 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("batching", () => {
  it("sends a batch as soon as it holds maxBatchEvents, and the rest after flushIntervalMs", async () => {
    const f = fakeFetch();
    const c = createClient({ ...base, fetch: f.fetch, maxBatchEvents: 3, flushIntervalMs: 1000 });
    for (let i = 0; i < 4; i++) c.track("page.view", { value: i });
    await vi.advanceTimersByTimeAsync(0);
    expect(f.sent.map((s) => s.events.map((e) => e.value))).toEqual([[0, 1, 2]]);
    expect(f.sent[0].url).toBe("https://collector.test/v1/events");
    expect(f.sent[0].headers.authorization).toBe("Bearer ep_ingest_k");
    await vi.advanceTimersByTimeAsync(999);
    expect(f.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(f.sent.map((s) => s.events.map((e) => e.value))).toEqual([[0, 1, 2], [3]]);
  });

  it("splits by bytes as well as by count, every body within maxBatchBytes", () => {
    const events = Array.from({ length: 10 }, (_, i) => ({
      name: "n",
      id: `id${i}`,
      ts: 1,
      dims: { k: "x".repeat(200) },
    }));
    const batches = toBatches(events, 100, 1024);
    expect(batches.flat()).toEqual(events);
    expect(batches.length).toBeGreaterThan(1);
    for (const b of batches) expect(new TextEncoder().encode(JSON.stringify(b)).byteLength).toBeLessThanOrEqual(1024);
    expect(toBatches(events, 4, 1e6).map((b) => b.length)).toEqual([4, 4, 2]);
  });

  it("sends an event larger than maxBatchBytes alone rather than looping", () => {
    const big = { name: "n", id: "big", ts: 1, user: "u".repeat(2000) };
    expect(
      toBatches([{ name: "n", id: "a", ts: 1 }, big, { name: "n", id: "b", ts: 1 }], 10, 1024).map((b) =>
        b.map((e) => e.id),
      ),
    ).toEqual([["a"], ["big"], ["b"]]);
  });

  it("flush() sends everything queued and resolves with the summed receipts; close() refuses further events", async () => {
    const f = fakeFetch();
    const c = createClient({ ...base, fetch: f.fetch, maxBatchEvents: 2, flushIntervalMs: 60_000 });
    for (let i = 0; i < 5; i++) c.track("a");
    const r = await c.close();
    expect(r).toMatchObject({ accepted: 5, duplicates: 0, rejected: [], requests: 3, retries: 0 });
    expect(c.totals.accepted).toBe(5);
    expect(() => c.track("a")).toThrow(/after close/);
  });

  it("keeps at most `concurrency` requests in flight", async () => {
    let open = 0;
    let most = 0;
    const release: (() => void)[] = [];
    const f = fakeFetch(async (s) => {
      open++;
      most = Math.max(most, open);
      await new Promise<void>((r) => release.push(r));
      open--;
      return ok(s.events.length);
    });
    const c = createClient({ ...base, fetch: f.fetch, maxBatchEvents: 1, concurrency: 2 });
    for (let i = 0; i < 5; i++) c.track("a");
    const done = c.flush();
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(0);
      expect(open).toBeLessThanOrEqual(2);
      release.shift()?.();
    }
    expect((await done).accepted).toBe(5);
    expect(most).toBe(2);
  });
});

describe("ids and event fields", () => {
  it("gives every event a distinct id, keeps the caller's id, and defaults ts to track() time", async () => {
    const f = fakeFetch();
    const c = createClient({ ...base, fetch: f.fetch });
    const a = c.track("a", { value: 1, user: "u", dims: { k: "v" } });
    const b = c.track("a", { id: "mine", ts: new Date("2027-01-15T08:00:00Z") });
    await c.flush();
    const [e1, e2] = f.sent[0].events;
    expect(e1).toEqual({ name: "a", id: a, ts: 1_800_000_000_000, value: 1, user: "u", dims: { k: "v" } });
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(e2).toEqual({ name: "a", id: "mine", ts: Date.parse("2027-01-15T08:00:00Z") });
    expect(b).toBe("mine");
    const ids = new Set(Array.from({ length: 1000 }, () => c.track("x")));
    expect(ids.size).toBe(1000);
  });

  it("resends the very same events (same ids) on a retry", async () => {
    const f = fakeFetch(new TypeError("connection reset"), ok(0, 2));
    const c = createClient({ ...base, fetch: f.fetch });
    c.track("a");
    c.track("a");
    const p = c.flush();
    await vi.advanceTimersByTimeAsync(10_000);
    const r = await p;
    expect(f.sent).toHaveLength(2);
    expect(f.sent[1].events).toEqual(f.sent[0].events);
    expect(r).toMatchObject({ accepted: 0, duplicates: 2, requests: 2, retries: 1, rejected: [] });
  });
});

describe("backoff and Retry-After", () => {
  it("computes exponential delays with equal jitter, capped, never below Retry-After", () => {
    expect([0, 1, 2, 3, 10].map((a) => backoffDelay(a, 500, 8000, () => 0))).toEqual([250, 500, 1000, 2000, 4000]);
    expect([0, 1, 2, 10].map((a) => backoffDelay(a, 500, 8000, () => 0.999999))).toEqual([500, 1000, 2000, 8000]);
    expect(backoffDelay(0, 500, 8000, () => 0.5, 7000)).toBe(7000);
    expect(backoffDelay(5, 500, 8000, () => 0.5, 1000)).toBe(6000);
    expect(backoffDelay(0, 500, 8000, () => 0, undefined, 1000)).toBe(1000);
  });

  it("reads Retry-After as seconds or an HTTP date", () => {
    const now = Date.parse("2027-01-01T00:00:00Z");
    expect(parseRetryAfter("3", now)).toBe(3000);
    expect(parseRetryAfter("Fri, 01 Jan 2027 00:00:05 GMT", now)).toBe(5000);
    expect(parseRetryAfter("Thu, 31 Dec 2026 00:00:05 GMT", now)).toBe(0);
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter("soon", now)).toBeUndefined();
  });

  it("waits out a 429's Retry-After before resending", async () => {
    const f = fakeFetch(error(429, "rate_limited", { "Retry-After": "7" }), ok(1));
    const c = createClient({ ...base, fetch: f.fetch });
    c.track("a");
    const p = c.flush();
    await vi.advanceTimersByTimeAsync(6999);
    expect(f.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(f.sent).toHaveLength(2);
    expect(f.sent[1].at - f.sent[0].at).toBe(7000);
    expect(await p).toMatchObject({ accepted: 1, retries: 1 });
  });

  it("waits at least 1 s after a 429 whose Retry-After cannot be read", async () => {
    const f = fakeFetch(error(429, "rate_limited"), ok(1));
    const c = createClient({ ...base, fetch: f.fetch });
    c.track("a");
    const p = c.flush();
    await vi.advanceTimersByTimeAsync(999);
    expect(f.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect((await p).accepted).toBe(1);
  });

  it("backs off exponentially on 503 and 5xx, then reports the events rejected with the last code", async () => {
    const f = fakeFetch(error(503, "stream_unavailable", { "Retry-After": "0" }), error(500, "internal_error"));
    const c = createClient({ ...base, fetch: f.fetch, maxRetries: 3, retryBaseMs: 100 });
    const id = c.track("a");
    const p = c.flush();
    await vi.advanceTimersByTimeAsync(60_000);
    const r = await p;
    expect(f.sent.map((s) => s.at - f.sent[0].at)).toEqual([0, 50, 150, 350]);
    expect(r.requests).toBe(4);
    expect(r.rejected).toEqual([
      { code: "internal_error", message: "internal_error message", event: expect.objectContaining({ id }) },
    ]);
  });

  it("does not retry a client error (401) and rejects every event with its code", async () => {
    const f = fakeFetch(error(401, "invalid_key"));
    const c = createClient({ ...base, fetch: f.fetch });
    c.track("a");
    c.track("b");
    const r = await c.flush();
    expect(f.sent).toHaveLength(1);
    expect(r.rejected.map((x) => [x.code, x.event.name])).toEqual([
      ["invalid_key", "a"],
      ["invalid_key", "b"],
    ]);
  });
});

describe("receipts", () => {
  it("maps each rejection's index to the event it refers to", async () => {
    const f = fakeFetch(ok(2, 0, [{ index: 1, code: "invalid_value", message: "value must be a finite number" }]));
    const c = createClient({ ...base, fetch: f.fetch });
    c.track("a", { value: 1 });
    const bad = c.track("a", { value: 2e15 });
    c.track("a", { value: 3 });
    const r = await c.flush();
    expect(r.accepted).toBe(2);
    expect(r.rejected).toHaveLength(1);
    expect(r.rejected[0]).toMatchObject({ code: "invalid_value", event: { id: bad, value: 2e15 } });
  });

  it("maps a 422's details, and resends only the events reported stream_unavailable", async () => {
    const f = fakeFetch(
      error(
        422,
        "all_events_invalid",
        {},
        {
          accepted: 0,
          duplicates: 0,
          rejected: [
            { index: 0, code: "too_late", message: "old" },
            { index: 1, code: "stream_unavailable", message: "resend" },
          ],
        },
      ),
      ok(1),
    );
    const onReceipt = vi.fn();
    const c = createClient({ ...base, fetch: f.fetch, onReceipt });
    const late = c.track("a", { ts: 1 });
    const retried = c.track("b");
    const p = c.flush();
    await vi.advanceTimersByTimeAsync(1000);
    const r = await p;
    expect(f.sent[1].events.map((e) => e.id)).toEqual([retried]);
    expect(r).toMatchObject({ accepted: 1, retries: 1 });
    expect(r.rejected.map((x) => [x.code, x.event.id])).toEqual([["too_late", late]]);
    expect(onReceipt).toHaveBeenCalledTimes(1);
    expect(onReceipt.mock.calls[0][0]).toEqual(r);
  });

  it("halves a batch the collector refuses as too large (413) until it fits", async () => {
    const f = fakeFetch((s) => (s.events.length > 2 ? error(413, "too_many_events") : ok(s.events.length)));
    const c = createClient({ ...base, fetch: f.fetch, maxBatchEvents: 100 });
    for (let i = 0; i < 7; i++) c.track("a", { value: i });
    const r = await c.flush();
    expect(r.accepted).toBe(7);
    const delivered = f.sent.filter((s) => s.events.length <= 2).flatMap((s) => s.events.map((e) => e.value));
    expect(delivered.sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it("rejects a single event the collector finds too large, without looping", async () => {
    const f = fakeFetch(error(413, "body_too_large"));
    const c = createClient({ ...base, fetch: f.fetch });
    c.track("a");
    const r = await c.flush();
    expect(f.sent).toHaveLength(1);
    expect(r.rejected.map((x) => x.code)).toEqual(["body_too_large"]);
  });
});

describe("gzip", () => {
  it("gzips bodies from gzipMinBytes on, and not smaller ones", async () => {
    const f = fakeFetch();
    const c = createClient({ ...base, fetch: f.fetch, gzipMinBytes: 1024 });
    c.track("small");
    await c.flush();
    for (let i = 0; i < 50; i++) c.track("big", { dims: { page: `/products/${i}` } });
    const r = await c.flush();
    expect(f.sent[0].headers["content-encoding"]).toBeUndefined();
    expect(f.sent[1].headers["content-encoding"]).toBe("gzip");
    expect(f.sent[1].events).toHaveLength(50); // the fake fetch decompressed it
    expect(r.accepted).toBe(50);
  });
});
