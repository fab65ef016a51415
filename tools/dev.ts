/**
 * `npm start`: runs edgepulse locally on workerd (wrangler dev).
 *
 *   npm start -- [--port 8787] [--state .wrangler/state] [--vars .dev.vars] [--no-history]
 *
 * - An operator token is generated on first run and kept in the vars file.
 * - History: with DATABASE_URL set (environment), that PostgreSQL is used;
 *   otherwise an embedded, persistent PostgreSQL (PGlite) runs with its data
 *   in .edgepulse/pgdata. Migrations are applied, and the project's
 *   WebSocket-to-TCP bridge lets the neon driver inside workerd reach it.
 * - The Worker's cron (rollups, partitions, retention) is triggered every
 *   minute, as Cloudflare would on its schedule.
 *
 * Prints the URL and the token once the Worker answers /healthz, then READY.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CONFIG } from "../core/config";
import { freePort } from "../test/support/ports";
import { migrateDatabase } from "./migrate";
import { ROOT } from "./paths";
import { startBridge } from "./pg-bridge";
import { startUpstashBridge } from "./upstash-bridge";

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: process.env.PORT ?? "8787" },
    state: { type: "string", default: join(ROOT, ".wrangler", "state") },
    vars: { type: "string", default: join(ROOT, ".dev.vars") },
    pgdata: { type: "string", default: join(ROOT, ".edgepulse", "pgdata") },
    "no-history": { type: "boolean", default: false },
    quiet: { type: "boolean", default: false },
  },
});

const children: ChildProcess[] = [];
const cleanups: Array<() => void | Promise<void>> = [];

/** Returns the operator token from the vars file, creating the file with a fresh token if needed. */
export function ensureAdminToken(varsPath: string): string {
  const existing = existsSync(varsPath) ? readFileSync(varsPath, "utf8") : "";
  const match = /^ADMIN_TOKEN=(.+)$/m.exec(existing);
  if (match && match[1].trim() !== "" && match[1].trim() !== "change-me") return match[1].trim();
  const token = `ep_op_${randomBytes(24).toString("base64url")}`;
  const rest = existing.replace(/^ADMIN_TOKEN=.*\n?/m, "");
  writeFileSync(varsPath, `${rest}${rest && !rest.endsWith("\n") ? "\n" : ""}ADMIN_TOKEN=${token}\n`, { mode: 0o600 });
  return token;
}

async function until(what: string, check: () => Promise<boolean>, child?: ChildProcess, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`${what}: process exited with code ${child.exitCode}`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} did not come up within ${ms / 1000} s`);
}

const tcpOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });

/** Starts PGlite (embedded PostgreSQL) with its data in `dir`; returns its connection URL. */
async function startEmbeddedPostgres(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const server = join(ROOT, "node_modules", "@electric-sql", "pglite-socket", "dist", "scripts", "server.js");
  const child = spawn(process.execPath, [server, `--db=${dir}`, `--port=${port}`, "--max-connections=8"], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
  });
  children.push(child);
  await until("embedded PostgreSQL (PGlite)", () => tcpOpen(port), child);
  return `postgres://postgres@127.0.0.1:${port}/postgres`;
}

const isNeon = (url: string) => /\.neon\.tech(:\d+)?\//.test(url);

async function setUpHistory(): Promise<{ vars: string[]; label: string }> {
  if (args["no-history"]) return { vars: [], label: "off (--no-history)" };
  const external = process.env.DATABASE_URL || undefined;
  const url = external ?? (await startEmbeddedPostgres(args.pgdata));
  await migrateDatabase(url);
  const vars = ["--var", `DATABASE_URL:${url}`];
  const where = new URL(url);
  let label = external
    ? `PostgreSQL at ${where.host}${where.pathname}`
    : `embedded PostgreSQL (PGlite) in ${args.pgdata}`;
  if (!isNeon(url)) {
    const bridge = await startBridge(0);
    cleanups.push(() => bridge.close());
    vars.push("--var", `PG_BRIDGE:${bridge.url}`);
    label += `, via bridge ws://${bridge.url}`;
  }
  return { vars, label };
}

/**
 * Rate limits and the key cache: with UPSTASH_REDIS_REST_URL/TOKEN in the environment, that Upstash database;
 * else, when a redis-server answers on REDIS_URL (default 127.0.0.1:6379), the project's REST bridge in front of it;
 * else the Durable Object limiter.
 */
