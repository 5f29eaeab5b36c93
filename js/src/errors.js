// The errors this package throws. Every one carries a message meant for the person reading the
// test output: what went wrong, and ssevcr's own explanation where it gave one.

/** Base class: ssevcr could not be found, started or driven, or a cassette is unusable. */
export class SsevcrError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "SsevcrError";
  }
}

/** Requests the cassette had no recording for (a test fails with it). `misses` holds each one. */
export class MissError extends SsevcrError {
  constructor(misses, where) {
    const count = `${misses.length} request${misses.length === 1 ? "" : "s"}`;
    super(
      `${count} matched no recorded interaction${where ? ` (${where})` : ""}:\n` +
        misses.map((m) => m.message).join("\n"),
    );
    this.name = "MissError";
    this.misses = misses;
  }
}
