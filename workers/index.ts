/**
 * The edgepulse Worker: one script with the collector (ingest), the
 * aggregator (read API and control plane) and the actor classes.
 */
import { Hono } from "hono";
import { aggregator } from "./aggregator/app";
import { collector } from "./collector/app";
import { consume } from "./collector/queued";
import { corsFrom } from "./lib/cors";
import { notFound, onError } from "./lib/errors";
import { securityHeaders } from "./lib/security";
import type { AppEnv } from "./lib/types";
import { runMaintenance } from "./maintenance";
import { apiDescription } from "./openapi/app";

export { FunnelActor } from "../durable-objects/funnel-actor";
export { KeyDirectory } from "../durable-objects/key-directory";
export { MetricActor } from "../durable-objects/metric-actor";
export { RateLimiter } from "../durable-objects/rate-limiter";
export { SinkActor } from "../durable-objects/sink-actor";
export { SourceActor } from "../durable-objects/source-actor";
export { StreamShard } from "../durable-objects/stream-shard";
export { TenantHub } from "../durable-objects/tenant-hub";
export { TenantRegistry } from "../durable-objects/tenant-registry";

export const app = new Hono<AppEnv>();
// Security headers on every API response (the dashboard's come from dashboard/_headers).
app.use("*", securityHeaders());
// CORS for the read and control API (ingest has its own, workers/lib/cors.ts), before any route answers.
const readCors = corsFrom("CORS_READ_ORIGINS", "", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
app.use("/v1/*", (c, next) => (c.req.path === "/v1/events" ? next() : readCors(c, next)));
app.route("/", collector);
app.route("/", aggregator);
// The OpenAPI description and reference page, built from every route above (workers/openapi/).
app.route(
  "/",
  apiDescription(() => app.routes),
);
app.onError(onError);
app.notFound((c) => notFound(c, app.routes));

export default {
  fetch: app.fetch,
  /** Buffered ingest: applies queued events to the streams' actors (workers/collector/queued.ts). */
  async queue(batch, env, _ctx) {
    await consume(batch, env);
  },
  async scheduled(controller, env, ctx) {
    ctx.waitUntil(
      runMaintenance(env, new Date(controller.scheduledTime)).catch((err: Error) => {
        // The next run retries everything (rollups are absolute upserts); log the class and message only.
        console.error(`edgepulse: maintenance failed: ${err.name}: ${err.message}`);
      }),
    );
  },
} satisfies ExportedHandler<Env>;
