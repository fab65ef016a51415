/**
 * The dashboard in a real Chromium (Debian's /usr/bin/chromium, driven by
 * playwright-core) against `npm start`'s stack: enter a key, watch numbers
 * move as events arrive, open a stream, survive a server restart.
 * Screenshots are kept in test-artifacts/.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase } from "../support/pg";
import { createTenant, type Keys, ROOT, type Stack, startStack } from "../support/stack";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
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

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium`);
  mkdirSync(ARTIFACTS, { recursive: true });
  databaseUrl = await createTestDatabase("edgepulse_test_dashboard");
  stack = await startStack({ extraEnv: { DATABASE_URL: databaseUrl } });
  keys = await createTenant(stack, "dashboard");
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
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
    await expect.poll(() => page.locator('[data-testid="stat-rejected"] .value').textContent()).toBe("1");
    await page.getByTestId("chart-latency").locator("canvas").waitFor();
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-stream.png"), fullPage: true });
    // Usable on a phone too.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-stream-phone.png"), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
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
    await expect.poll(() => page.getByTestId("alert-events").textContent()).toContain("too many signups");
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-alerts.png"), fullPage: true });
    await page.goto(`${stack.url}/#/stream/checkout`);
  });

  it("reconnects and catches up after the server drops the socket", async () => {
    const state = page.getByTestId("status");
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
    await expect
      .poll(() => page.locator('[data-testid="stat-count"] .value').textContent(), { timeout: 10_000 })
      .toBe("14");
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-reconnected.png"), fullPage: true });
  }, 120_000);
});
