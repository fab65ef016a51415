/**
 * Course notifications as chat messages: a small webhook receiver for edgepulse alert rules. It checks
 * each delivery's signature (X-Edgepulse-Signature, HMAC-SHA256 with the tenant's secret, verified by
 * edgepulse's own verifyWebhook), turns the alert into a chat message, prints it, and passes it on to a
 * chat webhook (Slack, Mattermost, Rocket.Chat, anything that takes `{"text": "…"}`) when given one.
 *
 *   npx tsx examples/course-notifications/receiver.ts --secret <secret> [--port 8790] [--host 127.0.0.1]
 *     [--forward https://hooks.slack.com/services/…]
 *
 * The secret: GET /v1/alerts/secret with an admin key (`npm run demo -- courses --notify …` prints the
 * whole command), or the EDGEPULSE_WEBHOOK_SECRET environment variable. Point alert rules' `targets` at
 * http://<host>:<port>/ (a local http:// target needs ALLOW_HTTP_WEBHOOKS=true, which `npm start` sets).
 *
 * Answers: 200 once the message is printed (and forwarded); 401 for a missing, malformed, wrong or
 * expired signature; 400 for a body that is not an alert transition; 413 past MAX_BODY_BYTES; 502 when
 * the chat webhook fails, so edgepulse delivers again later (with backoff). A delivery seen before (its
 * Idempotency-Key) is acknowledged without a second message.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type AlertEventView, SIGNATURE_HEADER, verifyWebhook } from "../../core/alerts";

/** Largest delivery body read (an alert transition is well under 4 KiB). */
export const MAX_BODY_BYTES = 64 * 1024;
/** Delivery ids remembered to acknowledge a repeated delivery without a second message (oldest forgotten first). */
export const REMEMBERED_DELIVERIES = 1000;
/** How long the chat webhook may take. */
const FORWARD_TIMEOUT_MS = 10_000;

export interface ChatMessage {
  /** Slack-compatible mrkdwn (`*bold*`, `&`, `<`, `>` escaped), as posted to the chat webhook as `{"text": …}`. */
  text: string;
  /** The same in plain text, one line, as printed. */
  plain: string;
}

const KIND_LABELS: Record<AlertEventView["kind"], { emoji: string; word: string }> = {
  firing: { emoji: "🔴", word: "firing" },
  resolved: { emoji: "✅", word: "resolved" },
  pending: { emoji: "🟡", word: "pending" },
  cancelled: { emoji: "⚪", word: "cancelled" },
};

/** Slack's three escapes for text that is not markup. */
const escapeMrkdwn = (s: string) => s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");

const formatValue = (v: number | null) =>
  v === null ? "no value" : Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));

