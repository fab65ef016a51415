/**
 * The MetricActor's SQLite schema, in one place. Version 2 (this layout);
 * an actor that still holds version-1 tables (per-second sketch rows) is
 * converted once on wake-up (see migrate.ts).
 */
export const SCHEMA_VERSION = 2;

export const SCHEMA = [
  "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
  // Seconds of minutes still open: one encoded aggregate each (core/aggregate.ts).
  "CREATE TABLE IF NOT EXISTS seconds (sec INTEGER PRIMARY KEY, agg BLOB NOT NULL)",
  // Ended minutes: one packed block each (core/window.ts).
  "CREATE TABLE IF NOT EXISTS minutes (minute INTEGER PRIMARY KEY, block BLOB NOT NULL)",
  // The sliding HyperLogLog: one row per register in use (≤ 32,768 rows of ≤ 33 pairs).
  "CREATE TABLE IF NOT EXISTS hll (reg INTEGER PRIMARY KEY, pairs BLOB NOT NULL)",
  // Per-minute HyperLogLog registers of minutes not yet written to history (dropped once flushed).
  "CREATE TABLE IF NOT EXISTS minute_regs (minute INTEGER NOT NULL, reg INTEGER NOT NULL, rank INTEGER NOT NULL, PRIMARY KEY (minute, reg)) WITHOUT ROWID",
  "CREATE TABLE IF NOT EXISTS dedup (id TEXT PRIMARY KEY, seen INTEGER NOT NULL) WITHOUT ROWID",
  "CREATE INDEX IF NOT EXISTS dedup_seen ON dedup (seen)",
  // Dimensions (dims.ts): keys seen (≤ MAX_DIM_KEYS) and declared sets (≤ 3); each one's value dictionary
  // (≤ MAX_DIM_VALUES); the log of contributions to minutes not yet packed; one packed block per ended minute.
  "CREATE TABLE IF NOT EXISTS dim_defs (id INTEGER PRIMARY KEY, name TEXT NOT NULL, keys TEXT NOT NULL, active INTEGER NOT NULL)",
  "CREATE TABLE IF NOT EXISTS dim_values (dim INTEGER NOT NULL, vid INTEGER NOT NULL, value TEXT NOT NULL, last INTEGER NOT NULL, PRIMARY KEY (dim, vid)) WITHOUT ROWID",
  "CREATE TABLE IF NOT EXISTS dim_log (minute INTEGER NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (minute, seq)) WITHOUT ROWID",
  "CREATE TABLE IF NOT EXISTS dim_blocks (minute INTEGER PRIMARY KEY, block BLOB NOT NULL)",
  "CREATE TABLE IF NOT EXISTS alert_rules (id TEXT PRIMARY KEY, rule TEXT NOT NULL, state TEXT NOT NULL)",
  // Alert transitions: the last ALERT_EVENTS_KEPT.
  "CREATE TABLE IF NOT EXISTS alert_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, event TEXT NOT NULL)",
  // The one outbox (outbox.ts): history minutes, alert rows for PostgreSQL, webhook deliveries.
  `CREATE TABLE IF NOT EXISTS outbox (
     topic TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL,
     due INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, done_at INTEGER,
     payload BLOB, PRIMARY KEY (topic, key)) WITHOUT ROWID`,
  "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, due)",
  // The raw archive (archive.ts): accepted events waiting for R2, one row per commit and event hour, and
  // the segments a flush is writing (left behind by a crash, redone as they are).
  "CREATE TABLE IF NOT EXISTS archive_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, hour INTEGER NOT NULL, count INTEGER NOT NULL, min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL, lines TEXT NOT NULL)",
  // Ids of backfilled events (backfill.ts), kept up to BACKFILL_MAX_IDS so a repeated backfill counts nothing twice.
  "CREATE TABLE IF NOT EXISTS backfill_ids (id TEXT PRIMARY KEY) WITHOUT ROWID",
  // A replay's shadow minutes (replay.ts): one row per minute of its range, cleared when it ends.
  "CREATE TABLE IF NOT EXISTS replay_minutes (minute INTEGER PRIMARY KEY, data BLOB NOT NULL)",
  // Its shadow dimension blocks (one packed block per minute of its range, with the values its groups name)
  // and its own value dictionaries (≤ MAX_DIM_VALUES per dimension), cleared when it ends.
  "CREATE TABLE IF NOT EXISTS replay_dim_blocks (minute INTEGER PRIMARY KEY, block BLOB NOT NULL, vals TEXT NOT NULL)",
  "CREATE TABLE IF NOT EXISTS replay_dim_values (dim INTEGER NOT NULL, vid INTEGER NOT NULL, value TEXT NOT NULL, last INTEGER NOT NULL, PRIMARY KEY (dim, vid)) WITHOUT ROWID",
  "CREATE TABLE IF NOT EXISTS archive_plan (key TEXT PRIMARY KEY, hour INTEGER NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL)",
];
