/**
 * Funnels: ordered steps (a stream, optionally with dim filters) that a user
 * goes through within a conversion window, e.g. view → cart → checkout → paid.
 * Runtime-free: the definition's schema and limits, which events feed which
 * step (taps), the journey rule, its incremental per-user form, and the
 * results' shape. durable-objects/funnel-actor.ts keeps the state,
 * durable-objects/metric-actor/funnels.ts feeds it, workers/aggregator/funnels.ts
 * serves it.
 *
 * The journey rule (the one definition the actors, the tests' oracle and the
 * docs share). A user's step events are taken in event-time order (ties: the
 * earlier step first):
 * - with no open journey, an event of the first step opens one: it starts at
 *   that event's time, with the breakdown value that event carries;
 * - an open journey that has reached step k advances to step k+1 at the first
 *   event of step k+1 no later than start + window; other events inside the
 *   journey (a repeated first step, a step out of order) change nothing;
 * - an event after start + window closes the journey (and may open the next).
 * A journey is counted on the UTC day it started, once per step it reached.
 * So "journeys" counts entries into the funnel, not distinct users: a user who
 * starts again after the window counts again.
 *
 * Order of arrival does not matter: steps come from different streams (so from
 * different actors, in any order), so each user's recent events are kept and the
 * user's journeys recomputed when one arrives; counts change by the difference.
 * Each user's events are kept only for FUNNEL_LATENESS_MS (default 5 minutes, the
 * funnel horizon) plus the journey they leave open: a step event that reaches its
 * shard later than that can no longer change a journey and is counted as late.
 */
import { z } from "zod";
import { CodedError } from "./errors.ts";
import { isStreamName, MAX_DIM_KEY_LENGTH, MAX_DIM_VALUE_LENGTH, type StreamEvent } from "./event.ts";
import { type Filter, FilterSpec, matches, normalizeFilters } from "./query.ts";

/** Funnel state is spread over this many actors per tenant, by a hash of the user. */
export const FUNNEL_SHARDS = 8;
/** At most this many funnels per tenant (409 funnel_limit past it). */
export const MAX_FUNNELS_PER_TENANT = 20;
export const MIN_FUNNEL_STEPS = 2;
export const MAX_FUNNEL_STEPS = 8;
/** Filters per step. */
export const MAX_STEP_FILTERS = 5;
/** The longest conversion window. */
export const MAX_FUNNEL_WINDOW_MS = 7 * 86_400_000;
/**
 * A user's step events kept per funnel: those within the funnel horizon (FUNNEL_LATENESS_MS). Past it, the
 * user's further events in that span are counted as overflow and ignored. At about 20 bytes per event in
 * storage (JSON), a user's state is at most ~3 KB per funnel (bench/funnels.ts measures the typical size),
 * and is deleted once every journey of the user has ended and the horizon has passed it.
 */
export const FUNNEL_MAX_USER_EVENTS = 128;
/** Breakdown values per funnel, day and shard; further values are counted under "__other__". */
export const FUNNEL_MAX_BREAKDOWN_VALUES = 100;
export const FUNNEL_OTHER = "__other__";
/** Journeys without the breakdown dim are counted under this value. */
export const FUNNEL_NONE = "__none__";
/** Days of counts kept. */
export const FUNNEL_RETENTION_DAYS = 400;
/** Days one results request may span. */
export const FUNNEL_MAX_DAYS = 90;

export const DAY_MS = 86_400_000;
export const dayOf = (t: number): number => Math.floor(t / DAY_MS);
export const isoDay = (day: number): string => new Date(day * DAY_MS).toISOString().slice(0, 10);

const WINDOW = /^(\d+)(s|m|h|d)$/;
const WINDOW_UNIT = { s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS } as const;

export const FunnelStep = z.strictObject({
  stream: z
    .string()
    .refine(isStreamName, "a stream name ([A-Za-z0-9_.:-]{1,128})")
    .describe("The stream whose events make this step."),
  filters: z
    .array(FilterSpec)
    .max(MAX_STEP_FILTERS)
    .optional()
    .describe(
      "Only events whose dims pass every filter make the step (as in queries; an event without the dim passes only neq and not_in).",
    ),
});

export const FunnelCreate = z
  .strictObject({
    name: z.string().trim().min(1).max(100).describe("Unique within the tenant."),
    steps: z.array(FunnelStep).min(MIN_FUNNEL_STEPS).max(MAX_FUNNEL_STEPS),
    window: z
      .string()
      .regex(WINDOW, 'a duration like "30m", "2h" or "1d"')
      .describe("The conversion window: every step within this long after the first (at most 7d)."),
    breakdown: z
      .string()
      .min(1)
      .max(MAX_DIM_KEY_LENGTH)
      .optional()
      .describe("A dim key read from the first step's event; the results are also given per value of it."),
  })
  .meta({ id: "FunnelCreate", description: "A funnel: ordered steps within a conversion window per user." });
