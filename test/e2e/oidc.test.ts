/**
 * Sign-in with an identity provider, against `npm start`'s stack and a stand-in OpenID Connect provider
 * (test/support/idp.ts: discovery, JWKS, /authorize, /token with PKCE, keys generated here with jose):
 * registering the provider, a token per role with its mapped scope (and stream prefixes), every way a
 * token can be wrong refused with its stable code, the socket subprotocol, tenants kept apart, key
 * rotation, a JWKS that is down, slow or garbage (503, bounded), and the dashboard signing in through
 * the provider with PKCE in Chromium.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { exportSPKI, type JWTPayload, SignJWT, UnsecuredJWT } from "jose";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { parseServerMessage, type ServerMessage } from "../../core/live";
import { launchChromium } from "../support/chromium";
import { Idp, newSigningKey } from "../support/idp";
import { createTestDatabase } from "../support/pg";
import { createTenant, freePort, type Keys, ROOT, type Stack, startStack } from "../support/stack";

const ARTIFACTS = join(ROOT, "test-artifacts");
const API = "edgepulse-api";
const CLIENT = "edgepulse-dashboard";
const IN = "checkout.done";
const OUT = "cart.added";

let stack: Stack;
let idp: Idp;
let a: Keys;

const ROLES = [
  { role: "edgepulse-admin", scope: "admin" },
  { role: "edgepulse-ingest", scope: "ingest" },
  { role: "edgepulse-viewer", scope: "read" },
  { role: "checkout-viewer", scope: "read", stream_prefixes: ["checkout."] },
];

const api = (method: string, path: string, credential: string, body?: unknown) =>
  fetch(`${stack.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${credential}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

const errorOf = async (res: Response) =>
  ((await res.json()) as { error: { code: string; message: string; details?: { reason?: string } } }).error;

/** A token of the stand-in provider for tenant A's API audience, with these roles (at realm_access.roles). */
const token = (roles: string | string[], claims: JWTPayload = {}) =>
  idp.sign({ sub: "user-1", aud: API, realm_access: { roles }, ...claims });

const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  const databaseUrl = await createTestDatabase("edgepulse_test_oidc");
  // Short JWKS timings so the outage and rotation cases settle within seconds.
  stack = await startStack({
    extraEnv: { DATABASE_URL: databaseUrl, OIDC_JWKS_TIMEOUT_MS: "1000", OIDC_JWKS_COOLDOWN_MS: "1000" },
  });
  idp = await Idp.start({
    clientId: CLIENT,
    audience: API,
    redirectUris: [`${stack.url}/`],
    webOrigins: [stack.url],
    user: { sub: "alice", name: "Alice", realm_access: { roles: ["edgepulse-viewer"] } },
  });
  a = await createTenant(stack, "oidc");
  const sent = await api("POST", "/v1/events", a.ingest, [
    { name: IN, value: 120, user: "u1" },
    { name: IN, value: 80, user: "u2" },
    { name: OUT, value: 5 },
  ]);
  expect(sent.status).toBe(200);
}, 180_000);

afterAll(async () => {
  await idp?.close();
  await stack?.stop();
});

