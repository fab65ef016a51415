import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
import { createTestDatabase } from "./test/support/pg";
import { startSourceEndpoint } from "./test/support/source-endpoint";
import { startKafkaRest } from "./tools/kafka-rest";
import { startBridge } from "./tools/pg-bridge";
import { startUpstashBridge } from "./tools/upstash-bridge";
import { startReceiver } from "./tools/webhook-receiver";

export const TEST_ADMIN_TOKEN = "test-operator-token";

export default defineConfig(async () => {
  // The real PostgreSQL, reached from workerd through the project's own WebSocket bridge.
  const databaseUrl = await createTestDatabase("edgepulse_test_workers");
  const bridge = await startBridge(0, "127.0.0.1", { unref: true });
  // A real HTTP receiver for alert webhooks (tests read what it got, and switch it down and up).
  const receiver = await startReceiver(0, { unref: true });
  // The real Redis behind the project's Upstash REST bridge: rate limits and the shared key cache.
  const upstash = await startUpstashBridge({ token: "test-upstash-token", unref: true });
  // A second bridge to the same Redis for tests that make Redis slow, failing or unreachable, so they
  // never disturb the files running beside them.
  const chaos = await startUpstashBridge({ token: "test-chaos-token", unref: true });
  // Pull sources (test/workers/sources.test.ts): a JSON endpoint with paged feeds and scripted failures, and
  // the in-memory Kafka REST Proxy stand-in (no broker runs here).
  const sourceEndpoint = await startSourceEndpoint({ unref: true });
  const kafkaRest = await startKafkaRest({ unref: true });
  // A second stand-in for sinks (test/workers/sinks.test.ts): its scripted failures never reach the sources'.
  const kafkaSink = await startKafkaRest({ unref: true });
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            ADMIN_TOKEN: TEST_ADMIN_TOKEN,
            MAX_EVENTS_PER_BATCH: "50",
            MAX_BODY_BYTES: "65536",
            DATABASE_URL: databaseUrl,
            PG_BRIDGE: bridge.url,
            FLUSH_INTERVAL_MS: "100",
            FLUSH_TIMEOUT_MS: "2000",
            // Flush retries back off from FLUSH_INTERVAL_MS; capped here so that, after a database outage a test
            // makes (however long a slow machine stretches it), the retry that succeeds comes within 2 s.
            FLUSH_MAX_BACKOFF_MS: "2000",
            SHARD_FOLD_AFTER_MS: "1000",
            SHARD_QUEUE_MAX_EVENTS: "100",
            MAX_STREAMS_PER_TENANT: "30",
            MAX_DIM_VALUES: "5",
            // Small scrape budgets, so test/workers/metrics.test.ts reaches them with a few streams.
            ARCHIVE_FLUSH_MS: "100",
            ARCHIVE_MAX_PENDING_EVENTS: "1000",
            METRICS_MAX_SERIES: "200",
            METRICS_MAX_BREAKDOWNS: "2",
            ALLOW_HTTP_WEBHOOKS: "true",
            TEST_WEBHOOK_URL: receiver.url,
            UPSTASH_REDIS_REST_URL: upstash.url,
            UPSTASH_REDIS_REST_TOKEN: upstash.token,
            TEST_CHAOS_REDIS_URL: chaos.url,
            TEST_CHAOS_REDIS_TOKEN: chaos.token,
            TEST_SOURCE_HTTP_URL: sourceEndpoint.url,
            TEST_KAFKA_REST_URL: kafkaRest.url,
            TEST_KAFKA_SINK_URL: kafkaSink.url,
            // The Upstash bridge runs in vitest's own (busy) process: give Redis calls room, so a slow answer
            // is never taken for a timeout. Tests of the timeout set their own short value (soundness.test.ts).
            RATE_LIMIT_TIMEOUT_MS: "2000",
          },
        },
      }),
    ],
    test: {
      name: "workers",
      include: ["test/workers/**/*.test.ts"],
      // Files run in parallel on two cores: tests that await deliveries and flushes need room under load.
      testTimeout: 30_000,
      // Console calls inside Durable Objects go straight to workerd's output, not through vitest's RPC: a
      // console call from an object that abortAllDurableObjects() broke is forwarded through I/O that never
      // completes, and the file never finishes (workers-sdk#14180, fixed in a pool release that needs Node 22).
      disableConsoleIntercept: true,
    },
  };
});
