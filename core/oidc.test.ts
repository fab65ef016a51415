import { describe, expect, it } from "vitest";
import {
  audiencesOf,
  claimAt,
  decodeSegment,
  discoveryUrl,
  isAllowedOidcUrl,
  looksLikeJwt,
  mapRoles,
  OIDC_ALGORITHMS,
  type RoleMapping,
  rolesOf,
} from "./oidc.ts";
import { KeyCreate, OidcConfigBody } from "./schemas.ts";

const b64 = (v: unknown) => btoa(JSON.stringify(v)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");

describe("OIDC: where the role is read", () => {
  const payload = {
    roles: ["viewer", "analyst"],
    role: "admin",
    realm_access: { roles: ["ops"] },
    "https://example.com/roles": ["namespaced"],
    nested: { deeper: { role: "deep" } },
  };

  it("reads a claim by name or dotted path, and namespaced claims whole", () => {
    expect(claimAt(payload, "roles")).toEqual(["viewer", "analyst"]);
    expect(claimAt(payload, "realm_access.roles")).toEqual(["ops"]);
    expect(claimAt(payload, "nested.deeper.role")).toBe("deep");
    expect(claimAt(payload, "https://example.com/roles")).toEqual(["namespaced"]);
    expect(claimAt(payload, "missing.path")).toBeUndefined();
    expect(claimAt(payload, "role.length")).toBeUndefined();
  });

  it("never resolves through the prototype", () => {
    expect(claimAt(payload, "__proto__")).toBeUndefined();
    expect(claimAt(payload, "constructor.name")).toBeUndefined();
    expect(claimAt(payload, "roles.constructor")).toBeUndefined();
  });

  it("takes a string as one role, an array's strings as roles, anything else as none", () => {
    expect(rolesOf("admin")).toEqual(["admin"]);
    expect(rolesOf(["a", 1, null, "b"])).toEqual(["a", "b"]);
    expect(rolesOf({ admin: true })).toEqual([]);
    expect(rolesOf(undefined)).toEqual([]);
    expect(rolesOf(Array.from({ length: 1000 }, (_, i) => `r${i}`))).toHaveLength(100);
  });

  it("grants the first mapping (in the configured order) whose role the token holds", () => {
    const mappings: RoleMapping[] = [
      { role: "ops", scope: "admin" },
      { role: "analyst", scope: "read", stream_prefixes: ["checkout."] },
      { role: "viewer", scope: "read" },
    ];
    expect(mapRoles(["viewer", "analyst"], mappings)).toEqual(mappings[1]);
    expect(mapRoles(["viewer", "ops"], mappings)).toEqual(mappings[0]);
    expect(mapRoles(["viewer"], mappings)).toEqual(mappings[2]);
    expect(mapRoles(["guest"], mappings)).toBeNull();
    expect(mapRoles([], mappings)).toBeNull();
  });
});

describe("OIDC: tokens and URLs", () => {
  it("tells JWTs (alg none included) from API keys", () => {
    expect(looksLikeJwt(`${b64({ alg: "RS256" })}.${b64({ iss: "x" })}.c2ln`)).toBe(true);
    expect(looksLikeJwt(`${b64({ alg: "none" })}.${b64({ iss: "x" })}.`)).toBe(true);
    expect(looksLikeJwt("ep_read_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")).toBe(false);
    expect(looksLikeJwt("a.b")).toBe(false);
    expect(looksLikeJwt("a.b.c.d")).toBe(false);
  });

  it("decodes a segment unverified (to route only), and refuses what is not a JSON object", () => {
    const t = `${b64({ alg: "ES256", kid: "k1" })}.${b64({ iss: "https://idp.example", aud: ["a", "b"], n: "é" })}.sig`;
    expect(decodeSegment(t, 0)).toEqual({ alg: "ES256", kid: "k1" });
    expect(decodeSegment(`x.${b64([1, 2])}.y`, 1)).toBeNull();
    expect(decodeSegment("!!.??.", 0)).toBeNull();
    const payload = decodeSegment(t, 1) as Record<string, unknown>;
    expect(audiencesOf(payload)).toEqual(["a", "b"]);
    expect(audiencesOf({ aud: "one" })).toEqual(["one"]);
    expect(audiencesOf({})).toEqual([]);
  });

  it("accepts https issuers, and http only on the loopback interface", () => {
    expect(isAllowedOidcUrl("https://idp.example.com/realms/acme")).toBe(true);
    expect(isAllowedOidcUrl("http://127.0.0.1:9000")).toBe(true);
    expect(isAllowedOidcUrl("http://localhost:9000/x")).toBe(true);
    expect(isAllowedOidcUrl("http://[::1]:9000")).toBe(true);
    expect(isAllowedOidcUrl("http://idp.example.com")).toBe(false);
    expect(isAllowedOidcUrl("https://user:pw@idp.example.com")).toBe(false);
    expect(isAllowedOidcUrl("https://idp.example.com/#frag")).toBe(false);
    expect(isAllowedOidcUrl("ftp://idp.example.com")).toBe(false);
    expect(isAllowedOidcUrl("not a url")).toBe(false);
  });

  it("finds the discovery document as OpenID Connect Discovery says", () => {
    expect(discoveryUrl("https://idp.example.com")).toBe("https://idp.example.com/.well-known/openid-configuration");
    expect(discoveryUrl("https://idp.example.com/realms/a/")).toBe(
      "https://idp.example.com/realms/a/.well-known/openid-configuration",
    );
  });

  it("accepts only asymmetric algorithms", () => {
    for (const alg of ["none", "HS256", "HS384", "HS512"])
      expect(OIDC_ALGORITHMS as readonly string[]).not.toContain(alg);
  });
});

describe("OIDC and key bodies", () => {
  const base = { issuer: "https://idp.example.com", audience: "edgepulse", roles: [{ role: "r", scope: "read" }] };

  it("takes a minimal provider, with defaults", () => {
    const r = OidcConfigBody.safeParse(base);
    expect(r.success).toBe(true);
    expect(r.data?.role_claim).toBe("roles");
  });

  it("refuses what would be unsafe or ambiguous, naming the field", () => {
    const bad: Array<[unknown, string]> = [
      [{ ...base, issuer: "http://idp.example.com" }, "issuer"],
      [{ ...base, jwks_uri: "http://evil.example/jwks" }, "jwks_uri"],
      [{ ...base, roles: [] }, "roles"],
      [{ ...base, roles: [{ role: "r", scope: "root" }] }, "roles.0.scope"],
      [
        {
          ...base,
          roles: [
            { role: "r", scope: "read" },
            { role: "r", scope: "admin" },
          ],
        },
        "roles",
      ],
      [
        { ...base, roles: [{ role: "r", scope: "read", stream_prefixes: ["checkout.*"] }] },
        "roles.0.stream_prefixes.0",
      ],
      [{ ...base, audience: ["a", "b", "c", "d", "e", "f"] }, "audience"],
      [{ ...base, dashboard: { client_id: "c", scopes: 'openid "x"' } }, "dashboard.scopes"],
      [{ ...base, extra: 1 }, "(body)"],
    ];
    for (const [body, path] of bad) {
      const r = OidcConfigBody.safeParse(body);
      expect(r.success, JSON.stringify(body)).toBe(false);
      const paths = (r.error?.issues ?? []).map((i) => (i.path.length ? i.path.join(".") : "(body)"));
      expect(paths, JSON.stringify(body)).toContain(path);
    }
  });

  it("bounds a key's stream prefixes", () => {
    expect(KeyCreate.safeParse({ scope: "read", stream_prefixes: ["checkout."] }).success).toBe(true);
    expect(KeyCreate.safeParse({ scope: "read", stream_prefixes: [] }).success).toBe(false);
    expect(KeyCreate.safeParse({ scope: "read", stream_prefixes: ["a", "a"] }).success).toBe(false);
    expect(KeyCreate.safeParse({ scope: "read", stream_prefixes: ["x".repeat(129)] }).success).toBe(false);
    expect(
      KeyCreate.safeParse({ scope: "read", stream_prefixes: Array.from({ length: 11 }, (_, i) => `p${i}`) }).success,
    ).toBe(false);
  });
});
