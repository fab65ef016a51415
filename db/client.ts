/**
 * The database client used inside the Worker and its actors: drizzle over
 * `@neondatabase/serverless` (PostgreSQL wire protocol over a WebSocket).
 * Against Neon it connects directly; against any other PostgreSQL set
 * PG_BRIDGE to a WebSocket-to-TCP bridge (`tools/pg-bridge.ts` locally).
 * A Worker request opens one per unit of work and closes it (`withDb`); an
 * actor keeps one open across its alarms and closes it when idle (`openDb`).
 */
import { neonConfig, Pool } from "@neondatabase/serverless";
import { drizzle } from "drizzle-orm/neon-serverless";
import type { Db } from "./maintenance";

export type { Db };

export interface DbEnv {
  DATABASE_URL?: string;
  /** host:port of a WebSocket-to-TCP bridge, for a PostgreSQL that is not Neon (local development, tests). */
  PG_BRIDGE?: string;
}

export function historyEnabled(env: DbEnv): boolean {
  return typeof env.DATABASE_URL === "string" && env.DATABASE_URL !== "";
}

function configure(env: DbEnv): void {
  if (env.PG_BRIDGE) {
    const bridge = env.PG_BRIDGE;
    neonConfig.wsProxy = (host, port) => `${bridge}/v2?address=${host}:${port}`;
    neonConfig.useSecureWebSocket = false;
    neonConfig.pipelineTLS = false;
    neonConfig.pipelineConnect = false;
  }
}

/** A pool (one connection unless told) and its drizzle handle; the caller ends the pool. */
export function openDb(env: DbEnv, connections = 1): { pool: Pool; db: Db } {
  if (!historyEnabled(env)) throw new Error("DATABASE_URL is not set");
  configure(env);
  const pool = new Pool({
    connectionString: env.DATABASE_URL,
    max: connections,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 0,
  });
  // A pool error (e.g. the server going away) must not become an unhandled rejection.
  pool.on("error", () => {});
  return { pool, db: drizzle({ client: pool }) as unknown as Db };
}

export async function withDb<T>(env: DbEnv, work: (db: Db) => Promise<T>): Promise<T> {
  const { pool, db } = openDb(env);
  try {
    return await work(db);
  } finally {
    await pool.end().catch(() => {});
  }
}
