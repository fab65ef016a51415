/**
 * The dashboard's credentials: a pasted read key (localStorage, as before) or a token from the tenant's
 * identity provider, obtained with the OAuth 2.0 authorization code flow and PKCE (RFC 7636, S256) as a
 * public client, and kept in sessionStorage (this tab only, gone when it closes).
 *
 * Sign-in: GET /v1/auth/oidc/public/:tenant gives the provider's endpoints and the client id; the
 * dashboard keeps a random code verifier, state and nonce in sessionStorage and redirects to the
 * authorization endpoint with the verifier's SHA-256 challenge. The provider redirects back to this page
 * with a code, which is exchanged at the token endpoint with the verifier. The token used as the bearer
 * (API calls and the socket subprotocol) is the access token when it is a JWT for one of the tenant's
 * audiences, else the ID token when it is (its nonce checked).
 */
import { audiencesOf, decodeSegment, type OidcPublicConfig } from "../../core/oidc";

const KEY_STORAGE = "edgepulse.readKey";
const TOKEN_STORAGE = "edgepulse.token";
const PENDING_STORAGE = "edgepulse.oidc.pending";
const TENANT_STORAGE = "edgepulse.tenant";

interface Pending {
  tenant: string;
  state: string;
  nonce: string;
  verifier: string;
  redirect_uri: string;
  client_id: string;
  token_endpoint: string;
  audiences: string[];
  /** The route to come back to. */
  hash: string;
}

export type Credential = { kind: "key" | "token"; value: string };

const base64url = (bytes: Uint8Array): string =>
  btoa(String.fromCharCode(...bytes))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");

const random = (n = 32) => base64url(crypto.getRandomValues(new Uint8Array(n)));

/** RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))). */
async function challengeOf(verifier: string): Promise<string> {
  return base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
}

/** Seconds before its exp a token is no longer used (a request needs time to arrive). */
const EXPIRY_MARGIN_S = 10;

/** The token in this tab, unless it has expired (then it is dropped). */
function storedToken(): string | null {
  const token = sessionStorage.getItem(TOKEN_STORAGE);
  if (token === null) return null;
  const exp = decodeSegment(token, 1)?.exp;
  if (typeof exp === "number" && exp - EXPIRY_MARGIN_S < Date.now() / 1000) {
    sessionStorage.removeItem(TOKEN_STORAGE);
    return null;
  }
  return token;
}

/** What API calls and sockets authenticate with: this tab's token, else the pasted key. */
export function credential(): Credential | null {
  const token = storedToken();
  if (token !== null) return { kind: "token", value: token };
  const key = localStorage.getItem(KEY_STORAGE);
  return key === null ? null : { kind: "key", value: key };
}

export function rememberKey(key: string): void {
  localStorage.setItem(KEY_STORAGE, key);
}

/** Forgets both credentials (the provider's own session is left as it is). */
export function signOut(): void {
  sessionStorage.removeItem(TOKEN_STORAGE);
  sessionStorage.removeItem(PENDING_STORAGE);
  localStorage.removeItem(KEY_STORAGE);
}

/** Drops a token the server refused (expired, revoked role…). */
export function dropToken(): void {
  sessionStorage.removeItem(TOKEN_STORAGE);
}

/** The tenant to offer for sign-in: `?tenant=` in the address, else the last one used here. */
export function suggestedTenant(): string {
  const fromUrl = new URLSearchParams(location.search).get("tenant");
  return fromUrl ?? localStorage.getItem(TENANT_STORAGE) ?? "";
}

const redirectUri = () => `${location.origin}/`;

/** Starts a sign-in: redirects to the provider, or returns why it cannot. */
export async function startSignIn(tenant: string): Promise<string> {
  const res = await fetch(`/v1/auth/oidc/public/${encodeURIComponent(tenant)}`).catch(() => null);
  if (!res) return "The server could not be reached.";
  const body = (await res.json().catch(() => null)) as (OidcPublicConfig & { error?: { message?: string } }) | null;
  if (!res.ok || body === null || !body.authorization_endpoint)
    return body?.error?.message ?? `The server answered ${res.status}.`;
  localStorage.setItem(TENANT_STORAGE, tenant);
  const verifier = random(32);
  const pending: Pending = {
    tenant,
    state: random(16),
    nonce: random(16),
    verifier,
    redirect_uri: redirectUri(),
    client_id: body.client_id,
    token_endpoint: body.token_endpoint,
    audiences: body.audiences,
    hash: location.hash,
  };
  sessionStorage.setItem(PENDING_STORAGE, JSON.stringify(pending));
  const to = new URL(body.authorization_endpoint);
  to.searchParams.set("response_type", "code");
  to.searchParams.set("client_id", body.client_id);
  to.searchParams.set("redirect_uri", pending.redirect_uri);
  to.searchParams.set("scope", body.scopes);
  to.searchParams.set("state", pending.state);
  to.searchParams.set("nonce", pending.nonce);
  to.searchParams.set("code_challenge", await challengeOf(verifier));
  to.searchParams.set("code_challenge_method", "S256");
  location.assign(to.href);
  return "";
}

/** A JWT (read unverified: it came straight from the token endpoint over TLS) naming one of the audiences. */
function forAudience(token: unknown, audiences: string[]): Record<string, unknown> | null {
  if (typeof token !== "string") return null;
  const payload = decodeSegment(token, 1);
  return payload && audiencesOf(payload).some((a) => audiences.includes(a)) ? payload : null;
}

/**
 * Completes a sign-in when the provider has redirected back here (`?code=&state=` or `?error=`): exchanges
 * the code and keeps the token. `null`: nothing to complete; else the error to show ("" when signed in).
 */
export async function finishSignIn(): Promise<string | null> {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return null;
  const raw = sessionStorage.getItem(PENDING_STORAGE);
  sessionStorage.removeItem(PENDING_STORAGE);
  const pending = raw === null ? null : (JSON.parse(raw) as Pending);
  // The code and state leave the address bar (and history) at once.
  history.replaceState(null, "", `${location.pathname}${pending?.hash ?? ""}`);
  if (params.has("error")) {
    return `The identity provider refused the sign-in: ${params.get("error_description") ?? params.get("error")}.`;
  }
  if (pending === null || params.get("state") !== pending.state) {
    return "This sign-in answer does not match a sign-in started in this tab; sign in again.";
  }
  const res = await fetch(pending.token_endpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    credentials: "omit",
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code") ?? "",
      redirect_uri: pending.redirect_uri,
      client_id: pending.client_id,
      code_verifier: pending.verifier,
    }),
  }).catch(() => null);
  if (!res) return "The identity provider's token endpoint could not be reached (is this origin allowed there?).";
  const body = (await res.json().catch(() => null)) as Record<string, unknown> | null;
  if (!res.ok || body === null) {
    const why = body?.error_description ?? body?.error ?? `status ${res.status}`;
    return `The identity provider did not issue a token: ${String(why)}.`;
  }
  const idClaims = typeof body.id_token === "string" ? decodeSegment(body.id_token, 1) : null;
  if (idClaims !== null && idClaims.nonce !== pending.nonce) {
    return "The ID token does not carry this sign-in's nonce; sign in again.";
  }
  const token = forAudience(body.access_token, pending.audiences)
    ? (body.access_token as string)
    : forAudience(body.id_token, pending.audiences)
      ? (body.id_token as string)
      : null;
  if (token === null) {
    return `The provider's tokens are not for this tenant's audience (${pending.audiences.join(", ")}); ask its admin to check the registered audience.`;
  }
  sessionStorage.setItem(TOKEN_STORAGE, token);
  return "";
}
