/**
 * OpenID Connect sign-in, the runtime-free part: the limits, which URLs an issuer may use, where a
 * token's role is read from, and which scope and stream prefixes a role grants. The Worker verifies
 * signatures with `jose` (workers/lib/oidc.ts); everything it decides after that is here.
 */
import type { Scope } from "./keys.ts";

/** Seconds of clock skew tolerated on exp, nbf and iat. */
export const OIDC_CLOCK_TOLERANCE_S = 30;
/** Only asymmetric algorithms: `none` and HMAC (HS256 "signed" with the public key) are refused. */
export const OIDC_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
] as const;
/** Audiences a tenant may register, role mappings it may declare (one issuer per tenant). */
export const MAX_AUDIENCES = 5;
export const MAX_ROLE_MAPPINGS = 20;
/** Roles read from one token's role claim (more are ignored: the claim is attacker-sized only if the IdP is). */
export const MAX_TOKEN_ROLES = 100;

export interface RoleMapping {
  role: string;
  scope: Scope;
  stream_prefixes?: string[];
}

/** A tenant's identity provider as its registry stores it (PUT /v1/auth/oidc, after discovery). */
export interface OidcConfig {
  issuer: string;
  jwks_uri: string;
  audiences: string[];
  role_claim: string;
  roles: RoleMapping[];
  dashboard: {
    client_id: string;
    scopes: string;
    authorization_endpoint: string;
    token_endpoint: string;
  } | null;
  updated_at: number;
}

/** What the dashboard needs to sign in to a tenant (GET /v1/auth/oidc/public/:tenant): nothing secret. */
export interface OidcPublicConfig {
  tenant_id: string;
  issuer: string;
  client_id: string;
  scopes: string;
  audiences: string[];
  authorization_endpoint: string;
  token_endpoint: string;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

/** https anywhere; http only on the loopback interface (a local provider, as in the tests). No credentials or fragments. */
export function isAllowedOidcUrl(raw: string): boolean {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return false;
  }
  if (u.username || u.password || u.hash) return false;
  return u.protocol === "https:" || (u.protocol === "http:" && LOOPBACK.has(u.hostname));
}

/** OpenID Connect Discovery 1.0 §4: the issuer without a trailing slash, then /.well-known/openid-configuration. */
export const discoveryUrl = (issuer: string): string =>
  `${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * The claim at `path`: the whole path as one claim name first (namespaced claims such as
 * `https://example.com/roles` hold dots), else a walk of its dotted segments through nested objects.
 * Own properties only, so `__proto__` or `constructor` never resolve to anything.
 */
export function claimAt(payload: Record<string, unknown>, path: string): unknown {
  if (Object.hasOwn(payload, path)) return payload[path];
  let at: unknown = payload;
  for (const seg of path.split(".")) {
    if (!isObj(at) || !Object.hasOwn(at, seg)) return undefined;
    at = at[seg];
  }
  return at;
}

/** The roles a claim holds: a string is one role; an array, its strings (bounded). Anything else: none. */
export function rolesOf(claim: unknown): string[] {
  if (typeof claim === "string") return [claim];
  if (Array.isArray(claim)) return claim.filter((r): r is string => typeof r === "string").slice(0, MAX_TOKEN_ROLES);
  return [];
}

/** The first mapping (in the configured order) whose role the token holds, or null. */
export function mapRoles(roles: readonly string[], mappings: readonly RoleMapping[]): RoleMapping | null {
  const held = new Set(roles);
  return mappings.find((m) => held.has(m.role)) ?? null;
}

/** Decoded, unverified: the base64url JSON of a JWT's segment, or null (used only to route, never to trust). */
export function decodeSegment(token: string, index: 0 | 1): Record<string, unknown> | null {
  const part = token.split(".")[index];
  if (!part) return null;
  try {
    const b64 = part.replaceAll("-", "+").replaceAll("_", "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const v: unknown = JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
    return isObj(v) ? v : null;
  } catch {
    return null;
  }
}

/** A compact JWS (three base64url segments; the third may be empty, as in `alg: none`): a token, not an API key. */
export const looksLikeJwt = (credential: string): boolean =>
  /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(credential);

/** The audiences a token names (`aud` is a string or an array of strings). */
export function audiencesOf(payload: Record<string, unknown>): string[] {
  const aud = payload.aud;
  if (typeof aud === "string") return [aud];
  if (Array.isArray(aud)) return aud.filter((a): a is string => typeof a === "string").slice(0, MAX_AUDIENCES * 4);
  return [];
}
