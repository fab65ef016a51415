/**
 * What the rate-limit check adds: the @upstash/ratelimit call against the
 * local Upstash REST bridge (real redis-server), timed directly, and request
 * latency through `npm start`'s stack (tools/dev.ts: miniflare → workerd's
 * own socket) with the Redis limiter vs the Durable Object limiter, same run.
 *
 *   npm run bench:ratelimit
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Ratelimit } from "@upstash/ratelimit";
import { Redis } from "@upstash/redis";
import { createTenant, ROOT, startStack } from "../test/support/stack";
import { startUpstashBridge } from "../tools/upstash-bridge";
import { BENCH_ENV, closedLoop, percentile } from "./load";

const CALLS = 2000;

async function direct() {
  const bridge = await startUpstashBridge({ token: "bench" });
  const redis = new Redis({ url: bridge.url, token: "bench", enableTelemetry: false });
  const rl = new Ratelimit({
    redis,
    limiter: Ratelimit.slidingWindow(1_000_000, "1 s"),
    prefix: `ep:bench:${Date.now()}`,
    ephemeralCache: false,
    analytics: false,
  });
  for (let i = 0; i < 100; i++) await rl.limit("warmup");
  const lat: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const t0 = performance.now();
    await rl.limit("tenant");
    lat.push(performance.now() - t0);
  }
  await bridge.close();
  lat.sort((a, b) => a - b);
  return {
    calls: CALLS,
    p50ms: Number(percentile(lat, 0.5).toFixed(2)),
    p99ms: Number(percentile(lat, 0.99).toFixed(2)),
  };
}

async function viaStack(noRedis: boolean) {
  const stack = await startStack({
    extraEnv: { ...BENCH_ENV, DATABASE_URL: "", EDGEPULSE_NO_REDIS: noRedis ? "1" : "0" },
  });
  try {
    const k = await createTenant(stack, "rl");
    const opts = {
      url: `${stack.url}/v1/tenant`,
      seconds: 8,
      connections: 1,
      headers: { authorization: `Bearer ${k.read}` },
    };
    await closedLoop({ ...opts, seconds: 2 });
    const r = await closedLoop(opts);
    return { requests: r.requests, p50ms: Number(r.p50.toFixed(2)), p99ms: Number(r.p99.toFixed(2)) };
  } finally {
    await stack.stop();
  }
}

async function main() {
  const d = await direct();
  console.log("limiter call via bridge:", JSON.stringify(d));
  const withRedis = await viaStack(false);
  console.log("GET /v1/tenant, Redis limiter:", JSON.stringify(withRedis));
  const withDo = await viaStack(true);
  console.log("GET /v1/tenant, Durable Object limiter:", JSON.stringify(withDo));
  writeFileSync(
    join(ROOT, "bench", "results", "ratelimit.json"),
    `${JSON.stringify({ date: new Date().toISOString(), direct: d, withRedis, withDurableObject: withDo }, null, 2)}\n`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
