// A replay server lives no longer than the Node process that started it: after a SIGKILL of that
// process (no exit hook runs), the server's lifeline closes and it stops.

import { spawn } from "node:child_process";
import { connect } from "node:net";

import { expect, test } from "vitest";

import { example } from "../cassettes.js";

const SRC = new URL("../../src/index.js", import.meta.url).href;

function listening(url) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

for (const server of [false, true]) {
  const what = server ? "the process's own control server" : "a replay process";
  test(`${what} stops when its Node process is killed`, async () => {
    const script = `
      const { startReplay } = await import(${JSON.stringify(SRC)});
      const r = await startReplay({ cassette: ${JSON.stringify(example("openai-chat-text"))},
                                    server: ${server ? "undefined" : "false"} });
      console.log(r.url);
      setInterval(() => {}, 1000);`;
    const env = { ...process.env };
    delete env.SSEVCR_CONTROL_URL; // its own server, not the run's
    delete env.SSEVCR_CONTROL_TOKEN;
    const node = spawn(process.execPath, ["--input-type=module", "-e", script], {
      env,
      stdio: ["ignore", "pipe", "inherit"],
    });
    const url = await new Promise((resolve, reject) => {
      let out = "";
      node.stdout.on("data", (d) => {
        out += d;
        const match = /(http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (match) resolve(match[1]);
      });
      node.on("exit", (code) => reject(new Error(`node exited ${code} before ready: ${out}`)));
    });
    expect(await listening(url)).toBe(true);
    node.kill("SIGKILL");
    const deadline = Date.now() + 20_000;
    while ((await listening(url)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await listening(url)).toBe(false);
  });
}
