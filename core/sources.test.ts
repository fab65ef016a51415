import { describe, expect, it } from "vitest";
import {
  BACKOFF_BASE_MS,
  backoffMs,
  compileMapping,
  eventId,
  hash64,
  Mapping,
  mapRecord,
  parseCsv,
  parsePath,
  readPath,
  redact,
  SourceCreate,
  splitSecrets,
} from "./sources.ts";

const NOW = Date.UTC(2026, 10, 22, 10, 0, 0);
const map = (m: unknown) => compileMapping(Mapping.parse(m));

describe("JSON paths", () => {
  it.each([
    ["$", []],
    ["$.data", ["data"]],
    ["$.data.items[0].id", ["data", "items", 0, "id"]],
    ["$['user-id']", ["user-id"]],
    ['$["a.b"]', ["a.b"]],
    ["$['it\\'s']", ["it's"]],
    ["$.a-b_c9", ["a-b_c9"]],
  ])("parses %s", (path, steps) => {
    expect(parsePath(path)).toEqual(steps);
  });

  it.each([
    "",
    "data",
    "$.",
    "$..a",
    "$.a[*]",
    "$[?(@.a)]",
    "$.a[",
    "$['a]",
    `$${".a".repeat(17)}`,
  ])("refuses %j", (path) => {
    expect(parsePath(path)).toBeNull();
  });

  it("reads own properties and array elements only", () => {
    const doc = { a: { b: [10, { c: "x" }] }, n: null };
    expect(readPath(doc, ["a", "b", 1, "c"])).toBe("x");
    expect(readPath(doc, ["a", "b", 5])).toBeUndefined();
    expect(readPath(doc, ["a", "b", "length"])).toBeUndefined();
    expect(readPath(doc, ["a", "toString"])).toBeUndefined();
    expect(readPath(doc, ["__proto__"])).toBeUndefined();
    expect(readPath(doc, ["n", "x"])).toBeUndefined();
    expect(readPath("text", [0])).toBeUndefined();
  });
});

describe("mapping a record to an event", () => {
  it("maps every field, with the documented coercions", () => {
    const m = map({
      name: "$.type",
      ts: "$.at",
      value: "$.amount",
      user: "$.customer.id",
      dims: { country: "$.address.country", plan: "$.plan", missing: "$.nope" },
    });
    const v = mapRecord(
      {
        type: "order.paid",
        at: "2026-11-22T09:59:00Z",
        amount: "12.50",
        customer: { id: 42 },
        address: { country: "DE" },
        plan: true,
      },
      m,
      "s:src_1:h:abc:0",
      NOW,
    );
    expect(v).toEqual({
      ok: true,
      name: "order.paid",
      event: {
        id: "s:src_1:h:abc:0",
        ts: Date.UTC(2026, 10, 22, 9, 59),
        value: 12.5,
        user: "42",
        dims: { country: "DE", plan: "true" },
      },
    });
  });

  it("takes a constant stream name, receive time without ts, seconds with ts_unit s, dates and numeric strings", () => {
    const base = { name: "orders", value: "$.v" };
    expect(mapRecord({ v: 1 }, map(base), "id", NOW)).toMatchObject({ ok: true, name: "orders", event: { ts: NOW } });
    const secs = map({ ...base, ts: "$.t", ts_unit: "s" });
    expect(mapRecord({ t: NOW / 1000 - 60 }, secs, "id", NOW)).toMatchObject({ event: { ts: NOW - 60_000 } });
    expect(mapRecord({ t: String(NOW / 1000) }, secs, "id", NOW)).toMatchObject({ event: { ts: NOW } });
    const ms = map({ ...base, ts: "$.t" });
    expect(mapRecord({ t: new Date(NOW - 5) }, ms, "id", NOW)).toMatchObject({ event: { ts: NOW - 5 } });
    expect(mapRecord({ t: String(NOW - 7) }, ms, "id", NOW)).toMatchObject({ event: { ts: NOW - 7 } });
  });

  it.each([
    [{ name: "$.type" }, {}, "invalid_name"],
    [{ name: "$.type" }, { type: "bad name!" }, "invalid_name"],
    [{ name: "s", value: "$.v" }, { v: "twelve" }, "invalid_value"],
    [{ name: "s", value: "$.v" }, { v: 1e16 }, "invalid_value"],
    [{ name: "s", ts: "$.t" }, { t: "yesterday" }, "invalid_timestamp"],
    [{ name: "s", ts: "$.t" }, { t: 1_732_240_000 }, "invalid_timestamp"],
    [{ name: "s", user: "$.u" }, { u: { id: 1 } }, "invalid_user"],
    [{ name: "s", dims: { k: "$.d" } }, { d: { nested: 1 } }, "invalid_dims"],
  ])("a bad record is a rejection with the event validator's code: %j on %j → %s", (m, record, code) => {
    expect(mapRecord(record, map(m), "id", NOW)).toMatchObject({ ok: false, code });
  });

  it("refuses mappings that are neither paths nor stream names", () => {
    expect(Mapping.safeParse({ name: "not a stream!" }).success).toBe(false);
    expect(Mapping.safeParse({ name: "s", value: "amount" }).success).toBe(false);
    expect(Mapping.safeParse({ name: "s", extra: "$.x" }).success).toBe(false);
  });
});

describe("ids", () => {
  it("are deterministic per source and position, distinct across both, within the event id limit", () => {
    expect(eventId("src_a", `h:${hash64("c1")}:0`)).toBe(eventId("src_a", `h:${hash64("c1")}:0`));
    const ids = new Set<string>();
    for (const src of ["src_a", "src_b"]) for (let i = 0; i < 500; i++) ids.add(eventId(src, `p:${hash64(String(i))}`));
    expect(ids.size).toBe(1000);
    expect(hash64("x")).toMatch(/^[0-9a-f]{16}$/);
    expect(eventId("src_x".repeat(30), "p:1").length).toBeLessThanOrEqual(128);
  });
});

