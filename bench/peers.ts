/**
 * edgepulse (`npm start`'s stack: tools/dev.ts, miniflare serving the Worker
 * on workerd's own socket) against the designs users would pick instead, fed
 * the same event stream in the same run, computing count, sum, p95 and distinct users over a
 * sliding 5 minutes:
 *   1. PostgreSQL direct: raw events inserted in batches; the window computed
 *      by a query (percentile_disc, count(distinct)).
 *   2. Redis direct: per-second bucket hashes (pipelined HINCRBY, a log-bucket
 *      histogram for p95) and PFADD; windows summed at read time.
 *   3. StatsD (the statsd npm daemon) over UDP: counters, timers with
 *      percentiles, sets.
 * For each: sustained events/s, freshness (event → queryable), server CPU per
 * million events, and p95 / distinct error against exact answers.
 *
 *   npm run bench:peers -- [--seconds 6]
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import pg from "pg";
import { addValue, type Bins, freeze, keyOf, quantile, valueOfKey } from "../core/ddsketch";
import { recreateDatabase } from "../test/support/pg";
import { freePort } from "../test/support/ports";
import { createTenant, ROOT, startStack } from "../test/support/stack";
import { type BenchEvent, exact, makeEvents } from "./events";
import { BENCH_ENV, closedLoop } from "./load";
import { cpuSeconds, pidsOf, processNames, processTree } from "./procs";

const { values: args } = parseArgs({ options: { seconds: { type: "string", default: "6" } } });
const SECONDS = Number(args.seconds);
const BATCH = 1000;
const ACCURACY_EVENTS = 20_000;
const WINDOW_MS = 300_000;

interface PeerResult {
  system: string;
  eventsPerSec: number;
  freshnessMs: number;
  freshnessNote: string;
  cpuSecPerMillion: number;
  cpuNote: string;
  p95ErrorPct: number | null;
  distinctErrorPct: number | null;
  note?: string;
}

const pct = (got: number, want: number) => Number(((Math.abs(got - want) / Math.abs(want)) * 100).toFixed(3));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `workers` loops of `step` for SECONDS; returns events written and CPU used by `pids`. */
async function drive(workers: number, pids: number[], step: () => Promise<number>) {
  const cpu0 = cpuSeconds(pids);
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  let events = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (performance.now() < deadline) events += await step();
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  return { eventsPerSec: events / secs, cpuPerMillion: ((cpuSeconds(pids) - cpu0) / events) * 1e6, events };
}

async function edgepulse(load: BenchEvent[], accuracy: BenchEvent[]): Promise<PeerResult> {
  const stack = await startStack({ extraEnv: { ...BENCH_ENV, DATABASE_URL: "", EDGEPULSE_NO_REDIS: "1" } });
  try {
    const k = await createTenant(stack, "peers");
    const headers = { authorization: `Bearer ${k.ingest}`, "content-type": "application/json" };
    const bodies = [JSON.stringify(load.slice(0, BATCH).map((e) => ({ ...e, name: "peer.load", ts: undefined })))];
    // This stack's processes only: dev.ts's node (miniflare, bridges), its workerd, and PGlite.
    const pids = processTree(stack.child.pid as number);
    const cpu0 = cpuSeconds(pids);
    const r = await closedLoop({
      url: `${stack.url}/v1/events`,
      seconds: SECONDS,
      connections: 8,
      bodies,
      headers,
      tally: (t) => (JSON.parse(t) as { accepted: number }).accepted,
    });
    const cpu = ((cpuSeconds(pids) - cpu0) / r.tallied) * 1e6;
    for (let i = 0; i < accuracy.length; i += BATCH) {
      await fetch(`${stack.url}/v1/events`, {
        method: "POST",
        headers,
        body: JSON.stringify(accuracy.slice(i, i + BATCH)),
      });
    }
    // Freshness: a new event is in the live figures as soon as its receipt is back.
    const t0 = performance.now();
    await fetch(`${stack.url}/v1/events`, {
      method: "POST",
      headers,
      body: JSON.stringify([{ name: "peer.fresh", value: 1 }]),
    });
    const got = (await (
      await fetch(`${stack.url}/v1/streams/peer.fresh?window=5m`, { headers: { authorization: `Bearer ${k.read}` } })
    ).json()) as { windows: Record<string, { count: number }> };
    const freshness = performance.now() - t0;
    if (got.windows["5m"].count !== 1) throw new Error("edgepulse freshness probe not visible");
    const a = (await (
      await fetch(`${stack.url}/v1/streams/${accuracy[0].name}?window=5m`, {
        headers: { authorization: `Bearer ${k.read}` },
      })
    ).json()) as { windows: Record<string, { count: number; p95: number; distinct_users: number }> };
    const want = exact(accuracy);
    if (a.windows["5m"].count !== want.count)
      throw new Error(`edgepulse count ${a.windows["5m"].count} != ${want.count}`);
    return {
      system: "edgepulse (npm start: miniflare → workerd, batch 1,000, durable before ack)",
      eventsPerSec: Math.round(r.tallied / r.seconds),
      freshnessMs: Math.round(freshness),
      freshnessNote: "ingest ack + live read (PostgreSQL history: + FLUSH_INTERVAL_MS, 2 s)",
      cpuSecPerMillion: Number(cpu.toFixed(2)),
      cpuNote: `${processNames(pids).join(" + ")} (the npm start stack)`,
      p95ErrorPct: pct(a.windows["5m"].p95, want.p95),
      distinctErrorPct: pct(a.windows["5m"].distinct_users, want.distinct),
    };
  } finally {
    await stack.stop();
  }
}

