/**
 * Sets a pack up in a running edgepulse through its public HTTP API only, idempotently: a second run
 * finds what the first made and changes only what differs. The tenant's keys are kept in
 * `<stateDir>/demo-<pack>.json`; catalog entities are found by id, stream configurations are compared,
 * funnels, alert rules and boards are found by name. Each failure names the step, the request and the
 * server's error.
 *
 * A server without the funnels or boards API (it answers 404 not_found for their routes) gets
 * everything else, and a note says what was left out.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type AlertRule, validateRule } from "../../core/alerts";
import { CATALOG_KINDS, CATALOG_PAGE, type CatalogKind } from "../../core/catalog";
import { MAX_DIM_SETS } from "../../core/dims";
import type { BoardSpec, CatalogChange, FunnelSpec, Pack, PanelSpec } from "./pack";

export interface DemoTenant {
  url: string;
  tenantId: string;
  admin: string;
  ingest: string;
  read: string;
}

export interface ProvisionOptions {
  url: string;
  /** The `.dev.vars` file holding the operator token (ADMIN_TOKEN), as `npm start` writes it. */
  vars: string;
  /** Where the tenant's keys are kept (demo-<pack>.json). */
  stateDir: string;
  /** A webhook URL for the pack's notifying alert rules (`--notify`); without it their targets are left as they are. */
  notify?: string;
  log?: (line: string) => void;
}

export interface ProvisionResult {
  tenant: DemoTenant;
  /** Funnel name → id. */
  funnels: Map<string, string>;
  /** Board name → id, in the pack's order. */
  boards: Array<{ name: string; id: string }>;
  /** Rule name → id. */
  rules: Map<string, string>;
  /** What was left out or needs attention. */
  notes: string[];
  /** What this run created or changed, one line each (empty when everything was already as the pack wants). */
  changes: string[];
}

/** Reports a step's outcome; `changed` marks what the run created or changed. */
type Say = (line: string, changed?: boolean) => void;

/** A request that failed, naming the provisioning step, the request and the server's answer. */
export class ProvisionError extends Error {
  constructor(
    readonly step: string,
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(`${step}: ${message}`);
    this.name = "ProvisionError";
  }
}

interface Answer {
  status: number;
  body: unknown;
}

/** The server's error code and message from an error body ({"error": {"code", "message"}}). */
function serverError(body: unknown): { code?: string; message: string } {
  const e = (body as { error?: { code?: string; message?: string } } | null)?.error;
  if (e && typeof e === "object") return { code: e.code, message: e.message ?? "" };
  return { message: typeof body === "string" ? body.slice(0, 300) : JSON.stringify(body)?.slice(0, 300) };
}

/** An HTTP client for one base URL, whose failures are ProvisionErrors naming `step`. */
export class Api {
  constructor(readonly url: string) {}

  async request(step: string, method: string, path: string, key: string, body?: unknown): Promise<Answer> {
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${key}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
      throw new ProvisionError(
        step,
        `${method} ${this.url}${path} could not reach the server (${cause}); is \`npm start\` running there?`,
      );
    }
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON: kept as text for the error message.
    }
    return { status: res.status, body: parsed };
  }

  /** A request that must answer one of `ok`; anything else is a ProvisionError with the server's code and message. */
  async expect<T>(step: string, method: string, path: string, key: string, body: unknown, ok: number[]): Promise<T> {
    const a = await this.request(step, method, path, key, body);
    if (!ok.includes(a.status)) throw this.failure(step, method, path, a);
    return a.body as T;
  }

  failure(step: string, method: string, path: string, a: Answer): ProvisionError {
    const e = serverError(a.body);
    return new ProvisionError(
      step,
      `${method} ${path} answered ${a.status}${e.code ? ` ${e.code}` : ""}: ${e.message}`,
      a.status,
      e.code,
    );
  }
}

