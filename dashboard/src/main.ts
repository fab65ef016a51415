/**
 * The edgepulse dashboard: a tenant overview (live stream table from the
 * TenantHub) and a stream view (live figures and charts from the stream's
 * MetricActor, history from the API). No framework: the DOM is small.
 */
import uPlot from "uplot";
import type { AlertRule, AlertState } from "../../core/alerts";
import {
  type AlertEvent,
  type DirectoryEntry,
  KEY_PROTOCOL_PREFIX,
  LIVE_PROTOCOL,
  parseServerMessage,
  type SeriesPoint,
  type ServerMessage,
} from "../../core/live";
import type { StreamCounters } from "../../core/protocol";
import type { Aggregates, WindowName } from "../../core/window";

const KEY_STORAGE = "edgepulse.readKey";
const app = document.getElementById("app") as HTMLElement;
const statusEl = document.getElementById("status") as HTMLElement;
const crumbs = document.getElementById("crumbs") as HTMLElement;
const banner = document.getElementById("banner") as HTMLElement;

/** The firing-alerts banner, shown on every page while any alert fires. */
function showFiring(firing: AlertEvent[]) {
  banner.hidden = firing.length === 0;
  banner.replaceChildren(
    ...firing.flatMap((a, i) => [
      ...(i ? [document.createTextNode(" · ")] : []),
      document.createTextNode("FIRING "),
      el("b", {}, a.rule_name),
      document.createTextNode(` on ${a.stream} (value ${fmt(a.value)})`),
    ]),
  );
}

type ConnState = "offline" | "connecting" | "connected" | "reconnecting" | "unauthorized";

function setStatus(state: ConnState, text: string = state) {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
}

const fmt = (v: number | null | undefined, digits = 1): string => {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(a < 10 ? 2 : digits);
};
const el = <K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};

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
      setStatus("unauthorized", "key refused");
      showKeyForm("That key was refused (revoked, or not a read key).");
    }
  }

  close() {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    this.#ws?.close(1000);
  }
}

let current: { close(): void } | null = null;

function showKeyForm(error?: string) {
  current?.close();
  current = null;
  crumbs.textContent = "";
  const tpl = document.getElementById("key-form") as HTMLTemplateElement;
  app.replaceChildren(tpl.content.cloneNode(true));
  const form = app.querySelector("form") as HTMLFormElement;
  const err = form.querySelector(".error") as HTMLElement;
  if (error) {
    err.hidden = false;
    err.textContent = error;
  }
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
    localStorage.setItem(KEY_STORAGE, key);
    route();
  };
}

/** Overview: the tenant's streams, live from the TenantHub. */
function showOverview(key: string) {
  crumbs.textContent = "streams";
  const card = el("section", { class: "card" });
  const table = el("table", { "data-testid": "streams" });
  table.innerHTML =
    "<thead><tr><th>stream</th><th>rate/s</th><th>count 1m</th><th>mean</th><th>p95</th><th>users</th><th>rejected</th><th>late</th><th>dups</th></tr></thead>";
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
    tr.replaceChildren(
      ...cells.map((c, i) =>
        el("td", { class: i === 0 ? "name" : i === 6 && s.rejected > 0 ? "bad" : "", "data-col": String(i) }, c),
      ),
    );
    tr.classList.add("flash");
    requestAnimationFrame(() => requestAnimationFrame(() => tr?.classList.remove("flash")));
    empty.hidden = true;
  };
  current = new LiveSocket("/v1/live", key, (m) => {
    if (m.type === "directory" || m.type === "streams") for (const s of m.streams) render(s);
    if (m.type === "alerts") showFiring(m.firing);
  });
}

const WINDOWS: WindowName[] = ["1m", "5m", "15m", "1h"];

function chart(title: string, series: uPlot.Series[], testid: string) {
  const box = el("div", { class: "card chart", "data-testid": testid });
  box.append(el("h3", {}, title));
  const plotEl = el("div", { class: "plot" });
  box.append(plotEl);
  const plot = new uPlot(
    {
      width: 400,
      height: 220,
      series: [{}, ...series],
      axes: [
        { stroke: "#8a98b3", grid: { stroke: "#1f2a3d" } },
        { stroke: "#8a98b3", grid: { stroke: "#1f2a3d" } },
      ],
      legend: { show: true },
    },
    [[], ...series.map(() => [])] as uPlot.AlignedData,
    plotEl,
  );
  // Size the plot from its card (the canvas itself must not hold the card wide on a phone).
  new ResizeObserver(() => plot.setSize({ width: Math.max(200, box.clientWidth - 34), height: 220 })).observe(box);
  return { box, plot };
}

