// jest: `ssevcr(options)` inside a test serves the test's own cassette
// (cassettes/<file>/<test title>.msgpack, or options.name / options.cassette) and resolves with
// its replay. Importing this module registers an afterEach that stops everything the test started
// and fails the test, with ssevcr's explanation, on a request that matched no recording.
//
//   import { ssevcr } from "ssevcr/jest";
//   test("streams the story", async () => {
//     const replay = await ssevcr({ timing: "instant" });
//     ...
//   });

import { afterEach, expect } from "@jest/globals";

import { SsevcrError } from "./errors.js";
import { TestCassettes } from "./testing.js";

let current = null;
let defaults = {};

/** Defaults for every ssevcr() call of this test file (e.g. { root, timing, upstream }). */
export function configure(options) {
  defaults = { ...defaults, ...options };
}

function cassettesOfThisTest() {
  const state = expect.getState();
  if (!state.currentTestName || !state.testPath) {
    throw new SsevcrError("ssevcr() from ssevcr/jest must be called inside a test");
  }
  if (!current || current.title !== state.currentTestName || current.file !== state.testPath) {
    current = new TestCassettes({
      file: state.testPath,
      title: state.currentTestName,
      root: defaults.root ?? process.cwd(),
      defaults,
    });
  }
  return current;
}

export async function ssevcr(options) {
  return cassettesOfThisTest().start(options);
}

/** The path the test's cassette gets (without starting anything). */
ssevcr.path = (options) => cassettesOfThisTest().path(options);

afterEach(async () => {
  const cassettes = current;
  current = null;
  if (cassettes) await cassettes.finish();
});
