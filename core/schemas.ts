/**
 * Control-plane request bodies, declared once as schemas (zod): the Worker
 * validates with them (through Hono's validator) and the API reference is
 * generated from them. The event itself is validated by the hand-tuned
 * validator in core/event.ts, which is on the hot path.
 */
import { z } from "zod";
import { MAX_STREAM_PREFIXES, SCOPES, STREAM_PREFIX_PATTERN } from "./keys.ts";
import { isAllowedOidcUrl, MAX_AUDIENCES, MAX_ROLE_MAPPINGS } from "./oidc.ts";
import { MAX_SHARDS } from "./shards.ts";

export const TenantCreate = z
  .strictObject({
    name: z.string().trim().min(1).max(128).describe("A label for the tenant (required)."),
  })
  .meta({ id: "TenantCreate" });

/** Stream-name prefixes a credential is limited to (core/keys.ts streamAllowed). */
export const StreamPrefixes = z
  .array(
    z
      .string()
      .regex(
        STREAM_PREFIX_PATTERN,
        "a prefix is 1–128 stream-name characters [A-Za-z0-9_.:-], matched as a plain prefix (write 'checkout.', not 'checkout.*')",
      ),
  )
  .min(1, "give at least one prefix, or omit stream_prefixes for every stream")
  .max(MAX_STREAM_PREFIXES)
  .refine((p) => new Set(p).size === p.length, "a prefix appears twice");

export const KeyCreate = z
  .strictObject({
    scope: z.enum(SCOPES).describe("ingest sends events; read reads; admin manages keys and may also read and send."),
    name: z.string().min(1).max(128).optional().describe("A label shown in key listings."),
    stream_prefixes: StreamPrefixes.optional().describe(
      'Limit the key to streams whose names start with one of these (≤ 10, e.g. ["checkout."]). Omitted: every stream; a limited admin\'s new keys default to its own prefixes.',
    ),
  })
  .meta({ id: "KeyCreate" });

const oidcUrl = (what: string) =>
  z
    .string()
    .max(512)
    .refine(isAllowedOidcUrl, `${what} must be an https:// URL (http:// only for 127.0.0.1, ::1 or localhost)`);

/**
 * A tenant's OpenID Connect identity provider (PUT /v1/auth/oidc): tokens its issuer signs are accepted
 * as bearer credentials, with the scope (and stream prefixes) of the first role mapping the token holds.
 */
export const OidcConfigBody = z.strictObject({
  issuer: oidcUrl("issuer").describe("The issuer, exactly as the tokens' iss claim says it."),
  jwks_uri: oidcUrl("jwks_uri")
    .optional()
    .describe("The issuer's JWKS. Omitted: read from <issuer>/.well-known/openid-configuration."),
  audience: z
    .union([z.string().min(1).max(256), z.array(z.string().min(1).max(256)).min(1).max(MAX_AUDIENCES)])
    .describe("The aud a token must hold (one of these, ≤ 5): your API identifier, or the dashboard's client id."),
  role_claim: z
    .string()
    .min(1)
    .max(256)
    .default("roles")
    .describe('The claim holding the role(s): a name, or a dotted path such as "realm_access.roles"; string or array.'),
  roles: z
    .array(
      z.strictObject({
        role: z.string().min(1).max(256).describe("A role as it appears in the role claim."),
        scope: z.enum(SCOPES).describe("The scope a token holding this role gets."),
        stream_prefixes: StreamPrefixes.optional().describe("Limit such tokens to these stream prefixes."),
      }),
    )
    .min(1)
    .max(MAX_ROLE_MAPPINGS)
    .refine((r) => new Set(r.map((x) => x.role)).size === r.length, "a role is mapped twice")
    .describe("Role → scope, in order: the first mapping whose role the token holds decides."),
  dashboard: z
    .strictObject({
      client_id: z.string().min(1).max(256).describe("The dashboard's public client id at the provider."),
      scopes: z
        .string()
        .regex(/^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$/, "space-separated OAuth scopes")
        .max(512)
        .default("openid")
        .describe('The scopes the dashboard asks for (default "openid").'),
    })
    .optional()
    .describe("Sign-in for the dashboard (authorization code + PKCE). Needs the issuer's discovery document."),
});
export type OidcConfigInput = z.output<typeof OidcConfigBody>;

const perSecond = z.int().min(1).max(1_000_000).nullable().optional();

export const LimitsUpdate = z
  .strictObject({
    ingest_per_sec: perSecond.describe("Ingest requests per second; null restores the default."),
    read_per_sec: perSecond.describe("Read requests per second; null restores the default."),
  })
  .meta({ id: "LimitsUpdate" });

/**
 * A stream's configuration: up to 3 dimension sets of 2–3 distinct keys, aggregated jointly from their
 * declaration on, and its scale-out bounds. Each part omitted is left as it is.
 */
export const StreamConfig = z
  .strictObject({
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
  })
  .meta({ id: "StreamConfig" });

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
