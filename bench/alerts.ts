/**
 * Alert latency: the condition becomes true (plus `for`) → the webhook is
 * received, on `npm start`'s stack (tools/dev.ts: miniflare → workerd's own
 * socket) with a local receiver.
 *
 *   npm run bench:alerts
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createTenant, ROOT, startStack } from "../test/support/stack";
import { startReceiver } from "../tools/webhook-receiver";
import { BENCH_ENV, percentile } from "./load";

const TRIALS = 30;

async function main() {
  const stack = await startStack({ extraEnv: { ...BENCH_ENV, DATABASE_URL: "" } });
  const arrivals = new Map<string, number>();
  const receiver = await startReceiver(0, { onDelivery: (name) => arrivals.set(name, performance.now()) });
  const k = await createTenant(stack, "alerts-bench");
  const api = (path: string, key: string, body: unknown) =>
    fetch(`${stack.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const results: Record<string, unknown> = {};
  try {
    for (const forMs of [0, 2000]) {
      const lat: number[] = [];
      const trials = Array.from({ length: TRIALS }, (_, i) => `s${forMs}_${i}`);
      for (const stream of trials) {
        const res = await api("/v1/alerts/rules", k.admin, {
          stream,
          aggregate: "count",
          window: "1m",
          comparator: ">=",
          threshold: 1,
          for: forMs,
          targets: [`${receiver.url}/hook/${stream}`],
        });
        if (res.status !== 201) throw new Error(`rule: ${res.status} ${await res.text()}`);
      }
      // The condition becomes true when the event is acknowledged; the alert is due `for` later.
      const due = new Map<string, number>();
      await Promise.all(
        trials.map(async (stream, i) => {
          await new Promise((r) => setTimeout(r, i * 50));
          const res = await api("/v1/events", k.ingest, [{ name: stream }]);
          if (!res.ok) throw new Error(`ingest ${res.status}`);
          due.set(stream, performance.now() + forMs);
        }),
      );
      const deadline = performance.now() + 60_000;
      while (trials.some((s) => !arrivals.has(s)) && performance.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      for (const s of trials) {
        const at = arrivals.get(s);
        if (at !== undefined) lat.push(at - (due.get(s) as number));
      }
      lat.sort((a, b) => a - b);
      const r = {
        for_ms: forMs,
        trials: TRIALS,
        received: lat.length,
        p50ms: Math.round(percentile(lat, 0.5)),
        p99ms: Math.round(percentile(lat, 0.99)),
        minMs: Math.round(lat[0]),
      };
      results[`for_${forMs}`] = r;
      console.log(JSON.stringify(r));
    }
  } finally {
    await receiver.close();
    await stack.stop();
  }
  writeFileSync(
    join(ROOT, "bench", "results", "alerts.json"),
    `${JSON.stringify({ date: new Date().toISOString(), ...results }, null, 2)}\n`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
