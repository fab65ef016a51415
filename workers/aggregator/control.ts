/**
 * The control plane: the operator token manages tenants; a tenant's admin
 * key manages that tenant's keys. Keys are shown once, at creation.
 */
import { Hono } from "hono";
import { isScope } from "../../core/keys";
import { forgetKey, requireKey, requireOperator } from "../lib/auth";
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
  forgetKey(info.id);
  return c.json(info);
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
  const info = await registry(c.env).revokeKey(c.get("grant").tenantId, c.req.param("key"));
  if (info === null) throw new ApiError("key_not_found");
  forgetKey(info.id);
  return c.json(info);
});
