/**
 * Converts an actor's version-1 storage (one sketch row per second, three
 * outboxes) to the current layout, once, on wake-up, inside one transaction.
 * Seconds become open-minute rows (housekeeping packs the ended ones); only
 * the per-minute HyperLogLogs history still owes are kept; the old outboxes
 * become entries of the one outbox.
 */
import { encodeAggregate } from "../../core/aggregate";
import { decode as decodeSketch, encode as encodeSketch } from "../../core/ddsketch";
import { PeriodHll, REGISTERS } from "../../core/hll";
import { encodeFrozen } from "./history";
import { SCHEMA, SCHEMA_VERSION } from "./schema";

const tableExists = (sql: SqlStorage, name: string) =>
  sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", name).toArray().length > 0;

const minuteKey = (m: number) => String(m).padStart(10, "0");

/** Creates the schema, converting version-1 tables first when present. */
export function migrate(sql: SqlStorage, storage: DurableObjectStorage): void {
  const version = tableExists(sql, "meta")
    ? sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'schema'").toArray()[0]?.v
    : undefined;
  if (version === String(SCHEMA_VERSION) || !tableExists(sql, "buckets")) {
    storage.transactionSync(() => {
      for (const stmt of SCHEMA) sql.exec(stmt);
      sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('schema', ?)", String(SCHEMA_VERSION));
    });
    return;
  }
  storage.transactionSync(() => {
    sql.exec("ALTER TABLE outbox RENAME TO v1_outbox");
    sql.exec("ALTER TABLE alert_events RENAME TO v1_alert_events");
    // Version 1 only guarded dimension values (no aggregation): its list is not carried over.
    sql.exec("DROP TABLE IF EXISTS dim_values");
    for (const stmt of SCHEMA) sql.exec(stmt);

    type Bucket = {
      sec: number;
      count: number;
      value_count: number;
      sum: number;
      min: number | null;
      max: number | null;
      sketch: ArrayBuffer;
    };
    for (const b of sql.exec<Bucket>("SELECT sec, count, value_count, sum, min, max, sketch FROM buckets").toArray()) {
      const agg = {
        count: b.count,
        valueCount: b.value_count,
        sum: b.value_count > 0 ? b.sum : 0,
        min: b.value_count > 0 ? b.min : null,
        max: b.value_count > 0 ? b.max : null,
        sketch: encodeSketch(decodeSketch(b.sketch)),
      };
      sql.exec("INSERT OR REPLACE INTO seconds (sec, agg) VALUES (?, ?)", b.sec, encodeAggregate(agg));
    }

    type V1Outbox = {
      minute: number;
      frozen: number;
      count: number | null;
      value_count: number | null;
      sum: number | null;
      min: number | null;
      max: number | null;
      sketch: ArrayBuffer | null;
      hll: ArrayBuffer | null;
    };
    const owed = sql
      .exec<V1Outbox>("SELECT minute, frozen, count, value_count, sum, min, max, sketch, hll FROM v1_outbox")
      .toArray();
    const hlls = new Map(
      sql
        .exec<{ minute: number; regs: ArrayBuffer }>("SELECT minute, regs FROM minute_hll")
        .toArray()
        .map((r) => [r.minute, PeriodHll.decode(r.regs)]),
    );
    const now = Date.now();
    for (const o of owed) {
      let payload: Uint8Array | null = null;
      if (o.frozen) {
        payload = encodeFrozen(
          {
            count: o.count ?? 0,
            valueCount: o.value_count ?? 0,
            sum: o.sum ?? 0,
            min: o.min,
            max: o.max,
            sketch: encodeSketch(decodeSketch(o.sketch ?? new ArrayBuffer(8))),
          },
          o.hll ? PeriodHll.decode(o.hll) : undefined,
        );
      } else {
        const regs = hlls.get(o.minute)?.registers();
        if (regs) {
          for (let reg = 0; reg < REGISTERS; reg++) {
            if (regs[reg] > 0)
              sql.exec("INSERT INTO minute_regs (minute, reg, rank) VALUES (?, ?, ?)", o.minute, reg, regs[reg]);
          }
        }
      }
      sql.exec(
        "INSERT INTO outbox (topic, key, version, state, due, payload) VALUES ('minute', ?, 1, 'pending', ?, ?)",
        minuteKey(o.minute),
        now,
        payload,
      );
    }

    const events = sql
      .exec<{ seq: number; id: string; event: string; pg_flushed: number }>(
        "SELECT seq, id, event, pg_flushed FROM v1_alert_events ORDER BY seq",
      )
      .toArray();
    const byId = new Map(events.map((e) => [e.id, e.event]));
    for (const e of events) {
      sql.exec("INSERT INTO alert_events (seq, id, event) VALUES (?, ?, ?)", e.seq, e.id, e.event);
      if (!e.pg_flushed) {
        sql.exec(
          "INSERT OR REPLACE INTO outbox (topic, key, version, state, due, payload) VALUES ('alert', ?, 1, 'pending', ?, ?)",
          e.id,
          now,
          new TextEncoder().encode(e.event),
        );
      }
    }
    type Delivery = {
      event_id: string;
      target: string;
      status: string;
      attempts: number;
      next_at: number;
      last_error: string | null;
      delivered_at: number | null;
    };
    for (const d of sql
      .exec<Delivery>("SELECT event_id, target, status, attempts, next_at, last_error, delivered_at FROM deliveries")
      .toArray()) {
      const state = d.status === "delivered" ? "done" : d.status === "failed" ? "failed" : "pending";
      sql.exec(
        `INSERT OR REPLACE INTO outbox (topic, key, version, state, due, attempts, last_error, done_at, payload)
         VALUES ('webhook', ?, 1, ?, ?, ?, ?, ?, ?)`,
        `${d.event_id}|${d.target}`,
        state,
        d.next_at,
        d.attempts,
        d.last_error,
        d.delivered_at,
        new TextEncoder().encode(byId.get(d.event_id) ?? JSON.stringify({ id: d.event_id })),
      );
    }

    for (const t of ["buckets", "minute_hll", "v1_outbox", "v1_alert_events", "deliveries"])
      sql.exec(`DROP TABLE ${t}`);
    sql.exec("DELETE FROM meta WHERE k = 'webhook_secret'");
    sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('schema', ?)", String(SCHEMA_VERSION));
  });
}
