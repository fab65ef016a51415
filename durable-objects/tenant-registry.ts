/**
 * TenantRegistry: the control plane. Tenants, their API keys (hashes only)
 * and their stream directory live in this actor's SQLite storage, so the
 * platform needs no external database to authenticate. Addressed by the
 * name "global"; the Worker caches key lookups so this actor is not on the
 * hot path of every request.
 */
import { DurableObject } from "cloudflare:workers";
import type { AlertRule } from "../core/alerts";
import { hashKey, keyPrefix, newId, newKey, randomToken, type Scope } from "../core/keys";
import type { KeyGrant, KeyInfo, Tenant, TenantLimits } from "../core/protocol";

const SCHEMA = [
  "CREATE TABLE IF NOT EXISTS tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL)",
  `CREATE TABLE IF NOT EXISTS keys (
     id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), hash TEXT NOT NULL UNIQUE,
     prefix TEXT NOT NULL, scope TEXT NOT NULL, name TEXT NOT NULL,
     created_at INTEGER NOT NULL, revoked_at INTEGER)`,
  "CREATE INDEX IF NOT EXISTS keys_tenant ON keys (tenant_id)",
  `CREATE TABLE IF NOT EXISTS streams (
     tenant_id TEXT NOT NULL, name TEXT NOT NULL, created_at INTEGER NOT NULL,
     PRIMARY KEY (tenant_id, name)) WITHOUT ROWID`,
  `CREATE TABLE IF NOT EXISTS tenant_limits (
     tenant_id TEXT PRIMARY KEY, ingest_per_sec INTEGER, read_per_sec INTEGER)`,
  "CREATE TABLE IF NOT EXISTS tenant_counters (tenant_id TEXT PRIMARY KEY, streams_refused INTEGER NOT NULL DEFAULT 0)",
  "CREATE TABLE IF NOT EXISTS webhook_secrets (tenant_id TEXT PRIMARY KEY, secret TEXT NOT NULL)",
  `CREATE TABLE IF NOT EXISTS alert_rules (
     tenant_id TEXT NOT NULL, id TEXT NOT NULL, rule TEXT NOT NULL,
     PRIMARY KEY (tenant_id, id)) WITHOUT ROWID`,
];

