/**
 * The runtime-free client shared by the browser and server entries: a queue flushed by count and by
 * time, batches sized to the collector's limits, a limit on requests in flight, retries with exponential
 * backoff and jitter that honour Retry-After, and receipts mapped back to the events they refer to.
 * Every I/O dependency (fetch, clock, randomness) is injectable, so the tests drive it without waiting.
 */
import { SERVER_MAX_BODY_BYTES_DEFAULT, SERVER_MAX_EVENTS_MAX } from "./limits.ts";
import type { EventRejection, Receipt, RejectionCode, TrackFields, WireEvent } from "./types.ts";
import { backoffDelay, clamp, parseRetryAfter, randomId, toBatches } from "./util.ts";

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** A number in [0, 1), for jitter. */
  random(): number;
}

export interface ClientOptions {
  /** Base URL of the collector, e.g. `https://ingest.example.com` (the SDK posts to `/v1/events`). */
  endpoint: string;
  /** An ingest key (`ep_ingest_…`). */
  key: string;
  /**
   * `backfill`: post with `?mode=backfill`, so events older than the live windows (up to 400 days) go
   * into history and the archive instead of being refused as too late. Default: the live path.
   */
  mode?: "live" | "backfill";
  /** Most events per request. Default 1000 (server) / 50 (browser); 1–10,000. Keep ≤ the collector's MAX_EVENTS_PER_BATCH. */
  maxBatchEvents?: number;
  /** Most bytes of JSON per request, before gzip. Default 1,048,576; 1,024–16,777,216. Keep ≤ MAX_BODY_BYTES. */
  maxBatchBytes?: number;
  /** How long an event may wait for its batch to fill (ms). Default 1000 (server) / 5000 (browser); 0–60,000. */
  flushIntervalMs?: number;
  /** Retries of one request before its events are given up (server) or kept offline (browser). Default 6; 0–20. */
  maxRetries?: number;
  /** First backoff (ms), doubled at each retry. Default 500; 10–60,000. */
  retryBaseMs?: number;
  /** Largest backoff (ms), Retry-After aside. Default 30,000; 100–600,000. */
  retryMaxMs?: number;
  /** Most requests in flight at once. Default 4 (server) / 2 (browser); 1–64. */
  concurrency?: number;
  /** Called with the receipt of every delivered batch (background flushes included). */
  onReceipt?: (receipt: Receipt) => void;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
  /** Clock and randomness (tests). */
  clock?: Partial<Clock>;
  /** Random bytes for event ids (tests). */
  randomBytes?: (n: number) => Uint8Array;
}

export interface Defaults {
  maxBatchEvents: number;
  flushIntervalMs: number;
  concurrency: number;
}

/** What one request came to. */
type Outcome =
  | {
      kind: "done";
      accepted: number;
      duplicates: number;
      rejected: { index: number; code: RejectionCode; message: string }[];
    }
  | {
      kind: "retry" | "split" | "fatal";
      code: RejectionCode;
      message: string;
      retryAfterMs?: number;
      floorMs?: number;
    };

export const emptyReceipt = (): Receipt => ({
  accepted: 0,
  duplicates: 0,
  rejected: [],
  deferred: 0,
  requests: 0,
  retries: 0,
});

export function addReceipt(into: Receipt, r: Receipt): Receipt {
  into.accepted += r.accepted;
  into.duplicates += r.duplicates;
  into.rejected.push(...r.rejected);
  into.deferred += r.deferred;
  into.requests += r.requests;
  into.retries += r.retries;
  return into;
}

/** The collector's receipt, or its error body (whose details hold the receipt on a 422). */
interface WireReceipt {
  accepted?: number;
  duplicates?: number;
  rejected?: { index: number; code: RejectionCode; message: string }[];
}
interface ReplyBody extends WireReceipt {
  error?: { code?: RejectionCode; message?: string; details?: WireReceipt };
}

export class Client {
  readonly options: Required<
    Pick<
      ClientOptions,
      | "maxBatchEvents"
      | "maxBatchBytes"
      | "flushIntervalMs"
      | "maxRetries"
      | "retryBaseMs"
      | "retryMaxMs"
      | "concurrency"
    >
  >;
  /** Running totals since the client was created. */
  readonly totals: Receipt = emptyReceipt();
  protected readonly url: string;
  protected readonly key: string;
  protected readonly clock: Clock;
  protected pending: WireEvent[] = [];
  protected closed = false;
  private readonly fetcher: typeof fetch;
  private readonly bytes?: (n: number) => Uint8Array;
  private readonly onReceipt?: (r: Receipt) => void;
  private timer: unknown;
  private active = 0;
  private readonly slots: (() => void)[] = [];
  private readonly inflight = new Set<Promise<Receipt>>();

