/**
 * What Grafana does to a panel's query text before it reaches PostgreSQL or Prometheus, re-implemented
 * from Grafana's sources (read for the facts, not copied) so the dashboards under grafana/ can be tested
 * without a Grafana:
 *
 * 1. The browser: `templateSrv.replace(rawSql, scopedVars, datasource.interpolateVariable)` with the
 *    variable pattern of public/app/features/variables/utils.ts (`$var`, `[[var]]`, `${var[:format]}`);
 *    unknown names (Grafana's own macros such as `$__timeFilter`) are left as they are. The SQL data
 *    sources' interpolateVariable (packages/grafana-sql/src/datasource/SqlDatasource.ts): a single value
 *    has its ' doubled, no quotes added; multi-value and "All" values are quoted literals joined by ",".
 *    The `sqlstring` format (formatRegistry's sqlStringFormatter) quotes, doubles ' and turns " into \".
 *    Panel queries get the scoped variables `__interval` (rangeUtil.secondsToHms) and `__interval_ms`.
 * 2. The PostgreSQL backend (pkg/tsdb/grafana-postgresql-datasource/macros.go, Interpolate): comments
 *    are stripped (quote-aware); sqleng.Interpolate replaces `$__interval_ms`, `$__interval`
 *    (gtime.FormatInterval), `$__unixEpochFrom()` and `$__unixEpochTo()`; then every
 *    `\$([_a-zA-Z0-9]+)\(([^\)]*)\)` is expanded by evaluateMacro, times in RFC 3339 (UTC, trailing
 *    fractional zeros dropped) and group widths as Go's `%v` of the seconds (float64).
 *
 * Not emulated (the dashboards use none of it, and the tests assert so where it matters): fill modes
 * (`$__timeGroup`'s third argument only sets up fill, which is not SQL), TimescaleDB's time_bucket,
 * SQLCommenter tags (kept by Grafana, stripped here), month/year intervals (they depend on the wall clock).
 */

export interface Variable {
  value: string | string[];
  multi?: boolean;
  includeAll?: boolean;
}

type Value = string | number | string[];
type Format = (value: Value, variable: Variable | Record<string, never>) => string;

/** public/app/features/variables/utils.ts variableRegex. */
const VARIABLE = /\$(\w+)|\[\[([\s\S]+?)(?::(\w+))?\]\]|\${(\w+)(?:\.([^:^}]+))?(?::([^}]+))?}/g;

/** Every variable a text refers to, by name (macros included: they look like variables to the browser). */
export function variableNames(text: string): string[] {
  return [...text.matchAll(VARIABLE)].map((m) => m[1] ?? m[2] ?? m[4]);
}

const quoteLiteral = (v: string) => `'${v.replaceAll("'", "''")}'`;

/** formatRegistry's sqlstring. */
export function sqlString(value: Value): string {
  const one = (v: string) => `'${v.replace(/'|"/g, (c) => (c === "'" ? "''" : '\\"'))}'`;
  return Array.isArray(value) ? value.map(one).join(",") : one(String(value));
}

/** SqlDatasource.interpolateVariable (Grafana 10.x+). */
export const sqlInterpolate: Format = (value, variable) => {
  if (typeof value === "string") {
    return "multi" in variable && (variable.multi || variable.includeAll)
      ? quoteLiteral(value)
      : value.replaceAll("'", "''");
  }
  if (typeof value === "number") return String(value);
  return value.map(quoteLiteral).join(",");
};

