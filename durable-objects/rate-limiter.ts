/**
 * RateLimiter: one per tenant, the fallback when no Upstash Redis is
 * configured. Same sliding-window algorithm as the Redis limiter, counts in
 * memory only (a limiter that forgets after an eviction errs on the side of
 * letting traffic through, like the Redis limiter's fail-open).
 */
import { DurableObject } from "cloudflare:workers";
import { type LimitDecision, type LimitKind, slidingWindow } from "../core/ratelimit";

export class RateLimiter extends DurableObject<Env> {
  #counts = new Map<string, Map<number, number>>();

  limit(kind: LimitKind, limit: number, windowMs = 1000): LimitDecision {
    const key = `${kind}:${limit}:${windowMs}`;
    let counts = this.#counts.get(key);
    if (!counts) {
      counts = new Map();
      this.#counts.set(key, counts);
    }
    return slidingWindow(counts, limit, windowMs, Date.now());
  }
}
