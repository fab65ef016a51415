/**
 * Alert rules as a Prometheus rule file (GET /v1/alerts/rules?format=prometheus), for teams that keep
 * their alerting in Prometheus: each enabled rule becomes one alerting rule over the series GET
 * /v1/metrics exposes (core/prometheus.ts), with `for`, `keep_firing_for` (Prometheus ≥ 2.42), the rule's
 * labels and an `edgepulse_rule` label. Hysteresis (resolve_threshold) is written with Prometheus' own
 * ALERTS series: once firing, the alert holds while the value is past the resolve threshold.
 *
 * The file is YAML whose every scalar is a JSON string (a valid YAML double-quoted scalar), so names,
 * label values and expressions need no further escaping.
 */
import type { AlertRule, Comparator } from "./alerts.ts";
import { escapeLabelValue, LAST_EVENT_METRIC, metricFor } from "./prometheus.ts";

/** A Prometheus duration ("1h2m3s", "250ms", "0s") for a span of ms. */
export function promDuration(ms: number): string {
  if (ms <= 0) return "0s";
  const parts: string[] = [];
  let rest = Math.round(ms);
  for (const [unit, size] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
    ["ms", 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  return parts.join("");
}

const selector = (labels: Record<string, string>) =>
  `{${Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabelValue(v)}"`)
    .join(",")}}`;

/** The PromQL that holds exactly when the rule's condition does (see the module comment for hysteresis). */
export function ruleExpr(rule: AlertRule): string {
  if (rule.kind === "no_data") {
    const sel = selector({ stream: rule.stream });
    return `time() - ${LAST_EVENT_METRIC}${sel} > ${rule.no_data_ms / 1000}`;
  }
  const m = metricFor(rule.aggregate);
  const series = `${m.name}${selector({ stream: rule.stream, window: rule.window, ...(m.percentile ? { percentile: m.percentile } : {}) })}`;
  const cmp = (op: Comparator, t: number) => `${series} ${op} ${t}`;
  const trigger = cmp(rule.comparator, rule.threshold);
  if (rule.resolve_threshold === null || rule.resolve_threshold === rule.threshold) return trigger;
  const firing = `ALERTS${selector({ alertname: rule.name, alertstate: "firing", edgepulse_rule: rule.id })}`;
  return `${trigger} or (${cmp(rule.comparator, rule.resolve_threshold)} and on() ${firing})`;
}

const q = (s: string) => JSON.stringify(s);

/** A rule label key as a Prometheus label name: [a-zA-Z_][a-zA-Z0-9_]*, not in the reserved __ space. */
export function labelName(key: string): string {
  const s = key.replace(/[^a-zA-Z0-9_]/g, "_").replace(/^__+/, "_");
  return /^[0-9]/.test(s) ? `_${s}` : s;
}

/** The rule file: one group per tenant, the enabled rules in the order given. */
export function prometheusRuleFile(rules: AlertRule[], group: string): string {
  const lines = ["groups:", `  - name: ${q(group)}`, "    rules:"];
  const enabled = rules.filter((r) => r.enabled);
  if (enabled.length === 0) lines[2] = "    rules: []";
  for (const r of enabled) {
    lines.push(`      - alert: ${q(r.name)}`);
    lines.push(`        expr: ${q(ruleExpr(r))}`);
    if (r.for_ms > 0) lines.push(`        for: ${q(promDuration(r.for_ms))}`);
    if (r.keep_firing_for_ms > 0) lines.push(`        keep_firing_for: ${q(promDuration(r.keep_firing_for_ms))}`);
    lines.push("        labels:");
    for (const [k, v] of Object.entries(r.labels)) lines.push(`          ${q(labelName(k))}: ${q(v)}`);
    lines.push(`          "edgepulse_rule": ${q(r.id)}`);
    const what =
      r.kind === "no_data"
        ? `no event on ${r.stream} for ${promDuration(r.no_data_ms)}`
        : `${r.aggregate} of ${r.stream} over ${r.window} ${r.comparator} ${r.threshold}`;
    lines.push("        annotations:");
    lines.push(`          "summary": ${q(r.name)}`);
    lines.push(`          "description": ${q(`${what} (value {{ $value }})`)}`);
  }
  return `${lines.join("\n")}\n`;
}
