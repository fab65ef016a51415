/**
 * The event schema the API description shows (core/event-schema.ts) and the hand-tuned validator the
 * collector runs (core/event.ts) accept and refuse the same events.
 */
import { describe, expect, it } from "vitest";
import { validateEvent } from "./event.ts";
import { EventSchema } from "./event-schema.ts";

const now = Date.UTC(2026, 10, 22, 9, 0, 0);
const dims = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));

const cases: Array<[string, unknown]> = [
  ["a name only", { name: "checkout.completed" }],
  ["every field", { name: "a", id: "e1", ts: now, value: 12.5, user: "u1", dims: { country: "DE" } }],
  ["an ISO time with an offset", { name: "a", ts: "2026-11-22T10:00:00+01:00" }],
  ["an ISO time without a zone", { name: "a", ts: "2026-11-22T10:00:00" }],
  ["an impossible date", { name: "a", ts: "2026-02-30T10:00:00Z" }],
  ["seconds instead of ms", { name: "a", ts: Math.floor(now / 1000) }],
  ["microseconds instead of ms", { name: "a", ts: now * 1000 }],
  ["no name", { value: 1 }],
  ["a name of dots", { name: ".." }],
  ["a name with a space", { name: "a b" }],
  ["a name of 128 characters", { name: "n".repeat(128) }],
  ["a name of 129 characters", { name: "n".repeat(129) }],
  ["an unknown field", { name: "a", valeu: 1 }],
  ["an empty id", { name: "a", id: "" }],
  ["an id of 128 characters", { name: "a", id: "i".repeat(128) }],
  ["an id of 129 characters", { name: "a", id: "i".repeat(129) }],
  ["a numeric id", { name: "a", id: 7 }],
  ["the largest value", { name: "a", value: 1e15 }],
  ["a value too large", { name: "a", value: -1.5e15 }],
  ["a string value", { name: "a", value: "12" }],
  ["an empty user", { name: "a", user: "" }],
  ["a user of 257 characters", { name: "a", user: "u".repeat(257) }],
  ["16 dims", { name: "a", dims: dims(16) }],
  ["17 dims", { name: "a", dims: dims(17) }],
  ["an empty dim key", { name: "a", dims: { "": "v" } }],
  ["a dim key of 65 characters", { name: "a", dims: { ["k".repeat(65)]: "v" } }],
  ["a dim value of 257 characters", { name: "a", dims: { k: "v".repeat(257) } }],
  ["a numeric dim value", { name: "a", dims: { k: 1 } }],
  ["dims as an array", { name: "a", dims: ["x"] }],
  ["an array", [{ name: "a" }]],
  ["null", null],
];

describe("the event schema of the API description", () => {
  it.each(cases)("agrees with the collector's validator on %s", (_, raw) => {
    expect(EventSchema.safeParse(raw).success).toBe(validateEvent(raw, now).ok);
  });
});
