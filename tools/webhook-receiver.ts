/**
 * A local webhook receiver: records every delivery (headers and body) per
 * path, answers 200, or 503 while switched down. Used by the tests and the
 * alert benchmark; handy to watch alerts locally too:
 *
 *   npx tsx tools/webhook-receiver.ts 8788 [secret]
 *
 * then use http://127.0.0.1:8788/hook/<name> as an alert target (any name).
 * Each delivery is printed with its headers, its body and, given the
 * tenant's signing secret (`GET /v1/alerts/secret`, or the
 * EDGEPULSE_WEBHOOK_SECRET environment variable), whether its signature
 * verifies (valid / mismatch / expired / missing / malformed).
 *
 * Control: POST /__down/<name>, POST /__up/<name>, GET /__received/<name>.
 */
import { createServer, type Server } from "node:http";
import { SIGNATURE_HEADER, verifyWebhook } from "../core/alerts";

export interface Received {
  at: number;
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface Receiver {
  url: string;
  port: number;
  received: Map<string, Received[]>;
  close(): Promise<void>;
}

export function startReceiver(
  port = 0,
  opts: { unref?: boolean; onDelivery?: (name: string, r: Received) => void } = {},
): Promise<Receiver> {
  const received = new Map<string, Received[]>();
  const down = new Set<string>();
  const server: Server = createServer((req, res) => {
    const url = req.url ?? "/";
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const control = /^\/__(down|up|received)\/([\w.-]+)$/.exec(url);
      if (control) {
        const [, op, name] = control;
        if (op === "down") down.add(name);
        if (op === "up") down.delete(name);
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(op === "received" ? (received.get(name) ?? []) : { ok: true }));
        return;
      }
      const hook = /^\/hook\/([\w.-]+)$/.exec(url);
      if (req.method !== "POST" || !hook) {
        res.writeHead(404).end();
        return;
      }
      const name = hook[1];
      const status = down.has(name) ? 503 : 200;
      const r: Received = {
        at: Date.now(),
        status,
        headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])),
        body: Buffer.concat(chunks).toString("utf8"),
      };
      const list = received.get(name) ?? [];
      list.push(r);
      received.set(name, list);
      opts.onDelivery?.(name, r);
      res.writeHead(status).end(status === 200 ? "ok" : "down");
    });
  });
  return new Promise((resolve) => {
    server.listen(port, "127.0.0.1", () => {
      if (opts.unref) server.unref();
      const actual = (server.address() as { port: number }).port;
      resolve({
        url: `http://127.0.0.1:${actual}`,
        port: actual,
        received,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const secret = process.argv[3] ?? process.env.EDGEPULSE_WEBHOOK_SECRET;
  startReceiver(Number(process.argv[2] ?? 8788), {
    onDelivery: (name, r) => {
      const lines = [`${new Date(r.at).toISOString()} POST /hook/${name} → ${r.status}`];
      for (const [k, v] of Object.entries(r.headers)) lines.push(`  ${k}: ${v}`);
      lines.push(`  body: ${r.body}`);
      const check = secret
        ? verifyWebhook(r.headers[SIGNATURE_HEADER], r.body, secret, Math.floor(r.at / 1000))
        : Promise.resolve("not checked (give the secret as the second argument)");
      void check.then((verdict) => process.stdout.write(`${lines.join("\n")}\n  signature: ${verdict}\n\n`));
    },
  }).then((r) =>
    process.stdout.write(
      `webhook receiver on ${r.url}/hook/<name> (any name; POST /__down/<name> makes it answer 503)${secret ? ", verifying signatures" : ""}\n`,
    ),
  );
}
