/**
 * Boards: a tenant's saved dashboards. A board is a named, ordered list of panels; each panel shows one
 * query (a POST /v1/query body) as a time series, bars, a table or one number, or one funnel's results.
 * The dashboard runs each panel's query itself: a board stores what to show, never figures.
 *
 * A panel's query is checked like POST /v1/query checks it (its schema, then the query language's own
 * checks: formulas, limits, ranges), so a board never holds a query the query API would refuse. Runtime-free:
 * the Worker validates with these schemas, db/boards.ts stores what they give, and the API description is
 * generated from them.
 */
import { z } from "zod";
import { CodedError } from "./errors.ts";
import { FUNNEL_MAX_DAYS } from "./funnels.ts";
import { randomToken } from "./keys.ts";
import { parseQuery, QueryBody, QueryFields } from "./query.ts";
import { Time } from "./responses.ts";

export const PANEL_KINDS = ["timeseries", "bars", "table", "number", "funnel"] as const;
export type PanelKind = (typeof PANEL_KINDS)[number];

/** At most this many boards per tenant (409 board_limit past it). */
export const MAX_BOARDS_PER_TENANT = 100;
/** At most this many panels on one board. */
export const MAX_PANELS = 24;
/** A board's name and a panel's title: 1–100 characters once trimmed. */
export const MAX_BOARD_NAME = 100;
export const MAX_PANEL_TITLE = 100;
/** A board's description: at most 500 characters once trimmed. */
export const MAX_BOARD_DESCRIPTION = 500;
/** A funnel panel's days: 1–90 (as GET /v1/funnels/:id/results takes them); 1 when omitted. */
/** A funnel panel's days: those the funnel results route takes (core/funnels.ts). */
export const FUNNEL_DAYS = { min: 1, max: FUNNEL_MAX_DAYS, default: 1 } as const;
/**
 * A board as stored (name, description and panels as JSON) is at most this many bytes: 24 panels of
 * ordinary queries are a few KiB; this bounds a tenant's boards at 100 × 256 KiB.
 */
export const MAX_BOARD_BYTES = 256 * 1024;
/** A panel id the client chooses: 1–64 characters of [A-Za-z0-9_-]. */
export const PANEL_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** A funnel's id as a panel names it (the funnels API's `f_…`): 1–64 characters of [A-Za-z0-9_-]. */
export const FUNNEL_ID_PATTERN = PANEL_ID_PATTERN;

export const newBoardId = (): string => `b_${randomToken(12)}`;
export const newPanelId = (): string => `p_${randomToken(8)}`;

const trimmed = (what: string, max: number) =>
  z.string().trim().min(1, `${what} must not be empty`).max(max, `${what} is at most ${max} characters`);

const description = z
  .string()
  .trim()
  .max(MAX_BOARD_DESCRIPTION, `description is at most ${MAX_BOARD_DESCRIPTION} characters`)
  .nullable()
  .optional()
  .describe(`At most ${MAX_BOARD_DESCRIPTION} characters; omitted, null or empty: none.`);

/** The query language's own checks (core/query.ts parseQuery) as issues of the panel's query. */
function checkQuery(query: unknown, ctx: z.RefinementCtx): void {
  try {
    parseQuery(query, Date.now());
  } catch (err) {
    if (!(err instanceof CodedError)) throw err;
    // parseQuery's messages read "<field>: <what is wrong>."; the field becomes the issue's path.
    const m = /^([A-Za-z0-9_.]+): (.*?)\.?$/s.exec(err.message);
    const path = m ? ["query", ...m[1].split(".").map((p) => (/^\d+$/.test(p) ? Number(p) : p))] : ["query"];
    ctx.addIssue({ code: "custom", path, message: m ? m[2] : err.message });
  }
}

