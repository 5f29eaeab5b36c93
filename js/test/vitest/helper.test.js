// The vitest helper: the `ssevcr` fixture names a cassette per test, serves it, stops it at the
// end of the test; tests running concurrently each get their own cassette and faults.

import OpenAI from "openai";
import { describe, expect } from "vitest";

import { SsevcrError } from "../../src/index.js";
import { test } from "../../src/vitest.js";
import { REPO, example, openaiText, requestParams, show } from "../cassettes.js";

const CHAT = "cassettes/examples/openai-chat-text.msgpack";
const RECORDED = show(example("openai-chat-text")).interactions[0];
const TEXT = openaiText(RECORDED.events);

async function chat(replay) {
  const client = new OpenAI({ baseURL: replay.openaiBaseURL, apiKey: "test", maxRetries: 0 });
  let text = "";
  let chunks = 0;
  let error = null;
  try {
    const stream = await client.chat.completions.create(requestParams(example("openai-chat-text")));
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta?.content ?? "";
    }
  } catch (e) {
    error = e;
  }
  return { text, chunks, error };
}

describe("cassette names", () => {
  test("one per test, named after its file and title", ({ ssevcr }) => {
    expect(ssevcr.path()).toBe(
      `${process.cwd()}/cassettes/helper.test/cassette-names-one-per-test,-named-after-its-file-and-title.msgpack`,
    );
    expect(ssevcr.path({ name: "story" })).toBe(
      `${process.cwd()}/cassettes/helper.test/story.msgpack`,
    );
    expect(ssevcr.path({ name: CHAT, root: REPO })).toBe(`${REPO}/${CHAT}`);
  });

  test("a missing cassette in record mode none is a clear error", async ({ ssevcr }) => {
    await expect(ssevcr({ record: "none" })).rejects.toThrow(
      /no cassette .*cassette-names-a-missing-cassette.*record mode none.*SSEVCR_RECORD=once/,
    );
    await expect(ssevcr({ record: "sometimes" })).rejects.toThrow(SsevcrError);
  });
});

test("serves a cassette given by path, each interaction once", async ({ ssevcr }) => {
  const replay = await ssevcr({ cassette: CHAT, root: REPO, timing: "instant" });
  expect((await chat(replay)).text).toBe(TEXT);
  expect(replay.cassette).toBe(`${REPO}/${CHAT}`);
  expect(await replay.misses()).toEqual([]);
});

describe("concurrent tests: each its own cassette and faults", () => {
  // five tests at once, each with other faults on the same cassette, or another cassette
  const cases = [
    { faults: [], chunks: RECORDED.events.length - 1, text: TEXT },
    {
      faults: ["truncate:after=2,end=close"],
      chunks: 2,
      text: openaiText(RECORDED.events.slice(0, 2)),
    },
    {
      faults: ["truncate:after=5,end=close"],
      chunks: 5,
      text: openaiText(RECORDED.events.slice(0, 5)),
    },
    { faults: ["status:429"], status: 429 },
    { faults: ["status:503"], status: 503 },
  ];
  for (const [n, c] of cases.entries()) {
    test.concurrent(`case ${n}: ${c.faults.join(" ") || "clean"}`, async ({ ssevcr }) => {
      const replay = await ssevcr({
        cassette: CHAT,
        root: REPO,
        timing: "scale:0.2",
        faults: c.faults,
      });
      const got = await chat(replay);
      if (c.status) {
        expect(got.error?.status).toBe(c.status);
      } else {
        expect(got.error).toBeNull();
        expect(got.chunks).toBe(c.chunks);
        expect(got.text).toBe(c.text);
      }
    });
  }
});
