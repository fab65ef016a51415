/**
 * The dashboard's shared pieces: the page's fixed elements, formatting, DOM
 * building, API calls (queries included) and charts. Pages (main.ts,
 * query-page.ts) build on these.
 */
import uPlot from "uplot";
import type { AlertEvent } from "../../core/live";
import type { QueryResult } from "../../core/query";

export const app = document.getElementById("app") as HTMLElement;
export const statusEl = document.getElementById("status") as HTMLElement;
export const crumbs = document.getElementById("crumbs") as HTMLElement;
export const banner = document.getElementById("banner") as HTMLElement;

/** The firing-alerts banner, shown on every page while any alert fires. */
/** Takes alerts from the API (ISO `at`) and from the live sockets alike: the banner shows no time. */
export function showFiring(firing: Array<Omit<AlertEvent, "at">>) {
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

export type ConnState = "offline" | "connecting" | "connected" | "reconnecting" | "unauthorized";

export function setStatus(state: ConnState, text: string = state) {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
}

export const fmt = (v: number | null | undefined, digits = 1): string => {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(a < 10 ? 2 : digits);
};
export const el = <K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string,
) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
export const isRecord = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v);
export const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** The API's message from a failed response (its `{ error: { code, message } }` shape), or the status. */
export async function errorOf(res: Response): Promise<string> {
  const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
  return body?.error?.message ?? `The server answered ${res.status}.`;
}

export async function getJson<T>(key: string, path: string): Promise<T | null> {
  const res = await fetch(path, { headers: { authorization: `Bearer ${key}` } }).catch(() => null);
  return res?.ok ? ((await res.json()) as T) : null;
}

