import { env } from "cloudflare:test";

/** Bindings only the test configuration sets (vitest.workers.config.ts). */
export interface TestBindings {
  TEST_WEBHOOK_URL: string;
  /** An Upstash REST bridge of its own, for tests that make Redis slow or failing. */
  TEST_CHAOS_REDIS_URL: string;
  TEST_CHAOS_REDIS_TOKEN: string;
  /** Pull sources: the paged JSON endpoint (test/support/source-endpoint.ts) and the Kafka REST Proxy stand-in. */
  TEST_SOURCE_HTTP_URL: string;
  TEST_KAFKA_REST_URL: string;
  /** A Kafka REST Proxy stand-in of its own for sinks. */
  TEST_KAFKA_SINK_URL: string;
}

export const testEnv = env as unknown as Env & TestBindings;
