import { describe, expect, it } from "vitest";
import {
  type AlertEvent,
  type AlertsMessage,
  type DirectoryEntry,
  type DirectoryMessage,
  directoryEntry,
  HEARTBEAT,
  isClientMessage,
  KEY_PROTOCOL_PREFIX,
  keyFromProtocols,
  LIVE_PROTOCOL,
  MAX_SPARK_POINTS,
  parseServerMessage,
  type QueryResultMessage,
  type ServerMessage,
  SPARK_MINUTES,
  type StreamSnapshotMessage,
  type StreamUpdateMessage,
} from "./live.ts";
import type { StreamCounters } from "./protocol.ts";
import { type Aggregates, WINDOW_NAMES, WINDOWS, type WindowName } from "./window.ts";

const AT = Date.UTC(2026, 10, 22, 10, 30);

const aggregates = (window: WindowName, count: number): Aggregates => ({
  window,
  seconds: WINDOWS[window],
  count,
  rate: count / WINDOWS[window],
  value_count: count,
  sum: count * 2,
  min: 1,
  max: 3,
  mean: 2,
  p50: 2,
  p90: 3,
  p95: 3,
  p99: 3,
  distinct_users: 4,
});
const windows = Object.fromEntries(WINDOW_NAMES.map((w) => [w, aggregates(w, 60)])) as Record<WindowName, Aggregates>;
const counters: StreamCounters = {
  accepted: 60,
  duplicates: 1,
  late: 2,
  future: 0,
  rejected: { invalid_value: 3, unknown_field: 4 },
};
const point = { t: AT, count: 3, p50: 1.5, p95: null, p99: 9 };
const entry: DirectoryEntry = {
  name: "checkout",
  at: AT,
  count: 60,
  rate: 1,
  mean: null,
  p95: null,
  distinct_users: 4,
  rejected: 7,
  late: 2,
  duplicates: 1,
};
const alert: AlertEvent = {
  id: "ev_1",
  stream: "checkout",
  rule_id: "rule_1",
  rule_name: "slow checkouts",
  kind: "firing",
  at: AT,
  value: 812.5,
  labels: { env: "prod" },
};

const snapshot: StreamSnapshotMessage = {
  type: "snapshot",
  stream: "checkout",
  at: AT,
  windows,
  counters,
  seconds: [point],
  minutes: [],
};
const update: StreamUpdateMessage = { ...snapshot, type: "update", applied: 5 };
const directory: DirectoryMessage = { type: "directory", at: AT, streams: [entry] };
const alerts: AlertsMessage = { type: "alerts", at: AT, firing: [alert] };
const result: QueryResultMessage = {
  type: "result",
  at: AT,
  columns: ["country", "count"],
  rows: [
    ["DE", 3],
    ["FR", null],
  ],
  meta: { step: null },
};

/** A message as JSON with some top-level fields replaced (undefined drops the field). */
const json = (m: object, over: Record<string, unknown> = {}) => JSON.stringify({ ...m, ...over });
/** A directory message whose single entry has some fields replaced. */
const withEntry = (over: Record<string, unknown>) => json(directory, { streams: [{ ...entry, ...over }] });
const withPoint = (over: Record<string, unknown>) => json(snapshot, { seconds: [point, { ...point, ...over }] });
/** A directory message whose entry's spark is written as raw JSON (for what JSON.stringify cannot produce). */
const withRawSpark = (raw: string) => json(directory).replace(/\}\]\}$/, `,"spark":${raw}}]}`);
const withAlert = (over: Record<string, unknown>) => json({ type: "alert", event: { ...alert, ...over } });

describe("parseServerMessage: accepts every message type", () => {
  it.each<[string, ServerMessage]>([
    ["snapshot", snapshot],
    ["snapshot with empty series", { ...snapshot, seconds: [], minutes: [] }],
    ["update", update],
    ["directory", directory],
    ["directory with no streams", { type: "directory", at: AT, streams: [] }],
    ["streams", { type: "streams", at: AT, streams: [entry, { ...entry, name: "signup", p95: 12 }] }],
    ["alert", { type: "alert", event: alert }],
    ["alert with a null value, resolved", { type: "alert", event: { ...alert, kind: "resolved", value: null } }],
    ["alerts", alerts],
    ["alerts, none firing", { type: "alerts", at: AT, firing: [] }],
    ["result", result],
    ["result with no rows", { ...result, rows: [] }],
    ["error", { type: "error", code: "invalid_query", message: "limit: too big." }],
  ])("%s", (_, m) => {
    expect(parseServerMessage(JSON.stringify(m))).toEqual(m);
  });

  it.each<[string, string]>([
    ["pending", "pending"],
    ["firing", "firing"],
    ["resolved", "resolved"],
    ["cancelled", "cancelled"],
  ])("an alert of kind %s", (_, kind) => {
    expect(parseServerMessage(withAlert({ kind }))).not.toBeNull();
  });
});

