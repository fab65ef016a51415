/**
 * Buffered ingest (opt-in: POST /v1/events?mode=queued). The collector
 * validates as usual, gives every event without an id one, and answers
 * 202 once the events are in a Cloudflare Queue (durable); the queue's
 * consumer applies them to the streams' actors in batches, one call per
 * stream per batch. Because every queued event has an id, a redelivered
 * message is counted once (the actor's dedup), and the rejections the
 * collector counted travel with a message key the actor also remembers.
 *
 * What is visible when: queued events show in the live figures once the
 * consumer has applied them (within `max_batch_timeout`, 1 s, plus the
 * actor's commit when the consumer keeps up). Lateness is judged when they
 * are applied: an event queued longer than ALLOWED_LATENESS_MS is counted
 * as late, like any late event.
 */
import type { EventErrorCode } from "../../core/errors";
import type { StreamEvent } from "../../core/event";
import type { IngestRequest } from "../../core/protocol";
import { actor } from "../lib/registry";

/** One queue message: part of one request's events for one stream. */
export interface QueuedEvents {
  v: 1;
  tenant: string;
  stream: string;
  events: StreamEvent[];
  /** The request's rejections for this stream, counted once (under `key`). */
  invalid?: Partial<Record<EventErrorCode, number>>;
  key: string;
  queuedAt: number;
}

/** A message's body stays under the queue's 128 KB message limit, and a sendBatch under its 256 KB. */
const MESSAGE_BYTES = 100_000;
const BATCH_BYTES = 240_000;
const BATCH_MESSAGES = 100;

/** Ids for id-less events: unique per request and event, so a redelivered message is a duplicate. */
export function assignIds(events: StreamEvent[], requestId: string): StreamEvent[] {
  return events.map((e, i) => (e.id === undefined ? { ...e, id: `q:${requestId}:${i}` } : e));
}

/** Splits one stream's events into messages of at most MESSAGE_BYTES. */
export function toMessages(
  tenant: string,
  stream: string,
  events: StreamEvent[],
  invalid: Partial<Record<EventErrorCode, number>> | undefined,
  requestId: string,
  now: number,
): QueuedEvents[] {
  const out: QueuedEvents[] = [];
  let part: StreamEvent[] = [];
  let bytes = 0;
  const flush = () => {
    out.push({
      v: 1,
      tenant,
      stream,
      events: part,
      ...(out.length === 0 && invalid && Object.keys(invalid).length ? { invalid } : {}),
      key: `q:${requestId}:${stream}:${out.length}`,
      queuedAt: now,
    });
    part = [];
    bytes = 0;
  };
  for (const e of events) {
    const size = JSON.stringify(e).length + 1;
    if (part.length > 0 && bytes + size > MESSAGE_BYTES) flush();
    part.push(e);
    bytes += size;
  }
  if (part.length > 0 || (invalid && Object.keys(invalid).length)) flush();
  return out;
}

/**
 * Sends messages in order, in sendBatch calls within the queue's limits. Returns how many were sent:
 * all of them, or those before the sendBatch the queue refused (whose error is logged).
 */
export async function enqueue(queue: Queue<QueuedEvents>, messages: QueuedEvents[]): Promise<number> {
  let sent = 0;
  let batch: Array<{ body: QueuedEvents; contentType: "json" }> = [];
  let bytes = 0;
  const send = async () => {
    await queue.sendBatch(batch);
    sent += batch.length;
    batch = [];
    bytes = 0;
  };
  try {
    for (const m of messages) {
      const size = JSON.stringify(m).length;
      if (batch.length > 0 && (batch.length === BATCH_MESSAGES || bytes + size > BATCH_BYTES)) await send();
      batch.push({ body: m, contentType: "json" });
      bytes += size;
    }
    if (batch.length > 0) await send();
  } catch (err) {
    console.error(`edgepulse: the ingest queue refused a batch: ${(err as Error).message}`);
  }
  return sent;
}

function isQueued(b: unknown): b is QueuedEvents {
  const m = b as QueuedEvents;
  return (
    typeof m === "object" &&
    m !== null &&
    m.v === 1 &&
    typeof m.tenant === "string" &&
    typeof m.stream === "string" &&
    typeof m.key === "string" &&
    Array.isArray(m.events)
  );
}

/** Longest a failed message waits before its redelivery (s); Queues' own limit is 12 h. */
const MAX_RETRY_DELAY_S = 300;

/**
 * The queue consumer: one call per stream per batch (all that stream's messages join one group
 * commit); a stream whose actor fails has its messages retried with backoff, the others are acked.
 * A message that is not edgepulse's (it cannot have come from the collector) is retried until the
 * dead-letter queue keeps it, never dropped.
 */
export async function consume(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const byStream = new Map<string, Array<Message<unknown> & { body: QueuedEvents }>>();
  for (const msg of batch.messages) {
    if (!isQueued(msg.body)) {
      console.error(
        `edgepulse: queue message ${msg.id} is not an edgepulse batch; leaving it to the dead-letter queue`,
      );
      msg.retry({ delaySeconds: MAX_RETRY_DELAY_S });
      continue;
    }
    const key = `${msg.body.tenant}/${msg.body.stream}`;
    const list = byStream.get(key) ?? [];
    list.push(msg as Message<unknown> & { body: QueuedEvents });
    byStream.set(key, list);
  }
  await Promise.all(
    [...byStream.values()].map(async (msgs) => {
      const { tenant, stream } = msgs[0].body;
      const reqs: IngestRequest[] = msgs.map((m) => ({
        tenant,
        stream,
        events: m.body.events,
        invalid: m.body.invalid,
        key: m.body.key,
      }));
      try {
        await actor(env, tenant, stream).ingestRelayed(reqs);
        for (const m of msgs) m.ack();
      } catch (err) {
        console.error(
          `edgepulse: queued events for ${tenant}/${stream} not applied, retrying: ${(err as Error).message}`,
        );
        for (const m of msgs) m.retry({ delaySeconds: Math.min(MAX_RETRY_DELAY_S, 2 ** Math.min(m.attempts, 8)) });
      }
    }),
  );
}
