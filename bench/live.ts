/**
 * Live latency: event acknowledged → dashboard WebSocket message showing it,
 * at a steady open-loop rate (1,000 and 10,000 events/s), measured by a
 * client on the stream's socket; then how many sockets one actor and one hub
 * serve with every socket receiving an update.
 *
 *   npm run bench:live
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { WebSocket } from "ws";
import { parseServerMessage, type ServerMessage } from "../core/live";
import { createTestDatabase } from "../test/support/pg";
import { createTenant, ROOT, startStack } from "../test/support/stack";
import { BENCH_ENV, percentile } from "./load";

const { values: args } = parseArgs({
  options: { seconds: { type: "string", default: "15" }, sockets: { type: "string", default: "500" } },
});
const SECONDS = Number(args.seconds);
const SOCKETS = Number(args.sockets);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function openSocket(url: string, key: string, onMessage: (m: ServerMessage, at: number) => void): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ["edgepulse.v1", `bearer.${key}`]);
    ws.on("message", (data) => {
      const at = performance.now();
      const m = parseServerMessage(String(data));
      if (m) onMessage(m, at);
    });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

async function main() {
  const databaseUrl = await createTestDatabase("edgepulse_bench_live");
  const stack = await startStack({ extraEnv: { ...BENCH_ENV, DATABASE_URL: databaseUrl } });
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  const wsBase = stack.url.replace("http", "ws");
  const results: Record<string, unknown> = {};
  try {
    for (const rate of [1000, 10_000]) {
      const k = await createTenant(stack, `live-${rate}`);
      const stream = "latency";
      const post = (events: unknown[]) =>
        fetch(`${stack.url}/v1/events`, {
          method: "POST",
          headers: { authorization: `Bearer ${k.ingest}`, "content-type": "application/json" },
          body: JSON.stringify(events),
        });
      await post([{ name: stream }]);
      // Pending acks: cumulative accepted after a batch → when its receipt arrived.
      const pending: Array<{ total: number; acked: number }> = [];
      const lat: number[] = [];
      let seenTotal = 0;
      let messages = 0;
      // Accepted → live API: every 10th receipt, read the stream at once and check the events are counted.
      const apiLat: number[] = [];
      const probeApi = async (totalAtAck: number, acked: number) => {
        for (;;) {
          const res = await fetch(`${stack.url}/v1/streams/${stream}?window=1m`, {
            headers: { authorization: `Bearer ${k.read}` },
          });
          const body = (await res.json()) as { counters: { accepted: number } };
          if (body.counters.accepted >= totalAtAck) break;
        }
        apiLat.push(performance.now() - acked);
      };
      // Accepted → PostgreSQL row: poll the minute rows' total every 20 ms.
      const pgPending: Array<{ total: number; acked: number }> = [];
      const pgLat: number[] = [];
      let polling = true;
      let pollingStopped = 0;
      const poller = (async () => {
        while (polling || pgPending.length > 0) {
          const r = await db.query<{ n: string }>(
            "SELECT coalesce(sum(count), 0) AS n FROM metrics_minute WHERE tenant_id = $1 AND stream = $2",
            [k.tenantId, stream],
          );
          const inPg = Number(r.rows[0].n);
          const at = performance.now();
          while (pgPending.length > 0 && pgPending[0].total <= inPg) {
            const p = pgPending.shift() as { total: number; acked: number };
            pgLat.push(at - p.acked);
          }
          if (!polling && performance.now() - pollingStopped > 15_000) break;
          await sleep(20);
        }
      })();
      let batchNo = 0;
      const apiProbes: Promise<void>[] = [];
      const ws = await openSocket(`${wsBase}/v1/streams/${stream}/live`, k.read, (m, at) => {
        if (m.type !== "update" && m.type !== "snapshot") return;
        messages++;
        seenTotal = Math.max(seenTotal, m.counters.accepted);
        while (pending.length > 0 && pending[0].total <= seenTotal) {
          const p = pending.shift() as { total: number; acked: number };
          lat.push(Math.max(0, at - p.acked));
        }
      });
      const batch = rate >= 10_000 ? 100 : 10;
      const interval = (batch / rate) * 1000;
      let total = 1;
      let next = performance.now();
      const deadline = next + SECONDS * 1000;
      const inflight: Promise<void>[] = [];
      // Receipts come back in order per connection only, so track totals by the actor's counter, not per request.
      while (performance.now() < deadline) {
        const events = Array.from({ length: batch }, (_, i) => ({ name: stream, value: i }));
        inflight.push(
          post(events).then(async (res) => {
            const r = (await res.json()) as { accepted: number };
            total += r.accepted;
            const acked = performance.now();
            pending.push({ total, acked });
            pending.sort((a, b) => a.total - b.total);
            pgPending.push({ total, acked });
            pgPending.sort((a, b) => a.total - b.total);
            if (batchNo++ % 10 === 0) apiProbes.push(probeApi(total, acked));
          }),
        );
        next += interval;
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
      }
      await Promise.all(inflight);
      await Promise.all(apiProbes);
      polling = false;
      pollingStopped = performance.now();
      await poller;
      ws.close();
      apiLat.sort((a, b) => a - b);
      pgLat.sort((a, b) => a - b);
      lat.sort((a, b) => a - b);
      const r = {
        targetEventsPerSec: rate,
        sentEvents: total - 1,
        achievedEventsPerSec: Math.round((total - 1) / SECONDS),
        samples: lat.length,
        p50ms: Number(percentile(lat, 0.5).toFixed(1)),
        p99ms: Number(percentile(lat, 0.99).toFixed(1)),
        messagesPerSec: Math.round(messages / SECONDS),
        liveApi: {
          samples: apiLat.length,
          p50ms: Number(percentile(apiLat, 0.5).toFixed(1)),
          p99ms: Number(percentile(apiLat, 0.99).toFixed(1)),
        },
        postgresRow: {
          samples: pgLat.length,
          p50ms: Math.round(percentile(pgLat, 0.5)),
          p99ms: Math.round(percentile(pgLat, 0.99)),
        },
      };
      results[`rate_${rate}`] = r;
      console.log(JSON.stringify(r));
    }

    // Fan-out: SOCKETS sockets on one actor and on one hub; every one must see the next update.
    const k = await createTenant(stack, "fanout");
    const post = (events: unknown[]) =>
      fetch(`${stack.url}/v1/events`, {
        method: "POST",
        headers: { authorization: `Bearer ${k.ingest}`, "content-type": "application/json" },
        body: JSON.stringify(events),
      });
    await post([{ name: "wall" }]);
    for (const [label, path, done] of [
      ["actor", "/v1/streams/wall/live", (m: ServerMessage) => m.type === "update" && m.windows["1m"].count >= 2],
      ["hub", "/v1/live", (m: ServerMessage) => m.type === "streams" && m.streams.some((s) => s.count >= 3)],
    ] as const) {
      let got = 0;
      let firstSend = 0;
      let last = 0;
      const sockets: WebSocket[] = [];
      for (let i = 0; i < SOCKETS; i++) {
        let seen = false;
        sockets.push(
          await openSocket(`${wsBase}${path}`, k.read, (m, at) => {
            if (!seen && firstSend > 0 && done(m)) {
              seen = true;
              got++;
              last = at;
            }
          }),
        );
      }
      firstSend = performance.now();
      await post([{ name: "wall" }]);
      for (let t = 0; t < 200 && got < SOCKETS; t++) await sleep(25);
      const r = { sockets: SOCKETS, received: got, lastDeliveryMs: Math.round(last - firstSend) };
      results[`fanout_${label}`] = r;
      console.log(label, JSON.stringify(r));
      for (const s of sockets) s.close();
    }
  } finally {
    await db.end();
    await stack.stop();
  }
  writeFileSync(
    join(ROOT, "bench", "results", "live.json"),
    `${JSON.stringify({ date: new Date().toISOString(), ...results }, null, 2)}\n`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