interface KeyRow {
  id: string;
  tenant_id: string;
  prefix: string;
  scope: Scope;
  name: string;
  created_at: number;
  revoked_at: number | null;
  [k: string]: SqlStorageValue;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const keyInfo = (r: KeyRow): KeyInfo => ({
  id: r.id,
  tenant_id: r.tenant_id,
  scope: r.scope,
  name: r.name,
  prefix: r.prefix,
  created_at: iso(r.created_at) as string,
  revoked_at: iso(r.revoked_at),
});

export class TenantRegistry extends DurableObject<Env> {
  readonly #sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => {
      for (const stmt of SCHEMA) this.#sql.exec(stmt);
    });
  }

  /** Creates a tenant with one key of each scope; the keys are returned once, never again. */
  async createTenant(name: string): Promise<{ tenant: Tenant; keys: Array<KeyInfo & { key: string }> }> {
    const id = newId("t");
    const now = Date.now();
    this.#sql.exec("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)", id, name, now);
    const keys = [];
    for (const scope of ["admin", "ingest", "read"] as const) {
      keys.push((await this.createKey(id, scope, `default ${scope}`)) as KeyInfo & { key: string });
    }
    return { tenant: { id, name, created_at: iso(now) as string }, keys };
  }

  getTenant(id: string): Tenant | null {
    const row = this.#sql
      .exec<{ id: string; name: string; created_at: number }>(
        "SELECT id, name, created_at FROM tenants WHERE id = ?",
        id,
      )
      .toArray()[0];
    return row ? { id: row.id, name: row.name, created_at: iso(row.created_at) as string } : null;
  }

  listTenants(): Tenant[] {
    return this.#sql
      .exec<{ id: string; name: string; created_at: number }>(
        "SELECT id, name, created_at FROM tenants ORDER BY created_at",
      )
      .toArray()
      .map((r) => ({ id: r.id, name: r.name, created_at: iso(r.created_at) as string }));
  }

  /** Creates a key; null when the tenant does not exist. */
  async createKey(tenantId: string, scope: Scope, name: string): Promise<(KeyInfo & { key: string }) | null> {
    if (this.getTenant(tenantId) === null) return null;
    const key = newKey(scope);
    const hash = await hashKey(key);
    const id = newId("key");
    const now = Date.now();
    this.#sql.exec(
      "INSERT INTO keys (id, tenant_id, hash, prefix, scope, name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
      id,
      tenantId,
      hash,
      keyPrefix(key),
      scope,
      name,
      now,
    );
    return {
      id,
      tenant_id: tenantId,
      scope,
      name,
      prefix: keyPrefix(key),
      created_at: iso(now) as string,
      revoked_at: null,
      key,
    };
  }

  listKeys(tenantId: string): KeyInfo[] {
    return this.#sql
      .exec<KeyRow>(
        "SELECT id, tenant_id, prefix, scope, name, created_at, revoked_at FROM keys WHERE tenant_id = ? ORDER BY created_at",
        tenantId,
      )
      .toArray()
      .map(keyInfo);
  }

  /** Revokes a key of this tenant; null when the tenant has no such key. Idempotent. */
  revokeKey(tenantId: string, keyId: string): KeyInfo | null {
    this.#sql.exec(
      "UPDATE keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? AND tenant_id = ?",
      Date.now(),
      keyId,
      tenantId,
    );
    const row = this.#sql
      .exec<KeyRow>(
        "SELECT id, tenant_id, prefix, scope, name, created_at, revoked_at FROM keys WHERE id = ? AND tenant_id = ?",
        keyId,
        tenantId,
      )
      .toArray()[0];
    return row ? keyInfo(row) : null;
  }

  /** Looks a key up by its hash. */
  verifyKey(hash: string): KeyGrant | null {
    const row = this.#sql
      .exec<{ id: string; tenant_id: string; scope: Scope; revoked_at: number | null }>(
        "SELECT id, tenant_id, scope, revoked_at FROM keys WHERE hash = ?",
        hash,
      )
      .toArray()[0];
    return row
      ? {
          keyId: row.id,
          tenantId: row.tenant_id,
          scope: row.scope,
          revoked: row.revoked_at !== null,
          limits: this.getLimits(row.tenant_id),
        }
      : null;
  }

  getLimits(tenantId: string): TenantLimits | null {
    const r = this.#sql
      .exec<{ ingest_per_sec: number | null; read_per_sec: number | null }>(
        "SELECT ingest_per_sec, read_per_sec FROM tenant_limits WHERE tenant_id = ?",
        tenantId,
      )
      .toArray()[0];
    return r ? { ingest_per_sec: r.ingest_per_sec, read_per_sec: r.read_per_sec } : null;
  }

  /** Sets a tenant's rate limits (null = the configured default); null when the tenant does not exist. */
  setLimits(tenantId: string, limits: TenantLimits): TenantLimits | null {
    if (this.getTenant(tenantId) === null) return null;
    this.#sql.exec(
      "INSERT OR REPLACE INTO tenant_limits (tenant_id, ingest_per_sec, read_per_sec) VALUES (?, ?, ?)",
      tenantId,
      limits.ingest_per_sec,
      limits.read_per_sec,
    );
    return limits;
  }

  /** Hashes of all of a tenant's keys, for invalidating cached grants after a limits change. */
  keyHashes(tenantId: string): string[] {
    return this.#sql
      .exec<{ hash: string }>("SELECT hash FROM keys WHERE tenant_id = ?", tenantId)
      .toArray()
      .map((r) => r.hash);
  }

  /** Hashes of a tenant key, for invalidating caches after a revocation. */
  keyHash(tenantId: string, keyId: string): string | null {
    return (
      this.#sql
        .exec<{ hash: string }>("SELECT hash FROM keys WHERE id = ? AND tenant_id = ?", keyId, tenantId)
        .toArray()[0]?.hash ?? null
    );
  }

  /**
   * Admits stream names for a tenant: those it already has, and new ones while
   * it stays within `cap` distinct streams. Refused names are counted.
   */
  admitStreams(tenantId: string, names: string[], cap: number): { admitted: string[]; refused: string[] } {
    const admitted: string[] = [];
    const refused: string[] = [];
    let count = this.#sql
      .exec<{ n: number }>("SELECT count(*) AS n FROM streams WHERE tenant_id = ?", tenantId)
      .one().n;
    for (const name of names) {
      const known =
        this.#sql.exec("SELECT 1 FROM streams WHERE tenant_id = ? AND name = ?", tenantId, name).toArray().length > 0;
      if (known) admitted.push(name);
      else if (count < cap) {
        this.registerStream(tenantId, name);
        count++;
        admitted.push(name);
      } else refused.push(name);
    }
    if (refused.length > 0) {
      this.#sql.exec(
        "INSERT INTO tenant_counters (tenant_id, streams_refused) VALUES (?, ?) ON CONFLICT (tenant_id) DO UPDATE SET streams_refused = streams_refused + excluded.streams_refused",
        tenantId,
        refused.length,
      );
    }
    return { admitted, refused };
  }

  tenantUsage(tenantId: string): { streams: number; streams_refused: number } {
    return {
      streams: this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM streams WHERE tenant_id = ?", tenantId).one().n,
      streams_refused:
        this.#sql
          .exec<{ n: number }>("SELECT streams_refused AS n FROM tenant_counters WHERE tenant_id = ?", tenantId)
          .toArray()[0]?.n ?? 0,
    };
  }

  /** The tenant's webhook signing secret, created on first use. Stored as-is: HMAC needs the secret itself. */
  webhookSecret(tenantId: string): string {
    const row = this.#sql
      .exec<{ secret: string }>("SELECT secret FROM webhook_secrets WHERE tenant_id = ?", tenantId)
      .toArray()[0];
    if (row) return row.secret;
    const secret = `whsec_${randomToken(32)}`;
    this.#sql.exec("INSERT INTO webhook_secrets (tenant_id, secret) VALUES (?, ?)", tenantId, secret);
    return secret;
  }

  putRule(tenantId: string, rule: AlertRule): void {
    this.#sql.exec(
      "INSERT OR REPLACE INTO alert_rules (tenant_id, id, rule) VALUES (?, ?, ?)",
      tenantId,
      rule.id,
      JSON.stringify(rule),
    );
  }

  getRule(tenantId: string, id: string): AlertRule | null {
    const row = this.#sql
      .exec<{ rule: string }>("SELECT rule FROM alert_rules WHERE tenant_id = ? AND id = ?", tenantId, id)
      .toArray()[0];
    return row ? (JSON.parse(row.rule) as AlertRule) : null;
  }

  listRules(tenantId: string): AlertRule[] {
    return this.#sql
      .exec<{ rule: string }>("SELECT rule FROM alert_rules WHERE tenant_id = ? ORDER BY id", tenantId)
      .toArray()
      .map((r) => JSON.parse(r.rule) as AlertRule);
  }

  deleteRule(tenantId: string, id: string): boolean {
    return this.#sql.exec("DELETE FROM alert_rules WHERE tenant_id = ? AND id = ?", tenantId, id).rowsWritten > 0;
  }

  registerStream(tenantId: string, stream: string): void {
    this.#sql.exec(
      "INSERT OR IGNORE INTO streams (tenant_id, name, created_at) VALUES (?, ?, ?)",
      tenantId,
      stream,
      Date.now(),
    );
  }

  /** A page of the tenant's stream names, in name order, after `cursor`. */
  listStreams(tenantId: string, limit: number, cursor = ""): string[] {
    return this.#sql
      .exec<{ name: string }>(
        "SELECT name FROM streams WHERE tenant_id = ? AND name > ? ORDER BY name LIMIT ?",
        tenantId,
        cursor,
        limit,
      )
      .toArray()
      .map((r) => r.name);
  }
}
