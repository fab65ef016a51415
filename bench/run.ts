/**
 * Ingest benchmark: events/s through `npm start`'s stack (tools/dev.ts:
 * miniflare serving the Worker on workerd's own socket, no proxy) at several
 * batch sizes, for 1 and 1,000 streams, next to a hello-world Worker
 * (bench/hello) served the same way (`serveWorker`) and measured in the same
 * run; then the accuracy of quantiles and distinct counts against exact
 * answers. CPU and RSS, from /proc, are the stack's processes: the
 * tools/dev.ts node process, its workerd and its embedded PostgreSQL (PGlite).
 *
 *   npm run bench                # short run (~2 min)
 *   npm run bench -- --seconds 20 # longer, steadier run
 */
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { addValue, type Bins, freeze, quantile } from "../core/ddsketch";
import { addUser, estimate, REGISTERS } from "../core/hll";
import { createTenant, freePort, ROOT, type Stack, startStack } from "../test/support/stack";
import { serveWorker } from "../tools/dev";
import { BENCH_ENV, closedLoop, type LoadResult } from "./load";
import { cpuSeconds, processNames, processTree, rssMiB } from "./procs";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "6" },
    connections: { type: "string", default: "16" },
    streams: { type: "string", default: "1,1000" },
    batches: { type: "string", default: "1,10,100,1000" },
    "accuracy-only": { type: "boolean", default: false },
  },
});
const SECONDS = Number(args.seconds);
const CONNECTIONS = Number(args.connections);

function bodiesFor(batch: number, streams: number): string[] {
  const variants = Math.max(1, Math.min(100, Math.ceil(streams / batch)));
  const out: string[] = [];
  let n = 0;
  for (let v = 0; v < variants; v++) {
    const events = [];
    for (let i = 0; i < batch; i++, n++) {
      events.push({ name: `bench.s${n % streams}`, value: 20 + (n % 480), user: `user-${n % 5000}` });
    }
    out.push(JSON.stringify(events));
  }
  return out;
}

/**
 * The sum of the bench streams' `accepted` counters, read from each stream's actor (GET /v1/streams/:name),
 * which made the events durable before the receipt: exact right after the load. The tenant listing
 * (GET /v1/streams) is served by the tenant's hub, which actors update at most once a second, so it can
 * trail the last second's events.
 */
async function acceptedTotal(stack: Stack, read: string, streams: number): Promise<number> {
  if (streams === 0) throw new Error("no streams");
  let total = 0;
  let next = 0;
  let retried = 0;
  const reader = async () => {
    while (next < streams) {
      const name = `bench.s${next++}`;
      for (let attempt = 1; ; attempt++) {
        // An actor that could not answer in time, or a connection reset under load: ask again.
        let failure: string;
        try {
          const res = await fetch(`${stack.url}/v1/streams/${name}?window=1m`, {
            headers: { authorization: `Bearer ${read}` },
          });
          if (res.ok) {
            // Read the body first: `total += await …` would read `total` before awaiting and lose other readers' sums.
            const body = (await res.json()) as { counters: { accepted: number } };
            total += body.counters.accepted;
            break;
          }
          failure = `${res.status} ${await res.text()}`;
        } catch (err) {
          failure = String((err as Error).cause ?? err);
        }
        if (attempt >= 20) throw new Error(`reading ${name}: ${failure}`);
        retried++;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, streams) }, reader));
  if (retried > 0) console.log(`(counters: ${retried} reads asked again)`);
  return total;
}

function accuracy() {
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 2 ** 32;
  };
  const values = Array.from({ length: 1_000_000 }, () => {
    const u = rand() || 1e-12;
    return Math.exp(4 + Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand()));
  });
  const bins: Bins = new Map();
  for (const v of values) addValue(bins, v);
  const sketch = freeze(bins);
  values.sort((a, b) => a - b);
  const quantiles = Object.fromEntries(
    [0.5, 0.9, 0.95, 0.99].map((q) => {
      const exact = values[Math.max(0, Math.ceil(q * values.length) - 1)];
      return [`p${q * 100}`, Math.abs((quantile(sketch, q) as number) - exact) / exact];
    }),
  );
  // Distinct users: several independent trials per size, so the spread shows, not one lucky draw.
  const distinct = Object.fromEntries(
    [
      [1000, 30],
      [10_000, 30],
      [100_000, 20],
      [1_000_000, 5],
    ].map(([n, trials]) => {
      const errs: number[] = [];
      for (let t = 0; t < trials; t++) {
        const regs = new Uint8Array(REGISTERS);
        for (let i = 0; i < n; i++) addUser(regs, `visitor-${t}-${i}`);
        errs.push(Math.abs(estimate(regs) - n) / n);
      }
      const rms = Math.sqrt(errs.reduce((a, e) => a + e * e, 0) / errs.length);
      return [n, { trials, rms, max: Math.max(...errs) }];
    }),
  );
  return { quantiles, distinct, sketchBins: sketch.keys.length };
}

