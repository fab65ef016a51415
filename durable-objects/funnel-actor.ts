/**
 * FunnelActor: a tenant's funnels (core/funnels.ts). One class, two roles by name:
 *
 * - `<tenant>#funnels` is the tenant's directory of funnel definitions (≤ MAX_FUNNELS_PER_TENANT);
 * - `<tenant>#funnels#<k>` (k < FUNNEL_SHARDS) keeps the journeys of the users whose id hashes to k, for
 *   every funnel of the tenant, and the counts per day, breakdown value and step.
 *
 * Stream actors deliver their accepted step events in batches numbered per stream; a shard applies each
 * batch once (it keeps the last number applied per stream, in the same transaction as the counts), so a
 * redelivery after a lost answer changes nothing. Each user's state is recomputed from their kept events
 * (core/funnels.ts applyUser), so the counts do not depend on the order streams deliver in.
 *
 * Bounds: per shard, one row per (funnel, user) with live journeys (each ≤ FUNNEL_MAX_USER_EVENTS events,
 * let go by the alarm once past the horizon); counts ≤ funnels × FUNNEL_RETENTION_DAYS ×
 * (FUNNEL_MAX_BREAKDOWN_VALUES + 1) × steps; one `applied` row per stream that feeds a funnel; the last 1,000
 * deleted funnel ids.
 */
import { DurableObject } from "cloudflare:workers";
import { type Config, loadConfig } from "../core/config";
import {
  applyUser,
  type CountRow,
  dayOf,
  decodeItems,
  expiresAt,
  FUNNEL_MAX_BREAKDOWN_VALUES,
  FUNNEL_OTHER,
  FUNNEL_RETENTION_DAYS,
  type FunnelDef,
  type FunnelItem,
  isSpent,
  type LogEntry,
  MAX_FUNNELS_PER_TENANT,
  sameFunnel,
  type UserState,
} from "../core/funnels";
import { upsertRows } from "./sql-batch";

const SCHEMA = [
  // Directory role: the tenant's definitions.
  "CREATE TABLE IF NOT EXISTS defs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, def TEXT NOT NULL) WITHOUT ROWID",
  // Shard role.
  "CREATE TABLE IF NOT EXISTS applied (source TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID",
  `CREATE TABLE IF NOT EXISTS users (funnel TEXT NOT NULL, user TEXT NOT NULL, state TEXT NOT NULL,
     expires INTEGER NOT NULL, PRIMARY KEY (funnel, user)) WITHOUT ROWID`,
  // No index on expires: the sweep scans the table once a minute, and every write skips a second b-tree.
  "DROP INDEX IF EXISTS users_expires",
  `CREATE TABLE IF NOT EXISTS counts (funnel TEXT NOT NULL, day INTEGER NOT NULL, b TEXT NOT NULL, step INTEGER NOT NULL,
     n INTEGER NOT NULL, PRIMARY KEY (funnel, day, b, step)) WITHOUT ROWID`,
  "CREATE TABLE IF NOT EXISTS tallies (funnel TEXT PRIMARY KEY, late INTEGER NOT NULL, overflow INTEGER NOT NULL) WITHOUT ROWID",
  "CREATE TABLE IF NOT EXISTS gone (funnel TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID",
  // Directory: the definitions' version (bumped by every define and remove; streams keep the newest taps).
  // Shard: the horizon's floor (the furthest horizon ever applied; it never moves back, whatever the clock
  // or a changed FUNNEL_LATENESS_MS says, so nothing let go can be counted again).
  "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID",
];

const SWEEP_EVERY_MS = 60_000;
const GONE_KEPT = 1000;
/** Users' states kept in memory between deliveries, by their size as stored (storage holds them all). */
const STATE_CACHE_BYTES = 16 * 1024 * 1024;
/** Rows per multi-row delete (2 parameters each: within the 100 parameters a statement may bind). */
const ROWS_PER_STATEMENT = 48;
/** Users per IN (…) read (with the funnel id: 91 parameters). */
const READS_PER_STATEMENT = 90;

