/** WebSocket upgrades the Worker forwards to the object that owns the state. */
import { createMiddleware } from "hono/factory";
import { LIVE_PROTOCOL } from "../../core/live";
import { isUpgrade } from "./auth";
import { ApiError } from "./errors";
import type { AppEnv } from "./types";

/** Forwards a WebSocket upgrade to the object that owns the state, with what it needs to know. */
export function forwardSocket(request: Request, stream?: string): Request {
  const headers = new Headers(request.headers);
  const offered = (request.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim());
  if (offered.includes(LIVE_PROTOCOL)) headers.set("x-edgepulse-protocol", LIVE_PROTOCOL);
  if (stream) headers.set("x-edgepulse-stream", stream);
  return new Request(request.url, { method: "GET", headers });
}

export const requireUpgrade = createMiddleware<AppEnv>(async (c, next) => {
  if (!isUpgrade(c)) throw new ApiError("upgrade_required");
  await next();
});
