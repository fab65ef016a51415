/**
 * Points in time as the API shows them. Actors and storage keep epoch milliseconds; every JSON response
 * (and webhook body) carries ISO-8601 UTC strings ("2026-11-22T09:00:00.000Z"), converted at the edge
 * with these two functions. Durations stay numbers with a unit suffix (`for_ms`).
 */
export const isoTime = (ms: number): string => new Date(ms).toISOString();

export const isoOrNull = (ms: number | null | undefined): string | null =>
  ms === null || ms === undefined ? null : isoTime(ms);
