/**
 * Validation of history queries: `from`, `to` (epoch ms or ISO-8601; `to`
 * defaults to now, `from` to one step-limit before `to`) and `step`.
 */
import { CodedError } from "./errors.ts";
import { parseTimestamp } from "./event.ts";

export const HISTORY_STEP_MS = { "1m": 60_000, "1h": 3_600_000, "1d": 86_400_000 } as const;
export type HistoryStepName = keyof typeof HISTORY_STEP_MS;
/** Most points one query returns. */
export const MAX_HISTORY_POINTS = 1500;
/** The step when `step` is absent. */
export const DEFAULT_HISTORY_STEP: HistoryStepName = "1m";

/** A range bound of a query string: epoch ms or ISO-8601 with a zone; `fallback` when absent. */
export function rangeTime(raw: string | undefined, name: string, fallback: number): number {
  if (raw === undefined || raw === "") return fallback;
  const t = parseTimestamp(/^\d+$/.test(raw) ? Number(raw) : raw);
  if (t === undefined) {
    throw new CodedError(
      "invalid_range",
      `${name} must be epoch milliseconds or ISO-8601 with a zone; got '${raw.slice(0, 40)}'.`,
    );
  }
  return t;
}

/** Default span when `from` is absent, per step. */
export const DEFAULT_HISTORY_SPAN_MS = { "1m": 3_600_000, "1h": 86_400_000, "1d": 30 * 86_400_000 } as const;

export interface HistoryQuery {
  from: Date;
  to: Date;
  step: HistoryStepName;
}

export function parseHistoryQuery(
  rawFrom: string | undefined,
  rawTo: string | undefined,
  rawStep: string | undefined,
  now: number,
): HistoryQuery {
  const step = (rawStep ?? DEFAULT_HISTORY_STEP) as HistoryStepName;
  if (!Object.hasOwn(HISTORY_STEP_MS, step)) {
    throw new CodedError("invalid_step", `step '${String(rawStep).slice(0, 16)}' is not one of 1m, 1h, 1d.`);
  }
  const to = rangeTime(rawTo, "to", now);
  const from = rangeTime(rawFrom, "from", to - DEFAULT_HISTORY_SPAN_MS[step]);
  if (from >= to) throw new CodedError("invalid_range", "from must be before to.");
  const points = Math.ceil((to - from) / HISTORY_STEP_MS[step]);
  if (points > MAX_HISTORY_POINTS) {
    throw new CodedError(
      "range_too_large",
      `That range holds ${points} ${step} steps; the limit is ${MAX_HISTORY_POINTS}. Use a coarser step or a shorter range.`,
    );
  }
  return { from: new Date(from), to: new Date(to), step };
}
