/**
 * The `edgepulse` command's arguments and actions. `createProgram` takes the actions, so argument parsing
 * is tested without a server; `main` runs the real ones (index.ts).
 */
import { Command, CommanderError, InvalidArgumentError, Option, type OutputConfiguration } from "commander";
import pkg from "../../package.json" with { type: "json" };
import { keysCreate, keysList, keysRevoke, tenantsCreate, tenantsList } from "./admin.ts";
import {
  configPath,
  type GlobalFlags,
  loadConfigFile,
  needKey,
  needToken,
  type Role,
  resolveSettings,
} from "./config.ts";
import { CliError, EXIT } from "./errors.ts";
import { type ImportOptions, runImport, summaryText } from "./import.ts";
import type { ProgressMode } from "./progress.ts";
import { readQuery, runQuery } from "./query.ts";
import type { Format } from "./records.ts";
import { runTail, type TailOptions } from "./tail.ts";

export interface Actions {
  import(file: string, o: ImportOptions, g: GlobalFlags): Promise<number | undefined>;
  tail(stream: string, o: TailOptions, g: GlobalFlags): Promise<void>;
  query(text: string | undefined, o: { file?: string; csv: boolean }, g: GlobalFlags): Promise<void>;
  tenantsCreate(name: string, o: { exports: boolean }, g: GlobalFlags): Promise<void>;
  tenantsList(g: GlobalFlags): Promise<void>;
  keysCreate(o: { scope: string; name?: string }, g: GlobalFlags): Promise<void>;
  keysList(g: GlobalFlags): Promise<void>;
  keysRevoke(id: string, g: GlobalFlags): Promise<void>;
}

const int = (min: number, max: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`an integer from ${min} to ${max}`);
  return n;
};
const collect = (v: string, prev: string[] = []) => [...prev, v];

export const EXIT_CODES_HELP = `
Configuration, first found wins: flags (--url, --key, --token); the environment (EDGEPULSE_URL;
EDGEPULSE_KEY, else INGEST / READ / ADMIN as the quick start exports them; EDGEPULSE_TOKEN); the config
file (--config, $EDGEPULSE_CONFIG, else ~/.config/edgepulse/config.json: {"url", "key", "keys":
{"ingest", "read", "admin"}, "token"}). The URL defaults to http://127.0.0.1:8787.

Exit codes: 0 done; 1 unexpected failure; 2 bad arguments or input; 3 the server refused (its error code
is printed); 4 server unreachable or still failing after retries; 5 import done but some events rejected;
130 interrupted.`;

export function createProgram(actions: Actions, output?: OutputConfiguration): Command {
  const program = new Command("edgepulse")
    .configureOutput(output ?? {})
    .description("Send, watch and query edgepulse events from the terminal.")
    .version(pkg.version)
    .option("--url <url>", "edgepulse base URL (env EDGEPULSE_URL; default http://127.0.0.1:8787)")
    .option("--key <key>", "API key (env EDGEPULSE_KEY, or INGEST / READ / ADMIN by command)")
    .option("--token <token>", "operator token, for tenants (env EDGEPULSE_TOKEN)")
    .option("--config <path>", "config file (default ~/.config/edgepulse/config.json)")
    .option("--json", "machine-readable output (one JSON document or line)")
    .addHelpText("after", EXIT_CODES_HELP)
    .showHelpAfterError("(add --help for more)")
    .exitOverride();
  const g = (cmd: Command) => cmd.optsWithGlobals() as GlobalFlags;

  program
    .command("import")
    .description("import NDJSON, a JSON array or CSV (gzip detected) into POST /v1/events, exactly once")
    .argument("<file>", "the input file")
    .addOption(
      new Option("--format <format>", "input format (default: by name, else by content)").choices([
        "ndjson",
        "json",
        "csv",
      ]),
    )
    .option("--name <stream>", "stream name: every CSV row; JSON events without a name")
    .option("--name-column <col>", "CSV: column holding the stream name (default: 'name')")
    .option("--value-column <col>", "CSV: column holding the value (default: 'value' if present)")
    .option("--user-column <col>", "CSV: column holding the user (default: 'user' if present)")
    .option("--ts-column <col>", "CSV: column holding the event time, epoch ms or ISO-8601 (default: 'ts' if present)")
    .option("--id-column <col>", "CSV: column holding the event id (default: 'id' if present, else derived)")
    .option("--dim <col[=key]>", "CSV: a column as a dimension (repeatable)", collect)
    .option("--resume", "skip the lines the state file records as acknowledged")
    .option("--state <path>", "state file (default <file>.import-state.json)")
    .option("--rejected <path>", "rejected lines (default <file>.rejected.ndjson)")
    .option("--batch-size <n>", "events per request (≤ the server's MAX_EVENTS_PER_BATCH)", int(1, 10_000), 1000)
    .option("--batch-bytes <n>", "bytes of JSON per request (≤ MAX_BODY_BYTES)", int(1024, 16_777_216), 1_048_576)
    .option("--concurrency <n>", "requests in flight", int(1, 64), 4)
    .option("--no-gzip", "send request bodies uncompressed")
    .option("--no-backfill", "live path only: events older than the live windows are refused (too_late)")
    .option(
      "--progress-interval <ms>",
      "without a terminal: ms between progress lines (0: every batch)",
      int(0, 3_600_000),
      1000,
    )
    .option("--no-progress", "no progress bar or lines")
    .action(async (file: string, o, cmd: Command) => {
      const globals = g(cmd);
      const progress: ProgressMode =
        globals.json || o.progress === false ? "none" : process.stderr.isTTY ? "bar" : "lines";
      const code = await actions.import(
        file,
        {
          format: o.format as Format | undefined,
          name: o.name,
          nameColumn: o.nameColumn,
          valueColumn: o.valueColumn,
          userColumn: o.userColumn,
          tsColumn: o.tsColumn,
          idColumn: o.idColumn,
          dims: o.dim,
          resume: o.resume === true,
          state: o.state,
          rejected: o.rejected,
          batchSize: o.batchSize,
          batchBytes: o.batchBytes,
          concurrency: o.concurrency,
          gzip: o.gzip,
          backfill: o.backfill,
          progress,
          progressIntervalMs: o.progressInterval,
        },
        globals,
      );
      if (code) process.exitCode = code;
    });

  program
    .command("tail")
    .description("live figures of a stream from its socket (GET /v1/streams/:name/live)")
    .argument("<stream>", "stream name")
    .addOption(new Option("--window <w>", "window shown").choices(["1m", "5m", "15m", "1h"]).default("1m"))
    .option("--count <n>", "stop after n messages", int(1, Number.MAX_SAFE_INTEGER))
    .action(async (stream: string, o, cmd: Command) => {
      const globals = g(cmd);
      await actions.tail(stream, { window: o.window, count: o.count, json: globals.json === true }, globals);
    });

  program
    .command("query")
    .description("run a query (POST /v1/query) and print a table")
    .argument("[json]", "the query as JSON")
    .option("--file <path>", "read the query from a file ('-': stdin)")
    .option("--csv", "print CSV (the API's ?format=csv)")
    .action(async (text: string | undefined, o, cmd: Command) => {
      await actions.query(text, { file: o.file, csv: o.csv === true }, g(cmd));
    });

  const tenants = program.command("tenants").description("tenants (operator token)");
  tenants
    .command("create")
    .argument("<name>", "tenant name")
    .option("--exports", "print `export ADMIN=… INGEST=… READ=…` lines for eval")
    .description("create a tenant and print its admin, ingest and read keys")
    .action(async (name: string, o, cmd: Command) => {
      await actions.tenantsCreate(name, { exports: o.exports === true }, g(cmd));
    });
  tenants
    .command("list")
    .description("list tenants")
    .action(async (_o, cmd: Command) => {
      await actions.tenantsList(g(cmd));
    });

  const keys = program.command("keys").description("the tenant's keys (its admin key)");
  keys
    .command("create")
    .description("create a key (shown once)")
    .addOption(
      new Option("--scope <scope>", "what it may do").choices(["ingest", "read", "admin"]).makeOptionMandatory(),
    )
    .option("--name <name>", "a label")
    .action(async (o, cmd: Command) => {
      await actions.keysCreate({ scope: o.scope, name: o.name }, g(cmd));
    });
  keys
    .command("list")
    .description("list keys (never the keys themselves)")
    .action(async (_o, cmd: Command) => {
      await actions.keysList(g(cmd));
    });
  keys
    .command("revoke")
    .argument("<id>", "key id")
    .description("revoke a key")
    .action(async (id: string, _o, cmd: Command) => {
      await actions.keysRevoke(id, g(cmd));
    });
  return program;
}

