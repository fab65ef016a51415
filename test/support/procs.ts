/** Processes of the local stack, read from /proc (Linux): to find workerd under `npm start`, or what is left. */
import { readdirSync, readFileSync } from "node:fs";

export interface Proc {
  pid: number;
  /** Start time in clock ticks since boot: tells a process from a later one that reuses its pid. */
  start: string;
  cmd: string;
}

function statOf(pid: number): { ppid: number; state: string; start: string } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0], ppid: Number(fields[1]), start: fields[19] };
  } catch {
    return null;
  }
}

/** Every process below `root` (children, grandchildren, …), from /proc. */
export function descendants(root: number): Proc[] {
  const byParent = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const s = statOf(Number(name));
    if (s) byParent.set(s.ppid, [...(byParent.get(s.ppid) ?? []), Number(name)]);
  }
  const out: Proc[] = [];
  const queue = [...(byParent.get(root) ?? [])];
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    const s = statOf(pid);
    if (!s) continue;
    let cmd = "";
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
    } catch {
      continue;
    }
    out.push({ pid, start: s.start, cmd });
    queue.push(...(byParent.get(pid) ?? []));
  }
  return out;
}

/** Still running: the same process (same start time), not a zombie. */
export function running(p: Proc): boolean {
  const s = statOf(p.pid);
  return s !== null && s.start === p.start && s.state !== "Z";
}
