/**
 * Sends a pack's traffic to POST /v1/events: about `rate` events a second in batches four times a second
 * until `seconds` have passed (0: until stopped), or exactly `events` events as fast as the server takes
 * them. Catalog changes the generator makes (the app pack's) go through the catalog API before the
 * events that follow them. Every choice comes from a PRNG seeded with `seed` (core/random.ts).
 */
import { seededRandom } from "../../core/random";
import type { Pack, PackEvent } from "./pack";
import { Api, applyCatalogChange, type DemoTenant } from "./provision";

/** Events per request: well under the collector's MAX_EVENTS_PER_BATCH (default 1000). */
export const BATCH_MAX = 500;
/** Retries of one batch the server cannot take (429, 503, a network error) before giving up. */
const MAX_RETRIES = 8;

export interface TrafficOptions {
  rate: number;
  /** 0: until stopped (or until `events` are sent). */
  seconds: number;
  /** Send exactly this many events, then stop. */
  events?: number;
  seed: number;
  /** The clock events are stamped with (tests fix it). */
  now?: () => number;
  log?: (line: string) => void;
  /** Called after each batch with the running totals. */
  progress?: (t: TrafficTotals) => void;
  /** Stops the run at the next batch. */
  signal?: AbortSignal;
}

export interface TrafficTotals {
  /** Events sent (the server answered the batch). */
  sent: number;
  accepted: number;
  duplicates: number;
  rejected: number;
  /** Catalog changes made through the API. */
  catalogChanges: number;
}

interface Receipt {
  accepted: number;
  duplicates: number;
  rejected: Array<{ index: number; code: string; message: string }>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The first `n` events of a pack's traffic from `seed`, stamped by `now` (one call per visit): what
 * `--events n --seed seed` sends, without sending it.
 */
export function generate(pack: Pack, seed: number, n: number, now: () => number): PackEvent[] {
  const rng = seededRandom(seed);
  const traffic = pack.traffic();
  const out: PackEvent[] = [];
  while (out.length < n) out.push(...traffic.next(rng, now()));
  return out.slice(0, n);
}

async function post(api: Api, t: DemoTenant, batch: PackEvent[], log: (l: string) => void): Promise<Receipt> {
  for (let attempt = 0; ; attempt++) {
    let status = 0;
    let detail = "";
    let retryAfter = 1;
    try {
      const res = await fetch(`${api.url}/v1/events`, {
        method: "POST",
        headers: { authorization: `Bearer ${t.ingest}`, "content-type": "application/json" },
        body: JSON.stringify(batch),
      });
      status = res.status;
      const text = await res.text();
      if (status === 200) return JSON.parse(text) as Receipt;
      detail = text.slice(0, 300);
      retryAfter = Number(res.headers.get("retry-after")) || 1;
      if (status !== 429 && status < 500) {
        throw new Error(`sending events: POST /v1/events answered ${status}: ${detail}`);
      }
    } catch (err) {
      if (status !== 0) throw err;
      detail = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
    }
    if (attempt >= MAX_RETRIES) {
      throw new Error(
        `sending events: POST /v1/events failed ${attempt + 1} times, last ${status || "no answer"}: ${detail}`,
      );
    }
    log(`sending events: ${status || "no answer"} (${detail.slice(0, 120)}), retrying in ${retryAfter} s`);
    await sleep(retryAfter * 1000);
  }
}

/** Runs the traffic; resolves with the totals when it ends. */
export async function sendTraffic(pack: Pack, tenant: DemoTenant, opts: TrafficOptions): Promise<TrafficTotals> {
  const log = opts.log ?? (() => {});
  const now = opts.now ?? Date.now;
  const api = new Api(tenant.url);
  const rng = seededRandom(opts.seed);
  const traffic = pack.traffic();
  const totals: TrafficTotals = { sent: 0, accepted: 0, duplicates: 0, rejected: 0, catalogChanges: 0 };
  const limit = opts.events ?? Number.POSITIVE_INFINITY;
  const paced = opts.events === undefined;
  const until = opts.seconds > 0 ? Date.now() + opts.seconds * 1000 : Number.POSITIVE_INFINITY;
  const perTick = Math.max(1, Math.round(opts.rate / 4));
  /** Events generated beyond the last tick: the rest of a visit, sent with the next one (at most one visit). */
  let carry: PackEvent[] = [];
  while (totals.sent < limit && Date.now() < until && !opts.signal?.aborted) {
    const started = Date.now();
    const want = Math.min(paced ? perTick : BATCH_MAX, limit - totals.sent);
    const tick = carry;
    while (tick.length < want) tick.push(...traffic.next(rng, now()));
    carry = tick.splice(want);
    for (const change of traffic.catalogChanges?.() ?? []) {
      try {
        const done = await applyCatalogChange(api, tenant, change);
        totals.catalogChanges++;
        log(`catalog: ${change.note}${done === "exists" ? " (already in the catalog)" : ""}`);
      } catch (err) {
        log(`catalog change not made: ${(err as Error).message}`);
      }
    }
    // A tick of a high rate goes as several requests.
    for (let at = 0; at < tick.length; at += BATCH_MAX) {
      const batch = tick.slice(at, at + BATCH_MAX);
      const receipt = await post(api, tenant, batch, log);
      totals.sent += batch.length;
      totals.accepted += receipt.accepted;
      totals.duplicates += receipt.duplicates;
      totals.rejected += receipt.rejected.length;
      if (receipt.rejected.length > 0) {
        const r = receipt.rejected[0];
        log(
          `${receipt.rejected.length} events refused, first ${JSON.stringify(batch[r.index]).slice(0, 200)}: ${r.code} ${r.message}`,
        );
      }
    }
    opts.progress?.(totals);
    if (paced) await sleep(Math.max(0, 250 - (Date.now() - started)));
  }
  return totals;
}
