/**
 * Alert rules API. A rule lives in its stream's actor (which evaluates it);
 * the tenant's registry only records which stream each rule id is on. Writes
 * need an admin key, reads a read key. A prefix-limited credential sees and
 * writes only rules on streams its prefixes allow (core/keys.ts streamAllowed):
 * others are listed to it as if they did not exist.
 */
import { Hono } from "hono";
import { alertEventView, RuleBody, resolveRule, ruleView, SIGNATURE_HEADER } from "../../core/alerts";
import { newId, streamAllowed } from "../../core/keys";
import type { AlertEvent } from "../../core/live";
import { prometheusRuleFile } from "../../core/prometheus-rules";
import type { KeyGrant } from "../../core/protocol";
import { isoOrNull } from "../../core/time";
import type { DeliveryInfo, RuleStatus } from "../../durable-objects/metric-actor";
import { assertStream, assertUnrestricted, requireKey } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { actor, hub, registry } from "../lib/registry";
import type { AppEnv } from "../lib/types";
import { jsonBody, onlyParams } from "../lib/validate";

export const alerts = new Hono<AppEnv>();

const allowHttp = (env: Env) => String(env.ALLOW_HTTP_WEBHOOKS ?? "") === "true";
const ruleBody = jsonBody(RuleBody, "invalid_rule");

/** Hands the rule to its actor (moving it if its stream changed), then records where it lives. */
async function save(env: Env, tenant: string, rule: RuleStatus["rule"], previousStream?: string): Promise<RuleStatus> {
  if (previousStream !== undefined && previousStream !== rule.stream) {
    await actor(env, tenant, previousStream).deleteRule(rule.id);
  }
  const status = (await actor(env, tenant, rule.stream).setRule(rule, tenant)) as RuleStatus;
  await registry(env, tenant).putRuleIndex(rule.id, rule.stream);
  return status;
}

/** The rule with its state, from the actor that holds it; a rule on a stream the credential may not reach is not found. */
async function existing(env: Env, grant: KeyGrant, id: string): Promise<RuleStatus> {
  const tenant = grant.tenantId;
  const stream = await registry(env, tenant).ruleStream(id);
  const status =
    stream === null || !streamAllowed(grant, stream)
      ? null
      : ((await actor(env, tenant, stream).getRule(id)) as RuleStatus | null);
  if (status === null) throw new ApiError("rule_not_found");
  return status;
}

alerts.post("/v1/alerts/rules", requireKey("admin"), ruleBody, async (c) => {
  const tenant = c.get("grant").tenantId;
  const rule = resolveRule(c.req.valid("json"), { id: newId("rule"), now: Date.now() }, allowHttp(c.env));
  assertStream(c.get("grant"), rule.stream);
  return c.json(ruleView(await save(c.env, tenant, rule)), 201);
});

alerts.get("/v1/alerts/rules", requireKey("read"), onlyParams("format"), async (c) => {
  const format = c.req.query("format") ?? "json";
  if (format !== "json" && format !== "prometheus")
    throw new ApiError("invalid_request", `format '${format.slice(0, 16)}' is not one of json, prometheus.`);
  const grant = c.get("grant");
  const tenant = grant.tenantId;
  const index = (await registry(c.env, tenant).listRuleIndex()).filter((r) => streamAllowed(grant, r.stream));
  const streams = [...new Set(index.map((r) => r.stream))];
  const statuses = new Map<string, RuleStatus>();
  await Promise.all(
    streams.map(async (s) => {
      for (const st of (await actor(c.env, tenant, s).ruleStatuses()) as RuleStatus[]) statuses.set(st.rule.id, st);
    }),
  );
  const found = index.flatMap((r) => statuses.get(r.id) ?? []);
  if (format === "prometheus") {
    const file = prometheusRuleFile(
      found.map((s) => s.rule),
      `edgepulse ${tenant}`,
    );
    return c.body(file, 200, {
      "content-type": "application/yaml; charset=utf-8",
      "content-disposition": 'attachment; filename="edgepulse-rules.yml"',
    });
  }
  return c.json({ rules: found.map(ruleView) });
});

