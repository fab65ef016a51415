/**
 * Alert rules API. The registry keeps the tenant's rules (for listing); each
 * rule is also handed to its stream's actor, which keeps it in its own
 * storage and evaluates it. Writes need an admin key, reads a read key.
 */
import { Hono } from "hono";
import { type AlertRule, SIGNATURE_HEADER, validateRule } from "../../core/alerts";
import { newId } from "../../core/keys";
import type { AlertEvent } from "../../core/live";
import type { DeliveryInfo, RuleStatus } from "../../durable-objects/metric-actor";
import { requireKey } from "../lib/auth";
import { ApiError } from "../lib/errors";
import type { AppEnv } from "../lib/types";

export const alerts = new Hono<AppEnv>();

const registry = (env: Env) => env.TENANT_REGISTRY.getByName("global");
const actor = (env: Env, tenant: string, stream: string) => env.METRIC_ACTOR.getByName(`${tenant}/${stream}`);
const allowHttp = (env: Env) => String(env.ALLOW_HTTP_WEBHOOKS ?? "") === "true";

async function body(req: Request): Promise<Record<string, unknown>> {
  let b: unknown;
  try {
    b = JSON.parse((await req.text()) || "{}");
  } catch {
    throw new ApiError("malformed_body", "The body must be a JSON object.");
  }
  if (b === null || typeof b !== "object" || Array.isArray(b))
    throw new ApiError("malformed_body", "The body must be a JSON object.");
  return b as Record<string, unknown>;
}

/** Hands the rule to its actor, then records it in the registry. */
async function save(env: Env, tenant: string, rule: AlertRule, previous?: AlertRule): Promise<RuleStatus> {
  const secret = await registry(env).webhookSecret(tenant);
  if (previous && previous.stream !== rule.stream) await actor(env, tenant, previous.stream).deleteRule(rule.id);
  const status = (await actor(env, tenant, rule.stream).setRule(rule, tenant, secret)) as RuleStatus;
  await registry(env).putRule(tenant, rule);
  return status;
}

async function withState(env: Env, tenant: string, rules: AlertRule[]): Promise<RuleStatus[]> {
  const streams = [...new Set(rules.map((r) => r.stream))];
  const states = new Map<string, RuleStatus>();
  await Promise.all(
    streams.map(async (s) => {
      for (const st of (await actor(env, tenant, s).ruleStatuses()) as RuleStatus[]) states.set(st.rule.id, st);
    }),
  );
  return rules.map((rule) => ({
    rule,
    state: states.get(rule.id)?.state ?? {
      state: "inactive",
      activeSince: null,
      firingSince: null,
      lastTrueAt: null,
      value: null,
    },
  }));
}

alerts.post("/v1/alerts/rules", requireKey("admin"), async (c) => {
  const tenant = c.get("grant").tenantId;
  const rule = validateRule(await body(c.req.raw), { id: newId("rule"), now: Date.now() }, allowHttp(c.env));
  return c.json(await save(c.env, tenant, rule), 201);
});

alerts.get("/v1/alerts/rules", requireKey("read"), async (c) => {
  const tenant = c.get("grant").tenantId;
  return c.json({ rules: await withState(c.env, tenant, await registry(c.env).listRules(tenant)) });
});

async function existing(env: Env, tenant: string, id: string): Promise<AlertRule> {
  const rule = await registry(env).getRule(tenant, id);
  if (!rule) throw new ApiError("rule_not_found");
  return rule;
}

alerts.get("/v1/alerts/rules/:id", requireKey("read"), async (c) => {
  const tenant = c.get("grant").tenantId;
  const [status] = await withState(c.env, tenant, [await existing(c.env, tenant, c.req.param("id"))]);
  return c.json(status);
});

alerts.patch("/v1/alerts/rules/:id", requireKey("admin"), async (c) => {
  const tenant = c.get("grant").tenantId;
  const before = await existing(c.env, tenant, c.req.param("id"));
  const rule = validateRule(
    await body(c.req.raw),
    { id: before.id, now: Date.now(), existing: before },
    allowHttp(c.env),
  );
  return c.json(await save(c.env, tenant, rule, before));
});

for (const action of ["enable", "disable"] as const) {
  alerts.post(`/v1/alerts/rules/:id/${action}`, requireKey("admin"), async (c) => {
    const tenant = c.get("grant").tenantId;
    const before = await existing(c.env, tenant, c.req.param("id"));
    const rule = validateRule(
      { enabled: action === "enable" },
      { id: before.id, now: Date.now(), existing: before },
      true,
    );
    return c.json(await save(c.env, tenant, rule, before));
  });
}

alerts.delete("/v1/alerts/rules/:id", requireKey("admin"), async (c) => {
  const tenant = c.get("grant").tenantId;
  const rule = await existing(c.env, tenant, c.req.param("id"));
  await actor(c.env, tenant, rule.stream).deleteRule(rule.id);
  await registry(c.env).deleteRule(tenant, rule.id);
  return c.json({ deleted: rule.id });
});

/** Alerts firing now, across the tenant's streams. */
alerts.get("/v1/alerts", requireKey("read"), async (c) => {
  return c.json({ firing: await c.env.TENANT_HUB.getByName(c.get("grant").tenantId).firingAlerts() });
});

/** Recent transitions (newest first) with their webhook deliveries; older ones are in PostgreSQL's alert_events. */
alerts.get("/v1/alerts/events", requireKey("read"), async (c) => {
  const tenant = c.get("grant").tenantId;
  const limit = Math.min(500, Math.max(1, Number(c.req.query("limit") ?? 100) || 100));
  const only = c.req.query("stream");
  const rules = await registry(c.env).listRules(tenant);
  const streams = [...new Set(rules.map((r) => r.stream))].filter((s) => !only || s === only);
  const lists = await Promise.all(
    streams.map(
      (s) => actor(c.env, tenant, s).alertEvents(limit) as Promise<Array<AlertEvent & { deliveries: DeliveryInfo[] }>>,
    ),
  );
  const events = lists
    .flat()
    .sort((a, b) => b.at - a.at || a.id.localeCompare(b.id))
    .slice(0, limit);
  return c.json({ events });
});

/** The tenant's webhook signing secret, for verifying deliveries. */
alerts.get("/v1/alerts/secret", requireKey("admin"), async (c) => {
  return c.json({
    secret: await registry(c.env).webhookSecret(c.get("grant").tenantId),
    header: SIGNATURE_HEADER,
    scheme: "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.<raw body>')>",
  });
});
