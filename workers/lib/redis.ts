/**
 * Upstash Redis at the edge (rate limits, key cache) when
 * UPSTASH_REDIS_REST_URL / UPSTASH_REDIS_REST_TOKEN are set. Calls are
 * bounded: no retries, and callers give up after a short timeout, so a slow
 * or absent Redis degrades to the fallback instead of stalling requests.
 */
import { Redis } from "@upstash/redis/cloudflare";

let cached: { url: string; client: Redis } | null = null;

export function redisFor(env: Env): Redis | null {
  const url = env.UPSTASH_REDIS_REST_URL;
  const token = env.UPSTASH_REDIS_REST_TOKEN;
  if (!url || !token) return null;
  if (cached === null || cached.url !== url) {
    cached = { url, client: new Redis({ url, token, enableTelemetry: false, retry: { retries: 0 } }) };
  }
  return cached.client;
}

export { within } from "../../core/async";

/** Key of a cached grant in Redis. */
export const grantKey = (hash: string) => `ep:key:${hash}`;