async function main() {
  if (args["accuracy-only"]) {
    console.log("accuracy:", JSON.stringify(accuracy(), null, 2));
    return;
  }
  const machine = `${cpus().length} × ${cpus()[0]?.model.trim()}, node ${process.version}`;
  console.log(`machine: ${machine}; ${SECONDS}s per case, ${CONNECTIONS} connections`);

  // The ceiling: bench/hello, served exactly as tools/dev.ts serves edgepulse (miniflare, workerd's own socket).
  const hello = await serveWorker({
    config: join(ROOT, "bench", "hello", "wrangler.toml"),
    port: await freePort(),
    logLevel: "error",
  });
  let helloLoad: LoadResult;
  try {
    await closedLoop({ url: `${hello.url}/`, seconds: 1, connections: CONNECTIONS }); // warm-up
    helloLoad = await closedLoop({ url: `${hello.url}/`, seconds: SECONDS, connections: CONNECTIONS });
  } finally {
    await hello.dispose();
  }
  console.log(
    `hello-world Worker (miniflare, workerd's socket): ${Math.round(helloLoad.rps)} req/s (p50 ${helloLoad.p50.toFixed(1)} ms)`,
  );

  const stack = await startStack({ extraEnv: { ...BENCH_ENV, DATABASE_URL: "", EDGEPULSE_NO_REDIS: "1" } });
  const rows: Array<Record<string, number | string>> = [];
  let processes: Array<{ name: string; rssMiB: number }> = [];
  try {
    // CPU and RSS: this stack's processes (dev.ts's node, its workerd, PGlite), found once it is up.
    const pids = processTree(stack.child.pid as number);
    const names = processNames(pids);
    console.log(`CPU and RSS of: ${names.join(" + ")}`);
    for (const streams of args.streams.split(",").map(Number)) {
      // One tenant per stream count, its actors created before measuring: the figures are sustained ingest,
      // not actor cold starts (reported separately as warm-up).
      const keys = await createTenant(stack, `bench-${streams}`);
      const warm = performance.now();
      for (let i = 0; i < streams; i += 1000) {
        const events = Array.from({ length: Math.min(1000, streams - i) }, (_, k) => ({ name: `bench.s${i + k}` }));
        await fetch(`${stack.url}/v1/events`, {
          method: "POST",
          headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
          body: JSON.stringify(events),
        });
      }
      const warmupMs = Math.round(performance.now() - warm);
      console.log(`warm-up: ${streams} actors created in ${warmupMs} ms`);
      let countedBefore = await acceptedTotal(stack, keys.read, streams);
      for (const batch of args.batches.split(",").map(Number)) {
        const connections = batch >= 1000 ? Math.min(CONNECTIONS, 8) : CONNECTIONS;
        const cpu0 = cpuSeconds(pids);
        const r = await closedLoop({
          url: `${stack.url}/v1/events`,
          seconds: SECONDS,
          connections,
          bodies: bodiesFor(batch, streams),
          headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
          tally: (text) => (JSON.parse(text) as { accepted: number }).accepted,
        });
        const cpuPerMillion = ((cpuSeconds(pids) - cpu0) / Math.max(1, r.tallied)) * 1e6;
        const rss = rssMiB(pids);
        const countedNow = await acceptedTotal(stack, keys.read, streams);
        const counted = countedNow - countedBefore;
        countedBefore = countedNow;
        const row = {
          streams,
          batch,
          requestsPerSec: Math.round(r.rps),
          eventsPerSec: Math.round(r.tallied / r.seconds),
          vsHello: Number((r.rps / helloLoad.rps).toFixed(3)),
          p50ms: Number(r.p50.toFixed(1)),
          p99ms: Number(r.p99.toFixed(1)),
          non2xx: r.failed,
          cpuSecPerMillion: Number(cpuPerMillion.toFixed(2)),
          rssMiB: rss,
          acknowledged: r.tallied,
          counted,
          warmupMs,
        };
        rows.push(row);
        console.log(JSON.stringify(row));
      }
    }
    processes = pids.map((pid, i) => ({ name: names[i], rssMiB: rssMiB([pid]) }));
    console.log(`RSS at the end, by process: ${processes.map((p) => `${p.name} ${p.rssMiB} MiB`).join(", ")}`);
  } finally {
    await stack.stop();
  }
  const acc = accuracy();
  console.log("accuracy:", JSON.stringify(acc));

  const md = [
    `| streams | batch | req/s | events/s | req/s ÷ hello-world | p50 ms | p99 ms | CPU s / 1M events | RSS MiB | non-2xx | acknowledged = counted |`,
    `|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:--:|`,
    ...rows.map(
      (r) =>
        `| ${r.streams} | ${r.batch} | ${r.requestsPerSec} | ${r.eventsPerSec.toLocaleString("en-US")} | ${r.vsHello} | ${r.p50ms} | ${r.p99ms} | ${r.cpuSecPerMillion} | ${r.rssMiB} | ${r.non2xx} | ${r.acknowledged === r.counted ? "yes" : `NO (${r.acknowledged} vs ${r.counted})`} |`,
    ),
  ].join("\n");
  console.log(`\nhello-world Worker: ${Math.round(helloLoad.rps)} req/s\n\n${md}`);
  writeFileSync(
    join(ROOT, "bench", "results", "ingest.json"),
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        machine,
        seconds: SECONDS,
        served: "npm start's stack (tools/dev.ts): miniflare, workerd's own socket",
        processes,
        hello: helloLoad,
        rows,
        accuracy: acc,
      },
      null,
      2,
    )}\n`,
  );
}

// Exit once done: the hello-world run imported wrangler and miniflare into this process.
main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
