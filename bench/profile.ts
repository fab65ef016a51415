/**
 * A V8 CPU profile of workerd under ingest load, on `npm start`'s stack (tools/dev.ts with
 * EDGEPULSE_INSPECTOR_PORT: miniflare's inspector, one target per worker; the Worker and its Durable Objects
 * share the isolate). Load: batch-1,000 requests mixing three streams from `--users` users (as
 * bench/funnels.ts, with `--dims` dims per event: country, device, plan), closed loop for `--seconds`; with `--funnel`, a 3-step funnel over them. The profile
 * (sampling every 100 µs) is summarised by self time per stage of the ingest path, per source file and per
 * function, and written whole to bench/results/profile-<label>.cpuprofile (open it in Chrome's DevTools,
 * Performance tab). Source files are found from the bundle's own module comments (`// core/window.ts`):
 * the same bundle is built again here (`wrangler deploy --dry-run`). Builtins (JSON.parse, Map, string
 * work) count in the function that calls them; `exec` is SQLite.
 *
 *   npx tsx bench/profile.ts --seconds 6 [--funnel] [--label funnel-on]
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { seededRandom } from "../core/random";
import { createTenant, freePort, ROOT, startStack } from "../test/support/stack";
import { BENCH_ENV, closedLoop } from "./load";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "6" },
    users: { type: "string", default: "1000000" },
    funnel: { type: "boolean", default: false },
    dims: { type: "string", default: "3" },
    label: { type: "string", default: "ingest" },
    top: { type: "string", default: "30" },
  },
});

const STREAMS = ["bf.view", "bf.cart", "bf.paid"];
const COUNTRIES = ["DE", "US", "FR", "GB", "JP", "BR", "IN", "NL"];
const PLANS = ["free", "pro", "team"];

/** The stages of the ingest path, by the source files whose code runs in them (first match wins). */
const STAGES: Array<[string, RegExp]> = [
  ["funnels", /funnel/],
  ["body read, parse (collector)", /workers\/collector\/|hono\//],
  ["validate", /core\/event(-schema)?\.ts|core\/schemas/],
  ["route, shards", /workers\/lib\/routing|core\/shards|stream-shard/],
  [
    "keys, rate limits",
    /workers\/lib\/(auth|ratelimit|redis|security|registry)|key-directory|tenant-registry|rate-limiter|core\/keys|core\/ratelimit|upstash/,
  ],
  ["admit, dedup, commit (actor)", /metric-actor\/(ingest|store|outbox|index)|planner/],
  ["windows", /core\/(window|aggregate|live)\.ts/],
  ["sketches (DDSketch, HLL)", /core\/(ddsketch|hll)\.ts/],
  ["dimensions", /core\/(dims|dim-minute|topk)|metric-actor\/dims/],
  ["archive", /archive/],
  ["live push, hub", /metric-actor\/live|tenant-hub|sockets/],
  ["history", /metric-actor\/history|db\/|drizzle|neondatabase/],
  ["alerts", /alerts|webhooks/],
];

/** Line → source file of the bundled Worker, from esbuild's module comments. */
function bundleFiles(): (line: number) => string {
  const out = mkdtempSync(join(tmpdir(), "edgepulse-profile-"));
  try {
    execFileSync(
      process.execPath,
      [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", out],
      {
        cwd: ROOT,
        stdio: "ignore",
        env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
      },
    );
    const starts: Array<[number, string]> = [];
    readFileSync(join(out, "index.js"), "utf8")
      .split("\n")
      .forEach((l, i) => {
        const m = /^\/\/ ((?:node_modules\/)?[\w@./-]+\.[cm]?[jt]s)$/.exec(l);
        if (m) starts.push([i, m[1]]);
      });
    return (line) => {
      let lo = 0;
      let hi = starts.length - 1;
      let found = "(bundle)";
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (starts[mid][0] <= line) {
          found = starts[mid][1];
          lo = mid + 1;
        } else hi = mid - 1;
      }
      return found;
    };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const rng = seededRandom;

function bodies(users: number): string[] {
  const r = rng(7);
  return Array.from({ length: 400 }, () =>
    JSON.stringify(
      Array.from({ length: 1000 }, () => {
        const x = r();
        const name = x < 0.8 ? STREAMS[0] : x < 0.95 ? STREAMS[1] : STREAMS[2];
        const all = {
          country: COUNTRIES[Math.floor(r() * COUNTRIES.length)],
          device: r() < 0.6 ? "mobile" : "desktop",
          plan: PLANS[Math.floor(r() * PLANS.length)],
        };
        const dims = Object.fromEntries(Object.entries(all).slice(0, Number(args.dims)));
        return { name, value: Math.round(r() * 500), user: `user-${Math.floor(r() * users)}`, dims };
      }),
    ),
  );
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

class Cdp {
  #id = 0;
  #waiting = new Map<number, (v: unknown) => void>();
  constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      const msg = JSON.parse(String(data)) as { id?: number; result?: unknown };
      if (msg.id !== undefined) this.#waiting.get(msg.id)?.(msg.result);
    });
  }
  send<T>(method: string, params: object = {}): Promise<T> {
    const id = ++this.#id;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve as (v: unknown) => void);
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }
}

async function main() {
  const port = await freePort();
  const stack = await startStack({
    extraEnv: { ...BENCH_ENV, DATABASE_URL: "", EDGEPULSE_NO_REDIS: "1", EDGEPULSE_INSPECTOR_PORT: String(port) },
  });
  try {
    const keys = await createTenant(stack, "profile");
    if (args.funnel) {
      const res = await fetch(`${stack.url}/v1/funnels`, {
        method: "POST",
        headers: { authorization: `Bearer ${keys.admin}`, "content-type": "application/json" },
        body: JSON.stringify({ name: "p", steps: STREAMS.map((stream) => ({ stream })), window: "1h" }),
      });
      if (res.status !== 201) throw new Error(`funnel: ${res.status} ${await res.text()}`);
    }
    const load = (seconds: number) =>
      closedLoop({
        url: `${stack.url}/v1/events`,
        seconds,
        connections: 8,
        bodies: BODIES,
        headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
        tally: (text) => (JSON.parse(text) as { accepted: number }).accepted,
      });
    const BODIES = bodies(Number(args.users));
    await load(2);
    const targets = (await (await fetch(`http://127.0.0.1:${port}/json`)).json()) as Array<{
      title: string;
      webSocketDebuggerUrl: string;
    }>;
    const target = targets.find((t) => t.title.includes("edgepulse")) ?? targets[0];
    const ws = new WebSocket(target.webSocketDebuggerUrl);
    await new Promise((r) => ws.once("open", r));
    const cdp = new Cdp(ws);
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
    await cdp.send("Profiler.start");
    const r = await load(Number(args.seconds));
    const { profile } = await cdp.send<{ profile: Profile }>("Profiler.stop");
    ws.close();
    writeFileSync(join(ROOT, "bench", "results", `profile-${args.label}.cpuprofile`), JSON.stringify(profile));
    // Self time per node from the samples.
    const self = new Map<number, number>();
    for (let i = 0; i < profile.samples.length; i++) {
      self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + profile.timeDeltas[i]);
    }
    const fileOf = bundleFiles();
    // Busy time only: the isolate waiting for work ("(idle)") is not a cost.
    const idle = new Set(profile.nodes.filter((n) => n.callFrame.functionName === "(idle)").map((n) => n.id));
    const total = [...self.entries()].filter(([id]) => !idle.has(id)).reduce((a, [, b]) => a + b, 0);
    const byFn = new Map<string, number>();
    const byFile = new Map<string, number>();
    const byStage = new Map<string, number>();
    for (const n of profile.nodes) {
      const us = self.get(n.id) ?? 0;
      if (us === 0 || idle.has(n.id)) continue;
      const native = n.callFrame.url === "";
      const file = native
        ? n.callFrame.functionName === "exec"
          ? "(SQLite)"
          : `(${n.callFrame.functionName.replace(/[()]/g, "") || "native"})`
        : fileOf(n.callFrame.lineNumber);
      const fn = `${n.callFrame.functionName || "(anonymous)"} ${file}`;
      byFn.set(fn, (byFn.get(fn) ?? 0) + us);
      byFile.set(file, (byFile.get(file) ?? 0) + us);
      const stage = native ? file : (STAGES.find(([, re]) => re.test(file))?.[0] ?? "other JavaScript");
      byStage.set(stage, (byStage.get(stage) ?? 0) + us);
    }
    const pct = (us: number) => `${((us / total) * 100).toFixed(1)} %`;
    const perK = (us: number) => ((us / 1000 / Math.max(1, r.tallied)) * 1000).toFixed(3);
    console.log(
      `\n${args.label}: ${r.tallied.toLocaleString("en-US")} events in ${r.seconds.toFixed(1)} s; isolate busy ${(total / 1e6).toFixed(2)} s = ${perK(total)} ms per 1,000 events\n`,
    );
    console.log("| stage | self time | ms per 1,000 events |\n|---|---|---|");
    for (const [st, us] of [...byStage.entries()].sort((a, b) => b[1] - a[1])) {
      console.log(`| ${st} | ${pct(us)} | ${perK(us)} |`);
    }
    console.log("\n| self time | file |\n|---|---|");
    for (const [f, us] of [...byFile.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
      console.log(`| ${pct(us)} | ${f} |`);
    }
    console.log("\n| self time | function |\n|---|---|");
    for (const [fn, us] of [...byFn.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(args.top))) {
      console.log(`| ${pct(us)} | ${fn} |`);
    }
  } finally {
    await stack.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
