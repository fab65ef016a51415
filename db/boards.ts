/**
 * Boards' rows (core/boards.ts). Every query names the tenant. Creates in one tenant run one at a time (a
 * transaction-scoped advisory lock on the tenant), so the count before the insert is exact and a tenant never
 * holds more than MAX_BOARDS_PER_TENANT. A replace is one conditional UPDATE (… WHERE version = $v): of two
 * replaces naming the same version, exactly one applies.
 */
import { and, asc, count, eq, sql } from "drizzle-orm";
import { type BoardContent, MAX_BOARDS_PER_TENANT, newBoardId, type PanelView, type StoredBoard } from "../core/boards";
import type { Db } from "./maintenance";
import { boards as t } from "./schema";

/** The advisory-lock class of board creates (the second key is a hash of the tenant). */
const LOCK_CLASS = 0x626f_61; // "boa"

export type CreateOutcome = { ok: true; board: StoredBoard } | { ok: false; reason: "limit" };
export type ReplaceOutcome =
  | { ok: true; board: StoredBoard }
  | { ok: false; reason: "not_found" }
  | { ok: false; reason: "conflict"; version: number };

const stored = (r: typeof t.$inferSelect): StoredBoard => ({
  id: r.id,
  name: r.name,
  description: r.description,
  panels: r.panels as PanelView[],
  version: r.version,
  createdAt: r.createdAt,
  updatedAt: r.updatedAt,
});

const one = (tenant: string, id: string) => and(eq(t.tenantId, tenant), eq(t.id, id));

export async function createBoard(db: Db, tenant: string, content: BoardContent): Promise<CreateOutcome> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${LOCK_CLASS}, hashtext(${tenant}))`);
    const [{ n }] = await tx.select({ n: count() }).from(t).where(eq(t.tenantId, tenant));
    if (n >= MAX_BOARDS_PER_TENANT) return { ok: false, reason: "limit" };
    const [row] = await tx
      .insert(t)
      .values({ tenantId: tenant, id: newBoardId(), ...content })
      .returning();
    return { ok: true, board: stored(row) };
  });
}

export async function getBoard(db: Db, tenant: string, id: string): Promise<StoredBoard | null> {
  const rows = await db.select().from(t).where(one(tenant, id)).limit(1);
  return rows.length > 0 ? stored(rows[0]) : null;
}

/** The tenant's boards by name (at most MAX_BOARDS_PER_TENANT), with their panels counted, not read. */
export async function listBoards(db: Db, tenant: string) {
  return db
    .select({
      id: t.id,
      name: t.name,
      description: t.description,
      panels: sql<number>`jsonb_array_length(${t.panels})`.mapWith(Number),
      version: t.version,
      updatedAt: t.updatedAt,
    })
    .from(t)
    .where(eq(t.tenantId, tenant))
    .orderBy(asc(sql`lower(${t.name})`), asc(t.id))
    .limit(MAX_BOARDS_PER_TENANT);
}

/** Replaces the board's content if it is still at `version`; the version is bumped. */
export async function replaceBoard(
  db: Db,
  tenant: string,
  id: string,
  version: number,
  content: BoardContent,
): Promise<ReplaceOutcome> {
  const rows = await db
    .update(t)
    .set({ ...content, version: sql`${t.version} + 1`, updatedAt: sql`now()` })
    .where(and(one(tenant, id), eq(t.version, version)))
    .returning();
  if (rows.length > 0) return { ok: true, board: stored(rows[0]) };
  const now = await db.select({ version: t.version }).from(t).where(one(tenant, id)).limit(1);
  if (now.length === 0) return { ok: false, reason: "not_found" };
  return { ok: false, reason: "conflict", version: now[0].version };
}

export async function deleteBoard(db: Db, tenant: string, id: string): Promise<boolean> {
  const rows = await db.delete(t).where(one(tenant, id)).returning({ id: t.id });
  return rows.length > 0;
}
