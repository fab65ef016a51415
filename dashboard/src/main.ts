/**
 * The edgepulse dashboard: a tenant overview (live stream table from the
 * TenantHub, a sparkline per stream), a stream view (live figures and charts
 * from the stream's MetricActor, history from the API, a breakdown by
 * dimension whose values filter the view through POST /v1/query), a query
 * builder (POST /v1/query), boards (saved dashboards, boards.ts) and the
 * alerts page. No framework: the DOM is small. Routes live in the URL hash,
 * so a link restores a view: #/stream/<name>?<dim>=<value>…,
 * #/query?q=<URL-encoded query JSON>, #/boards/<id>.
 * Credentials (a pasted read key, or sign-in with the tenant's identity
 * provider): auth.ts.
 */
import type uPlot from "uplot";
import type { AlertEventView, AlertRuleView, AlertStateView } from "../../core/alerts";
import {
  type AlertEvent,
  type DirectoryEntry,
  KEY_PROTOCOL_PREFIX,
  LIVE_PROTOCOL,
  parseServerMessage,
  type SeriesPoint,
  type ServerMessage,
} from "../../core/live";
import type { Measure } from "../../core/measures";
import type { StreamCounters } from "../../core/protocol";
import type { QueryResult } from "../../core/query";
import type { ScalingStatus } from "../../core/shards";
import { type Aggregates, WINDOW_NAMES, type WindowName } from "../../core/window";
import { credential, dropToken, finishSignIn, rememberKey, signOut, startSignIn, suggestedTenant } from "./auth";
import { BOARD_ROUTE, showBoard, showBoards } from "./boards";
import { showQuery } from "./query-page";
import {
  app,
  chart,
  column,
  crumbs,
  dimKeys,
  el,
  fmt,
  num,
  runQuery,
  setStatus,
  showFiring,
  spanning,
  splitHash,
  svgLines,
  type View,
} from "./ui";

/**
 * A WebSocket that reconnects with backoff, sends heartbeats, validates every
 * message, and re-syncs from the server's snapshot after each reconnect.
 */
class LiveSocket {
  #ws: WebSocket | null = null;
  #closed = false;
  #attempt = 0;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #lastSeen = 0;

  constructor(
    readonly path: string,
    readonly key: string,
    readonly onMessage: (m: ServerMessage) => void,
  ) {
    this.#open();
  }

