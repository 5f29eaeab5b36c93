// Playwright Test: an `ssevcr` fixture. `await ssevcr(options)` serves the test's own cassette
// (cassettes/<file>/<test title>.msgpack, or options.name / options.cassette), CORS on, and
// resolves with its replay; give the page `replay.url` as its API base, or route the page's
// requests to it with `ssevcr.route(page, pattern, replay)`. At the end of the test everything is
// stopped, and a request that matched no recording fails the test with ssevcr's explanation.
// Defaults for a project or file: test.use({ ssevcrOptions: { timing: "instant" } }).

import { test as base } from "@playwright/test";

import { SsevcrError } from "./errors.js";
import { TestCassettes } from "./testing.js";

export { expect } from "@playwright/test";

/**
 * Send the page's requests matching `pattern` to the replay instead (its URL + their path and
 * query), as the browser's own request (route.continue: the response still streams). The browser
 * cannot change a request's scheme, so an https:// pattern needs the page to take the replay's
 * URL as its base instead.
 */
export async function routeToReplay(page, pattern, replay) {
  const target = new URL(replay.url);
  await page.route(pattern, async (route) => {
    const url = new URL(route.request().url());
    if (url.protocol !== target.protocol) {
      await route.abort("failed");
      throw new SsevcrError(
        `cannot route ${url.href} to ${replay.url}: a browser request keeps its scheme ` +
          `(${url.protocol}); give the page the replay's URL as its API base instead`,
      );
    }
    // the replay's URL keeps its session prefix: /__ssevcr/s/ID + the page's path
    await route.continue({ url: `${replay.url}${url.pathname}${url.search}` });
  });
}

export const test = base.extend({
  ssevcrOptions: [{}, { option: true }],
  ssevcr: async ({ ssevcrOptions }, use, testInfo) => {
    const cassettes = new TestCassettes({
      file: testInfo.file,
      title: testInfo.titlePath.slice(1).join(" "),
      root: ssevcrOptions.root ?? process.cwd(),
      defaults: { cors: true, ...ssevcrOptions },
    });
    const start = (options) => cassettes.start(options);
    start.path = (options) => cassettes.path(options);
    start.route = routeToReplay;
    try {
      await use(start);
    } finally {
      await cassettes.finish();
    }
  },
});
