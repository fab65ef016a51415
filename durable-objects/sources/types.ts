/**
 * What a source's kind (http.ts, postgres.ts, r2.ts, kafka.ts) does for the actor: read up to
 * `maxRecords` records past the stored cursor, and say the cursor that follows them. The actor stores the
 * events made of the records, the new cursor and the kind's bookkeeping in one SQLite transaction.
 */
import type { EventErrorCode } from "../../core/errors";
import type { SourceSecrets, SourceStatus } from "../../core/sources";

export interface PullContext {
  tenant: string;
  sourceId: string;
  secrets: SourceSecrets;
  /** The cursor stored with the last events produced (null before the first). */
  cursor: unknown;
  env: Env;
  /** The actor's SQLite, for the kind's bookkeeping tables (read here; written in `commit`). */
  sql: SqlStorage;
  now: number;
  maxRecords: number;
  timeoutMs: number;
}

export interface Pulled {
  /** Records in order, each with its position: the part of its event id that never changes. */
  records: Array<{ record: unknown; position: string }>;
  /** Records that could not even be parsed (a line that is not JSON, a broken CSV row). */
  malformed: Array<{ position: string; code: EventErrorCode }>;
  cursor: unknown;
  /** More is waiting now: poll again at once rather than after the interval. */
  more: boolean;
  /** What is waiting at the source (null: unknown this time). */
  lag: number | null;
  /** The kind's bookkeeping, written in the same transaction as the events and the cursor. */
  commit?: (sql: SqlStorage, now: number) => void;
}

export interface Puller {
  readonly lagUnit: SourceStatus["lag_unit"];
  pull(ctx: PullContext): Promise<Pulled>;
  /** After the events of the stored cursor were all delivered (Kafka commits its offsets). */
  delivered?(ctx: PullContext): Promise<void>;
  /** The cursor as GET shows it. */
  cursorView(cursor: unknown, sql: SqlStorage): Record<string, unknown> | null;
  /** The source is deleted: let go of what it holds elsewhere (a Kafka consumer instance). */
  close?(ctx: PullContext): Promise<void>;
}
