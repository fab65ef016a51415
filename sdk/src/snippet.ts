/**
 * The IIFE build for pages with no build step: exposes `window.edgepulse` and replays the calls the
 * loader stub queued (`edgepulse.q`) before this script arrived. See sdk/README.md for the stub.
 */
import { type BrowserClient, type BrowserOptions, createClient } from "./browser.ts";
import { emptyReceipt } from "./client.ts";
import type { Receipt, TrackFields } from "./types.ts";

type Call = [method: string, args: ArrayLike<unknown>];
interface Api {
  init(options: BrowserOptions): BrowserClient;
  track(name: string, fields?: TrackFields): string | undefined;
  flush(): Promise<Receipt>;
  client?: BrowserClient;
}

const w = window as unknown as { edgepulse?: { q?: Call[] } };
const queued = w.edgepulse?.q ?? [];
/** Tracks made before init(), in order. */
const early: [string, TrackFields | undefined][] = [];

const api: Api = {
  init(options) {
    api.client ??= createClient(options);
    for (const [name, fields] of early.splice(0)) api.client.track(name, fields);
    return api.client;
  },
  track(name, fields) {
    if (api.client) return api.client.track(name, fields);
    early.push([name, fields]);
    return undefined;
  },
  flush: () => api.client?.flush() ?? Promise.resolve(emptyReceipt()),
};
w.edgepulse = api as unknown as { q?: Call[] };
for (const [method, args] of queued) {
  const fn = (api as unknown as Record<string, (...a: unknown[]) => unknown>)[method];
  if (typeof fn === "function") fn(...Array.from(args));
}