export type FunnelInput = z.input<typeof FunnelCreate>;

export interface FunnelStepDef {
  stream: string;
  filters: Filter[];
}

export interface FunnelDef {
  id: string;
  name: string;
  steps: FunnelStepDef[];
  window: string;
  window_ms: number;
  breakdown: string | null;
  created_at: number;
}

/** A parsed body → the definition (without id and time), or invalid_funnel naming the field. */
export function parseFunnel(body: z.output<typeof FunnelCreate>): Omit<FunnelDef, "id" | "created_at"> {
  const [, n, unit] = WINDOW.exec(body.window) as RegExpExecArray;
  const windowMs = Number(n) * WINDOW_UNIT[unit as keyof typeof WINDOW_UNIT];
  if (windowMs < 1000 || windowMs > MAX_FUNNEL_WINDOW_MS) {
    throw new CodedError("invalid_funnel", "window: must be from 1s to 7d.");
  }
  const steps = body.steps.map((s, i): FunnelStepDef => {
    try {
      return { stream: s.stream, filters: normalizeFilters(s.filters ?? [], `steps.${i}.filters`) };
    } catch (err) {
      if (err instanceof CodedError) throw new CodedError("invalid_funnel", err.message);
      throw err;
    }
  });
  // One event would make both steps at once (a journey would reach the second with its first event).
  for (let i = 1; i < steps.length; i++) {
    if (JSON.stringify(steps[i]) === JSON.stringify(steps[i - 1])) {
      throw new CodedError(
        "invalid_funnel",
        `steps.${i}: the same as step ${i - 1}; one event would make both. Give the steps different streams or filters.`,
      );
    }
  }
  return { name: body.name, steps, window: body.window, window_ms: windowMs, breakdown: body.breakdown ?? null };
}

/** Whether two definitions count the same thing (a repeated create with the same body is not a conflict). */
export function sameFunnel(a: Omit<FunnelDef, "id" | "created_at">, b: Omit<FunnelDef, "id" | "created_at">): boolean {
  const shape = (d: Omit<FunnelDef, "id" | "created_at">) =>
    JSON.stringify([d.name, d.steps, d.window_ms, d.breakdown]);
  return shape(a) === shape(b);
}

/** The API's view of a definition. */
export function funnelView(d: FunnelDef) {
  return {
    id: d.id,
    name: d.name,
    steps: d.steps.map((s) => ({ stream: s.stream, filters: s.filters })),
    window: d.window,
    window_ms: d.window_ms,
    breakdown: d.breakdown,
    created_at: new Date(d.created_at).toISOString(),
  };
}

// ---------------------------------------------------------------------------
// Taps: which of a stream's accepted events feed which funnel step.
// ---------------------------------------------------------------------------

/** One step of one funnel fed by a stream (a stream may feed several steps and funnels). */
export interface Tap {
  /** Funnel id. */
  f: string;
  /** Step index. */
  s: number;
  /** Steps in the funnel. */
  n: number;
  /** Window (ms). */
  w: number;
  filters: Filter[];
  /** The breakdown key (first step only). */
  b: string | null;
}

/** The taps of `stream` over every funnel of a tenant. */
export function tapsFor(stream: string, defs: FunnelDef[]): Tap[] {
  const out: Tap[] = [];
  for (const d of defs) {
    d.steps.forEach((s, i) => {
      if (s.stream === stream) {
        out.push({
          f: d.id,
          s: i,
          n: d.steps.length,
          w: d.window_ms,
          filters: s.filters,
          b: i === 0 ? d.breakdown : null,
        });
      }
    });
  }
  return out;
}

/** What one accepted event contributes to one funnel: sent to the user's funnel shard. */
export interface FunnelItem {
  f: string;
  s: number;
  n: number;
  w: number;
  /** User. */
  u: string;
  /** Event time. */
  t: number;
  /** Breakdown value (first step of a funnel with a breakdown). */
  b?: string;
}

/**
 * Items as they travel from a stream's actor to a funnel shard (stored in the outbox, passed as a string):
 * each funnel's step count and window once, then one array per item. About half the bytes of the items as
 * objects, and a string crosses the RPC boundary without a structured clone of every item.
 */
export function encodeItems(items: FunnelItem[]): string {
  const m: Record<string, [number, number]> = {};
  const i: Array<[string, number, string, number, string | null]> = [];
  for (const it of items) {
    m[it.f] ??= [it.n, it.w];
    i.push([it.f, it.s, it.u, it.t, it.b ?? null]);
  }
  return JSON.stringify({ m, i });
}

