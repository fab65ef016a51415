/**
 * Boards (#/boards, #/boards/<id>): the tenant's saved dashboards (/v1/boards). A board's panels run their
 * stored queries through POST /v1/query (a funnel panel reads GET /v1/funnels/:id/results) every
 * REFRESH_MS, and draw them as a time series, bars, a table, one number or a funnel. Every figure is in an
 * element whose `data-value` holds the raw number the API answered. An admin credential edits a board
 * (rename, reorder, remove, retitle, change a panel's kind or width) and saves it with the version it read;
 * the query page adds panels to a board (addToBoard). A board's link, /#/boards/<id>, opens it for anyone
 * signed in to the tenant.
 */
import type { BoardSummaryView, BoardView, PanelKind, PanelView } from "../../core/boards";
import type { QueryResult } from "../../core/query";
import { app, crumbs, el, errorOf, fmt, isRecord, num, runQuery, SERIES_COLORS, svgLines, type View } from "./ui";

/** #/boards/<id> */
export const BOARD_ROUTE = /^#\/boards\/([^/?]+)$/;
/** How often a board's panels ask for their figures again. */
const REFRESH_MS = 2000;
/** The kinds a query panel can be shown as (a funnel panel stays a funnel panel). */
const QUERY_KINDS = ["timeseries", "bars", "table", "number"] as const satisfies readonly PanelKind[];
const KIND_LABELS: Record<PanelKind, string> = {
  timeseries: "time series",
  bars: "bars",
  table: "table",
  number: "number",
  funnel: "funnel",
};
const CONFLICT = "Someone else changed this board; reload to see their version (your changes are not saved).";

type Reply<T> = { ok: true; body: T } | { ok: false; status: number; message: string };

/** An API call: the body, or the server's message (its `{error: {message}}`). */
async function call<T>(key: string, method: string, path: string, body?: unknown): Promise<Reply<T>> {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).catch(() => null);
  if (!res) return { ok: false, status: 0, message: "The server could not be reached." };
  if (!res.ok) return { ok: false, status: res.status, message: await errorOf(res) };
  return { ok: true, body: (res.status === 204 ? null : await res.json()) as T };
}

/** Whether the credential may change boards (GET /v1/keys answers admin credentials only); asked once per key. */
let adminOf: { key: string; admin: Promise<boolean> } | null = null;
export function isAdmin(key: string): Promise<boolean> {
  if (adminOf?.key !== key) {
    const admin = fetch("/v1/keys", { headers: { authorization: `Bearer ${key}` } })
      .then((r) => r.ok)
      .catch(() => false);
    adminOf = { key, admin };
  }
  return adminOf.admin;
}

const boardHash = (id: string) => `#/boards/${encodeURIComponent(id)}`;

// ---------------------------------------------------------------------------
// #/boards: the list, and a new board by name.
// ---------------------------------------------------------------------------

