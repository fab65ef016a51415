/**
 * Archive retention (the cron): deletes segments whose event date is older than the tenant's retention
 * (PUT /v1/archive/retention, at most the deployment's ARCHIVE_RETENTION_DAYS, which is the default),
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

/**
 * `daysOf` gives a tenant's retention (its own setting, within the deployment's; see maintenance.ts), asked
 * once per tenant folder.
 */
export async function pruneArchive(
  b: R2Bucket,
  now: number,
  daysOf: (tenant: string) => Promise<number>,
  budget = 1000,
): Promise<number> {
  let deleted = 0;
  for await (const tenant of folders(b, `${ARCHIVE_ROOT}/`)) {
    const cutoff = retentionCutoff(now, await daysOf(tenant.slice(ARCHIVE_ROOT.length + 1, -1)));
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
