/**
 * Import benchmark: a 1,000,000-event NDJSON file through the `edgepulse` CLI (sdk/dist/cli.js, built here,
 * run as a child process exactly as a user runs it) against `npm start`'s stack, next to the batch-1,000
 * ingest case of bench/run.ts (closed loop, pre-serialised bodies, 8 connections) measured in the same run
 * on the same stack. The CLI's figure includes reading and parsing the file, ids, batching, gzip (default;
 * also measured with --no-gzip) and waiting for every receipt; the stream's `accepted` counter is read back.
 *
 *   npm run bench:import                      # 1,000,000 events, 6 s of batch ingest
 *   npm run bench:import -- --events 200000   # smaller file
 */
import { spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, rmSync, statSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildCli } from "../sdk/scripts/build.mjs";
import { createTenant, type Stack, startStack } from "../test/support/stack";
import { BENCH_ENV, closedLoop } from "./load";

const { values: args } = parseArgs({
  options: {
    events: { type: "string", default: "1000000" },
    seconds: { type: "string", default: "6" },
  },
});
const EVENTS = Number(args.events);
const SECONDS = Number(args.seconds);

/** Events shaped as bench/run.ts's: a value and one of 5,000 users. */
const event = (name: string, n: number) => ({ name, value: 20 + (n % 480), user: `user-${n % 5000}` });

async function writeNdjson(path: string, name: string, n: number): Promise<number> {
  const out = createWriteStream(path);
  let chunk = "";
  for (let i = 0; i < n; i++) {
    chunk += `${JSON.stringify(event(name, i))}\n`;
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
      chunk = "";
    }
  }
  out.write(chunk);
  await new Promise<void>((r) => out.end(r));
  return statSync(path).size;
}

async function accepted(stack: Stack, read: string, name: string): Promise<number> {
  const res = await fetch(`${stack.url}/v1/streams/${name}?window=1m`, {
    headers: { authorization: `Bearer ${read}` },
  });
  return ((await res.json()) as { counters: { accepted: number } }).counters.accepted;
}

async function runCli(cli: string, stack: Stack, key: string, file: string, extra: string[]) {
  const t0 = performance.now();
  const child = spawn(process.execPath, [cli, "--json", "--url", stack.url, "--key", key, "import", file, ...extra], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const code = await new Promise<number | null>((r) => child.once("close", r));
  const wall = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`import exited ${code}: ${out}`);
  const s = JSON.parse(out) as { accepted: number; duplicates: number; run: { events_per_s: number } };
  return { wall, summary: s, eventsPerSec: Math.round(EVENTS / wall) };
}

async function main() {
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model.trim()}, node ${process.version}; ${EVENTS} events`);
  const cli = await buildCli();
  const dir = mkdtempSync(join(tmpdir(), "edgepulse-bench-import-"));
  const files = {
    gzip: join(dir, "gzip.ndjson"),
    plain: join(dir, "plain.ndjson"),
  };
  const bytes = await writeNdjson(files.gzip, "bench.import.gzip", EVENTS);
  await writeNdjson(files.plain, "bench.import.plain", EVENTS);
  console.log(`files: ${EVENTS} events, ${(bytes / 1e6).toFixed(1)} MB each`);

  const stack = await startStack({ extraEnv: { ...BENCH_ENV, DATABASE_URL: "", EDGEPULSE_NO_REDIS: "1" } });
  try {
    const keys = await createTenant(stack, "bench-import");
    // Warm the streams' actors, as bench/run.ts does, so no case pays a cold start.
    for (const name of ["bench.batch", "bench.import.gzip", "bench.import.plain"]) {
      await fetch(`${stack.url}/v1/events`, {
        method: "POST",
        headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
        body: JSON.stringify([{ name, id: "warm-up" }]),
      });
    }
    const bodies = Array.from({ length: 4 }, (_, v) =>
      JSON.stringify(Array.from({ length: 1000 }, (_, i) => event("bench.batch", v * 1000 + i))),
    );
    const batch = await closedLoop({
      url: `${stack.url}/v1/events`,
      seconds: SECONDS,
      connections: 8,
      bodies,
      headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
      tally: (text) => (JSON.parse(text) as { accepted: number }).accepted,
    });
    const batchRate = Math.round(batch.tallied / batch.seconds);
    console.log(`batch-1,000 ingest (8 connections, ${SECONDS} s): ${batchRate} events/s`);

    const rows = [];
    for (const [label, file, extra] of [
      ["CLI import (gzip bodies, default)", files.gzip, []],
      ["CLI import --no-gzip", files.plain, ["--no-gzip"]],
    ] as const) {
      const r = await runCli(cli, stack, keys.ingest, file, [...extra]);
      const stream = label.includes("no-gzip") ? "bench.import.plain" : "bench.import.gzip";
      const counted = (await accepted(stack, keys.read, stream)) - 1; // the warm-up event
      const row = {
        case: label,
        seconds: Number(r.wall.toFixed(1)),
        eventsPerSec: r.eventsPerSec,
        vsBatch1000: Number((r.eventsPerSec / batchRate).toFixed(2)),
        accepted: r.summary.accepted,
        counted,
      };
      rows.push(row);
      console.log(JSON.stringify(row));
      if (counted !== EVENTS || r.summary.accepted !== EVENTS)
        throw new Error(`counted ${counted}, expected ${EVENTS}`);
    }
    console.log(
      [
        "| case | events/s | ÷ batch-1,000 ingest | wall s | accepted = counted |",
        "|---|---:|---:|---:|:--:|",
        `| batch-1,000 ingest (bench/run.ts's case, 8 connections) | ${batchRate.toLocaleString("en-US")} | 1.00 | ${SECONDS} | yes |`,
        ...rows.map(
          (r) =>
            `| ${r.case} | ${r.eventsPerSec.toLocaleString("en-US")} | ${r.vsBatch1000.toFixed(2)} | ${r.seconds} | ${r.counted === r.accepted ? "yes" : "no"} |`,
        ),
      ].join("\n"),
    );
  } finally {
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
