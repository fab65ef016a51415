/**
 * The `edgepulse` CLI (sdk/dist/cli.js, built here by the SDK's build script) as a child process against
 * `npm start`'s real stack: imports of NDJSON, a JSON array, CSV with column mapping and a gzip file, each
 * counted exactly on the stream's own counters; a re-run that counts nothing twice; an import killed after
 * its first acknowledged batches and resumed; rejected lines with their codes; `tenants create --exports`
 * evaluated by a shell; `query --json`; `tail --json`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCli } from "../../sdk/scripts/build.mjs";
import { createTestDatabase } from "../support/pg";
import { createTenant, type Keys, type Stack, startStack } from "../support/stack";

let stack: Stack;
let keys: Keys;
let cliPath: string;
let dir: string;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The CLI's environment: the stack's URL, no config file of the user's, no inherited keys. */
function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: dir, EDGEPULSE_URL: stack.url, ...extra };
}

function spawnCli(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [cliPath, ...args], { cwd: dir, env: cliEnv(env), stdio: ["ignore", "pipe", "pipe"] });
}

function finished(child: ChildProcess): Promise<Run> {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((res) => child.once("close", (code, signal) => res({ code, signal, stdout, stderr })));
}

const cli = (args: string[], env: Record<string, string> = {}) => finished(spawnCli(args, env));

/** Runs an import with --json and returns its summary. */
async function importJson(file: string, args: string[] = [], key = keys.ingest) {
  const r = await cli(["--json", "--key", key, "import", file, ...args]);
  if (r.code !== 0 && r.code !== 5) throw new Error(`import exited ${r.code}: ${r.stderr}${r.stdout}`);
  return { code: r.code, summary: JSON.parse(r.stdout) };
}

