/**
 * The boards API (core/boards.ts): /v1/boards, the tenant's saved dashboards, in PostgreSQL (db/boards.ts).
 * Read keys list and read; admin keys create, replace and delete, and a credential limited to stream
 * prefixes may read but not write (a board is tenant-wide). Every query is scoped to the caller's tenant: a
 * board of another tenant is 404 board_not_found. Without a database, 503 history_disabled.
 */
import { type Context, Hono } from "hono";
import { createMiddleware } from "hono/factory";
import {
  BoardCreate,
  BoardReplace,
  type BoardSummaryView,
  boardView,
  contentOf,
  MAX_BOARDS_PER_TENANT,
  panelStreams,
} from "../../core/boards";
import { streamAllowed } from "../../core/keys";
import { createBoard, deleteBoard, getBoard, listBoards, replaceBoard } from "../../db/boards";
import { historyEnabled } from "../../db/client";
import { assertUnrestricted, requireKey } from "../lib/auth";
import { ApiError, withDatabase } from "../lib/errors";
import type { AppEnv } from "../lib/types";
import { jsonBody, onlyParams } from "../lib/validate";

export const boards = new Hono<AppEnv>();

/** The board id in the path; 503 history_disabled first when no database is configured. */
function boardParam(c: Pick<Context<AppEnv>, "req" | "env">): string {
  needsDb(c);
  return c.req.param("board") ?? "";
}

function needsDb(c: Pick<Context<AppEnv>, "env">): void {
  if (!historyEnabled(c.env)) throw new ApiError("history_disabled");
}

const notFound = (id: string) => new ApiError("board_not_found", `This tenant has no board '${id.slice(0, 64)}'.`);

const admin = [
  requireKey("admin"),
  createMiddleware<AppEnv>(async (c, next) => {
    assertUnrestricted(c.get("grant"), "changing boards (they are tenant-wide)");
    await next();
  }),
] as const;

boards.post("/v1/boards", ...admin, onlyParams(), jsonBody(BoardCreate, "invalid_board"), async (c) => {
  needsDb(c);
  const content = contentOf(c.req.valid("json"));
  const out = await withDatabase(c.env, (db) => createBoard(db, c.get("grant").tenantId, content));
  if (!out.ok) {
    throw new ApiError(
      "board_limit",
      `This tenant has ${MAX_BOARDS_PER_TENANT} boards, the most allowed; delete one before creating another.`,
    );
  }
  return c.json({ board: boardView(out.board) }, 201);
});

boards.get("/v1/boards", requireKey("read"), onlyParams(), async (c) => {
  needsDb(c);
  const rows = await withDatabase(c.env, (db) => listBoards(db, c.get("grant").tenantId));
  return c.json({
    boards: rows.map(
      (r): BoardSummaryView => ({
        id: r.id,
        name: r.name,
        description: r.description,
        panels: r.panels,
        version: r.version,
        updated_at: r.updatedAt.toISOString(),
      }),
    ),
  });
});

boards.get("/v1/boards/:board", requireKey("read"), onlyParams(), async (c) => {
  const id = boardParam(c);
  const found = await withDatabase(c.env, (db) => getBoard(db, c.get("grant").tenantId, id));
  if (found === null) throw notFound(id);
  const board = boardView(found);
  // A credential limited to stream prefixes sees only the panels that read streams it may read.
  const grant = c.get("grant");
  const shown = board.panels.filter((p) => panelStreams(p).every((s) => streamAllowed(grant, s)));
  if (shown.length === board.panels.length) return c.json({ board });
  return c.json({ board: { ...board, panels: shown, hidden_panels: board.panels.length - shown.length } });
});

boards.put("/v1/boards/:board", ...admin, onlyParams(), jsonBody(BoardReplace, "invalid_board"), async (c) => {
  const id = boardParam(c);
  const body = c.req.valid("json");
  const content = contentOf(body);
  const out = await withDatabase(c.env, (db) => replaceBoard(db, c.get("grant").tenantId, id, body.version, content));
  if (out.ok) return c.json({ board: boardView(out.board) });
  if (out.reason === "not_found") throw notFound(id);
  throw new ApiError(
    "board_conflict",
    `version: the board is at version ${out.version}, not ${body.version} (it was saved since you read it); read it again and reapply your change.`,
    { version: out.version },
  );
});

boards.delete("/v1/boards/:board", ...admin, onlyParams(), async (c) => {
  const id = boardParam(c);
  if (!(await withDatabase(c.env, (db) => deleteBoard(db, c.get("grant").tenantId, id)))) throw notFound(id);
  return c.body(null, 204);
});
