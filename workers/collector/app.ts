/**
 * The collector: POST /v1/events. Authenticates an ingest key, reads and
 * validates the body, routes each stream's events to its actor (one RPC per
 * actor, all in parallel) and replies with a receipt once every actor has
 * made its part durable.
 */
import { Hono } from "hono";
import { ERRORS, EVENT_ERRORS, type EventErrorCode, eventErrorMessage, type Rejection } from "../../core/errors";
import { bodyFormat, decodeBody, type StreamEvent, validateEvent } from "../../core/event";
import { streamAllowed } from "../../core/keys";
import type { IngestResult } from "../../core/protocol";
import { shardOf } from "../../core/shards";
import { requireKey } from "../lib/auth";
import { corsFrom } from "../lib/cors";
import { ApiError, errorBody } from "../lib/errors";
import { actor, registry, shard } from "../lib/registry";
import type { AppEnv } from "../lib/types";
import { onlyParams } from "../lib/validate";
import { readBody } from "./body";
import { assignIds, enqueue, toMessages } from "./queued";

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
  const { admitted, refused } = await registry(env, tenantId).admitStreams(unknown, cap);
  if (knownCount + admitted.length > KNOWN_STREAMS_CAP) {
    knownStreams.clear();
    knownCount = 0;
  }
  for (const n of admitted) known.add(n);
  knownCount += admitted.length;
  knownStreams.set(tenantId, known);
  return refused;
}

/**
 * Each stream's shard count as this isolate last learned it from an ingest reply (core/shards.ts), and
 * when. Trusted for SHARD_CACHE_MS; after that (or for a stream never seen) the isolate calls the
 * stream's primary, whose reply says the count again. Bounded: cleared past SHARD_COUNTS_CAP entries.
 */
const SHARD_COUNTS_CAP = 100_000;
const shardCounts = new Map<string, { n: number; at: number }>();
/** Rotates id-less events over a stream's shards. */
let spread = 0;

function learnShards(key: string, n: number, now: number): void {
  if (shardCounts.size >= SHARD_COUNTS_CAP && !shardCounts.has(key)) shardCounts.clear();
  shardCounts.set(key, { n, at: now });
}

interface Call {
  key: string;
  /** Indices in the request of the events this call carries, in order. */
  indices: number[];
  send: () => Promise<IngestResult>;
}

/**
 * One call per stream, to its primary; or, for a stream spread over N > 1 shards, one call per shard
 * its events map to: events with an id by a hash of the id (a retry reaches the same shard), the
 * others in turn. Rejections the collector counted for a stream travel with its first call.
 */
/** Backfill (?mode=backfill): one call per stream to its primary, which sends old events to history only. */
function backfillCalls(env: Env, tenant: string, streams: Map<string, StreamBatch>): Call[] {
  return [...streams].map(([name, b]) => ({
    key: `${tenant}/${name}`,
    indices: b.indices,
    send: () =>
      actor(env, tenant, name).backfill({
        tenant,
        stream: name,
        events: b.events,
        invalid: b.invalid,
      }) as Promise<IngestResult>,
  }));
}

function route(env: Env, tenant: string, streams: Map<string, StreamBatch>, now: number, ttl: number): Call[] {
  const calls: Call[] = [];
  for (const [name, b] of streams) {
    const key = `${tenant}/${name}`;
    const known = shardCounts.get(key);
    const n = known && now - known.at <= ttl ? known.n : 1;
    if (n <= 1) {
      const req = { tenant, stream: name, events: b.events, invalid: b.invalid };
      calls.push({
        key,
        indices: b.indices,
        send: () => actor(env, tenant, name).ingest(req) as Promise<IngestResult>,
      });
      continue;
    }
    const parts = new Map<number, { events: StreamEvent[]; indices: number[] }>();
    b.events.forEach((e, j) => {
      const k = shardOf(e.id, n, spread++);
      let part = parts.get(k);
      if (part === undefined) {
        part = { events: [], indices: [] };
        parts.set(k, part);
      }
      part.events.push(e);
      part.indices.push(b.indices[j]);
    });
    let first = true;
    for (const [k, part] of parts) {
      const req = { tenant, stream: name, events: part.events, invalid: first ? b.invalid : undefined, shard: k };
      first = false;
      calls.push({ key, indices: part.indices, send: () => shard(env, tenant, name, k).ingest(req) });
    }
  }
  return calls;
}

/**
 * Buffered ingest (queued.ts): the events go to the ingest queue and the reply, 202, says how many
 * were queued; they are counted once the consumer has applied them.
 */
