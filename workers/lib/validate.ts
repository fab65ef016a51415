/**
 * Request bodies validated by schemas (core/schemas.ts) through Hono's
 * validator: a failure becomes the API's error shape with a stable code,
 * a message naming the field, and every issue in `details`.
 */
import { zValidator } from "@hono/zod-validator";
import type { MiddlewareHandler } from "hono";
import type { z } from "zod";
import type { ErrorCode } from "../../core/errors";
import { describeIssues } from "../../core/schemas";
import { tagged } from "../openapi/tag";
import { ApiError } from "./errors";

/**
 * Refuses query parameters the endpoint does not take (a typo such as `?windw=5m` would otherwise be
 * ignored silently), naming them and the ones it takes.
 */
export function onlyParams(...allowed: string[]): MiddlewareHandler {
  const known = new Set(allowed);
  return tagged({ query: allowed }, async (c, next) => {
    const unknown = [...new URL(c.req.url).searchParams.keys()].filter((k) => !known.has(k));
    if (unknown.length > 0) {
      const takes = allowed.length > 0 ? `it takes ${allowed.map((a) => `'${a}'`).join(", ")}` : "it takes none";
      throw new ApiError(
        "unknown_parameter",
        `Unknown query parameter ${[...new Set(unknown)].map((u) => `'${u.slice(0, 64)}'`).join(", ")}: ${takes}.`,
      );
    }
    await next();
  });
}

/** Validates the JSON body with `schema` (the API description shows that schema); a refusal is a 400 with `code`. */
export function jsonBody<S extends z.ZodType>(schema: S, code: ErrorCode = "invalid_request") {
  return tagged(
    { body: { schema, code } },
    zValidator("json", schema, (result) => {
      if (!result.success) {
        const root = result.error.issues.find((i) => i.path.length === 0 && i.code === "invalid_type");
        if (root) throw new ApiError("malformed_body", "The body must be a JSON object.");
        const { message, details } = describeIssues(result.error);
        throw new ApiError(code, message, details);
      }
    }),
  );
}
