/**
 * Live latency: event acknowledged → dashboard WebSocket message showing it,
 * at a steady open-loop rate (1,000 and 10,000 events/s), measured by a
 * client on the stream's socket; → the live API and → the history API
 * (`GET /v1/streams/:name/history?step=1m`, which merges the minutes the actor
 * still holds with PostgreSQL's rows) counting it, every 10th receipt; and
 * minute end → PostgreSQL row: twice a second a probe (a unique value in its
 * own stream) stamped 60 s in the past — a late event, so its minute has
 * already ended and a short run still gets samples — is timed from its
 * receipt (the later of its minute's end and the receipt) until its
 * `metrics_minute` row holds it (polled every 20 ms, given up after 90 s).
 * Then how many sockets one actor and one hub serve with every socket
 * receiving an update. Runs `npm start`'s stack (tools/dev.ts: miniflare →
 * workerd's own socket) with history on the machine's PostgreSQL.
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
/** How late the PostgreSQL probes are stamped: always inside the previous minute. */
const LATE_MS = 60_000;
/** A PostgreSQL probe not seen this long after its clock started is counted missing. */
const GIVE_UP_MS = 90_000;
const minuteOf = (ts: number) => Math.floor(ts / 60_000) * 60_000;

interface RowProbe {
  stream: string;
  value: number;
  /** Wall-clock ms the clock starts at: the end of the probe's minute, or its receipt if that came later. */
  from: number;
}

/** Polls `metrics_minute` every 20 ms for the probes still waiting; each is timed at the first poll its row holds it. */
function watchRows(db: pg.Client, tenantId: string) {
  const waiting: RowProbe[] = [];
  const lags: number[] = [];
  let missing = 0;
  let stopping = false;
  const loop = (async () => {
    while (!stopping || waiting.length > 0) {
      if (waiting.length > 0) {
        const r = await db.query<{ stream: string; count: string; max: number | null }>(
          "SELECT stream, count, max FROM metrics_minute WHERE tenant_id = $1 AND stream = ANY($2::text[])",
          [tenantId, waiting.map((p) => p.stream)],
        );
        const now = Date.now();
        const rows = new Map(r.rows.map((x) => [x.stream, x]));
        for (let i = waiting.length - 1; i >= 0; i--) {
          const p = waiting[i];
          const row = rows.get(p.stream);
          if (row && Number(row.count) >= 1 && row.max === p.value) lags.push(now - p.from);
          else if (now - p.from > GIVE_UP_MS) missing++;
          else continue;
          waiting.splice(i, 1);
        }
      }
      await sleep(20);
    }
  })();
  return {
    add: (p: RowProbe) => waiting.push(p),
    async finish() {
      stopping = true;
      await loop;
      lags.sort((a, b) => a - b);
      return { lags, missing };
    },
  };
}

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
      const runMinute = minuteOf(Date.now());
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
      // Accepted → history API: every 10th receipt, read the stream's minutes since the run began until
      // they count the events (the open minute comes from the actor, merged at the seam).
      const historyLat: number[] = [];
      const probeHistory = async (totalAtAck: number, acked: number) => {
        for (;;) {
          const to = minuteOf(Date.now()) + 60_000;
          const res = await fetch(`${stack.url}/v1/streams/${stream}/history?step=1m&from=${runMinute}&to=${to}`, {
            headers: { authorization: `Bearer ${k.read}` },
          });
          if (!res.ok) throw new Error(`history ${res.status}: ${await res.text()}`);
          const body = (await res.json()) as { points: Array<{ count: number }> };
          if (body.points.reduce((a, p) => a + p.count, 0) >= totalAtAck) break;
          if (performance.now() - acked > GIVE_UP_MS) throw new Error(`history never counted ${totalAtAck} events`);
          await sleep(5);
        }
        historyLat.push(performance.now() - acked);
      };
      // Minute end → PostgreSQL row: late probes in their own streams.
      const rows = watchRows(db, k.tenantId);
      const probePostgres = async (i: number) => {
        const ts = Date.now() - LATE_MS;
        const name = `pg.${i}`;
        const res = await post([{ name, value: i, ts }]);
        const acked = Date.now();
        const r = (await res.json()) as { accepted: number };
        if (r.accepted !== 1) throw new Error(`probe ${name} not accepted`);
        rows.add({ stream: name, value: i, from: Math.max(minuteOf(ts) + 60_000, acked) });
      };
      let pgProbes = 0;
      let nextPgProbe = performance.now();
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
            if (batchNo++ % 10 === 0) apiProbes.push(probeApi(total, acked), probeHistory(total, acked));
          }),
        );
        if (performance.now() >= nextPgProbe) {
          inflight.push(probePostgres(pgProbes++));
          nextPgProbe += 500;
        }
        next += interval;
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
      }
      await Promise.all(inflight);
      await Promise.all(apiProbes);
      ws.close();
      const pgRows = await rows.finish();
      apiLat.sort((a, b) => a - b);
      historyLat.sort((a, b) => a - b);
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
        historyApi: {
          samples: historyLat.length,
          p50ms: Number(percentile(historyLat, 0.5).toFixed(1)),
          p99ms: Number(percentile(historyLat, 0.99).toFixed(1)),
        },
        minuteEndToPostgresRow: {
          probes: `late by ${LATE_MS / 1000} s, own stream each; clock from the receipt (their minute had ended)`,
          samples: pgRows.lags.length,
          missing: pgRows.missing,
          p50ms: Math.round(percentile(pgRows.lags, 0.5)),
          p99ms: Math.round(percentile(pgRows.lags, 0.99)),
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