  #open() {
    setStatus(this.#attempt === 0 ? "connecting" : "reconnecting");
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${this.path}`;
    const ws = new WebSocket(url, [LIVE_PROTOCOL, `${KEY_PROTOCOL_PREFIX}${this.key}`]);
    this.#ws = ws;
    ws.onopen = () => {
      this.#attempt = 0;
      this.#lastSeen = Date.now();
      setStatus("connected");
      this.#heartbeat = setInterval(() => {
        if (Date.now() - this.#lastSeen > 45_000) ws.close(4000, "heartbeat timeout");
        else ws.send("ping");
      }, 15_000);
    };
    ws.onmessage = (e) => {
      this.#lastSeen = Date.now();
      if (e.data === "pong") return;
      const m = parseServerMessage(String(e.data));
      if (m) this.onMessage(m);
    };
    ws.onclose = (e) => {
      clearInterval(this.#heartbeat);
      if (this.#closed) return;
      // The server refuses a bad key before the upgrade: the browser only sees a failed handshake (1006).
      if (e.code === 1006 && this.#attempt >= 2) void this.#checkKey();
      const delay = Math.min(10_000, 500 * 2 ** this.#attempt) * (0.75 + Math.random() * 0.5);
      this.#attempt++;
      setStatus("reconnecting", `reconnecting in ${Math.round(delay / 1000)}s`);
      setTimeout(() => !this.#closed && this.#open(), delay);
    };
  }

  async #checkKey() {
    const res = await fetch("/v1/streams?limit=1", { headers: { authorization: `Bearer ${this.key}` } }).catch(
      () => null,
    );
    if (res && (res.status === 401 || res.status === 403)) {
      this.close();
      if (credential()?.kind === "token") {
        dropToken();
        setStatus("unauthorized", "signed out");
        showKeyForm("Your sign-in has ended (the token expired, or its role no longer reads); sign in again.");
      } else {
        setStatus("unauthorized", "key refused");
        showKeyForm("That key was refused (revoked, or not a read key).");
      }
    }
  }

  close() {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    this.#ws?.close(1000);
  }
}

let current: View | null = null;

/** The sign-in page: paste a read key, or sign in with the tenant's identity provider. */
function showKeyForm(error?: string) {
  current?.close();
  current = null;
  crumbs.textContent = "";
  signOutButton.textContent = "key";
  const tpl = document.getElementById("key-form") as HTMLTemplateElement;
  app.replaceChildren(tpl.content.cloneNode(true));
  const form = app.querySelector('[data-testid="key-form"]') as HTMLFormElement;
  const err = form.querySelector(".error") as HTMLElement;
  const sso = app.querySelector('[data-testid="sso-form"]') as HTMLFormElement;
  const ssoErr = sso.querySelector(".error") as HTMLElement;
  (sso.elements.namedItem("tenant") as HTMLInputElement).value = suggestedTenant();
  if (error) {
    err.hidden = false;
    err.textContent = error;
  }
  sso.onsubmit = async (e) => {
    e.preventDefault();
    const tenant = (new FormData(sso).get("tenant") as string).trim();
    const why = await startSignIn(tenant);
    if (why) {
      ssoErr.hidden = false;
      ssoErr.textContent = why;
    }
  };
  form.onsubmit = async (e) => {
    e.preventDefault();
    const key = (new FormData(form).get("key") as string).trim();
    const res = await fetch("/v1/streams?limit=1", { headers: { authorization: `Bearer ${key}` } });
    if (!res.ok) {
      const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
      err.hidden = false;
      err.textContent = body?.error?.message ?? `The server answered ${res.status}.`;
      return;
    }
    rememberKey(key);
    route();
  };
}

/**
 * A stream's sparkline: events per minute, oldest first, the last point being the minute of `at`, as an
 * inline SVG polyline. `data-points` and `data-end` (that minute, epoch ms) say what it draws.
 */
function sparkline(name: string, at: number, points: number[]): SVGSVGElement {
  const svg = svgLines([points], 120, 24);
  const attrs: Record<string, string> = {
    "data-testid": `spark-${name}`,
    "data-points": points.join(","),
    "data-end": String(Math.floor(at / 60_000) * 60_000),
  };
  for (const [k, v] of Object.entries(attrs)) svg.setAttribute(k, v);
  const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
  const total = points.reduce((a, n) => a + n, 0);
  title.textContent = `${total} events in the last ${points.length} min, at most ${Math.max(1, ...points)} a minute`;
  svg.prepend(title);
  return svg;
}

/** Overview: the tenant's streams, live from the TenantHub. */
function showOverview(key: string) {
  crumbs.textContent = "streams";
  const card = el("section", { class: "card" });
  const table = el("table", { "data-testid": "streams" });
  table.innerHTML =
    '<thead><tr><th>stream</th><th class="left">last 30 min</th><th>rate/s</th><th>count 1m</th><th>mean</th><th>p95</th><th>users</th><th>rejected</th><th>late</th><th>dups</th></tr></thead>';
  const body = el("tbody");
  table.append(body);
  const empty = el("p", { class: "empty" }, "No streams yet: send events to POST /v1/events and they appear here.");
  card.append(table, empty);
  app.replaceChildren(card);
  const rows = new Map<string, HTMLTableRowElement>();
  const render = (s: DirectoryEntry) => {
    let tr = rows.get(s.name);
    if (!tr) {
      tr = el("tr", { "data-testid": `stream-${s.name}` });
      tr.onclick = () => {
        location.hash = `#/stream/${encodeURIComponent(s.name)}`;
      };
      rows.set(s.name, tr);
      const after = [...rows.keys()].sort().indexOf(s.name);
      body.insertBefore(tr, body.children[after] ?? null);
    }
    const cells = [
      s.name,
      fmt(s.rate, 2),
      fmt(s.count),
      fmt(s.mean),
      fmt(s.p95),
      fmt(s.distinct_users),
      fmt(s.rejected),
      fmt(s.late),
      fmt(s.duplicates),
    ];
    const tds = cells.map((c, i) =>
      el("td", { class: i === 0 ? "name" : i === 6 && s.rejected > 0 ? "bad" : "", "data-col": String(i) }, c),
    );
    const spark = el("td", { class: "left spark", "data-col": "spark" }, s.spark ? undefined : "–");
    if (s.spark) spark.append(sparkline(s.name, s.at, s.spark));
    tr.replaceChildren(tds[0], spark, ...tds.slice(1));
    tr.classList.add("flash");
    requestAnimationFrame(() => requestAnimationFrame(() => tr?.classList.remove("flash")));
    empty.hidden = true;
  };
  current = new LiveSocket("/v1/live", key, (m) => {
    if (m.type === "directory" || m.type === "streams") for (const s of m.streams) render(s);
    if (m.type === "alerts") showFiring(m.firing);
  });
}

