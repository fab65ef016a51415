/**
 * The boards' entries of the API description (workers/openapi/routes.ts spreads them into OPERATIONS):
 * /v1/boards, the tenant's saved dashboards (workers/aggregator/boards.ts).
 */
import {
  BoardList,
  BoardOne,
  FUNNEL_DAYS,
  MAX_BOARD_BYTES,
  MAX_BOARD_DESCRIPTION,
  MAX_BOARD_NAME,
  MAX_BOARDS_PER_TENANT,
  MAX_PANELS,
} from "../../core/boards";
import type { OperationDoc, RouteKey } from "./routes";

const WRITE = "An admin credential without stream prefixes.";
const PANELS = `Up to ${MAX_PANELS} panels, in display order. A panel has a \`title\` (1–100 characters), a \`kind\` (\`timeseries\`, \`bars\`, \`table\`, \`number\` or \`funnel\`), a \`width\` (1 or 2 grid columns) and either a \`query\` (a POST /v1/query body, checked as that endpoint checks it: a refused query names the panel, e.g. \`panels.2.query.measures.0\`) or, for a funnel panel, a \`funnel\` id and \`days\` (${FUNNEL_DAYS.min}–${FUNNEL_DAYS.max}). A panel without an \`id\` gets one (\`p_…\`); a given id is kept and must be unique on the board. The name is 1–${MAX_BOARD_NAME} characters, the description at most ${MAX_BOARD_DESCRIPTION}; the whole board at most ${MAX_BOARD_BYTES} bytes as JSON.`;

export const BOARD_OPERATIONS: Record<RouteKey, OperationDoc> = {
  "POST /v1/boards": {
    operationId: "createBoard",
    tag: "Boards",
    summary: "Create a board",
    description: `${PANELS} At most ${MAX_BOARDS_PER_TENANT} boards per tenant. The dashboard shows it at \`/#/boards/<id>\`. ${WRITE}`,
    responses: { 201: { description: "Created, at version 1.", json: BoardOne } },
    errors: ["board_limit", "restricted_credential", "history_disabled", "database_unavailable"],
  },
  "GET /v1/boards": {
    operationId: "listBoards",
    tag: "Boards",
    summary: "The tenant's boards, without their panels",
    responses: { 200: { description: "By name; `panels` counts each board's panels.", json: BoardList } },
    errors: ["history_disabled", "database_unavailable"],
  },
  "GET /v1/boards/:board": {
    operationId: "getBoard",
    tag: "Boards",
    summary: "One board with its panels",
    responses: { 200: { description: "The board.", json: BoardOne } },
    errors: ["board_not_found", "history_disabled", "database_unavailable"],
  },
  "PUT /v1/boards/:board": {
    operationId: "replaceBoard",
    tag: "Boards",
    summary: "Replace a board's name, description and panels",
    description: `\`version\` is the board's version as read: if the board was saved since, nothing changes and the answer is \`409 board_conflict\` (its \`details.version\` is the version now). Of concurrent replaces naming the same version, exactly one applies. ${PANELS} ${WRITE}`,
    responses: { 200: { description: "The board as saved, its version one more.", json: BoardOne } },
    errors: ["board_not_found", "board_conflict", "restricted_credential", "history_disabled", "database_unavailable"],
  },
  "DELETE /v1/boards/:board": {
    operationId: "deleteBoard",
    tag: "Boards",
    summary: "Delete a board",
    description: `Its link stops working; the streams and funnels its panels show are left as they are. ${WRITE}`,
    responses: { 204: { description: "Deleted." } },
    errors: ["board_not_found", "restricted_credential", "history_disabled", "database_unavailable"],
  },
};
