// Replays a vitest file starts itself (one `ssevcr replay` each, not a session of the run's
// server), stopped after each test.
import { afterEach } from "vitest";

import { startReplay } from "../../src/index.js";

/** `startReplay` for the calling file: every replay it started is stopped after each test. */
export function replaysStoppedAfterEach() {
  const started = [];
  afterEach(async () => {
    for (const r of started.splice(0)) await r.stop();
  });
  return async (options) => {
    const r = await startReplay(options);
    started.push(r);
    return r;
  };
}
