/**
 * Alert rules and their state machine, runtime-free.
 *
 * States follow Prometheus: inactive → pending (condition true, waiting out
 * `for`) → firing → resolved (then inactive again). `keep_firing_for` keeps
 * an alert firing that long after the condition last held; a resolve
 * threshold adds hysteresis: once firing, the alert stays active until the
 * value crosses the resolve threshold, not merely the trigger threshold.
 * A no-data rule is active while no event has arrived for `no_data`.
 */
import { z } from "zod";
import type { Figures } from "./aggregate.ts";
import { CodedError } from "./errors.ts";
import { isStreamName } from "./event.ts";
import type { AlertEvent } from "./live.ts";
import { MEASURES, type Measure } from "./measures.ts";
import { describeIssues } from "./schemas.ts";
import { isoOrNull, isoTime } from "./time.ts";
import { WINDOW_NAMES, type WindowName } from "./window.ts";

/** Any live figure (core/measures.ts) but value_count, which no one alerts on. */
export type AggregateName = Exclude<Measure, "value_count">;
export const AGGREGATES = MEASURES.filter((m): m is AggregateName => m !== "value_count") as [
  AggregateName,
  ...AggregateName[],
];
export const COMPARATORS = [">", ">=", "<", "<="] as const;
export type Comparator = (typeof COMPARATORS)[number];

export interface AlertRule {
  id: string;
  name: string;
  stream: string;
  /** "threshold": aggregate over window compared with threshold; "no_data": no event for no_data_ms. */
  kind: "threshold" | "no_data";
  aggregate: AggregateName;
  window: WindowName;
  comparator: Comparator;
  threshold: number;
  /** Once firing, stays active while the value still compares true against this (hysteresis). Defaults to threshold. */
  resolve_threshold: number | null;
  for_ms: number;
  keep_firing_for_ms: number;
  no_data_ms: number;
  labels: Record<string, string>;
  targets: string[];
  enabled: boolean;
  created_at: number;
  updated_at: number;
}

export type AlertStateName = "inactive" | "pending" | "firing";

export interface AlertState {
  state: AlertStateName;
  /** When the condition started holding (pending/firing). */
  activeSince: number | null;
  /** When the alert started firing. */
  firingSince: number | null;
  /** Last evaluation at which the condition held. */
  lastTrueAt: number | null;
  value: number | null;
}

export const INITIAL_STATE: AlertState = {
  state: "inactive",
  activeSince: null,
  firingSince: null,
  lastTrueAt: null,
  value: null,
};

export type TransitionKind = "pending" | "firing" | "resolved" | "cancelled";

export interface Transition {
  kind: TransitionKind;
  at: number;
  value: number | null;
}

export interface EvalInput {
  now: number;
  /** The rule's window figures now. */
  figures: Figures | null;
  /** Time of the stream's last accepted event, or null if none ever. */
  lastEventAt: number | null;
}

const compare = (v: number, c: Comparator, t: number) =>
  c === ">" ? v > t : c === ">=" ? v >= t : c === "<" ? v < t : v <= t;

/** The rule's observed value: the aggregate, or for no-data rules the ms since the last event. */
export function observe(rule: AlertRule, input: EvalInput): number | null {
  if (rule.kind === "no_data") {
    const since = input.lastEventAt ?? rule.created_at;
    return Math.max(0, input.now - since);
  }
  const f = input.figures;
  if (f === null) return null;
  const v = f[rule.aggregate];
  return typeof v === "number" ? v : null;
}

/** Whether the rule's condition holds, given whether the alert is already active (hysteresis). */
export function conditionHolds(rule: AlertRule, value: number | null, active: boolean): boolean {
  if (value === null) return false;
  if (rule.kind === "no_data") return value >= rule.no_data_ms;
  const limit = active && rule.resolve_threshold !== null ? rule.resolve_threshold : rule.threshold;
  return compare(value, rule.comparator, limit);
}

