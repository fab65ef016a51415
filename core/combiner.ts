/**
 * Request combining: calls to one target that arrive while the previous call
 * to it is in flight leave together, as one call carrying all of them, and
 * each caller gets its own answer back. A target taking thousands of small
 * requests a second then sees a few calls per round trip. A stream's shards
 * combine this way in front of its primary (durable-objects/stream-shard.ts).
 *
 * Each call is made by one of the callers it carries (the leader), with the
 * `send` that caller brought: in a Worker a request may use only its own I/O
 * objects. A waiting caller keeps its own timer, which is also its bound: one
 * not carried (nor made leader) within `maxWaitMs` gives up with a
 * CombinerTimeout (nothing sent, a retry is safe); one carried by a call in
 * flight waits for that call's answer a while longer; and the next caller
 * starts afresh if a leader vanished.
 *
 * Bounded: at most `maxWaiting` units (a caller's weight, e.g. its events)
 * wait per target; past that `submit` refuses at once (undefined).
 */

/** How many more maxWaitMs a caller already carried by a call in flight waits for its answer. */
const CARRIED_WAITS = 5;

export class CombinerTimeout extends Error {
  /** True when the caller's request had been sent (its outcome is unknown), false when it never left. */
  readonly sent: boolean;
  constructor(ms: number, sent: boolean) {
    super(sent ? `sent, but no answer within ${ms * (1 + CARRIED_WAITS)} ms` : `not sent within ${ms} ms`);
    this.name = "CombinerTimeout";
    this.sent = sent;
  }
}

export interface CombinerOptions<Req> {
  /** Units allowed to wait (beyond the call in flight); a caller that would pass it is refused. */
  maxWaiting: number;
  /** A caller's units (default 1). */
  weight?: (req: Req) => number;
  /** How long a caller waits for its answer or its turn to lead. */
  maxWaitMs: number;
  /** Clock for the stale-leader check (tests inject one). */
  now?: () => number;
}

type Turn<Res> = { lead: true } | { lead: false; ok: true; res: Res } | { lead: false; ok: false; err: unknown };

interface Waiter<Req, Res> {
  req: Req;
  send: (reqs: Req[]) => Promise<Res[]>;
  weight: number;
  settle: (t: Turn<Res>) => void;
}

export class Combiner<Req, Res> {
  #waiting: Array<Waiter<Req, Res>> = [];
  #waitingUnits = 0;
  /** When the current leader was chosen; null when no call is in flight or about to start. */
  #ledSince: number | null = null;
  #leader: Waiter<Req, Res> | null = null;
  readonly #opts: CombinerOptions<Req>;
  readonly #now: () => number;
  /** Calls made and callers carried (for stats). */
  calls = 0;
  carried = 0;

  constructor(opts: CombinerOptions<Req>) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  get idle(): boolean {
    return this.#ledSince === null && this.#waiting.length === 0;
  }

  /**
   * The caller's answer; undefined when the waiting bound refuses it. Rejects if its call failed.
   * `send` makes the call if this caller leads it (each caller brings its own, made in its own request:
   * a request may use only its own I/O objects, bindings included).
   */
  submit(req: Req, send: (reqs: Req[]) => Promise<Res[]>): Promise<Res> | undefined {
    const weight = this.#opts.weight?.(req) ?? 1;
    if (this.#waitingUnits + weight > this.#opts.maxWaiting) return undefined;
    // A leader that has not finished within the bound (its request was cancelled) is forgotten.
    if (this.#ledSince !== null && this.#now() - this.#ledSince > this.#opts.maxWaitMs) {
      this.#ledSince = null;
      this.#leader = null;
    }
    let settle!: (t: Turn<Res>) => void;
    const turn = new Promise<Turn<Res>>((resolve) => {
      settle = resolve;
    });
    const w: Waiter<Req, Res> = { req, send, weight, settle };
    this.#waiting.push(w);
    this.#waitingUnits += weight;
    if (this.#ledSince === null) this.#choose();
    return this.#run(w, turn);
  }

  /** Makes the first waiting caller the leader of the next call. */
  #choose(): void {
    const next = this.#waiting[0];
    if (next === undefined) {
      this.#ledSince = null;
      this.#leader = null;
      return;
    }
    this.#ledSince = this.#now();
    this.#leader = next;
    next.settle({ lead: true });
  }

  async #run(w: Waiter<Req, Res>, turn: Promise<Turn<Res>>): Promise<Res> {
    // Not yet carried: give up after maxWaitMs (nothing was sent, a retry is safe). Carried by a call in
    // flight: keep waiting for its answer (the events may be applied), up to CARRIED_WAITS times as long.
    let t: Turn<Res> | "expired" = "expired";
    for (let round = 0; t === "expired" && round < 1 + CARRIED_WAITS; round++) {
      let fire!: (v: "expired") => void;
      const expired = new Promise<"expired">((resolve) => {
        fire = resolve;
      });
      const timer = setTimeout(() => fire("expired"), this.#opts.maxWaitMs);
      t = await Promise.race([turn, expired]);
      clearTimeout(timer);
      if (t === "expired" && this.#waiting.includes(w)) break;
    }
    if (t === "expired") {
      const i = this.#waiting.indexOf(w);
      if (i >= 0) {
        this.#waiting.splice(i, 1);
        this.#waitingUnits -= w.weight;
      }
      // Made leader in the same instant it gave up: hand the lead on.
      if (this.#leader === w) this.#choose();
      throw new CombinerTimeout(this.#opts.maxWaitMs, i < 0);
    }
    if (!t.lead) {
      if (t.ok) return t.res;
      throw t.err;
    }
    // The leader lets the callers arriving in this same turn join, then carries everyone waiting.
    await new Promise((resolve) => setTimeout(resolve, 0));
    const group = this.#waiting;
    this.#waiting = [];
    this.#waitingUnits = 0;
    this.calls++;
    this.carried += group.length;
    let answers: Res[] | undefined;
    let failure: unknown;
    try {
      answers = await w.send(group.map((g) => g.req));
      if (answers.length !== group.length) throw new Error(`expected ${group.length} answers, got ${answers.length}`);
    } catch (err) {
      answers = undefined;
      failure = err;
    }
    let mine: Turn<Res> | undefined;
    group.forEach((g, i) => {
      const out: Turn<Res> =
        answers === undefined ? { lead: false, ok: false, err: failure } : { lead: false, ok: true, res: answers[i] };
      if (g === w) mine = out;
      else g.settle(out);
    });
    this.#choose();
    if (mine === undefined || mine.lead) throw new Error("the leader was not in its own call");
    if (!mine.ok) throw mine.err;
    return mine.res;
  }
}
