// The ssevcr command line as a child process: where the executable is, starting it, waiting for its
// one ready line, reading what it logs, stopping it. Nothing here knows about cassettes or tests.
//
// The executable is $SSEVCR_BIN when set, else the first `ssevcr` on PATH. A child is started in
// its own process group and killed when this Node process exits, so a test run that crashes
// leaves no server behind.

import { execFile, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

import { SsevcrError } from "./errors.js";

const READY_TIMEOUT_MS = 60_000; // a loaded machine starting Python (and mitmdump, to record)
const STOP_TIMEOUT_MS = 20_000;
const LOG_LIMIT = 256 * 1024; // characters of stderr kept per child (the newest)

const live = new Set();
let exitHookInstalled = false;

function killAllOnExit() {
  for (const child of live) {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** The ssevcr executable: $SSEVCR_BIN, else `ssevcr` on PATH. Throws a SsevcrError naming both. */
export function findSsevcr(env = process.env) {
  if (env.SSEVCR_BIN) {
    if (!isExecutable(env.SSEVCR_BIN)) {
      throw new SsevcrError(`SSEVCR_BIN=${env.SSEVCR_BIN} is not an executable file`);
    }
    return env.SSEVCR_BIN;
  }
  for (const dir of (env.PATH || "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, "ssevcr");
    if (isExecutable(candidate)) return candidate;
  }
  throw new SsevcrError(
    "cannot find the ssevcr command: install it (pip install ssevcr) so that `ssevcr` is on " +
      "PATH, or set SSEVCR_BIN to its path (e.g. .venv/bin/ssevcr)",
  );
}

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * A running ssevcr child. `ready` resolves with the URL of its ready line (the first stdout line
 * matching `pattern`, whose group 1 is the URL); `stop()` sends SIGTERM and resolves with its exit
 * code and what it wrote to stderr.
 */
export class Child {
  constructor(args, { pattern, env = process.env, bin = findSsevcr(env), onLine } = {}) {
    this.args = args;
    this.bin = bin;
    this.stderr = "";
    this.onLine = onLine;
    this.exit = null; // {code, signal} once exited
    this.proc = spawn(bin, args, {
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // its own process group: stop() and the exit hook reach its children too
    });
    live.add(this.proc);
    if (!exitHookInstalled) {
      process.on("exit", killAllOnExit);
      exitHookInstalled = true;
    }
    this.exited = new Promise((resolve) => {
      this.proc.on("exit", (code, signal) => {
        live.delete(this.proc);
        this.exit = { code, signal };
        resolve(this.exit);
      });
      this.proc.on("error", (error) => {
        live.delete(this.proc);
        this.exit = { code: null, signal: null, error };
        resolve(this.exit);
      });
    });
    this.proc.stderr.setEncoding("utf8");
    let pending = "";
    this.proc.stderr.on("data", (text) => {
      this.stderr = (this.stderr + text).slice(-LOG_LIMIT);
      if (!this.onLine) return;
      pending += text;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) this.onLine(line);
    });
    this.ready = this.#readyLine(pattern);
    this.ready.catch(() => {}); // awaited by the caller; never an unhandled rejection here
  }

  #readyLine(pattern) {
    return new Promise((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => {
        fail(`no ready line within ${READY_TIMEOUT_MS / 1000} s`);
        this.kill();
      }, READY_TIMEOUT_MS);
      const fail = (why) => {
        clearTimeout(timer);
        const err = this.stderr.trim();
        reject(
          new SsevcrError(
            `${this.describe()} did not start: ${why}${err ? `\n${indent(err)}` : ""}`,
          ),
        );
      };
      const onData = (text) => {
        out += text;
        let newline;
        while ((newline = out.indexOf("\n")) >= 0) {
          const line = out.slice(0, newline);
          out = out.slice(newline + 1);
          const match = pattern.exec(line);
          if (match) {
            clearTimeout(timer);
            this.proc.stdout.off("data", onData);
            this.proc.stdout.resume(); // keep draining: a full pipe would block the child
            resolve({ url: match[1], line });
            return;
          }
        }
        if (out.length > 64 * 1024) out = out.slice(-64 * 1024);
      };
      this.proc.stdout.setEncoding("utf8");
      this.proc.stdout.on("data", onData);
      this.exited.then((exit) => {
        if (exit.error) fail(exit.error.message);
        else fail(`it exited (${exit.signal ?? `code ${exit.code}`})`);
      });
    });
  }

  describe() {
    return `ssevcr ${this.args[0]}`;
  }

  get running() {
    return this.exit === null;
  }

  /** SIGTERM, then wait; SIGKILL after STOP_TIMEOUT_MS. Resolves with {code, signal, stderr}. */
  async stop() {
    if (this.running) {
      try {
        this.proc.kill("SIGTERM"); // ssevcr itself: it stops its own children (mitmdump) in order
      } catch {
        // already gone
      }
      const timer = setTimeout(() => this.kill(), STOP_TIMEOUT_MS);
      await this.exited;
      clearTimeout(timer);
    }
    return { ...this.exit, stderr: this.stderr };
  }

  /** SIGKILL to its whole process group. */
  kill() {
    try {
      process.kill(-this.proc.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

export function indent(text, prefix = "  ") {
  return text
    .split("\n")
    .map((line) => prefix + line)
    .join("\n");
}

const featureCache = new Map(); // executable -> Promise<Set of replay options>

/**
 * The options this ssevcr's `replay` takes (from its --help, once per executable), so that an
 * older ssevcr without `--control` or `--journal` still serves, by a process per replay.
 */
export function replayOptions(bin = findSsevcr()) {
  if (!featureCache.has(bin)) {
    const found = new Promise((resolve, reject) => {
      execFile(bin, ["replay", "--help"], { timeout: READY_TIMEOUT_MS }, (error, stdout) => {
        if (error) reject(new SsevcrError(`${bin} replay --help failed: ${error.message}`));
        else resolve(new Set(stdout.match(/--[a-z][a-z-]+/g)));
      });
    });
    featureCache.set(bin, found);
    found.catch(() => featureCache.delete(bin));
  }
  return featureCache.get(bin);
}
