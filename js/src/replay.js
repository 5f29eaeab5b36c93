// startReplay(): serve cassettes to the code under test, over a real socket, by `ssevcr replay`.
//
// Two ways, one interface ({url, openaiBaseURL, anthropicBaseURL, journal, misses, setFaults,
// stop}):
//   - a session on a shared server (`ssevcr replay --control`): one server for the whole test run,
//     one session per test, created and ended over the control API in milliseconds;
//   - its own `ssevcr replay` process (`{ server: false }`, or an ssevcr whose replay has no
//     --control): a Python start per call.
// The engine is ssevcr's: this file only turns options into arguments and reads what it says.

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Child, findSsevcr, indent, replayOptions } from "./bin.js";
import { SsevcrError } from "./errors.js";
import { controlFor } from "./session.js";

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
  if (options.wsMatch != null) args.push("--ws-match", String(options.wsMatch));
  return args;
}

export function cassetteList(options) {
  const list = options.cassettes ?? (options.cassette != null ? [options.cassette] : []);
  if (!Array.isArray(list) || list.length === 0) {
    throw new SsevcrError("startReplay needs `cassette` (a path) or `cassettes` (paths)");
  }
  return list.map(String);
}

export function corsList(cors) {
  if (cors == null || cors === false) return [];
  if (cors === true) return ["*"];
  return Array.isArray(cors) ? cors.map(String) : [String(cors)];
}

/** Base URLs derived from the server's URL the way `ssevcr replay -- CMD` sets them. */
export function baseURLs(url) {
  const root = url.replace(/\/+$/, "");
  return { url: root, openaiBaseURL: `${root}/v1`, anthropicBaseURL: root };
}

const MISS_LIMIT = 1000; // misses kept (the first), as the server keeps them; all are counted
const MISS_CHARS = 16 * 1024; // characters kept of one miss's message

/** Misses out of the lines ssevcr replay logs: a miss line and its indented continuation. */
export class MissLog {
  constructor() {
    this.misses = [];
    this.count = 0;
    this.current = null;
  }

  line(text) {
    if (MISS.test(text)) {
      this.count++;
      this.current =
        this.misses.length < MISS_LIMIT ? { message: text.slice(0, MISS_CHARS) } : null;
      if (this.current) this.misses.push(this.current);
    } else if (this.current && /^\s/.test(text)) {
      if (this.current.message.length < MISS_CHARS) {
        this.current.message = `${this.current.message}\n${text}`.slice(0, MISS_CHARS);
      }
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
    this.previousJournal = [];
    this.launches = 0;
    this.dir = null;
    this.child = null;
    this.final = null; // what stop() resolved with
  }

  async #launch(listen) {
    if (!this.dir) this.dir = await mkdtemp(join(tmpdir(), "ssevcr-replay-"));
    this.journalFile = join(this.dir, `journal-${this.launches++}.jsonl`);
    const args = ["replay", ...replayArgs(this.options), "--listen", listen];
    // the run's control server is announced by these; ssevcr replay takes the token for its own
    // --control-token, which it refuses without --control
    const { SSEVCR_CONTROL_URL, SSEVCR_CONTROL_TOKEN, ...env } = this.options.env ?? process.env;
    void SSEVCR_CONTROL_URL;
    void SSEVCR_CONTROL_TOKEN;
    if ((await replayOptions(findSsevcr(env))).has("--journal")) {
      args.push("--journal", this.journalFile);
    } else {
      this.journalFile = null; // an older ssevcr: journal() says so
    }
    args.push(...(this.options.args ?? []));
    this.child = new Child(args, {
      pattern: READY,
      env,
      onLine: (line) => this.log.line(line),
    });
    const { url } = await this.child.ready;
    Object.assign(this, baseURLs(url));
  }

  /** Requests that matched nothing so far: [{message}], ssevcr's explanation in each. */
  async misses() {
    return [...this.previous, ...this.log.misses];
  }

  /** What each play delivered: the lines of its `--journal` file (written as each play ends). */
  async journal() {
    if (this.final) return this.final.journal;
    if (this.journalFile === null) {
      throw new SsevcrError("journal() needs an ssevcr whose replay takes --journal (upgrade it)");
    }
    let text;
    try {
      text = await readFile(this.journalFile, "utf8");
    } catch (e) {
      if (e.code === "ENOENT") return [...this.previousJournal];
      throw e;
    }
    const plays = text
      .split("\n")
      .filter((line) => line.trim())
      .map((line) => JSON.parse(line));
    return [...this.previousJournal, ...plays];
  }

  /** New faults: the process is restarted on the same port with them (connections close). */
  async setFaults(faults) {
    const port = new URL(this.url).port;
    await this.#end();
    this.previousJournal = await this.journal();
    this.previous.push(...this.log.misses);
    this.log = new MissLog();
    this.options.faults = [...faults];
    await this.#launch(`127.0.0.1:${port}`);
  }

  /** Stop the server; resolves with {log: its summary on stderr, journal, miss_list}. Rejects
   * if it failed. */
  async stop() {
    if (this.final) return this.final;
    const log = await this.#end();
    const journal = this.journalFile === null ? [] : await this.journal();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
    this.final = { log, journal, miss_list: await this.misses() };
    return this.final;
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
 * Serve cassettes over HTTP. Resolves once the replay is ready: a session on the shared control
 * server (see session.js); or an `ssevcr replay` process of its own with `server: false` (also
 * implied by `listen`/`args`, which only a process takes) or with an ssevcr without --control.
 */
export async function startReplay(options = {}) {
  cassetteList(options); // a clear error before anything starts
  if (options.server === false || options.listen != null || options.args != null) {
    return ProcessReplay.start(options);
  }
  const control = options.control ?? (await controlFor(options));
  if (control === null) return ProcessReplay.start(options); // an ssevcr without --control
  return control.session(options);
}
