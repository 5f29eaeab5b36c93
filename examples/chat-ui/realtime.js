// The Realtime page: open a WebSocket to an OpenAI-Realtime-shaped API (e.g. `ssevcr replay` of
// cassettes/examples/websocket/openai-realtime-text.msgpack), update the session when it is created, ask
// for a response when the update is confirmed, append each `response.output_text.delta` and stop
// at `response.done`. Every message the server sent is listed (#messages) as it came.
//
// Query parameters: api (base URL, http(s) or ws(s); default: this origin), model (default
// gpt-realtime), timeout (ms without a message before giving up; default 5000).
//
// States (on <body data-state> and #status): idle, connecting, streaming, done (response.done
// seen), and the errors: closed (the connection closed before response.done: its close code and
// reason are shown in #code and #reason; 1006 when it dropped without a close frame), provider
// (the API's `error` event), bad-event (a message that is not JSON), timeout.

import { $, apiBase, stateSetter } from "./page.js";

const params = new URLSearchParams(location.search);
const API = apiBase(params).replace(/^http/, "ws");
const MODEL = params.get("model") || "gpt-realtime";
const TIMEOUT_MS = Number(params.get("timeout") || 5000);

const LABELS = {
  idle: "Idle",
  connecting: "Connecting…",
  streaming: "Streaming…",
  done: "Done",
  closed: "Error: connection closed",
  provider: "Error: provider",
  "bad-event": "Error: bad event",
  timeout: "Error: timed out",
};
const ERRORS = new Set(["closed", "provider", "bad-event", "timeout"]);

const setState = stateSetter(LABELS);

function start() {
  $("answer").textContent = "";
  $("messages").textContent = "";
  $("code").textContent = "";
  $("reason").textContent = "";
  setState("connecting");
  const ws = new WebSocket(`${API}/v1/realtime?model=${encodeURIComponent(MODEL)}`);
  const settled = () => document.body.dataset.state === "done" || ERRORS.has(document.body.dataset.state);
  let timer = 0;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      setState("timeout", `no message for ${TIMEOUT_MS} ms`);
      ws.close(4000, "timeout");
    }, TIMEOUT_MS);
  };
  const fail = (state, detail) => {
    clearTimeout(timer);
    setState(state, detail);
    ws.close(1000);
  };
  const send = (event) => ws.send(JSON.stringify(event));
  arm();
  ws.addEventListener("message", (m) => {
    if (settled()) return;
    arm();
    const li = document.createElement("li");
    li.textContent = m.data;
    $("messages").append(li);
    let event;
    try {
      event = JSON.parse(m.data);
    } catch (e) {
      return fail("bad-event", `message is not JSON: ${String(m.data).slice(0, 80)}`);
    }
    li.dataset.type = event.type;
    switch (event.type) {
      case "session.created":
        return send({ type: "session.update", session: { type: "realtime", output_modalities: ["text"] } });
      case "session.updated":
        setState("streaming");
        return send({ type: "response.create" });
      case "response.output_text.delta":
        return $("answer").append(event.delta);
      case "response.done":
        clearTimeout(timer);
        setState("done");
        return ws.close(1000);
      case "error":
        return fail("provider", (event.error && event.error.message) || JSON.stringify(event));
    }
  });
  ws.addEventListener("close", (e) => {
    clearTimeout(timer);
    $("code").textContent = String(e.code);
    $("reason").textContent = e.reason;
    if (!settled()) setState("closed", `closed with ${e.code}${e.reason ? ` (${e.reason})` : ""} before response.done`);
  });
}

$("api").textContent = API;
$("start").addEventListener("click", start);
setState("idle");
