/**
 * Scale-out of one hot stream, in one run on this machine:
 *
 * 1. Ceiling: a hello-world Worker on workerd's own socket (as bench/stack.ts),
 *    then single-event requests to one stream through `npm start`'s stack,
 *    closed loop: on one shard (the stream bounded to 1), and spread over
 *    2 and 4 shards. Ratio of each to the hello-world rate.
 * 2. A 10× step, open loop: BASE requests/s for STEADY s, then 10 × BASE for
 *    STEP s, then BASE again until the stream has folded back; the stream is
 *    sized at TARGET requests/s per shard, so the step needs a split. Reports
 *    when the split came (after the step began), p99 acknowledgement latency
 *    in the steady phase, in the 10 s from the step and in the rest of the
 *    step (the same load, split settled), the fold, and totals: events
 *    acknowledged = events counted.
 * 3. Baseline: the same events (same ids, times, values, users) sent again to
 *    a stream bounded to one shard, in large batches: every figure of the 1 h
 *    window must be identical.
 *
 *   npm run bench:scale                          # defaults below
 *   npm run bench:scale -- --seconds 10 --base 40 --target 100
 *
 * Results: bench/results/scale.json.
 */
import { writeFileSync } from "node:fs";
import { Agent } from "node:http";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createTenant, freePort, ROOT, startStack } from "../test/support/stack";
import { serveWorker } from "../tools/dev";
import { BENCH_ENV, closedLoop, type LoadResult, percentile, send } from "./load";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    connections: { type: "string", default: "16" },
    base: { type: "string", default: "30" },
    target: { type: "string", default: "100" },
    steady: { type: "string", default: "10" },
    step: { type: "string", default: "20" },
    fold: { type: "string", default: "10000" },
  },
});
const SECONDS = Number(args.seconds);
const CONNECTIONS = Number(args.connections);
const BASE = Number(args.base);
const TARGET = Number(args.target);
const STEADY = Number(args.steady);
const STEP = Number(args.step);
const FOLD_MS = Number(args.fold);

interface Scaling {
  shards: number;
  decisions: Array<{ at: string; from: number; to: number; reason: string }>;
}
interface Snapshot {
  windows: Record<string, Record<string, number | null>>;
  counters: { accepted: number; duplicates: number };
  scaling: Scaling;
}

const summary = (r: LoadResult) => ({
  requestsPerSec: Math.round(r.rps),
  p50ms: Number(r.p50.toFixed(1)),
  p99ms: Number(r.p99.toFixed(1)),
  requests: r.requests,
  non2xx: r.failed,
  acknowledged: r.tallied,
});

const post = (agent: Agent, url: string, headers: Record<string, string>, body: string) =>
  send(agent, url, "POST", headers, body);

interface Sent {
  at: number;
  latency: number;
  ok: boolean;
  accepted: number;
}

/**
 * Open loop: requests start on schedule (rate(t) per second), whatever the replies; every one is awaited.
 * `stop(t)` ends the run.
 */
