/**
 * R2 file drops: NDJSON or CSV objects under `drops/<tenant>/<prefix>` in the DROPS bucket, each ingested
 * once, in key order, one object at a time, read in ranges of R2_CHUNK_BYTES.
 *
 * The cursor stored with the events is the object being read (key, etag, byte offset of the next record,
 * records read, the CSV header) and the floor (below). An object is finished in the same transaction as
 * its last events: its key goes into `r2_done`, so it is never read again. Bookkeeping is bounded: at most
 * R2_DONE_MAX keys are remembered; past it the smallest keys are let go and the floor rises to the largest
 * of them, and listings start after the floor. A poll lists at most R2_LIST_PAGES_PER_POLL pages from the
 * floor; when every key they hold is finished and the listing goes on, the floor rises to the last key
 * listed (a listing is exhaustive in key order, so every key up to it is finished) and the finished keys up
 * to it are let go, so finished keys never fill the listing for good. So an object whose key sorts below
 * the floor (one written after more than R2_DONE_MAX later-sorting objects were ingested, or after a
 * listing had passed its place) is never read: name drops so new ones sort last (a date or a sequence
 * first). An object replaced while it is being read (another etag) is finished where it was; one deleted
 * likewise.
 *
 * A line (NDJSON) or row (CSV) that cannot be parsed, or a CSV row with another number of fields than the
 * header, is a rejection (`malformed_json`); a record longer than R2_CHUNK_BYTES too, and reading goes on
 * at the next line (or, at the end of the object, the object is finished).
 */
import {
  hash64,
  parseCsv,
  R2_CHUNK_BYTES,
  R2_DONE_MAX,
  R2_LIST_PAGES_PER_POLL,
  type R2Config,
  SourceError,
} from "../../core/sources";
import type { PullContext, Pulled, Puller } from "./types";

interface Current {
  key: string;
  etag: string;
  /** Byte offset of the next record. */
  offset: number;
  /** Records read so far (their index is the event's position). */
  records: number;
  header: string[] | null;
  /** A record longer than a chunk is being skipped: resume after the next line break. */
  skipping: boolean;
}

interface R2Cursor {
  current: Current | null;
  floor: string | null;
}

export const R2_SCHEMA = [
  // Objects ingested (bounded by R2_DONE_MAX; below the cursor's floor every key counts as done).
  "CREATE TABLE IF NOT EXISTS r2_done (key TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID",
];

const NL = 0x0a;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** The bounds this file keeps (their constants are in core/sources.ts); tests pass small ones. */
export interface R2Limits {
  /** Listing pages one poll reads (R2_LIST_PAGES_PER_POLL). */
  listPages: number;
  /** Keys asked for per listing page (R2 returns at most 1,000). */
  pageKeys: number;
  /** Finished keys remembered (R2_DONE_MAX). */
  doneMax: number;
}

const LIMITS: R2Limits = { listPages: R2_LIST_PAGES_PER_POLL, pageKeys: 1000, doneMax: R2_DONE_MAX };