alerts.get("/v1/alerts/rules/:id", requireKey("read"), onlyParams(), async (c) =>
  c.json(ruleView(await existing(c.env, c.get("grant"), c.req.param("id")))),
);

alerts.patch("/v1/alerts/rules/:id", requireKey("admin"), ruleBody, async (c) => {
  const tenant = c.get("grant").tenantId;
  const before = (await existing(c.env, c.get("grant"), c.req.param("id"))).rule;
  const rule = resolveRule(c.req.valid("json"), { id: before.id, now: Date.now(), existing: before }, allowHttp(c.env));
  assertStream(c.get("grant"), rule.stream);
  return c.json(ruleView(await save(c.env, tenant, rule, before.stream)));
});

for (const action of ["enable", "disable"] as const) {
  alerts.post(`/v1/alerts/rules/:id/${action}`, requireKey("admin"), async (c) => {
    const tenant = c.get("grant").tenantId;
    const before = (await existing(c.env, c.get("grant"), c.req.param("id"))).rule;
    const rule = resolveRule(
      { enabled: action === "enable" },
      { id: before.id, now: Date.now(), existing: before },
      true,
    );
    return c.json(ruleView(await save(c.env, tenant, rule, before.stream)));
  });
}

alerts.delete("/v1/alerts/rules/:id", requireKey("admin"), async (c) => {
  const tenant = c.get("grant").tenantId;
  const { rule } = await existing(c.env, c.get("grant"), c.req.param("id"));
  await actor(c.env, tenant, rule.stream).deleteRule(rule.id);
  await registry(c.env, tenant).deleteRuleIndex(rule.id);
  return c.json({ deleted: rule.id });
});

/** Alerts firing now, across the tenant's streams. */
alerts.get("/v1/alerts", requireKey("read"), onlyParams(), async (c) => {
  const grant = c.get("grant");
  const firing = (await hub(c.env, grant.tenantId).firingAlerts()).filter((a) => streamAllowed(grant, a.stream));
  return c.json({ firing: firing.map(alertEventView) });
});

/** GET /v1/alerts/events: transitions returned by default and at most (a limit beyond is clamped). */
export const ALERT_EVENTS = { limit: 100, maxLimit: 500 } as const;

/** Recent transitions (newest first) with their webhook deliveries; older ones are in PostgreSQL's alert_events. */
alerts.get("/v1/alerts/events", requireKey("read"), onlyParams("limit", "stream"), async (c) => {
  const grant = c.get("grant");
  const tenant = grant.tenantId;
  const limit = Math.min(
    ALERT_EVENTS.maxLimit,
    Math.max(1, Number(c.req.query("limit") ?? ALERT_EVENTS.limit) || ALERT_EVENTS.limit),
  );
  const only = c.req.query("stream");
  if (only) assertStream(grant, only);
  const index = await registry(c.env, tenant).listRuleIndex();
  const streams = [...new Set(index.map((r) => r.stream))].filter(
    (s) => (!only || s === only) && streamAllowed(grant, s),
  );
  const lists = await Promise.all(
    streams.map(
      (s) => actor(c.env, tenant, s).alertEvents(limit) as Promise<Array<AlertEvent & { deliveries: DeliveryInfo[] }>>,
    ),
  );
  const events = lists
    .flat()
    .sort((a, b) => b.at - a.at || a.id.localeCompare(b.id))
    .slice(0, limit)
    .map((e) => ({
      ...alertEventView(e),
      deliveries: e.deliveries.map((d) => ({ ...d, delivered_at: isoOrNull(d.delivered_at) })),
    }));
  return c.json({ events });
});

/** The tenant's webhook signing secret, for verifying deliveries. */
alerts.get("/v1/alerts/secret", requireKey("admin"), onlyParams(), async (c) => {
  // One secret signs every stream's deliveries: a prefix-limited admin could forge the others'.
  assertUnrestricted(c.get("grant"), "the tenant's webhook secret");
  return c.json({
    secret: await registry(c.env, c.get("grant").tenantId).webhookSecret(),
    header: SIGNATURE_HEADER,
    scheme: "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.<raw body>')>",
  });
});
