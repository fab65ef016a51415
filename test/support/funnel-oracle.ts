/** The tests' oracle for funnels (core/funnels.ts), written apart from the code it checks. */
import type { LogEntry } from "../../core/funnels.ts";

/**
 * The oracle: the journey rule written another way — for every first-step event that is not inside an earlier
 * journey, find the furthest step reachable in order within the window by scanning forward.
 */
export function oracleJourneys(events: LogEntry[], windowMs: number): Array<{ start: number; reached: number }> {
  const sorted = [...events].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const out: Array<{ start: number; reached: number }> = [];
  let busyUntil = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < sorted.length; i++) {
    const [t, step] = sorted[i];
    if (step !== 0 || t <= busyUntil) continue;
    let want = 1;
    for (let j = i + 1; j < sorted.length && sorted[j][0] <= t + windowMs; j++) {
      if (sorted[j][1] === want) want++;
    }
    out.push({ start: t, reached: want - 1 });
    busyUntil = t + windowMs;
  }
  return out;
}
