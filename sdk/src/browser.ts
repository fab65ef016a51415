/**
 * The browser entry: the shared client, plus what a page needs. On page hide (visibilitychange → hidden,
 * pagehide) the queue leaves by `navigator.sendBeacon` (text/plain NDJSON with `?key=`, since a beacon
 * cannot set headers), or `fetch` with `keepalive` where there is no sendBeacon. Events that cannot be
 * sent (offline, or out of retries) wait in a bounded queue in localStorage, sent again when the browser
 * comes back online or on the next page load; every event has an id, so a resend is never counted twice.
 */
import { addReceipt, Client, type ClientOptions, emptyReceipt } from "./client.ts";
import { BEACON_MAX_BYTES } from "./limits.ts";
import type { Receipt, WireEvent } from "./types.ts";
import { clamp, toBatches } from "./util.ts";

type KeyValueStorage = Pick<Storage, "getItem" | "setItem" | "removeItem">;

export interface BrowserOptions extends ClientOptions {
  /** Most events kept offline; beyond, the oldest are dropped and counted (`dropped`). Default 1000; 1–10,000. */
  maxOfflineEvents?: number;
  /** Where the offline queue lives. Default `localStorage` (none: events that cannot be sent are rejected). */
  storage?: KeyValueStorage | null;
  /** Storage key of the offline queue. Default `edgepulse.queue`. */
  storageKey?: string;
  /** Install the page-hide and `online` listeners. Default true. */
  listen?: boolean;
  /** Whether the browser is online. Default `navigator.onLine`. */
  isOnline?: () => boolean;
}

function defaultStorage(): KeyValueStorage | null {
  try {
    return typeof localStorage === "undefined" ? null : localStorage;
  } catch {
    return null; // access refused (sandboxed frame, blocked cookies)
  }
}

export class BrowserClient extends Client {
  /** Events dropped from the full offline queue (oldest first), persisted across pages. */
  dropped = 0;
  readonly maxOfflineEvents: number;
  private readonly storage: KeyValueStorage | null;
  private readonly storageKey: string;
  private readonly isOnline: () => boolean;
  /** Events being delivered right now, by id: written to storage if the page hides meanwhile. */
  private readonly live = new Map<string, WireEvent>();
  /** Ids of events whose delivery deferred them (they stay in storage). */
  private readonly kept = new Set<string>();
  private resending?: Promise<Receipt>;

  constructor(opts: BrowserOptions) {
    super(opts, { maxBatchEvents: 50, flushIntervalMs: 5000, concurrency: 2 });
    this.storage = opts.storage === undefined ? defaultStorage() : opts.storage;
    this.storageKey = opts.storageKey ?? "edgepulse.queue";
    this.maxOfflineEvents = clamp(opts.maxOfflineEvents, 1000, 1, 10_000);
    this.isOnline = opts.isOnline ?? (() => typeof navigator === "undefined" || navigator.onLine !== false);
    this.dropped = Number(this.storage?.getItem(`${this.storageKey}.dropped`)) || 0;
    if (opts.listen !== false && typeof addEventListener === "function" && typeof document !== "undefined") {
      document.addEventListener("visibilitychange", () => document.visibilityState === "hidden" && this.hide());
      addEventListener("pagehide", () => this.hide());
      addEventListener("online", () => {
        this.resend();
        this.drain();
      });
    }
    this.resend();
  }

  /** Events waiting in the offline queue. */
  get offlineQueued(): number {
    return this.load().length;
  }

  /** Sends the offline queue (at start, and on `online`); resolves with its receipts. */
  resend(): Promise<Receipt> {
    if (this.resending) return this.resending;
    const events = this.load();
    if (events.length === 0 || !this.isOnline()) return Promise.resolve(emptyReceipt());
    const { maxBatchEvents, maxBatchBytes } = this.options;
    this.resending = Promise.all(toBatches(events, maxBatchEvents, maxBatchBytes).map((b) => this.dispatch(b, true)))
      .then((rs) => rs.reduce(addReceipt, emptyReceipt()))
      .finally(() => {
        this.resending = undefined;
      });
    return this.resending;
  }

