/**
 * A solution pack: everything `npm run demo -- <pack>` sets up in a tenant (catalog entities, stream
 * configurations, funnels, alert rules, boards) and the traffic it then sends. Packs are plain data plus
 * a traffic generator; tools/packs/provision.ts creates them through the public HTTP API and
 * tools/demo.ts runs them.
 *
 * Traffic is reproducible: a generator draws every choice from the seeded PRNG it is given
 * (core/random.ts) and stamps its events from the `now` it is given, so one seed and one clock give the
 * same events.
 */
import type { z } from "zod";
import type { RuleBodyInput } from "../../core/alerts";
import type { CatalogKind, CourseCreate, ProductCreate, UserCreate } from "../../core/catalog";
import type { FilterOp } from "../../core/measures";
import type { QueryInput } from "../../core/query";
import { seededRandom } from "../../core/random";

/** A PRNG's draw: uniform in [0, 1). */
export type Rng = () => number;

/** An event as POST /v1/events takes it. */
export interface PackEvent {
  name: string;
  ts: number;
  value?: number;
  user?: string;
  dims?: Record<string, string>;
}

/** A stream the pack sends: its dim keys (what the docs and the tests check events against) and dimension sets. */
export interface PackStream {
  name: string;
  /** What one event of it means. */
  description: string;
  /** The dim keys its events carry. */
  dims: string[];
  /** Declared with PUT /v1/streams/:name/config (keys aggregated jointly), when the boards group by two keys. */
  dimension_sets?: string[][];
  /** Whether its events carry a user. */
  user: boolean;
}

/** A funnel as POST /v1/funnels takes it. */
export interface FunnelSpec {
  name: string;
  steps: Array<{ stream: string; filters?: Array<{ dim: string; op: FilterOp; value: string }> }>;
  window: string;
  breakdown?: string;
}

/** An alert rule as POST /v1/alerts/rules takes it; `notify` rules post to the `--notify` receiver when one is given. */
export interface RuleSpec {
  rule: RuleBodyInput & { name: string; stream: string };
  notify?: boolean;
}

/** A board panel; a funnel panel names its funnel by name (provisioning puts the funnel's id in its place). */
export interface PanelSpec {
  title: string;
  kind: "timeseries" | "bars" | "table" | "number" | "funnel";
  query?: QueryInput;
  funnel?: string;
  days?: number;
  width?: 1 | 2;
}

export interface BoardSpec {
  name: string;
  description: string;
  panels: PanelSpec[];
}

/** A catalog change a generator makes while it runs (through the catalog API, before the events that follow). */
export type CatalogChange =
  | { op: "create"; kind: CatalogKind; body: { id: string } & Record<string, string | number>; note: string }
  | { op: "patch"; kind: CatalogKind; id: string; body: Record<string, string | number>; note: string };

export interface Traffic {
  /** One visit's (one session's, one learner's) events, the last one stamped `now`, in time order. */
  next(rng: Rng, now: number): PackEvent[];
  /** Catalog changes due since it was last asked (the app pack's users and products change during a run). */
  catalogChanges?(): CatalogChange[];
}

export interface PackCatalog {
  products?: Array<z.input<typeof ProductCreate>>;
  users?: Array<z.input<typeof UserCreate>>;
  courses?: Array<z.input<typeof CourseCreate>>;
}

export interface Pack {
  name: string;
  /** The demo tenant's name. */
  tenant: string;
  description: string;
  catalog: PackCatalog;
  streams: PackStream[];
  funnels: FunnelSpec[];
  rules: RuleSpec[];
  boards: BoardSpec[];
  /** A fresh generator (with its own state: the app pack's new users join its pool). */
  traffic(): Traffic;
}

// ---------------------------------------------------------------------------
// Samplers shared by the generators, on top of the seeded PRNG.
// ---------------------------------------------------------------------------

/**
 * An entity's own PRNG (a visitor's, a learner's): its traits (country, whether it ever buys) are drawn
 * from it, so they are the same on every visit and every run, whatever the traffic's seed. Funnels then
 * show shares of people, not of visits, however often the same people come back.
 */
export const traitsOf = (n: number): Rng => seededRandom(Math.imul(n + 1, 0x9e3779b1));

/** A lognormal draw (Box–Muller) around `median`; sigma is the spread of its logarithm. Rounded to `decimals`. */
export function lognormal(rng: Rng, median: number, sigma: number, decimals = 1): number {
  const u = rng() || 1e-9;
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
  const f = 10 ** decimals;
  return Math.round(median * Math.exp(sigma * z) * f) / f;
}