/** One evaluation step. Pure: returns the next state and the transitions it made (stored, pushed, delivered). */
export function evaluate(
  rule: AlertRule,
  prev: AlertState,
  input: EvalInput,
): { state: AlertState; transitions: Transition[] } {
  const { now } = input;
  const value = observe(rule, input);
  const transitions: Transition[] = [];
  const s: AlertState = { ...prev, value };
  if (!rule.enabled) {
    if (prev.state === "firing") transitions.push({ kind: "resolved", at: now, value });
    return { state: { ...INITIAL_STATE, value }, transitions };
  }
  const holds = conditionHolds(rule, value, prev.state === "firing");
  if (holds) s.lastTrueAt = now;
  switch (prev.state) {
    case "inactive":
      if (!holds) return { state: s, transitions };
      s.activeSince = now;
      if (rule.for_ms <= 0) {
        s.state = "firing";
        s.firingSince = now;
        transitions.push({ kind: "firing", at: now, value });
      } else {
        s.state = "pending";
        transitions.push({ kind: "pending", at: now, value });
      }
      return { state: s, transitions };
    case "pending":
      if (!holds) {
        transitions.push({ kind: "cancelled", at: now, value });
        return { state: { ...INITIAL_STATE, value }, transitions };
      }
      if (now - (s.activeSince as number) >= rule.for_ms) {
        s.state = "firing";
        s.firingSince = now;
        transitions.push({ kind: "firing", at: now, value });
      }
      return { state: s, transitions };
    case "firing":
      if (holds) return { state: s, transitions };
      if (s.lastTrueAt !== null && now - s.lastTrueAt < rule.keep_firing_for_ms) return { state: s, transitions };
      transitions.push({ kind: "resolved", at: now, value });
      return { state: { ...INITIAL_STATE, value }, transitions };
  }
}

/** When the state can next change without new data (for the alarm), or null. */
export function nextDeadline(rule: AlertRule, st: AlertState, lastEventAt: number | null): number | null {
  if (!rule.enabled) return null;
  const times: number[] = [];
  if (st.state === "pending" && st.activeSince !== null) times.push(st.activeSince + rule.for_ms);
  if (st.state === "firing" && st.lastTrueAt !== null && rule.keep_firing_for_ms > 0) {
    times.push(st.lastTrueAt + rule.keep_firing_for_ms);
  }
  if (rule.kind === "no_data" && st.state === "inactive")
    times.push((lastEventAt ?? rule.created_at) + rule.no_data_ms);
  return times.length ? Math.min(...times) : null;
}

/**
 * Applies an edit: a change to what the condition means (stream, kind,
 * aggregate, window, comparator, threshold, no-data duration) restarts a
 * pending alert's `for` clock; a firing alert stays firing and is judged by
 * the new rule at the next evaluation.
 */
export function stateAfterEdit(before: AlertRule, after: AlertRule, st: AlertState): AlertState {
  const keys = ["stream", "kind", "aggregate", "window", "comparator", "threshold", "no_data_ms"] as const;
  const changed = keys.some((k) => before[k] !== after[k]);
  if (st.state === "pending" && changed) return { ...INITIAL_STATE, value: st.value };
  return st;
}

/** A rule as the API shows it: its times as ISO-8601 strings (core/time.ts). */
export type AlertRuleView = Omit<AlertRule, "created_at" | "updated_at"> & { created_at: string; updated_at: string };

/** A rule's state as the API shows it: snake_case, times as ISO-8601 strings or null. */
export interface AlertStateView {
  state: AlertStateName;
  active_since: string | null;
  firing_since: string | null;
  last_true_at: string | null;
  value: number | null;
}

export interface RuleView {
  rule: AlertRuleView;
  state: AlertStateView;
}

/** A rule with its state, as stored by its actor, in the API's form. */
export function ruleView({ rule, state }: { rule: AlertRule; state: AlertState }): RuleView {
  return {
    rule: { ...rule, created_at: isoTime(rule.created_at), updated_at: isoTime(rule.updated_at) },
    state: {
      state: state.state,
      active_since: isoOrNull(state.activeSince),
      firing_since: isoOrNull(state.firingSince),
      last_true_at: isoOrNull(state.lastTrueAt),
      value: state.value,
    },
  };
}

/** An alert transition as the API shows it (GET /v1/alerts, /v1/alerts/events, webhook bodies). */
export type AlertEventView = Omit<AlertEvent, "at"> & { at: string };

