/**
 * The catalog API (core/catalog.ts): /v1/catalog/:kind, the products, users and courses dimension values
 * name, in PostgreSQL (db/catalog.ts). Read keys list and read; admin keys create, change and delete, and
 * a credential limited to stream prefixes may read but not write (the catalog is tenant-wide). Every query
 * is scoped to the caller's tenant. Without a database, 503 history_disabled.
 */
import { type Context, Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { z } from "zod";
import {
  CATALOG_KINDS,
  type CatalogKind,
  CREATE_SCHEMAS,
  dataOf,
  type EntityData,
  isCatalogKind,
  LIST_PARAMS,
  MAX_ENTITIES_PER_KIND,
  PATCH_SCHEMAS,
  parseListing,
  patched,
  UNIQUE_BY,
  uniqueKeyOf,
  viewOf,
} from "../../core/catalog";
import { describeIssues } from "../../core/schemas";
import { createEntity, deleteEntity, getEntity, listEntities, updateEntity, type WriteOutcome } from "../../db/catalog";
import { historyEnabled } from "../../db/client";
import { assertUnrestricted, requireKey } from "../lib/auth";
import { ApiError, withDatabase } from "../lib/errors";
import type { AppEnv } from "../lib/types";
import { onlyParams } from "../lib/validate";
import { tagged } from "../openapi/tag";

export const catalog = new Hono<AppEnv>();

/** What the catalog's handlers read of their context (the body middleware's context has one variable more). */
type Ctx = Pick<Context<AppEnv>, "req" | "env">;

/** The kind in the path, or 404 catalog_kind_not_found naming the kinds there are. */
function kindOf(c: Ctx): CatalogKind {
  const kind = c.req.param("kind") ?? "";
  if (!isCatalogKind(kind)) {
    throw new ApiError(
      "catalog_kind_not_found",
      `There is no catalog of '${kind.slice(0, 64)}'; the kinds are ${CATALOG_KINDS.join(", ")}.`,
    );
  }
  if (!historyEnabled(c.env)) throw new ApiError("history_disabled");
  return kind;
}

const entityParam = (c: Ctx): string => c.req.param("entity") ?? "";

const notFound = (kind: CatalogKind, id: string) =>
  new ApiError("entity_not_found", `The ${kind} catalog has no entity '${id.slice(0, 64)}'.`);

const admin = [
  requireKey("admin"),
  createMiddleware<AppEnv>(async (c, next) => {
    assertUnrestricted(c.get("grant"), "changing the catalog (it is tenant-wide)");
    await next();
  }),
] as const;

/**
 * The JSON body, validated with the schema of the path's kind (`schemas`); a refusal is a 400 invalid_entity
 * naming the field. Tagged with the union of the kinds' schemas for the API description.
 */
function entityBody(schemas: Record<CatalogKind, z.ZodType>) {
  return tagged(
    { body: { schema: z.union(CATALOG_KINDS.map((k) => schemas[k])), code: "invalid_entity" } },
    createMiddleware<AppEnv & { Variables: { body: Record<string, unknown> } }>(async (c, next) => {
      const kind = kindOf(c);
      let raw: unknown;
      try {
        raw = await c.req.json();
      } catch {
        throw new ApiError("malformed_body", "The body must be a JSON object.");
      }
      if (raw === null || typeof raw !== "object" || Array.isArray(raw))
        throw new ApiError("malformed_body", "The body must be a JSON object.");
      const result = schemas[kind].safeParse(raw);
      if (!result.success) {
        const { message, details } = describeIssues(result.error);
        throw new ApiError("invalid_entity", message, details);
      }
      c.set("body", result.data as Record<string, unknown>);
      await next();
    }),
  );
}

/** A write's outcome as the response, or the error it is. */
function settled(kind: CatalogKind, id: string, data: EntityData, out: WriteOutcome) {
  if (out.ok) return viewOf(out.entity);
  if (out.reason === "not_found") throw notFound(kind, id);
  if (out.reason === "limit") {
    throw new ApiError(
      "catalog_limit",
      `The ${kind} catalog holds ${MAX_ENTITIES_PER_KIND} entities, the most allowed; delete one first.`,
    );
  }
  if (out.on === "id") {
    throw new ApiError("entity_conflict", `id: the ${kind} catalog already has an entity '${id.slice(0, 64)}'.`, {
      field: "id",
      id,
    });
  }
  const fields = UNIQUE_BY[kind];
  const value =
    kind === "users" ? `${data.first_name} ${data.last_name}` : String(kind === "products" ? data.name : data.title);
  throw new ApiError(
    "entity_conflict",
    `${fields}: '${value.slice(0, 128)}' is already entity '${out.other.slice(0, 64)}' of the ${kind} catalog (unique case-insensitively).`,
    { field: fields, id: out.other },
  );
}

catalog.post("/v1/catalog/:kind", ...admin, onlyParams(), entityBody(CREATE_SCHEMAS), async (c) => {
  const kind = kindOf(c);
  const tenant = c.get("grant").tenantId;
  const body = c.get("body") as { id: string } & Record<string, unknown>;
  const data = dataOf(body);
  const out = await withDatabase(c.env, (db) => createEntity(db, tenant, kind, body.id, data, uniqueKeyOf(kind, data)));
  return c.json(settled(kind, body.id, data, out), 201);
});

catalog.get("/v1/catalog/:kind", requireKey("read"), onlyParams(...LIST_PARAMS), async (c) => {
  const kind = kindOf(c);
  const tenant = c.get("grant").tenantId;
  const params: Record<string, string | undefined> = {};
  for (const p of LIST_PARAMS) params[p] = c.req.query(p);
  const listing = parseListing(kind, params);
  const page = await withDatabase(c.env, (db) => listEntities(db, tenant, kind, listing));
  return c.json({ items: page.items.map(viewOf), next_cursor: page.next });
});

catalog.get("/v1/catalog/:kind/:entity", requireKey("read"), onlyParams(), async (c) => {
  const kind = kindOf(c);
  const id = entityParam(c);
  const found = await withDatabase(c.env, (db) => getEntity(db, c.get("grant").tenantId, kind, id));
  if (found === null) throw notFound(kind, id);
  return c.json(viewOf(found));
});

catalog.patch("/v1/catalog/:kind/:entity", ...admin, onlyParams(), entityBody(PATCH_SCHEMAS), async (c) => {
  const kind = kindOf(c);
  const id = entityParam(c);
  const patch = c.get("body");
  let data: EntityData = {};
  const out = await withDatabase(c.env, (db) =>
    updateEntity(db, c.get("grant").tenantId, kind, id, (stored) => {
      data = patched(stored, patch);
      return { data, uniqueKey: uniqueKeyOf(kind, data) };
    }),
  );
  return c.json(settled(kind, id, data, out));
});

catalog.delete("/v1/catalog/:kind/:entity", ...admin, onlyParams(), async (c) => {
  const kind = kindOf(c);
  const id = entityParam(c);
  if (!(await withDatabase(c.env, (db) => deleteEntity(db, c.get("grant").tenantId, kind, id))))
    throw notFound(kind, id);
  return c.json({ deleted: id });
});