describe("parseServerMessage: refuses malformed messages", () => {
  const snapshotWithout1h = { ...windows } as Partial<Record<WindowName, Aggregates>>;
  delete snapshotWithout1h["1h"];

  it.each<[string, string]>([
    // Not a JSON object.
    ["empty text", ""],
    ["not JSON", "{type: snapshot}"],
    ["truncated JSON", json(snapshot).slice(0, -1)],
    ["the heartbeat", HEARTBEAT.response],
    ["JSON null", "null"],
    ["a JSON array", JSON.stringify([snapshot])],
    ["a JSON string", JSON.stringify("snapshot")],
    ["a JSON number", "42"],
    // The type.
    ["no type", json(snapshot, { type: undefined })],
    ["an unknown type", json(snapshot, { type: "hello" })],
    ["a type in another case", json(snapshot, { type: "Snapshot" })],
    // snapshot / update.
    ["snapshot without stream", json(snapshot, { stream: undefined })],
    ["snapshot with a numeric stream", json(snapshot, { stream: 7 })],
    ["snapshot without at", json(snapshot, { at: undefined })],
    ["snapshot with at as a string", json(snapshot, { at: String(AT) })],
    ["snapshot with an infinite at (1e999)", json(snapshot).replace(`"at":${AT},`, '"at":1e999,')],
    ["snapshot without windows", json(snapshot, { windows: undefined })],
    ["snapshot missing a window", json(snapshot, { windows: snapshotWithout1h })],
    ["snapshot with a window's count as a string", json(snapshot, { windows: { ...windows, "5m": { count: "60" } } })],
    ["snapshot with a null window", json(snapshot, { windows: { ...windows, "1m": null } })],
    ["snapshot without counters", json(snapshot, { counters: undefined })],
    ["snapshot with counters as an array", json(snapshot, { counters: [1, 2] })],
    [
      "snapshot with counters missing rejected",
      json(snapshot, { counters: { ...snapshot.counters, rejected: undefined } }),
    ],
    ["snapshot with counters.late as a string", json(snapshot, { counters: { ...snapshot.counters, late: "2" } })],
    [
      "snapshot with a rejection count as a string",
      json(snapshot, { counters: { ...snapshot.counters, rejected: { bad_value: "1" } } }),
    ],
    ["snapshot with empty counters", json(snapshot, { counters: {} })],
    [
      "snapshot with a window's rate as a string",
      json(snapshot, { windows: { ...windows, "5m": { ...windows["5m"], rate: "1" } } }),
    ],
    [
      "snapshot with a window without mean",
      json(snapshot, { windows: { ...windows, "1h": { ...windows["1h"], mean: undefined } } }),
    ],
    ["snapshot without seconds", json(snapshot, { seconds: undefined })],
    ["snapshot without minutes", json(snapshot, { minutes: undefined })],
    ["snapshot with minutes as an object", json(snapshot, { minutes: { 0: point } })],
    ["a series point without t", withPoint({ t: undefined })],
    ["a series point with a null count", withPoint({ count: null })],
    ["a series point with p95 as a string", withPoint({ p95: "3" })],
    ["a series point without p50", withPoint({ p50: undefined })],
    ["a series point that is a number", json(snapshot, { seconds: [3] })],
    ["update without applied", json(update, { applied: undefined })],
    ["update with applied as a string", json(update, { applied: "5" })],
    // directory / streams.
    ["directory without at", json(directory, { at: undefined })],
    ["directory without streams", json(directory, { streams: undefined })],
    ["directory with streams as an object", json(directory, { streams: { checkout: entry } })],
    ["streams with a null entry", json({ type: "streams", at: AT, streams: [entry, null] })],
    ["an entry without name", withEntry({ name: undefined })],
    ["an entry with a numeric name", withEntry({ name: 1 })],
    ["an entry without at", withEntry({ at: undefined })],
    ["an entry without count", withEntry({ count: undefined })],
    ["an entry with rate as a string", withEntry({ rate: "1" })],
    ["an entry without p95", withEntry({ p95: undefined })],
    ["an entry with p95 as a string", withEntry({ p95: "12" })],
    ["an entry without distinct_users", withEntry({ distinct_users: undefined })],
    ["an entry without rejected", withEntry({ rejected: undefined })],
    ["an entry without duplicates", withEntry({ duplicates: undefined })],
    ["an entry with late as a string", withEntry({ late: "0" })],
    ["an entry with mean as a string", withEntry({ mean: "4.5" })],
    // alert / alerts.
    ["alert without event", json({ type: "alert" })],
    ["alert with a null event", json({ type: "alert", event: null })],
    ["an alert of unknown kind", withAlert({ kind: "exploded" })],
    ["an alert without id", withAlert({ id: undefined })],
    ["an alert with a numeric rule_id", withAlert({ rule_id: 1 })],
    ["an alert without rule_name", withAlert({ rule_name: undefined })],
    ["an alert without stream", withAlert({ stream: undefined })],
    ["an alert without at", withAlert({ at: undefined })],
    ["an alert without value", withAlert({ value: undefined })],
    ["an alert with value as a string", withAlert({ value: "812.5" })],
    ["an alert with null labels", withAlert({ labels: null })],
    ["an alert with labels as an array", withAlert({ labels: ["env"] })],
    ["an alert with a numeric label", withAlert({ labels: { env: 1 } })],
    ["alerts without at", json(alerts, { at: undefined })],
    ["alerts with firing not a list", json(alerts, { firing: alert })],
    ["alerts with a malformed event", json(alerts, { firing: [alert, { ...alert, kind: "gone" }] })],
    // result.
    ["result without at", json(result, { at: undefined })],
    ["result without columns", json(result, { columns: undefined })],
    ["result with columns as a string", json(result, { columns: "country,count" })],
    ["result without rows", json(result, { rows: undefined })],
    ["result with a row that is not a list", json(result, { rows: [["DE", 3], { country: "FR" }] })],
    ["result with a numeric column name", json(result, { columns: ["country", 2] })],
    ["result with an object in a cell", json(result, { rows: [["DE", { n: 3 }]] })],
    ["result without meta", json(result, { meta: undefined })],
    ["result with meta as an array", json(result, { meta: [] })],
    // error.
    ["error without code", json({ type: "error", message: "x" })],
    ["error without message", json({ type: "error", code: "x" })],
    ["error with a numeric message", json({ type: "error", code: "x", message: 1 })],
  ])("%s", (_, text) => {
    expect(parseServerMessage(text)).toBeNull();
  });
});

