/**
 * A mobile shopping app: users open it, move between screens, search, view and favorite products and
 * sometimes buy. Users and products live in the catalog, and the catalog changes while the traffic
 * runs: every CHANGE_EVERY events the generator adds a user or renames or reprices a product through
 * /v1/catalog/..., and boards labelled from the catalog show the new names at once.
 */
import {
  between,
  type CatalogChange,
  COUNTRIES,
  cents,
  chance,
  FIRST_NAMES,
  LAST_NAMES,
  lognormal,
  namePair,
  type Pack,
  type PackEvent,
  pick,
  type Rng,
  type Traffic,
  timeline,
  traitsOf,
  weighted,
  zipf,
} from "./pack";

/** The catalog's products, most popular first. */
export const APP_PRODUCTS = [
  { id: "p-01", name: "Cast Iron Skillet", category: "Kitchen", price: 45 },
  { id: "p-14", name: "Robot Vacuum", category: "Appliances", price: 399 },
  { id: "p-11", name: "Monstera Plant", category: "Garden", price: 32 },
  { id: "p-04", name: "French Press", category: "Kitchen", price: 35 },
  { id: "p-07", name: "Weighted Blanket", category: "Bedroom", price: 149 },
  { id: "p-16", name: "Electric Kettle", category: "Appliances", price: 49 },
  { id: "p-02", name: "Chef's Knife 20 cm", category: "Kitchen", price: 89 },
  { id: "p-08", name: "Reading Lamp", category: "Living", price: 59 },
  { id: "p-17", name: "Bath Towel Set", category: "Bath", price: 54 },
  { id: "p-12", name: "Herb Planter", category: "Garden", price: 28 },
  { id: "p-06", name: "Linen Bed Set", category: "Bedroom", price: 129 },
  { id: "p-15", name: "Air Purifier", category: "Appliances", price: 219 },
  { id: "p-03", name: "Bamboo Cutting Board", category: "Kitchen", price: 24 },
  { id: "p-10", name: "Floor Cushion", category: "Living", price: 39 },
  { id: "p-09", name: "Wool Rug 160×230", category: "Living", price: 279 },
  { id: "p-18", name: "Shower Caddy", category: "Bath", price: 22 },
  { id: "p-13", name: "Garden Hose 25 m", category: "Garden", price: 42 },
  { id: "p-05", name: "Stand Mixer", category: "Kitchen", price: 349 },
] as const;

/** Names of the users the generator adds during a run (a separate list, so they never clash with the catalog's). */
const NEW_FIRST = ["Alba", "Bruno", "Cleo", "Dario", "Elif", "Filip", "Gaia", "Henrik", "Iris", "Jonah"];
const NEW_LAST = ["Nilsen", "Oliveira", "Petrov", "Quist", "Romero", "Sato", "Toth", "Ueda", "Varga", "Weber"];

const PLANS = weighted([
  ["free", 7],
  ["plus", 2],
  ["pro", 1],
] as const);
const PLATFORMS = weighted([
  ["ios", 5],
  ["android", 4],
  ["web", 1],
] as const);
const VERSIONS = { ios: ["5.2.0", "5.1.3"], android: ["5.2.0", "5.1.3", "5.0.9"], web: ["web"] } as const;

interface AppUser {
  id: string;
  first_name: string;
  last_name: string;
  plan: string;
  country: string;
}

/**
 * A user's traits, from its own PRNG (traitsOf): plan and country (catalog attributes), whether they look
 * at products at all, and whether they ever buy (more on paid plans). The same on every run.
 */
function userTraits(n: number) {
  const t = traitsOf(n);
  const plan = PLANS(t);
  const country = COUNTRIES(t);
  const browses = t() < 0.85;
  const buys = t() < (plan === "free" ? 0.15 : plan === "plus" ? 0.35 : 0.5);
  return { plan, country, browses, buys };
}

const userAttributes = (n: number): Pick<AppUser, "plan" | "country"> => {
  const { plan, country } = userTraits(n);
  return { plan, country };
};

const userId = (n: number) => `u-${String(n).padStart(4, "0")}`;

/** The catalog's users: 1200 (every first and last name pair once). */
export const APP_USERS: AppUser[] = Array.from({ length: FIRST_NAMES.length * LAST_NAMES.length }, (_, i) => ({
  id: userId(i + 1),
  ...namePair(i),
  ...userAttributes(i + 1),
}));

