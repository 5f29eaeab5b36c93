// The openai Node SDK's Realtime client (OpenAIRealtimeWS, over the `ws` package: Node 20 has no
// WebSocket of its own), as its README teaches, talking to cassettes/examples/websocket/
// openai-realtime-text.msgpack:
//
//   ssevcr replay cassettes/examples/websocket/openai-realtime-text.msgpack -- node examples/clients/node/realtime.mjs
//
// Updates the session, asks for a response, prints every server message as it came (one line
// each); closes at response.done, then prints the text of the deltas and exits 0. An error the client
// reports (its `error` event: the API's own error event, or the socket's) or a close before
// response.done prints the reason on stderr and exits 1.
import net from "node:net";
import OpenAI from "openai";
import { OpenAIRealtimeWS } from "openai/realtime/ws";

const client = new OpenAI(); // OPENAI_BASE_URL, OPENAI_API_KEY from the env
// openai 6.49.0 always dials wss:// (buildRealtimeURL sets the protocol); a plain http:// base URL
// (a local replay) gets a plain TCP socket through ws's own createConnection option instead
const plain = new URL(client.baseURL).protocol === "http:";
const options = plain ? { createConnection: (opts) => net.connect(opts) } : {};
const rt = new OpenAIRealtimeWS({ model: "gpt-realtime", options }, client);

let text = "";
let done = false;
const fail = (message) => {
  if (done) return;
  done = true;
  process.stderr.write(`${message}\n`);
  process.exitCode = 1;
  rt.close();
};
rt.socket.on("message", (data) => process.stdout.write(`${data.toString()}\n`));
rt.socket.on("close", (code, reason) => {
  if (done && !process.exitCode) process.stdout.write(`${text}\n`);
  else fail(`closed: ${code} ${reason.toString()}`.trim());
});
rt.on("error", (err) => fail(`error: ${err.message}`));
rt.on("session.created", () => {
  rt.send({ type: "session.update", session: { type: "realtime", output_modalities: ["text"] } });
});
rt.on("session.updated", () => rt.send({ type: "response.create" }));
rt.on("response.output_text.delta", (event) => {
  text += event.delta;
});
rt.on("response.done", () => {
  done = true;
  rt.close(); // the text is printed once the close is done
});
