/**
 * The local stack's ceiling, in one run: (a) a hello-world Worker served by
 * miniflare on workerd's own socket, the way `npm start` serves edgepulse;
 * (b) single-event ingest (batch 1, one stream) through `npm start`'s stack;
 * both driven by the same closed-loop generator (bench/load.ts).
 *
 *   npm run bench:stack                     # 6 s per case, 16 connections
 *   npm run bench:stack -- --seconds 20     # longer, steadier
 *
 * Results: bench/results/stack.json.
 */
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createTenant, freePort, ROOT, startStack } from "../test/support/stack";
import { serveWorker } from "../tools/dev";
import { BENCH_ENV, closedLoop, type LoadResult } from "./load";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "6" },
    connections: { type: "string", default: "16" },
  },
});
const SECONDS = Number(args.seconds);
const CONNECTIONS = Number(args.connections);

const summary = (r: LoadResult) => ({
  requestsPerSec: Math.round(r.rps),
  p50ms: Number(r.p50.toFixed(1)),
  p99ms: Number(r.p99.toFixed(1)),
  requests: r.requests,
  non2xx: r.failed,
});

async function main() {
  const machine = `${cpus().length} × ${cpus()[0]?.model.trim()}, node ${process.version}`;
  console.log(`machine: ${machine}; ${SECONDS}s per case, ${CONNECTIONS} connections`);

  // (a) The physical ceiling: bench/hello, served exactly as tools/dev.ts serves edgepulse.
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
  console.log(`hello-world Worker on workerd's socket (miniflare): ${Math.round(helloLoad.rps)} req/s`);

  // (b) Single-event ingest through `npm start`'s stack, set up as `npm run bench:ingest` sets it up.
  const stack = await startStack({ extraEnv: { ...BENCH_ENV, DATABASE_URL: "", EDGEPULSE_NO_REDIS: "1" } });
  let ingest: LoadResult;
  let counted: number;
  try {
    const keys = await createTenant(stack, "bench-stack");
    const headers = { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" };
    const body = JSON.stringify([{ name: "bench.stack", value: 42, user: "user-1" }]);
    // The actor exists and the key is cached before measuring: sustained ingest, not a cold start.
    await closedLoop({ url: `${stack.url}/v1/events`, seconds: 1, connections: CONNECTIONS, bodies: [body], headers });
    const acceptedSoFar = async () => {
      const res = await fetch(`${stack.url}/v1/streams/bench.stack`, {
        headers: { authorization: `Bearer ${keys.read}` },
      });
      return ((await res.json()) as { counters: { accepted: number } }).counters.accepted;
    };
    const before = await acceptedSoFar();
    ingest = await closedLoop({
      url: `${stack.url}/v1/events`,
      seconds: SECONDS,
      connections: CONNECTIONS,
      bodies: [body],
      headers,
      tally: (text) => (JSON.parse(text) as { accepted: number }).accepted,
    });
    counted = (await acceptedSoFar()) - before;
  } finally {
    await stack.stop();
  }
  const ratio = Number((ingest.rps / helloLoad.rps).toFixed(3));
  console.log(
    `single-event ingest through the local stack: ${Math.round(ingest.rps)} req/s ` +
      `(${ratio} × hello-world); acknowledged ${ingest.tallied}, counted ${counted}`,
  );

  writeFileSync(
    join(ROOT, "bench", "results", "stack.json"),
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        machine,
        seconds: SECONDS,
        connections: CONNECTIONS,
        hello: { served: "miniflare, workerd's own socket", ...summary(helloLoad) },
        ingest: {
          served: "npm start's stack (tools/dev.ts), batch 1, one stream",
          ...summary(ingest),
          acknowledged: ingest.tallied,
          counted,
        },
        ingestVsHello: ratio,
      },
      null,
      2,
    )}\n`,
  );
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
