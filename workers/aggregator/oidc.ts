/**
 * A tenant's OpenID Connect identity provider (one per tenant): registered, read and removed with an
 * unrestricted admin credential; its public part (issuer endpoints and the dashboard's client id) served
 * without authentication so the dashboard can start a sign-in. Tokens are verified in workers/lib/oidc.ts.
 */
import { Hono } from "hono";
import { OIDC_ALGORITHMS, OIDC_CLOCK_TOLERANCE_S, type OidcConfig, type OidcPublicConfig } from "../../core/oidc";
import { OidcConfigBody } from "../../core/schemas";
import { isoTime } from "../../core/time";
import { assertUnrestricted, requireKey } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { discover, forgetOidc, JWKS_MAX_AGE_MS } from "../lib/oidc";
import { directory, registry } from "../lib/registry";
import type { AppEnv } from "../lib/types";
import { jsonBody, onlyParams } from "../lib/validate";

export const oidc = new Hono<AppEnv>();

/** The configuration as the API shows it, with what the server enforces beside it. */
export type OidcView = ReturnType<typeof view>;

function view(config: OidcConfig, origin: string) {
  return {
    issuer: config.issuer,
    jwks_uri: config.jwks_uri,
    audience: config.audiences,
    role_claim: config.role_claim,
    roles: config.roles.map((r) => ({
      role: r.role,
      scope: r.scope,
      stream_prefixes: r.stream_prefixes ?? null,
    })),
    dashboard:
      config.dashboard === null
        ? null
        : {
            ...config.dashboard,
            // Register this as a redirect URI of the client at the provider.
            redirect_uri: `${origin}/`,
          },
    algorithms: [...OIDC_ALGORITHMS] as string[],
    clock_tolerance_s: OIDC_CLOCK_TOLERANCE_S,
    jwks_cache_s: JWKS_MAX_AGE_MS / 1000,
    updated_at: isoTime(config.updated_at),
  };
}

const originOf = (url: string) => new URL(url).origin;

/** Public answers cached per isolate (a sign-in page is opened often; nothing here is secret). */
const PUBLIC_TTL_MS = 5000;
const MAX_PUBLIC_CACHED = 10_000;
const publicCache = new Map<string, { value: OidcPublicConfig | null; expires: number }>();
const TENANT_ID = /^[A-Za-z0-9_-]{1,64}$/;

oidc.put("/v1/auth/oidc", requireKey("admin"), jsonBody(OidcConfigBody, "invalid_oidc_config"), async (c) => {
  const grant = c.get("grant");
  assertUnrestricted(grant, "registering an identity provider");
  const body = c.req.valid("json");
  const tenant = grant.tenantId;
  const audiences = [...new Set(Array.isArray(body.audience) ? body.audience : [body.audience])];
  let jwksUri = body.jwks_uri ?? null;
  let dashboard: OidcConfig["dashboard"] = null;
  if (jwksUri === null || body.dashboard !== undefined) {
    const found = await discover(body.issuer, c.get("config").OIDC_JWKS_TIMEOUT_MS);
    jwksUri ??= found.jwks_uri;
    if (body.dashboard !== undefined) {
      if (found.authorization_endpoint === null || found.token_endpoint === null) {
        throw new ApiError(
          "oidc_discovery_failed",
          "The issuer's discovery document has no authorization_endpoint or token_endpoint, which the dashboard's sign-in needs; omit dashboard to accept tokens only.",
        );
      }
      dashboard = {
        client_id: body.dashboard.client_id,
        scopes: body.dashboard.scopes,
        authorization_endpoint: found.authorization_endpoint,
        token_endpoint: found.token_endpoint,
      };
    }
  }
  const config: OidcConfig = {
    issuer: body.issuer,
    jwks_uri: jwksUri,
    audiences,
    role_claim: body.role_claim,
    roles: body.roles.map((r) => ({
      role: r.role,
      scope: r.scope,
      ...(r.stream_prefixes ? { stream_prefixes: r.stream_prefixes } : {}),
    })),
    dashboard,
    updated_at: Date.now(),
  };
  const reg = registry(c.env, tenant);
  if ((await reg.info()) === null) throw new ApiError("tenant_not_found");
  // The directory routes tokens by (issuer, audience): a pair belongs to one tenant only.
  const claimed = await directory(c.env).claimIssuer(tenant, config.issuer, audiences);
  if (!claimed.ok) {
    throw new ApiError(
      "issuer_taken",
      `Another tenant has registered the issuer '${config.issuer}' with the audience '${claimed.audience}'; each (issuer, audience) pair routes tokens to one tenant. Use an audience of your own (your API identifier or client id).`,
    );
  }
  await reg.setOidc(config);
  forgetOidc(tenant);
  publicCache.delete(tenant);
  return c.json(view(config, originOf(c.req.url)));
});

oidc.get("/v1/auth/oidc", requireKey("admin"), onlyParams(), async (c) => {
  const config = (await registry(c.env, c.get("grant").tenantId).getOidc()) as OidcConfig | null;
  if (config === null) throw new ApiError("oidc_not_configured");
  return c.json(view(config, originOf(c.req.url)));
});

oidc.delete("/v1/auth/oidc", requireKey("admin"), onlyParams(), async (c) => {
  const grant = c.get("grant");
  assertUnrestricted(grant, "removing the identity provider");
  // The registry first: from then on its tokens find no configuration, whatever the directory says.
  const had = (await registry(c.env, grant.tenantId).deleteOidc()) as OidcConfig | null;
  await directory(c.env).releaseIssuer(grant.tenantId);
  forgetOidc(grant.tenantId);
  publicCache.delete(grant.tenantId);
  if (had === null) throw new ApiError("oidc_not_configured");
  return c.json({ deleted: true as const, issuer: had.issuer });
});

/** What the dashboard needs to sign in to a tenant: no authentication, nothing secret. */
oidc.get("/v1/auth/oidc/public/:tenant", onlyParams(), async (c) => {
  const tenant = c.req.param("tenant");
  const notConfigured = () =>
    new ApiError(
      "oidc_not_configured",
      "This tenant has no sign-in configured: its admin registers a provider with a dashboard client id (PUT /v1/auth/oidc); or paste a read key.",
    );
  if (!TENANT_ID.test(tenant)) throw notConfigured();
  const now = Date.now();
  const hit = publicCache.get(tenant);
  let value: OidcPublicConfig | null;
  if (hit && hit.expires > now) value = hit.value;
  else {
    // The directory first, so a made-up id never creates a registry.
    const config = (await directory(c.env).hasTenant(tenant))
      ? ((await registry(c.env, tenant).getOidc()) as OidcConfig | null)
      : null;
    value =
      config?.dashboard == null
        ? null
        : {
            tenant_id: tenant,
            issuer: config.issuer,
            client_id: config.dashboard.client_id,
            scopes: config.dashboard.scopes,
            audiences: config.audiences,
            authorization_endpoint: config.dashboard.authorization_endpoint,
            token_endpoint: config.dashboard.token_endpoint,
          };
    if (publicCache.size >= MAX_PUBLIC_CACHED) publicCache.clear();
    publicCache.set(tenant, { value, expires: now + PUBLIC_TTL_MS });
  }
  if (value === null) throw notConfigured();
  return c.json(value);
});
