import { env } from "cloudflare:test";

/** Bindings only the test configuration sets (vitest.workers.config.ts). */
export interface TestBindings {
  TEST_WEBHOOK_URL: string;
  /** An Upstash REST bridge of its own, for tests that make Redis slow or failing. */
  TEST_CHAOS_REDIS_URL: string;
  TEST_CHAOS_REDIS_TOKEN: string;
}

export const testEnv = env as unknown as Env & TestBindings;