/** Catalog changes: one every this many events, cycling through these kinds. */
export const CHANGE_EVERY = 1500;
const CHANGE_CYCLE = ["new-user", "reprice", "new-user", "rename"] as const;
/** Users one run adds at most (the user pool is bounded by APP_USERS + this). */
export const MAX_NEW_USERS = NEW_FIRST.length * NEW_LAST.length;
const RENAMES = ["Pro", "Plus", "2", "Max"] as const;

const SCREENS = weighted([
  ["home", 5],
  ["search", 3],
  ["product", 4],
  ["favorites", 1],
  ["cart", 1],
  ["profile", 1],
  ["settings", 0.3],
] as const);

/** Some users are more active than others, mildly: the busiest stays far below the funnels' per-user bound. */
const activity = zipf(APP_USERS, 0.2);

/** The generator: a session at a time, with the user pool and product prices it changes as it goes. */
function appTraffic(): Traffic {
  /** Users added during the run (at most MAX_NEW_USERS). */
  const newcomers: AppUser[] = [];
  const products = APP_PRODUCTS.map((p) => ({
    ...p,
    base: p.name as string,
    name: p.name as string,
    price: p.price as number,
  }));
  const popular = zipf(products, 0.9);
  const pending: CatalogChange[] = [];
  let sent = 0;
  let changes = 0;
  let added = 0;

  /** The next catalog change of the cycle. */
  const change = (rng: Rng): CatalogChange | null => {
    const kind = CHANGE_CYCLE[changes++ % CHANGE_CYCLE.length];
    if (kind === "new-user") {
      if (added >= MAX_NEW_USERS) return null;
      const n = APP_USERS.length + ++added;
      const k = added - 1;
      const user = {
        id: userId(n),
        first_name: NEW_FIRST[k % NEW_FIRST.length],
        last_name: NEW_LAST[Math.floor(k / NEW_FIRST.length)],
        ...userAttributes(n),
      };
      newcomers.push(user);
      return {
        op: "create",
        kind: "users",
        body: user,
        note: `new user ${user.first_name} ${user.last_name} (${user.id}, ${user.plan})`,
      };
    }
    const p = pick(rng, products);
    if (kind === "reprice") {
      const before = p.price;
      p.price = cents(APP_PRODUCTS.find((x) => x.id === p.id)!.price * (0.8 + 0.4 * rng()));
      return {
        op: "patch",
        kind: "products",
        id: p.id,
        body: { price: p.price },
        note: `${p.name} (${p.id}) repriced ${before} → ${p.price}`,
      };
    }
    const before = p.name;
    p.name = p.name === p.base ? `${p.base} ${pick(rng, RENAMES)}` : p.base;
    return {
      op: "patch",
      kind: "products",
      id: p.id,
      body: { name: p.name },
      note: `${before} (${p.id}) renamed to ${p.name}`,
    };
  };

  return {
    next(rng: Rng, now: number): PackEvent[] {
      // New users are keen: each has five times the sessions of a catalog user on average.
      const keen = (newcomers.length * 5) / APP_USERS.length;
      const user = chance(rng, keen) ? pick(rng, newcomers) : activity(rng);
      const { browses, buys } = userTraits(Number(user.id.slice(2)));
      const platform = PLATFORMS(rng);
      const base = { platform };
      const steps: Array<Omit<PackEvent, "ts">> = [
        {
          name: "app.open",
          value: lognormal(rng, 850, 0.5, 0),
          user: user.id,
          dims: {
            ...base,
            country: user.country,
            plan: user.plan,
            app_version: pick(rng, VERSIONS[platform]),
          },
        },
      ];
      const screens = between(rng, 2, 9);
      for (let i = 0; i < screens; i++) {
        const screen = i === 0 ? "home" : SCREENS(rng);
        steps.push({
          name: "screen.view",
          value: lognormal(rng, 9000, 0.9, 0),
          user: user.id,
          dims: { ...base, screen },
        });
        if (screen === "search") {
          const results = Math.max(0, Math.round(lognormal(rng, 14, 1.1, 0)) - 2);
          const bucket = results === 0 ? "0" : results <= 10 ? "1-10" : "11+";
          steps.push({ name: "search", value: results, user: user.id, dims: { ...base, results: bucket } });
        }
        if (browses && (screen === "product" || screen === "search")) {
          const p = popular(rng);
          const dims = { ...base, product: p.id, category: p.category };
          steps.push({ name: "product.view", value: lognormal(rng, 20, 0.8), user: user.id, dims });
          if (chance(rng, 0.12)) steps.push({ name: "product.favorite", user: user.id, dims });
          if (buys && chance(rng, 0.1)) {
            steps.push({
              name: "purchase",
              value: p.price,
              user: user.id,
              dims: { ...base, product: p.id, category: p.category, country: user.country, plan: user.plan },
            });
          }
        }
      }
      const times = timeline(rng, now, steps.length, 6000);
      const before = Math.floor(sent / CHANGE_EVERY);
      sent += steps.length;
      for (let i = before; i < Math.floor(sent / CHANGE_EVERY); i++) {
        const c = change(rng);
        if (c) pending.push(c);
      }
      return steps.map((s, i) => ({ ...s, ts: times[i] }));
    },
    catalogChanges: () => pending.splice(0),
  };
}

