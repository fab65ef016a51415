/**
 * TenantRegistry: one per tenant (addressed by the tenant id). The tenant's
 * control plane: its API keys (SHA-256 hashes only, scope, revocation), rate
 * limits, stream admission under the stream cap, the webhook signing secret,
 * and which stream each alert rule lives on (the rules themselves live in
 * their stream's actor). The global KeyDirectory only maps key hashes here,
 * so no single object sits on every tenant's path.
 *
 * Also the tenant's OpenID Connect identity provider (one, stored as a JSON
 * value; the global KeyDirectory maps its issuer and audiences here).
 *
 * Bounds: keys and rules are created by admins (a row each); streams are
 * capped by MAX_STREAMS_PER_TENANT; sources by MAX_SOURCES_PER_TENANT; sinks by MAX_SINKS_PER_TENANT;
 * one OIDC issuer per tenant.
 */
import { DurableObject } from "cloudflare:workers";
import { within } from "../core/async";
import { randomToken, type Scope } from "../core/keys";
import type { OidcConfig } from "../core/oidc";
import type { KeyGrant, KeyInfo, Tenant, TenantLimits } from "../core/protocol";
import type { SinkRoute } from "../core/sinks";
import { isoOrNull, isoTime } from "../core/time";
import { grantKey, redisFor } from "../workers/lib/redis";

const SCHEMA = [
  "CREATE TABLE IF NOT EXISTS info (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
  `CREATE TABLE IF NOT EXISTS api_keys (
     id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, scope TEXT NOT NULL,
     name TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER)`,
  "CREATE TABLE IF NOT EXISTS stream_names (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL) WITHOUT ROWID",
  "CREATE TABLE IF NOT EXISTS rule_index (id TEXT PRIMARY KEY, stream TEXT NOT NULL) WITHOUT ROWID",
  // The tenant's pull sources (each lives in its SourceActor): at most MAX_SOURCES_PER_TENANT.
  "CREATE TABLE IF NOT EXISTS source_index (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL) WITHOUT ROWID",
  // The tenant's sinks (each lives in its SinkActor) and the streams each takes: at most MAX_SINKS_PER_TENANT.
  "CREATE TABLE IF NOT EXISTS sink_index (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, streams TEXT) WITHOUT ROWID",
  // Cached grants to drop from Redis (after a revocation or a limits change), retried until Redis confirms.
  "CREATE TABLE IF NOT EXISTS invalidations (hash TEXT PRIMARY KEY, attempts INTEGER NOT NULL, due INTEGER NOT NULL) WITHOUT ROWID",
];

const INVALIDATE_TIMEOUT_MS = 2000;
const INVALIDATE_MAX_BACKOFF_MS = 60_000;

interface KeyRow {
  id: string;
  hash: string;
  prefix: string;
  scope: Scope;
  name: string;
  /** JSON array of stream-name prefixes, or null: every stream. */
  stream_prefixes: string | null;
  created_at: number;
  revoked_at: number | null;
  [k: string]: SqlStorageValue;
}

const prefixesOf = (v: string | null | undefined): string[] | null =>
  v === null || v === undefined ? null : (JSON.parse(v) as string[]);

/** What the single registry of earlier releases held, for the one-time import (see KeyDirectory). */
export interface LegacyExport {
  tenants: Array<{ id: string; name: string; created_at: number }>;
  keys: Array<KeyRow & { tenant_id: string }>;
  streams: Array<{ tenant_id: string; name: string; created_at: number }>;
  limits: Array<{ tenant_id: string; ingest_per_sec: number | null; read_per_sec: number | null }>;
  counters: Array<{ tenant_id: string; streams_refused: number }>;
  secrets: Array<{ tenant_id: string; secret: string }>;
  rules: Array<{ tenant_id: string; id: string; rule: string }>;
}

