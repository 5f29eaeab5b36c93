/** ssevcr for Node: drive `ssevcr replay` / `ssevcr record` from tests. */

export interface ReplayOptions {
  /** One cassette file (a path). */
  cassette?: string;
  /** Several cassette files, matched in order. */
  cassettes?: string[];
  /** original (default) | instant | scale:F | fixed:DUR */
  timing?: string;
  /** Cap every pause (250ms, 1.5s). */
  maxGap?: string;
  /** Fault specs: "truncate:after=3,end=abort", "status:429,times=1", "stall:before=3,for=forever"... */
  faults?: string[];
  /** Seed of every random choice (faults). */
  seed?: number;
  /** true (any origin, no credentials), or the origins allowed with credentials. */
  cors?: boolean | string | string[];
  /** Play each interaction once; a request too many is a miss (default: start over). */
  once?: boolean;
  /** Environment of the ssevcr process (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** Extra command-line arguments of `ssevcr replay` (a process of its own). */
  args?: string[];
  /** Request parts to match (sessions): ["method", "path", ...]. */
  matchOn?: string[];
  /** How a WebSocket client's messages are compared: "type" | "json" | "exact" (default: the server's --ws-match). */
  wsMatch?: "type" | "json" | "exact";
  /** A label for the session (the test helpers pass the test's title). */
  label?: string;
  /** HOST:PORT to listen on (default 127.0.0.1:0, a free port). */
  listen?: string;
}

/** A request the cassette had no recording for; `message` is ssevcr's explanation. */
export interface Miss {
  message: string;
  [key: string]: unknown;
}

/** One play's delivery journal, as ssevcr reports it. */
export interface JournalEntry {
  session?: string;
  method: string;
  url: string;
  status: number;
  request_headers: [string, string][];
  headers_sent_at: number | null;
  events: number;
  bytes: number;
  state: "open" | "completed" | "left";
  completed: boolean;
  left_at: number | null;
  left_after_event: number | null;
  left_after_byte: number | null;
  how: "fin" | "rst" | "timeout" | "cancel" | "shutdown" | null;
  fired: string[];
  [key: string]: unknown;
}

/** What a stopped replay served: a session's final summary (plays, misses, delivered, ...), or
 * a process's summary lines (`log`); the journal and the misses in both. */
export interface StopSummary {
  journal: JournalEntry[];
  miss_list: Miss[];
  log?: string;
  [key: string]: unknown;
}

export interface Replay {
  /** The server's URL (no trailing slash). */
  readonly url: string;
  /** `${url}/v1`: the `baseURL` of the openai SDK. */
  readonly openaiBaseURL: string;
  /** `url`: the `baseURL` of the @anthropic-ai/sdk SDK. */
  readonly anthropicBaseURL: string;
  /** The cassette file (test helpers). */
  cassette?: string;
  /** True when this test is recording (SSEVCR_RECORD), not replaying. */
  recording?: boolean;
  /** What each play delivered. */
  journal(): Promise<JournalEntry[]>;
  /** Requests that matched no recording so far. */
  misses(): Promise<Miss[]>;
  /** Faults for the requests from now on. */
  setFaults(faults: string[]): Promise<void>;
  /** Stop serving (end the session); resolves with what it served. */
  stop(): Promise<StopSummary>;
}

/** A session on the shared control server (default), or a process of its own with
 * `server: false` (also implied by `listen` and `args`). */
export function startReplay(options: ReplayOptions & { server?: boolean }): Promise<Replay>;

export interface RecordingOptions {
  cassette: string;
  /** The real API's base, e.g. https://api.openai.com. */
  upstream: string;
  /** Replace the cassette's interactions (default: append). */
  overwrite?: boolean;
  env?: NodeJS.ProcessEnv;
  args?: string[];
  listen?: string;
}

export interface Recording {
  readonly url: string;
  readonly openaiBaseURL: string;
  readonly anthropicBaseURL: string;
  readonly cassette: string;
  readonly upstream: string;
  misses(): Promise<Miss[]>;
  /** Stop the proxy (it saves what is still open); rejects if anything was lost. */
  stop(): Promise<{ log: string }>;
}

export function startRecording(options: RecordingOptions): Promise<Recording>;

export type RecordMode = "none" | "once" | "new_episodes" | "all";

/** Options of a test helper's ssevcr(...) call. */
export interface TestCassetteOptions extends Omit<ReplayOptions, "cassettes"> {
  /** A bare name: a file in cassettes/<test file>/; a name with a slash: a path from `root`. */
  name?: string;
  /** The folder of bare names (default cassettes/<test file>). */
  dir?: string;
  /** The project root that cassette paths start from (default: the working directory). */
  root?: string;
  /** Record mode (default: $SSEVCR_RECORD, else none). */
  record?: RecordMode;
  /** Where a recording run forwards to (default: $SSEVCR_UPSTREAM). */
  upstream?: string;
  /** Let an interaction play more than once (default: each plays once, as in pytest). */
  allowRepeats?: boolean;
  /** Do not fail the test on misses (it checks replay.misses() itself). */
  allowMisses?: boolean;
  /** Extra command-line arguments of `ssevcr record`. */
  recordArgs?: string[];
}

/** A test's replay, or its recording on a recording run: the same base URLs either way. */
export type TestReplay = Replay | (Recording & Partial<Replay>);

export interface SsevcrFixture {
  (options?: TestCassetteOptions): Promise<TestReplay>;
  /** The path this test's cassette gets. */
  path(options?: TestCassetteOptions): string;
}

export class SsevcrError extends Error {}
export class MissError extends SsevcrError {
  constructor(misses: Miss[], where?: string);
  readonly misses: Miss[];
}

export function findSsevcr(env?: NodeJS.ProcessEnv): string;
export function safeName(title: string): string;
export function cassettePath(options: {
  root?: string;
  file: string;
  title: string;
  name?: string;
  dir?: string;
}): string;
export function recordMode(option?: RecordMode, env?: NodeJS.ProcessEnv): RecordMode;

export class TestCassettes {
  constructor(options: {
    file: string;
    title: string;
    root?: string;
    defaults?: TestCassetteOptions;
  });
  path(options?: TestCassetteOptions): string;
  start(options?: TestCassetteOptions): Promise<TestReplay>;
  finish(): Promise<void>;
}
