/**
 * The aggregator: the per-tenant read API. Every route resolves the tenant
 * from the caller's key and addresses actors by `${tenant}/${stream}`, so a
 * key can only ever reach its own tenant's streams.
 */
import { Hono } from "hono";
import { isStreamName } from "../../core/event";
import { parseHistoryQuery } from "../../core/history-query";
import { isWindowName, WINDOW_NAMES, type WindowName } from "../../core/window";
import { historyEnabled, withDb } from "../../db/client";
import { type MinutePeriod, queryHistory } from "../../db/history";
import pkg from "../../package.json";
import { assertStream, requireKey } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { actor, hub } from "../lib/registry";
import { forwardSocket, requireUpgrade } from "../lib/sockets";
import type { AppEnv } from "../lib/types";
import { onlyParams } from "../lib/validate";
import { alerts } from "./alerts";
import { archive } from "./archive";
import { boards } from "./boards";
import { catalog } from "./catalog";
import { control } from "./control";
import { funnels } from "./funnels";
import { metrics } from "./metrics";
import { oidc } from "./oidc";
import { query } from "./query";
import { sinks } from "./sinks";
import { sources } from "./sources";

export const aggregator = new Hono<AppEnv>();

aggregator.get("/healthz", (c) => c.json({ ok: true }));
aggregator.get("/v1/version", onlyParams(), (c) => c.json({ name: pkg.name, version: pkg.version }));

function parseWindow(raw: string | undefined): WindowName | undefined {
  if (raw === undefined) return undefined;
  if (!isWindowName(raw))
    throw new ApiError("invalid_window", `window '${raw.slice(0, 16)}' is not one of ${WINDOW_NAMES.join(", ")}.`);
  return raw;
}

/** GET /v1/streams: its defaults and bounds (the API description reads them too). */
export const STREAM_LIST = { window: "1m", limit: 100, maxLimit: 1000 } as const satisfies {
  window: WindowName;
  limit: number;
  maxLimit: number;
};

function parseLimit(raw: string | undefined): number {
  if (raw === undefined) return STREAM_LIST.limit;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > STREAM_LIST.maxLimit)
    throw new ApiError("invalid_request", `limit must be an integer from 1 to ${STREAM_LIST.maxLimit}.`);
  return n;
}

/**
 * The tenant's streams, each with its figures for one window (default 1m), served by the tenant's hub
 * (each stream's actor keeps its record there, decay included, within about a second): no actor is woken.
 */
aggregator.get("/v1/streams", requireKey("read"), onlyParams("window", "limit", "cursor"), async (c) => {
  const { tenantId, streamPrefixes } = c.get("grant");
  const window = parseWindow(c.req.query("window")) ?? STREAM_LIST.window;
  const limit = parseLimit(c.req.query("limit"));
  const cursor = c.req.query("cursor") ?? "";
  // A prefix-limited credential lists only the streams it may reach.
  const page = await hub(c.env, tenantId).streams(window, limit, cursor, streamPrefixes ?? null);
  return c.json({ window, ...page });
});

/** All aggregates of one stream: every window, or the one asked for, plus its counters. */
aggregator.get("/v1/streams/:name", requireKey("read"), onlyParams("window"), async (c) => {
  const { tenantId } = c.get("grant");
  const name = c.req.param("name");
  if (!isStreamName(name)) throw new ApiError("invalid_stream_name");
  assertStream(c.get("grant"), name);
  const window = parseWindow(c.req.query("window"));
  const snapshot = await actor(c.env, tenantId, name).snapshot(window);
  if (snapshot === null) throw new ApiError("stream_not_found", `No events have been received for stream '${name}'.`);
  return c.json(snapshot);
});

/** History from PostgreSQL: every aggregate per step over [from, to). */
aggregator.get("/v1/streams/:name/history", requireKey("read"), onlyParams("from", "to", "step"), async (c) => {
  const { tenantId } = c.get("grant");
  const name = c.req.param("name");
  if (!isStreamName(name)) throw new ApiError("invalid_stream_name");
  assertStream(c.get("grant"), name);
  if (!historyEnabled(c.env)) throw new ApiError("history_disabled");
  const q = parseHistoryQuery(c.req.query("from"), c.req.query("to"), c.req.query("step"), Date.now());
  // The seam: minutes the stream's actor holds that PostgreSQL does not have in full yet (the open minute,
  // and any not yet written) replace PostgreSQL's aggregate for those minutes.
  const live = (await actor(c.env, tenantId, name).pendingRows(q.from.getTime(), q.to.getTime())) as MinutePeriod[];
  const points = await withDb(c.env, (db) => queryHistory(db, tenantId, name, q.from, q.to, q.step, live));
  // Like the live read: a stream that never received an event is not found (an empty range of a real one is []).
  if (points.length === 0 && (await actor(c.env, tenantId, name).snapshot("1m")) === null) {
    throw new ApiError("stream_not_found", `No events have been received for stream '${name}'.`);
  }
  return c.json({ stream: name, step: q.step, from: q.from.toISOString(), to: q.to.toISOString(), points });
});

/** Live socket for one stream: a snapshot, then coalesced updates, straight from its actor. */
aggregator.get("/v1/streams/:name/live", requireUpgrade, requireKey("read"), async (c) => {
  const name = c.req.param("name");
  if (!isStreamName(name)) throw new ApiError("invalid_stream_name");
  assertStream(c.get("grant"), name);
  return actor(c.env, c.get("grant").tenantId, name).fetch(forwardSocket(c.req.raw, { stream: name }));
});

/** Live socket for the tenant's overview: the stream directory, then changed entries. */
aggregator.get("/v1/live", requireUpgrade, requireKey("read"), async (c) => {
  // The hub sends a prefix-limited credential only the streams (and alerts) its prefixes allow.
  const { tenantId, streamPrefixes } = c.get("grant");
  return hub(c.env, tenantId).fetch(forwardSocket(c.req.raw, { streamPrefixes }));
});

aggregator.route("/", control);
aggregator.route("/", query);
aggregator.route("/", alerts);
aggregator.route("/", oidc);
aggregator.route("/", metrics);
aggregator.route("/", sources);
aggregator.route("/", sinks);
aggregator.route("/", archive);
aggregator.route("/", catalog);
aggregator.route("/", funnels);
aggregator.route("/", boards);