describe("parseServerMessage: a directory entry's spark", () => {
  const spark = (n: number) => Array.from({ length: n }, (_, i) => i * 1.5);

  it.each<[string, unknown]>([
    ["absent (records from earlier releases)", undefined],
    ["empty", []],
    ["SPARK_MINUTES points", spark(SPARK_MINUTES)],
    ["MAX_SPARK_POINTS points", spark(MAX_SPARK_POINTS)],
    ["zeros, fractions and negatives", [0, 0.25, -3, 1e12]],
  ])("accepts a spark %s", (_, value) => {
    for (const type of ["directory", "streams"]) {
      const text = json({ type, at: AT, streams: [{ ...entry, spark: value }] });
      expect(parseServerMessage(text), type).toEqual({ type, at: AT, streams: [{ ...entry, spark: value }] });
    }
  });

  it.each<[string, string]>([
    ["one point more than MAX_SPARK_POINTS", withEntry({ spark: spark(MAX_SPARK_POINTS + 1) })],
    ["far longer", withEntry({ spark: spark(10_000) })],
    ["holding a numeric string", withEntry({ spark: [1, "2", 3] })],
    ["holding null (what JSON makes of NaN)", withEntry({ spark: [1, null, 3] })],
    ["holding a nested list", withEntry({ spark: [1, [2], 3] })],
    ["holding an object", withEntry({ spark: [{ count: 1 }] })],
    ["holding a boolean", withEntry({ spark: [true] })],
    ["holding an overflowing number (1e999 reads as Infinity)", withRawSpark("[1,1e999,3]")],
    ["holding -1e999 (-Infinity)", withRawSpark("[-1e999]")],
    ["null", withEntry({ spark: null })],
    ["a number", withEntry({ spark: 5 })],
    ["a string", withEntry({ spark: "1,2,3" })],
    ["an object with numeric keys", withEntry({ spark: { 0: 1, 1: 2 } })],
  ])("refuses a spark %s", (_, text) => {
    expect(parseServerMessage(text)).toBeNull();
  });

  it("reads a spark written as raw JSON (the control for the 1e999 cases)", () => {
    expect(parseServerMessage(withRawSpark("[1,2e3,-3]"))).toEqual({
      ...directory,
      streams: [{ ...entry, spark: [1, 2000, -3] }],
    });
  });

  it("refuses the whole message when any entry's spark is bad", () => {
    const text = json({
      type: "streams",
      at: AT,
      streams: [entry, { ...entry, name: "b", spark: [1] }, { ...entry, name: "c", spark: ["x"] }],
    });
    expect(parseServerMessage(text)).toBeNull();
  });
});

