/**
 * Builds the OpenAPI 3.1 document from the app's routes: the request side
 * (who may call, query parameters, JSON bodies) from the tags of each route's
 * middleware (tag.ts), everything else from the route's entry in routes.ts;
 * schemas are converted by zod's own z.toJSONSchema (draft 2020-12, the
 * dialect of OpenAPI 3.1). Named schemas (those with a zod `id`) become
 * components. Runs in the Worker (no code generation at run time) and is
 * built once per isolate.
 */
import { z } from "zod";
import { ERRORS, type ErrorCode } from "../../core/errors";
import { ErrorBody } from "../../core/responses";
import pkg from "../../package.json";
import {
  MIDDLEWARE_ERRORS,
  OPERATIONS,
  type OperationDoc,
  PATH_PARAMS,
  type ParamDoc,
  QUERY_PARAMS,
  type RouteKey,
  SECURITY_SCHEMES,
  type SecuritySchemeName,
  TAGS,
  WEBHOOKS,
} from "./routes";
import { type RequestTag, tagOf } from "./tag";

type Json = Record<string, unknown>;

export interface AppRoute {
  method: string;
  path: string;
  handler: unknown;
}

export interface ApiDescription {
  document: Json;
  /** What keeps the document from describing the app exactly: a route with no entry, a parameter with no schema… */
  problems: string[];
}

/** OpenAPI's form of a Hono path: `/v1/streams/:name` → `/v1/streams/{name}`. */
export const openApiPath = (path: string): string =>
  path
    .split("/")
    .map((seg) => (seg.startsWith(":") ? `{${seg.slice(1)}}` : seg))
    .join("/");

const pathParams = (path: string): string[] =>
  path
    .split("/")
    .filter((seg) => seg.startsWith(":"))
    .map((seg) => seg.slice(1));

const REF = "#/components/schemas/";

/** zod → JSON Schema, with every named (`id`) schema moved to components and referenced from there. */
class Schemas {
  readonly components: Record<string, Json> = {};
  constructor(private readonly problems: string[]) {}

  convert(schema: z.ZodType, io: "input" | "output"): Json {
    const out = z.toJSONSchema(schema, { target: "draft-2020-12", io, unrepresentable: "any" }) as Json;
    const defs = (out.$defs ?? {}) as Record<string, Json>;
    delete out.$defs;
    delete out.$schema;
    for (const [id, def] of Object.entries(defs)) {
      const fixed = tidy(def) as Json;
      const known = this.components[id];
      if (known === undefined) this.components[id] = fixed;
      else if (JSON.stringify(known) !== JSON.stringify(fixed)) {
        this.problems.push(
          `Two different schemas are named '${id}' (or one reads differently as a request and a response).`,
        );
      }
    }
    return tidy(out) as Json;
  }
}

/** Local `$defs` references become component references; zod's safe-integer bounds (noise) are dropped. */
function tidy(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(tidy);
  if (v === null || typeof v !== "object") return v;
  const out: Json = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === "$ref" && typeof x === "string" && x.startsWith("#/$defs/")) out[k] = REF + x.slice("#/$defs/".length);
    else if (k === "maximum" && x === Number.MAX_SAFE_INTEGER) continue;
    else if (k === "minimum" && x === Number.MIN_SAFE_INTEGER) continue;
    else out[k] = tidy(x);
  }
  return out;
}

/** What the middleware of each method and path say (route-level `use` middleware included). */
function requestTags(routes: readonly AppRoute[]): Map<string, RequestTag> {
  const middleware = routes.filter((r) => r.method === "ALL");
  const covers = (pattern: string, path: string) =>
    pattern === path ||
    pattern === "*" ||
    pattern === "/*" ||
    (pattern.endsWith("/*") && path.startsWith(pattern.slice(0, -1)));
  const out = new Map<string, RequestTag>();
  for (const r of routes) {
    if (r.method === "ALL") continue;
    const key = `${r.method} ${r.path}`;
    let tag = out.get(key);
    if (tag === undefined) {
      tag = {};
      for (const m of middleware) if (covers(m.path, r.path)) Object.assign(tag, tagOf(m.handler));
      out.set(key, tag);
    }
    Object.assign(tag, tagOf(r.handler));
  }
  return out;
}

function security(auth: RequestTag["auth"]): Array<Partial<Record<SecuritySchemeName, []>>> | undefined {
  if (auth === undefined) return undefined;
  switch (auth.scope) {
    case "ingest":
      return [{ ingestKey: [] }, { adminKey: [] }, ...(auth.queryKeyForText ? [{ beaconKey: [] as [] }] : [])];
    case "read":
      return [{ readKey: [] }, { adminKey: [] }];
    case "admin":
      return [{ adminKey: [] }];
    case "operator":
      return [{ operatorToken: [] }];
  }
}

