// Sessions on a shared replay server (`ssevcr replay --control`, docs/control.md): one server for
// a whole test run, one session per test with its own cassettes, timing, faults, plays, journal
// and misses, created and ended over the loopback control API in milliseconds.
//
// Which server: $SSEVCR_CONTROL_URL + $SSEVCR_CONTROL_TOKEN when set (the vitest/jest/Playwright
// global setups start one for the whole run and set them), else one started on first use by this
// process (or worker thread) and killed when it exits.

import { Agent, request } from "node:http";
import { resolve } from "node:path";

import { Child, findSsevcr, indent, replayOptions } from "./bin.js";
import { SsevcrError } from "./errors.js";
import { baseURLs, cassetteList, corsList } from "./replay.js";

const READY =
  /^ssevcr replay: serving (http:\/\/\S+) .*control (http:\/\/\S+?)\/__ssevcr\/ token ([!-~]+?)[;)]/;
const MAX_ANSWER = 64 * 1024 * 1024; // bytes of one control answer read (a journal of 1,000 plays)

/** A control API client: `url` (the server's), `token`. */
export class Control {
  constructor(url, token) {
    this.url = url.replace(/\/+$/, "");
    this.token = token;
    this.agent = new Agent({ keepAlive: true, maxSockets: 16 });
  }

  /** From $SSEVCR_CONTROL_URL and $SSEVCR_CONTROL_TOKEN, or null when they are not set. */
  static fromEnv(env = process.env) {
    if (!env.SSEVCR_CONTROL_URL) return null;
    if (!env.SSEVCR_CONTROL_TOKEN) {
      throw new SsevcrError("SSEVCR_CONTROL_URL is set but SSEVCR_CONTROL_TOKEN is not");
    }
    return new Control(env.SSEVCR_CONTROL_URL, env.SSEVCR_CONTROL_TOKEN);
  }

  /** One JSON request to the control API; resolves with the answer, rejects with its error. */
  call(method, path, body) {
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const target = new URL(`${this.url}/__ssevcr/${path}`);
    const headers = { authorization: `Bearer ${this.token}` };
    if (data)
      Object.assign(headers, { "content-type": "application/json", "content-length": data.length });
    return new Promise((done, fail) => {
      const req = request(target, { method, headers, agent: this.agent }, (res) => {
        const parts = [];
        let size = 0;
        res.on("data", (part) => {
          size += part.length;
          if (size > MAX_ANSWER) req.destroy(new Error(`answer larger than ${MAX_ANSWER} bytes`));
          else parts.push(part);
        });
        res.on("end", () => {
          const text = Buffer.concat(parts).toString("utf8");
          let answer;
          try {
            answer = JSON.parse(text);
          } catch {
            answer = null;
          }
          if (res.statusCode >= 200 && res.statusCode < 300 && answer !== null) return done(answer);
          const message = answer?.error?.message ?? text.slice(0, 2000);
          const error = new SsevcrError(
            `ssevcr control API: ${method} /__ssevcr/${path}: ${res.statusCode} ${message}`,
          );
          error.status = res.statusCode;
          fail(error);
        });
        res.on("error", fail);
      });
      req.on("error", (e) =>
        fail(
          new SsevcrError(`ssevcr control API at ${this.url} unreachable: ${e.message}`, {
            cause: e,
          }),
        ),
      );
      req.end(data);
    });
  }

  /** Create a session; resolves with a SessionReplay. */
  async session(options) {
    const body = {
      cassettes: cassetteList(options).map((path) => resolve(path)),
      timing: options.timing ?? undefined,
      max_gap: options.maxGap ?? undefined,
      faults: options.faults ? options.faults.map(String) : undefined,
      seed: options.seed ?? undefined,
      once: options.once ?? undefined,
      name: options.label != null ? String(options.label).slice(0, 200) : undefined,
      match_on: options.matchOn ?? undefined,
      ws_match: options.wsMatch ?? undefined,
      cors: sessionCors(options.cors),
    };
    const summary = await this.call("POST", "sessions", body);
    return new SessionReplay(this, summary);
  }

  close() {
    this.agent.destroy();
  }
}

/** One session: the Replay interface over the control API. */
export class SessionReplay {
  constructor(control, summary) {
    this.control = control;
    this.id = summary.id;
    this.summary = summary;
    this.header = summary.header;
    this.ended = null; // the DELETE answer once stopped
    Object.assign(this, baseURLs(summary.base_url));
  }

  #path(tail = "") {
    return `sessions/${encodeURIComponent(this.id)}${tail}`;
  }

  /** What each play delivered so far (in-flight plays included, `state: "open"`). */
  async journal() {
    if (this.ended) return this.ended.journal;
    return (await this.control.call("GET", this.#path("/journal"))).journal;
  }

  /** Requests that matched nothing: [{method, url, message}], ssevcr's explanation in each. */
  async misses() {
    if (this.ended) return this.ended.miss_list;
    return (await this.control.call("GET", this.#path("/misses"))).misses;
  }

  /** Faults for the requests from now on. */
  async setFaults(faults) {
    this.summary = await this.control.call("PUT", this.#path("/faults"), {
      faults: faults.map(String),
    });
  }

  /** End the session; resolves with its final summary (journal and miss list included). */
  async stop() {
    if (!this.ended) this.ended = await this.control.call("DELETE", this.#path());
    return this.ended;
  }
}

/** A `ssevcr replay --control` process for sessions. */
export class ControlServer {
  static async start({ cors = false, env = process.env, args = [] } = {}) {
    const argv = ["replay", "--control", "--listen", "127.0.0.1:0", ...args];
    if (cors)
      argv.push(...(cors === true ? ["--cors=*"] : [].concat(cors).map((o) => `--cors=${o}`)));
    const child = new Child(argv, { pattern: READY, env });
    const { url, line } = await child.ready;
    const match = READY.exec(line);
    const server = new ControlServer(child, url, match[3]);
    return server;
  }

  constructor(child, url, token) {
    this.child = child;
    this.url = url;
    this.token = token;
    this.control = new Control(url, token);
  }

  /** The variables that point sessions of other processes at this server. */
  get env() {
    return { SSEVCR_CONTROL_URL: this.url, SSEVCR_CONTROL_TOKEN: this.token };
  }

  async stop() {
    this.control.close();
    const { code, signal, stderr } = await this.child.stop();
    if (code !== 0) {
      throw new SsevcrError(
        `ssevcr replay --control ended with ${signal ?? `exit code ${code}`}:\n${indent(stderr.trim())}`,
      );
    }
    return stderr;
  }
}

let ownServer = null; // Promise<ControlServer>, started on first use

/** A session's own CORS (the control API's `cors`): undefined keeps the server's. */
function sessionCors(cors) {
  if (cors == null) return undefined;
  if (typeof cors === "boolean") return cors;
  const origins = corsList(cors);
  return origins.length === 1 && origins[0] === "*" ? true : origins;
}

/** The control API that sessions with these options go to (null: this ssevcr has none). Each
 * session brings its own CORS, so one server serves every setting. */
export async function controlFor(options = {}) {
  const fromEnv = Control.fromEnv(options.env ?? process.env);
  if (fromEnv) return fromEnv;
  if (!(await replayOptions(findSsevcr(options.env ?? process.env))).has("--control")) return null;
  if (!ownServer) {
    ownServer = ControlServer.start({ env: options.env });
    ownServer.catch(() => {
      ownServer = null; // a later call tries again
    });
  }
  return (await ownServer).control;
}
