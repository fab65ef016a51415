/**
 * The solution packs against a real stack and a real Chromium: each pack is set up through the public
 * API (and a second run changes nothing), sends `--events N` of seeded traffic, and its first board opens
 * at /#/boards/<id> with every panel's figures (their `data-value`s) equal to the API's answers, and its
 * funnel panel following new events. The courses pack's alert webhooks reach the course-notifications
 * receiver as chat messages; the app pack's traffic changes the catalog; `npm run demo` itself runs a pack.
 * Screenshots: test-artifacts/packs-<pack>.png.
 *
 * One stack serves the three packs (each in its own tenant, as `npm run demo` makes them), with the
 * machine's PostgreSQL as history, like the other browser tests.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChatMessage, startReceiver } from "../../examples/course-notifications/receiver";
import { PACKS } from "../../tools/packs/index";
import type { Pack } from "../../tools/packs/pack";
import { type DemoTenant, type ProvisionResult, provision } from "../../tools/packs/provision";
import { sendTraffic } from "../../tools/packs/traffic";
import { launchChromium } from "../support/chromium";
import { createTestDatabase } from "../support/pg";
import { freePort, ROOT, type Stack, startStack } from "../support/stack";

const ARTIFACTS = join(ROOT, "test-artifacts");
/** Events each pack sends before its board is read, and after (the funnel panel must follow). */
const EVENTS = 2500;
const MORE_EVENTS = 800;

let stack: Stack;
let browser: Browser;
let page: Page;
let stateDir: string;

interface Panel {
  id: string;
  title: string;
  kind: string;
  query?: Record<string, unknown>;
  funnel?: string;
  days?: number;
}
interface Result {
  columns: string[];
  rows: Array<Array<string | number | boolean | null>>;
}
interface FunnelResults {
  steps: Array<{ index: number; stream: string; journeys: number; conversion: number }>;
  breakdown: Array<{ value: string; journeys: number[] }>;
}

const api = async (method: string, path: string, key: string, body?: unknown) => {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (res.status === 204 ? null : await res.json()) as unknown };
};

const query = async (key: string, body: unknown): Promise<Result> => {
  const res = await api("POST", "/v1/query", key, body);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as Result;
};

/** What a panel shows: its raw figures (data-value, in document order), its groups (data-group), its error. */
const shown = (panelId: string) =>
  page.evaluate((id) => {
    const panel = document.querySelector(`[data-panel-id="${id}"]`);
    if (!panel) return null;
    return {
      values: Array.from(panel.querySelectorAll("[data-value]"), (e) => Number(e.getAttribute("data-value"))),
      groups: Array.from(panel.querySelectorAll("[data-group]"), (e) => e.getAttribute("data-group")),
      steps: panel.querySelectorAll("[data-step]").length,
      breakdown: Array.from(panel.querySelectorAll("[data-breakdown]"), (e) => ({
        value: e.getAttribute("data-breakdown"),
        journeys: (e.getAttribute("data-journeys") ?? "").split(",").map(Number),
      })),
      error: panel.querySelector('[data-testid="panel-error"]:not([hidden])')?.textContent ?? null,
    };
  }, panelId);

const measureNames = (q: Record<string, unknown>) =>
  (q.measures as Array<string | { name: string }>).map((m) => (typeof m === "string" ? m : m.name));

/**
 * The figures each kind shows of an answer, read as the board page reads it (dashboard/src/boards.ts): the
 * charted column is the order_by measure, else the first; groups are the columns before `t` or the first
 * measure (group keys, labels, attribute columns) joined by " / ", "all" when there are none.
 */
