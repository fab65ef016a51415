/**
 * Memory per actor after an hour of simulated traffic: the actor's in-memory
 * state (per-second ring, minute summaries, sliding and per-minute HLLs) fed
 * one hour of events, measured as heap growth per actor; plus what the same
 * state takes in the actor's SQLite rows.
 *
 *   node --expose-gc --import tsx bench/memory.ts
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { encode as encodeSketch } from "../core/ddsketch";
import { StreamWindows } from "../core/window";
import { ROOT } from "../test/support/paths";
import { makeEvents } from "./events";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");

function heap(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

const ACTORS = 10;
const now = Date.now();
const results: Record<string, unknown> = {};
for (const [label, rate, users] of [
  ["10 events/s, 500 users", 10, 500],
  ["100 events/s, 5,000 users", 100, 5000],
] as const) {
  const before = heap();
  const actors: StreamWindows[] = [];
  let storage = 0;
  for (let a = 0; a < ACTORS; a++) {
    const w = new StreamWindows();
    const events = makeEvents(rate * 3600, { seed: a + 1, streams: 1, now, spreadMs: 3_600_000, users });
    for (let i = 0; i < events.length; i += 1000) w.apply(events.slice(i, i + 1000));
    w.expire(now);
    actors.push(w);
    if (a === 0) {
      for (const b of w.buckets.values()) storage += 48 + encodeSketch(b.sketch).byteLength;
      for (const list of w.hll.lists.values()) storage += 16 + list.length * 4;
      for (const p of w.minuteUsers.values()) storage += 16 + p.encode().byteLength;
    }
  }
  const perActor = (heap() - before) / ACTORS;
  results[label] = {
    heapMiBPerActor: Number((perActor / 2 ** 20).toFixed(2)),
    storageMiBPerActor: Number((storage / 2 ** 20).toFixed(2)),
  };
  console.log(label, JSON.stringify(results[label]));
  actors.length = 0;
}
writeFileSync(
  join(ROOT, "bench", "results", "memory.json"),
  `${JSON.stringify({ date: new Date().toISOString(), ...results }, null, 2)}\n`,
);