const formatTime = (iso: string) => `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;

/** An alert transition as a chat message: the rule, what happened, the value, when, and the rule's labels. */
export function formatAlert(e: AlertEventView): ChatMessage {
  const { emoji, word } = KIND_LABELS[e.kind];
  const { summary, channel, ...rest } = e.labels;
  const others = Object.entries(rest).map(([k, v]) => `${k}=${v}`);
  const when = formatTime(e.at);
  const value = `${e.stream}: ${formatValue(e.value)}`;
  const text = [
    `${emoji} *${escapeMrkdwn(e.rule_name)}* is ${word}`,
    `${escapeMrkdwn(value)} at ${when}`,
    ...(summary ? [escapeMrkdwn(summary)] : []),
    ...(channel || others.length ? [escapeMrkdwn([channel, ...others].filter(Boolean).join(" · "))] : []),
  ].join("\n");
  const plain = [
    `[${word.toUpperCase()}] ${e.rule_name}`,
    `${value} at ${when}`,
    ...(summary ? [summary] : []),
    ...(channel ? [`for ${channel}`] : []),
    ...(others.length ? [others.join(", ")] : []),
  ].join(" — ");
  return { text, plain };
}

/** Whether a parsed body is an alert transition as edgepulse posts it. */
function isAlertEvent(v: unknown): v is AlertEventView {
  if (v === null || typeof v !== "object") return false;
  const e = v as Record<string, unknown>;
  return (
    typeof e.id === "string" &&
    typeof e.stream === "string" &&
    typeof e.rule_name === "string" &&
    typeof e.at === "string" &&
    typeof e.kind === "string" &&
    Object.hasOwn(KIND_LABELS, e.kind) &&
    (e.value === null || typeof e.value === "number") &&
    e.labels !== null &&
    typeof e.labels === "object" &&
    Object.values(e.labels as object).every((l) => typeof l === "string")
  );
}

export interface ReceiverOptions {
  /** The tenant's webhook signing secret. */
  secret: string;
  port?: number;
  host?: string;
  /** A chat webhook to post `{"text": …}` to. */
  forward?: string;
  /** Where messages go (default: stdout). */
  print?: (m: ChatMessage, e: AlertEventView) => void;
  /** The receiver's clock in ms (tests move it). */
  now?: () => number;
}

export interface NotificationReceiver {
  url: string;
  port: number;
  close(): Promise<void>;
}

class TooLarge extends Error {}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new TooLarge());
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/** Starts the receiver; resolves once it listens. */
export function startReceiver(opts: ReceiverOptions): Promise<NotificationReceiver> {
  const print = opts.print ?? ((m: ChatMessage) => process.stdout.write(`${m.plain}\n`));
  const now = opts.now ?? Date.now;
  const seen = new Set<string>();
  const order: string[] = [];
  const remember = (id: string) => {
    seen.add(id);
    order.push(id);
    if (order.length > REMEMBERED_DELIVERIES) seen.delete(order.shift() as string);
  };

  const server: Server = createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    const refuse = (status: number, code: string, message: string) => reply(status, { error: { code, message } });
    if (req.method === "GET" && req.url === "/healthz") return reply(200, { ok: true });
    if (req.method !== "POST") return refuse(405, "method_not_allowed", "Deliveries are POSTs.");
    void (async () => {
      let raw: string;
      try {
        raw = await readBody(req);
      } catch (err) {
        if (err instanceof TooLarge) refuse(413, "body_too_large", `A delivery is at most ${MAX_BODY_BYTES} bytes.`);
        return;
      }
      const header = req.headers[SIGNATURE_HEADER];
      const verdict = await verifyWebhook(
        Array.isArray(header) ? header[0] : header,
        raw,
        opts.secret,
        Math.floor(now() / 1000),
      );
      if (verdict !== "valid") {
        return refuse(
          401,
          "invalid_signature",
          `The ${SIGNATURE_HEADER} header is ${verdict}: is the secret this tenant's (GET /v1/alerts/secret)?`,
        );
      }
      let event: unknown;
      try {
        event = JSON.parse(raw);
      } catch {
        event = null;
      }
      if (!isAlertEvent(event)) {
        return refuse(
          400,
          "not_an_alert",
          "The body is not an alert transition (id, stream, rule_name, kind, at, value, labels).",
        );
      }
      const id = String(req.headers["idempotency-key"] ?? event.id);
      if (seen.has(id)) return reply(200, { ok: true, duplicate: true });
      const message = formatAlert(event);
      if (opts.forward) {
        try {
          const r = await fetch(opts.forward, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ text: message.text }),
            signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
          });
          await r.body?.cancel();
          if (!r.ok) throw new Error(`HTTP ${r.status}`);
        } catch (err) {
          // Not acknowledged: edgepulse delivers again later, and the message goes out then.
          return refuse(502, "forward_failed", `The chat webhook failed (${(err as Error).message}).`);
        }
      }
      remember(id);
      print(message, event);
      reply(200, { ok: true, text: message.text });
    })();
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      resolve({
        url: `http://${opts.host ?? "127.0.0.1"}:${port}`,
        port,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values: args } = parseArgs({
    options: {
      port: { type: "string", default: "8790" },
      host: { type: "string", default: "127.0.0.1" },
      secret: { type: "string", default: process.env.EDGEPULSE_WEBHOOK_SECRET },
      forward: { type: "string" },
    },
  });
  if (!args.secret) {
    process.stderr.write(
      "receiver: give the tenant's webhook secret with --secret or EDGEPULSE_WEBHOOK_SECRET (GET /v1/alerts/secret with an admin key).\n",
    );
    process.exit(2);
  }
  startReceiver({ secret: args.secret, port: Number(args.port), host: args.host, forward: args.forward }).then(
    (r) =>
      process.stdout.write(
        `course notifications: receiving alert webhooks on ${r.url}/${args.forward ? `, forwarding to ${args.forward}` : ""}\n`,
      ),
    (err: Error) => {
      process.stderr.write(`receiver: ${err.message}\n`);
      process.exit(1);
    },
  );
}
