import type { SsevcrFixture, TestCassetteOptions } from "./index.js";

/** Serve (or record) the current test's cassette. */
export const ssevcr: SsevcrFixture;
/** Defaults for every ssevcr() call of this test file. */
export function configure(options: TestCassetteOptions): void;
