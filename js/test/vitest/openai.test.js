// The official Node openai SDK streaming from `ssevcr replay` over a real socket: the exact
// recorded text, the recorded gaps, and faults seen as the SDK's own errors.

import OpenAI from "openai";
import { describe, expect, test } from "vitest";

import { example, openaiText, requestParams, show } from "../cassettes.js";
import { lateness, median } from "../timing.js";
import { replaysStoppedAfterEach } from "./replays.js";

const CHAT = example("openai-chat-text");
const PARAMS = requestParams(CHAT);
const RECORDED = show(CHAT).interactions[0];
const TEXT = openaiText(RECORDED.events);

const start = replaysStoppedAfterEach();
const replay = (options) => start({ cassette: CHAT, ...options });

function client(r, options = {}) {
  return new OpenAI({ baseURL: r.openaiBaseURL, apiKey: "test", maxRetries: 0, ...options });
}

/** Stream the recorded request; the text, each chunk's arrival (s from the call) and the error. */
async function consume(c, requestOptions) {
  const t0 = performance.now();
  const out = { text: "", arrivals: [], error: null };
  try {
    const stream = await c.chat.completions.create(PARAMS, requestOptions);
    for await (const chunk of stream) {
      out.arrivals.push((performance.now() - t0) / 1000);
      out.text += chunk.choices[0]?.delta?.content ?? "";
    }
  } catch (e) {
    out.error = e;
  }
  out.elapsed = (performance.now() - t0) / 1000;
  return out;
}

test("the exact recorded text, with the recorded gaps", async () => {
  expect(TEXT.length).toBeGreaterThan(20);
  const r = await replay();
  const got = await consume(client(r));
  expect(got.error).toBeNull();
  expect(got.text).toBe(TEXT);
  // one SDK chunk per recorded event but [DONE], each at its recorded offset (never before it:
  // the clock starts before the request is sent; late only by load)
  const recorded = RECORDED.events.filter((e) => e.data !== "[DONE]").map((e) => e.at);
  expect(got.arrivals).toHaveLength(recorded.length);
  const late = lateness(got.arrivals, recorded);
  for (const l of late) expect(l).toBeGreaterThan(-0.002);
  // the gaps are the recorded ones: the lateness varies little along the stream (median < 20 ms)
  expect(median(late.map((l) => Math.abs(l - median(late))))).toBeLessThan(0.02);
  expect(got.elapsed).toBeGreaterThan(RECORDED.duration * 0.95);
});

test("instant timing: the same text, without the wait", async () => {
  const r = await replay({ timing: "instant" });
  const got = await consume(client(r));
  expect(got.text).toBe(TEXT);
  expect(got.elapsed).toBeLessThan(RECORDED.duration);
});

describe("faults are the SDK's own errors", () => {
  test("truncate: the body breaks after event 3", async () => {
    const r = await replay({ timing: "instant", faults: ["truncate:after=3,end=abort"] });
    const got = await consume(client(r));
    expect(got.text).toBe(openaiText(RECORDED.events.slice(0, 3)));
    expect(got.arrivals).toHaveLength(3);
    // the SDK does not wrap a broken body: undici's own error reaches the caller
    expect(got.error).toBeInstanceOf(TypeError);
    expect(got.error.message).toBe("terminated");
    expect(got.error.cause?.code).toBe("UND_ERR_SOCKET");
  });

  test("error: the provider's own mid-stream error event", async () => {
    const r = await replay({ timing: "instant", faults: ["error:after=3"] });
    const got = await consume(client(r));
    expect(got.text).toBe(openaiText(RECORDED.events.slice(0, 3)));
    expect(got.error).toBeInstanceOf(OpenAI.APIError);
    expect(got.error.message).toMatch(/server had an error/);
  });

  test("status:429: RateLimitError with retry-after", async () => {
    const r = await replay({ timing: "instant", faults: ["status:429"] });
    const got = await consume(client(r));
    expect(got.error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(got.error.status).toBe(429);
    expect(got.error.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(got.text).toBe("");
  });

  test("status:429,times=1: the SDK's own retry succeeds", async () => {
    const r = await replay({ timing: "instant", faults: ["status:429,times=1,retry_after=10ms"] });
    const got = await consume(client(r, { maxRetries: 1 }));
    expect(got.error).toBeNull();
    expect(got.text).toBe(TEXT);
  });

  test("truncate:after=3,end=close: a shorter stream, and no error", async () => {
    const r = await replay({ timing: "instant", faults: ["truncate:after=3,end=close"] });
    const got = await consume(client(r));
    expect(got.error).toBeNull(); // the SDK does not notice the missing [DONE]: check for it
    expect(got.arrivals).toHaveLength(3);
  });

  test("corrupt:event=3: the SDK's JSON SyntaxError", async () => {
    const r = await replay({ timing: "instant", faults: ["corrupt:event=3"] });
    const got = await consume(client(r));
    expect(got.arrivals).toHaveLength(2);
    expect(got.error).toBeInstanceOf(SyntaxError);
  });
});
