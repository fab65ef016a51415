/**
 * One minute of dimension aggregation, in its two forms: open (the
 * contributions not yet packed, as append-only columns) and packed (the
 * block that is also its storage row: every group's aggregate and encoded
 * HyperLogLog registers, and what each dimension folded into "__other__").
 * Used by core/dims.ts, which owns the values, the budget and the ring.
 */
import { type Accumulator, type Aggregate, readAggregate, writeAggregate } from "./aggregate.ts";
import { ByteReader, ByteWriter } from "./bytes.ts";
import { encodeRegisters } from "./hll.ts";
import { FrequentItems } from "./topk.ts";
import { SECOND_MAX_BINS } from "./window.ts";

/** Items kept by each frequent-items summary of a dimension's folded values, per minute. */
export const TOPK_ITEMS = 64;

/** One group's state while a minute is packed or read. */
export interface GroupAcc {
  acc: Accumulator;
  /** HLL registers (register → rank) of the group's users. */
  users: Map<number, number>;
}

/** What a dimension folded into __other__ in a minute: its heaviest values by count and by sum. */
export interface Overflow {
  count: FrequentItems;
  sum: FrequentItems;
}

const newOverflow = (): Overflow => ({ count: new FrequentItems(TOPK_ITEMS), sum: new FrequentItems(TOPK_ITEMS) });

/**
 * The contributions to a minute not yet packed into its block, as append-only columns (one row per
 * event and dimension: group id, value, the user's HLL register and rank): ~15 bytes a contribution,
 * aggregated when the minute is packed or read.
 */
export class OpenMinute {
  n = 0;
  gids = new Uint32Array(256);
  values = new Float64Array(256);
  regs = new Uint16Array(256);
  /** 0: no user. */
  ranks = new Uint8Array(256);
  readonly overflow = new Map<number, Overflow>();

  push(gid: number, value: number | undefined, reg: number, rank: number): void {
    if (this.n === this.gids.length) {
      const size = this.n * 2;
      const grow = <T extends Uint32Array | Float64Array | Uint16Array | Uint8Array>(
        a: T,
        make: (n: number) => T,
      ): T => {
        const b = make(size);
        b.set(a);
        return b;
      };
      this.gids = grow(this.gids, (n) => new Uint32Array(n));
      this.values = grow(this.values, (n) => new Float64Array(n));
      this.regs = grow(this.regs, (n) => new Uint16Array(n));
      this.ranks = grow(this.ranks, (n) => new Uint8Array(n));
    }
    this.gids[this.n] = gid;
    this.values[this.n] = value === undefined ? Number.NaN : value;
    this.regs[this.n] = reg;
    this.ranks[this.n] = rank;
    this.n++;
  }

  fold(dim: number, value: string, weight: number | undefined): void {
    let o = this.overflow.get(dim);
    if (o === undefined) {
      o = newOverflow();
      this.overflow.set(dim, o);
    }
    o.count.add(value, 1);
    if (weight !== undefined && weight > 0) o.sum.add(value, weight);
  }

  /** Folds the contributions into per-group states (only groups `want` accepts). */
  into(groupOf: (gid: number) => GroupAcc | null): void {
    for (let i = 0; i < this.n; i++) {
      const g = groupOf(this.gids[i]);
      if (g === null) continue;
      const v = this.values[i];
      g.acc.addEvent(Number.isNaN(v) ? undefined : v);
      const rank = this.ranks[i];
      if (rank > 0 && rank > (g.users.get(this.regs[i]) ?? 0)) g.users.set(this.regs[i], rank);
    }
  }
}

const BLOCK_VERSION = 1;

/** One group of a decoded block. */
export interface BlockGroup {
  gid: number;
  aggregate: Aggregate;
  hll: Uint8Array;
}

/** Decodes a packed minute block. */
export function readBlock(block: Uint8Array): { groups: BlockGroup[]; overflow: Map<number, Overflow> } {
  const r = new ByteReader(block);
  if (r.byte() !== BLOCK_VERSION) throw new Error("unknown dimension block version");
  const groups: BlockGroup[] = [];
  const n = r.varint();
  for (let i = 0; i < n; i++) {
    const gid = r.varint();
    const aggregate = readAggregate(r);
    const hll = r.raw(r.varint());
    groups.push({ gid, aggregate, hll });
  }
  const overflow = new Map<number, Overflow>();
  const o = r.varint();
  for (let i = 0; i < o; i++) {
    const dim = r.varint();
    const count = FrequentItems.decode(r.raw(r.varint()));
    const sum = FrequentItems.decode(r.raw(r.varint()));
    overflow.set(dim, { count, sum });
  }
  return { groups, overflow };
}

export function writeBlock(groups: Map<number, GroupAcc>, overflow: Map<number, Overflow>): Uint8Array {
  const w = new ByteWriter();
  w.byte(BLOCK_VERSION);
  const gids = [...groups.keys()].sort((a, b) => a - b);
  w.varint(gids.length);
  for (const gid of gids) {
    const g = groups.get(gid) as GroupAcc;
    w.varint(gid);
    writeAggregate(w, g.acc.toAggregate(SECOND_MAX_BINS * 4));
    const hll = g.users.size > 0 ? encodeRegisters(g.users) : new Uint8Array(0);
    w.varint(hll.length);
    w.raw(hll);
  }
  const dims = [...overflow.keys()].sort((a, b) => a - b);
  w.varint(dims.length);
  for (const d of dims) {
    const o = overflow.get(d) as Overflow;
    w.varint(d);
    const c = o.count.encode();
    w.varint(c.length);
    w.raw(c);
    const s = o.sum.encode();
    w.varint(s.length);
    w.raw(s);
  }
  return w.bytes();
}
