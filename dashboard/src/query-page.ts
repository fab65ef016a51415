/**
 * The query page (#/query?q=<query JSON>): a builder for POST /v1/query
 * (stream, measures, filters, group by, range, step, order), a JSON editor,
 * the answer as a chart and a table, CSV export; the query lives in the URL,
 * so a link restores it.
 */
import type uPlot from "uplot";
import { FILTER_OPS, type FilterOp, MEASURES, QUERY_STEPS, type QueryStep } from "../../core/measures";
import type { QueryInput, QueryResult } from "../../core/query";
import { WINDOW_NAMES, type WindowName } from "../../core/window";
import { addToBoard } from "./boards";
import {
  app,
  chart,
  crumbs,
  dimKeys,
  el,
  errorOf,
  fmt,
  getJson,
  isRecord,
  num,
  postQuery,
  runQuery,
  SERIES_COLORS,
  type View,
} from "./ui";

/** The query language's lists, shared with the server (core/measures.ts). */
const STEP_LIST = Object.keys(QUERY_STEPS) as QueryStep[];

/** What the query builder's controls show; the query's body is made from it (specToBody) and read into it (specOf). */
interface Spec {
  stream: string;
  measures: string[];
  filters: Array<{ dim: string; op: FilterOp; values: string }>;
  groupBy: string[];
  /** "last:24h", "window:5m" or "custom" (from/to, as datetime-local values). */
  range: string;
  from: string;
  to: string;
  step: QueryStep | "";
  order: string;
  dir: "asc" | "desc";
  limit: string;
}

const RANGES: Array<[string, string]> = [
  ["last:1h", "last 1 h"],
  ["last:24h", "last 24 h"],
  ["last:7d", "last 7 d"],
  ...WINDOW_NAMES.map((w): [string, string] => [`window:${w}`, `live window ${w}`]),
  ["custom", "from … to …"],
];
const MAX_CHART_GROUPS = SERIES_COLORS.length;

const defaultSpec = (stream: string): Spec => ({
  stream,
  measures: ["count"],
  filters: [],
  groupBy: [],
  range: "last:1h",
  from: "",
  to: "",
  step: "",
  order: "",
  dir: "desc",
  limit: "",
});

/** Epoch ms → a datetime-local input's value (local time). */
const localInput = (ms: number) => new Date(ms - new Date(ms).getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
/** A datetime-local value → ISO-8601; anything unreadable is sent as typed, for the server to name. */
const isoOf = (v: string) => {
  const t = new Date(v).getTime();
  return Number.isFinite(t) ? new Date(t).toISOString() : v;
};

function specToBody(s: Spec): QueryInput {
  let range: QueryInput["range"];
  if (s.range === "custom") range = { from: isoOf(s.from), ...(s.to ? { to: isoOf(s.to) } : {}) };
  else if (s.range.startsWith("window:")) range = { window: s.range.slice(7) as WindowName };
  else range = { last: s.range.slice(5) };
  const filters = s.filters
    .filter((f) => f.dim.trim())
    .map((f) => ({
      dim: f.dim.trim(),
      op: f.op,
      values: f.values
        .split(",")
        .map((v) => v.trim())
        .filter(Boolean),
    }));
  return {
    stream: s.stream,
    measures: s.measures,
    ...(filters.length ? { filters } : {}),
    ...(s.groupBy.length ? { group_by: s.groupBy } : {}),
    range,
    ...(s.step ? { step: s.step } : {}),
    ...(s.order ? { order_by: { measure: s.order, dir: s.dir } } : {}),
    ...(s.limit.trim() ? { limit: Number(s.limit) } : {}),
  };
}

/** A body as the builder shows it; null when it cannot (several streams, formulas, compare…): JSON then. */
function specOf(b: unknown): Spec | null {
  const known = new Set(["stream", "measures", "filters", "group_by", "range", "step", "order_by", "limit"]);
  if (!isRecord(b) || Object.keys(b).some((k) => !known.has(k))) return null;
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === "string");
  if (typeof b.stream !== "string" || !strings(b.measures)) return null;
  const s = defaultSpec(b.stream);
  s.measures = b.measures;
  if (b.filters !== undefined) {
    if (!Array.isArray(b.filters)) return null;
    for (const f of b.filters) {
      if (!isRecord(f) || typeof f.dim !== "string" || !FILTER_OPS.includes(f.op as FilterOp)) return null;
      const values = f.values !== undefined ? f.values : f.value !== undefined ? [f.value] : [];
      if (!strings(values)) return null;
      s.filters.push({ dim: f.dim, op: f.op as FilterOp, values: values.join(", ") });
    }
  }
  if (b.group_by !== undefined) {
    if (!strings(b.group_by)) return null;
    s.groupBy = b.group_by;
  }
  const r = b.range;
  if (!isRecord(r)) return null;
  if (typeof r.last === "string") s.range = `last:${r.last}`;
  else if (typeof r.window === "string") s.range = `window:${r.window}`;
  else if (typeof r.from === "string" || typeof r.from === "number") {
    const at = (v: unknown) => (typeof v === "number" ? v : Date.parse(String(v)));
    s.range = "custom";
    s.from = Number.isFinite(at(r.from)) ? localInput(at(r.from)) : String(r.from);
    s.to = r.to === undefined ? "" : Number.isFinite(at(r.to)) ? localInput(at(r.to)) : String(r.to);
  } else return null;
  if (b.step !== undefined) {
    if (!STEP_LIST.includes(b.step as QueryStep)) return null;
    s.step = b.step as QueryStep;
  }
  if (b.order_by !== undefined) {
    if (!isRecord(b.order_by) || typeof b.order_by.measure !== "string") return null;
    s.order = b.order_by.measure;
    s.dir = b.order_by.dir === "asc" ? "asc" : "desc";
  }
  if (b.limit !== undefined) {
    if (typeof b.limit !== "number") return null;
    s.limit = String(b.limit);
  }
  return s;
}

