/**
 * The course-notifications receiver (examples/course-notifications/receiver.ts): a delivery signed by
 * edgepulse's own signing code, with the body the webhook sender posts (alertEventView of a transition),
 * is accepted, formatted as a chat message, printed and forwarded as `{"text": …}`; a wrong, missing or
 * expired signature is refused with 401 and nothing is printed or forwarded; a repeated delivery is
 * printed once; a failing chat webhook is answered 502 so the delivery comes again.
 */
import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AlertEventView, alertEventView, SIGNATURE_HEADER, signWebhook } from "../../core/alerts";
import type { AlertEvent } from "../../core/live";
import {
  type ChatMessage,
  formatAlert,
  type NotificationReceiver,
  startReceiver,
} from "../../examples/course-notifications/receiver";

const SECRET = "whsec_course_test";
const NOW = Date.UTC(2026, 10, 24, 9, 30, 15);

/** A transition as a metric actor stores it. */
const transition = (over: Partial<AlertEvent> = {}): AlertEvent => ({
  id: "ae_1",
  stream: "course.updated",
  rule_id: "rule_1",
  rule_name: "Course updated",
  kind: "firing",
  at: NOW - 2000,
  value: 2,
  labels: { channel: "#course-updates", summary: "A course changed: tell its learners what is new." },
  ...over,
});

/** A delivery as durable-objects/metric-actor/webhooks.ts makes it: the API form of the transition, signed. */
async function delivery(e: AlertEvent, opts: { secret?: string; t?: number } = {}) {
  const body = JSON.stringify(alertEventView(e));
  const t = opts.t ?? Math.floor(NOW / 1000);
  return {
    body,
    headers: {
      "content-type": "application/json",
      "idempotency-key": e.id,
      [SIGNATURE_HEADER]: `t=${t},v1=${await signWebhook(opts.secret ?? SECRET, t, body)}`,
    },
  };
}

let receiver: NotificationReceiver;
let chat: Server;
let chatUrl: string;
let chatDown = false;
const forwarded: unknown[] = [];
const printed: ChatMessage[] = [];