describe("backoff", () => {
  it("starts at 1 s, doubles, and stops at the cap", () => {
    expect([1, 2, 3, 4, 5].map((n) => backoffMs(n, 10_000))).toEqual([1000, 2000, 4000, 8000, 10_000]);
    expect(backoffMs(80, 300_000)).toBe(300_000);
    expect(backoffMs(0, 300_000)).toBe(BACKOFF_BASE_MS);
  });
});

describe("CSV", () => {
  it("parses quoted fields with commas, quotes and line breaks, CRLF, and blank lines", () => {
    const text = 'a,b,c\r\n1,"x, y","he said ""hi"""\n\n2,"multi\nline",\n';
    const { records, consumed } = parseCsv(text, false);
    expect(records.map((r) => r.fields)).toEqual([
      ["a", "b", "c"],
      ["1", "x, y", 'he said "hi"'],
      ["2", "multi\nline", ""],
    ]);
    expect(consumed).toBe(text.length);
    expect(records[0].end).toBe(7);
  });

  it("stops before an incomplete record unless at the end", () => {
    expect(parseCsv('a,b\n1,"open\nstill', false)).toEqual({ records: [{ fields: ["a", "b"], end: 4 }], consumed: 4 });
    expect(parseCsv("a,b\n1,2", false).records.map((r) => r.fields)).toEqual([["a", "b"]]);
    expect(parseCsv("a,b\n1,2", true).records.map((r) => r.fields)).toEqual([
      ["a", "b"],
      ["1", "2"],
    ]);
    expect(parseCsv("a\r", false).records).toEqual([]);
    // A whole "\r\n" at the end of the text ends the record: only a lone "\r" may be half of one.
    expect(parseCsv("a,b\r\n1,2\r\n", false)).toEqual({
      records: [
        { fields: ["a", "b"], end: 5 },
        { fields: ["1", "2"], end: 10 },
      ],
      consumed: 10,
    });
  });

  it("marks a broken row (text after a closing quote, an unclosed quote at the end) as null", () => {
    expect(parseCsv('"x"y,z\n1,2\n', false).records.map((r) => r.fields)).toEqual([null, ["1", "2"]]);
    expect(parseCsv('1,"never closed', true).records.map((r) => r.fields)).toEqual([null]);
  });
});

describe("the create body", () => {
  const mapping = { name: "orders" };
  it("takes each kind with its defaults", () => {
    const http = SourceCreate.parse({ kind: "http", name: "api", url: "https://api.example.com/x", mapping });
    expect(http).toMatchObject({ interval_ms: 30_000, max_records: 500, timeout_ms: 10_000, records: "$" });
    const pg = SourceCreate.parse({
      kind: "postgres",
      name: "db",
      connection_string: "postgres://u:p@h/db",
      table: "public.orders",
      cursor: ["updated_at", "id"],
      mapping,
    });
    expect(pg).toMatchObject({ commit_grace_ms: 30_000 });
    expect(SourceCreate.parse({ kind: "r2", name: "drops", prefix: "orders/", mapping })).toMatchObject({ kind: "r2" });
    expect(
      SourceCreate.parse({ kind: "kafka", name: "k", url: "https://proxy:8082", topics: ["orders"], mapping }),
    ).toMatchObject({ kind: "kafka" });
  });

  it.each([
    [{ kind: "ftp", name: "x", mapping }],
    [{ kind: "http", name: "x", url: "ftp://host/x", mapping }],
    [{ kind: "http", name: "x", url: "https://h/x", mapping, interval_ms: 10 }],
    [{ kind: "http", name: "x", url: "https://h/x", mapping, auth: { header: "bad header", value: "v" } }],
    [{ kind: "postgres", name: "x", connection_string: "postgres://h/db", cursor: "id", mapping }],
    [
      {
        kind: "postgres",
        name: "x",
        connection_string: "postgres://h/db",
        table: "t",
        query: "SELECT 1",
        cursor: "id",
        mapping,
      },
    ],
    [{ kind: "postgres", name: "x", connection_string: "postgres://h/db", table: "t; drop", cursor: "id", mapping }],
    [
      {
        kind: "postgres",
        name: "x",
        connection_string: "postgres://h/db",
        query: "SELECT 1; SELECT 2",
        cursor: "id",
        mapping,
      },
    ],
    [{ kind: "r2", name: "x", prefix: "../other/", mapping }],
    [{ kind: "kafka", name: "x", url: "https://p", topics: [], mapping }],
  ])("refuses %j", (body) => {
    expect(SourceCreate.safeParse(body).success).toBe(false);
  });

  it("keeps secrets apart from what is shown", () => {
    const input = SourceCreate.parse({
      kind: "http",
      name: "api",
      url: "https://api.example.com/x",
      auth: { header: "Authorization", value: "Bearer s3cret-token" },
      mapping,
    });
    const { name, config, secrets } = splitSecrets(input);
    expect(name).toBe("api");
    expect(JSON.stringify(config)).not.toContain("s3cret");
    expect(config).toMatchObject({ auth_header: "Authorization" });
    expect(secrets).toEqual({ auth: "Bearer s3cret-token" });
  });

  it("redacts secrets, and a connection string's password, from messages", () => {
    const secrets = { connection_string: "postgres://app:pa%24%24word@db.example.com/x", auth: "Bearer tok-123" };
    expect(redact("failed for postgres://app:pa%24%24word@db.example.com/x with Bearer tok-123", secrets)).toBe(
      "failed for *** with ***",
    );
    expect(redact("password pa$$word was refused", secrets)).toBe("password *** was refused");
  });
});
