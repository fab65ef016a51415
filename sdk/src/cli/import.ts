/**
 * `edgepulse import <file>`: streams NDJSON, a JSON array or CSV (gzipped or not) to POST /v1/events through
 * the SDK's server client (batches within the collector's limits, retries with Retry-After, receipts), with
 * ids derived from the file's identity and each record's line so a re-run or a resume counts nothing twice.
 *
 * Order of truth: a batch's receipt → its rejected lines appended to `<file>.rejected.ndjson` → the state
 * file's acknowledged prefix moved past it. A kill between any two steps leaves a state that is true; the
 * records after the prefix are sent again on resume and come back as duplicates.
 */
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { resolve } from "node:path";
import { ServerClient } from "../index.ts";
import { SERVER_MAX_BODY_BYTES_DEFAULT, SERVER_MAX_EVENTS_DEFAULT } from "../limits.ts";
import type { Receipt, RejectionCode, WireEvent } from "../types.ts";
import { CliError, EXIT, usage } from "./errors.ts";
import { formatCount } from "./output.ts";
import { createProgress, type ProgressMode } from "./progress.ts";
import type { Format, ImportEvent } from "./records.ts";
import { openSource, type SourceOptions } from "./sources.ts";
import { addTotals, emptyTotals, type ImportState, readState, type Totals, writeState } from "./state.ts";

/** The SDK's server client, handing each batch to a delivery of its own so every receipt maps to its lines. */
class ImportClient extends ServerClient {
  send(events: ImportEvent[]): Promise<Receipt> {
    return this.dispatch(events as WireEvent[], false);
  }
}

/**
 * Per-event verdicts: the event reached the collector and will never be accepted as it is. Any other code in
 * a receipt (`network_error`, `rate_limited`, `stream_unavailable` after the SDK's retries, `invalid_key`…)
 * means the request did not get through: the import stops there and `--resume` sends those records again.
 */
const FINAL_CODES = new Set<RejectionCode>([
  "not_an_object",
  "malformed_json",
  "too_deep",
  "unknown_field",
  "invalid_name",
  "invalid_id",
  "invalid_timestamp",
  "invalid_value",
  "invalid_user",
  "invalid_dims",
  "too_late",
  "too_far_in_future",
  "stream_limit",
  "stream_not_allowed",
  "body_too_large",
]);

const TRANSIENT = new Set(["network_error", "rate_limited", "stream_unavailable", "internal_error"]);

export interface ImportOptions extends SourceOptions {
  resume?: boolean;
  state?: string;
  rejected?: string;
  batchSize?: number;
  batchBytes?: number;
  concurrency?: number;
  gzip?: boolean;
  /** false: post on the live path only (old events are then refused as too late). Default true: backfill. */
  backfill?: boolean;
  progress: ProgressMode;
  progressIntervalMs?: number;
}

export interface ImportSummary extends Totals {
  file: string;
  format: Format;
  gzip: boolean;
  identity: string;
  complete: boolean;
  interrupted: boolean;
  /** Records on lines ≤ this were acknowledged by an earlier run and skipped. */
  resumed_after_line: number;
  acked_through: number;
  rejected_file: string | null;
  state_file: string;
  /** This run: records settled, seconds, records per second. */
  run: { records: number; seconds: number; events_per_s: number };
  error?: { code: string; message: string };
}

interface Local {
  line: number;
  raw: string;
  code: string;
  message: string;
}

interface Batch {
  through: number;
  events: ImportEvent[];
  lines: number[];
  raws: string[];
  local: Local[];
  bytes: number;
  done: boolean;
  totals: Totals;
  rejectedText: string;
}

const newBatch = (): Batch => ({
  through: 0,
  events: [],
  lines: [],
  raws: [],
  local: [],
  bytes: 2,
  done: false,
  totals: emptyTotals(),
  rejectedText: "",
});

const rejectedLine = (line: number, code: string, message: string, input: string) =>
  JSON.stringify({ line, code, message, input });

/** Keeps the rejected file's entries for lines ≤ `through` (an earlier run's, inside its acknowledged prefix). */
function trimRejected(path: string, through: number): void {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => {
      if (l === "") return false;
      try {
        return (JSON.parse(l) as { line: number }).line <= through;
      } catch {
        return false;
      }
    });
  writeFileSync(path, kept.length > 0 ? `${kept.join("\n")}\n` : "");
}

export interface ImportTarget {
  url: string;
  key: string;
}