/** An alert transition (or anything carrying one's fields) in the API's form: `at` as an ISO-8601 string. */
export function alertEventView<E extends { at: number }>(e: E): Omit<E, "at"> & { at: string } {
  return { ...e, at: isoTime(e.at) };
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** Parses "2m", "30s", "1h", "500ms" or a number of ms. */
export function parseDuration(raw: unknown, field: string): number {
  if (raw === undefined || raw === null) return 0;
  if (typeof raw === "number" && Number.isFinite(raw) && raw >= 0) return Math.round(raw);
  if (typeof raw === "string") {
    const m = DURATION.exec(raw.trim());
    if (m) return Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]);
  }
  throw new CodedError("invalid_rule", `${field} must be a duration like "30s", "2m", "1h" or a number of ms.`);
}

const MAX_DURATION_MS = 24 * 3_600_000;
const MAX_TARGETS = 5;
const MAX_LABELS = 16;

const duration = (field: string) =>
  z.union([z.number(), z.string()]).transform((raw, ctx) => {
    try {
      const ms = parseDuration(raw, field);
      if (ms > MAX_DURATION_MS) ctx.addIssue({ code: "custom", message: "must be at most 24h" });
      return ms;
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message.replace(`${field} `, "") });
      return z.NEVER;
    }
  });

/** The fields of a rule body, each validated on its own (create and PATCH bodies both use it). */
export const RuleBody = z
  .strictObject({
    name: z.string().min(1).max(200).optional().describe("Shown in notifications; defaults to '<stream> <kind>'."),
    stream: z
      .string()
      .refine(isStreamName, "must be a stream name ([A-Za-z0-9_.:-]{1,128}, not only dots)")
      .optional()
      .describe("The stream the rule watches (required on create)."),
    kind: z.enum(["threshold", "no_data"]).optional(),
    aggregate: z.enum(AGGREGATES).optional().describe("Any live figure; default count."),
    window: z
      .enum(WINDOW_NAMES as [WindowName, ...WindowName[]])
      .optional()
      .describe("Default 5m."),
    comparator: z.enum(COMPARATORS).optional().describe('Default ">".'),
    threshold: z.number().finite().optional(),
    resolve_threshold: z
      .number()
      .finite()
      .nullable()
      .optional()
      .describe("Hysteresis: once firing, the alert resolves only past this."),
    for: duration("for").optional(),
    keep_firing_for: duration("keep_firing_for").optional(),
    no_data: duration("no_data").optional(),
    labels: z
      .record(z.string().min(1).max(64), z.string().max(256))
      .refine((l) => Object.keys(l).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`)
      .optional(),
    targets: z.array(z.string()).max(MAX_TARGETS).optional().describe("Webhook URLs (https)."),
    enabled: z.boolean().optional(),
  })
  .meta({ id: "RuleBody", description: "An alert rule: all of it to create one, any subset to update one." });
export type RuleBodyInput = z.input<typeof RuleBody>;
export type RuleFields = z.output<typeof RuleBody>;

const fail = (msg: string): never => {
  throw new CodedError("invalid_rule", msg);
};

/** Parses a rule body with RuleBody, then resolves it (see resolveRule). */
export function validateRule(
  body: unknown,
  base: { id: string; now: number; existing?: AlertRule },
  allowHttp: boolean,
): AlertRule {
  const parsed = RuleBody.safeParse(body);
  if (!parsed.success) {
    const { message, details } = describeIssues(parsed.error);
    throw new CodedError("invalid_rule", message, details);
  }
  return resolveRule(parsed.data, base, allowHttp);
}

/**
 * Builds a rule from validated fields (create: all of them; update: merged over the existing rule) and
 * checks what spans fields: kind, threshold, the resolve side, no-data durations, target URLs.
 */
export function resolveRule(
  given: RuleFields,
  base: { id: string; now: number; existing?: AlertRule },
  allowHttp: boolean,
): AlertRule {
  const before = base.existing;
  const pick = <K extends keyof typeof given>(k: K, old: unknown) => (given[k] !== undefined ? given[k] : old);
  const stream = pick("stream", before?.stream) as string | undefined;
  if (stream === undefined) fail("stream: required.");
  const threshold = pick("threshold", before?.kind === "threshold" ? before.threshold : undefined) as
    | number
    | undefined;
  const noData = pick("no_data", before?.no_data_ms) as number | undefined;
  const kind = (given.kind ??
    before?.kind ??
    (noData !== undefined && threshold === undefined ? "no_data" : "threshold")) as AlertRule["kind"];
  const comparator = (pick("comparator", before?.comparator) ?? ">") as Comparator;
  if (kind === "threshold" && threshold === undefined) fail("threshold: required for a threshold rule.");
  const resolve = (pick("resolve_threshold", before?.resolve_threshold) ?? null) as number | null;
  if (resolve !== null && kind === "threshold") {
    const above = comparator === ">" || comparator === ">=";
    const ok = above ? resolve <= (threshold as number) : resolve >= (threshold as number);
    if (!ok) {
      fail(
        `resolve_threshold: must be on the safe side of threshold (for "${comparator}": ${above ? "≤" : "≥"} ${threshold}).`,
      );
    }
  }
  const noDataMs = noData ?? 0;
  if (kind === "no_data" && noDataMs <= 0) fail('no_data: a no_data rule needs no_data > 0, e.g. "3m".');
  const targets = (pick("targets", before?.targets) ?? []) as string[];
  for (const t of targets) {
    let u: URL | null = null;
    try {
      u = new URL(t);
    } catch {
      u = null;
    }
    if (!u || !(u.protocol === "https:" || (allowHttp && u.protocol === "http:"))) {
      fail(`targets: ${JSON.stringify(t).slice(0, 80)} must be an ${allowHttp ? "http(s)" : "https"} URL.`);
    }
  }
  return {
    id: base.id,
    name: (pick("name", before?.name) ?? `${stream} ${kind}`) as string,
    stream: stream as string,
    kind,
    aggregate: (pick("aggregate", before?.aggregate) ?? "count") as AggregateName,
    window: (pick("window", before?.window) ?? "5m") as WindowName,
    comparator,
    threshold: kind === "threshold" ? (threshold as number) : 0,
    resolve_threshold: resolve,
    for_ms: (pick("for", before?.for_ms) ?? 0) as number,
    keep_firing_for_ms: (pick("keep_firing_for", before?.keep_firing_for_ms) ?? 0) as number,
    no_data_ms: noDataMs,
    labels: { ...((pick("labels", before?.labels) ?? {}) as Record<string, string>) },
    targets,
    enabled: (pick("enabled", before?.enabled) ?? true) as boolean,
    created_at: before?.created_at ?? base.now,
    updated_at: base.now,
  };
}

/** HMAC-SHA256 webhook signature over `${timestamp}.${body}`, hex. */
export async function signWebhook(secret: string, timestamp: number, body: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${timestamp}.${body}`));
  return Array.from(new Uint8Array(mac), (x) => x.toString(16).padStart(2, "0")).join("");
}

