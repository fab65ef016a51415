/**
 * A stand-in OpenID Connect provider for the tests: node:http on 127.0.0.1, keys generated with jose.
 * It follows the specs the way a real provider does, and checks what a real one checks:
 *
 * - Discovery (OpenID Connect Discovery 1.0 §4): `/.well-known/openid-configuration`, `issuer` exactly ours.
 * - JWKS (RFC 7517): the published public keys, each with `kid`, `alg` and `use: sig`; rotation publishes
 *   a new key. `/jwks-slow` never answers and `/jwks-garbage` answers 200 with HTML, for outage tests.
 * - Authorization endpoint (RFC 6749 §4.1.1, RFC 7636 §4.3): `response_type=code`, a known `client_id` and
 *   its registered `redirect_uri` exactly (else an error page, never a redirect: §4.1.2.1), `state`, and
 *   a PKCE `code_challenge` with `code_challenge_method=S256` (plain is refused). A login page asks the
 *   user to approve; approval redirects with a one-time `code` (60 s) and the `state`.
 * - Token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6): form-encoded `grant_type=authorization_code`, the
 *   code (single use), the same `redirect_uri` and `client_id`, and the `code_verifier`, whose
 *   BASE64URL(SHA-256) must equal the challenge; else `400 {"error":"invalid_grant"}`. Answers with an
 *   access token (aud: the API audience) and an ID token (aud: the client id, with the nonce),
 *   `Cache-Control: no-store` (§5.1), and CORS for the client's registered web origins, as providers do
 *   for browser (public) clients.
 */
import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from "jose";

export interface SigningKey {
  kid: string;
  alg: "ES256" | "RS256";
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
}

export interface IdpOptions {
  clientId: string;
  /** The API audience put in access tokens. */
  audience: string;
  /** The client's registered redirect URIs (exact match) and web origins (CORS on the token endpoint). */
  redirectUris: string[];
  webOrigins: string[];
  /** Claims of the user who signs in through /authorize (sub, roles…). */
  user: JWTPayload;
}

/** What the token endpoint checked for one code exchange (the test asserts on it). */
export interface PkceCheck {
  challenge: string;
  verifier: string;
  ok: boolean;
}

interface PendingAuthorization {
  clientId: string;
  redirectUri: string;
  state: string;
  challenge: string;
  nonce: string | undefined;
  scope: string;
}

interface Code extends PendingAuthorization {
  expires: number;
  used: boolean;
}

const b64url = (buf: Buffer) => buf.toString("base64url");
const UNRESERVED = /^[A-Za-z0-9\-._~]{43,128}$/;

export async function newSigningKey(kid: string, alg: "ES256" | "RS256" = "ES256"): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, publicKey, publicJwk };
}

export class Idp {
  readonly server: Server;
  url = "";
  /** Keys whose public part the JWKS publishes, newest last. */
  published: SigningKey[] = [];
  readonly pkceChecks: PkceCheck[] = [];
  /** Every request line seen, for assertions (e.g. the verifier never travels in the authorize URL). */
  readonly requests: string[] = [];
  jwksFetches = 0;
  readonly #pending = new Map<string, PendingAuthorization>();
  readonly #codes = new Map<string, Code>();
  readonly #held = new Set<ServerResponse>();

