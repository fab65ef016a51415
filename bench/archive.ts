/**
 * Raw archive benchmark, on `npm start`'s stack (tools/dev.ts: miniflare serving the Worker on workerd's own
 * socket), in three parts measured in one run:
 *
 * 1. Ingest CPU per million events, archive on vs off. A fresh stack per case (no external PostgreSQL, as
 *    bench/run.ts: PGlite for history; no Redis), `ARCHIVE_ENABLED=0` or `1` (ARCHIVE_FLUSH_MS at its
 *    default), rounds alternating off, on, off, on to spread drift over both. Each case: a warm-up (and,
 *    archive on, its segments written), `--idle` seconds with no load to measure the stack's idle CPU,
 *    then a closed loop of batch-1,000 requests to one stream for `--seconds`; CPU is the stack's
 *    processes (dev.ts's node, workerd, PGlite; bench/procs.ts) from the start of the loop to its end, and
 *    for archive on until the stream reports `archive.pending_events` 0 (the segment writes after the load
 *    are part of the archive's cost). That drain can wait up to ARCHIVE_FLUSH_MS (10 s) for the last
 *    segment's timer, so its idle share (idle CPU/s × drain s) is shown apart, and a second ratio without
 *    it; the goal's ratio counts it all. Checks: acknowledged = the stream's `accepted` counter; archive
 *    on: the manifest (GET /v1/archive) counts sum to `accepted`.
 * 2. Replay rate. A stack on the machine's PostgreSQL (a fresh database), archive on: `--events` events
 *    with ids, timestamps spread over 2 hours ending 3 hours ago, through POST /v1/events?mode=backfill in
 *    batches of 1,000 (4 requests in flight); waited for until the manifest counts them all and the
 *    history API sums to them; then POST /v1/streams/:name/replay over those 2 hours, GET …/replay polled
 *    every 50 ms until `done`. Replay rate = events ÷ (POST → done seen). The backfill's own rate is the
 *    reference. Check: the history API's minutes over the range are the same before and after.
 * 3. PostgreSQL source lag. On the same stack: a table (id bigserial, amount numeric, created_at), a
 *    `postgres` pull source on it (cursor id, interval_ms 1000, the minimum; max_records 1000), and a writer
 *    in this process inserting `--rows-per-second` rows/s (every 20 ms a batch) for `--rows` rows, noting
 *    each batch's commit time. GET /v1/sources/:id is polled every 50 ms for `events_delivered`. A row's
 *    lag = the first poll (its reply's arrival) whose `events_delivered` ≥ the row's ordinal − its batch's
 *    commit. So lag includes up to 50 ms of polling granularity (plus the poll's own round trip), and once
 *    the source has caught up it is bounded below by its interval_ms (1 s) between polls. Check: the
 *    stream's `accepted` counter = rows inserted (exactly once).
 *
 *   npm run bench:archive                                    # five stacks in turn: several minutes
 *   npm run bench:archive -- --seconds 20 --events 500000    # steadier, longer
 *
 * Prints one markdown table per part and a summary line per goal; writes bench/results/archive.json.
 */
import { writeFileSync } from "node:fs";
import { Agent } from "node:http";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { createTestDatabase } from "../test/support/pg";
import { createTenant, type Keys, ROOT, type Stack, startStack } from "../test/support/stack";
import { BENCH_ENV, closedLoop, percentile, send } from "./load";
import { cpuSeconds, processNames, processTree } from "./procs";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    idle: { type: "string", default: "2" },
    rounds: { type: "string", default: "2" },
    connections: { type: "string", default: "8" },
    events: { type: "string", default: "200000" },
    rows: { type: "string", default: "50000" },
    "rows-per-second": { type: "string", default: "5000" },
  },
});
const SECONDS = Number(args.seconds);
const WARMUP_S = Number(args.warmup);
const IDLE_S = Number(args.idle);
const ROUNDS = Number(args.rounds);
const CONNECTIONS = Number(args.connections);
const EVENTS = Number(args.events);
const ROWS = Number(args.rows);
const ROWS_PER_SEC = Number(args["rows-per-second"]);
const BATCH = 1000;
/** The goal of part 1: ingest CPU with the archive on at most this many times that with it off. */
const CPU_GOAL = 1.2;
/** Part 3: the writer's batch interval and the source's poll interval (its minimum). */
const WRITE_TICK_MS = 20;
const STATUS_POLL_MS = 50;
const SOURCE_INTERVAL_MS = 1000;
/** Part 2: backfilled events span 2 hours ending 3 hours ago (older than the live windows' hour). */
const BACKFILL_SPAN_MS = 2 * 3_600_000;
const BACKFILL_END_AGO_MS = 3 * 3_600_000;
const BACKFILL_IN_FLIGHT = 4;
/** How long any wait for the stack to catch up may take before the run fails. */
const WAIT_LIMIT_MS = 300_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const r2 = (n: number) => Math.round(n * 100) / 100;

