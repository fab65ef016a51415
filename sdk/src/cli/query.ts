/** `edgepulse query '<json>'` / `--file q.json`: POST /v1/query, printed as a table, JSON or CSV. */
import { readFileSync } from "node:fs";
import { usage } from "./errors.ts";
import { api, type Target } from "./http.ts";
import { type Cell, table } from "./output.ts";

export interface QueryOptions {
  file?: string;
  json: boolean;
  csv: boolean;
}

interface Answer {
  columns: string[];
  rows: Cell[][];
  meta?: { truncated?: boolean; groups?: number; freshness_ms?: number | null; missing?: unknown[] };
}

export function readQuery(text: string | undefined, file: string | undefined): unknown {
  if ((text === undefined) === (file === undefined))
    throw usage("give the query as an argument or with --file, not both");
  let source = text as string;
  if (file !== undefined) {
    try {
      source = file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
    } catch (err) {
      throw usage(`--file ${file}: ${(err as Error).message}`);
    }
  }
  try {
    return JSON.parse(source);
  } catch (err) {
    throw usage(`the query is not valid JSON: ${(err as Error).message}`, "malformed_query");
  }
}

export async function runQuery(t: Target, query: unknown, o: QueryOptions): Promise<string> {
  if (o.csv) return (await api<string>(t, "/v1/query?format=csv", { body: query, text: true })).replace(/\r?\n$/, "");
  const answer = await api<Answer>(t, "/v1/query", { body: query });
  if (o.json) return JSON.stringify(answer);
  const notes: string[] = [];
  if (answer.meta?.truncated)
    notes.push(`(${answer.rows.length} of ${answer.meta.groups} groups; raise "limit" for more)`);
  if (answer.meta?.missing && answer.meta.missing.length > 0)
    notes.push(`missing: ${JSON.stringify(answer.meta.missing)}`);
  return [table(answer.columns, answer.rows), ...notes].join("\n");
}