export function showBoards(key: string): View {
  crumbs.textContent = "boards";
  let closed = false;
  const listCard = el("section", { class: "card" });
  const form = el("form", { class: "card board-create", "data-testid": "board-create" });
  const name = el("input", {
    name: "name",
    placeholder: "a name for the new board",
    "aria-label": "board name",
    maxlength: "100",
    "data-testid": "board-create-name",
  });
  const create = el("button", { type: "submit", "data-testid": "board-create-submit" }, "Create board");
  const error = el("p", { class: "error", hidden: "", "data-testid": "board-create-error" });
  form.append(name, create, error);
  form.hidden = true;
  const readOnly = el(
    "p",
    { class: "muted", hidden: "", "data-testid": "boards-readonly" },
    "Creating and editing boards needs an admin key; this key can open them.",
  );
  app.replaceChildren(el("h2", { class: "section" }, "boards"), listCard, form, readOnly);

  form.onsubmit = async (e) => {
    e.preventDefault();
    create.disabled = true;
    const a = await call<{ board: BoardView }>(key, "POST", "/v1/boards", { name: name.value });
    create.disabled = false;
    if (!a.ok) {
      error.hidden = false;
      error.textContent = a.message;
      return;
    }
    location.hash = boardHash(a.body.board.id);
  };

  const load = async () => {
    const [a, admin] = await Promise.all([
      call<{ boards: BoardSummaryView[] }>(key, "GET", "/v1/boards"),
      isAdmin(key),
    ]);
    if (closed) return;
    form.hidden = !admin;
    readOnly.hidden = admin;
    if (!a.ok) {
      listCard.replaceChildren(el("p", { class: "error", "data-testid": "boards-error" }, a.message));
      return;
    }
    if (a.body.boards.length === 0) {
      listCard.replaceChildren(
        el("p", { class: "empty" }, "No boards yet. Create one here, or add a query to a board from the query page."),
      );
      return;
    }
    const table = el("table", { "data-testid": "boards-list" });
    table.innerHTML =
      '<thead><tr><th class="left">board</th><th class="left">description</th><th>panels</th><th>updated</th></tr></thead>';
    const body = el("tbody");
    for (const b of a.body.boards) {
      const tr = el("tr", { "data-testid": `board-row-${b.id}`, "data-board-id": b.id });
      tr.onclick = () => {
        location.hash = boardHash(b.id);
      };
      const link = el("a", { href: boardHash(b.id) }, b.name);
      const nameCell = el("td", { class: "left name" });
      nameCell.append(link);
      tr.append(
        nameCell,
        el("td", { class: "left muted" }, b.description ?? ""),
        el("td", { "data-value": String(b.panels) }, String(b.panels)),
        el("td", {}, new Date(b.updated_at).toLocaleString()),
      );
      body.append(tr);
    }
    table.append(body);
    listCard.replaceChildren(table);
  };
  void load();
  return {
    close() {
      closed = true;
    },
  };
}

// ---------------------------------------------------------------------------
// Panels: each kind drawn from its answer.
// ---------------------------------------------------------------------------

interface FunnelResults {
  from: string;
  to: string;
  steps: Array<{ index: number; stream: string; journeys: number; conversion: number; from_previous: number }>;
  breakdown: Array<{ value: string; journeys: number[] }>;
  funnel?: { steps: Array<{ stream: string; filters: Array<{ dim: string; op: string; values: string[] }> }> };
}

/** A step's label: its stream, and its filters when it has any (two steps may share a stream). */
function stepLabel(f: FunnelResults, i: number, stream: string): string {
  const filters = f.funnel?.steps[i]?.filters ?? [];
  if (filters.length === 0) return stream;
  const op: Record<string, string> = { eq: "=", neq: "≠", in: "in", not_in: "not in", prefix: "starts with" };
  return `${stream} (${filters.map((x) => `${x.dim} ${op[x.op] ?? x.op} ${x.values.join(", ")}`).join("; ")})`;
}

/** Breakdown values a funnel panel lists (the results come most first-step journeys first). */
const FUNNEL_BREAKDOWN_ROWS = 8;

type Data = { kind: "query"; result: QueryResult } | { kind: "funnel"; result: FunnelResults };

/** The names of the query's measure columns, in order. */
const measureNames = (query: unknown): string[] =>
  isRecord(query) && Array.isArray(query.measures)
    ? query.measures.map((m) => (typeof m === "string" ? m : isRecord(m) ? String(m.name) : ""))
    : [];

/** The column a panel charts: the query's order_by measure, else its first measure. */
function valueColumn(query: unknown, r: QueryResult): number {
  const order = isRecord(query) && isRecord(query.order_by) ? query.order_by.measure : undefined;
  const name = typeof order === "string" ? order : measureNames(query)[0];
  const i = r.columns.indexOf(name);
  return i >= 0 ? i : r.columns.length - 1;
}

/** How many leading columns name the group (group_by keys and their labels), before t and the measures. */
function groupColumns(query: unknown, r: QueryResult): number {
  const first = Math.min(
    ...measureNames(query)
      .map((m) => r.columns.indexOf(m))
      .filter((i) => i >= 0),
  );
  const t = r.columns.indexOf("t");
  return Math.max(0, t >= 0 ? t : Number.isFinite(first) ? first : 0);
}