const WINDOWS: WindowName[] = WINDOW_NAMES;

/** A filter of the stream view: one dimension value (the URL hash carries them: #/stream/checkout?country=DE). */
interface DimFilter {
  dim: string;
  value: string;
}
const STREAM_ROUTE = /^#\/stream\/(.+)$/;
/** How often the breakdown and the filtered figures are asked for again. */
const BREAKDOWN_MS = 3000;
/** How often the stream view re-reads its shards and scaling decisions. */
const SCALING_MS = 5000;
const BREAKDOWN_LIMIT = 10;
/** Groups that stand for several values (folded beyond the value budget; events without the key): not filters. */
const NOT_VALUES = new Set(["__other__", "__none__"]);
const SUMMARY_MEASURES = [
  "count",
  "rate",
  "mean",
  "p50",
  "p95",
  "p99",
  "distinct_users",
] as const satisfies readonly Measure[];

/** One filter per key, the last one winning. */
const filtersOf = (params: URLSearchParams): DimFilter[] =>
  [...new Map(params).entries()].map(([dim, value]) => ({ dim, value }));
const streamHash = (name: string, filters: DimFilter[]) =>
  `#/stream/${encodeURIComponent(name)}${filters.length ? `?${new URLSearchParams(filters.map((f) => [f.dim, f.value]))}` : ""}`;

/**
 * Stream view: live from the stream's actor; history from the API. With filters (values picked in the
 * breakdown) the figures and per-minute charts come from POST /v1/query instead: the socket's are the
 * whole stream's.
 */
