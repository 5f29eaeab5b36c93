import type { TestAPI } from "vitest";

import type { SsevcrFixture, TestCassetteOptions } from "./index.js";

export { expect } from "vitest";

export interface SsevcrFixtures {
  ssevcr: SsevcrFixture;
}

export const test: TestAPI<SsevcrFixtures>;
export const it: TestAPI<SsevcrFixtures>;
export function withSsevcr<T extends object = object>(
  testApi?: TestAPI<T>,
  defaults?: TestCassetteOptions,
): TestAPI<T & SsevcrFixtures>;
