/**
 * OpenID Connect bearer tokens: a JWT signed by a tenant's registered issuer is accepted wherever an API
 * key is, with the scope (and stream prefixes) its role maps to (core/oidc.ts).
 *
 * Which tenant: the token's `iss` and `aud` (read unverified, only to route) are looked up in the global
 * KeyDirectory, where each (issuer, audience) pair belongs to the one tenant that registered it; the
 * token is then verified against that tenant's configuration only (its issuer, audiences and JWKS), so a
 * token can never be accepted by another tenant.
 *
 * Verification is jose's: signature by a key of the issuer's JWKS, `alg` restricted to asymmetric ones,
 * `iss`, `aud`, `exp` (required), `nbf` and `iat` checked with OIDC_CLOCK_TOLERANCE_S of skew. JWKS are
 * fetched and cached per isolate (10 min; a token with an unknown `kid` refetches, at most once per
 * OIDC_JWKS_COOLDOWN_MS), each fetch bounded by OIDC_JWKS_TIMEOUT_MS. A JWKS that cannot be had (down,
 * slow, garbage) answers 503 identity_provider_unavailable, never 500.
 */
import { createRemoteJWKSet, errors, jwtVerify } from "jose";
import { deadline, TimeoutError } from "../../core/async";
import type { Config } from "../../core/config";
import type { ErrorCode } from "../../core/errors";
import {
  audiencesOf,
  claimAt,
  decodeSegment,
  discoveryUrl,
  isAllowedOidcUrl,
  mapRoles,
  OIDC_ALGORITHMS,
  OIDC_CLOCK_TOLERANCE_S,
  type OidcConfig,
  rolesOf,
} from "../../core/oidc";
import type { KeyGrant, TenantLimits } from "../../core/protocol";
import { ApiError } from "./errors";
import { directory, registry } from "./registry";

/** JWKS cached this long per isolate before being fetched again (jose's cacheMaxAge). */
export const JWKS_MAX_AGE_MS = 600_000;
/** Remote key sets kept per isolate (one per JWKS URL and timing); the oldest is dropped beyond. */
const MAX_JWKS_SETS = 100;
/** Routes and tenant configurations cached per isolate (each for KEY_CACHE_TTL_MS); cleared beyond. */
const MAX_CACHED = 10_000;
/** Retry-After on 503 identity_provider_unavailable (seconds). */
const RETRY_AFTER_S = "5";
/** Longest discovery document read (bytes). */
const MAX_DISCOVERY_BYTES = 64 * 1024;

type RemoteSet = ReturnType<typeof createRemoteJWKSet>;
const jwksSets = new Map<string, RemoteSet>();

function jwksFor(uri: string, config: Config): RemoteSet {
  const id = `${config.OIDC_JWKS_TIMEOUT_MS}|${config.OIDC_JWKS_COOLDOWN_MS}|${uri}`;
  let set = jwksSets.get(id);
  if (set === undefined) {
    if (jwksSets.size >= MAX_JWKS_SETS) jwksSets.delete(jwksSets.keys().next().value as string);
    set = createRemoteJWKSet(new URL(uri), {
      timeoutDuration: config.OIDC_JWKS_TIMEOUT_MS,
      cooldownDuration: config.OIDC_JWKS_COOLDOWN_MS,
      cacheMaxAge: JWKS_MAX_AGE_MS,
    });
    jwksSets.set(id, set);
  }
  return set;
}

interface TenantContext {
  tenantId: string;
  config: OidcConfig;
  limits: TenantLimits | null;
}

const routes = new Map<string, { tenants: string[]; issuerKnown: boolean; expires: number }>();
const contexts = new Map<string, { ctx: TenantContext | null; expires: number }>();

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  if (map.size >= MAX_CACHED) map.clear();
  map.set(key, value);
}

/** Drops this isolate's cached routing and configuration of a tenant (after its provider changed here). */
export function forgetOidc(tenantId: string): void {
  contexts.delete(tenantId);
  routes.clear();
}

const clip = (s: string, n = 120) => (s.length > n ? `${s.slice(0, n)}…` : s);

function refuse(code: ErrorCode, reason: string, message: string): never {
  throw new ApiError(code, message, { reason });
}

function unavailable(reason: string, message: string): never {
  throw new ApiError("identity_provider_unavailable", message, { reason }, { "Retry-After": RETRY_AFTER_S });
}

