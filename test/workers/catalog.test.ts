/**
 * The catalog (/v1/catalog/:kind) against the real PostgreSQL: validation naming the field, the uniqueness
 * rules of each kind, listings paged by cursor and filtered, tenant isolation and scopes.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import worker from "../../workers/index";
import { testEnv } from "./env";
import { BASE, call, createTenant, expectError, type TenantKeys } from "./helpers";

interface Entity {
  kind: string;
  id: string;
  created_at: string;
  updated_at: string;
  [k: string]: unknown;
}
interface Page {
  items: Entity[];
  next_cursor: string | null;
}

async function create(t: TenantKeys, kind: string, body: Record<string, unknown>): Promise<Entity> {
  const res = await call("POST", `/v1/catalog/${kind}`, t.admin, body);
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as Entity;
}

/** Every entity the listing yields, page by page; each page's size is checked against `limit`. */
async function listAll(t: TenantKeys, kind: string, query: string, limit: number): Promise<Entity[]> {
  const all: Entity[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 100; pages++) {
    const qs = new URLSearchParams(query);
    qs.set("limit", String(limit));
    if (cursor !== null) qs.set("cursor", cursor);
    const res = await call("GET", `/v1/catalog/${kind}?${qs}`, t.read);
    expect(res.status, await res.clone().text()).toBe(200);
    const page = (await res.json()) as Page;
    expect(page.items.length).toBeLessThanOrEqual(limit);
    all.push(...page.items);
    if (page.next_cursor === null) return all;
    expect(page.items.length).toBe(limit);
    cursor = page.next_cursor;
  }
  throw new Error("the listing never ended");
}

describe("validation", () => {
  let t: TenantKeys;
  beforeAll(async () => {
    t = await createTenant("catalog-validation");
  });

  it("refuses a bad entity with invalid_entity naming the field", async () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ["products", { id: "p1", name: "Mug", price: -1 }, "price"],
      ["products", { id: "p1", name: "Mug" }, "price"],
      ["products", { id: "p1", name: "   ", price: 3 }, "name"],
      ["products", { id: "", name: "Mug", price: 3 }, "id"],
      ["products", { id: "x".repeat(257), name: "Mug", price: 3 }, "id"],
      ["products", { id: "p1", name: "Mug", price: 3, colour: "red" }, "colour"],
      ["users", { id: "u1", first_name: "Ann" }, "last_name"],
      ["users", { id: "u1", first_name: "Ann", last_name: "Lee", plan: 7 }, "plan"],
      ["courses", { id: "c1", title: "SQL", level: "x".repeat(129) }, "level"],
    ];
    for (const [kind, body, field] of cases) {
      const err = await expectError(await call("POST", `/v1/catalog/${kind}`, t.admin, body), 400, "invalid_entity");
      expect(err.message, JSON.stringify(body)).toContain(field);
    }
    await expectError(await call("POST", "/v1/catalog/products", t.admin, "[1]"), 400, "malformed_body");
    await expectError(await call("POST", "/v1/catalog/products", t.admin, "{not json"), 400, "malformed_body");
  });

  it("answers an unknown kind with catalog_kind_not_found listing the kinds", async () => {
    for (const [method, path] of [
      ["GET", "/v1/catalog/widgets"],
      ["POST", "/v1/catalog/widgets"],
      ["GET", "/v1/catalog/widgets/w1"],
      ["DELETE", "/v1/catalog/widgets/w1"],
    ]) {
      const err = await expectError(
        await call(method, path, t.admin, method === "POST" ? { id: "w1" } : undefined),
        404,
        "catalog_kind_not_found",
      );
      expect(err.message).toContain("products, users, courses");
    }
  });

  it("refuses a PATCH that changes the id, is empty or breaks a rule", async () => {
    await create(t, "products", { id: "pv", name: "Plate", price: 4 });
    const id = await expectError(
      await call("PATCH", "/v1/catalog/products/pv", t.admin, { id: "other" }),
      400,
      "invalid_entity",
    );
    expect(id.message).toContain("id");
    await expectError(await call("PATCH", "/v1/catalog/products/pv", t.admin, {}), 400, "invalid_entity");
    const price = await expectError(
      await call("PATCH", "/v1/catalog/products/pv", t.admin, { price: -2 }),
      400,
      "invalid_entity",
    );
    expect(price.message).toContain("price");
    expect(((await (await call("GET", "/v1/catalog/products/pv", t.read)).json()) as Entity).price).toBe(4);
  });

  it("refuses a listing filter of another kind, and bad bounds", async () => {
    await expectError(await call("GET", "/v1/catalog/users?category=x", t.read), 400, "unknown_parameter");
    await expectError(await call("GET", "/v1/catalog/products?colour=x", t.read), 400, "unknown_parameter");
    await expectError(await call("GET", "/v1/catalog/products?limit=201", t.read), 400, "invalid_request");
    await expectError(await call("GET", "/v1/catalog/products?limit=0", t.read), 400, "invalid_request");
    await expectError(await call("GET", "/v1/catalog/products?min_price=abc", t.read), 400, "invalid_request");
  });
});

