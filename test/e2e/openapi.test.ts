/**
 * The OpenAPI description of `npm start`'s stack, checked from outside: the document it serves passes
 * an OpenAPI 3.1 validator (@seriousme/openapi-schema-validator) and its schemas compile under Ajv's
 * strict JSON Schema 2020-12; then real responses of every route, successes and errors alike, are
 * validated against the response the document gives for their status and media type. A field the
 * server sends that the document does not name fails (response objects are closed), as does a status
 * or an error code the route's description does not list.
 */
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import WebSocket from "ws";
import { createTestDatabase } from "../support/pg";
import { createTenant, type Keys, type Stack, startStack } from "../support/stack";

type Json = Record<string, unknown>;
interface MediaType {
  schema: Json;
}
interface Response {
  content?: Record<string, MediaType>;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, { responses: Record<string, Response> }>>;
  components: { schemas: Record<string, Json> };
}

// ajv-formats is CommonJS: its default export arrives wrapped.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ??
  addFormatsModule) as unknown as (ajv: Ajv2020) => void;

const STREAM = "openapi.checkout";
/** Components are added to Ajv under this base; the document's references are rewritten to it. */
const SCHEMAS = "https://edgepulse.test/schemas/";

let stack: Stack;
let keys: Keys;
let doc: Document;
let ajv: Ajv2020;
const validators = new Map<string, ValidateFunction>();

function rebase(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(rebase);
  if (v === null || typeof v !== "object") return v;
  return Object.fromEntries(
    Object.entries(v).map(([k, x]) => [
      k,
      k === "$ref" && typeof x === "string" ? x.replace("#/components/schemas/", SCHEMAS) : rebase(x),
    ]),
  );
}

beforeAll(async () => {
  const databaseUrl = await createTestDatabase("edgepulse_test_openapi");
  stack = await startStack({ extraEnv: { DATABASE_URL: databaseUrl } });
  keys = await createTenant(stack, "openapi");
  const res = await fetch(`${stack.url}/openapi.json`);
  expect(res.status).toBe(200);
  doc = (await res.json()) as Document;
  ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true });
  addFormats(ajv);
  for (const [name, schema] of Object.entries(doc.components.schemas))
    ajv.addSchema(rebase(schema) as Json, SCHEMAS + name);
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

interface Call {
  key?: string;
  body?: unknown;
  raw?: string;
  headers?: Record<string, string>;
}

/**
 * Calls `method path` and validates the response against what the document says `template` answers
 * with that status and media type. Returns the status and the parsed body.
 */
async function call(method: string, template: string, path: string, c: Call = {}) {
  const headers: Record<string, string> = { ...c.headers };
  if (c.key) headers.authorization = `Bearer ${c.key}`;
  if (c.body !== undefined || c.raw !== undefined) headers["content-type"] ??= "application/json";
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers,
    body: c.raw ?? (c.body === undefined ? undefined : JSON.stringify(c.body)),
  });
  const where = `${method} ${path} → ${res.status}`;
  const text = await res.text();
  const op = doc.paths[template]?.[method.toLowerCase()];
  expect(op, `${method} ${template} is not in the document`).toBeDefined();
  const described = op.responses[String(res.status)];
  expect(described, `${where} (${text.slice(0, 200)}): the document lists no such status`).toBeDefined();
  const type = (res.headers.get("content-type") ?? "").split(";")[0].trim();
  const media = described.content?.[type];
  expect(media, `${where}: the document gives no ${type} body`).toBeDefined();
  const body: unknown = type.endsWith("json") ? JSON.parse(text) : text;
  const id = `${template} ${method} ${res.status} ${type}`;
  let validate = validators.get(id);
  if (validate === undefined) {
    validate = ajv.compile(rebase(media?.schema) as Json);
    validators.set(id, validate);
  }
  expect(validate(body), `${where}: ${ajv.errorsText(validate.errors)}\n${text.slice(0, 500)}`).toBe(true);
  return { status: res.status, body: body as Json & Record<string, Json & unknown[]>, headers: res.headers };
}

describe("the served OpenAPI description", () => {
  it("passes an OpenAPI 3.1 validator, and its schemas compile as strict JSON Schema 2020-12", async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(doc) as unknown as Parameters<Validator["validate"]>[0]);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
    for (const name of Object.keys(doc.components.schemas)) {
      expect(() => ajv.getSchema(SCHEMAS + name), name).not.toThrow();
    }
  });
});

