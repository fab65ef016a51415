/**
 * The resume state of an import: which prefix of the file the server has acknowledged (every record up to
 * `acked_through` is accepted, a duplicate, or rejected and written to the rejected file), with the
 * receipts of that prefix. Written atomically (temp file + rename) each time the prefix grows, so a killed
 * import leaves a state that is true. Batches acknowledged beyond the prefix (out of order) are sent again
 * on resume: their ids make them duplicates, not second counts.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { usage } from "./errors.ts";
import type { Format } from "./records.ts";

export interface Totals {
  /** Records read and handled (events sent + records refused locally). */
  records: number;
  accepted: number;
  duplicates: number;
  rejected: number;
  rejected_by_code: Record<string, number>;
}

export const emptyTotals = (): Totals => ({
  records: 0,
  accepted: 0,
  duplicates: 0,
  rejected: 0,
  rejected_by_code: {},
});

export function addTotals(into: Totals, t: Totals): Totals {
  into.records += t.records;
  into.accepted += t.accepted;
  into.duplicates += t.duplicates;
  into.rejected += t.rejected;
  for (const [code, n] of Object.entries(t.rejected_by_code)) {
    into.rejected_by_code[code] = (into.rejected_by_code[code] ?? 0) + n;
  }
  return into;
}

export interface ImportState {
  version: 1;
  file: string;
  identity: string;
  format: Format;
  /** Every record on a line ≤ this one is settled. */
  acked_through: number;
  complete: boolean;
  totals: Totals;
  updated_at: string;
}

export function readState(path: string): ImportState | undefined {
  if (!existsSync(path)) return undefined;
  let s: ImportState;
  try {
    s = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw usage(
      `state file ${path} is not valid JSON (${(err as Error).message}); remove it to start over`,
      "invalid_state",
    );
  }
  if (s?.version !== 1 || typeof s.acked_through !== "number" || typeof s.identity !== "string" || !s.totals) {
    throw usage(`state file ${path} is not an import state; remove it to start over`, "invalid_state");
  }
  return s;
}

export function writeState(path: string, s: ImportState): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(s)}\n`);
  renameSync(tmp, path);
}
