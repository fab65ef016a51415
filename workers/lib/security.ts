import type { MiddlewareHandler } from "hono";

/**
 * Security headers for API responses (JSON only: nothing may be framed, sniffed or scripted). A
 * response that brings its own Content-Security-Policy keeps it: the reference page (GET /docs, no
 * script, its style allowed by hash) is the one that does.
 */
const API_HEADERS: Record<string, string> = {
  "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
  "Cross-Origin-Opener-Policy": "same-origin",
};

export function securityHeaders(): MiddlewareHandler {
  return async (c, next) => {
    await next();
    // WebSocket handshakes and responses passed through from an actor carry immutable headers.
    if (c.res.status === 101) return;
    const headers = Object.entries(API_HEADERS).filter(
      ([k]) => k !== "Content-Security-Policy" || !c.res.headers.has(k),
    );
    try {
      for (const [k, v] of headers) c.res.headers.set(k, v);
    } catch {
      const res = new Response(c.res.body, c.res);
      for (const [k, v] of headers) res.headers.set(k, v);
      c.res = res;
    }
  };
}
