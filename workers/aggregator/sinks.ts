/**
 * Sinks: /v1/sinks (admin key, the key's own tenant only). A sink lives in its own actor
 * (durable-objects/sink-actor.ts, named `<tenant>/<sink id>`), which keeps its secret; the tenant's registry
 * records which sinks exist and which streams each takes (at most MAX_SINKS_PER_TENANT), and the streams'
 * actors read that list to tell each matching sink about every archive segment they write. A sink reads
 * the raw archive, so it needs one (the ARCHIVE bucket bound). A credential limited to stream prefixes
 * cannot manage sinks (403 restricted_credential): a sink reads every stream it names.
 */
import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { archiveEnabled } from "../../core/archive";
import { newId } from "../../core/keys";
import { KafkaSink, MAX_SINKS_PER_TENANT, type SinkView, splitSinkSecrets } from "../../core/sinks";
import { assertUnrestricted, requireKey } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { registry, sink } from "../lib/registry";
import type { AppEnv } from "../lib/types";
import { jsonBody, onlyParams } from "../lib/validate";

export const sinks = new Hono<AppEnv>();

const allowHttp = (env: Env) => String(env.ALLOW_HTTP_WEBHOOKS ?? "") === "true";

const admin = [
  requireKey("admin"),
  createMiddleware<AppEnv>(async (c, next) => {
    assertUnrestricted(c.get("grant"), "managing sinks (they read every stream they name)");
    await next();
  }),
] as const;

const notFound = (id: string) => new ApiError("sink_not_found", `This tenant has no sink '${id.slice(0, 64)}'.`);

async function existing(env: Env, tenant: string, id: string): Promise<ReturnType<typeof sink>> {
  if (!(await registry(env, tenant).hasSink(id))) throw notFound(id);
  return sink(env, tenant, id);
}

const found = (view: SinkView | null, id: string): SinkView => {
  if (view === null) throw notFound(id);
  return view;
};

sinks.post("/v1/sinks", ...admin, jsonBody(KafkaSink, "invalid_sink"), async (c) => {
  const input = c.req.valid("json");
  if (new URL(input.url).protocol !== "https:" && !allowHttp(c.env)) {
    throw new ApiError("invalid_sink", "url: must be https:// (http:// only where ALLOW_HTTP_WEBHOOKS=true).");
  }
  if (!archiveEnabled(c.env, c.get("config"))) {
    throw new ApiError(
      "invalid_sink",
      "This deployment keeps no raw archive (no ARCHIVE bucket, or ARCHIVE_ENABLED=0), which sinks read.",
    );
  }
  const tenant = c.get("grant").tenantId;
  const id = newId("snk");
  const added = await registry(c.env, tenant).addSink(id, Date.now(), input.streams ?? null, MAX_SINKS_PER_TENANT);
  if (added === null) throw new ApiError("tenant_not_found");
  if (!added) {
    throw new ApiError(
      "sink_limit",
      `This tenant has ${MAX_SINKS_PER_TENANT} sinks, the most allowed; delete one (DELETE /v1/sinks/:sink) first.`,
    );
  }
  const { name, config, secrets } = splitSinkSecrets(input);
  try {
    return c.json((await sink(c.env, tenant, id).create({ tenant, id, name, config, secrets })) as SinkView, 201);
  } catch (err) {
    await registry(c.env, tenant).deleteSink(id);
    throw err;
  }
});

sinks.get("/v1/sinks", ...admin, onlyParams(), async (c) => {
  const tenant = c.get("grant").tenantId;
  const routes = await registry(c.env, tenant).listSinks();
  const views = await Promise.all(routes.map((r) => sink(c.env, tenant, r.id).view() as Promise<SinkView | null>));
  return c.json({ sinks: views.filter((v): v is SinkView => v !== null) });
});

sinks.get("/v1/sinks/:sink", ...admin, onlyParams(), async (c) => {
  const id = c.req.param("sink");
  const stub = await existing(c.env, c.get("grant").tenantId, id);
  return c.json(found((await stub.view()) as SinkView | null, id));
});

sinks.post("/v1/sinks/:sink/pause", ...admin, onlyParams(), async (c) => {
  const id = c.req.param("sink");
  const stub = await existing(c.env, c.get("grant").tenantId, id);
  return c.json(found((await stub.pause()) as SinkView | null, id));
});

sinks.post("/v1/sinks/:sink/resume", ...admin, onlyParams(), async (c) => {
  const id = c.req.param("sink");
  const stub = await existing(c.env, c.get("grant").tenantId, id);
  return c.json(found((await stub.resume()) as SinkView | null, id));
});

sinks.delete("/v1/sinks/:sink", ...admin, onlyParams(), async (c) => {
  const tenant = c.get("grant").tenantId;
  const id = c.req.param("sink");
  const stub = await existing(c.env, tenant, id);
  // Out of the registry first: streams stop telling it about new segments.
  await registry(c.env, tenant).deleteSink(id);
  const res = await stub.destroy();
  return c.json({ deleted: id, queued_segments: res?.queued_segments ?? 0 });
});
