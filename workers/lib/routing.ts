/**
 * Routing a tenant's validated events to their streams, shared by everything that ingests (the collector's
 * POST /v1/events and the pull sources' actors): stream admission under the tenant's stream cap (asked of
 * the tenant's registry, cached per isolate), and one call per stream to its primary actor, or per shard
 * for a stream spread over shards (core/shards.ts), learning each stream's shard count from the replies;
 * old events go to each stream's backfill path instead (backfillCalls).
 */
import type { EventErrorCode } from "../../core/errors";
import type { StreamEvent } from "../../core/event";
import type { IngestResult } from "../../core/protocol";
import { shardOf } from "../../core/shards";
import { actor, registry, shard } from "./registry";

/** One stream's part of a request: its events, their indices in the request, its rejections by code. */
export interface StreamBatch {
  events: StreamEvent[];
  indices: number[];
  invalid: Partial<Record<EventErrorCode, number>>;
}

/** Stream names this isolate has seen admitted, per tenant (bounded), so the registry is asked only about new ones. */
const KNOWN_STREAMS_CAP = 100_000;
const knownStreams = new Map<string, Set<string>>();
let knownCount = 0;

/** Returns the names refused by the tenant's stream cap. */
export async function admitStreams(env: Env, tenantId: string, names: string[], cap: number): Promise<string[]> {
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

export function learnShards(key: string, n: number, now: number): void {
  if (shardCounts.size >= SHARD_COUNTS_CAP && !shardCounts.has(key)) shardCounts.clear();
  shardCounts.set(key, { n, at: now });
}

export interface Call {
  key: string;
  /** Indices in the request of the events this call carries, in order. */
  indices: number[];
  send: () => Promise<IngestResult>;
}

/** Backfill (old events: history and the archive only): one call per stream to its primary. */
export function backfillCalls(env: Env, tenant: string, streams: Map<string, StreamBatch>): Call[] {
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

/**
 * One call per stream, to its primary; or, for a stream spread over N > 1 shards, one call per shard
 * its events map to: events with an id by a hash of the id (a retry reaches the same shard), the
 * others in turn. Rejections counted for a stream travel with its first call.
 */
export function route(env: Env, tenant: string, streams: Map<string, StreamBatch>, now: number, ttl: number): Call[] {
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
