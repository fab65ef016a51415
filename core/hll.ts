/**
 * Distinct counts over sliding windows: HyperLogLog (p = 15, 32,768
 * registers, ~0.57 % standard error, so 2 % is 3.5 sigma) with Ertl's improved estimator (2017,
 * no bias tables, accurate from 0 to billions), made sliding after
 * Chabchoub & Hébrail's "Sliding HyperLogLog" (2010).
 *
 * Each register keeps its list of possible future maxima: (second, rank)
 * pairs where no later pair has a rank at least as high. Any window that
 * ends now is answered from one structure: a register's value for a window
 * starting at second s is the rank of its first pair at or after s. A list
 * never holds more than 33 pairs, so memory stays bounded whatever the
 * traffic, and out-of-order inserts are fine.
 */
export const PRECISION = 15;
export const REGISTERS = 1 << PRECISION;
/** Hash bits left for the rank: ranks run 1..RANK_BITS + 1. */
const RANK_BITS = 32;

const encoder = new TextEncoder();

/** MurmurHash3 x86 32-bit, of the first `n` bytes (all of them by default). */
export function murmur3(bytes: Uint8Array, seed: number, n = bytes.length): number {
  let h = seed >>> 0;
  const blocks = n & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  switch (n & 3) {
    // biome-ignore lint/suspicious/noFallthroughSwitchClause: murmur tail
    case 3:
      k ^= bytes[blocks + 2] << 16;
    // biome-ignore lint/suspicious/noFallthroughSwitchClause: murmur tail
    case 2:
      k ^= bytes[blocks + 1] << 8;
    case 1:
      k ^= bytes[blocks];
      k = Math.imul(k, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, 0x1b873593);
      h ^= k;
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Scratch space for a user id's UTF-8 bytes: ids are encoded into it rather than into a new array per
 * event (hashUser runs for every event with a user). 1,024 bytes hold any id of up to 341 characters;
 * a longer one is encoded on its own.
 */
const scratch = new Uint8Array(1024);

/** Register index and rank of a user id. */
export function hashUser(user: string): { reg: number; rank: number } {
  let bytes: Uint8Array = scratch;
  let n: number;
  if (user.length * 3 <= scratch.length) n = encoder.encodeInto(user, scratch).written;
  else {
    bytes = encoder.encode(user);
    n = bytes.length;
  }
  const reg = murmur3(bytes, 0x5f3759df, n) >>> (32 - PRECISION);
  const rank = Math.clz32(murmur3(bytes, 0x9747b28c, n)) + 1;
  return { reg, rank };
}

function sigma(x: number): number {
  if (x === 1) return Number.POSITIVE_INFINITY;
  let y = 1;
  let z = x;
  let prev: number;
  do {
    x *= x;
    prev = z;
    z += x * y;
    y += y;
  } while (prev !== z);
  return z;
}

function tau(x: number): number {
  if (x === 0 || x === 1) return 0;
  let y = 1;
  let z = 1 - x;
  let prev: number;
  do {
    x = Math.sqrt(x);
    prev = z;
    y *= 0.5;
    z -= (1 - x) ** 2 * y;
  } while (prev !== z);
  return z / 3;
}

/** Ertl's improved raw estimator over a register array. */
export function estimate(registers: Uint8Array): number {
  const m = registers.length;
  const hist = new Float64Array(RANK_BITS + 2);
  for (let i = 0; i < m; i++) hist[registers[i]]++;
  let z = m * tau(1 - hist[RANK_BITS + 1] / m);
  for (let k = RANK_BITS; k >= 1; k--) z = 0.5 * (z + hist[k]);
  z += m * sigma(hist[0] / m);
  return Math.round((m * m) / (2 * Math.LN2 * z));
}

/** A plain HyperLogLog: register-wise max, for merging whole periods. */
export function addUser(registers: Uint8Array, user: string): void {
  const { reg, rank } = hashUser(user);
  if (registers[reg] < rank) registers[reg] = rank;
}

/** Sparse (a Map) while at most this many registers hold pairs; dense typed arrays beyond. */
const SLIDING_SPARSE_LIMIT = 1024;

/**
 * Memory: sparse, ~100 bytes per register in use (≤ ~100 KB); dense, a
 * fixed 160 KB (u32 second + u8 rank of each register's first pair) plus the
 * rest of the lists of registers holding more than one pair. A list never
 * holds more than 33 pairs (ranks strictly descend), so the whole structure
 * is bounded whatever the traffic.
 */
export class SlidingHll {
  /** Sparse form: per register [sec0, rank0, sec1, rank1, …], seconds ascending, ranks strictly descending. */
  #sparse: Map<number, number[]> | null = new Map();
  /** Dense form: each register's first pair (rank 0 = empty), and the further pairs of longer lists. */
  #headSec: Uint32Array | null = null;
  #headRank: Uint8Array | null = null;
  #tails = new Map<number, number[]>();
  #used = 0;

  /** Registers holding at least one pair. */
  get size(): number {
    return this.#sparse ? this.#sparse.size : this.#used;
  }

  #get(reg: number): number[] | undefined {
    if (this.#sparse) return this.#sparse.get(reg);
    const rank = (this.#headRank as Uint8Array)[reg];
    if (rank === 0) return undefined;
    const head = [(this.#headSec as Uint32Array)[reg], rank];
    const tail = this.#tails.get(reg);
    return tail ? head.concat(tail) : head;
  }

  #set(reg: number, list: number[]): void {
    if (this.#sparse) {
      if (list.length === 0) this.#sparse.delete(reg);
      else this.#sparse.set(reg, list);
      if (this.#sparse.size > SLIDING_SPARSE_LIMIT) this.#densify();
      return;
    }
    const ranks = this.#headRank as Uint8Array;
    if (list.length === 0) {
      if (ranks[reg] !== 0) this.#used--;
      ranks[reg] = 0;
      this.#tails.delete(reg);
      return;
    }
    if (ranks[reg] === 0) this.#used++;
    (this.#headSec as Uint32Array)[reg] = list[0];
    ranks[reg] = list[1];
    if (list.length > 2) this.#tails.set(reg, list.slice(2));
    else this.#tails.delete(reg);
  }

  #densify(): void {
    const sparse = this.#sparse as Map<number, number[]>;
    this.#sparse = null;
    this.#headSec = new Uint32Array(REGISTERS);
    this.#headRank = new Uint8Array(REGISTERS);
    this.#used = 0;
    for (const [reg, list] of sparse) this.#set(reg, list);
  }

  /** Records (sec, rank) in a register; returns true when the register's list changed. */
  insert(reg: number, sec: number, rank: number): boolean {
    const list = this.#get(reg);
    if (list === undefined) {
      this.#set(reg, [sec, rank]);
      return true;
    }
    // Dominated by a pair at least as late and at least as high?
    for (let i = list.length - 2; i >= 0 && list[i] >= sec; i -= 2) {
      if (list[i + 1] >= rank) return false;
    }
    const next: number[] = [];
    let placed = false;
    for (let i = 0; i < list.length; i += 2) {
      const s = list[i];
      const r = list[i + 1];
      if (s <= sec && r <= rank) continue; // the new pair dominates it
      if (!placed && s > sec) {
        next.push(sec, rank);
        placed = true;
      }
      next.push(s, r);
    }
    if (!placed) next.push(sec, rank);
    this.#set(reg, next);
    return true;
  }

  #forEach(f: (reg: number, list: number[]) => void): void {
    if (this.#sparse) {
      for (const [reg, list] of this.#sparse) f(reg, list);
      return;
    }
    const ranks = this.#headRank as Uint8Array;
    for (let reg = 0; reg < REGISTERS; reg++) if (ranks[reg] !== 0) f(reg, this.#get(reg) as number[]);
  }

  /** A register's pairs [sec, rank, …], or undefined when it holds none. */
  pairs(reg: number): number[] | undefined {
    return this.#get(reg);
  }

  /** Every register in use with its pairs. */
  lists(): Array<[number, number[]]> {
    const out: Array<[number, number[]]> = [];
    this.#forEach((reg, list) => {
      out.push([reg, list]);
    });
    return out;
  }

  /** Register values for the window of seconds ≥ startSec. */
  registersSince(startSec: number): Uint8Array {
    const out = new Uint8Array(REGISTERS);
    if (this.#sparse === null) {
      const secs = this.#headSec as Uint32Array;
      const ranks = this.#headRank as Uint8Array;
      for (let reg = 0; reg < REGISTERS; reg++) {
        if (ranks[reg] === 0) continue;
        if (secs[reg] >= startSec) {
          out[reg] = ranks[reg];
          continue;
        }
        const tail = this.#tails.get(reg);
        if (tail === undefined) continue;
        for (let i = 0; i < tail.length; i += 2) {
          if (tail[i] >= startSec) {
            out[reg] = tail[i + 1];
            break;
          }
        }
      }
      return out;
    }
    for (const [reg, list] of this.#sparse) {
      for (let i = 0; i < list.length; i += 2) {
        if (list[i] >= startSec) {
          out[reg] = list[i + 1];
          break;
        }
      }
    }
    return out;
  }

  distinctSince(startSec: number): number {
    return estimate(this.registersSince(startSec));
  }

  /** Drops pairs older than beforeSec; returns the registers that changed. */
  expire(beforeSec: number): number[] {
    const changed: Array<[number, number[]]> = [];
    this.#forEach((reg, list) => {
      if (list[0] >= beforeSec) return;
      let i = 0;
      while (i < list.length && list[i] < beforeSec) i += 2;
      changed.push([reg, list.slice(i)]);
    });
    for (const [reg, list] of changed) this.#set(reg, list);
    return changed.map(([reg]) => reg);
  }

  /** The register's pairs as bytes (int32 sec, rank, …), or null when it holds none. */
  encodeRegister(reg: number): Uint8Array | null {
    const list = this.#get(reg);
    return list === undefined ? null : new Uint8Array(Int32Array.from(list).buffer);
  }

  loadRegister(reg: number, bytes: Uint8Array | ArrayBuffer): void {
    const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    this.#set(reg, Array.from(new Int32Array(u8.slice().buffer)));
  }
}

/**
 * Sparse until this many registers are set; dense (one byte per register,
 * 32 KB) beyond: a Map entry costs ~50 bytes, so past ~640 entries the dense
 * array is the smaller form.
 */
const SPARSE_LIMIT = 640;

/**
 * The registers of one period (a minute, an hour…): sparse while few users
 * were seen, dense after. Serialises compactly for storage and merges by
 * register-wise max, so periods roll up exactly.
 */
export class PeriodHll {
  #sparse: Map<number, number> | null = new Map();
  #dense: Uint8Array | null = null;

  /** Raises a register; returns true if it changed. */
  set(reg: number, rank: number): boolean {
    if (this.#dense) {
      if (this.#dense[reg] >= rank) return false;
      this.#dense[reg] = rank;
      return true;
    }
    const sparse = this.#sparse as Map<number, number>;
    if ((sparse.get(reg) ?? 0) >= rank) return false;
    sparse.set(reg, rank);
    if (sparse.size > SPARSE_LIMIT) {
      this.#dense = this.registers();
      this.#sparse = null;
    }
    return true;
  }

  addUser(user: string): boolean {
    const { reg, rank } = hashUser(user);
    return this.set(reg, rank);
  }

  /** Register-wise max into `into` (allocated if absent). */
  mergeInto(into: Uint8Array = new Uint8Array(REGISTERS)): Uint8Array {
    if (this.#dense) {
      for (let i = 0; i < REGISTERS; i++) if (this.#dense[i] > into[i]) into[i] = this.#dense[i];
    } else {
      for (const [reg, rank] of this.#sparse as Map<number, number>) if (rank > into[reg]) into[reg] = rank;
    }
    return into;
  }

  registers(): Uint8Array {
    return this.mergeInto(new Uint8Array(REGISTERS));
  }

  estimate(): number {
    return estimate(this.registers());
  }

  /** Bytes: [1, (u16 reg, u8 rank)…] when sparse, [2, REGISTERS bytes] when dense. */
  encode(): Uint8Array {
    if (this.#dense) {
      const out = new Uint8Array(1 + REGISTERS);
      out[0] = 2;
      out.set(this.#dense, 1);
      return out;
    }
    const sparse = this.#sparse as Map<number, number>;
    const out = new Uint8Array(1 + sparse.size * 3);
    out[0] = 1;
    let o = 1;
    for (const [reg, rank] of [...sparse].sort((a, b) => a[0] - b[0])) {
      out[o++] = reg & 0xff;
      out[o++] = reg >>> 8;
      out[o++] = rank;
    }
    return out;
  }

  static decode(bytes: Uint8Array | ArrayBuffer): PeriodHll {
    const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const h = new PeriodHll();
    if (u8.length === 0) return h;
    if (u8[0] === 2) {
      if (u8.length !== 1 + REGISTERS) throw new Error("corrupt dense HLL");
      h.#dense = u8.slice(1);
      h.#sparse = null;
      return h;
    }
    if (u8[0] === 3) {
      forEachPacked(u8, (reg, rank) => h.set(reg, rank));
      return h;
    }
    if (u8[0] !== 1 || (u8.length - 1) % 3 !== 0) throw new Error("corrupt sparse HLL");
    for (let o = 1; o < u8.length; o += 3) h.set(u8[o] | (u8[o + 1] << 8), u8[o + 2]);
    return h;
  }

  /** Merges encoded HLLs into one. */
  static union(parts: Iterable<PeriodHll>): PeriodHll {
    const out = new PeriodHll();
    const regs = new Uint8Array(REGISTERS);
    for (const p of parts) p.mergeInto(regs);
    for (let i = 0; i < REGISTERS; i++) if (regs[i] > 0) out.set(i, regs[i]);
    return out;
  }
}

/**
 * Estimate from a sparse set of registers (register → rank) without
 * materialising all 32,768: Ertl's estimator needs only the histogram of
 * ranks, and every register not in the set is 0. O(registers set).
 */
export function estimateSparse(ranks: Iterable<number>): number {
  const m = REGISTERS;
  const hist = new Float64Array(RANK_BITS + 2);
  let occupied = 0;
  for (const r of ranks) {
    hist[r]++;
    occupied++;
  }
  hist[0] = m - occupied;
  let z = m * tau(1 - hist[RANK_BITS + 1] / m);
  for (let k = RANK_BITS; k >= 1; k--) z = 0.5 * (z + hist[k]);
  z += m * sigma(hist[0] / m);
  return Math.round((m * m) / (2 * Math.LN2 * z));
}

/** Packed sparse stays smaller than dense (1 + 32,768 bytes) up to about this many registers. */
const PACKED_LIMIT = Math.floor(REGISTERS / 3);

/** Type 3: varint n, then per register (ascending) a varint gap from the previous register and a rank byte. */
function forEachPacked(u8: Uint8Array, f: (reg: number, rank: number) => void): void {
  let o = 1;
  const varint = (): number => {
    let v = 0;
    let shift = 0;
    for (;;) {
      if (o >= u8.length) throw new Error("corrupt packed HLL");
      const b = u8[o++];
      v |= (b & 0x7f) << shift;
      if (b < 0x80) return v;
      shift += 7;
      if (shift > 21) throw new Error("corrupt packed HLL");
    }
  };
  const n = varint();
  let reg = 0;
  for (let i = 0; i < n; i++) {
    reg += varint();
    if (o >= u8.length || reg >= REGISTERS) throw new Error("corrupt packed HLL");
    f(reg, u8[o++]);
  }
}

/**
 * Encodes registers (register → rank) in PeriodHll's format: packed sparse (type 3, about two bytes per
 * register) while that is smaller, dense beyond.
 */
export function encodeRegisters(regs: Map<number, number>): Uint8Array {
  if (regs.size > PACKED_LIMIT) {
    const out = new Uint8Array(1 + REGISTERS);
    out[0] = 2;
    for (const [reg, rank] of regs) out[1 + reg] = rank;
    return out;
  }
  const sorted = [...regs.keys()].sort((a, b) => a - b);
  const out = new Uint8Array(1 + 3 + sorted.length * 4);
  let o = 0;
  out[o++] = 3;
  const varint = (v: number) => {
    while (v >= 0x80) {
      out[o++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    out[o++] = v;
  };
  varint(sorted.length);
  let prev = 0;
  for (const reg of sorted) {
    varint(reg - prev);
    prev = reg;
    out[o++] = regs.get(reg) as number;
  }
  return out.slice(0, o);
}

/** Raises `into`'s registers with an encoded HLL's (register-wise max), without building a PeriodHll. */
export function mergeEncodedRegisters(into: Map<number, number>, bytes: Uint8Array): void {
  if (bytes.length === 0) return;
  if (bytes[0] === 2) {
    for (let reg = 0; reg < REGISTERS; reg++) {
      const rank = bytes[1 + reg];
      if (rank > (into.get(reg) ?? 0)) into.set(reg, rank);
    }
    return;
  }
  if (bytes[0] === 3) {
    forEachPacked(bytes, (reg, rank) => {
      if (rank > (into.get(reg) ?? 0)) into.set(reg, rank);
    });
    return;
  }
  if (bytes[0] !== 1 || (bytes.length - 1) % 3 !== 0) throw new Error("corrupt sparse HLL");
  for (let o = 1; o < bytes.length; o += 3) {
    const reg = bytes[o] | (bytes[o + 1] << 8);
    const rank = bytes[o + 2];
    if (rank > (into.get(reg) ?? 0)) into.set(reg, rank);
  }
}

/** Distinct count of an encoded HLL (PeriodHll's formats), without keeping it. */
export function distinctOfEncoded(bytes: Uint8Array): number {
  if (bytes.length === 0) return 0;
  if (bytes[0] === 2) return estimate(bytes.subarray(1));
  const regs = new Map<number, number>();
  mergeEncodedRegisters(regs, bytes);
  return regs.size === 0 ? 0 : estimateSparse(regs.values());
}