describe("registering a provider", () => {
  it("refuses bad configurations with the field named, and a discovery document it cannot read", async () => {
    const bad = await api("PUT", "/v1/auth/oidc", a.admin, {
      issuer: "http://idp.example.com",
      audience: API,
      roles: ROLES,
    });
    expect(bad.status).toBe(400);
    const err = await errorOf(bad);
    expect(err.code).toBe("invalid_oidc_config");
    expect(err.message).toMatch(/^issuer: .*https/);
    const nowhere = await api("PUT", "/v1/auth/oidc", a.admin, {
      issuer: `${idp.url}/nowhere`,
      audience: API,
      roles: ROLES,
    });
    expect(nowhere.status).toBe(502);
    expect((await errorOf(nowhere)).code).toBe("oidc_discovery_failed");
    expect((await api("GET", "/v1/auth/oidc", a.admin)).status).toBe(404);
    expect(
      (await api("PUT", "/v1/auth/oidc", a.read, { issuer: idp.issuer, audience: API, roles: ROLES })).status,
    ).toBe(403);
  });

  it("registers the issuer from its discovery document and serves the public part for sign-in", async () => {
    const res = await api("PUT", "/v1/auth/oidc", a.admin, {
      issuer: idp.issuer,
      audience: API,
      role_claim: "realm_access.roles",
      roles: ROLES,
      dashboard: { client_id: CLIENT, scopes: "openid profile" },
    });
    const body = (await res.json()) as Record<string, unknown>;
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body).toMatchObject({
      issuer: idp.issuer,
      jwks_uri: `${idp.url}/jwks`,
      audience: [API],
      role_claim: "realm_access.roles",
      clock_tolerance_s: 30,
      dashboard: {
        client_id: CLIENT,
        authorization_endpoint: `${idp.url}/authorize`,
        token_endpoint: `${idp.url}/token`,
        redirect_uri: `${stack.url}/`,
      },
    });
    expect(body.algorithms).not.toContain("HS256");
    expect(await (await api("GET", "/v1/auth/oidc", a.admin)).json()).toEqual(body);
    const pub = await fetch(`${stack.url}/v1/auth/oidc/public/${a.tenantId}`);
    expect(pub.status).toBe(200);
    expect(await pub.json()).toEqual({
      tenant_id: a.tenantId,
      issuer: idp.issuer,
      client_id: CLIENT,
      scopes: "openid profile",
      audiences: [API],
      authorization_endpoint: `${idp.url}/authorize`,
      token_endpoint: `${idp.url}/token`,
    });
    const unknown = await fetch(`${stack.url}/v1/auth/oidc/public/t_doesnotexist0000`);
    expect(unknown.status).toBe(404);
    expect((await errorOf(unknown)).code).toBe("oidc_not_configured");
  });
});

