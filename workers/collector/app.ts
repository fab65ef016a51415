/**
 * The collector: POST /v1/events. Authenticates an ingest key, reads and
 * validates the body, routes each stream's events to its actor (one RPC per
 * actor, all in parallel) and replies with a receipt once every actor has
 * made its part durable.
 */
import { Hono } from "hono";
import { ERRORS, EVENT_ERRORS, eventErrorMessage, type Rejection } from "../../core/errors";
import { bodyFormat, decodeBody, validateEvent } from "../../core/event";
import { streamAllowed } from "../../core/keys";
import { requireKey } from "../lib/auth";
import { corsFrom } from "../lib/cors";
import { ApiError, errorBody } from "../lib/errors";
import { admitStreams, backfillCalls, learnShards, route, type StreamBatch } from "../lib/routing";
import type { AppEnv } from "../lib/types";
import { onlyParams } from "../lib/validate";
import { readBody } from "./body";
import { assignIds, enqueue, toMessages } from "./queued";

export interface Receipt {
  accepted: number;
  duplicates: number;
  rejected: Rejection[];
}

export const collector = new Hono<AppEnv>();

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
