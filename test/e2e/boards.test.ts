/**
 * Boards in a real Chromium against `npm start`'s stack: a board made through the API opens at
 * /#/boards/<id> with each panel's figures (their `data-value`s) equal to POST /v1/query's answers, and
 * following new events; the board edited in the page (rename, reorder, remove) is saved and reloads as
 * saved; a concurrent change is refused with a message; a panel is added from the query page; a read key
 * sees the board without editing controls; a panel the API refuses shows the API's message. Screenshots
 * are kept in test-artifacts/.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "../support/chromium";
import { createTestDatabase } from "../support/pg";
import { createTenant, type Keys, ROOT, type Stack, startStack } from "../support/stack";

const ARTIFACTS = join(ROOT, "test-artifacts");

let stack: Stack;
let keys: Keys;
let browser: Browser;
let page: Page;

interface Panel {
  id: string;
  title: string;
  kind: string;
  width: number;
  query?: Record<string, unknown>;
}
interface Board {
  id: string;
  name: string;
  panels: Panel[];
  version: number;
}
interface Result {
  columns: string[];
  rows: Array<Array<string | number | boolean | null>>;
}

const api = async (method: string, path: string, key: string, body?: unknown) => {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: res.status === 204 ? null : await res.json() };
};

const send = async (events: unknown[]) => {
  const res = await api("POST", "/v1/events", keys.ingest, events);
  expect(res.status).toBe(200);
  expect((res.body as { accepted: number }).accepted).toBe(events.length);
};

const query = async (body: unknown): Promise<Result> => {
  const res = await api("POST", "/v1/query", keys.read, body);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as Result;
};

const getBoard = async (id: string): Promise<Board> => {
  const res = await api("GET", `/v1/boards/${id}`, keys.read);
  expect(res.status).toBe(200);
  return (res.body as { board: Board }).board;
};

const TOTAL = { stream: "orders", measures: ["count"], range: { last: "1h" } };
const BY_COUNTRY = {
  stream: "orders",
  measures: ["count", "sum"],
  group_by: ["country"],
  range: { last: "1h" },
  order_by: { measure: "sum", dir: "desc" },
};
const BY_PRODUCT = {
  stream: "orders",
  measures: ["count", "sum", "max"],
  group_by: ["product"],
  range: { last: "1h" },
  order_by: { measure: "sum", dir: "desc" },
};

/** What a panel shows: its raw figures (data-value, in document order) and its groups (data-group). */
const shown = (panelId: string) =>
  page.evaluate((id) => {
    const panel = document.querySelector(`[data-panel-id="${id}"]`);
    if (!panel) return null;
    return {
      values: Array.from(panel.querySelectorAll("[data-value]"), (e) => Number(e.getAttribute("data-value"))),
      groups: Array.from(panel.querySelectorAll("[data-group]"), (e) => e.getAttribute("data-group")),
      error: panel.querySelector('[data-testid="panel-error"]:not([hidden])')?.textContent ?? null,
    };
  }, panelId);

/** The figures each kind shows of an answer: the same reading of the API's columns as the page's. */
function expected(kind: string, q: Record<string, unknown>, r: Result) {
  const order = (q.order_by as { measure: string } | undefined)?.measure ?? (q.measures as string[])[0];
  const col = r.columns.indexOf(order);
  const groups = ((q.group_by as string[] | undefined) ?? []).length;
  if (kind === "number") return { values: [r.rows[0][col] as number], groups: [] as string[] };
  if (kind === "bars")
    return {
      values: r.rows.map((row) => row[col] as number),
      groups: r.rows.map((row) => row.slice(0, groups).join(" / ")),
    };
  return {
    values: r.rows.flatMap((row) => row.filter((v): v is number => typeof v === "number")),
    groups: [] as string[],
  };
}

