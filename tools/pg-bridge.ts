/**
 * A WebSocket-to-TCP bridge for the neon serverless driver against a plain
 * PostgreSQL (local development and tests). The driver connects to
 * ws://<bridge>/v2?address=<host>:<port>; each socket is piped to that TCP
 * address. Only loopback addresses are accepted.
 *
 * For outage tests the bridge can be switched down and up: while down it
 * closes every open connection and refuses new ones, exactly as an
 * unreachable database looks to the driver. For tests of work in flight it
 * can also stall the connections open at that moment (PostgreSQL's replies
 * are held, so a write commits but its writer does not hear of it) until
 * resumed; new connections are not stalled.
 */
import { createServer, type Server } from "node:http";
import { connect, type Socket } from "node:net";
import { WebSocket, WebSocketServer } from "ws";

export interface Bridge {
  port: number;
  url: string;
  setDown(down: boolean): void;
  close(): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1"]);

export function startBridge(port = 0, host = "127.0.0.1", opts: { unref?: boolean } = {}): Promise<Bridge> {
  let down = false;
  /** `held`: replies kept back while the connection is stalled. */
  const open = new Set<{ ws: WebSocket; tcp: Socket; held: Buffer[] | null }>();
  const server: Server = createServer((req, res) => {
    // Control endpoint for tests: POST /__bridge/down, /up, /stall (the connections open now), /resume.
    const m = /^\/__bridge\/(down|up|stall|resume)$/.exec(req.url ?? "");
    if (req.method === "POST" && m) {
      if (m[1] === "down" || m[1] === "up") setDown(m[1] === "down");
      else if (m[1] === "stall") for (const c of open) c.held ??= [];
      else {
        for (const c of open) {
          const held = c.held ?? [];
          c.held = null;
          for (const d of held) if (c.ws.readyState === WebSocket.OPEN) c.ws.send(d);
        }
      }
      const stalled = [...open].filter((c) => c.held !== null).length;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ down, stalled }));
      return;
    }
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ noServer: true });
  function setDown(value: boolean) {
    down = value;
    if (down) {
      for (const c of open) {
        c.tcp.destroy();
        c.ws.terminate();
      }
      open.clear();
    }
  }
  server.on("upgrade", (req, socket, head) => {
    const url = new URL(req.url ?? "/", "http://bridge");
    const address = url.searchParams.get("address") ?? "";
    const idx = address.lastIndexOf(":");
    const targetHost = address.slice(0, idx);
    const targetPort = Number(address.slice(idx + 1));
    if (down || !LOOPBACK.has(targetHost) || !Number.isInteger(targetPort)) {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const tcp = connect(targetPort, targetHost);
      const conn: { ws: WebSocket; tcp: Socket; held: Buffer[] | null } = { ws, tcp, held: null };
      open.add(conn);
      const close = () => {
        open.delete(conn);
        tcp.destroy();
        if (ws.readyState === WebSocket.OPEN) ws.close();
      };
      tcp.on("data", (d) => {
        if (conn.held) conn.held.push(d);
        else if (ws.readyState === WebSocket.OPEN) ws.send(d);
      });
      tcp.on("error", close);
      tcp.on("close", close);
      ws.on("message", (data: Buffer) => {
        tcp.write(data);
        // PostgreSQL Terminate ('X', length 4): close our side too (PGlite needs it).
        if (data.length === 5 && data[0] === 0x58) tcp.end();
      });
      ws.on("close", close);
      ws.on("error", close);
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      if (opts.unref) server.unref();
      const actual = (server.address() as { port: number }).port;
      resolve({
        port: actual,
        url: `${host}:${actual}`,
        setDown,
        close: () =>
          new Promise((r) => {
            setDown(true);
            wss.close();
            server.close(() => r());
          }),
      });
    });
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.argv[2] ?? 5480);
  startBridge(port).then((b) => process.stdout.write(`pg bridge on ws://${b.url}\n`));
}
