/**
 * What a query's reads fold into (workers/query/execute.ts): cells, one per stream alias, group and bucket,
 * each holding the merged aggregate of the rows read for it. Every merge is exact: aggregates add
 * (core/aggregate.ts Accumulator), distinct users take the register-wise max of their HyperLogLogs
 * (core/hll.ts), top-k summaries merge (core/topk.ts).
 */
import { Accumulator, type Aggregate } from "../../core/aggregate";
import { encodeRegisters, mergeEncodedRegisters } from "../../core/hll";
import type { DimensionInfo } from "../../core/query";
import { FrequentItems } from "../../core/topk";

export interface Cell {
  acc: Accumulator;
  users: Map<number, number> | null;
  topkCount: FrequentItems | null;
  topkSum: FrequentItems | null;
  /** The __none__ group: the stream's total minus the groups; only counts and sums are known. */
  residual?: boolean;
}

export interface AliasPlan {
  alias: string;
  stream: string;
  source: DimensionInfo | null;
  full: boolean;
  distinct: boolean;
  topk: boolean;
}

function mergeSummary(into: FrequentItems | null, bytes: Uint8Array): FrequentItems {
  const s = FrequentItems.decode(bytes);
  return into === null ? s : into.merge(s);
}

/**
 * Merges `from` into `into`, exactly: counts and sums add, extremes compare, sketch bins add, distinct users'
 * registers take the max, top-k summaries merge. A residual (counts and sums only) makes the merge one too.
 * `from`'s summaries may be taken over: do not use `from` afterwards.
 */
export function mergeCell(into: Cell, from: Cell): void {
  into.acc.merge(from.acc);
  if (from.users) {
    into.users ??= new Map();
    mergeEncodedRegisters(into.users, encodeRegisters(from.users));
  }
  if (from.topkCount) into.topkCount = into.topkCount ? into.topkCount.merge(from.topkCount) : from.topkCount;
  if (from.topkSum) into.topkSum = into.topkSum ? into.topkSum.merge(from.topkSum) : from.topkSum;
  if (from.residual) into.residual = true;
}

/** Group key (JSON) → alias → cell. */
export type GroupCells = Map<string, Map<string, Cell>>;

/** What one period contributes: cells by bucket and group, per alias. */
export class Cells {
  /** bucket → group key (JSON) → alias → cell. */
  readonly byBucket = new Map<number, GroupCells>();
  /** group key → alias → cell, over the whole range (for ordering). */
  readonly totals: GroupCells = new Map();
  readonly groups = new Map<string, string[]>();
  /** group key → alias → the source values folded into the group (to read a group's rows again). */
  readonly sourceValues = new Map<string, Map<string, Set<string>>>();
  otherUnfiltered = 0;

  #cell(map: GroupCells, key: string, alias: string, plan: AliasPlan): Cell {
    let per = map.get(key);
    if (per === undefined) {
      per = new Map();
      map.set(key, per);
    }
    let c = per.get(alias);
    if (c === undefined) {
      c = {
        acc: new Accumulator(),
        users: plan.distinct ? new Map() : null,
        topkCount: null,
        topkSum: null,
      };
      per.set(alias, c);
    }
    return c;
  }

  #sourceValue(key: string, alias: string, value: string): void {
    let per = this.sourceValues.get(key);
    if (per === undefined) {
      per = new Map();
      this.sourceValues.set(key, per);
    }
    const set = per.get(alias);
    if (set === undefined) per.set(alias, new Set([value]));
    else set.add(value);
  }

  add(
    plan: AliasPlan,
    bucket: number,
    group: string[],
    aggregate: Aggregate,
    hll: Uint8Array | null,
    topk: [Uint8Array | null, Uint8Array | null],
    value: string | null,
  ): void {
    const key = JSON.stringify(group);
    this.groups.set(key, group);
    if (value !== null) this.#sourceValue(key, plan.alias, value);
    let b = this.byBucket.get(bucket);
    if (b === undefined) {
      b = new Map();
      this.byBucket.set(bucket, b);
    }
    for (const c of [this.#cell(b, key, plan.alias, plan), this.#cell(this.totals, key, plan.alias, plan)]) {
      c.acc.add(aggregate);
      if (c.users && hll) mergeEncodedRegisters(c.users, hll);
      if (plan.topk && topk[0]) c.topkCount = mergeSummary(c.topkCount, topk[0]);
      if (plan.topk && topk[1]) c.topkSum = mergeSummary(c.topkSum, topk[1]);
    }
  }

  /**
   * These cells with each group replaced by `map(group)`: groups mapped to the same one are merged (mergeCell),
   * per bucket and over the range, and their source values joined. This object's cells are taken over (a
   * group's first cell becomes the merged one): do not use this object afterwards.
   */
  regroup(map: (group: string[]) => string[]): Cells {
    const out = new Cells();
    out.otherUnfiltered = this.otherUnfiltered;
    const target = new Map<string, string>();
    for (const [key, group] of this.groups) {
      const mapped = map(group);
      const to = JSON.stringify(mapped);
      target.set(key, to);
      out.groups.set(to, mapped);
      for (const [alias, values] of this.sourceValues.get(key) ?? []) {
        for (const v of values) out.#sourceValue(to, alias, v);
      }
    }
    const fold = (into: GroupCells, from: GroupCells) => {
      for (const [key, per] of from) {
        const to = target.get(key) ?? key;
        let merged = into.get(to);
        if (merged === undefined) {
          merged = new Map();
          into.set(to, merged);
        }
        for (const [alias, c] of per) {
          const there = merged.get(alias);
          if (there === undefined) merged.set(alias, c);
          else mergeCell(there, c);
        }
      }
    };
    fold(out.totals, this.totals);
    for (const [bucket, groups] of this.byBucket) {
      const b: GroupCells = new Map();
      out.byBucket.set(bucket, b);
      fold(b, groups);
    }
    return out;
  }
}