export class TenantRegistry extends DurableObject<Env> {
  readonly #sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => {
      for (const stmt of SCHEMA) this.#sql.exec(stmt);
      // Registries of earlier releases: keys had no stream prefixes (null: every stream).
      const columns = this.#sql.exec<{ name: string }>("PRAGMA table_info(api_keys)").toArray();
      if (!columns.some((c) => c.name === "stream_prefixes"))
        this.#sql.exec("ALTER TABLE api_keys ADD COLUMN stream_prefixes TEXT");
    });
  }

  #get(k: string): string | null {
    return this.#sql.exec<{ v: string }>("SELECT v FROM info WHERE k = ?", k).toArray()[0]?.v ?? null;
  }

  #set(k: string, v: string): void {
    this.#sql.exec("INSERT OR REPLACE INTO info (k, v) VALUES (?, ?)", k, v);
  }

  #tenantId(): string {
    return this.#get("id") ?? "";
  }

  /** Sets up a new tenant's registry. */
  init(id: string, name: string, createdAt: number): Tenant {
    this.#set("id", id);
    this.#set("name", name);
    this.#set("created_at", String(createdAt));
    return { id, name, created_at: isoTime(createdAt) };
  }

  info(): Tenant | null {
    const id = this.#get("id");
    if (id === null) return null;
    return { id, name: this.#get("name") ?? "", created_at: isoTime(Number(this.#get("created_at"))) };
  }

  #keyInfo(r: KeyRow): KeyInfo {
    return {
      id: r.id,
      tenant_id: this.#tenantId(),
      scope: r.scope,
      name: r.name,
      prefix: r.prefix,
      stream_prefixes: prefixesOf(r.stream_prefixes),
      created_at: isoTime(r.created_at),
      revoked_at: isoOrNull(r.revoked_at),
    };
  }

  /** Stores a key (hash and a short prefix only; the Worker shows the key once). Null when the tenant does not exist. */
  createKey(k: {
    id: string;
    hash: string;
    prefix: string;
    scope: Scope;
    name: string;
    createdAt: number;
    streamPrefixes: string[] | null;
  }): KeyInfo | null {
    if (this.#get("id") === null) return null;
    const prefixes = k.streamPrefixes === null ? null : JSON.stringify(k.streamPrefixes);
    this.#sql.exec(
      "INSERT INTO api_keys (id, hash, prefix, scope, name, stream_prefixes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
      k.id,
      k.hash,
      k.prefix,
      k.scope,
      k.name,
      prefixes,
      k.createdAt,
    );
    return this.#keyInfo({
      id: k.id,
      hash: k.hash,
      prefix: k.prefix,
      scope: k.scope,
      name: k.name,
      stream_prefixes: prefixes,
      created_at: k.createdAt,
      revoked_at: null,
    });
  }

  /** One key's record, or null. */
  keyInfo(keyId: string): KeyInfo | null {
    const row = this.#sql.exec<KeyRow>("SELECT * FROM api_keys WHERE id = ?", keyId).toArray()[0];
    return row ? this.#keyInfo(row) : null;
  }

  listKeys(): KeyInfo[] {
    return this.#sql
      .exec<KeyRow>("SELECT * FROM api_keys ORDER BY created_at, id")
      .toArray()
      .map((r) => this.#keyInfo(r));
  }

  /**
   * Revokes a key (idempotent); returns it and its hash, or null when there is no such key. The cached
   * grant in Redis is dropped by this registry's alarm, retried until Redis confirms.
   */
  async revokeKey(keyId: string): Promise<{ info: KeyInfo; hash: string } | null> {
    this.#sql.exec("UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", Date.now(), keyId);
    const row = this.#sql.exec<KeyRow>("SELECT * FROM api_keys WHERE id = ?", keyId).toArray()[0];
    if (!row) return null;
    await this.#invalidate([row.hash]);
    return { info: this.#keyInfo(row), hash: row.hash };
  }

  async #invalidate(hashes: string[]): Promise<void> {
    if (redisFor(this.env) === null || hashes.length === 0) return;
    const now = Date.now();
    for (const h of hashes) {
      this.#sql.exec("INSERT OR REPLACE INTO invalidations (hash, attempts, due) VALUES (?, 0, ?)", h, now);
    }
    await this.#arm();
  }

  async #arm(): Promise<void> {
    const due = this.#sql.exec<{ t: number | null }>("SELECT min(due) AS t FROM invalidations").one().t;
    if (due === null) return;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > due) await this.ctx.storage.setAlarm(due);
  }

  /** Drops the pending cached grants from Redis; what fails is retried with backoff. */
  override async alarm(): Promise<void> {
    const redis = redisFor(this.env);
    const now = Date.now();
    const rows = this.#sql
      .exec<{ hash: string; attempts: number }>("SELECT hash, attempts FROM invalidations WHERE due <= ?", now)
      .toArray();
    if (redis === null) {
      this.#sql.exec("DELETE FROM invalidations");
      return;
    }
    const ok =
      rows.length === 0 ||
      (await within(
        redis.del(...rows.map((r) => grantKey(r.hash))).then(() => true),
        INVALIDATE_TIMEOUT_MS,
        false,
      ));
    for (const r of rows) {
      if (ok) this.#sql.exec("DELETE FROM invalidations WHERE hash = ?", r.hash);
      else {
        const backoff = Math.min(1000 * 2 ** r.attempts, INVALIDATE_MAX_BACKOFF_MS);
        this.#sql.exec(
          "UPDATE invalidations SET attempts = attempts + 1, due = ? WHERE hash = ?",
          now + backoff,
          r.hash,
        );
      }
    }
    await this.#arm();
  }

  /** Cached grants still to be dropped from Redis (for status and tests). */
  pendingInvalidations(): number {
    return this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM invalidations").one().n;
  }

  /** What a key hash grants in this tenant, or null when it is not one of its keys. */
  verifyKey(hash: string): KeyGrant | null {
    const row = this.#sql
      .exec<{ id: string; scope: Scope; revoked_at: number | null; stream_prefixes: string | null }>(
        "SELECT id, scope, revoked_at, stream_prefixes FROM api_keys WHERE hash = ?",
        hash,
      )
      .toArray()[0];
    if (!row) return null;
    return {
      keyId: row.id,
      tenantId: this.#tenantId(),
      scope: row.scope,
      revoked: row.revoked_at !== null,
      streamPrefixes: prefixesOf(row.stream_prefixes),
      limits: this.getLimits(),
    };
  }

  /** Days the tenant keeps its raw archive (null: the deployment's ARCHIVE_RETENTION_DAYS). */
  archiveRetentionDays(): number | null {
    const v = this.#get("archive_retention_days");
    return v === null ? null : Number(v);
  }

  /** Sets (or with null, clears) the tenant's archive retention; null when the tenant does not exist. */
  setArchiveRetentionDays(days: number | null): boolean | null {
    if (this.#get("id") === null) return null;
    if (days === null) this.#sql.exec("DELETE FROM info WHERE k = 'archive_retention_days'");
    else this.#set("archive_retention_days", String(days));
    return true;
  }

  /** The tenant's identity provider, or null. */
  getOidc(): OidcConfig | null {
    const v = this.#get("oidc");
    return v === null ? null : (JSON.parse(v) as OidcConfig);
  }

  /**
   * What verifying a token of this tenant needs: its identity provider and its rate limits. Null when
   * the tenant does not exist or has no provider.
   */
  oidcContext(): { tenantId: string; config: OidcConfig; limits: TenantLimits | null } | null {
    const config = this.getOidc();
    const tenantId = this.#get("id");
    if (config === null || tenantId === null) return null;
    return { tenantId, config, limits: this.getLimits() };
  }

  /** Stores the tenant's identity provider (replacing any); null when the tenant does not exist. */
  setOidc(config: OidcConfig): OidcConfig | null {
    if (this.#get("id") === null) return null;
    this.#set("oidc", JSON.stringify(config));
    return config;
  }

  /** Forgets the identity provider; returns what was stored. */
  deleteOidc(): OidcConfig | null {
    const had = this.getOidc();
    this.#sql.exec("DELETE FROM info WHERE k = 'oidc'");
    return had;
  }

  /** Hashes of all the tenant's keys, for invalidating cached grants after a limits change. */
  keyHashes(): string[] {
    return this.#sql
      .exec<{ hash: string }>("SELECT hash FROM api_keys")
      .toArray()
      .map((r) => r.hash);
  }

  getLimits(): TenantLimits | null {
    const v = this.#get("limits");
    return v === null ? null : (JSON.parse(v) as TenantLimits);
  }

  /** Sets the tenant's rate limits (null = the configured default); null when the tenant does not exist. Cached grants carry the limits: they are dropped. */
  async setLimits(limits: TenantLimits): Promise<TenantLimits | null> {
    if (this.#get("id") === null) return null;
    this.#set("limits", JSON.stringify(limits));
    await this.#invalidate(this.keyHashes());
    return limits;
  }

  /** Admits stream names: those the tenant already has, and new ones while it stays within `cap`. Refused names are counted. */
  admitStreams(names: string[], cap: number): { admitted: string[]; refused: string[] } {
    const admitted: string[] = [];
    const refused: string[] = [];
    let count = this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM stream_names").one().n;
    const now = Date.now();
    for (const name of names) {
      if (this.#sql.exec("SELECT 1 FROM stream_names WHERE name = ?", name).toArray().length > 0) admitted.push(name);
      else if (count < cap) {
        this.#sql.exec("INSERT INTO stream_names (name, created_at) VALUES (?, ?)", name, now);
        count++;
        admitted.push(name);
      } else refused.push(name);
    }
    if (refused.length > 0)
      this.#set("streams_refused", String(Number(this.#get("streams_refused") ?? 0) + refused.length));
    return { admitted, refused };
  }

  usage(): { streams: number; streams_refused: number } {
    return {
      streams: this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM stream_names").one().n,
      streams_refused: Number(this.#get("streams_refused") ?? 0),
    };
  }

  /** The tenant's webhook signing secret, created on first use. Stored as-is: HMAC needs the secret itself. */
  webhookSecret(): string {
    const existing = this.#get("webhook_secret");
    if (existing) return existing;
    const secret = `whsec_${randomToken(32)}`;
    this.#set("webhook_secret", secret);
    return secret;
  }

  /** Records which stream a rule lives on. */
  putRuleIndex(id: string, stream: string): void {
    this.#sql.exec("INSERT OR REPLACE INTO rule_index (id, stream) VALUES (?, ?)", id, stream);
  }

  ruleStream(id: string): string | null {
    return (
      this.#sql.exec<{ stream: string }>("SELECT stream FROM rule_index WHERE id = ?", id).toArray()[0]?.stream ?? null
    );
  }

  listRuleIndex(): Array<{ id: string; stream: string }> {
    return this.#sql
      .exec<{ id: string; stream: string }>("SELECT id, stream FROM rule_index ORDER BY id")
      .toArray()
      .map((r) => ({ ...r }));
  }

  deleteRuleIndex(id: string): boolean {
    return this.#sql.exec("DELETE FROM rule_index WHERE id = ?", id).rowsWritten > 0;
  }

  /** Records a new source, unless the tenant has `cap` already (false) or does not exist (null). */
  addSource(id: string, createdAt: number, cap: number): boolean | null {
    if (this.#get("id") === null) return null;
    const n = this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM source_index").one().n;
    if (n >= cap) return false;
    this.#sql.exec("INSERT OR IGNORE INTO source_index (id, created_at) VALUES (?, ?)", id, createdAt);
    return true;
  }

  hasSource(id: string): boolean {
    return this.#sql.exec("SELECT 1 FROM source_index WHERE id = ?", id).toArray().length > 0;
  }

  /** The tenant's source ids, oldest first. */
  listSources(): string[] {
    return this.#sql
      .exec<{ id: string }>("SELECT id FROM source_index ORDER BY created_at, id")
      .toArray()
      .map((r) => r.id);
  }

  deleteSource(id: string): boolean {
    return this.#sql.exec("DELETE FROM source_index WHERE id = ?", id).rowsWritten > 0;
  }

  /** Records a new sink, unless the tenant has `cap` already (false) or does not exist (null). */
  addSink(id: string, createdAt: number, streams: string[] | null, cap: number): boolean | null {
    if (this.#get("id") === null) return null;
    const n = this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM sink_index").one().n;
    if (n >= cap) return false;
    this.#sql.exec(
      "INSERT OR IGNORE INTO sink_index (id, created_at, streams) VALUES (?, ?, ?)",
      id,
      createdAt,
      streams === null ? null : JSON.stringify(streams),
    );
    return true;
  }

  hasSink(id: string): boolean {
    return this.#sql.exec("SELECT 1 FROM sink_index WHERE id = ?", id).toArray().length > 0;
  }

  /** The tenant's sinks, oldest first, with the stream prefixes each takes (null: every stream). */
  listSinks(): SinkRoute[] {
    return this.#sql
      .exec<{ id: string; streams: string | null }>("SELECT id, streams FROM sink_index ORDER BY created_at, id")
      .toArray()
      .map((r) => ({ id: r.id, streams: r.streams === null ? null : (JSON.parse(r.streams) as string[]) }));
  }

  deleteSink(id: string): boolean {
    return this.#sql.exec("DELETE FROM sink_index WHERE id = ?", id).rowsWritten > 0;
  }

  /** The single registry of earlier releases: everything it held, or null if this object never was one. */
  exportLegacy(): LegacyExport | null {
    const has = (t: string) =>
      this.#sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", t).toArray().length > 0;
    if (!has("tenants") || !has("keys")) return null;
    const all = <T>(q: string) => this.#sql.exec(q).toArray() as unknown as T[];
    return {
      tenants: all("SELECT id, name, created_at FROM tenants"),
      keys: all("SELECT id, tenant_id, hash, prefix, scope, name, created_at, revoked_at FROM keys"),
      streams: has("streams") ? all("SELECT tenant_id, name, created_at FROM streams") : [],
      limits: has("tenant_limits") ? all("SELECT tenant_id, ingest_per_sec, read_per_sec FROM tenant_limits") : [],
      counters: has("tenant_counters") ? all("SELECT tenant_id, streams_refused FROM tenant_counters") : [],
      secrets: has("webhook_secrets") ? all("SELECT tenant_id, secret FROM webhook_secrets") : [],
      rules: has("alert_rules") ? all("SELECT tenant_id, id, rule FROM alert_rules") : [],
    };
  }

  /** Takes this tenant's part of a legacy export (idempotent). */
  importLegacy(legacy: LegacyExport, tenantId: string): void {
    const t = legacy.tenants.find((x) => x.id === tenantId);
    if (!t) return;
    this.ctx.storage.transactionSync(() => {
      if (this.#get("id") === null) this.init(t.id, t.name, t.created_at);
      for (const k of legacy.keys.filter((x) => x.tenant_id === tenantId)) {
        this.#sql.exec(
          "INSERT OR IGNORE INTO api_keys (id, hash, prefix, scope, name, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
          k.id,
          k.hash,
          k.prefix,
          k.scope,
          k.name,
          k.created_at,
          k.revoked_at,
        );
      }
      for (const s of legacy.streams.filter((x) => x.tenant_id === tenantId)) {
        this.#sql.exec("INSERT OR IGNORE INTO stream_names (name, created_at) VALUES (?, ?)", s.name, s.created_at);
      }
      const limits = legacy.limits.find((x) => x.tenant_id === tenantId);
      if (limits && this.#get("limits") === null) {
        this.#set(
          "limits",
          JSON.stringify({ ingest_per_sec: limits.ingest_per_sec, read_per_sec: limits.read_per_sec }),
        );
      }
      const counters = legacy.counters.find((x) => x.tenant_id === tenantId);
      if (counters && this.#get("streams_refused") === null)
        this.#set("streams_refused", String(counters.streams_refused));
      const secret = legacy.secrets.find((x) => x.tenant_id === tenantId);
      if (secret && this.#get("webhook_secret") === null) this.#set("webhook_secret", secret.secret);
      for (const r of legacy.rules.filter((x) => x.tenant_id === tenantId)) {
        this.putRuleIndex(r.id, (JSON.parse(r.rule) as { stream: string }).stream);
      }
    });
  }
}