  constructor(opts: ClientOptions, defaults: Defaults) {
    if (!opts?.endpoint || !opts.key) throw new TypeError("edgepulse: endpoint and key are required");
    this.url = `${opts.endpoint.replace(/\/+$/, "")}/v1/events${opts.mode === "backfill" ? "?mode=backfill" : ""}`;
    this.key = opts.key;
    this.options = {
      maxBatchEvents: clamp(opts.maxBatchEvents, defaults.maxBatchEvents, 1, SERVER_MAX_EVENTS_MAX),
      maxBatchBytes: clamp(opts.maxBatchBytes, SERVER_MAX_BODY_BYTES_DEFAULT, 1024, 16_777_216),
      flushIntervalMs: clamp(opts.flushIntervalMs, defaults.flushIntervalMs, 0, 60_000),
      maxRetries: clamp(opts.maxRetries, 6, 0, 20),
      retryBaseMs: clamp(opts.retryBaseMs, 500, 10, 60_000),
      retryMaxMs: clamp(opts.retryMaxMs, 30_000, 100, 600_000),
      concurrency: clamp(opts.concurrency, defaults.concurrency, 1, 64),
    };
    this.fetcher = opts.fetch ?? ((input, init) => fetch(input, init));
    this.clock = {
      now: () => Date.now(),
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (h) => clearTimeout(h as number),
      random: Math.random,
      ...opts.clock,
    };
    this.bytes = opts.randomBytes;
    this.onReceipt = opts.onReceipt;
  }

  /** Queues one event and returns its id (yours, or the one generated for it). */
  track(name: string, fields: TrackFields = {}): string {
    if (this.closed) throw new Error("edgepulse: track() after close()");
    const { ts, id, ...rest } = fields;
    const e: WireEvent = {
      name,
      id: id ?? randomId(this.bytes),
      ts: ts instanceof Date ? ts.getTime() : (ts ?? this.clock.now()),
      ...rest,
    };
    this.pending.push(e);
    if (this.pending.length >= this.options.maxBatchEvents) this.drain();
    else if (this.timer === undefined) {
      const t = this.clock.setTimeout(() => {
        this.timer = undefined;
        this.drain();
      }, this.options.flushIntervalMs);
      // Node: a pending flush must not keep the process alive (close() flushes on shutdown).
      (t as { unref?: () => void } | null)?.unref?.();
      this.timer = t;
    }
    return e.id;
  }

  /** Sends everything queued and waits for every delivery in flight; resolves with their receipts, summed. */
  async flush(): Promise<Receipt> {
    this.drain();
    const total = emptyReceipt();
    const seen = new Set<Promise<Receipt>>();
    for (;;) {
      const next = [...this.inflight].filter((p) => !seen.has(p));
      if (next.length === 0) return total;
      for (const p of next) seen.add(p);
      for (const r of await Promise.all(next)) addReceipt(total, r);
    }
  }

  /** Flushes, then refuses further events. Call it before a process exits (or in `ctx.waitUntil`). */
  async close(): Promise<Receipt> {
    const r = await this.flush();
    this.closed = true;
    return r;
  }

  /** Events queued and not yet handed to a request. */
  get queued(): number {
    return this.pending.length;
  }

  /** Empties the queue (and stops its timer). */
  protected take(): WireEvent[] {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    return this.pending.splice(0);
  }

  /** Takes the queue and starts its deliveries. */
  protected drain(): void {
    for (const batch of toBatches(this.take(), this.options.maxBatchEvents, this.options.maxBatchBytes)) {
      this.dispatch(batch, false);
    }
  }

  /** Called when a batch's delivery has settled, before its receipt is surfaced. */
  protected settled(_events: WireEvent[], _receipt: Receipt, _fromOutbox: boolean): void {}

  /** Starts one batch's delivery, tracked until it settles. */
  protected dispatch(events: WireEvent[], fromOutbox: boolean): Promise<Receipt> {
    const p = this.deliver(events, fromOutbox).then((r) => {
      this.inflight.delete(p);
      this.settled(events, r, fromOutbox);
      addReceipt(this.totals, r);
      try {
        this.onReceipt?.(r);
      } catch {
        // a callback's error is the caller's; delivery goes on
      }
      return r;
    });
    this.inflight.add(p);
    return p;
  }

  /** Body and headers of a request (the server entry gzips; the browser's uses keepalive). */
  protected async encode(json: string): Promise<RequestInit> {
    return {
      body: json,
      headers: { authorization: `Bearer ${this.key}`, "content-type": "application/json" },
    };
  }

