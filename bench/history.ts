/**
 * History benchmark, on `npm start`'s stack (tools/dev.ts: miniflare →
 * workerd's own socket, the WebSocket bridge to PostgreSQL) against the
 * machine's PostgreSQL, under a steady background load. The actor writes a
 * minute to PostgreSQL once, FLUSH_INTERVAL_MS after it has ended (again
 * after late events), and never the open minute; the history API merges the
 * minutes the actor still holds with PostgreSQL's rows. So freshness is two
 * figures:
 * - accepted → visible in the history API: once a second two probes, each a
 *   unique value in its own stream, go in one request: one stamped now (its
 *   minute is open) and one stamped 60 s ago (a late event, so its minute has
 *   ended and is not yet written). From the receipt, `GET
 *   /v1/streams/:name/history?step=1m` over the probe's minute is polled until
 *   its point holds the probe. This is what a user of the API sees.
 * - minute end → PostgreSQL row: for the same probes, from the end of the
 *   probe's minute — or from its receipt, when that came later (the late
 *   probes: their minute had already ended, so a short run still gets samples)
 *   — until its `metrics_minute` row holds it (polled every 20 ms, given up
 *   90 s after). This is what a tool reading the tables (Grafana) sees.
 *   Probes stamped now wait up to a minute for their minute to end, so the
 *   probe phase lasts up to ~62 s longer than `--probes` seconds.
 * - rows and bytes written per minute per active stream;
 * - an outage: the database bridge goes down for a while as load continues,
 *   centred on a minute's write so that write fails, then comes back; the
 *   time until every ended minute is written, and PostgreSQL totals (once
 *   the minute open at the restore is written too) against the receipts.
 *
 *   npm run bench:history                    # ~4 min (npm run bench: --probes 15 --outage 8, ~3 min)
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
/** How late the late probes are stamped: always inside the previous minute. */
const LATE_MS = 60_000;
/** The stack's default (BENCH_ENV leaves it): a minute is written this long after it ends. */
const FLUSH_INTERVAL_MS = 2000;
/** A probe not seen this long after its clock started is counted missing. */
const GIVE_UP_MS = 90_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const minuteOf = (ts: number) => Math.floor(ts / 60_000) * 60_000;

function summary(sorted: number[], missing: number) {
  const round = (x: number) => (Number.isFinite(x) ? Math.round(x * 10) / 10 : null);
  return {
    samples: sorted.length,
    missing,
    p50: round(percentile(sorted, 0.5)),
    p99: round(percentile(sorted, 0.99)),
    max: round(sorted[sorted.length - 1]),
  };
}

interface RowProbe {
  kind: "onTime" | "late";
  stream: string;
  value: number;
  /** Wall-clock ms the clock starts at: the end of the probe's minute, or its receipt if that came later. */
  from: number;
}

