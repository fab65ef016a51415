/**
 * A local server speaking Upstash's Redis REST protocol in front of a real
 * redis-server (see README "Redis"), so @upstash/redis and @upstash/ratelimit
 * run unchanged in development and tests.
 *
 *   POST /            ["CMD", arg, …]          → {"result": x} | 400 {"error": "…"}
 *   POST /pipeline    [[…], […]]               → [{"result"}|{"error"}, …] (not atomic)
 *   POST /multi-exec  [[…], […]]               → same, inside MULTI/EXEC
 *   Authorization: Bearer <token>; Upstash-Encoding: base64 encodes string replies.
 *
 * Redis 7.0 rejects the `#!lua flags=…` shebang that @upstash/ratelimit ≥ 2.1
 * sends: scripts are rewritten without it and the client's sha is mapped to
 * the rewritten script's sha.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { Redis } from "ioredis";

export interface UpstashBridge {
  url: string;
  port: number;
  token: string;
  setDelay(ms: number): void;
  close(): Promise<void>;
}

const REFUSED = new Set([
  "HELLO",
  "SELECT",
  "CLIENT",
  "AUTH",
  "RESET",
  "MULTI",
  "EXEC",
  "DISCARD",
  "WATCH",
  "UNWATCH",
  "SUBSCRIBE",
  "PSUBSCRIBE",
  "SSUBSCRIBE",
  "MONITOR",
  "BLPOP",
  "BRPOP",
  "BLMOVE",
  "BZPOPMIN",
  "BZPOPMAX",
  "XREAD",
  "XREADGROUP",
  "WAIT",
  "SHUTDOWN",
  "QUIT",
]);

type Reply = string | number | null | Reply[] | Buffer;

function encode(reply: Reply, base64: boolean): unknown {
  if (reply === null || typeof reply === "number") return reply;
  if (Array.isArray(reply)) return reply.map((r) => encode(r, base64));
  const s = Buffer.isBuffer(reply) ? reply : Buffer.from(String(reply), "utf8");
  return base64 ? s.toString("base64") : s.toString("utf8");
}

const sha1 = (s: string) => createHash("sha1").update(s).digest("hex");

export function startUpstashBridge(opts: {
  port?: number;
  redisUrl?: string;
  token: string;
  unref?: boolean;
}): Promise<UpstashBridge> {
  const redis = new Redis(opts.redisUrl ?? "redis://127.0.0.1:6379", { lazyConnect: false, maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  // In tests the bridge must not keep the process alive: neither its server nor its Redis connection.
  if (opts.unref) redis.on("ready", () => (redis as unknown as { stream?: { unref(): void } }).stream?.unref());
  /** Client sha → sha of the rewritten script. */
  const shas = new Map<string, string>();
  let delay = 0;

  const rewrite = (script: string) => script.replace(/^#!lua flags=[^\n]*\n/, "#!lua\n");

  async function run(cmd: unknown[]): Promise<Reply> {
    if (!Array.isArray(cmd) || cmd.length === 0) throw new Error("ERR command must be a non-empty array");
    const name = String(cmd[0]).toUpperCase();
    if (REFUSED.has(name)) throw new Error(`ERR command '${name}' is not allowed over REST`);
    let args = cmd.slice(1).map((a) => (typeof a === "string" ? a : JSON.stringify(a)));
    if (name === "EVAL" && args.length > 0) {
      const original = args[0];
      const rewritten = rewrite(original);
      shas.set(sha1(original), sha1(rewritten));
      args = [rewritten, ...args.slice(1)];
    } else if (name === "EVALSHA" && args.length > 0) {
      args = [shas.get(args[0]) ?? args[0], ...args.slice(1)];
    } else if (name === "SCRIPT" && String(args[0]).toUpperCase() === "LOAD" && args[1]) {
      shas.set(sha1(args[1]), sha1(rewrite(args[1])));
      args = [args[0], rewrite(args[1])];
    }
    return (await redis.callBuffer(name, ...args)) as Reply;
  }

  const readBody = (req: IncomingMessage) =>
    new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      req.on("error", reject);
    });

  let fail: number | "garbage" = 0;
  const server: Server = createServer(async (req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${opts.token}`) return send(401, { error: "Unauthorized" });
    // Test controls: POST /__bridge/delay/<ms> makes every command that much slower (a slow or stalled
    // Redis); POST /__bridge/fail/<status> answers every command with that HTTP status, /fail/garbage with
    // a body that is not JSON, /fail/0 restores normal answers.
    const control = /^\/__bridge\/delay\/(\d+)$/.exec(req.url ?? "");
    if (control && req.method === "POST") {
      delay = Number(control[1]);
      return send(200, { delay });
    }
    const failing = /^\/__bridge\/fail\/(\d+|garbage)$/.exec(req.url ?? "");
    if (failing && req.method === "POST") {
      fail = failing[1] === "garbage" ? "garbage" : Number(failing[1]);
      return send(200, { fail });
    }
    if (fail === "garbage") {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end("<html>upstream error</html>");
    }
    if (fail !== 0) return send(fail, { error: `ERR injected failure ${fail}` });
    if (req.method !== "POST") return send(405, { error: "ERR only POST is supported" });
    const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
    const path = (req.url ?? "/").split("?")[0].replace(/\/+$/, "") || "/";
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req));
    } catch {
      return send(400, { error: "ERR body is not JSON" });
    }
    if (delay > 0) {
      await new Promise((r) => {
        // A stalled request must not keep a test process alive after the tests are done.
        const timer = setTimeout(r, delay);
        if (opts.unref) timer.unref();
      });
    }
    try {
      if (path === "/") return send(200, { result: encode(await run(body as unknown[]), base64) });
      if (path === "/pipeline" || path === "/multi-exec") {
        if (!Array.isArray(body)) return send(400, { error: "ERR body must be an array of commands" });
        if (path === "/multi-exec") {
          const multi = redis.multi();
          for (const c of body as unknown[][])
            multi.callBuffer(
              String(c[0]).toUpperCase(),
              ...c.slice(1).map((a) => (typeof a === "string" ? a : JSON.stringify(a))),
            );
          const out = await multi.exec();
          if (out === null) return send(400, { error: "EXECABORT Transaction discarded" });
          return send(
            200,
            out.map(([err, r]) => (err ? { error: err.message } : { result: encode(r as Reply, base64) })),
          );
        }
        const out = await Promise.all(
          (body as unknown[][]).map(async (c) => {
            try {
              return { result: encode(await run(c), base64) };
            } catch (err) {
              return { error: (err as Error).message };
            }
          }),
        );
        return send(200, out);
      }
      return send(404, { error: "ERR unknown path" });
    } catch (err) {
      return send(400, { error: (err as Error).message });
    }
  });
  return new Promise((resolve) => {
    server.listen(opts.port ?? 0, "127.0.0.1", () => {
      if (opts.unref) server.unref();
      const port = (server.address() as { port: number }).port;
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        token: opts.token,
        setDelay: (ms) => {
          delay = ms;
        },
        close: () =>
          new Promise((r) => {
            server.close(() => r());
            redis.disconnect();
          }),
      });
    });
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const token = process.env.UPSTASH_REDIS_REST_TOKEN ?? "local-dev-token";
  startUpstashBridge({ port: Number(process.argv[2] ?? 8079), token }).then((b) =>
    process.stdout.write(`Upstash REST bridge on ${b.url} (token ${token.slice(0, 4)}…)\n`),
  );
}
