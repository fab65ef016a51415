/**
 * A JSON endpoint for HTTP pull sources in tests: named feeds of records served in pages, with a script of
 * misbehaviour for the next requests (an error status, a hang until released, a body that is not JSON).
 *
 *   GET /feed/<name>[?after=<cursor>]   → {"data": [...records], "next": <cursor> | null}
 *     mode "response": the cursor is the index of the first record; `next` is given once a page is full.
 *     mode "record":   records carry a numeric "seq"; ?after=<seq> returns those after it (the source reads
 *                      the cursor from the last record).
 *     mode "list":     no paging: every record, always.
 *
 * Control (JSON bodies): POST /__feed/<name> {records, page_size, mode} (create or replace),
 * POST /__feed/<name>/append {records}, POST /__feed/<name>/script {steps: [{status} | {hang: true} |
 * {malformed: true}]}, POST /__feed/<name>/release (answers the hung requests with 503),
 * GET /__feed/<name>/requests (each request's query and headers).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

export type Step = { status: number } | { hang: true } | { malformed: true };

interface Feed {
  records: Array<Record<string, unknown>>;
  pageSize: number;
  mode: "response" | "record" | "list";
  script: Step[];
  requests: Array<{ query: Record<string, string>; headers: Record<string, string> }>;
  hung: ServerResponse[];
}

export interface SourceEndpoint {
  url: string;
  /** Called after each page is sent (e2e tests kill the stack from here). */
  onPage?: (feed: string, records: number) => void;
  setFeed(
    name: string,
    records: Array<Record<string, unknown>>,
    opts?: { pageSize?: number; mode?: Feed["mode"] },
  ): void;
  append(name: string, records: Array<Record<string, unknown>>): void;
  close(): Promise<void>;
}

export function startSourceEndpoint(opts: { unref?: boolean } = {}): Promise<SourceEndpoint> {
  const feeds = new Map<string, Feed>();
  const feedOf = (name: string): Feed => {
    let f = feeds.get(name);
    if (f === undefined) {
      f = { records: [], pageSize: 10, mode: "response", script: [], requests: [], hung: [] };
      feeds.set(name, f);
    }
    return f;
  };
  const json = (res: ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));

  const api: SourceEndpoint = {
    url: "",
    setFeed(name, records, o = {}) {
      const f = feedOf(name);
      f.records = [...records];
      f.pageSize = o.pageSize ?? f.pageSize;
      f.mode = o.mode ?? f.mode;
    },
    append(name, records) {
      feedOf(name).records.push(...records);
    },
    close: async () => {},
  };

  function serve(f: Feed, name: string, url: URL, req: IncomingMessage, res: ServerResponse): void {
    f.requests.push({
      query: Object.fromEntries(url.searchParams),
      headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])),
    });
    const step = f.script.shift();
    if (step && "hang" in step) {
      f.hung.push(res);
      return;
    }
    if (step && "status" in step) {
      json(res, step.status, { error: `scripted ${step.status}` });
      return;
    }
    if (step && "malformed" in step) {
      res.writeHead(200, { "content-type": "application/json" }).end("<html>not json");
      return;
    }
    let page: Array<Record<string, unknown>>;
    let next: string | null = null;
    if (f.mode === "list") page = f.records;
    else if (f.mode === "record") {
      const after = Number(url.searchParams.get("after") ?? "-1");
      page = f.records.filter((r) => Number(r.seq) > after).slice(0, f.pageSize);
    } else {
      const after = Number(url.searchParams.get("after") ?? "0");
      page = f.records.slice(after, after + f.pageSize);
      if (page.length === f.pageSize) next = String(after + f.pageSize);
    }
    json(res, 200, { data: page, next });
    api.onPage?.(name, page.length);
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://endpoint");
      const text = Buffer.concat(chunks).toString("utf8");
      const feed = /^\/feed\/([\w.-]+)$/.exec(url.pathname);
      if (feed && req.method === "GET") {
        serve(feedOf(feed[1]), feed[1], url, req, res);
        return;
      }
      const control = /^\/__feed\/([\w.-]+)(?:\/(append|script|release|requests))?$/.exec(url.pathname);
      if (!control) {
        json(res, 404, { error: "not found" });
        return;
      }
      const [, name, op] = control;
      const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      const f = feedOf(name);
      if (op === undefined && req.method === "POST") {
        api.setFeed(name, (body.records as Array<Record<string, unknown>>) ?? [], {
          pageSize: body.page_size as number | undefined,
          mode: body.mode as Feed["mode"] | undefined,
        });
        f.script = [];
        f.requests = [];
      } else if (op === "append") f.records.push(...((body.records as Array<Record<string, unknown>>) ?? []));
      else if (op === "script") f.script.push(...((body.steps as Step[]) ?? []));
      else if (op === "release") {
        for (const r of f.hung.splice(0)) if (!r.writableEnded) json(r, 503, { error: "released" });
      } else if (op === "requests") {
        json(res, 200, f.requests);
        return;
      }
      json(res, 200, { ok: true, records: f.records.length });
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      if (opts.unref) server.unref();
      api.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      api.close = () =>
        new Promise((r) => {
          for (const f of feeds.values()) for (const h of f.hung) h.destroy();
          server.closeAllConnections();
          server.close(() => r());
        });
      resolve(api);
    });
  });
}
