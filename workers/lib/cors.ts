/**
 * CORS for browser apps. Ingest (`/v1/events`) allows the origins in
 * CORS_ORIGINS (default `*`: beacons come from any page). The rest of the API
 * allows only the origins in CORS_READ_ORIGINS (default none: a read or admin
 * key in a page is a choice a tenant makes). Both are comma-separated lists;
 * `*` allows any origin. An origin not listed gets no CORS headers, so the
 * browser refuses the response.
 */
import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";

export type CorsVar = "CORS_ORIGINS" | "CORS_READ_ORIGINS";

export function corsFrom(variable: CorsVar, fallback: string, allowMethods: string[]): MiddlewareHandler {
  return cors({
    origin: (origin, c) => {
      const raw = (c.env as Record<string, unknown>)[variable];
      const allowed = String(raw ?? fallback)
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
      return allowed.includes("*") ? "*" : allowed.includes(origin) ? origin : null;
    },
    allowMethods,
    allowHeaders: ["Authorization", "Content-Type", "Content-Encoding"],
    exposeHeaders: [
      "RateLimit-Limit",
      "RateLimit-Remaining",
      "RateLimit-Reset",
      "Retry-After",
      "X-RateLimit-Degraded",
      "Content-Disposition",
    ],
    maxAge: 86_400,
  });
}
