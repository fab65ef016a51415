import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildAll, checkDeclarations, SDK } from "../scripts/build.mts";
import { BUDGET_BYTES, measure } from "../scripts/size.mts";

describe("build", () => {
  it("bundles only sdk/src, with no Node built-ins, and declarations that stay inside sdk/dist", async () => {
    const { files } = await buildAll();
    for (const f of Object.values(files)) expect(readFileSync(f, "utf8")).not.toMatch(/["']node:|require\(/);
    expect(checkDeclarations()).toEqual([]);
    // A consumer with a stock resolver (no `allowImportingTsExtensions`) type-checks against them.
    const dir = mkdtempSync(join(tmpdir(), "edgepulse-sdk-consumer-"));
    const entry = join(SDK, "dist/types/sdk/src/index.js");
    writeFileSync(
      join(dir, "consumer.mts"),
      `import { createClient, type Receipt } from ${JSON.stringify(entry)};\n` +
        `const c = createClient({ endpoint: "https://e.example", key: "k" });\n` +
        `c.track("a.b", { value: 1 });\nexport const r: Promise<Receipt> = c.flush();\n`,
    );
    const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
    const args = ["--noEmit", "--strict", "--module", "nodenext", "--target", "es2022", "--lib", "es2022,dom"];
    const r = spawnSync(process.execPath, [tsc, ...args, join(dir, "consumer.mts")], { encoding: "utf8" });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  }, 60_000);

  it("keeps the browser builds within 5 KB minified + gzipped", async () => {
    const sizes = await measure();
    expect(sizes.map((s) => s.file).sort()).toEqual(["dist/browser.js", "dist/edgepulse.iife.js"]);
    for (const s of sizes) expect(s.gzip).toBeLessThanOrEqual(BUDGET_BYTES);
  });
});
