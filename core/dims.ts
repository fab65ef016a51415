/**
 * Aggregation by dimension: every dim key of a stream, and the dimension
 * sets it declares (up to 3 sets of up to 3 keys, aggregated jointly), by
 * value, per minute, with the stream's measures (count, sum, min, max,
 * quantiles through the DDSketch, distinct users through per-group
 * HyperLogLog registers).
 *
 * Value budget: each dimension tracks up to `maxValues` values at a time
 * (a value is let go once it has had no event for the whole ring, and its
 * slot is reused). Values beyond the budget are counted in the dimension's
 * `__other__` group, so the groups of a dimension always add up to every
 * event that carries it; what is folded there is also summarised, by count
 * and by sum, in frequent-items summaries (core/topk.ts), so top-k over the
 * folded values comes with bounds.
 *
 * Resolution is the minute: a group's live figures cover whole minutes plus
 * the current one so far (per-second detail for thousands of groups would
 * cost memory in proportion to the events). Minutes that have ended are
 * packed into one block each (every group's aggregate, its encoded HLL
 * registers, and the overflow summaries), which is also their storage row;
 * the open minutes live in accumulators, persisted as a compact log of
 * contributions per commit (cheap to write, replayed on wake-up) until the
 * minute is packed. Only DIM_HOT_MINUTES of blocks stay in memory; older
 * ones (kept in storage for late events and history) are read when needed.
 *
 * Bounds: dimensions ≤ maxKeys + MAX_DIM_SETS; values ≤ maxValues per
 * dimension; per minute, ≤ one group per (dimension, value) and two
 * summaries of ≤ 2·TOPK_ITEMS items per dimension.
 */
import { Accumulator } from "./aggregate.ts";
import { ByteReader, ByteWriter } from "./bytes.ts";
import { type GroupAcc, OpenMinute, type Overflow, readBlock, TOPK_ITEMS, writeBlock } from "./dim-minute.ts";
import { estimateSparse, hashUser, mergeEncodedRegisters } from "./hll.ts";
import { FrequentItems } from "./topk.ts";
import { minuteOf, secondOf } from "./window.ts";

export { type BlockGroup, type Overflow, readBlock, TOPK_ITEMS } from "./dim-minute.ts";
export const OTHER = "__other__";
export const OTHER_VID = 0;
/** Minutes of packed dimension blocks kept in memory: the 15-minute window and the current minute. */
export const DIM_HOT_MINUTES = 16;
export const MAX_DIM_SETS = 3;
export const MAX_SET_KEYS = 3;
/** Value ids take the low 17 bits of a group id (MAX_DIM_VALUES ≤ 100,000 < 2^17). */
const VID_BITS = 17;
const VID_SPACE = 2 ** VID_BITS;

export const gidOf = (dim: number, vid: number) => dim * VID_SPACE + vid;
export const dimOfGid = (gid: number) => Math.floor(gid / VID_SPACE);
export const vidOfGid = (gid: number) => gid % VID_SPACE;

/** A dimension: a single key, or a declared set of keys. */
export interface Dimension {
  id: number;
  /** "country", or for a set "country+plan". */
  name: string;
  keys: string[];
}

export const setName = (keys: string[]) => keys.join("+");

/** A set's value: the JSON array of its keys' values, null for a key the event lacks. */
export function tupleValue(keys: string[], dims: Record<string, string>): string | null {
  let any = false;
  const values = keys.map((k) => {
    const v = dims[k];
    if (v === undefined) return null;
    any = true;
    return v;
  });
  return any ? JSON.stringify(values) : null;
}

/** The values a dimension tracks, each with a small id, up to a budget. */
export class ValueDict {
  readonly ids = new Map<string, number>();
  /** vid → value (index 0 is __other__). */
  readonly values: Array<string | undefined> = [OTHER];
  /** vid → the last minute it had an event. */
  readonly last: number[] = [0];
  readonly #free: number[] = [];

  constructor(readonly budget: number) {}

  get size(): number {
    return this.ids.size;
  }

  /** The value's id, admitting it if there is room; OTHER_VID when the budget is full. `added` is set when admitted. */
  lookup(value: string, minute: number, added?: (vid: number) => void): number {
    const vid = this.ids.get(value);
    if (vid !== undefined) {
      if (this.last[vid] < minute) this.last[vid] = minute;
      return vid;
    }
    if (this.ids.size >= this.budget) return OTHER_VID;
    const id = this.#free.pop() ?? this.values.length;
    this.ids.set(value, id);
    this.values[id] = value;
    this.last[id] = minute;
    added?.(id);
    return id;
  }