/** Polls until the panel shows exactly what POST /v1/query answers now (both read at each try), and returns it. */
async function matchesApi(panel: Panel) {
  let last: { values: number[]; groups: string[] } | null = null;
  let answer: Result | null = null;
  await expect
    .poll(
      async () => {
        const [dom, r] = await Promise.all([shown(panel.id), query(panel.query)]);
        const want = expected(panel.kind, panel.query as Record<string, unknown>, r);
        last = want;
        answer = r;
        return (
          dom && {
            values: dom.values,
            groups: dom.groups,
            error: dom.error,
            same: JSON.stringify({ values: dom.values, groups: dom.groups }) === JSON.stringify(want),
          }
        );
      },
      { timeout: 15_000, interval: 250 },
    )
    .toMatchObject({ same: true, error: null });
  return { ...(last as unknown as { values: number[]; groups: string[] }), answer: answer as unknown as Result };
}

/** Some columns of an answer, row by row. */
const pick = (r: Result, columns: string[]) => r.rows.map((row) => columns.map((c) => row[r.columns.indexOf(c)]));

const signIn = async (key: string) => {
  await page.goto(`${stack.url}/`);
  await page.evaluate((k) => localStorage.setItem("edgepulse.readKey", k), key);
};

let board: Board;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const databaseUrl = await createTestDatabase("edgepulse_test_boards_e2e");
  stack = await startStack({ extraEnv: { DATABASE_URL: databaseUrl } });
  keys = await createTenant(stack, "boards");
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

