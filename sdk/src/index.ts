/**
 * The universal entry (Node, Deno, Workers, and browsers that want no page-hide handling): the shared
 * client plus gzip of request bodies. No Node built-ins: it runs wherever fetch does.
 */
import { Client, type ClientOptions } from "./client.ts";
import { SERVER_MAX_EVENTS_DEFAULT } from "./limits.ts";
import { byteLength } from "./util.ts";

export interface ServerOptions extends ClientOptions {
  /** Gzip bodies of at least `gzipMinBytes` (the collector accepts Content-Encoding: gzip). Default: true where CompressionStream exists. */
  gzip?: boolean;
  /** Smallest body worth compressing (bytes). Default 1024. */
  gzipMinBytes?: number;
}

export class ServerClient extends Client {
  private readonly gzip: boolean;
  private readonly gzipMinBytes: number;

  constructor(opts: ServerOptions) {
    super(opts, { maxBatchEvents: SERVER_MAX_EVENTS_DEFAULT, flushIntervalMs: 1000, concurrency: 4 });
    this.gzip = (opts.gzip ?? true) && typeof CompressionStream === "function";
    this.gzipMinBytes = opts.gzipMinBytes ?? 1024;
  }

  protected override async encode(json: string): Promise<RequestInit> {
    const init = await super.encode(json);
    if (!this.gzip || byteLength(json) < this.gzipMinBytes) return init;
    const stream = new Blob([json]).stream().pipeThrough(new CompressionStream("gzip"));
    const body = new Uint8Array(await new Response(stream).arrayBuffer());
    return { body, headers: { ...(init.headers as Record<string, string>), "content-encoding": "gzip" } };
  }
}

/** A client for servers and workers: `track()`, then `flush()` (e.g. in `ctx.waitUntil`) or `close()` on shutdown. */
export function createClient(options: ServerOptions): ServerClient {
  return new ServerClient(options);
}

export { Client, type ClientOptions, type Clock } from "./client.ts";
export type { EventRejection, Receipt, RejectionCode, TrackFields, WireEvent } from "./types.ts";