describe("tokens as bearer credentials", () => {
  it("grant the scope their role maps to, on every kind of route", async () => {
    const admin = await token(["edgepulse-admin", "edgepulse-viewer"]);
    expect((await api("GET", "/v1/keys", admin)).status).toBe(200);
    const sent = await api("POST", "/v1/events", admin, [{ name: IN, value: 100 }]);
    expect(await sent.json()).toMatchObject({ accepted: 1 });

    const ingest = await token("edgepulse-ingest");
    expect((await api("POST", "/v1/events", ingest, [{ name: IN }])).status).toBe(200);
    const cannotRead = await api("GET", "/v1/streams", ingest);
    expect(cannotRead.status).toBe(403);
    expect(await errorOf(cannotRead)).toMatchObject({ code: "insufficient_scope" });

    const viewer = await token(["edgepulse-viewer"]);
    const snap = await api("GET", `/v1/streams/${IN}?window=1h`, viewer);
    expect(snap.status).toBe(200);
    expect(((await snap.json()) as { windows: Record<string, { count: number }> }).windows["1h"].count).toBe(4);
    expect((await api("POST", "/v1/events", viewer, [{ name: IN }])).status).toBe(403);
    expect((await api("GET", "/v1/keys", viewer)).status).toBe(403);
    expect(
      (await api("POST", "/v1/query", viewer, { stream: OUT, measures: ["count"], range: { last: "1h" } })).status,
    ).toBe(200);

    const unmapped = await api("GET", "/v1/streams", await token(["guest"]));
    expect(unmapped.status).toBe(403);
    const e = await errorOf(unmapped);
    expect(e.code).toBe("role_not_mapped");
    expect(e.message).toContain("'guest'");
  });

  it("carry the stream prefixes of their role", async () => {
    const limited = await token("checkout-viewer");
    expect((await api("GET", `/v1/streams/${IN}`, limited)).status).toBe(200);
    const out = await api("GET", `/v1/streams/${OUT}`, limited);
    expect(out.status).toBe(403);
    expect((await errorOf(out)).code).toBe("stream_not_allowed");
    const q = await api("POST", "/v1/query", limited, { stream: OUT, measures: ["count"], range: { last: "1h" } });
    expect(q.status).toBe(403);
    const listed = (await (await api("GET", "/v1/streams", limited)).json()) as { streams: Array<{ name: string }> };
    expect(listed.streams.map((s) => s.name)).not.toContain(OUT);
  });

  /** Opens a socket with the credential as the browser does (subprotocols); the first messages, or the refusal's status. */
  const socket = (path: string, credential: string, until: (m: ServerMessage[]) => boolean) =>
    new Promise<{ status: number; messages: ServerMessage[] }>((resolve, reject) => {
      const ws = new WebSocket(`${stack.url.replace("http", "ws")}${path}`, ["edgepulse.v1", `bearer.${credential}`]);
      const messages: ServerMessage[] = [];
      ws.on("unexpected-response", (_req, res) => {
        resolve({ status: res.statusCode ?? 0, messages });
        ws.terminate();
      });
      ws.on("message", (data) => {
        const m = parseServerMessage(String(data));
        if (m) messages.push(m);
        if (until(messages)) {
          ws.close();
          resolve({ status: 101, messages });
        }
      });
      ws.on("error", (err) => reject(err));
    });

  it("open the live sockets through the subprotocol, filtered by the role's prefixes", async () => {
    const viewer = await token("edgepulse-viewer");
    const stream = await socket(`/v1/streams/${IN}/live`, viewer, (m) => m.some((x) => x.type === "snapshot"));
    expect(stream.status).toBe(101);
    const snap = stream.messages.find((m) => m.type === "snapshot");
    expect(snap?.type === "snapshot" && snap.windows["1h"].count).toBe(4);

    const limited = await token("checkout-viewer");
    expect((await socket(`/v1/streams/${OUT}/live`, limited, () => true)).status).toBe(403);
    const overview = await socket("/v1/live", limited, (m) => m.some((x) => x.type === "alerts"));
    const dir = overview.messages.find((m) => m.type === "directory");
    expect(dir?.type === "directory" && dir.streams.every((s) => s.name.startsWith("checkout."))).toBe(true);
    expect((await socket("/v1/live", await token("guest"), () => true)).status).toBe(403);
    expect((await socket("/v1/live", await token("edgepulse-viewer", { exp: now() - 600 }), () => true)).status).toBe(
      401,
    );
  });

  it("refuse every kind of bad token with a stable code and reason", async () => {
    const pem = new TextEncoder().encode(await exportSPKI(idp.key.publicKey));
    const unpublished = await newSigningKey("k-unknown");
    const valid = await token("edgepulse-viewer");
    const [h, p] = valid.split(".");
    const tampered = `${h}.${Buffer.from(
      JSON.stringify({
        ...JSON.parse(Buffer.from(p, "base64url").toString()),
        realm_access: { roles: ["edgepulse-admin"] },
      }),
    ).toString("base64url")}.${valid.split(".")[2]}`;
    const claims = { sub: "user-1", aud: API, iss: idp.issuer, realm_access: { roles: ["edgepulse-admin"] } };
    const cases: Array<[string, Promise<string> | string, number, string, string?]> = [
      ["expired", token("edgepulse-viewer", { exp: now() - 120 }), 401, "token_expired", "expired"],
      ["not yet valid", token("edgepulse-viewer", { nbf: now() + 120 }), 401, "invalid_token", "not_yet_valid"],
      ["wrong audience", token("edgepulse-viewer", { aud: "someone-else" }), 401, "invalid_token", "audience"],
      ["wrong issuer", token("edgepulse-viewer", { iss: `${idp.url}/evil` }), 401, "invalid_token", "issuer"],
      ["unknown key id", idp.sign({ ...claims }, unpublished), 401, "invalid_token", "unknown_key"],
      ["alg none", new UnsecuredJWT({ ...claims, exp: now() + 300 }).encode(), 401, "invalid_token", "algorithm"],
      [
        "HS256 signed with the public key",
        new SignJWT({ ...claims, exp: now() + 300 }).setProtectedHeader({ alg: "HS256", kid: idp.key.kid }).sign(pem),
        401,
        "invalid_token",
        "algorithm",
      ],
      ["a tampered payload", tampered, 401, "invalid_token", "signature"],
      [
        "no exp",
        new SignJWT({ ...claims }).setProtectedHeader({ alg: "ES256", kid: idp.key.kid }).sign(idp.key.privateKey),
        401,
        "invalid_token",
        "claims",
      ],
      ["not a JWT at all", "eyJub3Q.eyJqc29u.sig", 401, "invalid_token", "malformed"],
    ];
    for (const [what, tok, status, code, reason] of cases) {
      const res = await api("GET", "/v1/streams", await tok);
      expect(res.status, what).toBe(status);
      const e = await errorOf(res);
      expect(e.code, what).toBe(code);
      if (reason) expect(e.details?.reason, `${what}: ${e.message}`).toBe(reason);
      expect(e.message.length, what).toBeGreaterThan(10);
    }
    // Within the 30 s clock tolerance, an exp a few seconds past is still accepted.
    expect((await api("GET", "/v1/streams", await token("edgepulse-viewer", { exp: now() - 5 }))).status).toBe(200);
  });

  it("of one tenant never reach another, even from the same issuer", async () => {
    const b = await createTenant(stack, "oidc-b");
    await api("POST", "/v1/events", b.ingest, [{ name: "b.only" }]);
    const register = (aud: string | string[]) =>
      api("PUT", "/v1/auth/oidc", b.admin, {
        issuer: idp.issuer,
        audience: aud,
        role_claim: "realm_access.roles",
        roles: [{ role: "edgepulse-admin", scope: "admin" }],
      });
    const taken = await register([API, "tenant-b-api"]);
    expect(taken.status).toBe(409);
    expect((await errorOf(taken)).code).toBe("issuer_taken");
    expect((await register("tenant-b-api")).status).toBe(200);

    const names = async (tok: string) =>
      ((await (await api("GET", "/v1/streams", tok)).json()) as { streams: Array<{ name: string }> }).streams.map(
        (s) => s.name,
      );
    const forA = await token("edgepulse-admin");
    const forB = await token("edgepulse-admin", { aud: "tenant-b-api" });
    expect(await names(forA)).toContain(IN);
    expect(await names(forA)).not.toContain("b.only");
    expect(await names(forB)).toEqual(["b.only"]);
    const both = await api("GET", "/v1/streams", await token("edgepulse-admin", { aud: [API, "tenant-b-api"] }));
    expect(both.status).toBe(401);
    expect((await errorOf(both)).details?.reason).toBe("audience");
    // B's admin token cannot touch A's provider; A's stays as it was.
    expect((await api("DELETE", "/v1/auth/oidc", forB)).status).toBe(200);
    expect((await api("GET", "/v1/auth/oidc", forA)).status).toBe(200);
  });

  it("are accepted after the provider rotates to a new key", async () => {
    const rotated = await idp.rotate("k2", "RS256");
    const fresh = await idp.sign({ sub: "user-1", aud: API, realm_access: { roles: ["edgepulse-viewer"] } }, rotated);
    // The isolate refetches the JWKS for an unknown kid once its cooldown (OIDC_JWKS_COOLDOWN_MS, 1 s here) allows.
    await expect
      .poll(async () => (await api("GET", "/v1/streams", fresh)).status, { timeout: 15_000, interval: 250 })
      .toBe(200);
    // The previous key is still published, so its tokens still verify.
    expect((await api("GET", "/v1/streams", await token("edgepulse-viewer", {}))).status).toBe(200);
  });

  it("answer 503 identity_provider_unavailable, bounded, when the JWKS is down, slow or garbage", async () => {
    const closed = await freePort();
    const cases: Array<[string, string, string]> = [
      ["down", `http://127.0.0.1:${closed}/jwks`, "unreachable"],
      ["slow", `${idp.url}/jwks-slow`, "timeout"],
      ["garbage", `${idp.url}/jwks-garbage`, "jwks_error"],
    ];
    for (const [what, jwksUri, reason] of cases) {
      const t = await createTenant(stack, `oidc-${what}`);
      const issuer = `${idp.url}/${what}`;
      const put = await api("PUT", "/v1/auth/oidc", t.admin, {
        issuer,
        jwks_uri: jwksUri,
        audience: `${what}-api`,
        roles: [{ role: "r", scope: "read" }],
      });
      expect(put.status, what).toBe(200);
      const tok = await idp.sign({ iss: issuer, sub: "x", aud: `${what}-api`, roles: ["r"] });
      const res = await api("GET", "/v1/streams", tok);
      expect(res.status, what).toBe(503);
      expect(res.headers.get("retry-after"), what).toBe("5");
      const e = await errorOf(res);
      expect(e.code, what).toBe("identity_provider_unavailable");
      expect(e.details?.reason, `${what}: ${e.message}`).toBe(reason);
    }
  });
});

