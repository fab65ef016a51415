/**
 * Builds sdk/dist: the universal ESM entry (index.js), the browser ESM entry (browser.js, minified), the
 * IIFE for <script> tags (edgepulse.iife.js), and the declarations (dist/types, emitted by tsc; core's
 * types come along so nothing points outside the package). Fails if a bundle pulls in anything but
 * sdk/src (no server code, no Node built-ins) or a declaration file points outside sdk/dist.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type BuildOptions, build } from "esbuild";

export const SDK = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const DIST = join(SDK, "dist");

export interface BuildResult {
  files: Record<"index" | "browser" | "iife", string>;
}

const bundles: Record<keyof BuildResult["files"], BuildOptions> = {
  index: { entryPoints: ["src/index.ts"], format: "esm", platform: "neutral", outfile: "dist/index.js" },
  browser: {
    entryPoints: ["src/browser.ts"],
    format: "esm",
    platform: "browser",
    minify: true,
    outfile: "dist/browser.js",
  },
  iife: {
    entryPoints: ["src/snippet.ts"],
    format: "iife",
    platform: "browser",
    minify: true,
    outfile: "dist/edgepulse.iife.js",
  },
};

/** Bundles only (what the browser tests need). */
export async function buildBundles(): Promise<BuildResult> {
  const files = {} as BuildResult["files"];
  for (const [name, opts] of Object.entries(bundles) as [keyof BuildResult["files"], BuildOptions][]) {
    const r = await build({
      ...opts,
      absWorkingDir: SDK,
      bundle: true,
      target: "es2020",
      metafile: true,
      logLevel: "warning",
      legalComments: "none",
    });
    const outside = Object.keys(r.metafile.inputs).filter((p) => !p.startsWith("src/"));
    if (outside.length > 0) throw new Error(`${name}: the bundle pulls in code outside sdk/src: ${outside.join(", ")}`);
    files[name] = join(SDK, opts.outfile as string);
  }
  return { files };
}

/**
 * The `edgepulse` CLI (package.json `bin`): Node-only, its npm dependencies left as imports (they are the
 * package's `dependencies`), nothing from outside sdk/src but the package's own package.json (its version).
 */
export async function buildCli(): Promise<string> {
  const outfile = "dist/cli.js";
  const r = await build({
    entryPoints: ["src/cli/index.ts"],
    absWorkingDir: SDK,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    banner: { js: "#!/usr/bin/env node" },
    outfile,
    metafile: true,
    logLevel: "warning",
    legalComments: "none",
  });
  const outside = Object.keys(r.metafile.inputs).filter((p) => !p.startsWith("src/") && p !== "package.json");
  if (outside.length > 0) throw new Error(`cli: the bundle pulls in code outside sdk/src: ${outside.join(", ")}`);
  const file = join(SDK, outfile);
  chmodSync(file, 0o755);
  return file;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)],
  );
}

/** Every module specifier in dist/types must be relative and stay inside sdk/dist. */
export function checkDeclarations(dir = join(DIST, "types")): string[] {
  const problems: string[] = [];
  for (const file of walk(dir).filter((f) => f.endsWith(".d.ts"))) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(
      /(?:from\s+|import\(\s*|require\(\s*)["']([^"']+)["']|\/\/\/\s*<reference\s+(?:path|types)=["']([^"']+)["']/g,
    )) {
      const spec = m[1] ?? m[2];
      const target = resolve(dirname(file), spec);
      const declared = target.replace(/\.js$/, ".d.ts");
      if (!spec.startsWith(".") || relative(DIST, target).startsWith("..") || !existsSync(declared)) {
        problems.push(`${relative(SDK, file)}: '${spec}'`);
      }
    }
  }
  return problems;
}

export function buildDeclarations(): void {
  rmSync(join(DIST, "types"), { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  const r = spawnSync(process.execPath, [tsc, "-p", join(SDK, "tsconfig.build.json")], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tsc failed:\n${r.stdout}${r.stderr}`);
  // Sources import with explicit `.ts` extensions (Deno needs them); published declarations name the
  // `.js` a consumer's resolver maps to the `.d.ts` beside it, whatever its `allowImportingTsExtensions`.
  for (const file of walk(join(DIST, "types")).filter((f) => f.endsWith(".d.ts"))) {
    const text = readFileSync(file, "utf8");
    const out = text.replace(/((?:from\s+|import\(\s*)["'])(\.\.?\/[^"']+)\.ts(["'])/g, "$1$2.js$3");
    if (out !== text) writeFileSync(file, out);
  }
  const problems = checkDeclarations();
  if (problems.length > 0) throw new Error(`declarations point outside sdk/dist:\n${problems.join("\n")}`);
}

export async function buildAll(): Promise<BuildResult & { cli: string }> {
  const r = await buildBundles();
  const cli = await buildCli();
  buildDeclarations();
  return { ...r, cli };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { files, cli } = await buildAll();
  for (const f of [...Object.values(files), cli]) console.log(`built ${relative(SDK, f)}`);
  console.log("built dist/types (declarations checked: nothing points outside sdk/dist)");
}
