/**
 * The actor's one outbox: durable work owed to something outside the actor,
 * written in the same transaction as the change that created it.
 *
 * An entry is (topic, key) with a version that grows with every change, so
 * finishing an entry whose subject changed while it was in flight leaves it
 * pending (history minutes rely on this). Due times carry backoff; a claim
 * pushes the due time out before any await, so an overlapping run never
 * sends an entry twice. Finished entries of topics that keep a record
 * (webhook deliveries, for status) stay as `done` / `failed` until pruned.
 *
 * Topics: "minute" (a history row), "dims" (a minute's dimension rows),
 * "alert" (an alert transition's PostgreSQL row), "webhook" (one delivery
 * of a transition to one target), "backfill" (minute deltas of backfilled events, backfill.ts), "funnel"
 * (a numbered batch of step events for one funnel shard, funnels.ts).
 */
export type Topic = "minute" | "dims" | "alert" | "webhook" | "backfill" | "funnel";
export type EntryState = "pending" | "done" | "failed";

export interface OutboxEntry {
  topic: Topic;
  key: string;
  version: number;
  state: EntryState;
  due: number;
  attempts: number;
  last_error: string | null;
  done_at: number | null;
  payload: ArrayBuffer | null;
  [k: string]: SqlStorageValue;
}

export class Outbox {
  constructor(readonly sql: SqlStorage) {}

  /** Marks (topic, key) as owed from `due` on; bumps its version. Call inside the change's transaction. */
  mark(topic: Topic, key: string, due: number, payload: Uint8Array | null = null): void {
    this.sql.exec(
      `INSERT INTO outbox (topic, key, version, state, due, payload) VALUES (?, ?, 1, 'pending', ?, ?)
       ON CONFLICT (topic, key) DO UPDATE SET version = version + 1, state = 'pending', due = min(due, excluded.due),
         payload = coalesce(excluded.payload, payload), done_at = NULL`,
      topic,
      key,
      due,
      payload,
    );
  }

  /** Sets an entry's payload without changing its version or due time. */
  setPayload(topic: Topic, key: string, payload: Uint8Array): void {
    this.sql.exec("UPDATE outbox SET payload = ? WHERE topic = ? AND key = ?", payload, topic, key);
  }

  get(topic: Topic, key: string): OutboxEntry | null {
    return (
      this.sql.exec<OutboxEntry>("SELECT * FROM outbox WHERE topic = ? AND key = ?", topic, key).toArray()[0] ?? null
    );
  }

  /** Pending entries of a topic due at `now`, oldest due first. */
  due(topic: Topic, now: number, limit: number): OutboxEntry[] {
    return this.sql
      .exec<OutboxEntry>(
        "SELECT * FROM outbox WHERE state = 'pending' AND topic = ? AND due <= ? ORDER BY due, key LIMIT ?",
        topic,
        now,
        limit,
      )
      .toArray();
  }

  /** Pushes the entries' due time to `until` before they are worked on (no overlapping run takes them). */
  claim(entries: OutboxEntry[], until: number): void {
    for (const e of entries)
      this.sql.exec("UPDATE outbox SET due = ? WHERE topic = ? AND key = ?", until, e.topic, e.key);
  }

  /**
   * Finishes an entry if its version is still `version`; otherwise it changed meanwhile and stays pending.
   * Topics that keep no record are deleted. Returns whether it was finished.
   */
  done(e: Pick<OutboxEntry, "topic" | "key" | "version">, now: number, keep: boolean): boolean {
    const res = keep
      ? this.sql.exec(
          "UPDATE outbox SET state = 'done', done_at = ?, last_error = NULL, attempts = attempts + 1 WHERE topic = ? AND key = ? AND version = ?",
          now,
          e.topic,
          e.key,
          e.version,
        )
      : this.sql.exec("DELETE FROM outbox WHERE topic = ? AND key = ? AND version = ?", e.topic, e.key, e.version);
    return res.rowsWritten > 0;
  }

  /** Records a failed attempt: retried at `retryAt`, or marked failed for good when `retryAt` is null. */
  fail(e: Pick<OutboxEntry, "topic" | "key">, error: string, retryAt: number | null): void {
    this.sql.exec(
      `UPDATE outbox SET attempts = attempts + 1, last_error = ?, state = ?, due = ?, done_at = CASE WHEN ? IS NULL THEN ? ELSE done_at END
       WHERE topic = ? AND key = ?`,
      error.slice(0, 200),
      retryAt === null ? "failed" : "pending",
      retryAt ?? 0,
      retryAt,
      Date.now(),
      e.topic,
      e.key,
    );
  }

  /** Sets the due time of every pending entry of a topic (a shared backoff, e.g. while PostgreSQL is down). */
  deferAll(topic: Topic, due: number): void {
    this.sql.exec("UPDATE outbox SET due = max(due, ?) WHERE topic = ? AND state = 'pending'", due, topic);
  }

  pendingCount(topic: Topic): number {
    return this.sql
      .exec<{ n: number }>("SELECT count(*) AS n FROM outbox WHERE topic = ? AND state = 'pending'", topic)
      .one().n;
  }

  /** The earliest due time of a topic's pending entries, or null. */
  nextDue(topic: Topic): number | null {
    return this.sql
      .exec<{ t: number | null }>("SELECT min(due) AS t FROM outbox WHERE topic = ? AND state = 'pending'", topic)
      .one().t;
  }

  /** Entries of a topic whose key starts with `prefix`, in key order (only pending ones, at most `limit`, if asked). */
  byPrefix(topic: Topic, prefix: string, opts: { pendingOnly?: boolean; limit?: number } = {}): OutboxEntry[] {
    return this.sql
      .exec<OutboxEntry>(
        `SELECT * FROM outbox WHERE topic = ? AND key >= ? AND key < ?${opts.pendingOnly ? " AND state = 'pending'" : ""}
         ORDER BY key LIMIT ?`,
        topic,
        prefix,
        `${prefix}\uffff`,
        opts.limit ?? -1,
      )
      .toArray();
  }

  /** Keeps at most `keep` finished entries of a topic (the newest); returns how many were removed. */
  pruneFinished(topic: Topic, keep: number): number {
    return this.sql.exec(
      `DELETE FROM outbox WHERE topic = ? AND state != 'pending' AND key IN (
         SELECT key FROM outbox WHERE topic = ? AND state != 'pending' ORDER BY done_at DESC LIMIT -1 OFFSET ?)`,
      topic,
      topic,
      keep,
    ).rowsWritten;
  }

  /**
   * Drops the oldest pending entries of a topic (of its keys starting with `prefix`) beyond `max`, by key
   * order; returns the keys dropped. Counting stops at max + 1 rows, so under the bound it costs little.
   */
  dropOldestPending(topic: Topic, max: number, prefix = ""): string[] {
    const hi = `${prefix}\uffff`;
    const n = this.sql
      .exec<{ n: number }>(
        "SELECT count(*) AS n FROM (SELECT 1 FROM outbox WHERE topic = ? AND key >= ? AND key < ? AND state = 'pending' LIMIT ?)",
        topic,
        prefix,
        hi,
        max + 1000,
      )
      .one().n;
    if (n <= max) return [];
    const keys = this.sql
      .exec<{ key: string }>(
        "SELECT key FROM outbox WHERE topic = ? AND key >= ? AND key < ? AND state = 'pending' ORDER BY key LIMIT ?",
        topic,
        prefix,
        hi,
        n - max,
      )
      .toArray()
      .map((r) => r.key);
    for (const k of keys) this.sql.exec("DELETE FROM outbox WHERE topic = ? AND key = ?", topic, k);
    return keys;
  }
}
