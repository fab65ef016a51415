/**
 * `npm run demo`: creates a demo tenant on a running edgepulse (started with
 * `npm start`) and feeds it realistic web-shop traffic, so the dashboard has
 * something to show within a minute.
 *
 *   npm run demo -- [--url http://127.0.0.1:8787] [--rate 200] [--seconds 0 (forever)]
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "./paths";

const { values: args } = parseArgs({
  options: {
    url: { type: "string", default: process.env.EDGEPULSE_URL ?? "http://127.0.0.1:8787" },
    rate: { type: "string", default: "200" },
    seconds: { type: "string", default: "0" },
    vars: { type: "string", default: join(ROOT, ".dev.vars") },
  },
});

const COUNTRIES = ["DE", "US", "FR", "GB", "JP", "BR", "IN", "NL", "SE", "ES"];
const PAGES = ["/", "/search", "/product", "/cart", "/checkout"];

function lognormal(median: number, sigma: number): number {
  const u = Math.random() || 1e-9;
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * Math.random());
  return Math.round(median * Math.exp(sigma * z) * 10) / 10;
}

interface DemoKeys {
  url: string;
  tenantId: string;
  ingest: string;
  read: string;
}

async function keys(): Promise<DemoKeys> {
  const file = join(ROOT, ".edgepulse", "demo.json");
  if (existsSync(file)) {
    const saved = JSON.parse(readFileSync(file, "utf8")) as DemoKeys;
    const check = await fetch(`${args.url}/v1/streams?limit=1`, { headers: { authorization: `Bearer ${saved.read}` } });
    if (saved.url === args.url && check.ok) return saved;
  }
  const token = /^ADMIN_TOKEN=(.+)$/m.exec(existsSync(args.vars) ? readFileSync(args.vars, "utf8") : "")?.[1];
  if (!token) throw new Error(`no ADMIN_TOKEN in ${args.vars}: run npm start first`);
  const res = await fetch(`${args.url}/v1/admin/tenants`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "demo shop" }),
  });
  if (res.status !== 201) throw new Error(`creating the demo tenant failed: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { tenant: { id: string }; keys: Array<{ scope: string; key: string }> };
  const k = (s: string) => (body.keys.find((x) => x.scope === s) as { key: string }).key;
  const out = { url: args.url, tenantId: body.tenant.id, ingest: k("ingest"), read: k("read") };
  mkdirSync(join(ROOT, ".edgepulse"), { recursive: true });
  writeFileSync(file, JSON.stringify(out, null, 2), { mode: 0o600 });
  return out;
}

/** One visitor's worth of events: page views, maybe a cart, maybe a checkout. */
function visit(n: number): object[] {
  const user = `u_${Math.floor(Math.random() * 5000)}`;
  const country = COUNTRIES[Math.floor(Math.abs(lognormal(2, 0.9))) % COUNTRIES.length];
  const out: object[] = [];
  for (let i = 0; i < 1 + (n % 4); i++) {
    out.push({ name: "page.view", value: lognormal(180, 0.6), user, dims: { country, page: PAGES[i % PAGES.length] } });
  }
  if (Math.random() < 0.3) out.push({ name: "cart.add", value: lognormal(40, 0.8), user, dims: { country } });
  if (Math.random() < 0.1) {
    out.push({ name: "checkout.completed", value: lognormal(650, 0.5), user, dims: { country } });
    out.push({ name: "order.amount", value: lognormal(55, 0.7), user, dims: { country } });
  }
  if (Math.random() < 0.01) out.push({ name: "payment.failed", user, dims: { country } });
  return out;
}

async function main() {
  const k = await keys();
  process.stdout.write(
    [
      "",
      `Demo tenant ready. Open ${args.url}/ and paste this read key:`,
      `  ${k.read}`,
      `Feeding ~${args.rate} events/s (Ctrl-C to stop)…`,
      "",
    ].join("\n"),
  );
  const rate = Number(args.rate);
  const until = Number(args.seconds) > 0 ? Date.now() + Number(args.seconds) * 1000 : Number.POSITIVE_INFINITY;
  let n = 0;
  let sent = 0;
  while (Date.now() < until) {
    const started = Date.now();
    const batch: object[] = [];
    while (batch.length < rate / 4) batch.push(...visit(n++));
    const res = await fetch(`${args.url}/v1/events`, {
      method: "POST",
      headers: { authorization: `Bearer ${k.ingest}`, "content-type": "application/json" },
      body: JSON.stringify(batch),
    }).catch((err: Error) => ({ ok: false, status: 0, text: async () => err.message }));
    if (!res.ok) process.stderr.write(`ingest failed (${res.status}): ${(await res.text()).slice(0, 200)}\n`);
    else sent += batch.length;
    if (n % 200 < 10) process.stdout.write(`\r${sent} events sent`);
    await new Promise((r) => setTimeout(r, Math.max(0, 250 - (Date.now() - started))));
  }
  process.stdout.write(`\n${sent} events sent\n`);
}

main().catch((err) => {
  process.stderr.write(`demo: ${(err as Error).message}\n`);
  process.exit(1);
});
