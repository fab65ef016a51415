/**
 * Kafka sources, through a Kafka REST Proxy's v2 consumer API (Confluent's kafka-rest, Redpanda's
 * pandaproxy, Karapace):
 *
 *   POST {url}/consumers/{group}                 a consumer instance named edgepulse-<source id>, format json,
 *                                                auto.offset.reset earliest, auto.commit.enable false
 *   POST {base}/subscription {"topics": [...]}
 *   GET  {base}/records  Accept: application/vnd.kafka.json.v2+json
 *   POST {base}/offsets  {"offsets": [{topic, partition, offset}]}  (the proxy commits offset + 1)
 *   POST {base}/positions {"offsets": [...]}       seek
 *   GET  {base}/assignments, {url}/topics/{t}/partitions/{p}/offsets (lag)
 *
 * The truth is the cursor stored with the events: the next offset of every partition read. Kafka's
 * committed offsets follow it (committed once the events are delivered), for the group's lag in Kafka's
 * own tools. A new consumer instance (the first poll, or after the actor restarted) joins the group with
 * a first GET …/records whose records are set aside, asks which partitions it was given, and seeks each
 * to the stored offset (or back to where that first fetch started), so a restart neither skips nor
 * repeats. Then each record below the stored offset is skipped, and a record above it (the group's
 * offsets were moved) makes the partition seek back once; if the records are really gone (retention),
 * reading goes on from there. A fetch larger than max_records seeks each partition back to the first
 * record not taken. Bound: KAFKA_MAX_PARTITIONS partitions in the cursor.
 */
import { hash64, KAFKA_MAX_BYTES, KAFKA_MAX_PARTITIONS, type KafkaConfig, SourceError } from "../../core/sources";
import { call, readJson, statusError } from "./fetch";
import type { PullContext, Pulled, Puller } from "./types";

interface KafkaCursor {
  /** "topic/partition" → the next offset to read. */
  offsets: Record<string, number>;
}

interface KafkaRecord {
  topic: string;
  key: unknown;
  value: unknown;
  partition: number;
  offset: number;
}

const V2 = "application/vnd.kafka.v2+json";
const LAG_EVERY_MS = 5000;
const JSON_RECORDS = "application/vnd.kafka.json.v2+json";
const tpKey = (topic: string, partition: number) => `${topic}/${partition}`;
const splitKey = (k: string): { topic: string; partition: number } => {
  const i = k.lastIndexOf("/");
  return { topic: k.slice(0, i), partition: Number(k.slice(i + 1)) };
};

/** A REST Proxy error body's code and message ({"error_code": 40403, "message": …}), for the source's status. */
export async function proxyError(res: Response, what: string): Promise<SourceError> {
  let code: number | undefined;
  try {
    code = ((await res.json()) as { error_code?: number }).error_code;
  } catch {
    // not a kafka-rest error body
  }
  const base = statusError(res.status, what);
  if (code === undefined || base.code === "auth_failed") return base;
  // 406 40601: the instance's format is not json; 422: a configuration the proxy refuses: fix and resume.
  const permanent = base.permanent || res.status === 406;
  return new SourceError("kafka_error", `${what} answered HTTP ${res.status} (error_code ${code}).`, permanent);
}

