/**
 * Ingest benchmark: events/s through `npm start`'s stack (wrangler dev →
 * workerd) at several batch sizes, for 1 and 100 streams, next to a
 * hello-world Worker's request rate measured in the same run; then the
 * accuracy of quantiles and distinct counts against exact answers.
 *
 *   npm run bench                # short run (~2 min)
 *   npm run bench -- --seconds 20 # longer, steadier run
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { addValue, type Bins, freeze, quantile } from "../core/ddsketch";
import { addUser, estimate, REGISTERS } from "../core/hll";
import { createTenant, freePort, ROOT, type Stack, startStack } from "../test/support/stack";
import { BENCH_ENV, closedLoop } from "./load";
import { cpuSeconds, directWorkerdUrl, pidsOf, rssMiB } from "./procs";

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

async function startHello(): Promise<{ url: string; port: number; stop: () => void }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js"),
      "dev",
      "--config",
      join(ROOT, "bench", "hello", "wrangler.toml"),
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--show-interactive-dev-session=false",
      "--log-level",
      "error",
    ],
    { cwd: ROOT, detached: true, stdio: "ignore", env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false" } },
  );
  const url = `http://127.0.0.1:${port}/`;
  for (let t = 0; t < 600; t++) {
    try {
      if ((await fetch(url)).ok) break;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return { url, port, stop: () => process.kill(-(child.pid as number), "SIGTERM") };
}

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

async function acceptedTotal(stack: Stack, read: string, streams: number): Promise<number> {
  let total = 0;
  let cursor = "";
  for (;;) {
    const res = await fetch(`${stack.url}/v1/streams?limit=1000&cursor=${cursor}`, {
      headers: { authorization: `Bearer ${read}` },
    });
    const body = (await res.json()) as {
      streams: Array<{ counters?: { accepted: number } }>;
      next_cursor: string | null;
    };
    // An actor that could not answer in time is listed as unavailable: ask that page again.
    if (body.streams.some((s) => s.counters === undefined)) continue;
    for (const s of body.streams) total += s.counters?.accepted ?? 0;
    if (!body.next_cursor) break;
    cursor = body.next_cursor;
  }
  if (streams === 0) throw new Error("no streams");
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
      const exact = values[Math.floor(q * (values.length - 1))];
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

  const hello = await startHello();
  const helloLoad = await closedLoop({ url: hello.url, seconds: SECONDS, connections: CONNECTIONS });
  const helloDirectUrl = await directWorkerdUrl(hello.port, "/");
  const helloDirect = helloDirectUrl
    ? await closedLoop({ url: `${helloDirectUrl}/`, seconds: SECONDS, connections: CONNECTIONS })
    : null;
  hello.stop();
  console.log(`hello-world Worker: ${Math.round(helloLoad.rps)} req/s (p50 ${helloLoad.p50.toFixed(1)} ms)`);
  if (helloDirect) console.log(`hello-world Worker, straight to workerd: ${Math.round(helloDirect.rps)} req/s`);

  const stack = await startStack({ extraEnv: { ...BENCH_ENV, DATABASE_URL: "", EDGEPULSE_NO_REDIS: "1" } });
  const rows: Array<Record<string, number | string>> = [];
  try {
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
        const pids = [
          ...pidsOf("workerd serve"),
          ...pidsOf("wrangler.js dev"),
          ...pidsOf("wrangler/wrangler-dist/cli.js"),
        ];
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
    // The same single-stream cases straight to workerd's socket, bypassing wrangler dev's proxy.
    const direct = await directWorkerdUrl(stack.port, "/healthz");
    if (direct) {
      const keys = await createTenant(stack, "bench-direct");
      let before = 0;
      for (const batch of [1, 1000]) {
        const r = await closedLoop({
          url: `${direct}/v1/events`,
          seconds: SECONDS,
          connections: batch >= 1000 ? Math.min(CONNECTIONS, 8) : CONNECTIONS,
          bodies: bodiesFor(batch, 1),
          headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
          tally: (text) => (JSON.parse(text) as { accepted: number }).accepted,
        });
        const row = {
          streams: "1 (straight to workerd)",
          batch,
          requestsPerSec: Math.round(r.rps),
          eventsPerSec: Math.round(r.tallied / r.seconds),
          vsHello: Number((r.rps / (helloDirect?.rps ?? helloLoad.rps)).toFixed(3)),
          p50ms: Number(r.p50.toFixed(1)),
          p99ms: Number(r.p99.toFixed(1)),
          non2xx: r.failed,
          cpuSecPerMillion: "–",
          rssMiB: "–",
          acknowledged: r.tallied,
          counted: (await acceptedTotal(stack, keys.read, 1)) - before,
        };
        before += row.counted;
        rows.push(row);
        console.log(JSON.stringify(row));
      }
    }
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
    `${JSON.stringify({ date: new Date().toISOString(), machine, seconds: SECONDS, hello: helloLoad, rows, accuracy: acc }, null, 2)}\n`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
