import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createClient } from "../src/browser.ts";
import type { WireEvent } from "../src/types.ts";
import { error, fakeFetch, memoryStorage, ok } from "./helpers.ts";

let online = true;
const base = {
  endpoint: "https://collector.test",
  key: "ep_ingest_k",
  clock: { random: () => 0 },
  listen: false,
  isOnline: () => online,
};
const stored = (s: ReturnType<typeof memoryStorage>): WireEvent[] => JSON.parse(s.map.get("edgepulse.queue") ?? "[]");

beforeEach(() => {
  online = true;
  vi.useFakeTimers({ now: 1_800_000_000_000 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("offline queue", () => {
  it("keeps events tracked offline in storage, bounded (oldest dropped, counted), and sends them once online", async () => {
    const storage = memoryStorage();
    const f = fakeFetch();
    online = false;
    const c = createClient({ ...base, fetch: f.fetch, storage, maxOfflineEvents: 3 });
    const ids = Array.from({ length: 5 }, (_, i) => c.track("a", { value: i }));
    const r = await c.flush();
    expect(f.sent).toHaveLength(0);
    expect(c.totals.deferred).toBe(5);
    expect(r.requests).toBe(0);
    expect(stored(storage).map((e) => e.id)).toEqual(ids.slice(2));
    expect(c.dropped).toBe(2);
    expect(storage.map.get("edgepulse.queue.dropped")).toBe("2");

    online = true;
    const sent = await c.resend();
    expect(sent.accepted).toBe(3);
    expect(f.sent.map((s) => s.events.map((e) => e.id))).toEqual([ids.slice(2)]);
    expect(storage.map.has("edgepulse.queue")).toBe(false);
    // A second resend has nothing left to send.
    await c.resend();
    expect(f.sent).toHaveLength(1);
  });

  it("defers a batch whose request fails once the browser is offline, without burning retries", async () => {
    const storage = memoryStorage();
    const f = fakeFetch(() => {
      online = false;
      return new TypeError("Failed to fetch");
    });
    const c = createClient({ ...base, fetch: f.fetch, storage });
    const id = c.track("a");
    const r = await c.flush();
    expect(f.sent).toHaveLength(1);
    expect(r).toMatchObject({ deferred: 1, rejected: [] });
    expect(stored(storage).map((e) => e.id)).toEqual([id]);
  });

  it("keeps events that ran out of retries (online) and removes them only when a resend settles them", async () => {
    const storage = memoryStorage();
    const f = fakeFetch(error(503, "stream_unavailable"), error(503, "stream_unavailable"), ok(1));
    const c = createClient({ ...base, fetch: f.fetch, storage, maxRetries: 1 });
    const id = c.track("a");
    const p = c.flush();
    await vi.advanceTimersByTimeAsync(1000);
    expect((await p).deferred).toBe(1);
    expect(stored(storage).map((e) => e.id)).toEqual([id]);
    const r = await c.resend();
    expect(r.accepted).toBe(1);
    expect(f.sent.map((s) => s.events[0].id)).toEqual([id, id, id]);
    expect(storage.map.has("edgepulse.queue")).toBe(false);
  });

  it("a new client sends what an earlier page left in storage, and the dropped count survives", async () => {
    const storage = memoryStorage();
    storage.setItem("edgepulse.queue", JSON.stringify([{ name: "a", id: "left-over", ts: 1_800_000_000_000 }]));
    storage.setItem("edgepulse.queue.dropped", "4");
    const f = fakeFetch();
    const c = createClient({ ...base, fetch: f.fetch, storage });
    expect(c.dropped).toBe(4);
    await c.flush();
    expect(f.sent.map((s) => s.events.map((e) => e.id))).toEqual([["left-over"]]);
    expect(storage.map.has("edgepulse.queue")).toBe(false);
  });

  it("when storage is full, keeps the newer half and counts the rest as dropped", async () => {
    const storage = memoryStorage();
    const setItem = storage.setItem;
    storage.setItem = (k, v) => {
      if (k === "edgepulse.queue" && JSON.parse(v).length > 4) throw new DOMException("full", "QuotaExceededError");
      setItem(k, v);
    };
    online = false;
    const c = createClient({ ...base, fetch: fakeFetch().fetch, storage });
    const ids = Array.from({ length: 6 }, () => c.track("a"));
    await c.flush();
    expect(stored(storage).map((e) => e.id)).toEqual(ids.slice(3));
    expect(c.dropped).toBe(3);
  });

  it("writes events still in flight to storage on page hide, and clears them when their delivery settles", async () => {
    const storage = memoryStorage();
    let answer: (r: Response) => void = () => {};
    const f = fakeFetch(
      () =>
        new Promise<Response>((res) => {
          answer = res;
        }),
    );
    const c = createClient({ ...base, fetch: f.fetch, storage });
    const id = c.track("a");
    const p = c.flush();
    await vi.advanceTimersByTimeAsync(0);
    expect(f.sent).toHaveLength(1);
    c.hide();
    expect(stored(storage).map((e) => e.id)).toEqual([id]);
    answer(ok(1));
    await p;
    expect(storage.map.has("edgepulse.queue")).toBe(false);
  });
});

describe("page hide", () => {
  it("beacons the queue as text/plain NDJSON with ?key=, in chunks within the beacon limit", async () => {
    const beacons: { url: string; data: Blob; body?: string }[] = [];
    const sendBeacon = (url: string, data: Blob) => beacons.push({ url, data }) > 0;
    vi.stubGlobal("navigator", { sendBeacon, onLine: true });
    try {
      const f = fakeFetch();
      const c = createClient({ ...base, fetch: f.fetch, storage: memoryStorage(), maxBatchEvents: 1000 });
      const ids = Array.from({ length: 400 }, (_, i) =>
        c.track("page.view", { dims: { path: `/p/${i}`.padEnd(200, "x") } }),
      );
      c.hide();
      c.hide(); // pagehide after visibilitychange: nothing left to send
      expect(f.sent).toHaveLength(0);
      expect(beacons.length).toBeGreaterThan(1);
      const sent: string[] = [];
      for (const b of beacons) {
        expect(b.url).toBe("https://collector.test/v1/events?key=ep_ingest_k");
        expect(b.data.type).toBe("text/plain");
        expect(b.data.size).toBeLessThanOrEqual(60_000);
        for (const line of (await b.data.text()).split("\n")) sent.push(JSON.parse(line).id);
      }
      expect(sent).toEqual(ids);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it("keeps in storage what the browser refused to beacon", () => {
    vi.stubGlobal("navigator", { sendBeacon: () => false, onLine: true });
    try {
      const storage = memoryStorage();
      const c = createClient({ ...base, fetch: fakeFetch().fetch, storage });
      const id = c.track("a");
      c.hide();
      expect(stored(storage).map((e) => e.id)).toEqual([id]);
    } finally {
      vi.unstubAllGlobals();
    }
  });
});
