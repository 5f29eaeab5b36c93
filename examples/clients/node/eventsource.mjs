// The `eventsource` package (EventSource for Node) reading an Anthropic stream relayed by an app
// backend over GET, as its README teaches: a listener per event name, `close()` when done.
//
//   SSEVCR_URL=... node examples/clients/node/eventsource.mjs
//
// Prints the text deltas and closes at `message_stop`. An `error` (Anthropic's error event, or
// the connection failing or closing: EventSource would reconnect and replay the answer) closes
// the source and ends the script with exit 1. Sends the request of
// cassettes/examples/anthropic-text-eventsource.msgpack.
import { EventSource } from "eventsource";

const base = (process.env.SSEVCR_URL || "http://127.0.0.1:8080").replace(/\/+$/, "");
const prompt = "What is 1+1? Answer with just the number.";
const es = new EventSource(`${base}/api/chat/stream?${new URLSearchParams({ prompt })}`);

es.addEventListener("content_block_delta", (event) => {
  const data = JSON.parse(event.data);
  if (data.delta.type === "text_delta") process.stdout.write(data.delta.text);
});
es.addEventListener("message_stop", () => {
  process.stdout.write("\n");
  es.close();
});
es.addEventListener("error", (event) => {
  console.error("error:", event.data ?? event.message ?? event.code ?? "connection closed");
  process.exitCode = 1;
  es.close();
});