describe("create, read, change, delete", () => {
  let t: TenantKeys;
  beforeAll(async () => {
    t = await createTenant("catalog-crud");
  });

  it("round-trips each kind, optional attributes as null", async () => {
    const p = await create(t, "products", { id: "sku/42 ü", name: "  Blue Mug ", price: 12.5 });
    expect(p).toMatchObject({ kind: "products", id: "sku/42 ü", name: "Blue Mug", category: null, price: 12.5 });
    const got = await call("GET", `/v1/catalog/products/${encodeURIComponent("sku/42 ü")}`, t.read);
    expect(got.status).toBe(200);
    expect(await got.json()).toEqual(p);
    const u = await create(t, "users", { id: "u1", first_name: "Ann", last_name: "Lee", plan: "pro", country: "NZ" });
    expect(u).toMatchObject({ kind: "users", first_name: "Ann", last_name: "Lee", plan: "pro", country: "NZ" });
    const c = await create(t, "courses", { id: "c1", title: "Intro to SQL", instructor: "Kim" });
    expect(c).toMatchObject({ kind: "courses", title: "Intro to SQL", level: null, instructor: "Kim" });
  });

  it("PATCH changes attributes, null removes an optional one, the id stays", async () => {
    await create(t, "users", { id: "u2", first_name: "Bo", last_name: "Ng", plan: "free" });
    const res = await call("PATCH", "/v1/catalog/users/u2", t.admin, { plan: null, country: "FR" });
    expect(res.status, await res.clone().text()).toBe(200);
    const u = (await res.json()) as Entity;
    expect(u).toMatchObject({ id: "u2", first_name: "Bo", last_name: "Ng", plan: null, country: "FR" });
    expect(await (await call("GET", "/v1/catalog/users/u2", t.read)).json()).toEqual(u);
  });

  it("answers a missing id with entity_not_found, and DELETE removes only that entity", async () => {
    for (const method of ["GET", "PATCH", "DELETE"]) {
      await expectError(
        await call(method, "/v1/catalog/courses/nope", t.admin, method === "PATCH" ? { level: "x" } : undefined),
        404,
        "entity_not_found",
      );
    }
    await create(t, "courses", { id: "c-del", title: "To Delete" });
    const del = await call("DELETE", "/v1/catalog/courses/c-del", t.admin);
    expect(del.status).toBe(200);
    expect(await del.json()).toEqual({ deleted: "c-del" });
    await expectError(await call("GET", "/v1/catalog/courses/c-del", t.read), 404, "entity_not_found");
    await expectError(await call("DELETE", "/v1/catalog/courses/c-del", t.admin), 404, "entity_not_found");
    expect((await call("GET", "/v1/catalog/courses/c1", t.read)).status).toBe(200);
  });
});

