// A replay with a process of its own (`server: false`, and what an ssevcr without --control
// gets): misses read from its log, the journal from its --journal file, setFaults restarting it
// on the same port.

import OpenAI from "openai";
import { expect, test } from "vitest";

import { startReplay } from "../../src/index.js";
import { example, openaiText, requestParams, show } from "../cassettes.js";

const CHAT = example("openai-chat-text");
const PARAMS = requestParams(CHAT);
const EVENTS = show(CHAT).interactions[0].events;

test("misses, journal and setFaults of a replay process", async () => {
  const replay = await startReplay({ cassette: CHAT, timing: "instant", server: false });
  try {
    expect(replay.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const client = new OpenAI({ baseURL: replay.openaiBaseURL, apiKey: "test", maxRetries: 0 });
    const text = async () => {
      let out = "";
      for await (const chunk of await client.chat.completions.create(PARAMS)) {
        out += chunk.choices[0]?.delta?.content ?? "";
      }
      return out;
    };
    expect(await text()).toBe(openaiText(EVENTS));
    const other = { ...PARAMS, messages: [{ role: "user", content: "Another question" }] };
    await expect(client.chat.completions.create(other)).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    const port = new URL(replay.url).port;
    await replay.setFaults(["status:429"]);
    expect(new URL(replay.url).port).toBe(port);
    await expect(text()).rejects.toBeInstanceOf(OpenAI.RateLimitError);

    const misses = await replay.misses();
    expect(misses).toHaveLength(1);
    expect(misses[0].message).toMatch(/^ssevcr: no recorded interaction in .* matches POST/);
    expect(misses[0].message).toContain('got "Another question"');
    const summary = await replay.stop();
    expect(summary.log).toMatch(/ssevcr replay: 1 play, 0 misses/); // the second process
    expect(summary.journal.map((p) => [p.status, p.fired])).toEqual([
      [200, []],
      [429, ["status:429"]],
    ]);
    expect(summary.miss_list).toEqual(misses);
  } finally {
    await replay.stop();
  }
});
