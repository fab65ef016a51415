/**
 * The query language's vocabulary: measures, filter operators and steps, declared once. No
 * dependencies, so the dashboard bundles it without the query compiler (core/query.ts) and its schemas.
 */
export const MEASURES = [
  "count",
  "rate",
  "value_count",
  "sum",
  "min",
  "max",
  "mean",
  "p50",
  "p90",
  "p95",
  "p99",
  "distinct_users",
] as const;
export type Measure = (typeof MEASURES)[number];
export const FILTER_OPS = ["eq", "neq", "in", "not_in", "prefix"] as const;
export type FilterOp = (typeof FILTER_OPS)[number];
export const QUERY_STEPS = { "1m": 60_000, "1h": 3_600_000, "1d": 86_400_000 } as const;
export type QueryStep = keyof typeof QUERY_STEPS;
