/**
 * PostgreSQL sources: rows of a table or a query, read in the order of a cursor column (or two, compared as
 * a row: `(updated_at, id)`), which must be unique and NOT NULL. Through the project's database client
 * (the neon serverless driver; locally through PG_BRIDGE), read-only, one REPEATABLE READ snapshot per poll.
 *
 * Rows inserted while polling: a transaction that took a lower cursor value (a sequence, a timestamp) can
 * commit after rows with higher values were read, so "cursor > last" alone would skip it. So every row
 * read stays remembered for `commit_grace_ms` (table `pg_recent`): each poll counts the rows between the
 * settled cursor and the last one read, and when PostgreSQL has a different number than remembered,
 * reads that range and takes the rows it has not produced (late commits). Rows older than the grace are
 * settled: the settled cursor moves past them and they are forgotten. Exactly once therefore holds for any
 * transaction that commits within commit_grace_ms of a higher row becoming visible. Bound: PG_RECENT_MAX
 * rows remembered; past it the oldest settle early (counted in the cursor's `settled_early`).
 *
 * The cursor's values travel as PostgreSQL's own text (`col::text`), sent back as untyped parameters that
 * the server reads with the column's type, so every comparison is PostgreSQL's.
 */

import type { Pool } from "@neondatabase/serverless";
import { deadline, TimeoutError } from "../../core/async";
import type { EventErrorCode } from "../../core/errors";
import { hash64, PG_LAG_CAP, PG_RECENT_MAX, type PostgresConfig, SourceError } from "../../core/sources";
import { openDb } from "../../db/client";
import type { PullContext, Pulled, Puller } from "./types";

interface PgCursor {
  /** Rows up to this key are settled (none: nothing yet). */
  settled: string[] | null;
  /** The highest key read. */
  last: string[] | null;
  /** The next row's ordinal in pg_recent. */
  ord: number;
  settled_early: number;
}

export const PG_SCHEMA = [
  // Rows read within commit_grace_ms: their key (JSON of the cursor's text values), when read, and
  // whether they were late commits (found below the last key). Bounded by PG_RECENT_MAX.
  "CREATE TABLE IF NOT EXISTS pg_recent (ord INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, at INTEGER NOT NULL, late INTEGER NOT NULL)",
];

type Row = Record<string, unknown>;
/** A connection unused this long is closed before the next poll (and a new one opened). */
const POOL_IDLE_MS = 60_000;
/** The connection's own bound (db/client.ts connectionTimeoutMillis), on top of timeout_ms for the queries. */
const CONNECT_MS = 5000;
const KEY = "__edgepulse_k";

const quote = (ident: string) => `"${ident.replaceAll('"', '""')}"`;

/** SQLSTATE classes a retry cannot fix: syntax and access rules (42), invalid authorization (28), a missing database (3D). */
function pgError(err: unknown, timeoutMs: number): SourceError {
  if (err instanceof SourceError) return err;
  const e = err as { code?: string; message?: string; name?: string };
  const code = typeof e.code === "string" && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : null;
  if (code === "57014") return new SourceError("timeout", `PostgreSQL cancelled the query after ${timeoutMs} ms.`);
  if (code?.startsWith("28"))
    return new SourceError("auth_failed", `PostgreSQL refused the login (SQLSTATE ${code}).`, true);
  if (code !== null) {
    const permanent = code.startsWith("42") || code.startsWith("3D") || code.startsWith("22");
    return new SourceError(
      "query_failed",
      `PostgreSQL refused the query (SQLSTATE ${code}): ${e.message ?? ""}`,
      permanent,
    );
  }
  return new SourceError("unreachable", `PostgreSQL could not be reached (${e.name ?? "Error"}: ${e.message ?? ""}).`);
}