describe("the dashboard signs in through the provider", () => {
  let browser: Browser;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
  });

  it("with the authorization code flow and PKCE (S256), then shows a stream's figures and signs out", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const checksBefore = idp.pkceChecks.length;
    const WEB = "checkout.web";
    const sent = await api("POST", "/v1/events", a.ingest, [
      { name: WEB, value: 10 },
      { name: WEB, value: 20 },
      { name: WEB, value: 30 },
    ]);
    expect(sent.status).toBe(200);
    await page.goto(`${stack.url}/?tenant=${a.tenantId}`);
    await page.getByTestId("sso-tenant").waitFor();
    expect(await page.getByTestId("sso-tenant").inputValue()).toBe(a.tenantId);
    await page.getByTestId("sso-submit").click();
    // At the provider: its login page, reached with a code challenge and never the verifier.
    await page.getByTestId("idp-approve").waitFor();
    const authorize = new URL(page.url());
    expect(authorize.origin).toBe(idp.url);
    expect(authorize.searchParams.get("code_challenge_method")).toBe("S256");
    expect(authorize.searchParams.get("client_id")).toBe(CLIENT);
    expect(authorize.searchParams.get("redirect_uri")).toBe(`${stack.url}/`);
    expect(authorize.searchParams.has("code_verifier")).toBe(false);
    await page.getByTestId("idp-approve").click();
    // Back on the dashboard: the code is exchanged at the token endpoint, the overview connects.
    await page.locator('[data-testid="status"][data-state="connected"]').waitFor();
    expect(idp.pkceChecks.length).toBe(checksBefore + 1);
    const check = idp.pkceChecks[checksBefore];
    expect(check.ok).toBe(true);
    expect(check.verifier).toMatch(/^[A-Za-z0-9_-]{43,128}$/);
    expect(idp.requests.some((r) => r.includes(check.verifier))).toBe(false);
    // The code and state left the address bar; the token is in sessionStorage, not localStorage.
    expect(new URL(page.url()).search).toBe("");
    const stored = await page.evaluate(() => ({
      token: sessionStorage.getItem("edgepulse.token"),
      key: localStorage.getItem("edgepulse.readKey"),
    }));
    expect(stored.token?.split(".")).toHaveLength(3);
    expect(stored.key).toBeNull();
    // The overview (over the socket, token as subprotocol), then a stream's live figures.
    await page.locator(`[data-testid="stream-${WEB}"]`).waitFor();
    await page.locator(`[data-testid="stream-${WEB}"]`).click();
    const count = page.locator('[data-testid="stat-count"] .value');
    await expect.poll(() => count.textContent(), { timeout: 10_000 }).toBe("3");
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-oidc-stream.png"), fullPage: true });
    // Sign out: the token is gone and the sign-in form is back.
    await page.getByTestId("signout-button").click();
    await page.getByTestId("sso-submit").waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem("edgepulse.token"))).toBeNull();
    await page.close();
  });
});

describe("when the provider itself goes down", () => {
  it("tokens of keys already fetched still verify; a new key id answers 503 once a refetch is due", async () => {
    const cached = await token("edgepulse-viewer");
    const rotatedAway = await newSigningKey("k3");
    const unknown = await idp.sign(
      { sub: "user-1", aud: API, realm_access: { roles: ["edgepulse-viewer"] } },
      rotatedAway,
    );
    await idp.close();
    expect((await api("GET", "/v1/streams", cached)).status).toBe(200);
    // Within the cooldown an unknown kid is refused without a fetch (401); once a refetch is due, the
    // provider's absence shows as 503.
    await expect
      .poll(
        async () => {
          const res = await api("GET", "/v1/streams", unknown);
          return res.status === 503 ? (await errorOf(res)).details?.reason : res.status;
        },
        { timeout: 15_000, interval: 250 },
      )
      .toBe("unreachable");
  });
});
