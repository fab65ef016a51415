/**
 * The raw archive's API (core/archive.ts): the manifest of a tenant's segments, straight from R2's listing
 * (each object carries its manifest entry as custom metadata), and an export of a stream's events over a
 * time range as NDJSON, streamed segment by segment. Read keys; the caller's tenant only (every key is
 * under raw/<tenant>/), prefix-limited credentials only their streams.
 */
import { Hono } from "hono";
import { z } from "zod";
import {
  archiveEnabled,
  archivePrefix,
  datesOf,
  EXPORT_MAX_SEGMENTS,
  EXPORT_MAX_SPAN_MS,
  gunzip,
  manifestOf,
  parseArchiveRange,
  retentionCutoff,
  type SegmentManifest,
} from "../../core/archive";
import type { Config } from "../../core/config";
import { isStreamName } from "../../core/event";
import { streamAllowed } from "../../core/keys";
import { historyEnabled } from "../../db/client";
import { REPLAY_MAX_DAYS, type ReplayStatus } from "../../durable-objects/metric-actor/replay";
import { assertStream, assertUnrestricted, requireKey } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { actor, registry } from "../lib/registry";
import type { AppEnv } from "../lib/types";
import { jsonBody, onlyParams } from "../lib/validate";

export const archive = new Hono<AppEnv>();

/** Segments per page of the manifest (R2 lists at most 1,000 keys a call). */
export const MANIFEST_PAGE = { default: 100, max: 1000 } as const;

function bucket(env: Env, config: Config): R2Bucket {
  if (!archiveEnabled(env, config)) throw new ApiError("archive_disabled");
  return env.ARCHIVE as R2Bucket;
}

function streamParam(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (!isStreamName(raw)) throw new ApiError("invalid_stream_name");
  return raw;
}

