/**
 * Delivery of a source's outbox to the streams, through the same routing as POST /v1/events
 * (workers/lib/routing.ts: stream admission under the tenant's cap, one call per stream or per shard).
 * Events are routed by age: those within ALLOWED_LATENESS_MS go to the live path (`ingest`), older ones
 * to the stream's backfill path (`backfill`: history and the archive, never the live windows); an event
 * the live path still finds too late (it aged on the way) is sent to backfill too.
 *
 * Every event either reaches a final outcome (accepted, a duplicate, or rejected with a code) or stays in
 * the outbox for the next delivery (its stream was unavailable). A delivery repeated after a restart
 * carries the same event ids, so the stream counts each once (dedup within DEDUP_HORIZON_MS).
 */
import type { Config } from "../../core/config";
import type { EventErrorCode } from "../../core/errors";
import type { StreamEvent } from "../../core/event";
import type { IngestResult } from "../../core/protocol";
import {
  admitStreams,
  backfillCalls,
  type Call,
  learnShards,
  route,
  type StreamBatch,
} from "../../workers/lib/routing";

export interface OutboxRow {
  seq: number;
  stream: string;
  event: StreamEvent;
}

/** What one delivery achieved: the rows that are done, and the counts for the source's status. */
export interface Delivery {
  done: number[];
  accepted: number;
  duplicates: number;
  rejected: Partial<Record<EventErrorCode, number>>;
  /** Rows left in the outbox (their stream could not take them now). */
  waiting: number;
}

interface Sent {
  /** Indices in the outbox rows of the events this call carries, in order. */
  indices: number[];
  result: Promise<IngestResult>;
}

/** Groups rows (by their index in `rows`) per stream, as the routing takes them. */
function batches(rows: OutboxRow[], indices: number[]): Map<string, StreamBatch> {
  const out = new Map<string, StreamBatch>();
  for (const i of indices) {
    let b = out.get(rows[i].stream);
    if (b === undefined) {
      b = { events: [], indices: [], invalid: {} };
      out.set(rows[i].stream, b);
    }
    b.events.push(rows[i].event);
    b.indices.push(i);
  }
  return out;
}

export async function sendOutbox(env: Env, config: Config, tenant: string, rows: OutboxRow[]): Promise<Delivery> {
  const out: Delivery = { done: [], accepted: 0, duplicates: 0, rejected: {}, waiting: 0 };
  const reject = (row: OutboxRow, code: EventErrorCode) => {
    out.done.push(row.seq);
    out.rejected[code] = (out.rejected[code] ?? 0) + 1;
  };
  const now = Date.now();
  const liveFrom = now - config.ALLOWED_LATENESS_MS;
  // The tenant's stream cap, as for POST /v1/events: events of refused streams are rejected (stream_limit).
  const refused = new Set(
    await admitStreams(env, tenant, [...new Set(rows.map((r) => r.stream))], config.MAX_STREAMS_PER_TENANT),
  );
  const young: number[] = [];
  const old: number[] = [];
  rows.forEach((row, i) => {
    if (refused.has(row.stream)) reject(row, "stream_limit");
    else (row.event.ts < liveFrom ? old : young).push(i);
  });

  const sent = (calls: Call[], learn: boolean): Sent[] =>
    calls.map((call) => ({
      indices: call.indices,
      result: call.send().then((r) => {
        if (learn && r.shards !== undefined) learnShards(call.key, r.shards, Date.now());
        return r;
      }),
    }));
  const settle = async (calls: Sent[], retryLate: boolean): Promise<number[]> => {
    const late: number[] = [];
    const results = await Promise.allSettled(calls.map((s) => s.result));
    results.forEach((r, k) => {
      const batch = calls[k].indices;
      if (r.status === "rejected") {
        out.waiting += batch.length;
        return;
      }
      const refusedAt = new Map(r.value.rejected.map((x) => [x.i, x.code]));
      out.accepted += r.value.accepted;
      out.duplicates += r.value.duplicates;
      batch.forEach((index, i) => {
        const code = refusedAt.get(i);
        if (code === undefined) out.done.push(rows[index].seq);
        else if (code === "stream_unavailable") out.waiting++;
        else if (code === "too_late" && retryLate) late.push(index);
        else reject(rows[index], code);
      });
    });
    return late;
  };
  const late = await settle(
    [
      ...sent(route(env, tenant, batches(rows, young), now, config.SHARD_CACHE_MS), true),
      ...sent(backfillCalls(env, tenant, batches(rows, old)), false),
    ],
    true,
  );
  if (late.length > 0) await settle(sent(backfillCalls(env, tenant, batches(rows, late)), false), false);
  return out;
}
