/**
 * The control plane: the operator token manages tenants; a tenant's admin
 * key manages that tenant's keys. Keys are shown once, at creation.
 */
import { Hono } from "hono";
import { isScope } from "../../core/keys";
import { forgetHash, forgetKey, requireKey, requireOperator } from "../lib/auth";
import { ApiError } from "../lib/errors";
import type { AppEnv } from "../lib/types";

export const control = new Hono<AppEnv>();

async function jsonBody(req: Request): Promise<Record<string, unknown>> {
  const text = await req.text();
  if (text.trim() === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError("malformed_body", "The body must be a JSON object.");
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new ApiError("malformed_body", "The body must be a JSON object.");
  }
  return body as Record<string, unknown>;
}

function nameField(body: Record<string, unknown>, fallback: string): string {
  const name = body.name ?? fallback;
  if (typeof name !== "string" || name.length === 0 || name.length > 128) {
    throw new ApiError("invalid_request", "name must be a string of 1 to 128 characters.");
  }
  return name;
}

function scopeField(body: Record<string, unknown>) {
  if (!isScope(body.scope)) throw new ApiError("invalid_request", "scope must be one of ingest, read, admin.");
  return body.scope;
}

const registry = (env: Env) => env.TENANT_REGISTRY.getByName("global");

// Operator API.
control.use("/v1/admin/*", requireOperator());

control.post("/v1/admin/tenants", async (c) => {
  const body = await jsonBody(c.req.raw);
  const created = await registry(c.env).createTenant(nameField(body, "unnamed"));
  return c.json(created, 201);
});

control.get("/v1/admin/tenants", async (c) => c.json({ tenants: await registry(c.env).listTenants() }));

control.post("/v1/admin/tenants/:tenant/keys", async (c) => {
  const body = await jsonBody(c.req.raw);
  const scope = scopeField(body);
  const key = await registry(c.env).createKey(c.req.param("tenant"), scope, nameField(body, scope));
  if (key === null) throw new ApiError("tenant_not_found");
  return c.json(key, 201);
});

control.delete("/v1/admin/tenants/:tenant/keys/:key", async (c) => {
  const info = await registry(c.env).revokeKey(c.req.param("tenant"), c.req.param("key"));
  if (info === null) throw new ApiError("key_not_found");
  await forgetKey(c.env, info.id, await registry(c.env).keyHash(c.req.param("tenant"), info.id));
  return c.json(info);
});

/** Per-tenant rate limits in requests per second; null restores the default. Cached grants pick it up within minutes. */
control.put("/v1/admin/tenants/:tenant/limits", async (c) => {
  const body = await jsonBody(c.req.raw);
  const field = (k: string): number | null => {
    const v = body[k];
    if (v === null || v === undefined) return null;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 1_000_000) {
      throw new ApiError("invalid_request", `${k} must be an integer from 1 to 1000000, or null for the default.`);
    }
    return v;
  };
  const limits = await registry(c.env).setLimits(c.req.param("tenant"), {
    ingest_per_sec: field("ingest_per_sec"),
    read_per_sec: field("read_per_sec"),
  });
  if (limits === null) throw new ApiError("tenant_not_found");
  // Cached grants carry the limits: drop them so every key picks up the change within the isolate cache TTL.
  const hashes = await registry(c.env).keyHashes(c.req.param("tenant"));
  await Promise.all(hashes.map((h) => forgetHash(c.env, h)));
  return c.json(limits);
});

// Tenant admin API: always scoped to the key's own tenant.
control.get("/v1/keys", requireKey("admin"), async (c) =>
  c.json({ keys: await registry(c.env).listKeys(c.get("grant").tenantId) }),
);

control.post("/v1/keys", requireKey("admin"), async (c) => {
  const body = await jsonBody(c.req.raw);
  const scope = scopeField(body);
  const key = await registry(c.env).createKey(c.get("grant").tenantId, scope, nameField(body, scope));
  if (key === null) throw new ApiError("tenant_not_found");
  return c.json(key, 201);
});

control.delete("/v1/keys/:key", requireKey("admin"), async (c) => {
  const tenant = c.get("grant").tenantId;
  const info = await registry(c.env).revokeKey(tenant, c.req.param("key"));
  if (info === null) throw new ApiError("key_not_found");
  await forgetKey(c.env, info.id, await registry(c.env).keyHash(tenant, info.id));
  return c.json(info);
});

/** The tenant's usage against its limits. */
control.get("/v1/tenant", requireKey("read"), async (c) => {
  const tenant = c.get("grant").tenantId;
  const config = c.get("config");
  const limits = c.get("grant").limits;
  return c.json({
    tenant_id: tenant,
    limits: {
      ingest_per_sec: limits?.ingest_per_sec ?? config.RATE_LIMIT_INGEST_PER_SEC,
      read_per_sec: limits?.read_per_sec ?? config.RATE_LIMIT_READ_PER_SEC,
      max_streams: config.MAX_STREAMS_PER_TENANT,
    },
    usage: await registry(c.env).tenantUsage(tenant),
  });
});
