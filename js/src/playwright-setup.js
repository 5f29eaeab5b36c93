// Playwright `globalSetup: "ssevcr/playwright-setup"`: one replay server for the run, CORS on
// for any origin (pages read the replay from their own origin) unless $SSEVCR_CORS names some.
import { corsFromEnv, startRunServer } from "./global-setup.js";

export default async function setup() {
  return startRunServer({ cors: corsFromEnv() || true });
}
