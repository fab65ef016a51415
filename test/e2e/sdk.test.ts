/**
 * The SDK against `npm start`'s real stack: from Node (batches split on the collector's 413, gzip, a
 * retry whose first answer was lost, a 429's Retry-After, receipts) and from a real Chromium (page-hide
 * beacons, the offline queue flushed on `online`, a 429 respected). "Exactly once" is checked on the
 * stream's own counters, read back through the API.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildBundles } from "../../sdk/scripts/build.mjs";
import { createClient } from "../../sdk/src/index";
import { launchChromium } from "../support/chromium";
import { createTestDatabase } from "../support/pg";
import { createTenant, type Keys, ROOT, type Stack, startStack } from "../support/stack";

const DENO_CLIENT = fileURLToPath(new URL("./fixtures/deno-client.ts", import.meta.url));
const execFileAsync = promisify(execFile);
/** Deno from npm at the version package.json pins (`config.deno`), as `npm run test:deno` runs it. */
const DENO = ["--yes", `deno@${JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).config.deno}`];
/** The collector takes at most this many events per request here, so the SDK's larger batches meet a 413. */
const SERVER_MAX_EVENTS = 100;

let stack: Stack;
let keys: Keys;
let iife: string;

interface Logged {
  /** The id of the batch's first event (bodies under gzipMinBytes only). */
  firstId?: string;
  status: number;
  encoding?: string;
  retryAfter: string | null;
  sentAt: number;
  doneAt: number;
}

/** The global fetch, logging each request's outcome. */
function loggingFetch(log: Logged[]): typeof fetch {
  return async (input, init) => {
    const sentAt = Date.now();
    const res = await fetch(input, init);
    const headers = init?.headers as Record<string, string>;
    log.push({
      firstId: typeof init?.body === "string" ? JSON.parse(init.body)[0].id : undefined,
      status: res.status,
      encoding: headers["content-encoding"],
      retryAfter: res.headers.get("retry-after"),
      sentAt,
      doneAt: Date.now(),
    });
    return res;
  };
}

async function streamFigures(read: string, name: string) {
  const res = await fetch(`${stack.url}/v1/streams/${name}?window=1h`, {
    headers: { authorization: `Bearer ${read}` },
  });
  if (res.status === 404) return { count: 0, accepted: 0, duplicates: 0 };
  const body = (await res.json()) as {
    windows: Record<string, { count: number }>;
    counters: { accepted: number; duplicates: number };
  };
  return { count: body.windows["1h"].count, accepted: body.counters.accepted, duplicates: body.counters.duplicates };
}

async function limitedTenant(name: string): Promise<Keys> {
  const k = await createTenant(stack, name);
  // Set before the key is first used, so no isolate holds a grant with the old limits.
  const res = await fetch(`${stack.url}/v1/admin/tenants/${k.tenantId}/limits`, {
    method: "PUT",
    headers: { authorization: `Bearer ${stack.token}`, "content-type": "application/json" },
    body: JSON.stringify({ ingest_per_sec: 1 }),
  });
  expect(res.status).toBe(200);
  return k;
}