describe("uniqueness", () => {
  let t: TenantKeys;
  beforeAll(async () => {
    t = await createTenant("catalog-unique");
    await create(t, "products", { id: "p1", name: "Blue Mug", price: 10 });
    await create(t, "users", { id: "u1", first_name: "Ann", last_name: "Lee" });
    await create(t, "courses", { id: "c1", title: "Intro to SQL" });
  });

  it("a product name in another case (and spacing) is taken; the conflict names the name", async () => {
    for (const name of ["blue mug", "BLUE MUG", "  Blue   Mug "]) {
      const err = await expectError(
        await call("POST", "/v1/catalog/products", t.admin, { id: "p2", name, price: 1 }),
        409,
        "entity_conflict",
      );
      expect(err.message).toContain("name");
      expect(err.details).toMatchObject({ field: "name", id: "p1" });
    }
  });

  it("a user is unique by first and last name together, not by either", async () => {
    const err = await expectError(
      await call("POST", "/v1/catalog/users", t.admin, { id: "u2", first_name: "ANN", last_name: "lee" }),
      409,
      "entity_conflict",
    );
    expect(err.message).toContain("first_name and last_name");
    await create(t, "users", { id: "u3", first_name: "Ann", last_name: "Leeds" });
    await create(t, "users", { id: "u4", first_name: "Anna", last_name: "Lee" });
    // The split between the names counts: "Ann Marie" "Smith" and "Ann" "Marie Smith" are two people.
    await create(t, "users", { id: "u5", first_name: "Ann Marie", last_name: "Smith" });
    await create(t, "users", { id: "u6", first_name: "Ann", last_name: "Marie Smith" });
  });

  it("a course title is unique; the same id is a conflict naming the id", async () => {
    const title = await expectError(
      await call("POST", "/v1/catalog/courses", t.admin, { id: "c2", title: "intro to sql" }),
      409,
      "entity_conflict",
    );
    expect(title.message).toContain("title");
    const id = await expectError(
      await call("POST", "/v1/catalog/courses", t.admin, { id: "c1", title: "Other" }),
      409,
      "entity_conflict",
    );
    expect(id.message).toContain("id");
    expect(id.details).toMatchObject({ field: "id" });
    // Kinds are separate catalogs: the same id in another kind is free.
    await create(t, "products", { id: "c1", name: "Course-shaped product", price: 0 });
  });

  it("a PATCH into another entity's name is a conflict; its own name in another case is not", async () => {
    await create(t, "products", { id: "p9", name: "Red Mug", price: 10 });
    const err = await expectError(
      await call("PATCH", "/v1/catalog/products/p9", t.admin, { name: "BLUE mug" }),
      409,
      "entity_conflict",
    );
    expect(err.details).toMatchObject({ field: "name", id: "p1" });
    expect(((await (await call("GET", "/v1/catalog/products/p9", t.read)).json()) as Entity).name).toBe("Red Mug");
    const own = await call("PATCH", "/v1/catalog/products/p9", t.admin, { name: "RED MUG" });
    expect(own.status).toBe(200);
    expect(((await own.json()) as Entity).name).toBe("RED MUG");
    const users = await expectError(
      await call("PATCH", "/v1/catalog/users/u4", t.admin, { first_name: "ann" }),
      409,
      "entity_conflict",
    );
    expect(users.details).toMatchObject({ id: "u1" });
  });

  it("after a DELETE the name and the id can be used again", async () => {
    expect((await call("DELETE", "/v1/catalog/products/p1", t.admin)).status).toBe(200);
    await create(t, "products", { id: "p10", name: "blue mug", price: 11 });
    await create(t, "products", { id: "p1", name: "Green Mug", price: 11 });
  });
});

describe("listings", () => {
  let t: TenantKeys;
  const N = 23;
  beforeAll(async () => {
    t = await createTenant("catalog-list");
    for (let i = 0; i < N; i++) {
      await create(t, "products", {
        id: `p${String(i).padStart(2, "0")}`,
        name: i % 2 === 0 ? `Mug ${i}` : `Plate ${i}`,
        price: i,
        ...(i % 3 === 0 ? { category: i % 2 === 0 ? "Kitchen" : "garden" } : {}),
      });
    }
    await create(t, "users", { id: "u1", first_name: "Ann", last_name: "Lee", plan: "pro", country: "NZ" });
    await create(t, "users", { id: "u2", first_name: "Bo", last_name: "Leeds", plan: "free", country: "NZ" });
    await create(t, "users", { id: "u3", first_name: "Cy", last_name: "Park", plan: "PRO", country: "FR" });
    await create(t, "courses", { id: "c1", title: "SQL basics", level: "beginner", instructor: "Kim" });
    await create(t, "courses", { id: "c2", title: "sql tuning", level: "advanced", instructor: "Kim" });
    await create(t, "courses", { id: "c3", title: "Rust", level: "beginner", instructor: "Lu" });
  });

  it("pages through every entity exactly once, in id order, whatever the page size", async () => {
    for (const limit of [1, 5, 7, 23, 200]) {
      const ids = (await listAll(t, "products", "", limit)).map((e) => e.id);
      expect(ids).toHaveLength(N);
      expect(new Set(ids).size).toBe(N);
      expect(ids).toEqual([...ids].sort());
    }
    const first = (await (await call("GET", "/v1/catalog/products", t.read)).json()) as Page;
    expect(first.items).toHaveLength(N);
    expect(first.next_cursor).toBeNull();
  });

  it("filters return exactly the matching entities, across pages", async () => {
    const ids = async (kind: string, query: string) => (await listAll(t, kind, query, 2)).map((e) => e.id).sort();
    const expected = (pred: (i: number) => boolean) =>
      Array.from({ length: N }, (_, i) => i)
        .filter(pred)
        .map((i) => `p${String(i).padStart(2, "0")}`);
    expect(await ids("products", "category=kitchen")).toEqual(expected((i) => i % 3 === 0 && i % 2 === 0));
    expect(await ids("products", "min_price=5&max_price=9.5")).toEqual(expected((i) => i >= 5 && i <= 9));
    expect(await ids("products", "q=mug")).toEqual(expected((i) => i % 2 === 0));
    expect(await ids("products", "q=plate 1&max_price=15")).toEqual(
      expected((i) => i % 2 === 1 && String(i).startsWith("1") && i <= 15),
    );
    expect(await ids("products", "q=zzz")).toEqual([]);
    expect(await ids("users", "plan=pro")).toEqual(["u1", "u3"]);
    expect(await ids("users", "country=NZ&q=lee")).toEqual(["u1", "u2"]);
    expect(await ids("users", "q=leed")).toEqual(["u2"]);
    expect(await ids("courses", "q=SQL")).toEqual(["c1", "c2"]);
    expect(await ids("courses", "level=beginner&instructor=kim")).toEqual(["c1"]);
  });
});

