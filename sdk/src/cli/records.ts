/**
 * Pure pieces of `import`: a file's identity and the ids derived from it, splitting NDJSON and JSON arrays
 * into records as chunks arrive, mapping CSV columns and JSON objects to events, and the light checks that
 * keep one bad record from failing a whole request. No I/O: tested in sdk/test/cli.test.ts.
 */
import { createHash } from "node:crypto";
import type { WireEvent } from "../types.ts";

/** How many decoded bytes from the start of a file make its identity. */
export const IDENTITY_BYTES = 64 * 1024;

/**
 * The file's identity: SHA-256 of its first 64 KiB of decoded content (after gunzip), 32 hex chars. Content,
 * not path or mtime: the same data imported from a copy, a move, after a `touch`, or gzipped is the same
 * identity (so the same ids, so counted once), and a log that only grew keeps the ids of its old lines.
 */
export function fileIdentity(head: Uint8Array): string {
  return createHash("sha256").update(head).digest("hex").slice(0, 32);
}

/** `imp:<identity>:<line>`: ≤ 4 + 32 + 1 + 16 chars, well within the collector's 128. */
export const importId = (identity: string, line: number): string => `imp:${identity}:${line}`;

export type Format = "ndjson" | "json" | "csv";

/** The format from the name (`.gz` stripped), else from the first non-blank character of the content. */
export function detectFormat(path: string, head: string): Format {
  const name = path.toLowerCase().replace(/\.gz$/, "");
  const first = /\S/.exec(head.replace(/^\uFEFF/, ""))?.[0];
  if (name.endsWith(".ndjson") || name.endsWith(".jsonl")) return "ndjson";
  if (name.endsWith(".csv") || name.endsWith(".tsv")) return "csv";
  if (first === "[") return "json";
  if (first === "{") return "ndjson";
  return name.endsWith(".json") ? "json" : "csv";
}

/** One record of the input: its line (for a JSON array, its position), its text, and its event or why not. */
export interface Rec {
  line: number;
  raw: string;
}

export interface RecordError {
  code: string;
  message: string;
}

/** Splits text chunks into lines; `\r\n` and `\n` both end a line; blank lines are counted, not returned. */
export class LineSplitter {
  private rest = "";
  private line = 0;

  push(chunk: string, out: Rec[] = []): Rec[] {
    const text = this.rest + chunk;
    let start = 0;
    for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", start)) {
      this.line++;
      const end = i > start && text.charCodeAt(i - 1) === 13 ? i - 1 : i;
      if (end > start && !isBlank(text, start, end)) out.push({ line: this.line, raw: text.slice(start, end) });
      start = i + 1;
    }
    this.rest = text.slice(start);
    return out;
  }

  end(out: Rec[] = []): Rec[] {
    if (this.rest.length > 0) {
      this.line++;
      const raw = this.rest.endsWith("\r") ? this.rest.slice(0, -1) : this.rest;
      if (!isBlank(raw, 0, raw.length)) out.push({ line: this.line, raw });
      this.rest = "";
    }
    return out;
  }
}

function isBlank(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 13 && c !== 0xfeff) return false;
  }
  return true;
}

/**
 * Splits a JSON array arriving in chunks into its elements' texts, without holding the array: depth and
 * string state are tracked across chunks, an element ends at a comma or the closing bracket at depth 0.
 * Records are numbered by position (1-based). A malformed element becomes a record that fails to parse.
 */
export class JsonArraySplitter {
  private state: "start" | "in" | "done" = "start";
  private depth = 0;
  private inString = false;
  private escape = false;
  private buf = "";
  private n = 0;

  push(chunk: string, out: Rec[] = []): Rec[] {
    let segStart = 0;
    let i = 0;
    if (this.state === "start") {
      while (i < chunk.length && /\s|\uFEFF/.test(chunk[i])) i++;
      if (i === chunk.length) return out;
      if (chunk[i] !== "[") throw new SyntaxError("a JSON array must start with '['");
      this.state = "in";
      i++;
      segStart = i;
    }
    if (this.state === "done") {
      if (/\S/.test(chunk)) throw new SyntaxError("unexpected content after the JSON array");
      return out;
    }
    for (; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (this.inString) {
        if (this.escape) this.escape = false;
        else if (c === 92)
          this.escape = true; // backslash
        else if (c === 34) this.inString = false; // "
        continue;
      }
      if (c === 34) this.inString = true;
      else if (c === 123 || c === 91)
        this.depth++; // { [
      else if (c === 125 || c === 93) {
        // } ]
        if (this.depth > 0) this.depth--;
        else {
          this.emit(chunk.slice(segStart, i), out, true);
          this.state = "done";
          if (/\S/.test(chunk.slice(i + 1))) throw new SyntaxError("unexpected content after the JSON array");
          return out;
        }
      } else if (c === 44 && this.depth === 0) {
        this.emit(chunk.slice(segStart, i), out, false);
        segStart = i + 1;
      }
    }
    this.buf += chunk.slice(segStart);
    return out;
  }

  end(): void {
    if (this.state !== "done") throw new SyntaxError("the JSON array is not closed (truncated file?)");
  }

  private emit(tail: string, out: Rec[], last: boolean): void {
    const raw = (this.buf + tail).trim();
    this.buf = "";
    // "[]" and a trailing comma hold no element; an empty one between commas is a malformed record.
    if (raw === "" && last) return;
    out.push({ line: ++this.n, raw });
  }
}

