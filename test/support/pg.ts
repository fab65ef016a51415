/** A fresh PostgreSQL database per test run, on the machine's real PostgreSQL, migrated. */
import pg from "pg";
import { migrateDatabase } from "../../tools/migrate";

/** Base URL of the test PostgreSQL (no database part). */
export const PG_BASE = process.env.EDGEPULSE_TEST_PG ?? "postgres://postgres@127.0.0.1:5432";

export async function recreateDatabase(name: string): Promise<string> {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`bad database name ${name}`);
  const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  await admin.connect();
  try {
    // Identifiers cannot be parameters; the name is checked above.
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return `${PG_BASE}/${name}`;
}

export async function createTestDatabase(name: string): Promise<string> {
  const url = await recreateDatabase(name);
  await migrateDatabase(url);
  return url;
}
