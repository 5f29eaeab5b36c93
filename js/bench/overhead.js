// Per-test overhead of the JS helpers (issue 18): what a test pays to get its replay and give it
// back, with a session on the run's one server (the helper's default: create + end over the
// control API) against a test that starts its own `ssevcr replay` process (spawn, Python start,
// ready line, SIGTERM, exit). Both sides alternate in one run, on the same cassette, through the
// same TestCassettes code the vitest/jest/Playwright helpers use; the server's own start is paid
// once per run and reported apart. `--request` adds one instant replayed stream (the openai SDK)
// to every test on both sides.
//
//   node js/bench/overhead.js [--tests 30] [--request] [--json FILE]
//
// Goal: >= 20x less per test with the session.

import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { TestCassettes } from "../src/index.js";
import { ControlServer } from "../src/session.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CASSETTE = "cassettes/examples/openai-chat-text.msgpack";

function parseArgs(argv) {
  const args = { tests: 30, request: false, json: null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--tests") args.tests = Number(argv[++i]);
    else if (argv[i] === "--request") args.request = true;
    else if (argv[i] === "--json") args.json = argv[++i];
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return args;
}

function stats(ms) {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return {
    n: sorted.length,
    p50_ms: at(0.5),
    p90_ms: at(0.9),
    min_ms: sorted[0],
    max_ms: sorted.at(-1),
  };
}

async function oneTest(n, options, request) {
  const t0 = performance.now();
  const cassettes = new TestCassettes({ file: "bench.test.js", title: `test ${n}`, root: REPO });
  const replay = await cassettes.start({ cassette: CASSETTE, timing: "instant", ...options });
  if (request) await request(replay);
  await cassettes.finish();
  return performance.now() - t0;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const load = [
    loadavg()
      .map((x) => x.toFixed(2))
      .join("/"),
  ];
  let request = null;
  if (args.request) {
    const { default: OpenAI } = await import("openai");
    const { requestParams } = await import("../test/cassettes.js");
    const params = requestParams(join(REPO, CASSETTE));
    request = async (replay) => {
      const client = new OpenAI({ baseURL: replay.openaiBaseURL, apiKey: "bench", maxRetries: 0 });
      for await (const chunk of await client.chat.completions.create(params)) void chunk;
    };
  }
  const t0 = performance.now();
  const server = await ControlServer.start();
  const serverStart = performance.now() - t0;
  const session = { control: server.control };
  const own = { server: false };
  // warm both paths once (module loading, the cassette read by the server), not counted
  await oneTest(-1, session, request);
  await oneTest(-2, own, request);
  const times = { session: [], process: [] };
  for (let n = 0; n < args.tests; n++) {
    times.session.push(await oneTest(n, session, request));
    times.process.push(await oneTest(n, own, request));
  }
  await server.stop();
  load.push(
    loadavg()
      .map((x) => x.toFixed(2))
      .join("/"),
  );
  const result = {
    tests: args.tests,
    request: args.request,
    server_start_ms: serverStart,
    session: stats(times.session),
    process: stats(times.process),
    load,
  };
  result.ratio = result.process.p50_ms / result.session.p50_ms;
  const what = args.request ? "create + one instant stream + end" : "create + end";
  console.log(
    `per-test overhead (${what}), ${args.tests} tests each, interleaved; load ${load.join(" -> ")}`,
  );
  for (const side of ["session", "process"]) {
    const s = result[side];
    console.log(
      `  ${side === "session" ? "session on the run's server" : "own ssevcr replay process "}: ` +
        `p50 ${s.p50_ms.toFixed(2)} ms, p90 ${s.p90_ms.toFixed(2)} ms, min ${s.min_ms.toFixed(2)} ms`,
    );
  }
  console.log(`  ratio (p50): ${result.ratio.toFixed(1)}x less with the session (goal >= 20x)`);
  console.log(`  the run's server started once in ${serverStart.toFixed(0)} ms`);
  if (args.json) writeFileSync(args.json, JSON.stringify(result, null, 2));
}

await main();