/** Stream view: live from the stream's actor; history from the API. */
function showStream(key: string, name: string) {
  crumbs.innerHTML = "";
  crumbs.append(el("a", { href: "#/" }, "streams"), document.createTextNode(` / ${name}`));
  let window: WindowName = "1m";
  const windowBar = el("div", { class: "windows" });
  const stats = el("div", { class: "stats", "data-testid": "stats" });
  const rate = chart(
    "events per second, last 5 min",
    [{ label: "events/s", stroke: "#4cc9f0", fill: "#4cc9f022" }],
    "chart-rate",
  );
  const lat = chart(
    "value percentiles, last 5 min",
    [
      { label: "p50", stroke: "#80ed99" },
      { label: "p95", stroke: "#ffd166" },
      { label: "p99", stroke: "#ef476f" },
    ],
    "chart-latency",
  );
  const hour = chart(
    "last hour, per minute",
    [
      { label: "events/min", stroke: "#4cc9f0", points: { show: true } },
      { label: "p95", stroke: "#ffd166", points: { show: true } },
    ],
    "chart-hour",
  );
  const hist = chart(
    "history, 24 h (PostgreSQL)",
    [
      { label: "events/min", stroke: "#4cc9f0", points: { show: true } },
      { label: "p95", stroke: "#ffd166", points: { show: true } },
    ],
    "chart-history",
  );
  const charts = el("div", { class: "charts" });
  charts.append(rate.box, lat.box, hour.box, hist.box);
  app.replaceChildren(windowBar, stats, charts);

  const seconds = new Map<number, SeriesPoint>();
  const minutes = new Map<number, SeriesPoint>();
  let latest: { windows: Record<WindowName, Aggregates>; counters: StreamCounters } | null = null;

  const renderStats = () => {
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
    const b = el("button", { type: "button", "aria-pressed": String(w === window) }, w);
    b.onclick = () => {
      window = w;
      for (const x of windowBar.children) x.setAttribute("aria-pressed", String(x.textContent === w));
      renderStats();
    };
    windowBar.append(b);
  }

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
    const mx = [...minutes.keys()].sort((a, b) => a - b);
    hour.plot.setData([
      mx.map((t) => t / 1000),
      mx.map((t) => minutes.get(t)?.count ?? 0),
      mx.map((t) => minutes.get(t)?.p95 ?? null),
    ]);
    hour.plot.setScale("x", { min: now - 3600, max: now + 60 });
    for (const t of seconds.keys()) if (t < (now - 300) * 1000) seconds.delete(t);
    for (const t of minutes.keys()) if (t < Date.now() - 3_600_000) minutes.delete(t);
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

  const loadHistory = async () => {
    const res = await fetch(`/v1/streams/${encodeURIComponent(name)}/history?step=1m&from=${Date.now() - 86_400_000}`, {
      headers: { authorization: `Bearer ${key}` },
    }).catch(() => null);
    if (!res?.ok) return;
    const body = (await res.json()) as { points: Array<{ t: string; count: number; p95: number | null }> };
    hist.plot.setData([
      body.points.map((p) => Date.parse(p.t) / 1000),
      body.points.map((p) => p.count),
      body.points.map((p) => p.p95),
    ]);
    const now = Date.now() / 1000;
    hist.plot.setScale("x", { min: now - 86_400, max: now + 60 });
  };
  void loadHistory();
  const historyTimer = setInterval(loadHistory, 60_000);
  current = {
    close() {
      socket.close();
      clearInterval(tick);
      clearInterval(historyTimer);
    },
  };
}

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
      get<{ rules: Array<{ rule: AlertRule; state: AlertState }> }>("/v1/alerts/rules"),
      get<{ events: Array<AlertEvent & { deliveries: Array<{ status: string; target: string }> }> }>(
        "/v1/alerts/events?limit=50",
      ),
      get<{ firing: AlertEvent[] }>("/v1/alerts"),
    ]);
    if (firing) showFiring(firing.firing);
    const describe = (r: AlertRule) =>
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
      e.deliveries.map((d) => d.status).join(", ") || "–",
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

function route() {
  current?.close();
  current = null;
  const key = localStorage.getItem(KEY_STORAGE);
  if (!key) return showKeyForm();
  const m = /^#\/stream\/(.+)$/.exec(location.hash);
  if (m) showStream(key, decodeURIComponent(m[1]));
  else if (location.hash === "#/alerts") showAlerts(key);
  else showOverview(key);
}

(document.getElementById("key-button") as HTMLButtonElement).onclick = () => {
  localStorage.removeItem(KEY_STORAGE);
  setStatus("offline");
  showKeyForm();
};
window.addEventListener("hashchange", route);
route();
