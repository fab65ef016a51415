import { SELF } from "cloudflare:test";
import { expect } from "vitest";

export const ADMIN_TOKEN = "test-operator-token";
export const BASE = "https://edgepulse.test";

export interface TenantKeys {
  tenantId: string;
  admin: string;
  ingest: string;
  read: string;
  keyIds: Record<"admin" | "ingest" | "read", string>;
}

export async function createTenant(name = "acme"): Promise<TenantKeys> {
  const res = await SELF.fetch(`${BASE}/v1/admin/tenants`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  expect(res.status).toBe(201);
  const body = (await res.json()) as {
    tenant: { id: string };
    keys: Array<{ id: string; scope: "admin" | "ingest" | "read"; key: string }>;
  };
  const by = (s: string) => body.keys.find((k) => k.scope === s) as { id: string; key: string };
  return {
    tenantId: body.tenant.id,
    admin: by("admin").key,
    ingest: by("ingest").key,
    read: by("read").key,
    keyIds: { admin: by("admin").id, ingest: by("ingest").id, read: by("read").id },
  };
}

export function send(key: string | undefined, body: BodyInit, headers: Record<string, string> = {}, query = "") {
  return SELF.fetch(`${BASE}/v1/events${query}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    body,
  });
}

export const sendJson = (key: string, events: unknown) => send(key, JSON.stringify(events));

export function get(path: string, key?: string) {
  return SELF.fetch(`${BASE}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
}

export async function stream(read: string, name: string, window?: string) {
  const res = await get(`/v1/streams/${name}${window ? `?window=${window}` : ""}`, read);
  expect(res.status).toBe(200);
  return (await res.json()) as {
    stream: string;
    windows: Record<
      string,
      {
        count: number;
        sum: number;
        min: number | null;
        max: number | null;
        p95: number | null;
        distinct_users: number;
        rate: number;
      }
    >;
    counters: { accepted: number; duplicates: number; late: number; future: number; rejected: Record<string, number> };
  };
}

export async function expectError(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: { code: string; message: string; details?: unknown } };
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe("string");
  expect(body.error.message.length).toBeGreaterThan(5);
  return body.error;
}

export async function gzip(text: string): Promise<Uint8Array> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A JSON call with a key; the body is read at once (so a failed assertion never leaves a stream open). */
export async function call(method: string, path: string, key: string, body?: unknown): Promise<Response> {
  const res = await SELF.fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return new Response(text === "" && (res.status === 204 || res.status === 304) ? null : text, {
    status: res.status,
    headers: res.headers,
  });
}

/** Polls `probe` until `done` holds of its answer (each try awaits the previous); fails with the last answer. */
export async function until<T>(probe: () => Promise<T>, done: (v: T) => boolean, tries = 400): Promise<T> {
  let last: T = await probe();
  for (let i = 0; i < tries && !done(last); i++) {
    await new Promise((r) => setTimeout(r, 25));
    last = await probe();
  }
  return last;
}

/** Adds an entity to the tenant's catalog (an admin call); fails the test unless it is created. */
export async function addEntity(t: TenantKeys, kind: string, entity: Record<string, unknown>): Promise<void> {
  const res = await call("POST", `/v1/catalog/${kind}`, t.admin, entity);
  expect(res.status, await res.clone().text()).toBe(201);
}

/** Runs a query with the tenant's read key; throws with the server's answer unless it is a 200. */
export async function queryOk<T>(t: TenantKeys, body: unknown): Promise<T> {
  const res = await call("POST", "/v1/query", t.read, body);
  if (res.status !== 200) throw new Error(`query ${res.status}: ${await res.text()}`);
  return (await res.json()) as T;
}
