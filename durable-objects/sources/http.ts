/**
 * HTTP sources: GET a JSON endpoint, take the array at `records`, page by a cursor.
 *
 * The cursor stored with the events is `{cursor, taken}`: the cursor sent (`?<param>=<cursor>`, none at
 * first) and how many records of that page are already events. A poll asks for the page at the cursor,
 * takes the records after `taken` (up to max_records), then moves on:
 * - `from: "response"`: to the `next` cursor the body gives, once every record of the page is taken (a
 *   page with no next cursor is the tail: it is asked again, and only its new records are taken);
 * - `from: "record"`: to the value at `next` in the last record taken (the endpoint returns what follows);
 * - no cursor: the endpoint returns one list that only grows at its end.
 * So the contract with the endpoint: the page at a cursor only grows at its end. A record's event id is
 * derived from the cursor's hash and its index in the page, so a page asked again after a restart
 * produces the same ids.
 */
import { HTTP_MAX_RESPONSE_BYTES, type HttpConfig, hash64, parsePath, readPath, SourceError } from "../../core/sources";
import { call, readJson, statusError } from "./fetch";
import type { PullContext, Pulled, Puller } from "./types";

interface HttpCursor {
  cursor: string | null;
  taken: number;
}

const asCursor = (v: unknown): string | null =>
  (typeof v === "string" && v !== "") || (typeof v === "number" && Number.isFinite(v)) ? String(v) : null;

export function httpPuller(config: HttpConfig): Puller {
  const recordsPath = parsePath(config.records) ?? [];
  const nextPath = config.cursor ? parsePath(config.cursor.next) : null;
  return {
    lagUnit: null,

    async pull(ctx: PullContext): Promise<Pulled> {
      const state = (ctx.cursor as HttpCursor | null) ?? { cursor: null, taken: 0 };
      const url = new URL(config.url);
      if (config.cursor && state.cursor !== null) url.searchParams.set(config.cursor.param, state.cursor);
      const headers: Record<string, string> = { accept: "application/json" };
      if (config.auth_header && ctx.secrets.auth) headers[config.auth_header] = ctx.secrets.auth;
      const res = await call(url.toString(), { headers }, ctx.timeoutMs, "The endpoint");
      if (!res.ok) {
        await res.body?.cancel().catch(() => {});
        throw statusError(res.status, "The endpoint");
      }
      const body = await readJson(res, HTTP_MAX_RESPONSE_BYTES, "The endpoint");
      const list = readPath(body, recordsPath);
      if (!Array.isArray(list)) {
        throw new SourceError("malformed_page", `The endpoint's response holds no array at ${config.records}.`);
      }
      const start = Math.min(state.taken, list.length);
      const page = list.slice(start, start + ctx.maxRecords);
      const base = hash64(state.cursor ?? "");
      const records = page.map((record, i) => ({ record, position: `h:${base}:${start + i}` }));
      let cursor: HttpCursor = { cursor: state.cursor, taken: start + page.length };
      let more = cursor.taken < list.length;
      if (config.cursor && nextPath) {
        if (config.cursor.from === "response") {
          const next = asCursor(readPath(body, nextPath));
          if (!more && next !== null && next !== state.cursor) {
            cursor = { cursor: next, taken: 0 };
            more = true;
          }
        } else if (page.length > 0) {
          const next = asCursor(readPath(page[page.length - 1], nextPath));
          if (next !== null) {
            cursor = { cursor: next, taken: 0 };
            more = true;
          }
        }
      }
      return { records, malformed: [], cursor, more, lag: null };
    },

    cursorView(cursor: unknown) {
      const c = cursor as HttpCursor | null;
      return c === null ? null : { cursor: c.cursor, taken: c.taken };
    },
  };
}
