import { describe, expect, it } from "vitest";
import {
  type AlertRule,
  type AlertState,
  deliveryBackoffMs,
  evaluate,
  INITIAL_STATE,
  nextDeadline,
  parseDuration,
  signWebhook,
  stateAfterEdit,
  type TransitionKind,
  validateRule,
  verifyWebhook,
} from "./alerts.ts";
import type { Figures } from "./window.ts";

const T0 = Date.UTC(2026, 10, 22, 10, 0, 0);
const S = 1000;

const rule = (body: Record<string, unknown>, existing?: AlertRule) =>
  validateRule({ stream: "checkout", ...body }, { id: "r1", now: T0, existing }, false);

const fig = (v: Partial<Figures>): Figures => ({
  count: 0,
  rate: 0,
  value_count: 0,
  sum: 0,
  min: null,
  max: null,
  mean: null,
  p50: null,
  p90: null,
  p95: null,
  p99: null,
  distinct_users: 0,
  ...v,
});

/** Runs a timeline of [seconds after T0, p95 value | null] and returns [second, transition] pairs and the final state. */
function run(r: AlertRule, timeline: Array<[number, number | null]>, lastEventAt: number | null = T0) {
  let st: AlertState = INITIAL_STATE;
  const out: Array<[number, TransitionKind]> = [];
  for (const [sec, v] of timeline) {
    const res = evaluate(r, st, {
      now: T0 + sec * S,
      figures: v === null ? null : fig({ p95: v, rate: v, count: v }),
      lastEventAt,
    });
    st = res.state;
    for (const t of res.transitions) out.push([sec, t.kind]);
  }
  return { out, st };
}

describe("alert state machine", () => {
  const p95 = rule({
    aggregate: "p95",
    window: "5m",
    comparator: ">",
    threshold: 800,
    for: "2m",
    resolve_threshold: 600,
  });

  it("fires once after `for`, and resolves once below the resolve threshold", () => {
    const { out } = run(p95, [
      [0, 900],
      [60, 950],
      [119, 900],
      [120, 910],
      [180, 700], // below trigger, above resolve: still firing (hysteresis)
      [240, 590],
    ]);
    expect(out).toEqual([
      [0, "pending"],
      [120, "firing"],
      [240, "resolved"],
    ]);
  });

  it("does not flap on input oscillating around the threshold", () => {
    const timeline: Array<[number, number]> = [];
    for (let i = 0; i < 60; i++) timeline.push([i * 10, i % 2 === 0 ? 820 : 780]);
    const { out } = run({ ...p95, for_ms: 0 }, timeline);
    // Fires at the first 820 and stays firing: 780 is above the resolve threshold 600.
    expect(out).toEqual([[0, "firing"]]);
  });

  it("without hysteresis, the same input would flap: the resolve threshold is what prevents it", () => {
    const timeline: Array<[number, number]> = [];
    for (let i = 0; i < 6; i++) timeline.push([i * 10, i % 2 === 0 ? 820 : 780]);
    const { out } = run({ ...p95, for_ms: 0, resolve_threshold: null }, timeline);
    expect(out.map((o) => o[1])).toEqual(["firing", "resolved", "firing", "resolved", "firing", "resolved"]);
  });

  it("cancels a pending alert when the condition stops before `for` ends: no notification", () => {
    const { out, st } = run(p95, [
      [0, 900],
      [60, 500],
      [200, 500],
    ]);
    expect(out).toEqual([
      [0, "pending"],
      [60, "cancelled"],
    ]);
    expect(st.state).toBe("inactive");
  });

  it("keeps firing for keep_firing_for after the condition last held", () => {
    const r = rule({ aggregate: "rate", comparator: ">", threshold: 5, for: 0, keep_firing_for: "1m" });
    const { out } = run(r, [
      [0, 10],
      [10, 1],
      [50, 1],
      [69, 7], // holds again: the keep_firing_for clock restarts
      [100, 1],
      [128, 1],
      [129, 1],
    ]);
    expect(out).toEqual([
      [0, "firing"],
      [129, "resolved"],
    ]);
  });

  it("alerts on no data, and resolves when data returns", () => {
    const r = rule({ kind: "no_data", no_data: "3m" });
    let st = INITIAL_STATE;
    const kinds: string[] = [];
    const step = (sec: number, last: number) => {
      const res = evaluate(r, st, { now: T0 + sec * S, figures: null, lastEventAt: T0 + last * S });
      st = res.state;
      kinds.push(...res.transitions.map((t) => `${sec}:${t.kind}`));
    };
    step(60, 0);
    expect(nextDeadline(r, st, T0)).toBe(T0 + 180 * S);
    step(179, 0);
    step(180, 0);
    step(300, 0);
    step(310, 305); // an event arrived at 305
    expect(kinds).toEqual(["180:firing", "310:resolved"]);
  });

  it("judges late data by the window as it is now: a late burst can trigger, a late trickle cannot", () => {
    const r = rule({ aggregate: "count", window: "5m", comparator: ">=", threshold: 100, for: 0 });
    // The window's count includes late events as they arrive; evaluation sees the current figure.
    const { out } = run(r, [
      [0, 40],
      [5, 99],
      [6, 130],
    ]);
    expect(out).toEqual([[6, "firing"]]);
  });

  it("restarts `for` when a pending rule's condition is edited, but not for a label change", () => {
    const first = run(p95, [[0, 900]]);
    expect(first.st.state).toBe("pending");
    const tightened = rule({ threshold: 850 }, p95);
    expect(stateAfterEdit(p95, tightened, first.st)).toEqual({ ...INITIAL_STATE, value: 900 });
    const relabelled = rule({ labels: { team: "payments" } }, p95);
    expect(stateAfterEdit(p95, relabelled, first.st)).toBe(first.st);
    // A firing alert stays firing across an edit.
    const firing: AlertState = { ...first.st, state: "firing", firingSince: T0 };
    expect(stateAfterEdit(p95, tightened, firing).state).toBe("firing");
  });

  it("resolves a firing alert when its rule is disabled", () => {
    const r = { ...p95, for_ms: 0 };
    const a = evaluate(r, INITIAL_STATE, { now: T0, figures: fig({ p95: 900 }), lastEventAt: T0 });
    const b = evaluate({ ...r, enabled: false }, a.state, { now: T0 + S, figures: fig({ p95: 900 }), lastEventAt: T0 });
    expect(b.transitions.map((t) => t.kind)).toEqual(["resolved"]);
  });

  it("schedules the next timer for pending and keep_firing_for", () => {
    const pending = run(p95, [[0, 900]]).st;
    expect(nextDeadline(p95, pending, T0)).toBe(T0 + 120 * S);
    expect(nextDeadline(p95, INITIAL_STATE, T0)).toBeNull();
  });
});

