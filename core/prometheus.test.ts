import { describe, expect, it } from "vitest";
import type { Figures } from "./aggregate.ts";
import type { AlertRule } from "./alerts.ts";
import { escapeLabelValue, families, metricFor, negotiate, render, type StreamFigures } from "./prometheus.ts";
import { labelName, promDuration, prometheusRuleFile, ruleExpr } from "./prometheus-rules.ts";

const fig = (count: number, extra: Partial<Figures> = {}): Figures => ({
  count,
  rate: count / 60,
  value_count: count,
  sum: count * 10,
  min: 1,
  max: 20,
  mean: 10,
  p50: 9,
  p90: 18,
  p95: 19,
  p99: 20,
  distinct_users: 3,
  ...extra,
});

const stream = (name: string, count: number, extra: Partial<Figures> = {}): StreamFigures => ({
  name,
  windows: { "1m": fig(count, extra), "5m": fig(count, extra), "15m": fig(count, extra), "1h": fig(count, extra) },
  counters: { accepted: count, duplicates: 2, late: 1, future: 0, rejected: { too_late: 1, invalid_value: 3 } },
  last_event_at: 1_795_000_000_500,
});

/** Parses a text page into "name{labels}" → value, and the TYPE of each family. */
function parse(body: string) {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of body.trim().split("\n")) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) types.set(t[1], t[2]);
    if (line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    samples.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return { samples, types };
}

describe("exposition", () => {
  it("negotiates OpenMetrics only when the scraper asks for it", () => {
    expect(negotiate("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")).toBe("openmetrics");
    expect(negotiate("text/plain;version=0.0.4")).toBe("text");
    expect(negotiate(undefined)).toBe("text");
    expect(negotiate("*/*")).toBe("text");
  });

  it("writes counters, window gauges and quantiles per stream, with HELP and TYPE once per family", () => {
    const page = render(families([stream("b.s", 5), stream("a.s", 7)], []), "text", 10_000);
    const { samples, types } = parse(page.body);
    expect(samples.get('edgepulse_events_accepted_total{stream="a.s"}')).toBe(7);
    expect(samples.get('edgepulse_events_duplicate_total{stream="b.s"}')).toBe(2);
    expect(samples.get('edgepulse_events_rejected_total{stream="a.s",code="invalid_value"}')).toBe(3);
    expect(samples.get('edgepulse_events_late_total{stream="a.s"}')).toBe(1);
    expect(samples.get('edgepulse_window_events{stream="a.s",window="5m"}')).toBe(7);
    expect(samples.get('edgepulse_window_value{stream="b.s",window="1h",percentile="p95"}')).toBe(19);
    expect(samples.get('edgepulse_window_distinct_users{stream="a.s",window="1m"}')).toBe(3);
    expect(samples.get('edgepulse_stream_last_event_timestamp_seconds{stream="a.s"}')).toBe(1_795_000_000.5);
    expect(types.get("edgepulse_events_accepted_total")).toBe("counter");
    expect(types.get("edgepulse_window_value")).toBe("gauge");
    for (const name of types.keys()) {
      expect(page.body.match(new RegExp(`^# TYPE ${name} `, "gm"))).toHaveLength(1);
      expect(page.body.match(new RegExp(`^# HELP ${name} `, "gm"))).toHaveLength(1);
    }
    // Streams in name order; each family's samples follow its TYPE line, families never interleave.
    expect(page.body.indexOf('accepted_total{stream="a.s"}')).toBeLessThan(page.body.indexOf('{stream="b.s"}'));
    expect(page.dropped).toBe(0);
    expect(samples.get("edgepulse_scrape_series")).toBe(page.series);
    expect(page.series).toBe(samples.size - 4);
  });

  it("leaves out figures that are null (no event carried a value) instead of writing NaN", () => {
    const none = { sum: null, min: null, max: null, mean: null, p50: null, p90: null, p95: null, p99: null };
    const { samples } = parse(render(families([stream("x.s", 4, none)], []), "text", 10_000).body);
    expect(samples.get('edgepulse_window_events{stream="x.s",window="1m"}')).toBe(4);
    expect([...samples.keys()].filter((k) => k.startsWith("edgepulse_window_value"))).toEqual([]);
    expect([...samples.values()].some(Number.isNaN)).toBe(false);
  });

  it("escapes label values (backslash, quote, line feed)", () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    const dims = [{ stream: "s.s", window: "1m" as const, key: "page", value: 'say "hi"\n\\', figures: fig(1) }];
    const body = render(families([stream("s.s", 1)], dims), "text", 10_000).body;
    expect(body).toContain('dim_key="page",dim_value="say \\"hi\\"\\n\\\\"} 1');
    expect(body.split("\n").every((l) => !l.includes("\r"))).toBe(true);
  });

  it("OpenMetrics: counter families named without _total, samples with it, and # EOF last", () => {
    const body = render(families([stream("a.s", 7)], []), "openmetrics", 10_000).body;
    expect(body).toContain("# TYPE edgepulse_events_accepted counter\n");
    expect(body).toContain('edgepulse_events_accepted_total{stream="a.s"} 7\n');
    expect(body).not.toContain("# TYPE edgepulse_events_accepted_total");
    expect(body.endsWith("# EOF\n")).toBe(true);
  });

  it("keeps to the series budget: dimension series go first, and the page says how many it left off", () => {
    const dims = Array.from({ length: 50 }, (_, i) => ({
      stream: "a.s",
      window: "1m" as const,
      key: "country",
      value: `c${i}`,
      figures: fig(i + 1),
    }));
    const all = families([stream("a.s", 7)], dims);
    const full = render(all, "text", 1_000_000);
    const streamOnly = render(families([stream("a.s", 7)], []), "text", 1_000_000).series;
    const budget = streamOnly + 5;
    const page = render(all, "text", budget, 2);
    const { samples } = parse(page.body);
    expect(page.series).toBe(budget);
    expect(page.dropped).toBe(full.series - budget);
    expect(samples.get("edgepulse_scrape_series_dropped")).toBe(full.series - budget);
    expect(samples.get("edgepulse_scrape_series_limit")).toBe(budget);
    expect(samples.get("edgepulse_scrape_breakdowns_unavailable")).toBe(2);
    // Every stream-level series is kept (they come first); only 5 dimension series fit.
    expect(samples.get('edgepulse_events_accepted_total{stream="a.s"}')).toBe(7);
    expect([...samples.keys()].filter((k) => k.startsWith("edgepulse_dim_"))).toHaveLength(5);
    expect(samples.size - 4).toBe(budget);
  });
});

