// The EventSource page: GET a stream from an app backend that relays an Anthropic Messages stream
// as is (cassettes/examples/anthropic-text-eventsource.msgpack), list every event and append the
// text deltas. The browser parses the SSE here; EventSource can only GET.
//
// Query parameters: api (base URL, e.g. the `ssevcr replay --cors` URL; default: this origin),
// prompt (default: the prompt of the cassette).
//
// States (on <body data-state> and #status): idle, waiting, streaming, done (message_stop seen),
// provider (an `error` event), aborted (the connection closed before message_stop; the page
// closes the EventSource instead of letting it reconnect and replay the answer twice).

import { $, apiBase, stateSetter } from "./page.js";

const params = new URLSearchParams(location.search);
const API = apiBase(params);
const PROMPT = params.get("prompt") || "What is 1+1? Answer with just the number.";

// EventSource delivers a named event only to listeners of that name.
const TYPES = [
  "message_start",
  "content_block_start",
  "ping",
  "content_block_delta",
  "content_block_stop",
  "message_delta",
  "message_stop",
  "error",
];

const LABELS = {
  idle: "Idle",
  waiting: "Connecting…",
  streaming: "Streaming…",
  done: "Done",
  provider: "Error: provider",
  aborted: "Error: stream aborted",
};

const setState = stateSetter(LABELS);

function start() {
  const url = `${API}/api/chat/stream?${new URLSearchParams({ prompt: PROMPT })}`;
  $("question").textContent = PROMPT;
  $("answer").textContent = "";
  $("events").textContent = "";
  let finished = false;
  const source = new EventSource(url);
  const finish = (state, detail) => {
    finished = true;
    source.close();
    setState(state, detail);
  };

  const onEvent = (e) => {
    // Anthropic's `event: error` and EventSource's own connection error share the name "error":
    // the first is a MessageEvent with data, the second a plain Event (left to onerror below).
    if (finished || !(e instanceof MessageEvent)) return;
    if (document.body.dataset.state === "waiting") setState("streaming");
    const row = document.createElement("li");
    row.dataset.type = e.type;
    const type = document.createElement("span");
    type.className = "type";
    type.textContent = e.type;
    const data = document.createElement("code");
    data.textContent = e.data;
    row.append(type, data);
    $("events").append(row);

    let payload = {};
    try {
      payload = JSON.parse(e.data);
    } catch (err) {
      return finish("provider", `event ${e.type} is not JSON`);
    }
    if (e.type === "content_block_delta" && payload.delta && payload.delta.type === "text_delta") {
      $("answer").append(payload.delta.text);
    } else if (e.type === "error") {
      finish("provider", (payload.error && payload.error.message) || e.data);
    } else if (e.type === "message_stop") {
      finish("done");
    }
  };
  for (const type of TYPES) source.addEventListener(type, onEvent);
  source.onmessage = onEvent; // unnamed events
  source.onopen = () => {
    if (!finished) setState("streaming");
  };
  source.onerror = () => {
    // A network error, a non-200 answer or the end of the stream. EventSource would reconnect
    // and get the whole answer again; the page stops and says the answer is cut short.
    if (!finished) finish("aborted", "the connection closed before message_stop");
  };
  setState("waiting");
}

$("api").textContent = API;
$("start").addEventListener("click", start);
setState("idle");
