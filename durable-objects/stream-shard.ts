/**
 * StreamShard: one shard of a hot stream (`tenant/stream#k`, see
 * core/shards.ts). It combines: the requests that arrive while its previous
 * relay is in flight leave together, as one call to the stream's primary,
 * which applies them in one group commit and answers each with its own
 * receipt. So a stream taking thousands of small requests a second costs its
 * primary a few calls per shard per round trip.
 *
 * A shard keeps no state and acknowledges nothing itself: each caller's
 * receipt is the primary's, returned after the primary's write is durable.
 * A shard that is evicted or restarted mid-relay fails its callers (their
 * events were either committed by the primary, and a retry of an event with
 * an id is a duplicate, or not, and the retry counts them), exactly as a lost
 * reply from the primary would. What it holds waiting is bounded by
 * SHARD_QUEUE_MAX_EVENTS; past it, it refuses at once (stream_unavailable).
 */
import { DurableObject } from "cloudflare:workers";
import { type Config, loadConfig } from "../core/config";
import type { IngestRequest, IngestResult } from "../core/protocol";
import { shardName } from "../core/shards";

interface Waiting {
  req: IngestRequest;
  resolve: (r: IngestResult) => void;
  reject: (e: unknown) => void;
}

export interface ShardStats {
  /** Requests relayed to the primary, and the calls that carried them. */
  requests: number;
  relays: number;
  /** Requests refused because the queue was full. */
  refused: number;
  waiting: number;
}

export class StreamShard extends DurableObject<Env> {
  readonly #config: Config;
  #waiting: Waiting[] = [];
  #waitingEvents = 0;
  #inFlight = false;
  #scheduled = false;
  readonly #stats: ShardStats = { requests: 0, relays: 0, refused: 0, waiting: 0 };

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#config = loadConfig(env as unknown as Record<string, unknown>);
  }

  /** Relays one request's events (of this shard's stream) to the primary; resolves with the primary's receipt. */
  ingest(req: IngestRequest): Promise<IngestResult> {
    if (this.#waitingEvents + req.events.length > this.#config.SHARD_QUEUE_MAX_EVENTS) {
      // Full: every event is refused as unavailable (the collector answers 503 with Retry-After).
      this.#stats.refused++;
      return Promise.resolve({
        accepted: 0,
        duplicates: 0,
        rejected: req.events.map((_, i) => ({ i, code: "stream_unavailable" as const })),
      });
    }
    return new Promise((resolve, reject) => {
      this.#waiting.push({ req, resolve, reject });
      this.#waitingEvents += req.events.length;
      this.#schedule();
    });
  }

  stats(): ShardStats {
    return { ...this.#stats, waiting: this.#waiting.length };
  }

  /** Starts a relay on the next turn (so requests arriving together leave together), unless one is in flight. */
  #schedule(): void {
    if (this.#inFlight || this.#scheduled || this.#waiting.length === 0) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      void this.#relay();
    }, 0);
  }

  async #relay(): Promise<void> {
    if (this.#inFlight || this.#waiting.length === 0) return;
    this.#inFlight = true;
    const group = this.#waiting;
    this.#waiting = [];
    this.#waitingEvents = 0;
    try {
      const first = group[0].req;
      const primary = this.env.METRIC_ACTOR.getByName(shardName(first.tenant, first.stream, 0));
      const { results, shards } = await primary.ingestRelayed(group.map((w) => w.req));
      this.#stats.requests += group.length;
      this.#stats.relays++;
      group.forEach((w, i) => {
        w.resolve({ ...results[i], shards });
      });
    } catch (err) {
      for (const w of group) w.reject(err);
    } finally {
      this.#inFlight = false;
      this.#schedule();
    }
  }
}
