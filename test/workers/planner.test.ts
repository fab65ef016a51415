import { describe, expect, it, vi } from "vitest";
import { WakePlanner } from "../../durable-objects/planner";

/** A storage whose alarm writes resolve in the order given by `delays` (slow first, fast second). */
function fakeStorage(delays: number[]) {
  const state = { alarm: null as number | null, writes: [] as number[] };
  let call = 0;
  const storage = {
    async getAlarm() {
      await new Promise((r) => setTimeout(r, 5));
      return state.alarm;
    },
    async setAlarm(at: number) {
      const delay = delays[call++] ?? 0;
      // The runtime applies storage operations in call order; the promise may settle later.
      state.alarm = at;
      state.writes.push(at);
      await new Promise((r) => setTimeout(r, delay));
    },
  };
  return { storage: storage as unknown as DurableObjectStorage, state };
}

describe("the wake-up planner", () => {
  it("keeps the earliest wake-up when callers race (no read-await-write window)", async () => {
    const { storage, state } = fakeStorage([30, 0]);
    const planner = new WakePlanner(storage);
    planner.init(null);
    let due = 1000;
    planner.add({ name: "part", nextWake: () => due, wake() {} });
    const first = planner.arm(0);
    due = 500; // a second change, while the first alarm write is still in flight
    const second = planner.arm(0);
    await Promise.all([first, second]);
    expect(state.alarm).toBe(500);
    expect(state.writes).toEqual([1000, 500]);
    // Nothing earlier is needed: no further write.
    await planner.arm(0);
    expect(state.writes).toEqual([1000, 500]);
  });

  it("runs every due part, holds back one that throws, and never throws itself", async () => {
    const { storage, state } = fakeStorage([]);
    const planner = new WakePlanner(storage);
    planner.init(null);
    const ran: string[] = [];
    let failing = true;
    planner.add({
      name: "broken",
      nextWake: () => 0,
      wake() {
        ran.push("broken");
        if (failing) throw new Error("boom");
      },
    });
    planner.add({
      name: "healthy",
      nextWake: () => (ran.includes("healthy") ? null : 0),
      wake: () => void ran.push("healthy"),
    });
    const before = Date.now();
    await planner.fire();
    const after = Date.now();
    expect(ran).toEqual(["broken", "healthy"]);
    // The broken part is held back a second from its failure (FAILURE_HOLD_MS), so the alarm does not spin on
    // it: bounded by the clock before and after the fire, whatever time the fire took.
    expect(state.alarm).toBeGreaterThanOrEqual(before + 1000);
    expect(state.alarm).toBeLessThanOrEqual(after + 1000);
    // Once the hold has passed (clock moved on, not slept through) it runs again, and recovers.
    failing = false;
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      vi.setSystemTime(Date.now() + 1100);
      await planner.fire();
    } finally {
      vi.useRealTimers();
    }
    expect(ran).toEqual(["broken", "healthy", "broken"]);
  });
});