describe("boards in Chromium", () => {
  it("shows a board's panels with the figures POST /v1/query answers, and follows new events", async () => {
    const ts = Date.now();
    await send([
      { name: "orders", value: 10, user: "a", dims: { country: "DE", product: "p1" }, ts },
      { name: "orders", value: 20, user: "b", dims: { country: "DE", product: "p1" }, ts },
      { name: "orders", value: 30, user: "c", dims: { country: "DE", product: "p2" }, ts },
      { name: "orders", value: 40, user: "d", dims: { country: "FR", product: "p1" }, ts },
      { name: "orders", value: 50, user: "e", dims: { country: "FR", product: "p2" }, ts },
      { name: "orders", value: 5, user: "f", dims: { country: "US", product: "p3" }, ts },
    ]);
    const res = await api("POST", "/v1/boards", keys.admin, {
      name: "Sales",
      panels: [
        { title: "Orders", kind: "number", query: TOTAL },
        { title: "By country", kind: "bars", query: BY_COUNTRY },
        { title: "By product", kind: "table", query: BY_PRODUCT, width: 2 },
      ],
    });
    expect(res.status).toBe(201);
    board = (res.body as { board: Board }).board;
    const [number, bars, table] = board.panels;

    await signIn(keys.admin);
    await page.goto(`${stack.url}/#/boards/${board.id}`);
    await expect.poll(() => page.getByTestId("board-name").textContent(), { timeout: 10_000 }).toBe("Sales");
    expect(
      await page.locator("[data-panel-id]").evaluateAll((els) => els.map((e) => e.getAttribute("data-panel-id"))),
    ).toEqual(board.panels.map((p) => p.id));
    // Equal to the API's answers, and those are the events sent (not both empty).
    expect(await matchesApi(number)).toMatchObject({ values: [6], groups: [] });
    expect(await matchesApi(bars)).toMatchObject({ values: [90, 60, 5], groups: ["FR", "DE", "US"] });
    expect(pick((await matchesApi(table)).answer, ["product", "count", "sum", "max"])).toEqual([
      ["p2", 2, 80, 50],
      ["p1", 3, 70, 40],
      ["p3", 1, 5, 5],
    ]);
    await page.screenshot({ path: join(ARTIFACTS, "boards-board.png"), fullPage: true });

    // New events: every panel follows (it asks again every 2 s).
    await send([
      { name: "orders", value: 100, user: "g", dims: { country: "FR", product: "p3" } },
      { name: "orders", value: 7, user: "h", dims: { country: "NZ", product: "p1" } },
    ]);
    await expect.poll(async () => (await shown(number.id))?.values, { timeout: 15_000 }).toEqual([8]);
    expect(await matchesApi(number)).toMatchObject({ values: [8], groups: [] });
    expect(await matchesApi(bars)).toMatchObject({ values: [190, 60, 7, 5], groups: ["FR", "DE", "NZ", "US"] });
    expect(pick((await matchesApi(table)).answer, ["product", "count", "sum", "max"])).toEqual([
      ["p3", 2, 105, 100],
      ["p2", 2, 80, 50],
      ["p1", 4, 77, 40],
    ]);
    await page.screenshot({ path: join(ARTIFACTS, "boards-board-updated.png"), fullPage: true });
  }, 120_000);

  it("shares the board's link", async () => {
    await page.getByTestId("board-share").click();
    expect(await page.getByTestId("board-share-link").inputValue()).toBe(`${stack.url}/#/boards/${board.id}`);
  });

  it("edits the board (rename, reorder, remove), saves it, and reloads it as saved", async () => {
    const [number, bars, table] = board.panels;
    await page.getByTestId("board-edit").click();
    await page.getByTestId("board-name-input").fill("Sales, edited");
    const panel = (id: string) => page.locator(`[data-panel-id="${id}"]`);
    // Move the number panel down (below the bars), and remove the table.
    await panel(number.id).getByTestId("panel-down").click();
    await panel(table.id).getByTestId("panel-remove").click();
    await panel(bars.id).getByTestId("panel-title-input").fill("Revenue by country");
    await page.screenshot({ path: join(ARTIFACTS, "boards-editing.png"), fullPage: true });
    await page.getByTestId("board-save").click();
    await expect
      .poll(() => page.getByTestId("board-note").textContent(), { timeout: 10_000 })
      .toBe("Saved (version 2).");

    const saved = await getBoard(board.id);
    expect(saved).toMatchObject({ name: "Sales, edited", version: 2 });
    expect(saved.panels.map((p) => [p.id, p.title, p.kind])).toEqual([
      [bars.id, "Revenue by country", "bars"],
      [number.id, "Orders", "number"],
    ]);
    expect(saved.panels.map((p) => p.query)).toEqual([BY_COUNTRY, TOTAL]);

    await page.reload();
    await expect.poll(() => page.getByTestId("board-name").textContent(), { timeout: 10_000 }).toBe("Sales, edited");
    const order = () =>
      page.locator("[data-panel-id]").evaluateAll((els) => els.map((e) => e.getAttribute("data-panel-id")));
    expect(await order()).toEqual([bars.id, number.id]);
    expect(await page.locator(`[data-panel-id="${bars.id}"] [data-testid="panel-title"]`).textContent()).toBe(
      "Revenue by country",
    );
    expect(await matchesApi(saved.panels[1])).toMatchObject({ values: [8], groups: [] });
    board = saved;
  }, 60_000);

  it("refuses to save over someone else's change, and shows theirs on reload", async () => {
    await page.getByTestId("board-edit").click();
    await page.getByTestId("board-name-input").fill("mine");
    // Someone else saves first.
    const theirs = await api("PUT", `/v1/boards/${board.id}`, keys.admin, {
      name: "theirs",
      panels: board.panels,
      version: board.version,
    });
    expect(theirs.status).toBe(200);
    await page.getByTestId("board-save").click();
    await expect
      .poll(() => page.getByTestId("board-error").textContent(), { timeout: 10_000 })
      .toContain("Someone else changed this board; reload");
    expect((await getBoard(board.id)).name).toBe("theirs");
    await page.getByTestId("board-reload").click();
    await expect.poll(() => page.getByTestId("board-name").textContent(), { timeout: 10_000 }).toBe("theirs");
    board = await getBoard(board.id);
  });

  it("adds a panel from the query page", async () => {
    const q = {
      stream: "orders",
      measures: ["sum"],
      filters: [{ dim: "country", op: "eq", value: "DE" }],
      range: { last: "1h" },
    };
    await page.goto(`${stack.url}/#/query?q=${encodeURIComponent(JSON.stringify(q))}`);
    await page.locator('[data-testid="query-table"] td[data-col="sum"]').waitFor({ timeout: 10_000 });
    await page.getByTestId("q-add-board-open").click();
    await page.locator(`[data-testid="q-board"] option[value="${board.id}"]`).waitFor({ state: "attached" });
    await page.getByTestId("q-board").selectOption(board.id);
    await page.getByTestId("q-board-kind").selectOption("number");
    await page.getByTestId("q-board-title").fill("DE revenue");
    await page.getByTestId("q-board-add").click();
    await expect
      .poll(() => page.getByTestId("q-board-status").textContent(), { timeout: 10_000 })
      .toContain("Added to theirs");
    const after = await getBoard(board.id);
    expect(after.version).toBe(board.version + 1);
    expect(after.panels.slice(0, -1)).toEqual(board.panels);
    const added = after.panels[after.panels.length - 1];
    expect(added).toMatchObject({ title: "DE revenue", kind: "number", query: q });

    await page.getByTestId("q-board-link").click();
    await expect.poll(() => new URL(page.url()).hash).toBe(`#/boards/${board.id}`);
    expect(await matchesApi(added)).toMatchObject({ values: [60], groups: [] });
    await page.screenshot({ path: join(ARTIFACTS, "boards-added-from-query.png"), fullPage: true });
    board = after;
  }, 60_000);

  it("with a read key: the board, its figures, no editing controls and a note saying why", async () => {
    await signIn(keys.read);
    await page.goto(`${stack.url}/#/boards/${board.id}`);
    await page.getByTestId("board-readonly").waitFor({ timeout: 10_000 });
    expect(await page.getByTestId("board-readonly").textContent()).toContain("admin key");
    expect(await page.getByTestId("board-edit").isHidden()).toBe(true);
    expect(await page.getByTestId("board-save").isHidden()).toBe(true);
    expect(await matchesApi(board.panels[0])).toMatchObject({
      values: [190, 60, 7, 5],
      groups: ["FR", "DE", "NZ", "US"],
    });
    // The list too: the boards, and no create form.
    await page.getByTestId("boards-link").click();
    await page.getByTestId(`board-row-${board.id}`).waitFor({ timeout: 10_000 });
    expect(await page.getByTestId("board-create").isHidden()).toBe(true);
    expect(await page.getByTestId("boards-readonly").isVisible()).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, "boards-list-read-key.png"), fullPage: true });
  });

  it("creates a board from the list, and shows a panel's refusal with the API's message", async () => {
    await signIn(keys.admin);
    await page.goto(`${stack.url}/#/boards`);
    await page.getByTestId("board-create-name").fill("Funnels");
    await page.getByTestId("board-create-submit").click();
    await expect.poll(() => page.getByTestId("board-name").textContent(), { timeout: 10_000 }).toBe("Funnels");
    const id = decodeURIComponent(new URL(page.url()).hash.slice("#/boards/".length));
    const made = await getBoard(id);
    expect(made).toMatchObject({ name: "Funnels", panels: [], version: 1 });
    // A funnel panel naming a funnel the tenant does not have: the panel says what the API said.
    const put = await api("PUT", `/v1/boards/${id}`, keys.admin, {
      name: "Funnels",
      panels: [{ title: "missing", kind: "funnel", funnel: "f_missing" }],
      version: 1,
    });
    expect(put.status).toBe(200);
    const panelId = (put.body as { board: Board }).board.panels[0].id;
    const refusal = await api("GET", "/v1/funnels/f_missing/results?days=1", keys.read);
    expect(refusal.status).toBe(404);
    const message = (refusal.body as { error: { message: string } }).error.message;
    await page.reload();
    await expect.poll(async () => (await shown(panelId))?.error, { timeout: 10_000 }).toBe(message);
    await page.screenshot({ path: join(ARTIFACTS, "boards-panel-error.png"), fullPage: true });
  });

  it("draws a time series panel: a line per group, and each group's latest figure", async () => {
    const q = {
      stream: "orders",
      measures: ["sum"],
      group_by: ["country"],
      range: { last: "1h" },
      step: "1m",
      order_by: { measure: "sum", dir: "desc" },
      limit: 2,
    };
    const res = await api("POST", "/v1/boards", keys.admin, {
      name: "Series",
      panels: [{ title: "revenue per minute", kind: "timeseries", query: q }],
    });
    expect(res.status).toBe(201);
    const b = (res.body as { board: Board }).board;
    await page.goto(`${stack.url}/#/boards/${b.id}`);
    const r = await query(q);
    const groups = [...new Set(r.rows.map((row) => String(row[0])))];
    expect(groups).toEqual(["FR", "DE"]);
    const t = r.columns.indexOf("t");
    const latest = groups.map((g) => {
      const rows = r.rows.filter((row) => row[0] === g).sort((x, y) => String(x[t]).localeCompare(String(y[t])));
      return rows[rows.length - 1][r.columns.indexOf("sum")] as number;
    });
    const panel = page.locator(`[data-panel-id="${b.panels[0].id}"]`);
    await expect.poll(async () => (await shown(b.panels[0].id))?.groups, { timeout: 10_000 }).toEqual(groups);
    expect((await shown(b.panels[0].id))?.values).toEqual(latest);
    expect(await panel.locator("svg polyline").count()).toBe(groups.length);
    await page.screenshot({ path: join(ARTIFACTS, "boards-timeseries.png"), fullPage: true });
  });

  it("shows a funnel panel: journeys and conversion per step, as GET /v1/funnels/:id/results answers", async () => {
    const made = await api("POST", "/v1/funnels", keys.admin, {
      name: "checkout",
      steps: [{ stream: "page.view" }, { stream: "cart.add" }, { stream: "checkout.completed" }],
      window: "1h",
    });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const funnel = (made.body as { funnel: { id: string } }).funnel.id;
    const res = await api("POST", "/v1/boards", keys.admin, {
      name: "Checkout funnel",
      panels: [{ title: "checkout", kind: "funnel", funnel, days: 1 }],
    });
    expect(res.status).toBe(201);
    const b = (res.body as { board: Board }).board;
    await page.goto(`${stack.url}/#/boards/${b.id}`);
    // u1 goes all the way, u2 to the cart, u3 and u4 only look.
    const t0 = Date.now();
    const step = (name: string, user: string, i: number) => ({ name, user, ts: t0 + i * 1000 });
    await send([
      ...["u1", "u2", "u3", "u4"].map((u) => step("page.view", u, 0)),
      step("cart.add", "u1", 1),
      step("cart.add", "u2", 1),
      step("checkout.completed", "u1", 2),
    ]);
    const results = async () => {
      const r = await api("GET", `/v1/funnels/${funnel}/results?days=1`, keys.read);
      expect(r.status).toBe(200);
      return (r.body as { steps: Array<{ journeys: number; conversion: number }> }).steps;
    };
    let want: number[] = [];
    await expect
      .poll(
        async () => {
          const [dom, steps] = await Promise.all([shown(b.panels[0].id), results()]);
          want = steps.flatMap((s) => [s.journeys, s.conversion]);
          return { dom: dom?.values, api: want, error: dom?.error };
        },
        { timeout: 20_000, interval: 250 },
      )
      .toEqual({ dom: [4, 1, 2, 0.5, 1, 0.25], api: [4, 1, 2, 0.5, 1, 0.25], error: null });
    await page.screenshot({ path: join(ARTIFACTS, "boards-funnel.png"), fullPage: true });
  }, 60_000);
});
