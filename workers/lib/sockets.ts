/** WebSocket upgrades the Worker forwards to the object that owns the state. */
import { createMiddleware } from "hono/factory";
import { LIVE_PROTOCOL } from "../../core/live";
import { tagged } from "../openapi/tag";
import { isUpgrade } from "./auth";
import { ApiError } from "./errors";
import type { AppEnv } from "./types";

/** The stream prefixes (JSON array) a forwarded overview socket's credential is limited to; absent: every stream. */
export const STREAM_PREFIXES_HEADER = "x-edgepulse-stream-prefixes";

/**
 * Forwards a WebSocket upgrade to the object that owns the state, with what it needs to know. The
 * `x-edgepulse-*` headers are the Worker's word to the object: any the client sent are dropped first
 * (a client naming another tenant in `x-edgepulse-tenant`, or a query, must reach nothing).
 */
export function forwardSocket(
  request: Request,
  what: { stream?: string; streamPrefixes?: readonly string[] | null } = {},
): Request {
  const headers = new Headers(request.headers);
  for (const name of [...headers.keys()]) if (name.startsWith("x-edgepulse-")) headers.delete(name);
  const offered = (request.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim());
  if (offered.includes(LIVE_PROTOCOL)) headers.set("x-edgepulse-protocol", LIVE_PROTOCOL);
  if (what.stream) headers.set("x-edgepulse-stream", what.stream);
  if (what.streamPrefixes) headers.set(STREAM_PREFIXES_HEADER, JSON.stringify(what.streamPrefixes));
  return new Request(request.url, { method: "GET", headers });
}

export const requireUpgrade = tagged(
  { websocket: true },
  createMiddleware<AppEnv>(async (c, next) => {
    if (!isUpgrade(c)) throw new ApiError("upgrade_required");
    await next();
  }),
);
