import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "core",
    include: ["core/**/*.test.ts", "sdk/test/**/*.test.ts"],
    environment: "node",
  },
});
