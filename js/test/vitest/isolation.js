// The isolation cases (../isolation.js) as vitest concurrent tests.
import { expect } from "vitest";

import { test } from "../../src/vitest.js";
import { isolationCases } from "../isolation.js";

export function isolationTests(prefix) {
  for (const { title, body } of isolationCases(prefix)) {
    test.concurrent(title, async ({ ssevcr }) => {
      await body(expect, ssevcr);
    });
  }
}
