// startReplay(): serve cassettes to the code under test, over a real socket, by `ssevcr replay`.
//
// Two ways, one interface ({url, openaiBaseURL, anthropicBaseURL, journal, misses, setFaults,
// stop}):
//   - a session on a shared server (`ssevcr replay --control`): one server for the whole test run,
//     one session per test, created and ended over the control API in milliseconds;
//   - its own `ssevcr replay` process (`{ server: false }`, or when no shared server is given and
//     none can be started): a Python start per call.
// The engine is ssevcr's: this file only turns options into arguments and reads what it says.

import { Child, indent } from "./bin.js";
import { SsevcrError } from "./errors.js";

const READY = /^ssevcr replay: serving (http:\/\/\S+)/;
const MISS = /^ssevcr: no recorded interaction/;

/** The command-line arguments of replay options shared by processes and sessions. */
export function replayArgs(options) {
  const args = [...cassetteList(options)];
  if (options.timing != null) args.push("--timing", String(options.timing));
  if (options.maxGap != null) args.push("--max-gap", String(options.maxGap));
  for (const fault of options.faults ?? []) args.push("--fault", String(fault));
  if (options.seed != null) args.push("--seed", String(options.seed));
  for (const origin of corsList(options.cors)) args.push(`--cors=${origin}`);
  if (options.once) args.push("--once");
  return args;
}

export function cassetteList(options) {
  const list = options.cassettes ?? (options.cassette != null ? [options.cassette] : []);
  if (!Array.isArray(list) || list.length === 0) {
    throw new SsevcrError("startReplay needs `cassette` (a path) or `cassettes` (paths)");
  }
  return list.map(String);
}

function corsList(cors) {
  if (cors == null || cors === false) return [];
  if (cors === true) return ["*"];
  return Array.isArray(cors) ? cors.map(String) : [String(cors)];
}

/** Base URLs derived from the server's URL the way `ssevcr replay -- CMD` sets them. */
export function baseURLs(url) {
  const root = url.replace(/\/+$/, "");
  return { url: root, openaiBaseURL: `${root}/v1`, anthropicBaseURL: root };
}

/** Misses out of the lines ssevcr replay logs: a miss line and its indented continuation. */
export class MissLog {
  constructor() {
    this.misses = [];
    this.current = null;
  }

  line(text) {
    if (MISS.test(text)) {
      this.current = { message: text };
      this.misses.push(this.current);
    } else if (this.current && /^\s/.test(text)) {
      this.current.message += `\n${text}`;
    } else {
      this.current = null;
    }
  }
}

/** A replay served by its own `ssevcr replay` process. */
export class ProcessReplay {
  static async start(options) {
    const replay = new ProcessReplay(options);
    await replay.#launch(options.listen ?? "127.0.0.1:0");
    return replay;
  }

  constructor(options) {
    this.options = { ...options, faults: [...(options.faults ?? [])] };
    this.log = new MissLog();
    this.previous = []; // misses of the processes before a setFaults() restart
    this.child = null;
  }

  async #launch(listen) {
    const args = ["replay", ...replayArgs(this.options), "--listen", listen];
    args.push(...(this.options.args ?? []));
    this.child = new Child(args, {
      pattern: READY,
      env: this.options.env ?? process.env,
      onLine: (line) => this.log.line(line),
    });
    const { url } = await this.child.ready;
    Object.assign(this, baseURLs(url));
  }

  /** Requests that matched nothing so far: [{message}], ssevcr's explanation in each. */
  async misses() {
    return [...this.previous, ...this.log.misses];
  }

  async journal() {
    throw new SsevcrError(
      "journal() needs a replay session (the control API of ssevcr replay); this replay runs " +
        "its own process",
    );
  }

  /** New faults: the process is restarted on the same port with them (connections close). */
  async setFaults(faults) {
    const port = new URL(this.url).port;
    await this.#end();
    this.previous.push(...this.log.misses);
    this.log = new MissLog();
    this.options.faults = [...faults];
    await this.#launch(`127.0.0.1:${port}`);
  }

  /** Stop the server; resolves with its summary (stderr). Rejects if it failed. */
  async stop() {
    return this.#end();
  }

  async #end() {
    const { code, signal, stderr } = await this.child.stop();
    if (code !== 0) {
      throw new SsevcrError(
        `ssevcr replay ended with ${signal ?? `exit code ${code}`}:\n${indent(stderr.trim())}`,
      );
    }
    return stderr;
  }
}

/**
 * Serve cassettes over HTTP. Resolves once the server is ready.
 * Options: cassette | cassettes, timing, maxGap, faults, seed, cors, once, env, args.
 */
export async function startReplay(options = {}) {
  return ProcessReplay.start(options);
}
