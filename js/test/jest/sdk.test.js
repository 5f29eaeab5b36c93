// jest (native ESM) with the ssevcr/jest helper: the Node openai and @anthropic-ai/sdk SDKs
// streaming from cassettes, faults per test, and a miss failing the test with ssevcr's words.

import Anthropic from "@anthropic-ai/sdk";
import { describe, expect, test } from "@jest/globals";
import OpenAI from "openai";

import { configure, ssevcr } from "../../src/jest.js";
import { REPO, anthropicText, example, openaiText, requestParams, show } from "../cassettes.js";
import { runFixture } from "../fixtures/run.js";

configure({ root: REPO, timing: "instant" });
const CHAT = "cassettes/examples/openai-chat-text.msgpack";
const ANTHROPIC = "cassettes/examples/anthropic-tool-use.msgpack";
const CHAT_EVENTS = show(example("openai-chat-text")).interactions[0].events;

async function chat(replay) {
  const client = new OpenAI({ baseURL: replay.openaiBaseURL, apiKey: "test", maxRetries: 0 });
  const stream = await client.chat.completions.create(requestParams(example("openai-chat-text")));
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  return text;
}

test("cassettes/<file>/<test title>.msgpack", () => {
  expect(ssevcr.path()).toBe(
    `${REPO}/cassettes/sdk.test/cassettes--file---test-title-.msgpack.msgpack`,
  );
});

test("openai: the exact recorded text", async () => {
  const replay = await ssevcr({ cassette: CHAT });
  expect(await chat(replay)).toBe(openaiText(CHAT_EVENTS));
});

test("anthropic: the exact recorded text", async () => {
  const replay = await ssevcr({ cassette: ANTHROPIC });
  const client = new Anthropic({ baseURL: replay.anthropicBaseURL, apiKey: "test", maxRetries: 0 });
  const stream = await client.messages.create(requestParams(example("anthropic-tool-use")));
  let text = "";
  for await (const e of stream) {
    if (e.type === "content_block_delta" && e.delta.type === "text_delta") text += e.delta.text;
  }
  expect(text).toBe(anthropicText(show(example("anthropic-tool-use")).interactions[0].events));
});

describe("faults per test", () => {
  test("truncate: undici's 'terminated' after the first events", async () => {
    const replay = await ssevcr({ cassette: CHAT, faults: ["truncate:after=4,end=reset"] });
    await expect(chat(replay)).rejects.toThrow("terminated");
  });

  test("error:after=3: OpenAI APIError", async () => {
    const replay = await ssevcr({ cassette: CHAT, faults: ["error:after=3"] });
    await expect(chat(replay)).rejects.toBeInstanceOf(OpenAI.APIError);
  });

  test("status:429: RateLimitError", async () => {
    const replay = await ssevcr({ cassette: CHAT, faults: ["status:429"] });
    await expect(chat(replay)).rejects.toBeInstanceOf(OpenAI.RateLimitError);
  });
});

test("a miss fails the test with the closest recording and what differed", () => {
  const { code, output } = runFixture("jest", "miss.jest.js");
  expect(code).toBe(1);
  expect(output).toContain("MissError");
  expect(output).toMatch(
    /1 request matched no recorded interaction \(test "asks something the cassette lacks"\)/,
  );
  expect(output).toContain("closest: #1 POST");
  expect(output).toMatch(/body \$\.messages\[0\]\.content: recorded ".*", got "Something else"/);
}, 120_000);