const groupOf = (row: QueryResult["rows"][number], n: number) => row.slice(0, n).map(String).join(" / ") || "all";

/** A figure as shown, with the raw number in `data-value` (absent when the answer is null). */
function figure(tag: "span" | "div" | "td" | "b", v: unknown, attrs: Record<string, string> = {}, digits?: number) {
  const n = num(v);
  const e = el(tag, { ...attrs, ...(n === null ? { "data-null": "" } : { "data-value": String(n) }) }, fmt(n, digits));
  return e;
}

const emptyNote = () => el("p", { class: "empty small-empty" }, "No rows: nothing matched in that range.");

function drawNumber(p: PanelView, r: QueryResult): HTMLElement {
  if (r.rows.length === 0) return emptyNote();
  const box = el("div", { class: "panel-number" });
  const col = valueColumn(p.query, r);
  const row = r.rows[0];
  box.append(figure("div", row[col], { class: "big", "data-col": r.columns[col], "data-testid": "panel-figure" }));
  const groups = groupColumns(p.query, r);
  box.append(el("div", { class: "muted" }, `${r.columns[col]}${groups ? ` · ${groupOf(row, groups)}` : ""}`));
  return box;
}

function drawBars(p: PanelView, r: QueryResult): HTMLElement {
  if (r.rows.length === 0) return emptyNote();
  const col = valueColumn(p.query, r);
  const t = r.columns.indexOf("t");
  const groups = groupColumns(p.query, r);
  const max = Math.max(...r.rows.map((row) => Math.abs(num(row[col]) ?? 0)), Number.MIN_VALUE);
  const list = el("div", { class: "hbars", "data-col": r.columns[col] });
  for (const row of r.rows) {
    const label = [groupOf(row, groups), ...(t >= 0 ? [String(row[t])] : [])].join(" · ");
    const line = el("div", { class: "hbar-row", "data-group": label });
    const track = el("span", { class: "hbar-track" });
    const bar = el("span", { class: "bar" });
    bar.style.width = `${((100 * Math.abs(num(row[col]) ?? 0)) / max).toFixed(1)}%`;
    track.append(bar);
    line.append(el("span", { class: "hbar-label" }, label), track, figure("span", row[col], { class: "hbar-value" }));
    list.append(line);
  }
  return list;
}

function drawTable(_p: PanelView, r: QueryResult): HTMLElement {
  if (r.rows.length === 0) return emptyNote();
  const table = el("table", { class: "panel-table" });
  const head = el("tr");
  for (const c of r.columns) head.append(el("th", {}, c));
  const thead = el("thead");
  thead.append(head);
  const tbody = el("tbody");
  r.rows.forEach((row, i) => {
    const tr = el("tr", { "data-row": String(i) });
    row.forEach((v, j) => {
      const attrs = { "data-col": r.columns[j] };
      tr.append(
        typeof v === "number" || v === null
          ? figure("td", v, attrs)
          : el("td", { ...attrs, class: "left" }, typeof v === "boolean" ? (v ? "yes" : "no") : v),
      );
    });
    tbody.append(tr);
  });
  table.append(thead, tbody);
  return table;
}

/** Measures whose value over a step without events is 0 (the others have none: a gap in the line). */
const ZERO_WHEN_EMPTY = new Set(["count", "rate", "value_count", "sum", "distinct_users"]);
const STEP_MS: Record<string, number> = { "1m": 60_000, "1h": 3_600_000, "1d": 86_400_000 };

