/**
 * GET /openapi.json (the OpenAPI 3.1 description, for tools: no key, any
 * origin) and GET /docs (the reference page rendered from it). Both are built
 * once per isolate from the app's routes, which `routes` returns at request
 * time (every route is registered by then).
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import type { AppEnv } from "../lib/types";
import { type AppRoute, describeApi } from "./document";
import { REFERENCE_STYLE, renderReference } from "./reference";

interface Built {
  json: string;
  html: string;
  /** The page's own policy: no script, nothing loaded, its one inline style allowed by hash. */
  csp: string;
}

async function sha256Base64(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

export function apiDescription(routes: () => readonly AppRoute[]): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  let built: Promise<Built> | undefined;
  const build = async (): Promise<Built> => {
    const { document } = describeApi(routes());
    const style = await sha256Base64(REFERENCE_STYLE);
    return {
      json: JSON.stringify(document),
      html: renderReference(document),
      csp: `default-src 'none'; style-src 'sha256-${style}'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`,
    };
  };
  const get = () => {
    built ??= build().catch((err: unknown) => {
      built = undefined; // the next request tries again
      throw err;
    });
    return built;
  };

  // A public description: any page or tool may fetch it (it holds no tenant data).
  app.use("/openapi.json", cors({ origin: "*", allowMethods: ["GET", "OPTIONS"] }));
  app.get("/openapi.json", async (c) =>
    c.body((await get()).json, 200, {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "public, max-age=300",
    }),
  );
  app.get("/docs", async (c) => {
    const { html, csp } = await get();
    return c.html(html, 200, { "content-security-policy": csp, "cache-control": "public, max-age=300" });
  });
  return app;
}