/** An event as imported: `ts` may be absent (the collector then uses the time it receives it). */
export type ImportEvent = Omit<WireEvent, "ts"> & { ts?: number | string };

/** The collector refuses a request nesting deeper than array → event → dims: keep such an event local. */
function tooDeep(o: Record<string, unknown>): boolean {
  for (const [k, v] of Object.entries(o)) {
    if (typeof v !== "object" || v === null) continue;
    if (k !== "dims" || Array.isArray(v)) return true;
    for (const x of Object.values(v)) if (typeof x === "object" && x !== null) return true;
  }
  return false;
}

/** A record mapped: the event to send, or why it stays local (written to the rejected file). */
export type Mapped = { event: ImportEvent; error?: undefined } | { event?: undefined; error: RecordError };

export interface JsonMapping {
  /** Stream name for records that carry none. */
  name?: string;
  identity: string;
}

/** A JSON record's text → the event to send (id derived unless it has one), or why it cannot be sent. */
export function jsonEvent(rec: Rec, m: JsonMapping): Mapped {
  let o: unknown;
  try {
    o = JSON.parse(rec.raw);
  } catch (err) {
    return { error: { code: "malformed_json", message: `not valid JSON: ${(err as Error).message}` } };
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) {
    return { error: { code: "not_an_object", message: "Each event must be a JSON object." } };
  }
  const e = o as Record<string, unknown>;
  if (tooDeep(e)) {
    return { error: { code: "too_deep", message: "The event nests deeper than an event can (event → dims)." } };
  }
  if (e.name === undefined && m.name !== undefined) e.name = m.name;
  if (e.id === undefined) e.id = importId(m.identity, rec.line);
  return { event: e as unknown as ImportEvent };
}

export interface CsvOptions {
  /** A fixed stream name for every row. */
  name?: string;
  nameColumn?: string;
  valueColumn?: string;
  userColumn?: string;
  tsColumn?: string;
  idColumn?: string;
  /** `column` or `column=key`. */
  dims?: string[];
}

/** The options resolved: dims split into column and key, plus the file's identity for ids. */
export interface CsvMapping extends Omit<CsvOptions, "dims"> {
  dims: { column: string; key: string }[];
  identity: string;
}

/**
 * Checks the column flags against the header. Columns named `name`, `value`, `user`, `ts` and `id` are used
 * when no flag says otherwise; dimensions only come from `--dim`.
 */
export function csvMapping(header: string[], o: CsvOptions, identity: string): CsvMapping {
  const has = new Set(header);
  const pick = (flag: string, given: string | undefined, fallback: string): string | undefined => {
    if (given !== undefined) {
      if (!has.has(given)) throw new Error(`${flag} '${given}': no such column (columns: ${header.join(", ")})`);
      return given;
    }
    return has.has(fallback) ? fallback : undefined;
  };
  if (o.name !== undefined && o.nameColumn !== undefined) throw new Error("give --name or --name-column, not both");
  const nameColumn = o.name === undefined ? pick("--name-column", o.nameColumn, "name") : undefined;
  if (o.name === undefined && nameColumn === undefined) {
    throw new Error(`the stream name: pass --name <stream> or --name-column <column> (columns: ${header.join(", ")})`);
  }
  const dims = (o.dims ?? []).map((d) => {
    const eq = d.indexOf("=");
    const column = eq === -1 ? d : d.slice(0, eq);
    const key = eq === -1 ? d : d.slice(eq + 1);
    if (!has.has(column)) throw new Error(`--dim '${d}': no such column (columns: ${header.join(", ")})`);
    if (key === "") throw new Error(`--dim '${d}': empty dimension key`);
    return { column, key };
  });
  return {
    name: o.name,
    nameColumn,
    valueColumn: pick("--value-column", o.valueColumn, "value"),
    userColumn: pick("--user-column", o.userColumn, "user"),
    tsColumn: pick("--ts-column", o.tsColumn, "ts"),
    idColumn: pick("--id-column", o.idColumn, "id"),
    dims,
    identity,
  };
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * A CSV row (column → text) → an event. Empty cells are left out; a numeric value or all-digit ts becomes a
 * number; anything else is sent as text, for the collector to accept or refuse with its own code.
 */
export function csvEvent(row: Record<string, string>, line: number, m: CsvMapping): ImportEvent {
  const cell = (c: string | undefined) => (c === undefined ? "" : (row[c] ?? "").trim());
  const e: Record<string, unknown> = { name: m.name ?? cell(m.nameColumn) };
  const id = cell(m.idColumn);
  e.id = id === "" ? importId(m.identity, line) : id;
  const value = cell(m.valueColumn);
  if (value !== "") e.value = NUMBER.test(value) ? Number(value) : value;
  const user = cell(m.userColumn);
  if (user !== "") e.user = user;
  const ts = cell(m.tsColumn);
  if (ts !== "") e.ts = /^\d+$/.test(ts) ? Number(ts) : ts;
  if (m.dims.length > 0) {
    const dims: Record<string, string> = {};
    for (const d of m.dims) {
      const v = cell(d.column);
      if (v !== "") dims[d.key] = v;
    }
    if (Object.keys(dims).length > 0) e.dims = dims;
  }
  return e as unknown as ImportEvent;
}