describe("keyFromProtocols", () => {
  it.each<[string | null, string | undefined]>([
    [`${LIVE_PROTOCOL}, ${KEY_PROTOCOL_PREFIX}ep_abc123`, "ep_abc123"],
    ["edgepulse.v1, bearer.ep_abc123", "ep_abc123"],
    ["edgepulse.v1,bearer.ep_abc123", "ep_abc123"],
    ["  edgepulse.v1 ,   bearer.ep_abc123  ", "ep_abc123"],
    ["bearer.ep_abc123, edgepulse.v1", "ep_abc123"],
    ["edgepulse.v1, bearer.ep.with.dots", "ep.with.dots"],
    ["edgepulse.v1, bearer.first, bearer.second", "first"],
    ["chat, edgepulse.v1, bearer.k", "k"],
    [null, undefined],
    ["", undefined],
    ["edgepulse.v1", undefined],
    ["bearer.ep_abc123", undefined],
    ["edgepulse.v2, bearer.ep_abc123", undefined],
    ["edgepulse.v1.beta, bearer.ep_abc123", undefined],
    ["xedgepulse.v1, bearer.ep_abc123", undefined],
    ["edgepulse.v1, token.ep_abc123", undefined],
    ["edgepulse.v1, xbearer.ep_abc123", undefined],
    ["edgepulse.v1, bearer.", undefined],
  ])("%j → %j", (header, key) => {
    expect(keyFromProtocols(header)).toBe(key);
  });
});

describe("isClientMessage", () => {
  it.each<[unknown, boolean]>([
    [HEARTBEAT.request, true],
    ["ping", true],
    ["pong", false],
    ["PING", false],
    [" ping", false],
    ["ping\n", false],
    ["", false],
    ['{"type":"ping"}', false],
    [{ type: "ping" }, false],
    [null, false],
    [undefined, false],
    [new TextEncoder().encode("ping"), false],
  ])("%j → %s", (message, want) => {
    expect(isClientMessage(message)).toBe(want);
  });
});

describe("directoryEntry", () => {
  it("takes the window's figures and the counters, summing rejections", () => {
    const w = { ...aggregates("1m", 120), mean: 2.5, p95: 7, distinct_users: 9 };
    const e = directoryEntry("checkout", AT, w, counters);
    expect(e).toEqual({
      name: "checkout",
      at: AT,
      count: 120,
      rate: 2,
      mean: 2.5,
      p95: 7,
      distinct_users: 9,
      rejected: 7,
      late: 2,
      duplicates: 1,
    });
    expect("spark" in e).toBe(false);
  });

  it.each<[string, StreamCounters["rejected"], number]>([
    ["no rejections", {}, 0],
    ["one code", { too_late: 5 }, 5],
    ["several codes", { invalid_name: 1, invalid_timestamp: 0, too_late: 10, stream_limit: 2 }, 13],
  ])("rejected with %s", (_, rejected, want) => {
    expect(directoryEntry("s", AT, windows["1m"], { ...counters, rejected }).rejected).toBe(want);
  });

  it("includes the spark only when given, empty included", () => {
    const points = Array.from({ length: SPARK_MINUTES }, (_, i) => i);
    expect(directoryEntry("s", AT, windows["5m"], counters, points).spark).toEqual(points);
    expect(directoryEntry("s", AT, windows["5m"], counters, []).spark).toEqual([]);
    expect(Object.keys(directoryEntry("s", AT, windows["5m"], counters, undefined))).not.toContain("spark");
  });

  it("builds entries the parser accepts, with and without a spark", () => {
    const plain = directoryEntry("checkout", AT, windows["1h"], counters);
    const sparked = directoryEntry("signup", AT, windows["1h"], counters, Array(SPARK_MINUTES).fill(3));
    const m = { type: "streams", at: AT, streams: [plain, sparked] };
    expect(parseServerMessage(JSON.stringify(m))).toEqual(m);
  });
});
