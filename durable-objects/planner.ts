/**
 * The one alarm of a Durable Object. Every part with periodic or deferred
 * work (in MetricActor: live pushes, hub updates, window decay, alert
 * timers, history flushes, webhook deliveries, housekeeping; in TenantHub:
 * broadcasts and batched writes) says when it next needs to run; the
 * planner keeps the object's single alarm at the earliest of those times
 * and, when it fires, runs each part that is due, in a fixed order.
 *
 * The alarm time is tracked in memory (read once at start-up), and updated
 * before the storage call is awaited, so concurrent callers never race a
 * read-await-write. A part that throws is logged and does not stop the
 * others, and is held back for FAILURE_HOLD_MS so a persistent fault cannot
 * spin the alarm; the alarm handler itself never throws.
 */
const FAILURE_HOLD_MS = 1000;

export interface Wakeable {
  readonly name: string;
  /** When this part next needs to run (epoch ms), or null for never. */
  nextWake(now: number): number | null;
  /** Does the part's due work. */
  wake(now: number): Promise<void> | void;
}

export class WakePlanner {
  readonly #storage: DurableObjectStorage;
  readonly #parts: Wakeable[] = [];
  /** Parts that just failed, and until when they are held back. */
  readonly #held = new Map<Wakeable, number>();
  /** When the alarm is set for, as far as this instance knows (read once at start-up). */
  #alarmAt: number | null = null;

  constructor(storage: DurableObjectStorage) {
    this.#storage = storage;
  }

  /** The alarm time read from storage at start-up. */
  init(alarmAt: number | null): void {
    this.#alarmAt = alarmAt;
  }

  add(part: Wakeable): void {
    this.#parts.push(part);
  }

  /** The earliest time any part needs to run, or null. */
  next(now: number): number | null {
    let best = Number.POSITIVE_INFINITY;
    for (const p of this.#parts) {
      const t = this.#wakeOf(p, now);
      if (t !== null && t < best) best = t;
    }
    return Number.isFinite(best) ? best : null;
  }

  #wakeOf(p: Wakeable, now: number): number | null {
    const t = p.nextWake(now);
    const held = this.#held.get(p);
    return t === null || held === undefined ? t : Math.max(t, held);
  }

  /** Keeps the alarm at or before the earliest wake-up any part needs. */
  async arm(now = Date.now()): Promise<void> {
    const next = this.next(now);
    if (next === null) return;
    if (this.#alarmAt !== null && this.#alarmAt <= next) return;
    this.#alarmAt = next;
    await this.#storage.setAlarm(next);
  }

  /** The alarm fired: run every due part, then set the next alarm. */
  async fire(): Promise<void> {
    this.#alarmAt = null;
    for (const p of this.#parts) {
      const now = Date.now();
      const t = this.#wakeOf(p, now);
      if (t === null || t > now) continue;
      this.#held.delete(p);
      try {
        await p.wake(now);
      } catch (err) {
        this.#held.set(p, Date.now() + FAILURE_HOLD_MS);
        console.error(`edgepulse: ${p.name} failed: ${(err as Error).name}: ${(err as Error).message}`);
      }
    }
    await this.arm();
  }
}
