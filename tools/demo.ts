/**
 * `npm run demo -- <pack>`: sets a solution pack up in a running edgepulse (started with `npm start`)
 * and feeds it realistic traffic, so its boards have something to show within a minute. The packs live
 * in tools/packs/ (docs/packs/ describes them):
 *
 *   shop     a web shop: product views, carts, checkouts and purchases
 *   courses  online courses: enrollments, lessons, quizzes, completions, ratings, notifications
 *   app      a mobile app: sessions, screens, searches, product views, favorites, purchases
 *
 *   npm run demo -- shop|courses|app [--url http://127.0.0.1:8787] [--rate 200] [--seconds 0 (forever)]
 *     [--events N] [--seed S] [--no-setup] [--notify http://127.0.0.1:8790] [--vars .dev.vars] [--state .edgepulse]
 *
 * Setting up is idempotent: the tenant's keys are kept in .edgepulse/demo-<pack>.json, and a second run
 * finds the catalog entities, funnels, alert rules and boards the first made. `--events N` sends exactly
 * N events and exits; `--seed` makes the traffic reproducible.
 */

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PACKS } from "./packs/index";
import { Api, type DemoTenant, provision, stateFile } from "./packs/provision";
import { sendTraffic } from "./packs/traffic";
import { ROOT } from "./paths";

const USAGE = `usage: npm run demo -- <pack> [options]

packs:
${Object.values(PACKS)
  .map((p) => `  ${p.name.padEnd(8)} ${p.description}`)
  .join("\n")}

options:
  --url URL         the edgepulse to use (default $EDGEPULSE_URL or http://127.0.0.1:8787)
  --rate N          events per second (default 200)
  --seconds N       stop after N seconds (default 0: run until Ctrl-C)
  --events N        send exactly N events as fast as the server takes them, then exit
  --seed N          the traffic's seed (default: a random one, printed); the same seed sends the same traffic
  --no-setup        skip setting up; send traffic to the tenant saved in .edgepulse/demo-<pack>.json
  --notify URL      point the pack's notifying alert rules at this webhook (e.g. the course-notifications receiver)
  --vars FILE       where npm start keeps the operator token (default .dev.vars)
  --state DIR       where the tenant's keys are kept, as demo-<pack>.json (default .edgepulse)
`;

function fail(message: string, code = 1): never {
  process.stderr.write(`demo: ${message}\n`);
  process.exit(code);
}

function positiveInt(name: string, raw: string | undefined, min = 0): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer ≥ ${min}; got '${raw}'.\n\n${USAGE}`, 2);
  return n;
}

async function main(): Promise<void> {
  const { values: args, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      url: { type: "string", default: process.env.EDGEPULSE_URL ?? "http://127.0.0.1:8787" },
      rate: { type: "string", default: "200" },
      seconds: { type: "string", default: "0" },
      events: { type: "string" },
      seed: { type: "string" },
      "no-setup": { type: "boolean", default: false },
      notify: { type: "string" },
      vars: { type: "string", default: join(ROOT, ".dev.vars") },
      state: { type: "string", default: join(ROOT, ".edgepulse") },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (args.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (positionals.length !== 1 || !Object.hasOwn(PACKS, positionals[0])) {
    fail(
      `${positionals.length === 0 ? "name a pack" : `unknown pack '${positionals.join(" ")}'`}: ${Object.keys(PACKS).join(", ")}.\n\n${USAGE}`,
      2,
    );
  }
  const pack = PACKS[positionals[0]];
  const rate = positiveInt("rate", args.rate, 1) as number;
  const seconds = positiveInt("seconds", args.seconds) as number;
  const events = positiveInt("events", args.events, 1);
  const seed = positiveInt("seed", args.seed) ?? Math.floor(Math.random() * 2 ** 31);
  if (args.notify !== undefined && !/^https?:\/\/\S+$/.test(args.notify))
    fail(`--notify must be an http(s) URL; got '${args.notify}'.`, 2);
  const url = args.url.replace(/\/+$/, "");
  const stateDir = args.state;
  const out = (line: string) => process.stdout.write(`${line}\n`);

  let tenant: DemoTenant;
  let boards: Array<{ name: string; id: string }> = [];
  if (args["no-setup"]) {
    const file = stateFile(stateDir, pack.name);
    if (!existsSync(file)) fail(`--no-setup: no saved tenant in ${file}; run once without --no-setup to set it up.`);
    tenant = JSON.parse(readFileSync(file, "utf8")) as DemoTenant;
    if (tenant.url !== url) fail(`--no-setup: ${file} holds a tenant of ${tenant.url}, not ${url}.`);
  } else {
    out(`Setting up the ${pack.name} pack on ${url}…`);
    const result = await provision(pack, {
      url,
      vars: args.vars,
      stateDir,
      notify: args.notify,
      log: (l) => out(`  ${l}`),
    });
    tenant = result.tenant;
    boards = result.boards;
    for (const note of result.notes) out(`  note: ${note}`);
  }

  const lines = ["", `Open ${url}/ and paste this read key:`, `  ${tenant.read}`];
  if (boards.length > 0) {
    lines.push("Boards:");
    for (const b of boards) lines.push(`  ${b.name}: ${url}/#/boards/${b.id}`);
  }
  if (args.notify !== undefined) {
    const { secret } = await new Api(url).expect<{ secret: string }>(
      "webhook secret",
      "GET",
      "/v1/alerts/secret",
      tenant.admin,
      undefined,
      [200],
    );
    const port = new URL(args.notify).port || "80";
    lines.push(
      `Alerts notify ${args.notify}; to receive them as chat messages (add --forward <chat webhook URL> to pass them on):`,
      // The secret in the environment, not the command line (other processes can read a command line).
      `  EDGEPULSE_WEBHOOK_SECRET='${secret}' npx tsx examples/course-notifications/receiver.ts --port ${port}`,
    );
  }
  lines.push(
    events !== undefined
      ? `Sending ${events} events (seed ${seed})…`
      : `Sending ~${rate} events/s with seed ${seed}${seconds > 0 ? ` for ${seconds} s` : " (Ctrl-C to stop)"}…`,
    "",
  );
  out(lines.join("\n"));

  const stop = new AbortController();
  process.once("SIGINT", () => stop.abort());
  process.once("SIGTERM", () => stop.abort());
  const totals = await sendTraffic(pack, tenant, {
    rate,
    seconds,
    events,
    seed,
    signal: stop.signal,
    log: (l) => process.stdout.write(`\n${l}\n`),
    progress: (t) => process.stdout.write(`\r${t.sent} events sent`),
  });
  const refused = totals.rejected > 0 ? `, ${totals.rejected} refused` : "";
  const dup = totals.duplicates > 0 ? `, ${totals.duplicates} duplicates` : "";
  out(`\r${totals.sent} events sent: ${totals.accepted} accepted${dup}${refused}`);
}

main().catch((err: Error) => fail(err.message));
