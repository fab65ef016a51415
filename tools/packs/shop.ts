/**
 * The web shop: visitors land, browse products, add some to their cart, check out and pay (now and
 * then a payment fails, and every 20 minutes a 90-second payment incident makes most of them fail).
 * Products come from the catalog, so boards show their names.
 */
import {
  COUNTRIES,
  cents,
  chance,
  lognormal,
  type Pack,
  type PackEvent,
  pick,
  type Rng,
  timeline,
  traitsOf,
  weighted,
  zipf,
} from "./pack";

/** The catalog's products, most popular first (traffic picks them by rank). */
export const PRODUCTS = [
  { id: "sku-2003", name: "Organic Cotton Tee", category: "Apparel", price: 25 },
  { id: "sku-1002", name: "City Sneaker", category: "Shoes", price: 89 },
  { id: "sku-3003", name: "Insulated Bottle 750 ml", category: "Outdoor", price: 32 },
  { id: "sku-5001", name: "Wireless Earbuds", category: "Electronics", price: 129 },
  { id: "sku-1001", name: "Trail Runner GTX", category: "Shoes", price: 139 },
  { id: "sku-2002", name: "Rain Shell Jacket", category: "Apparel", price: 159 },
  { id: "sku-4003", name: "Ceramic Mug Set", category: "Home", price: 36 },
  { id: "sku-3005", name: "Daypack 22 L", category: "Outdoor", price: 99 },
  { id: "sku-2005", name: "Wool Beanie", category: "Apparel", price: 29 },
  { id: "sku-5002", name: "Solar Power Bank", category: "Electronics", price: 59 },
  { id: "sku-2001", name: "Merino Base Layer", category: "Apparel", price: 79 },
  { id: "sku-3004", name: "Headlamp 400", category: "Outdoor", price: 45 },
  { id: "sku-1004", name: "Recovery Slide", category: "Shoes", price: 39 },
  { id: "sku-4001", name: "Pour-Over Coffee Set", category: "Home", price: 54 },
  { id: "sku-5003", name: "GPS Sport Watch", category: "Electronics", price: 249 },
  { id: "sku-2004", name: "Down Vest", category: "Apparel", price: 119 },
  { id: "sku-3002", name: "Trekking Poles", category: "Outdoor", price: 69 },
  { id: "sku-4002", name: "Linen Throw", category: "Home", price: 69 },
  { id: "sku-1003", name: "Leather Chelsea Boot", category: "Shoes", price: 179 },
  { id: "sku-3001", name: "Ultralight Tent 2P", category: "Outdoor", price: 349 },
] as const;

type Product = (typeof PRODUCTS)[number];

/** The payment incident: the first 90 s of every 20 minutes (UTC), most payments fail. */
export const INCIDENT = { everyMs: 20 * 60_000, lastsMs: 90_000, failureRate: 0.6 } as const;
const NORMAL_FAILURE_RATE = 0.04;
export const inIncident = (now: number): boolean => now % INCIDENT.everyMs < INCIDENT.lastsMs;

/** Visitors (u_0 … u_19999); each has fixed traits (see traitsOf). */
const VISITORS = 20_000;
const popular = zipf(PRODUCTS, 0.9);
const landing = weighted([
  ["/", 6],
  ["/search", 3],
  ["/sale", 1],
] as const);
const payments = weighted([
  ["card", 6],
  ["paypal", 3],
  ["klarna", 1],
] as const);
const declines = weighted([
  ["insufficient_funds", 4],
  ["card_declined", 3],
  ["3ds_failed", 2],
  ["timeout", 1],
] as const);
const clicks = ["gallery", "reviews", "size-guide", "wishlist"] as const;

/** A visitor's traits: where they are, how they pay, whether they ever fill a cart and ever check out. */
function visitor(n: number) {
  const t = traitsOf(n);
  return { user: `u_${n}`, country: COUNTRIES(t), payment: payments(t), carts: t() < 0.45, buys: t() < 0.6 };
}

