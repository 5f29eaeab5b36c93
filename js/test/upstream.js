// A real upstream for recording tests: a plain HTTP server on 127.0.0.1 that streams an SSE
// fixture (tests/fixtures/providers/...) one event per chunk, `gapMs` apart, and logs when it
// sent each chunk (performance.now(), milliseconds).

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";

import { REPO } from "./cassettes.js";

export function fixtureEvents(name) {
  const body = readFileSync(join(REPO, "tests", "fixtures", "providers", name));
  const events = [];
  let start = 0;
  for (let i = 0; i + 1 < body.length; i++) {
    if (body[i] === 0x0a && body[i + 1] === 0x0a) {
      events.push(body.subarray(start, i + 2));
      start = i + 2;
      i++;
    }
  }
  if (start < body.length) events.push(body.subarray(start));
  return events;
}

export async function startUpstream({ fixture, gapMs = 40 }) {
  const chunks = fixtureEvents(fixture);
  const sent = []; // per request: {path, body, times: [ms]}
  const server = createServer((req, res) => {
    const parts = [];
    req.on("data", (d) => parts.push(d));
    req.on("end", async () => {
      const exchange = { path: req.url, body: Buffer.concat(parts).toString(), times: [] };
      sent.push(exchange);
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
      for (const chunk of chunks) {
        await new Promise((r) => setTimeout(r, gapMs));
        res.write(chunk);
        exchange.times.push(performance.now());
      }
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    sent,
    chunks,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(resolve);
      }),
  };
}
