/**
 * Control plane: `tenants create|list` with the operator token (POST/GET /v1/admin/tenants), `keys
 * create|list|revoke` with the tenant's admin key (/v1/keys).
 */
import { api, type Target } from "./http.ts";
import { table } from "./output.ts";

interface KeyInfo {
  id: string;
  tenant_id: string;
  scope: "admin" | "ingest" | "read";
  name: string;
  prefix: string;
  created_at: string;
  revoked_at: string | null;
  key?: string;
}

interface Tenant {
  id: string;
  name: string;
  created_at: string;
}

const shellQuote = (s: string) => (/^[A-Za-z0-9_.:\-/+=@]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`);

export async function tenantsCreate(t: Target, name: string, o: { json: boolean; exports: boolean }): Promise<string> {
  const body = await api<{ tenant: Tenant; keys: KeyInfo[] }>(t, "/v1/admin/tenants", { body: { name } });
  if (o.exports) {
    return body.keys.map((k) => `export ${k.scope.toUpperCase()}=${shellQuote(k.key as string)}`).join("\n");
  }
  if (o.json) return JSON.stringify(body);
  return [
    `tenant ${body.tenant.id} (${body.tenant.name}); keys are shown this once:`,
    table(
      ["scope", "id", "key"],
      body.keys.map((k) => [k.scope, k.id, k.key]),
    ),
  ].join("\n");
}

export async function tenantsList(t: Target, o: { json: boolean }): Promise<string> {
  const body = await api<{ tenants: Tenant[] }>(t, "/v1/admin/tenants");
  if (o.json) return JSON.stringify(body);
  return table(
    ["id", "name", "created_at"],
    body.tenants.map((x) => [x.id, x.name, x.created_at]),
  );
}

export async function keysCreate(
  t: Target,
  scope: string,
  name: string | undefined,
  o: { json: boolean },
): Promise<string> {
  const key = await api<KeyInfo>(t, "/v1/keys", { body: name === undefined ? { scope } : { scope, name } });
  if (o.json) return JSON.stringify(key);
  return `${key.scope} key ${key.id} (${key.name}), shown this once:\n${key.key}`;
}

export async function keysList(t: Target, o: { json: boolean }): Promise<string> {
  const body = await api<{ keys: KeyInfo[] }>(t, "/v1/keys");
  if (o.json) return JSON.stringify(body);
  return table(
    ["id", "scope", "name", "prefix", "created_at", "revoked_at"],
    body.keys.map((k) => [k.id, k.scope, k.name, k.prefix, k.created_at, k.revoked_at]),
  );
}

export async function keysRevoke(t: Target, id: string, o: { json: boolean }): Promise<string> {
  const key = await api<KeyInfo>(t, `/v1/keys/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (o.json) return JSON.stringify(key);
  return `revoked ${key.id} (${key.scope}, ${key.name}) at ${key.revoked_at}`;
}
