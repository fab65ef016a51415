/**
 * The `edgepulse` command (the SDK package's `bin`, built to dist/cli.js): import files of events, tail a
 * stream live, run queries, manage tenants and keys. Node-only; kept out of the SDK's universal and browser
 * entries (nothing there imports sdk/src/cli).
 */
import { main } from "./program.ts";

await main();
