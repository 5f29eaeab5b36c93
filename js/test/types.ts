// Compiled by `npm run types` (tsc --noEmit): the published types accept what the README shows.
import OpenAI from "openai";

import { MissError, startReplay, type Replay } from "ssevcr";
import { ssevcr as jestSsevcr, withCassettes } from "ssevcr/jest";
import { test as pwTest } from "ssevcr/playwright";
import { test as vitestTest } from "ssevcr/vitest";

async function plain(): Promise<unknown> {
  const replay: Replay = await startReplay({
    cassette: "cassettes/examples/openai-chat-text.msgpack",
    timing: "scale:0.5",
    faults: ["truncate:after=3,end=abort"],
    seed: 1,
    cors: true,
  });
  const client = new OpenAI({ baseURL: replay.openaiBaseURL, apiKey: "test" });
  void client;
  await replay.setFaults(["status:429"]);
  const misses = await replay.misses();
  const journal = await replay.journal();
  void journal;
  if (misses.length) throw new MissError(misses);
  return replay.stop();
}

vitestTest("vitest", async ({ ssevcr }) => {
  const replay = await ssevcr({ timing: "instant" });
  const path: string = ssevcr.path();
  void path;
  void replay.openaiBaseURL;
});

pwTest("playwright", async ({ page, ssevcr }) => {
  const replay = await ssevcr({ name: "chat" });
  await ssevcr.route(page, "http://localhost:3000/api/**", replay);
  await page.goto(`http://localhost:8000/?api=${encodeURIComponent(replay.url)}`);
});

async function jestTest(): Promise<void> {
  const replay = await jestSsevcr({ faults: ["error:after=2"], record: "once" });
  void replay.anthropicBaseURL;
}

const concurrentBody: () => Promise<string> = withCassettes(async () => {
  const replay = await jestSsevcr({ timing: "instant" });
  return replay.openaiBaseURL;
});

void plain;
void jestTest;
void concurrentBody;
