/**
 * Prometheus exposition of a tenant's live figures (GET /v1/metrics): the text format 0.0.4 and
 * OpenMetrics 1.0, chosen by the scrape's Accept header. Runtime-free: the Worker gathers the records,
 * this renders them. Names are declared once here (the Grafana dashboards and the rule export use them):
 *
 *   counters  edgepulse_events_accepted_total{stream}, edgepulse_events_duplicate_total{stream},
 *             edgepulse_events_rejected_total{stream,code}, edgepulse_events_late_total{stream}
 *   gauges    edgepulse_window_events{stream,window}, edgepulse_window_rate_per_second{…},
 *             edgepulse_window_summed_value{…}, edgepulse_window_value_min|max|mean{…},
 *             edgepulse_window_value{…,percentile="p50"|"p90"|"p95"|"p99"},
 *             edgepulse_window_distinct_users{…}, edgepulse_stream_last_event_timestamp_seconds{stream}
 *   dims      the window gauges prefixed edgepulse_dim_, with dim_key and dim_value labels
 *   scrape    edgepulse_scrape_series, edgepulse_scrape_series_limit, edgepulse_scrape_series_dropped,
 *             edgepulse_scrape_breakdowns_unavailable
 *
 * The series budget: a page never holds more than `maxSeries` samples; what does not fit is counted in
 * edgepulse_scrape_series_dropped (and the X-Edgepulse-Series-Dropped header), never silently cut.
 */
import { type Figures, QUANTILES } from "./aggregate.ts";
import type { StreamCounters } from "./protocol.ts";
import { WINDOW_NAMES, type WindowName } from "./window.ts";

export type ExpositionFormat = "text" | "openmetrics";

export const CONTENT_TYPES: Record<ExpositionFormat, string> = {
  text: "text/plain; version=0.0.4; charset=utf-8",
  openmetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8",
};

/** OpenMetrics when the scraper asks for it (Prometheus sends it first in Accept), else text 0.0.4. */
export function negotiate(accept: string | null | undefined): ExpositionFormat {
  return /application\/openmetrics-text/i.test(accept ?? "") ? "openmetrics" : "text";
}

type Labels = Record<string, string>;

interface Family {
  /** The sample name; for counters it ends in _total. */
  name: string;
  type: "counter" | "gauge";
  help: string;
  samples: Array<{ labels: Labels; value: number }>;
}

/** The window gauges: name suffix, help, and the figure each reads (null figures are left out). */
const WINDOW_GAUGES: Array<{ suffix: string; help: string; read: (f: Figures) => number | null }> = [
  { suffix: "window_events", help: "Events in the sliding window.", read: (f) => f.count },
  { suffix: "window_rate_per_second", help: "Events per second over the sliding window.", read: (f) => f.rate },
  // Not _sum: that suffix belongs to summaries and histograms (promtool check metrics).
  { suffix: "window_summed_value", help: "Sum of event values in the sliding window.", read: (f) => f.sum },
  { suffix: "window_value_min", help: "Smallest event value in the sliding window.", read: (f) => f.min },
  { suffix: "window_value_max", help: "Largest event value in the sliding window.", read: (f) => f.max },
  { suffix: "window_value_mean", help: "Mean event value in the sliding window.", read: (f) => f.mean },
  {
    suffix: "window_distinct_users",
    help: "Distinct users in the sliding window (HyperLogLog estimate).",
    read: (f) => f.distinct_users,
  },
];

/**
 * The percentile gauge: one family, a `percentile` label per reported percentile (p50 … p99, the API's
 * names; nearest rank, ±1 %). Not `quantile`: that label belongs to summaries (promtool check metrics).
 */
const QUANTILE_SUFFIX = "window_value";
const QUANTILE_HELP = "Event value percentile in the sliding window (nearest rank, within 1 % relative).";

/** Which metric (and label) each alert aggregate reads: the rule export writes PromQL with it. */
export function metricFor(aggregate: keyof Figures): { name: string; percentile?: string } {
  if (aggregate in QUANTILES) return { name: `edgepulse_${QUANTILE_SUFFIX}`, percentile: aggregate };
  const names: Partial<Record<keyof Figures, string>> = {
    count: "window_events",
    rate: "window_rate_per_second",
    sum: "window_summed_value",
    min: "window_value_min",
    max: "window_value_max",
    mean: "window_value_mean",
    distinct_users: "window_distinct_users",
  };
  const suffix = names[aggregate];
  if (!suffix) throw new Error(`no metric for ${aggregate}`);
  return { name: `edgepulse_${suffix}` };
}

export const LAST_EVENT_METRIC = "edgepulse_stream_last_event_timestamp_seconds";

/** One stream as the hub keeps it. */
export interface StreamFigures {
  name: string;
  windows: Record<WindowName, Figures>;
  counters: StreamCounters;
  /** Epoch ms, or null if the stream never accepted an event. */
  last_event_at: number | null;
}

/** One group of a breakdown (a dimension key, or a declared set of keys), for one window. */
export interface DimFigures {
  stream: string;
  window: WindowName;
  /** The set's keys, joined with "," (one key: the key). */
  key: string;
  /** The group's values in the keys' order, joined with ",". */
  value: string;
  figures: Figures;
}

function windowFamilies(prefix: string, help: string): Map<string, Family> {
  const out = new Map<string, Family>();
  for (const g of WINDOW_GAUGES) {
    out.set(g.suffix, { name: `${prefix}${g.suffix}`, type: "gauge", help: `${help}${g.help}`, samples: [] });
  }
  out.set(QUANTILE_SUFFIX, {
    name: `${prefix}${QUANTILE_SUFFIX}`,
    type: "gauge",
    help: `${help}${QUANTILE_HELP}`,
    samples: [],
  });
  return out;
}

