/**
 * KeyDirectory: the one global object (addressed by the name "global"). It
 * maps an API key's hash to its tenant and lists tenants for the operator;
 * everything else about a tenant (its keys' scopes and revocation, limits,
 * streams, rules, the webhook secret) lives in that tenant's own
 * TenantRegistry. It is asked only on a key-cache miss.
 *
 * It also maps OpenID Connect (issuer, audience) pairs to the tenant that
 * registered them: a token is routed to the tenant its `iss` and `aud` name,
 * and a pair belongs to one tenant only, so one tenant's tokens can never
 * reach another.
 *
 * Bounds: one row per key and per tenant ever created (operator actions);
 * at most MAX_AUDIENCES issuer rows per tenant (one issuer each).
 */
import { DurableObject } from "cloudflare:workers";
import type { Tenant } from "../core/protocol";
import { isoTime } from "../core/time";
import type { LegacyExport } from "./tenant-registry";

const SCHEMA = [
  "CREATE TABLE IF NOT EXISTS tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL)",
  "CREATE TABLE IF NOT EXISTS key_hashes (hash TEXT PRIMARY KEY, tenant_id TEXT NOT NULL) WITHOUT ROWID",
  "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
  `CREATE TABLE IF NOT EXISTS issuers (issuer TEXT NOT NULL, audience TEXT NOT NULL, tenant_id TEXT NOT NULL,
     PRIMARY KEY (issuer, audience)) WITHOUT ROWID`,
  "CREATE INDEX IF NOT EXISTS issuers_by_tenant ON issuers (tenant_id)",
];

export class KeyDirectory extends DurableObject<Env> {
  readonly #sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => {
      for (const stmt of SCHEMA) this.#sql.exec(stmt);
      await this.#importLegacy();
    });
  }

  /**
   * One-time import from the single registry of earlier releases (the TenantRegistry named "global",
   * which held every tenant): each tenant's registry takes its part, this directory takes the tenants
   * and key hashes. Runs before the directory answers anything.
   */
  async #importLegacy(): Promise<void> {
    if (this.#sql.exec("SELECT 1 FROM meta WHERE k = 'legacy_imported'").toArray().length > 0) return;
    const legacy = (await this.env.TENANT_REGISTRY.getByName("global").exportLegacy()) as LegacyExport | null;
    if (legacy !== null) {
      for (const t of legacy.tenants) {
        await this.env.TENANT_REGISTRY.getByName(t.id).importLegacy(legacy, t.id);
      }
      this.ctx.storage.transactionSync(() => {
        for (const t of legacy.tenants) {
          this.#sql.exec(
            "INSERT OR IGNORE INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
            t.id,
            t.name,
            t.created_at,
          );
        }
        for (const k of legacy.keys) {
          this.#sql.exec("INSERT OR IGNORE INTO key_hashes (hash, tenant_id) VALUES (?, ?)", k.hash, k.tenant_id);
        }
      });
    }
    this.#sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('legacy_imported', '1')");
  }

  addTenant(id: string, name: string, createdAt: number): Tenant {
    this.#sql.exec("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)", id, name, createdAt);
    return { id, name, created_at: isoTime(createdAt) };
  }

  hasTenant(id: string): boolean {
    return this.#sql.exec("SELECT 1 FROM tenants WHERE id = ?", id).toArray().length > 0;
  }

  listTenants(): Tenant[] {
    return this.#sql
      .exec<{ id: string; name: string; created_at: number }>(
        "SELECT id, name, created_at FROM tenants ORDER BY created_at, id",
      )
      .toArray()
      .map((r) => ({ id: r.id, name: r.name, created_at: isoTime(r.created_at) }));
  }

  /** Records which tenant a key hash belongs to (before the tenant's registry stores the key). */
  addKey(hash: string, tenantId: string): void {
    this.#sql.exec("INSERT OR REPLACE INTO key_hashes (hash, tenant_id) VALUES (?, ?)", hash, tenantId);
  }

  /**
   * Gives the tenant the (issuer, audience) pairs, replacing the ones it held; refused (nothing changed)
   * when another tenant holds one of them. One transaction: two tenants racing for a pair cannot both win.
   */
  claimIssuer(tenantId: string, issuer: string, audiences: string[]): { ok: true } | { ok: false; audience: string } {
    for (const audience of audiences) {
      const holder = this.#sql
        .exec<{ tenant_id: string }>(
          "SELECT tenant_id FROM issuers WHERE issuer = ? AND audience = ?",
          issuer,
          audience,
        )
        .toArray()[0]?.tenant_id;
      if (holder !== undefined && holder !== tenantId) return { ok: false, audience };
    }
    this.ctx.storage.transactionSync(() => {
      this.#sql.exec("DELETE FROM issuers WHERE tenant_id = ?", tenantId);
      for (const audience of audiences)
        this.#sql.exec(
          "INSERT INTO issuers (issuer, audience, tenant_id) VALUES (?, ?, ?)",
          issuer,
          audience,
          tenantId,
        );
    });
    return { ok: true };
  }

  /** Drops the tenant's issuer. */
  releaseIssuer(tenantId: string): void {
    this.#sql.exec("DELETE FROM issuers WHERE tenant_id = ?", tenantId);
  }

  /**
   * The tenants that registered `issuer` with one of `audiences` (a token's iss and aud): normally one, or
   * none; and whether any tenant registered the issuer at all (to say "wrong audience" rather than "unknown issuer").
   */
  tenantsOfIssuer(issuer: string, audiences: string[]): { tenants: string[]; issuerKnown: boolean } {
    const found = new Set<string>();
    for (const audience of audiences) {
      const t = this.#sql
        .exec<{ tenant_id: string }>(
          "SELECT tenant_id FROM issuers WHERE issuer = ? AND audience = ?",
          issuer,
          audience,
        )
        .toArray()[0]?.tenant_id;
      if (t !== undefined) found.add(t);
    }
    const issuerKnown =
      found.size > 0 || this.#sql.exec("SELECT 1 FROM issuers WHERE issuer = ? LIMIT 1", issuer).toArray().length > 0;
    return { tenants: [...found], issuerKnown };
  }

  /** The tenant a key hash belongs to, or null. */
  tenantOf(hash: string): string | null {
    return (
      this.#sql.exec<{ tenant_id: string }>("SELECT tenant_id FROM key_hashes WHERE hash = ?", hash).toArray()[0]
        ?.tenant_id ?? null
    );
  }
}