function expected(kind: string, q: Record<string, unknown>, r: Result) {
  const order = (q.order_by as { measure: string } | undefined)?.measure ?? measureNames(q)[0];
  const col = r.columns.indexOf(order) >= 0 ? r.columns.indexOf(order) : r.columns.length - 1;
  const t = r.columns.indexOf("t");
  const first = Math.min(
    ...measureNames(q)
      .map((m) => r.columns.indexOf(m))
      .filter((i) => i >= 0),
  );
  const groupCols = Math.max(0, t >= 0 ? t : first);
  const groupOf = (row: Result["rows"][number]) => row.slice(0, groupCols).map(String).join(" / ") || "all";
  const numbers = (vs: unknown[]) => vs.filter((v): v is number => typeof v === "number");
  if (r.rows.length === 0) return { values: [], groups: [] };
  if (kind === "number") return { values: numbers([r.rows[0][col]]), groups: [] };
  if (kind === "bars") {
    return {
      values: numbers(r.rows.map((row) => row[col])),
      groups: r.rows.map((row) => [groupOf(row), ...(t >= 0 ? [String(row[t])] : [])].join(" · ")),
    };
  }
  if (kind === "table") return { values: r.rows.flatMap((row) => numbers(row)), groups: [] };
  // A time series: one legend entry per group, with the group's latest answered figure.
  const groups = [...new Set(r.rows.map(groupOf))];
  const latest = groups.map(
    (g) => r.rows.filter((row) => groupOf(row) === g).reduce((a, b) => (String(b[t]) > String(a[t]) ? b : a))[col],
  );
  return { values: numbers(latest), groups };
}

/** Polls until the panel shows what POST /v1/query answers (both read at each try); returns the answer. */
async function matchesApi(key: string, panel: Panel): Promise<Result> {
  let answer: Result | null = null;
  await expect
    .poll(
      async () => {
        const [dom, r] = await Promise.all([shown(panel.id), query(key, panel.query)]);
        answer = r;
        const want = expected(panel.kind, panel.query as Record<string, unknown>, r);
        return {
          panel: panel.title,
          error: dom?.error ?? null,
          same: JSON.stringify({ values: dom?.values, groups: dom?.groups }) === JSON.stringify(want),
        };
      },
      { timeout: 15_000, interval: 250 },
    )
    .toEqual({ panel: panel.title, error: null, same: true });
  return answer as unknown as Result;
}

/** Polls until the funnel panel shows its `stepCount` steps with the journeys the results API answers; returns them. */
async function funnelMatches(key: string, panel: Panel, stepCount: number, atLeast = 1): Promise<number[]> {
  let journeys: number[] = [];
  await expect
    .poll(
      async () => {
        const [dom, res] = await Promise.all([
          shown(panel.id),
          api("GET", `/v1/funnels/${panel.funnel}/results?days=${panel.days ?? 1}`, key),
        ]);
        journeys = (res.body as FunnelResults).steps.map((s) => s.journeys);
        const conversions = (res.body as FunnelResults).steps.map((s) => s.conversion);
        return {
          steps: dom?.steps === journeys.length && journeys.length === stepCount,
          same:
            JSON.stringify(dom?.values) === JSON.stringify(journeys.flatMap((j, i) => [j, conversions[i]])) &&
            // The breakdown by the funnel's dim (its first rows), as the API answers it.
            JSON.stringify(dom?.breakdown) === JSON.stringify((res.body as FunnelResults).breakdown.slice(0, 8)),
          enough: journeys[0] >= atLeast,
          error: dom?.error ?? null,
        };
      },
      { timeout: 30_000, interval: 300 },
    )
    .toEqual({ steps: true, same: true, enough: true, error: null });
  return journeys;
}

/** Sets the pack up twice (the second run must change nothing) and sends its traffic. */
async function setUp(pack: Pack, notify?: string): Promise<ProvisionResult> {
  const opts = { url: stack.url, vars: stack.vars, stateDir, notify };
  const first = await provision(pack, opts);
  expect(first.notes).toEqual([]);
  expect(first.changes.length).toBeGreaterThan(0);
  expect(first.boards.map((b) => b.name)).toEqual(pack.boards.map((b) => b.name));
  const again = await provision(pack, opts);
  expect(again.changes).toEqual([]);
  expect(again.tenant).toEqual(first.tenant);
  expect(again.boards).toEqual(first.boards);
  expect([...again.funnels]).toEqual([...first.funnels]);
  expect([...again.rules]).toEqual([...first.rules]);
  return first;
}

