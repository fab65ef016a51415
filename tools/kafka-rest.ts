/**
 * An in-memory stand-in for a Kafka REST Proxy (Confluent's kafka-rest; Redpanda's pandaproxy and Karapace
 * serve the same API), for tests and local development: no Kafka broker can run on this machine. It
 * implements the documented endpoints edgepulse uses, with their status codes, media types and error
 * bodies (`{"error_code": 40403, "message": "Consumer instance not found."}`), over topics with
 * partitions and offsets, consumer groups with committed offsets, and consumer instances:
 *
 *   v3  GET  /v3/clusters, /v3/clusters/{cluster_id}
 *       POST /v3/clusters/{cluster_id}/topics                       create a topic (partitions_count)
 *       POST /v3/clusters/{cluster_id}/topics/{topic_name}/records  produce: {"key": {"type": "JSON", "data": …},
 *            "value": {…}, "partition_id"?}; several records concatenated in one body (streaming mode) get one
 *            delivery report each, in order: {"error_code": 200, "cluster_id", "topic_name", "partition_id",
 *            "offset", "timestamp", "key": {"type", "size"}, "value": {"type", "size"}}
 *   v2  GET  /topics, /topics/{topic}, /topics/{topic}/partitions/{partition}/offsets
 *       POST /consumers/{group}                                      create an instance: {"name", "format",
 *            "auto.offset.reset", "auto.commit.enable"} → {"instance_id", "base_uri"}; 409 40902 if it exists
 *       DELETE /consumers/{group}/instances/{instance}                204; 404 40403
 *       POST|GET|DELETE …/subscription                              {"topics": [...]} or {"topic_pattern"}
 *       GET  …/records?timeout=&max_bytes=                           Accept must match the instance's format
 *            (application/vnd.kafka.json.v2+json for json; else 406 40601); partitions are assigned on the first
 *            poll after a change (range assignor over the group's members), starting at the group's committed
 *            offset, else auto.offset.reset; waits up to `timeout` ms when nothing is there
 *       POST …/offsets                                               commit {"offsets": [{topic, partition, offset}]}:
 *            as kafka-rest does, offset + 1 is committed (the next record to read); an empty body commits
 *            the positions reached
 *       GET  …/offsets  {"partitions": [...]}                        the committed offsets
 *       POST …/positions {"offsets": [...]}, …/positions/beginning|end {"partitions": [...]}
 *            seek: 409 40903 "Illegal state: No current assignment for partition t-0" when not assigned
 *       POST|GET …/assignments                                       manual assignment
 *
 * Instances idle longer than `instanceTimeoutMs` (kafka-rest's consumer.instance.timeout.ms, 5 min) are
 * removed, and their group rebalances. Not implemented: Avro/Protobuf/JSON Schema (no Schema Registry),
 * ACLs, v2 produce, v3 topic and group administration beyond creating a topic.
 *
 * Tests also get, beside the API: `records(topic)` (what was produced, decoded), `committed(group)`,
 * `failNext(n, status)` (the next n API requests answer an error), and the same over HTTP under
 * /__control/ for code running in workerd (GET /__control/topics/{topic}/records,
 * GET /__control/groups/{group}/offsets, POST /__control/fail {"count", "status"}).
 *
 *   npx tsx tools/kafka-rest.ts [port]     (default 8082, as kafka-rest)
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

type Format = "binary" | "json" | "avro" | "jsonschema" | "protobuf";
type DataType = "JSON" | "STRING" | "BINARY";

interface StoredRecord {
  partition: number;
  offset: number;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  keyType: DataType | null;
  valueType: DataType | null;
  headers: Array<{ name: string; value: string | null }>;
}

interface Topic {
  name: string;
  partitions: StoredRecord[][];
}

interface Instance {
  group: string;
  id: string;
  format: Format;
  reset: "earliest" | "latest" | "none";
  autoCommit: boolean;
  subscription: string[] | null;
  pattern: RegExp | null;
  /** Partitions assigned by hand (POST …/assignments); then the group assigns nothing to this instance. */
  manual: string[] | null;
  assigned: string[];
  /** The generation of the group this instance's assignment was computed for. */
  generation: number;
  positions: Map<string, number>;
  lastUsed: number;
}