  /** Restores an entry from storage. */
  load(vid: number, value: string, last: number): void {
    this.ids.set(value, vid);
    while (this.values.length <= vid) {
      this.#free.push(this.values.length);
      this.values.push(undefined);
      this.last.push(0);
    }
    const f = this.#free.indexOf(vid);
    if (f >= 0) this.#free.splice(f, 1);
    this.values[vid] = value;
    this.last[vid] = last;
  }

  /** Lets go of values with no event since before `minute`; returns their ids. */
  evictBefore(minute: number): number[] {
    const gone: number[] = [];
    for (const [value, vid] of this.ids) {
      if (this.last[vid] >= minute) continue;
      this.ids.delete(value);
      this.values[vid] = undefined;
      this.#free.push(vid);
      gone.push(vid);
    }
    return gone;
  }
}

/** An event as dimension aggregation sees it. */
export interface DimEvent {
  ts: number;
  value?: number;
  user?: string;
  dims?: Record<string, string>;
}

export interface DimApplyResult {
  /** Per minute, the encoded contributions to persist (the log). */
  log: Map<number, Uint8Array>;
  /** Dimensions created (a key seen for the first time). */
  newDims: Dimension[];
  /** Values admitted: persist their ids. */
  newValues: Array<{ dim: number; vid: number; value: string; minute: number }>;
  /** Values folded into __other__ (over the budget). */
  folded: number;
  /** Keys dropped because the stream already has maxKeys keys. */
  droppedKeys: number;
}

/** Figures of one group over a span: its merged aggregate and users. */
export interface GroupSpan {
  acc: Accumulator;
  users: Map<number, number>;
}

export interface SpanResult {
  /** dim id → vid → the group's merged state. */
  groups: Map<number, Map<number, GroupSpan>>;
  /** dim id → what was folded into __other__, merged. */
  overflow: Map<number, Overflow>;
}

export interface DimOptions {
  maxKeys: number;
  maxValues: number;
}

export class DimState {
  readonly dims: Dimension[] = [];
  readonly #byKey = new Map<string, Dimension>();
  readonly #sets: Dimension[] = [];
  readonly dicts = new Map<number, ValueDict>();
  /** Minutes with contributions not yet packed. */
  readonly open = new Map<number, OpenMinute>();
  /** Packed blocks of the recent minutes (DIM_HOT_MINUTES). */
  readonly hot = new Map<number, Uint8Array>();

  constructor(readonly options: DimOptions) {}

  /** A single-key dimension by key. */
  byKey(key: string): Dimension | undefined {
    return this.#byKey.get(key);
  }

  byName(name: string): Dimension | undefined {
    return this.dims.find((d) => d.name === name);
  }

  get sets(): Dimension[] {
    return [...this.#sets];
  }

  #add(name: string, keys: string[], id = this.dims.length): Dimension {
    const d: Dimension = { id, name, keys };
    this.dims[id] = d;
    if (keys.length === 1 && name === keys[0]) this.#byKey.set(keys[0], d);
    else this.#sets.push(d);
    this.dicts.set(id, new ValueDict(this.options.maxValues));
    return d;
  }

  /** Restores a dimension from storage. */
  loadDimension(d: Dimension): void {
    if (this.dims[d.id] === undefined) this.#add(d.name, d.keys, d.id);
  }