function drawSeries(p: PanelView, r: QueryResult): HTMLElement {
  const t = r.columns.indexOf("t");
  if (t < 0)
    throw new Error('This query has no step: give it one ("step": "1m") to draw a time series, or show it as bars.');
  if (r.rows.length === 0) return emptyNote();
  const col = valueColumn(p.query, r);
  const groups = [...new Set(r.rows.map((row) => groupOf(row, t)))].slice(0, SERIES_COLORS.length);
  // Every step of the query's span (the answer holds only steps with events), else the steps answered.
  const stepMs = STEP_MS[String(isRecord(p.query) ? p.query.step : "")] ?? 60_000;
  const span = r.meta.span as { from?: string; to?: string } | undefined;
  const [from, to] = [Date.parse(span?.from ?? ""), Date.parse(span?.to ?? "")];
  const answered = [...new Set(r.rows.map((row) => Date.parse(String(row[t]))))].sort((a, b) => a - b);
  const times: number[] = [];
  if (Number.isFinite(from) && Number.isFinite(to) && to > from) {
    for (let x = Math.floor(from / stepMs) * stepMs; x < to; x += stepMs) times.push(x);
  } else times.push(...answered);
  const at = new Map(times.map((x, i) => [x, i]));
  const empty = ZERO_WHEN_EMPTY.has(r.columns[col]) ? 0 : null;
  const series = groups.map(() => times.map((): number | null => empty));
  for (const row of r.rows) {
    const g = groups.indexOf(groupOf(row, t));
    const i = at.get(Date.parse(String(row[t])));
    if (g >= 0 && i !== undefined) series[g][i] = num(row[col]);
  }
  const box = el("div", { class: "panel-series" });
  const svg = svgLines(series, 600, 160);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("data-from", new Date(times[0]).toISOString());
  svg.setAttribute("data-step-ms", String(stepMs));
  box.append(svg);
  const legend = el("div", { class: "legend" });
  groups.forEach((g, i) => {
    // The group's latest answered figure (not a step filled in as empty).
    const mine = r.rows.filter((row) => groupOf(row, t) === g);
    const last = mine.length ? mine.reduce((a, b) => (String(b[t]) > String(a[t]) ? b : a))[col] : null;
    const item = el("span", { class: "legend-item", "data-group": g });
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = SERIES_COLORS[i];
    item.append(swatch, el("span", {}, `${g} ${r.columns[col]} `), figure("b", last));
    legend.append(item);
  });
  box.append(legend);
  return box;
}

function drawFunnel(f: FunnelResults): HTMLElement {
  const box = el("div", { class: "hbars funnel", "data-from": f.from, "data-to": f.to });
  const first = Math.max(f.steps[0]?.journeys ?? 0, Number.MIN_VALUE);
  for (const s of f.steps) {
    const line = el("div", { class: "hbar-row", "data-step": String(s.index), "data-stream": s.stream });
    const track = el("span", { class: "hbar-track" });
    const bar = el("span", { class: "bar" });
    bar.style.width = `${((100 * s.journeys) / first).toFixed(1)}%`;
    track.append(bar);
    const conv = el(
      "span",
      { class: "hbar-value muted", "data-field": "conversion", "data-value": String(s.conversion) },
      `${(100 * s.conversion).toFixed(1)}%`,
    );
    line.append(
      el(
        "span",
        { class: "hbar-label", title: stepLabel(f, s.index, s.stream) },
        `${s.index + 1}. ${stepLabel(f, s.index, s.stream)}`,
      ),
      track,
      figure("span", s.journeys, { class: "hbar-value", "data-field": "journeys" }),
      conv,
    );
    box.append(line);
  }
  if (f.breakdown.length > 0) box.append(drawFunnelBreakdown(f));
  return box;
}