function settings(flags: GlobalFlags, role?: Role) {
  const { path, explicit } = configPath(flags, process.env);
  return resolveSettings(flags, process.env, loadConfigFile(path, explicit), role);
}

const print = (text: string) => process.stdout.write(`${text}\n`);

export const actions: Actions = {
  async import(file, o, flags) {
    const s = settings(flags, "ingest");
    const { summary, failure } = await runImport(file, o, { url: s.url, key: needKey(s, "ingest") });
    print(flags.json ? JSON.stringify(summary) : summaryText(summary));
    if (failure) throw failure;
    if (summary.interrupted) return EXIT.interrupted;
    return summary.rejected > 0 ? EXIT.rejected : EXIT.ok;
  },
  async tail(stream, o, flags) {
    const s = settings(flags, "read");
    await runTail(s.url, needKey(s, "read"), stream, o);
  },
  async query(text, o, flags) {
    const s = settings(flags, "read");
    const q = readQuery(text, o.file);
    print(await runQuery({ url: s.url, bearer: needKey(s, "read") }, q, { ...o, json: flags.json === true }));
  },
  async tenantsCreate(name, o, flags) {
    const s = settings(flags);
    print(await tenantsCreate({ url: s.url, bearer: needToken(s) }, name, { ...o, json: flags.json === true }));
  },
  async tenantsList(flags) {
    const s = settings(flags);
    print(await tenantsList({ url: s.url, bearer: needToken(s) }, { json: flags.json === true }));
  },
  async keysCreate(o, flags) {
    const s = settings(flags, "admin");
    print(
      await keysCreate({ url: s.url, bearer: needKey(s, "admin") }, o.scope, o.name, { json: flags.json === true }),
    );
  },
  async keysList(flags) {
    const s = settings(flags, "admin");
    print(await keysList({ url: s.url, bearer: needKey(s, "admin") }, { json: flags.json === true }));
  },
  async keysRevoke(id, flags) {
    const s = settings(flags, "admin");
    print(await keysRevoke({ url: s.url, bearer: needKey(s, "admin") }, id, { json: flags.json === true }));
  },
};

export async function main(argv = process.argv): Promise<void> {
  const program = createProgram(actions);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed the message (or the help / version).
      process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return;
    }
    const e =
      err instanceof CliError ? err : new CliError(EXIT.failure, "internal", String((err as Error)?.stack ?? err));
    const json = argv.includes("--json");
    process.stderr.write(
      json
        ? `${JSON.stringify({ error: { code: e.code, message: e.message, status: e.status, details: e.details } })}\n`
        : `error: ${e.code}: ${e.message}\n`,
    );
    process.exitCode = e.exit;
  }
}