// Stacks still running, stopped on Ctrl-C, SIGTERM or a failure (they run detached: a terminal's Ctrl-C
// does not reach them, so without this they would outlive the benchmark).
const live = new Set<Stack>();
let stopping = false;
async function stopAll(): Promise<void> {
  await Promise.allSettled([...live].map((s) => s.stop()));
  live.clear();
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.error(`\n${signal}: stopping the stacks…`);
    void stopAll().finally(() => process.exit(130));
  });
}
process.on("unhandledRejection", (err) => {
  console.error(err);
  void stopAll().finally(() => process.exit(1));
});

async function withStack<T>(extraEnv: Record<string, string>, fn: (stack: Stack) => Promise<T>): Promise<T> {
  const stack = await startStack({ extraEnv });
  live.add(stack);
  try {
    return await fn(stack);
  } finally {
    live.delete(stack);
    await stack.stop();
  }
}

/** An answer that says the request itself was wrong (4xx): asking again would not help. */
class RequestError extends Error {}

async function api<T>(stack: Stack, method: string, path: string, key: string, body?: unknown): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let failure: string;
    try {
      const res = await fetch(`${stack.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      if (res.ok) return JSON.parse(text) as T;
      if (res.status < 500) throw new RequestError(`${method} ${path}: ${res.status} ${text}`);
      failure = `${res.status} ${text}`;
    } catch (err) {
      if (err instanceof RequestError) throw err;
      // A connection reset or an actor that could not answer in time, under load: ask again.
      failure = String((err as Error).cause ?? err);
    }
    // Only reads are asked again: a POST that failed may still have taken effect (a second source, a replay).
    if (method !== "GET" || attempt >= 10) throw new Error(`${method} ${path}: ${failure}`);
    await sleep(100);
  }
}

interface StreamView {
  counters: { accepted: number; backfilled?: number; duplicates: number };
  windows: Record<string, { count: number; sum: number | null }>;
  archive: { enabled: boolean; pending_events: number; segments_written: number; last_error: string | null };
}
const streamView = (stack: Stack, keys: Keys, name: string) =>
  api<StreamView>(stack, "GET", `/v1/streams/${name}?window=1h`, keys.read);

/** Polls `check` every `everyMs` until it returns a value other than undefined; fails after WAIT_LIMIT_MS. */
async function until<T>(what: string, everyMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const t0 = performance.now();
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (performance.now() - t0 > WAIT_LIMIT_MS)
      throw new Error(`${what}: not reached within ${WAIT_LIMIT_MS / 1000} s`);
    await sleep(everyMs);
  }
}

/** The sum of the manifest's `count` over the stream's segments overlapping [from, to), every page. */
async function manifestTotal(stack: Stack, keys: Keys, stream: string, from: number, to: number) {
  let events = 0;
  let segments = 0;
  let cursor: string | null = null;
  do {
    const q = `stream=${stream}&from=${from}&to=${to}&limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const page: { segments: Array<{ count: number }>; next_cursor: string | null } = await api(
      stack,
      "GET",
      `/v1/archive?${q}`,
      keys.read,
    );
    for (const s of page.segments) events += s.count;
    segments += page.segments.length;
    cursor = page.next_cursor;
  } while (cursor);
  return { events, segments };
}

/**
 * Waits until the stream's actor holds no event not yet in a written segment; returns when it saw that.
 * Asked every 250 ms: the asking is charged to the stack's CPU too, and may last ARCHIVE_FLUSH_MS (10 s).
 */
async function archiveDrained(stack: Stack, keys: Keys, stream: string): Promise<number> {
  return until(`${stream}: archive.pending_events 0`, 250, async () => {
    const v = await streamView(stack, keys, stream);
    if (v.archive.last_error) console.log(`(archive last_error: ${v.archive.last_error})`);
    return v.archive.pending_events === 0 ? performance.now() : undefined;
  });
}

