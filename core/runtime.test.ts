import { describe, expect, it } from "vitest";

/**
 * CI runs this suite (core and SDK) under Node and again under Deno (`npm run test:deno`), which sets
 * EDGEPULSE_TEST_RUNTIME=deno: this proves the tests really ran in the runtime named, not in a Node
 * that a launcher fell back to.
 */
describe("runtime", () => {
  it("is the one the run asked for", () => {
    const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
    const want = env.EDGEPULSE_TEST_RUNTIME ?? "node";
    const deno = (globalThis as { Deno?: { version?: { deno?: string } } }).Deno;
    expect(deno ? "deno" : "node").toBe(want);
    if (want === "deno") expect(deno?.version?.deno).toMatch(/^2\./);
  });
});
