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
//
// `test.concurrent`: jest runs no afterEach for concurrent tests, so wrap the test's function in
// `withCassettes()`, which does the same when the function ends. Each concurrent test gets its own
// cassettes (its own control session), found through jest's per-test context (jest >= 30).
//
//   test.concurrent("streams the story", withCassettes(async () => { ... await ssevcr() ... }));

import { afterEach, expect } from "@jest/globals";

import { SsevcrError } from "./errors.js";
import { TestCassettes } from "./testing.js";

const byTest = new Map(); // the running test (jest's test object, else its name) -> its cassettes
const wrapped = new Set(); // concurrent tests whose function withCassettes() wraps
let defaults = {};

/** Defaults for every ssevcr() call of this test file (e.g. { root, timing, upstream }). */
export function configure(options) {
  defaults = { ...defaults, ...options };
}

/** The running test: jest's own test object (right in concurrent tests too), and its name. */
function runningTest() {
  const state = expect.getState();
  const test = state.currentTestIdentity?.(); // jest 30: from the test's async context
  const title = state.currentConcurrentTestName?.() ?? state.currentTestName;
  return { test, key: test ?? title, title, file: state.testPath };
}

function cassettesOfThisTest() {
  const { test, key, title, file } = runningTest();
  if (!title || !file) {
    throw new SsevcrError("ssevcr() from ssevcr/jest must be called inside a test");
  }
  if (test?.concurrent && !wrapped.has(test)) {
    throw new SsevcrError(
      `ssevcr() in the concurrent test "${title}": wrap its function in withCassettes() from ` +
        "ssevcr/jest (jest runs no afterEach for concurrent tests, so nothing else would stop " +
        "its replay or report its misses)",
    );
  }
  let cassettes = byTest.get(key);
  if (!cassettes) {
    cassettes = new TestCassettes({ file, title, root: defaults.root ?? process.cwd(), defaults });
    byTest.set(key, cassettes);
  }
  return cassettes;
}

async function finishThisTest(key) {
  const cassettes = byTest.get(key);
  byTest.delete(key);
  if (cassettes) await cassettes.finish();
}

export async function ssevcr(options) {
  return cassettesOfThisTest().start(options);
}

/** The path the test's cassette gets (without starting anything). */
ssevcr.path = (options) => cassettesOfThisTest().path(options);

/** A test function whose cassettes are stopped (and its misses reported) when it ends. */
export function withCassettes(fn) {
  return async function (...args) {
    const { test, key } = runningTest();
    if (test) wrapped.add(test);
    let failed = false;
    try {
      return await fn.apply(this, args);
    } catch (e) {
      failed = true;
      throw e;
    } finally {
      if (test) wrapped.delete(test);
      try {
        await finishThisTest(key);
      } catch (e) {
        if (!failed) throw e; // (the test's own failure says more)
      }
    }
  };
}

afterEach(async () => {
  await finishThisTest(runningTest().key);
});