async function postgresDirect(load: BenchEvent[], accuracy: BenchEvent[]): Promise<PeerResult> {
  const url = await recreateDatabase("edgepulse_bench_peers");
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  await pool.query(
    "CREATE TABLE raw_events (stream text NOT NULL, ts timestamptz NOT NULL, value float8, user_id text)",
  );
  await pool.query("CREATE INDEX raw_events_stream_ts ON raw_events (stream, ts)");
  const insert = (events: BenchEvent[], stream?: string) =>
    pool.query(
      "INSERT INTO raw_events (stream, ts, value, user_id) SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::text[])",
      [
        events.map((e) => stream ?? e.name),
        events.map((e) => new Date(e.ts)),
        events.map((e) => e.value),
        events.map((e) => e.user),
      ],
    );
  const batch = load.slice(0, BATCH).map((e) => ({ ...e, ts: Date.now() }));
  const pids = pidsOf("postgres");
  const d = await drive(4, pids, async () => {
    await insert(batch, "peer.load");
    return BATCH;
  });
  for (let i = 0; i < accuracy.length; i += BATCH) await insert(accuracy.slice(i, i + BATCH));
  const windowQuery = (stream: string) =>
    pool.query<{ n: string; sum: number; p95: number; users: string }>(
      `SELECT count(*) AS n, sum(value) AS sum, percentile_disc(0.95) WITHIN GROUP (ORDER BY value) AS p95,
              count(DISTINCT user_id) AS users
         FROM raw_events WHERE stream = $1 AND ts > now() - interval '5 minutes'`,
      [stream],
    );
  // Freshness for a busy stream: the window query over the loaded stream (5 min of data at the measured rate).
  const t0 = performance.now();
  await windowQuery("peer.load");
  const freshness = performance.now() - t0;
  const a = (await windowQuery(accuracy[0].name)).rows[0];
  const want = exact(accuracy);
  await pool.end();
  return {
    system: "PostgreSQL direct (raw inserts + window query)",
    eventsPerSec: Math.round(d.eventsPerSec),
    freshnessMs: Math.round(freshness),
    freshnessNote: `window query over the busy stream (${d.events.toLocaleString("en-US")} rows)`,
    cpuSecPerMillion: Number(d.cpuPerMillion.toFixed(2)),
    cpuNote: "postgres processes (loader excluded)",
    p95ErrorPct: pct(Number(a.p95), want.p95),
    distinctErrorPct: pct(Number(a.users), want.distinct),
  };
}

