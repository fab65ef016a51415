import { createExecutionContext, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { app } from "../../workers/index";
import { testEnv } from "./env";
import { ADMIN_TOKEN, BASE, createTenant, expectError, get, send, sendJson, stream } from "./helpers";

const call = (method: string, path: string, token?: string, body?: unknown) =>
  SELF.fetch(`${BASE}${path}`, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

describe("API keys", () => {
  it("answers a missing, malformed or unknown key with its own code", async () => {
    await expectError(await send(undefined, '{"name":"a"}'), 401, "missing_key");
    await expectError(await send(undefined, '{"name":"a"}', { authorization: "Basic abc" }), 401, "missing_key");
    await expectError(await send("ep_ingest_not-a-real-key", '{"name":"a"}'), 401, "invalid_key");
    await expectError(await get("/v1/streams"), 401, "missing_key");
    await expectError(await get("/v1/streams", "ep_read_nope"), 401, "invalid_key");
  });

  it("accepts a query-string key only for text/plain beacons", async () => {
    const t = await createTenant();
    const err = await expectError(await send(undefined, '{"name":"a"}', {}, `?key=${t.ingest}`), 401, "missing_key");
    expect(err.message).toContain("text/plain");
    await expectError(await get(`/v1/streams?key=${t.read}`), 401, "missing_key");
  });

  it("enforces scopes: read keys cannot ingest, ingest keys cannot read, only admin keys manage keys", async () => {
    const t = await createTenant();
    const err = await expectError(await sendJson(t.read, { name: "a" }), 403, "insufficient_scope");
    expect(err.message).toContain("'read'");
    await expectError(await get("/v1/streams", t.ingest), 403, "insufficient_scope");
    await expectError(await get("/v1/keys", t.read), 403, "insufficient_scope");
    await expectError(await call("POST", "/v1/keys", t.ingest, { scope: "read" }), 403, "insufficient_scope");
    // An admin key may do everything within its tenant.
    expect((await sendJson(t.admin, { name: "a" })).status).toBe(200);
    expect((await get("/v1/streams", t.admin)).status).toBe(200);
  });

  it("creates keys shown once, lists them without secrets, and stores only hashes", async () => {
    const t = await createTenant();
    const created = await call("POST", "/v1/keys", t.admin, { scope: "read", name: "wallboard" });
    expect(created.status).toBe(201);
    const key = (await created.json()) as { id: string; key: string; prefix: string; scope: string };
    expect(key.key).toMatch(/^ep_read_[A-Za-z0-9_-]{43}$/);
    expect(key.key.startsWith(key.prefix)).toBe(true);
    expect(key.prefix).toHaveLength("ep_read_".length + 6);
    expect((await get("/v1/streams", key.key)).status).toBe(200);
    const listed = await (await get("/v1/keys", t.admin)).text();
    expect(listed).toContain(key.id);
    expect(listed).toContain("wallboard");
    expect(listed).not.toContain(key.key);
    expect(listed).not.toContain(t.admin);
    await expectError(await call("POST", "/v1/keys", t.admin, { scope: "owner" }), 400, "invalid_request");
    await expectError(await call("POST", "/v1/keys", t.admin, "nope"), 400, "malformed_body");
  });

  it("stops a revoked key at once", async () => {
    const t = await createTenant();
    expect((await sendJson(t.ingest, { name: "a" })).status).toBe(200);
    const revoked = await call("DELETE", `/v1/keys/${t.keyIds.ingest}`, t.admin);
    expect(revoked.status).toBe(200);
    expect(((await revoked.json()) as { revoked_at: string | null }).revoked_at).not.toBeNull();
    await expectError(await sendJson(t.ingest, { name: "a" }), 401, "revoked_key");
    // The other keys keep working, and revoking twice is harmless.
    expect((await get("/v1/streams", t.read)).status).toBe(200);
    expect((await call("DELETE", `/v1/keys/${t.keyIds.ingest}`, t.admin)).status).toBe(200);
  });
});

describe("operator API", () => {
  it("needs the operator token", async () => {
    await expectError(await call("POST", "/v1/admin/tenants", undefined, { name: "x" }), 401, "missing_key");
    await expectError(await call("POST", "/v1/admin/tenants", "wrong", { name: "x" }), 401, "invalid_key");
    // A tenant needs a name.
    for (const body of [{}, { name: "" }, { name: "   " }]) {
      const res = await call("POST", "/v1/admin/tenants", ADMIN_TOKEN, body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain("name");
    }
    const t = await createTenant();
    await expectError(await call("GET", "/v1/admin/tenants", t.admin), 401, "invalid_key");
  });

  it("lists tenants, creates and revokes keys for a tenant", async () => {
    const t = await createTenant("globex");
    const list = (await (await call("GET", "/v1/admin/tenants", ADMIN_TOKEN)).json()) as {
      tenants: Array<{ id: string; name: string }>;
    };
    expect(list.tenants).toContainEqual(expect.objectContaining({ id: t.tenantId, name: "globex" }));
    const k = await call("POST", `/v1/admin/tenants/${t.tenantId}/keys`, ADMIN_TOKEN, { scope: "ingest" });
    expect(k.status).toBe(201);
    const { id, key } = (await k.json()) as { id: string; key: string };
    expect((await sendJson(key, { name: "a" })).status).toBe(200);
    expect((await call("DELETE", `/v1/admin/tenants/${t.tenantId}/keys/${id}`, ADMIN_TOKEN)).status).toBe(200);
    await expectError(await sendJson(key, { name: "a" }), 401, "revoked_key");
    await expectError(
      await call("POST", "/v1/admin/tenants/t_nope/keys", ADMIN_TOKEN, { scope: "read" }),
      404,
      "tenant_not_found",
    );
  });
});

describe("tenant isolation", () => {
  it("never lets tenant B's keys read, list, write into or manage tenant A's data", async () => {
    const a = await createTenant("a");
    const b = await createTenant("b");
    expect((await sendJson(a.ingest, [{ name: "orders", value: 10, user: "alice" }])).status).toBe(200);

    // B reading A's stream by name sees nothing: names resolve inside B's tenant.
    await expectError(await get("/v1/streams/orders", b.read), 404, "stream_not_found");
    const bList = (await (await get("/v1/streams", b.read)).json()) as { streams: unknown[] };
    expect(bList.streams).toEqual([]);

    // B writing "orders" lands in B's own stream; A's figures do not move.
    expect((await sendJson(b.ingest, [{ name: "orders", value: 99 }])).status).toBe(200);
    expect((await stream(a.read, "orders")).windows["1h"]).toMatchObject({ count: 1, sum: 10 });
    expect((await stream(b.read, "orders")).windows["1h"]).toMatchObject({ count: 1, sum: 99 });

    // B's admin cannot see or revoke A's keys.
    const bKeys = await (await get("/v1/keys", b.admin)).text();
    expect(bKeys).not.toContain(a.keyIds.read);
    await expectError(await call("DELETE", `/v1/keys/${a.keyIds.read}`, b.admin), 404, "key_not_found");
    expect((await get("/v1/streams", a.read)).status).toBe(200);
  });
});

describe("routes", () => {
  it("answers a known path with the wrong method 405 and Allow, an unknown path 404", async () => {
    const events = await SELF.fetch(`${BASE}/v1/events`);
    expect(events.status).toBe(405);
    expect(events.headers.get("allow")).toBe("POST");
    expect(await events.json()).toMatchObject({ error: { code: "method_not_allowed" } });
    const stream = await SELF.fetch(`${BASE}/v1/streams/orders`, { method: "DELETE" });
    expect(stream.status).toBe(405);
    expect(stream.headers.get("allow")).toBe("GET, HEAD");
    const rule = await SELF.fetch(`${BASE}/v1/alerts/rules/r1`, { method: "POST" });
    expect(rule.headers.get("allow")).toBe("DELETE, GET, HEAD, PATCH");
    const nowhere = await SELF.fetch(`${BASE}/v1/nowhere`);
    expect(nowhere.status).toBe(404);
    expect(await nowhere.json()).toMatchObject({ error: { code: "not_found" } });
  });
});

describe("CORS", () => {
  const withEnv = (overrides: Record<string, string>) => {
    const e = { ...testEnv, ...overrides } as unknown as Env;
    return (path: string, init: RequestInit = {}) => app.request(`${BASE}${path}`, init, e, createExecutionContext());
  };

  it("lets configured origins call the read API (preflight and response), and no other origin", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "cors", value: 1 }]);
    const call = withEnv({ CORS_READ_ORIGINS: "https://app.example, https://admin.example" });
    const preflight = await call("/v1/streams/cors", {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(preflight.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
    const read = await call("/v1/streams/cors", {
      headers: { origin: "https://admin.example", authorization: `Bearer ${t.read}` },
    });
    expect(read.status).toBe(200);
    expect(read.headers.get("access-control-allow-origin")).toBe("https://admin.example");
    expect(read.headers.get("access-control-expose-headers")).toContain("RateLimit-Remaining");
    const other = await call("/v1/streams/cors", {
      headers: { origin: "https://evil.example", authorization: `Bearer ${t.read}` },
    });
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("allows no browser origin on the read API by default, while ingest allows any", async () => {
    const t = await createTenant();
    const read = await SELF.fetch(`${BASE}/v1/streams`, {
      headers: { origin: "https://app.example", authorization: `Bearer ${t.read}` },
    });
    expect(read.status).toBe(200);
    expect(read.headers.get("access-control-allow-origin")).toBeNull();
    const ingest = await SELF.fetch(`${BASE}/v1/events`, {
      method: "OPTIONS",
      headers: { origin: "https://app.example", "access-control-request-method": "POST" },
    });
    expect(ingest.headers.get("access-control-allow-origin")).toBe("*");
  });
});

describe("query parameters", () => {
  it("refuses parameters an endpoint does not take, naming them and the ones it takes", async () => {
    const t = await createTenant();
    await sendJson(t.ingest, [{ name: "params", value: 1 }]);
    const typo = await get("/v1/streams/params?windw=5m", t.read);
    expect(typo.status).toBe(400);
    const body = (await typo.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("unknown_parameter");
    expect(body.error.message).toContain("'windw'");
    expect(body.error.message).toContain("'window'");
    expect((await get("/v1/streams/params?window=5m", t.read)).status).toBe(200);
    await expectError(await get("/v1/tenant?verbose=1", t.read), 400, "unknown_parameter");
    await expectError(
      await send(t.ingest, JSON.stringify([{ name: "params" }]), {}, "?mdoe=queued"),
      400,
      "unknown_parameter",
    );
    await expectError(
      await send(t.ingest, JSON.stringify([{ name: "params" }]), {}, "?mode=later"),
      400,
      "invalid_request",
    );
  });
});
