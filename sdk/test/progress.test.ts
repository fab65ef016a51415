import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { createProgress } from "../src/cli/progress.ts";

describe("import progress", () => {
  it("lines mode: one line per interval on the injected clock, with records, events/s, share read and ETA", () => {
    let now = 0;
    const lines: string[] = [];
    const p = createProgress("lines", 1000, 1000, { write: (l) => lines.push(l), now: () => now });
    now = 1000;
    p.update({ settled: 1000, through: 1000, bytes: 500 });
    now = 1500; // within the interval: nothing written
    p.update({ settled: 1200, through: 1200, bytes: 600 });
    now = 2000;
    p.update({ settled: 4000, through: 4100, bytes: 1000 });
    p.stop();
    expect(lines).toEqual([
      "progress: 1,000 records acknowledged (through line 1000), 1,000 events/s, 50.0% read, ETA 1s",
      "progress: 4,000 records acknowledged (through line 4100), 2,000 events/s, 100.0% read, ETA 0s",
    ]);
  });

  it("bar mode: draws on a terminal with the records and events/s, and finishes the line on stop", () => {
    const out = new PassThrough();
    Object.assign(out, { isTTY: true, columns: 120 });
    let text = "";
    out.on("data", (d: Buffer) => {
      text += d.toString();
    });
    let now = 0;
    const p = createProgress("bar", 1000, 1000, { stream: out, now: () => now });
    now = 2000;
    p.update({ settled: 3000, through: 3000, bytes: 500 });
    p.stop();
    const last =
      text
        .split(/\r|\n/)
        .filter((l) => l.includes("importing"))
        .at(-1) ?? "";
    expect(last).toContain("50%");
    expect(last).toContain("3,000 records");
    expect(last).toContain("1,500 events/s");
  });

  it("none mode writes nothing", () => {
    const lines: string[] = [];
    const p = createProgress("none", 10, 0, { write: (l) => lines.push(l) });
    p.update({ settled: 5, through: 5, bytes: 5 });
    p.stop();
    expect(lines).toEqual([]);
  });
});
