import type { Context, MiddlewareHandler } from "hono";
import { loadConfig } from "../../core/config";
import { hashKey, isStreamLimited, type Scope, scopeAllows, secretsEqual, streamAllowed } from "../../core/keys";
import { keyFromProtocols } from "../../core/live";
import { looksLikeJwt } from "../../core/oidc";
import type { KeyGrant } from "../../core/protocol";
import { tagged } from "../openapi/tag";
import { ApiError } from "./errors";
import { verifyToken } from "./oidc";
import { rateLimit } from "./ratelimit";
import { grantKey, redisFor, within } from "./redis";
import { directory, registry } from "./registry";
import type { AppEnv } from "./types";

/**
 * Verified keys, cached per isolate for KEY_CACHE_TTL_MS so the registries
 * are not asked on every request. Unknown keys are cached too (bounded),
 * which blunts guessing. Revoking through this isolate drops the entry at
 * once; other isolates see the revocation within the TTL.
 */
const MAX_CACHE_ENTRIES = 10_000;
const cache = new Map<string, { grant: KeyGrant | null; expires: number }>();

/** Redis copy of verified grants (shared by every isolate and location); dropped on revocation. */
const REDIS_KEY_TTL_S = 300;

/**
 * Forgets grants in this isolate and (bounded: a slow or failing Redis never fails the request) in
 * Redis. The tenant's registry also retries the Redis delete until it succeeds.
 */
export async function forgetHashes(env: Env, hashes: string[], timeoutMs: number): Promise<void> {
  for (const h of hashes) cache.delete(h);
  const redis = redisFor(env);
  if (redis && hashes.length > 0) await within(redis.del(...hashes.map(grantKey)), timeoutMs, 0);
}

/** Key hash → grant: isolate cache, then Redis, then the key directory and the tenant's registry. */
async function lookup(env: Env, key: string, ttlMs: number, redisTimeoutMs: number): Promise<KeyGrant | null> {
  const hash = await hashKey(key);
  const now = Date.now();
  const hit = cache.get(hash);
  if (hit && hit.expires > now) return hit.grant;
  const redis = redisFor(env);
  let grant: KeyGrant | null | undefined;
  if (redis) grant = (await within(redis.get<KeyGrant>(grantKey(hash)), redisTimeoutMs, null)) ?? undefined;
  if (grant === undefined) {
    const tenant = await directory(env).tenantOf(hash);
    grant = tenant === null ? null : ((await registry(env, tenant).verifyKey(hash)) as KeyGrant | null);
    // Only valid, unrevoked keys go to the shared cache; unknown keys stay in this isolate's short cache.
    if (redis && grant && !grant.revoked)
      await within(redis.set(grantKey(hash), grant, { ex: REDIS_KEY_TTL_S }), redisTimeoutMs, null);
  }
  if (cache.size >= MAX_CACHE_ENTRIES) cache.delete(cache.keys().next().value as string);
  cache.set(hash, { grant, expires: now + ttlMs });
  return grant;
}

function bearer(c: Context): string | undefined {
  const header = c.req.header("authorization");
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new ApiError("missing_key", "The Authorization header must be 'Bearer <key>'.");
  return m[1];
}

export const isUpgrade = (c: Context) => c.req.header("upgrade")?.toLowerCase() === "websocket";

export interface RequireKeyOptions {
  /** Accept `?key=` (for navigator.sendBeacon, which cannot set headers) on text/plain bodies only. */
  allowQueryKeyForText?: boolean;
}

/**
 * Authenticates an API key, or an OIDC token of a tenant's registered issuer (workers/lib/oidc.ts), of the
 * given scope and puts its grant on the context.
 */
export function requireKey(scope: Scope, options: RequireKeyOptions = {}): MiddlewareHandler<AppEnv> {
  return tagged({ auth: { scope, queryKeyForText: options.allowQueryKeyForText } }, async (c, next) => {
    // Browsers cannot set headers on a WebSocket: there the key travels as a subprotocol.
    let key =
      bearer(c) ?? (isUpgrade(c) ? keyFromProtocols(c.req.header("sec-websocket-protocol") ?? null) : undefined);
    const queryKey = c.req.query("key");
    if (key === undefined && queryKey !== undefined) {
      const isText = (c.req.header("content-type") ?? "").toLowerCase().startsWith("text/plain");
      if (!options.allowQueryKeyForText || !isText) {
        throw new ApiError(
          "missing_key",
          "A key in the query string is accepted only for text/plain beacons on /v1/events; send 'Authorization: Bearer <key>'.",
        );
      }
      key = queryKey;
    }
    if (key === undefined) throw new ApiError("missing_key");
    const config = loadConfig(c.env as unknown as Record<string, unknown>);
    // A JWT (three dot-separated base64url parts) is an OIDC token; anything else is an API key.
    const grant = looksLikeJwt(key)
      ? await verifyToken(c.env, key, config)
      : await lookup(c.env, key, config.KEY_CACHE_TTL_MS, config.RATE_LIMIT_TIMEOUT_MS);
    if (grant === null) throw new ApiError("invalid_key");
    if (grant.revoked) throw new ApiError("revoked_key");
    if (!scopeAllows(grant.scope, scope)) {
      const held = grant.keyId.startsWith("oidc:")
        ? `This token's role grants the '${grant.scope}' scope`
        : `This is a '${grant.scope}' key`;
      throw new ApiError("insufficient_scope", `${held}; this endpoint needs a '${scope}' key.`);
    }
    c.set("grant", grant);
    c.set("config", config);
    // Rate limits apply per tenant right after authentication, before any body is read or actor woken.
    await rateLimit(scope === "ingest" ? "ingest" : "read")(c, next);
  });
}

const describePrefixes = (grant: KeyGrant) => (grant.streamPrefixes ?? []).map((p) => `'${p}'`).join(", ");

/** Refuses a stream the credential's stream prefixes do not cover (403 stream_not_allowed). */
export function assertStream(grant: KeyGrant, name: string): void {
  if (!streamAllowed(grant, name)) {
    throw new ApiError(
      "stream_not_allowed",
      `This credential may reach only streams starting with ${describePrefixes(grant)}; '${name}' is not one of them.`,
    );
  }
}

/** Refuses a prefix-limited credential where the action is tenant-wide (403 restricted_credential). */
export function assertUnrestricted(grant: KeyGrant, what: string): void {
  if (isStreamLimited(grant)) {
    throw new ApiError(
      "restricted_credential",
      `This credential is limited to streams starting with ${describePrefixes(grant)}; ${what} needs an admin credential without stream_prefixes.`,
    );
  }
}

/** Authenticates the operator token (the ADMIN_TOKEN secret). */
export function requireOperator(): MiddlewareHandler<AppEnv> {
  return tagged({ auth: { scope: "operator" } }, async (c, next) => {
    const expected = c.env.ADMIN_TOKEN;
    if (!expected) throw new ApiError("admin_disabled");
    const token = bearer(c);
    if (token === undefined)
      throw new ApiError("missing_key", "Send the operator token as 'Authorization: Bearer <ADMIN_TOKEN>'.");
    if (!(await secretsEqual(token, expected))) throw new ApiError("invalid_key", "The operator token is not valid.");
    c.set("config", loadConfig(c.env as unknown as Record<string, unknown>));
    await next();
  });
}
