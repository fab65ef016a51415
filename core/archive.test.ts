import { describe, expect, it } from "vitest";
import { archiveLine, archiveLines, gunzip, gzip, parseSegmentKey, segmentKey } from "./archive.ts";
import type { StreamEvent } from "./event.ts";
import { validateEvent } from "./event.ts";

/** Events as the ingest path holds them: built by the event validator from what clients send. */
function validated(raw: Array<Record<string, unknown>>): StreamEvent[] {
  return raw.map((r) => {
    const v = validateEvent({ name: "s", ...r }, 1_763_870_000_000);
    if (!v.ok) throw new Error(`invalid test event ${JSON.stringify(r)}: ${JSON.stringify(v)}`);
    return v.event;
  });
}

describe("archive lines", () => {
  it("one stringify of a batch gives each event's line, whatever its dims hold", () => {
    const events = validated([
      { ts: 1_763_869_999_000 },
      { ts: 1_763_869_999_001, id: "a", value: 1.5, user: "u" },
      { ts: 1_763_869_999_002, dims: { k: '},{"ts":1},{"' } },
      { ts: 1_763_869_999_003, id: '},{"name":"x"', dims: { a: "}", b: "{", c: '\\"},{"' } },
      { ts: 1_763_869_999_004, user: "ünïcødé \u2028 ✓", dims: { "key-1": "", k2: "[]" } },
      { ts: 1_763_869_999_005, value: -0.000001, id: "\\" },
    ]);
    const lines = archiveLines("orders.paid", events).split("\n");
    expect(lines).toHaveLength(events.length);
    lines.forEach((line, i) => {
      expect(JSON.parse(line)).toEqual(JSON.parse(archiveLine("orders.paid", events[i])));
    });
    expect(archiveLines("one", validated([{ ts: 1_763_869_000_005 }]))).toBe('{"name":"one","ts":1763869000005}');
    // Strings ending in `},{` put the cut's sequence inside an event (their closing quote follows).
    const hostile = validated([
      { ts: 1_763_869_000_001, id: "x},{" },
      { ts: 1_763_869_000_002, user: "},{", dims: { "a},{": "b},{" } },
      { ts: 1_763_869_000_003 },
    ]);
    const hostileLines = archiveLines("s", hostile).split("\n");
    expect(hostileLines).toHaveLength(3);
    hostileLines.forEach((line, i) => {
      expect(JSON.parse(line)).toEqual(JSON.parse(archiveLine("s", hostile[i])));
    });
    expect(archiveLines("none", [])).toBe("");
  });
});

describe("segments", () => {
  it("gzip round-trips, and keys parse back to their parts", async () => {
    const text = archiveLines(
      "s",
      validated([
        { ts: 1_763_869_000_001, value: 2 },
        { ts: 1_763_869_000_003, user: "x" },
      ]),
    );
    expect(await gunzip(gzip(text))).toBe(text);
    const key = segmentKey("t_1", "s.x", 491_000, 7, 42);
    expect(key).toBe("raw/t_1/s.x/2026-01-05/08/000000000007-000000000042.ndjson.gz");
    expect(parseSegmentKey(key)).toEqual({
      tenant: "t_1",
      stream: "s.x",
      hourStart: 491_000 * 3_600_000,
      firstSeq: 7,
      lastSeq: 42,
    });
  });
});
