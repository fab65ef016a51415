/**
 * History benchmark, on `npm start`'s stack against the machine's PostgreSQL:
 * - flush lag: event acknowledged → its minute row in PostgreSQL shows it,
 *   measured for probe events sent once a second under a steady background load;
 * - rows and bytes written per minute per active stream;
 * - an outage: the database bridge goes down for a while as load continues,
 *   then comes back; PostgreSQL totals are compared with the receipts.
 *
 *   npm run bench:history                    # ~2 min
 *   npm run bench:history -- --probes 120   # steadier percentiles
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { createTestDatabase } from "../test/support/pg";
import { createTenant, ROOT, startStack } from "../test/support/stack";
import { BENCH_ENV, percentile } from "./load";

const { values: args } = parseArgs({
  options: {
    probes: { type: "string", default: "40" },
    streams: { type: "string", default: "20" },
    rate: { type: "string", default: "2000" },
    outage: { type: "string", default: "20" },
  },
});
const PROBES = Number(args.probes);
const STREAMS = Number(args.streams);
const RATE = Number(args.rate); // background events/s, in batches of 50 spread over the streams
const OUTAGE_S = Number(args.outage);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const url = await createTestDatabase("edgepulse_bench_history");
  const stack = await startStack({ extraEnv: { ...BENCH_ENV, DATABASE_URL: url } });
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  const k = await createTenant(stack, "bench-history");
  const post = async (events: unknown[]) => {
    const res = await fetch(`${stack.url}/v1/events`, {
      method: "POST",
      headers: { authorization: `Bearer ${k.ingest}`, "content-type": "application/json" },
      body: JSON.stringify(events),
    });
    if (!res.ok) throw new Error(`ingest ${res.status}: ${await res.text()}`);
    return (await res.json()) as { accepted: number };
  };

  // Steady background load: RATE events/s in batches of 50, each batch over all streams.
  let sent = 0;
  let loadOn = true;
  let n = 0;
  const background = (async () => {
    const interval = (50 / RATE) * 1000;
    let next = performance.now();
    while (loadOn) {
      const events = Array.from({ length: 50 }, () => ({
        name: `load.s${n % STREAMS}`,
        value: 10 + (n++ % 300),
        user: `u${n % 1000}`,
      }));
      sent += (await post(events)).accepted;
      next += interval;
      await sleep(Math.max(0, next - performance.now()));
    }
  })();

  // Flush lag probes.
  const lags: number[] = [];
  const perMinute = new Map<number, number>();
  for (let i = 0; i < PROBES; i++) {
    const ts = Date.now();
    const minute = Math.floor(ts / 60_000) * 60_000;
    await post([{ name: "probe", value: i, ts }]);
    const acked = performance.now();
    const want = (perMinute.get(minute) ?? 0) + 1;
    perMinute.set(minute, want);
    for (;;) {
      const r = await db.query<{ count: string }>(
        "SELECT count FROM metrics_minute WHERE tenant_id = $1 AND stream = 'probe' AND bucket = $2",
        [k.tenantId, new Date(minute)],
      );
      if (r.rows[0] && Number(r.rows[0].count) >= want) break;
      await sleep(10);
    }
    lags.push(performance.now() - acked);
    await sleep(Math.max(0, 1000 - (performance.now() - acked)));
  }
  lags.sort((a, b) => a - b);
  const lag = {
    probes: lags.length,
    p50: percentile(lags, 0.5),
    p99: percentile(lags, 0.99),
    max: lags[lags.length - 1],
  };
  console.log("flush lag ms:", JSON.stringify(lag));

  // Rows and bytes per active stream-minute, over the load so far.
  const status = await Promise.all(
    Array.from({ length: STREAMS }, async (_, s) => {
      const res = await fetch(`${stack.url}/v1/streams/load.s${s}`, { headers: { authorization: `Bearer ${k.read}` } });
      return ((await res.json()) as { history: { minutes_flushed: number } }).history.minutes_flushed;
    }),
  );
  const size = await db.query<{ rows: string; avg: string; minutes: string }>(
    `SELECT count(*) AS rows, avg(pg_column_size(m.*)) AS avg, count(DISTINCT bucket) AS minutes
       FROM metrics_minute m WHERE tenant_id = $1 AND stream LIKE 'load.%'`,
    [k.tenantId],
  );
  const streamMinutes = Number(size.rows[0].rows);
  const upserts = status.reduce((a, b) => a + b, 0);
  const rowBytes = Number(size.rows[0].avg);
  const writes = {
    streamMinutes,
    upsertsPerStreamMinute: upserts / streamMinutes,
    avgRowBytes: Math.round(rowBytes),
    bytesPerStreamMinute: Math.round((upserts / streamMinutes) * rowBytes),
  };
  console.log("writes:", JSON.stringify(writes));

  // Outage.
  if (!stack.bridge) throw new Error("no bridge");
  const acceptedBefore = sent;
  await fetch(`http://${stack.bridge}/__bridge/down`, { method: "POST" });
  const downAt = performance.now();
  await sleep(OUTAGE_S * 1000);
  const acceptedDuring = sent - acceptedBefore;
  const pendingDuring = (
    (await (
      await fetch(`${stack.url}/v1/streams/load.s0`, { headers: { authorization: `Bearer ${k.read}` } })
    ).json()) as {
      history: { pending_minutes: number; failures: number };
    }
  ).history;
  await fetch(`http://${stack.bridge}/__bridge/up`, { method: "POST" });
  const upAt = performance.now();
  loadOn = false;
  await background;
  const expected = sent;
  let drainedMs = 0;
  let inPostgres = 0;
  for (;;) {
    const r = await db.query<{ total: string }>(
      "SELECT coalesce(sum(count), 0) AS total FROM metrics_minute WHERE tenant_id = $1 AND stream LIKE 'load.%'",
      [k.tenantId],
    );
    inPostgres = Number(r.rows[0].total);
    if (inPostgres === expected) {
      drainedMs = performance.now() - upAt;
      break;
    }
    if (performance.now() - upAt > 600_000) throw new Error(`not drained: ${r.rows[0].total} of ${expected}`);
    await sleep(50);
  }
  const outage = {
    seconds: (upAt - downAt) / 1000,
    acceptedDuringOutage: acceptedDuring,
    pendingMinutesOneStream: pendingDuring.pending_minutes,
    failedFlushesOneStream: pendingDuring.failures,
    drainedAfterRestoreMs: Math.round(drainedMs),
    eventsAcknowledged: expected,
    eventsInPostgres: inPostgres,
  };
  console.log("outage:", JSON.stringify(outage));

  await db.end();
  await stack.stop();
  writeFileSync(
    join(ROOT, "bench", "results", "history.json"),
    `${JSON.stringify({ date: new Date().toISOString(), streams: STREAMS, rate: RATE, lag, writes, outage }, null, 2)}\n`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