// ---------------------------------------------------------------------------------------------------------
// Part 1: ingest CPU, archive on vs off.
// ---------------------------------------------------------------------------------------------------------

interface CpuCase {
  round: number;
  archive: "on" | "off";
  events: number;
  eventsPerSec: number;
  p50ms: number;
  p99ms: number;
  non2xx: number;
  loadCpuSec: number;
  drainSec: number;
  drainCpuSec: number;
  /** The stack's CPU per second with no load (measured before the load, after the warm-up). */
  idleCpuPerSec: number;
  cpuSecPerMillion: number;
  acknowledged: number;
  counted: number;
  /** Archive on: the manifest's total against the stream's whole `accepted` (warm-up included). */
  manifest: { events: number; segments: number; accepted: number } | null;
  processes: string;
}

/** Events shaped as bench/run.ts's and bench/import.ts's: a value and one of 5,000 users; 4 bodies in rotation. */
function bodies(name: string): string[] {
  return Array.from({ length: 4 }, (_, v) =>
    JSON.stringify(
      Array.from({ length: BATCH }, (_, i) => {
        const n = v * BATCH + i;
        return { name, value: 20 + (n % 480), user: `user-${n % 5000}` };
      }),
    ),
  );
}

async function cpuCase(round: number, archive: "on" | "off"): Promise<CpuCase> {
  const env = {
    ...BENCH_ENV,
    DATABASE_URL: "",
    EDGEPULSE_NO_REDIS: "1",
    ARCHIVE_ENABLED: archive === "on" ? "1" : "0",
  };
  return withStack(env, async (stack) => {
    const keys = await createTenant(stack, `bench-archive-${archive}-${round}`);
    const stream = "bench.archive";
    const pids = processTree(stack.child.pid as number);
    const load = (seconds: number) =>
      closedLoop({
        url: `${stack.url}/v1/events`,
        seconds,
        connections: CONNECTIONS,
        bodies: bodies(stream),
        headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
        tally: (text) => (JSON.parse(text) as { accepted: number }).accepted,
      });
    const caseStart = Date.now();
    // Warm-up: the actor created, workerd's code hot; archive on, the warm-up's segments written before measuring.
    await load(WARMUP_S);
    const status = await streamView(stack, keys, stream);
    if (status.archive.enabled !== (archive === "on")) {
      throw new Error(
        `ARCHIVE_ENABLED=${env.ARCHIVE_ENABLED} not applied: archive.enabled is ${status.archive.enabled}`,
      );
    }
    if (archive === "on") await archiveDrained(stack, keys, stream);
    // The stack's own idle CPU (PGlite, history flushes, dev.ts): what the drain's waiting costs with no work.
    const i0 = cpuSeconds(pids);
    await sleep(IDLE_S * 1000);
    const idleCpuPerSec = (cpuSeconds(pids) - i0) / IDLE_S;
    const before = (await streamView(stack, keys, stream)).counters.accepted;

    const cpu0 = cpuSeconds(pids);
    const r = await load(SECONDS);
    const loadEnd = performance.now();
    const cpuLoad = cpuSeconds(pids) - cpu0;
    let drainSec = 0;
    let drainCpuSec = 0;
    if (archive === "on") {
      const drained = await archiveDrained(stack, keys, stream);
      drainSec = (drained - loadEnd) / 1000;
      drainCpuSec = cpuSeconds(pids) - cpu0 - cpuLoad;
    }
    const after = await streamView(stack, keys, stream);
    const counted = after.counters.accepted - before;
    let manifest: CpuCase["manifest"] = null;
    if (archive === "on") {
      const m = await manifestTotal(stack, keys, stream, caseStart - 60_000, Date.now() + 60_000);
      manifest = { ...m, accepted: after.counters.accepted };
    }
    const row: CpuCase = {
      round,
      archive,
      events: r.tallied,
      eventsPerSec: Math.round(r.tallied / r.seconds),
      p50ms: r2(r.p50),
      p99ms: r2(r.p99),
      non2xx: r.failed,
      loadCpuSec: r2(cpuLoad),
      drainSec: r2(drainSec),
      drainCpuSec: r2(drainCpuSec),
      idleCpuPerSec: r2(idleCpuPerSec),
      cpuSecPerMillion: r2(((cpuLoad + drainCpuSec) / Math.max(1, r.tallied)) * 1e6),
      acknowledged: r.tallied,
      counted,
      manifest,
      processes: processNames(pids).join(" + "),
    };
    console.log(JSON.stringify(row));
    if (counted !== r.tallied) throw new Error(`archive ${archive}: acknowledged ${r.tallied}, counted ${counted}`);
    if (manifest && manifest.events !== manifest.accepted) {
      throw new Error(`archive on: manifest holds ${manifest.events} events, the stream accepted ${manifest.accepted}`);
    }
    return row;
  });
}

