import { defineConfig } from "@playwright/test";

// Debian's chromium (browsers cannot be downloaded here); SSEVCR_CHROMIUM points elsewhere.
export const CHROMIUM = process.env.SSEVCR_CHROMIUM || "/usr/bin/chromium";

export default defineConfig({
  testDir: "test/playwright",
  // one replay server (CORS on) for the run; in a project that installed ssevcr:
  // globalSetup: "ssevcr/playwright-setup"
  globalSetup: "./src/playwright-setup.js",
  timeout: 60_000,
  workers: 1,
  reporter: "list",
  use: {
    browserName: "chromium",
    launchOptions: {
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"],
    },
  },
});
