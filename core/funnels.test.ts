import { describe, expect, it } from "vitest";
import { oracleJourneys } from "../test/support/funnel-oracle.ts";
import type { CodedError } from "./errors.ts";
import {
  applyUser,
  type CountDelta,
  decodeItems,
  encodeItems,
  FUNNEL_MAX_USER_EVENTS,
  FUNNEL_NONE,
  FUNNEL_SHARDS,
  FunnelCreate,
  funnelResults,
  funnelShardOf,
  journeysOf,
  type LogEntry,
  parseFunnel,
  tapEvent,
  tapsFor,
  type UserState,
} from "./funnels.ts";
import { seededRandom } from "./random.ts";

const W = 60_000;

const rng = seededRandom;

/** Sums deltas into per-step totals. */
function totals(deltas: CountDelta[], steps: number): number[] {
  const out = new Array<number>(steps).fill(0);
  for (const d of deltas) for (let s = d.from; s <= d.to; s++) out[s] += d.d;
  return out;
}

describe("the journey rule", () => {
  it("opens on the first step, advances in order within the window, ignores repeats and closes after it", () => {
    const log: LogEntry[] = [
      [0, 0, "DE"],
      [10, 0, "FR"], // inside the open journey: changes nothing
      [20, 2, null], // out of order: nothing
      [30, 1, null],
      [40, 1, null],
      [50, 2, null],
      [W + 1, 3, null], // past the window
      [W + 5, 0, "US"], // opens the next
      [W + 6, 1, null],
    ];
    expect(journeysOf(log, W)).toEqual([
      { start: 0, b: "DE", reached: 2 },
      { start: W + 5, b: "US", reached: 1 },
    ]);
  });

  it("takes simultaneous steps in step order", () => {
    expect(
      journeysOf(
        [
          [5, 0, null],
          [5, 1, null],
          [5, 2, null],
        ],
        W,
      ),
    ).toEqual([{ start: 5, b: null, reached: 2 }]);
  });

  it("agrees with the oracle on random logs", () => {
    const r = rng(7);
    for (let k = 0; k < 300; k++) {
      const log: LogEntry[] = Array.from({ length: 1 + Math.floor(r() * 30) }, () => [
        Math.floor(r() * 5 * W),
        Math.floor(r() * 4),
        null,
      ]);
      log.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      expect(journeysOf(log, W).map((j) => ({ start: j.start, reached: j.reached }))).toEqual(oracleJourneys(log, W));
    }
  });
});

