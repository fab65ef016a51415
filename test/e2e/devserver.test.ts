/**
 * `npm start`'s process (tools/dev.ts) stops the whole local stack when it
 * alone receives SIGINT or SIGTERM (not its process group, unlike Ctrl-C in a
 * terminal): workerd, the embedded PostgreSQL (PGlite) and the bridges are
 * gone once it has exited. The test timeout is the only time bound.
 */
import { connect } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { descendants, type Proc, running } from "../support/procs";
import { createTenant, type Stack, startStack } from "../support/stack";

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });

/** tsx's esbuild service (the TypeScript loader's helper, not part of the stack) leaves when its pipe closes. */
const isLoaderHelper = (p: Proc) => /esbuild.* --service/.test(p.cmd);

let stack: Stack | undefined;
let procs: Proc[] = [];

beforeEach(async () => {
  // No DATABASE_URL: the embedded PostgreSQL runs too, so every kind of child is there.
  stack = await startStack({ extraEnv: { DATABASE_URL: "" } });
  procs = [];
}, 180_000);

afterEach(async () => {
  await stack?.stop();
  // Whatever a failed case left behind.
  for (const p of procs) if (running(p)) process.kill(p.pid, "SIGKILL");
});

describe("npm start's process on a signal", () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`${signal} to the dev process stops workerd, PGlite and the bridges, then exits`, async () => {
      const s = stack as Stack;
      expect(await (await fetch(`${s.url}/healthz`)).json()).toEqual({ ok: true });
      const keys = await createTenant(s, `signal-${signal}`);
      const res = await fetch(`${s.url}/v1/events`, {
        method: "POST",
        headers: { authorization: `Bearer ${keys.ingest}`, "content-type": "application/json" },
        body: JSON.stringify([{ name: "signal.test", value: 1, user: "u1" }]),
      });
      expect(await res.json()).toEqual({ accepted: 1, duplicates: 0, rejected: [] });

      procs = descendants(s.child.pid as number);
      expect(procs.map((p) => p.cmd)).toEqual(
        expect.arrayContaining([expect.stringContaining("workerd serve"), expect.stringContaining("pglite-socket")]),
      );
      const bridgePort = Number((s.bridge as string).split(":")[1]);
      expect(await accepts(s.port)).toBe(true);
      expect(await accepts(bridgePort)).toBe(true);

      const exited = new Promise<[number | null, string | null]>((r) =>
        s.child.once("exit", (code, sig) => r([code, sig])),
      );
      process.kill(s.child.pid as number, signal);
      expect(await exited).toEqual([0, null]);

      const left = procs.filter((p) => !isLoaderHelper(p) && running(p));
      expect(left.map((p) => `${p.pid} ${p.cmd}`)).toEqual([]);
      await vi.waitFor(() => expect(procs.filter(running)).toEqual([]), { timeout: 10_000, interval: 100 });
      expect(await accepts(s.port)).toBe(false);
      expect(await accepts(bridgePort)).toBe(false);
    }, 60_000);
  }
});
