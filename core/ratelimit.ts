/**
 * Rate limiting: a sliding window counter (the algorithm of
 * @upstash/ratelimit's slidingWindow, so the Redis limiter and the Durable
 * Object fallback decide alike) and the response headers both share.
 */
export type LimitKind = "ingest" | "read";

export interface LimitDecision {
  success: boolean;
  limit: number;
  remaining: number;
  /** When the current window ends (epoch ms). */
  reset: number;
  /** Set when the check could not be made and the request was let through. */
  degraded?: string;
}

/**
 * One sliding-window step: the previous window's count weighted by how much of
 * it still overlaps, plus the current window's count. Mutates `counts`
 * (window index → requests).
 */
export function slidingWindow(
  counts: Map<number, number>,
  limit: number,
  windowMs: number,
  now: number,
): LimitDecision {
  const current = Math.floor(now / windowMs);
  const inCurrent = counts.get(current) ?? 0;
  const inPrevious = counts.get(current - 1) ?? 0;
  const weightedPrevious = Math.floor((1 - (now % windowMs) / windowMs) * inPrevious);
  const reset = (current + 1) * windowMs;
  for (const k of counts.keys()) if (k < current - 1) counts.delete(k);
  if (weightedPrevious + inCurrent >= limit) return { success: false, limit, remaining: 0, reset };
  counts.set(current, inCurrent + 1);
  return { success: true, limit, remaining: Math.max(0, limit - (inCurrent + 1 + weightedPrevious)), reset };
}

/** IETF draft RateLimit-* headers plus the common X-RateLimit-* ones, and Retry-After when refused. */
export function rateLimitHeaders(d: LimitDecision, now: number): Record<string, string> {
  const resetSec = Math.max(0, Math.ceil((d.reset - now) / 1000));
  const h: Record<string, string> = {
    "RateLimit-Limit": String(d.limit),
    "RateLimit-Remaining": String(d.remaining),
    "RateLimit-Reset": String(resetSec),
    "X-RateLimit-Limit": String(d.limit),
    "X-RateLimit-Remaining": String(d.remaining),
    "X-RateLimit-Reset": String(Math.ceil(d.reset / 1000)),
  };
  if (!d.success) h["Retry-After"] = String(Math.max(1, resetSec));
  if (d.degraded) h["X-RateLimit-Degraded"] = d.degraded;
  return h;
}
