/**
 * The catalog's rows (core/catalog.ts). Every query names the tenant and the kind. Writes to one tenant's
 * catalog of one kind run one at a time (a transaction-scoped advisory lock on the pair), so the checks
 * before them are exact: the id and the unique key are free, and the kind is under its limit.
 */
import { and, asc, count, eq, gt, inArray, type SQL, sql } from "drizzle-orm";
import {
  type CatalogKind,
  type CatalogListing,
  type EntityData,
  labelOf,
  MAX_ENTITIES_PER_KIND,
  PREFIX_FIELD,
  type StoredEntity,
} from "../core/catalog";
import type { Db } from "./maintenance";
import { catalogEntities as t } from "./schema";

/** The advisory-lock class of catalog writes (the second key is a hash of tenant and kind). */
const LOCK_CLASS = 0x6361_74; // "cat"

export type WriteOutcome =
  | { ok: true; entity: StoredEntity }
  | { ok: false; reason: "not_found" }
  | { ok: false; reason: "limit" }
  | { ok: false; reason: "conflict"; on: "id" | "unique_key"; other: string };

type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

const scope = (tenant: string, kind: CatalogKind) => and(eq(t.tenantId, tenant), eq(t.kind, kind));

const stored = (r: typeof t.$inferSelect): StoredEntity => ({
  kind: r.kind as CatalogKind,
  id: r.id,
  data: r.data,
  createdAt: r.createdAt,
  updatedAt: r.updatedAt,
});

async function lock(tx: Tx, tenant: string, kind: CatalogKind): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(${LOCK_CLASS}, hashtext(${`${tenant}/${kind}`}))`);
}

/** Another entity of the kind holding this unique key (other than `except`), if any. */
async function holderOf(tx: Tx, tenant: string, kind: CatalogKind, key: string, except?: string) {
  const rows = await tx
    .select({ id: t.id })
    .from(t)
    .where(and(scope(tenant, kind), eq(t.uniqueKey, key)))
    .limit(2);
  return rows.find((r) => r.id !== except)?.id;
}

export async function createEntity(
  db: Db,
  tenant: string,
  kind: CatalogKind,
  id: string,
  data: EntityData,
  uniqueKey: string,
): Promise<WriteOutcome> {
  return db.transaction(async (tx) => {
    await lock(tx, tenant, kind);
    const same = await tx
      .select({ id: t.id })
      .from(t)
      .where(and(scope(tenant, kind), eq(t.id, id)))
      .limit(1);
    if (same.length > 0) return { ok: false, reason: "conflict", on: "id", other: id };
    const holder = await holderOf(tx, tenant, kind, uniqueKey);
    if (holder !== undefined) return { ok: false, reason: "conflict", on: "unique_key", other: holder };
    const [{ n }] = await tx.select({ n: count() }).from(t).where(scope(tenant, kind));
    if (n >= MAX_ENTITIES_PER_KIND) return { ok: false, reason: "limit" };
    const [row] = await tx.insert(t).values({ tenantId: tenant, kind, id, data, uniqueKey }).returning();
    return { ok: true, entity: stored(row) };
  });
}

export async function getEntity(db: Db, tenant: string, kind: CatalogKind, id: string): Promise<StoredEntity | null> {
  const rows = await db
    .select()
    .from(t)
    .where(and(scope(tenant, kind), eq(t.id, id)))
    .limit(1);
  return rows.length > 0 ? stored(rows[0]) : null;
}

/** Applies `change` to the stored attributes; the new unique key must be free (the entity's own is). */
export async function updateEntity(
  db: Db,
  tenant: string,
  kind: CatalogKind,
  id: string,
  change: (data: EntityData) => { data: EntityData; uniqueKey: string },
): Promise<WriteOutcome> {
  return db.transaction(async (tx) => {
    await lock(tx, tenant, kind);
    const rows = await tx
      .select()
      .from(t)
      .where(and(scope(tenant, kind), eq(t.id, id)))
      .limit(1);
    if (rows.length === 0) return { ok: false, reason: "not_found" };
    const next = change(rows[0].data);
    const holder = await holderOf(tx, tenant, kind, next.uniqueKey, id);
    if (holder !== undefined) return { ok: false, reason: "conflict", on: "unique_key", other: holder };
    const [row] = await tx
      .update(t)
      .set({ data: next.data, uniqueKey: next.uniqueKey, updatedAt: sql`now()` })
      .where(and(scope(tenant, kind), eq(t.id, id)))
      .returning();
    return { ok: true, entity: stored(row) };
  });
}

export async function deleteEntity(db: Db, tenant: string, kind: CatalogKind, id: string): Promise<boolean> {
  const rows = await db
    .delete(t)
    .where(and(scope(tenant, kind), eq(t.id, id)))
    .returning({ id: t.id });
  return rows.length > 0;
}

/**
 * The labels (core/catalog.ts labelOf) of those of `ids` the tenant's catalog of `kind` holds, in one query;
 * with `attribute`, that attribute's value instead (as text; null when the entity has none). An id the catalog
 * does not hold (never added, or deleted) is absent from the map. The caller bounds `ids` (a query's groups).
 */
export async function entityLabels(
  db: Db,
  tenant: string,
  kind: CatalogKind,
  ids: readonly string[],
): Promise<Map<string, string>>;
export async function entityLabels(
  db: Db,
  tenant: string,
  kind: CatalogKind,
  ids: readonly string[],
  attribute: string,
): Promise<Map<string, string | null>>;
export async function entityLabels(
  db: Db,
  tenant: string,
  kind: CatalogKind,
  ids: readonly string[],
  attribute?: string,
): Promise<Map<string, string | null>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .select({ id: t.id, data: t.data })
    .from(t)
    .where(and(scope(tenant, kind), inArray(t.id, [...ids])));
  const shown = (data: EntityData): string | null => {
    if (attribute === undefined) return labelOf(kind, data);
    const v = data[attribute];
    return v === undefined || v === null ? null : String(v);
  };
  return new Map(rows.map((r) => [r.id, shown(r.data)]));
}

/** One page, ordered by id; `next` is the last id when more may follow. */
export async function listEntities(
  db: Db,
  tenant: string,
  kind: CatalogKind,
  q: CatalogListing,
): Promise<{ items: StoredEntity[]; next: string | null }> {
  const attr = (f: string) => sql`(${t.data} ->> ${f})`;
  const where: Array<SQL | undefined> = [scope(tenant, kind)];
  if (q.after !== undefined) where.push(gt(t.id, q.after));
  if (q.q !== undefined) where.push(sql`starts_with(lower(${attr(PREFIX_FIELD[kind])}), lower(${q.q}))`);
  for (const [f, v] of q.equals) where.push(sql`lower(${attr(f)}) = lower(${v})`);
  if (q.minPrice !== undefined) where.push(sql`(${attr("price")})::float8 >= ${q.minPrice}`);
  if (q.maxPrice !== undefined) where.push(sql`(${attr("price")})::float8 <= ${q.maxPrice}`);
  const rows = await db
    .select()
    .from(t)
    .where(and(...where))
    // The cursor compares with the order's own collation (the column's): each entity is on one page.
    .orderBy(asc(t.id))
    .limit(q.limit + 1);
  const more = rows.length > q.limit;
  const items = rows.slice(0, q.limit).map(stored);
  return { items, next: more ? items[items.length - 1].id : null };
}
