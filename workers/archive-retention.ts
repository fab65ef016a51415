/**
 * Archive retention (the cron): deletes segments whose event date is older than ARCHIVE_RETENTION_DAYS,
 * walking raw/<tenant>/<stream>/<date>/ folders with delimiter listings, so only folders past the cutoff
 * are listed object by object. Bounded: at most `budget` objects deleted per run (the next run goes on).
 */
import { ARCHIVE_ROOT, retentionCutoff } from "../core/archive";

async function* folders(b: R2Bucket, prefix: string): AsyncGenerator<string> {
  let cursor: string | undefined;
  do {
    const page = await b.list({ prefix, delimiter: "/", cursor, limit: 1000 });
    yield* page.delimitedPrefixes;
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
}

export async function pruneArchive(b: R2Bucket, now: number, days: number, budget = 1000): Promise<number> {
  const cutoff = retentionCutoff(now, days);
  let deleted = 0;
  for await (const tenant of folders(b, `${ARCHIVE_ROOT}/`)) {
    for await (const stream of folders(b, tenant)) {
      for await (const date of folders(b, stream)) {
        // Date folders list in order: the first one not past the cutoff ends this stream.
        if (date.slice(stream.length, stream.length + 10) >= cutoff) break;
        let cursor: string | undefined;
        do {
          const page = await b.list({ prefix: date, cursor, limit: Math.min(1000, budget - deleted) });
          const keys = page.objects.map((o) => o.key);
          if (keys.length > 0) await b.delete(keys);
          deleted += keys.length;
          if (deleted >= budget) return deleted;
          cursor = page.truncated ? page.cursor : undefined;
        } while (cursor);
      }
    }
  }
  return deleted;
}
