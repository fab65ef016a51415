/**
 * The dashboard in a real Chromium (Debian's /usr/bin/chromium, driven by
 * playwright-core) against `npm start`'s stack: enter a key, watch numbers
 * move as events arrive, open a stream, survive a server restart; a stream's
 * sparkline, its breakdown by a dimension and the filter a value sets (kept in
 * the URL), and the query page (builder, URL, CSV, the server's refusals).
 * Screenshots are kept in test-artifacts/.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "../support/chromium";
import { createTestDatabase } from "../support/pg";
import { createTenant, type Keys, ROOT, type Stack, startStack } from "../support/stack";

const ARTIFACTS = join(ROOT, "test-artifacts");

let stack: Stack;
let keys: Keys;
let databaseUrl: string;
let browser: Browser;
let page: Page;

const send = async (events: unknown[]) => {
  const res = await fetch(`${stack.url}/v1/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
    body: JSON.stringify(events),
  });
  expect(res.status).toBe(200);
};

/** A stream with dimensions: DE 3 events (values 10, 20, 30), FR 2 (40, 50). */
const ORDERS = [
  { name: "orders", value: 10, user: "a", dims: { country: "DE", product: "p1" } },
  { name: "orders", value: 20, user: "b", dims: { country: "DE", product: "p1" } },
  { name: "orders", value: 30, user: "c", dims: { country: "DE", product: "p2" } },
  { name: "orders", value: 40, user: "d", dims: { country: "FR", product: "p1" } },
  { name: "orders", value: 50, user: "e", dims: { country: "FR", product: "p2" } },
];

