// The chat page: POST an OpenAI-style streaming chat completion with fetch(), read the body with
// a ReadableStream reader, parse the SSE with ./sse.js and append each delta's text as it arrives.
//
// Query parameters: api (base URL of the API, e.g. the `ssevcr replay --cors` URL; default: this
// origin), timeout (ms without a byte before giving up; default 2000), model (default
// gpt-4o-2024-08-06, the model of cassettes/examples/openai-chat-text.msgpack).
//
// States (on <body data-state> and #status): idle, waiting (request sent), streaming, done, and
// the errors: network (no response), http (a non-2xx answer), bad-type (a 2xx answer that is not
// text/event-stream), aborted (the connection broke mid-stream), provider (the provider's own
// error event), bad-event (an event that is not JSON, or bytes that are not UTF-8), incomplete
// (the stream ended without [DONE]), timeout (no byte for `timeout` ms).
//
// What no page can see: an OpenAI chat stream numbers nothing, so a middle event dropped or sent
// twice leaves a well-formed stream (the page ends "done" with the text changed).

import { $, apiBase, stateSetter } from "./page.js";
import { SSEDecoder } from "./sse.js";

const params = new URLSearchParams(location.search);
const API = apiBase(params);
const TIMEOUT_MS = Number(params.get("timeout") || 2000);
const MODEL = params.get("model") || "gpt-4o-2024-08-06";

const LABELS = {
  idle: "Idle",
  waiting: "Waiting for the response…",
  streaming: "Streaming…",
  done: "Done",
  network: "Error: network",
  http: "Error: HTTP",
  "bad-type": "Error: not an event stream",
  aborted: "Error: stream aborted",
  provider: "Error: provider",
  "bad-event": "Error: bad event",
  incomplete: "Error: incomplete stream",
  timeout: "Error: timed out",
};

class ProviderError extends Error {}

const setState = stateSetter(LABELS);

function showStats(stats) {
  const footer = $("stats");
  for (const [k, v] of Object.entries(stats)) footer.dataset[k] = String(v);
  const n = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;
  footer.textContent =
    `${n(stats.reads, "read")}, ${n(stats.bytes, "byte")}, ${n(stats.events, "event")}; ` +
    `${n(stats.splitReads, "read")} ended inside an event`;
}

// One event of an OpenAI chat completion stream: returns true at [DONE].
function handle(event, answer) {
  if (event.data === "[DONE]") return true;
  let chunk;
  try {
    chunk = JSON.parse(event.data);
  } catch (e) {
    throw new SyntaxError(`event is not JSON: ${event.data.slice(0, 80)}`);
  }
  if (event.type === "error" || chunk.error) {
    const error = chunk.error || chunk;
    throw new ProviderError(error.message || JSON.stringify(error));
  }
  for (const choice of chunk.choices || []) {
    const text = choice.delta && choice.delta.content;
    if (text) answer.append(text); // a text node per delta: the page grows as the stream arrives
  }
  return false;
}

async function send(prompt) {
  const answer = $("answer");
  answer.textContent = "";
  $("question").textContent = prompt;
  const stats = { reads: 0, bytes: 0, events: 0, splitReads: 0 };
  showStats(stats);

  const controller = new AbortController();
  let timedOut = false;
  let timer = 0;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, TIMEOUT_MS);
  };
  const body = {
    messages: [{ role: "user", content: prompt }],
    model: MODEL,
    stream: true,
    stream_options: { include_usage: true },
  };

  setState("waiting");
  arm();
  let response;
  try {
    response = await fetch(`${API}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
  } catch (e) {
    clearTimeout(timer);
    if (timedOut) return setState("timeout", `no response within ${TIMEOUT_MS} ms`);
    return setState("network", `${e.name}: ${e.message}`);
  }
  if (!response.ok) {
    clearTimeout(timer);
    let message = "";
    try {
      const error = await response.json();
      message = (error.error && error.error.message) || JSON.stringify(error);
    } catch (e) {
      message = response.statusText;
    }
    return setState("http", `HTTP ${response.status}: ${message}`);
  }
  const type = response.headers.get("content-type") || "";
  if (type.split(";")[0].trim().toLowerCase() !== "text/event-stream") {
    clearTimeout(timer);
    controller.abort();
    return setState("bad-type", `HTTP ${response.status} with content-type "${type}", not text/event-stream`);
  }

  setState("streaming");
  const reader = response.body.getReader();
  const decoder = new SSEDecoder("", { fatal: true }); // an API's stream is UTF-8: a bad byte is damage
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      arm();
      stats.reads += 1;
      stats.bytes += value.byteLength;
      let events;
      try {
        events = decoder.decode(value);
      } catch (e) {
        throw new SyntaxError(`the stream is not valid UTF-8 (${e.message})`);
      }
      for (const event of events) {
        stats.events += 1;
        if (!finished && handle(event, answer)) {
          finished = true;
          clearTimeout(timer);
          setState("done");
        }
      }
      if (decoder.pending) stats.splitReads += 1;
      showStats(stats);
    }
  } catch (e) {
    clearTimeout(timer);
    showStats(stats);
    if (finished) return; // a problem after [DONE] changes nothing the user sees
    controller.abort(); // also after a provider or parse error: stop reading
    if (timedOut) return setState("timeout", `no bytes for ${TIMEOUT_MS} ms`);
    if (e instanceof ProviderError) return setState("provider", e.message);
    if (e instanceof SyntaxError) return setState("bad-event", e.message);
    return setState("aborted", `the connection broke mid-stream (${e.name}: ${e.message})`);
  }
  clearTimeout(timer);
  let cut = false;
  try {
    decoder.flush();
  } catch (e) {
    cut = true; // the body ended inside a UTF-8 character
  }
  showStats(stats);
  if (!finished) {
    const how = cut || decoder.pending ? "the stream stopped inside an event" : "the stream ended without [DONE]";
    setState("incomplete", how);
  }
}

$("api").textContent = API;
$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  send($("prompt").value);
});
setState("idle");