export function postgresPuller(config: PostgresConfig): Puller {
  const cols = (Array.isArray(config.cursor) ? config.cursor : [config.cursor]).map(quote);
  const src = config.table ? config.table.split(".").map(quote).join(".") : `(${config.query}) AS edgepulse_src`;
  const keyExpr = cols.length === 1 ? cols[0] : `(${cols.join(", ")})`;
  const param = (from: number) =>
    cols.length === 1 ? `$${from}` : `(${cols.map((_, j) => `$${from + j}`).join(", ")})`;
  const keySelect = cols.map((c, j) => `${c}::text AS ${KEY}${j}`).join(", ");
  const order = cols.join(", ");
  const keyOf = (r: Row): string[] => cols.map((_, j) => String(r[`${KEY}${j}`]));
  const recordOf = (r: Row): Row => {
    const out: Row = {};
    for (const [k, v] of Object.entries(r)) if (!k.startsWith(KEY)) out[k] = v;
    return out;
  };

  /** The connection pool (one connection) of this actor incarnation, and when it was last used. */
  let held: { pool: Pool; lastUsed: number } | null = null;
  const drop = async () => {
    const h = held;
    held = null;
    await h?.pool.end().catch(() => {});
  };

  return {
    lagUnit: "rows",

    close: drop,

    async pull(ctx: PullContext): Promise<Pulled> {
      const state: PgCursor = (ctx.cursor as PgCursor | null) ?? {
        settled: null,
        last: null,
        ord: 0,
        settled_early: 0,
      };
      const recent = ctx.sql.exec<{ n: number }>("SELECT count(*) AS n FROM pg_recent").one().n;
      // One connection, kept across polls while they come (a catching-up source polls every few ms).
      if (held !== null && ctx.now - held.lastUsed > POOL_IDLE_MS) await drop();
      held ??= {
        pool: openDb({ DATABASE_URL: ctx.secrets.connection_string, PG_BRIDGE: ctx.env.PG_BRIDGE }, 1).pool,
        lastUsed: ctx.now,
      };
      const pool = held.pool;
      let late: Row[] = [];
      let fresh: Row[] = [];
      let lag: number | null = 0;
      const work = async () => {
        const client = await pool.connect();
        try {
          await client.query("BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ");
          await client.query(`SET LOCAL statement_timeout = ${Math.floor(ctx.timeoutMs)}`);
          // Late commits: rows between the settled key and the last one read that were not produced yet.
          if (state.last !== null && recent > 0) {
            const where = state.settled
              ? `${keyExpr} > ${param(1)} AND ${keyExpr} <= ${param(1 + cols.length)}`
              : `${keyExpr} <= ${param(1)}`;
            const params = state.settled ? [...state.settled, ...state.last] : [...state.last];
            const counted = await client.query(`SELECT count(*)::int AS n FROM ${src} WHERE ${where}`, params);
            if (Number((counted.rows[0] as Row).n) !== recent) {
              const { rows } = await client.query(
                `SELECT *, ${keySelect} FROM ${src} WHERE ${where} ORDER BY ${order} LIMIT ${recent + ctx.maxRecords}`,
                params,
              );
              const known = (k: string) => ctx.sql.exec("SELECT 1 FROM pg_recent WHERE k = ?", k).toArray().length > 0;
              late = (rows as Row[]).filter((r) => !known(JSON.stringify(keyOf(r)))).slice(0, ctx.maxRecords);
            }
          }
          const room = ctx.maxRecords - late.length;
          if (room > 0) {
            const where = state.last ? `WHERE ${keyExpr} > ${param(1)}` : "";
            const { rows } = await client.query(
              `SELECT *, ${keySelect} FROM ${src} ${where} ORDER BY ${order} LIMIT ${room}`,
              state.last ?? [],
            );
            fresh = rows as Row[];
            if (fresh.length === room) {
              const after = keyOf(fresh[fresh.length - 1]);
              const counted = await client.query(
                `SELECT count(*)::int AS n FROM (SELECT 1 FROM ${src} WHERE ${keyExpr} > ${param(1)} LIMIT ${PG_LAG_CAP}) AS t`,
                after,
              );
              lag = Number((counted.rows[0] as Row).n);
            }
          } else lag = null;
          await client.query("COMMIT");
        } finally {
          client.release();
        }
      };
      try {
        // statement_timeout bounds each query; this bounds the whole poll (a connection that stalls).
        await deadline(work(), ctx.timeoutMs + CONNECT_MS, "PostgreSQL");
        if (held !== null) held.lastUsed = Date.now();
      } catch (err) {
        // Whatever failed, the connection is not trusted again (a transaction may be left open on it).
        await drop();
        if (err instanceof TimeoutError)
          throw new SourceError("timeout", `PostgreSQL did not answer within ${ctx.timeoutMs} ms.`);
        throw pgError(err, ctx.timeoutMs);
      }

      const produced = [...late.map((r) => ({ r, late: 1 })), ...fresh.map((r) => ({ r, late: 0 }))];
      const keys = produced.map((p) => JSON.stringify(keyOf(p.r)));
      const next: PgCursor = {
        ...state,
        last: fresh.length > 0 ? keyOf(fresh[fresh.length - 1]) : state.last,
        ord: state.ord + produced.length,
      };
      const records = produced.map((p, i) => ({ record: recordOf(p.r), position: `p:${hash64(keys[i])}` }));
      return {
        records,
        malformed: [] as Array<{ position: string; code: EventErrorCode }>,
        cursor: next,
        more: late.length === ctx.maxRecords || (fresh.length > 0 && fresh.length === ctx.maxRecords - late.length),
        lag,
        commit: (sql, now) => {
          produced.forEach((p, i) => {
            sql.exec(
              "INSERT INTO pg_recent (ord, k, at, late) VALUES (?, ?, ?, ?)",
              state.ord + i,
              keys[i],
              now,
              p.late,
            );
          });
          settle(sql, next, now - config.commit_grace_ms);
        },
      };
    },

    cursorView(cursor: unknown, sql: SqlStorage) {
      const c = cursor as PgCursor | null;
      if (c === null) return null;
      const remembered = sql.exec<{ n: number }>("SELECT count(*) AS n FROM pg_recent").one().n;
      return { last: c.last, settled: c.settled, remembered, settled_early: c.settled_early };
    },
  };
}

