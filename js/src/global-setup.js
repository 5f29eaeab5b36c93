// One `ssevcr replay --control` server for a whole test run: started by the runner's global
// setup, before any worker, and announced to the workers through SSEVCR_CONTROL_URL and
// SSEVCR_CONTROL_TOKEN (which they inherit), so every test's session lands on it.

import { replayOptions } from "./bin.js";
import { ControlServer } from "./session.js";

/** Start the run's server (unless one is already set in the environment); returns its stop. */
export async function startRunServer({ cors = false } = {}) {
  if (process.env.SSEVCR_CONTROL_URL) return async () => {};
  if (!(await replayOptions()).has("--control")) return async () => {}; // a process per replay
  const server = await ControlServer.start({ cors });
  Object.assign(process.env, server.env);
  return async () => {
    delete process.env.SSEVCR_CONTROL_URL;
    delete process.env.SSEVCR_CONTROL_TOKEN;
    await server.stop();
  };
}

/** $SSEVCR_CORS: unset (no CORS), `*`, or origins separated by commas. */
export function corsFromEnv(env = process.env) {
  const value = env.SSEVCR_CORS;
  if (!value) return false;
  return value === "*" ? true : value.split(",").map((o) => o.trim());
}
