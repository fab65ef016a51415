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
import { Combiner } from "../core/combiner";
import { type Config, loadConfig } from "../core/config";
import { type IngestRequest, type IngestResult, unavailable } from "../core/protocol";
import { shardName } from "../core/shards";

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
  readonly #combiner: Combiner<IngestRequest, IngestResult>;
  #refused = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#config = loadConfig(env as unknown as Record<string, unknown>);
    this.#combiner = new Combiner({
      maxWaiting: this.#config.SHARD_QUEUE_MAX_EVENTS,
      weight: (req) => req.events.length,
      maxWaitMs: this.#config.SHARD_WAIT_MS,
    });
  }

  /** Relays one request's events (of this shard's stream) to the primary; resolves with the primary's receipt. */
  ingest(req: IngestRequest): Promise<IngestResult> {
    const answer = this.#combiner.submit(req, (reqs) => this.#relay(reqs));
    if (answer !== undefined) return answer;
    this.#refused++;
    return Promise.resolve(unavailable(req));
  }

  stats(): ShardStats {
    const c = this.#combiner;
    return { requests: c.carried, relays: c.calls, refused: this.#refused, waiting: c.waiting };
  }

  async #relay(group: IngestRequest[]): Promise<IngestResult[]> {
    const first = group[0];
    const primary = this.env.METRIC_ACTOR.getByName(shardName(first.tenant, first.stream, 0));
    const { results, shards } = await primary.ingestRelayed(group);
    return results.map((r) => ({ ...r, shards }));
  }
}
