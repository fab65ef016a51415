/**
 * The capacity model of one stream (docs/capacity.md): events/s → shards,
 * relays per second into the primary, a p99 acknowledgement estimate, and the
 * cost per million events on Cloudflare's published prices, next to Workers
 * Analytics Engine and Tinybird for the same volume. A simulation of the
 * combining shards (each with at most one relay in flight, a relay's time
 * growing with the events it carries), not a measurement: its inputs are the
 * figures measured by the benchmarks, stated below, and can be changed.
 *
 *   npm run capacity
 *   npm run capacity -- --apply-us 4 --commit-ms 0.5 --call-ms 1 --target 500
 *
 * Prices (USD, paid plans, as published by each vendor in 2026; included
 * monthly allowances are ignored, so these are marginal costs):
 *   Workers:            $0.30 / M requests, $0.02 / M CPU-ms
 *   Durable Objects:    $0.15 / M requests (each RPC call), $12.50 / M GB-s (128 MB per object)
 *   DO SQLite storage:  $1.00 / M rows written, $0.001 / M rows read
 *   Queues:             $0.40 / M operations (write + read + delete per message of ≤ 64 KB)
 *   Analytics Engine:   $0.25 / M data points written (one per event), plus the Worker request
 *   Tinybird:           legacy Pro rates, $0.07 / GB written (current Developer plans are sized by vCPU)
 */
import { parseArgs } from "node:util";
import { MAX_SHARDS } from "../core/shards";

const { values: args } = parseArgs({
  options: {
    // Primary: time to apply one event in a large group commit (µs, measured: ~248,000 events/s in
    // batches of 1,000 on this machine), fixed cost of one group commit (ms), and cost of one call into
    // an object (ms: Cloudflare's documented soft limit of ~1,000 requests/s per object).
    "apply-us": { type: "string", default: "4" },
    "commit-ms": { type: "string", default: "0.5" },
    "call-ms": { type: "string", default: "1" },
    // Worker CPU per ingest request (ms) and per event (µs): validation, routing, the receipt.
    "worker-ms": { type: "string", default: "0.5" },
    "worker-event-us": { type: "string", default: "2" },
    target: { type: "string", default: "500" },
    "event-bytes": { type: "string", default: "200" },
  },
});
const APPLY_US = Number(args["apply-us"]);
const COMMIT_MS = Number(args["commit-ms"]);
const CALL_MS = Number(args["call-ms"]);
const WORKER_MS = Number(args["worker-ms"]);
const WORKER_EVENT_US = Number(args["worker-event-us"]);
const TARGET = Number(args.target);
const EVENT_BYTES = Number(args["event-bytes"]);

const PRICE = {
  workerRequest: 0.3 / 1e6,
  workerCpuMs: 0.02 / 1e6,
  doRequest: 0.15 / 1e6,
  doGbS: 12.5 / 1e6,
  rowWritten: 1.0 / 1e6,
  queueOp: 0.4 / 1e6,
  aePoint: 0.25 / 1e6,
  tinybirdGb: 0.07,
};
const OBJECT_GB = 0.125;

export interface Scenario {
  eventsPerSec: number;
  batch: number;
  withIds: boolean;
}

export interface Outcome {
  requestsPerSec: number;
  shards: number;
  requestsPerShard: number;
  relaysPerSec: number;
  eventsPerRelay: number;
  cycleMs: number;
  p99AckMs: number;
  costPerMillion: { edgepulse: number; queued: number; analyticsEngine: number; tinybird: number };
}

/**
 * Steady state. R = E / batch requests/s spread over N = ceil(R / target) shards (≤ MAX_SHARDS).
 * The primary works in group-commit cycles: a cycle takes the calls that arrived during the previous
 * one, so its length C satisfies C = commit + calls(C) × call + E × C × apply.
 *   N = 1 (no shards): every request is a call: C = commit / (1 − R × call − E × apply).
 *   N > 1: each shard has one relay in flight, so a cycle takes at most N calls:
 *          C = (commit + N × call) / (1 − E × apply), relays/s = N / C (never more than R).
 * Overloaded when the denominator reaches 0. An acknowledgement waits for the cycle in progress and
 * then its own: p99 ≈ 2 C + the Worker's time.
 */
