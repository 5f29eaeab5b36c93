// What a cassette says, as ssevcr itself derives it (`ssevcr show --json`: its own SSE parser on
// the recorded bytes; `ssevcr export`: the JSON twin), so tests never write expected text by hand.

import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { findSsevcr } from "../src/index.js";

export const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const EXAMPLES = join(REPO, "cassettes", "examples");

export function example(name) {
  return join(EXAMPLES, `${name}.msgpack`);
}

function ssevcr(...args) {
  return execFileSync(findSsevcr(), args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
}

/** `ssevcr show --json` of a cassette: interactions with their events (at, gap, data, type). */
export function show(path) {
  return JSON.parse(ssevcr("show", path, "--json"));
}

/** The JSON twin of a cassette (requests with their bodies). */
export function exported(path) {
  return JSON.parse(ssevcr("export", path));
}

/** The request body of interaction `n` (0-based), parsed: what the SDK call must send to match. */
export function requestParams(path, n = 0) {
  const request = exported(path).interactions[n].request;
  return JSON.parse(request.body);
}

/** The text of an OpenAI chat completion stream: every delta's content, in order. */
export function openaiText(events) {
  let text = "";
  for (const e of events) {
    if (!e.data.startsWith("{")) continue;
    const chunk = JSON.parse(e.data);
    text += chunk.choices?.[0]?.delta?.content ?? "";
  }
  return text;
}

/** The text of an Anthropic Messages stream: every text_delta, in order. */
export function anthropicText(events) {
  let text = "";
  for (const e of events) {
    if (!e.data.startsWith("{")) continue;
    const chunk = JSON.parse(e.data);
    if (chunk.type === "content_block_delta" && chunk.delta?.type === "text_delta") {
      text += chunk.delta.text;
    }
  }
  return text;
}

/** Events carrying text, with their recorded arrival (seconds from the request). */
export function textEvents(events, textOf) {
  return events.filter((e) => textOf([e]) !== "");
}
