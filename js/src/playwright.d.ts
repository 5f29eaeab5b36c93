import type {
  Page,
  TestType,
  PlaywrightTestArgs,
  PlaywrightTestOptions,
  PlaywrightWorkerArgs,
  PlaywrightWorkerOptions,
} from "@playwright/test";

import type { Replay, SsevcrFixture, TestCassetteOptions, TestReplay } from "./index.js";

export { expect } from "@playwright/test";

export interface PlaywrightSsevcr extends SsevcrFixture {
  route(page: Page, pattern: string | RegExp, replay: Replay | TestReplay): Promise<void>;
}

export function routeToReplay(
  page: Page,
  pattern: string | RegExp,
  replay: Replay | TestReplay,
): Promise<void>;

export const test: TestType<
  PlaywrightTestArgs &
    PlaywrightTestOptions & { ssevcr: PlaywrightSsevcr; ssevcrOptions: TestCassetteOptions },
  PlaywrightWorkerArgs & PlaywrightWorkerOptions
>;
