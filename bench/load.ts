/**
 * A closed-loop load generator: `connections` workers each send a request,
 * wait for the reply, and send the next until the time is up. Every request
 * started is awaited, so the totals are exact (what the server acknowledged
 * can be compared with what it counted). Uses node:http with keep-alive:
 * it costs the client far less CPU than fetch, which matters on 2 cores.
 */
import { Agent, request } from "node:http";
/** Benchmarks measure capacity: the stack runs with rate limits out of the way. */
export const BENCH_ENV = { RATE_LIMIT_INGEST_PER_SEC: "1000000", RATE_LIMIT_READ_PER_SEC: "1000000" };

export interface LoadOptions {
  url: string;
  seconds: number;
  connections: number;
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  /** Bodies sent in rotation. */
  bodies?: string[];
  /** Reads the reply of a successful request; its return values are summed (e.g. events accepted). */
  tally?: (body: string) => number;
}

export interface LoadResult {
  requests: number;
  ok: number;
  failed: number;
  tallied: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
}

export function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export async function closedLoop(opts: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  let tallied = 0;
  let next = 0;
  const agent = new Agent({ keepAlive: true, maxSockets: opts.connections });
  const start = performance.now();
  const deadline = start + opts.seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline) {
      const body = opts.bodies ? opts.bodies[next++ % opts.bodies.length] : undefined;
      const t0 = performance.now();
      try {
        const res = await send(agent, opts.url, opts.method ?? (body ? "POST" : "GET"), opts.headers ?? {}, body);
        const text = res.body;
        latencies.push(performance.now() - t0);
        if (res.status >= 200 && res.status < 300) {
          ok++;
          if (opts.tally) tallied += opts.tally(text);
        } else failed++;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: opts.connections }, worker));
  agent.destroy();
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    requests: ok + failed,
    ok,
    failed,
    tallied,
    seconds,
    rps: (ok + failed) / seconds,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
  };
}

/** One HTTP request on `agent`, its body read as text (the benchmarks' raw client: no fetch overhead). */
export function send(
  agent: Agent,
  url: string,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}
