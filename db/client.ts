/**
 * The database client used inside the Worker and its actors: drizzle over
 * `@neondatabase/serverless` (PostgreSQL wire protocol over a WebSocket).
 * Against Neon it connects directly; against any other PostgreSQL set
 * PG_BRIDGE to a WebSocket-to-TCP bridge (`tools/pg-bridge.ts` locally).
 * Open one per unit of work and close it: Workers cannot keep sockets
 * across requests.
 */
import { neonConfig, Pool } from "@neondatabase/serverless";
import { drizzle } from "drizzle-orm/neon-serverless";
import type { Db } from "./maintenance";

export interface DbEnv {
  DATABASE_URL?: string;
  /** host:port of a WebSocket-to-TCP bridge, for a PostgreSQL that is not Neon (local development, tests). */
  PG_BRIDGE?: string;
}

export function historyEnabled(env: DbEnv): boolean {
  return typeof env.DATABASE_URL === "string" && env.DATABASE_URL !== "";
}

export async function withDb<T>(env: DbEnv, work: (db: Db) => Promise<T>): Promise<T> {
  if (!historyEnabled(env)) throw new Error("DATABASE_URL is not set");
  if (env.PG_BRIDGE) {
    const bridge = env.PG_BRIDGE;
    neonConfig.wsProxy = (host, port) => `${bridge}/v2?address=${host}:${port}`;
    neonConfig.useSecureWebSocket = false;
    neonConfig.pipelineTLS = false;
    neonConfig.pipelineConnect = false;
  }
  const pool = new Pool({ connectionString: env.DATABASE_URL, max: 1, connectionTimeoutMillis: 5000 });
  // A pool error (e.g. the server going away) must not become an unhandled rejection.
  pool.on("error", () => {});
  try {
    return await work(drizzle({ client: pool }) as unknown as Db);
  } finally {
    await pool.end().catch(() => {});
  }
}
