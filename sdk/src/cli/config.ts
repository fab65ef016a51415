/**
 * Where the URL, keys and operator token come from, in this order: flags (`--url`, `--key`, `--token`), the
 * environment (`EDGEPULSE_URL`, `EDGEPULSE_KEY`, or `INGEST` / `READ` / `ADMIN` as the README's quick start
 * exports them, `EDGEPULSE_TOKEN`), then the config file (`--config`, else `$EDGEPULSE_CONFIG`, else
 * `$XDG_CONFIG_HOME/edgepulse/config.json`, else `~/.config/edgepulse/config.json`). Pure: the caller passes
 * the environment and the file's contents.
 */
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { usage } from "./errors.ts";

export type Role = "ingest" | "read" | "admin";

export const DEFAULT_URL = "http://127.0.0.1:8787";

export interface GlobalFlags {
  url?: string;
  key?: string;
  token?: string;
  config?: string;
  json?: boolean;
}

/** `~/.config/edgepulse/config.json`: every field optional. */
export interface ConfigFile {
  url?: string;
  /** Used for every command that needs a key, unless `keys` has one for the command's role. */
  key?: string;
  keys?: Partial<Record<Role, string>>;
  /** The operator token (`ADMIN_TOKEN`), for `tenants`. */
  token?: string;
}

export type Env = Record<string, string | undefined>;

export function configPath(flags: GlobalFlags, env: Env, home = homedir()): { path: string; explicit: boolean } {
  if (flags.config) return { path: resolve(flags.config), explicit: true };
  if (env.EDGEPULSE_CONFIG) return { path: resolve(env.EDGEPULSE_CONFIG), explicit: true };
  const base = env.XDG_CONFIG_HOME || join(home, ".config");
  return { path: join(base, "edgepulse", "config.json"), explicit: false };
}

/** The config file's contents; a missing default file is empty, a missing explicit one an error. */
export function loadConfigFile(path: string, explicit: boolean): ConfigFile {
  if (!existsSync(path)) {
    if (explicit) throw usage(`config file ${path} does not exist`);
    return {};
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw usage(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw usage(`config file ${path} must hold a JSON object`);
  }
  const c = parsed as Record<string, unknown>;
  const str = (v: unknown, field: string): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v === "") throw usage(`config file ${path}: ${field} must be a non-empty string`);
    return v;
  };
  const keys: Partial<Record<Role, string>> = {};
  if (c.keys !== undefined) {
    if (typeof c.keys !== "object" || c.keys === null) throw usage(`config file ${path}: keys must be an object`);
    for (const role of ["ingest", "read", "admin"] as const) {
      const k = str((c.keys as Record<string, unknown>)[role], `keys.${role}`);
      if (k) keys[role] = k;
    }
  }
  return { url: str(c.url, "url"), key: str(c.key, "key"), token: str(c.token, "token"), keys };
}

/** The env variable the README's quick start exports for each role. */
const ROLE_ENV: Record<Role, string> = { ingest: "INGEST", read: "READ", admin: "ADMIN" };

/** Keys that may stand in for a role: an admin key may also send and read. */
const STAND_INS: Record<Role, Role[]> = { ingest: ["ingest", "admin"], read: ["read", "admin"], admin: ["admin"] };

export interface Resolved {
  url: string;
  key?: string;
  token?: string;
  /** Where each came from, for error messages: "flag", "env EDGEPULSE_KEY", "config file", "default". */
  from: { url: string; key?: string; token?: string };
}

export function resolveSettings(flags: GlobalFlags, env: Env, file: ConfigFile, role?: Role): Resolved {
  const url = (flags.url && { v: flags.url, from: "flag --url" }) ||
    (env.EDGEPULSE_URL && { v: env.EDGEPULSE_URL, from: "env EDGEPULSE_URL" }) ||
    (file.url && { v: file.url, from: "config file" }) || { v: DEFAULT_URL, from: "default" };
  let key: { v: string; from: string } | undefined;
  if (role) {
    key = flags.key ? { v: flags.key, from: "flag --key" } : undefined;
    if (!key && env.EDGEPULSE_KEY) key = { v: env.EDGEPULSE_KEY, from: "env EDGEPULSE_KEY" };
    for (const r of STAND_INS[role]) {
      const v = env[ROLE_ENV[r]];
      if (!key && v) key = { v, from: `env ${ROLE_ENV[r]}` };
    }
    if (!key && file.key) key = { v: file.key, from: "config file key" };
    for (const r of STAND_INS[role]) {
      const v = file.keys?.[r];
      if (!key && v) key = { v, from: `config file keys.${r}` };
    }
  }
  const token =
    (flags.token && { v: flags.token, from: "flag --token" }) ||
    (env.EDGEPULSE_TOKEN && { v: env.EDGEPULSE_TOKEN, from: "env EDGEPULSE_TOKEN" }) ||
    (file.token && { v: file.token, from: "config file" }) ||
    undefined;
  let base: URL;
  try {
    base = new URL(url.v);
  } catch {
    throw usage(`${url.from}: '${url.v}' is not a URL`);
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") throw usage(`${url.from}: the URL must be http(s)`);
  return {
    url: url.v.replace(/\/+$/, ""),
    key: key?.v,
    token: token?.v,
    from: { url: url.from, key: key?.from, token: token?.from },
  };
}

/** Resolves settings and insists on a key for `role`. */
export function needKey(r: Resolved, role: Role): string {
  if (r.key) return r.key;
  throw usage(
    `no ${role} key: pass --key, set EDGEPULSE_KEY or ${ROLE_ENV[role]}${role === "admin" ? "" : " (or ADMIN)"}, or put "key" in the config file`,
    "missing_key",
  );
}

export function needToken(r: Resolved): string {
  if (r.token) return r.token;
  throw usage(
    'no operator token: pass --token, set EDGEPULSE_TOKEN, or put "token" in the config file (npm start prints it; it is ADMIN_TOKEN in .dev.vars)',
    "missing_token",
  );
}
