/**
 * The raw archive holds exactly the acknowledged events through `kill -9` of workerd and retries: events
 * sent in batches with ids, workerd killed while batches are in flight and archive flushes run, the stack
 * restarted on the same state folder, every batch sent again; then the archive's export of the range holds
 * every id once, and the stream counted each once.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { createTestDatabase } from "../support/pg";
import { descendants } from "../support/procs";
import { createTenant, type Keys, type Stack, startStack } from "../support/stack";

const STREAM = "archive.kill";
const BATCHES = 40;
const PER_BATCH = 50;

let stack: Stack | undefined;

afterAll(async () => {
  await stack?.stop();
});

describe("raw archive through kill -9", () => {
  it("holds every acknowledged event exactly once after workerd is killed mid-flight and everything is resent", async () => {
    const state = join(mkdtempSync(join(tmpdir(), "edgepulse-archive-")), "state");
    const databaseUrl = await createTestDatabase("edgepulse_test_archive");
    const extraEnv = { DATABASE_URL: databaseUrl, ARCHIVE_FLUSH_MS: "100" };
    stack = await startStack({ state, extraEnv });
    const keys: Keys = await createTenant(stack, "archive-kill");
    const now = Date.now();
    const batches = Array.from({ length: BATCHES }, (_, b) =>
      Array.from({ length: PER_BATCH }, (_, k) => ({
        id: `k${b}-${k}`,
        name: STREAM,
        ts: now - ((b * PER_BATCH + k) % 1800) * 1000,
        value: k,
      })),
    );
    const send = (s: Stack, events: unknown[]) =>
      fetch(`${s.url}/v1/events`, {
        method: "POST",
        headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
        body: JSON.stringify(events),
      });

    // Four senders; once 15 batches are acknowledged, workerd is killed with batches still in flight.
    const acknowledged = new Set<number>();
    let next = 0;
    let killed = false;
    const sender = async (s: Stack) => {
      while (next < BATCHES && !killed) {
        const b = next++;
        try {
          const res = await send(s, batches[b]);
          if (res.status === 200) acknowledged.add(b);
        } catch {
          // The connection died with workerd: not acknowledged, sent again below.
        }
        if (acknowledged.size >= 15 && !killed) {
          killed = true;
          const workerd = descendants(s.child.pid as number).find((p) => p.cmd.includes("workerd serve"));
          expect(workerd).toBeDefined();
          process.kill((workerd as { pid: number }).pid, "SIGKILL");
        }
      }
    };
    await Promise.all([1, 2, 3, 4].map(() => sender(stack as Stack)));
    expect(killed).toBe(true);
    await stack.stop();

    // Restart on the same state; the client resends every batch (it cannot know which were counted).
    stack = await startStack({ state, extraEnv });
    let accepted = 0;
    let duplicates = 0;
    for (const events of batches) {
      const res = await send(stack, events);
      expect(res.status).toBe(200);
      const r = (await res.json()) as { accepted: number; duplicates: number };
      accepted += r.accepted;
      duplicates += r.duplicates;
    }
    expect(accepted + duplicates).toBe(BATCHES * PER_BATCH);

    const read = (path: string) =>
      fetch(`${(stack as Stack).url}${path}`, { headers: { authorization: `Bearer ${keys.read}` } });
    await vi.waitFor(
      async () => {
        const s = (await (await read(`/v1/streams/${STREAM}`)).json()) as {
          counters: { accepted: number };
          archive: { pending_events: number };
        };
        expect(s.counters.accepted).toBe(BATCHES * PER_BATCH);
        expect(s.archive.pending_events).toBe(0);
      },
      { timeout: 60_000, interval: 200 },
    );
    const res = await read(`/v1/archive/export?stream=${STREAM}&from=${now - 3_600_000}&to=${now + 60_000}`);
    expect(res.status).toBe(200);
    const ids = (await res.text())
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { id: string }).id);
    const want = batches.flat().map((e) => e.id);
    expect(ids.length).toBe(want.length);
    expect(new Set(ids).size).toBe(want.length);
    expect([...ids].sort()).toEqual([...want].sort());
  }, 240_000);
});
