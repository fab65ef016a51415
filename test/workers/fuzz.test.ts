/**
 * Hostile input, generated: every response is a 2xx/4xx with the stable error
 * shape, nothing throws, and afterwards the actors hold exactly the events
 * that receipts acknowledged.
 */
import { SELF } from "cloudflare:test";
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { ADMIN_TOKEN, BASE, createTenant, gzip } from "./helpers";

const RUNS = 250;

const name = fc.oneof(
  fc.constantFrom("fz.a", "fz.b", "fz.c"),
  fc.string({ maxLength: 140 }),
  fc.constantFrom("__proto__", "constructor", "a/b", "", " ", "x".repeat(129), "é", "../etc"),
);
const value = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.constantFrom(null, true, "12", [], {}, 1e308, -0),
  fc.string({ maxLength: 20 }),
);
const ts = fc.oneof(
  fc.constant(undefined),
  fc.integer({ min: -1e15, max: 1e15 }),
  fc.date({ min: new Date(0), max: new Date(8.64e15 - 1), noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom("2026-02-30T00:00:00Z", "now", "", "1732240000", "2026-11-22T10:00:00", null),
  fc.constant(Date.now()),
);
const dims = fc.oneof(
  fc.constant(undefined),
  fc.dictionary(fc.string({ maxLength: 70 }), fc.oneof(fc.string({ maxLength: 300 }), fc.integer()), { maxKeys: 20 }),
  fc.constantFrom(null, [], "x", JSON.parse('{"__proto__":{"polluted":1}}')),
);
const event = fc.record(
  {
    name,
    value,
    ts,
    dims,
    user: fc.oneof(fc.string({ maxLength: 300 }), fc.integer()),
    id: fc.string({ maxLength: 140 }),
    extra: fc.anything(),
  },
  { requiredKeys: [] },
);

interface FuzzRequest {
  body: string | Uint8Array<ArrayBuffer>;
  type: string;
  encoding?: string;
}

/** A request body and its headers, from well-formed to hostile. */
const request: fc.Arbitrary<FuzzRequest> = fc.oneof<fc.Arbitrary<FuzzRequest>[]>(
  fc.array(event, { maxLength: 60 }).map((evs) => ({ body: JSON.stringify(evs), type: "application/json" })),
  event.map((e) => ({ body: JSON.stringify(e), type: "application/json" })),
  fc
    .array(event, { maxLength: 20 })
    .map((evs) => ({ body: evs.map((e) => JSON.stringify(e)).join("\n"), type: "application/x-ndjson" })),
  fc
    .array(
      fc.oneof(
        event.map((e) => JSON.stringify(e)),
        fc.string({ maxLength: 50 }),
      ),
      { maxLength: 20 },
    )
    .map((lines) => ({
      body: lines.join("\n"),
      type: "text/plain;charset=UTF-8",
    })),
  fc.jsonValue().map((v) => ({ body: JSON.stringify(v), type: "application/json" })),
  fc.string({ maxLength: 300 }).map((s) => ({ body: s, type: "application/json" })),
  fc.uint8Array({ maxLength: 400 }).map((b) => ({ body: new Uint8Array(b), type: "application/json" })),
  fc
    .integer({ min: 4, max: 2000 })
    .map((d) => ({ body: `${"[".repeat(d)}${"]".repeat(d)}`, type: "application/json" })),
  fc
    .constantFrom("text/html", "multipart/form-data; boundary=x", "", "application/json; charset=utf-16")
    .map((type) => ({
      body: '[{"name":"fz.a"}]',
      type,
    })),
  fc
    .uint8Array({ maxLength: 200 })
    .map((b) => ({ body: new Uint8Array(b), type: "application/json", encoding: "gzip" })),
  fc
    .constantFrom("br", "deflate", "gzip, gzip", "identity")
    .map((encoding) => ({ body: '[{"name":"fz.b"}]', type: "application/json", encoding })),
);

const readPath = fc.oneof(
  fc.string({ maxLength: 40 }).map((s) => `/v1/streams/${encodeURIComponent(s)}`),
  fc
    .tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }))
    .map(
      ([w, l]) =>
        `/v1/streams?window=${encodeURIComponent(w)}&limit=${encodeURIComponent(l)}&cursor=${encodeURIComponent(w)}`,
    ),
  fc
    .tuple(fc.string({ maxLength: 12 }), fc.string({ maxLength: 30 }), fc.string({ maxLength: 30 }))
    .map(
      ([step, from, to]) =>
        `/v1/streams/fz.a/history?step=${encodeURIComponent(step)}&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`,
    ),
  fc.string({ maxLength: 30 }).map((s) => `/v1/alerts/rules/${encodeURIComponent(s)}`),
  fc.constantFrom("/v1/streams/%00", "/v1/streams/..%2F..%2Fkeys", "/v1//streams", "/v1/keys?scope[]=admin"),
);

async function expectStableShape(res: Response) {
  expect(res.status, `status ${res.status}`).toBeLessThan(500);
  const text = await res.text();
  if (res.status >= 400) {
    const body = JSON.parse(text) as { error: { code: string; message: string } };
    expect(typeof body.error.code).toBe("string");
    expect(body.error.message.length).toBeGreaterThan(5);
  }
  return text;
}

describe("fuzz: hostile bodies and queries", () => {
  it(`answers ${RUNS} generated requests with 2xx/4xx and stable errors, and counts exactly what it acknowledged`, async () => {
    const t = await createTenant("fuzz");
    await SELF.fetch(`${BASE}/v1/admin/tenants/${t.tenantId}/limits`, {
      method: "PUT",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ ingest_per_sec: 100_000, read_per_sec: 100_000 }),
    });
    let acknowledged = 0;
    let ran = 0;
    await fc.assert(
      fc.asyncProperty(request, readPath, async (req, path) => {
        ran++;
        const body = req.encoding === "gzip" && typeof req.body === "string" ? await gzip(req.body) : req.body;
        const res = await SELF.fetch(`${BASE}/v1/events`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${t.ingest}`,
            ...(req.type ? { "content-type": req.type } : {}),
            ...(req.encoding ? { "content-encoding": req.encoding } : {}),
          },
          body,
        });
        const text = await expectStableShape(res);
        if (res.status === 200) {
          const receipt = JSON.parse(text) as {
            accepted: number;
            duplicates: number;
            rejected: Array<{ code: string }>;
          };
          expect(receipt.accepted).toBeGreaterThanOrEqual(0);
          acknowledged += receipt.accepted;
        }
        await expectStableShape(await SELF.fetch(`${BASE}${path}`, { headers: { authorization: `Bearer ${t.read}` } }));
      }),
      { numRuns: RUNS, seed: 20261122 },
    );
    expect(ran).toBe(RUNS);
    // Nothing leaked onto prototypes.
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // The actors' totals (as the hub lists them, once every actor has reported) equal what the receipts acknowledged.
    expect(acknowledged).toBeGreaterThan(0);
    await vi.waitFor(
      async () => {
        let counted = 0;
        let cursor = "";
        for (;;) {
          const page = (await (
            await SELF.fetch(`${BASE}/v1/streams?limit=1000&window=1h&cursor=${encodeURIComponent(cursor)}`, {
              headers: { authorization: `Bearer ${t.read}` },
            })
          ).json()) as { streams: Array<{ counters: { accepted: number } }>; next_cursor: string | null };
          for (const s of page.streams) counted += s.counters.accepted;
          if (!page.next_cursor) break;
          cursor = page.next_cursor;
        }
        expect(counted).toBe(acknowledged);
      },
      { timeout: 20_000, interval: 200 },
    );
  }, 120_000);
});
