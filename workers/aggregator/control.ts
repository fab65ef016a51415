/**
 * The control plane: the operator token manages tenants; a tenant's admin
 * key manages that tenant's keys. Keys are shown once, at creation. Bodies
 * are validated by the schemas in core/schemas.ts. A key may be limited to
 * stream prefixes; a prefix-limited admin hands out and revokes only keys
 * within its own prefixes, so it can never mint a broader credential.
 */
import { Hono } from "hono";
import { isStreamName } from "../../core/event";
import { hashKey, keyPrefix, newId, newKey, prefixesWithin, type Scope } from "../../core/keys";
import type { KeyGrant, KeyInfo } from "../../core/protocol";
import { KeyCreate, LimitsUpdate, TenantCreate } from "../../core/schemas";
import { forgetHashes, requireKey, requireOperator } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { actor, directory, registry } from "../lib/registry";
import type { AppEnv } from "../lib/types";
import { jsonBody, onlyParams } from "../lib/validate";

export const control = new Hono<AppEnv>();

/** Creates a key: the directory learns its hash first, then the tenant's registry stores it (a failure between leaves an unusable hash, never a usable key without a record). */
async function createKey(
  env: Env,
  tenantId: string,
  scope: Scope,
  name: string,
  streamPrefixes: string[] | null = null,
): Promise<KeyInfo & { key: string }> {
  const key = newKey(scope);
  const hash = await hashKey(key);
  await directory(env).addKey(hash, tenantId);
  const info = await registry(env, tenantId).createKey({
    id: newId("key"),
    hash,
    prefix: keyPrefix(key),
    scope,
    name,
    createdAt: Date.now(),
    streamPrefixes,
  });
  if (info === null) throw new ApiError("tenant_not_found");
  return { ...info, key };
}

async function existingTenant(env: Env, id: string): Promise<void> {
  if (!(await directory(env).hasTenant(id))) throw new ApiError("tenant_not_found");
}

async function revoke(env: Env, tenantId: string, keyId: string, timeoutMs: number): Promise<KeyInfo> {
  const res = await registry(env, tenantId).revokeKey(keyId);
  if (res === null) throw new ApiError("key_not_found");
  // Committed: dropping the cached grant is bounded and may not fail the request (the registry retries it).
  await forgetHashes(env, [res.hash], timeoutMs);
  return res.info;
}

// Operator API.
control.use("/v1/admin/*", requireOperator());

control.post("/v1/admin/tenants", jsonBody(TenantCreate), async (c) => {
  const { name } = c.req.valid("json");
  const id = newId("t");
  const now = Date.now();
  await registry(c.env, id).init(id, name, now);
  const tenant = await directory(c.env).addTenant(id, name, now);
  const keys = [];
  for (const scope of ["admin", "ingest", "read"] as const)
    keys.push(await createKey(c.env, id, scope, `default ${scope}`));
  return c.json({ tenant, keys }, 201);
});

control.get("/v1/admin/tenants", onlyParams(), async (c) => c.json({ tenants: await directory(c.env).listTenants() }));

control.post("/v1/admin/tenants/:tenant/keys", jsonBody(KeyCreate), async (c) => {
  const tenant = c.req.param("tenant");
  await existingTenant(c.env, tenant);
  const body = c.req.valid("json");
  return c.json(await createKey(c.env, tenant, body.scope, body.name ?? body.scope, body.stream_prefixes ?? null), 201);
});

control.delete("/v1/admin/tenants/:tenant/keys/:key", async (c) => {
  const tenant = c.req.param("tenant");
  await existingTenant(c.env, tenant);
  return c.json(await revoke(c.env, tenant, c.req.param("key"), c.get("config").RATE_LIMIT_TIMEOUT_MS));
});

/** Per-tenant rate limits in requests per second; null restores the default. Every isolate picks it up within the key cache TTL. */
control.put("/v1/admin/tenants/:tenant/limits", jsonBody(LimitsUpdate), async (c) => {
  const tenant = c.req.param("tenant");
  await existingTenant(c.env, tenant);
  const body = c.req.valid("json");
  const reg = registry(c.env, tenant);
  const limits = await reg.setLimits({
    ingest_per_sec: body.ingest_per_sec ?? null,
    read_per_sec: body.read_per_sec ?? null,
  });
  if (limits === null) throw new ApiError("tenant_not_found");
  await forgetHashes(c.env, await reg.keyHashes(), c.get("config").RATE_LIMIT_TIMEOUT_MS);
  return c.json(limits);
});

/** What a stream's actor holds (storage, minutes, registers, dedup ids, outbox): for operators watching capacity. */
control.get("/v1/admin/tenants/:tenant/streams/:name/stats", async (c) => {
  const tenant = c.req.param("tenant");
  const name = c.req.param("name");
  if (!isStreamName(name)) throw new ApiError("invalid_stream_name");
  await existingTenant(c.env, tenant);
  return c.json(await actor(c.env, tenant, name).stats());
});

/** Whether a (possibly prefix-limited) admin may see and revoke this key: one within its own prefixes. */
const withinReach = (grant: KeyGrant, key: KeyInfo) =>
  prefixesWithin(key.stream_prefixes, grant.streamPrefixes ?? null);

// Tenant admin API: always scoped to the key's own tenant.
control.get("/v1/keys", requireKey("admin"), onlyParams(), async (c) => {
  const grant = c.get("grant");
  const keys = await registry(c.env, grant.tenantId).listKeys();
  return c.json({ keys: keys.filter((k) => withinReach(grant, k)) });
});

control.post("/v1/keys", requireKey("admin"), jsonBody(KeyCreate), async (c) => {
  const body = c.req.valid("json");
  const grant = c.get("grant");
  // A limited admin's keys default to its own prefixes, and may only narrow them.
  const prefixes = body.stream_prefixes ?? grant.streamPrefixes ?? null;
  if (!prefixesWithin(prefixes, grant.streamPrefixes ?? null)) {
    throw new ApiError(
      "stream_not_allowed",
      `This credential is limited to streams starting with ${(grant.streamPrefixes ?? []).map((p) => `'${p}'`).join(", ")}; each of the new key's stream_prefixes must start with one of them.`,
    );
  }
  return c.json(await createKey(c.env, grant.tenantId, body.scope, body.name ?? body.scope, prefixes), 201);
});

control.delete("/v1/keys/:key", requireKey("admin"), async (c) => {
  const grant = c.get("grant");
  const info = await registry(c.env, grant.tenantId).keyInfo(c.req.param("key"));
  // A key beyond a limited admin's reach is not found, as in its listing.
  if (info === null || !withinReach(grant, info)) throw new ApiError("key_not_found");
  return c.json(await revoke(c.env, grant.tenantId, info.id, c.get("config").RATE_LIMIT_TIMEOUT_MS));
});

/** The tenant's usage against its limits. */
control.get("/v1/tenant", requireKey("read"), onlyParams(), async (c) => {
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
    usage: await registry(c.env, tenant).usage(),
  });
});