describe("a user's state, kept incrementally", () => {
  const fold = (_day: number, b: string) => b;

  it("counts the same whatever order and grouping the events arrive in, and lets go of ended journeys", () => {
    const r = rng(11);
    for (let k = 0; k < 200; k++) {
      const events: LogEntry[] = Array.from({ length: 1 + Math.floor(r() * 40) }, () => [
        1_000_000 + Math.floor(r() * 6 * W),
        Math.floor(r() * 4),
        null,
      ]);
      // Arrival: shuffled, in random chunks; the horizon moves forward but stays before every event.
      const arrival = [...events].sort(() => r() - 0.5);
      let state: UserState | null = null;
      const deltas: CountDelta[] = [];
      for (let i = 0; i < arrival.length; ) {
        const n = 1 + Math.floor(r() * 5);
        const out = applyUser(state, arrival.slice(i, i + n), W, 0, fold);
        expect(out.late).toBe(0);
        state = out.state;
        deltas.push(...out.deltas);
        i += n;
      }
      const want = oracleJourneys(events, W);
      const expected = new Array<number>(4).fill(0);
      for (const j of want) for (let s = 0; s <= j.reached; s++) expected[s]++;
      expect(totals(deltas, 4)).toEqual(expected);
      // Once the horizon passes everything, nothing is kept and the counts stand.
      const after = applyUser(state, [], W, 1_000_000 + 8 * W, fold);
      expect(after.state).toEqual({ open: null, log: [], counted: [] });
      expect(totals(after.deltas, 4)).toEqual([0, 0, 0, 0]);
    }
  });

  it("with a horizon moving behind the arrivals, keeps only the recent events and counts as the oracle", () => {
    const r = rng(5);
    for (let k = 0; k < 200; k++) {
      const delay = 5000;
      const events: LogEntry[] = Array.from({ length: 1 + Math.floor(r() * 60) }, () => [
        Math.floor(r() * 8 * W),
        Math.floor(r() * 4),
        null,
      ]);
      const arrivals = events.map((e) => ({ e, at: e[0] + Math.floor(r() * delay) })).sort((a, b) => a.at - b.at);
      let state: UserState | null = null;
      const deltas: CountDelta[] = [];
      for (let i = 0; i < arrivals.length; ) {
        const n = 1 + Math.floor(r() * 4);
        const chunk = arrivals.slice(i, i + n);
        i += n;
        // The shard's clock is the chunk's first arrival: no event of the chunk is older than its delay.
        const horizon = chunk[0].at - delay;
        const out = applyUser(
          state,
          chunk.map((x) => x.e),
          W,
          horizon,
          fold,
        );
        expect(out.late).toBe(0);
        state = out.state;
        deltas.push(...out.deltas);
        for (const e of state.log) expect(e[0]).toBeGreaterThanOrEqual(horizon);
      }
      const expected = new Array<number>(4).fill(0);
      for (const j of oracleJourneys(events, W)) for (let s = 0; s <= j.reached; s++) expected[s]++;
      expect(totals(deltas, 4)).toEqual(expected);
    }
  });

  it("carries the journey open at the horizon: later steps still extend it", () => {
    let out = applyUser(
      null,
      [
        [0, 0, "DE"],
        [10, 1, null],
      ],
      W,
      0,
      fold,
    );
    out = applyUser(out.state, [[30, 2, null]], W, 20, fold);
    expect(out.state.open).toEqual({ start: 0, b: "DE", reached: 1 });
    expect(out.state.log).toEqual([[30, 2, null]]);
    expect(out.deltas).toEqual([{ day: 0, b: "DE", from: 2, to: 2, d: 1 }]);
    // A first step inside the open journey's window changes nothing; after it, one opens.
    out = applyUser(
      out.state,
      [
        [40, 0, "FR"],
        [W + 1, 0, "US"],
      ],
      W,
      35,
      fold,
    );
    expect(totals(out.deltas, 3)).toEqual([1, 0, 0]);
    expect(out.deltas[0].b).toBe("US");
  });

  it("prunes mid-stream exactly: events after the horizon still extend the open journey", () => {
    let out = applyUser(
      null,
      [
        [0, 0, null],
        [10, 1, null],
      ],
      W,
      0,
      fold,
    );
    out = applyUser(out.state, [[5 * W, 0, null]], W, 2 * W, fold);
    // The first journey ended before the horizon: let go, with its counts standing.
    expect(out.state.counted.map((c) => c[0])).toEqual([5 * W]);
    expect(out.state.log).toEqual([[5 * W, 0, null]]);
    out = applyUser(
      out.state,
      [
        [5 * W + 1, 1, null],
        [W - 1, 2, null],
      ],
      W,
      2 * W,
      fold,
    );
    expect(out.late).toBe(1);
    expect(totals(out.deltas, 3)).toEqual([0, 1, 0]);
  });

  it("a late first step can re-open history: the counts move by the difference", () => {
    const a = applyUser(
      null,
      [
        [20, 0, "FR"],
        [30, 1, null],
      ],
      W,
      0,
      fold,
    );
    expect(totals(a.deltas, 2)).toEqual([1, 1]);
    // An earlier first step arrives: the journey now starts at 10 with DE; FR's journey is taken back.
    const b = applyUser(a.state, [[10, 0, "DE"]], W, 0, fold);
    expect(totals(b.deltas, 2)).toEqual([0, 0]);
    expect(b.deltas.filter((d) => d.d < 0).map((d) => d.b)).toEqual(["FR"]);
    expect(b.deltas.filter((d) => d.d > 0).map((d) => d.b)).toEqual(["DE"]);
  });

  it("keeps at most FUNNEL_MAX_USER_EVENTS events and counts the rest as overflow", () => {
    const many: LogEntry[] = Array.from({ length: FUNNEL_MAX_USER_EVENTS + 10 }, (_, i) => [i, 0, null]);
    const out = applyUser(null, many, 10 * FUNNEL_MAX_USER_EVENTS, 0, fold);
    expect(out.overflow).toBe(10);
    expect(out.state.log.length).toBe(FUNNEL_MAX_USER_EVENTS);
  });

  it("counts a new journey under the value the budget gives it, and takes it back under the same one", () => {
    const a = applyUser(null, [[0, 0, "ZZ"]], W, 0, () => "__other__");
    expect(a.deltas).toEqual([{ day: 0, b: "__other__", from: 0, to: 0, d: 1 }]);
    const b = applyUser(a.state, [[1, 1, null]], W, 0, fold);
    expect(b.deltas).toEqual([{ day: 0, b: "__other__", from: 1, to: 1, d: 1 }]);
  });
});