/** The tenant the token's issuer and audiences were registered by (cached per isolate), or a refusal. */
async function route(env: Env, iss: string, auds: string[], ttlMs: number, now: number): Promise<string> {
  const key = `${iss}\n${[...auds].sort().join("\n")}`;
  let hit = routes.get(key);
  if (!hit || hit.expires <= now) {
    const found = await directory(env).tenantsOfIssuer(iss, auds);
    hit = { ...found, expires: now + ttlMs };
    remember(routes, key, hit);
  }
  const { tenants, issuerKnown } = hit;
  if (tenants.length === 0 && !issuerKnown) {
    refuse("invalid_token", "issuer", `No tenant has registered the issuer '${clip(iss)}'.`);
  }
  if (tenants.length === 0) {
    refuse(
      "invalid_token",
      "audience",
      `The token's audience (${auds.map((a) => `'${clip(a, 60)}'`).join(", ")}) is not one registered for the issuer '${clip(iss)}'.`,
    );
  }
  if (tenants.length > 1) {
    refuse(
      "invalid_token",
      "audience",
      "The token's audiences are registered by more than one tenant; ask the provider for a token with the one audience of your tenant.",
    );
  }
  return tenants[0];
}

async function contextOf(env: Env, tenantId: string, ttlMs: number, now: number): Promise<TenantContext | null> {
  const hit = contexts.get(tenantId);
  if (hit && hit.expires > now) return hit.ctx;
  const ctx = (await registry(env, tenantId).oidcContext()) as TenantContext | null;
  remember(contexts, tenantId, { ctx, expires: now + ttlMs });
  return ctx;
}

/** jose's refusals as the API's codes: the token's fault → 401 with a reason; the provider's → 503. */
function explain(err: unknown): never {
  if (err instanceof ApiError) throw err;
  if (err instanceof errors.JWTExpired) refuse("token_expired", "expired", `The token expired (${err.message}).`);
  if (err instanceof errors.JWTClaimValidationFailed) {
    const reason =
      err.claim === "nbf"
        ? "not_yet_valid"
        : err.claim === "aud"
          ? "audience"
          : err.claim === "iss"
            ? "issuer"
            : "claims";
    const what =
      reason === "not_yet_valid"
        ? "The token is not valid yet (nbf is in the future)."
        : reason === "audience"
          ? "The token's aud is not one of the tenant's registered audiences."
          : reason === "issuer"
            ? "The token's iss is not the tenant's registered issuer."
            : `The token's '${err.claim}' claim is missing or invalid (${err.reason}); exp is required.`;
    refuse("invalid_token", reason, what);
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    refuse(
      "invalid_token",
      "algorithm",
      `The token's algorithm is not accepted: only ${OIDC_ALGORITHMS.join(", ")} (asymmetric signatures; never 'none' or HMAC).`,
    );
  }
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    refuse(
      "invalid_token",
      "unknown_key",
      "No single key of the issuer's JWKS matches the token's kid and alg (a rotated-out or unknown key).",
    );
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    refuse("invalid_token", "signature", "The token's signature does not verify with the issuer's key.");
  }
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) {
    refuse("invalid_token", "malformed", `The token is not a well-formed signed JWT: ${clip(err.message)}.`);
  }
  if (err instanceof errors.JWKSTimeout || err instanceof TimeoutError) {
    unavailable("timeout", "The identity provider's JWKS did not answer in time; retry shortly.");
  }
  if (err instanceof errors.JWKSInvalid || err instanceof errors.JWKInvalid) {
    unavailable("invalid_jwks", "The identity provider's JWKS is not a valid JSON Web Key Set.");
  }
  if (err instanceof errors.JOSEError) {
    unavailable("jwks_error", `The identity provider's JWKS could not be read: ${clip(err.message)}.`);
  }
  // fetch itself failed: refused connection, DNS, TLS.
  console.error(`edgepulse: JWKS fetch failed: ${(err as Error)?.name}: ${clip(String((err as Error)?.message))}`);
  unavailable("unreachable", "The identity provider's JWKS could not be reached; retry shortly.");
}

