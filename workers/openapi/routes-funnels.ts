/**
 * The funnels' entries of the API description (workers/openapi/routes.ts spreads them into OPERATIONS):
 * /v1/funnels (workers/aggregator/funnels.ts), with their response schemas.
 */
import { z } from "zod";
import {
  FUNNEL_MAX_BREAKDOWN_VALUES,
  FUNNEL_MAX_DAYS,
  FUNNEL_MAX_USER_EVENTS,
  FUNNEL_OTHER,
  MAX_FUNNEL_STEPS,
  MAX_FUNNELS_PER_TENANT,
} from "../../core/funnels";
import { FilterSpec } from "../../core/query";
import { Time } from "../../core/responses";
import type { OperationDoc, RouteKey } from "./routes";

const Funnel = z
  .object({
    id: z.string().describe("f_…"),
    name: z.string(),
    steps: z.array(
      z.object({
        stream: z.string(),
        filters: z.array(FilterSpec.pick({ dim: true, op: true }).extend({ values: z.array(z.string()) })),
      }),
    ),
    window: z.string().describe('As given ("1h").'),
    window_ms: z.int().min(1000),
    breakdown: z.string().nullable(),
    created_at: Time,
  })
  .meta({ id: "Funnel" });

const FunnelOne = z.object({ funnel: Funnel }).meta({ id: "FunnelOne" });
const FunnelList = z.object({ funnels: z.array(Funnel) }).meta({ id: "FunnelList" });
const day = z.string().regex(/^\d{4}-\d{2}-\d{2}$/);
const FunnelResults = z
  .object({
    funnel: Funnel,
    from: day.describe("First UTC day (journeys counted on the day they started)."),
    to: day.describe("Last UTC day (today)."),
    steps: z.array(
      z.object({
        index: z.int().min(0),
        stream: z.string(),
        journeys: z.int().min(0).describe("Journeys that reached this step."),
        conversion: z.number().min(0).max(1).describe("journeys / the first step's journeys."),
        from_previous: z.number().min(0).max(1).describe("journeys / the previous step's journeys."),
      }),
    ),
    breakdown: z
      .array(z.object({ value: z.string(), journeys: z.array(z.int().min(0)).describe("Per step.") }))
      .describe(
        `Per value of the breakdown dim (empty without one), most first-step journeys first; "__none__" for journeys whose first event lacks the dim, "${FUNNEL_OTHER}" past ${FUNNEL_MAX_BREAKDOWN_VALUES} values a day.`,
      ),
    days: z.array(z.object({ day, journeys: z.array(z.int().min(0)) })).describe("Per UTC day, oldest first."),
    state: z
      .object({
        users: z.int().min(0).describe("Users with journeys still open or within the lateness horizon."),
        bytes: z.int().min(0).describe("Their state's size in storage."),
        late: z.int().min(0).describe("Step events that arrived past the horizon and changed nothing."),
        overflow: z
          .int()
          .min(0)
          .describe(`Step events ignored because a user already had ${FUNNEL_MAX_USER_EVENTS} kept.`),
      })
      .describe("The funnel's live state, over all shards."),
  })
  .meta({ id: "FunnelResults" });

const WRITE = "An admin credential without stream prefixes.";

export const FUNNEL_OPERATIONS: Record<RouteKey, OperationDoc> = {
  "POST /v1/funnels": {
    operationId: "createFunnel",
    tag: "Funnels",
    summary: "Declare a funnel",
    description: `2–${MAX_FUNNEL_STEPS} ordered steps (a stream, optionally with dim filters as in queries) within a conversion window per user (at most 7d). Only events with a \`user\` count. A journey starts at a user's first-step event (with no journey open), reaches step k+1 at the first step-(k+1) event after step k and within the window, and is counted on the UTC day it started; the order streams arrive in does not matter. Counts events accepted from now on (not backfilled or replayed ones). Funnels cannot be changed; the same definition again answers 200 with the existing one. At most ${MAX_FUNNELS_PER_TENANT} per tenant. ${WRITE}`,
    responses: {
      201: { description: "Declared.", json: FunnelOne },
      200: { description: "The same definition exists already.", json: FunnelOne },
    },
    errors: ["funnel_conflict", "funnel_limit", "restricted_credential", "stream_unavailable"],
  },
  "GET /v1/funnels": {
    operationId: "listFunnels",
    tag: "Funnels",
    summary: "The tenant's funnels",
    description: "A credential limited to stream prefixes sees the funnels whose every step it may read.",
    responses: { 200: { description: "Oldest first.", json: FunnelList } },
  },
  "GET /v1/funnels/:id": {
    operationId: "getFunnel",
    tag: "Funnels",
    summary: "One funnel's definition",
    responses: { 200: { description: "The funnel.", json: FunnelOne } },
    errors: ["funnel_not_found", "stream_not_allowed"],
  },
  "DELETE /v1/funnels/:id": {
    operationId: "deleteFunnel",
    tag: "Funnels",
    summary: "Delete a funnel",
    description: `Its counts and journeys go; the streams' events and history stay. ${WRITE}`,
    responses: { 204: { description: "Deleted." } },
    errors: ["funnel_not_found", "restricted_credential", "stream_unavailable"],
  },
  "GET /v1/funnels/:id/results": {
    operationId: "getFunnelResults",
    tag: "Funnels",
    summary: "Conversion per step, per breakdown value and per day",
    description:
      "Live: a step event is counted within about a second of being accepted. Journeys are counted on the UTC day they started; a journey that reaches a later step after midnight still counts on its first day.",
    query: {
      days: z
        .int()
        .min(1)
        .max(FUNNEL_MAX_DAYS)
        .default(1)
        .describe(`UTC days up to today (1 = today, at most ${FUNNEL_MAX_DAYS}).`),
    },
    responses: { 200: { description: "The results.", json: FunnelResults } },
    errors: ["funnel_not_found", "stream_not_allowed", "invalid_request", "stream_unavailable"],
  },
};