export function decodeItems(text: string): FunnelItem[] {
  const { m, i } = JSON.parse(text) as {
    m: Record<string, [number, number]>;
    i: Array<[string, number, string, number, string | null]>;
  };
  return i.map(([f, s, u, t, b]) => {
    const item: FunnelItem = { f, s, n: m[f][0], w: m[f][1], u, t };
    if (b !== null) item.b = b;
    return item;
  });
}

/** The items an event makes through a stream's taps: none without a user, one per tap it passes. */
export function tapEvent(taps: Tap[], e: StreamEvent, into: FunnelItem[]): void {
  if (e.user === undefined || e.user === "") return;
  for (const tap of taps) {
    let pass = true;
    for (const f of tap.filters) {
      const v = e.dims?.[f.dim];
      // An event without the dim passes only the filters that exclude values (neq, not_in).
      if (v === undefined ? f.op !== "neq" && f.op !== "not_in" : !matches(f, v)) {
        pass = false;
        break;
      }
    }
    if (!pass) continue;
    const item: FunnelItem = { f: tap.f, s: tap.s, n: tap.n, w: tap.w, u: e.user, t: e.ts };
    if (tap.b !== null) item.b = (e.dims?.[tap.b] ?? FUNNEL_NONE).slice(0, MAX_DIM_VALUE_LENGTH);
    into.push(item);
  }
}

/** The funnel shard of a user (FNV-1a over the id; stable across runtimes). */
export function funnelShardOf(user: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < user.length; i++) {
    h ^= user.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % FUNNEL_SHARDS;
}

// ---------------------------------------------------------------------------
// Journeys, and a user's state kept incrementally.
// ---------------------------------------------------------------------------

/** A kept step event: [time, step, breakdown value (first step only, else null)]. */
export type LogEntry = [number, number, string | null];

export interface Journey {
  start: number;
  /** The breakdown value of the event that opened it (null without a breakdown). */
  b: string | null;
  /** The last step reached (0 = only the first). */
  reached: number;
}

const byTimeThenStep = (x: LogEntry, y: LogEntry) => x[0] - y[0] || x[1] - y[1];

/**
 * The rule, one event at a time: the journey open after `e`, given the one open before it (changed in
 * place when it advances). `closed` receives a journey the event closed.
 */
function advance(open: Journey | null, e: LogEntry, windowMs: number, closed?: Journey[]): Journey | null {
  const [t, step, b] = e;
  let cur = open;
  if (cur !== null && t > cur.start + windowMs) {
    closed?.push(cur);
    cur = null;
  }
  if (cur === null) return step === 0 ? { start: t, b, reached: 0 } : null;
  if (step === cur.reached + 1) cur.reached = step;
  return cur;
}

/** The journeys of a user's step events, by the rule above. `log` must be sorted by time, then step. */
export function journeysOf(log: LogEntry[], windowMs: number, from: Journey | null = null): Journey[] {
  const out: Journey[] = [];
  let open: Journey | null = from === null ? null : { ...from };
  for (const e of log) open = advance(open, e, windowMs, out);
  if (open !== null) out.push(open);
  return out;
}

/** A journey as counted: its start, its breakdown value as seen and as counted (maybe folded), its last step. */
export type Counted = [number, string | null, string, number];

/**
 * A user's state in one funnel: the journey open at the cut (what the events before it, let go, left open),
 * the events from the cut on, and the journeys counted that may still change.
 */
export interface UserState {
  open: Journey | null;
  log: LogEntry[];
  counted: Counted[];
}

/** A change to the counts: `d` (±1) journeys at (day, breakdown value) for each step in [from, to]. */
export interface CountDelta {
  day: number;
  b: string;
  from: number;
  to: number;
  d: number;
}

export interface UserApply {
  state: UserState;
  deltas: CountDelta[];
  late: number;
  overflow: number;
}

/**
 * Adds a user's new step events to their state and returns the count changes: the user's journeys are
 * recomputed from the kept events, and the counts change by the difference from what was counted.
 * Events before `horizon` are late (nothing they could change is kept any more). `fold` chooses the value a
 * new journey is counted under (the breakdown budget).
 */
