import type { SsevcrFixture, TestCassetteOptions } from "./index.js";

/** Serve (or record) the current test's cassette. */
export const ssevcr: SsevcrFixture;
/** Defaults for every ssevcr() call of this test file. */
export function configure(options: TestCassetteOptions): void;
/** Wrap a `test.concurrent` function: its cassettes are stopped, and its misses fail it, when it
 * ends (jest runs no afterEach for concurrent tests). */
export function withCassettes<F extends (...args: any[]) => any>(
  fn: F,
): (...args: Parameters<F>) => Promise<Awaited<ReturnType<F>>>;