async function redisDirect(load: BenchEvent[], accuracy: BenchEvent[]): Promise<PeerResult> {
  const prefix = `peer:${Date.now()}`;
  const clients = Array.from({ length: 4 }, () => new Redis("redis://127.0.0.1:6379"));
  const write = async (r: Redis, events: BenchEvent[], stream?: string) => {
    const p = r.pipeline();
    const touched = new Set<string>();
    for (const e of events) {
      const key = `${prefix}:${stream ?? e.name}:${Math.floor(e.ts / 1000)}`;
      p.hincrby(`${key}:c`, "n", 1);
      p.hincrbyfloat(`${key}:c`, "sum", e.value);
      p.hincrby(`${key}:h`, String(keyOf(e.value)), 1);
      p.pfadd(`${key}:u`, e.user);
      touched.add(key);
    }
    for (const key of touched) for (const s of [":c", ":h", ":u"]) p.expire(`${key}${s}`, 900);
    await p.exec();
  };
  const read = async (r: Redis, stream: string) => {
    const nowSec = Math.floor(Date.now() / 1000);
    const keys = Array.from({ length: 300 }, (_, i) => `${prefix}:${stream}:${nowSec - i}`);
    const p = r.pipeline();
    for (const k of keys) {
      p.hgetall(`${k}:c`);
      p.hgetall(`${k}:h`);
    }
    const res = (await p.exec()) ?? [];
    let n = 0;
    const bins: Bins = new Map();
    for (let i = 0; i < res.length; i += 2) {
      const c = res[i][1] as Record<string, string>;
      n += Number(c.n ?? 0);
      for (const [bk, cnt] of Object.entries(res[i + 1][1] as Record<string, string>))
        addValue(bins, valueOfKey(Number(bk)), Number(cnt));
    }
    const users = await r.pfcount(...keys.map((k) => `${k}:u`));
    return { n, p95: quantile(freeze(bins), 0.95) as number, users };
  };
  const batch = load.slice(0, BATCH).map((e) => ({ ...e, ts: Date.now() }));
  const pids = pidsOf("redis-server");
  let i = 0;
  const d = await drive(4, pids, async () => {
    const r = clients[i++ % clients.length];
    await write(
      r,
      batch.map((e) => ({ ...e, ts: Date.now() })),
      "peer.load",
    );
    return BATCH;
  });
  for (let j = 0; j < accuracy.length; j += BATCH) await write(clients[0], accuracy.slice(j, j + BATCH));
  const t0 = performance.now();
  await read(clients[0], "peer.load");
  const freshness = performance.now() - t0;
  const a = await read(clients[0], accuracy[0].name);
  const want = exact(accuracy);
  for (const c of clients) c.disconnect();
  return {
    system: "Redis direct (per-second hashes + HLL, summed at read)",
    eventsPerSec: Math.round(d.eventsPerSec),
    freshnessMs: Math.round(freshness),
    freshnessNote: "read of 300 per-second buckets (600 HGETALL + PFCOUNT)",
    cpuSecPerMillion: Number(d.cpuPerMillion.toFixed(2)),
    cpuNote: "redis-server (loader excluded)",
    p95ErrorPct: pct(a.p95, want.p95),
    distinctErrorPct: pct(a.users, want.distinct),
    note: a.n === want.count ? undefined : `count ${a.n} of ${want.count}`,
  };
}

