// What the vitest, jest and Playwright helpers share: a cassette per test, named after the test's
// file and title (cassettes/<file>/<test title>.msgpack, as ssevcr's pytest plugin names them),
// the record mode (SSEVCR_RECORD=none|once|new_episodes|all), and the end of a test: everything
// it started is stopped, and requests that matched no recording fail it with ssevcr's explanation.

import { existsSync, mkdirSync } from "node:fs";
import { basename, dirname, extname, isAbsolute, join, resolve } from "node:path";

import { MissError, SsevcrError } from "./errors.js";
import { startRecording } from "./record.js";
import { startReplay } from "./replay.js";

export const RECORD_MODES = ["none", "once", "new_episodes", "all"];

/** A test title made safe as a file name (the pytest plugin's rule). */
export function safeName(title) {
  return title.replace(/[^\p{L}\p{N}_.[\]=,+-]/gu, "-");
}

/**
 * Where a test's cassette lives: `name` with a slash is a path from `root`; a bare `name` is a
 * file in the test file's folder `<root>/cassettes/<file>/`; no name: `<test title>.msgpack` there.
 */
export function cassettePath({ root = process.cwd(), file, title, name, dir }) {
  if (name != null && (name.includes("/") || isAbsolute(name))) return resolve(root, name);
  const folder = dir != null ? resolve(root, dir) : join(resolve(root), "cassettes", stem(file));
  if (name != null) return join(folder, name.endsWith(".msgpack") ? name : `${name}.msgpack`);
  return join(folder, `${safeName(title)}.msgpack`);
}

function stem(file) {
  const name = basename(file);
  return name.slice(0, name.length - extname(name).length);
}

/** The record mode: the option, else $SSEVCR_RECORD, else none. */
export function recordMode(option, env = process.env) {
  const mode = option ?? env.SSEVCR_RECORD ?? "none";
  if (!RECORD_MODES.includes(mode)) {
    throw new SsevcrError(
      `record mode must be one of ${RECORD_MODES.join(", ")}; got ${JSON.stringify(mode)}`,
    );
  }
  return mode;
}

/**
 * The cassettes of one test. `start(options)` serves (or records) one and resolves with its
 * replay; `finish()` stops them all and throws a MissError if any request matched nothing.
 */
export class TestCassettes {
  constructor({ file, title, root = process.cwd(), defaults = {} }) {
    this.file = file;
    this.title = title;
    this.root = root;
    this.defaults = defaults;
    this.started = [];
  }

  /** The path a cassette of this test gets (options.name, options.dir as in cassettePath). */
  path(options = {}) {
    const merged = { ...this.defaults, ...options };
    return cassettePath({
      root: merged.root ?? this.root,
      file: this.file,
      title: this.title,
      name: merged.name,
      dir: merged.dir,
    });
  }

  async start(options = {}) {
    const merged = { ...this.defaults, ...options };
    const env = merged.env ?? process.env;
    const mode = recordMode(merged.record, env);
    const root = merged.root ?? this.root;
    const path = merged.cassette != null ? resolve(root, merged.cassette) : this.path(merged);
    const exists = existsSync(path);
    const records = mode === "all" || (mode === "once" && !exists);
    let handle;
    if (records) {
      handle = await this.#record(path, merged, env, { overwrite: mode === "all" });
    } else if (mode === "new_episodes") {
      throw new SsevcrError(
        "SSEVCR_RECORD=new_episodes is not supported by the JS helpers (ssevcr record cannot " +
          "replay what it already has): use once (records a missing cassette) or all (records " +
          "it again)",
      );
    } else {
      if (!exists) {
        throw new SsevcrError(
          `no cassette ${path} for test "${this.title}" (record mode ${mode}): record it with ` +
            "SSEVCR_RECORD=once and an upstream (upstream option or SSEVCR_UPSTREAM)",
        );
      }
      const timing = env.SSEVCR_TIMING ?? merged.timing;
      handle = await startReplay({
        ...merged,
        cassette: path,
        cassettes: undefined,
        label: this.title,
        timing,
        once: merged.once ?? !merged.allowRepeats,
      });
    }
    handle.cassette = path;
    handle.recording = records;
    handle.allowMisses = Boolean(merged.allowMisses);
    this.started.push(handle);
    return handle;
  }

  async #record(path, merged, env, { overwrite }) {
    mkdirSync(dirname(path), { recursive: true });
    return startRecording({
      cassette: path,
      upstream: merged.upstream ?? env.SSEVCR_UPSTREAM,
      overwrite,
      env,
      args: merged.recordArgs,
    });
  }

  /** Stop what the test started; throw a MissError naming every request that matched nothing. */
  async finish() {
    const misses = [];
    const problems = [];
    for (const handle of this.started.splice(0)) {
      try {
        if (!handle.allowMisses) misses.push(...(await handle.misses()));
      } catch (e) {
        problems.push(e);
      }
      try {
        await handle.stop();
      } catch (e) {
        problems.push(e);
      }
    }
    if (misses.length) throw new MissError(misses, `test "${this.title}"`);
    if (problems.length) throw problems[0];
  }
}
