/**
 * The alert engine: the stream's rules and their state machines
 * (core/alerts.ts). Rules are stored here and only here (the tenant's
 * registry keeps just which stream each rule id belongs to).
 *
 * Rules are evaluated shortly after events are applied (coalesced over
 * LIVE_COALESCE_MS), at every moment a window's figures change without new
 * events (an old second leaving it), and at the rules' own timers (`for`,
 * `keep_firing_for`, no-data). Each transition is stored with what it owes
 * (its PostgreSQL row, one webhook delivery per target) in one transaction,
 * then pushed live.
 */
import {
  type AlertRule,
  type AlertState,
  evaluate,
  INITIAL_STATE,
  nextDeadline,
  stateAfterEdit,
} from "../../core/alerts";
import type { AlertEvent } from "../../core/live";
import { LIVE_COALESCE_MS } from "../../core/live";
import type { Aggregates, WindowName } from "../../core/window";
import type { Wakeable } from "../planner";
import type { History } from "./history";
import type { Meta } from "./ingest";
import type { Live } from "./live";
import type { Outbox } from "./outbox";
import type { WindowStore } from "./store";

/** Alert transitions kept in the actor (older ones live in PostgreSQL's alert_events). */
export const ALERT_EVENTS_KEPT = 1000;

export interface RuleStatus {
  rule: AlertRule;
  state: AlertState;
}

export class Alerts implements Wakeable {
  readonly name = "alerts";
  #rules = new Map<string, RuleStatus>();
  #evalAt: number | null = null;

  constructor(
    readonly sql: SqlStorage,
    readonly storage: DurableObjectStorage,
    readonly store: WindowStore,
    readonly outbox: Outbox,
    readonly history: History,
    readonly live: Live,
    readonly meta: () => Meta | null,
  ) {}

  load(): void {
    this.#rules = new Map(
      this.sql
        .exec<{ id: string; rule: string; state: string }>("SELECT id, rule, state FROM alert_rules")
        .toArray()
        .map((r) => [r.id, { rule: JSON.parse(r.rule) as AlertRule, state: JSON.parse(r.state) as AlertState }]),
    );
  }

  get size(): number {
    return this.#rules.size;
  }

  /** Events were applied: evaluate soon (coalesced). */
  committed(now: number): void {
    if (this.#rules.size > 0) this.#evalAt ??= now + LIVE_COALESCE_MS;
  }

  nextWake(now: number): number | null {
    let next = this.#evalAt ?? Number.POSITIVE_INFINITY;
    let threshold = false;
    const lastEventAt = this.meta()?.lastEventAt ?? null;
    for (const r of this.#rules.values()) {
      if (!r.rule.enabled) continue;
      if (r.rule.kind === "threshold") threshold = true;
      const d = nextDeadline(r.rule, r.state, lastEventAt);
      if (d !== null && d < next) next = d;
    }
    if (threshold) {
      const change = this.store.windows.nextChangeAfter(now);
      if (change !== null && change < next) next = change;
    }
    return Number.isFinite(next) ? next : null;
  }

  async wake(now: number): Promise<void> {
    this.evaluateAll(now);
  }

  /** The alerts firing now, as the hub shows them. */
  firing(): AlertEvent[] {
    const meta = this.meta();
    if (meta === null) return [];
    const out: AlertEvent[] = [];
    for (const [id, r] of this.#rules) {
      if (r.state.state !== "firing" || r.state.firingSince === null) continue;
      out.push({
        id: `${id}:firing:${r.state.firingSince}`,
        stream: meta.stream,
        rule_id: id,
        rule_name: r.rule.name,
        kind: "firing",
        at: r.state.firingSince,
        value: r.state.value,
        labels: r.rule.labels,
      });
    }
    return out;
  }

  /**
   * Evaluates every rule against the live windows now. Transitions are stored with their PostgreSQL
   * rows and webhook deliveries in one transaction, then pushed live.
   */
  evaluateAll(now: number): void {
    this.#evalAt = null;
    const meta = this.meta();
    if (meta === null || this.#rules.size === 0) return;
    const figures = new Map<WindowName, Aggregates>();
    const fresh: AlertEvent[] = [];
    this.storage.transactionSync(() => {
      for (const [id, r] of this.#rules) {
        if (r.rule.kind === "threshold" && !figures.has(r.rule.window)) {
          figures.set(r.rule.window, this.store.windows.aggregates(r.rule.window, now));
        }
        const res = evaluate(r.rule, r.state, {
          now,
          figures: r.rule.kind === "threshold" ? (figures.get(r.rule.window) ?? null) : null,
          lastEventAt: meta.lastEventAt,
        });
        const changed = res.transitions.length > 0 || JSON.stringify(res.state) !== JSON.stringify(r.state);
        r.state = res.state;
        if (changed) this.sql.exec("UPDATE alert_rules SET state = ? WHERE id = ?", JSON.stringify(r.state), id);
        for (const t of res.transitions) {
          const event: AlertEvent = {
            id: `${id}:${t.kind}:${t.at}`,
            stream: meta.stream,
            rule_id: id,
            rule_name: r.rule.name,
            kind: t.kind,
            at: t.at,
            value: t.value,
            labels: r.rule.labels,
          };
          this.sql.exec(
            "INSERT OR IGNORE INTO alert_events (id, event) VALUES (?, ?)",
            event.id,
            JSON.stringify(event),
          );
          this.history.markAlert(event, now);
          if (t.kind === "firing" || t.kind === "resolved") {
            for (const target of r.rule.targets) {
              this.outbox.mark(
                "webhook",
                `${event.id}|${target}`,
                now,
                new TextEncoder().encode(JSON.stringify(event)),
              );
            }
          }
          fresh.push(event);
        }
      }
      this.sql.exec("DELETE FROM alert_events WHERE seq <= (SELECT max(seq) FROM alert_events) - ?", ALERT_EVENTS_KEPT);
    });
    for (const event of fresh) this.live.alert(event, now);
  }

  /** Adds or replaces a rule (the Worker has validated it); evaluates it at once. */
  setRule(rule: AlertRule, now: number): RuleStatus {
    const before = this.#rules.get(rule.id);
    const state = before ? stateAfterEdit(before.rule, rule, before.state) : INITIAL_STATE;
    this.#rules.set(rule.id, { rule, state });
    this.sql.exec(
      "INSERT OR REPLACE INTO alert_rules (id, rule, state) VALUES (?, ?, ?)",
      rule.id,
      JSON.stringify(rule),
      JSON.stringify(state),
    );
    this.evaluateAll(now);
    return this.#rules.get(rule.id) as RuleStatus;
  }

  getRule(id: string): RuleStatus | null {
    return this.#rules.get(id) ?? null;
  }

  /** Removes a rule; a firing alert is resolved (and notified) first. */
  deleteRule(id: string, now: number): boolean {
    const r = this.#rules.get(id);
    if (!r) return false;
    if (r.state.state === "firing") {
      this.#rules.set(id, { rule: { ...r.rule, enabled: false }, state: r.state });
      this.evaluateAll(now);
    }
    this.#rules.delete(id);
    this.sql.exec("DELETE FROM alert_rules WHERE id = ?", id);
    this.live.hubSoon(now, true);
    return true;
  }

  statuses(): RuleStatus[] {
    return [...this.#rules.values()];
  }

  /** Recent transitions, newest first. */
  events(limit: number): AlertEvent[] {
    return this.sql
      .exec<{ event: string }>("SELECT event FROM alert_events ORDER BY seq DESC LIMIT ?", limit)
      .toArray()
      .map((r) => JSON.parse(r.event) as AlertEvent);
  }
}
