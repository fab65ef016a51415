/**
 * The Grafana provisioning under grafana/, tested without a Grafana: every PostgreSQL panel and variable
 * query is expanded the way Grafana expands it (test/support/grafana.ts) and run, as the read-only role,
 * against history written through the project's own write path at a fixed clock; every PromQL expression
 * is parsed by promtool; the provisioning YAML is read and cross-checked with the dashboards.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { drizzle } from "drizzle-orm/node-postgres";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { Accumulator, type Figures } from "../../core/aggregate";
import { nearestRank } from "../../core/ddsketch";
import { DimState } from "../../core/dims";
import { encodeRegisters, PeriodHll } from "../../core/hll";
import { families, render, type StreamFigures } from "../../core/prometheus";
import { WINDOW_NAMES } from "../../core/window";
import {
  type DimPeriodInsert,
  type MinutePeriod,
  mergePeriods,
  type Period,
  precomputed,
  upsertDimPeriods,
  upsertMinutesMergingUsers,
} from "../../db/history";
import { type Db, ensurePartitions, rollup } from "../../db/maintenance";
import { metricsDimMinute } from "../../db/schema";
import { ROOT } from "../../tools/paths";
import {
  expandPostgres,
  expandPromQL,
  goFloat,
  interpolateMacros,
  type PanelQuery,
  parseInterval,
  replaceVariables,
  rfc3339Nano,
  sqlInterpolate,
  type Variable,
  variableNames,
} from "../support/grafana";
import { createTestDatabase, PG_BASE } from "../support/pg";

const DB_NAME = "edgepulse_test_grafana";
const GRAFANA = join(ROOT, "grafana");
const MINUTE = 60_000;
const HOUR = 3_600_000;
/** The fixed clock: history is three hours of minutes before it. */
const NOW = Date.UTC(2026, 10, 22, 12, 0, 0);
const START = NOW - 3 * HOUR;
const DAY_START = Date.UTC(2026, 10, 22);
const GRAINS = ["minute", "hour", "day"] as const;
type Grain = (typeof GRAINS)[number];

// ---------------------------------------------------------------------------------------------------------
// Dashboards and provisioning, as Grafana reads them.

interface DsRef {
  type: string;
  uid: string;
}
interface Target {
  refId: string;
  datasource: DsRef;
  rawSql?: string;
  format?: string;
  expr?: string;
  legendFormat?: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  datasource?: DsRef;
  targets?: Target[];
}
interface TemplateVar {
  type: string;
  name: string;
  query: string;
  datasource?: DsRef;
  current?: { value: string };
  multi?: boolean;
  includeAll?: boolean;
}
interface Dashboard {
  file: string;
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: TemplateVar[] };
}

const readYaml = (path: string) => parseYaml(readFileSync(path, "utf8"));
const datasourcesFile = join(GRAFANA, "provisioning/datasources/edgepulse.yaml");
const providersFile = join(GRAFANA, "provisioning/dashboards/edgepulse.yaml");

/** Grafana's interpolation of provisioning files: $NAME in braces, from the environment. */
const placeholder = (name: string) => `\${${name}}`;
const withEnv = (text: string, env: Record<string, string>) =>
  text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => env[name] ?? "");

/** The dashboards the file provider loads: its path, with EDGEPULSE_GRAFANA_DIR pointing at grafana/. */
function loadDashboards(): Dashboard[] {
  const providers = readYaml(providersFile) as { providers: Array<{ options: { path: string } }> };
  const dir = withEnv(providers.providers[0].options.path, { EDGEPULSE_GRAFANA_DIR: GRAFANA });
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => ({ file: f, ...(JSON.parse(readFileSync(join(dir, f), "utf8")) as Omit<Dashboard, "file">) }));
}

const dashboards = loadDashboards();
const byUid = (uid: string) => dashboards.find((d) => d.uid === uid) as Dashboard;
const WEB_SHOP = byUid("edgepulse-web-shop");
const MY_APP = byUid("edgepulse-my-app");

const variable = (d: Dashboard, name: string) => d.templating.list.find((v) => v.name === name) as TemplateVar;
const constant = (d: Dashboard, name: string) => variable(d, name).query;
const panel = (d: Dashboard, title: string) => {
  const p = d.panels.find((x) => x.title === title);
  if (!p) throw new Error(`${d.file}: no panel "${title}"`);
  return p;
};
const isPg = (ds: DsRef | undefined) => ds?.uid === "edgepulse-postgres";
const isProm = (ds: DsRef | undefined) => ds?.uid === "edgepulse-prometheus";
const pgTargets = (d: Dashboard) =>
  d.panels.flatMap((p) => (p.targets ?? []).filter((t) => isPg(t.datasource)).map((t) => ({ panel: p, target: t })));
const promTargets = (d: Dashboard) =>
  d.panels.flatMap((p) => (p.targets ?? []).filter((t) => isProm(t.datasource)).map((t) => ({ panel: p, target: t })));
const pgVariables = (d: Dashboard) => d.templating.list.filter((v) => v.type === "query" && isPg(v.datasource));

/** The dashboard's variables at their defaults (constants, custom and query variables' saved current values). */
function defaults(d: Dashboard, over: Record<string, string> = {}): Record<string, Variable> {
  const out: Record<string, Variable> = {};
  for (const v of d.templating.list) {
    const value = v.type === "constant" ? v.query : (v.current?.value ?? "");
    out[v.name] = { value: over[v.name] ?? value, multi: v.multi ?? false, includeAll: v.includeAll ?? false };
  }
  return out;
}

