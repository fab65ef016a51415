/**
 * The small JSON key-value state of an alarm-driven object (a pull source, a sink): its `kv` table, a
 * read-change-write with no await between (so concurrent steps cannot lose a change), the "touched" stamp,
 * a queue running its steps one at a time, and the deleted flag (after deleteAll() the tables are gone:
 * reads answer null, as for an object that never existed).
 */
export const KV_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID";

export class KvState {
  deleted = false;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(readonly sql: SqlStorage) {}

  get<T>(k: string): T | null {
    if (this.deleted) return null;
    const row = this.sql.exec<{ v: string }>("SELECT v FROM kv WHERE k = ?", k).toArray()[0];
    return row ? (JSON.parse(row.v) as T) : null;
  }

  put(k: string, v: unknown): void {
    this.sql.exec("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", k, JSON.stringify(v));
  }

  /** Reads `k`, lets `fn` change it and writes it back; returns the new value. */
  change<T>(k: string, fn: (v: T) => void): T {
    const v = this.get<T>(k) as T;
    fn(v);
    this.put(k, v);
    return v;
  }

  /** Stamps the object's `meta` with the time of a change made through the API. */
  touch(): void {
    this.change<{ updated_at: number }>("meta", (m) => {
      m.updated_at = Date.now();
    });
  }

  /** Runs `fn` after every step queued before it (ticks, polls, deliveries one at a time). */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => {});
    return next;
  }
}