/**
 * Moves the settled key past the rows read before `cutoff` and forgets them. It settles to the newest
 * row of the old prefix (in reading order) that was not a late commit: every row read before it has a
 * lower key, and every row after it a higher one, except late commits, so it waits while a late commit is
 * younger than the cutoff. Past PG_RECENT_MAX rows, the oldest settle whatever their age.
 */
function settle(sql: SqlStorage, cursor: PgCursor, cutoff: number): void {
  const total = sql.exec<{ n: number }>("SELECT count(*) AS n FROM pg_recent").one().n;
  let limitOrd: number | null = null;
  const over = total - PG_RECENT_MAX;
  if (over > 0) {
    limitOrd = sql.exec<{ ord: number }>("SELECT ord FROM pg_recent ORDER BY ord LIMIT 1 OFFSET ?", over).one().ord;
  } else {
    const youngLate = sql
      .exec<{ n: number }>("SELECT count(*) AS n FROM pg_recent WHERE late = 1 AND at > ?", cutoff)
      .one().n;
    if (youngLate > 0) return;
    limitOrd = sql.exec<{ o: number | null }>("SELECT min(ord) AS o FROM pg_recent WHERE at > ?", cutoff).one().o;
  }
  const row = sql
    .exec<{ ord: number; k: string }>(
      limitOrd === null
        ? "SELECT ord, k FROM pg_recent WHERE late = 0 ORDER BY ord DESC LIMIT 1"
        : "SELECT ord, k FROM pg_recent WHERE late = 0 AND ord < ? ORDER BY ord DESC LIMIT 1",
      ...(limitOrd === null ? [] : [limitOrd]),
    )
    .toArray()[0];
  if (row === undefined) return;
  cursor.settled = JSON.parse(row.k) as string[];
  if (limitOrd === null) sql.exec("DELETE FROM pg_recent");
  else sql.exec("DELETE FROM pg_recent WHERE ord < ?", limitOrd);
  if (over > 0) cursor.settled_early += over;
}