export function kafkaPuller(config: KafkaConfig, sourceId: string): Puller {
  const origin = new URL(config.url).origin;
  const root = config.url.replace(/\/+$/, "");
  const group = config.group ?? `edgepulse-${sourceId}`;
  const name = `edgepulse-${sourceId}`;
  /** The consumer instance this actor incarnation uses (memory only: a restart makes it join again). */
  let consumer: { base: string; positioned: boolean } | null = null;
  /** Offsets Kafka has committed for us, as far as this incarnation knows. */
  let committed: Record<string, number> = {};
  /** Partitions sought back to their stored offset after a gap, and to which offset. */
  const gapSeeks = new Map<string, number>();

  const headers = (ctx: PullContext, extra: Record<string, string> = {}, url = root): Record<string, string> => {
    const h: Record<string, string> = { ...extra };
    // The secret goes only to the configured origin.
    if (config.auth_header && ctx.secrets.auth && new URL(url).origin === origin)
      h[config.auth_header] = ctx.secrets.auth;
    return h;
  };

  async function request(
    ctx: PullContext,
    method: string,
    url: string,
    body?: unknown,
    accept = V2,
  ): Promise<Response> {
    const init: RequestInit = {
      method,
      headers: headers(ctx, body === undefined ? { accept } : { accept, "content-type": V2 }, url),
      body: body === undefined ? undefined : JSON.stringify(body),
    };
    return call(url, init, ctx.timeoutMs, "The Kafka REST Proxy");
  }

  /** A request whose failure is an error (404 on an instance: it is gone, and the next poll makes a new one). */
  async function ok(ctx: PullContext, method: string, url: string, body?: unknown, accept = V2): Promise<Response> {
    const res = await request(ctx, method, url, body, accept);
    if (res.ok) return res;
    if (res.status === 404 && consumer !== null && url.startsWith(consumer.base)) {
      consumer = null;
      await res.body?.cancel().catch(() => {});
      throw new SourceError(
        "kafka_error",
        "The consumer instance is gone (expired, or the proxy restarted); a new one joins on the next poll.",
      );
    }
    throw await proxyError(res, "The Kafka REST Proxy");
  }

  async function open(ctx: PullContext): Promise<{ base: string; positioned: boolean }> {
    const res = await request(ctx, "POST", `${root}/consumers/${encodeURIComponent(group)}`, {
      name,
      format: "json",
      "auto.offset.reset": "earliest",
      "auto.commit.enable": "false",
    });
    const constructed = `${root}/consumers/${encodeURIComponent(group)}/instances/${encodeURIComponent(name)}`;
    let base = constructed;
    if (res.ok) {
      const given = ((await res.json()) as { base_uri?: string }).base_uri;
      // Use the instance's base_uri when it is on the configured origin (the secret never leaves it).
      if (typeof given === "string" && URL.canParse(given) && new URL(given).origin === origin)
        base = given.replace(/\/+$/, "");
    } else if (res.status === 409) {
      // This source's instance survives from before a restart: use it (it is sought to the stored offsets below).
      await res.body?.cancel().catch(() => {});
    } else throw await proxyError(res, "The Kafka REST Proxy");
    consumer = { base, positioned: false };
    await ok(ctx, "POST", `${base}/subscription`, { topics: config.topics }).then((r) => r.body?.cancel());
    return consumer;
  }

  async function fetchRecords(ctx: PullContext, base: string): Promise<KafkaRecord[]> {
    const wait = Math.min(1000, Math.floor(ctx.timeoutMs / 2));
    const res = await ok(
      ctx,
      "GET",
      `${base}/records?timeout=${wait}&max_bytes=${KAFKA_MAX_BYTES}`,
      undefined,
      JSON_RECORDS,
    );
    const body = await readJson(res, KAFKA_MAX_BYTES * 4, "The Kafka REST Proxy");
    if (!Array.isArray(body)) throw new SourceError("kafka_error", "The Kafka REST Proxy's records are not an array.");
    return body as KafkaRecord[];
  }

  async function seek(ctx: PullContext, base: string, offsets: Record<string, number>): Promise<void> {
    const list = Object.entries(offsets).map(([k, offset]) => ({ ...splitKey(k), offset }));
    if (list.length === 0) return;
    await ok(ctx, "POST", `${base}/positions`, { offsets: list }).then((r) => r.body?.cancel());
  }

  /** Joins the group, then seeks every assigned partition to where the stored cursor says. */
  async function position(ctx: PullContext, state: KafkaCursor, base: string): Promise<boolean> {
    const first = await fetchRecords(ctx, base);
    const started: Record<string, number> = {};
    for (const r of first) {
      const k = tpKey(r.topic, r.partition);
      started[k] = Math.min(started[k] ?? Number.POSITIVE_INFINITY, r.offset);
    }
    const res = await ok(ctx, "GET", `${base}/assignments`);
    const assigned =
      ((await res.json()) as { partitions?: Array<{ topic: string; partition: number }> }).partitions ?? [];
    if (assigned.length === 0) return false;
    const offsets: Record<string, number> = {};
    for (const p of assigned) {
      const k = tpKey(p.topic, p.partition);
      const at = state.offsets[k] ?? started[k];
      if (at !== undefined) offsets[k] = at;
    }
    await seek(ctx, base, offsets);
    return true;
  }

  /** When lag was last asked (at most every LAG_EVERY_MS: a catching-up source polls every few ms). */
  let lagAt = 0;

  async function lagOf(ctx: PullContext, offsets: Record<string, number>, caughtUp: boolean): Promise<number | null> {
    const keys = Object.keys(offsets).slice(0, 16);
    if (keys.length === 0 || (!caughtUp && ctx.now - lagAt < LAG_EVERY_MS)) return null;
    lagAt = ctx.now;
    try {
      const ends = await Promise.all(
        keys.map(async (k) => {
          const { topic, partition } = splitKey(k);
          const res = await request(
            ctx,
            "GET",
            `${root}/topics/${encodeURIComponent(topic)}/partitions/${partition}/offsets`,
          );
          if (!res.ok) throw new Error(String(res.status));
          return ((await res.json()) as { end_offset: number }).end_offset - offsets[k];
        }),
      );
      return ends.reduce((a, b) => a + Math.max(0, b), 0);
    } catch {
      return null;
    }
  }

  return {
    lagUnit: "records",

    async pull(ctx: PullContext): Promise<Pulled> {
      const state: KafkaCursor = (ctx.cursor as KafkaCursor | null) ?? { offsets: {} };
      const c = consumer ?? (await open(ctx));
      if (!c.positioned) {
        c.positioned = await position(ctx, state, c.base);
        return { records: [], malformed: [], cursor: state, more: c.positioned, lag: null };
      }
      const fetched = await fetchRecords(ctx, c.base);
      const offsets = { ...state.offsets };
      const seeks: Record<string, number> = {};
      const stopped = new Set<string>();
      const records: Pulled["records"] = [];
      for (const r of fetched) {
        const k = tpKey(r.topic, r.partition);
        if (stopped.has(k)) continue;
        const expected = offsets[k];
        if (expected !== undefined && r.offset < expected) continue; // produced already
        if (expected !== undefined && r.offset > expected && gapSeeks.get(k) !== expected) {
          // Records between are missing: seek back to them once (if they are gone, go on from here).
          gapSeeks.set(k, expected);
          seeks[k] = expected;
          stopped.add(k);
          continue;
        }
        if (records.length >= ctx.maxRecords) {
          seeks[k] = r.offset;
          stopped.add(k);
          continue;
        }
        if (!(k in offsets) && Object.keys(offsets).length >= KAFKA_MAX_PARTITIONS) {
          throw new SourceError("kafka_error", `The topics have more than ${KAFKA_MAX_PARTITIONS} partitions.`, true);
        }
        gapSeeks.delete(k);
        offsets[k] = r.offset + 1;
        records.push({ record: r, position: `k:${hash64(r.topic)}:${r.partition}:${r.offset}` });
      }
      await seek(ctx, c.base, seeks);
      const cursor: KafkaCursor = { offsets };
      const lag = await lagOf(ctx, offsets, fetched.length === 0);
      return { records, malformed: [], cursor, more: fetched.length > 0, lag };
    },

    /** Commits the stored offsets Kafka does not have yet (their events are delivered). */
    async delivered(ctx: PullContext): Promise<void> {
      const state = ctx.cursor as KafkaCursor | null;
      if (state === null || consumer === null || !consumer.positioned) return;
      const changed = Object.entries(state.offsets).filter(([k, next]) => committed[k] !== next);
      if (changed.length === 0) return;
      // v2 commits offset + 1: send the offset of the last record delivered.
      const offsets = changed.map(([k, next]) => ({ ...splitKey(k), offset: next - 1 }));
      await ok(ctx, "POST", `${consumer.base}/offsets`, { offsets }).then((r) => r.body?.cancel());
      committed = { ...committed, ...Object.fromEntries(changed) };
    },

    cursorView(cursor: unknown) {
      const c = cursor as KafkaCursor | null;
      return c === null ? null : { offsets: c.offsets, group };
    },

    async close(ctx: PullContext): Promise<void> {
      const base =
        consumer?.base ?? `${root}/consumers/${encodeURIComponent(group)}/instances/${encodeURIComponent(name)}`;
      consumer = null;
      await request(ctx, "DELETE", base)
        .then((r) => r.body?.cancel())
        .catch(() => {});
    },
  };
}