// ---------------------------------------------------------------------------------------------------------
// Part 2: backfill, then replay.
// ---------------------------------------------------------------------------------------------------------

const post = (agent: Agent, url: string, headers: Record<string, string>, body: string) =>
  send(agent, url, "POST", headers, body);

interface HistoryPoint {
  t: string;
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  p50: number | null;
  p99: number | null;
  distinct_users: number | null;
}

async function history(stack: Stack, keys: Keys, stream: string, from: number, to: number) {
  const h = await api<{ points: HistoryPoint[] }>(
    stack,
    "GET",
    `/v1/streams/${stream}/history?step=1m&from=${from}&to=${to}`,
    keys.read,
  );
  return {
    points: h.points,
    count: h.points.reduce((a, p) => a + p.count, 0),
    sum: h.points.reduce((a, p) => a + (p.sum ?? 0), 0),
  };
}

interface ReplayStatus {
  state: string;
  segments_total: number;
  segments_done: number;
  events_read: number;
  minutes_written: number;
  error: string | null;
}

async function replayPart(stack: Stack, keys: Keys) {
  const stream = "bench.backfill";
  const to = Math.floor((Date.now() - BACKFILL_END_AGO_MS) / 60_000) * 60_000;
  const from = to - BACKFILL_SPAN_MS;
  const batches = Math.ceil(EVENTS / BATCH);
  const body = (b: number) =>
    JSON.stringify(
      Array.from({ length: Math.min(BATCH, EVENTS - b * BATCH) }, (_, i) => {
        const n = b * BATCH + i;
        return {
          id: `bf-${n}`,
          name: stream,
          ts: from + Math.floor((n * BACKFILL_SPAN_MS) / EVENTS),
          value: 20 + (n % 480),
          user: `user-${n % 5000}`,
        };
      }),
    );
  const agent = new Agent({ keepAlive: true, maxSockets: BACKFILL_IN_FLIGHT });
  const headers = { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" };
  let next = 0;
  let accepted = 0;
  let duplicates = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: BACKFILL_IN_FLIGHT }, async () => {
      while (next < batches) {
        const b = next++;
        const text = body(b);
        for (let attempt = 1; ; attempt++) {
          const res = await post(agent, `${stack.url}/v1/events?mode=backfill`, headers, text);
          if (res.status === 200) {
            const r = JSON.parse(res.body) as { accepted: number; duplicates: number; rejected: unknown[] };
            if (r.rejected.length > 0)
              throw new Error(`backfill batch ${b}: rejected ${JSON.stringify(r.rejected[0])}`);
            accepted += r.accepted;
            duplicates += r.duplicates;
            break;
          }
          // 503 stream_unavailable (a backfill waiting on PostgreSQL): nothing counted, the same ids sent again.
          if (res.status !== 503 || attempt >= 20) throw new Error(`backfill batch ${b}: ${res.status} ${res.body}`);
          await sleep(200);
        }
      }
    }),
  );
  const acked = performance.now();
  agent.destroy();
  const backfillSec = (acked - t0) / 1000;
  console.log(`backfill: ${fmt(accepted)} events acknowledged in ${backfillSec.toFixed(1)} s`);
  if (accepted !== EVENTS || duplicates !== 0) {
    throw new Error(`backfill: accepted ${accepted}, duplicates ${duplicates}, sent ${EVENTS}`);
  }

  // Archived (manifest) and in history (PostgreSQL's minutes through the history API).
  const manifest = await until("backfill in the archive", 200, async () => {
    const m = await manifestTotal(stack, keys, stream, from, to);
    return m.events === EVENTS ? m : undefined;
  });
  const archivedSec = (performance.now() - t0) / 1000;
  const before = await until("backfill in history", 200, async () => {
    const h = await history(stack, keys, stream, from, to);
    return h.count === EVENTS ? h : undefined;
  });
  const settledSec = (performance.now() - t0) / 1000;
  const view = await streamView(stack, keys, stream);
  console.log(
    `backfill archived (${manifest.segments} segments) after ${archivedSec.toFixed(1)} s, in history after ${settledSec.toFixed(1)} s; counters.backfilled ${view.counters.backfilled}`,
  );
  if (view.counters.backfilled !== EVENTS)
    throw new Error(`counters.backfilled ${view.counters.backfilled}, sent ${EVENTS}`);

  // Replay the range from the archive.
  const r0 = performance.now();
  await api(stack, "POST", `/v1/streams/${stream}/replay`, keys.admin, { from, to });
  let polls = 0;
  const done = await until("replay done", STATUS_POLL_MS, async () => {
    const { replay } = await api<{ replay: ReplayStatus }>(stack, "GET", `/v1/streams/${stream}/replay`, keys.read);
    polls++;
    if (replay.state === "failed") throw new Error(`replay failed: ${replay.error ?? JSON.stringify(replay)}`);
    return replay.state === "done" ? { replay, at: performance.now() } : undefined;
  });
  const replaySec = (done.at - r0) / 1000;
  const after = await history(stack, keys, stream, from, to);
  const key = (p: HistoryPoint) => JSON.stringify([p.t, p.count, p.sum, p.min, p.max]);
  const figures = (p: HistoryPoint) => JSON.stringify([p.p50, p.p99, p.distinct_users]);
  const beforeByT = new Map(before.points.map((p) => [p.t, p]));
  const pointsDiffer = after.points.filter((p) => {
    const b = beforeByT.get(p.t);
    return b === undefined || key(b) !== key(p);
  }).length;
  const sketchesDiffer = after.points.filter((p) => {
    const b = beforeByT.get(p.t);
    return b !== undefined && figures(b) !== figures(p);
  }).length;
  const result = {
    events: EVENTS,
    range: { from: new Date(from).toISOString(), to: new Date(to).toISOString() },
    backfill: {
      seconds: r2(backfillSec),
      eventsPerSec: Math.round(EVENTS / backfillSec),
      archivedAfterSec: r2(archivedSec),
      inHistoryAfterSec: r2(settledSec),
      segments: manifest.segments,
    },
    replay: {
      seconds: r2(replaySec),
      eventsPerSec: Math.round(EVENTS / replaySec),
      statusPolls: polls,
      ...done.replay,
    },
    history: {
      minutes: before.points.length,
      countBefore: before.count,
      countAfter: after.count,
      sumBefore: before.sum,
      sumAfter: after.sum,
      minutesDiffering: pointsDiffer + Math.max(0, before.points.length - after.points.length),
      minutesWithOtherPercentilesOrDistinct: sketchesDiffer,
    },
  };
  console.log(JSON.stringify(result));
  if (done.replay.events_read !== EVENTS) throw new Error(`replay read ${done.replay.events_read} events of ${EVENTS}`);
  if (after.count !== before.count || after.sum !== before.sum) {
    throw new Error(
      `history changed by the replay: count ${before.count} → ${after.count}, sum ${before.sum} → ${after.sum}`,
    );
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// Part 3: PostgreSQL source lag.
// ---------------------------------------------------------------------------------------------------------

interface SourceView {
  id: string;
  state: string;
  status: {
    events_produced: number;
    events_delivered: number;
    duplicates: number;
    pending: number;
    last_error: unknown;
    rejected: Record<string, number>;
  };
}

async function sourcePart(stack: Stack, keys: Keys, databaseUrl: string) {
  const stream = "pg.rows";
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    await db.query("DROP TABLE IF EXISTS bench_rows");
    await db.query(
      "CREATE TABLE bench_rows (id bigserial PRIMARY KEY, amount numeric NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    );
    const source = await api<SourceView>(stack, "POST", "/v1/sources", keys.admin, {
      kind: "postgres",
      name: "bench rows",
      connection_string: databaseUrl,
      table: "bench_rows",
      cursor: "id",
      interval_ms: SOURCE_INTERVAL_MS,
      max_records: 1000,
      mapping: { name: stream, value: "$.amount", ts: "$.created_at" },
    });

    // The status poller: (reply arrival, events_delivered), every STATUS_POLL_MS.
    const polls: Array<{ at: number; delivered: number }> = [];
    let polling = true;
    let lastView: SourceView | null = null;
    let pollError: Error | null = null;
    const poller = (async () => {
      const p0 = performance.now();
      for (let k = 1; polling; k++) {
        const v = await api<SourceView>(stack, "GET", `/v1/sources/${source.id}`, keys.admin);
        lastView = v;
        polls.push({ at: performance.now(), delivered: v.status.events_delivered });
        if (v.state === "failed") throw new Error(`source failed: ${JSON.stringify(v.status.last_error)}`);
        await sleep(Math.max(0, p0 + k * STATUS_POLL_MS - performance.now()));
      }
    })().catch((err: Error) => {
      pollError = err;
    });
    const pollFailed = () => {
      if (pollError) throw pollError;
    };

    // The writer: every WRITE_TICK_MS, the rows due by then (so a slow insert is caught up, not dropped).
    const batches: Array<{ committedAt: number; first: number; count: number }> = [];
    let inserted = 0;
    let amountSum = 0;
    let dense = true;
    let lastId: number | null = null;
    const w0 = performance.now();
    for (let tick = 1; inserted < ROWS; tick++) {
      pollFailed();
      await sleep(Math.max(0, w0 + tick * WRITE_TICK_MS - performance.now()));
      const due = Math.min(ROWS, Math.floor(((performance.now() - w0) / 1000) * ROWS_PER_SEC));
      const n = due - inserted;
      if (n <= 0) continue;
      const r = await db.query<{ id: string; amount: string }>(
        "INSERT INTO bench_rows (amount) SELECT (random() * 1000)::int FROM generate_series(1, $1) RETURNING id, amount",
        [n],
      );
      const committedAt = performance.now();
      const ids = r.rows.map((x) => Number(x.id)).sort((a, b) => a - b);
      for (const x of r.rows) amountSum += Number(x.amount);
      if (ids[ids.length - 1] - ids[0] + 1 !== n || (lastId !== null && ids[0] !== lastId + 1)) dense = false;
      lastId = ids[ids.length - 1];
      batches.push({ committedAt, first: inserted + 1, count: n });
      inserted += n;
    }
    const writeSec = (batches[batches.length - 1].committedAt - w0) / 1000;
    console.log(`writer: ${fmt(inserted)} rows in ${batches.length} batches, ${writeSec.toFixed(1)} s`);
    await until("source delivered every row", 100, async () => {
      pollFailed();
      return (polls[polls.length - 1]?.delivered ?? 0) >= ROWS ? true : undefined;
    });
    polling = false;
    await poller;
    pollFailed();

    // Lag per row: the first poll whose events_delivered reaches the row's ordinal, minus its batch's commit.
    // (Ordinals count rows in insert order: with one writer the ids are dense, ordinal = id − first id + 1.)
    const at = polls.map((p) => p.at);
    const reached: number[] = [];
    let high = 0;
    for (const p of polls) {
      high = Math.max(high, p.delivered);
      reached.push(high);
    }
    const firstPollReaching = (ordinal: number) => {
      let lo = 0;
      let hi = reached.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (reached[mid] >= ordinal) hi = mid;
        else lo = mid + 1;
      }
      return at[lo];
    };
    const lags: number[] = [];
    for (const b of batches) {
      for (let o = b.first; o < b.first + b.count; o++) lags.push(firstPollReaching(o) - b.committedAt);
    }
    lags.sort((a, b) => a - b);

    const s = await streamView(stack, keys, stream);
    const v = lastView as SourceView | null;
    const result = {
      rows: inserted,
      targetRowsPerSec: ROWS_PER_SEC,
      achievedRowsPerSec: Math.round(inserted / writeSec),
      batches: batches.length,
      idsDense: dense,
      lagMs: {
        p50: Math.round(percentile(lags, 0.5)),
        p95: Math.round(percentile(lags, 0.95)),
        p99: Math.round(percentile(lags, 0.99)),
        max: Math.round(lags[lags.length - 1]),
      },
      statusPolls: polls.length,
      note: `lag includes up to ${STATUS_POLL_MS} ms of polling granularity (plus the status request's round trip) and, once the source has caught up, is bounded below by its interval_ms (${SOURCE_INTERVAL_MS} ms, the minimum)`,
      delivered: v?.status.events_delivered ?? null,
      duplicates: v?.status.duplicates ?? null,
      rejected: v?.status.rejected ?? null,
      accepted: s.counters.accepted,
      streamSum: s.windows["1h"]?.sum ?? null,
      amountSum,
    };
    console.log(JSON.stringify(result));
    if (s.counters.accepted !== inserted)
      throw new Error(`stream accepted ${s.counters.accepted}, rows inserted ${inserted}`);
    if (s.windows["1h"] && s.windows["1h"].sum !== amountSum) {
      throw new Error(`stream sum ${s.windows["1h"].sum}, rows' amounts sum to ${amountSum}`);
    }
    return result;
  } finally {
    await db.end();
  }
}

