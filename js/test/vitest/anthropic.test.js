// The official Node @anthropic-ai/sdk streaming from `ssevcr replay` over a real socket: the exact
// recorded text and tool input, the recorded gaps, and faults seen as the SDK's own errors.

import Anthropic from "@anthropic-ai/sdk";
import { describe, expect, test } from "vitest";

import { anthropicText, example, requestParams, show } from "../cassettes.js";
import { lateness, median } from "../timing.js";
import { replaysStoppedAfterEach } from "./replays.js";

const TOOLS = example("anthropic-tool-use");
const TEXT_CASSETTE = example("anthropic-text");
const RECORDED = show(TOOLS).interactions[0];

const start = replaysStoppedAfterEach();
const replay = (cassette, options) => start({ cassette, ...options });

function client(r, options = {}) {
  return new Anthropic({ baseURL: r.anthropicBaseURL, apiKey: "test", maxRetries: 0, ...options });
}

async function consume(c, cassette, requestOptions) {
  const t0 = performance.now();
  const out = { events: [], arrivals: [], error: null };
  try {
    const stream = await c.messages.create(requestParams(cassette), requestOptions);
    for await (const event of stream) {
      out.arrivals.push((performance.now() - t0) / 1000);
      out.events.push(event);
    }
  } catch (e) {
    out.error = e;
  }
  out.elapsed = (performance.now() - t0) / 1000;
  return out;
}

function textOf(events) {
  return events
    .filter((e) => e.type === "content_block_delta" && e.delta.type === "text_delta")
    .map((e) => e.delta.text)
    .join("");
}

test("the exact recorded text and tool input, with the recorded gaps", async () => {
  const r = await replay(TOOLS);
  const got = await consume(client(r), TOOLS);
  expect(got.error).toBeNull();
  expect(textOf(got.events)).toBe(anthropicText(RECORDED.events));
  // the SDK yields every event but its pings, in order, with the recorded payloads
  const recorded = RECORDED.events.filter((e) => e.type !== "ping");
  expect(got.events.map((e) => e.type)).toEqual(recorded.map((e) => e.type));
  got.events.forEach((e, i) => expect(e).toEqual(JSON.parse(recorded[i].data)));
  const late = lateness(
    got.arrivals,
    recorded.map((e) => e.at),
  );
  for (const l of late) expect(l).toBeGreaterThan(-0.002); // never before its recorded offset
  expect(median(late.map((l) => Math.abs(l - median(late))))).toBeLessThan(0.02);
});

describe("faults are the SDK's own errors", () => {
  test("truncate:after=3,end=abort: undici's 'terminated', unwrapped by the SDK", async () => {
    const r = await replay(TEXT_CASSETTE, {
      timing: "instant",
      faults: ["truncate:after=3,end=abort"],
    });
    const got = await consume(client(r), TEXT_CASSETTE);
    // events 1, 2 and 3 (a ping, which the SDK does not yield) arrived, then the body broke
    expect(got.events.map((e) => e.type)).toEqual(["message_start", "content_block_start"]);
    expect(got.error).toBeInstanceOf(TypeError);
    expect(got.error.message).toBe("terminated");
    expect(got.error.cause?.code).toBe("UND_ERR_SOCKET");
  });

  test("error:after=2: the provider's overloaded_error as APIError", async () => {
    const r = await replay(TEXT_CASSETTE, { timing: "instant", faults: ["error:after=2"] });
    const got = await consume(client(r), TEXT_CASSETTE);
    expect(got.events).toHaveLength(2);
    expect(got.error).toBeInstanceOf(Anthropic.APIError);
    expect(got.error.message).toContain("overloaded_error");
  });

  test("status:429: RateLimitError with retry-after", async () => {
    const r = await replay(TEXT_CASSETTE, { timing: "instant", faults: ["status:429"] });
    const got = await consume(client(r), TEXT_CASSETTE);
    expect(got.error).toBeInstanceOf(Anthropic.RateLimitError);
    expect(got.error.status).toBe(429);
    expect(got.error.headers.get("retry-after")).toMatch(/^\d+$/);
  });
});