export const postQuery = (key: string, body: unknown, csv = false) =>
  fetch(`/v1/query${csv ? "?format=csv" : ""}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });

export type Answer = { ok: true; result: QueryResult } | { ok: false; message: string };

/** POST /v1/query: the answer, or the server's message (400 invalid_query names the field and the fix). */
export async function runQuery(key: string, body: unknown): Promise<Answer> {
  const res = await postQuery(key, body).catch(() => null);
  if (!res) return { ok: false, message: "The server could not be reached." };
  if (!res.ok) return { ok: false, message: await errorOf(res) };
  return { ok: true, result: (await res.json()) as QueryResult };
}

/** A column of a query's answer, by name (empty when the answer has no such column). */
export const column = (r: QueryResult, name: string) => {
  const i = r.columns.indexOf(name);
  return i < 0 ? [] : r.rows.map((row) => row[i]);
};

/** A stream's dimension keys: GET /v1/streams/:name/config lists its dimensions (single keys and declared sets). */
export async function dimKeys(key: string, stream: string): Promise<string[]> {
  const cfg = await getJson<{ dimensions?: Array<{ keys: string[] }> }>(
    key,
    `/v1/streams/${encodeURIComponent(stream)}/config`,
  );
  return [...new Set((cfg?.dimensions ?? []).flatMap((d) => d.keys))].sort();
}

/** The hash's route and parameters: "#/stream/a?country=DE" → "#/stream/a" and country=DE. */
export function splitHash(hash: string): { path: string; params: URLSearchParams } {
  const i = hash.indexOf("?");
  return i < 0
    ? { path: hash, params: new URLSearchParams() }
    : { path: hash.slice(0, i), params: new URLSearchParams(hash.slice(i + 1)) };
}

export const SERIES_COLORS = ["#4cc9f0", "#ffd166", "#80ed99", "#ef476f", "#c77dff", "#f4a261", "#90e0ef", "#e9c46a"];

/**
 * Lines as an inline SVG, without axes (sparklines, board panels): every series' points spread left to
 * right over the width, all on one scale from min(0, lowest) to the highest value; a null point is left out
 * of its line. One polyline per series, in order, stroked in SERIES_COLORS (and a dot for a series of one point).
 */
export function svgLines(series: Array<Array<number | null>>, w: number, h: number): SVGSVGElement {
  const NS = "http://www.w3.org/2000/svg";
  const values = series.flat().filter((v): v is number => v !== null);
  const lo = Math.min(0, ...values);
  const hi = Math.max(lo + 1, ...values);
  const svg = document.createElementNS(NS, "svg");
  for (const [k, v] of Object.entries({ viewBox: `0 0 ${w} ${h}`, width: String(w), height: String(h) }))
    svg.setAttribute(k, v);
  series.forEach((points, s) => {
    const dx = points.length > 1 ? w / (points.length - 1) : 0;
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute(
      "points",
      points
        .flatMap((v, i) =>
          v === null ? [] : [`${(i * dx).toFixed(1)},${(h - 2 - ((v - lo) / (hi - lo)) * (h - 4)).toFixed(1)}`],
        )
        .join(" "),
    );
    line.setAttribute("stroke", SERIES_COLORS[s % SERIES_COLORS.length]);
    svg.append(line);
    // A series of one point has no line to draw: a dot instead.
    const only = points.flatMap((v, i) => (v === null ? [] : [[i, v]]));
    if (only.length === 1) {
      const dot = document.createElementNS(NS, "circle");
      const [i, v] = only[0];
      dot.setAttribute("cx", (i * dx).toFixed(1));
      dot.setAttribute("cy", (h - 2 - ((v - lo) / (hi - lo)) * (h - 4)).toFixed(1));
      dot.setAttribute("r", "3");
      dot.setAttribute("fill", SERIES_COLORS[s % SERIES_COLORS.length]);
      svg.append(dot);
    }
  });
  return svg;
}

/** The page on screen. `update` takes a new hash for the same page in place (no new sockets); false: not its page. */
export interface View {
  close(): void;
  update?(path: string, params: URLSearchParams): boolean;
}

const AXIS_FONT = "12px system-ui, sans-serif";

/**
 * For series with gaps (seconds without a value): the line spans the gaps, and a value standing alone in view
 * (nothing to connect it to) is still drawn, as a dot.
 */
export const spanning = {
  spanGaps: true,
  points: {
    show: (u: uPlot, si: number, i0: number, i1: number): boolean => {
      const ys = u.data[si];
      let n = 0;
      for (let i = i0; i <= i1 && n < 2; i++) if (ys[i] != null) n++;
      return n === 1;
    },
  },
} satisfies Partial<uPlot.Series>;

/** A y axis as wide as its longest tick label, measured in the axis font (uPlot's default clips "10,000" to "0,000"). */
const fitLabels = (u: uPlot, values: string[] | null): number => {
  if (!values || values.length === 0) return 40;
  const ctx = u.ctx;
  ctx.save();
  ctx.font = AXIS_FONT;
  const widest = Math.max(...values.map((v) => ctx.measureText(String(v ?? "")).width));
  ctx.restore();
  return Math.ceil(widest) + 20;
};

export function chart(title: string, series: uPlot.Series[], testid: string) {
  const box = el("div", { class: "card chart", "data-testid": testid });
  const heading = el("h3", {}, title);
  box.append(heading);
  const plotEl = el("div", { class: "plot" });
  box.append(plotEl);
  // One y axis per scale the series use: the first on the left, a second (e.g. p95 next to events/min) on the right.
  const scales = [...new Set(series.map((x) => x.scale ?? "y"))];
  const plot = new uPlot(
    {
      width: 400,
      height: 220,
      series: [{}, ...series],
      axes: [
        // At least 80 px between time labels, so the first ones (which carry the date) never overlap.
        { stroke: "#8a98b3", grid: { stroke: "#1f2a3d" }, space: 80, font: AXIS_FONT },
        ...scales.map((scale, i) => ({
          scale,
          font: AXIS_FONT,
          side: i === 0 ? 3 : 1,
          stroke: i === 0 ? "#8a98b3" : (series.find((x) => (x.scale ?? "y") === scale)?.stroke as string),
          grid: i === 0 ? { stroke: "#1f2a3d" } : { show: false },
          size: fitLabels,
        })),
      ],
      legend: { show: true },
    },
    [[], ...series.map(() => [])] as uPlot.AlignedData,
    plotEl,
  );
  // Size the plot from its card (the canvas itself must not hold the card wide on a phone).
  const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(200, box.clientWidth - 34), height: 220 }));
  resize.observe(box);
  return {
    box,
    plot,
    heading,
    destroy() {
      resize.disconnect();
      plot.destroy();
    },
  };
}
