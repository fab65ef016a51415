/**
 * Funnels benchmark, in two parts measured in one run:
 *
 * 1. Memory per user (in this process, core/funnels.ts applyUser as the shard runs it): shop-like
 *    traffic for `--users` users over `--hours` hours, each user a few sessions of page views, some carts,
 *    fewer checkouts and payments, events arriving in 10-second batches in time order with 2 % of them
 *    delayed by up to 2 minutes (another stream's actor delivering later). After each batch, the horizon
 *    is the batch's time − FUNNEL_LATENESS_MS (5 minutes, its default) and states
 *    fully past it are let go, as the shard's sweep does. Reports the stored state's size (its JSON, as
 *    the shard stores it) per user held: mean, p99, max, over every sample; the users held at the end; and
 *    applyUser's rate against JSON.parse of the same items (the baseline every delivery pays anyway).
 * 2. Ingest cost on `npm start`'s stack (a fresh stack per case; PGlite; no Redis): batch-1,000 requests
 *    mixing three streams (view 80 %, cart 15 %, paid 5 %, from `--stack-users` users), closed loop for `--seconds`, with
 *    a 3-step funnel over them vs none, rounds alternating. CPU is the stack's processes from the loop's
 *    start until every step batch is delivered (funnel case). Check: the funnel's first step counts
 *    journeys; nothing is left pending. Then latency: `--probes` times, one first-step event for a new user,
 *    then GET /v1/funnels/:id/results every 10 ms until it counts: accepted → visible, p50 and p99.
 *
 *   npm run bench:funnels
 *   npm run bench:funnels -- --users 100000 --seconds 10
 *
 * Prints a markdown table per part; writes bench/results/funnels.json.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CONFIG } from "../core/config";
import { applyUser, DAY_MS, isSpent, type LogEntry, type UserState } from "../core/funnels";
import { seededRandom } from "../core/random";
import { createTenant, type Keys, ROOT, type Stack, startStack } from "../test/support/stack";
import { BENCH_ENV, closedLoop, percentile } from "./load";
import { cpuSeconds, processTree } from "./procs";

const { values: args } = parseArgs({
  options: {
    users: { type: "string", default: "20000" },
    "stack-users": { type: "string", default: "1000000" },
    hours: { type: "string", default: "6" },
    seconds: { type: "string", default: "6" },
    rounds: { type: "string", default: "2" },
    probes: { type: "string", default: "40" },
  },
});
const USERS = Number(args.users);
const STACK_USERS = Number(args["stack-users"]);
const HOURS = Number(args.hours);
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);
const PROBES = Number(args.probes);
const WINDOW_MS = 3_600_000;
const LAG_MS = CONFIG.FUNNEL_LATENESS_MS.default;

const r2 = (n: number) => Math.round(n * 100) / 100;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const rng = seededRandom;

// ---------------------------------------------------------------------------------------------------------
// Part 1: memory per user.
// ---------------------------------------------------------------------------------------------------------

interface Item {
  user: number;
  entry: LogEntry;
  arrive: number;
}

function memoryPart() {
  const r = rng(42);
  const t0 = 20_000 * DAY_MS;
  const span = HOURS * 3_600_000;
  const items: Item[] = [];
  const countries = ["DE", "US", "FR", "GB", "JP"];
  for (let u = 0; u < USERS; u++) {
    const sessions = 1 + Math.floor(r() * 3);
    for (let s = 0; s < sessions; s++) {
      let t = t0 + Math.floor(r() * span);
      const country = countries[Math.floor(r() * countries.length)];
      const views = 1 + Math.floor(r() * 12);
      const push = (step: number) => {
        t += 5_000 + Math.floor(r() * 60_000);
        const late = r() < 0.02 ? Math.floor(r() * 120_000) : 0;
        items.push({ user: u, entry: [t, step, step === 0 ? country : null], arrive: t + late });
      };
      for (let v = 0; v < views; v++) push(0);
      if (r() < 0.3) {
        push(1);
        if (r() < 0.4) {
          push(2);
          if (r() < 0.7) push(3);
        }
      }
    }
  }
  items.sort((a, b) => a.arrive - b.arrive);
  const states = new Map<number, UserState>();
  const expires = new Map<number, number>();
  const sizes: number[] = [];
  let peakUsers = 0;
  let applied = 0;
  const started = performance.now();
  let applyMs = 0;
  const fold = (_d: number, b: string) => b;
  for (let i = 0; i < items.length; ) {
    const tick = items[i].arrive - (items[i].arrive % 10_000) + 10_000;
    const batch = new Map<number, LogEntry[]>();
    for (; i < items.length && items[i].arrive < tick; i++) {
      const list = batch.get(items[i].user) ?? [];
      list.push(items[i].entry);
      batch.set(items[i].user, list);
    }
    const horizon = tick - LAG_MS;
    const a = performance.now();
    for (const [u, entries] of batch) {
      const out = applyUser(states.get(u) ?? null, entries, WINDOW_MS, horizon, fold);
      applied += entries.length;
      if (isSpent(out.state)) states.delete(u);
      else {
        states.set(u, out.state);
        let last = 0;
        for (const e of out.state.log) last = Math.max(last, e[0]);
        for (const c of out.state.counted) last = Math.max(last, c[0] + WINDOW_MS);
        expires.set(u, last + LAG_MS);
      }
    }
    applyMs += performance.now() - a;
    // The sweep, and a size sample of every state held, once a simulated minute.
    if (tick % 60_000 === 0) {
      for (const [u, at] of expires) {
        if (at <= tick) {
          states.delete(u);
          expires.delete(u);
        }
      }
      peakUsers = Math.max(peakUsers, states.size);
      if (tick % 600_000 === 0) for (const s of states.values()) sizes.push(JSON.stringify(s).length);
    }
  }
  const wall = performance.now() - started;
  // Baseline: parsing the same items as they travel (JSON), the least any delivery costs.
  const wire = JSON.stringify(
    items.map((x) => ({ f: "f_x", s: x.entry[1], n: 4, w: WINDOW_MS, u: `u${x.user}`, t: x.entry[0], b: x.entry[2] })),
  );
  const p0 = performance.now();
  JSON.parse(wire);
  const parseMs = performance.now() - p0;
  sizes.sort((a, b) => a - b);
  const mean = sizes.reduce((a, b) => a + b, 0) / Math.max(1, sizes.length);
  const out = {
    users: USERS,
    events: items.length,
    peakUsersHeld: peakUsers,
    samples: sizes.length,
    bytesPerUserMean: r2(mean),
    bytesPerUserP99: percentile(sizes, 0.99),
    bytesPerUserMax: sizes[sizes.length - 1] ?? 0,
    applyEventsPerSec: Math.round(applied / (applyMs / 1000)),
    parseEventsPerSec: Math.round(items.length / (parseMs / 1000)),
    wallMs: Math.round(wall),
  };
  console.log("\n## Funnels: memory per user (in process)\n");
  console.log(
    "| users | events | peak users held | state bytes/user mean | p99 | max | applyUser events/s | JSON.parse events/s |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  console.log(
    `| ${fmt(out.users)} | ${fmt(out.events)} | ${fmt(out.peakUsersHeld)} | ${out.bytesPerUserMean} | ${out.bytesPerUserP99} | ${out.bytesPerUserMax} | ${fmt(out.applyEventsPerSec)} | ${fmt(out.parseEventsPerSec)} |`,
  );
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Part 2: ingest cost and latency on the stack.
// ---------------------------------------------------------------------------------------------------------

const STREAMS = ["bf.view", "bf.cart", "bf.paid"];

const BODIES = bodies();

function bodies(): string[] {
  const r = rng(7);
  // 400 distinct bodies (400,000 events) so the users of a run are spread as they would be, not 4,000 repeated.
  return Array.from({ length: 400 }, () =>
    JSON.stringify(
      Array.from({ length: 1000 }, () => {
        const x = r();
        const name = x < 0.8 ? STREAMS[0] : x < 0.95 ? STREAMS[1] : STREAMS[2];
        return {
          name,
          value: 20,
          user: `user-${Math.floor(r() * STACK_USERS)}`,
          dims: { country: r() < 0.5 ? "DE" : "US" },
        };
      }),
    ),
  );
}

async function api<T>(stack: Stack, method: string, path: string, key: string, body?: unknown): Promise<T> {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

interface Results {
  steps: Array<{ journeys: number }>;
  state: { users: number; bytes: number };
}

async function pendingBatches(stack: Stack, keys: Keys): Promise<number> {
  let n = 0;
  for (const s of STREAMS) {
    const v = await api<{ funnels?: { pending: number } }>(stack, "GET", `/v1/streams/${s}`, keys.read);
    n += v.funnels?.pending ?? 0;
  }
  return n;
}

async function stackCase(round: number, funnel: boolean) {
  const stack = await startStack({ extraEnv: { ...BENCH_ENV, DATABASE_URL: "", EDGEPULSE_NO_REDIS: "1" } });
  try {
    const keys: Keys = await createTenant(stack, `bench-funnels-${round}-${funnel}`);
    let id = "";
    if (funnel) {
      const made = await api<{ funnel: { id: string } }>(stack, "POST", "/v1/funnels", keys.admin, {
        name: "bench",
        steps: STREAMS.map((stream) => ({ stream })),
        window: "1h",
        breakdown: "country",
      });
      id = made.funnel.id;
    }
    const pids = processTree(stack.child.pid as number);
    const load = (seconds: number) =>
      closedLoop({
        url: `${stack.url}/v1/events`,
        seconds,
        connections: 8,
        bodies: BODIES,
        headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
        tally: (text) => (JSON.parse(text) as { accepted: number }).accepted,
      });
    await load(2);
    const cpu0 = cpuSeconds(pids);
    const r = await load(SECONDS);
    if (funnel) {
      const deadline = Date.now() + 120_000;
      while ((await pendingBatches(stack, keys)) > 0) {
        if (Date.now() > deadline) throw new Error("funnel batches still pending after 120 s");
        await sleep(50);
      }
    }
    const cpu = cpuSeconds(pids) - cpu0;
    const row = {
      round,
      funnel: funnel ? "on" : "off",
      events: r.tallied,
      eventsPerSec: Math.round(r.tallied / r.seconds),
      cpuSecPerMillion: r2((cpu / Math.max(1, r.tallied)) * 1e6),
      latency: null as null | { p50: number; p99: number; state: Results["state"] },
    };
    if (funnel) {
      const first = await api<Results>(stack, "GET", `/v1/funnels/${id}/results`, keys.read);
      if (first.steps[0].journeys === 0) throw new Error("the funnel counted no journey");
      const lat: number[] = [];
      for (let p = 0; p < PROBES; p++) {
        const base = (await api<Results>(stack, "GET", `/v1/funnels/${id}/results`, keys.read)).steps[0].journeys;
        const t = performance.now();
        await api(stack, "POST", "/v1/events", keys.ingest, [{ name: STREAMS[0], user: `probe-${round}-${p}` }]);
        for (;;) {
          const now = await api<Results>(stack, "GET", `/v1/funnels/${id}/results`, keys.read);
          if (now.steps[0].journeys > base) break;
          if (performance.now() - t > 30_000) throw new Error("a probe was not counted within 30 s");
          await sleep(10);
        }
        lat.push(performance.now() - t);
      }
      lat.sort((a, b) => a - b);
      const state = (await api<Results>(stack, "GET", `/v1/funnels/${id}/results`, keys.read)).state;
      row.latency = { p50: r2(percentile(lat, 0.5)), p99: r2(percentile(lat, 0.99)), state };
    }
    console.log(JSON.stringify(row));
    return row;
  } finally {
    await stack.stop();
  }
}

async function main() {
  const memory = memoryPart();
  const cases: Array<Awaited<ReturnType<typeof stackCase>>> = [];
  for (let round = 0; round < ROUNDS; round++) {
    cases.push(await stackCase(round, false));
    cases.push(await stackCase(round, true));
  }
  const avg = (on: boolean) => {
    const xs = cases.filter((c) => (c.funnel === "on") === on).map((c) => c.cpuSecPerMillion);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  const ratio = r2(avg(true) / avg(false));
  console.log("\n## Funnels: ingest CPU with a 3-step funnel vs none (batch 1,000, three streams)\n");
  console.log("| round | funnel | events/s | CPU-s per million events | accepted → counted p50 / p99 ms |");
  console.log("|---|---|---|---|---|");
  for (const c of cases) {
    const lat = c.latency ? `${c.latency.p50} / ${c.latency.p99}` : "";
    console.log(`| ${c.round} | ${c.funnel} | ${fmt(c.eventsPerSec)} | ${c.cpuSecPerMillion} | ${lat} |`);
  }
  console.log(`\nCPU per event, funnel on / off: ${ratio}×`);
  writeFileSync(
    join(ROOT, "bench", "results", "funnels.json"),
    `${JSON.stringify({ at: new Date().toISOString(), memory, cases, ratio }, null, 2)}\n`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
