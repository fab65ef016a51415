/** CPU and memory of local processes, from /proc (Linux). */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const TICKS = 100; // USER_HZ on Linux

export function pidsOf(pattern: string): number[] {
  try {
    return execFileSync("pgrep", ["-f", pattern], { encoding: "utf8" })
      .split("\n")
      .filter(Boolean)
      .map(Number)
      .filter((p) => p !== process.pid);
  } catch {
    return [];
  }
}

/**
 * `root` and every process below it, from /proc. For a stack started by
 * test/support/stack.ts (`stack.child.pid`): the tools/dev.ts node process
 * (miniflare, the PostgreSQL and Upstash bridges, the cron), the workerd it
 * runs, and the embedded PostgreSQL (PGlite) process when history is on
 * without DATABASE_URL. Only this stack's processes: another local workerd
 * (another stack, another engineer's `npm start`) is not counted.
 */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // exited
    }
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const pid = todo.pop() as number;
    if (out.includes(pid)) continue;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out.filter((p) => p !== process.pid);
}

/** A short name for each process (same order), for labels: "node tools/dev.ts", "workerd", "node (PGlite)", "esbuild (tsx)". */
export function processNames(pids: number[]): string[] {
  return pids.map((pid) => {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
      const exe = (args[0] ?? "").split("/").pop() ?? "";
      if (exe === "workerd") return "workerd";
      if (args.some((a) => a.endsWith("tools/dev.ts"))) return "node tools/dev.ts";
      if (args.some((a) => a.includes("pglite"))) return "node (PGlite)";
      if (exe === "esbuild") return "esbuild (tsx)";
      return exe;
    } catch {
      return `pid ${pid} (exited)`;
    }
  });
}

/** Total user+system CPU seconds of the processes. */
export function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }
  return ticks / TICKS;
}

/** Total resident memory of the processes, in MiB. */
export function rssMiB(pids: number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      kb += m ? Number(m[1]) : 0;
    } catch {
      // exited
    }
  }
  return Math.round(kb / 1024);
}
