/**
 * `edgepulse tail <stream>`: the stream's live socket (GET /v1/streams/:name/live, the same messages the
 * dashboard gets: a snapshot, then updates ≤ 20/s) rendered in place on a terminal, or one JSON line per
 * message with --json. Node 20 has no global WebSocket without a flag: the `ws` package, with the key in the
 * Authorization header. Reconnects with backoff when the socket drops; Ctrl-C ends it.
 */
import WebSocket from "ws";
import { CliError, EXIT, usage } from "./errors.ts";
import { errorFromBody } from "./http.ts";
import { cellText, formatCount } from "./output.ts";

const WINDOWS = ["1m", "5m", "15m", "1h"] as const;
type WindowName = (typeof WINDOWS)[number];

/** The figures of one window, as core/window.ts's Aggregates (only what is shown). */
interface Figures {
  count: number;
  rate: number;
  sum: number | null;
  mean: number | null;
  min: number | null;
  max: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  distinct_users: number;
}

interface LiveMessage {
  type: "snapshot" | "update";
  stream: string;
  at: number;
  applied?: number;
  windows: Record<WindowName, Figures>;
  counters: { accepted: number; duplicates: number; late: number; rejected: Record<string, number> };
}

function isLiveMessage(x: unknown): x is LiveMessage {
  const m = x as LiveMessage;
  return (
    typeof m === "object" &&
    m !== null &&
    (m.type === "snapshot" || m.type === "update") &&
    typeof m.windows === "object" &&
    m.windows !== null &&
    typeof m.counters === "object"
  );
}

export interface TailOptions {
  window: string;
  json: boolean;
  /** Stop after this many messages (scripts, tests). */
  count?: number;
}

export interface TailLine {
  type: "snapshot" | "update";
  stream: string;
  at: string;
  window: WindowName;
  applied: number | null;
  figures: Figures;
  counters: LiveMessage["counters"];
}

export function tailLine(m: LiveMessage, window: WindowName): TailLine {
  return {
    type: m.type,
    stream: m.stream,
    at: new Date(m.at).toISOString(),
    window,
    applied: m.applied ?? null,
    figures: m.windows[window],
    counters: m.counters,
  };
}

function render(l: TailLine): string[] {
  const f = l.figures;
  const rejected = Object.values(l.counters.rejected ?? {}).reduce((a, b) => a + b, 0);
  return [
    `${l.stream} — last ${l.window} — ${l.at}${l.applied != null ? ` (+${formatCount(l.applied)})` : ""}`,
    `  count ${formatCount(f.count)}   rate ${cellText(f.rate)}/s   users ${formatCount(f.distinct_users)}`,
    `  mean ${cellText(f.mean) || "–"}   p50 ${cellText(f.p50) || "–"}   p95 ${cellText(f.p95) || "–"}   p99 ${cellText(f.p99) || "–"}   min ${cellText(f.min) || "–"}   max ${cellText(f.max) || "–"}`,
    `  lifetime: accepted ${formatCount(l.counters.accepted)}   duplicates ${formatCount(l.counters.duplicates)}   late ${formatCount(l.counters.late)}   rejected ${formatCount(rejected)}`,
  ];
}

export async function runTail(url: string, key: string, stream: string, o: TailOptions): Promise<void> {
  if (!(WINDOWS as readonly string[]).includes(o.window)) throw usage(`--window must be one of ${WINDOWS.join(", ")}`);
  const window = o.window as WindowName;
  const wsUrl = `${url.replace(/^http/, "ws")}/v1/streams/${encodeURIComponent(stream)}/live`;
  const tty = !o.json && process.stdout.isTTY === true;
  let shown = 0;
  let printed = 0;
  let stopped = false;
  let socket: WebSocket | undefined;
  const stop = () => {
    stopped = true;
    socket?.close();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);

  const show = (m: LiveMessage) => {
    const line = tailLine(m, window);
    if (o.json) process.stdout.write(`${JSON.stringify(line)}\n`);
    else {
      const lines = render(line);
      if (tty && printed > 0) process.stdout.write(`\x1b[${printed}A\x1b[J`);
      process.stdout.write(`${lines.join("\n")}\n`);
      printed = tty ? lines.length : 0;
    }
    shown++;
    if (o.count !== undefined && shown >= o.count) stop();
  };

  let backoff = 500;
  try {
    while (!stopped) {
      const outcome = await new Promise<"closed" | CliError>((res) => {
        const ws = new WebSocket(wsUrl, ["edgepulse.v1"], { headers: { authorization: `Bearer ${key}` } });
        socket = ws;
        let heartbeat: NodeJS.Timeout | undefined;
        ws.on("open", () => {
          backoff = 500;
          heartbeat = setInterval(() => ws.send("ping"), 30_000);
        });
        ws.on("message", (data) => {
          const text = data.toString();
          if (text === "pong") return;
          let m: unknown;
          try {
            m = JSON.parse(text);
          } catch {
            return;
          }
          if (isLiveMessage(m)) show(m);
        });
        ws.on("unexpected-response", (_req, res) => {
          let body = "";
          res.on("data", (d: Buffer) => {
            body += d.toString();
          });
          res.on("end", () => {
            const err = errorFromBody(res.statusCode ?? 0, body);
            ws.terminate();
            res2(err);
          });
        });
        const res2 = (v: "closed" | CliError) => {
          clearInterval(heartbeat);
          res(v);
        };
        ws.on("error", () => {
          // "close" follows
        });
        ws.on("close", () => res2("closed"));
      });
      if (outcome instanceof CliError) {
        // A refused upgrade (bad key, no such stream…) is final; a server error is retried.
        if (outcome.exit !== EXIT.network) throw outcome;
      }
      if (stopped) break;
      if (!o.json && !tty) process.stderr.write(`connection lost; reconnecting in ${backoff} ms\n`);
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 30_000);
    }
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}