async function send(pack: Pack, tenant: DemoTenant, events: number, seed: number) {
  const totals = await sendTraffic(pack, tenant, { rate: 200, seconds: 0, events, seed });
  expect(totals).toMatchObject({ sent: events, accepted: events, duplicates: 0, rejected: 0 });
  return totals;
}

/** Opens the pack's first board and checks every panel against the API; returns its funnel panel. */
async function checkBoard(pack: Pack, r: ProvisionResult): Promise<Panel> {
  const { id } = r.boards[0];
  const board = (await api("GET", `/v1/boards/${id}`, r.tenant.read)).body as { board: { panels: Panel[] } };
  await page.goto(`${stack.url}/`);
  await page.evaluate((k) => localStorage.setItem("edgepulse.readKey", k), r.tenant.read);
  await page.goto(`${stack.url}/#/boards/${id}`);
  await expect.poll(() => page.getByTestId("board-name").textContent(), { timeout: 10_000 }).toBe(pack.boards[0].name);
  // The page was on another pack's tenant a moment ago: none of its firing alerts may stay on show.
  const others = Object.values(PACKS)
    .filter((p) => p.name !== pack.name)
    .flatMap((p) => p.rules.map((x) => x.rule.name));
  const banner = (await page.getByTestId("alert-banner").textContent()) ?? "";
  expect(others.filter((name) => banner.includes(name))).toEqual([]);
  const panels = board.board.panels;
  expect(panels.map((p) => p.title)).toEqual(pack.boards[0].panels.map((p) => p.title));
  let nonEmpty = 0;
  for (const panel of panels.filter((p) => p.kind !== "funnel")) {
    const answer = await matchesApi(r.tenant.read, panel);
    if (answer.rows.length > 0) nonEmpty++;
  }
  // The traffic reached the board: not everything is empty.
  expect(nonEmpty).toBeGreaterThan(panels.length / 2);
  const funnel = panels.find((p) => p.kind === "funnel");
  expect(funnel, "the first board has a funnel panel").toBeDefined();
  return funnel as Panel;
}

/** The funnel panel shows the results, and follows more traffic. */
async function checkFunnel(pack: Pack, r: ProvisionResult, funnel: Panel) {
  const spec = pack.funnels.find((f) => r.funnels.get(f.name) === funnel.funnel);
  expect(spec, "the panel shows one of the pack's funnels").toBeDefined();
  const steps = spec?.steps.length ?? 0;
  const before = await funnelMatches(r.tenant.read, funnel, steps);
  for (let i = 1; i < before.length; i++) expect(before[i]).toBeLessThanOrEqual(before[i - 1]);
  await send(pack, r.tenant, MORE_EVENTS, 99);
  const after = await funnelMatches(r.tenant.read, funnel, steps, before[0] + 1);
  expect(after[0]).toBeGreaterThan(before[0]);
}

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  stateDir = mkdtempSync(join(tmpdir(), "edgepulse-packs-"));
  const databaseUrl = await createTestDatabase("edgepulse_test_packs_live");
  stack = await startStack({ extraEnv: { DATABASE_URL: databaseUrl } });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

