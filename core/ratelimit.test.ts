import { describe, expect, it } from "vitest";
import { rateLimitHeaders, slidingWindow } from "./ratelimit.ts";

describe("sliding window", () => {
  it("allows `limit` requests per window, then refuses until the window slides", () => {
    const counts = new Map<number, number>();
    const t0 = 1_000_000_000_000; // a window boundary
    const got = Array.from({ length: 7 }, (_, i) => slidingWindow(counts, 5, 1000, t0 + i));
    expect(got.map((d) => d.success)).toEqual([true, true, true, true, true, false, false]);
    expect(got.map((d) => d.remaining)).toEqual([4, 3, 2, 1, 0, 0, 0]);
    // Half-way through the next window, half of the previous window still counts: 5 × 0.5 → 2, so 3 more fit.
    const next = Array.from({ length: 4 }, () => slidingWindow(counts, 5, 1000, t0 + 1500));
    expect(next.map((d) => d.success)).toEqual([true, true, true, false]);
    // Two windows later, everything is forgotten.
    expect(slidingWindow(counts, 5, 1000, t0 + 3000)).toMatchObject({ success: true, remaining: 4 });
  });

  it("produces standard headers, with Retry-After only when refused", () => {
    const ok = rateLimitHeaders({ success: true, limit: 10, remaining: 3, reset: 5400 }, 5000);
    expect(ok).toMatchObject({ "RateLimit-Limit": "10", "RateLimit-Remaining": "3", "RateLimit-Reset": "1" });
    expect(ok["Retry-After"]).toBeUndefined();
    const no = rateLimitHeaders({ success: false, limit: 10, remaining: 0, reset: 7000 }, 5000);
    expect(no["Retry-After"]).toBe("2");
  });
});
