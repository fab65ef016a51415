import { beforeAll, describe, expect, it } from "vitest";
import { MAX_BOARDS_PER_TENANT, MAX_PANELS } from "../../core/boards";
import { call, createTenant, expectError, type TenantKeys } from "./helpers";

interface Panel {
  id: string;
  title: string;
  kind: string;
  width: number;
  query?: Record<string, unknown>;
  funnel?: string;
  days?: number;
}
interface Board {
  id: string;
  name: string;
  description: string | null;
  panels: Panel[];
  version: number;
  created_at: string;
  updated_at: string;
}
interface Summary {
  id: string;
  name: string;
  description: string | null;
  panels: number;
  version: number;
  updated_at: string;
}

async function create(t: TenantKeys, body: Record<string, unknown>): Promise<Board> {
  const res = await call("POST", "/v1/boards", t.admin, body);
  expect(res.status, await res.clone().text()).toBe(201);
  return ((await res.json()) as { board: Board }).board;
}

async function read(t: TenantKeys, id: string): Promise<Board> {
  const res = await call("GET", `/v1/boards/${id}`, t.read);
  expect(res.status, await res.clone().text()).toBe(200);
  return ((await res.json()) as { board: Board }).board;
}

const list = async (key: string): Promise<Summary[]> => {
  const res = await call("GET", "/v1/boards", key);
  expect(res.status, await res.clone().text()).toBe(200);
  return ((await res.json()) as { boards: Summary[] }).boards;
};

const countQuery = { stream: "orders", measures: ["count"], range: { last: "1h" } };
const numberPanel = (title = "orders") => ({ title, kind: "number", query: countQuery });