/** The codes a route may answer with: its own, its middleware's, and internal_error. */
function errorCodes(op: OperationDoc, tag: RequestTag): ErrorCode[] {
  const codes: ErrorCode[] = [...(op.errors ?? [])];
  if (tag.auth) codes.push(...(tag.auth.scope === "operator" ? MIDDLEWARE_ERRORS.operator : MIDDLEWARE_ERRORS.key));
  if (tag.query) codes.push(...MIDDLEWARE_ERRORS.query);
  if (tag.body) codes.push(...MIDDLEWARE_ERRORS.body, tag.body.code);
  if (tag.websocket) codes.push(...MIDDLEWARE_ERRORS.websocket);
  codes.push(...MIDDLEWARE_ERRORS.every);
  return [...new Set(codes)];
}

const RATE_LIMIT_HEADERS = {
  "RateLimit-Limit": { $ref: "#/components/headers/RateLimit-Limit" },
  "RateLimit-Remaining": { $ref: "#/components/headers/RateLimit-Remaining" },
  "RateLimit-Reset": { $ref: "#/components/headers/RateLimit-Reset" },
};

const HEADERS = {
  "RateLimit-Limit": {
    description: "The tenant's requests per second for this kind of request (ingest or read).",
    schema: { type: "integer" },
  },
  "RateLimit-Remaining": { description: "Requests left in the current second.", schema: { type: "integer" } },
  "RateLimit-Reset": { description: "Seconds until the window resets.", schema: { type: "integer" } },
  "Retry-After": { description: "Seconds to wait before retrying.", schema: { type: "integer" } },
};

const markdownCode = (s: string) => `\`${s}\``;

function errorResponses(codes: ErrorCode[]): Record<string, Json> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) {
    const status = ERRORS[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<string, Json> = {};
  for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    const retry = list.some((c) => c === "rate_limited" || c === "stream_unavailable");
    out[String(status)] = {
      description: list.map((c) => `${markdownCode(c)}: ${ERRORS[c].message}`).join("\n\n"),
      ...(retry ? { headers: { "Retry-After": { $ref: "#/components/headers/Retry-After" } } } : {}),
      content: {
        "application/json": {
          schema: {
            allOf: [
              { $ref: `${REF}Error` },
              { type: "object", properties: { error: { type: "object", properties: { code: { enum: list } } } } },
            ],
          },
        },
      },
    };
  }
  return out;
}

/** A parameter object; the description moves from the schema to the parameter. */
function parameter(name: string, where: "path" | "query", doc: ParamDoc, schemas: Schemas): Json {
  if ("json" in doc && !(doc instanceof z.ZodType)) {
    return {
      name,
      in: where,
      required: true,
      description: doc.description,
      content: { "application/json": { schema: schemas.convert(doc.json, "input") } },
    };
  }
  const schema = schemas.convert(doc, "input");
  const { description, ...rest } = schema;
  const required = where === "path" || !doc.safeParse(undefined).success;
  return { name, in: where, required, ...(description ? { description } : {}), schema: rest };
}

function operation(key: RouteKey, op: OperationDoc, tag: RequestTag, schemas: Schemas, problems: string[]): Json {
  const path = key.slice(key.indexOf(" ") + 1);
  const parameters: Json[] = [];
  for (const name of pathParams(path)) {
    const doc = PATH_PARAMS[name];
    if (doc === undefined)
      problems.push(`${key}: describe the path parameter '${name}' in PATH_PARAMS (workers/openapi/routes.ts).`);
    parameters.push(parameter(name, "path", doc ?? z.string(), schemas));
  }
  // The query parameters the route takes (onlyParams); without onlyParams, those its entry names.
  const described = Object.keys(op.query ?? {});
  const names = tag.query ?? described;
  for (const name of described) {
    if (!names.includes(name))
      problems.push(`${key}: describes the query parameter '${name}', which the route refuses.`);
  }
  for (const name of names) {
    if (name === "key" && tag.auth?.queryKeyForText) continue; // the beaconKey security scheme
    const doc = op.query?.[name] ?? QUERY_PARAMS[name];
    if (doc === undefined) {
      problems.push(`${key}: describe the query parameter '${name}' in its entry's query (workers/openapi/routes.ts).`);
    }
    parameters.push(parameter(name, "query", doc ?? z.string().optional(), schemas));
  }

  let requestBody: Json | undefined;
  if (tag.body) {
    requestBody = {
      required: true,
      content: { "application/json": { schema: schemas.convert(tag.body.schema, "input") } },
    };
  } else if (op.body) {
    requestBody = {
      required: true,
      description: op.body.description,
      content: Object.fromEntries(
        Object.entries(op.body.content).map(([type, s]) => [type, { schema: schemas.convert(s, "input") }]),
      ),
    };
  }

  const limited = tag.auth !== undefined && tag.auth.scope !== "operator";
  const responses: Record<string, Json> = {};
  for (const [status, r] of Object.entries(op.responses)) {
    const content: Json = {};
    if (r.json) content["application/json"] = { schema: schemas.convert(r.json, "output") };
    for (const [type, s] of Object.entries(r.content ?? {})) content[type] = { schema: schemas.convert(s, "output") };
    responses[status] = {
      description: r.description,
      ...(limited && Number(status) < 300 && Number(status) !== 101 ? { headers: RATE_LIMIT_HEADERS } : {}),
      ...(Object.keys(content).length > 0 ? { content } : {}),
    };
  }
  Object.assign(responses, errorResponses(errorCodes(op, tag)));

  const sec = security(tag.auth);
  return {
    operationId: op.operationId,
    tags: [op.tag],
    summary: op.summary,
    ...(op.description ? { description: op.description } : {}),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(requestBody ? { requestBody } : {}),
    responses,
    ...(sec ? { security: sec } : {}),
  };
}

