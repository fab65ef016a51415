/**
 * The one Node built-in the Worker's code uses (workerd serves it under nodejs_compat; Node and Deno have
 * it too): gzip at a chosen level, for the raw archive's segments (core/archive.ts). Declared here because
 * the Worker's type-check does not load all of @types/node.
 */
declare module "node:zlib" {
  export function gzipSync(data: string | Uint8Array, options?: { level?: number }): Uint8Array;
}