function showStream(key: string, name: string, params: URLSearchParams) {
  crumbs.innerHTML = "";
  crumbs.append(el("a", { href: "#/" }, "streams"), document.createTextNode(` / ${name}`));
  let window: WindowName = "1m";
  let filters = filtersOf(params);
  const windowBar = el("div", { class: "windows" });
  const chips = el("div", { class: "chips", "data-testid": "filter-chips" });
  const stats = el("div", { class: "stats", "data-testid": "stats" });
  const rate = chart(
    "events per second, last 5 min",
    [{ label: "events/s", stroke: "#4cc9f0", fill: "#4cc9f022" }],
    "chart-rate",
  );
  const lat = chart(
    "value percentiles, last 5 min",
    [
      // Seconds without a value leave gaps: the line spans them rather than breaking into dots.
      { label: "p50", stroke: "#80ed99", ...spanning },
      { label: "p95", stroke: "#ffd166", ...spanning },
      { label: "p99", stroke: "#ef476f", ...spanning },
    ],
    "chart-latency",
  );
  const hour = chart(
    "last hour, per minute",
    [
      { label: "events/min", stroke: "#4cc9f0", points: { show: true } },
      { label: "p95", stroke: "#ffd166", points: { show: true }, scale: "value", spanGaps: true },
    ],
    "chart-hour",
  );
  const hist = chart(
    "history, 24 h (PostgreSQL)",
    [
      { label: "events/min", stroke: "#4cc9f0", points: { show: true } },
      { label: "p95", stroke: "#ffd166", points: { show: true }, scale: "value", spanGaps: true },
    ],
    "chart-history",
  );
  const charts = el("div", { class: "charts" });
  charts.append(rate.box, lat.box, hour.box, hist.box);

  const breakdown = el("section", { class: "card breakdown", "data-testid": "breakdown" });
  const bySelect = el("select", { "data-testid": "breakdown-key", "aria-label": "dimension" });
  const head = el("div", { class: "breakdown-head" });
  const heading = el("h3", {}, "top values by ");
  heading.append(bySelect);
  head.append(heading, el("span", { class: "muted" }, `top ${BREAKDOWN_LIMIT} by count, click a value to filter`));
  const bdError = el("p", { class: "error", "data-testid": "breakdown-error", hidden: "" });
  const bdBody = el("div");
  breakdown.append(head, bdError, bdBody);
  const scaling = el("section", { class: "card scaling", "data-testid": "scaling" });
  app.replaceChildren(windowBar, chips, stats, breakdown, charts, scaling);

  /** Shards, load and the last scaling decisions (GET /v1/streams/:name), refreshed every SCALING_MS. */
  const loadScaling = async () => {
    const res = await fetch(`/v1/streams/${encodeURIComponent(name)}`, {
      headers: { authorization: `Bearer ${key}` },
    }).catch(() => null);
    if (!res?.ok) return;
    const body = (await res.json()) as { scaling?: ScalingStatus };
    const sc = body.scaling;
    if (!sc) return;
    const shards = `${sc.shards} shard${sc.shards === 1 ? "" : "s"}`;
    const list = el("ul", { class: "decisions" });
    for (const d of sc.decisions.slice(0, 5)) {
      const verb = d.to > d.from ? "split" : "folded";
      list.append(el("li", {}, `${new Date(d.at).toLocaleTimeString()} ${verb} ${d.from} → ${d.to}: ${d.reason}`));
    }
    const loads = sc.shard_load.map((l) => `#${l.shard} ${fmt(l.requests_per_s, 1)}/s`).join(" · ");
    scaling.replaceChildren(
      el("h3", {}, "scale-out"),
      el(
        "p",
        { "data-testid": "scaling-summary" },
        `${shards} · ${fmt(sc.requests_per_s, 1)} requests/s · sized for ${fmt(sc.target_per_shard)}/s per shard (${sc.min_shards}–${sc.max_shards})`,
      ),
      ...(loads ? [el("p", { class: "muted", "data-testid": "scaling-shards" }, loads)] : []),
      sc.decisions.length ? list : el("p", { class: "muted" }, "no scaling decisions yet"),
    );
  };

  const seconds = new Map<number, SeriesPoint>();
  const minutes = new Map<number, SeriesPoint>();
  let latest: { windows: Record<WindowName, Aggregates>; counters: StreamCounters } | null = null;
  /** The filtered figures for the current window (POST /v1/query), while filters are set. */
  let filtered: Partial<Record<Measure, number | null>> | null = null;

  const renderStats = () => {
    stats.classList.toggle("filtered", filters.length > 0);
    if (filters.length) {
      const f = (m: Measure) => filtered?.[m] ?? null;
      const items: Array<[string, string, string]> = [
        ["count", `count (${window})`, fmt(f("count"))],
        ["rate", "events/s", fmt(f("rate"), 2)],
        ["mean", "mean", fmt(f("mean"))],
        ["p50", "p50", fmt(f("p50"))],
        ["p95", "p95", fmt(f("p95"))],
        ["p99", "p99", fmt(f("p99"))],
        ["users", "distinct users", fmt(f("distinct_users"))],
      ];
      stats.replaceChildren(
        ...items.map(([id, label, value]) => {
          const d = el("div", { class: "stat", "data-testid": `stat-${id}` });
          d.append(el("div", { class: "label" }, label), el("div", { class: "value" }, value));
          return d;
        }),
      );
      return;
    }
    if (!latest) return;
    const w = latest.windows[window];
    const c = latest.counters;
    const rejected = Object.values(c.rejected).reduce((a: number, n) => a + (n ?? 0), 0);
    const items: Array<[string, string, string, boolean?]> = [
      ["count", `count (${window})`, fmt(w.count)],
      ["rate", "events/s", fmt(w.rate, 2)],
      ["mean", "mean", fmt(w.mean)],
      ["p50", "p50", fmt(w.p50)],
      ["p95", "p95", fmt(w.p95)],
      ["p99", "p99", fmt(w.p99)],
      ["users", "distinct users", fmt(w.distinct_users)],
      ["rejected", "rejected (all time)", fmt(rejected), rejected > 0],
      ["late", "late", fmt(c.late), c.late > 0],
      ["duplicates", "duplicates", fmt(c.duplicates)],
    ];
    stats.replaceChildren(
      ...items.map(([id, label, value, bad]) => {
        const d = el("div", { class: `stat${bad ? " bad" : ""}`, "data-testid": `stat-${id}` });
        d.append(el("div", { class: "label" }, label), el("div", { class: "value" }, value));
        return d;
      }),
    );
  };
  for (const w of WINDOWS) {
    const b = el("button", { type: "button", "aria-pressed": String(w === window), "data-testid": `window-${w}` }, w);
    b.onclick = () => {
      window = w;
      for (const x of windowBar.children) x.setAttribute("aria-pressed", String(x.textContent === w));
      filtered = null;
      gen++;
      renderStats();
      void refresh();
    };
    windowBar.append(b);
  }

  /** The hour chart always spans the last hour (a single point would otherwise span years). */
  const hourScale = () => {
    const now = Math.floor(Date.now() / 1000);
    hour.plot.setScale("x", { min: now - 3600, max: now + 60 });
  };
  const renderCharts = () => {
    const now = Math.floor(Date.now() / 1000);
    const xs: number[] = [];
    const counts: Array<number | null> = [];
    const p50: Array<number | null> = [];
    const p95: Array<number | null> = [];
    const p99: Array<number | null> = [];
    for (let s = now - 299; s <= now; s++) {
      const p = seconds.get(s * 1000);
      xs.push(s);
      counts.push(p ? p.count : 0);
      p50.push(p?.p50 ?? null);
      p95.push(p?.p95 ?? null);
      p99.push(p?.p99 ?? null);
    }
    rate.plot.setData([xs, counts]);
    lat.plot.setData([xs, p50, p95, p99]);
    if (!filters.length) {
      const mx = [...minutes.keys()].sort((a, b) => a - b);
      hour.plot.setData([
        mx.map((t) => t / 1000),
        mx.map((t) => minutes.get(t)?.count ?? 0),
        mx.map((t) => minutes.get(t)?.p95 ?? null),
      ]);
    }
    hourScale();
    for (const t of seconds.keys()) if (t < (now - 300) * 1000) seconds.delete(t);
    for (const t of minutes.keys()) if (t < Date.now() - 3_600_000) minutes.delete(t);
  };

  /** Per-step points of a filtered query (columns t, count, p95) for the per-minute charts. */
  const stepData = (r: QueryResult): uPlot.AlignedData => [
    column(r, "t").map((t) => Date.parse(String(t)) / 1000),
    column(r, "count").map(num),
    column(r, "p95").map(num),
  ];
  const queryFilters = () => filters.map((f) => ({ dim: f.dim, op: "eq" as const, value: f.value }));
  const withFilters = () => (filters.length ? { filters: queryFilters() } : {});

  const renderChips = () => {
    chips.hidden = filters.length === 0;
    chips.replaceChildren(
      ...filters.map((f) => {
        const chip = el("span", { class: "chip", "data-testid": "filter-chip", "data-dim": f.dim });
        chip.append(el("span", {}, `filtered: ${f.dim} = ${f.value}`));
        const clear = el(
          "button",
          { type: "button", class: "chip-x", title: "Clear this filter", "data-testid": "filter-clear" },
          "×",
        );
        clear.onclick = () => {
          location.hash = streamHash(
            name,
            filters.filter((g) => g !== f),
          );
        };
        chip.append(clear);
        return chip;
      }),
    );
    // The per-second charts are the socket's, the whole stream's: not shown while filtered.
    rate.box.hidden = lat.box.hidden = filters.length > 0;
    hour.heading.textContent = `last hour, per minute${filters.length ? " (filtered)" : ""}`;
    hist.heading.textContent = filters.length ? "history, 24 h (filtered)" : "history, 24 h (PostgreSQL)";
  };

  const renderBreakdown = (by: string, r: QueryResult, total: number | null) => {
    const values = column(r, by);
    const counts = column(r, "count").map(num);
    const sums = column(r, "sum").map(num);
    const p95s = column(r, "p95").map(num);
    const estimated = column(r, "estimated");
    const lows = column(r, "count_low").map(num);
    const highs = column(r, "count_high").map(num);
    if (values.length === 0) {
      bdBody.replaceChildren(el("p", { class: "empty" }, `No events with ${by} in the last ${window}.`));
      return;
    }
    const max = Math.max(1, ...counts.map((c) => c ?? 0));
    const table = el("table", { "data-testid": "breakdown-table" });
    table.innerHTML = `<thead><tr><th></th><th class="barcell"></th><th>count</th><th>share</th><th>sum</th><th>p95</th></tr></thead>`;
    (table.tHead?.rows[0].cells[0] as HTMLElement).textContent = by;
    const body = el("tbody");
    values.forEach((raw, i) => {
      const value = String(raw);
      const fixed = NOT_VALUES.has(value);
      const tr = el("tr", {
        class: fixed ? "fixed" : "",
        "data-testid": `breakdown-row-${value}`,
        title: fixed
          ? value === "__other__"
            ? "values beyond the dimension's value budget, together"
            : `events without ${by}`
          : `filter by ${by} = ${value}`,
      });
      if (!fixed) {
        tr.onclick = () => {
          location.hash = streamHash(name, [...filters.filter((f) => f.dim !== by), { dim: by, value }]);
        };
      }
      const count = counts[i] ?? 0;
      const bar = el("span", { class: "bar" });
      bar.style.width = `${((100 * count) / max).toFixed(1)}%`;
      const barCell = el("td", { class: "barcell" });
      barCell.append(bar);
      const approx = estimated[i] === true;
      const countCell = el("td", { "data-col": "count" }, `${approx ? "≈" : ""}${fmt(count)}`);
      if (approx) countCell.title = `between ${fmt(lows[i])} and ${fmt(highs[i])}`;
      tr.append(
        el("td", { class: fixed ? "muted" : "name", "data-col": "value" }, value),
        barCell,
        countCell,
        el("td", { "data-col": "share" }, total ? `${((100 * count) / total).toFixed(1)}%` : "–"),
        el("td", { "data-col": "sum" }, fmt(sums[i])),
        el("td", { "data-col": "p95" }, fmt(p95s[i])),
      );
      body.append(tr);
    });
    table.append(body);
    bdBody.replaceChildren(table);
  };

  let keys: string[] = [];
  let by: string | null = null;
  bySelect.onchange = () => {
    by = bySelect.value || null;
    gen++;
    bdBody.replaceChildren();
    void refresh();
  };
  /** Bumped when the filters, window or key change: answers to older questions are dropped. */
  let gen = 0;
  let running: number | null = null;
  const refresh = async () => {
    if (running === gen) return;
    const g = gen;
    running = g;
    try {
      const found = await dimKeys(key, name);
      if (g !== gen) return;
      if (found.join("\n") !== keys.join("\n")) {
        keys = found;
        bySelect.replaceChildren(...keys.map((k) => el("option", { value: k }, k)));
      }
      if (by === null || !keys.includes(by))
        by = keys.find((k) => !filters.some((f) => f.dim === k)) ?? keys[0] ?? null;
      bySelect.value = by ?? "";
      if (by === null) {
        bdBody.replaceChildren(
          el("p", { class: "empty" }, "No dimensions yet: send events with dims to break them down."),
        );
      }
      if (by === null && !filters.length) return;
      const range = { window };
      const [summary, top, perMinute] = await Promise.all([
        runQuery(key, { stream: name, measures: SUMMARY_MEASURES, ...withFilters(), range }),
        by === null
          ? null
          : runQuery(key, {
              stream: name,
              measures: ["count", "sum", "p95"],
              group_by: [by],
              ...withFilters(),
              range,
              order_by: { measure: "count", dir: "desc" },
              limit: BREAKDOWN_LIMIT,
            }),
        filters.length
          ? runQuery(key, {
              stream: name,
              measures: ["count", "p95"],
              ...withFilters(),
              range: { last: "1h" },
              step: "1m",
            })
          : null,
      ]);
      if (g !== gen) return;
      const failed = [summary, top, perMinute].find((a) => a?.ok === false);
      bdError.hidden = !failed;
      bdError.textContent = failed && !failed.ok ? failed.message : "";
      let total: number | null = null;
      if (summary.ok) {
        const row = summary.result.rows[0];
        filtered = Object.fromEntries(
          SUMMARY_MEASURES.map((m) => {
            const v = num(row?.[summary.result.columns.indexOf(m)]);
            return [m, v ?? (m === "count" || m === "rate" ? 0 : null)];
          }),
        );
        total = filtered.count ?? null;
        if (filters.length) renderStats();
      }
      if (top?.ok && by !== null) renderBreakdown(by, top.result, total);
      if (perMinute?.ok) {
        hour.plot.setData(stepData(perMinute.result));
        hourScale();
      }
    } finally {
      if (running === g) running = null;
    }
  };

  const loadHistory = async () => {
    const g = gen;
    const from = Date.now() - 86_400_000;
    let data: uPlot.AlignedData | null = null;
    if (filters.length) {
      const a = await runQuery(key, {
        stream: name,
        measures: ["count", "p95"],
        filters: queryFilters(),
        range: { from },
        step: "1m",
      });
      if (a.ok) data = stepData(a.result);
    } else {
      const res = await fetch(`/v1/streams/${encodeURIComponent(name)}/history?step=1m&from=${from}`, {
        headers: { authorization: `Bearer ${key}` },
      }).catch(() => null);
      if (!res?.ok) return;
      const body = (await res.json()) as { points: Array<{ t: string; count: number; p95: number | null }> };
      data = [
        body.points.map((p) => Date.parse(p.t) / 1000),
        body.points.map((p) => p.count),
        body.points.map((p) => p.p95),
      ];
    }
    if (data === null || g !== gen) return;
    hist.plot.setData(data);
    const now = Date.now() / 1000;
    hist.plot.setScale("x", { min: now - 86_400, max: now + 60 });
  };

  const setFilters = (next: DimFilter[]) => {
    filters = next;
    filtered = null;
    gen++;
    renderChips();
    renderStats();
    bdBody.replaceChildren();
    if (!filters.length) renderCharts();
    else hour.plot.setData([[], [], []]);
    void refresh();
    void loadHistory();
  };

  const firing = new Map<string, AlertEvent>();
  const socket = new LiveSocket(`/v1/streams/${encodeURIComponent(name)}/live`, key, (m) => {
    if (m.type === "alert") {
      if (m.event.kind === "firing") firing.set(m.event.rule_id, m.event);
      if (m.event.kind === "resolved") firing.delete(m.event.rule_id);
      showFiring([...firing.values()]);
      return;
    }
    if (m.type !== "snapshot" && m.type !== "update") return;
    if (m.type === "snapshot") {
      seconds.clear();
      minutes.clear();
    }
    for (const p of m.seconds) seconds.set(p.t, p);
    for (const p of m.minutes) minutes.set(p.t, p);
    latest = { windows: m.windows, counters: m.counters };
    renderStats();
    if (m.type === "snapshot") renderCharts();
  });
  const tick = setInterval(renderCharts, 1000);
  renderChips();
  renderStats();
  void refresh();
  void loadHistory();
  const breakdownTimer = setInterval(refresh, BREAKDOWN_MS);
  const historyTimer = setInterval(loadHistory, 60_000);
  void loadScaling();
  const scalingTimer = setInterval(loadScaling, SCALING_MS);
  current = {
    close() {
      socket.close();
      clearInterval(scalingTimer);
      clearInterval(tick);
      clearInterval(breakdownTimer);
      clearInterval(historyTimer);
    },
    update(path, next) {
      const m = STREAM_ROUTE.exec(path);
      if (!m || decodeURIComponent(m[1]) !== name) return false;
      setFilters(filtersOf(next));
      return true;
    },
  };
}