async function queuedReply(
  env: Env,
  tenant: string,
  streams: Map<string, StreamBatch>,
  rejected: Rejection[],
  total: number,
  now: number,
): Promise<Response> {
  const requestId = crypto.randomUUID();
  // Each message with the request indices of its events, in the order they are sent.
  const plan = [...streams].flatMap(([name, b]) => {
    let offset = 0;
    return toMessages(tenant, name, assignIds(b.events, requestId), b.invalid, requestId, now).map((msg) => {
      const indices = b.indices.slice(offset, offset + msg.events.length);
      offset += msg.events.length;
      return { msg, indices };
    });
  });
  // Streams whose events were all invalid still get their rejections counted (as without the queue).
  const sent =
    plan.length > 0
      ? await enqueue(
          env.INGEST_QUEUE,
          plan.map((p) => p.msg),
        )
      : 0;
  const queued = plan.slice(0, sent).reduce((n, p) => n + p.indices.length, 0);
  // What the queue refused is not acknowledged: each such event is rejected as unavailable (resend it).
  const unsent = plan.slice(sent).flatMap((p) => p.indices);
  for (const index of unsent) {
    rejected.push({ index, code: "stream_unavailable", message: EVENT_ERRORS.stream_unavailable });
  }
  rejected.sort((a, b) => a.index - b.index);
  if (queued === 0 && unsent.length > 0) {
    return Response.json(
      errorBody("stream_unavailable", "The ingest queue could not take the events; retry the request.", {
        queued: 0,
        rejected,
      }),
      { status: 503, headers: { "Retry-After": "1" } },
    );
  }
  if (queued === 0) {
    return Response.json(errorBody("all_events_invalid", ERRORS.all_events_invalid.message, { queued, rejected }), {
      status: 422,
    });
  }
  return Response.json(
    {
      queued,
      rejected,
      mode: "queued",
      request_id: requestId,
      note: `${queued} of ${total} events are queued durably and counted once applied (usually within seconds); duplicates and late events are judged then, in the stream's counters.`,
    },
    { status: 202 },
  );
}

collector.use("/v1/events", corsFrom("CORS_ORIGINS", "*", ["POST", "OPTIONS"]));

collector.post(
  "/v1/events",
  requireKey("ingest", { allowQueryKeyForText: true }),
  onlyParams("mode", "key"),
  async (c) => {
    const config = c.get("config");
    const grant = c.get("grant");
    const { tenantId } = grant;
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
        rejected.push({ index, code: item.code, message: EVENT_ERRORS[item.code] });
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

    // Stream prefixes (core/keys.ts): each event for a stream the credential does not cover is rejected on
    // its own, before anything reaches that stream (not even the counts of invalid events); the rest go on.
    for (const [name, b] of streams) {
      if (streamAllowed(grant, name)) continue;
      for (const index of b.indices) {
        rejected.push({ index, code: "stream_not_allowed", message: EVENT_ERRORS.stream_not_allowed });
      }
      streams.delete(name);
    }

    // Cardinality guard: new stream names are admitted by the registry up to the tenant's cap.
    const refused = await admitStreams(c.env, tenantId, [...streams.keys()], config.MAX_STREAMS_PER_TENANT);
    for (const name of refused) {
      const b = streams.get(name) as StreamBatch;
      for (const index of b.indices) rejected.push({ index, code: "stream_limit", message: EVENT_ERRORS.stream_limit });
      streams.delete(name);
    }

    const mode = c.req.query("mode");
    if (mode !== undefined && mode !== "queued" && mode !== "direct" && mode !== "backfill") {
      throw new ApiError(
        "invalid_request",
        `mode must be 'direct' (the default), 'queued' or 'backfill'; got '${mode.slice(0, 32)}'.`,
      );
    }
    if (mode === "queued") return queuedReply(c.env, tenantId, streams, rejected, items.length, now);

    const calls =
      mode === "backfill"
        ? backfillCalls(c.env, tenantId, streams)
        : route(c.env, tenantId, streams, now, config.SHARD_CACHE_MS);
    const results = await Promise.allSettled(calls.map((call) => call.send()));

    const receipt: Receipt = { accepted: 0, duplicates: 0, rejected };
    let unavailable = 0;
    const learnedAt = Date.now();
    results.forEach((r, k) => {
      const call = calls[k];
      if (r.status === "fulfilled") {
        receipt.accepted += r.value.accepted;
        receipt.duplicates += r.value.duplicates;
        for (const { i, code } of r.value.rejected) {
          receipt.rejected.push({ index: call.indices[i], code, message: eventErrorMessage(code, config) });
          if (code === "stream_unavailable") unavailable++;
        }
        if (r.value.shards !== undefined) learnShards(call.key, r.value.shards, learnedAt);
      } else {
        unavailable += call.indices.length;
        for (const index of call.indices) {
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
  },
);
