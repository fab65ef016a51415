/**
 * Request bodies validated by schemas (core/schemas.ts) through Hono's
 * validator: a failure becomes the API's error shape with a stable code,
 * a message naming the field, and every issue in `details`.
 */
import { zValidator } from "@hono/zod-validator";
import type { z } from "zod";
import type { ErrorCode } from "../../core/errors";
import { describeIssues } from "../../core/schemas";
import { ApiError } from "./errors";

export function jsonBody<S extends z.ZodType>(schema: S, code: ErrorCode = "invalid_request") {
  return zValidator("json", schema, (result) => {
    if (!result.success) {
      const root = result.error.issues.find((i) => i.path.length === 0 && i.code === "invalid_type");
      if (root) throw new ApiError("malformed_body", "The body must be a JSON object.");
      const { message, details } = describeIssues(result.error);
      throw new ApiError(code, message, details);
    }
  });
}
