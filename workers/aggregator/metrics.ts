/**
 * GET /v1/metrics: the tenant's live figures for Prometheus (core/prometheus.ts renders them), with a
 * read key as bearer token. Stream figures come from the tenant's hub (no actor is woken); each stream
 * with dimensions is asked once for every breakdown (each dimension key seen, each declared set) over
 * one live window (`dim_window`, default 1m), from its own memory (no PostgreSQL read).
 * Bounded: at most METRICS_MAX_SERIES samples a page, at most METRICS_MAX_BREAKDOWNS breakdowns (streams
 * in name order); a stream that cannot answer, or does not fit, is counted in the page, never fatal.
 */
import { Hono } from "hono";
import { streamAllowed } from "../../core/keys";
import type { StreamRecord } from "../../core/live";
import { CONTENT_TYPES, type DimFigures, families, negotiate, render } from "../../core/prometheus";
import { isWindowName, WINDOW_NAMES } from "../../core/window";
import type { BreakdownFigures } from "../../durable-objects/metric-actor/dims";
import { requireKey } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { actor, hub } from "../lib/registry";
import type { AppEnv } from "../lib/types";
import { onlyParams } from "../lib/validate";

/** Streams asked at once. */
const CONCURRENCY = 8;

export const metrics = new Hono<AppEnv>();

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

metrics.get("/v1/metrics", requireKey("read"), onlyParams("dim_window"), async (c) => {
  const tenant = c.get("grant").tenantId;
  const { METRICS_MAX_SERIES: maxSeries, METRICS_MAX_BREAKDOWNS: maxBreakdowns } = c.get("config");
  const window = c.req.query("dim_window") ?? "1m";
  if (!isWindowName(window)) {
    throw new ApiError(
      "invalid_window",
      `dim_window '${window.slice(0, 16)}' is not one of ${WINDOW_NAMES.join(", ")}.`,
    );
  }
  // A prefix-limited credential scrapes only the streams its prefixes allow (core/keys.ts).
  const grant = c.get("grant");
  const records = ((await hub(c.env, tenant).records()) as StreamRecord[]).filter((r) =>
    streamAllowed(grant, r.entry.name),
  );
  const streams = records.map((r) => ({
    name: r.entry.name,
    windows: r.windows,
    counters: r.counters,
    last_event_at: r.last_event_at,
  }));
  // Whole streams within the breakdown budget, in name order; the rest are counted.
  const asked: StreamRecord[] = [];
  let budget = maxBreakdowns;
  let unavailable = 0;
  for (const r of records) {
    const n = r.breakdowns?.length ?? 0;
    if (n === 0) continue;
    if (n <= budget) {
      asked.push(r);
      budget -= n;
    } else unavailable += n;
  }
  const dims: DimFigures[] = [];
  const worker = async () => {
    for (let r = asked.shift(); r; r = asked.shift()) {
      const name = r.entry.name;
      try {
        for (const b of (await actor(c.env, tenant, name).breakdownFigures(window)) as BreakdownFigures[]) {
          dims.push({ stream: name, window, key: b.keys.join(","), value: b.values.join(","), figures: b.figures });
        }
      } catch (err) {
        // The stream-level figures are still served; the page says how many breakdowns are missing.
        unavailable += r.breakdowns?.length ?? 0;
        console.error(`edgepulse: metrics breakdowns of ${name} failed: ${(err as Error).name}`);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  dims.sort((a, b) => cmp(a.stream, b.stream) || cmp(a.key, b.key) || cmp(a.value, b.value));
  const format = negotiate(c.req.header("accept"));
  const page = render(families(streams, dims), format, maxSeries, unavailable);
  return c.body(page.body, 200, {
    "content-type": CONTENT_TYPES[format],
    "cache-control": "no-store",
    "x-edgepulse-series": String(page.series),
    "x-edgepulse-series-dropped": String(page.dropped),
  });
});
