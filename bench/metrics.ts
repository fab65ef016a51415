/**
 * Prometheus scrape benchmark: what GET /v1/metrics costs on `npm start`'s stack, next to GET /v1/streams
 * (the same hub, one window, JSON) measured in the same run. A tenant with S streams, each with two
 * dimension keys of 10 values (so S × 2 breakdowns, of which ≤ 30 run a scrape), and a tenant with the
 * same streams and no dimensions. Sequential requests (a scraper asks once per interval), median and p95.
 *
 *   npm run bench:metrics                     # 100 streams, 40 scrapes each way
 *   npm run bench:metrics -- --streams 500
 */
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { createTenant, type Stack, startStack } from "../test/support/stack";
import { BENCH_ENV } from "./load";

const { values: args } = parseArgs({
  options: { streams: { type: "string", default: "100" }, scrapes: { type: "string", default: "40" } },
});
const STREAMS = Number(args.streams);
const SCRAPES = Number(args.scrapes);

async function fill(stack: Stack, ingest: string, dims: boolean): Promise<void> {
  const events = [];
  for (let s = 0; s < STREAMS; s++) {
    for (let i = 0; i < 50; i++) {
      events.push({
        name: `bench.metrics.s${s}`,
        value: 10 + i,
        user: `u${i % 13}`,
        ...(dims ? { dims: { country: `c${i % 10}`, plan: `p${i % 10}` } } : {}),
      });
    }
  }
  for (let i = 0; i < events.length; i += 1000) {
    const res = await fetch(`${stack.url}/v1/events`, {
      method: "POST",
      headers: { authorization: `Bearer ${ingest}`, "content-type": "application/json" },
      body: JSON.stringify(events.slice(i, i + 1000)),
    });
    if (res.status !== 200) throw new Error(`ingest: ${res.status} ${await res.text()}`);
  }
}

async function timed(stack: Stack, path: string, key: string) {
  const ms: number[] = [];
  let bytes = 0;
  let series = "";
  let dropped = "";
  for (let i = 0; i < SCRAPES; i++) {
    const t0 = performance.now();
    const res = await fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
    const body = await res.text();
    ms.push(performance.now() - t0);
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${body.slice(0, 200)}`);
    bytes = body.length;
    series = res.headers.get("x-edgepulse-series") ?? "";
    dropped = res.headers.get("x-edgepulse-series-dropped") ?? "";
  }
  ms.sort((a, b) => a - b);
  return { median: ms[Math.floor(ms.length / 2)], p95: ms[Math.ceil(ms.length * 0.95) - 1], bytes, series, dropped };
}

async function main() {
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model.trim()}, node ${process.version}; ${STREAMS} streams`);
  const stack = await startStack({ extraEnv: { ...BENCH_ENV, MAX_STREAMS_PER_TENANT: String(STREAMS * 2) } });
  try {
    const plain = await createTenant(stack, "bench-metrics-plain");
    const withDims = await createTenant(stack, "bench-metrics-dims");
    await fill(stack, plain.ingest, false);
    await fill(stack, withDims.ingest, true);
    // The hub learns every stream within about a second; wait until the page lists them all.
    for (;;) {
      const res = await fetch(`${stack.url}/v1/streams?limit=1000`, {
        headers: { authorization: `Bearer ${withDims.read}` },
      });
      const body = (await res.json()) as { streams: Array<{ count?: number }> };
      if (body.streams.filter((s) => (s.count ?? 0) > 0).length === STREAMS) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const rows = [
      ["GET /v1/streams?limit=1000 (baseline)", await timed(stack, "/v1/streams?limit=1000", plain.read)],
      ["GET /v1/metrics, no dimensions", await timed(stack, "/v1/metrics", plain.read)],
      ["GET /v1/metrics, 2 keys × 10 values", await timed(stack, "/v1/metrics", withDims.read)],
    ] as const;
    const base = rows[0][1].median;
    console.log("\n| request | median ms | p95 ms | × baseline | bytes | series | dropped (budget) |");
    console.log("|---|---|---|---|---|---|---|");
    for (const [name, r] of rows) {
      console.log(
        `| ${name} | ${r.median.toFixed(1)} | ${r.p95.toFixed(1)} | ${(r.median / base).toFixed(2)} | ${r.bytes} | ${r.series || "—"} | ${r.dropped || "—"} |`,
      );
    }
  } finally {
    await stack.stop();
  }
}

await main();
