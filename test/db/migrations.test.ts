import { readdirSync } from "node:fs";
import { join } from "node:path";
import { drizzle } from "drizzle-orm/node-postgres";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyRetention, ensurePartitions } from "../../db/maintenance";
import { migrateDatabase } from "../../tools/migrate";
import { ROOT } from "../../tools/paths";
import { recreateDatabase } from "../support/pg";

let url: string;
let client: pg.Client;

beforeAll(async () => {
  url = await recreateDatabase("edgepulse_test_migrations");
  client = new pg.Client({ connectionString: url });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
});

const partitions = async (parent: string) =>
  (
    await client.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1 ORDER BY 1`,
      [parent],
    )
  ).rows.map((r) => r.name);

describe("migrations", () => {
  it("apply to an empty database and are idempotent", async () => {
    await migrateDatabase(url);
    await migrateDatabase(url);
    const tables = (
      await client.query<{ relname: string; relkind: string }>(
        `SELECT relname, relkind FROM pg_class WHERE relname IN ('metrics_minute','metrics_hour','metrics_day',
          'metrics_dim_minute','metrics_dim_hour','metrics_dim_day','rollup_state') ORDER BY 1`,
      )
    ).rows;
    expect(tables).toEqual([
      { relname: "metrics_day", relkind: "p" },
      { relname: "metrics_dim_day", relkind: "p" },
      { relname: "metrics_dim_hour", relkind: "p" },
      { relname: "metrics_dim_minute", relkind: "p" },
      { relname: "metrics_hour", relkind: "p" },
      { relname: "metrics_minute", relkind: "p" },
      { relname: "rollup_state", relkind: "r" },
    ]);
    const applied = await client.query("SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations");
    const files = readdirSync(join(ROOT, "migrations")).filter((f) => f.endsWith(".sql"));
    expect(applied.rows[0].n).toBe(files.length);
    // Today's and the next days' minute partitions exist, so flushes never hit a missing partition.
    const today = new Date().toISOString().slice(0, 10).replaceAll("-", "");
    expect(await partitions("metrics_minute")).toContain(`metrics_minute_p${today}`);
    expect((await partitions("metrics_minute")).length).toBeGreaterThanOrEqual(8);
    expect(await partitions("metrics_dim_minute")).toContain(`metrics_dim_minute_p${today}`);
  });

  it("index history reads by (tenant, stream[, dim], time) and rollup scans by update time", async () => {
    const idx = (
      await client.query<{ indexdef: string }>(`SELECT indexdef FROM pg_indexes WHERE tablename = 'metrics_minute'`)
    ).rows.map((r) => r.indexdef);
    expect(idx.some((d) => d.includes("(tenant_id, stream, bucket)"))).toBe(true);
    expect(idx.some((d) => d.includes("(updated_at)"))).toBe(true);
    const dimIdx = (
      await client.query<{ indexdef: string }>(`SELECT indexdef FROM pg_indexes WHERE tablename = 'metrics_dim_minute'`)
    ).rows.map((r) => r.indexdef);
    // One key serves upserts and reads: time right after the dimension, so a range read can only scan the range.
    expect(dimIdx.filter((d) => d.includes("(tenant_id, stream, dim"))).toEqual([
      expect.stringMatching(
        /^CREATE UNIQUE INDEX metrics_dim_minute_pk ON .*\(tenant_id, stream, dim, bucket, value\)$/,
      ),
    ]);
    expect(dimIdx.some((d) => d.includes("(updated_at)"))).toBe(true);
  });

  it("create partitions ahead and drop whole partitions past retention", async () => {
    const db = drizzle(client);
    const old = new Date(Date.now() - 40 * 86_400_000);
    await ensurePartitions(db, old);
    const oldName = `metrics_minute_p${new Date(old.getTime() - 86_400_000).toISOString().slice(0, 10).replaceAll("-", "")}`;
    expect(await partitions("metrics_minute")).toContain(oldName);
    await client.query(
      `INSERT INTO metrics_minute (tenant_id, stream, bucket, count, value_count, sum, sketch, hll)
       VALUES ('t', 's', $1, 1, 0, 0, '\\x', '\\x')`,
      [old],
    );
    const dropped = await applyRetention(db, new Date(), { minuteDays: 7, hourDays: 90, dayDays: 730 });
    expect(dropped).toBeGreaterThan(0);
    const left = await partitions("metrics_minute");
    expect(left).not.toContain(oldName);
    const today = new Date().toISOString().slice(0, 10).replaceAll("-", "");
    expect(left).toContain(`metrics_minute_p${today}`);
    const rows = await client.query("SELECT count(*)::int AS n FROM metrics_minute WHERE tenant_id = 't'");
    expect(rows.rows[0].n).toBe(0);
  });
});
