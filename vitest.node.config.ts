import { defineConfig } from "vitest/config";

/** Node-side tests against real services: the database layer, and the end-to-end stack of `npm start`. */
export default defineConfig({
  test: {
    name: "node",
    include: ["test/db/**/*.test.ts", "test/e2e/**/*.test.ts"],
    environment: "node",
    testTimeout: 60_000,
    hookTimeout: 180_000,
    fileParallelism: false,
  },
});
