/**
 * The aggregator: the per-tenant read API. Every route resolves the tenant
 * from the caller's key and addresses actors by `${tenant}/${stream}`, so a
 * key can only ever reach its own tenant's streams.
 */
import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { isStreamName } from "../../core/event";
import { parseHistoryQuery } from "../../core/history-query";
import { LIVE_PROTOCOL } from "../../core/live";
import type { StreamSnapshot } from "../../core/protocol";
import { isWindowName, type WindowName } from "../../core/window";
import { historyEnabled, withDb } from "../../db/client";
import { queryHistory } from "../../db/history";
import pkg from "../../package.json";
import { isUpgrade, requireKey } from "../lib/auth";
import { ApiError } from "../lib/errors";
import type { AppEnv } from "../lib/types";
import { alerts } from "./alerts";
import { control } from "./control";

export const aggregator = new Hono<AppEnv>();

aggregator.get("/healthz", (c) => c.json({ ok: true }));
aggregator.get("/v1/version", (c) => c.json({ name: pkg.name, version: pkg.version }));

function parseWindow(raw: string | undefined): WindowName | undefined {
  if (raw === undefined) return undefined;
  if (!isWindowName(raw))
    throw new ApiError("invalid_window", `window '${raw.slice(0, 16)}' is not one of 1m, 5m, 15m, 1h.`);
  return raw;
}

function parseLimit(raw: string | undefined): number {
  if (raw === undefined) return 100;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 1000)
    throw new ApiError("invalid_request", "limit must be an integer from 1 to 1000.");
  return n;
}

/** The tenant's streams, each with its latest figures for one window (default 1m). */
aggregator.get("/v1/streams", requireKey("read"), async (c) => {
  const { tenantId } = c.get("grant");
  const window = parseWindow(c.req.query("window")) ?? "1m";
  const limit = parseLimit(c.req.query("limit"));
  const cursor = c.req.query("cursor") ?? "";
  const names = await c.env.TENANT_REGISTRY.getByName("global").listStreams(tenantId, limit, cursor);
  const snapshots = await Promise.all(
    names.map((name) =>
      (c.env.METRIC_ACTOR.getByName(`${tenantId}/${name}`).snapshot(window) as Promise<StreamSnapshot | null>).catch(
        () => null,
      ),
    ),
  );
  const streams = names.map((name, i) => {
    const s = snapshots[i];
    return s === null
      ? { name, available: false }
      : { name, ...s.windows[window], counters: s.counters, last_event_at: s.last_event_at };
  });
  return c.json({
    window,
    streams,
    next_cursor: names.length === limit ? names[names.length - 1] : null,
  });
});

/** All aggregates of one stream: every window, or the one asked for, plus its counters. */
aggregator.get("/v1/streams/:name", requireKey("read"), async (c) => {
  const { tenantId } = c.get("grant");
  const name = c.req.param("name");
  if (!isStreamName(name)) throw new ApiError("invalid_stream_name");
  const window = parseWindow(c.req.query("window"));
  const snapshot = await c.env.METRIC_ACTOR.getByName(`${tenantId}/${name}`).snapshot(window);
  if (snapshot === null) throw new ApiError("stream_not_found", `No events have been received for stream '${name}'.`);
  return c.json(snapshot);
});

/** History from PostgreSQL: every aggregate per step over [from, to). */
aggregator.get("/v1/streams/:name/history", requireKey("read"), async (c) => {
  const { tenantId } = c.get("grant");
  const name = c.req.param("name");
  if (!isStreamName(name)) throw new ApiError("invalid_stream_name");
  if (!historyEnabled(c.env)) throw new ApiError("history_disabled");
  const q = parseHistoryQuery(c.req.query("from"), c.req.query("to"), c.req.query("step"), Date.now());
  const points = await withDb(c.env, (db) => queryHistory(db, tenantId, name, q.from, q.to, q.step));
  return c.json({ stream: name, step: q.step, from: q.from.toISOString(), to: q.to.toISOString(), points });
});

/** Forwards a WebSocket upgrade to the object that owns the state, with what it needs to know. */
function forwardSocket(request: Request, stream?: string): Request {
  const headers = new Headers(request.headers);
  const offered = (request.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim());
  if (offered.includes(LIVE_PROTOCOL)) headers.set("x-edgepulse-protocol", LIVE_PROTOCOL);
  if (stream) headers.set("x-edgepulse-stream", stream);
  return new Request(request.url, { method: "GET", headers });
}

const requireUpgrade = createMiddleware<AppEnv>(async (c, next) => {
  if (!isUpgrade(c)) throw new ApiError("upgrade_required");
  await next();
});

/** Live socket for one stream: a snapshot, then coalesced updates, straight from its actor. */
aggregator.get("/v1/streams/:name/live", requireUpgrade, requireKey("read"), async (c) => {
  const name = c.req.param("name");
  if (!isStreamName(name)) throw new ApiError("invalid_stream_name");
  const stub = c.env.METRIC_ACTOR.getByName(`${c.get("grant").tenantId}/${name}`);
  return stub.fetch(forwardSocket(c.req.raw, name));
});

/** Live socket for the tenant's overview: the stream directory, then changed entries. */
aggregator.get("/v1/live", requireUpgrade, requireKey("read"), async (c) => {
  return c.env.TENANT_HUB.getByName(c.get("grant").tenantId).fetch(forwardSocket(c.req.raw));
});

aggregator.route("/", control);
aggregator.route("/", alerts);
