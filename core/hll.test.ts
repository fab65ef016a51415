import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { addUser, estimate, hashUser, murmur3, PeriodHll, PRECISION, REGISTERS, SlidingHll } from "./hll.ts";
import { seededRandom } from "./random.ts";

describe("hashUser", () => {
  it("hashes a user id's UTF-8 bytes the same through its scratch space as through a fresh encoding", () => {
    const enc = new TextEncoder();
    const reference = (user: string) => {
      const b = enc.encode(user);
      return { reg: murmur3(b, 0x5f3759df) >>> (32 - PRECISION), rank: Math.clz32(murmur3(b, 0x9747b28c)) + 1 };
    };
    const ids = ["", "a", "user-42", "ünïcødé-✓", "𝔘𝔰𝔢𝔯", "x".repeat(341), "é".repeat(200), "y".repeat(400)];
    const rand = seededRandom(3);
    for (let i = 0; i < 500; i++) {
      ids.push(
        Array.from({ length: Math.floor(rand() * 40) }, () => String.fromCodePoint(Math.floor(rand() * 0x2ffff))).join(
          "",
        ),
      );
    }
    // Interleaved long and short ids: nothing of an earlier id's bytes may leak into a later one's hash.
    for (const id of ids) expect(hashUser(id), id).toEqual(reference(id));
  });
});

describe("murmur3", () => {
  it("matches the reference vectors", () => {
    const enc = new TextEncoder();
    expect(murmur3(enc.encode(""), 0)).toBe(0);
    expect(murmur3(enc.encode(""), 1)).toBe(0x514e28b7);
    expect(murmur3(enc.encode("a"), 0x9747b28c)).toBe(0x7fa09ea6);
    expect(murmur3(enc.encode("abc"), 0)).toBe(0xb3dd93fa);
    expect(murmur3(enc.encode("Hello, world!"), 0x9747b28c)).toBe(0x24884cba);
    expect(murmur3(enc.encode("The quick brown fox jumps over the lazy dog"), 0x9747b28c)).toBe(0x2fa826cd);
  });
});

describe("HyperLogLog distinct counts", () => {
  it.each([
    1, 10, 100, 1000, 10_000, 50_000, 200_000, 1_000_000,
  ])("estimates %i distinct users within two percent", (n) => {
    const regs = new Uint8Array(REGISTERS);
    for (let i = 0; i < n; i++) addUser(regs, `user-${i}`);
    const est = estimate(regs);
    expect(Math.abs(est - n) / n).toBeLessThanOrEqual(0.02);
  });

  it("ignores repeats", () => {
    const regs = new Uint8Array(REGISTERS);
    for (let rep = 0; rep < 5; rep++) for (let i = 0; i < 1000; i++) addUser(regs, `u${i}`);
    expect(Math.abs(estimate(regs) - 1000)).toBeLessThanOrEqual(20);
  });
});

describe("SlidingHll", () => {
  it("gives, for every window start, exactly the registers of a plain HLL over the events in that window (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 400 })), { maxLength: 400 }),
        fc.integer({ min: 0, max: 201 }),
        (events, start) => {
          const s = new SlidingHll();
          const plain = new Uint8Array(REGISTERS);
          for (const [sec, user] of events) {
            const { reg, rank } = hashUser(`u${user}`);
            s.insert(reg, sec, rank);
            if (sec >= start && plain[reg] < rank) plain[reg] = rank;
          }
          const got = s.registersSince(start);
          return got.every((v, i) => v === plain[i]);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("answers like a plain HLL after switching to its dense form, through expiry", () => {
    const s = new SlidingHll();
    const events: Array<[number, string]> = [];
    for (let i = 0; i < 20_000; i++) events.push([(i * 7919) % 600, `d${i % 6000}`]);
    for (const [sec, user] of events) {
      const { reg, rank } = hashUser(user);
      s.insert(reg, sec, rank);
    }
    expect(s.size).toBeGreaterThan(1024);
    const plainSince = (start: number) => {
      const plain = new Uint8Array(REGISTERS);
      for (const [sec, user] of events) {
        const { reg, rank } = hashUser(user);
        if (sec >= start && plain[reg] < rank) plain[reg] = rank;
      }
      return plain;
    };
    for (const start of [0, 1, 299, 300, 599, 600]) expect(s.registersSince(start)).toEqual(plainSince(start));
    s.expire(300);
    for (const start of [300, 450]) expect(s.registersSince(start)).toEqual(plainSince(start));
    expect(s.registersSince(0)).toEqual(plainSince(300));
  });

  it("keeps lists short and ordered: seconds ascending, ranks strictly descending", () => {
    const s = new SlidingHll();
    for (let i = 0; i < 200_000; i++) {
      const { reg, rank } = hashUser(`v${i}`);
      s.insert(reg, Math.floor(Math.random() * 3600), rank);
    }
    let longest = 0;
    expect(s.size).toBeGreaterThan(1024); // dense form
    for (const [, list] of s.lists()) {
      longest = Math.max(longest, list.length / 2);
      for (let i = 2; i < list.length; i += 2) {
        expect(list[i]).toBeGreaterThan(list[i - 2]);
        expect(list[i + 1]).toBeLessThan(list[i - 1]);
      }
    }
    expect(longest).toBeLessThanOrEqual(33);
  });

  it("expires old pairs and round-trips registers through bytes", () => {
    const s = new SlidingHll();
    s.insert(5, 10, 3);
    s.insert(5, 20, 2);
    s.insert(9, 5, 1);
    expect(s.expire(15).sort()).toEqual([5, 9]);
    expect(s.pairs(5)).toEqual([20, 2]);
    expect(s.pairs(9)).toBeUndefined();
    const copy = new SlidingHll();
    copy.loadRegister(5, s.encodeRegister(5) as Uint8Array);
    expect(copy.pairs(5)).toEqual([20, 2]);
    expect(s.encodeRegister(9)).toBeNull();
  });
});

describe("PeriodHll", () => {
  it("agrees with a plain HLL while sparse and after going dense, and round-trips", () => {
    for (const n of [0, 5, 2000, 50_000]) {
      const p = new PeriodHll();
      const plain = new Uint8Array(REGISTERS);
      for (let i = 0; i < n; i++) {
        p.addUser(`p-${i}`);
        addUser(plain, `p-${i}`);
      }
      expect(p.registers()).toEqual(plain);
      const back = PeriodHll.decode(p.encode());
      expect(back.registers()).toEqual(plain);
      expect(back.estimate()).toBe(estimate(plain));
    }
  });

  it("stays small while sparse", () => {
    const p = new PeriodHll();
    for (let i = 0; i < 100; i++) p.addUser(`s${i}`);
    expect(p.encode().length).toBeLessThanOrEqual(1 + 100 * 3);
  });

  it("unions periods exactly: the union of parts equals one HLL over all users", () => {
    const parts = [0, 1, 2].map((k) => {
      const p = new PeriodHll();
      for (let i = 0; i < 3000; i++) p.addUser(`u${k * 1000 + i}`);
      return p;
    });
    const whole = new PeriodHll();
    for (let i = 0; i < 5000; i++) whole.addUser(`u${i}`);
    expect(PeriodHll.union(parts).registers()).toEqual(whole.registers());
  });

  it("refuses corrupt bytes", () => {
    expect(() => PeriodHll.decode(new Uint8Array([1, 2]))).toThrow();
    expect(() => PeriodHll.decode(new Uint8Array([9]))).toThrow();
  });
});
