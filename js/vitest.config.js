import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/vitest/**/*.test.js"],
    pool: "threads", // tests of a file run concurrently where marked, files in parallel threads
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
