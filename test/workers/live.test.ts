import { SELF } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import {
  type DirectoryMessage,
  LIVE_COALESCE_MS,
  parseServerMessage,
  type ServerMessage,
  type StreamUpdateMessage,
} from "../../core/live";
import { BASE, createTenant, expectError, sendJson } from "./helpers";

/** A connected test socket that records every (validated) message and lets a test await the next match. */
class Inbox {
  readonly messages: ServerMessage[] = [];
  pongs = 0;
  #waiters: Array<{ pred: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }> = [];

  constructor(readonly ws: WebSocket) {
    ws.addEventListener("message", (e) => {
      if (e.data === "pong") {
        this.pongs++;
        return;
      }
      const m = parseServerMessage(String(e.data));
      if (m === null) throw new Error(`invalid message: ${String(e.data).slice(0, 200)}`);
      this.messages.push(m);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred(m)) return true;
        w.resolve(m);
        return false;
      });
    });
  }

  next<T extends ServerMessage>(pred: (m: ServerMessage) => boolean): Promise<T> {
    const seen = this.messages.find(pred);
    if (seen) return Promise.resolve(seen as T);
    return new Promise((resolve) => this.#waiters.push({ pred, resolve: resolve as (m: ServerMessage) => void }));
  }
}

async function connect(path: string, key?: string): Promise<Response> {
  return SELF.fetch(`${BASE}${path}`, {
    headers: {
      upgrade: "websocket",
      ...(key ? { "sec-websocket-protocol": `edgepulse.v1, bearer.${key}` } : {}),
    },
  });
}

async function open(path: string, key: string): Promise<Inbox> {
  const res = await connect(path, key);
  expect(res.status).toBe(101);
  expect(res.headers.get("sec-websocket-protocol")).toBe("edgepulse.v1");
  const ws = res.webSocket as WebSocket;
  ws.accept();
  return new Inbox(ws);
}

const countIs = (n: number) => (m: ServerMessage) => m.type === "update" && m.windows["1m"].count === n;

