/**
 * The query API (POST /v1/query, core/query.ts) and each stream's
 * configuration (its dimension sets). Reads need a read key, configuration
 * an admin key; every query reads only the key's own tenant.
 */
import { Hono } from "hono";
import { isStreamName } from "../../core/event";
import { parseQuery, QueryBody, toCsv } from "../../core/query";
import { StreamConfig } from "../../core/schemas";
import { isoTime } from "../../core/time";
import { assertStream, requireKey } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { actor, hub } from "../lib/registry";
import { forwardSocket, requireUpgrade } from "../lib/sockets";
import type { AppEnv } from "../lib/types";
import { jsonBody, onlyParams } from "../lib/validate";
import { executeQuery } from "../query/execute";

export const query = new Hono<AppEnv>();

query.post("/v1/query", requireKey("read"), onlyParams("format"), jsonBody(QueryBody, "invalid_query"), async (c) => {
  const now = Date.now();
  const q = parseQuery(c.req.valid("json"), now);
  for (const s of q.streams) assertStream(c.get("grant"), s.stream);
  const result = await executeQuery(c.env, c.get("grant").tenantId, q);
  if (c.req.query("format") === "csv") {
    return c.body(toCsv(result), 200, {
      "content-type": "text/csv; charset=utf-8",
      "content-disposition": 'attachment; filename="edgepulse-query.csv"',
    });
  }
  return c.json(result);
});

/**
 * A live query: the same query as POST /v1/query, as the `q` parameter (URL-encoded JSON, since browsers
 * cannot send a body when opening a socket); its answer is pushed when it changes, at most once a second.
 */
query.get("/v1/query/live", requireUpgrade, requireKey("read"), async (c) => {
  const raw = c.req.query("q");
  if (raw === undefined) throw new ApiError("invalid_query", "q: give the query as URL-encoded JSON.");
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    throw new ApiError("malformed_body", "q is not JSON.");
  }
  // Refuse a bad query, or one naming a stream outside the credential's prefixes, before the socket opens.
  for (const s of parseQuery(body, Date.now()).streams) assertStream(c.get("grant"), s.stream);
  const tenant = c.get("grant").tenantId;
  const forwarded = forwardSocket(c.req.raw);
  forwarded.headers.set("x-edgepulse-query", JSON.stringify(body));
  forwarded.headers.set("x-edgepulse-tenant", tenant);
  return hub(c.env, tenant).fetch(forwarded);
});

const streamName = (raw: string): string => {
  if (!isStreamName(raw)) throw new ApiError("invalid_stream_name");
  return raw;
};

/** The stream's dimension sets, scaling settings, and the dimensions it has seen. */
query.get("/v1/streams/:name/config", requireKey("read"), onlyParams(), async (c) => {
  const name = streamName(c.req.param("name"));
  assertStream(c.get("grant"), name);
  const stub = actor(c.env, c.get("grant").tenantId, name);
  const [config, dimensions] = await Promise.all([stub.streamConfig(), stub.dimensions()]);
  return c.json({ stream: name, ...config, dimensions });
});

/** Declares the stream's dimension sets; they apply to events accepted from now on (earlier events are not re-aggregated). */
query.put("/v1/streams/:name/config", requireKey("admin"), jsonBody(StreamConfig, "invalid_config"), async (c) => {
  const name = streamName(c.req.param("name"));
  assertStream(c.get("grant"), name);
  const body = c.req.valid("json");
  const tenant = c.get("grant").tenantId;
  const done = await actor(c.env, tenant, name).setConfig(tenant, name, body);
  return c.json({
    stream: name,
    dimension_sets: done.dimension_sets,
    scaling: done.scaling,
    applies_from: isoTime(done.applies_from),
    note: "Events accepted from now on are aggregated by these sets; events accepted earlier are not. Shard bounds apply at once.",
  });
});
