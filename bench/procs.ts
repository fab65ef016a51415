/** CPU and memory of local processes, from /proc (Linux). */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

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

/**
 * The URL of workerd's own socket behind a `wrangler dev` port (bypassing
 * wrangler's proxy): the other local workerd listener that answers `probePath`.
 */
export async function directWorkerdUrl(
  proxyPort: number,
  probePath: string,
  exclude: number[] = [],
): Promise<string | null> {
  const out = execFileSync("ss", ["-ltnp"], { encoding: "utf8" });
  const ports = [...out.matchAll(/127\.0\.0\.1:(\d+)\s.*"workerd"/g)].map((m) => Number(m[1]));
  for (const p of ports) {
    if (p === proxyPort || p === 9229 || exclude.includes(p)) continue;
    try {
      const res = await fetch(`http://127.0.0.1:${p}${probePath}`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return `http://127.0.0.1:${p}`;
    } catch {
      // not this one
    }
  }
  return null;
}