  private constructor(readonly options: IdpOptions) {
    this.server = createServer((req, res) => {
      this.#handle(req, res).catch((err: Error) => {
        res.writeHead(500, { "content-type": "text/plain" }).end(err.message);
      });
    });
  }

  static async start(options: IdpOptions): Promise<Idp> {
    const idp = new Idp(options);
    idp.published.push(await newSigningKey("k1"));
    await new Promise<void>((r) => idp.server.listen(0, "127.0.0.1", r));
    idp.url = `http://127.0.0.1:${(idp.server.address() as AddressInfo).port}`;
    return idp;
  }

  get issuer(): string {
    return this.url;
  }

  get key(): SigningKey {
    return this.published[this.published.length - 1];
  }

  /** Publishes a new signing key (the old ones stay published until `retire`). */
  async rotate(kid: string, alg: "ES256" | "RS256" = "RS256"): Promise<SigningKey> {
    const key = await newSigningKey(kid, alg);
    this.published.push(key);
    return key;
  }

  /** A token signed with `key` (default: the newest published), valid for 5 minutes unless the claims say otherwise. */
  async sign(claims: JWTPayload, key: SigningKey = this.key): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: this.issuer, iat: now, exp: now + 300, ...claims })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
      .sign(key.privateKey);
  }

  async close(): Promise<void> {
    for (const res of this.#held) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  #json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
  }

  #cors(req: IncomingMessage): Record<string, string> {
    const origin = req.headers.origin;
    return origin && this.options.webOrigins.includes(origin)
      ? { "access-control-allow-origin": origin, vary: "Origin" }
      : {};
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.url);
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (req.method === "GET" && url.pathname === "/.well-known/openid-configuration") {
      return this.#json(res, 200, {
        issuer: this.issuer,
        authorization_endpoint: `${this.url}/authorize`,
        token_endpoint: `${this.url}/token`,
        jwks_uri: `${this.url}/jwks`,
        response_types_supported: ["code"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["ES256", "RS256"],
        grant_types_supported: ["authorization_code"],
        code_challenge_methods_supported: ["S256"],
        token_endpoint_auth_methods_supported: ["none"],
        scopes_supported: ["openid", "profile"],
      });
    }
    if (req.method === "GET" && url.pathname === "/jwks") {
      this.jwksFetches++;
      return this.#json(res, 200, { keys: this.published.map((k) => k.publicJwk) });
    }
    if (req.method === "GET" && url.pathname === "/jwks-slow") {
      this.#held.add(res); // never answered; destroyed on close
      return;
    }
    if (req.method === "GET" && url.pathname === "/jwks-garbage") {
      res
        .writeHead(200, { "content-type": "text/html" })
        .end("<html><body>Service temporarily unavailable</body></html>");
      return;
    }
    if (req.method === "GET" && url.pathname === "/authorize") return this.#authorize(url, res);
    if (req.method === "POST" && url.pathname === "/authorize") return this.#approve(req, res);
    if (req.method === "OPTIONS" && url.pathname === "/token") {
      res
        .writeHead(204, {
          ...this.#cors(req),
          "access-control-allow-methods": "POST",
          "access-control-allow-headers": "content-type",
        })
        .end();
      return;
    }
    if (req.method === "POST" && url.pathname === "/token") return this.#token(req, res);
    res.writeHead(404, { "content-type": "text/plain" }).end("not found");
  }

  #authorize(url: URL, res: ServerResponse): void {
    const p = url.searchParams;
    const clientId = p.get("client_id");
    const redirectUri = p.get("redirect_uri") ?? "";
    // An unknown client or redirect URI is never redirected to (RFC 6749 §4.1.2.1).
    if (clientId !== this.options.clientId || !this.options.redirectUris.includes(redirectUri)) {
      res.writeHead(400, { "content-type": "text/html" }).end("<p>Unknown client or redirect_uri.</p>");
      return;
    }
    const state = p.get("state") ?? "";
    const fail = (error: string, description: string) => {
      const to = new URL(redirectUri);
      to.searchParams.set("error", error);
      to.searchParams.set("error_description", description);
      if (state) to.searchParams.set("state", state);
      res.writeHead(302, { location: to.href }).end();
    };
    if (p.get("response_type") !== "code") {
      fail("unsupported_response_type", "only code");
      return;
    }
    const challenge = p.get("code_challenge") ?? "";
    if (p.get("code_challenge_method") !== "S256" || !/^[A-Za-z0-9_-]{43}$/.test(challenge)) {
      fail("invalid_request", "PKCE with S256 is required");
      return;
    }
    if (!(p.get("scope") ?? "").split(" ").includes("openid")) {
      fail("invalid_scope", "openid is required");
      return;
    }
    const id = b64url(randomBytes(16));
    this.#pending.set(id, {
      clientId,
      redirectUri,
      state,
      challenge,
      nonce: p.get("nonce") ?? undefined,
      scope: p.get("scope") ?? "",
    });
    const who = String(this.options.user.sub);
    res
      .writeHead(200, { "content-type": "text/html; charset=utf-8" })
      .end(
        `<!doctype html><title>Stand-in provider</title><form method="post" action="/authorize">` +
          `<input type="hidden" name="request" value="${id}">` +
          `<p>Sign in to ${clientId}</p><button type="submit" data-testid="idp-approve">Sign in as ${who}</button></form>`,
      );
  }

  async #form(req: IncomingMessage): Promise<URLSearchParams> {
    let body = "";
    for await (const chunk of req) body += chunk;
    return new URLSearchParams(body);
  }

  async #approve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const id = (await this.#form(req)).get("request") ?? "";
    const pending = this.#pending.get(id);
    this.#pending.delete(id);
    if (!pending) {
      res.writeHead(400, { "content-type": "text/plain" }).end("unknown request");
      return;
    }
    const code = b64url(randomBytes(24));
    this.#codes.set(code, { ...pending, expires: Date.now() + 60_000, used: false });
    const to = new URL(pending.redirectUri);
    to.searchParams.set("code", code);
    if (pending.state) to.searchParams.set("state", pending.state);
    res.writeHead(302, { location: to.href }).end();
  }

  async #token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const cors = this.#cors(req);
    const noStore = { "cache-control": "no-store", pragma: "no-cache", ...cors };
    if (!(req.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded")) {
      return this.#json(
        res,
        400,
        { error: "invalid_request", error_description: "form-encoded body expected" },
        noStore,
      );
    }
    const form = await this.#form(req);
    if (form.get("grant_type") !== "authorization_code") {
      return this.#json(res, 400, { error: "unsupported_grant_type" }, noStore);
    }
    const code = this.#codes.get(form.get("code") ?? "");
    const invalid = (why: string) => this.#json(res, 400, { error: "invalid_grant", error_description: why }, noStore);
    if (!code || code.used || code.expires < Date.now()) return invalid("unknown, used or expired code");
    // A code is single-use even when the exchange fails (RFC 6749 §4.1.2).
    code.used = true;
    if (form.get("client_id") !== code.clientId) return invalid("client_id differs");
    if (form.get("redirect_uri") !== code.redirectUri) return invalid("redirect_uri differs");
    const verifier = form.get("code_verifier") ?? "";
    const ok = UNRESERVED.test(verifier) && b64url(createHash("sha256").update(verifier).digest()) === code.challenge;
    this.pkceChecks.push({ challenge: code.challenge, verifier, ok });
    if (!ok) return invalid("code_verifier does not match the code_challenge");
    const user = this.options.user;
    const access = await this.sign({
      ...user,
      aud: this.options.audience,
      scope: code.scope,
      client_id: code.clientId,
    });
    const idToken = await this.sign({
      ...user,
      aud: code.clientId,
      ...(code.nonce ? { nonce: code.nonce } : {}),
    });
    return this.#json(
      res,
      200,
      { access_token: access, id_token: idToken, token_type: "Bearer", expires_in: 300, scope: code.scope },
      noStore,
    );
  }
}
