// startRecording(): record what the code under test asks an upstream, by `ssevcr record` as a
// reverse proxy (`--upstream URL`): the code under test uses the printed URL as its base URL, and
// every exchange is saved into the cassette, credentials redacted, as it completes.

import { Child, indent } from "./bin.js";
import { SsevcrError } from "./errors.js";
import { baseURLs } from "./replay.js";

const READY = /^Recording on (http:\/\/\S+) /;

export class Recording {
  static async start(options) {
    if (!options.cassette) throw new SsevcrError("startRecording needs `cassette` (a path)");
    if (!options.upstream) {
      throw new SsevcrError(
        "recording needs an upstream (the real API's base, e.g. https://api.openai.com): pass " +
          "`upstream` or set SSEVCR_UPSTREAM",
      );
    }
    const args = ["record", String(options.cassette), "--upstream", String(options.upstream)];
    args.push("--listen", options.listen ?? "127.0.0.1:0");
    if (options.overwrite) args.push("--overwrite");
    args.push(...(options.args ?? []));
    const recording = new Recording(options);
    recording.child = new Child(args, { pattern: READY, env: options.env ?? process.env });
    const { url } = await recording.child.ready;
    Object.assign(recording, baseURLs(url));
    return recording;
  }

  constructor(options) {
    this.cassette = String(options.cassette);
    this.upstream = String(options.upstream);
  }

  /** Recording only forwards: nothing is ever a miss. */
  async misses() {
    return [];
  }

  /** Stop the proxy, which saves what is still open; resolves with {log: its summary}, rejects
   * if anything was lost. */
  async stop() {
    const { code, signal, stderr } = await this.child.stop();
    if (code !== 0) {
      throw new SsevcrError(
        `ssevcr record ended with ${signal ?? `exit code ${code}`}:\n${indent(stderr.trim())}`,
      );
    }
    return { log: stderr };
  }
}

/** Record through `ssevcr record CASSETTE --upstream URL` (options: cassette, upstream,
 * overwrite, env, args, listen). */
export async function startRecording(options = {}) {
  return Recording.start(options);
}