// ---------------------------------------------------------------------------------------------------------

async function main() {
  const machine = `${cpus().length} × ${cpus()[0]?.model.trim()}, node ${process.version}`;
  console.log(
    `machine: ${machine}; part 1: ${ROUNDS} rounds × (off, on), ${WARMUP_S} s warm-up + ${SECONDS} s each, ${CONNECTIONS} connections; part 2: ${fmt(EVENTS)} events; part 3: ${fmt(ROWS)} rows at ${fmt(ROWS_PER_SEC)}/s`,
  );

  // Part 1.
  const cases: CpuCase[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const archive of ["off", "on"] as const) {
      console.log(`part 1, round ${round}, archive ${archive}: starting a stack`);
      cases.push(await cpuCase(round, archive));
    }
  }
  const totals = (a: "on" | "off") => {
    const cs = cases.filter((c) => c.archive === a);
    const cpu = cs.reduce((x, c) => x + c.loadCpuSec + c.drainCpuSec, 0);
    // The drain's CPU less what the stack burns idle over as many seconds (secondary: the goal counts it all).
    const idle = cs.reduce((x, c) => x + Math.min(c.drainCpuSec, c.idleCpuPerSec * c.drainSec), 0);
    const events = cs.reduce((x, c) => x + c.events, 0);
    return {
      cpu,
      events,
      perMillion: (cpu / Math.max(1, events)) * 1e6,
      perMillionLessIdleDrain: ((cpu - idle) / Math.max(1, events)) * 1e6,
    };
  };
  const off = totals("off");
  const on = totals("on");
  const ratio = on.perMillion / off.perMillion;
  const ratioLessIdleDrain = on.perMillionLessIdleDrain / off.perMillionLessIdleDrain;

  // Parts 2 and 3: one stack on the machine's PostgreSQL, archive on.
  const databaseUrl = await createTestDatabase("edgepulse_bench_archive");
  const { replay, source } = await withStack(
    { ...BENCH_ENV, DATABASE_URL: databaseUrl, EDGEPULSE_NO_REDIS: "1", ARCHIVE_ENABLED: "1" },
    async (stack) => {
      const keys = await createTenant(stack, "bench-archive-pg");
      console.log("part 2: backfill, then replay");
      const replay = await replayPart(stack, keys);
      console.log("part 3: PostgreSQL source lag");
      const source = await sourcePart(stack, keys, databaseUrl);
      return { replay, source };
    },
  );

  const yes = (ok: boolean, detail: string) => (ok ? `yes (${detail})` : `NO (${detail})`);
  const part1 = [
    "| round | archive | events | events/s | p50 ms | p99 ms | load CPU s | drain s | drain CPU s | idle CPU s/s | CPU s / 1M events | acknowledged = counted | manifest = accepted |",
    "|---:|:--:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:--:|:--:|",
    ...cases.map(
      (c) =>
        `| ${c.round} | ${c.archive} | ${fmt(c.events)} | ${fmt(c.eventsPerSec)} | ${c.p50ms} | ${c.p99ms} | ${c.loadCpuSec} | ${c.archive === "on" ? c.drainSec : "—"} | ${c.archive === "on" ? c.drainCpuSec : "—"} | ${c.idleCpuPerSec} | ${c.cpuSecPerMillion} | ${yes(c.acknowledged === c.counted, fmt(c.counted))} | ${c.manifest ? yes(c.manifest.events === c.manifest.accepted, `${fmt(c.manifest.events)} in ${c.manifest.segments} segments`) : "—"} |`,
    ),
    `| all | off | ${fmt(off.events)} | | | | | | | | **${r2(off.perMillion)}** | | |`,
    `| all | on | ${fmt(on.events)} | | | | | | | | **${r2(on.perMillion)}** | | |`,
  ].join("\n");
  const part2 = [
    "| phase | events | wall s | events/s | check |",
    "|---|---:|---:|---:|---|",
    `| backfill, ${BATCH.toLocaleString("en-US")} a request, ${BACKFILL_IN_FLIGHT} in flight (acknowledged) | ${fmt(EVENTS)} | ${replay.backfill.seconds} | ${fmt(replay.backfill.eventsPerSec)} | accepted = sent, counters.backfilled = sent |`,
    `| backfill → in the manifest / in history | ${fmt(EVENTS)} | ${replay.backfill.archivedAfterSec} / ${replay.backfill.inHistoryAfterSec} | | ${replay.backfill.segments} segments |`,
    `| replay (POST → state done) | ${fmt(replay.replay.events_read)} | ${replay.replay.seconds} | **${fmt(replay.replay.eventsPerSec)}** | ${replay.replay.segments_done}/${replay.replay.segments_total} segments, ${replay.replay.minutes_written} minutes written; history before = after: ${yes(replay.history.countBefore === replay.history.countAfter && replay.history.sumBefore === replay.history.sumAfter, `${replay.history.minutes} minutes, ${replay.history.minutesDiffering} differ`)} |`,
  ].join("\n");
  const part3 = [
    "| rows | target rows/s | achieved rows/s | lag p50 ms | p95 ms | p99 ms | max ms | accepted = inserted |",
    "|---:|---:|---:|---:|---:|---:|---:|:--:|",
    `| ${fmt(source.rows)} | ${fmt(source.targetRowsPerSec)} | ${fmt(source.achievedRowsPerSec)} | ${source.lagMs.p50} | ${source.lagMs.p95} | ${source.lagMs.p99} | ${source.lagMs.max} | ${yes(source.accepted === source.rows, fmt(source.accepted))} |`,
  ].join("\n");
  const summary = [
    `goal, ingest CPU with the archive on ≤ ${CPU_GOAL}× off: ${ratio.toFixed(2)}× (${r2(on.perMillion)} vs ${r2(off.perMillion)} CPU s per 1M events, drain included) — ${ratio <= CPU_GOAL ? "met" : "NOT met"}`,
    `(the same without the drain's idle share, idle CPU/s × drain s: ${ratioLessIdleDrain.toFixed(2)}×, ${r2(on.perMillionLessIdleDrain)} vs ${r2(off.perMillionLessIdleDrain)})`,
    `replay: ${fmt(replay.replay.eventsPerSec)} events/s from the archive (${(replay.replay.eventsPerSec / replay.backfill.eventsPerSec).toFixed(2)}× the backfill's ${fmt(replay.backfill.eventsPerSec)} events/s); history unchanged: ${replay.history.countBefore === replay.history.countAfter ? "yes" : "NO"}`,
    `PostgreSQL source at ${fmt(source.achievedRowsPerSec)} rows/s: lag p50 ${source.lagMs.p50} ms, p99 ${source.lagMs.p99} ms, max ${source.lagMs.max} ms; every row exactly once: ${source.accepted === source.rows ? "yes" : "NO"}`,
    `(lag includes up to ${STATUS_POLL_MS} ms of status polling granularity and is bounded below by the source's interval_ms, ${SOURCE_INTERVAL_MS} ms, once it has caught up)`,
  ].join("\n");
  console.log(
    `\n### Ingest CPU, archive on vs off\n\n${part1}\n\n### Replay\n\n${part2}\n\n### PostgreSQL source lag\n\n${part3}\n\n${summary}`,
  );
  writeFileSync(
    join(ROOT, "bench", "results", "archive.json"),
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        machine,
        options: {
          seconds: SECONDS,
          warmup: WARMUP_S,
          idle: IDLE_S,
          rounds: ROUNDS,
          connections: CONNECTIONS,
          events: EVENTS,
          rows: ROWS,
          rowsPerSecond: ROWS_PER_SEC,
        },
        ingestCpu: { cases, off, on, ratio: r2(ratio), ratioLessIdleDrain: r2(ratioLessIdleDrain), goal: CPU_GOAL },
        replay,
        source,
      },
      null,
      2,
    )}\n`,
  );
}

main().then(
  () => process.exit(0),
  async (err) => {
    console.error(err);
    await stopAll();
    process.exit(1);
  },
);