/** One visitor's visit: page views, product views and clicks, maybe a cart, maybe a checkout. */
function visit(rng: Rng, now: number): PackEvent[] {
  const { user, country, payment, carts, buys } = visitor(Math.floor(rng() * VISITORS));
  // What happens, in order, before it is stamped.
  const steps: Array<Omit<PackEvent, "ts">> = [];
  const page = (path: string) =>
    steps.push({ name: "page.view", value: lognormal(rng, 180, 0.6), user, dims: { country, page: path } });
  page(landing(rng));
  const seen: Product[] = [];
  const views = 1 + Math.min(7, Math.floor(lognormal(rng, 1.2, 0.8)));
  for (let i = 0; i < views; i++) {
    const p = popular(rng);
    seen.push(p);
    page("/product");
    const dims = { product: p.id, category: p.category, country };
    steps.push({ name: "product.view", value: lognormal(rng, 25, 0.8), user, dims });
    if (chance(rng, 0.35)) steps.push({ name: "product.click", user, dims: { ...dims, target: pick(rng, clicks) } });
  }
  const cart: Array<{ p: Product; amount: number }> = [];
  for (const p of new Set(seen)) {
    if (!carts || !chance(rng, 0.3)) continue;
    const amount = cents(p.price * (chance(rng, 0.1) ? 2 : 1));
    cart.push({ p, amount });
    steps.push({ name: "cart.add", value: amount, user, dims: { product: p.id, category: p.category, country } });
  }
  if (cart.length > 0 && buys && chance(rng, 0.7)) {
    const total = cents(cart.reduce((s, c) => s + c.amount, 0));
    page("/cart");
    page("/checkout");
    steps.push({ name: "checkout.started", value: total, user, dims: { country } });
    const failureRate = inIncident(now) ? INCIDENT.failureRate : NORMAL_FAILURE_RATE;
    let paid = !chance(rng, failureRate);
    if (!paid) {
      steps.push({ name: "payment.failed", value: total, user, dims: { country, payment, reason: declines(rng) } });
      paid = chance(rng, 0.5);
    }
    if (paid) {
      steps.push({ name: "checkout.completed", value: total, user, dims: { country, payment } });
      for (const c of cart) {
        steps.push({
          name: "purchase",
          value: c.amount,
          user,
          dims: { product: c.p.id, category: c.p.category, country },
        });
      }
    }
  }
  const times = timeline(rng, now, steps.length, 4000);
  return steps.map((s, i) => ({ ...s, ts: times[i] }));
}

const last24h = { last: "24h" } as const;
/** A checkout's value is the order's total: per step, revenue (charted) and orders. */
const revenueAndOrders = [
  { name: "revenue", expr: "sum" },
  { name: "orders", expr: "count" },
];

