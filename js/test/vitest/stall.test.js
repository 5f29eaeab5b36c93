// What the Node SDKs do on a stream that stalls (stall:before=3,for=forever), measured:
//   - the client's `timeout` covers the request until the response head only: after the head and
//     two events, a stream paused past that timeout raises nothing (it hangs until undici's own
//     300 s body timeout);
//   - aborting the request mid-stream (stream.controller.abort(), or an AbortSignal passed as the
//     request's `signal`) ends the iteration SILENTLY, as if the stream had ended: the SDKs
//     swallow the AbortError, so a caller must check for the terminal event itself.

import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { expect, test } from "vitest";

import { example, requestParams } from "../cassettes.js";
import { replaysStoppedAfterEach } from "./replays.js";

const TIMEOUT_MS = 4000; // the SDK's timeout; long enough for the head on a loaded machine
const PAST_IT_MS = TIMEOUT_MS + 2000;

const startReplay = replaysStoppedAfterEach();

const sleep = (ms) => new Promise((resolve) => setTimeout(() => resolve("still waiting"), ms));

async function stalled(name, open) {
  const r = await startReplay({
    cassette: example(name),
    timing: "instant",
    faults: ["stall:before=3,for=forever"],
  });
  const t0 = performance.now();
  const stream = await open(r, requestParams(example(name)));
  const events = stream[Symbol.asyncIterator]();
  const first = [await events.next(), await events.next()];
  expect(first.map((x) => x.done)).toEqual([false, false]);
  // the third event never comes, and the SDK's timeout does not fire
  const next = events.next();
  const outcome = await Promise.race([
    next.then(
      (x) => x,
      (e) => e,
    ),
    sleep(PAST_IT_MS),
  ]);
  expect(outcome).toBe("still waiting");
  expect(performance.now() - t0).toBeGreaterThan(TIMEOUT_MS);
  // an abort ends the stream as if it were complete: no error reaches the caller
  stream.controller.abort();
  await expect(next).resolves.toEqual({ done: true, value: undefined });
  return first.map((x) => x.value);
}

test("openai: the SDK timeout does not cover the body; an abort ends it silently", async () => {
  const firstTwo = await stalled("openai-chat-text", (r, params) =>
    new OpenAI({
      baseURL: r.openaiBaseURL,
      apiKey: "test",
      maxRetries: 0,
      timeout: TIMEOUT_MS,
    }).chat.completions.create(params),
  );
  expect(firstTwo[0].object).toBe("chat.completion.chunk");
});

test("anthropic: the SDK timeout does not cover the body; an abort ends it silently", async () => {
  const firstTwo = await stalled("anthropic-text", (r, params) =>
    new Anthropic({
      baseURL: r.anthropicBaseURL,
      apiKey: "test",
      maxRetries: 0,
      timeout: TIMEOUT_MS,
    }).messages.create(params),
  );
  expect(firstTwo.map((e) => e.type)).toEqual(["message_start", "content_block_start"]);
});
