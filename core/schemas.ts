/**
 * Control-plane request bodies, declared once as schemas (zod): the Worker
 * validates with them (through Hono's validator) and the API reference is
 * generated from them. The event itself is validated by the hand-tuned
 * validator in core/event.ts, which is on the hot path.
 */
import { z } from "zod";
import { SCOPES } from "./keys.ts";
import { MAX_SHARDS } from "./shards.ts";

export const TenantCreate = z.strictObject({
  name: z.string().trim().min(1).max(128).describe("A label for the tenant (required)."),
});

export const KeyCreate = z.strictObject({
  scope: z.enum(SCOPES).describe("ingest sends events; read reads; admin manages keys and may also read and send."),
  name: z.string().min(1).max(128).optional().describe("A label shown in key listings."),
});

const perSecond = z.int().min(1).max(1_000_000).nullable().optional();

export const LimitsUpdate = z.strictObject({
  ingest_per_sec: perSecond.describe("Ingest requests per second; null restores the default."),
  read_per_sec: perSecond.describe("Read requests per second; null restores the default."),
});

/**
 * A stream's configuration: up to 3 dimension sets of 2–3 distinct keys, aggregated jointly from their
 * declaration on, and its scale-out bounds. Each part omitted is left as it is.
 */
export const StreamConfig = z.strictObject({
  dimension_sets: z
    .array(
      z
        .array(z.string().min(1).max(64))
        .min(2)
        .max(3)
        .refine((keys) => new Set(keys).size === keys.length, "a key appears twice in a set"),
    )
    .max(3)
    .refine((sets) => new Set(sets.map((s) => s.join("+"))).size === sets.length, "a set is declared twice")
    .optional()
    .describe('Sets of dim keys aggregated jointly, e.g. [["country", "plan"]]. Omitted: kept as they are.'),
  scaling: z
    .strictObject({
      min_shards: z
        .int()
        .min(1)
        .max(MAX_SHARDS)
        .optional()
        .describe("Shards the stream never folds below (default 1)."),
      max_shards: z
        .int()
        .min(1)
        .max(MAX_SHARDS)
        .optional()
        .describe("Shards the stream never splits beyond (default and ceiling: SHARD_MAX)."),
      target_requests_per_s: z
        .int()
        .min(1)
        .max(100_000)
        .optional()
        .describe("Ingest requests per second one shard is sized for (default SHARD_TARGET_RPS)."),
    })
    .refine((s) => (s.min_shards ?? 1) <= (s.max_shards ?? MAX_SHARDS), "min_shards is above max_shards")
    .optional()
    .describe("How the stream scales out over shards. Omitted: kept as it is; {} restores the defaults."),
});

/** One line a person can act on, from a schema's issues: "field: what is wrong" (first issue), and all issues as details. */
export function describeIssues(error: { issues: z.core.$ZodIssue[] }): {
  message: string;
  details: Array<{ path: string; message: string }>;
} {
  const details = error.issues.map((i) => ({
    path: i.path.length ? i.path.map(String).join(".") : "(body)",
    message: i.code === "unrecognized_keys" ? `unknown field ${i.keys.map((k) => `'${k}'`).join(", ")}` : i.message,
  }));
  const first = details[0] ?? { path: "(body)", message: "invalid" };
  return { message: `${first.path}: ${first.message}.`, details };
}
