/**
 * Starts the same stack as `npm start` (tools/dev.ts → miniflare → workerd)
 * on a free port with its own state folder, for end-to-end tests and benchmarks.
 * `child` is the dev.ts process itself (node --import tsx, as `npm start` runs it).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "./ports";

export const ROOT = resolve(import.meta.dirname, "..", "..");

export interface Stack {
  url: string;
  /** host:port of dev.ts's PostgreSQL bridge (POST /__bridge/down|up simulates an outage). */
  bridge: string | null;
  pgdata: string;
  port: number;
  token: string;
  state: string;
  vars: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

export { freePort };

export interface StackOptions {
  state?: string;
  vars?: string;
  port?: number;
  /** Folder of the embedded PostgreSQL; used when extraEnv has no DATABASE_URL. */
  pgdata?: string;
  extraEnv?: Record<string, string>;
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), "edgepulse-"));
  const state = opts.state ?? join(dir, "state");
  const vars = opts.vars ?? join(dir, ".dev.vars");
  const pgdata = opts.pgdata ?? join(dir, "pgdata");
  const port = opts.port ?? (await freePort());
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "tools/dev.ts",
      "--port",
      String(port),
      "--state",
      state,
      "--vars",
      vars,
      "--pgdata",
      pgdata,
      "--quiet",
    ],
    { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...opts.extraEnv } },
  );
  let output = "";
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`stack did not start within 120 s:\n${output}`)), 120_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes("\nREADY\n")) {
        clearTimeout(timer);
        res();
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      rej(new Error(`stack exited early with code ${code}:\n${output}`));
    });
  });
  const token = (/^ADMIN_TOKEN=(.+)$/m.exec(readFileSync(vars, "utf8")) as RegExpExecArray)[1];
  const bridge = /via bridge ws:\/\/(\S+)/.exec(output)?.[1] ?? null;
  return {
    url: `http://127.0.0.1:${port}`,
    bridge,
    pgdata,
    port,
    token,
    state,
    vars,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      try {
        process.kill(-(child.pid as number), "SIGTERM");
      } catch {
        return;
      }
      const killer = setTimeout(() => {
        try {
          process.kill(-(child.pid as number), "SIGKILL");
        } catch {
          // already gone
        }
      }, 5000);
      await exited;
      clearTimeout(killer);
    },
  };
}

export interface Keys {
  tenantId: string;
  admin: string;
  ingest: string;
  read: string;
}

export async function createTenant(stack: Stack, name: string): Promise<Keys> {
  const res = await fetch(`${stack.url}/v1/admin/tenants`, {
    method: "POST",
    headers: { authorization: `Bearer ${stack.token}`, "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  if (res.status !== 201) throw new Error(`create tenant: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { tenant: { id: string }; keys: Array<{ scope: string; key: string }> };
  const key = (s: string) => (body.keys.find((k) => k.scope === s) as { key: string }).key;
  return { tenantId: body.tenant.id, admin: key("admin"), ingest: key("ingest"), read: key("read") };
}