  /** Page hide: beacon the queue; keep in storage what is still on its way (resent, and deduplicated, if lost). */
  hide(): void {
    if (this.live.size > 0) this.store([...this.live.values()]);
    const events = this.take();
    if (events.length === 0) return;
    if (!this.isOnline()) {
      this.store(events);
      return;
    }
    const url = `${this.url}${this.url.includes("?") ? "&" : "?"}key=${encodeURIComponent(this.key)}`;
    for (const batch of toBatches(events, this.options.maxBatchEvents, BEACON_MAX_BYTES)) {
      const body = batch.map((e) => JSON.stringify(e)).join("\n");
      this.totals.requests++;
      if (typeof navigator !== "undefined" && typeof navigator.sendBeacon === "function") {
        // false: over the browser's beacon quota; the next page load sends them.
        if (!navigator.sendBeacon(url, new Blob([body], { type: "text/plain" }))) this.store(batch);
      } else {
        fetch(url, { method: "POST", body, keepalive: true, headers: { "content-type": "text/plain" } }).catch(() =>
          this.store(batch),
        );
      }
    }
  }

  protected override drain(): void {
    if (this.isOnline()) super.drain();
    else {
      const events = this.take();
      if (events.length > 0 && this.storage !== null) {
        this.store(events);
        this.totals.deferred += events.length;
      }
    }
  }

  protected override offline(): boolean {
    return !this.isOnline();
  }

  protected override dispatch(events: WireEvent[], fromOutbox: boolean): Promise<Receipt> {
    for (const e of events) this.live.set(e.id, e);
    return super.dispatch(events, fromOutbox);
  }

  /** Called by a delivery out of retries (or offline): its events stay in storage until a resend settles them. */
  protected override defer(events: WireEvent[], fromOutbox: boolean): boolean {
    if (this.storage === null) return false;
    for (const e of events) this.kept.add(e.id);
    if (!fromOutbox) this.store(events);
    return true;
  }

  /** Settled events leave storage, except those this delivery deferred. */
  protected override settled(events: WireEvent[]): void {
    const done = new Set<string>();
    for (const e of events) {
      this.live.delete(e.id);
      if (!this.kept.delete(e.id)) done.add(e.id);
    }
    const stored = this.load();
    if (stored.some((e) => done.has(e.id))) this.save(stored.filter((e) => !done.has(e.id)));
  }

  private load(): WireEvent[] {
    try {
      const v = JSON.parse(this.storage?.getItem(this.storageKey) ?? "[]");
      return Array.isArray(v) ? v : [];
    } catch {
      return [];
    }
  }

  /** Appends to the offline queue (once per id), dropping the oldest beyond the bound. */
  private store(events: WireEvent[]): void {
    const all = new Map<string, WireEvent>();
    for (const e of this.load().concat(events)) all.set(e.id, e);
    const list = [...all.values()];
    const over = list.length - this.maxOfflineEvents;
    if (over > 0) this.drop(list.splice(0, over).length);
    this.save(list);
  }

  private save(events: WireEvent[]): void {
    if (this.storage === null) return;
    try {
      if (events.length === 0) this.storage.removeItem(this.storageKey);
      else this.storage.setItem(this.storageKey, JSON.stringify(events));
    } catch {
      // Quota exceeded: keep the newer half.
      const half = Math.ceil(events.length / 2);
      this.drop(half);
      if (half < events.length) this.save(events.slice(half));
    }
  }

  private drop(n: number): void {
    this.dropped += n;
    try {
      this.storage?.setItem(`${this.storageKey}.dropped`, String(this.dropped));
    } catch {
      // counted in memory anyway
    }
  }
}

/** A browser client: `track()` queues; batches leave by count, by time and on page hide. */
export function createClient(options: BrowserOptions): BrowserClient {
  return new BrowserClient(options);
}

export { Client, type ClientOptions, type Clock } from "./client.ts";
export type { EventRejection, Receipt, RejectionCode, TrackFields, WireEvent } from "./types.ts";