describe("solution packs on a live stack", () => {
  it("shop: sets up, sends traffic, and its board shows the API's figures and a live funnel", async () => {
    const pack = PACKS.shop;
    const r = await setUp(pack);
    await send(pack, r.tenant, EVENTS, 11);
    const funnel = await checkBoard(pack, r);
    await checkFunnel(pack, r, funnel);
    await page.screenshot({ path: join(ARTIFACTS, "packs-shop.png"), fullPage: true });
  }, 90_000);

  it("courses: the board as the API answers it, and alerts as chat messages through the receiver", async () => {
    const pack = PACKS.courses;
    const port = await freePort();
    const notify = `http://127.0.0.1:${port}/`;
    const r = await setUp(pack, notify);
    const rules = (await api("GET", "/v1/alerts/rules", r.tenant.read)).body as {
      rules: Array<{ rule: { name: string; targets: string[] } }>;
    };
    for (const spec of pack.rules) {
      const rule = rules.rules.find((x) => x.rule.name === spec.rule.name);
      expect(rule?.rule.targets, spec.rule.name).toEqual(spec.notify ? [notify] : []);
    }
    const { secret } = (await api("GET", "/v1/alerts/secret", r.tenant.admin)).body as { secret: string };
    const messages: ChatMessage[] = [];
    const receiver = await startReceiver({ secret, port, print: (m) => messages.push(m) });
    try {
      await send(pack, r.tenant, EVENTS, 12);
      // A course update fires "Course updated" (count > 0 over 1m); its webhook becomes a chat message.
      const res = await api("POST", "/v1/events", r.tenant.ingest, [
        { name: "course.updated", dims: { course: "c-sql", change: "lesson-added" } },
      ]);
      expect(res.status).toBe(200);
      await expect
        .poll(() => messages.map((m) => m.plain.split(" — ")[0]), { timeout: 30_000, interval: 250 })
        .toContain("[FIRING] Course updated");
      const m = messages.find((x) => x.plain.startsWith("[FIRING] Course updated")) as ChatMessage;
      expect(m.text).toMatch(/^🔴 \*Course updated\* is firing\ncourse\.updated: \d+ at /);
      expect(m.plain).toContain("A course changed: tell its learners what is new. — for #course-updates");
      const funnel = await checkBoard(pack, r);
      await checkFunnel(pack, r, funnel);
      // Two steps on one stream are told apart by their filters.
      expect(await page.locator(`[data-panel-id="${funnel.id}"] .hbar-label`).allTextContents()).toEqual([
        "1. course.enrolled",
        "2. course.progress (milestone = first_lesson)",
        "3. course.progress (milestone = half)",
        "4. course.completed",
      ]);
      await page.screenshot({ path: join(ARTIFACTS, "packs-courses.png"), fullPage: true });
    } finally {
      await receiver.close();
    }
  }, 120_000);

  it("app: the board as the API answers it, and the catalog changes while the traffic runs", async () => {
    const pack = PACKS.app;
    const r = await setUp(pack);
    const totals = await send(pack, r.tenant, EVENTS, 13);
    expect(totals.catalogChanges).toBeGreaterThan(0);
    // The first change adds a user beyond the catalog's 1,200, and it is in the catalog now.
    const added = await api("GET", "/v1/catalog/users/u-1201", r.tenant.read);
    expect(added.status).toBe(200);
    expect(added.body).toMatchObject({ id: "u-1201", first_name: "Alba", last_name: "Nilsen" });
    const funnel = await checkBoard(pack, r);
    await checkFunnel(pack, r, funnel);
    await page.screenshot({ path: join(ARTIFACTS, "packs-app.png"), fullPage: true });
  }, 120_000);

  it("npm run demo sets a pack up again without changes and sends exactly --events N", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        "--import",
        "tsx",
        "tools/demo.ts",
        "shop",
        "--url",
        stack.url,
        "--vars",
        stack.vars,
        "--state",
        stateDir,
        "--events",
        "300",
        "--seed",
        "5",
      ],
      { cwd: ROOT, timeout: 60_000 },
    );
    expect(stdout).toContain(`keys from ${join(stateDir, "demo-shop.json")}`);
    expect(stdout).not.toMatch(/: (created|updated|replaced)|new keys minted|: dimension sets/);
    expect(stdout).toContain("catalog products: 20 (0 created, 20 already there)");
    expect(stdout).toMatch(new RegExp(`Shop overview: ${stack.url}/#/boards/b_[\\w-]+`));
    expect(stdout).toContain("Sending 300 events (seed 5)…");
    expect(stdout).toMatch(/300 events sent: 300 accepted\n$/);
  }, 60_000);
});
