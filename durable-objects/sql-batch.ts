/**
 * Many rows per SQL statement. In a Durable Object every `sql.exec` call has a fixed cost in JavaScript
 * (statement lookup, binding, a cursor) that, for small rows, outweighs SQLite's own work; writing 24–50
 * rows per statement cut it from a fifth of an ingest's CPU to a few percent (BENCHMARKS.md, the ingest
 * profile). A statement binds at most 100 parameters, so a chunk holds ⌊100 / columns⌋ rows.
 */
const MAX_PARAMS = 100;

/** `INSERT OR REPLACE INTO <table> (<columns>) VALUES (…), (…)`, as few statements as the limit allows. */
export function upsertRows(sql: SqlStorage, table: string, columns: string[], rows: unknown[][]): void {
  const per = Math.floor(MAX_PARAMS / columns.length);
  const one = `(${columns.map(() => "?").join(", ")})`;
  for (let i = 0; i < rows.length; i += per) {
    const chunk = rows.slice(i, i + per);
    sql.exec(
      `INSERT OR REPLACE INTO ${table} (${columns.join(", ")}) VALUES ${chunk.map(() => one).join(", ")}`,
      ...chunk.flat(),
    );
  }
}

/** `DELETE FROM <table> WHERE <column> IN (…)` (plus `where`'s fixed parameters first), in chunks. */
export function deleteIn(
  sql: SqlStorage,
  table: string,
  column: string,
  values: unknown[],
  where: { clause: string; params: SqlStorageValue[] } = { clause: "", params: [] },
): void {
  const per = MAX_PARAMS - where.params.length;
  for (let i = 0; i < values.length; i += per) {
    const chunk = values.slice(i, i + per);
    sql.exec(
      `DELETE FROM ${table} WHERE ${where.clause}${column} IN (${chunk.map(() => "?").join(", ")})`,
      ...where.params,
      ...chunk,
    );
  }
}
