/**
 * `npm run db:migrate`: applies migrations/ to DATABASE_URL (idempotent:
 * drizzle records what it applied), then creates the time partitions the
 * next days need. Never run at request time.
 */
import { drizzle } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import { ensurePartitions } from "../db/maintenance";
import { ROOT } from "./paths";

export async function migrateDatabase(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const db = drizzle(client);
    await migrate(db, { migrationsFolder: `${ROOT}/migrations` });
    await ensurePartitions(db, new Date());
  } finally {
    await client.end();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const url = process.env.DATABASE_URL;
  if (!url) {
    process.stderr.write("Set DATABASE_URL (postgres://user@host:port/db) to migrate.\n");
    process.exit(2);
  }
  migrateDatabase(url).then(
    () => process.stdout.write("migrations applied\n"),
    (err) => {
      process.stderr.write(`migration failed: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
