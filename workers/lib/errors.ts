import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { CodedError, ERRORS, type ErrorCode } from "../../core/errors";
import { type Db, type DbEnv, withDb } from "../../db/client";

/** A client error with a stable code; rendered by `onError` as `{ error: { code, message, details? } }`. */
export class ApiError extends HTTPException {
  readonly code: ErrorCode;
  readonly details?: unknown;

  readonly headers?: Record<string, string>;

  constructor(code: ErrorCode, message?: string, details?: unknown, headers?: Record<string, string>) {
    super(ERRORS[code].status as ContentfulStatusCode, { message: message ?? ERRORS[code].message });
    this.code = code;
    this.details = details;
    this.headers = headers;
  }
}

export function errorBody(code: ErrorCode, message: string, details?: unknown) {
  return { error: details === undefined ? { code, message } : { code, message, details } };
}

/** Request bodies up to this size are read to the end before an error answers them (see below). */
const DRAIN_MAX_BYTES = 1_048_576;

/**
 * An error answered before the request's body was read (no key, a wrong content type, a bad parameter)
 * would leave the body unread, and workerd then closes the client's keep-alive connection under its next
 * request. A body of known, bounded size is read to the end first; a larger or unsized one is not (the
 * connection closes, as HTTP allows).
 */
async function drainBody(req: Request): Promise<void> {
  if (req.body === null || req.bodyUsed) return;
  const length = Number(req.headers.get("content-length") ?? Number.NaN);
  if (!(length <= DRAIN_MAX_BYTES)) return;
  try {
    await req.arrayBuffer();
  } catch {
    // The client went away: nothing to keep.
  }
}

export async function onError(err: Error, c: Context): Promise<Response> {
  await drainBody(c.req.raw);
  if (err instanceof ApiError) {
    return c.json(errorBody(err.code, err.message, err.details), err.status, err.headers);
  }
  if (err instanceof CodedError) {
    return c.json(errorBody(err.code, err.message, err.details), ERRORS[err.code].status as ContentfulStatusCode);
  }
  if (err instanceof HTTPException) {
    // Hono's JSON validator refuses a body that is not JSON with this message.
    if (err.status === 400 && err.message === "Malformed JSON in request body") {
      return c.json(errorBody("malformed_body", "The body must be a JSON object."), 400);
    }
    const code: ErrorCode =
      err.status === 404 ? "not_found" : err.status === 405 ? "method_not_allowed" : "invalid_request";
    return c.json(errorBody(code, err.message || ERRORS[code].message), err.status);
  }
  // Unexpected: log the error class and message only (never headers or bodies, which may hold keys).
  console.error(`edgepulse: unhandled ${err.name}: ${err.message}`);
  return c.json(errorBody("internal_error", ERRORS.internal_error.message), 500);
}

/**
 * No route for this method and path: 405 with `Allow` when the path has routes for other methods,
 * else 404. `routes` are the app's (method, path pattern) pairs; "ALL" ones are middleware.
 */
export function notFound(c: Context, routes: ReadonlyArray<{ method: string; path: string }>): Response {
  const path = new URL(c.req.url).pathname;
  const allowed = new Set<string>();
  for (const r of routes) {
    if (r.method === "ALL" || !patternOf(r.path).test(path)) continue;
    allowed.add(r.method);
    if (r.method === "GET") allowed.add("HEAD");
  }
  if (allowed.size > 0) {
    const allow = [...allowed].sort().join(", ");
    return c.json(errorBody("method_not_allowed", `${c.req.method} is not allowed on ${path}; use ${allow}.`), 405, {
      Allow: allow,
    });
  }
  return c.json(errorBody("not_found", `No route for ${c.req.method} ${path}.`), 404);
}

const patterns = new Map<string, RegExp>();
/** A Hono route path (`/v1/streams/:name`, `*`) as an anchored regular expression. */
function patternOf(path: string): RegExp {
  let re = patterns.get(path);
  if (re === undefined) {
    const body = path
      .split("/")
      .map((seg) => (seg === "*" ? ".*" : seg.startsWith(":") ? "[^/]+" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
      .join("/");
    re = new RegExp(`^${body}/?$`);
    patterns.set(path, re);
  }
  return re;
}

/**
 * Runs `work` with a database connection (db/client.ts withDb); a failure that is not already an answer
 * (a refused or dropped connection, a query error) becomes 503 database_unavailable rather than a 500.
 */
export async function withDatabase<T>(env: DbEnv, work: (db: Db) => Promise<T>): Promise<T> {
  try {
    return await withDb(env, work);
  } catch (err) {
    if (err instanceof ApiError || err instanceof CodedError) throw err;
    console.error(`edgepulse: database unavailable: ${(err as Error).name}: ${(err as Error).message.slice(0, 200)}`);
    throw new ApiError("database_unavailable");
  }
}