async function statsdPeer(load: BenchEvent[], accuracy: BenchEvent[]): Promise<PeerResult> {
  const dir = mkdtempSync(join(tmpdir(), "statsd-"));
  const port = await freePort();
  const mgmt = await freePort();
  const out = join(dir, "flushes.jsonl");
  writeFileSync(out, "");
  const config = join(dir, "config.js");
  writeFileSync(
    config,
    `module.exports = ${JSON.stringify({
      port,
      mgmt_port: mgmt,
      address: "127.0.0.1",
      flushInterval: 1000,
      percentThreshold: [95],
      backends: [join(ROOT, "bench", "statsd-backend.cjs")],
      jsonlFile: out,
      deleteIdleStats: true,
    })};`,
  );
  const daemon: ChildProcess = spawn(process.execPath, [join(ROOT, "node_modules", "statsd", "stats.js"), config], {
    stdio: "ignore",
  });
  try {
    await sleep(1000);
    const sock = createSocket("udp4");
    const send = (lines: string[]) =>
      new Promise<void>((resolve) => {
        sock.send(lines.join("\n"), port, "127.0.0.1", () => resolve());
      });
    const packets = (events: BenchEvent[], stream: string) => {
      const lines = events.flatMap((e) => [`${stream}.latency:${e.value}|ms`, `${stream}.users:${e.user}|s`]);
      const out: string[][] = [];
      for (let i = 0; i < lines.length; i += 30) out.push(lines.slice(i, i + 30)); // ~1 KB datagrams
      return out;
    };
    const loadPackets = packets(load.slice(0, BATCH), "peer_load");
    const pids = [daemon.pid as number];
    let sent = 0;
    const d = await drive(1, pids, async () => {
      for (const p of loadPackets) await send(p);
      sent += BATCH;
      return BATCH;
    });
    await sleep(2500);
    const flushes = () =>
      readFileSync(out, "utf8")
        .split("\n")
        .filter(Boolean)
        .map(
          (l) =>
            JSON.parse(l) as {
              counters: Record<string, number>;
              timer_data: Record<string, Record<string, number>>;
              sets: Record<string, number>;
            },
        );
    const received = flushes().reduce((a, f) => a + (f.timer_data["peer_load.latency"]?.count ?? 0), 0);
    // Accuracy: all accuracy events inside one flush interval (statsd has no windows beyond its flush).
    const before = flushes().length;
    // Paced, so the accuracy batch is not lost to UDP drops (all within one 1 s flush).
    const accPackets = packets(accuracy, "peer_acc");
    for (let i = 0; i < accPackets.length; i++) {
      await send(accPackets[i]);
      if (i % 5 === 4) await sleep(1);
    }
    await sleep(2500);
    const acc = flushes()
      .slice(before)
      .find((f) => f.timer_data["peer_acc.latency"]?.count);
    sock.close();
    const want = exact(accuracy);
    const gotCount = acc?.timer_data["peer_acc.latency"]?.count ?? 0;
    return {
      system: "StatsD (statsd daemon, UDP, 1 s flush)",
      eventsPerSec: Math.round((received / sent) * d.eventsPerSec),
      freshnessMs: 1000,
      freshnessNote: "one flush interval (default 10 s); nothing queryable between flushes",
      cpuSecPerMillion: Number(((d.cpuPerMillion * sent) / Math.max(1, received)).toFixed(2)),
      cpuNote: "statsd daemon (sender excluded)",
      p95ErrorPct: acc && gotCount === want.count ? pct(acc.timer_data["peer_acc.latency"].upper_95, want.p95) : null,
      distinctErrorPct: acc && gotCount === want.count ? pct(acc.sets["peer_acc.users"] ?? 0, want.distinct) : null,
      note: `received ${received.toLocaleString("en-US")} of ${sent.toLocaleString("en-US")} sent (UDP); per-flush aggregates only, no sliding 5-min window${gotCount !== want.count ? `; accuracy batch arrived ${gotCount} of ${want.count}` : ""}`,
    };
  } finally {
    daemon.kill();
  }
}

/** The physical ceiling for the same payload: JSON.parse of a 1,000-event batch, events/s on one core. */
function jsonParseCeiling(load: BenchEvent[]) {
  const body = JSON.stringify(load.slice(0, BATCH));
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 2000) {
    JSON.parse(body);
    n += BATCH;
  }
  return Math.round(n / ((performance.now() - t0) / 1000));
}

async function main() {
  const now = Date.now();
  const load = makeEvents(BATCH, { seed: 1, streams: 1, now, spreadMs: 1000 });
  // The accuracy set: one stream, spread over the last 4 minutes (inside every system's 5-min window).
  const accuracy = makeEvents(ACCURACY_EVENTS, { seed: 2, streams: 1, now, spreadMs: 240_000, prefix: "peer.acc" });
  const ceiling = jsonParseCeiling(load);
  console.log(`JSON.parse ceiling: ${ceiling.toLocaleString("en-US")} events/s`);
  const results: PeerResult[] = [];
  for (const run of [edgepulse, postgresDirect, redisDirect, statsdPeer]) {
    const r = await run(
      load,
      accuracy.map((e) => ({ ...e, ts: Math.max(e.ts, Date.now() - WINDOW_MS + 30_000) })),
    );
    console.log(JSON.stringify(r));
    results.push(r);
  }
  const md = [
    `| system | events/s | freshness | server CPU s / 1M events | p95 error | distinct error |`,
    `|---|---:|---:|---:|---:|---:|`,
    ...results.map(
      (r) =>
        `| ${r.system} | ${r.eventsPerSec.toLocaleString("en-US")} | ${r.freshnessMs.toLocaleString("en-US")} ms | ${r.cpuSecPerMillion} | ${r.p95ErrorPct ?? "n/a"}${r.p95ErrorPct === null ? "" : " %"} | ${r.distinctErrorPct ?? "n/a"}${r.distinctErrorPct === null ? "" : " %"} |`,
    ),
  ].join("\n");
  console.log(`\n${md}\n`);
  for (const r of results)
    console.log(`- ${r.system}: freshness = ${r.freshnessNote}; CPU = ${r.cpuNote}${r.note ? `; ${r.note}` : ""}`);
  writeFileSync(
    join(ROOT, "bench", "results", "peers.json"),
    `${JSON.stringify({ date: new Date().toISOString(), seconds: SECONDS, jsonParseCeiling: ceiling, results }, null, 2)}\n`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
