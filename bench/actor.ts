/**
 * One actor after an hour of traffic, in the real runtime: the stream's
 * SQLite file on disk, and how long the actor takes to wake from it.
 *
 * The Worker (bundled by wrangler from wrangler.toml) runs on workerd through
 * miniflare with persistent Durable Object storage. One stream receives an
 * hour of events (stamped over the past hour, so all are admitted as late
 * events); then workerd is restarted on the same state N times and each time
 * the first read of the stream (actor constructor + load from storage + the
 * read) is timed against a second read of the same stream (the read alone).
 * Wake time = first − second; the median over the restarts is reported.
 *
 *   npx tsx bench/actor.ts [--rate 100] [--users 5000] [--restarts 7]
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { ROOT } from "../test/support/paths";
import { makeEvents } from "./events";

const { values: args } = parseArgs({
  options: {
    rate: { type: "string", default: "100" },
    users: { type: "string", default: "5000" },
    restarts: { type: "string", default: "11" },
    out: { type: "string", default: join(ROOT, "bench", "results", "actor.json") },
    label: { type: "string", default: "" },
  },
});
const RATE = Number(args.rate);
const USERS = Number(args.users);
const RESTARTS = Number(args.restarts);
const TOKEN = "bench-operator-token";

const dir = mkdtempSync(join(tmpdir(), "edgepulse-actor-"));
const build = join(dir, "build");
const persist = join(dir, "state");
execFileSync(
  process.execPath,
  [join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js"), "deploy", "--dry-run", "--outdir", build],
  {
    cwd: ROOT,
    stdio: "ignore",
    env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
  },
);

function start(): Miniflare {
  const { workerOptions } = unstable_getMiniflareWorkerOptions(join(ROOT, "wrangler.toml"));
  return new Miniflare({
    ...workerOptions,
    name: "edgepulse",
    modules: true,
    scriptPath: join(build, "index.js"),
    modulesRoot: build,
    bindings: {
      ...(workerOptions.bindings ?? {}),
      ADMIN_TOKEN: TOKEN,
      RATE_LIMIT_INGEST_PER_SEC: "1000000",
      RATE_LIMIT_READ_PER_SEC: "1000000",
    },
    assets: undefined,
    durableObjectsPersist: join(persist, "do"),
    cachePersist: false,
  } as ConstructorParameters<typeof Miniflare>[0]);
}

async function call(mf: Miniflare, path: string, init: RequestInit = {}): Promise<Response> {
  const res = await mf.dispatchFetch(`http://localhost${path}`, init as never);
  return res as unknown as Response;
}

let mf = start();
await mf.ready;
const created = (await (
  await call(mf, "/v1/admin/tenants", {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "bench" }),
  })
).json()) as { keys: Array<{ scope: string; key: string }> };
const key = (s: string) => (created.keys.find((k) => k.scope === s) as { key: string }).key;
const ingest = key("ingest");
const read = key("read");

// One hour of events, stamped over the past hour (the the oldest 60 s and newest 30 s left out, so lateness never bites mid-run).
const now = Date.now();
const total = RATE * 3600;
const events = makeEvents(total, { seed: 7, streams: 1, now: now - 30_000, spreadMs: 3_540_000, users: USERS }).map(
  (e) => ({ name: "hour", ts: e.ts, value: e.value, user: e.user }),
);
events.sort((a, b) => a.ts - b.ts);
let accepted = 0;
for (let i = 0; i < events.length; i += 1000) {
  const res = await call(mf, "/v1/events", {
    method: "POST",
    headers: { authorization: `Bearer ${ingest}`, "content-type": "application/json" },
    body: JSON.stringify(events.slice(i, i + 1000)),
  });
  accepted += ((await res.json()) as { accepted: number }).accepted;
}
if (accepted !== total) throw new Error(`accepted ${accepted} of ${total}`);
const check = (await (
  await call(mf, "/v1/streams/hour?window=1h", { headers: { authorization: `Bearer ${read}` } })
).json()) as {
  windows: { "1h": { count: number } };
};

/**
 * The actor's storage as the runtime reports it (SQLite databaseSize), once housekeeping has packed
 * the ended minutes, as it does each minute when traffic arrives in real time. Falls back to the
 * file on disk for releases without the stats endpoint.
 */
const tenantId = (created as unknown as { tenant: { id: string } }).tenant.id;
async function stats(): Promise<{ storage_bytes: number; open_minutes: number } | null> {
  const res = await call(mf, `/v1/admin/tenants/${tenantId}/streams/hour/stats`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  return res.status === 200 ? ((await res.json()) as { storage_bytes: number; open_minutes: number }) : null;
}
let s = await stats();
for (let i = 0; s !== null && s.open_minutes > 2 && i < 150; i++) {
  await new Promise((r) => setTimeout(r, 1000)); // the next minute boundary (benchmark only)
  s = await stats();
}
await mf.dispose();

/** The actor's SQLite file (the largest database of the MetricActor namespace). */
function actorFile(): string {
  const root = join(persist, "do");
  let best = { path: "", size: -1 };
  for (const ns of readdirSync(root)) {
    if (!ns.includes("MetricActor")) continue;
    for (const f of readdirSync(join(root, ns))) {
      const path = join(root, ns, f);
      if (f.endsWith(".sqlite") && statSync(path).size > best.size) best = { path, size: statSync(path).size };
    }
  }
  return best.path;
}

/** Bytes of live pages in the file ((page_count − freelist_count) × page_size), read with the sqlite3 CLI when present. */
function liveFileBytes(path: string): number | null {
  try {
    const out = execFileSync("sqlite3", [path, "PRAGMA page_count; PRAGMA freelist_count; PRAGMA page_size;"], {
      encoding: "utf8",
    })
      .trim()
      .split("\n")
      .map(Number);
    return (out[0] - out[1]) * out[2];
  } catch {
    return null;
  }
}
const file = actorFile();
const fileLive = liveFileBytes(file);
const storage = s?.storage_bytes ?? fileLive ?? statSync(file).size;
const storageSource = s ? "databaseSize" : fileLive !== null ? "file, live pages" : "file";

const wakes: number[] = [];
for (let r = 0; r < RESTARTS; r++) {
  mf = start();
  await mf.ready;
  // Warm the isolate and the key cache on another object first, so only the actor's own wake-up is timed.
  await call(mf, "/v1/tenant", { headers: { authorization: `Bearer ${read}` } });
  const t0 = performance.now();
  const first = await call(mf, "/v1/streams/hour", { headers: { authorization: `Bearer ${read}` } });
  await first.arrayBuffer();
  const t1 = performance.now();
  const second = await call(mf, "/v1/streams/hour", { headers: { authorization: `Bearer ${read}` } });
  await second.arrayBuffer();
  const t2 = performance.now();
  wakes.push(t1 - t0 - (t2 - t1));
  await mf.dispose();
}
wakes.sort((a, b) => a - b);
const result = {
  date: new Date().toISOString(),
  label: args.label,
  rate: RATE,
  users: USERS,
  events: total,
  count1h: check.windows["1h"].count,
  storageMiB: Number((storage / 2 ** 20).toFixed(3)),
  storageSource,
  fileLiveMiB: fileLive === null ? null : Number((fileLive / 2 ** 20).toFixed(3)),
  wakeMsMedian: Number(wakes[Math.floor(wakes.length / 2)].toFixed(1)),
  wakeMsAll: wakes.map((w) => Number(w.toFixed(1))),
};
console.log(JSON.stringify(result));
writeFileSync(args.out, `${JSON.stringify(result, null, 2)}\n`);
rmSync(dir, { recursive: true, force: true });