const post = async (d: { body: string; headers: Record<string, string> }) => {
  const res = await fetch(`${receiver.url}/`, { method: "POST", headers: d.headers, body: d.body });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

beforeAll(async () => {
  chat = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (chatDown) {
        res.writeHead(500).end();
        return;
      }
      forwarded.push(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((r) => chat.listen(0, "127.0.0.1", () => r()));
  chatUrl = `http://127.0.0.1:${(chat.address() as { port: number }).port}/hooks/chat`;
  receiver = await startReceiver({
    secret: SECRET,
    forward: chatUrl,
    print: (m) => printed.push(m),
    now: () => NOW,
  });
});

afterAll(async () => {
  await receiver?.close();
  await new Promise<void>((r) => chat?.close(() => r()));
});

describe("course notifications receiver", () => {
  it("accepts a delivery signed by edgepulse, prints it and forwards it as a Slack-compatible message", async () => {
    const res = await post(await delivery(transition()));
    expect(res.status).toBe(200);
    expect(printed).toHaveLength(1);
    expect(printed[0].plain).toBe(
      "[FIRING] Course updated — course.updated: 2 at 2026-11-24 09:30:13 UTC — A course changed: tell its learners what is new. — for #course-updates",
    );
    expect(forwarded).toEqual([
      {
        text: [
          "🔴 *Course updated* is firing",
          "course.updated: 2 at 2026-11-24 09:30:13 UTC",
          "A course changed: tell its learners what is new.",
          "#course-updates",
        ].join("\n"),
      },
    ]);
    expect(res.body.text).toBe((forwarded[0] as { text: string }).text);
  });

  it("refuses a wrong, missing, malformed or expired signature with 401, printing and forwarding nothing", async () => {
    const e = transition({ id: "ae_bad" });
    const wrong = await delivery(e, { secret: "someone-else" });
    const expired = await delivery(e, { t: Math.floor(NOW / 1000) - 3600 });
    const good = await delivery(e);
    const tampered = { ...good, body: good.body.replace('"value":2', '"value":200') };
    const { [SIGNATURE_HEADER]: _, ...unsigned } = good.headers;
    const malformed = { ...good, headers: { ...good.headers, [SIGNATURE_HEADER]: "v1=abc" } };
    for (const [what, d, verdict] of [
      ["wrong secret", wrong, "mismatch"],
      ["expired", expired, "expired"],
      ["tampered body", tampered, "mismatch"],
      ["unsigned", { ...good, headers: unsigned }, "missing"],
      ["malformed", malformed, "malformed"],
    ] as const) {
      const res = await post(d);
      expect(res.status, what).toBe(401);
      expect(res.body.error, what).toMatchObject({
        code: "invalid_signature",
        message: expect.stringContaining(`is ${verdict}`),
      });
    }
    expect(printed).toHaveLength(1);
    expect(forwarded).toHaveLength(1);
  });

  it("refuses a signed body that is not an alert transition with 400", async () => {
    const body = JSON.stringify({ hello: "world" });
    const t = Math.floor(NOW / 1000);
    const res = await post({
      body,
      headers: {
        "content-type": "application/json",
        [SIGNATURE_HEADER]: `t=${t},v1=${await signWebhook(SECRET, t, body)}`,
      },
    });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: "not_an_alert" });
    expect(printed).toHaveLength(1);
  });

  it("prints a repeated delivery once", async () => {
    const d = await delivery(transition({ id: "ae_2", kind: "resolved", value: 0 }));
    expect((await post(d)).status).toBe(200);
    const again = await post(d);
    expect(again.status).toBe(200);
    expect(again.body.duplicate).toBe(true);
    expect(printed.map((m) => m.plain.split(" — ")[0])).toEqual([
      "[FIRING] Course updated",
      "[RESOLVED] Course updated",
    ]);
    expect(forwarded).toHaveLength(2);
  });

  it("answers 502 while the chat webhook fails, and sends the message when the delivery comes again", async () => {
    const d = await delivery(
      transition({ id: "ae_3", rule_name: "New content published", stream: "content.published" }),
    );
    chatDown = true;
    const failed = await post(d);
    expect(failed.status).toBe(502);
    expect(failed.body.error).toMatchObject({ code: "forward_failed" });
    expect(printed).toHaveLength(2);
    chatDown = false;
    expect((await post(d)).status).toBe(200);
    expect(printed).toHaveLength(3);
    expect(printed[2].plain).toMatch(/^\[FIRING\] New content published — content\.published: 2 at /);
    expect(forwarded).toHaveLength(3);
  });
});

describe("formatAlert", () => {
  const view = (over: Partial<AlertEvent>): AlertEventView => alertEventView(transition(over));

  it("escapes Slack's markup characters in what the rule's author wrote, not in the plain text", () => {
    const m = formatAlert(view({ rule_name: "Q&A <urgent>", labels: { summary: "a > b", team: "x&y" } }));
    expect(m.text).toBe(
      "🔴 *Q&amp;A &lt;urgent&gt;* is firing\ncourse.updated: 2 at 2026-11-24 09:30:13 UTC\na &gt; b\nteam=x&amp;y",
    );
    expect(m.plain).toBe("[FIRING] Q&A <urgent> — course.updated: 2 at 2026-11-24 09:30:13 UTC — a > b — team=x&y");
  });

  it("shows fractional values to four significant digits and a missing value as such", () => {
    expect(formatAlert(view({ value: 1.234567, labels: {} })).plain).toContain("course.updated: 1.235 at");
    expect(formatAlert(view({ value: null, kind: "cancelled", labels: {} })).plain).toBe(
      "[CANCELLED] Course updated — course.updated: no value at 2026-11-24 09:30:13 UTC",
    );
  });
});
