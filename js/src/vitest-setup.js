// vitest `globalSetup: ["ssevcr/vitest-setup"]`: one replay server for the run (see
// global-setup.js); $SSEVCR_CORS turns CORS on for it.
import { corsFromEnv, startRunServer } from "./global-setup.js";

export default async function setup() {
  return startRunServer({ cors: corsFromEnv() });
}