export const PanelInput = z
  .strictObject({
    id: z
      .string()
      .regex(PANEL_ID_PATTERN, "a panel id is 1–64 characters of [A-Za-z0-9_-]")
      .optional()
      .describe('Kept when given (unique within the board); omitted: the server assigns one ("p_…").'),
    title: trimmed("title", MAX_PANEL_TITLE),
    kind: z.enum(PANEL_KINDS),
    query: QueryBody.optional().describe("A POST /v1/query body: required unless kind is funnel."),
    funnel: z
      .string()
      .regex(FUNNEL_ID_PATTERN, "a funnel id is 1–64 characters of [A-Za-z0-9_-]")
      .optional()
      .describe("The funnel's id (`f_…`): required for kind funnel, refused for the others."),
    days: z
      .int()
      .min(FUNNEL_DAYS.min, `days is ${FUNNEL_DAYS.min}–${FUNNEL_DAYS.max}`)
      .max(FUNNEL_DAYS.max, `days is ${FUNNEL_DAYS.min}–${FUNNEL_DAYS.max}`)
      .optional()
      .describe(`Funnel panels: the days of results shown (${FUNNEL_DAYS.min}–${FUNNEL_DAYS.max}; default 1).`),
    width: z
      .union([z.literal(1), z.literal(2)])
      .optional()
      .describe("Grid columns the panel spans: 1 (default) or 2."),
  })
  .superRefine((p, ctx) => {
    if (p.kind === "funnel") {
      if (p.funnel === undefined)
        ctx.addIssue({ code: "custom", path: ["funnel"], message: "a funnel panel names its funnel's id" });
      if (p.query !== undefined)
        ctx.addIssue({ code: "custom", path: ["query"], message: "a funnel panel shows its funnel, not a query" });
      return;
    }
    if (p.funnel !== undefined)
      ctx.addIssue({
        code: "custom",
        path: ["funnel"],
        message: `only funnel panels name a funnel (this is ${p.kind})`,
      });
    if (p.days !== undefined)
      ctx.addIssue({ code: "custom", path: ["days"], message: `only funnel panels take days (this is ${p.kind})` });
    if (p.query === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["query"],
        message: `a ${p.kind} panel needs a query (a POST /v1/query body)`,
      });
      return;
    }
    checkQuery(p.query, ctx);
  })
  .meta({ id: "PanelInput" });

const panels = z
  .array(PanelInput)
  .max(MAX_PANELS, `a board holds at most ${MAX_PANELS} panels`)
  .superRefine((list, ctx) => {
    const first = new Map<string, number>();
    list.forEach((p, i) => {
      if (p.id === undefined) return;
      const other = first.get(p.id);
      if (other !== undefined)
        ctx.addIssue({ code: "custom", path: [i, "id"], message: `'${p.id}' is also panel ${other}'s id` });
      else first.set(p.id, i);
    });
  });

export const BoardCreate = z
  .strictObject({
    name: trimmed("name", MAX_BOARD_NAME),
    description,
    panels: panels.default([]).describe(`At most ${MAX_PANELS}, in display order.`),
  })
  .meta({ id: "BoardCreate" });

export const BoardReplace = z
  .strictObject({
    name: trimmed("name", MAX_BOARD_NAME),
    description,
    panels: panels.describe(`At most ${MAX_PANELS}, in display order: the board's panels from now on.`),
    version: z
      .int()
      .min(1)
      .describe("The board's version as read: the change applies only if nobody saved the board since."),
  })
  .meta({ id: "BoardReplace" });

export type BoardInput = z.output<typeof BoardCreate>;
type PanelParsed = z.output<typeof PanelInput>;
export type BoardQuery = z.output<typeof QueryBody>;

/** A panel as stored and shown: its id assigned, its width and a funnel panel's days filled in. */
export interface PanelView {
  id: string;
  title: string;
  kind: PanelKind;
  width: 1 | 2;
  query?: BoardQuery;
  funnel?: string;
  days?: number;
}

export interface BoardView {
  id: string;
  name: string;
  description: string | null;
  panels: PanelView[];
  version: number;
  created_at: string;
  updated_at: string;
  /** Panels left out for a credential limited to stream prefixes (they name streams it cannot read). */
  hidden_panels?: number;
}

