import { describe, expect, it } from "vitest";
import { createTenant, expectError, gzip, send, sendJson, stream } from "./helpers";

describe("POST /v1/events", () => {
  it("accepts a JSON object, an array, NDJSON, text/plain beacons and gzip, and counts them all", async () => {
    const t = await createTenant();
    const now = Date.now();
    const receipts = [
      await sendJson(t.ingest, { name: "page.view", value: 10, user: "u1" }),
      await sendJson(t.ingest, [
        { name: "page.view", value: 20, user: "u2", ts: now },
        { name: "page.view", value: 30, user: "u1", ts: new Date(now).toISOString() },
      ]),
      await send(t.ingest, '{"name":"page.view","value":40}\n{"name":"page.view","value":50}\n', {
        "content-type": "application/x-ndjson",
      }),
      await send(
        undefined,
        JSON.stringify({ name: "page.view", value: 60 }),
        { "content-type": "text/plain;charset=UTF-8" },
        `?key=${t.ingest}`,
      ),
      await send(t.ingest, await gzip(JSON.stringify([{ name: "page.view", value: 70 }])), {
        "content-encoding": "gzip",
      }),
    ];
    const accepted = [];
    for (const r of receipts) {
      expect(r.status).toBe(200);
      accepted.push(((await r.json()) as { accepted: number }).accepted);
    }
    expect(accepted).toEqual([1, 2, 2, 1, 1]);
    const s = await stream(t.read, "page.view", "1m");
    expect(s.windows["1m"]).toMatchObject({ count: 7, sum: 280, min: 10, max: 70, distinct_users: 2 });
    expect(s.counters).toMatchObject({ accepted: 7, duplicates: 0 });
  });

  it("stores the good events of a mixed batch and rejects each bad one with its index and code", async () => {
    const t = await createTenant();
    const res = await sendJson(t.ingest, [
      { name: "checkout", value: 100 },
      { name: "checkout", value: "oops" },
      { name: "bad name!" },
      "not an object",
      { name: "checkout", value: 200, ts: Date.now() - 2 * 3_600_000 },
      { name: "checkout", value: 300, ts: Date.now() + 3_600_000 },
      { name: "checkout", valeu: 1 },
      { name: "refund", value: 5 },
    ]);
    expect(res.status).toBe(200);
    const receipt = (await res.json()) as {
      accepted: number;
      duplicates: number;
      rejected: Array<{ index: number; code: string; message: string }>;
    };
    expect(receipt.accepted).toBe(2);
    expect(receipt.duplicates).toBe(0);
    expect(receipt.rejected.map((r) => [r.index, r.code])).toEqual([
      [1, "invalid_value"],
      [2, "invalid_name"],
      [3, "not_an_object"],
      [4, "too_late"],
      [5, "too_far_in_future"],
      [6, "unknown_field"],
    ]);
    for (const r of receipt.rejected) expect(r.message.length).toBeGreaterThan(10);
    // Time rejections state the deployment's limits.
    expect(receipt.rejected[3].message).toContain("at most 1 h before the server's clock (ALLOWED_LATENESS_MS)");
    expect(receipt.rejected[4].message).toContain("at most 5 min ahead of the server's clock (MAX_FUTURE_SKEW_MS)");
    const s = await stream(t.read, "checkout");
    expect(s.windows["1h"].count).toBe(1);
    expect(s.windows["1h"].sum).toBe(100);
    expect(s.counters).toMatchObject({
      accepted: 1,
      late: 1,
      future: 1,
      rejected: { invalid_value: 1, too_late: 1, too_far_in_future: 1, unknown_field: 1 },
    });
    expect((await stream(t.read, "refund")).windows["1m"].count).toBe(1);
  });

  it("rejects one bad NDJSON line and keeps the rest", async () => {
    const t = await createTenant();
    const res = await send(t.ingest, '{"name":"a"}\n{not json\n{"name":"a"}', {
      "content-type": "application/x-ndjson",
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ accepted: 2, rejected: [{ index: 1, code: "malformed_json" }] });
  });

  it("counts an event id once, within a batch and across requests", async () => {
    const t = await createTenant();
    const first = await sendJson(t.ingest, [
      { id: "evt_1", name: "signup", value: 1 },
      { id: "evt_1", name: "signup", value: 1 },
      { id: "evt_2", name: "signup", value: 2 },
    ]);
    expect(await first.json()).toEqual({ accepted: 2, duplicates: 1, rejected: [] });
    // A client retry of the whole batch, plus one new event.
    const retry = await sendJson(t.ingest, [
      { id: "evt_1", name: "signup", value: 1 },
      { id: "evt_2", name: "signup", value: 2 },
      { id: "evt_3", name: "signup", value: 3 },
    ]);
    expect(retry.status).toBe(200);
    expect(await retry.json()).toEqual({ accepted: 1, duplicates: 2, rejected: [] });
    // A retry that is all duplicates is still a success.
    const again = await sendJson(t.ingest, [{ id: "evt_3", name: "signup", value: 3 }]);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ accepted: 0, duplicates: 1, rejected: [] });
    const s = await stream(t.read, "signup");
    expect(s.windows["1m"]).toMatchObject({ count: 3, sum: 6 });
    expect(s.counters).toMatchObject({ accepted: 3, duplicates: 4 });
  });

  it("gives each of many concurrent requests to one stream its own exact receipt (group commit)", async () => {
    const t = await createTenant();
    // 20 requests in flight at once, ids overlapping between neighbours: 10 ids each, 5 shared with the next.
    const requests = Array.from({ length: 20 }, (_, r) =>
      Array.from({ length: 10 }, (_, k) => ({ id: `c${r * 5 + k}`, name: "concurrent", value: r * 5 + k })),
    );
    const receipts = (await Promise.all(
      requests.map(async (events) => (await sendJson(t.ingest, events)).json()),
    )) as Array<{ accepted: number; duplicates: number; rejected: unknown[] }>;
    const distinct = new Set(requests.flat().map((e) => e.id)).size;
    expect(distinct).toBe(105);
    for (const r of receipts) expect(r.accepted + r.duplicates).toBe(10);
    expect(receipts.reduce((a, r) => a + r.accepted, 0)).toBe(distinct);
    expect(receipts.reduce((a, r) => a + r.duplicates, 0)).toBe(200 - distinct);
    const s = await stream(t.read, "concurrent", "1m");
    expect(s.windows["1m"]).toMatchObject({ count: distinct, sum: (104 * 105) / 2 });
    expect(s.counters).toMatchObject({ accepted: distinct, duplicates: 200 - distinct });
  });

  it("routes a batch across many streams and acknowledges every one", async () => {
    const t = await createTenant();
    const events = Array.from({ length: 40 }, (_, i) => ({ name: `s${i % 20}`, value: i }));
    const res = await sendJson(t.ingest, events);
    expect(await res.json()).toEqual({ accepted: 40, duplicates: 0, rejected: [] });
    for (const i of [0, 7, 19]) {
      const s = await stream(t.read, `s${i}`, "1m");
      expect(s.windows["1m"]).toMatchObject({ count: 2, sum: i + (i + 20) });
    }
  });
});