const rule = (over: Partial<AlertRule>): AlertRule => ({
  id: "rule_1",
  name: "Checkout slow",
  stream: "checkout.completed",
  kind: "threshold",
  aggregate: "p95",
  window: "5m",
  comparator: ">",
  threshold: 800,
  resolve_threshold: null,
  for_ms: 90_000,
  keep_firing_for_ms: 0,
  no_data_ms: 0,
  labels: {},
  targets: [],
  enabled: true,
  created_at: 0,
  updated_at: 0,
  ...over,
});

describe("rule export", () => {
  it("writes Prometheus durations", () => {
    expect(promDuration(0)).toBe("0s");
    expect(promDuration(90_000)).toBe("1m30s");
    expect(promDuration(3_600_250)).toBe("1h250ms");
    expect(promDuration(2 * 86_400_000 + 1000)).toBe("2d1s");
  });

  it("maps every aggregate to the metric GET /v1/metrics exposes", () => {
    expect(metricFor("p99")).toEqual({ name: "edgepulse_window_value", percentile: "p99" });
    expect(metricFor("count")).toEqual({ name: "edgepulse_window_events" });
    expect(metricFor("distinct_users")).toEqual({ name: "edgepulse_window_distinct_users" });
    expect(ruleExpr(rule({}))).toBe(
      'edgepulse_window_value{stream="checkout.completed",window="5m",percentile="p95"} > 800',
    );
    expect(ruleExpr(rule({ kind: "no_data", no_data_ms: 300_000 }))).toBe(
      'time() - edgepulse_stream_last_event_timestamp_seconds{stream="checkout.completed"} > 300',
    );
  });

  it("writes hysteresis with the ALERTS series: once firing, holds while past the resolve threshold", () => {
    expect(
      ruleExpr(rule({ aggregate: "rate", window: "1m", comparator: "<", threshold: 5, resolve_threshold: 8 })),
    ).toBe(
      'edgepulse_window_rate_per_second{stream="checkout.completed",window="1m"} < 5 or ' +
        '(edgepulse_window_rate_per_second{stream="checkout.completed",window="1m"} < 8 and on() ' +
        'ALERTS{alertname="Checkout slow",alertstate="firing",edgepulse_rule="rule_1"})',
    );
  });

  it("leaves out disabled rules and makes label keys valid Prometheus label names", () => {
    const file = prometheusRuleFile(
      [
        rule({ labels: { "team.name": "pay", "9x": "y", __reserved: "z" }, keep_firing_for_ms: 30_000 }),
        rule({ id: "rule_2", name: "off", enabled: false }),
      ],
      "edgepulse t1",
    );
    expect(file).toContain('- alert: "Checkout slow"');
    expect(file).not.toContain('"off"');
    expect(file).toContain('for: "1m30s"');
    expect(file).toContain('keep_firing_for: "30s"');
    expect(file).toContain('"team_name": "pay"');
    expect(file).toContain('"_9x": "y"');
    expect(file).toContain('"_reserved": "z"');
    expect(labelName("ok_name")).toBe("ok_name");
    expect(prometheusRuleFile([], "g")).toBe('groups:\n  - name: "g"\n    rules: []\n');
  });
});