export async function runImport(
  file: string,
  o: ImportOptions,
  target: ImportTarget,
): Promise<{ summary: ImportSummary; failure?: CliError }> {
  const batchSize = o.batchSize ?? SERVER_MAX_EVENTS_DEFAULT;
  const batchBytes = o.batchBytes ?? SERVER_MAX_BODY_BYTES_DEFAULT;
  const concurrency = o.concurrency ?? 4;
  if (!(batchSize >= 1 && batchSize <= 10_000)) throw usage("--batch-size must be 1–10000");
  if (!(batchBytes >= 1024 && batchBytes <= 16_777_216)) throw usage("--batch-bytes must be 1024–16777216");
  if (!(concurrency >= 1 && concurrency <= 64)) throw usage("--concurrency must be 1–64");

  const src = await openSource(file, o);
  const statePath = o.state ? resolve(o.state) : `${src.path}.import-state.json`;
  const rejectedPath = o.rejected ? resolve(o.rejected) : `${src.path}.rejected.ndjson`;

  const totals = emptyTotals();
  let skipThrough = 0;
  if (o.resume) {
    const prev = readState(statePath);
    if (prev && (prev.identity !== src.identity || prev.format !== src.format)) {
      throw usage(
        `state file ${statePath} belongs to another file (or format): its identity is ${prev.identity}, this file's ${src.identity}; remove it or pass --state`,
        "state_mismatch",
      );
    }
    if (prev) {
      skipThrough = prev.acked_through;
      addTotals(totals, prev.totals);
    }
  }
  if (skipThrough > 0) trimRejected(rejectedPath, skipThrough);
  else rmSync(rejectedPath, { force: true });

  let ackedThrough = skipThrough;
  const save = (complete: boolean) =>
    writeState(statePath, {
      version: 1,
      file: src.path,
      identity: src.identity,
      format: src.format,
      acked_through: ackedThrough,
      complete,
      totals,
      updated_at: new Date().toISOString(),
    } satisfies ImportState);
  save(false);

  let fd: number | undefined;
  const writeRejected = (text: string) => {
    fd ??= openSync(rejectedPath, "a");
    writeSync(fd, text);
  };

  const client = new ImportClient({
    endpoint: target.url,
    key: target.key,
    maxBatchEvents: batchSize,
    maxBatchBytes: batchBytes,
    concurrency,
    maxRetries: 10,
    gzip: o.gzip ?? true,
    // Backfill mode: events older than the live windows go into history and the archive (young ones go
    // live as usual), so importing last month's file works; ids dedup across re-runs either way.
    mode: o.backfill === false ? "live" : "backfill",
  });
  const progress = createProgress(o.progress, src.size, o.progressIntervalMs ?? 1000);
  const started = performance.now();
  let settled = 0;
  let failure: CliError | undefined;
  let interrupted = false;
  const queue: Batch[] = [];
  const inflight = new Set<Promise<void>>();

  const onSignal = () => {
    if (interrupted) process.exit(EXIT.interrupted);
    interrupted = true;
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const settle = (b: Batch, r: Receipt) => {
    const t = b.totals;
    const lines: { line: number; text: string }[] = [];
    const index = new Map<WireEvent, number>();
    if (r.rejected.length > 0) for (let i = 0; i < b.events.length; i++) index.set(b.events[i] as WireEvent, i);
    let abort: { code: string; message: string } | undefined;
    for (const x of r.rejected) {
      if (!FINAL_CODES.has(x.code)) {
        abort ??= x;
        continue;
      }
      const i = index.get(x.event) ?? -1;
      const line = b.lines[i] ?? 0;
      lines.push({ line, text: rejectedLine(line, x.code, x.message, b.raws[i] ?? JSON.stringify(x.event)) });
      t.rejected++;
      t.rejected_by_code[x.code] = (t.rejected_by_code[x.code] ?? 0) + 1;
    }
    if (abort) {
      failure ??= new CliError(TRANSIENT.has(abort.code) ? EXIT.network : EXIT.api, abort.code, abort.message);
      return;
    }
    for (const l of b.local) {
      lines.push({ line: l.line, text: rejectedLine(l.line, l.code, l.message, l.raw) });
      t.rejected++;
      t.rejected_by_code[l.code] = (t.rejected_by_code[l.code] ?? 0) + 1;
    }
    // Rejected lines in file order (locally refused and server-refused records of a batch interleave).
    lines.sort((a, c) => a.line - c.line);
    t.records = b.events.length + b.local.length;
    t.accepted = r.accepted;
    t.duplicates = r.duplicates;
    b.rejectedText = lines.map((l) => `${l.text}\n`).join("");
    b.done = true;
    let moved = false;
    while (queue[0]?.done) {
      const q = queue.shift() as Batch;
      if (q.rejectedText) writeRejected(q.rejectedText);
      addTotals(totals, q.totals);
      settled += q.totals.records;
      ackedThrough = q.through;
      moved = true;
    }
    if (moved) {
      save(false);
      progress.update({ settled, through: ackedThrough, bytes: src.bytesRead() });
    }
  };

  let cur = newBatch();
  const seal = () => {
    const b = cur;
    cur = newBatch();
    queue.push(b);
    const sent = b.events.length > 0 ? client.send(b.events) : Promise.resolve({ rejected: [] } as unknown as Receipt);
    const p: Promise<void> = sent
      .then((r) => settle(b, r))
      .catch((err) => {
        failure ??= new CliError(EXIT.failure, "internal", String((err as Error)?.stack ?? err));
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
  };
  const limit = concurrency * 2;

  let lastLine = skipThrough;
  try {
    outer: for await (const recs of src.records()) {
      for (const rec of recs) {
        lastLine = rec.line;
        if (rec.line <= skipThrough) continue;
        const m = src.map(rec);
        if (m.error) {
          if (cur.local.length >= batchSize) seal();
          cur.local.push({ line: rec.line, raw: rec.raw, ...m.error });
        } else {
          const n = Buffer.byteLength(JSON.stringify(m.event)) + 1;
          if (cur.events.length > 0 && (cur.events.length >= batchSize || cur.bytes + n > batchBytes)) seal();
          cur.events.push(m.event);
          cur.lines.push(rec.line);
          cur.raws.push(rec.raw);
          cur.bytes += n;
        }
        cur.through = rec.line;
        while (inflight.size >= limit && !failure) await Promise.race(inflight);
        if (failure || interrupted) break outer;
      }
    }
    if (!failure && !interrupted && (cur.events.length > 0 || cur.local.length > 0)) seal();
  } catch (err) {
    if (err instanceof CliError) failure ??= err;
    else failure ??= usage(`${src.path}: ${(err as Error).message}`, "invalid_file");
  }
  while (inflight.size > 0) await Promise.all([...inflight]);
  if (fd !== undefined) closeSync(fd);
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  const complete = !failure && !interrupted;
  if (complete) ackedThrough = Math.max(ackedThrough, lastLine);
  save(complete);
  progress.update({ settled, through: ackedThrough, bytes: src.bytesRead() });
  progress.stop();
  const seconds = (performance.now() - started) / 1000;
  const summary: ImportSummary = {
    file: src.path,
    format: src.format,
    gzip: src.gzip,
    identity: src.identity,
    complete,
    interrupted,
    resumed_after_line: skipThrough,
    acked_through: ackedThrough,
    ...totals,
    rejected_file: totals.rejected > 0 ? rejectedPath : null,
    state_file: statePath,
    run: { records: settled, seconds, events_per_s: seconds > 0 ? settled / seconds : 0 },
  };
  if (failure) summary.error = { code: failure.code, message: failure.message };
  return { summary, failure };
}

export function summaryText(s: ImportSummary): string {
  const codes = Object.entries(s.rejected_by_code)
    .sort((a, b) => b[1] - a[1])
    .map(([c, n]) => `${c} ${formatCount(n)}`)
    .join(", ");
  const out = [
    `${s.complete ? "imported" : s.interrupted ? "interrupted" : "stopped"}: ${s.file} (${s.format}${s.gzip ? ", gzip" : ""})`,
    `  records     ${formatCount(s.records)}${s.resumed_after_line > 0 ? ` (resumed after line ${s.resumed_after_line})` : ""}`,
    `  accepted    ${formatCount(s.accepted)}`,
    `  duplicates  ${formatCount(s.duplicates)}`,
    `  rejected    ${formatCount(s.rejected)}${codes ? ` (${codes})` : ""}`,
  ];
  if (s.rejected_file) out.push(`  rejected lines: ${s.rejected_file}`);
  out.push(
    `  this run: ${formatCount(s.run.records)} records in ${s.run.seconds.toFixed(1)} s (${formatCount(s.run.events_per_s)} events/s)`,
  );
  if (!s.complete)
    out.push(`  acknowledged through line ${s.acked_through}; go on with --resume (state: ${s.state_file})`);
  return out.join("\n");
}
