// ssevcr for Node: replay recorded streams (LLM APIs, any SSE) over a real socket with their
// recorded timing and faults, by driving the ssevcr command line. See js/README.md.

export { findSsevcr } from "./bin.js";
export { MissError, SsevcrError } from "./errors.js";
export { startRecording } from "./record.js";
export { startReplay } from "./replay.js";
export { cassettePath, recordMode, safeName, TestCassettes } from "./testing.js";