/** Polls `metrics_minute` every 20 ms for the probes still waiting; each is timed at the first poll its row holds it. */
function watchRows(db: pg.Client, tenantId: string) {
  const waiting: RowProbe[] = [];
  const lags: Record<RowProbe["kind"], number[]> = { onTime: [], late: [] };
  const missing: Record<RowProbe["kind"], number> = { onTime: 0, late: 0 };
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
          if (row && Number(row.count) >= 1 && row.max === p.value) lags[p.kind].push(now - p.from);
          else if (now - p.from > GIVE_UP_MS) missing[p.kind]++;
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
      for (const l of Object.values(lags)) l.sort((a, b) => a - b);
      return { onTime: summary(lags.onTime, missing.onTime), late: summary(lags.late, missing.late) };
    },
  };
}

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

  // Accepted → visible in the history API: the probe's minute is read until its point holds the probe.
  const visible = async (stream: string, value: number, ts: number, acked: number): Promise<number | null> => {
    const minute = minuteOf(ts);
    for (;;) {
      const res = await fetch(
        `${stack.url}/v1/streams/${stream}/history?step=1m&from=${minute}&to=${minute + 60_000}`,
        {
          headers: { authorization: `Bearer ${k.read}` },
        },
      );
      if (!res.ok) throw new Error(`history ${res.status}: ${await res.text()}`);
      const body = (await res.json()) as { points: Array<{ t: string; count: number; max: number | null }> };
      if (body.points.some((p) => Date.parse(p.t) === minute && p.count >= 1 && p.max === value)) {
        return performance.now() - acked;
      }
      if (performance.now() - acked > GIVE_UP_MS) return null;
      await sleep(5);
    }
  };

  const rows = watchRows(db, k.tenantId);
  const apiLags: number[] = [];
  let apiMissing = 0;
  for (let i = 0; i < PROBES; i++) {
    const value = 1000 + i;
    const now = Date.now();
    const probes = [
      { kind: "onTime" as const, stream: `probe.${i}`, ts: now },
      { kind: "late" as const, stream: `late.${i}`, ts: now - LATE_MS },
    ];
    const t0 = performance.now();
    const r = await post(probes.map((p) => ({ name: p.stream, value, ts: p.ts })));
    const acked = performance.now();
    const ackedWall = Date.now();
    if (r.accepted !== probes.length) throw new Error(`probe ${i}: accepted ${r.accepted} of ${probes.length}`);
    for (const p of probes) {
      rows.add({ kind: p.kind, stream: p.stream, value, from: Math.max(minuteOf(p.ts) + 60_000, ackedWall) });
    }
    for (const lag of await Promise.all(probes.map((p) => visible(p.stream, value, p.ts, acked)))) {
      if (lag === null) apiMissing++;
      else apiLags.push(lag);
    }
    await sleep(Math.max(0, 1000 - (performance.now() - t0)));
  }
  apiLags.sort((a, b) => a - b);
  const historyApi = summary(apiLags, apiMissing);
  console.log("accepted → visible in the history API, ms:", JSON.stringify(historyApi));
  const postgresRow = {
    note: `clock starts at the end of the probe's minute, or at its receipt if later; late probes are stamped ${LATE_MS / 1000} s in the past (their minute has already ended)`,
    ...(await rows.finish()),
  };
  console.log("minute end → PostgreSQL row, ms:", JSON.stringify(postgresRow));

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

  // Outage, centred on the next minute's write (minute end + FLUSH_INTERVAL_MS) so that write fails at least once:
  // the actor no longer writes every few seconds, and an outage between two minutes' writes would test nothing.
  if (!stack.bridge) throw new Error("no bridge");
  let writeAt = minuteOf(Date.now()) + 60_000 + FLUSH_INTERVAL_MS;
  if (writeAt - OUTAGE_S * 500 < Date.now() + 1000) writeAt += 60_000;
  await sleep(writeAt - OUTAGE_S * 500 - Date.now());
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
  // Ended minutes written: every load stream's actor reports no ended minute waiting (cleared only after PostgreSQL took it).
  let endedWrittenMs = 0;
  for (;;) {
    const pending = await Promise.all(
      Array.from({ length: STREAMS }, async (_, s) => {
        const res = await fetch(`${stack.url}/v1/streams/load.s${s}`, {
          headers: { authorization: `Bearer ${k.read}` },
        });
        return ((await res.json()) as { history: { pending_minutes: number } }).history.pending_minutes;
      }),
    );
    if (pending.every((p) => p === 0)) {
      endedWrittenMs = performance.now() - upAt;
      break;
    }
    if (performance.now() - upAt > 600_000) throw new Error(`ended minutes not written: ${pending.join(",")}`);
    await sleep(100);
  }
  // Every acknowledged event in PostgreSQL: this waits for the minute open at the restore to end and be written.
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
    endedMinutesWrittenAfterRestoreMs: Math.round(endedWrittenMs),
    allEventsInPostgresAfterRestoreMs: Math.round(drainedMs),
    eventsAcknowledged: expected,
    eventsInPostgres: inPostgres,
  };
  console.log("outage:", JSON.stringify(outage));

  await db.end();
  await stack.stop();
  writeFileSync(
    join(ROOT, "bench", "results", "history.json"),
    `${JSON.stringify({ date: new Date().toISOString(), streams: STREAMS, rate: RATE, historyApi, postgresRow, writes, outage }, null, 2)}\n`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