interface Group {
  committed: Map<string, number>;
  members: Map<string, Instance>;
  generation: number;
}

/** A produced record as tests read it: key and value decoded by their type (JSON parsed, BINARY base64). */
export interface ProducedRecord {
  topic: string;
  partition: number;
  offset: number;
  timestamp: string;
  key: unknown;
  value: unknown;
  headers: Array<{ name: string; value: string | null }>;
}

export interface KafkaRest {
  url: string;
  port: number;
  clusterId: string;
  /** Creates a topic with `partitions` partitions (produce auto-creates topics with the default count). */
  createTopic(name: string, partitions: number): void;
  /** Produces JSON records (as POST …/records with type JSON would); returns where each landed. */
  produce(
    topic: string,
    records: Array<{ key?: unknown; value: unknown; partition?: number }>,
  ): Array<{ partition: number; offset: number }>;
  /** Everything produced to a topic, in partition then offset order. */
  records(topic: string): ProducedRecord[];
  /** The group's committed offsets, "topic/partition" → next offset to read. */
  committed(group: string): Record<string, number>;
  /** The next `count` API requests (not /__control/) answer `status` with a kafka-rest error body. */
  failNext(count: number, status?: number): void;
  close(): Promise<void>;
}

export interface KafkaRestOptions {
  port?: number;
  host?: string;
  /** Partitions of a topic created by a produce (kafka's num.partitions). Default 3. */
  partitions?: number;
  /** consumer.instance.timeout.ms. Default 300,000. */
  instanceTimeoutMs?: number;
  /** Most records one GET …/records returns. Default 500. */
  maxPollRecords?: number;
  /** consumer.request.timeout.ms: how long GET …/records waits when nothing is there, without `timeout`. Default 1000. */
  requestTimeoutMs?: number;
  clusterId?: string;
  unref?: boolean;
}

const V2 = "application/vnd.kafka.v2+json";
const tp = (topic: string, partition: number) => `${topic}\u0000${partition}`;
const splitTp = (k: string): [string, number] => {
  const i = k.indexOf("\u0000");
  return [k.slice(0, i), Number(k.slice(i + 1))];
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: number,
    message: string,
  ) {
    super(message);
  }
}

const notFoundInstance = () => new HttpError(404, 40403, "Consumer instance not found.");

/** Kafka's default partitioner for keyed records: murmur2 of the key bytes, positive, modulo the partitions. */
function murmur2(data: Buffer): number {
  const length = data.length;
  const seed = 0x9747b28c;
  const m = 0x5bd1e995;
  const r = 24;
  let h = seed ^ length;
  const length4 = Math.floor(length / 4);
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k =
      (data[i4] & 0xff) + ((data[i4 + 1] & 0xff) << 8) + ((data[i4 + 2] & 0xff) << 16) + ((data[i4 + 3] & 0xff) << 24);
    k = Math.imul(k, m);
    k ^= k >>> r;
    k = Math.imul(k, m);
    h = Math.imul(h, m);
    h ^= k;
  }
  const rest = length % 4;
  const base = length & ~3;
  if (rest === 3) h ^= (data[base + 2] & 0xff) << 16;
  if (rest >= 2) h ^= (data[base + 1] & 0xff) << 8;
  if (rest >= 1) {
    h ^= data[base] & 0xff;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h;
}

/** Splits a body of concatenated JSON values (the v3 produce API's streaming mode). */
function concatenatedJson(text: string): unknown[] {
  const out: unknown[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /\s/.test(text[i])) i++;
    if (i >= text.length) break;
    const start = i;
    let depth = 0;
    let inString = false;
    for (; i < text.length; i++) {
      const ch = text[i];
      if (inString) {
        if (ch === "\\") i++;
        else if (ch === '"') inString = false;
      } else if (ch === '"') inString = true;
      else if (ch === "{" || ch === "[") depth++;
      else if (ch === "}" || ch === "]") {
        depth--;
        if (depth === 0) {
          i++;
          break;
        }
      } else if (depth === 0 && /\s/.test(ch)) break;
    }
    out.push(JSON.parse(text.slice(start, i)));
  }
  return out;
}

