import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { buildAll, checkDeclarations } from "../scripts/build.mjs";
import { BUDGET_BYTES, measure } from "../scripts/size.mjs";

describe("build", () => {
  it("bundles only sdk/src, with no Node built-ins, and declarations that stay inside sdk/dist", async () => {
    const { files } = await buildAll();
    for (const f of Object.values(files)) expect(readFileSync(f, "utf8")).not.toMatch(/["']node:|require\(/);
    expect(checkDeclarations()).toEqual([]);
  }, 60_000);

  it("keeps the browser builds within 5 KB minified + gzipped", async () => {
    const sizes = await measure();
    expect(sizes.map((s) => s.file).sort()).toEqual(["dist/browser.js", "dist/edgepulse.iife.js"]);
    for (const s of sizes) expect(s.gzip).toBeLessThanOrEqual(BUDGET_BYTES);
  });
});