describe("validation", () => {
  let t: TenantKeys;
  beforeAll(async () => {
    t = await createTenant("boards-validation");
  });

  it("refuses a bad board with invalid_board naming the field", async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ name: "" }, "name"],
      [{ name: "   " }, "name"],
      [{ name: "x".repeat(101) }, "name"],
      [{ name: "ok", description: "d".repeat(501) }, "description"],
      [{ name: "ok", colour: "red" }, "colour"],
      [{ name: "ok", panels: [{ title: "a", kind: "pie", query: countQuery }] }, "panels.0.kind"],
      [{ name: "ok", panels: [numberPanel(), { title: "b", kind: "bars" }] }, "panels.1.query"],
      [{ name: "ok", panels: [{ title: "", kind: "table", query: countQuery }] }, "panels.0.title"],
      [{ name: "ok", panels: [{ ...numberPanel(), title: "t".repeat(101) }] }, "panels.0.title"],
      [{ name: "ok", panels: [{ ...numberPanel(), width: 3 }] }, "panels.0.width"],
      [{ name: "ok", panels: [{ title: "f", kind: "funnel" }] }, "panels.0.funnel"],
      [{ name: "ok", panels: [{ title: "f", kind: "funnel", funnel: "f_1", query: countQuery }] }, "panels.0.query"],
      [{ name: "ok", panels: [{ title: "f", kind: "funnel", funnel: "f_1", days: 91 }] }, "panels.0.days"],
      [{ name: "ok", panels: [{ ...numberPanel(), funnel: "f_1" }] }, "panels.0.funnel"],
      [{ name: "ok", panels: [{ ...numberPanel(), id: "has space" }] }, "panels.0.id"],
      [
        {
          name: "ok",
          panels: [
            { ...numberPanel(), id: "p_a" },
            { ...numberPanel(), id: "p_a" },
          ],
        },
        "panels.1.id",
      ],
    ];
    for (const [body, field] of cases) {
      const err = await expectError(await call("POST", "/v1/boards", t.admin, body), 400, "invalid_board");
      expect(err.message, JSON.stringify(body)).toContain(field);
    }
    await expectError(await call("POST", "/v1/boards", t.admin, "[1]"), 400, "malformed_body");
    await expectError(await call("POST", "/v1/boards", t.admin, "{not json"), 400, "malformed_body");
    expect(await list(t.read)).toEqual([]);
  });

  it("refuses a panel whose query the query API would refuse, naming the panel", async () => {
    const bad: Array<[Record<string, unknown>, string]> = [
      // The query's schema.
      [{ ...countQuery, measures: [] }, "panels.2.query.measures"],
      [{ ...countQuery, colour: 1 }, "panels.2.query"],
      // The query language's own checks, past the schema.
      [{ ...countQuery, measures: ["count", "nope"] }, "panels.2.query.measures.1"],
      [{ ...countQuery, order_by: { measure: "p95" } }, "panels.2.query.order_by.measure"],
      [{ stream: "orders", streams: { a: "x" }, measures: ["count"], range: { last: "1h" } }, "panels.2.query.stream"],
      [{ ...countQuery, range: { last: "400d" }, step: "1m" }, "panels.2.query.step"],
      [{ ...countQuery, labels: { product: "products" } }, "panels.2.query.labels.product"],
    ];
    for (const [query, field] of bad) {
      const body = { name: "b", panels: [numberPanel(), numberPanel(), { title: "bad", kind: "table", query }] };
      const err = await expectError(await call("POST", "/v1/boards", t.admin, body), 400, "invalid_board");
      expect(err.message, JSON.stringify(query)).toContain(field);
      // The query API refuses the same query.
      const direct = await call("POST", "/v1/query", t.read, query);
      expect(direct.status, JSON.stringify(query)).toBe(400);
    }
  });

  it("takes up to the panel limit and refuses one more", async () => {
    const panels = Array.from({ length: MAX_PANELS }, (_, i) => numberPanel(`n${i}`));
    const full = await create(t, { name: "full", panels });
    expect(full.panels).toHaveLength(MAX_PANELS);
    const err = await expectError(
      await call("POST", "/v1/boards", t.admin, { name: "over", panels: [...panels, numberPanel()] }),
      400,
      "invalid_board",
    );
    expect(err.message).toContain("panels");
    expect(err.message).toContain(String(MAX_PANELS));
    const put = await expectError(
      await call("PUT", `/v1/boards/${full.id}`, t.admin, {
        name: "full",
        panels: [...full.panels, numberPanel()],
        version: full.version,
      }),
      400,
      "invalid_board",
    );
    expect(put.message).toContain("panels");
    expect((await read(t, full.id)).panels).toHaveLength(MAX_PANELS);
  });

  it("refuses a replace without a version", async () => {
    const b = await create(t, { name: "needs version" });
    const err = await expectError(
      await call("PUT", `/v1/boards/${b.id}`, t.admin, { name: "x", panels: [] }),
      400,
      "invalid_board",
    );
    expect(err.message).toContain("version");
  });
});