/** A normal draw, clamped to [lo, hi]. */
export function normal(rng: Rng, mean: number, sd: number, lo: number, hi: number): number {
  const u = rng() || 1e-9;
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
  return Math.min(hi, Math.max(lo, mean + sd * z));
}

export const chance = (rng: Rng, p: number): boolean => rng() < p;

export const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)];

/** An integer in [lo, hi]. */
export const between = (rng: Rng, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));

/** A draw from weighted items (weights need not add up to 1). */
export function weighted<T>(items: ReadonlyArray<readonly [T, number]>): (rng: Rng) => T {
  const cdf: number[] = [];
  let total = 0;
  for (const [, w] of items) {
    total += w;
    cdf.push(total);
  }
  return (rng) => {
    const u = rng() * total;
    let i = 0;
    while (i < cdf.length - 1 && cdf[i] <= u) i++;
    return items[i][0];
  };
}

/** Popularity by rank: the i-th item weighs 1 / (i + 1)^s (a few items get most of the traffic). */
export const zipf = <T>(items: readonly T[], s = 1.1): ((rng: Rng) => T) =>
  weighted(items.map((x, i) => [x, 1 / (i + 1) ** s] as const));

/** Countries of visitors, skewed as in a European shop's traffic. */
export const COUNTRIES = weighted([
  ["DE", 24],
  ["US", 18],
  ["FR", 12],
  ["GB", 11],
  ["NL", 7],
  ["ES", 6],
  ["SE", 5],
  ["JP", 5],
  ["BR", 4],
  ["IN", 4],
  ["PL", 4],
] as const);

/**
 * The longest a visit (a session, a learner's path) spans: well inside the funnels' horizon
 * (FUNNEL_LATENESS_MS, 5 minutes by default), past which a step event can no longer move a journey.
 */
export const MAX_VISIT_SPAN_MS = 120_000;

/**
 * Stamps a sequence of steps: each follows the previous after a lognormal pause around `gapMs` (capped
 * at `maxGapMs`; all pauses shrunk alike when they would span more than MAX_VISIT_SPAN_MS), and the last
 * is at `now`. Returns one time per step.
 */
export function timeline(rng: Rng, now: number, steps: number, gapMs: number, maxGapMs = gapMs * 6): number[] {
  const gaps = Array.from({ length: Math.max(0, steps - 1) }, () =>
    Math.min(maxGapMs, Math.max(50, Math.round(lognormal(rng, gapMs, 0.7, 0)))),
  );
  const span = gaps.reduce((a, b) => a + b, 0);
  const shrink = span > MAX_VISIT_SPAN_MS ? MAX_VISIT_SPAN_MS / span : 1;
  const out: number[] = [now];
  for (let i = gaps.length - 1; i >= 0; i--) out.unshift(out[0] - Math.floor(gaps[i] * shrink));
  return out;
}

/** First and last names of the packs' catalog users (40 × 30 pairs, each once per pack). */
export const FIRST_NAMES = [
  "Anna",
  "Ben",
  "Chloé",
  "David",
  "Emma",
  "Felix",
  "Greta",
  "Hugo",
  "Ines",
  "Jan",
  "Kira",
  "Lukas",
  "Mia",
  "Noah",
  "Olivia",
  "Paul",
  "Quinn",
  "Rosa",
  "Sam",
  "Tara",
  "Umar",
  "Vera",
  "Will",
  "Yara",
  "Zoe",
  "Aiko",
  "Bilal",
  "Carmen",
  "Dmitri",
  "Elena",
  "Farah",
  "Gustav",
  "Hana",
  "Igor",
  "Julia",
  "Kwame",
  "Lina",
  "Mateo",
  "Nora",
  "Oskar",
] as const;
export const LAST_NAMES = [
  "Schmidt",
  "Dubois",
  "Rossi",
  "Nowak",
  "García",
  "Jensen",
  "Silva",
  "Tanaka",
  "Okafor",
  "Murphy",
  "Becker",
  "Costa",
  "Diaz",
  "Eriksen",
  "Fischer",
  "Horvat",
  "Ivanova",
  "Kowalski",
  "Lang",
  "Moreau",
  "Novak",
  "Olsen",
  "Petit",
  "Quintero",
  "Richter",
  "Santos",
  "Takahashi",
  "Urban",
  "Virtanen",
  "Yilmaz",
] as const;

/** The i-th name pair (0 ≤ i < FIRST_NAMES × LAST_NAMES): every pair once. */
export const namePair = (i: number) => ({
  first_name: FIRST_NAMES[i % FIRST_NAMES.length],
  last_name: LAST_NAMES[Math.floor(i / FIRST_NAMES.length) % LAST_NAMES.length],
});

/** Rounds a price to the cent. */
export const cents = (x: number): number => Math.round(x * 100) / 100;
