// A session's journal, misses and faults changed between requests, through the control API.

import OpenAI from "openai";
import { expect } from "vitest";

import { test } from "../../src/vitest.js";
import { REPO, example, openaiText, requestParams, show } from "../cassettes.js";

const CHAT = "cassettes/examples/openai-chat-text.msgpack";
const EVENTS = show(example("openai-chat-text")).interactions[0].events;
const PARAMS = requestParams(example("openai-chat-text"));

function client(replay) {
  return new OpenAI({ baseURL: replay.openaiBaseURL, apiKey: "test", maxRetries: 0 });
}

test("the journal: a stream left after 3 chunks, then one read to the end", async ({ ssevcr }) => {
  // recorded timing: the server hands each event over when it was recorded, so what the
  // client took is what it had read when it left
  const replay = await ssevcr({ cassette: CHAT, root: REPO, allowRepeats: true });
  let n = 0;
  for await (const chunk of await client(replay).chat.completions.create(PARAMS)) {
    void chunk;
    if (++n === 3) break; // the SDK aborts the request: the connection closes
  }
  let text = "";
  for await (const chunk of await client(replay).chat.completions.create(PARAMS)) {
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  expect(text).toBe(openaiText(EVENTS));
  const deadline = Date.now() + 10_000; // the server notices the FIN on its next write
  let journal = await replay.journal();
  while (journal.some((p) => p.state === "open") && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    journal = await replay.journal();
  }
  const [left, whole] = journal;
  expect(left).toMatchObject({ state: "left", completed: false });
  // the SDK closes the connection: a FIN, or a RST when bytes it never read were still in its
  // socket (the server had written the next events before the close)
  expect(["fin", "rst"]).toContain(left.how);
  expect(left.left_after_event).toBeGreaterThanOrEqual(3);
  expect(left.left_after_event).toBeLessThan(EVENTS.length);
  expect(whole).toMatchObject({ state: "completed", completed: true, events: EVENTS.length });
  const ua = whole.request_headers.find(([k]) => k.toLowerCase() === "user-agent");
  expect(ua[1]).toMatch(/^OpenAI\/JS /);
  const auth = whole.request_headers.find(([k]) => k.toLowerCase() === "authorization");
  expect(auth[1]).toBe("REDACTED");
});

test("setFaults: other faults for the requests that follow", async ({ ssevcr }) => {
  const replay = await ssevcr({
    cassette: CHAT,
    root: REPO,
    timing: "instant",
    allowRepeats: true,
  });
  const text = async () => {
    let out = "";
    for await (const chunk of await client(replay).chat.completions.create(PARAMS)) {
      out += chunk.choices[0]?.delta?.content ?? "";
    }
    return out;
  };
  expect(await text()).toBe(openaiText(EVENTS));
  await replay.setFaults(["status:429"]);
  await expect(text()).rejects.toBeInstanceOf(OpenAI.RateLimitError);
  await replay.setFaults(["truncate:after=6,end=close"]);
  expect(await text()).toBe(openaiText(EVENTS.slice(0, 6)));
  await replay.setFaults([]);
  expect(await text()).toBe(openaiText(EVENTS));
  const fired = (await replay.journal()).map((p) => p.fired);
  expect(fired).toEqual([[], ["status:429"], ["truncate:after=6,end=close"], []]);
  await expect(replay.setFaults(["nonsense:x=1"])).rejects.toThrow(/400/);
});

test("misses() while the test runs; stop() gives the final summary", async ({ ssevcr }) => {
  // allowMisses: this test checks its misses itself; they do not fail it
  const replay = await ssevcr({ cassette: CHAT, root: REPO, timing: "instant", allowMisses: true });
  for await (const chunk of await client(replay).chat.completions.create(PARAMS)) void chunk;
  const other = { ...PARAMS, messages: [{ role: "user", content: "Another question" }] };
  await expect(client(replay).chat.completions.create(other)).rejects.toBeInstanceOf(
    OpenAI.NotFoundError,
  );
  const misses = await replay.misses();
  expect(misses).toHaveLength(1);
  expect(misses[0].message).toContain('got "Another question"');
  // one interaction, played once (a test's default): the same request again is a miss too
  await expect(client(replay).chat.completions.create(PARAMS)).rejects.toBeInstanceOf(
    OpenAI.NotFoundError,
  );
  const summary = await replay.stop();
  expect(summary).toMatchObject({ plays: 1, misses: 2, once: true });
  expect(summary.miss_list).toHaveLength(2);
});

test.concurrent("each session its own CORS, on the run's one server", async ({ ssevcr }) => {
  // the run's server has no CORS; each session asks for its own (or none)
  const page = "http://page.test";
  const sessions = {
    one: await ssevcr({ cassette: CHAT, root: REPO, allowRepeats: true, cors: [page] }),
    any: await ssevcr({ cassette: CHAT, root: REPO, allowRepeats: true, cors: true }),
    none: await ssevcr({ cassette: CHAT, root: REPO, allowRepeats: true, allowMisses: true }),
  };
  const asked = async (replay, origin, method = "POST") => {
    const headers = { origin, "content-type": "application/json" };
    if (method === "OPTIONS") headers["access-control-request-method"] = "POST";
    const r = await fetch(`${replay.openaiBaseURL}/chat/completions`, {
      method,
      headers,
      body: method === "POST" ? JSON.stringify({ ...PARAMS, stream: true }) : undefined,
    });
    await r.arrayBuffer();
    return [r.status, r.headers.get("access-control-allow-origin")];
  };
  expect(await asked(sessions.one, page)).toEqual([200, page]);
  expect(await asked(sessions.one, "http://other.test")).toEqual([200, null]);
  expect(await asked(sessions.any, "http://other.test")).toEqual([200, "http://other.test"]);
  expect(await asked(sessions.none, page)).toEqual([200, null]);
  expect(await asked(sessions.one, page, "OPTIONS")).toEqual([204, page]);
  expect(await asked(sessions.none, page, "OPTIONS")).toEqual([404, null]); // a miss, no CORS
  for (const replay of Object.values(sessions)) await replay.stop();
});