/** The streams a panel's query reads (none for a funnel panel: its results route checks its own steps). */
export function panelStreams(p: PanelView): string[] {
  const q = p.query as { stream?: string; streams?: Record<string, string> } | undefined;
  if (!q) return [];
  return [...(q.stream ? [q.stream] : []), ...Object.values(q.streams ?? {})];
}

export interface BoardSummaryView {
  id: string;
  name: string;
  description: string | null;
  panels: number;
  version: number;
  updated_at: string;
}

/** What a validated body stores: panels with ids (kept, or new ones unused on the board). */
export interface BoardContent {
  name: string;
  description: string | null;
  panels: PanelView[];
}

export function contentOf(body: {
  name: string;
  description?: string | null;
  panels: readonly PanelParsed[];
}): BoardContent {
  const taken = new Set(body.panels.flatMap((p) => (p.id === undefined ? [] : [p.id])));
  const panels = body.panels.map((p): PanelView => {
    let id = p.id;
    while (id === undefined || (p.id === undefined && taken.has(id))) id = newPanelId();
    taken.add(id);
    const base = { id, title: p.title, kind: p.kind, width: p.width ?? 1 } as const;
    return p.kind === "funnel"
      ? { ...base, funnel: p.funnel as string, days: p.days ?? FUNNEL_DAYS.default }
      : { ...base, query: p.query as BoardQuery };
  });
  const content = { name: body.name, description: body.description ? body.description : null, panels };
  const bytes = new TextEncoder().encode(JSON.stringify(content)).length;
  if (bytes > MAX_BOARD_BYTES) {
    throw new CodedError(
      "invalid_board",
      `The board is ${bytes} bytes as JSON; at most ${MAX_BOARD_BYTES}: use fewer or shorter panels.`,
    );
  }
  return content;
}

export interface StoredBoard extends BoardContent {
  id: string;
  version: number;
  createdAt: Date;
  updatedAt: Date;
}

export const boardView = (b: StoredBoard): BoardView => ({
  id: b.id,
  name: b.name,
  description: b.description,
  panels: b.panels,
  version: b.version,
  created_at: b.createdAt.toISOString(),
  updated_at: b.updatedAt.toISOString(),
});

// ---------------------------------------------------------------------------
// Responses (core/responses.ts style; workers/openapi/shapes.ts checks they agree with the views).
// ---------------------------------------------------------------------------

export const Panel = z
  .object({
    id: z.string(),
    title: z.string(),
    kind: z.enum(PANEL_KINDS),
    width: z.union([z.literal(1), z.literal(2)]),
    query: QueryFields.meta({ id: "BoardPanelQuery", description: "The panel's query, as POST /v1/query takes it." })
      .optional()
      .describe("Every kind but funnel."),
    funnel: z.string().optional().describe("Funnel panels: the funnel's id."),
    days: z.int().min(FUNNEL_DAYS.min).max(FUNNEL_DAYS.max).optional().describe("Funnel panels."),
  })
  .meta({ id: "Panel" });

export const Board = z
  .object({
    id: z.string().describe("`b_…`"),
    name: z.string(),
    description: z.string().nullable(),
    panels: z.array(Panel),
    version: z.int().min(1).describe("Bumped by every change; PUT sends it back."),
    created_at: Time,
    updated_at: Time,
    hidden_panels: z
      .int()
      .min(1)
      .optional()
      .describe("For a credential limited to stream prefixes: panels left out, as they read streams it cannot."),
  })
  .meta({ id: "Board" });

export const BoardOne = z.object({ board: Board }).meta({ id: "BoardOne" });

export const BoardSummary = z
  .object({
    id: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    panels: z.int().min(0).describe("How many panels the board has."),
    version: z.int().min(1),
    updated_at: Time,
  })
  .meta({ id: "BoardSummary" });

export const BoardList = z.object({ boards: z.array(BoardSummary).describe("By name.") }).meta({ id: "BoardList" });
