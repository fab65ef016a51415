import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Combiner, CombinerTimeout } from "./combiner.ts";

/** A target whose calls the test answers by hand, recording what each carried. */
function target() {
  const calls: Array<{ reqs: number[]; answer: (res: number[]) => void; fail: (e: unknown) => void }> = [];
  const send = (reqs: number[]) =>
    new Promise<number[]>((answer, fail) => {
      calls.push({ reqs, answer, fail });
    });
  return { calls, send };
}

/** Lets the leader's gathering turn (a 0 ms timer) and the promise chains after it run. */
const turn = () => vi.advanceTimersByTimeAsync(0);

describe("request combining", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends the callers of one turn together, and those arriving during a call together after it", async () => {
    const t = target();
    const c = new Combiner<number, number>({ maxWaiting: 100, maxWaitMs: 1000 });
    const first = [1, 2, 3].map((n) => c.submit(n, t.send));
    await turn();
    expect(t.calls.map((x) => x.reqs)).toEqual([[1, 2, 3]]);
    const second = [4, 5].map((n) => c.submit(n, t.send));
    await turn();
    // Nothing leaves while the first call is in flight.
    expect(t.calls).toHaveLength(1);
    t.calls[0].answer([10, 20, 30]);
    await expect(Promise.all(first)).resolves.toEqual([10, 20, 30]);
    await turn();
    expect(t.calls.map((x) => x.reqs)).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
    t.calls[1].answer([40, 50]);
    await expect(Promise.all(second)).resolves.toEqual([40, 50]);
    expect(c.calls).toBe(2);
    expect(c.carried).toBe(5);
  });

  it("becomes idle when its last call is answered and nothing waits", async () => {
    const t = target();
    const c = new Combiner<number, number>({ maxWaiting: 100, maxWaitMs: 1000 });
    const a = c.submit(1, t.send);
    expect(c.idle).toBe(false);
    await turn();
    t.calls[0].answer([2]);
    await expect(a).resolves.toBe(2);
    expect(c.idle).toBe(true);
  });

  it("fails every caller of a failed call, and the callers after it still go out", async () => {
    const t = target();
    const c = new Combiner<number, number>({ maxWaiting: 100, maxWaitMs: 1000 });
    const failed = [c.submit(1, t.send), c.submit(2, t.send)];
    await turn();
    const later = c.submit(3, t.send);
    t.calls[0].fail(new Error("actor reset"));
    for (const p of failed) await expect(p).rejects.toThrow("actor reset");
    await turn();
    expect(t.calls[1].reqs).toEqual([3]);
    t.calls[1].answer([30]);
    await expect(later).resolves.toBe(30);
  });

  it("refuses a call that answers with the wrong number of answers", async () => {
    const t = target();
    const c = new Combiner<number, number>({ maxWaiting: 100, maxWaitMs: 1000 });
    const both = [c.submit(1, t.send), c.submit(2, t.send)];
    await turn();
    t.calls[0].answer([1]);
    for (const p of both) await expect(p).rejects.toThrow("expected 2 answers, got 1");
  });

  it("bounds what waits by weight: past maxWaiting a caller is refused at once, even alone", async () => {
    const t = target();
    const c = new Combiner<number, number>({ maxWaiting: 10, maxWaitMs: 1000, weight: (n: number) => n });
    expect(c.submit(11, t.send)).toBeUndefined();
    expect(c.idle).toBe(true);
    const first = c.submit(10, t.send);
    expect(first).toBeDefined();
    await turn();
    const fits = [c.submit(6, t.send), c.submit(4, t.send)];
    expect(fits.every((p) => p !== undefined)).toBe(true);
    expect(c.submit(1, t.send)).toBeUndefined();
    expect(c.waiting).toBe(2);
    t.calls[0].answer([0]);
    await turn();
    expect(t.calls[1].reqs).toEqual([6, 4]);
  });

  it("gives up on a caller not carried within maxWaitMs without sending it; a carried caller waits longer", async () => {
    const t = target();
    const c = new Combiner<number, number>({ maxWaiting: 100, maxWaitMs: 1000 });
    const leader = c.submit(1, t.send);
    const carried = c.submit(2, t.send);
    await turn();
    const stuck = c.submit(3, t.send);
    const stuckErr = stuck?.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1001);
    const err = await stuckErr;
    expect(err).toBeInstanceOf(CombinerTimeout);
    expect((err as CombinerTimeout).sent).toBe(false);
    expect(c.waiting).toBe(0);
    // The call carrying 1 and 2 answers late (within 6 × maxWaitMs): both get their answers.
    await vi.advanceTimersByTimeAsync(3000);
    t.calls[0].answer([10, 20]);
    await expect(leader).resolves.toBe(10);
    await expect(carried).resolves.toBe(20);
    // 3 was never sent.
    await turn();
    expect(t.calls.map((x) => x.reqs)).toEqual([[1, 2]]);
  });

  it("a carried caller gives up, marked sent, when its call never answers", async () => {
    const t = target();
    const c = new Combiner<number, number>({ maxWaiting: 100, maxWaitMs: 1000 });
    void c.submit(1, t.send);
    const carried = c.submit(2, t.send)?.catch((e: unknown) => e);
    await turn();
    await vi.advanceTimersByTimeAsync(6001);
    const err = await carried;
    expect(err).toBeInstanceOf(CombinerTimeout);
    expect((err as CombinerTimeout).sent).toBe(true);
  });

  it("starts afresh when its leader's call has been out longer than maxWaitMs (a leader whose request died)", async () => {
    const t = target();
    let now = 0;
    const c = new Combiner<number, number>({ maxWaiting: 100, maxWaitMs: 1000, now: () => now });
    void c.submit(1, t.send);
    await turn();
    now = 500;
    void c.submit(2, t.send);
    await turn();
    expect(t.calls).toHaveLength(1); // still within the bound: waits for the call in flight
    now = 2000;
    const fresh = c.submit(3, t.send);
    await turn();
    expect(t.calls.map((x) => x.reqs)).toEqual([[1], [2, 3]]);
    t.calls[1].answer([20, 30]);
    await expect(fresh).resolves.toBe(30);
  });
});
