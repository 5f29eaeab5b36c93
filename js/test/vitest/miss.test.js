// A request the cassette has no recording for fails the test, with ssevcr's explanation, even
// when the test swallowed the SDK's error: a vitest of its own runs test/fixtures/miss.vitest.js.
import { expect, test } from "vitest";

import { runFixture } from "../fixtures/run.js";

test("a miss fails the test with the closest recording and what differed", () => {
  const { code, output } = runFixture("vitest", "miss.vitest.js");
  expect(code, output).toBe(1);
  expect(output).toContain("MissError");
  expect(output).toMatch(
    /1 request matched no recorded interaction \(test "asks something the cassette lacks"\)/,
  );
  expect(output).toContain("closest: #1 POST");
  expect(output).toMatch(/body \$\.messages\[0\]\.content: recorded ".*", got "Something else"/);
  expect(output).toMatch(/1 failed/);
});