/** Whether an answer says the route does not exist on this server (an older edgepulse without that API). */
const noRoute = (a: Answer) => a.status === 404 && serverError(a.body).code === "not_found";

export const stateFile = (stateDir: string, pack: string) => join(stateDir, `demo-${pack}.json`);

/** The operator token `npm start` keeps in its vars file. */
function operatorToken(vars: string): string {
  const token = /^ADMIN_TOKEN=(.+)$/m.exec(existsSync(vars) ? readFileSync(vars, "utf8") : "")?.[1]?.trim();
  if (!token) {
    throw new ProvisionError(
      "tenant",
      `no ADMIN_TOKEN in ${vars}: start the stack with \`npm start\` first (it writes the operator token there), or pass --vars <file>.`,
    );
  }
  return token;
}

/**
 * The pack's tenant: the one saved in demo-<pack>.json if its keys still work on this server; else the
 * tenant of that name if the server has one (new keys are minted for it, as keys are shown only once);
 * else a new tenant.
 */
export async function ensureTenant(
  api: Api,
  pack: Pack,
  opts: ProvisionOptions,
  say: Say = opts.log ?? (() => {}),
): Promise<DemoTenant> {
  const file = stateFile(opts.stateDir, pack.name);
  if (existsSync(file)) {
    const saved = JSON.parse(readFileSync(file, "utf8")) as DemoTenant;
    if (saved.url === api.url) {
      const [read, admin] = await Promise.all([
        api.request("tenant", "GET", "/v1/streams?limit=1", saved.read),
        api.request("tenant", "GET", "/v1/keys", saved.admin),
      ]);
      if (read.status === 200 && admin.status === 200) {
        say(`tenant: ${pack.tenant} (${saved.tenantId}), keys from ${file}`);
        return saved;
      }
    }
  }
  const token = operatorToken(opts.vars);
  const { tenants } = await api.expect<{ tenants: Array<{ id: string; name: string }> }>(
    "tenant",
    "GET",
    "/v1/admin/tenants",
    token,
    undefined,
    [200],
  );
  const found = tenants.find((t) => t.name === pack.tenant);
  let tenant: DemoTenant;
  if (found) {
    const key = async (scope: string) =>
      (
        await api.expect<{ key: string }>(
          "tenant",
          "POST",
          `/v1/admin/tenants/${found.id}/keys`,
          token,
          { scope, name: `demo ${scope}` },
          [201],
        )
      ).key;
    tenant = {
      url: api.url,
      tenantId: found.id,
      admin: await key("admin"),
      ingest: await key("ingest"),
      read: await key("read"),
    };
    say(`tenant: ${pack.tenant} (${found.id}) found, new keys minted`, true);
  } else {
    const body = await api.expect<{ tenant: { id: string }; keys: Array<{ scope: string; key: string }> }>(
      "tenant",
      "POST",
      "/v1/admin/tenants",
      token,
      { name: pack.tenant },
      [201],
    );
    const k = (s: string) => body.keys.find((x) => x.scope === s)?.key ?? "";
    tenant = { url: api.url, tenantId: body.tenant.id, admin: k("admin"), ingest: k("ingest"), read: k("read") };
    say(`tenant: ${pack.tenant} (${tenant.tenantId}) created`, true);
  }
  mkdirSync(opts.stateDir, { recursive: true });
  writeFileSync(file, JSON.stringify(tenant, null, 2), { mode: 0o600 });
  return tenant;
}

