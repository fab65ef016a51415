/**
 * Live push from the object that owns the state.
 *
 * Stream sockets (hibernating) get a snapshot on connect, then an update
 * after events are applied: at once if the last message is older than
 * LIVE_COALESCE_MS, else when that interval has passed (so a hot stream
 * sends at most ~1/LIVE_COALESCE_MS messages a second, and a single event is
 * on screen without waiting). Windows also slide without events: at each
 * moment some window's figures change (an old second leaves it) the sockets
 * get a decayed update, so an idle stream shows what the API says.
 *
 * The tenant's hub gets this stream's record (all windows, counters, the
 * alerts firing now) at most once per HUB_UPDATE_MS while anything changes,
 * decay included, and at once after an alert transition. A failed hub update
 * is retried with backoff, and every record carries the full firing set, so
 * a lost message cannot leave the overview wrong for long. The entry's
 * sparkline (events per minute, last SPARK_MINUTES) shifts at each minute's
 * start while it holds any event, so the hub also gets the shifted one.
 */

import { within } from "../../core/async";
import {
  type AlertEvent,
  directoryEntry,
  HUB_UPDATE_MS,
  LIVE_COALESCE_MS,
  SPARK_MINUTES,
  type StreamRecord,
  type StreamSnapshotMessage,
  type StreamUpdateMessage,
} from "../../core/live";
import { type Aggregates, minuteOf, secondOf, WINDOW_NAMES, type WindowName } from "../../core/window";
import type { Wakeable } from "../planner";
import { acceptSocket, answerClientMessage, closeSocket, send } from "../sockets";
import { emptyCounters, type Meta } from "./ingest";
import type { WindowStore } from "./store";

export const STREAM_TAG = "stream";
/** How long a hub update may take before it is retried later. */
const HUB_TIMEOUT_MS = 2000;
const HUB_MAX_BACKOFF_MS = 60_000;

const nextMinute = (now: number) => (minuteOf(secondOf(now)) + 1) * 60_000;

export class Live implements Wakeable {
  readonly name = "live";
  #applied = 0;
  #lastPush = 0;
  #pushAt: number | null = null;
  #decayAt: number | null = null;
  /** The next minute's start while the sparkline holds events: it shifts then. */
  #sparkAt: number | null = null;
  #hubAt: number | null = null;
  #hubLast = 0;
  #hubFailures = 0;

  constructor(
    readonly ctx: DurableObjectState,
    readonly env: Env,
    readonly store: WindowStore,
    readonly meta: () => Meta | null,
    readonly firing: () => AlertEvent[],
    readonly breakdowns: () => string[][],
  ) {}