describe("rule validation", () => {
  it("accepts the documented examples", () => {
    expect(rule({ aggregate: "p95", window: "5m", threshold: 800, for: "2m", resolve_threshold: 600 })).toMatchObject({
      for_ms: 120_000,
      resolve_threshold: 600,
      comparator: ">",
    });
    expect(rule({ stream: "payments.failed", aggregate: "rate", window: "1m", threshold: 5 })).toMatchObject({
      for_ms: 0,
    });
    expect(rule({ stream: "heartbeat", kind: "no_data", no_data: "3m" })).toMatchObject({
      kind: "no_data",
      no_data_ms: 180_000,
    });
  });

  it.each([
    [{ stream: "bad name", threshold: 1 }, "stream"],
    [{ aggregate: "p42", threshold: 1 }, "aggregate"],
    [{ window: "2m", threshold: 1 }, "window"],
    [{ comparator: "==", threshold: 1 }, "comparator"],
    [{}, "threshold"],
    [{ threshold: 800, resolve_threshold: 900 }, "resolve_threshold"],
    [{ threshold: 1, for: "soon" }, "for"],
    [{ threshold: 1, for: "25h" }, "24h"],
    [{ kind: "no_data" }, "no_data"],
    [{ threshold: 1, targets: ["http://example.com/hook"] }, "https"],
    [{ threshold: 1, targets: "https://x" }, "targets"],
    [{ threshold: 1, labels: { a: 1 } }, "labels"],
  ])("rejects %j, naming %s", (body, word) => {
    expect(() => rule(body)).toThrow(word);
  });

  it("parses durations", () => {
    expect(parseDuration("500ms", "x")).toBe(500);
    expect(parseDuration("1.5m", "x")).toBe(90_000);
    expect(parseDuration(2500, "x")).toBe(2500);
  });
});

describe("webhook signing and retries", () => {
  it("signs '<timestamp>.<body>' with HMAC-SHA256", async () => {
    const hmac = async (key: string, msg: string) => {
      const k = await crypto.subtle.importKey(
        "raw",
        new TextEncoder().encode(key),
        { name: "HMAC", hash: "SHA-256" },
        false,
        ["sign"],
      );
      const mac = new Uint8Array(await crypto.subtle.sign("HMAC", k, new TextEncoder().encode(msg)));
      return Array.from(mac, (x) => x.toString(16).padStart(2, "0")).join("");
    };
    // The primitive against a published vector, then the signed message's shape.
    expect(await hmac("key", "The quick brown fox jumps over the lazy dog")).toBe(
      "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
    );
    expect(await signWebhook("key", 1700000000, '{"a":1}')).toBe(await hmac("key", '1700000000.{"a":1}'));
  });

  it("verifies a signature: valid, tampered body, wrong secret, replayed outside the tolerance, malformed", async () => {
    const body = '{"kind":"firing"}';
    const t = 1_700_000_000;
    const header = `t=${t},v1=${await signWebhook("whsec", t, body)}`;
    expect(await verifyWebhook(header, body, "whsec", t + 10)).toBe("valid");
    expect(await verifyWebhook(header, '{"kind":"resolved"}', "whsec", t)).toBe("mismatch");
    expect(await verifyWebhook(header, body, "other", t)).toBe("mismatch");
    expect(await verifyWebhook(header, body, "whsec", t + 301)).toBe("expired");
    expect(await verifyWebhook(header, body, "whsec", t - 301)).toBe("expired");
    expect(await verifyWebhook(undefined, body, "whsec", t)).toBe("missing");
    expect(await verifyWebhook("v1=abc", body, "whsec", t)).toBe("malformed");
  });

  it("backs off exponentially up to five minutes", () => {
    expect([1, 2, 3, 10, 20].map(deliveryBackoffMs)).toEqual([1000, 2000, 4000, 300_000, 300_000]);
  });
});
