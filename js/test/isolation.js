// Concurrent tests, each with its own session, cassette and faults on the one replay server of
// the run; every test checks that its journal holds its own requests only (the x-test header
// each one sends) with its own faults fired. Two files import this with other ids, so vitest
// runs them in two threads at once, each file's tests concurrently; test/jest/concurrent.test.js
// runs the same cases as jest test.concurrent tests (isolationCases: no runner imported here).

import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { REPO, anthropicText, example, openaiText, requestParams, show } from "./cassettes.js";

const OPENAI = show(example("openai-chat-text")).interactions[0].events;
const ANTHROPIC = show(example("anthropic-tool-use")).interactions[0].events;

const CASES = [
  { sdk: "openai", faults: [], text: openaiText(OPENAI) },
  { sdk: "anthropic", faults: [], text: anthropicText(ANTHROPIC) },
  { sdk: "openai", faults: ["truncate:after=4,end=close"], text: openaiText(OPENAI.slice(0, 4)) },
  {
    sdk: "anthropic",
    faults: ["truncate:after=9,end=close"],
    text: anthropicText(ANTHROPIC.slice(0, 9)),
  },
  { sdk: "openai", faults: ["status:429"], status: 429 },
  { sdk: "anthropic", faults: ["status:529"], status: 529 },
];

async function run(c, replay, id) {
  const options = { apiKey: "t", maxRetries: 0, defaultHeaders: { "x-test": id } };
  if (c.sdk === "openai") {
    const client = new OpenAI({ baseURL: replay.openaiBaseURL, ...options });
    let text = "";
    const stream = await client.chat.completions.create(requestParams(example("openai-chat-text")));
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    return text;
  }
  const client = new Anthropic({ baseURL: replay.anthropicBaseURL, ...options });
  let text = "";
  const stream = await client.messages.create(requestParams(example("anthropic-tool-use")));
  for await (const e of stream) {
    if (e.type === "content_block_delta" && e.delta.type === "text_delta") text += e.delta.text;
  }
  return text;
}

/** Each case: its title and its body, given the runner's `expect` and a start of its cassette. */
export function isolationCases(prefix) {
  return CASES.map((c, n) => {
    const id = `${prefix}-${n}`;
    const title = `${id}: ${c.sdk} ${c.faults.join(" ") || "clean"}`;
    const body = async (expect, ssevcr) => {
      const cassette = c.sdk === "openai" ? "openai-chat-text" : "anthropic-tool-use";
      const replay = await ssevcr({
        cassette: `cassettes/examples/${cassette}.msgpack`,
        root: REPO,
        timing: "scale:0.3",
        faults: c.faults,
      });
      if (c.status) {
        await expect(run(c, replay, id)).rejects.toMatchObject({ status: c.status });
      } else {
        expect(await run(c, replay, id)).toBe(c.text);
      }
      const journal = await replay.journal();
      expect(journal).toHaveLength(1);
      const sent = journal[0].request_headers.filter(([k]) => k.toLowerCase() === "x-test");
      expect(sent).toEqual([["x-test", id]]);
      expect(journal[0].fired).toEqual(c.faults);
      expect(journal[0].session).toBe(replay.id);
      expect(await replay.misses()).toEqual([]);
      return replay;
    };
    return { title, body };
  });
}
