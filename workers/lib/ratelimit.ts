import { Ratelimit } from "@upstash/ratelimit";
import type { MiddlewareHandler } from "hono";
import { type LimitDecision, type LimitKind, rateLimitHeaders } from "../../core/ratelimit";
import { ApiError } from "./errors";
import { redisFor } from "./redis";
import type { AppEnv } from "./types";

const limiters = new Map<string, Ratelimit>();

function upstashLimiter(env: Env, kind: LimitKind, limit: number, timeoutMs: number): Ratelimit | null {
  const redis = redisFor(env);
  if (!redis) return null;
  const key = `${env.UPSTASH_REDIS_REST_URL}|${kind}|${limit}|${timeoutMs}`;
  let rl = limiters.get(key);
  if (!rl) {
    rl = new Ratelimit({
      redis,
      limiter: Ratelimit.slidingWindow(limit, "1 s"),
      prefix: `ep:rl:${kind}:${limit}`,
      timeout: timeoutMs,
      analytics: false,
      ephemeralCache: false,
    });
    limiters.set(key, rl);
  }
  return rl;
}

/**
 * Per-tenant request limits, checked right after authentication and before
 * any body is read or actor woken. Upstash Redis when configured; it fails
 * open, marked `X-RateLimit-Degraded`, when Redis is slow (after
 * RATE_LIMIT_TIMEOUT_MS: `redis-timeout`) or failing in any other way
 * (refused, DNS, 5xx, garbage: `redis-error`): a Redis outage must not become
 * an ingest outage, and acknowledged data is never at risk. Without Redis,
 * the tenant's RateLimiter Durable Object decides.
 */
export function rateLimit(kind: LimitKind): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const { tenantId, limits } = c.get("grant");
    const config = c.get("config");
    const limit =
      (kind === "ingest" ? limits?.ingest_per_sec : limits?.read_per_sec) ??
      (kind === "ingest" ? config.RATE_LIMIT_INGEST_PER_SEC : config.RATE_LIMIT_READ_PER_SEC);
    const rl = upstashLimiter(c.env, kind, limit, config.RATE_LIMIT_TIMEOUT_MS);
    let d: LimitDecision;
    if (rl) {
      try {
        const r = await rl.limit(tenantId);
        d = { success: r.success, limit: r.limit, remaining: Math.max(0, r.remaining), reset: r.reset };
        if (r.reason === "timeout") d.degraded = "redis-timeout";
      } catch {
        // Refused, unresolvable, 5xx or garbage: fail open exactly like a timeout (limits protect capacity, not data).
        d = { success: true, limit, remaining: limit, reset: Date.now() + 1000, degraded: "redis-error" };
      }
    } else {
      d = (await c.env.RATE_LIMITER.getByName(tenantId).limit(kind, limit)) as LimitDecision;
    }
    const headers = rateLimitHeaders(d, Date.now());
    if (!d.success) {
      throw new ApiError(
        "rate_limited",
        `This tenant's ${kind} limit is ${limit} requests per second; retry after ${headers["Retry-After"]} s (or batch more events per request).`,
        undefined,
        headers,
      );
    }
    await next();
    if (c.res.status === 101) return; // a WebSocket handshake: nothing to add
    try {
      for (const [k, v] of Object.entries(headers)) c.res.headers.set(k, v);
    } catch {
      // Immutable headers (a response passed through from elsewhere): the limit still applied.
    }
  };
}