describe("definitions and taps", () => {
  const body = {
    name: "purchase",
    steps: [
      { stream: "view" },
      { stream: "cart", filters: [{ dim: "country", op: "in" as const, values: ["DE", "FR"] }] },
      { stream: "paid" },
    ],
    window: "30m",
    breakdown: "country",
  };

  it("parses windows and normalizes filters; refuses what it cannot count", () => {
    const def = parseFunnel(FunnelCreate.parse(body));
    expect(def.window_ms).toBe(30 * 60_000);
    expect(def.steps[1].filters).toEqual([{ dim: "country", op: "in", values: ["DE", "FR"] }]);
    expect(() => parseFunnel(FunnelCreate.parse({ ...body, window: "8d" }))).toThrow(/7d/);
    const eqMany = {
      ...body,
      steps: [{ stream: "a", filters: [{ dim: "x", op: "eq", values: ["1", "2"] }] }, body.steps[0]],
    };
    const err = (() => {
      try {
        parseFunnel(FunnelCreate.parse(eqMany));
      } catch (e) {
        return e as CodedError;
      }
    })();
    expect(err?.code).toBe("invalid_funnel");
    expect(err?.message).toMatch(/steps\.0\.filters\.0/);
    expect(FunnelCreate.safeParse({ ...body, steps: [body.steps[0]] }).success).toBe(false);
    // The same step twice in a row: one event would make both.
    expect(() =>
      parseFunnel(FunnelCreate.parse({ ...body, steps: [body.steps[0], body.steps[0], body.steps[2]] })),
    ).toThrow(/steps\.1: the same as step 0/);
  });

  it("taps a stream's events per step: with a user, passing the filters, the breakdown from the first step", () => {
    const def = { ...parseFunnel(FunnelCreate.parse(body)), id: "f_1", created_at: 0 };
    const loop = {
      ...parseFunnel(
        FunnelCreate.parse({
          name: "loop",
          steps: [{ stream: "cart" }, { stream: "cart", filters: [{ dim: "again", op: "eq", value: "1" }] }],
          window: "1m",
        }),
      ),
      id: "f_2",
      created_at: 0,
    };
    expect(tapsFor("cart", [def, loop]).map((t) => [t.f, t.s])).toEqual([
      ["f_1", 1],
      ["f_2", 0],
      ["f_2", 1],
    ]);
    const items: Parameters<typeof tapEvent>[2] = [];
    const taps = tapsFor("view", [def]);
    tapEvent(taps, { ts: 5, dims: { country: "DE" } }, items); // no user
    tapEvent(taps, { ts: 6, user: "u1", dims: { country: "DE" } }, items);
    tapEvent(taps, { ts: 7, user: "u2" }, items);
    expect(items).toEqual([
      { f: "f_1", s: 0, n: 3, w: 1_800_000, u: "u1", t: 6, b: "DE" },
      { f: "f_1", s: 0, n: 3, w: 1_800_000, u: "u2", t: 7, b: FUNNEL_NONE },
    ]);
    const cart: Parameters<typeof tapEvent>[2] = [];
    tapEvent(tapsFor("cart", [def]), { ts: 8, user: "u1", dims: { country: "US" } }, cart);
    tapEvent(tapsFor("cart", [def]), { ts: 9, user: "u1" }, cart);
    expect(cart).toEqual([]);
    // Without the dim, an event passes only the filters that exclude values.
    const not = {
      ...def,
      steps: [def.steps[0], { stream: "cart", filters: [{ dim: "source", op: "neq" as const, values: ["test"] }] }],
    };
    tapEvent(tapsFor("cart", [not]), { ts: 10, user: "u1" }, cart);
    tapEvent(tapsFor("cart", [not]), { ts: 11, user: "u1", dims: { source: "test" } }, cart);
    expect(cart.map((i) => i.t)).toEqual([10]);
  });

  it("carries items between actors compactly and back unchanged", () => {
    const items = [
      { f: "f_1", s: 0, n: 3, w: 60_000, u: "u1", t: 5, b: "DE" },
      { f: "f_1", s: 1, n: 3, w: 60_000, u: "u1", t: 6 },
      { f: "f_2", s: 0, n: 2, w: 1000, u: 'u"2', t: 7, b: "" },
    ];
    const wire = encodeItems(items);
    expect(decodeItems(wire)).toEqual(items);
    expect(wire.length).toBeLessThan(JSON.stringify(items).length);
  });

  it("spreads users over the shards", () => {
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) seen.add(funnelShardOf(`user-${i}`));
    expect(seen.size).toBe(FUNNEL_SHARDS);
    expect(funnelShardOf("user-1")).toBe(funnelShardOf("user-1"));
  });

  it("shapes results: conversion, from the previous step, by value and by day", () => {
    const def = { ...parseFunnel(FunnelCreate.parse(body)), id: "f_1", created_at: 0 };
    const rows = [
      { day: 10, b: "DE", step: 0, n: 4 },
      { day: 10, b: "DE", step: 1, n: 2 },
      { day: 11, b: "FR", step: 0, n: 6 },
      { day: 11, b: "FR", step: 1, n: 3 },
      { day: 11, b: "FR", step: 2, n: 1 },
      { day: 9, b: "FR", step: 0, n: 100 }, // outside the range
    ];
    const r = funnelResults(def, rows, 10, 11);
    expect(r.steps.map((s) => [s.journeys, s.conversion, s.from_previous])).toEqual([
      [10, 1, 1],
      [5, 0.5, 0.5],
      [1, 0.1, 0.2],
    ]);
    expect(r.breakdown).toEqual([
      { value: "FR", journeys: [6, 3, 1] },
      { value: "DE", journeys: [4, 2, 0] },
    ]);
    expect(r.days.map((d) => d.journeys)).toEqual([
      [4, 2, 0],
      [6, 3, 1],
    ]);
  });
});