async function setUpRedis(): Promise<{ vars: string[]; label: string }> {
  if (process.env.UPSTASH_REDIS_REST_URL && process.env.UPSTASH_REDIS_REST_TOKEN) {
    return {
      vars: [
        "--var",
        `UPSTASH_REDIS_REST_URL:${process.env.UPSTASH_REDIS_REST_URL}`,
        "--var",
        `UPSTASH_REDIS_REST_TOKEN:${process.env.UPSTASH_REDIS_REST_TOKEN}`,
      ],
      label: `Upstash Redis at ${new URL(process.env.UPSTASH_REDIS_REST_URL).host}`,
    };
  }
  const redisUrl = new URL(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
  if (process.env.EDGEPULSE_NO_REDIS === "1" || !(await tcpOpen(Number(redisUrl.port || 6379)))) {
    return { vars: [], label: "Durable Object limiter (no Redis found)" };
  }
  const token = randomBytes(18).toString("base64url");
  const bridge = await startUpstashBridge({ token, redisUrl: redisUrl.toString() });
  cleanups.push(() => bridge.close());
  return {
    vars: ["--var", `UPSTASH_REDIS_REST_URL:${bridge.url}`, "--var", `UPSTASH_REDIS_REST_TOKEN:${token}`],
    label: `local Redis ${redisUrl.host} via the Upstash REST bridge ${bridge.url}`,
  };
}

async function shutdown(code: number): Promise<never> {
  for (const c of cleanups) await c();
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  process.exit(code);
}

async function main(): Promise<void> {
  const token = ensureAdminToken(args.vars);
  const history = await setUpHistory();
  const redis = await setUpRedis();
  const url = `http://127.0.0.1:${args.port}`;
  const wrangler = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
  const child = spawn(
    process.execPath,
    [
      wrangler,
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      args.port,
      "--persist-to",
      args.state,
      "--env-file",
      args.vars,
      "--test-scheduled",
      "--var",
      "ALLOW_HTTP_WEBHOOKS:true",
      "--show-interactive-dev-session=false",
      "--log-level",
      args.quiet ? "error" : "warn",
      ...history.vars,
      ...redis.vars,
      // Limits and defaults (core/config.ts) can be overridden from the environment, e.g. MAX_EVENTS_PER_BATCH=5000 npm start.
      ...Object.keys(CONFIG).flatMap((k) => (process.env[k] ? ["--var", `${k}:${process.env[k]}`] : [])),
    ],
    {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
    },
  );
  children.push(child);
  process.on("SIGINT", () => void shutdown(0));
  process.on("SIGTERM", () => void shutdown(0));
  child.on("exit", (code) => void shutdown(code ?? 0));

  await until("edgepulse", async () => (await fetch(`${url}/healthz`)).ok, child);
  if (history.vars.length > 0) {
    const cron = async () => {
      await fetch(`${url}/cdn-cgi/handler/scheduled?cron=${encodeURIComponent("*/5 * * * *")}`).catch(() => {});
    };
    await cron();
    setInterval(cron, 60_000).unref();
  }
  process.stdout.write(
    [
      "",
      `edgepulse is running at ${url}`,
      `history: ${history.label}`,
      `rate limits and key cache: ${redis.label}`,
      `operator token (ADMIN_TOKEN, kept in ${args.vars}): ${token}`,
      "",
      "Create a tenant (prints one admin, ingest and read key):",
      `  curl -s -X POST ${url}/v1/admin/tenants -H 'authorization: Bearer ${token}' -H 'content-type: application/json' -d '{"name":"my-app"}'`,
      "Send events and read live metrics and history:",
      `  curl -s -X POST ${url}/v1/events -H 'authorization: Bearer <ingest key>' -H 'content-type: application/json' -d '[{"name":"checkout","value":120,"user":"u1"}]'`,
      `  curl -s ${url}/v1/streams/checkout -H 'authorization: Bearer <read key>'`,
      `  curl -s '${url}/v1/streams/checkout/history?step=1m' -H 'authorization: Bearer <read key>'`,
      "",
      "READY",
      "",
    ].join("\n"),
  );
}

main().catch(async (err) => {
  process.stderr.write(`edgepulse: ${(err as Error).message}\n`);
  await shutdown(1);
});