function panelQuery(
  d: Dashboard,
  o: { grain?: Grain; intervalMs?: number; from?: number; to?: number; vars?: Record<string, string> } = {},
): PanelQuery {
  const grain = o.grain ?? "minute";
  return {
    range: { from: new Date(o.from ?? (grain === "day" ? DAY_START : START)), to: new Date(o.to ?? NOW) },
    intervalMs: o.intervalMs ?? MINUTE,
    variables: defaults(d, { grain, ...o.vars }),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Demo history, written through db/history.ts (the actors' flush and the cron's rollup) at the fixed clock.

interface Ev {
  stream: string;
  ts: number;
  value?: number;
  user: string;
  dims?: Record<string, string>;
}

function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const COUNTRIES = ["DE", "US", "FR", "GB", "JP", "BR", "IN", "NL", "SE", "ES"];
const PAGES = ["/", "/search", "/product", "/cart", "/checkout"];

/** tools/demo.ts's web shop: visits of page views, some carts, fewer checkouts and orders, rare failed payments. */
function webShopMinute(rand: () => number, minute: number): Ev[] {
  const out: Ev[] = [];
  const visits = 6 + Math.floor(rand() * 10);
  const value = (median: number) => Math.round(median * Math.exp(rand() * 1.6 - 0.8) * 10) / 10;
  for (let v = 0; v < visits; v++) {
    const user = `u_${Math.floor(rand() * 400)}`;
    const country = COUNTRIES[Math.floor(rand() * rand() * COUNTRIES.length)];
    const ts = () => minute + Math.floor(rand() * MINUTE);
    for (let i = 0; i < 1 + (v % 4); i++) {
      out.push({ stream: "page.view", ts: ts(), value: value(180), user, dims: { country, page: PAGES[i] } });
    }
    if (rand() < 0.3) out.push({ stream: "cart.add", ts: ts(), value: value(40), user, dims: { country } });
    if (rand() < 0.1) {
      out.push({ stream: "checkout.completed", ts: ts(), value: value(650), user, dims: { country } });
      out.push({ stream: "order.amount", ts: ts(), value: value(55), user, dims: { country } });
    }
    if (rand() < 0.05) out.push({ stream: "payment.failed", ts: ts(), user, dims: { country } });
  }
  return out;
}

/** The README quick start's my-app: checkouts with a value and a user, no dimensions. */
function myAppMinute(rand: () => number, minute: number): Ev[] {
  return Array.from({ length: 2 + Math.floor(rand() * 6) }, () => ({
    stream: "checkout.completed",
    ts: minute + Math.floor(rand() * MINUTE),
    value: Math.round(rand() * 20_000) / 100,
    user: `u_${Math.floor(rand() * 60)}`,
  }));
}

/** Another tenant, loud, on the same streams (and some of its own): a dashboard must never show any of it. */
function intruderMinute(minute: number): Ev[] {
  const out: Ev[] = [];
  for (const stream of ["page.view", "checkout.completed", "secret.stream"]) {
    for (let i = 0; i < 40; i++) {
      out.push({
        stream,
        ts: minute + i * 1000,
        value: 1e6 + i,
        user: `x_${i}`,
        dims: { country: "ZZ", secret_dim: "s" },
      });
    }
  }
  return out;
}

interface Written {
  events: Ev[];
  /** `${stream}|${bucket}` → the minute as the actor wrote it. */
  minutes: Map<string, Period>;
  /** `${stream}|${dim}|${value}|${bucket}` → the dimension minute as written. */
  dimMinutes: Map<string, Period>;
}

async function writeTenant(db: Db, tenant: string, eventsOf: (minute: number) => Ev[]): Promise<Written> {
  const events: Ev[] = [];
  for (let m = START; m < NOW; m += MINUTE) events.push(...eventsOf(m));
  const written: Written = { events, minutes: new Map(), dimMinutes: new Map() };
  for (const stream of [...new Set(events.map((e) => e.stream))]) {
    const own = events.filter((e) => e.stream === stream);
    const perMinute = new Map<number, { acc: Accumulator; hll: PeriodHll }>();
    for (const e of own) {
      const m = Math.floor(e.ts / MINUTE) * MINUTE;
      const p = perMinute.get(m) ?? { acc: new Accumulator(), hll: new PeriodHll() };
      perMinute.set(m, p);
      p.acc.addEvent(e.value);
      p.hll.addUser(e.user);
    }
    const rows: MinutePeriod[] = [...perMinute].map(([bucket, p]) => ({
      bucket,
      aggregate: p.acc.toAggregate(),
      hll: p.hll.encode(),
    }));
    await upsertMinutesMergingUsers(db, tenant, stream, rows);
    for (const r of rows) written.minutes.set(`${stream}|${r.bucket}`, r);

    // Dimension minutes as the actor packs and flushes them (durable-objects/metric-actor/dims.ts).
    const state = new DimState({ maxKeys: 32, maxValues: 1000 });
    state.apply(own.filter((e) => e.dims));
    const dimRows: DimPeriodInsert[] = [];
    for (const m of [...perMinute.keys()]) {
      const span = state.span(
        m / MINUTE,
        m / MINUTE,
        state.dims.map((d) => d.id),
      );
      for (const [dimId, groups] of span.groups) {
        for (const [vid, g] of groups) {
          const row = {
            tenantId: tenant,
            stream,
            bucket: new Date(m),
            dim: state.dims[dimId].name,
            value: state.valueOf(dimId, vid) as string,
            aggregate: g.acc.toAggregate(),
            hll: g.users.size > 0 ? encodeRegisters(g.users) : new Uint8Array([1]),
          };
          dimRows.push(row);
          written.dimMinutes.set(`${stream}|${row.dim}|${row.value}|${m}`, row);
        }
      }
    }
    if (dimRows.length) await upsertDimPeriods(db, metricsDimMinute, dimRows);
  }
  return written;
}

// ---------------------------------------------------------------------------------------------------------

const webShopRand = prng(7);
const myAppRand = prng(11);
let admin: pg.Client;
/** Connected as the read-only role of grafana/readonly-role.sql: every dashboard query runs as it. */
let ro: pg.Client;
const tenants: Record<string, Written> = {};

beforeAll(async () => {
  const url = await createTestDatabase(DB_NAME);
  admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const db = drizzle(admin);
  await ensurePartitions(db, new Date(NOW));
  tenants.webShop = await writeTenant(db, constant(WEB_SHOP, "tenant"), (m) => webShopMinute(webShopRand, m));
  tenants.myApp = await writeTenant(db, constant(MY_APP, "tenant"), (m) => myAppMinute(myAppRand, m));
  tenants.intruder = await writeTenant(db, "t_intruder", intruderMinute);
  await rollup(db);
  await admin.query(readFileSync(join(GRAFANA, "readonly-role.sql"), "utf8"));
  const roUrl = new URL(`${PG_BASE}/${DB_NAME}`);
  roUrl.username = "edgepulse_grafana";
  roUrl.password = "";
  ro = new pg.Client({ connectionString: roUrl.toString() });
  await ro.connect();
});
afterAll(async () => {
  await ro?.end();
  await admin?.end();
});

type Row = Record<string, unknown>;
const run = async (sql: string): Promise<Row[]> => (await ro.query(sql)).rows;
/** A cell as a number: numeric and bigint arrive as strings, timestamps as Dates (the time column → epoch s). */
const num = (v: unknown): number => (v instanceof Date ? v.getTime() / 1000 : Number(v));
const runPanel = (d: Dashboard, title: string, o: Parameters<typeof panelQuery>[1] = {}, refId = "A") => {
  const t = (panel(d, title).targets ?? []).find((x) => x.refId === refId) as Target;
  return run(expandPostgres(t.rawSql as string, panelQuery(d, o)));
};

const minutesOf = (w: Written, stream: string) =>
  [...w.minutes]
    .filter(([k]) => k.startsWith(`${stream}|`))
    .map(([k, p]) => ({ bucket: Number(k.split("|")[1]), period: p }))
    .sort((a, b) => a.bucket - b.bucket);
/** The stream's minutes merged per hour, as the rollup merges them. */
const hoursOf = (w: Written, stream: string) => {
  const groups = new Map<number, Period[]>();
  for (const m of minutesOf(w, stream)) {
    const h = Math.floor(m.bucket / HOUR) * HOUR;
    groups.set(h, [...(groups.get(h) ?? []), m.period]);
  }
  return [...groups].map(([bucket, parts]) => ({ bucket, period: mergePeriods(parts) }));
};
const countsPer = (events: Ev[], size: number) => {
  const out = new Map<number, number>();
  for (const e of events) {
    const b = Math.floor(e.ts / size) * size;
    out.set(b, (out.get(b) ?? 0) + 1);
  }
  return [...out].sort((a, b) => a[0] - b[0]);
};

// ---------------------------------------------------------------------------------------------------------

describe("Grafana's expansion, as emulated", () => {
  const range = { from: new Date(Date.UTC(2018, 3, 12, 18, 0)), to: new Date(Date.UTC(2018, 3, 12, 18, 5)) };

  it.each([
    ["select $__time(time_column)", 'select time_column AS "time"'],
    ["select $__timeEpoch(t)", 'select extract(epoch from t) as "time"'],
    ["WHERE $__timeFilter(time_column)", "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"],
    ["select $__timeFrom(), $__timeTo()", "select '2018-04-12T18:00:00Z', '2018-04-12T18:05:00Z'"],
    // Pre-5.3 compatibility: a "," right after $__timeGroup adds the alias.
    [
      "SELECT $__timeGroup(time_column,'5m'), value",
      'SELECT floor(extract(epoch from time_column)/300)*300 AS "time", value',
    ],
    [
      "SELECT $__timeGroup(time_column,'5m') as time, value",
      "SELECT floor(extract(epoch from time_column)/300)*300 as time, value",
    ],
    ["$__timeGroupAlias(time_column , '5m')", 'floor(extract(epoch from time_column)/300)*300 AS "time"'],
    ["GROUP BY $__timeGroup(b, 12d)", "GROUP BY floor(extract(epoch from b)/1.0368e+06)*1.0368e+06"],
    [
      "SELECT $__unixEpochGroup(time_column+time_adjustment,'5m')",
      "SELECT floor((time_column+time_adjustment)/300)*300",
    ],
    ["select $__unixEpochFilter(time)", "select time >= 1523556000 AND time <= 1523556300"],
    ["select $__unixEpochFrom(), $__unixEpochTo()", "select 1523556000, 1523556300"],
    ["select $__unixEpochNanoFrom()", "select 1523556000000000000"],
    ["SELECT $__interval, $__interval_ms", "SELECT 2m, 120000"],
    ["SELECT '-- kept' -- dropped\nFROM t /* dropped */", "SELECT '-- kept' \nFROM t "],
  ])("%s", (sql, expected) => {
    expect(interpolateMacros(sql, range, 120_000)).toBe(expected);
  });

  it("formats times and widths as Go does, and rejects what Grafana rejects", () => {
    expect(rfc3339Nano(new Date(Date.UTC(1960, 1, 1, 7, 0, 0, 500)))).toBe("1960-02-01T07:00:00.5Z");
    expect(rfc3339Nano(new Date(Date.UTC(2026, 10, 22, 9, 0, 0, 120)))).toBe("2026-11-22T09:00:00.12Z");
    expect([300, 0.02, 86400, 604800, 2592000, 1e6].map(goFloat)).toEqual([
      "300",
      "0.02",
      "86400",
      "604800",
      "2.592e+06",
      "1e+06",
    ]);
    expect([parseInterval("90s"), parseInterval("1h30m"), parseInterval("1.5h"), parseInterval("2w")]).toEqual([
      90_000,
      5_400_000,
      5_400_000,
      14 * 86_400_000,
    ]);
    expect(() => interpolateMacros("$__timeGroup(b, 0s)", range, MINUTE)).toThrow(/positive/);
    expect(() => interpolateMacros("$__timeGroup(b)", range, MINUTE)).toThrow(/needs time column and interval/);
    expect(() => interpolateMacros("$__timeBucket(b)", range, MINUTE)).toThrow(/unknown macro/);
  });

  it("interpolates variables as the browser does: single values unquoted with ' doubled, sqlstring quoted", () => {
    const vars: Record<string, Variable> = { tenant: { value: "t_a'b" }, dim: { value: `x"y'z` } };
    const scoped = { __interval: "1m", __interval_ms: 60_000 };
    expect(
      replaceVariables(
        `tenant_id = '$tenant' AND dim = \${dim:sqlstring} AND $__timeFilter(b) $__interval $__interval_ms $unknown`,
        vars,
        scoped,
        sqlInterpolate,
      ),
    ).toBe(`tenant_id = 't_a''b' AND dim = 'x\\"y''z' AND $__timeFilter(b) 1m 60000 $unknown`);
    expect(replaceVariables("IN ($s)", { s: { value: ["a", "b'c"], multi: true } }, {}, sqlInterpolate)).toBe(
      "IN ('a','b''c')",
    );
  });

  it("gives SQL PostgreSQL accepts, wide group widths included", async () => {
    const sql = interpolateMacros(
      "SELECT $__timeGroupAlias(t, 30d), $__timeFrom()::timestamptz AS f FROM (SELECT timestamptz '2026-11-22T09:00:00Z' AS t) x WHERE $__timeFilter(t)",
      { from: new Date(START), to: new Date(NOW) },
      MINUTE,
    );
    expect(sql).toContain("/2.592e+06)*2.592e+06");
    const rows = await run(sql);
    expect(rows.map((r) => [num(r.time), (r.f as Date).getTime()])).toEqual([
      [Math.floor(Date.UTC(2026, 10, 22, 9) / 2_592_000_000) * 2_592_000, START],
    ]);
  });
});

describe("dashboards on PostgreSQL", () => {
  it("every panel and variable query, at every resolution, runs as the read-only role and returns data", async () => {
    let ran = 0;
    for (const d of dashboards) {
      for (const grain of GRAINS) {
        const q = panelQuery(d, { grain });
        const queries = [
          ...pgTargets(d).map(({ panel: p, target: t }) => ({
            what: `${p.title} ${t.refId}`,
            sql: t.rawSql as string,
          })),
          ...pgVariables(d).map((v) => ({ what: `variable ${v.name}`, sql: v.query })),
        ];
        for (const { what, sql } of queries) {
          const expanded = expandPostgres(sql, q);
          const where = `${d.file} ${grain}: ${what}`;
          expect(expanded, where).not.toContain("$");
          const rows = await run(expanded).catch((err: Error) => {
            throw new Error(`${where}: ${err.message}\n${expanded}`);
          });
          expect(rows.length, where).toBeGreaterThan(0);
          const values = rows.flatMap((r) => Object.entries(r).filter(([k]) => k !== "time"));
          expect(
            values.some(([, v]) => v !== null),
            where,
          ).toBe(true);
          ran++;
        }
      }
    }
    // Both dashboards' panels (10 + 6 PostgreSQL targets) and variables (2 + 1), at three resolutions.
    expect(ran).toBe(3 * (10 + 2 + 6 + 1));
  });

  it("the stream and dimension variables list the tenant's own, and the saved defaults are among them", async () => {
    const streams = async (d: Dashboard) =>
      (await run(expandPostgres(variable(d, "stream").query, panelQuery(d)))).map((r) => r.stream);
    expect(await streams(WEB_SHOP)).toEqual([
      "cart.add",
      "checkout.completed",
      "order.amount",
      "page.view",
      "payment.failed",
    ]);
    expect(await streams(MY_APP)).toEqual(["checkout.completed"]);
    const dims = (await run(expandPostgres(variable(WEB_SHOP, "dim").query, panelQuery(WEB_SHOP)))).map((r) => r.dim);
    expect(dims).toEqual(["country", "page"]);
    expect(dims).toContain(variable(WEB_SHOP, "dim").current?.value);
    // A range no minute row starts in (as when minutes have expired) still lists them, from the hour rows.
    const noMinutes = panelQuery(WEB_SHOP, { from: START + 20_000, to: START + 50_000 });
    for (const name of ["stream", "dim"]) {
      expect((await run(expandPostgres(variable(WEB_SHOP, name).query, noMinutes))).length, name).toBe(
        name === "stream" ? 5 : 2,
      );
    }
    const minutesOnly = variable(WEB_SHOP, "stream").query.split("UNION")[0];
    expect(await run(expandPostgres(minutesOnly, noMinutes))).toEqual([]);
  });

  for (const [name, d, stream, w] of [
    ["web shop", WEB_SHOP, "page.view", () => tenants.webShop],
    ["my-app", MY_APP, "checkout.completed", () => tenants.myApp],
  ] as const) {
    describe(`${name}: the figures are the ones the write path stored`, () => {
      it(`defaults to ${stream}`, () => {
        expect(variable(d, "stream").current?.value).toBe(stream);
      });

      it("events per second: per minute, per 5 minutes, per hour row and per day row", async () => {
        const events = w().events.filter((e) => e.stream === stream);
        const title = "Events per second: $stream";
        const check = (rows: Row[], size: number, divisor: number) => {
          const expected = countsPer(events, size);
          expect(rows.map((r) => num(r.time))).toEqual(expected.map(([b]) => b / 1000));
          for (const [i, [, n]] of expected.entries()) expect(num(rows[i]["events/s"])).toBeCloseTo(n / divisor, 12);
        };
        check(await runPanel(d, title), MINUTE, 60);
        check(await runPanel(d, title, { intervalMs: 5 * MINUTE }), 5 * MINUTE, 300);
        // Hour rows with a 1-minute interval: each row is divided by its own hour, not by the interval.
        check(await runPanel(d, title, { grain: "hour" }), HOUR, 3600);
        check(await runPanel(d, title, { grain: "day", intervalMs: HOUR }), 24 * HOUR, 86_400);
        expect(await runPanel(d, "Events in range: $stream")).toEqual([{ events: String(events.length) }]);
      });

      it("percentiles and distinct users are the precomputed columns of each minute and hour row", async () => {
        for (const grain of ["minute", "hour"] as const) {
          const periods = grain === "minute" ? minutesOf(w(), stream) : hoursOf(w(), stream);
          const pct = await runPanel(d, "Value percentiles per $grain: $stream", { grain });
          expect(pct.map((r) => [num(r.time) * 1000, r.p50, r.p90, r.p95, r.p99])).toEqual(
            periods.map(({ bucket, period }) => {
              const f = precomputed(period);
              return [bucket, f.p50, f.p90, f.p95, f.p99];
            }),
          );
          const users = await runPanel(d, "Distinct users per $grain: $stream", { grain });
          expect(users.map((r) => [num(r.time) * 1000, num(r["distinct users"])])).toEqual(
            periods.map(({ bucket, period }) => [bucket, precomputed(period).distinctUsers]),
          );
        }
        // And those columns are what they claim: p95 within 1 % of the exact nearest-rank value, users ≈ exact.
        const pct = await runPanel(d, "Value percentiles per $grain: $stream");
        const users = await runPanel(d, "Distinct users per $grain: $stream");
        for (const [i, { bucket }] of minutesOf(w(), stream).entries()) {
          const evs = w().events.filter((e) => e.stream === stream && Math.floor(e.ts / MINUTE) * MINUTE === bucket);
          const values = evs.map((e) => e.value as number).sort((a, b) => a - b);
          const exact = values[nearestRank(0.95, values.length)];
          expect(Math.abs((pct[i].p95 as number) - exact)).toBeLessThanOrEqual(exact * 0.0101);
          const distinct = new Set(evs.map((e) => e.user)).size;
          expect(Math.abs(num(users[i]["distinct users"]) - distinct)).toBeLessThanOrEqual(
            Math.max(1, distinct * 0.02),
          );
        }
      });

      it("mean, min and max per interval are exact", async () => {
        const rows = await runPanel(d, "Mean, min and max value: $stream", { intervalMs: 10 * MINUTE });
        const groups = new Map<number, number[]>();
        for (const e of w().events.filter((x) => x.stream === stream)) {
          const b = Math.floor(e.ts / (10 * MINUTE)) * 10 * MINUTE;
          groups.set(b, [...(groups.get(b) ?? []), e.value as number]);
        }
        const expected = [...groups]
          .sort((a, b) => a[0] - b[0])
          .map(([b, v]) => [b / 1000, v.reduce((s, x) => s + x, 0) / v.length, Math.min(...v), Math.max(...v)]);
        const got = rows.map((r) => [num(r.time), r.mean as number, r.min, r.max]);
        expect(got.map((r) => [r[0], r[2], r[3]])).toEqual(expected.map((r) => [r[0], r[2], r[3]]));
        for (const [i, r] of got.entries()) expect(r[1]).toBeCloseTo(expected[i][1], 9);
      });

      it("events per second by stream covers every stream of the tenant and nothing else", async () => {
        const rows = await runPanel(d, "Events per second by stream");
        const totals = new Map<string, number>();
        for (const r of rows)
          totals.set(r.metric as string, (totals.get(r.metric as string) ?? 0) + num(r["events/s"]) * 60);
        const expected = new Map<string, number>();
        for (const e of w().events) expected.set(e.stream, (expected.get(e.stream) ?? 0) + 1);
        expect([...totals.keys()].sort()).toEqual([...expected.keys()].sort());
        for (const [s, n] of expected) expect(totals.get(s)).toBeCloseTo(n, 6);
      });
    });
  }

  describe("web shop: breakdowns by dimension", () => {
    const pageViews = () => tenants.webShop.events.filter((e) => e.stream === "page.view");

    it("events per second by country, per minute, match the events", async () => {
      const rows = await runPanel(WEB_SHOP, "Events per second by $dim (top 10)");
      const expected = new Map<string, number>();
      for (const e of pageViews()) {
        const k = `${Math.floor(e.ts / MINUTE) * 60}|${e.dims?.country}`;
        expected.set(k, (expected.get(k) ?? 0) + 1);
      }
      const got = new Map(rows.map((r) => [`${num(r.time)}|${r.metric}`, num(r["events/s"]) * 60]));
      expect([...got.keys()].sort()).toEqual([...expected.keys()].sort());
      for (const [k, n] of expected) expect(got.get(k)).toBeCloseTo(n, 9);
    });

    it("the top values table counts each value's events and share, most first", async () => {
      for (const grain of GRAINS) {
        const rows = await runPanel(WEB_SHOP, "Top $dim values", { grain });
        const counts = new Map<string, number>();
        for (const e of pageViews())
          counts.set(e.dims?.country as string, (counts.get(e.dims?.country as string) ?? 0) + 1);
        const total = pageViews().length;
        const expected = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
        expect(rows.map((r) => [r.value, num(r.events)])).toEqual(expected);
        for (const [i, [, n]] of expected.entries()) expect(num(rows[i]["share %"])).toBeCloseTo((100 * n) / total, 1);
      }
      const byPage = await runPanel(WEB_SHOP, "Top $dim values", { vars: { dim: "page" } });
      const pages = [...new Set(pageViews().map((e) => e.dims?.page))].sort();
      expect(pages.length).toBeGreaterThan(1);
      expect(byPage.map((r) => r.value).sort()).toEqual(pages);
    });

    it("p95 and distinct users by value are the dimension rows' precomputed columns", async () => {
      const p95 = await runPanel(WEB_SHOP, "p95 per $grain by $dim (top 5)");
      const users = await runPanel(WEB_SHOP, "Distinct users per $grain by $dim (top 5)");
      const top5 = (await runPanel(WEB_SHOP, "Top $dim values")).slice(0, 5).map((r) => r.value);
      const stored = (r: Row) =>
        tenants.webShop.dimMinutes.get(`page.view|country|${r.metric}|${num(r.time) * 1000}`) as Period;
      expect(new Set(p95.map((r) => r.metric))).toEqual(new Set(top5));
      expect(p95.length).toBeGreaterThan(100);
      for (const r of p95) expect(r.p95).toBe(precomputed(stored(r)).p95);
      for (const r of users) expect(num(r.distinct_users)).toBe(precomputed(stored(r)).distinctUsers);
      expect(users.length).toBe(p95.length);
    });
  });

  describe("tenant isolation", () => {
    it("every table read is held to the tenant variable", () => {
      for (const d of dashboards) {
        for (const sql of [
          ...pgTargets(d).map((t) => t.target.rawSql as string),
          ...pgVariables(d).map((v) => v.query),
        ]) {
          const reads = sql.match(/\b(FROM|JOIN)\s+metrics_/gi)?.length ?? 0;
          expect(reads, sql).toBeGreaterThan(0);
          expect(sql.match(/\btenant_id = '\$tenant'/g)?.length ?? 0, sql).toBe(reads);
        }
      }
    });

    it("with a tenant that has no rows, no query shows anything, though other tenants have rows in range", async () => {
      for (const d of dashboards) {
        for (const grain of GRAINS) {
          const q = panelQuery(d, { grain, vars: { tenant: "t_nobody" } });
          for (const sql of [
            ...pgTargets(d).map((t) => t.target.rawSql as string),
            ...pgVariables(d).map((v) => v.query),
          ]) {
            const rows = await run(expandPostgres(sql, q));
            const values = rows.flatMap((r) => Object.entries(r).filter(([k]) => k !== "time"));
            expect(
              values.filter(([, v]) => v !== null),
              sql,
            ).toEqual([]);
          }
        }
      }
      // The intruder's rows are there: the same query for its tenant does see them.
      const theirs = await run(
        expandPostgres(variable(WEB_SHOP, "stream").query, panelQuery(WEB_SHOP, { vars: { tenant: "t_intruder" } })),
      );
      expect(theirs.map((r) => r.stream)).toEqual(["checkout.completed", "page.view", "secret.stream"]);
    });

    it("a hostile dimension key stays inside its string literal", async () => {
      const hostile = "country' OR 'x'='x";
      const sql = expandPostgres(panel(WEB_SHOP, "Top $dim values").targets?.[0].rawSql as string, {
        ...panelQuery(WEB_SHOP, { vars: { dim: hostile } }),
      });
      expect(sql).toContain("dim = 'country'' OR ''x''=''x'");
      expect(await run(sql)).toEqual([]);
    });
  });

  describe("the read-only role", () => {
    it("reads the history tables and nothing else, and cannot write", async () => {
      expect((await ro.query("SHOW default_transaction_read_only")).rows[0].default_transaction_read_only).toBe("on");
      await expect(ro.query("SELECT * FROM rollup_state")).rejects.toMatchObject({ code: "42501" });
      await expect(ro.query("SELECT * FROM alert_events")).rejects.toMatchObject({ code: "42501" });
      await expect(ro.query("SELECT * FROM drizzle.__drizzle_migrations")).rejects.toMatchObject({ code: "42501" });
      await expect(ro.query("DELETE FROM metrics_minute WHERE tenant_id = 't_intruder'")).rejects.toMatchObject({
        code: "25006",
      });
      await ro.query("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE");
      try {
        await expect(ro.query("DELETE FROM metrics_minute WHERE tenant_id = 't_intruder'")).rejects.toMatchObject({
          code: "42501",
        });
      } finally {
        await ro.query("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY");
      }
      // Partitions created after the grants (the cron's, a week ahead) are readable through their parent.
      await ensurePartitions(drizzle(admin), new Date(NOW + 30 * 86_400_000));
      const later = new Date(NOW + 29 * 86_400_000).toISOString();
      expect((await run(`SELECT count(*)::int AS n FROM metrics_minute WHERE bucket >= '${later}'`))[0].n).toBe(0);
      // Applying the file again changes nothing.
      await admin.query(readFileSync(join(GRAFANA, "readonly-role.sql"), "utf8"));
    });
  });
});

// ---------------------------------------------------------------------------------------------------------
// PromQL: names, labels, tenant scoping, and promtool's parser.

/**
 * The /v1/metrics contract the dashboards were written to: metric → its labels (Prometheus adds job and
 * instance). The percentile gauge's label is `percentile` ("p50" … "p99") as core/prometheus.ts renders it,
 * not `quantile`; the test below renders a page with core/prometheus.ts to hold both sides to it.
 */
const WINDOW_GAUGES: Record<string, string[]> = {
  window_events: [],
  window_rate_per_second: [],
  window_value_mean: [],
  window_value: ["percentile"],
  window_distinct_users: [],
};
const METRICS: Record<string, string[]> = {
  edgepulse_events_accepted_total: ["stream"],
  edgepulse_events_duplicate_total: ["stream"],
  edgepulse_events_rejected_total: ["stream", "code"],
  edgepulse_events_late_total: ["stream"],
  ...Object.fromEntries(Object.entries(WINDOW_GAUGES).map(([k, l]) => [`edgepulse_${k}`, ["stream", "window", ...l]])),
  ...Object.fromEntries(
    Object.entries(WINDOW_GAUGES).map(([k, l]) => [
      `edgepulse_dim_${k}`,
      ["stream", "window", "dim_key", "dim_value", ...l],
    ]),
  ),
};
const TARGET_LABELS = ["job", "instance"];

function promtool(args: string[], cwd: string) {
  const r = spawnSync("/usr/bin/promtool", args, { cwd, encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe("dashboards on Prometheus", () => {
  const all = dashboards.flatMap((d) => promTargets(d).map((t) => ({ d, ...t })));

  it("use only the metrics and labels /v1/metrics exposes, each selector held to the tenant's job", () => {
    expect(all.length).toBeGreaterThanOrEqual(20);
    for (const { target } of all) {
      const expr = target.expr as string;
      const names = expr.match(/\bedgepulse_[a-z_]+/g) ?? [];
      expect(names.length, expr).toBeGreaterThan(0);
      for (const n of names) expect(Object.keys(METRICS), expr).toContain(n);
      const selectors = [...expr.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)];
      expect(selectors.length, expr).toBe(names.length);
      const available = new Set<string>(TARGET_LABELS);
      for (const [, metric, matchers] of selectors) {
        const labels = [...matchers.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)\s*"/g)].map((m) => m[1]);
        for (const l of labels) expect([...METRICS[metric], ...TARGET_LABELS], expr).toContain(l);
        expect(matchers, expr).toMatch(/(^|,\s*)job="\$prom_job"/);
        for (const l of METRICS[metric]) available.add(l);
      }
      // An aggregation keeps only its "by" labels (none without one); topk and plain selectors keep them all.
      const agg = /\b(?:sum|avg|min|max|count)\s*(?:by\s*\(([^)]*)\)\s*)?\(/.exec(expr);
      const grouped = agg ? (agg[1]?.split(",").map((s) => s.trim()) ?? []) : null;
      for (const l of grouped ?? []) expect([...available], expr).toContain(l);
      for (const [, l] of (target.legendFormat ?? "").matchAll(/\{\{\s*(\w+)\s*\}\}/g)) {
        expect(grouped ?? [...available], `${expr} legend`).toContain(l);
      }
    }
  });

  it("every selector, its variables substituted, selects series of a page core/prometheus.ts renders", () => {
    const figures = (n: number): Figures => ({
      count: n,
      rate: n / 60,
      value_count: n,
      sum: n * 10,
      min: 1,
      max: 20,
      mean: 10,
      p50: 9,
      p90: 15,
      p95: 18,
      p99: 19.5,
      distinct_users: Math.ceil(n / 2),
    });
    const page = render(
      families(
        [
          {
            name: "page.view",
            windows: Object.fromEntries(WINDOW_NAMES.map((w) => [w, figures(100)])) as StreamFigures["windows"],
            counters: { accepted: 500, duplicates: 3, late: 1, future: 0, rejected: { too_late: 1, invalid_value: 2 } },
            last_event_at: NOW,
          },
        ],
        [
          { stream: "page.view", window: "1m", key: "country", value: "DE", figures: figures(40) },
          { stream: "page.view", window: "1m", key: "page", value: "/cart", figures: figures(7) },
        ],
      ),
      "text",
      1000,
    );
    // The scrape adds the job's labels; the page carries the rest.
    const series = page.body
      .split("\n")
      .filter((l) => l && !l.startsWith("#"))
      .map((l) => {
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? /.exec(l) as RegExpExecArray;
        const labels: Record<string, string> = Object.fromEntries(
          [...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]),
        );
        labels.job = constant(WEB_SHOP, "prom_job");
        labels.instance = "edgepulse";
        return { name: m[1], labels };
      });
    let checked = 0;
    for (const { target } of promTargets(WEB_SHOP)) {
      const expr = expandPromQL(target.expr as string, {
        ...panelQuery(WEB_SHOP, { intervalMs: 15_000, vars: { window: "5m" } }),
        rateIntervalMs: 60_000,
      });
      for (const [, metric, matchers] of expr.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)) {
        const want = [...matchers.matchAll(/(\w+)\s*=\s*"([^"]*)"/g)].map((x) => [x[1], x[2]]);
        const hits = series.filter((s) => s.name === metric && want.every(([k, v]) => s.labels[k] === v));
        expect(hits.length, `${metric}{${matchers}}`).toBeGreaterThan(0);
        checked++;
      }
    }
    expect(checked).toBe(promTargets(WEB_SHOP).length);
  });

  it("every expression parses (promtool check rules), with Grafana's variables substituted", () => {
    const dir = mkdtempSync(join(tmpdir(), "edgepulse-promql-"));
    try {
      const rules = all.map(({ d, panel: p, target }, i) => ({
        record: `edgepulse_grafana:${d.uid.replaceAll("-", "_")}:${i}`,
        expr: expandPromQL(target.expr as string, {
          ...panelQuery(d, { intervalMs: 15_000, vars: { window: "5m" } }),
          rateIntervalMs: 60_000,
        }),
        labels: { panel: p.title.replace(/\$/g, "") },
      }));
      for (const r of rules) expect(r.expr).not.toContain("$");
      writeFileSync(join(dir, "rules.yml"), stringifyYaml({ groups: [{ name: "grafana", rules }] }));
      const ok = promtool(["check", "rules", "rules.yml"], dir);
      expect(ok.out).toContain(`SUCCESS: ${rules.length} rules found`);
      expect(ok.status).toBe(0);
      // The check is real: a broken expression fails it.
      writeFileSync(
        join(dir, "broken.yml"),
        stringifyYaml({
          groups: [{ name: "g", rules: [{ record: "x:y", expr: "sum(rate(edgepulse_events_accepted_total[1m])" }] }],
        }),
      );
      const bad = promtool(["check", "rules", "broken.yml"], dir);
      expect(bad.status).not.toBe(0);
      expect(bad.out).toMatch(/parse error/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the example scrape configuration is valid and has one job per dashboard, with a bearer read key", () => {
    const dir = mkdtempSync(join(tmpdir(), "edgepulse-prom-"));
    try {
      const text = readFileSync(join(GRAFANA, "prometheus/prometheus.yml"), "utf8");
      const config = parseYaml(text) as {
        scrape_configs: Array<{
          job_name: string;
          metrics_path: string;
          authorization: { type: string; credentials_file: string };
        }>;
      };
      writeFileSync(join(dir, "prometheus.yml"), text);
      mkdirSync(join(dir, "secrets"));
      for (const job of config.scrape_configs)
        writeFileSync(join(dir, job.authorization.credentials_file), "ep_read_x\n");
      const r = promtool(["check", "config", "prometheus.yml"], dir);
      expect(r.out).toContain("SUCCESS");
      expect(r.status).toBe(0);
      expect(config.scrape_configs.map((j) => j.job_name).sort()).toEqual(
        dashboards.map((d) => constant(d, "prom_job")).sort(),
      );
      for (const job of config.scrape_configs) {
        expect(job.metrics_path).toBe("/v1/metrics");
        expect(job.authorization.type).toBe("Bearer");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------------------

describe("provisioning", () => {
  const datasources = (readYaml(datasourcesFile) as { datasources: Array<{ uid: string; type: string; url: string }> })
    .datasources;

  it("provisions a PostgreSQL and a Prometheus data source, configured from the environment", () => {
    expect(readYaml(datasourcesFile).apiVersion).toBe(1);
    const postgres = datasources.find((d) => d.uid === "edgepulse-postgres");
    const prometheus = datasources.find((d) => d.uid === "edgepulse-prometheus");
    expect(postgres).toMatchObject({
      type: "grafana-postgresql-datasource",
      url: placeholder("EDGEPULSE_PG_HOST"),
      user: placeholder("EDGEPULSE_PG_USER"),
      secureJsonData: { password: placeholder("EDGEPULSE_PG_PASSWORD") },
      jsonData: {
        database: placeholder("EDGEPULSE_PG_DATABASE"),
        sslmode: placeholder("EDGEPULSE_PG_SSLMODE"),
        timeInterval: "1m",
      },
    });
    expect(prometheus).toMatchObject({ type: "prometheus", url: placeholder("EDGEPULSE_PROMETHEUS_URL") });
    expect(datasources.length).toBe(2);
  });

  it("every environment placeholder of the provisioning files is a whole value, and the README documents it", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const section = /\n### Grafana\n([\s\S]*?)(?=\n## |\n### )/.exec(readme)?.[1] ?? "";
    expect(section.length).toBeGreaterThan(500);
    const strings = (v: unknown): string[] =>
      typeof v === "string" ? [v] : v && typeof v === "object" ? Object.values(v).flatMap(strings) : [];
    const names = new Set<string>();
    for (const file of [datasourcesFile, providersFile]) {
      for (const value of strings(readYaml(file))) {
        for (const m of value.matchAll(/\$\{([A-Z_]+)\}/g)) names.add(m[1]);
        // No other "$" in a value, which Grafana would try to interpolate.
        expect(value.replace(/\$\{[A-Z_]+\}/g, ""), file).not.toContain("$");
      }
    }
    expect(names.size).toBe(7);
    for (const n of names) expect(section, n).toContain(n);
    expect(section).toContain("GF_PATHS_PROVISIONING");
    expect(section).toContain("readonly-role.sql");
  });

  it("the file provider loads every dashboard, each with a unique uid and unique panel ids", () => {
    const providers = readYaml(providersFile) as {
      apiVersion: number;
      providers: Array<{ type: string; options: { path: string } }>;
    };
    expect(providers.apiVersion).toBe(1);
    expect(providers.providers.map((p) => p.type)).toEqual(["file"]);
    const dir = withEnv(providers.providers[0].options.path, { EDGEPULSE_GRAFANA_DIR: GRAFANA });
    expect(existsSync(dir)).toBe(true);
    expect(dashboards.map((d) => d.file)).toEqual(["my-app.json", "web-shop.json"]);
    expect(new Set(dashboards.map((d) => d.uid)).size).toBe(dashboards.length);
    for (const d of dashboards) expect(new Set(d.panels.map((p) => p.id)).size).toBe(d.panels.length);
  });

  it("every panel, target and variable refers to a provisioned data source, by uid and type", () => {
    const provisioned = new Map(datasources.map((d) => [d.uid, d.type]));
    let refs = 0;
    for (const d of dashboards) {
      const all: Array<DsRef | undefined> = [
        ...d.panels
          .filter((p) => p.type !== "row")
          .flatMap((p) => [p.datasource, ...(p.targets ?? []).map((t) => t.datasource)]),
        ...d.templating.list.filter((v) => v.type === "query").map((v) => v.datasource),
      ];
      for (const ref of all) {
        expect(ref, d.file).toBeDefined();
        expect(provisioned.get(ref?.uid as string), `${d.file} ${ref?.uid}`).toBe(ref?.type);
        refs++;
      }
      for (const p of d.panels.filter((x) => x.type !== "row")) {
        for (const t of p.targets ?? []) expect(t.datasource, `${d.file} ${p.title}`).toEqual(p.datasource);
      }
    }
    expect(refs).toBeGreaterThan(50);
  });

  it("every variable the dashboards refer to is defined, or is one of Grafana's own", () => {
    const builtins = new Set([
      "__interval",
      "__interval_ms",
      "__rate_interval",
      "__time",
      "__timeFilter",
      "__timeFrom",
      "__timeTo",
      "__timeGroupAlias",
    ]);
    for (const d of dashboards) {
      const defined = new Set(d.templating.list.map((v) => v.name));
      const texts = [
        ...d.panels.flatMap((p) => [
          p.title,
          p.description ?? "",
          ...(p.targets ?? []).flatMap((t) => [t.rawSql ?? "", t.expr ?? ""]),
        ]),
        ...d.templating.list.map((v) => v.query),
      ];
      for (const text of texts) {
        for (const n of variableNames(text)) {
          expect(defined.has(n) || builtins.has(n), `${d.file}: $${n} in ${text}`).toBe(true);
        }
      }
      // One tenant per dashboard, fixed: a hidden constant, not settable from the URL.
      expect(variable(d, "tenant")).toMatchObject({ type: "constant", hide: 2, skipUrlSync: true });
      expect(variable(d, "prom_job")).toMatchObject({ type: "constant", hide: 2, skipUrlSync: true });
      expect(variable(d, "grain").query).toBe(GRAINS.join(","));
    }
  });
});
