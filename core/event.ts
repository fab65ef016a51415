import type { Config } from "./config.ts";
import { EVENT_ERRORS, type EventErrorCode } from "./errors.ts";

/** The event schema (DESIGN.md §3), declared once. */
export const EVENT_SCHEMA = {
  id: { required: false, description: "Client-chosen id; duplicates within the dedup horizon are counted once." },
  name: { required: true, description: "Stream name: [A-Za-z0-9_.:-]{1,128}." },
  ts: { required: false, description: "Event time: epoch ms or ISO-8601 with zone. Default: receive time." },
  value: { required: false, description: "A finite number (latency, amount...)." },
  user: { required: false, description: "User id; feeds distinct-user counts." },
  dims: { required: false, description: "Up to 16 string-to-string dimensions." },
} as const;

export const NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
/** "." and ".." (any name of dots only) would be collapsed out of a URL path: such a name could never be read. */
const ONLY_DOTS = /^\.+$/;
/**
 * Largest |value| accepted. Any sum of accepted values stays finite (overflowing float64 would take
 * more than 10^293 events) and far from losing its integer part; nothing real is measured beyond it.
 */
export const MAX_ABS_VALUE = 1e15;
export const MAX_ID_LENGTH = 128;
export const MAX_USER_LENGTH = 256;
export const MAX_DIMS = 16;
export const MAX_DIM_KEY_LENGTH = 64;
export const MAX_DIM_VALUE_LENGTH = 256;
/** Epoch ms before 2001-09-09 are refused: they are almost always seconds sent by mistake. */
export const MIN_EPOCH_MS = 1_000_000_000_000;
/** Epoch ms from 5138-11-16 on are refused: they are almost always microseconds sent by mistake. */
export const MAX_EPOCH_MS = 1e14;
export const ISO_PATTERN = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-](\d{2}):?(\d{2}))$/;

/** Date.parse rolls impossible dates over (Feb 30 → Mar 2): check every field is in range first. */
function isoFieldsValid(m: RegExpExecArray): boolean {
  const [y, mo, d, h, mi] = [1, 2, 3, 4, 5].map((i) => Number(m[i]));
  const sec = m[6] === undefined ? 0 : Number(m[6]);
  const daysInMonth = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  const offsetOk = m[8] === "Z" || (Number(m[9]) <= 14 && Number(m[10]) <= 59);
  return mo >= 1 && mo <= 12 && d >= 1 && d <= daysInMonth && h <= 23 && mi <= 59 && sec <= 59 && offsetOk;
}

/** A validated event, as routed to its actor. */
export interface StreamEvent {
  id?: string;
  ts: number;
  value?: number;
  user?: string;
  dims?: Record<string, string>;
}

export interface NamedEvent {
  name: string;
  event: StreamEvent;
}

export type Validation =
  | { ok: true; name: string; event: StreamEvent }
  | { ok: false; name?: string; code: EventErrorCode; message: string };

const fail = (code: EventErrorCode, detail?: string, name?: string): Validation => ({
  ok: false,
  name,
  code,
  message: detail ? `${EVENT_ERRORS[code]} ${detail}` : EVENT_ERRORS[code],
});

/** A stream name: [A-Za-z0-9_.:-]{1,128}, and not only dots (it appears in URL paths). */
export function isStreamName(s: unknown): s is string {
  return typeof s === "string" && NAME_PATTERN.test(s) && !ONLY_DOTS.test(s);
}

export function parseTimestamp(raw: unknown): number | undefined {
  if (typeof raw === "number") {
    return Number.isFinite(raw) && raw >= MIN_EPOCH_MS && raw < MAX_EPOCH_MS ? Math.floor(raw) : undefined;
  }
  const m = typeof raw === "string" ? ISO_PATTERN.exec(raw) : null;
  if (m && isoFieldsValid(m)) {
    const t = Date.parse(raw as string);
    return Number.isFinite(t) && t >= MIN_EPOCH_MS ? t : undefined;
  }
  return undefined;
}

const describe = (v: unknown): string => {
  // JSON numbers beyond ±1.8e308 parse to ±Infinity (JSON.stringify would say "null").
  if (typeof v === "number" && !Number.isFinite(v)) {
    return Number.isNaN(v) ? "NaN" : "a number beyond the range of a double (±1.8e308)";
  }
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 40 ? `${s.slice(0, 40)}…` : s;
};