beforeAll(async () => {
  const { files } = await buildBundles();
  iife = readFileSync(files.iife, "utf8");
  const databaseUrl = await createTestDatabase("edgepulse_test_sdk");
  stack = await startStack({
    extraEnv: { DATABASE_URL: databaseUrl, MAX_EVENTS_PER_BATCH: String(SERVER_MAX_EVENTS) },
  });
  keys = await createTenant(stack, "sdk");
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

describe("SDK from Node against the stack", () => {
  it("counts every tracked event once, halving batches the collector refuses (413), bodies gzipped", async () => {
    const log: Logged[] = [];
    const client = createClient({
      endpoint: stack.url,
      key: keys.ingest,
      maxBatchEvents: 300,
      fetch: loggingFetch(log),
    });
    for (let i = 0; i < 700; i++)
      client.track("sdk.node", { value: i, user: `u${i % 50}`, dims: { shard: String(i % 4) } });
    const r = await client.close();
    expect(r).toMatchObject({ accepted: 700, duplicates: 0, rejected: [] });
    expect(log.filter((l) => l.status === 413).length).toBeGreaterThan(0);
    expect(log.filter((l) => l.status === 200).length).toBe(r.requests - log.filter((l) => l.status === 413).length);
    expect(log.every((l) => l.encoding === "gzip")).toBe(true);
    expect(await streamFigures(keys.read, "sdk.node")).toEqual({ count: 700, accepted: 700, duplicates: 0 });
  });

  it("a retry of a request whose answer was lost is reported as duplicates and not counted twice", async () => {
    let calls = 0;
    const lossy: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (calls++ === 0) {
        expect(res.status).toBe(200); // the collector counted them…
        throw new TypeError("socket hang up"); // …but the answer never reached the client
      }
      return res;
    };
    const client = createClient({ endpoint: stack.url, key: keys.ingest, fetch: lossy, retryBaseMs: 10 });
    for (let i = 0; i < 40; i++) client.track("sdk.retry", { value: i });
    const r = await client.close();
    expect(r).toMatchObject({ accepted: 0, duplicates: 40, rejected: [], requests: 2, retries: 1 });
    expect(await streamFigures(keys.read, "sdk.retry")).toEqual({ count: 40, accepted: 40, duplicates: 40 });
  });

  it("waits out a 429's Retry-After and delivers everything exactly once", async () => {
    const limited = await limitedTenant("sdk-limited-node");
    const log: Logged[] = [];
    const client = createClient({
      endpoint: stack.url,
      key: limited.ingest,
      maxBatchEvents: 10,
      concurrency: 1,
      fetch: loggingFetch(log),
    });
    for (let i = 0; i < 30; i++) client.track("sdk.limited", { value: i });
    const r = await client.close();
    expect(r).toMatchObject({ accepted: 30, duplicates: 0, rejected: [] });
    const refusals = log.filter((l) => l.status === 429);
    expect(refusals.length).toBeGreaterThan(0);
    expect({ requests: r.requests, retries: r.retries, log }).toMatchObject({
      requests: log.length,
      retries: refusals.length,
    });
    for (const refused of refusals) {
      const retryAfter = Number(refused.retryAfter);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      // The same batch was resent no sooner than Retry-After after its refusal (other batches went on meanwhile).
      const again = log.find((l) => l.firstId === refused.firstId && l.sentAt >= refused.doneAt);
      expect(again?.sentAt ?? 0).toBeGreaterThanOrEqual(refused.doneAt + retryAfter * 1000 - 20);
    }
    expect(await streamFigures(limited.read, "sdk.limited")).toEqual({ count: 30, accepted: 30, duplicates: 0 });
  });

  it("surfaces rejections with their codes and the events they refer to", async () => {
    const client = createClient({ endpoint: stack.url, key: keys.ingest });
    const good = client.track("sdk.receipts", { value: 1 });
    const late = client.track("sdk.receipts", { ts: Date.now() - 2 * 3_600_000 });
    const badName = client.track("not a name!");
    const r = await client.flush();
    expect(r.accepted).toBe(1);
    expect(r.rejected.map((x) => [x.code, x.event.id])).toEqual([
      ["too_late", late],
      ["invalid_name", badName],
    ]);
    expect(good).toMatch(/^[0-9a-f]{32}$/);
    // A batch with nothing valid: the collector's 422, mapped the same way.
    const only = client.track("sdk.receipts", { value: Number.NaN });
    const r2 = await client.close();
    expect(r2.rejected.map((x) => [x.code, x.event.id])).toEqual([["invalid_value", only]]);
  });
});

describe("SDK from Deno against the stack", () => {
  it("runs from its sources under Deno 2: batches split on 413, gzip, receipts, a lost answer retried once", async () => {
    const host = new URL(stack.url).host;
    const { stdout } = await execFileAsync(
      "npx",
      [...DENO, "run", `--allow-net=${host}`, "--allow-env=EDGEPULSE_URL,EDGEPULSE_KEY", DENO_CLIENT],
      { env: { ...process.env, EDGEPULSE_URL: stack.url, EDGEPULSE_KEY: keys.ingest, NO_COLOR: "1" } },
    );
    const out = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}");
    expect(out.runtime).toMatch(/^deno 2\./);
    expect(out.first).toMatchObject({ accepted: 600, duplicates: 0, rejected: [["invalid_value", true]] });
    expect(out.statuses).toContain(413);
    // Every body of 1 KiB or more went gzipped; only the lone invalid event's batch was small enough to go plain.
    const plain = out.encodings.filter((e: string) => e !== "gzip");
    expect(plain).toHaveLength(1);
    expect(Number(plain[0].match(/^plain (\d+) B$/)?.[1])).toBeLessThan(1024);
    expect(out.second).toMatchObject({ accepted: 0, duplicates: 20, rejected: 0, requests: 2, retries: 1 });
    expect(await streamFigures(keys.read, "sdk.deno")).toEqual({ count: 600, accepted: 600, duplicates: 0 });
    expect(await streamFigures(keys.read, "sdk.deno.retry")).toEqual({ count: 20, accepted: 20, duplicates: 20 });
  });
});