  /** Events that ran out of retries: the browser keeps them offline (true); the server reports them rejected. */
  protected defer(_events: WireEvent[], _fromOutbox: boolean): boolean {
    return false;
  }

  /** Whether to stop retrying at once and defer (the browser knows it is offline). */
  protected offline(): boolean {
    return false;
  }

  /** Delivers one batch until every event is accepted, duplicate, rejected or deferred. Never rejects. */
  protected async deliver(events: WireEvent[], fromOutbox: boolean): Promise<Receipt> {
    const r = emptyReceipt();
    let todo = events;
    for (let attempt = 0; ; attempt++) {
      const out = await this.attempt(todo);
      r.requests++;
      if (attempt > 0) r.retries++;
      let failure: Exclude<Outcome, { kind: "done" }>;
      if (out.kind === "done") {
        r.accepted += out.accepted;
        r.duplicates += out.duplicates;
        const again: WireEvent[] = [];
        for (const x of out.rejected) {
          const event = todo[x.index];
          if (event === undefined) continue;
          // stream_unavailable: the stream's actor was not reached; resending (with the same id) is safe.
          if (x.code === "stream_unavailable") again.push(event);
          else r.rejected.push({ code: x.code, message: x.message, event });
        }
        if (again.length === 0) return r;
        todo = again;
        failure = { kind: "retry", code: "stream_unavailable", message: "The stream's actor could not be reached." };
      } else if (out.kind === "split" && todo.length > 1) {
        // Over the collector's count or byte limit (which may be set lower than ours): halve and resend.
        const mid = Math.ceil(todo.length / 2);
        const parts = await Promise.all([
          this.deliver(todo.slice(0, mid), fromOutbox),
          this.deliver(todo.slice(mid), fromOutbox),
        ]);
        return parts.reduce(addReceipt, r);
      } else {
        failure = out;
      }
      if (failure.kind !== "retry") return reject(r, todo, failure.code, failure.message);
      if (attempt >= this.options.maxRetries || this.offline()) {
        if (this.defer(todo, fromOutbox)) {
          r.deferred += todo.length;
          return r;
        }
        return reject(r, todo, failure.code, failure.message);
      }
      const { retryBaseMs, retryMaxMs } = this.options;
      const delay = backoffDelay(
        attempt,
        retryBaseMs,
        retryMaxMs,
        this.clock.random,
        failure.retryAfterMs,
        failure.floorMs,
      );
      await new Promise<void>((res) => {
        const t = this.clock.setTimeout(res, delay);
        (t as { unref?: () => void } | null)?.unref?.();
      });
    }
  }

  /** One request, within the concurrency limit. */
  private async attempt(events: WireEvent[]): Promise<Outcome> {
    // A released slot passes straight to the next waiter, so no newcomer can slip in between.
    if (this.active >= this.options.concurrency) await new Promise<void>((res) => this.slots.push(res));
    else this.active++;
    try {
      return await this.request(events);
    } finally {
      const next = this.slots.shift();
      if (next) next();
      else this.active--;
    }
  }

  private async request(events: WireEvent[]): Promise<Outcome> {
    let res: Response;
    let body: ReplyBody;
    try {
      res = await this.fetcher(this.url, { method: "POST", ...(await this.encode(JSON.stringify(events))) });
    } catch (err) {
      return { kind: "retry", code: "network_error", message: `The request failed: ${(err as Error)?.message ?? err}` };
    }
    try {
      body = await res.json();
    } catch {
      body = {};
    }
    const code = body.error?.code ?? (res.status === 429 ? "rate_limited" : "internal_error");
    const message = body.error?.message ?? `HTTP ${res.status}`;
    if (res.ok || res.status === 422) {
      const src: WireReceipt = (res.ok ? body : body.error?.details) ?? {};
      return {
        kind: "done",
        accepted: Number(src.accepted ?? 0),
        duplicates: Number(src.duplicates ?? 0),
        rejected: Array.isArray(src.rejected) ? src.rejected : [],
      };
    }
    if (res.status === 413) return { kind: "split", code, message };
    if (res.status === 429 || res.status === 408 || res.status >= 500) {
      return {
        kind: "retry",
        code,
        message,
        retryAfterMs: parseRetryAfter(res.headers.get("retry-after"), this.clock.now()),
        // The collector's Retry-After is never below 1 s; a browser that cannot read it (CORS) waits that long at least.
        floorMs: res.status === 429 ? 1000 : 0,
      };
    }
    return { kind: "fatal", code, message };
  }
}

function reject(r: Receipt, events: WireEvent[], code: RejectionCode, message: string): Receipt {
  for (const event of events) r.rejected.push({ code, message, event } satisfies EventRejection);
  return r;
}
