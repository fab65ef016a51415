/**
 * `npm start`: runs edgepulse locally on workerd (wrangler dev), with an
 * operator token generated on first run and kept in .dev.vars.
 *
 *   npm start -- [--port 8787] [--state .wrangler/state] [--vars .dev.vars]
 *
 * Prints the URL and the operator token once the Worker answers /healthz.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: process.env.PORT ?? "8787" },
    state: { type: "string", default: join(root, ".wrangler", "state") },
    vars: { type: "string", default: join(root, ".dev.vars") },
    quiet: { type: "boolean", default: false },
  },
});

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

async function waitForHealth(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with code ${child.exitCode}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("edgepulse did not become healthy within 120 s");
}

async function main(): Promise<void> {
  const token = ensureAdminToken(args.vars);
  const url = `http://127.0.0.1:${args.port}`;
  const wrangler = join(root, "node_modules", "wrangler", "bin", "wrangler.js");
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
      "--show-interactive-dev-session=false",
      "--log-level",
      args.quiet ? "error" : "warn",
    ],
    {
      cwd: root,
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
    },
  );
  const stop = (signal: NodeJS.Signals) => {
    child.kill(signal);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  child.on("exit", (code) => process.exit(code ?? 0));

  await waitForHealth(url, child);
  process.stdout.write(
    [
      "",
      `edgepulse is running at ${url}`,
      `operator token (ADMIN_TOKEN, kept in ${args.vars}): ${token}`,
      "",
      "Create a tenant (prints one admin, ingest and read key):",
      `  curl -s -X POST ${url}/v1/admin/tenants -H 'authorization: Bearer ${token}' -H 'content-type: application/json' -d '{"name":"my-app"}'`,
      "Send events and read live metrics:",
      `  curl -s -X POST ${url}/v1/events -H 'authorization: Bearer <ingest key>' -H 'content-type: application/json' -d '[{"name":"checkout","value":120,"user":"u1"}]'`,
      `  curl -s ${url}/v1/streams/checkout -H 'authorization: Bearer <read key>'`,
      "",
      "READY",
      "",
    ].join("\n"),
  );
}

main().catch((err) => {
  process.stderr.write(`edgepulse: ${(err as Error).message}\n`);
  process.exit(1);
});
