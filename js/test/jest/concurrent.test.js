// jest test.concurrent with withCassettes(): the isolation cases (../isolation.js) run at once,
// each with its own session, cassette and faults; each test's cassette is named after itself
// (jest's per-test context, not the last test started); each is stopped when its function ends
// (jest runs no afterEach for concurrent tests); a miss fails the concurrent test that made it.

import { describe, expect, test } from "@jest/globals";

import { ssevcr, withCassettes } from "../../src/jest.js";
import { safeName } from "../../src/testing.js";
import { REPO } from "../cassettes.js";
import { runFixture } from "../fixtures/run.js";
import { isolationCases } from "../isolation.js";

const ran = []; // { replay, start, end } of each concurrent case
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

describe("concurrent", () => {
  for (const { title, body } of isolationCases("jest")) {
    test.concurrent(
      title,
      withCassettes(async () => {
        const start = performance.now();
        const replay = await body(expect, ssevcr);
        ran.push({ replay, start, end: performance.now() });
      }),
    );
  }

  for (const n of [1, 2, 3]) {
    test.concurrent(
      `named after itself ${n}`,
      withCassettes(async () => {
        await sleep(40 * (4 - n)); // the others start (and finish) in between
        const path = ssevcr.path({ root: REPO });
        expect(path).toBe(
          `${REPO}/cassettes/concurrent.test/${safeName(`concurrent named after itself ${n}`)}.msgpack`,
        );
      }),
    );
  }
});

test("the concurrent cases overlapped, each had its own session, each was stopped", () => {
  expect(ran).toHaveLength(6);
  expect(new Set(ran.map((r) => r.replay.id)).size).toBe(6);
  expect(ran.every((r) => r.replay.ended)).toBe(true); // withCassettes stopped each session
  const overlapping = ran.filter((r) =>
    ran.some((o) => o !== r && o.start < r.end && r.start < o.end),
  );
  expect(overlapping.length).toBeGreaterThanOrEqual(2);
});

test("a miss fails its concurrent test; ssevcr() unwrapped in one says what to do", () => {
  const { code, output } = runFixture("jest", "concurrent.jest.js");
  expect(code).toBe(1);
  expect(output).toMatch(
    /1 request matched no recorded interaction \(test "asks something the cassette lacks, concurrently"\)/,
  );
  expect(output).toContain(
    'ssevcr() in the concurrent test "unwrapped": wrap its function in withCassettes()',
  );
  expect(output).toMatch(/Tests: +2 failed, 1 passed, 3 total/);
}, 120_000);
