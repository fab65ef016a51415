/**
 * The OpenAPI description served at /openapi.json covers every route the app registers (no route is
 * left out, none is described that does not exist), takes its request side from the routes' own
 * middleware, and is served to any origin; the reference page at /docs is rendered from it under its
 * own Content-Security-Policy, which allows its style and nothing else. (The document is checked by an
 * OpenAPI validator, and real responses against it, in test/e2e/openapi.test.ts: those validators
 * compile code at run time, which workerd does not allow.)
 */
import { SELF } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { app } from "../../workers/index";
import { describeApi, openApiPath } from "../../workers/openapi/document";
import { BASE } from "./helpers";

type Operation = {
  operationId: string;
  parameters?: Array<{ name: string; in: string; required: boolean }>;
  requestBody?: { content: Record<string, { schema: { $ref?: string } }> };
  responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
  security?: Array<Record<string, string[]>>;
};
type Doc = { openapi: string; paths: Record<string, Record<string, Operation>>; components: { schemas: object } };

let doc: Doc;

beforeAll(async () => {
  const res = await SELF.fetch(`${BASE}/openapi.json`);
  expect(res.status).toBe(200);
  doc = (await res.json()) as Doc;
});

const op = (method: string, path: string) => doc.paths[openApiPath(path)]?.[method.toLowerCase()];

describe("the OpenAPI description", () => {
  it("describes every method and path the app registers", () => {
    // app.routes lists every handler the app registered; "ALL" entries are middleware (app.use). None is
    // ignored: /healthz and the description's own routes are described too.
    const registered = [...new Set(app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path}`))];
    expect(registered.length).toBeGreaterThan(30);
    const missing = registered.filter((key) => {
      const [method, path] = key.split(" ");
      return op(method, path) === undefined;
    });
    expect(
      missing,
      "Describe each of these routes: one entry in OPERATIONS, workers/openapi/routes.ts (see its header)",
    ).toEqual([]);
  });

  it("describes nothing the app does not route, and every parameter it takes", () => {
    const problems = describeApi(app.routes).problems.filter((p) => !p.includes("has no entry in OPERATIONS"));
    expect(problems).toEqual([]);
  });

  it("is OpenAPI 3.1, with unique operation ids and every reference resolving to a component", () => {
    expect(doc.openapi).toMatch(/^3\.1\./);
    const ids = Object.values(doc.paths).flatMap((item) => Object.values(item).map((o) => o.operationId));
    expect(new Set(ids).size).toBe(ids.length);
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"([^"]+)"/g)].map((m) => m[1]);
    const dangling = refs.filter((r) => {
      const [, kind, name] = /^#\/components\/(schemas|headers)\/(.+)$/.exec(r) ?? [];
      return !kind || !(name in (doc.components as Record<string, object>)[kind]);
    });
    expect(dangling).toEqual([]);
  });

  it("takes who may call, the query parameters and the body from the routes' own middleware", () => {
    // requireKey("read") → a read or admin key; onlyParams("window", "limit", "cursor") → those three.
    const list = op("GET", "/v1/streams");
    expect(list.security).toEqual([{ readKey: [] }, { adminKey: [] }]);
    expect(list.parameters?.map((p) => p.name)).toEqual(["window", "limit", "cursor"]);
    // jsonBody(KeyCreate) → the KeyCreate schema, as a component; requireKey("admin") → an admin key only.
    const create = op("POST", "/v1/keys");
    expect(create.requestBody?.content["application/json"].schema).toEqual({ $ref: "#/components/schemas/KeyCreate" });
    expect(create.security).toEqual([{ adminKey: [] }]);
    // control.use("/v1/admin/*", requireOperator()) reaches every operator route.
    expect(op("GET", "/v1/admin/tenants/:tenant/streams/:name/stats").security).toEqual([{ operatorToken: [] }]);
    // The ingest key may travel as ?key= for beacons: a security scheme, not a parameter.
    const ingest = op("POST", "/v1/events");
    expect(ingest.security).toContainEqual({ beaconKey: [] });
    expect(ingest.parameters?.map((p) => p.name)).toEqual(["mode"]);
    // A path parameter is required; the error codes of each middleware are listed.
    expect(op("GET", "/v1/streams/:name").parameters?.[0]).toMatchObject({ name: "name", in: "path", required: true });
    expect(Object.keys(op("GET", "/v1/live").responses)).toEqual(
      expect.arrayContaining(["101", "401", "403", "426", "429", "500"]),
    );
    expect(op("GET", "/healthz").security).toBeUndefined();
  });

  it("is served to any origin", async () => {
    const res = await SELF.fetch(`${BASE}/openapi.json`, { headers: { origin: "https://tools.example" } });
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const preflight = await SELF.fetch(`${BASE}/openapi.json`, {
      method: "OPTIONS",
      headers: { origin: "https://tools.example", "access-control-request-method": "GET" },
    });
    expect(preflight.status).toBe(204);
  });
});

describe("the reference page", () => {
  it("renders every operation from the document, with a policy that allows its one style and no script", async () => {
    const res = await SELF.fetch(`${BASE}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await res.text();
    for (const item of Object.values(doc.paths)) {
      for (const o of Object.values(item)) expect(html).toContain(`id="op-${o.operationId}"`);
    }
    expect(html).not.toMatch(/<script|\son[a-z]+=|javascript:/i);
    const styles = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]);
    expect(styles).toHaveLength(1);
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(styles[0]));
    const hash = btoa(String.fromCharCode(...new Uint8Array(digest)));
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp.split(";").map((d) => d.trim())).toEqual(
      expect.arrayContaining(["default-src 'none'", `style-src 'sha256-${hash}'`, "frame-ancestors 'none'"]),
    );
    // The API's other security headers stay.
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    // Every other response keeps the API's policy.
    expect((await SELF.fetch(`${BASE}/openapi.json`)).headers.get("content-security-policy")).toBe(
      "default-src 'none'; frame-ancestors 'none'",
    );
  });
});