async function openLoop(
  url: string,
  headers: Record<string, string>,
  body: (i: number) => string,
  rate: (t: number) => number,
  stop: (t: number) => Promise<boolean> | boolean,
): Promise<{ sent: Sent[]; startWall: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const sent: Promise<Sent>[] = [];
  const startWall = Date.now();
  const start = performance.now();
  let i = 0;
  let due = 0;
  for (;;) {
    const t = (performance.now() - start) / 1000;
    if (await stop(t)) break;
    due += rate(t) / 100;
    while (due >= 1) {
      due--;
      const at = performance.now();
      const n = i++;
      sent.push(
        post(agent, url, headers, body(n)).then(
          (r) => ({
            at: (at - start) / 1000,
            latency: performance.now() - at,
            ok: r.status === 200,
            accepted: r.status === 200 ? (JSON.parse(r.body) as { accepted: number }).accepted : 0,
          }),
          () => ({ at: (at - start) / 1000, latency: performance.now() - at, ok: false, accepted: 0 }),
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const all = await Promise.all(sent);
  agent.destroy();
  return { sent: all, startWall };
}

const p99 = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    0.99,
  );
const round = (x: number, d = 1) => Number(x.toFixed(d));

async function main() {
  const machine = `${cpus().length} × ${cpus()[0]?.model.trim()}, node ${process.version}`;
  console.log(`machine: ${machine}`);

  // 1a. The physical ceiling.
  const hello = await serveWorker({
    config: join(ROOT, "bench", "hello", "wrangler.toml"),
    port: await freePort(),
    logLevel: "error",
  });
  let helloLoad: LoadResult;
  try {
    await closedLoop({ url: `${hello.url}/`, seconds: 1, connections: CONNECTIONS });
    helloLoad = await closedLoop({ url: `${hello.url}/`, seconds: SECONDS, connections: CONNECTIONS });
  } finally {
    await hello.dispose();
  }
  console.log(`hello-world Worker: ${Math.round(helloLoad.rps)} req/s`);

  const stack = await startStack({
    extraEnv: { ...BENCH_ENV, DATABASE_URL: "", EDGEPULSE_NO_REDIS: "1", SHARD_FOLD_AFTER_MS: String(FOLD_MS) },
  });
  try {
    const keys = await createTenant(stack, "bench-scale");
    const ingestHeaders = { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" };
    const snapshot = async (name: string): Promise<Snapshot> => {
      const res = await fetch(`${stack.url}/v1/streams/${name}`, { headers: { authorization: `Bearer ${keys.read}` } });
      return (await res.json()) as Snapshot;
    };
    const configure = async (name: string, scaling: Record<string, number>) => {
      const res = await fetch(`${stack.url}/v1/streams/${name}/config`, {
        method: "PUT",
        headers: { authorization: `Bearer ${keys.admin}`, "content-type": "application/json" },
        body: JSON.stringify({ scaling }),
      });
      if (!res.ok) throw new Error(`config ${res.status}: ${await res.text()}`);
    };

    // 1b. Closed loop, single-event requests, 1 / 2 / 4 shards.
    const ceiling: Record<string, ReturnType<typeof summary> & { counted: number; vsHello: number }> = {};
    for (const shards of [1, 2, 4]) {
      const name = `scale.closed.${shards}`;
      await configure(name, { min_shards: shards, max_shards: shards });
      const body = JSON.stringify([{ name, value: 42, user: "user-1" }]);
      const url = `${stack.url}/v1/events`;
      await closedLoop({ url, seconds: 1, connections: CONNECTIONS, bodies: [body], headers: ingestHeaders });
      const before = (await snapshot(name)).counters.accepted;
      const r = await closedLoop({
        url,
        seconds: SECONDS,
        connections: CONNECTIONS,
        bodies: [body],
        headers: ingestHeaders,
        tally: (text) => (JSON.parse(text) as { accepted: number }).accepted,
      });
      const counted = (await snapshot(name)).counters.accepted - before;
      ceiling[`${shards}`] = { ...summary(r), counted, vsHello: round(r.rps / helloLoad.rps, 3) };
      console.log(
        `${shards} shard(s): ${Math.round(r.rps)} req/s (${round(r.rps / helloLoad.rps, 3)} × hello), p99 ${round(r.p99)} ms; acknowledged ${r.tallied}, counted ${counted}`,
      );
    }

    // 2. The 10× step, open loop, automatic scaling.
    const name = "scale.step";
    await configure(name, { target_requests_per_s: TARGET });
    const events: string[] = [];
    const body = (i: number) => {
      const e = JSON.stringify([{ name, id: `s-${i}`, ts: Date.now(), value: 1 + (i % 997), user: `u-${i % 5000}` }]);
      events[i] = e;
      return e;
    };
    let folded = false;
    let lastPoll = 0;
    const { sent, startWall: startedAt } = await openLoop(
      `${stack.url}/v1/events`,
      ingestHeaders,
      body,
      (t) => (t >= STEADY && t < STEADY + STEP ? 10 * BASE : BASE),
      async (t) => {
        if (t < STEADY + STEP) return false;
        if (t - lastPoll < 1) return folded;
        lastPoll = t;
        folded = (await snapshot(name)).scaling.shards === 1;
        return folded || t > STEADY + STEP + FOLD_MS / 1000 + 60;
      },
    );
    const final = await snapshot(name);
    const acknowledged = sent.reduce((a, s) => a + s.accepted, 0);
    const decisions = [...final.scaling.decisions].reverse();
    const firstSplit = decisions.find((d) => d.to > d.from);
    const splitAfter = firstSplit ? (Date.parse(firstSplit.at) - startedAt) / 1000 - STEADY : null;
    const steady = sent.filter((s) => s.at >= 2 && s.at < STEADY).map((s) => s.latency);
    const during = sent.filter((s) => s.at >= STEADY && s.at < STEADY + 10).map((s) => s.latency);
    // The same high load once the split has settled: the steady state the step moves to.
    const after = sent.filter((s) => s.at >= STEADY + 10 && s.at < STEADY + STEP).map((s) => s.latency);
    const step = {
      base: BASE,
      peak: 10 * BASE,
      targetPerShard: TARGET,
      requests: sent.length,
      failed: sent.filter((s) => !s.ok).length,
      acknowledged,
      counted: final.counters.accepted,
      splitAfterStepS: splitAfter === null ? null : round(splitAfter),
      p99SteadyMs: round(p99(steady)),
      p99DuringSplitMs: round(p99(during)),
      p99Ratio: round(p99(during) / p99(steady), 2),
      p99AfterSplitMs: round(p99(after)),
      p99DuringVsAfter: round(p99(during) / p99(after), 2),
      foldedBack: folded,
      decisions: decisions.map((d) => ({
        t: round((Date.parse(d.at) - startedAt) / 1000),
        from: d.from,
        to: d.to,
        reason: d.reason,
      })),
    };
    console.log(JSON.stringify(step));

    // 3. The same events through one shard, in batches of 500: every figure must match.
    const baseline = "scale.baseline";
    await configure(baseline, { max_shards: 1 });
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    const all = events.filter(Boolean).map((e) => ({ ...(JSON.parse(e) as object[])[0], name: baseline }));
    for (let i = 0; i < all.length; i += 500) {
      const r = await post(agent, `${stack.url}/v1/events`, ingestHeaders, JSON.stringify(all.slice(i, i + 500)));
      if (r.status !== 200) throw new Error(`baseline ${r.status}: ${r.body}`);
    }
    agent.destroy();
    const a = (await snapshot(name)).windows["1h"];
    const b = (await snapshot(baseline)).windows["1h"];
    const fields = ["count", "value_count", "sum", "min", "max", "p50", "p90", "p95", "p99", "distinct_users"];
    const same = fields.every((f) => a[f] === b[f]);
    const sentIds = events.filter(Boolean).length;
    console.log(
      `baseline (one shard, same events): identical figures: ${same}; sharded count ${a.count}, baseline ${b.count}, requests sent ${sentIds}`,
    );

    writeFileSync(
      join(ROOT, "bench", "results", "scale.json"),
      `${JSON.stringify(
        {
          date: new Date().toISOString(),
          machine,
          seconds: SECONDS,
          connections: CONNECTIONS,
          hello: { served: "miniflare, workerd's own socket", ...summary(helloLoad) },
          singleEventIngest: ceiling,
          step,
          baseline: { identical: same, fields, sharded: a, oneShard: b },
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await stack.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
