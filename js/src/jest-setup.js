// jest `globalSetup: "ssevcr/jest-setup"` (and `globalTeardown: "ssevcr/jest-teardown"`): one
// replay server for the run (see global-setup.js); $SSEVCR_CORS turns CORS on for it.
import { corsFromEnv, startRunServer } from "./global-setup.js";

export default async function setup() {
  globalThis.__ssevcrStopRunServer = await startRunServer({ cors: corsFromEnv() });
}