describe("tenants and scopes", () => {
  let a: TenantKeys;
  let b: TenantKeys;
  beforeAll(async () => {
    a = await createTenant("catalog-a");
    b = await createTenant("catalog-b");
    await create(a, "products", { id: "shared", name: "Secret Mug", price: 5, category: "a-only" });
  });

  it("another tenant can neither list, read, change nor delete the entity", async () => {
    const page = (await (await call("GET", "/v1/catalog/products", b.read)).json()) as Page;
    expect(page.items).toEqual([]);
    expect(((await (await call("GET", "/v1/catalog/products?category=a-only", b.read)).json()) as Page).items).toEqual(
      [],
    );
    await expectError(await call("GET", "/v1/catalog/products/shared", b.read), 404, "entity_not_found");
    await expectError(
      await call("PATCH", "/v1/catalog/products/shared", b.admin, { price: 0 }),
      404,
      "entity_not_found",
    );
    await expectError(await call("DELETE", "/v1/catalog/products/shared", b.admin), 404, "entity_not_found");
    const still = (await (await call("GET", "/v1/catalog/products/shared", a.read)).json()) as Entity;
    expect(still).toMatchObject({ name: "Secret Mug", price: 5 });
  });

  it("another tenant may use the same id and name in its own catalog", async () => {
    const own = await create(b, "products", { id: "shared", name: "secret mug", price: 7 });
    expect(own.price).toBe(7);
    expect(((await (await call("GET", "/v1/catalog/products/shared", a.read)).json()) as Entity).price).toBe(5);
  });

  it("a read key reads but cannot write; an ingest key cannot read", async () => {
    expect((await call("GET", "/v1/catalog/products/shared", a.read)).status).toBe(200);
    await expectError(
      await call("POST", "/v1/catalog/products", a.read, { id: "r", name: "R", price: 1 }),
      403,
      "insufficient_scope",
    );
    await expectError(
      await call("PATCH", "/v1/catalog/products/shared", a.read, { price: 1 }),
      403,
      "insufficient_scope",
    );
    await expectError(await call("DELETE", "/v1/catalog/products/shared", a.read), 403, "insufficient_scope");
    await expectError(await call("GET", "/v1/catalog/products", a.ingest), 403, "insufficient_scope");
    await expectError(await call("GET", "/v1/catalog/products/shared", a.ingest), 403, "insufficient_scope");
  });

  it("a credential limited to stream prefixes may read but not write", async () => {
    const limited: Record<string, string> = {};
    for (const scope of ["read", "admin"]) {
      const res = await call("POST", "/v1/keys", a.admin, { scope, stream_prefixes: ["checkout."] });
      expect(res.status).toBe(201);
      limited[scope] = ((await res.json()) as { key: string }).key;
    }
    expect((await call("GET", "/v1/catalog/products/shared", limited.read)).status).toBe(200);
    expect((await call("GET", "/v1/catalog/products", limited.admin)).status).toBe(200);
    await expectError(
      await call("POST", "/v1/catalog/products", limited.admin, { id: "l", name: "L", price: 1 }),
      403,
      "restricted_credential",
    );
    await expectError(
      await call("PATCH", "/v1/catalog/products/shared", limited.admin, { price: 1 }),
      403,
      "restricted_credential",
    );
    await expectError(await call("DELETE", "/v1/catalog/products/shared", limited.admin), 403, "restricted_credential");
  });
});

describe("the catalog and boards when PostgreSQL cannot be reached", () => {
  it("answer 503 database_unavailable, never a 500", async () => {
    const t = await createTenant("catalog-db-down");
    // The same Worker, with a database address nothing listens on (the shared bridge is left alone).
    const down = { ...testEnv, DATABASE_URL: "postgres://edgepulse@127.0.0.1:1/none" };
    const ask = async (method: string, path: string, key: string, body?: unknown) => {
      const ctx = createExecutionContext();
      const res = await worker.fetch(
        new Request(`${BASE}${path}`, {
          method,
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
        }),
        down,
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return res;
    };
    for (const res of [
      await ask("GET", "/v1/catalog/products", t.read),
      await ask("POST", "/v1/catalog/products", t.admin, { id: "x", name: "X", price: 1 }),
      await ask("GET", "/v1/boards", t.read),
      await ask("POST", "/v1/boards", t.admin, { name: "B" }),
    ]) {
      const err = await expectError(res, 503, "database_unavailable");
      expect(err.message).toMatch(/PostgreSQL could not be reached/);
    }
  });
});