/** A user's state to write after a delivery (null: delete it if it existed). */
interface Write {
  funnel: string;
  user: string;
  state: string | null;
  expires: number;
  existed: boolean;
}

/** One numbered batch of a stream's step events for this shard (items as core/funnels.ts encodeItems makes them). */
export interface FunnelBatch {
  seq: number;
  items: string;
}

export type DefineOutcome =
  | { ok: true; funnel: FunnelDef; created: boolean }
  | { ok: false; reason: "conflict" | "limit" };

export interface ShardResults {
  rows: CountRow[];
  late: number;
  overflow: number;
  users: number;
  state_bytes: number;
}

export class FunnelActor extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  readonly #config: Config;
  /**
   * Users' states as last written (null: none) with their stored size, the most recently used last;
   * ≤ STATE_CACHE_BYTES in all (a null counts 64).
   */
  readonly #states = new Map<string, { state: UserState | null; bytes: number }>();
  #cacheBytes = 0;
  /** Breakdown values counted per (funnel, day) of the days touched (≤ FUNNEL_MAX_BREAKDOWN_VALUES each). */
  readonly #values = new Map<string, Set<string>>();
  /** Deleted funnels (the `gone` table), read once. */
  #gone: Set<string> | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#config = loadConfig(env as unknown as Record<string, unknown>);
    ctx.blockConcurrencyWhile(async () => {
      for (const stmt of SCHEMA) this.#sql.exec(stmt);
    });
  }

  // Directory role ------------------------------------------------------------

  #kv(k: string): number {
    return this.#sql.exec<{ v: number }>("SELECT v FROM kv WHERE k = ?", k).toArray()[0]?.v ?? 0;
  }

  #setKv(k: string, v: number): void {
    this.#sql.exec("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", k, v);
  }

  /** Stores a definition; the same definition under the same name again is not a conflict. */
  define(def: FunnelDef): DefineOutcome {
    const existing = this.#sql.exec<{ def: string }>("SELECT def FROM defs WHERE name = ?", def.name).toArray()[0];
    if (existing) {
      const old = JSON.parse(existing.def) as FunnelDef;
      return sameFunnel(old, def) ? { ok: true, funnel: old, created: false } : { ok: false, reason: "conflict" };
    }
    const n = this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM defs").one().n;
    if (n >= MAX_FUNNELS_PER_TENANT) return { ok: false, reason: "limit" };
    this.ctx.storage.transactionSync(() => {
      this.#sql.exec("INSERT INTO defs (id, name, def) VALUES (?, ?, ?)", def.id, def.name, JSON.stringify(def));
      this.#setKv("version", this.#kv("version") + 1);
    });
    return { ok: true, funnel: def, created: true };
  }

  /** Every definition, oldest first, with the version they make together (see setFunnelTaps). */
  list(): { defs: FunnelDef[]; version: number } {
    const defs = this.#sql
      .exec<{ def: string }>("SELECT def FROM defs")
      .toArray()
      .map((r) => JSON.parse(r.def) as FunnelDef)
      .sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1));
    return { defs, version: this.#kv("version") };
  }

  get(id: string): FunnelDef | null {
    const row = this.#sql.exec<{ def: string }>("SELECT def FROM defs WHERE id = ?", id).toArray()[0];
    return row ? (JSON.parse(row.def) as FunnelDef) : null;
  }

  /** Removes a definition; the version moves on, so streams drop its taps when next told. */
  remove(id: string): FunnelDef | null {
    const def = this.get(id);
    if (def) {
      this.ctx.storage.transactionSync(() => {
        this.#sql.exec("DELETE FROM defs WHERE id = ?", id);
        this.#setKv("version", this.#kv("version") + 1);
      });
    }
    return def;
  }

  // Shard role ----------------------------------------------------------------

  /**
   * Applies a stream's batches, in order; batches at or below the last one applied from that stream are
   * already counted and skipped. Returns the last batch number applied. One transaction per call: each
   * user's state is read and written once, and each count once, however many events touched them.
   */
  apply(source: string, batches: FunnelBatch[], now = Date.now()): number {
    let last = 0;
    try {
      this.ctx.storage.transactionSync(() => {
        const floor = this.#kv("floor");
        const horizon = Math.max(now - this.#horizonLag(), floor);
        if (horizon > floor) this.#setKv("floor", horizon);
        last =
          this.#sql.exec<{ seq: number }>("SELECT seq FROM applied WHERE source = ?", source).toArray()[0]?.seq ?? 0;
        const fresh = batches.filter((b) => b.seq > last).sort((a, b) => a.seq - b.seq);
        if (fresh.length === 0) return;
        const gone = this.#goneSet();
        const byUser = new Map<string, { item: FunnelItem; entries: LogEntry[] }>();
        for (const b of fresh) {
          for (const item of decodeItems(b.items)) {
            if (gone.has(item.f)) continue;
            const key = `${item.f}\u0000${item.u}`;
            const entry: LogEntry = [item.t, item.s, item.s === 0 && item.b !== undefined ? item.b : null];
            const g = byUser.get(key);
            if (g) g.entries.push(entry);
            else byUser.set(key, { item, entries: [entry] });
          }
        }
        const counts = new Map<string, { f: string; day: number; b: string; step: number; n: number }>();
        const tallies = new Map<string, { late: number; overflow: number }>();
        this.#load(byUser);
        const writes: Write[] = [];
        for (const [key, { item, entries }] of byUser) {
          writes.push(this.#applyUser(key, item, entries, horizon, counts, tallies));
        }
        this.#write(writes);
        for (const c of counts.values()) {
          if (c.n === 0) continue;
          this.#sql.exec(
            `INSERT INTO counts (funnel, day, b, step, n) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (funnel, day, b, step) DO UPDATE SET n = n + excluded.n`,
            c.f,
            c.day,
            c.b,
            c.step,
            c.n,
          );
        }
        for (const [f, t] of tallies) {
          this.#sql.exec(
            `INSERT INTO tallies (funnel, late, overflow) VALUES (?, ?, ?)
             ON CONFLICT (funnel) DO UPDATE SET late = late + excluded.late, overflow = overflow + excluded.overflow`,
            f,
            t.late,
            t.overflow,
          );
        }
        last = fresh[fresh.length - 1].seq;
        this.#sql.exec("INSERT OR REPLACE INTO applied (source, seq) VALUES (?, ?)", source, last);
      });
    } catch (err) {
      // Storage refused the write: what memory holds may be ahead of it; read everything again next time.
      this.#forget();
      throw err;
    }
    this.#armSweep(now).catch((err: Error) => console.error(`edgepulse: funnel alarm: ${err.message}`));
    return last;
  }

  /** Drops the in-memory copies (user states, breakdown values, deleted funnels); storage stays the truth. */
  #forget(): void {
    this.#states.clear();
    this.#cacheBytes = 0;
    this.#values.clear();
    this.#gone = null;
  }

  #goneSet(): Set<string> {
    this.#gone ??= new Set(
      this.#sql
        .exec<{ funnel: string }>("SELECT funnel FROM gone")
        .toArray()
        .map((r) => r.funnel),
    );
    return this.#gone;
  }

  /**
   * Reads the states of the users of a delivery that memory does not hold, in a few statements (up to
   * READS_PER_STATEMENT users each) rather than one per user; users without a row are remembered as null.
   */
  #load(byUser: Map<string, { item: FunnelItem }>): void {
    const missing = new Map<string, string[]>();
    for (const [key, { item }] of byUser) {
      if (this.#states.has(key)) continue;
      const list = missing.get(item.f) ?? [];
      list.push(item.u);
      missing.set(item.f, list);
    }
    for (const [funnel, users] of missing) {
      for (let i = 0; i < users.length; i += READS_PER_STATEMENT) {
        const chunk = users.slice(i, i + READS_PER_STATEMENT);
        const found = new Map<string, string>();
        for (const r of this.#sql.exec<{ user: string; state: string }>(
          `SELECT user, state FROM users WHERE funnel = ? AND user IN (${chunk.map(() => "?").join(",")})`,
          funnel,
          ...chunk,
        )) {
          found.set(r.user, r.state);
        }
        for (const u of chunk) {
          const text = found.get(u);
          this.#remember(
            `${funnel}\u0000${u}`,
            text === undefined ? null : (JSON.parse(text) as UserState),
            text?.length ?? 64,
          );
        }
      }
    }
  }

  #readOne(item: FunnelItem): UserState | null {
    const row = this.#sql
      .exec<{ state: string }>("SELECT state FROM users WHERE funnel = ? AND user = ?", item.f, item.u)
      .toArray()[0];
    return row ? (JSON.parse(row.state) as UserState) : null;
  }

  /** Writes a delivery's changed states: several rows per statement, deletions likewise. */
  #write(writes: Write[]): void {
    const puts = writes.filter((w) => w.state !== null);
    upsertRows(
      this.#sql,
      "users",
      ["funnel", "user", "state", "expires"],
      puts.map((w) => [w.funnel, w.user, w.state, w.expires]),
    );
    const dels = writes.filter((w) => w.state === null && w.existed);
    for (let i = 0; i < dels.length; i += ROWS_PER_STATEMENT) {
      const chunk = dels.slice(i, i + ROWS_PER_STATEMENT);
      this.#sql.exec(
        `DELETE FROM users WHERE ${chunk.map(() => "(funnel = ? AND user = ?)").join(" OR ")}`,
        ...chunk.flatMap((w) => [w.funnel, w.user]),
      );
    }
  }

  #remember(key: string, state: UserState | null, bytes = 64): void {
    const had = this.#states.get(key);
    if (had) this.#cacheBytes -= had.bytes;
    this.#states.delete(key);
    this.#states.set(key, { state, bytes });
    this.#cacheBytes += bytes;
    if (this.#cacheBytes <= STATE_CACHE_BYTES) return;
    for (const [k, v] of this.#states) {
      this.#states.delete(k);
      this.#cacheBytes -= v.bytes;
      if (this.#cacheBytes <= STATE_CACHE_BYTES * 0.9) break;
    }
  }

  #applyUser(
    key: string,
    item: FunnelItem,
    entries: LogEntry[],
    horizon: number,
    counts: Map<string, { f: string; day: number; b: string; step: number; n: number }>,
    tallies: Map<string, { late: number; overflow: number }>,
  ): Write {
    // Loaded by #load; read again only if a very large delivery pushed it out of memory meanwhile.
    const cached = this.#states.get(key);
    const prev = cached !== undefined ? cached.state : this.#readOne(item);
    const out = applyUser(prev, entries, item.w, horizon, (day, b) => this.#fold(item.f, day, b));
    for (const d of out.deltas) {
      for (let step = d.from; step <= d.to; step++) {
        const k = `${item.f}\u0000${d.day}\u0000${d.b}\u0000${step}`;
        const c = counts.get(k);
        if (c) c.n += d.d;
        else counts.set(k, { f: item.f, day: d.day, b: d.b, step, n: d.d });
      }
    }
    if (out.late || out.overflow) {
      const t = tallies.get(item.f) ?? { late: 0, overflow: 0 };
      t.late += out.late;
      t.overflow += out.overflow;
      tallies.set(item.f, t);
    }
    if (isSpent(out.state)) {
      this.#remember(key, null);
      return { funnel: item.f, user: item.u, state: null, expires: 0, existed: prev !== null };
    }
    const text = JSON.stringify(out.state);
    this.#remember(key, out.state, text.length);
    return {
      funnel: item.f,
      user: item.u,
      state: text,
      expires: expiresAt(out.state, item.w, this.#horizonLag()),
      existed: prev !== null,
    };
  }

  /** The value a new journey is counted under: its own while the day has room for it, else __other__. */
  #fold(funnel: string, day: number, b: string): string {
    const key = `${funnel}\u0000${day}`;
    let values = this.#values.get(key);
    if (values === undefined) {
      values = new Set(
        this.#sql
          .exec<{ b: string }>("SELECT DISTINCT b FROM counts WHERE funnel = ? AND day = ?", funnel, day)
          .toArray()
          .map((r) => r.b),
      );
      this.#values.set(key, values);
    }
    if (values.has(b)) return b;
    if (values.size >= FUNNEL_MAX_BREAKDOWN_VALUES) return FUNNEL_OTHER;
    values.add(b);
    return b;
  }

  #horizonLag(): number {
    return this.#config.FUNNEL_LATENESS_MS;
  }

  /** A funnel's counts over [fromDay, toDay], with its late and overflow tallies and its live user states. */
  results(funnel: string, fromDay: number, toDay: number): ShardResults {
    const rows = this.#sql
      .exec<{ day: number; b: string; step: number; n: number }>(
        "SELECT day, b, step, n FROM counts WHERE funnel = ? AND day >= ? AND day <= ? AND n != 0",
        funnel,
        fromDay,
        toDay,
      )
      .toArray()
      .map((r) => ({ day: r.day, b: r.b, step: r.step, n: r.n }));
    const t = this.#sql
      .exec<{ late: number; overflow: number }>("SELECT late, overflow FROM tallies WHERE funnel = ?", funnel)
      .toArray()[0];
    const u = this.#sql
      .exec<{ n: number; bytes: number }>(
        "SELECT count(*) AS n, coalesce(sum(length(state)), 0) AS bytes FROM users WHERE funnel = ?",
        funnel,
      )
      .one();
    return { rows, late: t?.late ?? 0, overflow: t?.overflow ?? 0, users: u.n, state_bytes: u.bytes };
  }

  /** Forgets a deleted funnel; its step events still in flight are ignored when they arrive. */
  drop(funnel: string, now = Date.now()): void {
    this.ctx.storage.transactionSync(() => {
      for (const t of ["users", "counts", "tallies"]) this.#sql.exec(`DELETE FROM ${t} WHERE funnel = ?`, funnel);
      this.#sql.exec("INSERT OR REPLACE INTO gone (funnel, at) VALUES (?, ?)", funnel, now);
      this.#sql.exec(
        "DELETE FROM gone WHERE funnel IN (SELECT funnel FROM gone ORDER BY at DESC LIMIT -1 OFFSET ?)",
        GONE_KEPT,
      );
    });
    this.#forget();
  }

  /**
   * Lets go of the user states whose journeys have all ended before the horizon (their counts stand), and of
   * counts older than the retention. Returns how many states were let go and how many remain.
   */
  sweep(now = Date.now()): { released: number; remaining: number } {
    let released = 0;
    this.ctx.storage.transactionSync(() => {
      released = this.#sql.exec("DELETE FROM users WHERE expires <= ?", now).rowsWritten;
      this.#sql.exec("DELETE FROM counts WHERE day < ?", dayOf(now) - FUNNEL_RETENTION_DAYS);
    });
    // States let go may still be in memory.
    if (released > 0) this.#forget();
    // Breakdown values of days no journey can start on any more (the horizon is at most a day behind).
    const today = dayOf(now);
    for (const key of this.#values.keys()) {
      if (Number(key.slice(key.lastIndexOf("\u0000") + 1)) < today - 1) this.#values.delete(key);
    }
    const remaining = this.#sql.exec<{ n: number }>("SELECT count(*) AS n FROM users").one().n;
    return { released, remaining };
  }

  async #armSweep(now: number): Promise<void> {
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now + SWEEP_EVERY_MS);
  }

  override async alarm(): Promise<void> {
    const { remaining } = this.sweep();
    if (remaining > 0) await this.ctx.storage.setAlarm(Date.now() + SWEEP_EVERY_MS);
  }
}