/** The Prometheus data source's interpolateQueryExpr for single values (prometheusRegularEscape). */
export const promInterpolate: Format = (value, variable) => {
  if ("multi" in variable && (variable.multi || variable.includeAll)) {
    throw new Error("multi-value Prometheus variables are not emulated");
  }
  return String(value).replace(/\\/g, "\\\\").replace(/'/g, "\\\\'");
};

/**
 * templateSrv.replace: scoped variables first, then the dashboard's; an explicit `${var:format}` wins over
 * the data source's format. Only the sqlstring format is emulated (others throw).
 */
export function replaceVariables(
  text: string,
  variables: Record<string, Variable>,
  scoped: Record<string, string | number>,
  format: Format,
): string {
  return text.replace(VARIABLE, (match, v1, v2, fmt2, v3, fieldPath, fmt3) => {
    const name: string = v1 ?? v2 ?? v3;
    const explicit: string | undefined = fmt2 ?? fmt3;
    if (fieldPath !== undefined) throw new Error(`field paths are not emulated: ${match}`);
    let value: Value;
    let variable: Variable | Record<string, never>;
    if (name in scoped) {
      value = scoped[name];
      variable = {};
    } else if (name in variables) {
      variable = variables[name];
      value = variable.value;
    } else {
      return match;
    }
    if (explicit === undefined) return format(value, variable);
    if (explicit === "sqlstring") return sqlString(value);
    throw new Error(`format ${explicit} is not emulated`);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Go's formatting, as the backend prints values into SQL.

const MS = { ns: 1e-6, us: 1e-3, µs: 1e-3, μs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** gtime.ParseInterval, in ms: Go durations ("90s", "1h30m", "1.5h") and days/weeks; months/years read the clock. */
export function parseInterval(text: string): number {
  const days = /^(\d+)([dwMy])$/.exec(text);
  if (days) {
    if (days[2] === "M" || days[2] === "y") throw new Error(`interval ${text} depends on the wall clock`);
    return Number(days[1]) * (days[2] === "w" ? 7 : 1) * 86_400_000;
  }
  if (text === "0") return 0;
  const parts = /^([-+]?)((?:\d*\.?\d+(?:ns|us|µs|μs|ms|s|m|h))+)$/.exec(text);
  if (!parts) throw new Error(`error parsing interval ${text}`);
  let ms = 0;
  for (const p of parts[2].matchAll(/(\d*\.?\d+)(ns|us|µs|μs|ms|s|m|h)/g))
    ms += Number(p[1]) * MS[p[2] as keyof typeof MS];
  return parts[1] === "-" ? -ms : ms;
}

/** gtime.FormatInterval: the largest whole unit. */
export function formatInterval(ms: number): string {
  const units: Array<[string, number]> = [
    ["y", 365 * 86_400_000],
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
    ["ms", 1],
  ];
  for (const [u, size] of units) if (ms >= size) return `${Math.floor(ms / size)}${u}`;
  return "1ms";
}

/** The browser's rangeUtil.secondsToHms, which names `$__interval` in panel queries. */
export function secondsToHms(seconds: number): string {
  const units: Array<[string, number]> = [
    ["y", 31_536_000],
    ["d", 86_400],
    ["h", 3600],
    ["m", 60],
    ["s", 1],
  ];
  let rest = seconds;
  for (const [u, size] of units) {
    const n = Math.floor(rest / size);
    if (n) return `${n}${u}`;
    rest %= size;
  }
  const ms = Math.floor(seconds * 1000);
  return ms ? `${ms}ms` : "less than a millisecond";
}

/** Go's fmt `%v` of a float64 (strconv 'g', shortest): exponent form when the exponent is < -4 or >= 6. */
export function goFloat(n: number): string {
  if (n === 0) return "0";
  const [mantissa, exp] = n.toExponential().split("e");
  const e = Number(exp);
  if (e < -4 || e >= 6) return `${mantissa}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  return String(n);
}

/** Go's time.RFC3339Nano of a UTC instant (ms precision here). */
export function rfc3339Nano(t: Date): string {
  return t.toISOString().replace(/\.(\d*?)0*Z$/, (_, frac: string) => (frac ? `.${frac}Z` : "Z"));
}

/** macros.go stripSQLComments: -- and block comments outside quotes and dollar quotes. */
export function stripSqlComments(sql: string): string {
  let out = "";
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i];
    if (c === "'" || c === '"') {
      let j = i + 1;
      for (; j < n; j++) {
        if (sql[j] === c) {
          if (sql[j + 1] === c) j++;
          else break;
        }
      }
      out += sql.slice(i, j + 1);
      i = j + 1;
    } else if (c === "$") {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i));
      if (tag) {
        const close = sql.indexOf(tag[0], i + tag[0].length);
        const end = close < 0 ? n : close + tag[0].length;
        out += sql.slice(i, end);
        i = end;
      } else {
        out += c;
        i++;
      }
    } else if (c === "/" && sql[i + 1] === "*") {
      const close = sql.indexOf("*/", i + 2);
      i = close < 0 ? n : close + 2;
    } else if (c === "-" && sql[i + 1] === "-") {
      const eol = sql.indexOf("\n", i);
      i = eol < 0 ? n : eol;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

export interface Range {
  from: Date;
  to: Date;
}

function evaluateMacro(name: string, args: string[], range: Range): string {
  const from = rfc3339Nano(range.from);
  const to = rfc3339Nano(range.to);
  // strings.Split always yields at least one (possibly empty) argument, so Go's "missing column" never fires.
  const column = () => args[0];
  const group = () => {
    if (args.length < 2) throw new Error(`macro ${name} needs time column and interval and optional fill value`);
    if (args.length === 3) throw new Error("fill modes are not emulated");
    const ms = parseInterval(args[1].replace(/^'+|'+$/g, ""));
    if (ms <= 0) throw new Error(`interval must be positive, got ${args[1]}`);
    return goFloat(ms / 1000);
  };
  switch (name) {
    case "__time":
      return `${column()} AS "time"`;
    case "__timeEpoch":
      return `extract(epoch from ${column()}) as "time"`;
    case "__timeFilter":
      return `${column()} BETWEEN '${from}' AND '${to}'`;
    case "__timeFrom":
      return `'${from}'`;
    case "__timeTo":
      return `'${to}'`;
    case "__timeGroup": {
      const s = group();
      return `floor(extract(epoch from ${args[0]})/${s})*${s}`;
    }
    case "__timeGroupAlias":
      return `${evaluateMacro("__timeGroup", args, range)} AS "time"`;
    case "__unixEpochFilter": {
      const c = column();
      return `${c} >= ${Math.floor(range.from.getTime() / 1000)} AND ${c} <= ${Math.floor(range.to.getTime() / 1000)}`;
    }
    case "__unixEpochNanoFilter": {
      const c = column();
      return `${c} >= ${BigInt(range.from.getTime()) * 1_000_000n} AND ${c} <= ${BigInt(range.to.getTime()) * 1_000_000n}`;
    }
    case "__unixEpochNanoFrom":
      return String(BigInt(range.from.getTime()) * 1_000_000n);
    case "__unixEpochNanoTo":
      return String(BigInt(range.to.getTime()) * 1_000_000n);
    case "__unixEpochGroup": {
      const s = group();
      return `floor((${args[0]})/${s})*${s}`;
    }
    case "__unixEpochGroupAlias":
      return `${evaluateMacro("__unixEpochGroup", args, range)} AS "time"`;
    default:
      throw new Error(`unknown macro "${name}"`);
  }
}

/** The PostgreSQL backend's part: comments, global substitutions, then macros. */
export function interpolateMacros(sql: string, range: Range, intervalMs: number): string {
  let s = stripSqlComments(sql);
  s = s
    .replaceAll("$__interval_ms", String(Math.floor(intervalMs)))
    .replaceAll("$__interval", formatInterval(intervalMs))
    .replaceAll("$__unixEpochFrom()", String(Math.floor(range.from.getTime() / 1000)))
    .replaceAll("$__unixEpochTo()", String(Math.floor(range.to.getTime() / 1000)));
  const before = s;
  return s.replace(/\$([_a-zA-Z0-9]+)\(([^)]*)\)/g, (whole, macro: string, argText: string) => {
    let name = macro;
    // Pre-5.3 compatibility: $__timeGroup(...) directly followed by "," means $__timeGroupAlias.
    if (name === "__timeGroup") {
      const at = before.indexOf(whole);
      if (at >= 0 && before[at + whole.length] === ",") name = "__timeGroupAlias";
    }
    return evaluateMacro(
      name,
      argText.split(",").map((a) => a.replace(/^ +| +$/g, "")),
      range,
    );
  });
}

export interface PanelQuery {
  range: Range;
  intervalMs: number;
  variables: Record<string, Variable>;
}

/** A PostgreSQL panel's rawSql as the database receives it. */
export function expandPostgres(rawSql: string, q: PanelQuery): string {
  const browser = replaceVariables(
    rawSql,
    q.variables,
    { __interval: secondsToHms(q.intervalMs / 1000), __interval_ms: q.intervalMs },
    sqlInterpolate,
  );
  return interpolateMacros(browser, q.range, q.intervalMs);
}

/** A Prometheus panel's expr as Prometheus receives it (`$__rate_interval` given, as Grafana computes it). */
export function expandPromQL(expr: string, q: PanelQuery & { rateIntervalMs: number }): string {
  return replaceVariables(
    expr,
    q.variables,
    {
      __interval: secondsToHms(q.intervalMs / 1000),
      __interval_ms: q.intervalMs,
      __rate_interval: secondsToHms(q.rateIntervalMs / 1000),
      __range: secondsToHms((q.range.to.getTime() - q.range.from.getTime()) / 1000),
    },
    promInterpolate,
  );
}