describe("stream sockets", () => {
  it("refuse missing, invalid and wrong-scope keys, and plain GETs", async () => {
    const t = await createTenant();
    await expectError(await connect("/v1/streams/a/live"), 401, "missing_key");
    await expectError(await connect("/v1/streams/a/live", "ep_read_nope"), 401, "invalid_key");
    await expectError(await connect("/v1/streams/a/live", t.ingest), 403, "insufficient_scope");
    await expectError(await SELF.fetch(`${BASE}/v1/streams/a/live`), 426, "upgrade_required");
    await expectError(await connect("/v1/streams/bad name/live", t.read), 400, "invalid_stream_name");
  });

  it("send a snapshot first, then updates as events are applied", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "checkout", value: 100, user: "a" }]);
    const inbox = await open("/v1/streams/checkout/live", t.read);
    const snap = await inbox.next((m) => m.type === "snapshot");
    expect(snap).toMatchObject({ type: "snapshot", stream: "checkout", windows: { "1m": { count: 1, sum: 100 } } });
    if (snap.type !== "snapshot") throw new Error("unreachable");
    expect(snap.seconds.reduce((a, p) => a + p.count, 0)).toBe(1);

    await sendJson(t.ingest, [
      { name: "checkout", value: 200, user: "b" },
      { name: "checkout", value: 300, user: "b" },
    ]);
    const update = await inbox.next<StreamUpdateMessage>(countIs(3));
    expect(update).toMatchObject({ applied: 2, windows: { "1m": { sum: 600, distinct_users: 2 } } });
    expect(update.counters.accepted).toBe(3);
    inbox.ws.close();
  });

  it("coalesce a burst: far fewer messages than batches, and the last one is exact", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "burst" }]);
    const inbox = await open("/v1/streams/burst/live", t.read);
    await inbox.next((m) => m.type === "snapshot");
    await Promise.all(Array.from({ length: 40 }, () => sendJson(t.ingest, [{ name: "burst" }, { name: "burst" }])));
    await inbox.next(countIs(81));
    const updates = inbox.messages.filter((m) => m.type === "update") as StreamUpdateMessage[];
    // Never one message per batch: by the actor's own clock, consecutive updates are at least one
    // coalescing interval apart, and together they account for every event exactly once.
    expect(updates.length).toBeLessThan(40);
    for (let i = 1; i < updates.length; i++) {
      expect(updates[i].at - updates[i - 1].at).toBeGreaterThanOrEqual(LIVE_COALESCE_MS);
    }
    expect(updates.reduce((a, u) => a + u.applied, 0)).toBe(80);
    inbox.ws.close();
  });

  it("serve many sockets on one actor, each getting every update", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "wall" }]);
    const inboxes = await Promise.all(Array.from({ length: 60 }, () => open("/v1/streams/wall/live", t.read)));
    await Promise.all(inboxes.map((i) => i.next((m) => m.type === "snapshot")));
    await sendJson(t.ingest, [{ name: "wall" }, { name: "wall" }]);
    const got = await Promise.all(inboxes.map((i) => i.next<StreamUpdateMessage>(countIs(3))));
    expect(got).toHaveLength(60);
    for (const i of inboxes) i.ws.close();
  });

  it("never show another tenant's events: a key reaches only its own tenant's stream of that name", async () => {
    const a = await createTenant("a");
    const b = await createTenant("b");
    const bInbox = await open("/v1/streams/orders/live", b.read);
    await bInbox.next((m) => m.type === "snapshot");
    await sendJson(
      a.ingest,
      Array.from({ length: 10 }, () => ({ name: "orders", value: 1 })),
    );
    await sendJson(b.ingest, [{ name: "orders", value: 7 }]);
    const update = await bInbox.next<StreamUpdateMessage>((m) => m.type === "update");
    expect(update.windows["1m"]).toMatchObject({ count: 1, sum: 7 });
    expect(bInbox.messages.every((m) => m.type !== "update" || m.windows["1m"].count <= 1)).toBe(true);
    bInbox.ws.close();
  });
});

describe("socket protocol", () => {
  it("answers the heartbeat, and a typed error for anything else a client sends", async () => {
    const t = await createTenant();
    const inbox = await open("/v1/streams/hb/live", t.read);
    await inbox.next((m) => m.type === "snapshot");
    inbox.ws.send("hello");
    const err = await inbox.next((m) => m.type === "error");
    expect(err).toMatchObject({ code: "unexpected_message" });
    inbox.ws.send("ping");
    await vi.waitFor(() => expect(inbox.pongs).toBe(1), { timeout: 10_000, interval: 100 });
    inbox.ws.close();
  });
});

describe("tenant overview socket", () => {
  it("sends the stream directory, then the entries that changed", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "alpha", value: 10 }]);
    const inbox = await open("/v1/live", t.read);
    // The first actor-to-hub update lands within about a second.
    const dir = await inbox.next<DirectoryMessage>(
      (m) => (m.type === "directory" || m.type === "streams") && m.streams.some((s) => s.name === "alpha"),
    );
    expect(dir.streams.find((s) => s.name === "alpha")).toMatchObject({ count: 1, mean: 10 });
    await sendJson(t.ingest, [
      { name: "beta", value: 5 },
      { name: "beta", value: "bad" },
    ]);
    const changed = await inbox.next<DirectoryMessage>(
      (m) => m.type === "streams" && m.streams.some((s) => s.name === "beta"),
    );
    expect(changed.streams.find((s) => s.name === "beta")).toMatchObject({ count: 1, rejected: 1 });
    inbox.ws.close();
  });

  it("refuses keys without read scope", async () => {
    const t = await createTenant();
    await expectError(await connect("/v1/live", t.ingest), 403, "insufficient_scope");
  });
});
