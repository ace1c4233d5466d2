import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // One throwaway influxd for the whole run; every test file gets its own database.
    globalSetup: ["test/support/global-influxd.ts"],
    // Every answer a test receives from a platform is checked against its served OpenAPI document.
    setupFiles: ["test/support/contract-every-answer.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: end-to-end files each run a platform, so keep two at a time.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