function addFigures(families: Map<string, Family>, labels: Labels, f: Figures): void {
  for (const g of WINDOW_GAUGES) {
    const v = g.read(f);
    if (v !== null) families.get(g.suffix)?.samples.push({ labels, value: v });
  }
  const q = families.get(QUANTILE_SUFFIX) as Family;
  for (const p of Object.keys(QUANTILES) as Array<keyof typeof QUANTILES>) {
    const v = f[p];
    if (v !== null) q.samples.push({ labels: { ...labels, percentile: p }, value: v });
  }
}

/** Every family of a page, in exposition order: stream counters, stream gauges, then dims. */
export function families(streams: StreamFigures[], dims: DimFigures[]): Family[] {
  const accepted: Family = {
    name: "edgepulse_events_accepted_total",
    type: "counter",
    help: "Events accepted and counted (each event id once).",
    samples: [],
  };
  const duplicate: Family = {
    name: "edgepulse_events_duplicate_total",
    type: "counter",
    help: "Events received again with an id already counted (acknowledged, not counted twice).",
    samples: [],
  };
  const rejected: Family = {
    name: "edgepulse_events_rejected_total",
    type: "counter",
    help: "Events refused, by error code.",
    samples: [],
  };
  const late: Family = {
    name: "edgepulse_events_late_total",
    type: "counter",
    help: "Events refused as older than ALLOWED_LATENESS_MS (also in edgepulse_events_rejected_total, code too_late).",
    samples: [],
  };
  const lastEvent: Family = {
    name: LAST_EVENT_METRIC,
    type: "gauge",
    help: "When the stream last accepted an event (Unix seconds).",
    samples: [],
  };
  const gauges = windowFamilies("edgepulse_", "");
  for (const s of [...streams].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const stream = { stream: s.name };
    accepted.samples.push({ labels: stream, value: s.counters.accepted });
    duplicate.samples.push({ labels: stream, value: s.counters.duplicates });
    late.samples.push({ labels: stream, value: s.counters.late });
    for (const [code, n] of Object.entries(s.counters.rejected).sort()) {
      if (n) rejected.samples.push({ labels: { ...stream, code }, value: n });
    }
    if (s.last_event_at !== null) lastEvent.samples.push({ labels: stream, value: s.last_event_at / 1000 });
    for (const w of WINDOW_NAMES) if (s.windows[w]) addFigures(gauges, { ...stream, window: w }, s.windows[w]);
  }
  const dimGauges = windowFamilies("edgepulse_dim_", "By dimension: ");
  for (const d of dims) {
    addFigures(dimGauges, { stream: d.stream, window: d.window, dim_key: d.key, dim_value: d.value }, d.figures);
  }
  return [accepted, duplicate, rejected, late, lastEvent, ...gauges.values(), ...dimGauges.values()];
}

/** A label value with backslash, double quote and line feed escaped (both formats). */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** HELP text: backslash and line feed escaped (text 0.0.4); OpenMetrics also escapes the double quote. */
function escapeHelp(v: string, format: ExpositionFormat): string {
  const s = v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
  return format === "openmetrics" ? s.replace(/"/g, '\\"') : s;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}

function sampleLine(name: string, labels: Labels, value: number): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  return `${name}${pairs.length ? `{${pairs.join(",")}}` : ""} ${formatValue(value)}`;
}

export interface Page {
  body: string;
  series: number;
  dropped: number;
}

/**
 * Renders families in `format` within `maxSeries` samples: families are filled in order (stream counters
 * first, dims last) and what does not fit is dropped and counted; three scrape gauges say so.
 */
export function render(all: Family[], format: ExpositionFormat, maxSeries: number, breakdownsUnavailable = 0): Page {
  const lines: string[] = [];
  let series = 0;
  let dropped = 0;
  const emit = (f: Family, samples: Family["samples"]) => {
    // OpenMetrics names a counter family without its _total suffix; its samples keep it.
    const family = format === "openmetrics" && f.type === "counter" ? f.name.replace(/_total$/, "") : f.name;
    lines.push(`# HELP ${family} ${escapeHelp(f.help, format)}`);
    lines.push(`# TYPE ${family} ${f.type}`);
    for (const s of samples) lines.push(sampleLine(f.name, s.labels, s.value));
  };
  for (const f of all) {
    const room = Math.max(0, maxSeries - series);
    const kept = f.samples.slice(0, room);
    dropped += f.samples.length - kept.length;
    series += kept.length;
    if (kept.length > 0) emit(f, kept);
  }
  const scrape = (name: string, help: string, value: number) =>
    emit({ name, type: "gauge", help, samples: [] }, [{ labels: {}, value }]);
  scrape("edgepulse_scrape_series", "Series on this page (these three scrape gauges not included).", series);
  scrape("edgepulse_scrape_series_limit", "The page's series budget (METRICS_MAX_SERIES).", maxSeries);
  scrape(
    "edgepulse_scrape_series_dropped",
    "Series left off this page because the budget was reached (dimension series go first).",
    dropped,
  );
  scrape(
    "edgepulse_scrape_breakdowns_unavailable",
    "Breakdowns (a stream's dimension key or declared set) not on this page: failed, or past METRICS_MAX_BREAKDOWNS.",
    breakdownsUnavailable,
  );
  if (format === "openmetrics") lines.push("# EOF");
  return { body: `${lines.join("\n")}\n`, series, dropped };
}