/** Validates one decoded event. `now` is the receive time, used when ts is absent. */
export function validateEvent(raw: unknown, now: number): Validation {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return fail("not_an_object");
  const obj = raw as Record<string, unknown>;
  const name = obj.name;
  if (!isStreamName(name))
    return fail("invalid_name", name === undefined ? "It is missing." : `Got ${describe(name)}.`);
  for (const key of Object.keys(obj)) {
    if (!Object.hasOwn(EVENT_SCHEMA, key)) {
      return fail("unknown_field", `'${key.slice(0, 64)}' is not one of id, name, ts, value, user, dims.`, name);
    }
  }
  const event: StreamEvent = { ts: now };
  if (obj.id !== undefined) {
    if (typeof obj.id !== "string" || obj.id.length === 0 || obj.id.length > MAX_ID_LENGTH) {
      return fail("invalid_id", undefined, name);
    }
    event.id = obj.id;
  }
  if (obj.ts !== undefined) {
    const ts = parseTimestamp(obj.ts);
    if (ts === undefined) return fail("invalid_timestamp", `Got ${describe(obj.ts)}.`, name);
    event.ts = ts;
  }
  if (obj.value !== undefined) {
    if (typeof obj.value !== "number" || !Number.isFinite(obj.value) || Math.abs(obj.value) > MAX_ABS_VALUE) {
      return fail("invalid_value", `Got ${describe(obj.value)}.`, name);
    }
    event.value = obj.value;
  }
  if (obj.user !== undefined) {
    if (typeof obj.user !== "string" || obj.user.length === 0 || obj.user.length > MAX_USER_LENGTH) {
      return fail("invalid_user", undefined, name);
    }
    event.user = obj.user;
  }
  if (obj.dims !== undefined) {
    const dims = obj.dims;
    if (dims === null || typeof dims !== "object" || Array.isArray(dims)) return fail("invalid_dims", undefined, name);
    const entries = Object.entries(dims);
    if (entries.length > MAX_DIMS) return fail("invalid_dims", `Got ${entries.length} keys.`, name);
    const out: Record<string, string> = Object.create(null);
    for (const [k, v] of entries) {
      if (k.length === 0 || k.length > MAX_DIM_KEY_LENGTH || typeof v !== "string" || v.length > MAX_DIM_VALUE_LENGTH) {
        return fail(
          "invalid_dims",
          `Key '${k.slice(0, 64)}' must be 1-64 chars with a string value of ≤256 chars.`,
          name,
        );
      }
      out[k] = v;
    }
    event.dims = { ...out };
  }
  return { ok: true, name, event };
}

/** Event-time admission, applied by the actor against its own clock. */
export function admitTime(ts: number, now: number, config: Config): EventErrorCode | undefined {
  if (ts < now - config.ALLOWED_LATENESS_MS) return "too_late";
  if (ts > now + config.MAX_FUTURE_SKEW_MS) return "too_far_in_future";
  return undefined;
}

export type BodyFormat = "json" | "ndjson" | "text";

/** The media types POST /v1/events takes, and the body format each one means. */
export const BODY_CONTENT_TYPES: Readonly<Record<string, BodyFormat>> = {
  "application/json": "json",
  "application/x-ndjson": "ndjson",
  "application/ndjson": "ndjson",
  "application/jsonl": "ndjson",
  "application/x-jsonlines": "ndjson",
  "text/plain": "text",
};

/** Maps a Content-Type header to a body format, or undefined when unsupported. */
export function bodyFormat(contentType: string | null): BodyFormat | undefined {
  const type = (contentType ?? "").split(";")[0].trim().toLowerCase();
  return Object.hasOwn(BODY_CONTENT_TYPES, type) ? BODY_CONTENT_TYPES[type] : undefined;
}

/** Events nest at most array → event → dims. */
export const MAX_JSON_DEPTH = 3;

/** Deepest nesting of objects and arrays in a JSON text (strings skipped), scanning at most until `limit` is passed. */
export function jsonDepth(text: string, limit = MAX_JSON_DEPTH): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 92)
        i++; // backslash: skip the escaped character
      else if (ch === 34) inString = false;
    } else if (ch === 34) inString = true;
    else if (ch === 123 || ch === 91) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (ch === 125 || ch === 93) depth--;
  }
  return max;
}

/** A decoded item: a parsed value, or why the line/element could not be parsed. */
export type DecodedItem = { ok: true; value: unknown } | { ok: false; code: "malformed_json" | "too_deep" };

export type DecodedBody = { ok: true; items: DecodedItem[] } | { ok: false; message: string; code?: "body_too_deep" };

/** Events nest at most event → dims: one NDJSON line may not nest deeper. */
const MAX_LINE_DEPTH = MAX_JSON_DEPTH - 1;

/** One event per line; a bad line (unparseable, or nested too deep) rejects only itself. */
function parseNdjson(text: string): DecodedBody {
  const items: DecodedItem[] = [];
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "") continue;
    if (jsonDepth(trimmed, MAX_LINE_DEPTH) > MAX_LINE_DEPTH) {
      items.push({ ok: false, code: "too_deep" });
      continue;
    }
    try {
      items.push({ ok: true, value: JSON.parse(trimmed) });
    } catch {
      items.push({ ok: false, code: "malformed_json" });
    }
  }
  return { ok: true, items };
}

/**
 * Decodes a body into raw events. A JSON body is an object or an array; NDJSON
 * is one event per line (a bad line rejects only that event); text/plain is
 * JSON if it parses as one document, NDJSON otherwise.
 */
export function decodeBody(text: string, format: BodyFormat): DecodedBody {
  // NDJSON is checked line by line: one bad line must not refuse the others.
  if (format === "ndjson") return parseNdjson(text);
  // Refuse deep nesting before parsing: it is never a valid batch and costs parser time and memory.
  if (jsonDepth(text) > MAX_JSON_DEPTH) {
    // text/plain may be NDJSON (beacons): then judge each line on its own.
    if (format === "text" && text.includes("\n")) return parseNdjson(text);
    return {
      ok: false,
      message: `The JSON nests deeper than ${MAX_JSON_DEPTH} levels (array → event → dims).`,
      code: "body_too_deep",
    };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    if (format === "text") return parseNdjson(text);
    return { ok: false, message: `Invalid JSON: ${(err as Error).message}` };
  }
  if (Array.isArray(doc)) return { ok: true, items: doc.map((value): DecodedItem => ({ ok: true, value })) };
  if (doc !== null && typeof doc === "object") return { ok: true, items: [{ ok: true, value: doc }] };
  return { ok: false, message: "The body must be a JSON object, an array of objects, or NDJSON." };
}
