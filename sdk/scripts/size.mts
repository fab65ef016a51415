/** Builds the browser bundles and prints their minified + gzipped size; exits 1 over the 5 KB budget. */
import { readFileSync } from "node:fs";
import { relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { buildBundles, SDK } from "./build.mts";

export const BUDGET_BYTES = 5 * 1024;

export async function measure(): Promise<{ file: string; min: number; gzip: number }[]> {
  const { files } = await buildBundles();
  return [files.browser, files.iife].map((f) => {
    const code = readFileSync(f);
    return { file: relative(SDK, f), min: code.byteLength, gzip: gzipSync(code, { level: 9 }).byteLength };
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  let over = false;
  for (const { file, min, gzip } of await measure()) {
    over ||= gzip > BUDGET_BYTES;
    console.log(
      `${file}: ${min} B minified, ${gzip} B gzipped (${(gzip / 1024).toFixed(2)} KB of ${BUDGET_BYTES / 1024} KB)`,
    );
  }
  if (over) {
    console.error("over the 5 KB budget");
    process.exit(1);
  }
}
