/**
 * The solution packs (tools/packs/), without a server: their traffic is reproducible from a seed and
 * every event is one the collector accepts, on the pack's own streams and dims; every board query is
 * one POST /v1/query accepts and can answer from the dims and dimension sets the pack declares; funnels,
 * alert rules and catalog entities are well-formed, the funnels convert on the generated traffic, and
 * the catalog holds every entity the traffic names (the app pack's catalog changes included).
 */
import { describe, expect, it } from "vitest";
import { validateRule } from "../../core/alerts";
import { BoardCreate } from "../../core/boards";
import { type CatalogKind, CREATE_SCHEMAS, PATCH_SCHEMAS, uniqueKeyOf } from "../../core/catalog";
import { validateEvent } from "../../core/event";
import { EventSchema } from "../../core/event-schema";
import {
  FUNNEL_MAX_USER_EVENTS,
  FunnelCreate,
  type FunnelDef,
  type FunnelItem,
  journeysOf,
  type LogEntry,
  parseFunnel,
  tapEvent,
  tapsFor,
} from "../../core/funnels";
import { chooseSource, type DimensionInfo, parseQuery } from "../../core/query";
import { seededRandom } from "../../core/random";
import { APP_PRODUCTS, APP_USERS, CHANGE_EVERY } from "../../tools/packs/app";
import { PACKS } from "../../tools/packs/index";
import type { CatalogChange, FunnelSpec, Pack, PackEvent } from "../../tools/packs/pack";
import { INCIDENT, inIncident } from "../../tools/packs/shop";
import { generate } from "../../tools/packs/traffic";

const NOW = Date.UTC(2026, 10, 24, 12, 5, 0);
/** A clock that moves 40 ms per visit, from NOW (outside the shop's payment incident). */
const clock = (start = NOW) => {
  let t = start;
  return () => {
    t += 40;
    return t;
  };
};
const packs = Object.values(PACKS);
/** Enough events for every stream of every pack to appear (the courses' school events are the rarest). */
const SAMPLE = 40_000;
const samples = new Map(packs.map((p) => [p.name, generate(p, 7, SAMPLE, clock())]));
const sample = (p: Pack) => samples.get(p.name) as PackEvent[];

/** The dims the planner would see for a stream of the pack: each dim key alone, and the declared sets. */
function dimensionsOf(p: Pack, stream: string): DimensionInfo[] {
  const s = p.streams.find((x) => x.name === stream);
  if (!s) return [];
  return [
    ...s.dims.map((k) => ({ name: k, keys: [k] })),
    ...(s.dimension_sets ?? []).map((keys) => ({ name: keys.join("+"), keys })),
  ];
}

/**
 * Journeys through a funnel by the funnels' own rule (core/funnels.ts: taps, then journeysOf per user),
 * journeys per step; and the most step events one user has in the sample (the funnel actors keep at most
 * FUNNEL_MAX_USER_EVENTS per user within their horizon).
 */
function journeys(spec: FunnelSpec, events: PackEvent[]): { reached: number[]; busiest: number } {
  const def: FunnelDef = { ...parseFunnel(FunnelCreate.parse(spec)), id: "f_test", created_at: NOW };
  const byUser = new Map<string, LogEntry[]>();
  for (const e of events) {
    const items: FunnelItem[] = [];
    tapEvent(tapsFor(e.name, [def]), { ts: e.ts, user: e.user, dims: e.dims }, items);
    for (const it of items) byUser.set(it.u, [...(byUser.get(it.u) ?? []), [it.t, it.s, it.b ?? null]]);
  }
  const reached = def.steps.map(() => 0);
  let busiest = 0;
  for (const log of byUser.values()) {
    busiest = Math.max(busiest, log.length);
    log.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    for (const j of journeysOf(log, def.window_ms)) for (let i = 0; i <= j.reached; i++) reached[i]++;
  }
  return { reached, busiest };
}