const perProduct = { product: "products" } as const;
const sessionStreams = { o: "app.open", s: "screen.view", q: "search" } as const;
const productStreams = { v: "product.view", f: "product.favorite", b: "purchase" } as const;

export const app: Pack = {
  name: "app",
  tenant: "demo app",
  description:
    "A mobile shopping app: sessions of screens, searches, product views, favorites and purchases from catalog users, with the catalog changing as it runs.",
  catalog: {
    users: APP_USERS.map((u) => ({ ...u })),
    products: APP_PRODUCTS.map((p) => ({ ...p })),
  },
  streams: [
    {
      name: "app.open",
      description: "A session started; value: the app's start-up time in ms.",
      dims: ["platform", "country", "plan", "app_version"],
      dimension_sets: [["platform", "app_version"]],
      user: true,
    },
    {
      name: "screen.view",
      description: "A screen was shown; value: ms spent on it.",
      dims: ["platform", "screen"],
      user: true,
    },
    {
      name: "search",
      description: "A search; value: how many results it found (dim results: 0, 1-10, 11+).",
      dims: ["platform", "results"],
      user: true,
    },
    {
      name: "product.view",
      description: "A product was viewed; value: seconds spent on it.",
      dims: ["platform", "product", "category"],
      user: true,
    },
    {
      name: "product.favorite",
      description: "A product was added to the user's favorites.",
      dims: ["platform", "product", "category"],
      user: true,
    },
    {
      name: "purchase",
      description: "A product was bought; value: its price at the time.",
      dims: ["platform", "product", "category", "country", "plan"],
      user: true,
    },
  ],
  funnels: [
    {
      name: "session to purchase",
      steps: [{ stream: "app.open" }, { stream: "product.view" }, { stream: "purchase" }],
      window: "1h",
      breakdown: "platform",
    },
  ],
  rules: [
    {
      rule: {
        name: "Slow app start",
        stream: "app.open",
        aggregate: "p95",
        window: "5m",
        comparator: ">",
        threshold: 2500,
        for: "2m",
        labels: { severity: "ticket", team: "mobile" },
      },
      notify: true,
    },
    {
      rule: {
        name: "Sessions dropped",
        stream: "app.open",
        aggregate: "rate",
        window: "5m",
        comparator: "<",
        threshold: 1,
        resolve_threshold: 2,
        for: "2m",
        labels: { severity: "page", team: "mobile" },
      },
      notify: true,
    },
    {
      rule: {
        name: "No purchases",
        stream: "purchase",
        kind: "no_data",
        no_data: "10m",
        labels: { severity: "ticket", team: "commerce" },
      },
    },
  ],
  boards: [
    {
      name: "User engagement",
      description: "Who uses the app, how often, and how busy it is right now.",
      panels: [
        {
          title: "Daily active users",
          kind: "number",
          query: { stream: "app.open", measures: ["distinct_users"], range: { last: "1d" } },
        },
        {
          title: "Sessions per user (24 h)",
          kind: "number",
          query: {
            stream: "app.open",
            measures: [{ name: "sessions_per_user", expr: "count / distinct_users" }],
            range: { last: "24h" },
          },
        },
        {
          title: "Active users per day",
          kind: "timeseries",
          width: 2,
          query: { stream: "app.open", measures: ["distinct_users", "count"], step: "1d", range: { last: "30d" } },
        },
        {
          title: "Session events per minute",
          kind: "timeseries",
          query: {
            streams: sessionStreams,
            measures: [
              { name: "events", expr: "o.count + s.count + q.count" },
              { name: "opens", expr: "o.count" },
              { name: "screens", expr: "s.count" },
              { name: "searches", expr: "q.count" },
            ],
            step: "1m",
            range: { last: "1h" },
          },
        },
        {
          title: "Product events per minute",
          kind: "timeseries",
          query: {
            streams: productStreams,
            measures: [
              { name: "events", expr: "v.count + f.count + b.count" },
              { name: "views", expr: "v.count" },
              { name: "favorites", expr: "f.count" },
              { name: "purchases", expr: "b.count" },
            ],
            step: "1m",
            range: { last: "1h" },
          },
        },
        { title: "Session to purchase", kind: "funnel", funnel: "session to purchase", days: 1, width: 2 },
        {
          title: "Active users by plan",
          kind: "bars",
          query: { stream: "app.open", measures: ["distinct_users"], group_by: ["plan"], range: { last: "24h" } },
        },
        {
          title: "Sessions by platform and version",
          kind: "table",
          query: {
            stream: "app.open",
            measures: ["count", "distinct_users", "p95"],
            group_by: ["platform", "app_version"],
            order_by: { measure: "count", dir: "desc" },
            range: { last: "24h" },
          },
        },
      ],
    },
    {
      name: "Popular products",
      description: "What users look at, keep and buy (names from the catalog, as they are now).",
      panels: [
        {
          title: "Most viewed products",
          kind: "bars",
          query: {
            stream: "product.view",
            measures: ["count"],
            group_by: ["product"],
            labels: perProduct,
            order_by: { measure: "count", dir: "desc" },
            limit: 10,
            range: { last: "24h" },
          },
        },
        {
          title: "Most favorited products",
          kind: "bars",
          query: {
            stream: "product.favorite",
            measures: ["count"],
            group_by: ["product"],
            labels: perProduct,
            order_by: { measure: "count", dir: "desc" },
            limit: 10,
            range: { last: "24h" },
          },
        },
        {
          title: "Favorites per view",
          kind: "table",
          query: {
            streams: { v: "product.view", f: "product.favorite" },
            measures: [
              { name: "favorite_rate", expr: "f.count / v.count" },
              { name: "views", expr: "v.count" },
            ],
            group_by: ["product"],
            labels: perProduct,
            order_by: { measure: "views", dir: "desc" },
            limit: 20,
            range: { last: "24h" },
          },
        },
        {
          title: "Revenue by product",
          kind: "table",
          query: {
            stream: "purchase",
            measures: ["sum", "count"],
            group_by: ["product"],
            labels: perProduct,
            order_by: { measure: "sum", dir: "desc" },
            limit: 20,
            range: { last: "24h" },
          },
        },
        {
          title: "Revenue by category",
          kind: "bars",
          query: {
            stream: "purchase",
            measures: ["sum", "count"],
            group_by: ["product"],
            attributes: { product: "products.category" },
            order_by: { measure: "sum", dir: "desc" },
            range: { last: "24h" },
          },
        },
        {
          title: "Revenue by plan",
          kind: "bars",
          query: { stream: "purchase", measures: ["sum"], group_by: ["plan"], range: { last: "24h" } },
        },
      ],
    },
    {
      name: "Event frequencies",
      description: "How often each kind of event arrives, per hour.",
      panels: [
        {
          title: "Sessions, screens and searches per hour",
          kind: "table",
          width: 2,
          query: {
            streams: sessionStreams,
            measures: [
              { name: "app_open", expr: "o.count" },
              { name: "screen_view", expr: "s.count" },
              { name: "search", expr: "q.count" },
            ],
            step: "1h",
            range: { last: "24h" },
          },
        },
        {
          title: "Product views, favorites and purchases per hour",
          kind: "table",
          width: 2,
          query: {
            streams: productStreams,
            measures: [
              { name: "product_view", expr: "v.count" },
              { name: "product_favorite", expr: "f.count" },
              { name: "purchase", expr: "b.count" },
            ],
            step: "1h",
            range: { last: "24h" },
          },
        },
      ],
    },
  ],
  traffic: appTraffic,
};