export const shop: Pack = {
  name: "shop",
  tenant: "demo shop",
  description:
    "A web shop: page views, product views and clicks, carts, checkouts and purchases by product, category and country.",
  catalog: { products: PRODUCTS.map((p) => ({ ...p })) },
  streams: [
    {
      name: "page.view",
      description: "A page was shown; value: its load time in ms.",
      dims: ["country", "page"],
      user: true,
    },
    {
      name: "product.view",
      description: "A product page was viewed; value: seconds spent on it.",
      dims: ["product", "category", "country"],
      dimension_sets: [["country", "category"]],
      user: true,
    },
    {
      name: "product.click",
      description: "A click on a product page (gallery, reviews, size guide, wishlist).",
      dims: ["product", "category", "country", "target"],
      user: true,
    },
    {
      name: "cart.add",
      description: "A product was added to the cart; value: price × quantity.",
      dims: ["product", "category", "country"],
      dimension_sets: [["country", "category"]],
      user: true,
    },
    {
      name: "checkout.started",
      description: "The checkout page was opened; value: the cart's total.",
      dims: ["country"],
      user: true,
    },
    {
      name: "payment.failed",
      description: "A payment was declined; value: the amount.",
      dims: ["country", "payment", "reason"],
      user: true,
    },
    {
      name: "checkout.completed",
      description: "An order was paid; value: the order's total.",
      dims: ["country", "payment"],
      user: true,
    },
    {
      name: "purchase",
      description: "One line of a paid order; value: its amount (price × quantity).",
      dims: ["product", "category", "country"],
      dimension_sets: [["country", "category"]],
      user: true,
    },
  ],
  funnels: [
    {
      name: "purchase",
      steps: [
        { stream: "product.view" },
        { stream: "cart.add" },
        { stream: "checkout.started" },
        { stream: "checkout.completed" },
      ],
      window: "1h",
      breakdown: "country",
    },
  ],
  rules: [
    {
      rule: {
        name: "Payment failures",
        stream: "payment.failed",
        aggregate: "rate",
        window: "1m",
        comparator: ">",
        threshold: 1,
        resolve_threshold: 0.5,
        for: "30s",
        labels: { severity: "page", team: "payments" },
      },
      notify: true,
    },
    {
      rule: {
        name: "No orders",
        stream: "checkout.completed",
        kind: "no_data",
        no_data: "5m",
        labels: { severity: "page", team: "shop" },
      },
      notify: true,
    },
    {
      rule: {
        name: "Slow pages",
        stream: "page.view",
        aggregate: "p95",
        window: "5m",
        comparator: ">",
        threshold: 1500,
        for: "2m",
        labels: { severity: "ticket", team: "web" },
      },
    },
  ],
  boards: [
    {
      name: "Shop overview",
      description: "Sales, the products that sell and the way from product page to paid order, over the last day.",
      panels: [
        {
          title: "Revenue (24 h)",
          kind: "number",
          query: { stream: "checkout.completed", measures: ["sum"], range: last24h },
        },
        {
          title: "Orders (24 h)",
          kind: "number",
          query: { stream: "checkout.completed", measures: ["count"], range: last24h },
        },
        {
          title: "Visitors who bought (24 h)",
          kind: "number",
          query: {
            streams: { o: "checkout.completed", v: "page.view" },
            measures: [{ name: "conversion", expr: "o.distinct_users / v.distinct_users" }],
            range: last24h,
          },
        },
        {
          title: "Failed payments per minute",
          kind: "timeseries",
          query: { stream: "payment.failed", measures: ["count"], step: "1m", range: { last: "1h" } },
        },
        {
          title: "Top products by views",
          kind: "bars",
          query: {
            stream: "product.view",
            measures: ["count"],
            group_by: ["product"],
            labels: { product: "products" },
            order_by: { measure: "count", dir: "desc" },
            limit: 10,
            range: last24h,
          },
        },
        {
          title: "Top products by revenue",
          kind: "bars",
          query: {
            stream: "purchase",
            measures: ["sum", "count"],
            group_by: ["product"],
            labels: { product: "products" },
            order_by: { measure: "sum", dir: "desc" },
            limit: 10,
            range: last24h,
          },
        },
        {
          title: "Sales per hour",
          kind: "timeseries",
          width: 2,
          query: { stream: "checkout.completed", measures: revenueAndOrders, step: "1h", range: last24h },
        },
        {
          title: "Sales per day",
          kind: "bars",
          query: { stream: "checkout.completed", measures: revenueAndOrders, step: "1d", range: { last: "30d" } },
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
            range: last24h,
          },
        },
        { title: "Purchase funnel", kind: "funnel", funnel: "purchase", days: 1, width: 2 },
        {
          title: "Revenue by country and category",
          kind: "table",
          width: 2,
          query: {
            stream: "purchase",
            measures: ["sum", "count"],
            group_by: ["country", "category"],
            order_by: { measure: "sum", dir: "desc" },
            limit: 20,
            range: last24h,
          },
        },
      ],
    },
  ],
  traffic: () => ({ next: visit }),
};
