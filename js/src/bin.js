// The ssevcr command line as a child process: where the executable is, starting it, waiting for its
// one ready line, reading what it logs, stopping it. Nothing here knows about cassettes or tests.
//
// The executable is $SSEVCR_BIN when set, else the first `ssevcr` on PATH. A child lives no
// longer than this Node process (see Child), so a test run that crashes leaves no server behind.

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
 * A running ssevcr child, tied to this process by a pipe: it runs `ssevcr ARGS -- cat`, whose
 * `cat` reads the child's stdin, a pipe from here. When this process ends, however it ends (a
 * test runner terminating a worker thread, SIGKILL), the pipe closes, `cat` exits and ssevcr
 * stops as it does when its command ends: no server is left behind. `stop()` closes the pipe the
 * same way (a clean stop, exit code 0).
 *
 * `ready` resolves with the URL of its ready line (the first line, on stdout or stderr, matching
 * `pattern`, whose group 1 is the URL); `onLine` gets every stderr line; `stop()` resolves with
 * the exit code and what it wrote to stderr.
 */
export class Child {
  #pending; // the ready line awaited: {resolve, reject, pattern, done}

  constructor(args, { pattern, env = process.env, bin = findSsevcr(env), onLine } = {}) {
    this.args = args;
    this.bin = bin;
    this.stderr = "";
    this.onLine = onLine;
    this.exit = null; // {code, signal} once exited
    this.proc = spawn(bin, [...args, "--", "cat"], {
      env,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true, // its own process group: kill() reaches its children too
    });
    this.proc.stdin.on("error", () => {}); // a child that already exited
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
    this.ready = new Promise((resolve, reject) => {
      this.#pending = { resolve, reject, pattern, done: false };
    });
    this.ready.catch(() => {}); // awaited by the caller; never an unhandled rejection here
    this.#lines(this.proc.stdout, (line) => this.#maybeReady(line));
    this.#lines(this.proc.stderr, (line) => {
      this.#maybeReady(line);
      this.onLine?.(line);
    });
    this.proc.stderr.on("data", (text) => {
      this.stderr = (this.stderr + text).slice(-LOG_LIMIT);
    });
    const timer = setTimeout(() => {
      this.#notReady(`no ready line within ${READY_TIMEOUT_MS / 1000} s`);
      this.kill();
    }, READY_TIMEOUT_MS);
    this.ready.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
    this.exited.then((exit) =>
      this.#notReady(
        exit.error ? exit.error.message : `it exited (${exit.signal ?? `code ${exit.code}`})`,
      ),
    );
  }

  #lines(stream, onLine) {
    stream.setEncoding("utf8");
    let pending = "";
    stream.on("data", (text) => {
      pending += text;
      const lines = pending.split("\n");
      pending = lines.pop();
      if (pending.length > 64 * 1024) pending = pending.slice(-64 * 1024); // bounded
      for (const line of lines) onLine(line);
    });
  }

  #maybeReady(line) {
    const r = this.#pending;
    if (r.done) return;
    const match = r.pattern.exec(line);
    if (!match) return;
    r.done = true;
    r.resolve({ url: match[1], line });
  }

  #notReady(why) {
    const r = this.#pending;
    if (r.done) return;
    r.done = true;
    const err = this.stderr.trim();
    r.reject(
      new SsevcrError(`${this.describe()} did not start: ${why}${err ? `\n${indent(err)}` : ""}`),
    );
  }

  describe() {
    return `ssevcr ${this.args[0]}`;
  }

  get running() {
    return this.exit === null;
  }

  /** Close its lifeline (its command ends, so it stops cleanly), then wait; SIGTERM and SIGKILL
   * if it takes longer than STOP_TIMEOUT_MS. Resolves with {code, signal, stderr}. */
  async stop() {
    if (this.running) {
      this.proc.stdin.end();
      const timer = setTimeout(() => {
        try {
          this.proc.kill("SIGTERM"); // ssevcr itself: it stops its children in order
        } catch {
          // already gone
        }
        timer2 = setTimeout(() => this.kill(), STOP_TIMEOUT_MS);
      }, STOP_TIMEOUT_MS);
      let timer2 = null;
      await this.exited;
      clearTimeout(timer);
      clearTimeout(timer2);
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
