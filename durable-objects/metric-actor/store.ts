/**
 * The window store: moves the stream's window state (core/window.ts) in and
 * out of the actor's SQLite storage. Open minutes are stored one row per
 * second (an ingest rewrites only the seconds it touched), ended minutes one
 * packed block each, the sliding HyperLogLog one row per register, and the
 * per-minute HyperLogLog registers of minutes not yet in history one row per
 * (minute, register). Waking up reads these rows and decodes nothing else.
 */
import { decodeAggregate, encodeAggregate } from "../../core/aggregate";
import { PeriodHll } from "../../core/hll";
import { type ApplyResult, StreamWindows } from "../../core/window";
import { deleteIn, upsertRows } from "../sql-batch";

export class WindowStore {
  windows: StreamWindows;

  constructor(
    readonly sql: SqlStorage,
    readonly history: boolean,
  ) {
    this.windows = new StreamWindows({ minuteUsers: history });
  }

  /** Rebuilds the window state from storage (on wake-up, and after a refused write). */
  load(): void {
    const w = new StreamWindows({ minuteUsers: this.history });
    this.windows = w;
    for (const r of this.sql.exec<{ minute: number; block: ArrayBuffer }>("SELECT minute, block FROM minutes")) {
      w.loadMinute(r.minute, new Uint8Array(r.block));
    }
    for (const r of this.sql.exec<{ sec: number; agg: ArrayBuffer }>("SELECT sec, agg FROM seconds")) {
      w.loadSecond(r.sec, decodeAggregate(r.agg));
    }
    for (const r of this.sql.exec<{ reg: number; pairs: ArrayBuffer }>("SELECT reg, pairs FROM hll")) {
      w.hll.loadRegister(r.reg, r.pairs);
    }
    for (const r of this.sql.exec<{ minute: number; reg: number; rank: number }>(
      "SELECT minute, reg, rank FROM minute_regs",
    )) {
      let p = w.minuteUsers.get(r.minute);
      if (p === undefined) {
        p = new PeriodHll();
        w.minuteUsers.set(r.minute, p);
      }
      p.set(r.reg, r.rank);
    }
  }

  /** Writes what an apply changed. Call inside the ingest's transaction. */
  persistApply(r: ApplyResult): void {
    const w = this.windows;
    for (const sec of r.seconds) {
      const a = w.secondRecord(sec);
      if (a) this.sql.exec("INSERT OR REPLACE INTO seconds (sec, agg) VALUES (?, ?)", sec, encodeAggregate(a));
    }
    for (const m of r.blocks) this.#writeBlock(m);
    this.#writeRegisters(r.registers);
    const rows: number[][] = [];
    for (let i = 0; i < r.minuteRegs.length; i += 3)
      rows.push([r.minuteRegs[i], r.minuteRegs[i + 1], r.minuteRegs[i + 2]]);
    upsertRows(this.sql, "minute_regs", ["minute", "reg", "rank"], rows);
  }

  #writeBlock(m: number): void {
    const block = this.windows.minuteBlock(m);
    if (block === null) return;
    this.sql.exec("INSERT OR REPLACE INTO minutes (minute, block) VALUES (?, ?)", m, block);
    this.sql.exec("DELETE FROM seconds WHERE sec >= ? AND sec < ?", m * 60, m * 60 + 60);
  }

  /** The registers' rows as they are now: written, or deleted when empty; many per statement. */
  #writeRegisters(registers: Iterable<number>): void {
    const puts: Array<[number, Uint8Array]> = [];
    const gone: number[] = [];
    for (const reg of registers) {
      const bytes = this.windows.hll.encodeRegister(reg);
      if (bytes === null) gone.push(reg);
      else puts.push([reg, bytes]);
    }
    deleteIn(this.sql, "hll", "reg", gone);
    upsertRows(this.sql, "hll", ["reg", "pairs"], puts);
  }

  /** Packs the minutes that have ended into blocks (memory and storage). Call inside a transaction. */
  packEnded(now: number): number[] {
    const packed = this.windows.packEnded(now);
    for (const m of packed) this.#writeBlock(m);
    return packed;
  }

  /** Drops minutes older than the longest window (memory and storage). Call inside a transaction. */
  expire(now: number): void {
    const gone = this.windows.expire(now);
    for (const { minute } of gone.minutes) {
      this.sql.exec("DELETE FROM minutes WHERE minute = ?", minute);
      this.sql.exec("DELETE FROM seconds WHERE sec >= ? AND sec < ?", minute * 60, minute * 60 + 60);
    }
    for (const m of gone.users) this.sql.exec("DELETE FROM minute_regs WHERE minute = ?", m);
    this.#writeRegisters(gone.registers);
  }

  /** Lets go of a minute's HyperLogLog once history holds it (a later late event starts a delta). */
  dropMinuteUsers(m: number): void {
    this.windows.minuteUsers.delete(m);
    this.sql.exec("DELETE FROM minute_regs WHERE minute = ?", m);
  }
}