describe("SDK in Chromium against the stack", () => {
  let browser: Browser;
  let context: BrowserContext;
  const posts: { url: string; body: string | null; at: number }[] = [];
  const responses: { status: number; retryAfter: string | null; at: number }[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
  });

  /** A page on the stack's origin that loads the SDK with the README's snippet (stub first, script after). */
  async function openPage(key: string, stream: string): Promise<Page> {
    context = await browser.newContext();
    context.on("request", (req) => {
      if (req.url().includes("/v1/events") && req.method() === "POST") {
        posts.push({ url: req.url(), body: req.postData(), at: Date.now() });
      }
    });
    context.on("response", async (res) => {
      if (res.url().includes("/v1/events")) {
        responses.push({ status: res.status(), retryAfter: await res.headerValue("retry-after"), at: Date.now() });
      }
    });
    // Beacons leave while the page goes away, where playwright does not always report them: count them in the page.
    await context.addInitScript(() => {
      const send = navigator.sendBeacon.bind(navigator);
      navigator.sendBeacon = (url: string | URL, data?: BodyInit | null) => {
        const log = JSON.parse(localStorage.getItem("test.beacons") ?? "[]");
        log.push({ url: String(url), type: (data as Blob).type, size: (data as Blob).size });
        localStorage.setItem("test.beacons", JSON.stringify(log));
        return send(url, data);
      };
    });
    await context.route("**/__sdk/blank.html", (route) => route.fulfill({ contentType: "text/html", body: "blank" }));
    await context.route("**/__sdk/edgepulse.iife.js", (route) =>
      route.fulfill({ contentType: "text/javascript", body: iife }),
    );
    await context.route("**/__sdk/page.html", (route) =>
      route.fulfill({
        contentType: "text/html",
        body: `<!doctype html><html><head><script>
!function(w,d,s){var e=w.edgepulse=w.edgepulse||{q:[]};["init","track","flush"].forEach(function(m){e[m]=e[m]||function(){e.q.push([m,arguments])}});s=d.createElement("script");s.async=1;s.src="/__sdk/edgepulse.iife.js";d.head.appendChild(s)}(window,document);
edgepulse.init({endpoint: location.origin, key: ${JSON.stringify(key)}, flushIntervalMs: 60000});
edgepulse.track(${JSON.stringify(stream)}, {value: 1, id: "before-load"});
</script></head><body>sdk test</body></html>`,
      }),
    );
    const page = await context.newPage();
    await page.goto(`${stack.url}/__sdk/page.html`);
    await page.waitForFunction(
      () => typeof (window as unknown as { edgepulse: { client?: unknown } }).edgepulse.client === "object",
    );
    return page;
  }

  it("sends the queue on page hide with a beacon, counted exactly once (calls made before the script loaded included)", async () => {
    const page = await openPage(keys.ingest, "sdk.hide");
    await page.evaluate(() => {
      const ep = (window as unknown as { edgepulse: { track(n: string, f?: object): string } }).edgepulse;
      ep.track("sdk.hide", { value: 2 });
      ep.track("sdk.hide", { value: 3 });
    });
    expect(posts.length).toBe(0); // nothing sent before the page hides (flushIntervalMs is a minute)
    await page.goto(`${stack.url}/__sdk/blank.html`); // visibilitychange → hidden, pagehide
    await expect.poll(() => streamFigures(keys.read, "sdk.hide"), { timeout: 10_000 }).toMatchObject({ count: 3 });
    const beacons = await page.evaluate(() => JSON.parse(localStorage.getItem("test.beacons") ?? "[]"));
    expect(beacons).toEqual([
      { url: `${stack.url}/v1/events?key=${keys.ingest}`, type: "text/plain", size: expect.any(Number) },
    ]);
    expect(posts.filter((p) => !p.url.includes("?key="))).toHaveLength(0); // no fetch besides the beacon
    expect(await streamFigures(keys.read, "sdk.hide")).toEqual({ count: 3, accepted: 3, duplicates: 0 });
    await context.close();
  });

  it("keeps events tracked offline in localStorage and delivers them exactly once when back online", async () => {
    posts.length = 0;
    const page = await openPage(keys.ingest, "sdk.offline");
    await page.evaluate(() => (window as unknown as { edgepulse: { flush(): Promise<unknown> } }).edgepulse.flush());
    expect(posts).toHaveLength(1); // the "before-load" event
    await context.setOffline(true);
    const stored = await page.evaluate(async () => {
      const ep = (
        window as unknown as { edgepulse: { track(n: string, f?: object): string; flush(): Promise<unknown> } }
      ).edgepulse;
      for (let i = 0; i < 4; i++) ep.track("sdk.offline", { value: 10 + i });
      await ep.flush();
      return { onLine: navigator.onLine, queue: JSON.parse(localStorage.getItem("edgepulse.queue") ?? "[]").length };
    });
    expect(stored).toEqual({ onLine: false, queue: 4 });
    expect(posts).toHaveLength(1);
    await context.setOffline(false); // the page's `online` event sends the queue
    await expect.poll(() => streamFigures(keys.read, "sdk.offline"), { timeout: 10_000 }).toMatchObject({ count: 5 });
    await expect
      .poll(() => page.evaluate(() => localStorage.getItem("edgepulse.queue")), { timeout: 5_000 })
      .toBeNull();
    expect(posts).toHaveLength(2);
    expect(await streamFigures(keys.read, "sdk.offline")).toEqual({ count: 5, accepted: 5, duplicates: 0 });
    await context.close();
  });

  it("respects a 429's Retry-After and delivers everything exactly once", async () => {
    posts.length = 0;
    responses.length = 0;
    const limited = await limitedTenant("sdk-limited-browser");
    const page = await openPage(limited.ingest, "sdk.limited");
    const receipts = await page.evaluate(async () => {
      const ep = (
        window as unknown as { edgepulse: { track(n: string, f?: object): string; flush(): Promise<unknown> } }
      ).edgepulse;
      const first = await ep.flush();
      ep.track("sdk.limited", { value: 2 });
      const second = await ep.flush();
      return [first, second] as { accepted: number; retries: number }[];
    });
    expect(receipts[0]).toMatchObject({ accepted: 1 });
    expect(receipts[1]).toMatchObject({ accepted: 1 });
    const refused = responses.findIndex((r) => r.status === 429);
    expect(refused).toBeGreaterThanOrEqual(0);
    expect(receipts[1].retries).toBeGreaterThanOrEqual(1);
    const retryAfter = Number(responses[refused].retryAfter);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    // The request after the refusal left no sooner than Retry-After.
    expect(posts[refused + 1].at - responses[refused].at).toBeGreaterThanOrEqual(retryAfter * 1000 - 100);
    expect(await streamFigures(limited.read, "sdk.limited")).toEqual({ count: 2, accepted: 2, duplicates: 0 });
    await context.close();
  });
});