const INTRO = [
  'All responses are JSON, in one style: keys are snake_case; points in time are ISO-8601 UTC strings (`"2026-11-22T09:00:00.000Z"`, or `null` when not set); durations are numbers with their unit in the name (`for_ms`). Times you send (`ts`, `from`, `to`) may be epoch ms or ISO-8601.',
  "",
  'Errors have one shape, `{"error": {"code", "message", "details"?}}`, and stable codes: each response below lists the codes it may carry. A known path called with another method answers `405 method_not_allowed` with an `Allow` header; an unknown path `404 not_found`.',
  "",
  "Authenticate with `Authorization: Bearer <key>`: an ingest, read or admin key of a tenant, or the operator token. Every authenticated response carries the tenant's `RateLimit-*` headers; over the limit, `429 rate_limited` with `Retry-After`.",
].join("\n");

/** The document, and anything that keeps it from describing every route exactly. */
export function describeApi(routes: readonly AppRoute[]): ApiDescription {
  const problems: string[] = [];
  const schemas = new Schemas(problems);
  schemas.convert(ErrorBody, "output");
  const tags = requestTags(routes);
  const paths: Record<string, Record<string, Json>> = {};
  for (const [key, op] of Object.entries(OPERATIONS) as Array<[RouteKey, OperationDoc]>) {
    const tag = tags.get(key);
    if (tag === undefined) {
      problems.push(`${key} is described in workers/openapi/routes.ts but no such route is registered.`);
      continue;
    }
    const [method, path] = key.split(" ");
    paths[openApiPath(path)] ??= {};
    paths[openApiPath(path)][method.toLowerCase()] = operation(key, op, tag, schemas, problems);
  }
  for (const key of tags.keys()) {
    if (!Object.hasOwn(OPERATIONS, key)) {
      problems.push(`${key} has no entry in OPERATIONS (workers/openapi/routes.ts), so the document leaves it out.`);
    }
  }
  const ids = new Map<string, string>();
  for (const [key, op] of Object.entries(OPERATIONS)) {
    const other = ids.get(op.operationId);
    if (other) problems.push(`${key} and ${other} have the same operationId '${op.operationId}'.`);
    ids.set(op.operationId, key);
  }

  const webhooks = Object.fromEntries(
    Object.entries(WEBHOOKS).map(([name, w]) => [
      name,
      {
        post: {
          summary: w.summary,
          description: w.description,
          parameters: Object.entries(w.headers).map(([h, d]) => ({
            name: h,
            in: "header",
            required: true,
            description: d,
            schema: { type: "string" },
          })),
          requestBody: {
            required: true,
            content: { "application/json": { schema: schemas.convert(w.body, "output") } },
          },
          responses: { "2XX": { description: "Acknowledged; anything else is retried with backoff." } },
        },
      },
    ]),
  );

  const document = {
    openapi: "3.1.0",
    info: {
      title: "edgepulse",
      version: pkg.version,
      summary: pkg.description,
      description: INTRO,
    },
    tags: Object.entries(TAGS).map(([name, description]) => ({ name, description })),
    paths,
    webhooks,
    components: {
      schemas: Object.fromEntries(Object.entries(schemas.components).sort(([a], [b]) => a.localeCompare(b))),
      securitySchemes: SECURITY_SCHEMES,
      headers: HEADERS,
    },
  };
  return { document, problems };
}