/** The objects of one date folder of one stream, in key order (segments of an hour in log order). */
async function* segmentsOn(b: R2Bucket, prefix: string): AsyncGenerator<R2Object> {
  let cursor: string | undefined;
  do {
    const page = await b.list({ prefix, cursor, limit: 1000, include: ["customMetadata"] });
    yield* page.objects;
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
}

archive.get("/v1/archive", requireKey("read"), onlyParams("stream", "from", "to", "limit", "cursor"), async (c) => {
  const grant = c.get("grant");
  const stream = streamParam(c.req.query("stream"));
  if (stream !== undefined) assertStream(grant, stream);
  const { from, to } = parseArchiveRange(c.req.query("from"), c.req.query("to"), Date.now(), 400 * 86_400_000);
  const rawLimit = c.req.query("limit");
  const limit = rawLimit === undefined ? MANIFEST_PAGE.default : Number(rawLimit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MANIFEST_PAGE.max) {
    throw new ApiError("invalid_request", `limit must be an integer from 1 to ${MANIFEST_PAGE.max}.`);
  }
  const prefix = archivePrefix(grant.tenantId, stream);
  const b = bucket(c.env, c.get("config"));
  // One listing page; segments outside the range or the credential's prefixes are left out of it.
  const page = await b.list({
    prefix,
    cursor: c.req.query("cursor") || undefined,
    limit,
    include: ["customMetadata"],
  });
  const segments = page.objects
    .map((o) => manifestOf(o.key, o.size, o.customMetadata))
    .filter((m): m is SegmentManifest => m !== null && m.to_ts >= from && m.from_ts < to)
    .filter((m) => streamAllowed(grant, m.stream));
  return c.json({
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    segments,
    next_cursor: page.truncated ? page.cursor : null,
  });
});

archive.get("/v1/archive/export", requireKey("read"), onlyParams("stream", "from", "to"), async (c) => {
  const grant = c.get("grant");
  const stream = streamParam(c.req.query("stream"));
  if (stream === undefined) throw new ApiError("invalid_request", "stream: name the stream to export.");
  assertStream(grant, stream);
  const { from, to } = parseArchiveRange(c.req.query("from"), c.req.query("to"), Date.now(), EXPORT_MAX_SPAN_MS);
  const b = bucket(c.env, c.get("config"));
  const prefix = archivePrefix(grant.tenantId, stream);
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const out = writable.getWriter();
  const enc = new TextEncoder();
  const pump = async () => {
    let segments = 0;
    try {
      for (const date of datesOf(from, to)) {
        for await (const o of segmentsOn(b, `${prefix}${date}/`)) {
          const m = manifestOf(o.key, o.size, o.customMetadata);
          if (m === null || m.to_ts < from || m.from_ts >= to) continue;
          if (++segments > EXPORT_MAX_SEGMENTS) throw new Error(`more than ${EXPORT_MAX_SEGMENTS} segments`);
          const body = await b.get(o.key);
          if (body === null) continue; // removed by retention meanwhile
          const lines = (await gunzip(await body.arrayBuffer())).split("\n").filter((l) => l.length > 0);
          const whole = m.from_ts >= from && m.to_ts < to;
          const kept = whole ? lines : lines.filter((l) => inRange(l, from, to));
          if (kept.length > 0) await out.write(enc.encode(`${kept.join("\n")}\n`));
        }
      }
      await out.close();
    } catch (err) {
      // The status line is sent: a broken export ends without its final newline-terminated line set.
      console.error(`edgepulse: archive export failed: ${(err as Error).message}`);
      await out.abort(err);
    }
  };
  c.executionCtx.waitUntil(pump());
  return c.body(readable, 200, {
    "content-type": "application/x-ndjson; charset=utf-8",
    "content-disposition": `attachment; filename="${stream}-${new Date(from).toISOString().slice(0, 10)}.ndjson"`,
    "cache-control": "no-store",
  });
});

/** Replay requests: the range to rebuild from the archive (epoch ms or ISO-8601, ≤ REPLAY_MAX_DAYS). */
export const ReplayBody = z
  .strictObject({
    from: z.union([z.number(), z.string()]).describe("Start of the range (event time)."),
    to: z.union([z.number(), z.string()]).describe("End of the range, exclusive."),
  })
  .meta({ id: "ReplayRequest" });

archive.post("/v1/streams/:name/replay", requireKey("admin"), jsonBody(ReplayBody), async (c) => {
  const grant = c.get("grant");
  const name = streamParam(c.req.param("name")) as string;
  assertStream(grant, name);
  const config = c.get("config");
  bucket(c.env, config);
  if (!historyEnabled(c.env)) throw new ApiError("history_disabled");
  const body = c.req.valid("json");
  const now = Date.now();
  const { from, to } = parseArchiveRange(String(body.from), String(body.to), now, REPLAY_MAX_DAYS * 86_400_000);
  // Before the tenant's retention the archive holds nothing any more: a replay there would empty history.
  const { days } = await retentionView(c.env, grant.tenantId, config.ARCHIVE_RETENTION_DAYS);
  const kept = Date.parse(`${retentionCutoff(now, days)}T00:00:00Z`);
  if (from < kept) {
    throw new ApiError(
      "invalid_range",
      `from: the archive keeps ${days} days (events dated ${new Date(kept).toISOString().slice(0, 10)} or later); a replay before that would replace history with nothing.`,
    );
  }
  if (from >= now - c.get("config").ALLOWED_LATENESS_MS) {
    throw new ApiError(
      "invalid_range",
      "from must be older than the live windows (ALLOWED_LATENESS_MS): newer minutes are live ingest's to write.",
    );
  }
  const r = (await actor(c.env, grant.tenantId, name).startReplay(grant.tenantId, name, from, to)) as {
    started: boolean;
    replay: ReplayStatus;
  };
  if (!r.started) throw new ApiError("replay_running", undefined, { replay: r.replay });
  return c.json({ replay: r.replay }, 202);
});

archive.get("/v1/streams/:name/replay", requireKey("read"), onlyParams(), async (c) => {
  const grant = c.get("grant");
  const name = streamParam(c.req.param("name")) as string;
  assertStream(grant, name);
  const replay = (await actor(c.env, grant.tenantId, name).replayStatus()) as ReplayStatus | null;
  if (replay === null) throw new ApiError("not_found", `No replay has been started for stream '${name}'.`);
  return c.json({ replay });
});

// Retention ------------------------------------------------------------------

export const RetentionBody = z
  .strictObject({
    days: z
      .int()
      .min(1)
      .max(3650)
      .nullable()
      .describe("Days of events (by their date) the archive keeps; null: the deployment's ARCHIVE_RETENTION_DAYS."),
  })
  .meta({ id: "ArchiveRetentionBody" });

async function retentionView(env: Env, tenant: string, deployment: number) {
  const own = await registry(env, tenant).archiveRetentionDays();
  return { days: own === null ? deployment : Math.min(own, deployment), tenant_days: own, deployment_days: deployment };
}

archive.get("/v1/archive/retention", requireKey("read"), onlyParams(), async (c) =>
  c.json(await retentionView(c.env, c.get("grant").tenantId, c.get("config").ARCHIVE_RETENTION_DAYS)),
);

archive.put("/v1/archive/retention", requireKey("admin"), jsonBody(RetentionBody), async (c) => {
  const grant = c.get("grant");
  assertUnrestricted(grant, "setting the tenant's archive retention");
  const deployment = c.get("config").ARCHIVE_RETENTION_DAYS;
  const { days } = c.req.valid("json");
  if (days !== null && days > deployment) {
    throw new ApiError(
      "invalid_request",
      `days: this deployment keeps the archive at most ${deployment} days (ARCHIVE_RETENTION_DAYS); give ${deployment} or fewer.`,
    );
  }
  if ((await registry(c.env, grant.tenantId).setArchiveRetentionDays(days)) === null) {
    throw new ApiError("tenant_not_found");
  }
  return c.json(await retentionView(c.env, grant.tenantId, deployment));
});

function inRange(line: string, from: number, to: number): boolean {
  const ts = (JSON.parse(line) as { ts: number }).ts;
  return ts >= from && ts < to;
}