export function r2Puller(config: R2Config, limits: R2Limits = LIMITS): Puller {
  const formatOf = (key: string) => config.format ?? (key.toLowerCase().endsWith(".csv") ? "csv" : "ndjson");

  /**
   * The first object under the prefix not ingested yet, and how many are waiting (within the pages listed).
   * `passed`: none was found but the listing goes on past the pages read; every key up to this one (the
   * last listed) is finished.
   */
  async function next(
    ctx: PullContext,
    state: R2Cursor,
  ): Promise<{ found: R2Object | null; waiting: number; passed: string | null }> {
    const prefix = `drops/${ctx.tenant}/${config.prefix}`;
    const done = (key: string) => ctx.sql.exec("SELECT 1 FROM r2_done WHERE key = ?", key).toArray().length > 0;
    let startAfter = state.floor ?? undefined;
    let found: R2Object | null = null;
    let waiting = 0;
    let more = false;
    for (let page = 0; page < limits.listPages; page++) {
      let list: R2Objects;
      try {
        list = await ctx.env.DROPS.list({ prefix, startAfter, limit: limits.pageKeys });
      } catch (err) {
        throw new SourceError("object_unreadable", `The DROPS bucket could not be listed (${(err as Error).name}).`);
      }
      for (const o of list.objects) {
        if (o.key.endsWith("/") || done(o.key)) continue;
        waiting++;
        found ??= o;
      }
      more = list.truncated && list.objects.length > 0;
      if (!more) break;
      startAfter = list.objects[list.objects.length - 1].key;
    }
    const passed = found === null && more && startAfter !== undefined ? startAfter : null;
    return { found, waiting, passed };
  }

  return {
    lagUnit: "objects",

    async pull(ctx: PullContext): Promise<Pulled> {
      const state: R2Cursor = (ctx.cursor as R2Cursor | null) ?? { current: null, floor: null };
      let lag: number | null = null;
      let cur = state.current;
      if (cur === null) {
        const { found, waiting, passed } = await next(ctx, state);
        lag = waiting;
        if (found === null && passed !== null) {
          // Every key listed is finished, and the listing goes on: the floor rises to the last one (every key up
          // to it is finished) and they are let go, so the next poll lists what follows. How many wait: unknown.
          const c: R2Cursor = { current: null, floor: passed };
          const commit: Pulled["commit"] = (sql) => {
            sql.exec("DELETE FROM r2_done WHERE key <= ?", passed);
          };
          return { records: [], malformed: [], cursor: c, more: true, lag: null, commit };
        }
        if (found === null) return { records: [], malformed: [], cursor: state, more: false, lag: 0 };
        cur = { key: found.key, etag: found.etag, offset: 0, records: 0, header: null, skipping: false };
      }
      const key = cur.key;
      const finished =
        (c: R2Cursor): Pulled["commit"] =>
        (sql, now) => {
          sql.exec("INSERT OR REPLACE INTO r2_done (key, at) VALUES (?, ?)", key, now);
          bound(sql, c, limits.doneMax);
        };
      if (cur.offset === 0 && (await ctx.env.DROPS.head(key))?.size === 0) {
        const c: R2Cursor = { current: null, floor: state.floor };
        return { records: [], malformed: [], cursor: c, more: true, lag, commit: finished(c) };
      }

      let obj: R2ObjectBody | R2Object | null;
      try {
        obj = await ctx.env.DROPS.get(cur.key, {
          range: { offset: cur.offset, length: R2_CHUNK_BYTES },
          onlyIf: { etagMatches: cur.etag },
        });
      } catch (err) {
        // A range from the end of the object is refused: a cursor left there (skipping an over-long last record,
        // by an earlier version) finishes the object.
        const head = cur.offset > 0 ? await ctx.env.DROPS.head(key).catch(() => null) : null;
        if (head !== null && head.etag === cur.etag && head.size <= cur.offset) {
          const c: R2Cursor = { current: null, floor: state.floor };
          return { records: [], malformed: [], cursor: c, more: true, lag, commit: finished(c) };
        }
        throw new SourceError("object_unreadable", `An object could not be read (${(err as Error).name}).`);
      }
      if (obj === null || !("body" in obj) || obj.etag !== cur.etag) {
        // Deleted or replaced while being read: finished where it was.
        const c: R2Cursor = { current: null, floor: state.floor };
        return { records: [], malformed: [], cursor: c, more: true, lag, commit: finished(c) };
      }
      const bytes = new Uint8Array(await obj.arrayBuffer());
      const atEnd = cur.offset + bytes.length >= obj.size;
      const objectHash = hash64(`${key}\u0000${cur.etag}`);
      const pos = (n: number) => `r:${objectHash}:${n}`;
      const out: Pulled = { records: [], malformed: [], cursor: null, more: true, lag };
      const c: Current = { ...cur };
      let used = 0; // bytes of this chunk consumed

      if (c.skipping) {
        const nl = bytes.indexOf(NL);
        if (nl < 0) used = bytes.length;
        else {
          used = nl + 1;
          c.skipping = false;
        }
      }
      if (!c.skipping) {
        const rest = bytes.subarray(used);
        const lastNl = rest.lastIndexOf(NL);
        const usable = atEnd ? rest.length : lastNl + 1;
        if (usable === 0 && !atEnd && rest.length === bytes.length - used && bytes.length >= R2_CHUNK_BYTES) {
          // One record longer than a chunk: refuse it and skip to the next line.
          out.malformed.push({ position: pos(c.records++), code: "malformed_json" });
          used = bytes.length;
          c.skipping = true;
        } else if (formatOf(c.key) === "ndjson") {
          let at = 0;
          while (at < usable && out.records.length + out.malformed.length < ctx.maxRecords) {
            let end = rest.indexOf(NL, at);
            if (end < 0 || end >= usable) end = usable;
            const line = decoder.decode(rest.subarray(at, end)).trim();
            at = Math.min(end + 1, usable);
            if (line === "") continue;
            try {
              out.records.push({ record: JSON.parse(line), position: pos(c.records++) });
            } catch {
              out.malformed.push({ position: pos(c.records++), code: "malformed_json" });
            }
          }
          used += at;
        } else {
          const text = decoder.decode(rest.subarray(0, usable));
          const parsed = parseCsv(text, atEnd);
          if (parsed.records.length === 0 && parsed.consumed === 0 && !atEnd && bytes.length >= R2_CHUNK_BYTES) {
            // One row (quoted line breaks) longer than a chunk: refuse it and skip to the next line.
            out.malformed.push({ position: pos(c.records++), code: "malformed_json" });
            c.offset += bytes.length;
            return { ...out, cursor: { current: { ...c, skipping: true }, floor: state.floor } };
          }
          let consumedChars = 0;
          let taken = 0;
          for (const r of parsed.records) {
            if (out.records.length + out.malformed.length >= ctx.maxRecords) break;
            taken++;
            consumedChars = r.end;
            if (c.header === null) {
              if (r.fields === null)
                throw new SourceError("object_unreadable", `The CSV header of ${c.key} cannot be parsed.`, true);
              c.header = r.fields;
              continue;
            }
            const header = c.header;
            if (r.fields === null || r.fields.length !== header.length) {
              out.malformed.push({ position: pos(c.records++), code: "malformed_json" });
              continue;
            }
            const fields = r.fields;
            const record = Object.fromEntries(header.map((h, i) => [h, fields[i]]));
            out.records.push({ record, position: pos(c.records++) });
          }
          if (taken === parsed.records.length) consumedChars = parsed.consumed;
          used += encoder.encode(text.slice(0, consumedChars)).length;
        }
      }
      c.offset += used;
      // At the end of the object it is finished, also while skipping an over-long last record with no line break
      // after it (already counted as a rejection).
      if (atEnd && c.offset >= obj.size) {
        const done: R2Cursor = { current: null, floor: state.floor };
        return { ...out, cursor: done, commit: finished(done) };
      }
      if (used === 0 && out.records.length === 0 && out.malformed.length === 0) {
        throw new SourceError("object_unreadable", `No progress reading ${c.key} at byte ${c.offset}.`);
      }
      return { ...out, cursor: { current: c, floor: state.floor } };
    },

    cursorView(cursor: unknown, sql: SqlStorage) {
      const c = cursor as R2Cursor | null;
      if (c === null) return null;
      const remembered = sql.exec<{ n: number }>("SELECT count(*) AS n FROM r2_done").one().n;
      return {
        object: c.current?.key ?? null,
        offset: c.current?.offset ?? null,
        records: c.current?.records ?? null,
        floor: c.floor,
        objects_remembered: remembered,
      };
    },
  };
}

/** Keeps r2_done within `doneMax` (R2_DONE_MAX): the smallest keys go, and the floor rises to the largest of them. */
function bound(sql: SqlStorage, cursor: R2Cursor, doneMax: number): void {
  const n = sql.exec<{ n: number }>("SELECT count(*) AS n FROM r2_done").one().n;
  if (n <= doneMax) return;
  const cut = sql
    .exec<{ key: string }>("SELECT key FROM r2_done ORDER BY key LIMIT 1 OFFSET ?", n - doneMax - 1)
    .one().key;
  sql.exec("DELETE FROM r2_done WHERE key <= ?", cut);
  if (cursor.floor === null || cut > cursor.floor) cursor.floor = cut;
}