export function model(s: Scenario): Outcome {
  const R = s.eventsPerSec / s.batch;
  const shards = Math.min(MAX_SHARDS, Math.max(1, Math.ceil(R / TARGET)));
  const apply = APPLY_US / 1e6;
  const call = CALL_MS / 1e3;
  const commit = COMMIT_MS / 1e3;
  let cycle: number;
  let relaysPerSec: number;
  if (shards === 1) {
    const free = 1 - R * call - s.eventsPerSec * apply;
    cycle = free > 0 ? commit / free : Number.POSITIVE_INFINITY;
    relaysPerSec = R;
  } else {
    const free = 1 - s.eventsPerSec * apply;
    cycle = free > 0 ? (commit + shards * call) / free : Number.POSITIVE_INFINITY;
    relaysPerSec = Math.min(R, shards / cycle);
  }
  const workerMs = WORKER_MS + (s.batch * WORKER_EVENT_US) / 1000;
  // A shard is itself one object: past ~1 / call requests/s it is overloaded too.
  const shardOverloaded = shards > 1 && R / shards >= 1 / call;
  const p99AckMs = !Number.isFinite(cycle) || shardOverloaded ? Number.POSITIVE_INFINITY : 2 * cycle * 1000 + workerMs;

  // Cost per million events (marginal: included allowances ignored).
  const requests = 1e6 / s.batch;
  const relays = shards > 1 ? (relaysPerSec / s.eventsPerSec) * 1e6 : 0;
  // A commit per cycle while calls keep arriving, never more commits than calls.
  const commits = Number.isFinite(cycle) ? (Math.min(1 / cycle, relaysPerSec) / s.eventsPerSec) * 1e6 : 0;
  const workerCost = requests * (PRICE.workerRequest + workerMs * PRICE.workerCpuMs);
  const activeSeconds = 1e6 / s.eventsPerSec; // the primary and every shard stay awake throughout
  const duration = activeSeconds * (1 + (shards > 1 ? shards : 0)) * OBJECT_GB * PRICE.doGbS;
  // Rows written: one per new event id (dedup), and per commit about three (the second, meta, outbox).
  const idRows = s.withIds ? 1e6 : 0;
  const edgepulse =
    workerCost + (requests + relays) * PRICE.doRequest + duration + (idRows + commits * 3) * PRICE.rowWritten;
  // Queued (opt-in): one message per request, three operations each; a consumer invocation per 100
  // messages, one call into the primary per invocation and stream; the primary awake, no shards.
  const batches = requests / 100;
  const queued =
    workerCost +
    requests * 3 * PRICE.queueOp +
    batches * (PRICE.workerRequest + PRICE.doRequest) +
    activeSeconds * OBJECT_GB * PRICE.doGbS +
    (idRows + batches * 3) * PRICE.rowWritten;
  const analyticsEngine = requests * PRICE.workerRequest + 1e6 * PRICE.aePoint;
  const tinybird = ((1e6 * EVENT_BYTES) / 1e9) * PRICE.tinybirdGb;
  return {
    requestsPerSec: R,
    shards,
    requestsPerShard: R / shards,
    relaysPerSec,
    eventsPerRelay: s.eventsPerSec / relaysPerSec,
    cycleMs: cycle * 1000,
    p99AckMs,
    costPerMillion: { edgepulse, queued, analyticsEngine, tinybird },
  };
}

function main() {
  const money = (x: number) => `$${x.toFixed(x < 0.1 ? 3 : 2)}`;
  const int = (x: number) => Math.round(x).toLocaleString("en-US");
  const rows = [
    "| events/s | batch | ids | requests/s | shards | requests/s per shard | relays/s into the primary | events per relay | commit cycle | p99 ack (model) | edgepulse $/M events | queued $/M | Analytics Engine $/M | Tinybird $/M |",
    "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const eventsPerSec of [1_000, 10_000, 50_000, 150_000]) {
    for (const batch of [1, 20]) {
      for (const withIds of [true, false]) {
        const o = model({ eventsPerSec, batch, withIds });
        const ok = Number.isFinite(o.p99AckMs);
        rows.push(
          `| ${int(eventsPerSec)} | ${batch} | ${withIds ? "yes" : "no"} | ${int(o.requestsPerSec)} | ${o.shards} | ${int(o.requestsPerShard)} | ${ok ? int(o.relaysPerSec) : "–"} | ${ok ? o.eventsPerRelay.toFixed(1) : "–"} | ${ok ? `${o.cycleMs.toFixed(1)} ms` : "–"} | ${ok ? `${o.p99AckMs.toFixed(0)} ms` : "overloaded"} | ${ok ? money(o.costPerMillion.edgepulse) : "–"} | ${money(o.costPerMillion.queued)} | ${money(o.costPerMillion.analyticsEngine)} | ${money(o.costPerMillion.tinybird)} |`,
        );
      }
    }
  }
  console.log(
    `inputs: apply ${APPLY_US} µs/event, commit ${COMMIT_MS} ms, ${CALL_MS} ms per call into an object, worker ${WORKER_MS} ms + ${WORKER_EVENT_US} µs/event per request, ${TARGET} requests/s per shard, ${EVENT_BYTES} B per event\n`,
  );
  console.log(rows.join("\n"));
  const apply = APPLY_US / 1e6;
  console.log(
    `\nceilings: one stream applies at most ~${int(1 / apply)} events/s (its primary's apply time); it takes at most ${MAX_SHARDS} shards × ~${int(1000 / CALL_MS)} requests/s = ~${int((MAX_SHARDS * 1000) / CALL_MS)} requests/s; a tenant is the sum of its streams (no shared object on the ingest path beyond the rate limiter).`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) main();
