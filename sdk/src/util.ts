import type { WireEvent } from "./types.ts";

/** 16 random bytes as 32 hex chars. getRandomValues exists in every target, secure context or not. */
export function randomId(bytes: (n: number) => Uint8Array = (n) => crypto.getRandomValues(new Uint8Array(n))): string {
  let s = "";
  for (const b of bytes(16)) s += (b < 16 ? "0" : "") + b.toString(16);
  return s;
}

/**
 * `Retry-After` in milliseconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3); undefined when absent
 * or unreadable (a cross-origin browser cannot read it unless the server exposes it).
 */
export function parseRetryAfter(header: string | null | undefined, now: number): number | undefined {
  if (header == null || header.trim() === "") return undefined;
  const s = header.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const t = Date.parse(s);
  return Number.isFinite(t) ? Math.max(0, t - now) : undefined;
}

/**
 * Delay before retry number `attempt` (0 for the first retry): exponential from `baseMs`, capped at
 * `maxMs`, with "equal jitter" (half fixed, half random) so clients that failed together spread out.
 * Never less than the server's `Retry-After`, nor than `floorMs` (e.g. 1 s for a 429 whose Retry-After
 * could not be read).
 */
export function backoffDelay(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number,
  retryAfterMs?: number,
  floorMs = 0,
): number {
  const exp = Math.min(maxMs, baseMs * 2 ** attempt);
  const jittered = exp / 2 + random() * (exp / 2);
  return Math.ceil(Math.max(jittered, retryAfterMs ?? 0, floorMs));
}

const encoder = new TextEncoder();
export const byteLength = (s: string): number => encoder.encode(s).byteLength;

/**
 * Splits events into batches of at most `maxEvents` events and `maxBytes` bytes of JSON array (what the
 * collector counts against MAX_BODY_BYTES). An event larger than `maxBytes` travels alone (the collector
 * then refuses it with body_too_large, reported for that event only).
 */
export function toBatches(events: WireEvent[], maxEvents: number, maxBytes: number): WireEvent[][] {
  const out: WireEvent[][] = [];
  let cur: WireEvent[] = [];
  let size = 2; // "[" + "]"
  for (const e of events) {
    const n = byteLength(JSON.stringify(e)) + 1; // the comma
    if (cur.length > 0 && (cur.length >= maxEvents || size + n > maxBytes)) {
      out.push(cur);
      cur = [];
      size = 2;
    }
    cur.push(e);
    size += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

export const clamp = (v: number | undefined, def: number, min: number, max: number): number =>
  v === undefined || !Number.isFinite(v) ? def : Math.min(max, Math.max(min, Math.floor(v)));
