// vitest: a `test` with an `ssevcr` fixture. In a test, `await ssevcr(options)` serves the test's
// own cassette (cassettes/<file>/<test title>.msgpack, or options.name / options.cassette) and
// resolves with its replay; at the end of the test everything is stopped, and a request that
// matched no recording fails the test with ssevcr's explanation.
//
//   import { test, expect } from "ssevcr/vitest";
//   test("streams the story", async ({ ssevcr }) => {
//     const replay = await ssevcr({ timing: "instant" });
//     const client = new OpenAI({ baseURL: replay.openaiBaseURL, apiKey: "test" });
//     ...
//   });

import { test as base } from "vitest";

import { TestCassettes } from "./testing.js";

export { expect } from "vitest";

/** The test's titles, outermost describe first (vitest: task.suite chain up to the file). */
function titleOf(task) {
  const names = [task.name];
  for (let suite = task.suite; suite && suite.type === "suite" && suite !== task.file;) {
    if (suite.name) names.unshift(suite.name);
    suite = suite.suite;
  }
  return names.join(" ");
}

/** Make a vitest `test` whose `ssevcr` fixture uses these defaults (e.g. { root, timing }). */
export function withSsevcr(testApi = base, defaults = {}) {
  return testApi.extend({
    ssevcr: async ({ task }, use) => {
      const cassettes = new TestCassettes({
        file: task.file.filepath,
        title: titleOf(task),
        root: defaults.root ?? process.cwd(),
        defaults,
      });
      const start = (options) => cassettes.start(options);
      start.path = (options) => cassettes.path(options);
      try {
        await use(start);
      } finally {
        await cassettes.finish();
      }
    },
  });
}

export const test = withSsevcr(base);
export const it = test;
