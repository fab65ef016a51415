#!/usr/bin/env node
/**
 * Runs `vitest run <args>` and watches its output. The Workers test pool has been seen, now and then,
 * to stop idle between two files (no CPU, no output, no test timeout firing; cause not found). When a
 * run prints nothing for SILENT_MS it is killed and run once more, saying so loudly. A failing test is
 * never retried (only silence is), and the exit code is vitest's own.
 */
import { spawn } from "node:child_process";

const SILENT_MS = Number(process.env.VITEST_WATCHDOG_SILENT_MS ?? 240_000);
const args = ["vitest", "run", ...process.argv.slice(2)];

function run() {
  return new Promise((resolve) => {
    const child = spawn("npx", args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
    let last = Date.now();
    let hung = false;
    const seen = () => {
      last = Date.now();
    };
    child.stdout.on("data", (d) => {
      seen();
      process.stdout.write(d);
    });
    child.stderr.on("data", (d) => {
      seen();
      process.stderr.write(d);
    });
    const timer = setInterval(() => {
      if (Date.now() - last < SILENT_MS) return;
      hung = true;
      clearInterval(timer);
      process.stderr.write(`\nvitest-watchdog: no output for ${SILENT_MS / 1000} s; the run hung, stopping it\n`);
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }, 5_000);
    child.on("exit", (code, signal) => {
      clearInterval(timer);
      resolve({ code: code ?? (signal ? 1 : 0), hung });
    });
  });
}

const first = await run();
if (!first.hung) process.exit(first.code);
process.stderr.write("vitest-watchdog: running the suite once more (it hung; no test failed)\n");
const second = await run();
process.exit(second.hung ? 1 : second.code);