/** What the answer's layout depends on: group columns come first, then t when stepped, then the measures. */
const shapeOf = (b: unknown) => ({
  groups: isRecord(b) && Array.isArray(b.group_by) ? b.group_by.length : 0,
  order: isRecord(b) && isRecord(b.order_by) && typeof b.order_by.measure === "string" ? b.order_by.measure : "",
  step: isRecord(b) && typeof b.step === "string" ? b.step : "step",
});

/** A cell of a query's answer as shown. */
const cellText = (v: string | number | boolean | null, col: string): string => {
  if (v === null) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : fmt(v);
  if (typeof v === "boolean") return v ? "yes" : "no";
  return col === "t" ? v.replace("T", " ").replace(/:00(\.000)?Z$/, "Z") : v;
};

/**
 * Query page (#/query?q=<URL-encoded query JSON>): a builder for POST /v1/query, or its JSON; Run puts
 * the query in the URL, so a reload or a shared link shows the same builder and answer.
 */
export function showQuery(key: string, params: URLSearchParams): View {
  crumbs.textContent = "query";
  let spec = defaultSpec("");
  let streams: string[] = [];
  let keys: string[] = [];
  let jsonMode = false;
  let lastBody: unknown = null;
  let plot: { destroy(): void } | null = null;

  // No browser validation: the server names what is wrong (and a hidden invalid field would block Run).
  const form = el("form", { class: "card builder", novalidate: "", "data-testid": "query-builder" });
  const fields = el("div", { class: "fields" });
  const row = (label: string) => {
    const content = el("div", { class: "field-body" });
    const r = el("div", { class: "field" });
    r.append(el("span", { class: "field-label" }, label), content);
    fields.append(r);
    return content;
  };
  const streamRow = row("stream");
  const measuresRow = row("measures");
  const filtersRow = row("filters");
  const groupRow = row("group by");
  const rangeRow = row("range");
  const stepRow = row("step");
  const orderRow = row("order by");
  const limitRow = row("limit");
  const json = el("textarea", {
    class: "json",
    rows: "14",
    spellcheck: "false",
    "aria-label": "query JSON",
    "data-testid": "q-json",
  });
  json.hidden = true;
  const runButton = el("button", { type: "submit", "data-testid": "q-run" }, "Run");
  const jsonToggle = el("button", {
    type: "button",
    class: "ghost",
    "aria-pressed": "false",
    "data-testid": "q-json-toggle",
  });
  jsonToggle.textContent = "JSON";
  const csvButton = el("button", { type: "button", class: "ghost", "data-testid": "q-csv" }, "Export CSV");
  csvButton.disabled = true;
  const actions = el("div", { class: "actions" });
  actions.append(runButton, jsonToggle, csvButton);
  // The query shown (the last one that ran) can be kept as a panel of a board.
  form.append(
    fields,
    json,
    actions,
    addToBoard(key, () => lastBody),
  );
  const error = el("p", { class: "error query-error", "data-testid": "query-error" });
  error.hidden = true;
  const meta = el("p", { class: "muted", "data-testid": "query-meta" });
  const chartBox = el("div");
  const tableBox = el("section", { class: "card result" });
  tableBox.hidden = true;
  app.replaceChildren(form, error, meta, chartBox, tableBox);

  const select = (options: Array<[string, string]>, value: string, testid: string, onchange: (v: string) => void) => {
    const s = el("select", { "data-testid": testid });
    if (!options.some(([v]) => v === value)) options = [[value, value], ...options];
    for (const [v, label] of options) s.append(el("option", { value: v }, label));
    s.value = value;
    s.onchange = () => onchange(s.value);
    return s;
  };
  const checkbox = (label: string, checked: boolean, testid: string, onchange: (on: boolean) => void) => {
    const l = el("label", { class: "check" });
    const c = el("input", { type: "checkbox", "data-testid": testid });
    c.checked = checked;
    c.onchange = () => onchange(c.checked);
    l.append(c, document.createTextNode(label));
    return l;
  };
  const toggle = (list: string[], item: string, on: boolean) =>
    on ? [...list.filter((x) => x !== item), item] : list.filter((x) => x !== item);

  const renderStream = () => {
    const names = streams.length ? streams : [spec.stream];
    streamRow.replaceChildren(
      select(
        names.map((n) => [n, n]),
        spec.stream,
        "q-stream",
        (v) => {
          spec.stream = v;
          keys = [];
          renderGroups();
          void loadKeys();
        },
      ),
    );
  };
  const renderMeasures = () => {
    measuresRow.replaceChildren(
      ...MEASURES.map((m) =>
        checkbox(m, spec.measures.includes(m), `q-measure-${m}`, (on) => {
          spec.measures = MEASURES.filter((x) => (x === m ? on : spec.measures.includes(x)));
          renderOrder();
        }),
      ),
    );
  };
  const keyList = el("datalist", { id: "q-dim-keys" });
  const renderFilters = () => {
    keyList.replaceChildren(...keys.map((k) => el("option", { value: k })));
    const rows = spec.filters.map((f, i) => {
      const r = el("div", { class: "filter-row", "data-testid": `q-filter-${i}` });
      const dim = el("input", { list: "q-dim-keys", placeholder: "dim", "aria-label": "dimension" });
      dim.value = f.dim;
      dim.oninput = () => {
        f.dim = dim.value;
      };
      const op = select(
        FILTER_OPS.map((o) => [o, o]),
        f.op,
        `q-filter-op-${i}`,
        (v) => {
          f.op = v as FilterOp;
        },
      );
      const values = el("input", { placeholder: "values, comma-separated", "aria-label": "values" });
      values.value = f.values;
      values.oninput = () => {
        f.values = values.value;
      };
      const remove = el("button", { type: "button", class: "ghost small", title: "Remove this filter" }, "×");
      remove.onclick = () => {
        spec.filters = spec.filters.filter((x) => x !== f);
        renderFilters();
      };
      r.append(dim, op, values, remove);
      return r;
    });
    const add = el("button", { type: "button", class: "ghost small", "data-testid": "q-add-filter" }, "+ filter");
    add.onclick = () => {
      spec.filters.push({ dim: keys[0] ?? "", op: "eq", values: "" });
      renderFilters();
    };
    filtersRow.replaceChildren(keyList, ...rows, add);
  };
  const renderGroups = () => {
    const all = [...new Set([...keys, ...spec.groupBy])];
    groupRow.replaceChildren(
      ...(all.length
        ? all.map((k) =>
            checkbox(k, spec.groupBy.includes(k), `q-group-${k}`, (on) => {
              spec.groupBy = toggle(spec.groupBy, k, on);
            }),
          )
        : [el("span", { class: "muted" }, "no dimensions seen on this stream")]),
    );
  };
  const renderRange = () => {
    const parts: HTMLElement[] = [
      select(RANGES, spec.range, "q-range", (v) => {
        spec.range = v;
        if (v === "custom" && !spec.from) spec.from = localInput(Date.now() - 3_600_000);
        renderRange();
      }),
    ];
    if (spec.range === "custom") {
      for (const side of ["from", "to"] as const) {
        const input = el("input", { type: "datetime-local", "aria-label": side, "data-testid": `q-${side}` });
        input.value = spec[side];
        input.oninput = () => {
          spec[side] = input.value;
        };
        parts.push(el("span", { class: "muted" }, side), input);
      }
    }
    rangeRow.replaceChildren(...parts);
  };
  const renderStep = () => {
    stepRow.replaceChildren(
      select([["", "none"], ...STEP_LIST.map((s): [string, string] => [s, s])], spec.step, "q-step", (v) => {
        spec.step = v as QueryStep | "";
      }),
    );
  };
  const renderOrder = () => {
    orderRow.replaceChildren(
      select([["", "none"], ...spec.measures.map((m): [string, string] => [m, m])], spec.order, "q-order", (v) => {
        spec.order = v;
      }),
      select(
        [
          ["desc", "descending"],
          ["asc", "ascending"],
        ],
        spec.dir,
        "q-dir",
        (v) => {
          spec.dir = v === "asc" ? "asc" : "desc";
        },
      ),
    );
  };
  const renderLimit = () => {
    const input = el("input", {
      type: "number",
      min: "1",
      placeholder: "default",
      "aria-label": "limit",
      "data-testid": "q-limit",
    });
    input.value = spec.limit;
    input.oninput = () => {
      spec.limit = input.value;
    };
    limitRow.replaceChildren(input);
  };
  const renderAll = () => {
    renderStream();
    renderMeasures();
    renderFilters();
    renderGroups();
    renderRange();
    renderStep();
    renderOrder();
    renderLimit();
  };
  const setJsonMode = (on: boolean) => {
    jsonMode = on;
    fields.hidden = on;
    json.hidden = !on;
    jsonToggle.setAttribute("aria-pressed", String(on));
    jsonToggle.textContent = on ? "builder" : "JSON";
  };

  const loadKeys = async () => {
    const stream = spec.stream;
    if (!stream) return;
    const found = await dimKeys(key, stream);
    if (stream !== spec.stream) return;
    keys = found;
    renderGroups();
    renderFilters();
  };

  const showError = (message: string) => {
    error.hidden = false;
    error.textContent = message;
  };

  const renderChart = (r: QueryResult, body: unknown) => {
    plot?.destroy();
    plot = null;
    chartBox.replaceChildren();
    const tIdx = r.columns.indexOf("t");
    if (tIdx < 0 || r.rows.length === 0) return;
    const shape = shapeOf(body);
    const measureIdx = Math.max(r.columns.indexOf(shape.order), tIdx + 1);
    const groupOf = (row: QueryResult["rows"][number]) => row.slice(0, tIdx).map(String).join(" / ") || "all";
    // Rows come group by group, the best-ranked group first: chart the first few.
    const groups = [...new Set(r.rows.map(groupOf))].slice(0, MAX_CHART_GROUPS);
    const times = [...new Set(r.rows.map((row) => Date.parse(String(row[tIdx])) / 1000))].sort((a, b) => a - b);
    const at = new Map(times.map((t, i) => [t, i]));
    const series = groups.map(() => times.map((): number | null => null));
    for (const row of r.rows) {
      const g = groups.indexOf(groupOf(row));
      if (g >= 0) series[g][at.get(Date.parse(String(row[tIdx])) / 1000) as number] = num(row[measureIdx]);
    }
    const c = chart(
      `${r.columns[measureIdx]} per ${shape.step}${groups.length < new Set(r.rows.map(groupOf)).size ? `, top ${groups.length} groups` : ""}`,
      groups.map((g, i) => ({ label: g, stroke: SERIES_COLORS[i], points: { show: times.length < 60 } })),
      "query-chart",
    );
    c.plot.setData([times, ...series] as uPlot.AlignedData);
    // The query's span, not the points' (one point would span years).
    const span = r.meta.span as { from?: string; to?: string } | undefined;
    const [from, to] = [Date.parse(span?.from ?? ""), Date.parse(span?.to ?? "")];
    if (Number.isFinite(from) && Number.isFinite(to)) c.plot.setScale("x", { min: from / 1000, max: to / 1000 });
    chartBox.append(c.box);
    plot = c;
  };

  const renderTable = (r: QueryResult, body: unknown) => {
    const tIdx = r.columns.indexOf("t");
    const groupCols = tIdx >= 0 ? tIdx : shapeOf(body).groups;
    // Without a step, the first measure is drawn as bars, one per group.
    const barIdx = tIdx < 0 && r.rows.length > 1 ? groupCols : -1;
    const max = barIdx < 0 ? 1 : Math.max(1, ...r.rows.map((row) => Math.abs(num(row[barIdx]) ?? 0)));
    const table = el("table", { "data-testid": "query-table" });
    const head = el("tr");
    r.columns.forEach((c, i) => {
      head.append(el("th", { class: i < groupCols || c === "t" ? "left" : "" }, c));
    });
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    for (const row of r.rows) {
      const tr = el("tr", { "data-group": row.slice(0, groupCols).map(String).join(" / ") });
      row.forEach((v, i) => {
        const col = r.columns[i];
        const td = el("td", { class: i < groupCols ? "left name" : col === "t" ? "left" : "", "data-col": col });
        if (i === barIdx) {
          const bar = el("span", { class: "bar" });
          bar.style.width = `${((100 * Math.abs(num(v) ?? 0)) / max).toFixed(1)}%`;
          td.classList.add("barred");
          td.append(bar, el("span", {}, cellText(v, col)));
        } else td.textContent = cellText(v, col);
        tr.append(td);
      });
      tbody.append(tr);
    }
    table.append(thead, tbody);
    tableBox.replaceChildren(
      r.rows.length ? table : el("p", { class: "empty" }, "No rows: nothing matched in that range."),
    );
    tableBox.hidden = false;
  };

  const renderMeta = (r: QueryResult) => {
    const m = r.meta as {
      groups?: number;
      truncated?: boolean;
      sources?: string[];
      missing?: Array<{ stream: string; part: string; reason: string }>;
    };
    const parts = [`${r.rows.length} rows`];
    if (m.groups !== undefined) parts.push(`${m.groups} groups${m.truncated ? " (the top ones shown)" : ""}`);
    if (m.sources?.length) parts.push(`from ${m.sources.join(", ")}`);
    for (const x of m.missing ?? []) parts.push(`missing: ${x.stream} ${x.part} (${x.reason})`);
    meta.textContent = parts.join(" · ");
  };

  let runs = 0;
  const run = async (body: unknown) => {
    const n = ++runs;
    runButton.disabled = true;
    meta.textContent = "running…";
    const a = await runQuery(key, body);
    if (n !== runs) return;
    runButton.disabled = false;
    if (!a.ok) {
      showError(a.message);
      meta.textContent = "";
      lastBody = null;
      csvButton.disabled = true;
      plot?.destroy();
      plot = null;
      chartBox.replaceChildren();
      tableBox.replaceChildren();
      tableBox.hidden = true;
      return;
    }
    error.hidden = true;
    lastBody = body;
    csvButton.disabled = false;
    renderMeta(a.result);
    renderChart(a.result, body);
    renderTable(a.result, body);
  };

  /** Shows the query in the URL in the builder (or as JSON when the builder cannot show it), and runs it. */
  const load = (next: URLSearchParams) => {
    const raw = next.get("q");
    if (raw === null) return;
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      showError("The query in this link is not JSON.");
      return;
    }
    const s = specOf(body);
    if (s) spec = s;
    else setJsonMode(true);
    json.value = JSON.stringify(body, null, 2);
    renderAll();
    void loadKeys();
    void run(body);
  };

  form.onsubmit = (e) => {
    e.preventDefault();
    let body: unknown;
    if (jsonMode) {
      try {
        body = JSON.parse(json.value);
      } catch (err) {
        showError(`Not JSON: ${(err as Error).message}`);
        return;
      }
    } else body = specToBody(spec);
    const hash = `#/query?q=${encodeURIComponent(JSON.stringify(body))}`;
    if (location.hash === hash) void run(body);
    else location.hash = hash; // → update() → load() → run()
  };
  jsonToggle.onclick = () => {
    if (!jsonMode) {
      json.value = JSON.stringify(specToBody(spec), null, 2);
      setJsonMode(true);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(json.value);
    } catch (err) {
      showError(`Not JSON: ${(err as Error).message}`);
      return;
    }
    const s = specOf(body);
    if (!s) {
      showError("The builder cannot show this query (several streams, formulas or compare): edit it as JSON.");
      return;
    }
    error.hidden = true;
    spec = s;
    renderAll();
    void loadKeys();
    setJsonMode(false);
  };
  csvButton.onclick = async () => {
    if (lastBody === null) return;
    const res = await postQuery(key, lastBody, true).catch(() => null);
    if (!res?.ok) {
      showError(res ? await errorOf(res) : "The server could not be reached.");
      return;
    }
    const url = URL.createObjectURL(await res.blob());
    const a = el("a", { href: url, download: "edgepulse-query.csv" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  };

  renderAll();
  const loadStreams = async () => {
    const page = await getJson<{ streams: Array<{ name: string }> }>(key, "/v1/streams?limit=1000");
    streams = (page?.streams ?? []).map((s) => s.name);
    if (!spec.stream && streams.length) {
      spec.stream = streams[0];
      void loadKeys();
    }
    renderStream();
  };
  void loadStreams();
  load(params);
  return {
    close() {
      runs++;
      plot?.destroy();
    },
    update(path, next) {
      if (path !== "#/query") return false;
      load(next);
      return true;
    },
  };
}