/** Every id of a catalog kind (page by page). */
async function catalogIds(api: Api, t: DemoTenant, kind: CatalogKind): Promise<Set<string>> {
  const ids = new Set<string>();
  let cursor: string | null = null;
  do {
    const q: string = `?limit=${CATALOG_PAGE.max}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const page: { items: Array<{ id: string }>; next_cursor: string | null } = await api.expect(
      `catalog ${kind}`,
      "GET",
      `/v1/catalog/${kind}${q}`,
      t.read,
      undefined,
      [200],
    );
    for (const e of page.items) ids.add(e.id);
    cursor = page.next_cursor;
  } while (cursor);
  return ids;
}

/**
 * Creates the pack's catalog entities that are not there yet (by id); existing ones are left as they are.
 * One request at a time: `npm start`'s embedded PostgreSQL (PGlite behind pglite-socket) serves one
 * connection at a time, and concurrent writes there fail. About 80 a second locally: the packs' 1,200
 * users take some 15 s, on the first run only.
 */
async function provisionCatalog(api: Api, t: DemoTenant, pack: Pack, say: Say): Promise<void> {
  for (const kind of CATALOG_KINDS) {
    const wanted = (pack.catalog[kind] ?? []) as Array<{ id: string }>;
    if (wanted.length === 0) continue;
    const step = `catalog ${kind}`;
    const have = await catalogIds(api, t, kind);
    const missing = wanted.filter((e) => !have.has(e.id));
    for (const entity of missing) await api.expect(step, "POST", `/v1/catalog/${kind}`, t.admin, entity, [201]);
    const created = missing.length;
    say(`${step}: ${wanted.length} (${created} created, ${wanted.length - created} already there)`, created > 0);
  }
}

/** Applies a generator's catalog change; an entity created by an earlier run (409 on create) is already there. */
export async function applyCatalogChange(api: Api, t: DemoTenant, c: CatalogChange): Promise<"done" | "exists"> {
  if (c.op === "create") {
    const a = await api.request(`catalog ${c.kind}`, "POST", `/v1/catalog/${c.kind}`, t.admin, c.body);
    if (a.status === 201) return "done";
    if (a.status === 409 && serverError(a.body).code === "entity_conflict") return "exists";
    throw api.failure(`catalog ${c.kind}`, "POST", `/v1/catalog/${c.kind}`, a);
  }
  const path = `/v1/catalog/${c.kind}/${encodeURIComponent(c.id)}`;
  await api.expect(`catalog ${c.kind}`, "PATCH", path, t.admin, c.body, [200]);
  return "done";
}

/** Declares each stream's dimension sets, keeping any others the stream already has. */
async function provisionStreams(api: Api, t: DemoTenant, pack: Pack, say: Say): Promise<void> {
  for (const s of pack.streams) {
    if (!s.dimension_sets?.length) continue;
    const step = `stream config ${s.name}`;
    const path = `/v1/streams/${encodeURIComponent(s.name)}/config`;
    const current = await api.expect<{ dimension_sets: string[][] }>(step, "GET", path, t.read, undefined, [200]);
    const have = new Set(current.dimension_sets.map((k) => k.join("+")));
    const missing = s.dimension_sets.filter((k) => !have.has(k.join("+")));
    if (missing.length === 0) continue;
    const sets = [...current.dimension_sets, ...missing];
    if (sets.length > MAX_DIM_SETS) {
      throw new ProvisionError(
        step,
        `the stream already declares ${current.dimension_sets.length} dimension sets; adding ${missing.length} would pass the limit of ${MAX_DIM_SETS}. Remove one with PUT ${path}.`,
      );
    }
    await api.expect(step, "PUT", path, t.admin, { dimension_sets: sets }, [200]);
    say(`${step}: dimension sets ${sets.map((k) => k.join("+")).join(", ")}`, true);
  }
}

interface FunnelView {
  id: string;
  name: string;
  steps: Array<{ stream: string; filters?: Array<{ dim: string; op: string; value?: string; values?: string[] }> }>;
  window: string;
  breakdown?: string | null;
}

/** A funnel's definition, comparable whatever the server adds (ids, window_ms, created_at). */
const funnelKey = (f: Pick<FunnelView, "steps" | "window" | "breakdown">) =>
  JSON.stringify({
    steps: f.steps.map((s) => ({
      stream: s.stream,
      filters: (s.filters ?? []).map((x) => [x.dim, x.op, x.values ?? (x.value === undefined ? [] : [x.value])]),
    })),
    window: f.window,
    breakdown: f.breakdown ?? null,
  });

/** Funnels by name: created when missing, replaced (deleted and created) when the definition changed. Null: no funnels API. */
async function provisionFunnels(
  api: Api,
  t: DemoTenant,
  funnels: FunnelSpec[],
  say: Say,
): Promise<Map<string, string> | null> {
  const ids = new Map<string, string>();
  if (funnels.length === 0) return ids;
  const list = await api.request("funnels", "GET", "/v1/funnels", t.read);
  if (noRoute(list)) return null;
  if (list.status !== 200) throw api.failure("funnels", "GET", "/v1/funnels", list);
  const existing = new Map((list.body as { funnels: FunnelView[] }).funnels.map((f) => [f.name, f]));
  for (const spec of funnels) {
    const step = `funnel "${spec.name}"`;
    const have = existing.get(spec.name);
    if (have && funnelKey(have) === funnelKey(spec)) {
      ids.set(spec.name, have.id);
      continue;
    }
    if (have) await api.expect(step, "DELETE", `/v1/funnels/${have.id}`, t.admin, undefined, [204]);
    const made = await api.expect<{ funnel: FunnelView }>(step, "POST", "/v1/funnels", t.admin, spec, [201]);
    ids.set(spec.name, made.funnel.id);
    say(`${step}: ${have ? "replaced (its definition changed)" : "created"}`, true);
  }
  return ids;
}

/** The fields of a rule that provisioning sets, for comparison (resolved as the server resolves them). */
function ruleKey(r: AlertRule): string {
  const { id: _id, created_at: _c, updated_at: _u, enabled: _e, ...rest } = r;
  return canonical(rest);
}

/** Alert rules by name: created when missing, patched when they differ; `--notify` sets the notifying rules' targets. */
async function provisionRules(
  api: Api,
  t: DemoTenant,
  pack: Pack,
  notify: string | undefined,
  say: Say,
): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  const { rules } = await api.expect<{
    rules: Array<{ rule: AlertRule & { created_at: string; updated_at: string } }>;
  }>("alert rules", "GET", "/v1/alerts/rules", t.read, undefined, [200]);
  const existing = new Map(rules.map((r) => [r.rule.name, r.rule]));
  for (const spec of pack.rules) {
    const step = `alert rule "${spec.rule.name}"`;
    const body = { ...spec.rule, ...(spec.notify && notify ? { targets: [notify] } : {}) };
    const have = existing.get(spec.rule.name);
    if (!have) {
      const made = await api.expect<{ rule: { id: string } }>(step, "POST", "/v1/alerts/rules", t.admin, body, [201]);
      ids.set(spec.rule.name, made.rule.id);
      say(`${step}: created${body.targets ? ` (webhook ${notify})` : ""}`, true);
      continue;
    }
    ids.set(spec.rule.name, have.id);
    const stored: AlertRule = { ...have, created_at: 0, updated_at: 0 };
    const wanted = validateRule(body, { id: have.id, now: 0, existing: stored }, true);
    if (ruleKey(wanted) === ruleKey(stored)) continue;
    await api.expect(step, "PATCH", `/v1/alerts/rules/${have.id}`, t.admin, body, [200]);
    say(`${step}: updated`, true);
  }
  return ids;
}

interface BoardView {
  id: string;
  name: string;
  description?: string;
  panels: Array<PanelSpec & { id: string }>;
  version: number;
}

/** JSON with sorted keys, so two objects compare equal whatever order the server keeps their keys in. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined && o[k] !== null)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

/** A board's panels as the API takes them: funnel panels carry their funnel's id (panels of a missing funnel are left out). */
function panelsOf(board: BoardSpec, funnels: Map<string, string> | null): PanelSpec[] {
  const out: PanelSpec[] = [];
  for (const p of board.panels) {
    if (p.kind !== "funnel") {
      out.push(p);
      continue;
    }
    const id = funnels?.get(p.funnel ?? "");
    if (id) out.push({ ...p, funnel: id });
  }
  return out;
}

/** A panel as the server stores it (width 1 and a funnel panel's 1 day filled in), for comparison. */
const panelKey = (p: PanelSpec) =>
  canonical({
    title: p.title,
    kind: p.kind,
    query: p.query,
    funnel: p.funnel,
    days: p.kind === "funnel" ? (p.days ?? 1) : undefined,
    width: p.width ?? 1,
  });

/** Boards by name: created when missing, replaced (PUT, keeping panel ids by title) when their panels differ. Null: no boards API. */
async function provisionBoards(
  api: Api,
  t: DemoTenant,
  pack: Pack,
  funnels: Map<string, string> | null,
  say: Say,
): Promise<Array<{ name: string; id: string }> | null> {
  const list = await api.request("boards", "GET", "/v1/boards", t.read);
  if (noRoute(list)) return null;
  if (list.status !== 200) throw api.failure("boards", "GET", "/v1/boards", list);
  const existing = new Map(
    (list.body as { boards: Array<{ id: string; name: string }> }).boards.map((b) => [b.name, b]),
  );
  const out: Array<{ name: string; id: string }> = [];
  for (const spec of pack.boards) {
    const step = `board "${spec.name}"`;
    const panels = panelsOf(spec, funnels);
    const summary = existing.get(spec.name);
    if (!summary) {
      const body = { name: spec.name, description: spec.description, panels };
      const made = await api.expect<{ board: BoardView }>(step, "POST", "/v1/boards", t.admin, body, [201]);
      out.push({ name: spec.name, id: made.board.id });
      say(`${step}: created (${panels.length} panels)`, true);
      continue;
    }
    const { board } = await api.expect<{ board: BoardView }>(
      step,
      "GET",
      `/v1/boards/${summary.id}`,
      t.read,
      undefined,
      [200],
    );
    out.push({ name: spec.name, id: board.id });
    const same =
      (board.description ?? "") === spec.description &&
      board.panels.length === panels.length &&
      board.panels.every((p, i) => panelKey(p) === panelKey(panels[i]));
    if (same) continue;
    const idByTitle = new Map(board.panels.map((p) => [p.title, p.id]));
    const body = {
      name: spec.name,
      description: spec.description,
      panels: panels.map((p) => (idByTitle.has(p.title) ? { id: idByTitle.get(p.title), ...p } : p)),
      version: board.version,
    };
    await api.expect(step, "PUT", `/v1/boards/${board.id}`, t.admin, body, [200]);
    say(`${step}: updated (${panels.length} panels)`, true);
  }
  return out;
}

/** Sets the whole pack up: tenant, catalog, stream configurations, funnels, alert rules, boards. */
export async function provision(pack: Pack, opts: ProvisionOptions): Promise<ProvisionResult> {
  const log = opts.log ?? (() => {});
  const changes: string[] = [];
  const say: Say = (line, changed = false) => {
    log(line);
    if (changed) changes.push(line);
  };
  const api = new Api(opts.url.replace(/\/+$/, ""));
  const tenant = await ensureTenant(api, pack, opts, say);
  const notes: string[] = [];
  await provisionCatalog(api, tenant, pack, say);
  await provisionStreams(api, tenant, pack, say);
  const funnels = await provisionFunnels(api, tenant, pack.funnels, say);
  if (funnels === null) {
    notes.push("this server has no funnels API (GET /v1/funnels is not a route): funnels and funnel panels left out");
  }
  const rules = await provisionRules(api, tenant, pack, opts.notify, say);
  const boards = await provisionBoards(api, tenant, pack, funnels, say);
  if (boards === null) notes.push("this server has no boards API (GET /v1/boards is not a route): boards left out");
  return { tenant, funnels: funnels ?? new Map(), boards: boards ?? [], rules, notes, changes };
}