  /** A key's dimension, created if the stream has room for another key (maxKeys); null when it has not. */
  addKey(key: string): { dim: Dimension; created: boolean } | null {
    const d = this.#byKey.get(key);
    if (d !== undefined) return { dim: d, created: false };
    if (this.#byKey.size >= this.options.maxKeys) return null;
    return { dim: this.#add(key, [key]), created: true };
  }

  /** Declares dimension sets (validated by the caller); returns the ones created. Existing sets keep their ids. */
  declareSets(sets: string[][]): Dimension[] {
    const created: Dimension[] = [];
    for (const keys of sets) {
      const name = setName(keys);
      if (this.byName(name)) continue;
      created.push(this.#add(name, keys));
    }
    return created;
  }

  /** Sets no longer declared stop receiving events (their history stays). */
  retireSets(keep: string[][]): void {
    const names = new Set(keep.map(setName));
    for (let i = this.#sets.length - 1; i >= 0; i--) {
      if (!names.has(this.#sets[i].name)) this.#sets.splice(i, 1);
    }
  }

  /** Applies admitted events (already checked for lateness and dedup). */
  apply(events: Iterable<DimEvent>): DimApplyResult {
    const result: DimApplyResult = { log: new Map(), newDims: [], newValues: [], folded: 0, droppedKeys: 0 };
    const writers = new Map<number, { w: ByteWriter; n: number }>();
    const enc = new TextEncoder();
    for (const e of events) {
      if (!e.dims) continue;
      const minute = minuteOf(secondOf(e.ts));
      const targets: Array<{ dim: Dimension; value: string }> = [];
      for (const [k, v] of Object.entries(e.dims)) {
        const d = this.addKey(k);
        if (d === null) {
          result.droppedKeys++;
          continue;
        }
        if (d.created) result.newDims.push(d.dim);
        targets.push({ dim: d.dim, value: v });
      }
      for (const s of this.#sets) {
        const v = tupleValue(s.keys, e.dims);
        if (v !== null) targets.push({ dim: s, value: v });
      }
      if (targets.length === 0) continue;
      let open = this.open.get(minute);
      if (open === undefined) {
        open = new OpenMinute();
        this.open.set(minute, open);
      }
      let lw = writers.get(minute);
      if (lw === undefined) {
        lw = { w: new ByteWriter(), n: 0 };
        writers.set(minute, lw);
      }
      const w = lw.w;
      lw.n++;
      const user = e.user === undefined ? null : hashUser(e.user);
      w.byte((e.value !== undefined ? 1 : 0) | (user ? 2 : 0));
      if (e.value !== undefined) w.f64(e.value);
      if (user) {
        w.varint(user.reg);
        w.byte(user.rank);
      }
      w.varint(targets.length);
      for (const t of targets) {
        const dict = this.dicts.get(t.dim.id) as ValueDict;
        const vid = dict.lookup(t.value, minute, (id) =>
          result.newValues.push({ dim: t.dim.id, vid: id, value: t.value, minute }),
        );
        const gid = gidOf(t.dim.id, vid);
        w.varint(gid);
        if (vid === OTHER_VID) {
          result.folded++;
          const bytes = enc.encode(t.value);
          w.varint(bytes.length);
          w.raw(bytes);
          open.fold(t.dim.id, t.value, e.value);
        }
        open.push(gid, e.value, user?.reg ?? 0, user?.rank ?? 0);
      }
    }
    for (const [minute, { w, n }] of writers) {
      const out = new ByteWriter();
      out.varint(n);
      out.raw(w.bytes());
      result.log.set(minute, out.bytes());
    }
    return result;
  }

  /** Replays a log record of a minute (on wake-up): the same contributions, without touching dictionaries. */
  replay(minute: number, bytes: Uint8Array): void {
    let open = this.open.get(minute);
    if (open === undefined) {
      open = new OpenMinute();
      this.open.set(minute, open);
    }
    const dec = new TextDecoder();
    const r = new ByteReader(bytes);
    const n = r.varint();
    for (let i = 0; i < n; i++) {
      const flags = r.byte();
      const value = flags & 1 ? r.f64() : undefined;
      let reg = -1;
      let rank = 0;
      if (flags & 2) {
        reg = r.varint();
        rank = r.byte();
      }
      const t = r.varint();
      for (let j = 0; j < t; j++) {
        const gid = r.varint();
        if (vidOfGid(gid) === OTHER_VID) open.fold(dimOfGid(gid), dec.decode(r.raw(r.varint())), value);
        open.push(gid, value, reg >= 0 ? reg : 0, reg >= 0 ? rank : 0);
        const dict = this.dicts.get(dimOfGid(gid));
        const vid = vidOfGid(gid);
        if (dict && vid !== OTHER_VID && dict.last[vid] !== undefined && dict.last[vid] < minute)
          dict.last[vid] = minute;
      }
    }
  }

  /** Minutes with open contributions that ended before `nowMs` (ready to be packed). */
  ended(nowMs: number): number[] {
    const current = minuteOf(secondOf(nowMs));
    return [...this.open.keys()].filter((m) => m < current).sort((a, b) => a - b);
  }

  /**
   * Packs a minute: its block (`previous`: the stored block, if the minute was packed before; late events)
   * merged with its open contributions. Returns the new block; keeps it in memory while it is hot.
   */
  pack(minute: number, previous: Uint8Array | null, nowMs: number): Uint8Array {
    const open = this.open.get(minute) ?? new OpenMinute();
    const groups = new Map<number, GroupAcc>();
    const overflow = new Map<number, Overflow>();
    const base = previous ?? this.hot.get(minute) ?? null;
    if (base) {
      const b = readBlock(base);
      for (const g of b.groups) {
        const users = new Map<number, number>();
        mergeEncodedRegisters(users, g.hll);
        groups.set(g.gid, { acc: new Accumulator().add(g.aggregate), users });
      }
      for (const [d, o] of b.overflow) overflow.set(d, o);
    }
    open.into((gid) => {
      let g = groups.get(gid);
      if (g === undefined) {
        g = { acc: new Accumulator(), users: new Map() };
        groups.set(gid, g);
      }
      return g;
    });
    for (const [d, o] of open.overflow) {
      const into = overflow.get(d);
      if (into === undefined) overflow.set(d, o);
      else {
        into.count.merge(o.count);
        into.sum.merge(o.sum);
      }
    }
    const block = writeBlock(groups, overflow);
    this.open.delete(minute);
    if (minute > minuteOf(secondOf(nowMs)) - DIM_HOT_MINUTES) this.hot.set(minute, block);
    return block;
  }

  /** Whether a minute's block is held in memory. */
  isHot(minute: number): boolean {
    return this.hot.has(minute);
  }

  /**
   * Every group of the given dimensions over minutes [fromMinute, toMinute], merged: from the hot
   * blocks, any `cold` blocks the caller read from storage, and the open contributions.
   */
  span(
    fromMinute: number,
    toMinute: number,
    dimIds: Iterable<number>,
    cold: Map<number, Uint8Array> = new Map(),
  ): SpanResult {
    const want = new Set(dimIds);
    const out: SpanResult = { groups: new Map(), overflow: new Map() };
    for (const d of want) out.groups.set(d, new Map());
    const groupOf = (gid: number): GroupSpan | null => {
      const per = out.groups.get(dimOfGid(gid));
      if (per === undefined) return null;
      const vid = vidOfGid(gid);
      let g = per.get(vid);
      if (g === undefined) {
        g = { acc: new Accumulator(), users: new Map() };
        per.set(vid, g);
      }
      return g;
    };
    const mergeOverflow = (d: number, o: Overflow) => {
      if (!want.has(d)) return;
      const into = out.overflow.get(d);
      if (into === undefined)
        out.overflow.set(d, {
          count: new FrequentItems(TOPK_ITEMS).merge(o.count),
          sum: new FrequentItems(TOPK_ITEMS).merge(o.sum),
        });
      else {
        into.count.merge(o.count);
        into.sum.merge(o.sum);
      }
    };
    for (let m = fromMinute; m <= toMinute; m++) {
      const block = this.hot.get(m) ?? cold.get(m);
      if (block) {
        const b = readBlock(block);
        for (const g of b.groups) {
          const s = groupOf(g.gid);
          if (s === null) continue;
          s.acc.add(g.aggregate);
          mergeEncodedRegisters(s.users, g.hll);
        }
        for (const [d, o] of b.overflow) mergeOverflow(d, o);
      }
      const open = this.open.get(m);
      if (open) {
        open.into(groupOf);
        for (const [d, o] of open.overflow) mergeOverflow(d, o);
      }
    }
    return out;
  }

  /** The value of a group id ("__other__" for the overflow group). */
  valueOf(dim: number, vid: number): string | undefined {
    return this.dicts.get(dim)?.values[vid];
  }

  /**
   * Drops hot blocks that have left the hot horizon and values with no event since the ring's first minute.
   * Returns the evicted (dim, vid) pairs (delete their rows).
   */
  expire(nowMs: number, ringFirstMinute: number): Array<{ dim: number; vid: number }> {
    const coldBefore = minuteOf(secondOf(nowMs)) - DIM_HOT_MINUTES + 1;
    for (const m of this.hot.keys()) if (m < coldBefore) this.hot.delete(m);
    for (const m of this.open.keys()) if (m < ringFirstMinute) this.open.delete(m);
    const gone: Array<{ dim: number; vid: number }> = [];
    for (const [dim, dict] of this.dicts) for (const vid of dict.evictBefore(ringFirstMinute)) gone.push({ dim, vid });
    return gone;
  }
}

/** Distinct users of a group from its registers. */
export function distinctOf(users: Map<number, number>): number {
  return users.size === 0 ? 0 : estimateSparse(users.values());
}