describe("create, read, replace, delete", () => {
  let t: TenantKeys;
  beforeAll(async () => {
    t = await createTenant("boards-crud");
  });

  it("round-trips a board: ids assigned when absent and kept when given, defaults filled in", async () => {
    const query = {
      stream: "orders",
      measures: ["count", "sum"],
      group_by: ["country"],
      range: { last: "24h" },
      order_by: { measure: "sum", dir: "asc" },
      limit: 5,
    };
    const b = await create(t, {
      name: "  Sales  ",
      description: "Orders by country",
      panels: [
        { title: "Orders", kind: "number", query: countQuery },
        { id: "p_mine", title: "By country", kind: "bars", query, width: 2 },
        { title: "Checkout funnel", kind: "funnel", funnel: "f_abc", days: 7 },
        { title: "Series", kind: "timeseries", query: { ...countQuery, step: "1m" } },
      ],
    });
    expect(b.id).toMatch(/^b_[A-Za-z0-9_-]+$/);
    expect(b).toMatchObject({ name: "Sales", description: "Orders by country", version: 1 });
    expect(b.created_at).toBe(b.updated_at);
    expect(b.panels.map((p) => p.id)).toEqual([
      expect.stringMatching(/^p_/),
      "p_mine",
      expect.stringMatching(/^p_/),
      expect.stringMatching(/^p_/),
    ]);
    expect(new Set(b.panels.map((p) => p.id)).size).toBe(4);
    expect(b.panels[0]).toEqual({ id: b.panels[0].id, title: "Orders", kind: "number", width: 1, query: countQuery });
    expect(b.panels[1]).toEqual({ id: "p_mine", title: "By country", kind: "bars", width: 2, query });
    expect(b.panels[2]).toEqual({
      id: b.panels[2].id,
      title: "Checkout funnel",
      kind: "funnel",
      width: 1,
      funnel: "f_abc",
      days: 7,
    });
    expect(await read(t, b.id)).toEqual(b);
    const summaries = await list(t.read);
    expect(summaries).toEqual([
      { id: b.id, name: "Sales", description: "Orders by country", panels: 4, version: 1, updated_at: b.updated_at },
    ]);
  });

  it("a query is stored as the query API reads it (order_by's default direction filled in)", async () => {
    const b = await create(t, {
      name: "defaults",
      panels: [{ title: "t", kind: "table", query: { ...countQuery, order_by: { measure: "count" } } }],
    });
    expect(b.panels[0].query).toEqual({ ...countQuery, order_by: { measure: "count", dir: "desc" } });
    expect(b.description).toBeNull();
  });

  it("PUT replaces name, description and panels, keeps panel ids and bumps the version", async () => {
    const b = await create(t, { name: "edit me", description: "old", panels: [numberPanel("a"), numberPanel("b")] });
    const [a, second] = b.panels;
    const res = await call("PUT", `/v1/boards/${b.id}`, t.admin, {
      name: "edited",
      panels: [
        { ...second, title: "b renamed", kind: "table", width: 2 },
        { ...a },
        { title: "new", kind: "number", query: countQuery },
      ],
      version: 1,
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const after = ((await res.json()) as { board: Board }).board;
    expect(after).toMatchObject({ id: b.id, name: "edited", description: null, version: 2, created_at: b.created_at });
    expect(after.panels.map((p) => [p.id, p.title, p.kind, p.width])).toEqual([
      [second.id, "b renamed", "table", 2],
      [a.id, "a", "number", 1],
      [expect.stringMatching(/^p_/), "new", "number", 1],
    ]);
    expect(after.panels[2].id).not.toBe(a.id);
    expect(after.panels[2].id).not.toBe(second.id);
    expect(Date.parse(after.updated_at)).toBeGreaterThanOrEqual(Date.parse(b.updated_at));
    expect(await read(t, b.id)).toEqual(after);
    // Removing every panel is a replace too.
    const empty = await call("PUT", `/v1/boards/${b.id}`, t.admin, { name: "edited", panels: [], version: 2 });
    expect(empty.status).toBe(200);
    expect(((await empty.json()) as { board: Board }).board).toMatchObject({ panels: [], version: 3 });
  });

  it("answers a missing board with board_not_found, and DELETE removes only that board", async () => {
    for (const method of ["GET", "PUT", "DELETE"]) {
      await expectError(
        await call(
          method,
          "/v1/boards/b_nope",
          t.admin,
          method === "PUT" ? { name: "x", panels: [], version: 1 } : undefined,
        ),
        404,
        "board_not_found",
      );
    }
    const keep = await create(t, { name: "keep" });
    const gone = await create(t, { name: "gone", panels: [numberPanel()] });
    const del = await call("DELETE", `/v1/boards/${gone.id}`, t.admin);
    expect(del.status).toBe(204);
    expect(await del.text()).toBe("");
    await expectError(await call("GET", `/v1/boards/${gone.id}`, t.read), 404, "board_not_found");
    await expectError(await call("DELETE", `/v1/boards/${gone.id}`, t.admin), 404, "board_not_found");
    await expectError(
      await call("PUT", `/v1/boards/${gone.id}`, t.admin, { name: "x", panels: [], version: 1 }),
      404,
      "board_not_found",
    );
    expect((await read(t, keep.id)).name).toBe("keep");
    expect((await list(t.read)).map((s) => s.id)).not.toContain(gone.id);
  });

  it("lists boards by name, case-insensitively, with their panel counts", async () => {
    const u = await createTenant("boards-list");
    for (const [name, n] of [
      ["beta", 2],
      ["Alpha", 0],
      ["gamma", 1],
    ] as const) {
      await create(u, { name, panels: Array.from({ length: n }, () => numberPanel()) });
    }
    expect((await list(u.read)).map((s) => [s.name, s.panels])).toEqual([
      ["Alpha", 0],
      ["beta", 2],
      ["gamma", 1],
    ]);
  });
});

describe("optimistic concurrency", () => {
  let t: TenantKeys;
  beforeAll(async () => {
    t = await createTenant("boards-versions");
  });

  it("a replace naming an old version changes nothing: 409 board_conflict with the version now", async () => {
    const b = await create(t, { name: "v", panels: [numberPanel()] });
    const first = await call("PUT", `/v1/boards/${b.id}`, t.admin, { name: "first", panels: b.panels, version: 1 });
    expect(first.status).toBe(200);
    const err = await expectError(
      await call("PUT", `/v1/boards/${b.id}`, t.admin, { name: "stale", panels: [], version: 1 }),
      409,
      "board_conflict",
    );
    expect(err.details).toEqual({ version: 2 });
    expect(err.message).toContain("version 2");
    const now = await read(t, b.id);
    expect(now).toMatchObject({ name: "first", version: 2 });
    expect(now.panels).toHaveLength(1);
    // A version from the future is a conflict too.
    await expectError(
      await call("PUT", `/v1/boards/${b.id}`, t.admin, { name: "future", panels: [], version: 9 }),
      409,
      "board_conflict",
    );
  });

  it("of concurrent replaces naming the same version, exactly one applies", async () => {
    const b = await create(t, { name: "race" });
    const N = 6;
    const answers = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        call("PUT", `/v1/boards/${b.id}`, t.admin, { name: `writer ${i}`, panels: [], version: 1 }),
      ),
    );
    const statuses = answers.map((r) => r.status).sort();
    expect(statuses).toEqual([200, ...Array.from({ length: N - 1 }, () => 409)]);
    const winner = answers.findIndex((r) => r.status === 200);
    const now = await read(t, b.id);
    expect(now).toMatchObject({ name: `writer ${winner}`, version: 2 });
  });
});