export const SIGNATURE_HEADER = "x-edgepulse-signature";

/** How far a webhook's signed timestamp may be from the receiver's clock (s) before it is refused as a replay. */
export const SIGNATURE_TOLERANCE_S = 300;

export type SignatureCheck = "valid" | "missing" | "malformed" | "mismatch" | "expired";

/**
 * Checks an `X-Edgepulse-Signature: t=<unix s>,v1=<hex>` header against the raw body and the tenant's
 * secret: the MAC must match (compared in constant time) and `t` lie within `toleranceS` of `nowS`.
 */
export async function verifyWebhook(
  header: string | null | undefined,
  body: string,
  secret: string,
  nowS: number,
  toleranceS = SIGNATURE_TOLERANCE_S,
): Promise<SignatureCheck> {
  if (!header) return "missing";
  const parts = new Map(
    header.split(",").map((p) => {
      const i = p.indexOf("=");
      return [p.slice(0, i).trim(), p.slice(i + 1).trim()] as const;
    }),
  );
  const t = Number(parts.get("t"));
  const v1 = parts.get("v1");
  if (!Number.isInteger(t) || !v1 || !/^[0-9a-f]{64}$/.test(v1)) return "malformed";
  const want = await signWebhook(secret, t, body);
  let diff = 0;
  for (let i = 0; i < want.length; i++) diff |= want.charCodeAt(i) ^ v1.charCodeAt(i);
  if (diff !== 0) return "mismatch";
  return Math.abs(nowS - t) > toleranceS ? "expired" : "valid";
}

/** Retry schedule for webhook deliveries: 1 s, 2 s, 4 s … capped at 5 min; given up after this many attempts. */
export const DELIVERY_MAX_ATTEMPTS = 12;
export function deliveryBackoffMs(attempts: number): number {
  return Math.min(300_000, 1000 * 2 ** Math.max(0, attempts - 1));
}
