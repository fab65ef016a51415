/** Builds dashboard/ into dashboard/dist, the static assets the Worker serves. */
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { ROOT } from "./paths";

const src = join(ROOT, "dashboard");
const out = join(src, "dist");
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(src, "src", "main.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outfile: join(out, "app.js"),
  logLevel: "warning",
});
copyFileSync(join(src, "index.html"), join(out, "index.html"));
copyFileSync(join(src, "_headers"), join(out, "_headers"));
copyFileSync(join(src, "src", "style.css"), join(out, "style.css"));
copyFileSync(join(ROOT, "node_modules", "uplot", "dist", "uPlot.min.css"), join(out, "uPlot.min.css"));
