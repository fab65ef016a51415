/**
 * Opening an input file for `import`: gzip detected by its magic bytes (or a `.gz` name), the format by name
 * or content, the identity from its first 64 KiB, and its records read as a stream, a chunk at a time, so a
 * file of any size is held in memory only as far as the batches in flight.
 */
import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { Transform } from "node:stream";
import { createGunzip } from "node:zlib";
import { parse as parseCsv } from "csv-parse";
import { usage } from "./errors.ts";
import {
  type CsvMapping,
  type CsvOptions,
  csvEvent,
  csvMapping,
  detectFormat,
  type Format,
  fileIdentity,
  IDENTITY_BYTES,
  JsonArraySplitter,
  jsonEvent,
  LineSplitter,
  type Mapped,
  type Rec,
} from "./records.ts";

const CHUNK = 1 << 20;

export interface SourceOptions extends CsvOptions {
  format?: Format;
}

/** A record of any format; CSV rows come parsed. */
export interface SourceRec extends Rec {
  row?: Record<string, string>;
  /** A CSV row the parser could not read. */
  bad?: string;
}

export interface Source {
  path: string;
  format: Format;
  gzip: boolean;
  identity: string;
  /** Size on disk (compressed, for gzip): what the progress bar counts against. */
  size: number;
  /** Bytes of the file read so far. */
  bytesRead(): number;
  /** Records in file order, a chunk's worth at a time. */
  records(): AsyncGenerator<SourceRec[]>;
  /** A record → its event, or why it stays local. */
  map(rec: SourceRec): Mapped;
}

async function isGzip(path: string): Promise<boolean> {
  const fh = await open(path, "r");
  try {
    const { bytesRead, buffer } = await fh.read(Buffer.alloc(2), 0, 2, 0);
    return bytesRead === 2 && buffer[0] === 0x1f && buffer[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

/** The file's decoded bytes as a stream, counting what is read from disk. */
function decoded(path: string, gzip: boolean, count?: (n: number) => void) {
  const file = createReadStream(path, { highWaterMark: CHUNK });
  let s: NodeJS.ReadableStream = file;
  if (count) {
    s = s.pipe(
      new Transform({
        transform(chunk: Buffer, _enc, cb) {
          count(chunk.length);
          cb(null, chunk);
        },
      }),
    );
  }
  if (gzip) {
    const gunzip = createGunzip({ chunkSize: CHUNK });
    s.on("error", (err) => gunzip.destroy(err as Error));
    s = s.pipe(gunzip);
  }
  return { stream: s, close: () => file.destroy() };
}

async function readHead(path: string, gzip: boolean): Promise<Buffer> {
  const { stream, close } = decoded(path, gzip);
  const parts: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      parts.push(chunk);
      n += chunk.length;
      if (n >= IDENTITY_BYTES) break;
    }
  } catch (err) {
    // A truncated gzip still has a head; a corrupt one fails here.
    if (n === 0) throw usage(`${path}: cannot read: ${(err as Error).message}`, "unreadable_file");
  } finally {
    close();
  }
  return Buffer.concat(parts).subarray(0, IDENTITY_BYTES);
}

export async function openSource(file: string, o: SourceOptions): Promise<Source> {
  const path = resolve(file);
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new Error("not a file");
    size = st.size;
  } catch (err) {
    throw usage(
      `${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`,
      "unreadable_file",
    );
  }
  const gzip = (await isGzip(path)) || (size === 0 && path.endsWith(".gz"));
  const head = await readHead(path, gzip);
  const identity = fileIdentity(head);
  const format = o.format ?? detectFormat(path, head.toString("utf8"));
  let read = 0;
  let csvMap: CsvMapping | undefined;

  async function* textRecords(
    split: (chunk: string, out: SourceRec[]) => SourceRec[],
    end: (out: SourceRec[]) => void,
  ) {
    const { stream, close } = decoded(path, gzip, (n) => {
      read += n;
    });
    (stream as NodeJS.ReadableStream & { setEncoding(e: string): void }).setEncoding("utf8");
    try {
      for await (const chunk of stream as AsyncIterable<string>) {
        const out = split(chunk, []);
        if (out.length > 0) yield out;
      }
      const out: SourceRec[] = [];
      end(out);
      if (out.length > 0) yield out;
    } finally {
      close();
    }
  }

  async function* csvRecords(): AsyncGenerator<SourceRec[]> {
    const { stream, close } = decoded(path, gzip, (n) => {
      read += n;
    });
    const bad: SourceRec[] = [];
    const parser = parseCsv({
      bom: true,
      delimiter: path.toLowerCase().replace(/\.gz$/, "").endsWith(".tsv") ? "\t" : ",",
      columns: (header: string[]) => {
        csvMap = csvMapping(
          header.map((h) => h.trim()),
          o,
          identity,
        );
        return header.map((h) => h.trim());
      },
      info: true,
      raw: true,
      skip_empty_lines: true,
      skip_records_with_error: true,
      on_skip: (err: { lines?: number; message?: string } | undefined, raw?: string) => {
        bad.push({
          line: err?.lines ?? 0,
          raw: (raw ?? "").replace(/\r?\n$/, ""),
          bad: err?.message ?? "unreadable CSV row",
        });
      },
    });
    stream.on("error", (err) => parser.destroy(err as Error));
    stream.pipe(parser);
    let out: SourceRec[] = [];
    try {
      for await (const r of parser as AsyncIterable<{
        record: Record<string, string>;
        raw: string;
        info: { lines: number };
      }>) {
        if (bad.length > 0) out.push(...bad.splice(0));
        out.push({ line: r.info.lines, raw: r.raw.replace(/\r?\n$/, ""), row: r.record });
        if (out.length >= 1000) {
          yield out;
          out = [];
        }
      }
      out.push(...bad.splice(0));
      if (out.length > 0) yield out;
    } catch (err) {
      if (err instanceof Error && /no such column|stream name|--name|--dim/.test(err.message)) {
        throw usage(err.message, "invalid_mapping");
      }
      throw err;
    } finally {
      close();
    }
  }

  return {
    path,
    format,
    gzip,
    identity,
    size,
    bytesRead: () => read,
    records: () => {
      if (format === "csv") return csvRecords();
      if (format === "json") {
        const s = new JsonArraySplitter();
        return textRecords(
          (chunk, out) => s.push(chunk, out),
          () => s.end(),
        );
      }
      const s = new LineSplitter();
      return textRecords(
        (chunk, out) => s.push(chunk, out),
        (out) => s.end(out),
      );
    },
    map: (rec) => {
      if (rec.bad !== undefined) return { error: { code: "malformed_csv", message: rec.bad } };
      if (rec.row !== undefined) return { event: csvEvent(rec.row, rec.line, csvMap as CsvMapping) };
      return jsonEvent(rec, { name: o.name, identity });
    },
  };
}
