/**
 * API keys: random, shown once, stored only as SHA-256 hashes. Keys carry
 * 256 bits of entropy, so a fast hash is the right tool (no password KDF).
 * Uses WebCrypto, present in workerd, Node, Deno and browsers.
 */
export const SCOPES = ["ingest", "read", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

export function isScope(s: unknown): s is Scope {
  return typeof s === "string" && (SCOPES as readonly string[]).includes(s);
}

/** What a scope may do: an admin key may also read and ingest for its tenant. */
export function scopeAllows(have: Scope, need: Scope): boolean {
  return have === need || have === "admin";
}

/**
 * Stream-prefix limits. A key or token may be limited to stream names starting with one of its prefixes
 * (plain prefixes: `checkout.` covers `checkout.completed`, not `checkouts`). `null` means every stream.
 * Bounds: at most MAX_STREAM_PREFIXES prefixes of at most MAX_STREAM_PREFIX_LENGTH characters each.
 */
export const MAX_STREAM_PREFIXES = 10;
export const MAX_STREAM_PREFIX_LENGTH = 128;
/** A prefix is made of stream-name characters (so `checkout.*` is refused rather than silently matching nothing). */
export const STREAM_PREFIX_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;

/** What a credential may reach: `streamPrefixes` null or absent = every stream of its tenant. */
export interface StreamLimited {
  readonly streamPrefixes?: readonly string[] | null;
}

/** The one rule: may this credential name, read, write or list the stream `name`? */
export function streamAllowed(grant: StreamLimited, name: string): boolean {
  const prefixes = grant.streamPrefixes;
  if (prefixes === null || prefixes === undefined) return true;
  return prefixes.some((p) => name.startsWith(p));
}

/** Whether the credential is limited to some streams (then it cannot manage tenant-wide things). */
export const isStreamLimited = (grant: StreamLimited): boolean =>
  grant.streamPrefixes !== null && grant.streamPrefixes !== undefined;

/**
 * Whether every stream `inner` allows is also allowed by `outer`: each inner prefix starts with an outer
 * one. A limited admin may only hand out (or revoke) credentials within its own reach.
 */
export function prefixesWithin(inner: readonly string[] | null, outer: readonly string[] | null): boolean {
  if (outer === null) return true;
  if (inner === null) return false;
  return inner.every((p) => outer.some((o) => p.startsWith(o)));
}

const base64url = (bytes: Uint8Array): string =>
  btoa(String.fromCharCode(...bytes))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");

export function randomToken(bytes = 32): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** A new key: `ep_<scope>_<43 random chars>`. The scope in the text is for humans; the registry is the authority. */
export function newKey(scope: Scope): string {
  return `ep_${scope}_${randomToken(32)}`;
}

/** Random characters of a key shown in listings: enough to recognise it, far too few to guess it. */
export const PREFIX_RANDOM_CHARS = 6;

/** A short, non-secret prefix to recognise a key in listings: `ep_<scope>_` and 6 random characters. */
export function keyPrefix(key: string): string {
  // The random part is base64url and may itself hold "_": cut after the scope's separator, never the last "_".
  return key.slice(0, key.indexOf("_", 3) + 1 + PREFIX_RANDOM_CHARS);
}

export async function hashKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Constant-time comparison of two secrets, via their hashes (equal length). */
export async function secretsEqual(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([hashKey(a), hashKey(b)]);
  let diff = 0;
  for (let i = 0; i < ha.length; i++) diff |= ha.charCodeAt(i) ^ hb.charCodeAt(i);
  return diff === 0;
}

export function newId(prefix: string): string {
  return `${prefix}_${randomToken(12)}`;
}
