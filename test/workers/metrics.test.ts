import { describe, expect, it, vi } from "vitest";
import { createTenant, get, sendJson } from "./helpers";

/** Each "name{labels}" sample of a text page → value. */
function samples(body: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of body.trim().split("\n")) {
    if (line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

// The test config sets METRICS_MAX_SERIES=200 and METRICS_MAX_BREAKDOWNS=2 (vitest.workers.config.ts).
describe("GET /v1/metrics budgets", () => {
  it("asks whole streams for breakdowns within METRICS_MAX_BREAKDOWNS and counts the rest", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [
      { name: "m.a", value: 1, dims: { country: "DE" } },
      { name: "m.b", value: 2, dims: { country: "FR", plan: "pro" } },
      { name: "m.c", value: 3, dims: { plan: "free" } },
    ]);
    let page = new Map<string, number>();
    await vi.waitFor(
      async () => {
        const res = await get("/v1/metrics", t.read);
        expect(res.status).toBe(200);
        page = samples(await res.text());
        expect(page.get('edgepulse_events_accepted_total{stream="m.c"}')).toBe(1);
      },
      { timeout: 10_000, interval: 100 },
    );
    // m.a (1 breakdown) fits, m.b (2) does not, m.c (1) fits: 2 breakdowns unavailable.
    expect(page.get("edgepulse_scrape_breakdowns_unavailable")).toBe(2);
    const dimStreams = new Set(
      [...page.keys()].filter((k) => k.startsWith("edgepulse_dim_")).map((k) => /stream="([^"]+)"/.exec(k)?.[1]),
    );
    expect([...dimStreams].sort()).toEqual(["m.a", "m.c"]);
    expect(page.get('edgepulse_dim_window_events{stream="m.a",window="1m",dim_key="country",dim_value="DE"}')).toBe(1);
  });

  it("never writes more than METRICS_MAX_SERIES series, and says how many it left off", async () => {
    const t = await createTenant();
    await sendJson(
      t.ingest,
      Array.from({ length: 6 }, (_, i) => ({ name: `budget.s${i}`, value: i + 1, user: "u" })),
    );
    await vi.waitFor(
      async () => {
        const res = await get("/v1/metrics", t.read);
        const body = await res.text();
        const page = samples(body);
        expect(page.get('edgepulse_events_accepted_total{stream="budget.s5"}')).toBe(1);
        const series = [...page.keys()].filter((k) => !k.startsWith("edgepulse_scrape_")).length;
        expect(series).toBe(200);
        expect(page.get("edgepulse_scrape_series")).toBe(200);
        expect(page.get("edgepulse_scrape_series_limit")).toBe(200);
        // Six streams × 48 series each (counters, four windows, percentiles, last event) = 288.
        expect(page.get("edgepulse_scrape_series_dropped")).toBe(88);
        expect(res.headers.get("x-edgepulse-series-dropped")).toBe("88");
      },
      { timeout: 10_000, interval: 100 },
    );
  });
});
