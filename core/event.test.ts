import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, loadConfig } from "./config.ts";
import { EVENT_ERRORS, eventErrorMessage } from "./errors.ts";
import {
  admitTime,
  bodyFormat,
  decodeBody,
  isStreamName,
  MAX_ABS_VALUE,
  parseTimestamp,
  validateEvent,
} from "./event.ts";

const NOW = Date.UTC(2026, 10, 22, 10, 0, 0);

describe("validateEvent", () => {
  it("accepts the full schema and defaults ts to receive time", () => {
    expect(validateEvent({ name: "checkout.completed" }, NOW)).toEqual({
      ok: true,
      name: "checkout.completed",
      event: { ts: NOW },
    });
    const full = validateEvent(
      {
        id: "evt_1",
        name: "a:b-c_d.e",
        ts: "2026-11-22T09:59:00.123Z",
        value: -1.5,
        user: "u_1",
        dims: { country: "DE" },
      },
      NOW,
    );
    expect(full).toEqual({
      ok: true,
      name: "a:b-c_d.e",
      event: { id: "evt_1", ts: NOW - 59_877, value: -1.5, user: "u_1", dims: { country: "DE" } },
    });
  });

  it.each([
    [null, "not_an_object"],
    [[{ name: "a" }], "not_an_object"],
    ["name", "not_an_object"],
    [{}, "invalid_name"],
    [{ name: "" }, "invalid_name"],
    [{ name: "has space" }, "invalid_name"],
    [{ name: "x".repeat(129) }, "invalid_name"],
    [{ name: 5 }, "invalid_name"],
    [{ name: "a", valeu: 1 }, "unknown_field"],
    [{ name: "a", __proto__x: 1 }, "unknown_field"],
    [{ name: "a", id: "" }, "invalid_id"],
    [{ name: "a", id: 7 }, "invalid_id"],
    [{ name: "a", id: "x".repeat(129) }, "invalid_id"],
    [{ name: "a", ts: 1732240000 }, "invalid_timestamp"],
    [{ name: "a", ts: "yesterday" }, "invalid_timestamp"],
    [{ name: "a", ts: "2026-11-22 10:00:00" }, "invalid_timestamp"],
    [{ name: "a", ts: "2026-11-22T10:00:00" }, "invalid_timestamp"],
    [{ name: "a", ts: true }, "invalid_timestamp"],
    [{ name: "a", value: "12" }, "invalid_value"],
    [{ name: "a", value: null }, "invalid_value"],
    [{ name: "a", user: "" }, "invalid_user"],
    [{ name: "a", user: 12 }, "invalid_user"],
    [{ name: "a", dims: [] }, "invalid_dims"],
    [{ name: "a", dims: { n: 1 } }, "invalid_dims"],
    [{ name: "a", dims: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"])) }, "invalid_dims"],
  ])("rejects %j with %s", (raw, code) => {
    const v = validateEvent(raw, NOW);
    expect(v.ok).toBe(false);
    if (!v.ok) {
      expect(v.code).toBe(code);
      expect(v.message.length).toBeGreaterThan(10);
    }
  });

  it("keeps the stream name on a rejection once the name is valid, so the stream can count it", () => {
    const v = validateEvent({ name: "pay", value: "x" }, NOW);
    expect(v).toMatchObject({ ok: false, name: "pay", code: "invalid_value" });
  });

  it("does not let __proto__ in dims reach the prototype", () => {
    const raw = JSON.parse('{"name":"a","dims":{"__proto__":{"polluted":"yes"}}}');
    const v = validateEvent(raw, NOW);
    expect(v.ok).toBe(false);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe("timestamps and admission", () => {
  it("parses epoch ms and zoned ISO strings only", () => {
    expect(parseTimestamp(NOW)).toBe(NOW);
    expect(parseTimestamp(NOW + 0.7)).toBe(NOW);
    expect(parseTimestamp("2026-11-22T11:00:00+01:00")).toBe(NOW);
    expect(parseTimestamp("2026-11-22T10:00Z")).toBe(NOW);
    expect(parseTimestamp(Number.NaN)).toBeUndefined();
    // Regression: Date.parse rolled impossible dates over (Feb 30 became Mar 2).
    for (const bad of [
      "2026-02-30T00:00:00Z",
      "2026-13-01T00:00:00Z",
      "2026-04-31T10:00:00Z",
      "2026-01-01T24:00:00Z",
      "2026-01-01T10:60:00Z",
      "2026-01-01T10:00:00+15:00",
    ]) {
      expect(parseTimestamp(bad), bad).toBeUndefined();
    }
    expect(parseTimestamp("2028-02-29T12:00:00Z")).toBe(Date.UTC(2028, 1, 29, 12));
    expect(parseTimestamp(Number.POSITIVE_INFINITY)).toBeUndefined();
  });

  it("admits within lateness and future skew, and names the breach otherwise", () => {
    expect(admitTime(NOW - 3_600_000, NOW, DEFAULT_CONFIG)).toBeUndefined();
    expect(admitTime(NOW - 3_600_001, NOW, DEFAULT_CONFIG)).toBe("too_late");
    expect(admitTime(NOW + 300_000, NOW, DEFAULT_CONFIG)).toBeUndefined();
    expect(admitTime(NOW + 300_001, NOW, DEFAULT_CONFIG)).toBe("too_far_in_future");
  });

  it("reads config overrides from env vars and ignores nonsense", () => {
    const c = loadConfig({ MAX_EVENTS_PER_BATCH: "50", MAX_BODY_BYTES: "-1", ALLOWED_LATENESS_MS: "9999999999" });
    expect(c.MAX_EVENTS_PER_BATCH).toBe(50);
    expect(c.MAX_BODY_BYTES).toBe(DEFAULT_CONFIG.MAX_BODY_BYTES);
    expect(c.ALLOWED_LATENESS_MS).toBe(DEFAULT_CONFIG.ALLOWED_LATENESS_MS);
  });
});

describe("bodies", () => {
  it("maps content types", () => {
    expect(bodyFormat("application/json; charset=utf-8")).toBe("json");
    expect(bodyFormat("application/x-ndjson")).toBe("ndjson");
    expect(bodyFormat("text/plain;charset=UTF-8")).toBe("text");
    expect(bodyFormat("application/x-www-form-urlencoded")).toBeUndefined();
    expect(bodyFormat(null)).toBeUndefined();
  });

  it("decodes objects, arrays, NDJSON with a bad line, and text as either", () => {
    expect(decodeBody('{"name":"a"}', "json")).toEqual({ ok: true, items: [{ ok: true, value: { name: "a" } }] });
    expect(decodeBody('[{"name":"a"},2]', "json")).toEqual({
      ok: true,
      items: [
        { ok: true, value: { name: "a" } },
        { ok: true, value: 2 },
      ],
    });
    expect(decodeBody('{"name":"a"}\n\n{oops\n{"name":"b"}\n', "ndjson")).toEqual({
      ok: true,
      items: [
        { ok: true, value: { name: "a" } },
        { ok: false, code: "malformed_json" },
        { ok: true, value: { name: "b" } },
      ],
    });
    expect(decodeBody('{"name":"a"}\n{"name":"b"}', "text")).toMatchObject({ ok: true, items: [{}, {}] });
    expect(decodeBody("[1,", "json")).toMatchObject({ ok: false });
    expect(decodeBody("42", "json")).toMatchObject({ ok: false });
  });

  it("judges NDJSON depth per line: unbalanced brackets on separate bad lines do not add up", () => {
    // Regression: the depth check ran over the whole body, so these two bad lines (2 + 2 > 3) refused the batch.
    const body = '{"name":"a"}\n{{\n{{\n{"name":"b","dims":{"k":"v"}}';
    const d = decodeBody(body, "ndjson");
    expect(d).toEqual({
      ok: true,
      items: [
        { ok: true, value: { name: "a" } },
        { ok: false, code: "malformed_json" },
        { ok: false, code: "malformed_json" },
        { ok: true, value: { name: "b", dims: { k: "v" } } },
      ],
    });
    // A line nesting deeper than an event can is refused on its own.
    expect(decodeBody('{"name":"a"}\n{"name":"b","dims":{"k":[[1]]}}', "ndjson")).toMatchObject({
      ok: true,
      items: [{ ok: true }, { ok: false, code: "too_deep" }],
    });
    // text/plain beacons that are NDJSON are judged per line too; one JSON document is still judged whole.
    expect(decodeBody('{"name":"a"}\n[[[[1]]]]', "text")).toMatchObject({
      ok: true,
      items: [{ ok: true }, { ok: false, code: "too_deep" }],
    });
    expect(decodeBody("[[[[1]]]]", "json")).toMatchObject({ ok: false, code: "body_too_deep" });
  });
});

describe("names and values that cannot be served", () => {
  it("refuses stream names made only of dots (URL paths collapse them)", () => {
    for (const name of [".", "..", "...", "....."]) {
      expect(isStreamName(name)).toBe(false);
      expect(validateEvent({ name }, NOW)).toMatchObject({ ok: false, code: "invalid_name" });
    }
    for (const name of [".a", "a.", "a..b", ".hidden", "v1.2"]) expect(isStreamName(name)).toBe(true);
  });

  it("refuses values whose sums could overflow (|value| > 1e15), and keeps every value up to the bound", () => {
    expect(validateEvent({ name: "a", value: 1.7e308 }, NOW)).toMatchObject({ ok: false, code: "invalid_value" });
    expect(validateEvent({ name: "a", value: -1e16 }, NOW)).toMatchObject({ ok: false, code: "invalid_value" });
    expect(validateEvent({ name: "a", value: MAX_ABS_VALUE }, NOW)).toMatchObject({ ok: true });
    expect(validateEvent({ name: "a", value: -MAX_ABS_VALUE }, NOW)).toMatchObject({ ok: true });
    expect(validateEvent({ name: "a", value: 5e-324 }, NOW)).toMatchObject({ ok: true });
  });

  it("says a value like 1e400 is out of range (JSON parses it to Infinity), not 'null'", () => {
    const v = validateEvent(JSON.parse('{"name":"a","value":1e400}'), NOW);
    expect(v).toMatchObject({ ok: false, code: "invalid_value" });
    expect(v.ok === false && v.message).toContain("beyond the range of a double");
    expect(v.ok === false && v.message).not.toContain("null");
  });

  it("states the deployment's time limits in too_late and too_far_in_future messages", () => {
    const limits = { ALLOWED_LATENESS_MS: 3_600_000, MAX_FUTURE_SKEW_MS: 90_000 };
    expect(eventErrorMessage("too_late", limits)).toContain("at most 1 h before");
    expect(eventErrorMessage("too_far_in_future", limits)).toContain("at most 90 s ahead");
    expect(eventErrorMessage("invalid_user", limits)).toBe(EVENT_ERRORS.invalid_user);
  });
});
