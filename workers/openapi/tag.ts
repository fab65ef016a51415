/**
 * What a middleware tells the API description about the requests it lets
 * through. The middleware that authenticate and validate (requireKey,
 * requireOperator, onlyParams, jsonBody, requireUpgrade) carry a tag, and the
 * generator (document.ts) reads the tags of each route's handlers from
 * `app.routes`: who may call, which query parameters, which body schema. So
 * the request side of the document is the validation itself, never a copy.
 */
import { findTargetHandler } from "hono/utils/handler";
import type { z } from "zod";
import type { ErrorCode } from "../../core/errors";
import type { Scope } from "../../core/keys";

export interface RequestTag {
  /** An API key of this scope (an admin key also passes), or the operator token (ADMIN_TOKEN). */
  auth?: { scope: Scope | "operator"; queryKeyForText?: boolean };
  /** The only query parameters the route takes (onlyParams). */
  query?: readonly string[];
  /** The JSON body's schema, and the code of the 400 for a body it refuses (jsonBody). */
  body?: { schema: z.ZodType; code: ErrorCode };
  /** A WebSocket endpoint (requireUpgrade). */
  websocket?: true;
}

const TAG = Symbol.for("edgepulse.openapi.request");

/** Tags a middleware (returned as it is, so its type, and with it `c.req.valid`, is kept). */
export function tagged<H extends object>(tag: RequestTag, handler: H): H {
  Object.defineProperty(handler, TAG, { value: tag });
  return handler;
}

/** The tag of a handler in `app.routes` (seen through the wrappers Hono adds when it mounts a sub-app). */
export function tagOf(handler: unknown): RequestTag | undefined {
  if (typeof handler !== "function") return undefined;
  return (findTargetHandler(handler) as { [TAG]?: RequestTag })[TAG];
}
