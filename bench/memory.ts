/**
 * Heap per actor after an hour of traffic: the actor's in-memory state (the
 * window ring with packed minutes, the sliding HyperLogLog, the per-minute
 * HyperLogLogs history still needs) fed one hour of events in time order, as
 * the actor runs it: ended minutes are packed, expired minutes dropped, and a
 * minute's HyperLogLog is let go once it has been flushed. Measured as heap
 * growth (JS heap plus ArrayBuffer backing stores) over 10 such actors. Storage and wake time come from the real
 * runtime: bench/actor.ts.
 *
 *   node --expose-gc --import tsx bench/memory.ts
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { DimState } from "../core/dims";
import { seededRandom } from "../core/random";
import { minuteOf, StreamWindows, secondOf } from "../core/window";
import { ROOT } from "../test/support/paths";
import { makeEvents } from "./events";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");

/** JS heap plus ArrayBuffer backing stores (typed arrays live outside heapUsed but count against an isolate's memory). */
function heap(): number {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const ACTORS = 10;
const now = Date.now();
const results: Record<string, unknown> = {};

/** One actor's hour: events applied second by second, housekeeping once a minute. */
function runHour(seed: number, rate: number, users: number): StreamWindows {
  const w = new StreamWindows({ minuteUsers: true });
  const start = now - 3_600_000;
  const events = makeEvents(rate * 3600, { seed, streams: 1, now, spreadMs: 3_600_000, users }).sort(
    (a, b) => a.ts - b.ts,
  );
  let i = 0;
  for (let t = start; t <= now; t += 1000) {
    const batch = [];
    while (i < events.length && events[i].ts < t + 1000) batch.push(events[i++]);
    if (batch.length) w.apply(batch);
    if (secondOf(t) % 60 === 0) {
      w.packEnded(t);
      w.expire(t);
      // History flushed every ended minute: its HyperLogLog is no longer held.
      const current = minuteOf(secondOf(t));
      for (const m of [...w.minuteUsers.keys()]) if (m < current) w.minuteUsers.delete(m);
    }
  }
  return w;
}

/** Zipf(s) over n values (inverse CDF). */
function zipf(n: number, s: number, rand: () => number): () => number {
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let i = 0; i < n; i++) {
    acc += 1 / (i + 1) ** s;
    cdf[i] = acc;
  }
  return () => {
    const u = rand() * acc;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/**
 * One actor's hour with dimensions: the window ring plus the dimension state (3 keys × 1,000 values, Zipf(1.1)),
 * housekeeping once a minute (pack ended minutes, expire); the cold dimension blocks live in storage, not here.
 */
function runHourWithDims(seed: number, rate: number, users: number): [StreamWindows, DimState] {
  const [w] = [runHour(seed, rate, users)];
  const d = new DimState({ maxKeys: 32, maxValues: 1000 });
  const rand = seededRandom(seed * 7 + 1);
  const draw = zipf(1000, 1.1, rand);
  const start = now - 3_600_000;
  for (let t = start; t <= now; t += 1000) {
    const batch = [];
    for (let i = 0; i < rate; i++) {
      batch.push({
        ts: t + Math.floor(rand() * 1000),
        value: Math.round(rand() * 10_000) / 100,
        user: `u${Math.floor(rand() * users)}`,
        dims: { country: `c${draw()}`, product: `p${draw()}`, campaign: `k${draw()}` },
      });
    }
    d.apply(batch);
    if (secondOf(t) % 60 === 0) {
      for (const m of d.ended(t)) d.pack(m, null, t);
      d.expire(t, minuteOf(secondOf(t)) - 61);
    }
  }
  return [w, d];
}

for (const [label, rate, users] of [
  ["10 events/s, 500 users", 10, 500],
  ["100 events/s, 5,000 users", 100, 5000],
] as const) {
  const before = heap();
  const actors: StreamWindows[] = [];
  for (let a = 0; a < ACTORS; a++) actors.push(runHour(a + 1, rate, users));
  const perActor = (heap() - before) / ACTORS;
  results[label] = { heapMiBPerActor: Number((perActor / 2 ** 20).toFixed(3)), minutes: actors[0].minuteCount };
  console.log(label, JSON.stringify(results[label]));
  actors.length = 0;
}
{
  const label = "100 events/s, 5,000 users, 3 dim keys × 1,000 values (Zipf 1.1)";
  const before = heap();
  const actors: Array<[StreamWindows, DimState]> = [];
  for (let a = 0; a < 4; a++) actors.push(runHourWithDims(a + 1, 100, 5000));
  const perActor = (heap() - before) / actors.length;
  results[label] = { heapMiBPerActor: Number((perActor / 2 ** 20).toFixed(3)), hotDimMinutes: actors[0][1].hot.size };
  console.log(label, JSON.stringify(results[label]));
  actors.length = 0;
}

writeFileSync(
  join(ROOT, "bench", "results", "memory.json"),
  `${JSON.stringify({ date: new Date().toISOString(), ...results }, null, 2)}\n`,
);