const hostOf = (url: string): string => {
  try {
    return new URL(url).host;
  } catch {
    return url.slice(0, 40);
  }
};

/** Alerts page: rules with their state, and recent transitions with webhook deliveries. */
function showAlerts(key: string) {
  crumbs.textContent = "alerts";
  const rulesCard = el("section", { class: "card" });
  const eventsCard = el("section", { class: "card" });
  app.replaceChildren(
    el("h2", { class: "section" }, "rules"),
    rulesCard,
    el("h2", { class: "section" }, "recent alerts"),
    eventsCard,
  );
  const get = async <T>(path: string): Promise<T | null> => {
    const res = await fetch(path, { headers: { authorization: `Bearer ${key}` } }).catch(() => null);
    return res?.ok ? ((await res.json()) as T) : null;
  };
  const table = (
    head: string[],
    rows: string[][],
    testid: string,
    classes: (r: number, c: number) => string = () => "",
  ) => {
    const t = el("table", { "data-testid": testid });
    const tr = el("tr");
    for (const h of head) tr.append(el("th", { class: "left" }, h));
    t.append(el("thead"), el("tbody"));
    (t.tHead as HTMLTableSectionElement).append(tr);
    rows.forEach((r, i) => {
      const row = el("tr");
      r.forEach((cell, j) => {
        row.append(el("td", { class: `left ${classes(i, j)}` }, cell));
      });
      (t.tBodies[0] as HTMLTableSectionElement).append(row);
    });
    return t;
  };
  const load = async () => {
    const [rules, events, firing] = await Promise.all([
      get<{ rules: Array<{ rule: AlertRuleView; state: AlertStateView }> }>("/v1/alerts/rules"),
      get<{
        events: Array<
          AlertEventView & {
            deliveries: Array<{ status: string; target: string; attempts: number; last_error: string | null }>;
          }
        >;
      }>("/v1/alerts/events?limit=50"),
      get<{ firing: AlertEventView[] }>("/v1/alerts"),
    ]);
    if (firing) showFiring(firing.firing);
    const describe = (r: AlertRuleView) =>
      r.kind === "no_data"
        ? `no data for ${r.no_data_ms / 1000}s`
        : `${r.aggregate} over ${r.window} ${r.comparator} ${r.threshold}${r.resolve_threshold !== null ? ` (resolve ${r.resolve_threshold})` : ""}${r.for_ms ? ` for ${r.for_ms / 1000}s` : ""}`;
    const ruleRows = (rules?.rules ?? []).map(({ rule, state }) => [
      rule.name,
      rule.stream,
      describe(rule),
      rule.enabled ? state.state : "disabled",
      fmt(state.value),
    ]);
    rulesCard.replaceChildren(
      ruleRows.length
        ? table(["rule", "stream", "condition", "state", "value"], ruleRows, "alert-rules", (i, j) =>
            j === 3 ? `state-${ruleRows[i][3]}` : "",
          )
        : el("p", { class: "empty" }, "No alert rules yet: create one with POST /v1/alerts/rules (admin key)."),
    );
    const evRows = (events?.events ?? []).map((e) => [
      new Date(e.at).toLocaleString(),
      e.kind,
      e.rule_name,
      e.stream,
      fmt(e.value),
      // Each delivery's state, and why it is failing (HTTP status or network error) once an attempt has failed.
      e.deliveries
        .map((d) =>
          d.last_error && d.status !== "delivered"
            ? `${d.status}: ${d.last_error} (${d.attempts} attempt${d.attempts === 1 ? "" : "s"}, ${hostOf(d.target)})`
            : d.status,
        )
        .join("; ") || "–",
    ]);
    eventsCard.replaceChildren(
      evRows.length
        ? table(["time", "transition", "rule", "stream", "value", "webhooks"], evRows, "alert-events", (i, j) =>
            j === 1
              ? `state-${evRows[i][1] === "firing" ? "firing" : evRows[i][1] === "pending" ? "pending" : "inactive"}`
              : "",
          )
        : el("p", { class: "empty" }, "No alerts have fired yet."),
    );
  };
  void load();
  const timer = setInterval(load, 5000);
  current = { close: () => clearInterval(timer) };
}

