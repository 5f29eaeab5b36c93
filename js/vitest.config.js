import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/vitest/**/*.test.js"],
    globalSetup: ["ssevcr/vitest-setup"], // one replay server for the run, a session per test
    pool: "threads", // tests of a file run concurrently where marked, files in parallel threads
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
