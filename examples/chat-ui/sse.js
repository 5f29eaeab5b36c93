// An incremental Server-Sent Events decoder for fetch() + ReadableStream: bytes in, events out.
//
//   const decoder = new SSEDecoder();
//   for (const event of decoder.decode(value)) ...   // each Uint8Array a read gives you
//   decoder.flush();                                 // at the end of the stream
//
// It follows the WHATWG "event stream interpretation" (HTML, server-sent events): UTF-8 (a
// character split across reads is kept whole; one leading BOM is dropped), lines ending in CR,
// LF or CRLF (a CR at the end of one read and its LF at the start of the next are one line
// end), `data` lines joined with LF, no event for a block without data, `id` containing NUL
// ignored, `retry` only when all ASCII digits, comments ignored. An unterminated last block is
// never dispatched: `flush()` leaves it in `pending`, so a caller can tell that the stream
// stopped in the middle of an event. Bytes that are not UTF-8 become U+FFFD, as the standard
// says; `new SSEDecoder("", { fatal: true })` throws a TypeError on them instead (for a stream
// whose producer always sends UTF-8, such as an LLM API: a bad byte there is damage).
//
// No I/O, no timers, no DOM: the pages in this folder do that.

export class SSEDecoder {
  constructor(lastEventId = "", { fatal = false } = {}) {
    this.lastEventId = lastEventId;
    this.retry = null; // the last valid `retry` value (ms), if any
    this.pending = ""; // text received but not yet part of a dispatched block
    this._utf8 = new TextDecoder("utf-8", { fatal }); // streaming: keeps a split character; drops one BOM
    this._text = ""; // text not yet cut into lines
    this._skipLF = false; // the previous read ended with CR: an LF starting this one belongs to it
    this._block = ""; // the current block's lines so far (for `pending`)
    this._resetBlock();
  }

  _resetBlock() {
    this._data = [];
    this._type = "";
    this._id = null; // an `id` in this block takes effect when the block ends
  }

  /** Decode one read (a Uint8Array); returns the events it completed. */
  decode(bytes) {
    return this._lines(this._utf8.decode(bytes, { stream: true }), false);
  }

  /** End of stream: returns the events still complete in the buffer (none: an unterminated
   * block is discarded, as the standard says) and leaves what was cut off in `pending`. */
  flush() {
    return this._lines(this._utf8.decode(), true);
  }

  _lines(text, final) {
    const events = [];
    if (this._skipLF && text.length > 0) {
      if (text[0] === "\n") text = text.slice(1);
      this._skipLF = false;
    }
    let buf = this._text + text;
    let start = 0;
    for (;;) {
      let cr = buf.indexOf("\r", start);
      let lf = buf.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      let end, next;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        end = cr;
        if (cr + 1 < buf.length) {
          next = buf[cr + 1] === "\n" ? cr + 2 : cr + 1;
        } else {
          next = cr + 1; // a CR at the end of this read: its LF may start the next one
          this._skipLF = true;
        }
      } else {
        end = lf;
        next = lf + 1;
      }
      const line = buf.slice(start, end);
      this._block += buf.slice(start, next);
      start = next;
      const event = this._line(line);
      if (event) events.push(event);
    }
    this._text = buf.slice(start);
    this.pending = this._block + this._text;
    if (final && this._text) {
      this._text = ""; // an unterminated line: never a field, never an event
    }
    return events;
  }

  _line(line) {
    if (line === "") return this._dispatch();
    if (line[0] === ":") return null; // a comment (keep-alive)
    const colon = line.indexOf(":");
    let name = line;
    let value = "";
    if (colon >= 0) {
      name = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
    }
    if (name === "data") this._data.push(value);
    else if (name === "event") this._type = value;
    else if (name === "id") {
      if (!value.includes("\0")) this._id = value;
    } else if (name === "retry") {
      if (/^[0-9]+$/.test(value)) this.retry = Number(value);
    }
    return null;
  }

  _dispatch() {
    this._block = "";
    if (this._id !== null) this.lastEventId = this._id;
    if (this._data.length === 0) {
      this._resetBlock();
      return null;
    }
    const event = { type: this._type || "message", data: this._data.join("\n"), lastEventId: this.lastEventId };
    this._resetBlock();
    return event;
  }
}