/** Verifies an OIDC bearer token and returns what it grants, or throws the API's error. */
export async function verifyToken(env: Env, token: string, config: Config, now = Date.now()): Promise<KeyGrant> {
  const header = decodeSegment(token, 0);
  const payload = decodeSegment(token, 1);
  if (header === null || payload === null) refuse("invalid_token", "malformed", "The token is not a readable JWT.");
  if (typeof payload.iss !== "string" || payload.iss === "")
    refuse("invalid_token", "issuer", "The token has no iss claim.");
  const auds = audiencesOf(payload);
  if (auds.length === 0) refuse("invalid_token", "audience", "The token has no aud claim.");
  const tenantId = await route(env, payload.iss, auds, config.KEY_CACHE_TTL_MS, now);
  const ctx = await contextOf(env, tenantId, config.KEY_CACHE_TTL_MS, now);
  if (ctx === null || ctx.config.issuer !== payload.iss) {
    refuse("invalid_token", "issuer", `No tenant has registered the issuer '${clip(payload.iss)}'.`);
  }
  const oidc = ctx.config;
  let claims: Record<string, unknown>;
  try {
    // jose bounds the JWKS fetch itself; the deadline is a backstop so nothing here waits unbounded.
    const verified = await deadline(
      jwtVerify(token, jwksFor(oidc.jwks_uri, config), {
        issuer: oidc.issuer,
        audience: oidc.audiences,
        algorithms: [...OIDC_ALGORITHMS],
        clockTolerance: OIDC_CLOCK_TOLERANCE_S,
        currentDate: new Date(now),
        requiredClaims: ["exp"],
      }),
      config.OIDC_JWKS_TIMEOUT_MS * 2 + 1000,
      "token verification",
    );
    claims = verified.payload as Record<string, unknown>;
  } catch (err) {
    explain(err);
  }
  const roles = rolesOf(claimAt(claims, oidc.role_claim));
  const mapping = mapRoles(roles, oidc.roles);
  if (mapping === null) {
    refuse(
      "role_not_mapped",
      "role",
      `The token's '${clip(oidc.role_claim, 60)}' claim holds ${
        roles.length
          ? roles
              .slice(0, 10)
              .map((r) => `'${clip(r, 40)}'`)
              .join(", ")
          : "no role"
      }; the tenant maps ${oidc.roles.map((r) => `'${clip(r.role, 40)}'`).join(", ")}.`,
    );
  }
  const sub = typeof claims.sub === "string" ? claims.sub : "";
  return {
    keyId: `oidc:${clip(sub, 200)}`,
    tenantId,
    scope: mapping.scope,
    revoked: false,
    streamPrefixes: mapping.stream_prefixes ?? null,
    limits: ctx.limits,
  };
}

/** What PUT /v1/auth/oidc reads from the issuer's discovery document. */
export interface Discovered {
  jwks_uri: string;
  authorization_endpoint: string | null;
  token_endpoint: string | null;
}

function discoveryFailed(message: string): never {
  throw new ApiError(
    "oidc_discovery_failed",
    `${message} Check the issuer, or give jwks_uri explicitly (the dashboard's sign-in needs the document).`,
  );
}

/**
 * Reads `<issuer>/.well-known/openid-configuration` (bounded in time and size) and checks it as OpenID
 * Connect Discovery 1.0 §4.3 asks: its `issuer` is exactly ours, and the endpoints are https URLs.
 */
export async function discover(issuer: string, timeoutMs: number): Promise<Discovered> {
  const url = discoveryUrl(issuer);
  let res: Response;
  try {
    res = await fetch(url, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    discoveryFailed(
      (err as Error)?.name === "TimeoutError"
        ? `${url} did not answer within ${timeoutMs} ms.`
        : `${url} could not be reached.`,
    );
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    discoveryFailed(`${url} answered ${res.status}.`);
  }
  const declared = Number(res.headers.get("content-length") ?? 0);
  if (declared > MAX_DISCOVERY_BYTES) {
    await res.body?.cancel();
    discoveryFailed(`${url} is larger than ${MAX_DISCOVERY_BYTES} bytes.`);
  }
  let doc: unknown;
  try {
    const text = await res.text();
    if (text.length > MAX_DISCOVERY_BYTES) discoveryFailed(`${url} is larger than ${MAX_DISCOVERY_BYTES} bytes.`);
    doc = JSON.parse(text);
  } catch (err) {
    if (err instanceof ApiError) throw err;
    discoveryFailed(`${url} is not JSON.`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) discoveryFailed(`${url} is not a JSON object.`);
  const d = doc as Record<string, unknown>;
  if (d.issuer !== issuer) {
    discoveryFailed(
      `${url} names the issuer '${clip(String(d.issuer))}', not '${clip(issuer)}' (they must be identical).`,
    );
  }
  const endpoint = (name: string, required: boolean): string | null => {
    const v = d[name];
    if (v === undefined && !required) return null;
    if (typeof v !== "string" || !isAllowedOidcUrl(v)) discoveryFailed(`${url}: ${name} is not an https URL.`);
    return v;
  };
  const methods = d.code_challenge_methods_supported;
  if (Array.isArray(methods) && !methods.includes("S256")) {
    discoveryFailed(`${url}: the provider does not support PKCE with S256 (code_challenge_methods_supported).`);
  }
  return {
    jwks_uri: endpoint("jwks_uri", true) as string,
    authorization_endpoint: endpoint("authorization_endpoint", false),
    token_endpoint: endpoint("token_endpoint", false),
  };
}
