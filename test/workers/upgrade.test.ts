/**
 * Upgrades from the first release: an actor's version-1 tables and the single registry are carried
 * forward on wake-up. (Its own file: these tests reset objects and rewrite their storage by hand.)
 */
import { abortAllDurableObjects, runDurableObjectAlarm, runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { type Bins, freeze, keyOf } from "../../core/ddsketch";
import { PeriodHll } from "../../core/hll";
import { hashKey, keyPrefix } from "../../core/keys";
import { testEnv as env } from "./env";
import { ADMIN_TOKEN, BASE, createTenant, get, sendJson, stream } from "./helpers";

const actor = (tenant: string, name: string) => env.METRIC_ACTOR.getByName(`${tenant}/${name}`);

describe("storage from the first release", () => {
  /** The earlier fixed-width sketch encoding. */
  function legacySketch(values: number[]): Uint8Array {
    const bins: Bins = new Map();
    for (const v of values) bins.set(keyOf(v), (bins.get(keyOf(v)) ?? 0) + 1);
    const s = freeze(bins);
    const n = s.keys.length;
    const pad = (n * 4) % 8 === 0 ? 0 : 4;
    const buf = new ArrayBuffer(8 + n * 4 + pad + n * 8);
    new DataView(buf).setUint32(0, n, true);
    new Int32Array(buf, 8, n).set(s.keys);
    new Float64Array(buf, 8 + n * 4 + pad, n).set(s.counts);
    return new Uint8Array(buf);
  }

  it("imports tenants and keys from the single registry of the first release", async () => {
    const legacyKey = "ep_admin_legacyLegacyLegacyLegacyLegacyLegacyLeg";
    const hash = await hashKey(legacyKey);
    const now = Date.now();
    await runInDurableObject(env.TENANT_REGISTRY.getByName("global"), (_i, state) => {
      const sql = state.storage.sql;
      sql.exec(
        "CREATE TABLE IF NOT EXISTS tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL)",
      );
      sql.exec(
        "CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, scope TEXT NOT NULL, name TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER)",
      );
      sql.exec(
        "CREATE TABLE IF NOT EXISTS streams (tenant_id TEXT NOT NULL, name TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (tenant_id, name)) WITHOUT ROWID",
      );
      sql.exec(
        "CREATE TABLE IF NOT EXISTS tenant_limits (tenant_id TEXT PRIMARY KEY, ingest_per_sec INTEGER, read_per_sec INTEGER)",
      );
      sql.exec("CREATE TABLE IF NOT EXISTS webhook_secrets (tenant_id TEXT PRIMARY KEY, secret TEXT NOT NULL)");
      sql.exec("INSERT OR REPLACE INTO tenants VALUES ('t_legacy', 'legacy shop', ?)", now);
      sql.exec(
        "INSERT OR REPLACE INTO keys VALUES ('key_legacy', 't_legacy', ?, ?, 'admin', 'default admin', ?, NULL)",
        hash,
        keyPrefix(legacyKey),
        now,
      );
      sql.exec("INSERT OR REPLACE INTO streams VALUES ('t_legacy', 'orders', ?)", now);
      sql.exec("INSERT OR REPLACE INTO tenant_limits VALUES ('t_legacy', 123, NULL)");
      sql.exec("INSERT OR REPLACE INTO webhook_secrets VALUES ('t_legacy', 'whsec_legacy')");
    });
    await runInDurableObject(env.KEY_DIRECTORY.getByName("global"), (_i, state) => {
      state.storage.sql.exec("DELETE FROM meta WHERE k = 'legacy_imported'");
    });
    await abortAllDurableObjects();
    const tenant = (await (await get("/v1/tenant", legacyKey)).json()) as {
      tenant_id: string;
      limits: { ingest_per_sec: number };
      usage: { streams: number };
    };
    expect(tenant).toMatchObject({ tenant_id: "t_legacy", limits: { ingest_per_sec: 123 }, usage: { streams: 1 } });
    expect(((await (await get("/v1/alerts/secret", legacyKey)).json()) as { secret: string }).secret).toBe(
      "whsec_legacy",
    );
    const listed = (await (await get("/v1/keys", legacyKey)).json()) as { keys: Array<{ id: string }> };
    expect(listed.keys.map((k) => k.id)).toEqual(["key_legacy"]);
    const tenants = (await (
      await SELF.fetch(`${BASE}/v1/admin/tenants`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).json()) as { tenants: Array<{ id: string }> };
    expect(tenants.tenants.map((x) => x.id)).toContain("t_legacy");
  });
  it("converts a version-1 actor on wake-up: same figures, owed history still flushed", async () => {
    const t = await createTenant();
    const stub = actor(t.tenantId, "old");
    const now = Date.now();
    // Both legacy seconds in one ended minute: the start of the previous minute (60–120 s ago).
    const minute = Math.floor(now / 60_000) - 1;
    const sec = minute * 60;
    const users = new PeriodHll();
    for (const u of ["a", "b"]) users.addUser(u);
    await runInDurableObject(stub, (_i, state) => {
      const sql = state.storage.sql;
      for (const table of [
        "meta",
        "seconds",
        "minutes",
        "hll",
        "minute_regs",
        "dedup",
        "dim_values",
        "alert_rules",
        "alert_events",
        "outbox",
      ]) {
        sql.exec(`DROP TABLE IF EXISTS ${table}`);
      }
      sql.exec("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
      sql.exec(
        "CREATE TABLE buckets (sec INTEGER PRIMARY KEY, count INTEGER NOT NULL, value_count INTEGER NOT NULL, sum REAL NOT NULL, min REAL, max REAL, sketch BLOB NOT NULL)",
      );
      sql.exec("CREATE TABLE hll (reg INTEGER PRIMARY KEY, pairs BLOB NOT NULL)");
      sql.exec("CREATE TABLE dedup (id TEXT PRIMARY KEY, seen INTEGER NOT NULL) WITHOUT ROWID");
      sql.exec("CREATE TABLE minute_hll (minute INTEGER PRIMARY KEY, regs BLOB NOT NULL)");
      sql.exec(
        "CREATE TABLE outbox (minute INTEGER PRIMARY KEY, version INTEGER NOT NULL, frozen INTEGER NOT NULL DEFAULT 0, count INTEGER, value_count INTEGER, sum REAL, min REAL, max REAL, sketch BLOB, hll BLOB)",
      );
      sql.exec(
        "CREATE TABLE dim_values (key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (key, value)) WITHOUT ROWID",
      );
      sql.exec("CREATE TABLE alert_rules (id TEXT PRIMARY KEY, rule TEXT NOT NULL, state TEXT NOT NULL)");
      sql.exec(
        "CREATE TABLE alert_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, event TEXT NOT NULL, pg_flushed INTEGER NOT NULL DEFAULT 0)",
      );
      sql.exec(
        "CREATE TABLE deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, target TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, last_error TEXT, delivered_at INTEGER)",
      );
      const meta = {
        tenant: t.tenantId,
        stream: "old",
        counters: { accepted: 3, duplicates: 0, late: 0, future: 0, rejected: {} },
        firstEventAt: sec * 1000,
        lastEventAt: (sec + 1) * 1000,
      };
      sql.exec("INSERT INTO meta (k, v) VALUES ('meta', ?)", JSON.stringify(meta));
      sql.exec("INSERT INTO buckets VALUES (?, 2, 2, 30, 10, 20, ?)", sec, legacySketch([10, 20]));
      sql.exec("INSERT INTO buckets VALUES (?, 1, 1, 5, 5, 5, ?)", sec + 1, legacySketch([5]));
      for (const u of ["a", "b"]) {
        const p = new PeriodHll();
        p.addUser(u);
        const regs = p.registers();
        const reg = regs.findIndex((r) => r > 0);
        sql.exec(
          "INSERT OR REPLACE INTO hll (reg, pairs) VALUES (?, ?)",
          reg,
          new Uint8Array(new Int32Array([sec, regs[reg]]).buffer),
        );
      }
      sql.exec("INSERT INTO dedup (id, seen) VALUES ('old-id', ?)", now - 90_000);
      sql.exec("INSERT INTO minute_hll (minute, regs) VALUES (?, ?)", minute, users.encode());
      sql.exec("INSERT INTO outbox (minute, version) VALUES (?, 1)", minute);
    });
    await abortAllDurableObjects();
    const s = await stream(t.read, "old");
    expect(s.windows["5m"]).toMatchObject({ count: 3, sum: 35, min: 5, max: 20, distinct_users: 2 });
    expect(s.counters.accepted).toBe(3);
    // The old id is still remembered, and the v1 tables are gone.
    expect(await (await sendJson(t.ingest, [{ id: "old-id", name: "old" }])).json()).toMatchObject({ duplicates: 1 });
    const tables = await runInDurableObject(actor(t.tenantId, "old"), (_i, state) =>
      state.storage.sql
        .exec<{ name: string }>(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('buckets', 'minute_hll', 'deliveries')",
        )
        .toArray(),
    );
    expect(tables).toEqual([]);
    // The history the old actor owed is written, with its distinct users.
    await vi.waitFor(
      async () => {
        await runDurableObjectAlarm(actor(t.tenantId, "old"));
        expect((await actor(t.tenantId, "old").flushStatus()).pending_minutes).toBe(0);
      },
      { timeout: 15_000 },
    );
    const history = (await (
      await get(`/v1/streams/old/history?step=1m&from=${minute * 60_000}&to=${(minute + 1) * 60_000}`, t.read)
    ).json()) as { points: Array<{ count: number; distinct_users: number }> };
    expect(history.points).toEqual([expect.objectContaining({ count: 3, distinct_users: 2 })]);
  });
});