describe("tenants, scopes and limits", () => {
  let a: TenantKeys;
  let b: TenantKeys;
  let board: Board;
  beforeAll(async () => {
    a = await createTenant("boards-a");
    b = await createTenant("boards-b");
    board = await create(a, { name: "A's board", panels: [numberPanel()] });
  });

  it("another tenant can neither list, read, replace nor delete the board", async () => {
    expect(await list(b.read)).toEqual([]);
    await expectError(await call("GET", `/v1/boards/${board.id}`, b.read), 404, "board_not_found");
    await expectError(await call("GET", `/v1/boards/${board.id}`, b.admin), 404, "board_not_found");
    await expectError(
      await call("PUT", `/v1/boards/${board.id}`, b.admin, { name: "taken", panels: [], version: 1 }),
      404,
      "board_not_found",
    );
    await expectError(await call("DELETE", `/v1/boards/${board.id}`, b.admin), 404, "board_not_found");
    expect(await read(a, board.id)).toEqual(board);
  });

  it("a read key reads but cannot write; an ingest key cannot read", async () => {
    expect((await call("GET", `/v1/boards/${board.id}`, a.read)).status).toBe(200);
    await expectError(await call("POST", "/v1/boards", a.read, { name: "r" }), 403, "insufficient_scope");
    await expectError(
      await call("PUT", `/v1/boards/${board.id}`, a.read, { name: "r", panels: [], version: 1 }),
      403,
      "insufficient_scope",
    );
    await expectError(await call("DELETE", `/v1/boards/${board.id}`, a.read), 403, "insufficient_scope");
    await expectError(await call("GET", "/v1/boards", a.ingest), 403, "insufficient_scope");
    await expectError(await call("GET", `/v1/boards/${board.id}`, a.ingest), 403, "insufficient_scope");
    expect(await read(a, board.id)).toEqual(board);
  });

  it("a credential limited to stream prefixes may read but not write", async () => {
    const limited: Record<string, string> = {};
    for (const scope of ["read", "admin"]) {
      const res = await call("POST", "/v1/keys", a.admin, { scope, stream_prefixes: ["orders"] });
      expect(res.status).toBe(201);
      limited[scope] = ((await res.json()) as { key: string }).key;
    }
    expect((await call("GET", `/v1/boards/${board.id}`, limited.read)).status).toBe(200);
    expect((await list(limited.admin)).map((s) => s.id)).toEqual([board.id]);
    await expectError(await call("POST", "/v1/boards", limited.admin, { name: "l" }), 403, "restricted_credential");
    await expectError(
      await call("PUT", `/v1/boards/${board.id}`, limited.admin, { name: "l", panels: [], version: 1 }),
      403,
      "restricted_credential",
    );
    await expectError(await call("DELETE", `/v1/boards/${board.id}`, limited.admin), 403, "restricted_credential");
    expect(await read(a, board.id)).toEqual(board);
    // Panels reading streams outside its prefixes are left out, and counted.
    const mixed = (await (
      await call("POST", "/v1/boards", a.admin, {
        name: "mixed streams",
        panels: [
          { title: "mine", kind: "number", query: { stream: "orders", measures: ["count"], range: { last: "1h" } } },
          { title: "theirs", kind: "number", query: { stream: "payroll", measures: ["count"], range: { last: "1h" } } },
          {
            title: "both",
            kind: "number",
            query: { streams: { o: "orders", p: "payroll" }, measures: ["o.count", "p.count"], range: { last: "1h" } },
          },
        ],
      })
    ).json()) as { board: { id: string } };
    const seen = (await (await call("GET", `/v1/boards/${mixed.board.id}`, limited.read)).json()) as {
      board: { panels: Array<{ title: string }>; hidden_panels?: number };
    };
    expect(seen.board.panels.map((p) => p.title)).toEqual(["mine"]);
    expect(seen.board.hidden_panels).toBe(2);
    const full = (await (await call("GET", `/v1/boards/${mixed.board.id}`, a.read)).json()) as {
      board: { panels: unknown[]; hidden_panels?: number };
    };
    expect(full.board.panels).toHaveLength(3);
    expect(full.board.hidden_panels).toBeUndefined();
    expect((await call("DELETE", `/v1/boards/${mixed.board.id}`, a.admin)).status).toBe(204);
  });

  it(`holds at most ${MAX_BOARDS_PER_TENANT} boards per tenant, even under concurrent creates`, async () => {
    const t = await createTenant("boards-limit");
    // Concurrent creates, a few more than fit: exactly the limit succeeds.
    const extra = 4;
    const answers: Response[] = [];
    for (let i = 0; i < MAX_BOARDS_PER_TENANT + extra; i += 13) {
      const batch = Array.from({ length: Math.min(13, MAX_BOARDS_PER_TENANT + extra - i) }, (_, j) =>
        call("POST", "/v1/boards", t.admin, { name: `board ${i + j}` }),
      );
      answers.push(...(await Promise.all(batch)));
    }
    const created = answers.filter((r) => r.status === 201).length;
    expect(created).toBe(MAX_BOARDS_PER_TENANT);
    for (const r of answers.filter((x) => x.status !== 201)) {
      const err = await expectError(r, 409, "board_limit");
      expect(err.message).toContain(String(MAX_BOARDS_PER_TENANT));
    }
    expect(await list(t.read)).toHaveLength(MAX_BOARDS_PER_TENANT);
    // Another tenant is not limited by this one's boards.
    await create(b, { name: "b's own" });
    // A delete frees a place.
    const one = (await list(t.read))[0];
    expect((await call("DELETE", `/v1/boards/${one.id}`, t.admin)).status).toBe(204);
    await create(t, { name: "fits again" });
    await expectError(await call("POST", "/v1/boards", t.admin, { name: "over" }), 409, "board_limit");
  });
});