describe.each(packs)("the $name pack", (pack) => {
  it("sends the same traffic for the same seed, and other traffic for another", () => {
    const a = generate(pack, 42, 3000, clock());
    expect(generate(pack, 42, 3000, clock())).toEqual(a);
    expect(a).toHaveLength(3000);
    const b = generate(pack, 43, 3000, clock());
    expect(b.map((e) => e.user)).not.toEqual(a.map((e) => e.user));
  });

  it("stamps each visit's events in order, the last at the clock's time", () => {
    const rng = seededRandom(5);
    const traffic = pack.traffic();
    for (let i = 0; i < 500; i++) {
      const now = NOW + i * 1000;
      const visit = traffic.next(rng, now);
      expect(visit.length).toBeGreaterThan(0);
      expect(visit.at(-1)?.ts).toBe(now);
      for (let j = 1; j < visit.length; j++) expect(visit[j].ts).toBeGreaterThanOrEqual(visit[j - 1].ts);
      // Within the collector's lateness (1 h) by far.
      expect(now - visit[0].ts).toBeLessThan(15 * 60_000);
    }
  });

  it("generates only events the collector accepts, on the pack's streams with their dims", () => {
    const streams = new Map(pack.streams.map((s) => [s.name, s]));
    for (const e of sample(pack)) {
      const v = validateEvent(e, NOW);
      expect(v.ok, JSON.stringify(e)).toBe(true);
      expect(EventSchema.safeParse(e).success, JSON.stringify(e)).toBe(true);
      const s = streams.get(e.name);
      expect(s, `${e.name} is not one of the pack's streams`).toBeDefined();
      expect(Object.keys(e.dims ?? {}).filter((k) => !s?.dims.includes(k))).toEqual([]);
      expect(e.user !== undefined, `${e.name} user`).toBe(s?.user);
    }
    // Every declared stream is sent, and every declared dim key is carried.
    const seen = new Map<string, Set<string>>();
    for (const e of sample(pack)) {
      const keys = seen.get(e.name) ?? new Set<string>();
      for (const k of Object.keys(e.dims ?? {})) keys.add(k);
      seen.set(e.name, keys);
    }
    for (const s of pack.streams) expect([...(seen.get(s.name) ?? [])].sort(), s.name).toEqual([...s.dims].sort());
  });

  it("names only catalog entities in the dims its boards label", () => {
    const created = new Set<string>();
    const traffic = pack.traffic();
    const rng = seededRandom(7);
    const tick = clock();
    const events: PackEvent[] = [];
    while (events.length < SAMPLE) {
      events.push(...traffic.next(rng, tick()));
      for (const c of traffic.catalogChanges?.() ?? []) if (c.op === "create") created.add(`${c.kind}/${c.body.id}`);
    }
    const kindOfKey: Record<string, CatalogKind> = {};
    for (const b of pack.boards)
      for (const p of b.panels) {
        Object.assign(kindOfKey, p.query?.labels ?? {});
        for (const [key, attr] of Object.entries(p.query?.attributes ?? {}))
          kindOfKey[key] = attr.split(".")[0] as CatalogKind;
      }
    expect(Object.keys(kindOfKey).length).toBeGreaterThan(0);
    const ids = (kind: CatalogKind) => new Set((pack.catalog[kind] ?? []).map((x) => x.id));
    for (const e of events) {
      for (const [key, kind] of Object.entries(kindOfKey)) {
        const id = e.dims?.[key];
        if (id === undefined) continue;
        expect(ids(kind).has(id) || created.has(`${kind}/${id}`), `${e.name} ${key}=${id}`).toBe(true);
      }
    }
  });

  it("has catalog entities the catalog API accepts, each id and name once", () => {
    for (const [kind, list] of Object.entries(pack.catalog) as Array<[CatalogKind, Array<{ id: string }>]>) {
      for (const entity of list) expect(CREATE_SCHEMAS[kind].safeParse(entity).success, entity.id).toBe(true);
      expect(new Set(list.map((x) => x.id)).size).toBe(list.length);
      const keys = list.map((x) => uniqueKeyOf(kind, CREATE_SCHEMAS[kind].parse(x) as Record<string, string | number>));
      expect(new Set(keys).size).toBe(list.length);
    }
  });

  it("has board queries that POST /v1/query accepts and can answer from the declared dims", () => {
    const streams = new Set(pack.streams.map((s) => s.name));
    const funnels = new Set(pack.funnels.map((f) => f.name));
    expect(pack.boards.length).toBeGreaterThan(0);
    expect(new Set(pack.boards.map((b) => b.name)).size).toBe(pack.boards.length);
    for (const board of pack.boards) {
      expect(board.panels.length).toBeGreaterThan(0);
      // The boards API takes it as it is once funnel panels carry their funnel's id.
      const panels = board.panels.map((p) => (p.kind === "funnel" ? { ...p, funnel: "f_test" } : p));
      const parsed = BoardCreate.safeParse({ name: board.name, description: board.description, panels });
      expect(parsed.error?.issues, board.name).toBeUndefined();
      for (const panel of board.panels) {
        const where = `${board.name} / ${panel.title}`;
        if (panel.kind === "funnel") {
          expect(funnels.has(panel.funnel ?? ""), where).toBe(true);
          continue;
        }
        const q = parseQuery(panel.query, NOW);
        for (const s of q.streams) {
          expect(streams.has(s.stream), `${where}: ${s.stream}`).toBe(true);
          // The planner finds rows for every group-by and filter key (a set for two keys together).
          if (q.groupBy.length || q.filters.length)
            expect(() => chooseSource(q, dimensionsOf(pack, s.stream), s.stream)).not.toThrow();
        }
        for (const l of [...q.labels, ...q.attributes])
          expect(pack.catalog[l.kind]?.length, `${where}: ${l.kind}`).toBeGreaterThan(0);
        // A number panel shows one figure: no groups, no steps.
        if (panel.kind === "number") expect([q.groupBy.length, q.step], where).toEqual([0, null]);
        if (panel.kind === "timeseries") expect(q.step, where).not.toBeNull();
      }
    }
  });

  it("has funnels the funnels API accepts, on user streams and dims it sends, that convert on its traffic", () => {
    const streams = new Map(pack.streams.map((s) => [s.name, s]));
    expect(pack.funnels.length).toBeGreaterThan(0);
    expect(new Set(pack.funnels.map((f) => f.name)).size).toBe(pack.funnels.length);
    for (const f of pack.funnels) {
      expect(() => parseFunnel(FunnelCreate.parse(f)), f.name).not.toThrow();
      for (const step of f.steps) {
        const s = streams.get(step.stream);
        expect(s?.user, `${f.name}: ${step.stream} carries users`).toBe(true);
        for (const x of step.filters ?? []) expect(s?.dims).toContain(x.dim);
      }
      if (f.breakdown) expect(streams.get(f.steps[0].stream)?.dims).toContain(f.breakdown);
      // About five minutes of traffic at about the default rate: every step is reached, fewer at each step,
      // and no user comes near the funnel actors' bound on kept events per user.
      const { reached, busiest } = journeys(f, sample(pack));
      for (let i = 1; i < reached.length; i++) expect(reached[i]).toBeLessThanOrEqual(reached[i - 1]);
      expect(reached.at(-1), `${f.name}: ${reached.join(" → ")}`).toBeGreaterThan(0);
      expect(reached.at(-1)).toBeLessThan(reached[0] * 0.9);
      expect(busiest).toBeLessThan(FUNNEL_MAX_USER_EVENTS / 2);
    }
  });

  it("has alert rules the rules API accepts, on its streams, with local webhooks for the notifying ones", () => {
    const streams = new Set(pack.streams.map((s) => s.name));
    expect(new Set(pack.rules.map((r) => r.rule.name)).size).toBe(pack.rules.length);
    for (const { rule, notify } of pack.rules) {
      expect(streams.has(rule.stream), rule.name).toBe(true);
      expect(() => validateRule(rule, { id: "rule_x", now: NOW }, false)).not.toThrow();
      if (notify) {
        const withTarget = { ...rule, targets: ["http://127.0.0.1:8790/"] };
        expect(validateRule(withTarget, { id: "rule_x", now: NOW }, true).targets).toEqual(withTarget.targets);
      }
    }
    expect(pack.rules.some((r) => r.notify)).toBe(true);
  });
});

