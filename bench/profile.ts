/**
 * A V8 CPU profile of workerd under ingest load, on `npm start`'s stack (tools/dev.ts with
 * EDGEPULSE_INSPECTOR_PORT: miniflare's inspector, one target per worker; the Worker and its Durable Objects
 * share the isolate). Load: batch-1,000 requests mixing three streams from `--users` users (as
 * bench/funnels.ts), closed loop for `--seconds`; with `--funnel`, a 3-step funnel over them. The profile
 * (sampling every 100 µs) is summarised by self time per function and by file, and written whole to
 * bench/results/profile-<label>.cpuprofile (open it in Chrome's DevTools, Performance tab).
 *
 *   npx tsx bench/profile.ts --seconds 6 [--funnel] [--label funnel-on]
 */
import { writeFileSync } from "node:fs";
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
    label: { type: "string", default: "ingest" },
    top: { type: "string", default: "30" },
  },
});

const STREAMS = ["bf.view", "bf.cart", "bf.paid"];

const rng = seededRandom;

function bodies(users: number): string[] {
  const r = rng(7);
  return Array.from({ length: 400 }, () =>
    JSON.stringify(
      Array.from({ length: 1000 }, () => {
        const x = r();
        const name = x < 0.8 ? STREAMS[0] : x < 0.95 ? STREAMS[1] : STREAMS[2];
        return { name, value: 20, user: `user-${Math.floor(r() * users)}`, dims: { country: r() < 0.5 ? "DE" : "US" } };
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
    const total = [...self.values()].reduce((a, b) => a + b, 0);
    const byFn = new Map<string, number>();
    const byFile = new Map<string, number>();
    for (const n of profile.nodes) {
      const us = self.get(n.id) ?? 0;
      const file = n.callFrame.url.split("/").pop() || "(native)";
      const fn = `${n.callFrame.functionName || "(anonymous)"} ${file}:${n.callFrame.lineNumber + 1}`;
      byFn.set(fn, (byFn.get(fn) ?? 0) + us);
      byFile.set(file, (byFile.get(file) ?? 0) + us);
    }
    const pct = (us: number) => `${((us / total) * 100).toFixed(1)} %`;
    console.log(
      `\n${args.label}: ${r.tallied.toLocaleString("en-US")} events in ${r.seconds.toFixed(1)} s; isolate CPU sampled ${(total / 1e6).toFixed(2)} s\n`,
    );
    console.log("| self time | function |\n|---|---|");
    for (const [fn, us] of [...byFn.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(args.top))) {
      console.log(`| ${pct(us)} | ${fn} |`);
    }
    console.log("\n| self time | file |\n|---|---|");
    for (const [f, us] of [...byFile.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10)) {
      console.log(`| ${pct(us)} | ${f} |`);
    }
  } finally {
    await stack.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