describe("request errors", () => {
  it.each([
    ["malformed JSON", "{oops", {}, 400, "malformed_body"],
    ["a JSON scalar", "42", {}, 400, "malformed_body"],
    ["an empty array", "[]", {}, 400, "empty_batch"],
    ["a form body", "name=a", { "content-type": "application/x-www-form-urlencoded" }, 415, "unsupported_content_type"],
    ["an unknown encoding", '{"name":"a"}', { "content-encoding": "br" }, 415, "unsupported_content_encoding"],
  ] as const)("answers %s with %i %s", async (_what, body, headers, status, code) => {
    const t = await createTenant();
    await expectError(await send(t.ingest, body, headers), status, code);
  });

  it("refuses invalid UTF-8", async () => {
    const t = await createTenant();
    await expectError(await send(t.ingest, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), 400, "malformed_body");
  });

  it("refuses a body over the limit, declared or streamed, and a gzip bomb", async () => {
    const t = await createTenant();
    const big = JSON.stringify([{ name: "a", dims: { pad: "x".repeat(70_000) } }]);
    await expectError(await send(t.ingest, big), 413, "body_too_large");
    // Chunked, without a Content-Length: the limit is enforced while streaming.
    const chunked = new Blob([big]).stream();
    await expectError(await send(t.ingest, chunked as unknown as BodyInit), 413, "body_too_large");
    // 10 MB of zeros compresses to ~10 KB.
    const bomb = await gzip(`"${"0".repeat(10_000_000)}"`);
    expect(bomb.byteLength).toBeLessThan(65_536);
    const err = await expectError(await send(t.ingest, bomb, { "content-encoding": "gzip" }), 413, "body_too_large");
    expect(err.message).toContain("decompressed");
  });

  it("refuses a corrupt gzip body", async () => {
    const t = await createTenant();
    await expectError(
      await send(t.ingest, new Uint8Array([1, 2, 3, 4]), { "content-encoding": "gzip" }),
      400,
      "malformed_body",
    );
  });

  it("refuses more events than the batch limit", async () => {
    const t = await createTenant();
    const events = Array.from({ length: 51 }, () => ({ name: "a" }));
    const err = await expectError(await sendJson(t.ingest, events), 413, "too_many_events");
    expect(err.message).toContain("51");
  });

  it("answers a batch with no valid event with 422 all_events_invalid and the receipt", async () => {
    const t = await createTenant();
    const err = await expectError(
      await sendJson(t.ingest, [{ name: "a", value: "x" }, { nope: 1 }]),
      422,
      "all_events_invalid",
    );
    expect(err.details).toMatchObject({
      accepted: 0,
      rejected: [
        { index: 0, code: "invalid_value" },
        { index: 1, code: "invalid_name" },
      ],
    });
  });

  it("answers CORS preflights for browser ingest", async () => {
    const { SELF } = await import("cloudflare:test");
    const res = await SELF.fetch("https://edgepulse.test/v1/events", {
      method: "OPTIONS",
      headers: {
        origin: "https://shop.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
  });
});