async function counters(name: string, read = keys.read) {
  const res = await fetch(`${stack.url}/v1/streams/${name}?window=1h`, {
    headers: { authorization: `Bearer ${read}` },
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as {
    windows: Record<string, { count: number; sum: number | null }>;
    counters: { accepted: number; duplicates: number; rejected: Record<string, number> };
  };
  return {
    count: body.windows["1h"].count,
    sum: body.windows["1h"].sum,
    accepted: body.counters.accepted,
    duplicates: body.counters.duplicates,
    rejected: body.counters.rejected,
  };
}

function ndjson(name: string, n: number, from = 1): string {
  let s = "";
  for (let i = from; i < from + n; i++) s += `${JSON.stringify({ name, value: i, user: `u${i % 37}` })}\n`;
  return s;
}

const sumTo = (n: number) => (n * (n + 1)) / 2;

beforeAll(async () => {
  cliPath = await buildCli();
  dir = mkdtempSync(join(tmpdir(), "edgepulse-cli-"));
  const databaseUrl = await createTestDatabase("edgepulse_test_cli");
  stack = await startStack({ extraEnv: { DATABASE_URL: databaseUrl } });
  keys = await createTenant(stack, "cli");
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

describe("edgepulse import", () => {
  it("imports NDJSON exactly once, and a re-run of the same file counts nothing twice", async () => {
    const file = join(dir, "events.ndjson");
    writeFileSync(file, ndjson("cli.ndjson", 2500));
    const first = await importJson(file);
    expect(first.code).toBe(0);
    expect(first.summary).toMatchObject({
      format: "ndjson",
      records: 2500,
      accepted: 2500,
      duplicates: 0,
      rejected: 0,
    });
    expect(await counters("cli.ndjson")).toMatchObject({
      count: 2500,
      sum: sumTo(2500),
      accepted: 2500,
      duplicates: 0,
    });

    const again = await importJson(file);
    expect(again.summary).toMatchObject({ records: 2500, accepted: 0, duplicates: 2500, rejected: 0 });
    expect(await counters("cli.ndjson")).toMatchObject({ count: 2500, accepted: 2500, duplicates: 2500 });
  });

  it("imports a JSON array, its elements numbered by position", async () => {
    const file = join(dir, "events.json");
    const events = Array.from({ length: 1200 }, (_, i) => ({
      name: "cli.array",
      value: i + 1,
      dims: { tricky: `a,]"{${i % 3}` },
    }));
    writeFileSync(file, JSON.stringify(events, null, 1));
    const { summary } = await importJson(file, ["--batch-size", "250"]);
    expect(summary).toMatchObject({ format: "json", records: 1200, accepted: 1200, acked_through: 1200 });
    expect(await counters("cli.array")).toMatchObject({ count: 1200, sum: sumTo(1200), accepted: 1200 });
  });

  it("imports CSV with its columns mapped (name, value, user, ts, dims renamed), counted exactly by dimension", async () => {
    const file = join(dir, "orders.csv");
    const now = Date.now();
    let text = "stream,amount,customer,at,country,plan\n";
    for (let i = 1; i <= 600; i++) {
      text += `cli.csv,${i},c${i % 11},${now - i},${["DE", "FR", "IT"][i % 3]},"pro, yearly"\n`;
    }
    writeFileSync(file, text);
    const { summary } = await importJson(file, [
      "--name-column",
      "stream",
      "--value-column",
      "amount",
      "--user-column",
      "customer",
      "--ts-column",
      "at",
      "--dim",
      "country",
      "--dim",
      "plan=tier",
    ]);
    expect(summary).toMatchObject({ format: "csv", records: 600, accepted: 600, rejected: 0, acked_through: 601 });
    expect(await counters("cli.csv")).toMatchObject({ count: 600, sum: sumTo(600), accepted: 600 });
    const res = await fetch(`${stack.url}/v1/query`, {
      method: "POST",
      headers: { authorization: `Bearer ${keys.read}`, "content-type": "application/json" },
      body: JSON.stringify({
        stream: "cli.csv",
        measures: ["count", "distinct_users"],
        group_by: ["country"],
        range: { window: "1h" },
      }),
    });
    const answer = (await res.json()) as { rows: [string, number, number][] };
    expect(answer.rows.map((r) => [r[0], r[1]]).sort()).toEqual([
      ["DE", 200],
      ["FR", 200],
      ["IT", 200],
    ]);
    const tiers = await fetch(`${stack.url}/v1/query`, {
      method: "POST",
      headers: { authorization: `Bearer ${keys.read}`, "content-type": "application/json" },
      body: JSON.stringify({ stream: "cli.csv", measures: ["count"], group_by: ["tier"], range: { window: "1h" } }),
    });
    expect(((await tiers.json()) as { rows: unknown[] }).rows).toEqual([["pro, yearly", 600]]);
  });

  it("detects gzip by its magic bytes (no .gz in the name) and counts it exactly", async () => {
    const file = join(dir, "compressed.data");
    writeFileSync(file, gzipSync(ndjson("cli.gzip", 3000)));
    const { summary } = await importJson(file);
    expect(summary).toMatchObject({ format: "ndjson", gzip: true, records: 3000, accepted: 3000 });
    expect(await counters("cli.gzip")).toMatchObject({ count: 3000, sum: sumTo(3000), accepted: 3000 });
  });

  it("writes rejected lines with their codes next to the original line, exit code 5", async () => {
    const file = join(dir, "mixed.ndjson");
    const lines = [
      JSON.stringify({ name: "cli.mixed", value: 1 }),
      "{not json",
      JSON.stringify({ name: "cli.mixed", value: "x" }),
      "",
      JSON.stringify({ name: "bad name!", value: 2 }),
      // Older than the backfill path takes (400 days): too late even there.
      JSON.stringify({ name: "cli.mixed", value: 3, ts: Date.now() - 500 * 86_400_000 }),
      JSON.stringify({ name: "cli.mixed", value: 4, colour: "red" }),
      JSON.stringify([1, 2]),
      JSON.stringify({ name: "cli.mixed", value: 5 }),
      // Three hours old: past the live windows, so imported on the backfill path (history and archive).
      JSON.stringify({ name: "cli.mixed", value: 6, ts: Date.now() - 3 * 3_600_000 }),
    ];
    writeFileSync(file, `${lines.join("\n")}\n`);
    const { code, summary } = await importJson(file);
    expect(code).toBe(5);
    expect(summary).toMatchObject({
      records: 9,
      accepted: 3,
      rejected: 6,
      rejected_file: `${file}.rejected.ndjson`,
      rejected_by_code: {
        malformed_json: 1,
        invalid_value: 1,
        invalid_name: 1,
        too_late: 1,
        unknown_field: 1,
        not_an_object: 1,
      },
    });
    const rejected = readFileSync(`${file}.rejected.ndjson`, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { line: number; code: string; message: string; input: string });
    expect(rejected.map((r) => [r.line, r.code])).toEqual([
      [2, "malformed_json"],
      [3, "invalid_value"],
      [5, "invalid_name"],
      [6, "too_late"],
      [7, "unknown_field"],
      [8, "not_an_object"],
    ]);
    for (const r of rejected) {
      expect(r.input).toBe(lines[r.line - 1]);
      expect(r.message.length).toBeGreaterThan(0);
    }
    expect(await counters("cli.mixed")).toMatchObject({ count: 2, sum: 6, accepted: 2 });

    // Human output: the summary names the codes.
    const human = await cli(["--key", keys.ingest, "import", file, "--no-progress"]);
    expect(human.code).toBe(5);
    expect(human.stdout).toMatch(/rejected\s+6 \(/);
    expect(human.stdout).toContain("too_late 1");
  });

  it("resumes an import killed after its first acknowledged batches: every event counted once", async () => {
    const total = 30_000;
    const file = join(dir, "big.ndjson");
    writeFileSync(file, ndjson("cli.resume", total));
    const child = spawnCli([
      "--key",
      keys.ingest,
      "import",
      file,
      "--batch-size",
      "100",
      "--concurrency",
      "2",
      "--progress-interval",
      "0",
    ]);
    const exited = finished(child);
    // Await the first progress line (printed once a batch is acknowledged and the state file written), then kill.
    const lines = createInterface({ input: child.stderr as NodeJS.ReadableStream });
    for await (const line of lines) {
      if (/^progress: [\d,]+ records acknowledged/.test(line)) break;
    }
    child.kill("SIGKILL");
    const killed = await exited;
    expect(killed.signal).toBe("SIGKILL");
    const state = JSON.parse(readFileSync(`${file}.import-state.json`, "utf8")) as {
      acked_through: number;
      complete: boolean;
    };
    expect(state.complete).toBe(false);
    expect(state.acked_through).toBeGreaterThan(0);
    expect(state.acked_through).toBeLessThan(total);

    const { code, summary } = await importJson(file, ["--resume"]);
    expect(code).toBe(0);
    expect(summary).toMatchObject({
      complete: true,
      resumed_after_line: state.acked_through,
      records: total,
      rejected: 0,
    });
    // Batches acknowledged past the saved prefix (out of order, or after the state was written) come back as duplicates.
    expect(summary.accepted + summary.duplicates).toBe(total);
    expect(summary.run.records).toBe(total - state.acked_through);
    expect(await counters("cli.resume")).toMatchObject({ count: total, sum: sumTo(total), accepted: total });

    // A resume of a finished import sends nothing.
    const done = await importJson(file, ["--resume"]);
    expect(done.summary).toMatchObject({ complete: true, run: { records: 0 } });
  });

  it("reports the server's error code for a bad key (exit 3) and a usage error for a missing file (exit 2)", async () => {
    const file = join(dir, "one.ndjson");
    writeFileSync(file, ndjson("cli.badkey", 3));
    const bad = await cli(["--key", "ep_ingest_nope", "import", file, "--no-progress"]);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain("error: invalid_key:");
    const missing = await cli(["--key", keys.ingest, "import", join(dir, "nope.ndjson")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no such file");
  });
});

describe("edgepulse tenants, query, tail", () => {
  it("tenants create --exports evaluates to working ADMIN, INGEST and READ keys", async () => {
    const file = join(dir, "exports.ndjson");
    writeFileSync(file, ndjson("cli.exports", 10));
    const script = [
      `eval "$("${process.execPath}" "${cliPath}" tenants create cli-exports --exports)"`,
      `"${process.execPath}" "${cliPath}" --json import "${file}"`,
      `"${process.execPath}" "${cliPath}" --json keys list`,
      `echo "$READ"`,
    ].join(" && ");
    const r = await finished(
      spawn("bash", ["-c", script], {
        cwd: dir,
        env: cliEnv({ EDGEPULSE_TOKEN: stack.token }),
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const [imported, listed, read] = r.stdout.trim().split("\n");
    expect(JSON.parse(imported)).toMatchObject({ accepted: 10 }); // INGEST
    expect((JSON.parse(listed) as { keys: { scope: string }[] }).keys.map((k) => k.scope).sort()).toEqual([
      "admin",
      "ingest",
      "read",
    ]); // ADMIN
    expect(read).toMatch(/^ep_read_/);
    expect((await counters("cli.exports", read)).accepted).toBe(10); // READ
  });

  it("query --json prints the API's answer; a bad query exits 3 with the server's code", async () => {
    const q = { stream: "cli.ndjson", measures: ["count", "sum"], range: { window: "1h" } };
    const r = await cli(["--json", "query", JSON.stringify(q)], { READ: keys.read });
    expect(r.code).toBe(0);
    const answer = JSON.parse(r.stdout) as { columns: string[]; rows: unknown[][]; meta: { sources: string[] } };
    expect(answer.columns).toEqual(["count", "sum"]);
    expect(answer.rows).toEqual([[2500, sumTo(2500)]]);
    expect(answer.meta.sources).toContain("actor");

    const table = await cli(["query", JSON.stringify(q)], { READ: keys.read });
    expect(table.stdout.split("\n")[0]).toMatch(/^count\s+sum$/);

    const bad = await cli(["query", JSON.stringify({ ...q, measures: ["p42"] })], { READ: keys.read });
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/^error: invalid_query: measures\.0/);
  });

  it("tail --json prints the snapshot, then an update after events are sent", async () => {
    const child = spawnCli(["--json", "tail", "cli.tail", "--window", "5m"], { READ: keys.read });
    const exited = finished(child);
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
    const next = async () => JSON.parse((await lines.next()).value as string);
    expect(await next()).toMatchObject({ type: "snapshot", stream: "cli.tail", window: "5m", figures: { count: 0 } });
    const res = await fetch(`${stack.url}/v1/events`, {
      method: "POST",
      headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
      body: JSON.stringify([
        { name: "cli.tail", value: 5 },
        { name: "cli.tail", value: 7 },
      ]),
    });
    expect(res.status).toBe(200);
    let update = await next();
    while (update.figures.count < 2) update = await next();
    expect(update).toMatchObject({ type: "update", stream: "cli.tail", figures: { count: 2, sum: 12 } });
    child.kill("SIGINT");
    expect((await exited).code).toBe(0);
  });
});