  #sockets(): WebSocket[] {
    return this.ctx.getWebSockets(STREAM_TAG);
  }

  /** After loading: the hub and any sockets need the decayed figures from now on. */
  load(now: number): void {
    if (this.meta() === null) return;
    this.#decayAt = this.store.windows.nextChangeAfter(now);
    this.#sparkAt = this.#spark(now).some((n) => n > 0) ? nextMinute(now) : null;
  }

  /** Events were applied and are durable. */
  committed(applied: number, now: number): void {
    if (this.#sockets().length > 0) {
      this.#applied += applied;
      if (now - this.#lastPush >= LIVE_COALESCE_MS) this.#push(now);
      else this.#pushAt ??= this.#lastPush + LIVE_COALESCE_MS;
    }
    this.#decayAt = this.store.windows.nextChangeAfter(now);
    this.#sparkAt = nextMinute(now);
    this.hubSoon(now);
  }

  /** Schedules a hub update: within HUB_UPDATE_MS of the last, or at once (alert transitions). */
  hubSoon(now: number, urgent = false): void {
    const at = urgent ? now : Math.max(now, this.#hubLast + HUB_UPDATE_MS);
    this.#hubAt = this.#hubAt === null ? at : Math.min(this.#hubAt, at);
  }

  /** An alert transition: pushed to this stream's sockets at once, and to the hub. */
  alert(event: AlertEvent, now: number): void {
    const text = JSON.stringify({ type: "alert", event });
    for (const ws of this.#sockets()) send(ws, text);
    this.hubSoon(now, event.kind === "firing" || event.kind === "resolved");
  }

  nextWake(): number | null {
    let next = Number.POSITIVE_INFINITY;
    for (const t of [this.#pushAt, this.#decayAt, this.#sparkAt, this.#hubAt]) if (t !== null && t < next) next = t;
    return Number.isFinite(next) ? next : null;
  }

  async wake(now: number): Promise<void> {
    if (this.#pushAt !== null && this.#pushAt <= now) this.#push(now);
    if (this.#decayAt !== null && this.#decayAt <= now) {
      // A window's figures changed without new events: show the decayed figures.
      if (this.#sockets().length > 0) this.#push(now);
      this.#decayAt = this.store.windows.nextChangeAfter(now);
      this.hubSoon(now);
    }
    if (this.#sparkAt !== null && this.#sparkAt <= now) {
      // A new minute: the sparkline shifts (the last shift sends it empty, then nothing until events come).
      this.#sparkAt = this.#spark(now).some((n) => n > 0) ? nextMinute(now) : null;
      this.hubSoon(now);
    }
    if (this.#hubAt !== null && this.#hubAt <= now) await this.#updateHub(now);
  }

  #windows(now: number): Record<WindowName, Aggregates> {
    return Object.fromEntries(WINDOW_NAMES.map((w) => [w, this.store.windows.aggregates(w, now)])) as Record<
      WindowName,
      Aggregates
    >;
  }

  /** The full picture: every window, counters, and the chart series (5 min per second, 1 h per minute). */
  snapshot(stream: string, now: number, seconds = 300, minutes = 60): StreamSnapshotMessage {
    return {
      type: "snapshot",
      stream,
      at: now,
      windows: this.#windows(now),
      counters: this.meta()?.counters ?? emptyCounters(),
      seconds: this.store.windows.secondSeries(now, seconds),
      minutes: this.store.windows.minuteSeries(now, minutes),
    };
  }

  #push(now: number): void {
    this.#pushAt = null;
    const sockets = this.#sockets();
    const meta = this.meta();
    if (sockets.length === 0 || meta === null) return;
    // Only the current and previous second and minute: the client merges them into its series.
    const update: StreamUpdateMessage = {
      ...this.snapshot(meta.stream, now, 2, 2),
      type: "update",
      applied: this.#applied,
    };
    this.#applied = 0;
    this.#lastPush = now;
    const text = JSON.stringify(update);
    for (const ws of sockets) send(ws, text);
  }

  /** Events per minute over the last SPARK_MINUTES minutes, oldest first, ending with the current one. */
  #spark(now: number): number[] {
    const end = minuteOf(secondOf(now));
    return Array.from(
      { length: SPARK_MINUTES },
      (_, i) => this.store.windows.minute(end - SPARK_MINUTES + 1 + i).count,
    );
  }

  /** This stream's record for the hub: the overview entry, all windows, counters, firing alerts. */
  record(now: number): StreamRecord | null {
    const meta = this.meta();
    if (meta === null) return null;
    const windows = this.#windows(now);
    return {
      entry: directoryEntry(meta.stream, now, windows["1m"], meta.counters, this.#spark(now)),
      windows,
      counters: meta.counters,
      first_event_at: meta.firstEventAt,
      last_event_at: meta.lastEventAt,
      firing: this.firing(),
      breakdowns: this.breakdowns(),
    };
  }

  async #updateHub(now: number): Promise<void> {
    this.#hubAt = null;
    const meta = this.meta();
    const record = this.record(now);
    if (meta === null || record === null) return;
    try {
      const ok = await within(
        this.env.TENANT_HUB.getByName(meta.tenant)
          .update(record)
          .then(() => true),
        HUB_TIMEOUT_MS,
        false,
      );
      if (!ok) throw new Error("hub update timed out");
      this.#hubLast = now;
      this.#hubFailures = 0;
    } catch {
      // The overview is best effort, but it must converge: retry with backoff (the record is rebuilt then).
      this.#hubFailures++;
      this.#hubAt = now + Math.min(HUB_UPDATE_MS * 2 ** this.#hubFailures, HUB_MAX_BACKOFF_MS);
    }
  }

  /** A dashboard's socket for this stream (the Worker has checked the key). */
  accept(request: Request): Response {
    const stream = request.headers.get("x-edgepulse-stream") ?? "";
    return acceptSocket(this.ctx, request, STREAM_TAG, () => [this.snapshot(stream, Date.now())], { stream });
  }

  message(ws: WebSocket, message: string | ArrayBuffer): void {
    answerClientMessage(ws, message);
  }

  close(ws: WebSocket, code: number): void {
    closeSocket(ws, code);
  }
}