const signOutButton = document.getElementById("key-button") as HTMLButtonElement;
/** The credential the page last showed; another one (or none) must not keep the last tenant's firing banner. */
let shownKey: string | null = null;

function route() {
  const cred = credential();
  const key = cred?.value ?? null;
  if (key !== shownKey) {
    showFiring([]);
    shownKey = key;
  }
  signOutButton.textContent = cred?.kind === "token" ? "sign out" : "key";
  const { path, params } = splitHash(location.hash);
  // The same page with new parameters (a filter, a query): updated in place, its sockets kept.
  if (key && current?.update?.(path, params)) return;
  current?.close();
  current = null;
  if (!key) return showKeyForm();
  const m = STREAM_ROUTE.exec(path);
  if (m) showStream(key, decodeURIComponent(m[1]), params);
  else if (path === "#/alerts") showAlerts(key);
  else if (path === "#/query") current = showQuery(key, params);
  else if (path === "#/boards") current = showBoards(key);
  else if (BOARD_ROUTE.test(path))
    current = showBoard(key, decodeURIComponent((BOARD_ROUTE.exec(path) as RegExpExecArray)[1]));
  else showOverview(key);
}

signOutButton.onclick = () => {
  signOut();
  shownKey = null;
  showFiring([]);
  setStatus("offline");
  showKeyForm();
};
window.addEventListener("hashchange", route);
// Back from the identity provider (?code=&state=): exchange the code first, then show the page.
void finishSignIn().then((error) => {
  if (error) showKeyForm(error);
  else route();
});