export function applyUser(
  prev: UserState | null,
  events: LogEntry[],
  windowMs: number,
  horizon: number,
  fold: (day: number, b: string) => string,
): UserApply {
  const log = prev ? prev.log.slice() : [];
  let late = 0;
  let overflow = 0;
  for (const e of events) {
    if (e[0] < horizon) late++;
    else if (log.length >= FUNNEL_MAX_USER_EVENTS) overflow++;
    else log.push(e);
  }
  log.sort(byTimeThenStep);
  const open = prev?.open ?? null;
  const journeys = journeysOf(log, windowMs, open);
  const before = new Map<string, Counted>();
  for (const c of prev?.counted ?? []) before.set(`${c[0]}|${c[1]}`, c);
  const deltas: CountDelta[] = [];
  const counted: Counted[] = [];
  for (const j of journeys) {
    const key = `${j.start}|${j.b}`;
    const old = before.get(key);
    const day = dayOf(j.start);
    if (old) {
      before.delete(key);
      if (j.reached > old[3]) deltas.push({ day, b: old[2], from: old[3] + 1, to: j.reached, d: 1 });
      else if (j.reached < old[3]) deltas.push({ day, b: old[2], from: j.reached + 1, to: old[3], d: -1 });
      counted.push([j.start, j.b, old[2], j.reached]);
    } else {
      const as = fold(day, j.b ?? FUNNEL_NONE);
      deltas.push({ day, b: as, from: 0, to: j.reached, d: 1 });
      counted.push([j.start, j.b, as, j.reached]);
    }
  }
  for (const old of before.values()) deltas.push({ day: dayOf(old[0]), b: old[2], from: 0, to: old[3], d: -1 });
  return { state: prune({ open, log, counted }, windowMs, horizon), deltas, late, overflow };
}

/**
 * Lets go of what can no longer change. No event before the horizon is taken any more, so the events
 * before it are replaced by what they leave: the journey open at the horizon (the rule run over them), and
 * journeys that ended before it leave the counted list (their counts stand). The journeys left are then
 * recomputed from the open one and the events kept exactly as they would be from every event.
 */
export function prune(state: UserState, windowMs: number, horizon: number): UserState {
  let open = state.open === null ? null : { ...state.open };
  let i = 0;
  for (; i < state.log.length && state.log[i][0] < horizon; i++) open = advance(open, state.log[i], windowMs);
  // Every event to come is at or after the horizon: a journey whose window ends before it is over.
  if (open !== null && open.start + windowMs < horizon) open = null;
  return {
    open,
    log: i === 0 ? state.log : state.log.slice(i),
    counted: state.counted.filter((c) => c[0] + windowMs >= horizon),
  };
}

/** Whether a state holds nothing that can still change (it can be deleted). */
export const isSpent = (s: UserState): boolean => s.log.length === 0 && s.counted.length === 0;

/** When a state can be let go entirely: once its last event and last journey's window are past the horizon. */
export function expiresAt(state: UserState, windowMs: number, horizonLagMs: number): number {
  // The open journey is in the counted list until it ends, so its window is covered below.
  let last = 0;
  for (const e of state.log) last = Math.max(last, e[0]);
  for (const c of state.counted) last = Math.max(last, c[0] + windowMs);
  return last + horizonLagMs + 1;
}

// ---------------------------------------------------------------------------
// Results.
// ---------------------------------------------------------------------------

/** A stored count: journeys started on `day` with breakdown value `b` that reached `step`. */
export interface CountRow {
  day: number;
  b: string;
  step: number;
  n: number;
}

const ratio = (a: number, b: number) => (b === 0 ? 0 : Math.round((a / b) * 10_000) / 10_000);

/** The results of a funnel over [fromDay, toDay] from its shards' count rows. */
export function funnelResults(def: FunnelDef, rows: CountRow[], fromDay: number, toDay: number) {
  const n = def.steps.length;
  const total = new Array<number>(n).fill(0);
  const byValue = new Map<string, number[]>();
  const byDay = new Map<number, number[]>();
  for (let d = fromDay; d <= toDay; d++) byDay.set(d, new Array<number>(n).fill(0));
  for (const r of rows) {
    if (r.day < fromDay || r.day > toDay || r.step < 0 || r.step >= n) continue;
    total[r.step] += r.n;
    (byDay.get(r.day) as number[])[r.step] += r.n;
    if (def.breakdown !== null) {
      const v = byValue.get(r.b) ?? new Array<number>(n).fill(0);
      byValue.set(r.b, v);
      v[r.step] += r.n;
    }
  }
  return {
    from: isoDay(fromDay),
    to: isoDay(toDay),
    steps: def.steps.map((s, i) => ({
      index: i,
      stream: s.stream,
      journeys: total[i],
      conversion: ratio(total[i], total[0]),
      from_previous: i === 0 ? ratio(total[0], total[0]) : ratio(total[i], total[i - 1]),
    })),
    breakdown: [...byValue.entries()]
      .map(([value, journeys]) => ({ value, journeys }))
      .sort((a, b) => b.journeys[0] - a.journeys[0] || (a.value < b.value ? -1 : 1)),
    days: [...byDay.entries()].map(([day, journeys]) => ({ day: isoDay(day), journeys })),
  };
}
