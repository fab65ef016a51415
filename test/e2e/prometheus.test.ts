/**
 * GET /v1/metrics and the rule export against real Prometheus tools: `promtool check metrics` and
 * `promtool check rules` on what the stack serves, and a real Prometheus (Debian's 2.42, `apt-get install
 * prometheus`) that scrapes `npm start`'s stack with a tenant's read key as bearer token, evaluates the
 * exported alert rules, and answers PromQL with the values the API reports.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createTestDatabase } from "../support/pg";
import { createTenant, freePort, type Keys, type Stack, startStack } from "../support/stack";

const PROMETHEUS = process.env.PROMETHEUS_PATH ?? "/usr/bin/prometheus";
const PROMTOOL = process.env.PROMTOOL_PATH ?? "/usr/bin/promtool";
const STREAM = "checkout.completed";

let stack: Stack;
let keys: Keys;
let other: Keys;

const api = (path: string, key: string, init: RequestInit = {}) =>
  fetch(`${stack.url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...init.headers },
  });

function promtool(args: string[], input?: string) {
  const r = spawnSync(PROMTOOL, args, { input, encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

beforeAll(async () => {
  for (const bin of [PROMETHEUS, PROMTOOL]) {
    if (!existsSync(bin)) throw new Error(`${bin} not found: apt-get install -y prometheus`);
  }
  const databaseUrl = await createTestDatabase("edgepulse_test_prometheus");
  stack = await startStack({ extraEnv: { DATABASE_URL: databaseUrl } });
  keys = await createTenant(stack, "prom");
  other = await createTenant(stack, "prom-other");
  // A declared dimension set first: sets aggregate the events accepted from then on.
  const config = await api(`/v1/streams/${STREAM}/config`, keys.admin, {
    method: "PUT",
    body: JSON.stringify({ dimension_sets: [["country", "plan"]] }),
  });
  expect(config.status).toBe(200);
  const now = Date.now();
  const events = Array.from({ length: 40 }, (_, i) => ({
    id: `e${i}`,
    name: STREAM,
    ts: now - i * 100,
    value: i + 1,
    user: `u${i % 7}`,
    dims: { country: i % 4 === 0 ? "FR" : "DE", plan: i % 2 ? "pro" : 'say "hi"\n' },
  }));
  events.push({ ...events[0], id: "late", ts: now - 3 * 3_600_000 });
  const res = await api("/v1/events", keys.ingest, { method: "POST", body: JSON.stringify(events) });
  expect(await res.json()).toMatchObject({ accepted: 40, rejected: [{ code: "too_late" }] });
  await api("/v1/events", other.ingest, { method: "POST", body: JSON.stringify([{ name: "other.secret" }]) });
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

/** The page once the tenant's hub has every stream's record (it is updated within about a second). */
async function scrape(key: string, accept?: string, query = ""): Promise<{ body: string; type: string | null }> {
  let out = { body: "", type: null as string | null };
  await vi.waitFor(
    async () => {
      const res = await fetch(`${stack.url}/v1/metrics${query}`, {
        headers: { authorization: `Bearer ${key}`, ...(accept ? { accept } : {}) },
      });
      expect(res.status).toBe(200);
      out = { body: await res.text(), type: res.headers.get("content-type") };
      expect(out.body).toMatch(/edgepulse_events_accepted_total\{stream="[^"]+"\} [1-9]/);
    },
    { timeout: 15_000, interval: 100 },
  );
  return out;
}

describe("GET /v1/metrics", () => {
  it("serves the text format 0.0.4 that promtool check metrics accepts, with the API's figures", async () => {
    const page = await scrape(keys.read);
    expect(page.type).toBe("text/plain; version=0.0.4; charset=utf-8");
    const check = promtool(["check", "metrics"], page.body);
    expect(check.out).toBe("");
    expect(check.status).toBe(0);
    const live = (await (await api(`/v1/streams/${STREAM}?window=1h`, keys.read)).json()) as {
      windows: { "1h": { count: number; p95: number; distinct_users: number } };
      counters: { accepted: number };
    };
    expect(page.body).toContain(`edgepulse_events_accepted_total{stream="${STREAM}"} ${live.counters.accepted}\n`);
    expect(page.body).toContain(`edgepulse_events_rejected_total{stream="${STREAM}",code="too_late"} 1\n`);
    expect(page.body).toContain(`edgepulse_window_events{stream="${STREAM}",window="1h"} 40\n`);
    expect(page.body).toContain(
      `edgepulse_window_value{stream="${STREAM}",window="1h",percentile="p95"} ${live.windows["1h"].p95}\n`,
    );
    // Each key seen and the declared set, broken down over the dim_window (1m by default).
    expect(page.body).toContain(
      `edgepulse_dim_window_events{stream="${STREAM}",window="1m",dim_key="country",dim_value="FR"} 10\n`,
    );
    expect(page.body).toContain(
      `edgepulse_dim_window_events{stream="${STREAM}",window="1m",dim_key="country",dim_value="DE"} 30\n`,
    );
    expect(page.body).toContain(
      `edgepulse_dim_window_events{stream="${STREAM}",window="1m",dim_key="plan",dim_value="say \\"hi\\"\\n"} 20\n`,
    );
    expect(page.body).toContain(
      `edgepulse_dim_window_events{stream="${STREAM}",window="1m",dim_key="country,plan",dim_value="FR,say \\"hi\\"\\n"} 10\n`,
    );
    // The same groups and figures as the query API over the same live window.
    const q = await api("/v1/query", keys.read, {
      method: "POST",
      body: JSON.stringify({
        stream: STREAM,
        measures: ["count", "p95", "distinct_users"],
        group_by: ["country"],
        range: { window: "1m" },
      }),
    });
    const answer = (await q.json()) as { rows: Array<[string, number, number, number]> };
    const groups = answer.rows.filter((r) => r[0] !== "__none__");
    expect(groups.length).toBe(2);
    for (const [country, count, p95, users] of groups) {
      const labels = `stream="${STREAM}",window="1m",dim_key="country",dim_value="${country}"`;
      expect(page.body).toContain(`edgepulse_dim_window_events{${labels}} ${count}\n`);
      expect(page.body).toContain(`edgepulse_dim_window_value{${labels},percentile="p95"} ${p95}\n`);
      expect(page.body).toContain(`edgepulse_dim_window_distinct_users{${labels}} ${users}\n`);
    }
    expect(page.body).not.toContain("other.secret");
    expect(page.body).toMatch(/^edgepulse_scrape_series_dropped 0$/m);
  });

  it("serves OpenMetrics when asked, ending in # EOF", async () => {
    const page = await scrape(keys.read, "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5");
    expect(page.type).toBe("application/openmetrics-text; version=1.0.0; charset=utf-8");
    expect(page.body).toContain("# TYPE edgepulse_events_accepted counter\n");
    expect(page.body.endsWith("# EOF\n")).toBe(true);
  });

  it("needs a read key of the tenant, and shows only that tenant's streams", async () => {
    expect((await fetch(`${stack.url}/v1/metrics`)).status).toBe(401);
    const ingest = await api("/v1/metrics", keys.ingest);
    expect(ingest.status).toBe(403);
    expect(((await ingest.json()) as { error: { code: string } }).error.code).toBe("insufficient_scope");
    const theirs = await scrape(other.read);
    expect(theirs.body).toContain('stream="other.secret"');
    expect(theirs.body).not.toContain(STREAM);
    const bad = await api("/v1/metrics?dim_window=2m", keys.read);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("invalid_window");
  });
});

describe("alert rules as a Prometheus rule file", () => {
  it("exports rules promtool check rules accepts", async () => {
    const rules = [
      {
        name: "Busy checkout",
        stream: STREAM,
        aggregate: "count",
        window: "1h",
        threshold: 5,
        labels: { team: "pay" },
      },
      { name: "Quiet checkout", stream: STREAM, aggregate: "count", window: "1h", threshold: 1000 },
      {
        name: "Slow checkout",
        stream: STREAM,
        aggregate: "p95",
        window: "5m",
        threshold: 800,
        resolve_threshold: 600,
        for: "1m",
        keep_firing_for: "30s",
      },
      { name: "Checkout silent", stream: STREAM, kind: "no_data", no_data: "10m" },
    ];
    for (const r of rules) {
      const res = await api("/v1/alerts/rules", keys.admin, { method: "POST", body: JSON.stringify(r) });
      expect(res.status).toBe(201);
    }
    const res = await api("/v1/alerts/rules?format=prometheus", keys.read);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/yaml; charset=utf-8");
    const file = await res.text();
    const dir = mkdtempSync(join(tmpdir(), "edgepulse-rules-"));
    writeFileSync(join(dir, "rules.yml"), file);
    const check = promtool(["check", "rules", join(dir, "rules.yml")]);
    expect(check.out).toContain("SUCCESS: 4 rules found");
    expect(check.status).toBe(0);
    const bad = await api("/v1/alerts/rules?format=xml", keys.read);
    expect(bad.status).toBe(400);
  });
});

describe("a real Prometheus", () => {
  let prometheus: ChildProcess | undefined;
  let promUrl: string;

  afterAll(() => {
    prometheus?.kill("SIGKILL");
  });

  async function promql(query: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(query)}`);
    const body = (await res.json()) as { status: string; data: { result: [] } };
    expect(body.status).toBe("success");
    return body.data.result;
  }

  it("scrapes the stack with a bearer token, answers PromQL with the API's values, and fires the exported rules", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgepulse-prometheus-"));
    const rules = await (await api("/v1/alerts/rules?format=prometheus", keys.read)).text();
    writeFileSync(join(dir, "rules.yml"), rules);
    writeFileSync(join(dir, "read-key"), keys.read);
    const target = new URL(stack.url).host;
    // The README's scrape job: one job per tenant, its read key in a credentials file.
    writeFileSync(
      join(dir, "prometheus.yml"),
      [
        "global:",
        "  scrape_interval: 1s",
        "  evaluation_interval: 1s",
        "rule_files:",
        `  - ${JSON.stringify(join(dir, "rules.yml"))}`,
        "scrape_configs:",
        "  - job_name: edgepulse-prom",
        "    metrics_path: /v1/metrics",
        "    params:",
        "      dim_window: [1h]",
        "    authorization:",
        "      type: Bearer",
        `      credentials_file: ${JSON.stringify(join(dir, "read-key"))}`,
        "    static_configs:",
        `      - targets: [${JSON.stringify(target)}]`,
      ].join("\n"),
    );
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    const log: string[] = [];
    prometheus = spawn(
      PROMETHEUS,
      [
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    prometheus.stderr?.on("data", (d: Buffer) => log.push(d.toString()));
    try {
      // Scraped and parsed (Prometheus asks for OpenMetrics first): the target is up with our series.
      await vi.waitFor(
        async () => {
          const up = await promql('up{job="edgepulse-prom"}');
          expect(up.map((r) => r.value[1])).toEqual(["1"]);
          expect(await promql(`edgepulse_events_accepted_total{stream="${STREAM}"}`)).toHaveLength(1);
        },
        { timeout: 60_000, interval: 250 },
      );
      const live = (await (await api(`/v1/streams/${STREAM}?window=1h`, keys.read)).json()) as {
        windows: { "1h": { count: number; p95: number; distinct_users: number } };
        counters: { accepted: number };
      };
      const value = async (q: string) => (await promql(q)).map((r) => Number(r.value[1]));
      expect(await value(`edgepulse_events_accepted_total{stream="${STREAM}"}`)).toEqual([live.counters.accepted]);
      expect(await value(`edgepulse_window_events{stream="${STREAM}",window="1h"}`)).toEqual([40]);
      expect(await value(`edgepulse_window_value{stream="${STREAM}",window="1h",percentile="p95"}`)).toEqual([
        live.windows["1h"].p95,
      ]);
      expect(await value(`edgepulse_window_distinct_users{stream="${STREAM}",window="1h"}`)).toEqual([
        live.windows["1h"].distinct_users,
      ]);
      expect(
        await value(`sum by (dim_key) (edgepulse_dim_window_events{stream="${STREAM}",window="1h",dim_key="country"})`),
      ).toEqual([40]);
      // The exported rules run in Prometheus: the busy rule fires (no `for`), the quiet one does not.
      await vi.waitFor(
        async () => {
          const res = await fetch(`${promUrl}/api/v1/alerts`);
          const body = (await res.json()) as {
            data: { alerts: Array<{ labels: Record<string, string>; state: string }> };
          };
          const firing = body.data.alerts.filter((a) => a.state === "firing").map((a) => a.labels.alertname);
          expect(firing).toEqual(["Busy checkout"]);
          expect(body.data.alerts.find((a) => a.labels.alertname === "Busy checkout")?.labels.team).toBe("pay");
        },
        { timeout: 30_000, interval: 250 },
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\nprometheus log:\n${log.join("").slice(-3000)}`);
    }
  });
});