describe("the app pack's live catalog", () => {
  it("adds users and renames and reprices products as it runs, with bodies the catalog API accepts", () => {
    const traffic = PACKS.app.traffic();
    const rng = seededRandom(11);
    const tick = clock();
    const changes: CatalogChange[] = [];
    const events: PackEvent[] = [];
    // Purchases cost the product's price at the time: the catalog's, then the last reprice's.
    const price = new Map<string, number>(APP_PRODUCTS.map((p) => [p.id, p.price]));
    let purchases = 0;
    while (events.length < CHANGE_EVERY * 8) {
      const visit = traffic.next(rng, tick());
      for (const e of visit.filter((x) => x.name === "purchase")) {
        expect(e.value).toBe(price.get(e.dims?.product ?? ""));
        purchases++;
      }
      events.push(...visit);
      const made = traffic.catalogChanges?.() ?? [];
      for (const c of made) if (c.op === "patch" && typeof c.body.price === "number") price.set(c.id, c.body.price);
      changes.push(...made);
    }
    expect(purchases).toBeGreaterThan(0);
    expect([...price].filter(([id, p]) => APP_PRODUCTS.find((x) => x.id === id)?.price !== p).length).toBeGreaterThan(
      0,
    );
    expect(changes.length).toBe(Math.floor(events.length / CHANGE_EVERY));
    const created = changes.filter((c) => c.op === "create");
    const patches = changes.filter((c) => c.op === "patch");
    expect(created.length).toBeGreaterThan(0);
    expect(patches.some((c) => "price" in c.body)).toBe(true);
    expect(patches.some((c) => "name" in c.body)).toBe(true);
    for (const c of created) {
      expect(CREATE_SCHEMAS[c.kind].safeParse(c.body).success).toBe(true);
      expect(APP_USERS.some((u) => u.id === c.body.id)).toBe(false);
    }
    for (const c of patches) expect(PATCH_SCHEMAS[c.kind].safeParse(c.body).success).toBe(true);
    // New users take part in the traffic.
    const newIds = new Set(created.map((c) => c.body.id));
    expect(events.some((e) => e.user !== undefined && newIds.has(e.user))).toBe(true);
  });
});

describe("the shop's payment incident", () => {
  it("makes most payments fail during the incident, few otherwise", () => {
    const failureShare = (start: number) => {
      const events = generate(PACKS.shop, 3, 20_000, () => start);
      const started = events.filter((e) => e.name === "checkout.started").length;
      return events.filter((e) => e.name === "payment.failed").length / started;
    };
    const incident = NOW - (NOW % INCIDENT.everyMs) + 1000;
    expect(inIncident(incident)).toBe(true);
    expect(inIncident(NOW + INCIDENT.lastsMs * 2)).toBe(false);
    expect(failureShare(incident)).toBeGreaterThan(0.45);
    expect(failureShare(NOW + INCIDENT.lastsMs * 2)).toBeLessThan(0.1);
  });
});