function encodeData(d: unknown): { bytes: Buffer | null; type: DataType | null } {
  if (d === undefined || d === null) return { bytes: null, type: null };
  const { type = "JSON", data } = d as { type?: string; data?: unknown };
  if (data === undefined || data === null) return { bytes: null, type: null };
  if (type === "JSON") return { bytes: Buffer.from(JSON.stringify(data)), type };
  if (type === "STRING") {
    if (typeof data !== "string") throw new HttpError(400, 400, "STRING data must be a string.");
    return { bytes: Buffer.from(data), type };
  }
  if (type === "BINARY") {
    if (typeof data !== "string") throw new HttpError(400, 400, "BINARY data must be base64.");
    return { bytes: Buffer.from(data, "base64"), type };
  }
  throw new HttpError(400, 400, `Unsupported embedded format: ${String(type)} (this stand-in has no Schema Registry).`);
}

function decode(bytes: Buffer | null, type: DataType | null): unknown {
  if (bytes === null) return null;
  if (type === "JSON") return JSON.parse(bytes.toString("utf8"));
  if (type === "STRING") return bytes.toString("utf8");
  return bytes.toString("base64");
}

export function startKafkaRest(opts: KafkaRestOptions = {}): Promise<KafkaRest> {
  const host = opts.host ?? "127.0.0.1";
  const defaultPartitions = opts.partitions ?? 3;
  const instanceTimeoutMs = opts.instanceTimeoutMs ?? 300_000;
  const maxPollRecords = opts.maxPollRecords ?? 500;
  const requestTimeoutMs = opts.requestTimeoutMs ?? 1000;
  const clusterId = opts.clusterId ?? "edgepulse-stand-in";
  const topics = new Map<string, Topic>();
  const groups = new Map<string, Group>();
  /** Pollers waiting for records (GET …/records with nothing to return yet). */
  const waiters = new Set<() => void>();
  let failures: { count: number; status: number } = { count: 0, status: 503 };
  let roundRobin = 0;
  let base = "";

  const wake = () => {
    for (const w of [...waiters]) w();
  };

  function topicOf(name: string, create = false, partitions = defaultPartitions): Topic | undefined {
    let t = topics.get(name);
    if (t === undefined && create) {
      t = { name, partitions: Array.from({ length: partitions }, () => []) };
      topics.set(name, t);
      // New topics change what pattern and name subscriptions cover: every group rebalances.
      for (const g of groups.values()) g.generation++;
    }
    return t;
  }

  function append(
    topic: Topic,
    key: ReturnType<typeof encodeData>,
    value: ReturnType<typeof encodeData>,
    partition?: number,
  ) {
    const n = topic.partitions.length;
    let p: number;
    if (partition !== undefined) {
      if (!Number.isInteger(partition) || partition < 0 || partition >= n)
        throw new HttpError(404, 40402, "Partition not found.");
      p = partition;
    } else if (key.bytes !== null) p = (murmur2(key.bytes) & 0x7fffffff) % n;
    else p = roundRobin++ % n;
    const log = topic.partitions[p];
    const rec: StoredRecord = {
      partition: p,
      offset: log.length,
      timestamp: Date.now(),
      key: key.bytes,
      value: value.bytes,
      keyType: key.type,
      valueType: value.type,
      headers: [],
    };
    log.push(rec);
    return rec;
  }

  function groupOf(name: string): Group {
    let g = groups.get(name);
    if (g === undefined) {
      g = { committed: new Map(), members: new Map(), generation: 0 };
      groups.set(name, g);
    }
    return g;
  }

  /** Removes idle instances (their group rebalances). */
  function expire(now: number): void {
    for (const g of groups.values()) {
      for (const [id, inst] of g.members) {
        if (now - inst.lastUsed > instanceTimeoutMs) {
          g.members.delete(id);
          g.generation++;
        }
      }
    }
  }

  function instanceOf(group: string, id: string): Instance {
    const inst = groups.get(group)?.members.get(id);
    if (inst === undefined) throw notFoundInstance();
    inst.lastUsed = Date.now();
    return inst;
  }

  const subscribedTopics = (inst: Instance): string[] =>
    inst.subscription ?? (inst.pattern ? [...topics.keys()].filter((t) => inst.pattern?.test(t)) : []);

  /** Range assignment, per topic, over the group's subscribed members in id order. */
  function rebalance(g: Group): void {
    const members = [...g.members.values()].filter((m) => m.manual === null).sort((a, b) => (a.id < b.id ? -1 : 1));
    const next = new Map<Instance, string[]>(members.map((m) => [m, []]));
    const allTopics = new Set(members.flatMap(subscribedTopics));
    for (const name of [...allTopics].sort()) {
      const t = topics.get(name);
      if (!t) continue;
      const takers = members.filter((m) => subscribedTopics(m).includes(name));
      const n = t.partitions.length;
      const per = Math.floor(n / takers.length);
      const extra = n % takers.length;
      let p = 0;
      takers.forEach((m, i) => {
        const count = per + (i < extra ? 1 : 0);
        for (let k = 0; k < count; k++) next.get(m)?.push(tp(name, p++));
      });
    }
    for (const m of members) {
      const assigned = next.get(m) ?? [];
      for (const k of [...m.positions.keys()]) if (!assigned.includes(k)) m.positions.delete(k);
      m.assigned = assigned;
      m.generation = g.generation;
    }
  }

  /** Where a newly assigned partition starts: the committed offset, else auto.offset.reset. */
  function startOf(g: Group, inst: Instance, key: string): number {
    const committed = g.committed.get(key);
    if (committed !== undefined) return committed;
    const [topic, p] = splitTp(key);
    const end = topics.get(topic)?.partitions[p]?.length ?? 0;
    if (inst.reset === "latest") return end;
    if (inst.reset === "none")
      throw new HttpError(
        500,
        50002,
        `Kafka error: Undefined offset with no reset policy for partitions: [${topic}-${p}]`,
      );
    return 0;
  }

  /** A poll joins the group: the assignment is brought up to date, and new partitions get their start. */
  function join(inst: Instance): void {
    const g = groupOf(inst.group);
    if (inst.manual === null && inst.generation !== g.generation) rebalance(g);
    const parts = inst.manual ?? inst.assigned;
    for (const k of parts) if (!inst.positions.has(k)) inst.positions.set(k, startOf(g, inst, k));
  }

  function take(inst: Instance, maxBytes: number): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    let bytes = 0;
    const parts = [...(inst.manual ?? inst.assigned)].sort();
    for (const k of parts) {
      const [topic, p] = splitTp(k);
      const log = topics.get(topic)?.partitions[p] ?? [];
      let pos = inst.positions.get(k) ?? 0;
      while (pos < log.length && out.length < maxPollRecords && bytes < maxBytes) {
        const r = log[pos];
        let key: unknown;
        let value: unknown;
        if (inst.format === "json") {
          try {
            key = r.key === null ? null : JSON.parse(r.key.toString("utf8"));
            value = r.value === null ? null : JSON.parse(r.value.toString("utf8"));
          } catch (err) {
            throw new HttpError(500, 50002, `Kafka error: ${(err as Error).message}`);
          }
        } else {
          key = r.key === null ? null : r.key.toString("base64");
          value = r.value === null ? null : r.value.toString("base64");
        }
        out.push({ topic, key, value, partition: p, offset: r.offset });
        bytes += (r.key?.length ?? 0) + (r.value?.length ?? 0);
        pos++;
      }
      inst.positions.set(k, pos);
    }
    if (inst.autoCommit) {
      const g = groupOf(inst.group);
      for (const [k, pos] of inst.positions) g.committed.set(k, pos);
    }
    return out;
  }

  const requestedFormat = (accept: string): Format => {
    for (const f of ["json", "avro", "jsonschema", "protobuf"] as const)
      if (accept.includes(`application/vnd.kafka.${f}.v2+json`)) return f;
    return "binary";
  };

  const partitionsOf = (body: unknown): string[] => {
    const parts = (body as { partitions?: Array<{ topic: string; partition: number }> })?.partitions;
    if (!Array.isArray(parts)) throw new HttpError(422, 42200, "partitions: may not be null");
    return parts.map((x) => tp(String(x.topic), Number(x.partition)));
  };

  const offsetsOf = (body: unknown): Array<{ key: string; offset: number }> => {
    const list = (body as { offsets?: Array<{ topic: string; partition: number; offset: number }> })?.offsets;
    if (!Array.isArray(list)) throw new HttpError(422, 42200, "offsets: may not be null");
    return list.map((x) => ({ key: tp(String(x.topic), Number(x.partition)), offset: Number(x.offset) }));
  };

  const noAssignment = (key: string) => {
    const [t, p] = splitTp(key);
    return new HttpError(409, 40903, `Illegal state: No current assignment for partition ${t}-${p}`);
  };

  async function v3(
    method: string,
    parts: string[],
    text: string,
  ): Promise<{ status: number; body: unknown; raw?: string }> {
    const cluster = {
      kind: "KafkaCluster",
      metadata: { self: `${base}/v3/clusters/${clusterId}`, resource_name: `crn:///kafka=${clusterId}` },
      cluster_id: clusterId,
      controller: { related: `${base}/v3/clusters/${clusterId}/brokers/0` },
      brokers: { related: `${base}/v3/clusters/${clusterId}/brokers` },
      topics: { related: `${base}/v3/clusters/${clusterId}/topics` },
      broker_configs: { related: `${base}/v3/clusters/${clusterId}/broker-configs` },
      topic_configs: { related: `${base}/v3/clusters/${clusterId}/topic-configs` },
      reassignment: { related: `${base}/v3/clusters/${clusterId}/topics/-/partitions/-/reassignment` },
    };
    if (parts.length === 1 && method === "GET") {
      return {
        status: 200,
        body: { kind: "KafkaClusterList", metadata: { self: `${base}/v3/clusters`, next: null }, data: [cluster] },
      };
    }
    if (parts[1] !== clusterId) throw new HttpError(404, 404, `Cluster ${parts[1]} cannot be found.`);
    if (parts.length === 2 && method === "GET") return { status: 200, body: cluster };
    if (parts.length === 3 && parts[2] === "topics" && method === "POST") {
      const req = JSON.parse(text || "{}") as { topic_name?: string; partitions_count?: number };
      const name = String(req.topic_name ?? "");
      if (!/^[A-Za-z0-9._-]{1,249}$/.test(name)) throw new HttpError(400, 400, "Invalid topic name.");
      if (topics.has(name)) throw new HttpError(400, 40002, `Topic '${name}' already exists.`);
      const t = topicOf(name, true, req.partitions_count ?? defaultPartitions) as Topic;
      return { status: 201, body: topicData(t) };
    }
    if (parts.length === 5 && parts[2] === "topics" && parts[4] === "records" && method === "POST") {
      const name = decodeURIComponent(parts[3]);
      const t = topicOf(name, true);
      if (!t) throw new HttpError(404, 40403, "This server does not host this topic-partition.");
      let requests: unknown[];
      try {
        requests = concatenatedJson(text);
      } catch (err) {
        throw new HttpError(400, 400, `Unexpected request body: ${(err as Error).message}`);
      }
      const reports = requests.map((r) => {
        try {
          const req = r as { key?: unknown; value?: unknown; partition_id?: number };
          const key = encodeData(req.key);
          const value = encodeData(req.value);
          const rec = append(t, key, value, req.partition_id);
          return {
            error_code: 200,
            cluster_id: clusterId,
            topic_name: name,
            partition_id: rec.partition,
            offset: rec.offset,
            timestamp: new Date(rec.timestamp).toISOString(),
            ...(key.type ? { key: { type: key.type, size: key.bytes?.length ?? 0 } } : {}),
            ...(value.type ? { value: { type: value.type, size: value.bytes?.length ?? 0 } } : {}),
          };
        } catch (err) {
          const e = err instanceof HttpError ? err : new HttpError(400, 400, (err as Error).message);
          return { error_code: e.status, message: e.message };
        }
      });
      wake();
      return reports.length === 1
        ? { status: 200, body: reports[0] }
        : { status: 200, body: null, raw: reports.map((x) => JSON.stringify(x)).join("\n") };
    }
    throw new HttpError(404, 404, "HTTP 404 Not Found");
  }

  function topicData(t: Topic) {
    return {
      kind: "KafkaTopic",
      metadata: {
        self: `${base}/v3/clusters/${clusterId}/topics/${t.name}`,
        resource_name: `crn:///kafka=${clusterId}/topic=${t.name}`,
      },
      cluster_id: clusterId,
      topic_name: t.name,
      is_internal: false,
      replication_factor: 1,
      partitions_count: t.partitions.length,
      partitions: { related: `${base}/v3/clusters/${clusterId}/topics/${t.name}/partitions` },
      configs: { related: `${base}/v3/clusters/${clusterId}/topics/${t.name}/configs` },
      partition_reassignments: {
        related: `${base}/v3/clusters/${clusterId}/topics/${t.name}/partitions/-/reassignment`,
      },
    };
  }

  async function v2(
    method: string,
    parts: string[],
    text: string,
    req: IncomingMessage,
    url: URL,
  ): Promise<{ status: number; body?: unknown; type?: string }> {
    const body = text.trim() === "" ? null : (JSON.parse(text) as unknown);
    if (parts[0] === "topics") {
      if (parts.length === 1 && method === "GET") return { status: 200, body: [...topics.keys()].sort() };
      const t = topics.get(decodeURIComponent(parts[1] ?? ""));
      if (!t) throw new HttpError(404, 40401, "Topic not found.");
      if (parts.length === 2 && method === "GET") {
        return {
          status: 200,
          body: {
            name: t.name,
            configs: {},
            partitions: t.partitions.map((_, p) => ({
              partition: p,
              leader: 0,
              replicas: [{ broker: 0, leader: true, in_sync: true }],
            })),
          },
        };
      }
      if (parts.length === 5 && parts[2] === "partitions" && parts[4] === "offsets" && method === "GET") {
        const log = t.partitions[Number(parts[3])];
        if (!log) throw new HttpError(404, 40402, "Partition not found.");
        return { status: 200, body: { beginning_offset: 0, end_offset: log.length } };
      }
      throw new HttpError(404, 404, "HTTP 404 Not Found");
    }
    // /consumers/{group}[/instances/{instance}[/…]]
    const group = decodeURIComponent(parts[1] ?? "");
    if (parts.length === 2 && method === "POST") {
      const cfg = (body ?? {}) as Record<string, unknown>;
      const name = String(cfg.name ?? cfg.id ?? `rest-consumer-${randomUUID()}`);
      const format = String(cfg.format ?? "binary") as Format;
      if (!["binary", "json", "avro", "jsonschema", "protobuf"].includes(format))
        throw new HttpError(422, 42204, `Invalid consumer configuration: format ${format}`);
      const reset = String(cfg["auto.offset.reset"] ?? "latest");
      if (!["earliest", "latest", "none"].includes(reset))
        throw new HttpError(422, 42204, `Invalid consumer configuration: auto.offset.reset ${reset}`);
      const g = groupOf(group);
      if (g.members.has(name))
        throw new HttpError(
          409,
          40902,
          "Consumer with specified consumer ID already exists in the specified consumer group.",
        );
      g.members.set(name, {
        group,
        id: name,
        format,
        reset: reset as Instance["reset"],
        autoCommit: String(cfg["auto.commit.enable"] ?? "true") === "true",
        subscription: null,
        pattern: null,
        manual: null,
        assigned: [],
        generation: -1,
        positions: new Map(),
        lastUsed: Date.now(),
      });
      g.generation++;
      return { status: 200, body: { instance_id: name, base_uri: `${base}/consumers/${group}/instances/${name}` } };
    }
    if (parts[2] !== "instances" || parts.length < 4) throw new HttpError(404, 404, "HTTP 404 Not Found");
    const id = decodeURIComponent(parts[3]);
    const rest = parts.slice(4).join("/");
    const g = groupOf(group);
    if (rest === "" && method === "DELETE") {
      if (!g.members.delete(id)) throw notFoundInstance();
      g.generation++;
      return { status: 204 };
    }
    const inst = instanceOf(group, id);
    switch (`${method} ${rest}`) {
      case "POST subscription": {
        const s = (body ?? {}) as { topics?: string[]; topic_pattern?: string };
        if (inst.manual !== null)
          throw new HttpError(
            409,
            40903,
            "Illegal state: Subscription to topics, partitions and pattern are mutually exclusive",
          );
        if (Array.isArray(s.topics)) {
          inst.subscription = s.topics.map(String);
          inst.pattern = null;
        } else if (typeof s.topic_pattern === "string") {
          inst.pattern = new RegExp(`^(?:${s.topic_pattern})$`);
          inst.subscription = null;
        } else throw new HttpError(422, 42200, "topics or topic_pattern is required");
        g.generation++;
        return { status: 204 };
      }
      case "GET subscription":
        return { status: 200, body: { topics: subscribedTopics(inst) } };
      case "DELETE subscription":
        inst.subscription = null;
        inst.pattern = null;
        inst.positions.clear();
        g.generation++;
        return { status: 204 };
      case "POST assignments": {
        if (inst.subscription !== null || inst.pattern !== null)
          throw new HttpError(
            409,
            40903,
            "Illegal state: Subscription to topics, partitions and pattern are mutually exclusive",
          );
        inst.manual = partitionsOf(body);
        for (const k of [...inst.positions.keys()]) if (!inst.manual.includes(k)) inst.positions.delete(k);
        return { status: 204 };
      }
      case "GET assignments":
        return {
          status: 200,
          body: {
            partitions: (inst.manual ?? inst.assigned).map((k) => {
              const [topic, partition] = splitTp(k);
              return { topic, partition };
            }),
          },
        };
      case "GET records": {
        const want = requestedFormat(String(req.headers.accept ?? ""));
        if (want !== inst.format)
          throw new HttpError(
            406,
            40601,
            "The requested embedded data format does not match the deserializer for this consumer instance",
          );
        const timeout = url.searchParams.has("timeout") ? Number(url.searchParams.get("timeout")) : requestTimeoutMs;
        const maxBytesParam = Number(url.searchParams.get("max_bytes") ?? -1);
        const maxBytes = maxBytesParam > 0 ? maxBytesParam : Number.POSITIVE_INFINITY;
        join(inst);
        let out = take(inst, maxBytes);
        if (out.length === 0 && timeout > 0) {
          await new Promise<void>((resolve) => {
            const done = () => {
              clearTimeout(timer);
              waiters.delete(done);
              resolve();
            };
            const timer = setTimeout(done, timeout);
            waiters.add(done);
          });
          if (groupOf(group).members.get(id) !== inst) throw notFoundInstance();
          join(inst);
          out = take(inst, maxBytes);
        }
        return { status: 200, body: out, type: `application/vnd.kafka.${inst.format}.v2+json` };
      }
      case "POST offsets": {
        // No body: commit every position reached (kafka-rest's commitSync()); a list commits each offset + 1.
        const list = body === null ? null : offsetsOf(body);
        if (list === null) {
          for (const k of inst.manual ?? inst.assigned) {
            const pos = inst.positions.get(k);
            if (pos !== undefined) g.committed.set(k, pos);
          }
        } else {
          for (const { key, offset } of list) g.committed.set(key, offset + 1);
        }
        return { status: 200 };
      }
      case "GET offsets": {
        const keys = partitionsOf(body);
        const offsets = keys.flatMap((k) => {
          const c = g.committed.get(k);
          if (c === undefined) return [];
          const [topic, partition] = splitTp(k);
          return [{ topic, partition, offset: c, metadata: "" }];
        });
        return { status: 200, body: { offsets } };
      }
      case "POST positions": {
        const list = offsetsOf(body);
        const owned = inst.manual ?? inst.assigned;
        for (const { key } of list) if (!owned.includes(key)) throw noAssignment(key);
        for (const { key, offset } of list) inst.positions.set(key, offset);
        return { status: 204 };
      }
      case "POST positions/beginning":
      case "POST positions/end": {
        const keys = partitionsOf(body);
        const owned = inst.manual ?? inst.assigned;
        for (const k of keys) if (!owned.includes(k)) throw noAssignment(k);
        for (const k of keys) {
          const [topic, p] = splitTp(k);
          inst.positions.set(k, rest.endsWith("end") ? (topics.get(topic)?.partitions[p]?.length ?? 0) : 0);
        }
        return { status: 204 };
      }
      default:
        throw new HttpError(404, 404, "HTTP 404 Not Found");
    }
  }

  function control(method: string, parts: string[], text: string): { status: number; body: unknown } {
    if (method === "POST" && parts[0] === "fail") {
      const b = JSON.parse(text || "{}") as { count?: number; status?: number };
      failures = { count: b.count ?? 1, status: b.status ?? 503 };
      return { status: 200, body: { ok: true } };
    }
    if (method === "GET" && parts[0] === "topics" && parts[2] === "records") {
      return { status: 200, body: api.records(decodeURIComponent(parts[1])) };
    }
    if (method === "GET" && parts[0] === "groups" && parts[2] === "offsets") {
      return { status: 200, body: api.committed(decodeURIComponent(parts[1])) };
    }
    if (method === "GET" && parts[0] === "groups" && parts[2] === "members") {
      return { status: 200, body: [...(groups.get(decodeURIComponent(parts[1]))?.members.keys() ?? [])] };
    }
    return { status: 404, body: { error: "no such control endpoint" } };
  }

  async function handle(req: IncomingMessage, res: ServerResponse, text: string): Promise<void> {
    const url = new URL(req.url ?? "/", base);
    const parts = url.pathname.split("/").filter(Boolean);
    const method = req.method ?? "GET";
    const send = (status: number, body: unknown, type = V2) => {
      if (body === undefined) res.writeHead(status).end();
      else res.writeHead(status, { "content-type": type }).end(JSON.stringify(body));
    };
    if (parts[0] === "__control") {
      const out = control(method, parts.slice(1), text);
      send(out.status, out.body, "application/json");
      return;
    }
    expire(Date.now());
    if (failures.count > 0) {
      failures.count--;
      send(failures.status, { error_code: failures.status * 100 + 1, message: "Unavailable (stand-in failure)." });
      return;
    }
    try {
      if (parts[0] === "v3") {
        const out = await v3(method, parts.slice(1), text);
        if (out.raw !== undefined) res.writeHead(out.status, { "content-type": "application/json" }).end(out.raw);
        else send(out.status, out.body, "application/json");
        return;
      }
      if (parts[0] === "topics" || parts[0] === "consumers") {
        const out = await v2(method, parts, text, req, url);
        send(out.status, out.body, out.type ?? V2);
        return;
      }
      throw new HttpError(404, 404, "HTTP 404 Not Found");
    } catch (err) {
      if (err instanceof HttpError) send(err.status, { error_code: err.errorCode, message: err.message });
      else if (err instanceof SyntaxError)
        send(400, { error_code: 400, message: `Unexpected request body: ${err.message}` });
      else send(500, { error_code: 500, message: (err as Error).message });
    }
  }

  const api: KafkaRest = {
    url: "",
    port: 0,
    clusterId,
    createTopic(name, partitions) {
      if (topics.has(name)) throw new Error(`topic ${name} exists`);
      topicOf(name, true, partitions);
    },
    produce(topic, records) {
      const t = topicOf(topic, true) as Topic;
      const out = records.map((r) => {
        const rec = append(
          t,
          encodeData(r.key === undefined ? null : { type: "JSON", data: r.key }),
          encodeData({ type: "JSON", data: r.value }),
          r.partition,
        );
        return { partition: rec.partition, offset: rec.offset };
      });
      wake();
      return out;
    },
    records(topic) {
      const t = topics.get(topic);
      if (!t) return [];
      return t.partitions.flatMap((log) =>
        log.map((r) => ({
          topic,
          partition: r.partition,
          offset: r.offset,
          timestamp: new Date(r.timestamp).toISOString(),
          key: decode(r.key, r.keyType),
          value: decode(r.value, r.valueType),
          headers: r.headers,
        })),
      );
    },
    committed(group) {
      const out: Record<string, number> = {};
      for (const [k, v] of groups.get(group)?.committed ?? []) {
        const [t, p] = splitTp(k);
        out[`${t}/${p}`] = v;
      }
      return out;
    },
    failNext(count, status = 503) {
      failures = { count, status };
    },
    close: async () => {},
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      handle(req, res, Buffer.concat(chunks).toString("utf8")).catch((err: Error) => {
        if (!res.headersSent) res.writeHead(500).end(JSON.stringify({ error_code: 500, message: err.message }));
      });
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => {
      if (opts.unref) server.unref();
      const port = (server.address() as { port: number }).port;
      base = `http://${host}:${port}`;
      api.url = base;
      api.port = port;
      api.close = () =>
        new Promise((r) => {
          wake();
          server.closeAllConnections();
          server.close(() => r());
        });
      resolve(api);
    });
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  startKafkaRest({ port: Number(process.argv[2] ?? 8082) }).then((k) =>
    process.stdout.write(`Kafka REST Proxy stand-in (in memory, no broker) on ${k.url}; cluster id ${k.clusterId}\n`),
  );
}
