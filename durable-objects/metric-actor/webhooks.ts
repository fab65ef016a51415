/**
 * Webhook delivery: posts alert transitions from the outbox, signed with the
 * tenant's secret (HMAC-SHA256 over "<t>.<body>"), with the event id as
 * Idempotency-Key. Entries are claimed before the first await (an
 * overlapping run never posts one twice), retried with exponential backoff,
 * and marked failed after DELIVERY_MAX_ATTEMPTS. Finished deliveries are kept
 * for status (the last DELIVERIES_KEPT) and written to PostgreSQL with their
 * transition.
 */
import {
  alertEventView,
  DELIVERY_MAX_ATTEMPTS,
  deliveryBackoffMs,
  SIGNATURE_HEADER,
  signWebhook,
} from "../../core/alerts";
import type { AlertEvent } from "../../core/live";
import type { Wakeable } from "../planner";
import type { History } from "./history";
import type { Meta } from "./ingest";
import type { Outbox } from "./outbox";

const WEBHOOK_TIMEOUT_MS = 10_000;
/** Deliveries posted per run. */
const BATCH = 20;
/** Finished deliveries kept for status; pending ones are bounded by rules × targets × transitions. */
export const DELIVERIES_KEPT = 1000;

export class Webhooks implements Wakeable {
  readonly name = "webhooks";
  #secret: string | null = null;

  constructor(
    readonly env: Env,
    readonly storage: DurableObjectStorage,
    readonly outbox: Outbox,
    readonly history: History,
    readonly meta: () => Meta | null,
  ) {}

  nextWake(): number | null {
    return this.outbox.nextDue("webhook");
  }

  /** The tenant's signing secret, kept by the tenant's registry (read once per actor instance). */
  async #signingSecret(tenant: string): Promise<string> {
    this.#secret ??= await this.env.TENANT_REGISTRY.getByName(tenant).webhookSecret();
    return this.#secret;
  }

  async wake(now: number): Promise<void> {
    const meta = this.meta();
    const due = this.outbox.due("webhook", now, BATCH);
    if (due.length === 0 || meta === null) return;
    this.outbox.claim(due, now + WEBHOOK_TIMEOUT_MS + 1000);
    const secret = await this.#signingSecret(meta.tenant);
    const results = await Promise.all(
      due.map(async (d) => {
        const sep = d.key.indexOf("|");
        const eventId = d.key.slice(0, sep);
        const target = d.key.slice(sep + 1);
        // Stored as the actor keeps transitions (epoch ms); posted in the API's form (ISO-8601 `at`).
        const event = JSON.parse(new TextDecoder().decode(d.payload as ArrayBuffer)) as AlertEvent;
        const body = JSON.stringify(alertEventView(event));
        const ts = Math.floor(Date.now() / 1000);
        let error: string | null = null;
        try {
          const res = await fetch(target, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              "user-agent": "edgepulse-webhooks/1",
              "idempotency-key": eventId,
              "x-edgepulse-event-id": eventId,
              [SIGNATURE_HEADER]: `t=${ts},v1=${await signWebhook(secret, ts, body)}`,
            },
            body,
            signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
          });
          await res.body?.cancel();
          if (!res.ok) error = `HTTP ${res.status}`;
        } catch (err) {
          error = `${(err as Error).name}: ${(err as Error).message}`.slice(0, 200);
        }
        return { d, error, event };
      }),
    );
    const at = Date.now();
    this.storage.transactionSync(() => {
      for (const { d, error, event } of results) {
        if (error === null) this.outbox.done(d, at, true);
        else {
          const attempts = d.attempts + 1;
          this.outbox.fail(d, error, attempts >= DELIVERY_MAX_ATTEMPTS ? null : at + deliveryBackoffMs(attempts));
        }
        // The transition's PostgreSQL row carries its delivery status.
        this.history.markAlert(event, at);
      }
      this.outbox.pruneFinished("webhook", DELIVERIES_KEPT);
    });
  }
}