/** The funnel by its breakdown dim: journeys per step and the overall conversion of each value. */
function drawFunnelBreakdown(f: FunnelResults): HTMLElement {
  const table = el("table", { class: "funnel-breakdown", "data-testid": "funnel-breakdown" });
  const head = el("tr");
  head.append(
    el("th", {}, ""),
    ...f.steps.map((s) => el("th", { class: "num" }, `${s.index + 1}`)),
    el("th", { class: "num" }, "conv."),
  );
  table.append(head);
  for (const b of f.breakdown.slice(0, FUNNEL_BREAKDOWN_ROWS)) {
    // Figures carry data-journeys, not data-value: the panel's data-value figures are its steps'.
    const row = el("tr", { "data-breakdown": b.value, "data-journeys": b.journeys.join(",") });
    const last = b.journeys[b.journeys.length - 1] ?? 0;
    const conv = b.journeys[0] ? last / b.journeys[0] : 0;
    row.append(
      el("td", {}, b.value),
      ...b.journeys.map((j) => el("td", { class: "num" }, j.toLocaleString("en-US"))),
      el("td", { class: "num muted" }, `${(100 * conv).toFixed(1)}%`),
    );
    table.append(row);
  }
  return table;
}

function draw(p: PanelView, d: Data): HTMLElement {
  if (d.kind === "funnel") return drawFunnel(d.result);
  if (p.kind === "number") return drawNumber(p, d.result);
  if (p.kind === "bars") return drawBars(p, d.result);
  if (p.kind === "table") return drawTable(p, d.result);
  return drawSeries(p, d.result);
}

/** What a panel's figures depend on: a change of it makes the panel ask again. */
const sourceOf = (p: PanelView) => JSON.stringify(p.kind === "funnel" ? [p.funnel, p.days] : p.query);

async function fetchData(
  key: string,
  p: PanelView,
): Promise<{ ok: true; data: Data } | { ok: false; message: string }> {
  if (p.kind === "funnel") {
    const a = await call<FunnelResults>(
      key,
      "GET",
      `/v1/funnels/${encodeURIComponent(p.funnel ?? "")}/results?days=${p.days ?? 1}`,
    );
    return a.ok ? { ok: true, data: { kind: "funnel", result: a.body } } : a;
  }
  const a = await runQuery(key, p.query);
  return a.ok ? { ok: true, data: { kind: "query", result: a.result } } : a;
}

// ---------------------------------------------------------------------------
// #/boards/<id>: the board, live; editing with an admin credential.
// ---------------------------------------------------------------------------

interface PanelSlot {
  panel: PanelView;
  body: HTMLElement;
  error: HTMLElement;
}

/** A panel's last answer (its figures, or the server's refusal) and the source it answers. */
type Answer = { source: string } & ({ ok: true; data: Data } | { ok: false; message: string });