describe("real responses match the description", () => {
  it("service routes", async () => {
    expect((await call("GET", "/healthz", "/healthz")).status).toBe(200);
    expect((await call("GET", "/v1/version", "/v1/version")).status).toBe(200);
    expect((await call("GET", "/openapi.json", "/openapi.json")).status).toBe(200);
    expect((await call("GET", "/docs", "/docs")).status).toBe(200);
    expect((await call("GET", "/v1/version", "/v1/version?verbose=1")).status).toBe(400);
  });

  it("ingest: receipts and refusals", async () => {
    const now = Date.now();
    const ok = await call("POST", "/v1/events", "/v1/events", {
      key: keys.ingest,
      body: [
        { name: STREAM, value: 120, user: "u1", ts: now - 1000, dims: { country: "DE" } },
        { name: STREAM, value: 80, user: "u2", ts: now, dims: { country: "FR" } },
        { name: STREAM, value: "not a number" },
      ],
    });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ accepted: 2, rejected: [{ index: 2, code: "invalid_value" }] });
    const queued = await call("POST", "/v1/events", "/v1/events?mode=queued", {
      key: keys.ingest,
      body: { name: "openapi.queued", value: 1 },
    });
    expect(queued.status).toBe(202);
    const invalid = await call("POST", "/v1/events", "/v1/events", { key: keys.ingest, body: [{ name: "a b" }] });
    expect(invalid.status).toBe(422);
    const form = await call("POST", "/v1/events", "/v1/events", {
      key: keys.ingest,
      raw: "name=x",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(form.status).toBe(415);
    expect((await call("POST", "/v1/events", "/v1/events", { key: keys.ingest, raw: "{nope" })).body).toMatchObject({
      error: { code: "malformed_body" },
    });
    expect((await call("POST", "/v1/events", "/v1/events", { body: { name: STREAM } })).status).toBe(401);
    expect((await call("POST", "/v1/events", "/v1/events", { key: keys.read, body: { name: STREAM } })).status).toBe(
      403,
    );
  });

  it("streams: list, snapshot, history, configuration", async () => {
    await vi.waitFor(
      async () => {
        const list = await call("GET", "/v1/streams", "/v1/streams?window=5m&limit=10", { key: keys.read });
        expect(list.body.streams).toContainEqual(expect.objectContaining({ name: STREAM, count: 2 }));
      },
      { timeout: 15_000, interval: 200 },
    );
    const one = "/v1/streams/{name}";
    expect((await call("GET", one, `/v1/streams/${STREAM}`, { key: keys.read })).status).toBe(200);
    expect((await call("GET", one, `/v1/streams/${STREAM}?window=1h`, { key: keys.read })).status).toBe(200);
    expect((await call("GET", one, `/v1/streams/${STREAM}?window=7m`, { key: keys.read })).body).toMatchObject({
      error: { code: "invalid_window" },
    });
    expect((await call("GET", one, "/v1/streams/never.sent", { key: keys.read })).status).toBe(404);

    const history = "/v1/streams/{name}/history";
    expect((await call("GET", history, `/v1/streams/${STREAM}/history?step=1m`, { key: keys.read })).status).toBe(200);
    expect((await call("GET", history, `/v1/streams/${STREAM}/history?step=2m`, { key: keys.read })).status).toBe(400);

    const config = "/v1/streams/{name}/config";
    const put = await call("PUT", config, `/v1/streams/${STREAM}/config`, {
      key: keys.admin,
      body: { dimension_sets: [["country", "plan"]] },
    });
    expect(put.status).toBe(200);
    expect((await call("GET", config, `/v1/streams/${STREAM}/config`, { key: keys.read })).status).toBe(200);
    const bad = await call("PUT", config, `/v1/streams/${STREAM}/config`, {
      key: keys.admin,
      body: { dimension_sets: [["country"]] },
    });
    expect(bad.body).toMatchObject({ error: { code: "invalid_config" } });
  });

  it("queries: JSON, CSV and a refused query", async () => {
    const q = { stream: STREAM, measures: ["count", "sum", "p95"], group_by: ["country"], range: { last: "1h" } };
    const json = await call("POST", "/v1/query", "/v1/query", { key: keys.read, body: q });
    expect(json.body.columns).toEqual(["country", "count", "sum", "p95"]);
    const csv = await call("POST", "/v1/query", "/v1/query?format=csv", { key: keys.read, body: q });
    expect(csv.headers.get("content-type")).toMatch(/^text\/csv/);
    const bad = await call("POST", "/v1/query", "/v1/query", { key: keys.read, body: { ...q, measures: ["p42"] } });
    expect(bad.body).toMatchObject({ error: { code: "invalid_query" } });
  });

  it("live sockets: the upgrade, and a plain GET refused", async () => {
    const ws = new WebSocket(`${stack.url.replace("http", "ws")}/v1/streams/${STREAM}/live`, [
      "edgepulse.v1",
      `bearer.${keys.read}`,
    ]);
    const status = await new Promise<number>((resolve, reject) => {
      ws.once("upgrade", (res) => resolve(res.statusCode ?? 0));
      ws.once("unexpected-response", (_req, res) => reject(new Error(`answered ${res.statusCode}`)));
      ws.once("error", reject);
    });
    ws.close();
    expect(doc.paths["/v1/streams/{name}/live"].get.responses[String(status)]).toBeDefined();
    for (const [template, path] of [
      ["/v1/streams/{name}/live", `/v1/streams/${STREAM}/live`],
      ["/v1/live", "/v1/live"],
      ["/v1/query/live", "/v1/query/live?q=%7B%7D"],
    ]) {
      expect((await call("GET", template, path, { key: keys.read })).body).toMatchObject({
        error: { code: "upgrade_required" },
      });
    }
  });

  it("alerts: rules through their life, firing alerts, transitions, the secret", async () => {
    const created = await call("POST", "/v1/alerts/rules", "/v1/alerts/rules", {
      key: keys.admin,
      body: { name: "any checkout", stream: STREAM, aggregate: "count", window: "1h", threshold: 0, for: "1m" },
    });
    expect(created.status).toBe(201);
    const id = (created.body.rule as unknown as { id: string }).id;
    const rule = "/v1/alerts/rules/{id}";
    expect((await call("GET", "/v1/alerts/rules", "/v1/alerts/rules", { key: keys.read })).status).toBe(200);
    const yaml = await call("GET", "/v1/alerts/rules", "/v1/alerts/rules?format=prometheus", { key: keys.read });
    expect(yaml.status).toBe(200);
    expect((await call("GET", rule, `/v1/alerts/rules/${id}`, { key: keys.read })).status).toBe(200);
    expect(
      (await call("PATCH", rule, `/v1/alerts/rules/${id}`, { key: keys.admin, body: { threshold: 1 } })).status,
    ).toBe(200);
    expect((await call("POST", `${rule}/disable`, `/v1/alerts/rules/${id}/disable`, { key: keys.admin })).status).toBe(
      200,
    );
    expect((await call("POST", `${rule}/enable`, `/v1/alerts/rules/${id}/enable`, { key: keys.admin })).status).toBe(
      200,
    );
    expect((await call("GET", "/v1/alerts", "/v1/alerts", { key: keys.read })).status).toBe(200);
    expect((await call("GET", "/v1/alerts/events", "/v1/alerts/events?limit=5", { key: keys.read })).status).toBe(200);
    expect((await call("GET", "/v1/alerts/secret", "/v1/alerts/secret", { key: keys.admin })).status).toBe(200);
    const bad = await call("POST", "/v1/alerts/rules", "/v1/alerts/rules", {
      key: keys.admin,
      body: { stream: STREAM, threshold: 1, for: "forever" },
    });
    expect(bad.body).toMatchObject({ error: { code: "invalid_rule" } });
    expect((await call("DELETE", rule, `/v1/alerts/rules/${id}`, { key: keys.admin })).status).toBe(200);
    expect((await call("GET", rule, `/v1/alerts/rules/${id}`, { key: keys.read })).body).toMatchObject({
      error: { code: "rule_not_found" },
    });
  });

  it("keys and the tenant", async () => {
    expect((await call("GET", "/v1/keys", "/v1/keys", { key: keys.admin })).status).toBe(200);
    const created = await call("POST", "/v1/keys", "/v1/keys", {
      key: keys.admin,
      body: { scope: "read", name: "wall" },
    });
    expect(created.status).toBe(201);
    const revoked = await call("DELETE", "/v1/keys/{key}", `/v1/keys/${created.body.id}`, { key: keys.admin });
    expect(revoked.body.revoked_at).not.toBeNull();
    expect((await call("DELETE", "/v1/keys/{key}", "/v1/keys/key_nope", { key: keys.admin })).status).toBe(404);
    expect((await call("POST", "/v1/keys", "/v1/keys", { key: keys.admin, body: { scope: "root" } })).status).toBe(400);
    expect((await call("GET", "/v1/tenant", "/v1/tenant", { key: keys.read })).status).toBe(200);
  });

  it("pull sources: create, list, get, pause, resume, delete, and refusals", async () => {
    const created = await call("POST", "/v1/sources", "/v1/sources", {
      key: keys.admin,
      body: {
        kind: "http",
        name: "an api",
        url: "http://127.0.0.1:9/feed",
        records: "$.data",
        cursor: { param: "after", next: "$.next" },
        auth: { header: "Authorization", value: "Bearer openapi-secret" },
        interval_ms: 3_600_000,
        mapping: { name: STREAM, value: "$.amount", dims: { country: "$.country" } },
      },
    });
    expect(created.status).toBe(201);
    const id = (created.body as unknown as { id: string }).id;
    const r2 = await call("POST", "/v1/sources", "/v1/sources", {
      key: keys.admin,
      body: { kind: "r2", name: "drops", prefix: "x/", mapping: { name: "$.type", ts: "$.at", ts_unit: "s" } },
    });
    expect(r2.status).toBe(201);
    const source = "/v1/sources/{source}";
    expect((await call("GET", "/v1/sources", "/v1/sources", { key: keys.admin })).body.sources).toHaveLength(2);
    // The unreachable endpoint is reported (backing off) by the time the status is read again.
    await vi.waitFor(
      async () => {
        const got = await call("GET", source, `/v1/sources/${id}`, { key: keys.admin });
        expect(got.body).toMatchObject({ state: "backing_off", secrets: { auth: "set" } });
      },
      { timeout: 20_000, interval: 200 },
    );
    expect((await call("POST", `${source}/pause`, `/v1/sources/${id}/pause`, { key: keys.admin })).status).toBe(200);
    expect((await call("POST", `${source}/resume`, `/v1/sources/${id}/resume`, { key: keys.admin })).status).toBe(200);
    expect((await call("DELETE", source, `/v1/sources/${id}`, { key: keys.admin })).status).toBe(200);
    expect((await call("GET", source, `/v1/sources/${id}`, { key: keys.admin })).body).toMatchObject({
      error: { code: "source_not_found" },
    });
    const bad = await call("POST", "/v1/sources", "/v1/sources", {
      key: keys.admin,
      body: { kind: "postgres", name: "x", connection_string: "postgres://h/db", cursor: "id", mapping: { name: "x" } },
    });
    expect(bad.body).toMatchObject({ error: { code: "invalid_source" } });
    expect((await call("GET", "/v1/sources", "/v1/sources", { key: keys.read })).status).toBe(403);
  });

  it("sinks: create, list, get, pause, resume, delete, and refusals", async () => {
    const created = await call("POST", "/v1/sinks", "/v1/sinks", {
      key: keys.admin,
      body: {
        kind: "kafka",
        name: "to kafka",
        url: "http://127.0.0.1:9",
        topic: "edgepulse.events",
        streams: [STREAM],
        auth: { header: "Authorization", value: "Basic b3BlbmFwaQ==" },
      },
    });
    expect(created.status).toBe(201);
    const id = (created.body as unknown as { id: string }).id;
    const sink = "/v1/sinks/{sink}";
    expect((await call("GET", "/v1/sinks", "/v1/sinks", { key: keys.admin })).body.sinks).toHaveLength(1);
    expect((await call("GET", sink, `/v1/sinks/${id}`, { key: keys.admin })).body).toMatchObject({
      secrets: { auth: "set" },
    });
    expect((await call("POST", `${sink}/pause`, `/v1/sinks/${id}/pause`, { key: keys.admin })).status).toBe(200);
    expect((await call("POST", `${sink}/resume`, `/v1/sinks/${id}/resume`, { key: keys.admin })).status).toBe(200);
    expect((await call("DELETE", sink, `/v1/sinks/${id}`, { key: keys.admin })).status).toBe(200);
    expect((await call("GET", sink, `/v1/sinks/${id}`, { key: keys.admin })).body).toMatchObject({
      error: { code: "sink_not_found" },
    });
    const bad = await call("POST", "/v1/sinks", "/v1/sinks", {
      key: keys.admin,
      body: { kind: "kafka", name: "x", url: "http://127.0.0.1:9", topic: "a b" },
    });
    expect(bad.body).toMatchObject({ error: { code: "invalid_sink" } });
    expect((await call("GET", "/v1/sinks", "/v1/sinks", { key: keys.read })).status).toBe(403);
  });

  it("catalog: create, list, get, patch, delete, and refusals", async () => {
    const item = "/v1/catalog/{kind}/{entity}";
    const created = await call("POST", "/v1/catalog/{kind}", "/v1/catalog/products", {
      key: keys.admin,
      body: { id: "sku-1", name: "Blue Mug", category: "kitchen", price: 12.5 },
    });
    expect(created.status).toBe(201);
    const listed = await call("GET", "/v1/catalog/{kind}", "/v1/catalog/products?category=kitchen", {
      key: keys.read,
    });
    expect(listed.body.items).toHaveLength(1);
    expect((await call("GET", item, "/v1/catalog/products/sku-1", { key: keys.read })).status).toBe(200);
    const patched = await call("PATCH", item, "/v1/catalog/products/sku-1", { key: keys.admin, body: { price: 11 } });
    expect(patched.body).toMatchObject({ price: 11 });
    const user = await call("POST", "/v1/catalog/{kind}", "/v1/catalog/users", {
      key: keys.admin,
      body: { id: "u-1", first_name: "Ada", last_name: "Lovelace", plan: "pro", country: "GB" },
    });
    expect(user.status).toBe(201);
    const course = await call("POST", "/v1/catalog/{kind}", "/v1/catalog/courses", {
      key: keys.admin,
      body: { id: "c-1", title: "Analytics 101", level: "beginner", instructor: "Grace" },
    });
    expect(course.status).toBe(201);
    const conflict = await call("POST", "/v1/catalog/{kind}", "/v1/catalog/products", {
      key: keys.admin,
      body: { id: "sku-2", name: "blue mug", price: 3 },
    });
    expect(conflict.body).toMatchObject({ error: { code: "entity_conflict" } });
    const bad = await call("POST", "/v1/catalog/{kind}", "/v1/catalog/products", {
      key: keys.admin,
      body: { id: "sku-3", name: "x", price: -1 },
    });
    expect(bad.body).toMatchObject({ error: { code: "invalid_entity" } });
    expect((await call("DELETE", item, "/v1/catalog/products/sku-1", { key: keys.admin })).status).toBe(200);
    expect((await call("GET", item, "/v1/catalog/products/sku-1", { key: keys.read })).body).toMatchObject({
      error: { code: "entity_not_found" },
    });
  });

  it("operator routes", async () => {
    const op = stack.token;
    expect((await call("GET", "/v1/admin/tenants", "/v1/admin/tenants", { key: op })).status).toBe(200);
    expect((await call("GET", "/v1/admin/tenants", "/v1/admin/tenants", { key: "wrong" })).status).toBe(401);
    const created = await call("POST", "/v1/admin/tenants", "/v1/admin/tenants", { key: op, body: { name: "second" } });
    expect(created.status).toBe(201);
    const tenant = keys.tenantId;
    const tenantKeys = "/v1/admin/tenants/{tenant}/keys";
    const key = await call("POST", tenantKeys, `/v1/admin/tenants/${tenant}/keys`, {
      key: op,
      body: { scope: "ingest" },
    });
    expect(key.status).toBe(201);
    expect(
      (await call("DELETE", `${tenantKeys}/{key}`, `/v1/admin/tenants/${tenant}/keys/${key.body.id}`, { key: op }))
        .status,
    ).toBe(200);
    expect(
      (await call("POST", tenantKeys, "/v1/admin/tenants/t_nope/keys", { key: op, body: { scope: "read" } })).status,
    ).toBe(404);
    const limits = "/v1/admin/tenants/{tenant}/limits";
    expect(
      (await call("PUT", limits, `/v1/admin/tenants/${tenant}/limits`, { key: op, body: { read_per_sec: 500 } }))
        .status,
    ).toBe(200);
    const stats = "/v1/admin/tenants/{tenant}/streams/{name}/stats";
    expect((await call("GET", stats, `/v1/admin/tenants/${tenant}/streams/${STREAM}/stats`, { key: op })).status).toBe(
      200,
    );
  });
});
