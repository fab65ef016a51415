/** The one event stream every system in the benchmarks is fed: deterministic, latency-like values, a user pool. */
export interface BenchEvent {
  name: string;
  ts: number;
  value: number;
  user: string;
}

import { nearestRank } from "../core/ddsketch";
import { seededRandom } from "../core/random";

/** `n` events for `streams` streams, stamped over the `spreadMs` before `now`. */
export function makeEvents(
  n: number,
  opts: { seed: number; streams: number; now: number; spreadMs: number; users?: number; prefix?: string },
): BenchEvent[] {
  const r = seededRandom(opts.seed);
  const out: BenchEvent[] = [];
  for (let i = 0; i < n; i++) {
    const u = r() || 1e-12;
    const value =
      Math.round(Math.exp(4.5 + 0.8 * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r())) * 100) / 100;
    out.push({
      name: `${opts.prefix ?? "bench"}.s${i % opts.streams}`,
      ts: opts.now - Math.floor(r() * opts.spreadMs),
      value,
      user: `u${Math.floor(r() * (opts.users ?? 20_000))}`,
    });
  }
  return out;
}

/** Exact answers for a set of events: count, sum, p95 (element of rank floor(0.95·(n−1))) and distinct users. */
export function exact(events: BenchEvent[]) {
  const values = events.map((e) => e.value).sort((a, b) => a - b);
  return {
    count: events.length,
    sum: values.reduce((a, b) => a + b, 0),
    p95: values[nearestRank(0.95, values.length)],
    distinct: new Set(events.map((e) => e.user)).size,
  };
}
