// The resumption page: an EventSource left to reconnect when its stream is cut, as browsers do.
// On reconnecting the browser sends `Last-Event-ID` (the id of the last event it got) and a
// server following the SSE specification resumes after that event. The page shows the text of
// every `data: {"text": ...}` event once: it drops an event whose id it has seen (a server that
// restarts the stream from the beginning sends those again) and stops at an event named `done`.
//
// Query parameters: api (base URL, e.g. the `ssevcr replay --cors` URL; default: this origin),
// path (default: /events).
//
// States (on <body data-state> and #status): idle, waiting, streaming, reconnecting (the
// connection broke; EventSource retries after the stream's `retry:` time), done (the `done`
// event), closed (the server refused to go on: a 204 or an error answer ends EventSource).

import { $, apiBase, stateSetter } from "./page.js";

const params = new URLSearchParams(location.search);
const API = apiBase(params);
const PATH = params.get("path") || "/events";

const LABELS = {
  idle: "Idle",
  waiting: "Connecting…",
  streaming: "Streaming…",
  reconnecting: "Reconnecting…",
  done: "Done",
  closed: "Closed by the server",
};

const setState = stateSetter(LABELS, { detail: false }); // #detail holds the counters

function start() {
  const seen = new Set();
  let connections = 0;
  let duplicates = 0;
  $("answer").textContent = "";
  const source = new EventSource(`${API}${PATH}`);
  source.onopen = () => {
    connections += 1;
    $("connections").textContent = String(connections);
    setState("streaming");
  };
  source.onmessage = (e) => {
    if (e.lastEventId) {
      if (seen.has(e.lastEventId)) {
        duplicates += 1;
        $("duplicates").textContent = String(duplicates);
        return;
      }
      seen.add(e.lastEventId);
      $("last-id").textContent = e.lastEventId;
    }
    const payload = JSON.parse(e.data);
    if (typeof payload.text === "string") $("answer").append(payload.text);
  };
  source.addEventListener("done", () => {
    source.close();
    setState("done");
  });
  source.onerror = () => {
    // CONNECTING: the browser reconnects by itself; CLOSED: it gave up (204, an error status)
    setState(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
  };
  setState("waiting");
}

$("api").textContent = API;
$("start").addEventListener("click", start);
setState("idle");
