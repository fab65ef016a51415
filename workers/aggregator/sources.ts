/**
 * Pull sources: /v1/sources (admin key, the key's own tenant only). A source lives in its own actor
 * (durable-objects/source-actor.ts, named `<tenant>/<source id>`), which keeps its secrets; the tenant's
 * registry only records which sources exist (at most MAX_SOURCES_PER_TENANT). A source writes into any
 * stream its mapping names, so a credential limited to stream prefixes cannot manage sources
 * (403 restricted_credential).
 */
import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { newId } from "../../core/keys";
import { MAX_SOURCES_PER_TENANT, SourceCreate, type SourceView, sourceUrls, splitSecrets } from "../../core/sources";
import { assertUnrestricted, requireKey } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { registry, source } from "../lib/registry";
import type { AppEnv } from "../lib/types";
import { jsonBody, onlyParams } from "../lib/validate";

export const sources = new Hono<AppEnv>();

const allowHttp = (env: Env) => String(env.ALLOW_HTTP_WEBHOOKS ?? "") === "true";
const WHAT = "managing pull sources (they write into any stream)";

/** An admin credential of the tenant, not limited to stream prefixes. */
const admin = [
  requireKey("admin"),
  createMiddleware<AppEnv>(async (c, next) => {
    assertUnrestricted(c.get("grant"), WHAT);
    await next();
  }),
] as const;

/** The source's view, or 404 when the tenant has no such source. */
async function existing(env: Env, tenant: string, id: string): Promise<ReturnType<typeof source>> {
  if (!(await registry(env, tenant).hasSource(id))) {
    throw new ApiError("source_not_found", `This tenant has no source '${id.slice(0, 64)}'.`);
  }
  return source(env, tenant, id);
}

const found = (view: SourceView | null, id: string): SourceView => {
  if (view === null) throw new ApiError("source_not_found", `This tenant has no source '${id.slice(0, 64)}'.`);
  return view;
};

sources.post("/v1/sources", ...admin, jsonBody(SourceCreate, "invalid_source"), async (c) => {
  const input = c.req.valid("json");
  for (const u of sourceUrls(input)) {
    if (new URL(u).protocol !== "https:" && !allowHttp(c.env)) {
      throw new ApiError("invalid_source", "url: must be https:// (http:// only where ALLOW_HTTP_WEBHOOKS=true).");
    }
  }
  const tenant = c.get("grant").tenantId;
  const id = newId("src");
  const added = await registry(c.env, tenant).addSource(id, Date.now(), MAX_SOURCES_PER_TENANT);
  if (added === null) throw new ApiError("tenant_not_found");
  if (!added) {
    throw new ApiError(
      "source_limit",
      `This tenant has ${MAX_SOURCES_PER_TENANT} sources, the most allowed; delete one (DELETE /v1/sources/:source) first.`,
    );
  }
  const { name, config, secrets } = splitSecrets(input);
  try {
    const view = (await source(c.env, tenant, id).create({ tenant, id, name, config, secrets })) as SourceView;
    return c.json(view, 201);
  } catch (err) {
    await registry(c.env, tenant).deleteSource(id);
    throw err;
  }
});

sources.get("/v1/sources", ...admin, onlyParams(), async (c) => {
  const tenant = c.get("grant").tenantId;
  const ids = await registry(c.env, tenant).listSources();
  const views = await Promise.all(ids.map((id) => source(c.env, tenant, id).view() as Promise<SourceView | null>));
  return c.json({ sources: views.filter((v): v is SourceView => v !== null) });
});

sources.get("/v1/sources/:source", ...admin, onlyParams(), async (c) => {
  const id = c.req.param("source");
  const stub = await existing(c.env, c.get("grant").tenantId, id);
  return c.json(found((await stub.view()) as SourceView | null, id));
});

sources.post("/v1/sources/:source/pause", ...admin, onlyParams(), async (c) => {
  const id = c.req.param("source");
  const stub = await existing(c.env, c.get("grant").tenantId, id);
  return c.json(found((await stub.pause()) as SourceView | null, id));
});

sources.post("/v1/sources/:source/resume", ...admin, onlyParams(), async (c) => {
  const id = c.req.param("source");
  const stub = await existing(c.env, c.get("grant").tenantId, id);
  return c.json(found((await stub.resume()) as SourceView | null, id));
});

sources.delete("/v1/sources/:source", ...admin, onlyParams(), async (c) => {
  const tenant = c.get("grant").tenantId;
  const id = c.req.param("source");
  const stub = await existing(c.env, tenant, id);
  const res = await stub.destroy();
  await registry(c.env, tenant).deleteSource(id);
  return c.json({ deleted: id, undelivered: res?.undelivered ?? 0 });
});
