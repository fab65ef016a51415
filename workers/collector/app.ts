/**
 * The collector: POST /v1/events. Authenticates an ingest key, reads and
 * validates the body, routes each stream's events to its actor (one RPC per
 * actor, all in parallel) and replies with a receipt once every actor has
 * made its part durable.
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import { ERRORS, EVENT_ERRORS, type EventErrorCode, type Rejection } from "../../core/errors";
import { bodyFormat, decodeBody, type StreamEvent, validateEvent } from "../../core/event";
import type { IngestResult } from "../../core/protocol";
import { requireKey } from "../lib/auth";
import { ApiError, errorBody } from "../lib/errors";
import type { AppEnv } from "../lib/types";
import { readBody } from "./body";

export interface Receipt {
  accepted: number;
  duplicates: number;
  rejected: Rejection[];
}

interface StreamBatch {
  events: StreamEvent[];
  indices: number[];
  invalid: Partial<Record<EventErrorCode, number>>;
}

export const collector = new Hono<AppEnv>();

/** Stream names this isolate has seen admitted, per tenant (bounded), so the registry is asked only about new ones. */
const KNOWN_STREAMS_CAP = 100_000;
const knownStreams = new Map<string, Set<string>>();
let knownCount = 0;

/** Returns the names refused by the tenant's stream cap. */
async function admitStreams(env: Env, tenantId: string, names: string[], cap: number): Promise<string[]> {
  const known = knownStreams.get(tenantId) ?? new Set<string>();
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length === 0) return [];
  const { admitted, refused } = await env.TENANT_REGISTRY.getByName("global").admitStreams(tenantId, unknown, cap);
  if (knownCount + admitted.length > KNOWN_STREAMS_CAP) {
    knownStreams.clear();
    knownCount = 0;
  }
  for (const n of admitted) known.add(n);
  knownCount += admitted.length;
  knownStreams.set(tenantId, known);
  return refused;
}

collector.use(
  "/v1/events",
  cors({
    origin: (origin, c) => {
      const allowed = String(c.env.CORS_ORIGINS ?? "*")
        .split(",")
        .map((s) => s.trim());
      return allowed.includes("*") ? "*" : allowed.includes(origin) ? origin : null;
    },
    allowMethods: ["POST", "OPTIONS"],
    allowHeaders: ["Authorization", "Content-Type", "Content-Encoding"],
    maxAge: 86_400,
  }),
);

collector.post("/v1/events", requireKey("ingest", { allowQueryKeyForText: true }), async (c) => {
  const config = c.get("config");
  const { tenantId } = c.get("grant");
  const format = bodyFormat(c.req.header("content-type") ?? null);
  if (format === undefined) {
    const got = c.req.header("content-type");
    throw new ApiError(
      "unsupported_content_type",
      `${got ? `Content-Type '${got.slice(0, 64)}' is not supported.` : "Content-Type is missing."} ${ERRORS.unsupported_content_type.message}`,
    );
  }
  const text = await readBody(c.req.raw, config.MAX_BODY_BYTES);
  const decoded = decodeBody(text, format);
  if (!decoded.ok) throw new ApiError(decoded.code ?? "malformed_body", decoded.message);
  const items = decoded.items;
  if (items.length === 0) throw new ApiError("empty_batch");
  if (items.length > config.MAX_EVENTS_PER_BATCH) {
    throw new ApiError(
      "too_many_events",
      `The batch holds ${items.length} events; the limit is ${config.MAX_EVENTS_PER_BATCH}. Split it into several requests.`,
    );
  }

  const now = Date.now();
  const rejected: Rejection[] = [];
  const streams = new Map<string, StreamBatch>();
  const batchOf = (name: string): StreamBatch => {
    let b = streams.get(name);
    if (b === undefined) {
      b = { events: [], indices: [], invalid: {} };
      streams.set(name, b);
    }
    return b;
  };
  items.forEach((item, index) => {
    if (!item.ok) {
      rejected.push({ index, code: "malformed_json", message: EVENT_ERRORS.malformed_json });
      return;
    }
    const v = validateEvent(item.value, now);
    if (v.ok) {
      const b = batchOf(v.name);
      b.events.push(v.event);
      b.indices.push(index);
    } else {
      rejected.push({ index, code: v.code, message: v.message });
      if (v.name !== undefined) {
        const b = batchOf(v.name);
        b.invalid[v.code] = (b.invalid[v.code] ?? 0) + 1;
      }
    }
  });

  // Cardinality guard: new stream names are admitted by the registry up to the tenant's cap.
  const refused = await admitStreams(c.env, tenantId, [...streams.keys()], config.MAX_STREAMS_PER_TENANT);
  for (const name of refused) {
    const b = streams.get(name) as StreamBatch;
    for (const index of b.indices) rejected.push({ index, code: "stream_limit", message: EVENT_ERRORS.stream_limit });
    streams.delete(name);
  }

  const entries = [...streams.entries()];
  const results = await Promise.allSettled(
    entries.map(
      ([name, b]) =>
        c.env.METRIC_ACTOR.getByName(`${tenantId}/${name}`).ingest({
          tenant: tenantId,
          stream: name,
          events: b.events,
          invalid: b.invalid,
        }) as Promise<IngestResult>,
    ),
  );

  const receipt: Receipt = { accepted: 0, duplicates: 0, rejected };
  let unavailable = 0;
  results.forEach((r, k) => {
    const b = entries[k][1];
    if (r.status === "fulfilled") {
      receipt.accepted += r.value.accepted;
      receipt.duplicates += r.value.duplicates;
      for (const { i, code } of r.value.rejected) {
        receipt.rejected.push({ index: b.indices[i], code, message: EVENT_ERRORS[code] });
      }
    } else {
      unavailable += b.events.length;
      for (const index of b.indices) {
        receipt.rejected.push({ index, code: "stream_unavailable", message: EVENT_ERRORS.stream_unavailable });
      }
    }
  });
  receipt.rejected.sort((a, b) => a.index - b.index);

  if (receipt.accepted === 0 && receipt.duplicates === 0) {
    if (unavailable === items.length) {
      return c.json(errorBody("stream_unavailable", ERRORS.stream_unavailable.message, receipt), 503, {
        "Retry-After": "1",
      });
    }
    return c.json(errorBody("all_events_invalid", ERRORS.all_events_invalid.message, receipt), 422);
  }
  return c.json(receipt, 200);
});