const queryApi = (body: unknown) =>
  fetch(`${stack.url}/v1/query`, {
    method: "POST",
    headers: { authorization: `Bearer ${keys.read}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  databaseUrl = await createTestDatabase("edgepulse_test_dashboard");
  stack = await startStack({ extraEnv: { DATABASE_URL: databaseUrl } });
  keys = await createTenant(stack, "dashboard");
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

describe("dashboard in Chromium", () => {
  it("asks for a key, rejects a bad one with the server's message, and remembers a good one", async () => {
    await page.goto(`${stack.url}/`);
    await page.getByTestId("key-input").fill("ep_read_not-a-key");
    await page.getByTestId("key-submit").click();
    await page.getByText("The API key is not valid.").waitFor();
    await page.getByTestId("key-input").fill(keys.read);
    await page.getByTestId("key-submit").click();
    await page.locator('[data-testid="status"][data-state="connected"]').waitFor();
    expect(await page.evaluate(() => localStorage.getItem("edgepulse.readKey"))).toBe(keys.read);
  });

  it("shows streams and moves the numbers as events arrive", async () => {
    await send(Array.from({ length: 5 }, (_, i) => ({ name: "checkout", value: 100 + i, user: `u${i}` })));
    const countCell = page.locator('[data-testid="stream-checkout"] td[data-col="2"]');
    await expect.poll(() => countCell.textContent(), { timeout: 10_000 }).toBe("5");
    await send(Array.from({ length: 7 }, (_, i) => ({ name: "checkout", value: 200 + i, user: `v${i}` })));
    await expect.poll(() => countCell.textContent(), { timeout: 10_000 }).toBe("12");
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-overview.png"), fullPage: true });
  });

  it("opens a stream: live figures and charts from its actor", async () => {
    await page.locator('[data-testid="stream-checkout"]').click();
    const count = page.locator('[data-testid="stat-count"] .value');
    await expect.poll(() => count.textContent(), { timeout: 10_000 }).toBe("12");
    await send([
      { name: "checkout", value: 900, user: "w" },
      { name: "checkout", value: "oops" },
    ]);
    await expect.poll(() => count.textContent(), { timeout: 5_000 }).toBe("13");
    await expect
      .poll(() => page.locator('[data-testid="stat-rejected"] .value').textContent(), {
        timeout: 10_000,
        interval: 100,
      })
      .toBe("1");
    await page.getByTestId("chart-latency").locator("canvas").waitFor();
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-stream.png"), fullPage: true });
    // Usable on a phone too.
    // events/min and p95 on two y axes (plus the time axis).
    expect(await page.getByTestId("chart-hour").locator(".u-axis").count()).toBe(3);
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-stream-phone.png"), fullPage: true });
    // Nothing wider than a phone: neither the stream view nor the overview table scrolls the page sideways.
    // How far the page scrolls sideways (a wide table may scroll inside its card, never the page), and which
    // elements reach past the screen's edge outside a scrolling card (innermost first), to say what broke.
    const overflow = () =>
      page.evaluate(() => {
        const past = (e: Element) => e.getBoundingClientRect().right > window.innerWidth + 0.5;
        const offenders = Array.from(document.querySelectorAll("body *"))
          .filter((e) => past(e) && e.closest(".card") === null && !Array.from(e.children).some(past))
          .map((e) => `${e.tagName.toLowerCase()}.${e.className} ${e.getAttribute("data-testid") ?? ""}`.trim());
        return { page: document.documentElement.scrollWidth - window.innerWidth, offenders };
      });
    expect(await overflow()).toEqual({ page: 0, offenders: [] });
    await page.goto(`${stack.url}/#/`);
    await page.getByTestId("streams").locator("tbody tr").first().waitFor();
    expect(await overflow()).toEqual({ page: 0, offenders: [] });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-overview-phone.png"), fullPage: true });
    expect(await page.locator('link[rel="icon"]').getAttribute("href")).toMatch(/^data:image\/svg\+xml,/);
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${stack.url}/#/stream/checkout`);
  });

  it("shows a stream's shards and why it scaled", async () => {
    await send([{ name: "beacon", value: 1 }]);
    const res = await fetch(`${stack.url}/v1/streams/beacon/config`, {
      method: "PUT",
      headers: { authorization: `Bearer ${keys.admin}`, "content-type": "application/json" },
      body: JSON.stringify({ scaling: { min_shards: 3 } }),
    });
    expect(res.status).toBe(200);
    await page.goto(`${stack.url}/#/stream/beacon`);
    const summary = page.getByTestId("scaling-summary");
    await expect.poll(() => summary.textContent(), { timeout: 10_000 }).toMatch(/^3 shards · /);
    expect(await page.getByTestId("scaling").locator("li").first().textContent()).toMatch(
      /split 1 → 3: the stream's shard bounds are now 3\.\.16$/,
    );
    await page.goto(`${stack.url}/#/`);
  });

  it("shows a firing alert in a banner and on the alerts page", async () => {
    const res = await fetch(`${stack.url}/v1/alerts/rules`, {
      method: "POST",
      headers: { authorization: `Bearer ${keys.admin}`, "content-type": "application/json" },
      body: JSON.stringify({
        name: "too many signups",
        stream: "signup",
        aggregate: "count",
        window: "1m",
        threshold: 2,
        // A target that answers 404 (a path the stack does not serve): the alerts page says why it fails.
        targets: [`${stack.url}/v1/no-such-hook`],
      }),
    });
    expect(res.status).toBe(201);
    await page.goto(`${stack.url}/#/`);
    await send([{ name: "signup" }, { name: "signup" }, { name: "signup" }]);
    const banner = page.getByTestId("alert-banner");
    await expect.poll(() => banner.textContent(), { timeout: 15_000 }).toContain("too many signups");
    await page.getByTestId("alerts-link").click();
    const rules = page.getByTestId("alert-rules");
    await expect.poll(() => rules.textContent(), { timeout: 10_000 }).toContain("firing");
    await expect
      .poll(() => page.getByTestId("alert-events").textContent(), { timeout: 10_000, interval: 100 })
      .toContain("too many signups");
    await expect
      .poll(() => page.getByTestId("alert-events").textContent(), { timeout: 30_000, interval: 200 })
      .toMatch(/pending: HTTP 404 \(\d+ attempts?, 127\.0\.0\.1:\d+\)/);
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-alerts.png"), fullPage: true });
    await page.goto(`${stack.url}/#/stream/checkout`);
  }, 120_000);

  it("reconnects and catches up after the server drops the socket", async () => {
    const state = page.getByTestId("status");
    // The 1h window: the restart can take longer than a minute, and the 1m window would drop the first events.
    const count = page.locator('[data-testid="stat-count"] .value');
    await page.getByTestId("window-1h").click();
    await expect.poll(() => count.textContent(), { timeout: 10_000, interval: 100 }).toBe("13");
    await stack.stop();
    await expect.poll(() => state.getAttribute("data-state"), { timeout: 10_000 }).toBe("reconnecting");
    stack = await startStack({
      state: stack.state,
      vars: stack.vars,
      port: stack.port,
      extraEnv: { DATABASE_URL: databaseUrl },
    });
    await expect.poll(() => state.getAttribute("data-state"), { timeout: 30_000 }).toBe("connected");
    await send([{ name: "checkout", value: 50, user: "x" }]);
    await expect.poll(() => count.textContent(), { timeout: 10_000 }).toBe("14");
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-reconnected.png"), fullPage: true });
  }, 120_000);

  it("shows each stream's last 30 minutes as a sparkline ending with the events just sent", async () => {
    await page.goto(`${stack.url}/#/`);
    const ts = Date.now();
    await send(ORDERS.map((e) => ({ ...e, ts })));
    const spark = () =>
      page.evaluate(() => {
        const svg = document.querySelector('[data-testid="spark-orders"]');
        if (!svg) return null;
        return {
          points: (svg.getAttribute("data-points") ?? "").split(",").map(Number),
          end: Number(svg.getAttribute("data-end")),
          drawn: svg.querySelector("polyline")?.getAttribute("points")?.split(" ").length ?? 0,
        };
      });
    // One point per minute, oldest first, ending with the entry's minute: the events' minute holds all 5, the
    // minutes after it (if one has begun since) none, and the 25+ minutes before it nothing (a new stream).
    const eventMinute = Math.floor(ts / 60_000) * 60_000;
    const pointOfEvents = async () => {
      const s = await spark();
      if (!s) return null;
      const i = s.points.length - 1 - (s.end - eventMinute) / 60_000;
      return { value: s.points[i], others: s.points.reduce((a, n) => a + n, 0) - s.points[i], length: s.points.length };
    };
    await expect.poll(pointOfEvents, { timeout: 10_000 }).toEqual({ value: 5, others: 0, length: 30 });
    const s = await spark();
    expect(s?.drawn).toBe(30);
    expect(s?.points.at(-1)).toBe(s?.end === eventMinute ? 5 : 0);
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-overview-sparklines.png"), fullPage: true });
  });

  it("breaks a stream down by a dimension; a value filters the view, kept in the URL", async () => {
    await page.goto(`${stack.url}/#/stream/orders`);
    await page.getByTestId("window-1h").click();
    await page.getByTestId("breakdown-key").selectOption("country");
    const cell = (value: string, col: string) =>
      page.locator(`[data-testid="breakdown-row-${value}"] td[data-col="${col}"]`);
    await expect.poll(() => cell("DE", "count").textContent(), { timeout: 10_000 }).toBe("3");
    expect(await cell("FR", "count").textContent()).toBe("2");
    expect(await cell("DE", "share").textContent()).toBe("60.0%");
    expect(await cell("DE", "sum").textContent()).toBe("60");
    expect(await cell("FR", "sum").textContent()).toBe("90");
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-breakdown.png"), fullPage: true });

    await page.getByTestId("breakdown-row-DE").click();
    const chip = page.getByTestId("filter-chip");
    await expect.poll(() => chip.textContent(), { timeout: 5_000 }).toContain("filtered: country = DE");
    expect(new URL(page.url()).hash).toBe("#/stream/orders?country=DE");
    const stat = (id: string) => page.locator(`[data-testid="stat-${id}"] .value`);
    await expect.poll(() => stat("count").textContent(), { timeout: 10_000 }).toBe("3");
    expect(await stat("mean").textContent()).toBe("20"); // DE's (10 + 20 + 30) / 3; the whole stream's is 30
    await expect
      .poll(() => page.locator('[data-testid^="breakdown-row-"]').count(), { timeout: 10_000, interval: 100 })
      .toBe(1);
    expect(await page.getByTestId("chart-rate").isHidden()).toBe(true); // per-second charts are the whole stream's
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-filtered.png"), fullPage: true });

    // A reload (or a shared link) keeps the filter.
    await page.reload();
    await expect.poll(() => chip.textContent(), { timeout: 10_000 }).toContain("filtered: country = DE");
    await page.getByTestId("window-1h").click();
    await expect.poll(() => stat("count").textContent(), { timeout: 10_000 }).toBe("3");

    // Clearing it shows the whole stream again, from the live socket.
    await page.getByTestId("filter-clear").click();
    await expect.poll(() => new URL(page.url()).hash, { timeout: 10_000, interval: 100 }).toBe("#/stream/orders");
    // The view is redrawn after the URL changes: await the chip going, not just the URL.
    await expect.poll(() => chip.count(), { timeout: 10_000, interval: 100 }).toBe(0);
    await expect.poll(() => stat("count").textContent(), { timeout: 10_000 }).toBe("5");
  }, 120_000);

  it("builds a query, keeps it in the URL, exports CSV, and shows the server's refusals", async () => {
    await page.getByTestId("query-link").click();
    await page.getByTestId("q-stream").selectOption("orders");
    await page.getByTestId("q-group-country").check();
    expect(await page.getByTestId("q-measure-count").isChecked()).toBe(true);
    await page.getByTestId("q-range").selectOption("last:1h");
    await page.getByTestId("q-run").click();
    const cell = (group: string, col: string) =>
      page.locator(`[data-testid="query-table"] tr[data-group="${group}"] td[data-col="${col}"]`);
    await expect.poll(() => cell("DE", "count").textContent(), { timeout: 10_000 }).toBe("3");
    expect(await cell("FR", "count").textContent()).toBe("2");
    expect(await page.locator('[data-testid="query-table"] tbody tr').count()).toBe(2);
    const hash = new URL(page.url()).hash;
    expect(hash.startsWith("#/query?q=")).toBe(true);
    expect(JSON.parse(decodeURIComponent(hash.slice("#/query?q=".length)))).toEqual({
      stream: "orders",
      measures: ["count"],
      group_by: ["country"],
      range: { last: "1h" },
    });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-query.png"), fullPage: true });

    // CSV: the same query from ?format=csv, downloaded through a blob link.
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByTestId("q-csv").click()]);
    expect(readFileSync(await download.path(), "utf8")).toBe("country,count\r\nDE,3\r\nFR,2\r\n");

    // A reload restores the builder and the answer from the URL.
    await page.reload();
    await expect.poll(() => cell("DE", "count").textContent(), { timeout: 10_000 }).toBe("3");
    expect(await cell("FR", "count").textContent()).toBe("2");
    expect(await page.getByTestId("q-stream").inputValue()).toBe("orders");
    expect(await page.getByTestId("q-group-country").isChecked()).toBe(true);
    expect(await page.getByTestId("q-range").inputValue()).toBe("last:1h");

    // With a step: a chart with one series per group.
    await page.getByTestId("q-step").selectOption("1m");
    await page.getByTestId("q-run").click();
    const chart = page.getByTestId("query-chart");
    await chart.locator("canvas").waitFor({ timeout: 10_000 });
    await expect
      .poll(() => chart.locator(".u-legend").textContent(), { timeout: 10_000, interval: 100 })
      .toMatch(/DE.*FR/);
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-query-step.png"), fullPage: true });

    // Refusals: the server's invalid_query message, shown as it is.
    await page.getByTestId("q-json-toggle").click();
    for (const bad of [
      { stream: "orders", measures: ["count"], range: { last: "1h" }, limit: 0 },
      { stream: "orders", measures: ["count", "bogus"], range: { last: "1h" } },
    ]) {
      const res = await queryApi(bad);
      expect(res.status).toBe(400);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe("invalid_query");
      await page.getByTestId("q-json").fill(JSON.stringify(bad));
      await page.getByTestId("q-run").click();
      await expect.poll(() => page.getByTestId("query-error").textContent(), { timeout: 5_000 }).toBe(error.message);
      expect(await page.getByTestId("query-table").count()).toBe(0);
    }
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-query-error.png"), fullPage: true });
  }, 120_000);
});