export function showBoard(key: string, id: string): View {
  crumbs.replaceChildren(el("a", { href: "#/boards" }, "boards"), document.createTextNode(" / …"));
  let closed = false;
  let board: BoardView | null = null;
  /** The board being edited (a copy), or null when not editing. */
  let draft: BoardView | null = null;
  let admin = false;
  /**
   * The last answer of each panel, by id (at most the board's panels, MAX_PANELS, and panels removed while
   * editing): kept while editing, so a kind change redraws at once.
   */
  const answers = new Map<string, Answer>();
  /** Panels (by id) whose figures are being asked for, and for which source. */
  const asking = new Map<string, string>();
  let slots: PanelSlot[] = [];

  const title = el("h2", { class: "board-title", "data-testid": "board-name" });
  const nameInput = el("input", {
    class: "board-name-input",
    maxlength: "100",
    "aria-label": "board name",
    "data-testid": "board-name-input",
  });
  const editButton = el("button", { type: "button", class: "ghost", "data-testid": "board-edit" }, "Edit");
  const saveButton = el("button", { type: "button", "data-testid": "board-save" }, "Save");
  const cancelButton = el("button", { type: "button", class: "ghost", "data-testid": "board-cancel" }, "Cancel");
  const shareButton = el("button", { type: "button", class: "ghost", "data-testid": "board-share" }, "Share");
  const reloadButton = el("button", { type: "button", class: "ghost", "data-testid": "board-reload" }, "Reload");
  const tools = el("div", { class: "board-tools" });
  tools.append(shareButton, editButton, saveButton, cancelButton, reloadButton);
  const head = el("div", { class: "board-head" });
  head.append(title, nameInput, tools);
  const description = el("p", { class: "muted board-description" });
  const note = el("p", { class: "muted", hidden: "", "data-testid": "board-note" });
  const error = el("p", { class: "error", hidden: "", "data-testid": "board-error" });
  const readOnly = el(
    "p",
    { class: "muted", hidden: "", "data-testid": "board-readonly" },
    "Editing this board needs an admin key; this key can view it.",
  );
  const grid = el("div", { class: "board-grid", "data-testid": "board-grid" });
  app.replaceChildren(head, description, note, error, readOnly, grid);

  const showError = (message: string | null) => {
    error.hidden = message === null;
    error.textContent = message ?? "";
  };

  const drawSlot = (s: PanelSlot) => {
    const a = answers.get(s.panel.id);
    if (!a || a.source !== sourceOf(s.panel)) return;
    let message: string | null = null;
    if (a.ok) {
      try {
        s.body.replaceChildren(draw(s.panel, a.data));
      } catch (err) {
        message = (err as Error).message;
      }
    } else message = a.message;
    if (message !== null) s.body.replaceChildren();
    s.error.hidden = message === null;
    s.error.textContent = message ?? "";
  };

  /** Asks for a panel's figures (once at a time per panel and source) and draws the answer where it is shown. */
  const refreshPanel = async (p: PanelView) => {
    const source = sourceOf(p);
    if (asking.get(p.id) === source) return;
    asking.set(p.id, source);
    let a: Awaited<ReturnType<typeof fetchData>>;
    try {
      a = await fetchData(key, p);
    } finally {
      if (asking.get(p.id) === source) asking.delete(p.id);
    }
    if (closed) return;
    answers.set(p.id, a.ok ? { source, ok: true, data: a.data } : { source, ok: false, message: a.message });
    const s = slots.find((x) => x.panel.id === p.id);
    if (s) drawSlot(s);
  };
  const refresh = () => {
    for (const s of slots) void refreshPanel(s.panel);
  };

  /** A panel's editing controls: title, kind, width, move up or down, remove. */
  const controls = (p: PanelView, i: number, list: PanelView[]) => {
    const box = el("div", { class: "panel-controls", "data-testid": "panel-controls" });
    const t = el("input", { maxlength: "100", "aria-label": "panel title", "data-testid": "panel-title-input" });
    t.value = p.title;
    t.oninput = () => {
      p.title = t.value;
    };
    const kind = el("select", { "aria-label": "panel kind", "data-testid": "panel-kind" });
    const kinds: readonly PanelKind[] = p.kind === "funnel" ? ["funnel"] : QUERY_KINDS;
    for (const k of kinds) kind.append(el("option", { value: k }, KIND_LABELS[k]));
    kind.value = p.kind;
    kind.onchange = () => {
      p.kind = kind.value as PanelKind;
      render();
    };
    const width = el("select", { "aria-label": "panel width", "data-testid": "panel-width" });
    width.append(el("option", { value: "1" }, "narrow"), el("option", { value: "2" }, "wide"));
    width.value = String(p.width);
    width.onchange = () => {
      p.width = width.value === "2" ? 2 : 1;
      render();
    };
    const move = (by: number, label: string, testid: string, enabled: boolean) => {
      const b = el("button", { type: "button", class: "ghost small", title: label, "data-testid": testid }, label);
      b.disabled = !enabled;
      b.onclick = () => {
        list.splice(i, 1);
        list.splice(i + by, 0, p);
        render();
      };
      return b;
    };
    const remove = el(
      "button",
      { type: "button", class: "ghost small", title: "Remove this panel", "data-testid": "panel-remove" },
      "remove",
    );
    remove.onclick = () => {
      list.splice(i, 1);
      render();
    };
    box.append(
      t,
      kind,
      width,
      move(-1, "↑", "panel-up", i > 0),
      move(1, "↓", "panel-down", i < list.length - 1),
      remove,
    );
    return box;
  };

  /** Draws the board (or the draft being edited); panels whose source is unchanged keep their answer. */
  const render = () => {
    const shown = draft ?? board;
    if (shown === null) return;
    crumbs.replaceChildren(el("a", { href: "#/boards" }, "boards"), document.createTextNode(` / ${shown.name}`));
    title.textContent = shown.name;
    title.hidden = draft !== null;
    nameInput.hidden = draft === null;
    description.textContent = shown.description ?? "";
    description.hidden = !shown.description;
    editButton.hidden = !admin || draft !== null;
    saveButton.hidden = cancelButton.hidden = draft === null;
    readOnly.hidden = admin;
    grid.classList.toggle("editing", draft !== null);
    slots = shown.panels.map((p, i) => {
      const section = el("section", {
        class: `card panel${p.width === 2 ? " wide" : ""}`,
        "data-panel-id": p.id,
        "data-kind": p.kind,
        "data-testid": "panel",
      });
      const h = el("h3", { "data-testid": "panel-title" }, p.title);
      const body = el("div", { class: "panel-body" });
      const err = el("p", { class: "error", hidden: "", "data-testid": "panel-error" });
      section.append(h);
      if (draft !== null) section.append(controls(p, i, shown.panels));
      section.append(err, body);
      const s: PanelSlot = { panel: p, body, error: err };
      drawSlot(s);
      return s;
    });
    grid.replaceChildren(...slots.map((s) => s.body.parentElement as HTMLElement));
    if (shown.panels.length === 0) {
      grid.append(
        el(
          "p",
          { class: "empty" },
          "No panels yet: run a query on the query page and add it to this board (Add to board).",
        ),
      );
    }
    for (const s of slots) if (answers.get(s.panel.id)?.source !== sourceOf(s.panel)) void refreshPanel(s.panel);
  };

  const load = async () => {
    const [a, isAdminKey] = await Promise.all([
      call<{ board: BoardView }>(key, "GET", `/v1/boards/${encodeURIComponent(id)}`),
      isAdmin(key),
    ]);
    if (closed) return;
    admin = isAdminKey;
    if (!a.ok) {
      showError(a.message);
      grid.replaceChildren();
      editButton.hidden = saveButton.hidden = cancelButton.hidden = true;
      return;
    }
    showError(null);
    board = a.body.board;
    draft = null;
    reloadButton.hidden = true;
    render();
  };

  editButton.onclick = () => {
    if (board === null) return;
    draft = structuredClone(board);
    nameInput.value = draft.name;
    note.hidden = true;
    render();
  };
  nameInput.oninput = () => {
    if (draft !== null) draft.name = nameInput.value;
  };
  cancelButton.onclick = () => {
    draft = null;
    showError(null);
    render();
  };
  saveButton.onclick = async () => {
    if (board === null || draft === null) return;
    saveButton.disabled = true;
    const a = await call<{ board: BoardView }>(key, "PUT", `/v1/boards/${encodeURIComponent(id)}`, {
      name: draft.name,
      description: draft.description,
      panels: draft.panels,
      version: board.version,
    });
    saveButton.disabled = false;
    if (closed) return;
    if (!a.ok) {
      showError(a.status === 409 ? CONFLICT : a.message);
      reloadButton.hidden = a.status !== 409;
      return;
    }
    showError(null);
    board = a.body.board;
    draft = null;
    note.hidden = false;
    note.textContent = `Saved (version ${board.version}).`;
    render();
  };
  reloadButton.hidden = true;
  reloadButton.onclick = () => {
    note.hidden = true;
    void load();
  };
  shareButton.onclick = async () => {
    const link = `${location.origin}/${boardHash(id)}`;
    const copied = await navigator.clipboard?.writeText(link).then(
      () => true,
      () => false,
    );
    note.hidden = false;
    note.replaceChildren(
      document.createTextNode(
        copied ? "Link copied: " : "Copy this link (whoever opens it signs in with a key of this tenant): ",
      ),
    );
    const input = el("input", { readonly: "", class: "share-link", "data-testid": "board-share-link" });
    input.value = link;
    note.append(input);
    input.select();
  };

  editButton.hidden = saveButton.hidden = cancelButton.hidden = true;
  void load();
  const timer = setInterval(refresh, REFRESH_MS);
  return {
    close() {
      closed = true;
      clearInterval(timer);
    },
  };
}

