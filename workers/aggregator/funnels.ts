/**
 * The funnels API (core/funnels.ts): /v1/funnels. Definitions live in the tenant's funnel directory
 * (durable-objects/funnel-actor.ts); each step's stream is told which steps its events feed (its taps), and
 * results are gathered from the tenant's funnel shards. Read keys list and read (a credential limited to
 * stream prefixes sees only funnels whose every step it may read); admin keys without stream prefixes
 * create and delete. Every object reached is named by the caller's tenant.
 */
import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { z } from "zod";
import {
  dayOf,
  FUNNEL_MAX_DAYS,
  FUNNEL_SHARDS,
  FunnelCreate,
  type FunnelDef,
  funnelResults,
  funnelView,
  MAX_FUNNELS_PER_TENANT,
  parseFunnel,
  tapsFor,
} from "../../core/funnels";
import { newId } from "../../core/keys";
import type { KeyGrant } from "../../core/protocol";
import { describeIssues } from "../../core/schemas";
import type { DefineOutcome } from "../../durable-objects/funnel-actor";
import { assertStream, assertUnrestricted, requireKey } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { actor } from "../lib/registry";
import type { AppEnv } from "../lib/types";
import { jsonBody, onlyParams } from "../lib/validate";

export const funnels = new Hono<AppEnv>();

const directory = (env: Env, tenant: string) => env.FUNNEL_ACTOR.getByName(`${tenant}#funnels`);
const shardOf = (env: Env, tenant: string, k: number) => env.FUNNEL_ACTOR.getByName(`${tenant}#funnels#${k}`);

const admin = [
  requireKey("admin"),
  createMiddleware<AppEnv>(async (c, next) => {
    assertUnrestricted(c.get("grant"), "managing funnels (they read every stream they name)");
    await next();
  }),
] as const;

const notFound = (id: string) => new ApiError("funnel_not_found", `This tenant has no funnel '${id.slice(0, 64)}'.`);

const readable = (grant: KeyGrant, def: FunnelDef) => {
  for (const s of def.steps) assertStream(grant, s.stream);
};

/**
 * Tells every stream of `streams` which funnel steps its events feed, from the tenant's definitions and
 * their version: a stream keeps the taps of the newest version it was told, so two requests racing cannot
 * leave it an older list. An actor that cannot be reached makes the request a 503 that is safe to repeat.
 */
async function pushTaps(env: Env, tenant: string, streams: Iterable<string>): Promise<void> {
  const { defs, version } = await reaching("The funnel directory", () => directory(env, tenant).list());
  await reaching("A step's stream", () =>
    Promise.all(
      [...new Set(streams)].map((s) => actor(env, tenant, s).setFunnelTaps(tenant, s, tapsFor(s, defs), version)),
    ),
  );
}

/** Runs `fn`; an object that cannot be reached is a 503 that says to repeat the request (it is safe to). */
async function reaching<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ApiError) throw err;
    console.error(`edgepulse: funnels: ${what} unreachable: ${(err as Error).message}`);
    throw new ApiError("stream_unavailable", `${what} could not be reached; repeat the request (it is safe to).`);
  }
}

const shards = <T>(env: Env, tenant: string, call: (s: ReturnType<typeof shardOf>) => Promise<T>): Promise<T[]> =>
  reaching("A funnel shard", () =>
    Promise.all(Array.from({ length: FUNNEL_SHARDS }, (_, k) => call(shardOf(env, tenant, k)))),
  );

const DaysParam = z.coerce.number().int().min(1).max(FUNNEL_MAX_DAYS).default(1);

funnels.post("/v1/funnels", ...admin, jsonBody(FunnelCreate, "invalid_funnel"), async (c) => {
  const tenant = c.get("grant").tenantId;
  const parsed = parseFunnel(c.req.valid("json"));
  const outcome: DefineOutcome = await reaching("The funnel directory", async () =>
    directory(c.env, tenant).define({ ...parsed, id: newId("f"), created_at: Date.now() }),
  );
  if (!outcome.ok) {
    throw outcome.reason === "limit"
      ? new ApiError(
          "funnel_limit",
          `This tenant has ${MAX_FUNNELS_PER_TENANT} funnels, the most allowed; delete one first.`,
        )
      : new ApiError(
          "funnel_conflict",
          `A different funnel named '${parsed.name}' exists; funnels cannot be changed: delete it first or choose another name.`,
        );
  }
  // Sent again when the same definition is created again, so a create that failed half-way can be retried.
  await pushTaps(
    c.env,
    tenant,
    outcome.funnel.steps.map((s) => s.stream),
  );
  return c.json({ funnel: funnelView(outcome.funnel) }, outcome.created ? 201 : 200);
});

funnels.get("/v1/funnels", requireKey("read"), onlyParams(), async (c) => {
  const grant = c.get("grant");
  const { defs } = await reaching("The funnel directory", () => directory(c.env, grant.tenantId).list());
  const visible = defs.filter((d) => {
    try {
      readable(grant, d);
      return true;
    } catch {
      return false;
    }
  });
  return c.json({ funnels: visible.map(funnelView) });
});

async function found(env: Env, grant: KeyGrant, id: string): Promise<FunnelDef> {
  const def = await reaching("The funnel directory", () => directory(env, grant.tenantId).get(id));
  if (def === null) throw notFound(id);
  readable(grant, def);
  return def;
}

funnels.get("/v1/funnels/:id", requireKey("read"), onlyParams(), async (c) => {
  const def = await found(c.env, c.get("grant"), c.req.param("id"));
  return c.json({ funnel: funnelView(def) });
});

/**
 * The shards forget the funnel first (and ignore its events from then on: a delete that fails there leaves
 * the funnel listed, to be deleted again), then the definition goes, then the streams stop feeding it. If
 * that last step fails, the streams' events for it are ignored by the shards until the next change of the
 * tenant's funnels tells the streams again.
 */
funnels.delete("/v1/funnels/:id", ...admin, onlyParams(), async (c) => {
  const tenant = c.get("grant").tenantId;
  const def = await reaching("The funnel directory", () => directory(c.env, tenant).get(c.req.param("id")));
  if (def === null) throw notFound(c.req.param("id"));
  await shards(c.env, tenant, (s) => s.drop(def.id));
  await reaching("The funnel directory", () => directory(c.env, tenant).remove(def.id));
  await pushTaps(
    c.env,
    tenant,
    def.steps.map((s) => s.stream),
  );
  return c.body(null, 204);
});

funnels.get("/v1/funnels/:id/results", requireKey("read"), onlyParams("days"), async (c) => {
  const grant = c.get("grant");
  const days = DaysParam.safeParse(c.req.query("days"));
  if (!days.success) {
    const { message } = describeIssues(days.error);
    throw new ApiError("invalid_request", `days: ${message} (1–${FUNNEL_MAX_DAYS}, default 1 = today, UTC).`);
  }
  const def = await found(c.env, grant, c.req.param("id"));
  const toDay = dayOf(Date.now());
  const fromDay = toDay - days.data + 1;
  const parts = await shards(c.env, grant.tenantId, (s) => s.results(def.id, fromDay, toDay));
  const sum = (f: (p: (typeof parts)[number]) => number) => parts.reduce((a, p) => a + f(p), 0);
  return c.json({
    funnel: funnelView(def),
    ...funnelResults(
      def,
      parts.flatMap((p) => p.rows),
      fromDay,
      toDay,
    ),
    state: {
      users: sum((p) => p.users),
      bytes: sum((p) => p.state_bytes),
      late: sum((p) => p.late),
      overflow: sum((p) => p.overflow),
    },
  });
});