// ---------------------------------------------------------------------------
// The query page's "Add to board".
// ---------------------------------------------------------------------------

/** Tries of an append that meets a concurrent change (each re-reads the board first). */
const APPEND_TRIES = 3;

/**
 * The query page's "Add to board" control: pick a board, a kind and a title, and the query shown (`current`,
 * null before one has run) is appended to the board as a panel and saved. Shown to admin credentials only.
 */
export function addToBoard(key: string, current: () => unknown): HTMLElement {
  const box = el("div", { class: "add-board", hidden: "", "data-testid": "q-add-board" });
  const open = el("button", { type: "button", class: "ghost", "data-testid": "q-add-board-open" }, "Add to board");
  const fields = el("div", { class: "add-board-fields", hidden: "" });
  const boardSelect = el("select", { "aria-label": "board", "data-testid": "q-board" });
  const kind = el("select", { "aria-label": "panel kind", "data-testid": "q-board-kind" });
  for (const k of QUERY_KINDS) kind.append(el("option", { value: k }, KIND_LABELS[k]));
  const titleInput = el("input", {
    placeholder: "panel title (default: the stream and measures)",
    maxlength: "100",
    "aria-label": "panel title",
    "data-testid": "q-board-title",
  });
  const add = el("button", { type: "button", "data-testid": "q-board-add" }, "Add");
  const status = el("p", { class: "muted", "data-testid": "q-board-status" });
  fields.append(boardSelect, kind, titleInput, add);
  box.append(open, fields, status);

  const setStatus = (text: string, isError = false, link?: string) => {
    status.className = isError ? "error" : "muted";
    status.replaceChildren(document.createTextNode(text));
    if (link) status.append(el("a", { href: link, "data-testid": "q-board-link" }, "open the board"));
  };

  void isAdmin(key).then((admin) => {
    box.hidden = !admin;
  });
  open.onclick = async () => {
    fields.hidden = !fields.hidden;
    if (fields.hidden) return;
    const a = await call<{ boards: BoardSummaryView[] }>(key, "GET", "/v1/boards");
    if (!a.ok) return setStatus(a.message, true);
    boardSelect.replaceChildren(...a.body.boards.map((b) => el("option", { value: b.id }, b.name)));
    if (a.body.boards.length === 0) setStatus("No boards yet: create one on the boards page first.", true);
    else setStatus("");
  };
  add.onclick = async () => {
    const query = current();
    if (query === null) return setStatus("Run the query first: the query shown is what the panel keeps.", true);
    const id = boardSelect.value;
    if (!id) return setStatus("Choose a board.", true);
    // Without a title: the stream and the measures ("orders: count, sum").
    const named = isRecord(query) && typeof query.stream === "string" ? `${query.stream}: ` : "";
    const title = titleInput.value.trim() || `${named}${measureNames(query).join(", ")}`.slice(0, 100);
    const panel = { title, kind: kind.value, query };
    add.disabled = true;
    try {
      for (let attempt = 1; ; attempt++) {
        const got = await call<{ board: BoardView }>(key, "GET", `/v1/boards/${encodeURIComponent(id)}`);
        if (!got.ok) return setStatus(got.message, true);
        const b = got.body.board;
        const put = await call<{ board: BoardView }>(key, "PUT", `/v1/boards/${encodeURIComponent(id)}`, {
          name: b.name,
          description: b.description,
          panels: [...b.panels, panel],
          version: b.version,
        });
        if (put.ok)
          return setStatus(`Added to ${b.name} as panel ${put.body.board.panels.length}: `, false, boardHash(id));
        if (put.status !== 409 || attempt >= APPEND_TRIES) return setStatus(put.message, true);
      }
    } finally {
      add.disabled = false;
    }
  };
  return box;
}
