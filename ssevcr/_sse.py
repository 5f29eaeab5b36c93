"""The one SSE parser of ssevcr: sans-IO, bytes in, frames out.

It follows the WHATWG "event stream interpretation" (HTML §9.2.6): UTF-8 with one leading BOM
stripped, CR / LF / CRLF line endings (also split across chunks), ``data`` lines joined with LF,
no dispatch without data, ``id`` containing NUL ignored, ``retry`` only when all ASCII digits,
comments, and an unterminated final block never dispatched.

Unlike a client-side decoder it keeps the exact bytes: the stream is cut into *frames*, each the
bytes of one block up to and including the blank line that ends it. A block that dispatches an
event is an :class:`Event`; any other block (comments, a stray blank line, a ``retry``-only block)
is a :class:`Comment`. Joining every frame's ``raw`` and the parser's ``tail`` (an unterminated
block) gives back the input, byte for byte, for any chunking of it. Frames never depend on how
the input was chunked. The parser never raises on any input.

It does no I/O and keeps no clock: callers attach times using ``Frame.start``/``Frame.end``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = [
    "Comment",
    "Event",
    "Frame",
    "Parsed",
    "RawFrame",
    "SSEParser",
    "data_values",
    "feed_all",
    "parse",
]

_BOM = b"\xef\xbb\xbf"
_EOL = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class RawFrame:
    """The bytes of one frame and the stream offset they start at: what the frames of every
    stream parser are (these, and those of ``_ndjson`` and ``_jsonarray``)."""

    raw: bytes
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.raw)


@dataclass(frozen=True, slots=True)
class Event(RawFrame):
    """A dispatched event. ``id`` is the last event ID in force after this event."""

    type: str
    data: str
    id: str
    retry: int | None = None


@dataclass(frozen=True, slots=True)
class Comment(RawFrame):
    """A block that dispatched no event: comment lines (``text``, joined by LF), blank lines,
    or fields without data (a ``retry`` in it is still honoured)."""

    text: str
    retry: int | None = None


Frame = Event | Comment


@dataclass(frozen=True, slots=True)
class Parsed:
    """The frames of a whole body and the bytes after the last complete block."""

    frames: tuple[Frame, ...]
    tail: bytes
    last_event_id: str
    retry: int | None

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(f for f in self.frames if isinstance(f, Event))


class SSEParser:
    """Incremental parser. ``feed`` bytes as they arrive, ``flush`` at end of stream.

    >>> p = SSEParser()
    >>> [f.data for f in p.feed(b"data: a\\n\\nda") + p.feed(b"ta: b\\n\\n")]
    ['a', 'b']
    """

    __slots__ = (
        "_bom_checked",
        "_comments",
        "_data",
        "_done",
        "_event_type",
        "_flushed",
        "_held_cr",
        "_offset",
        "_pend",
        "_pending_id",
        "_retry_in_block",
        "last_event_id",
        "retry",
    )

    def __init__(self, last_event_id: str = "") -> None:
        self.last_event_id = last_event_id
        self.retry: int | None = None
        # The current block, in two parts: its complete lines (already parsed, kept for the
        # frame's raw bytes) and the incomplete line after them. Every byte is searched for a
        # line end once, and copied a bounded number of times: feeding is linear in the input
        # however it is chunked (a line fed one byte at a time included).
        self._done: list[bytes] = []
        # the incomplete line (no CR or LF in it, but a last CR): bytes as a parse left it, a
        # bytearray once chunks without a line end are appended to it
        self._pend: bytes | bytearray = b""
        self._held_cr = False  # _pend ends with a CR whose LF may come next
        self._offset = 0  # stream offset of the current block
        self._bom_checked = False
        self._flushed = False
        self._reset_block()

    def _reset_block(self) -> None:
        self._data: list[str] = []
        self._event_type = ""
        self._pending_id: str | None = None
        self._retry_in_block: int | None = None
        self._comments: list[str] = []

    @property
    def tail(self) -> bytes:
        """Bytes received but not part of any frame yet (an unterminated block)."""
        return b"".join(self._done) + bytes(self._pend)

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet in a frame."""
        return self._offset

    def feed(self, data: bytes) -> list[Frame]:
        if self._flushed:
            raise RuntimeError("feed() after flush()")
        if not data:
            return []
        if self._bom_checked and not self._held_cr and b"\n" not in data and b"\r" not in data:
            pend = self._pend  # the line goes on: nothing to parse yet
            if type(pend) is bytes:  # what the last parse left: grown in place from now on
                pend = self._pend = bytearray(pend)
            pend += data
            return []
        return self._parse(data, False)

    def flush(self) -> list[Frame]:
        """End of stream: a pending CR ends its line. An unterminated block stays in ``tail``."""
        if self._flushed:
            return []
        self._flushed = True
        return self._parse(b"", True)

    def _parse(self, data: bytes, final: bool) -> list[Frame]:
        """Parse the incomplete line and ``data``: fields of complete lines, a frame per blank
        line; what is left waits for more."""
        pend = self._pend
        buf = pend + data if pend else bytes(data)  # bytes + bytes, or a bytearray's copy
        if type(buf) is not bytes:
            buf = bytes(buf)
        self._pend = b""
        pos = 0
        if not self._bom_checked:
            # The BOM may arrive split over several chunks; decide once 3 bytes (or EOF) are here.
            if len(buf) < 3 and not final and _BOM.startswith(buf):
                self._pend = buf
                return []
            self._bom_checked = True
            if buf.startswith(_BOM):
                pos = 3  # part of the first frame's bytes, not of its first line
        frames: list[Frame] = []
        block_start = 0
        n = len(buf)
        search = _EOL.search
        field, dispatch = self._field, self._dispatch
        done = self._done
        offset = self._offset
        held = False
        while True:
            m = search(buf, pos)
            if m is None:
                break
            eol_end = m.end()
            if eol_end == n and buf[eol_end - 1] == 0x0D and not final:
                held = True  # a CR at the end: the next byte may be its LF
                break
            start = m.start()
            if start > pos:
                field(buf[pos:start])
                pos = eol_end
                continue
            pos = eol_end
            raw = buf[block_start:pos]
            if done:
                raw = b"".join(done) + raw
                done = self._done = []
            frames.append(dispatch(raw, offset))
            offset += len(raw)
            block_start = pos
        self._offset = offset
        if pos > block_start:  # complete lines of a block that goes on
            done.append(buf[block_start:pos])
        if pos < n:
            self._pend = buf[pos:]
        self._held_cr = held
        return frames

    def _field(self, line: bytes) -> None:
        if line[0] == 0x3A:  # ':' comment
            text = line[1:]
            if text[:1] == b" ":
                text = text[1:]
            self._comments.append(text.decode("utf-8", "replace"))
            return
        name, _, value = line.partition(b":")  # as _split_field: one space after the colon goes
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event_type = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\x00" not in value:
                self._pending_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value and value.isdigit():
            self.retry = self._retry_in_block = _decimal(value)
        # any other field is ignored

    def _dispatch(self, raw: bytes, start: int) -> Frame:
        if self._pending_id is not None:
            self.last_event_id = self._pending_id
        frame: Frame
        if self._data:
            frame = Event(
                raw=raw,
                start=start,
                type=self._event_type or "message",
                data="\n".join(self._data),
                id=self.last_event_id,
                retry=self._retry_in_block,
            )
        else:
            frame = Comment(
                raw=raw, start=start, text="\n".join(self._comments), retry=self._retry_in_block
            )
        self._reset_block()
        return frame


def _split_field(line: bytes) -> tuple[bytes, int]:
    """A field line's name and where its value starts (after the colon and one space)."""
    colon = line.find(b":")
    if colon < 0:
        return line, len(line)
    at = colon + 1
    if line[at : at + 1] == b" ":
        at += 1
    return line[:colon], at


def data_values(frame: Frame) -> list[tuple[int, int]]:
    """Where the value of each ``data`` line of a frame is in its ``raw`` bytes (start, end):
    what an editor of event data may change without touching the framing."""
    raw = frame.raw
    pos = 3 if frame.start == 0 and raw.startswith(_BOM) else 0
    out = []
    for m in _EOL.finditer(raw, pos):
        line = raw[pos : m.start()]
        if line and line[0] != 0x3A:
            name, at = _split_field(line)
            if name == b"data":
                out.append((pos + at, m.start()))
        pos = m.end()
    return out


def _decimal(digits: bytes) -> int:
    """``int(digits)`` for ASCII digits, also beyond the digit limit of ``int()`` on text (4300 by
    default, at least 640), which would otherwise make a long ``retry`` line raise."""
    if len(digits) <= 640:
        return int(digits)
    n = 0
    for i in range(0, len(digits), 640):
        piece = digits[i : i + 640]
        n = n * 10 ** len(piece) + int(piece)
    return n


_F = TypeVar("_F")


class _Feedable(Protocol[_F]):
    def feed(self, data: bytes) -> list[_F]: ...


def feed_all(parser: _Feedable[_F], body: bytes | Iterable[bytes]) -> list[_F]:
    """The frames ``parser`` cuts from a whole body (or its chunks), before its ``flush``: the
    one loop of every stream parser's ``parse``."""
    if isinstance(body, bytes | bytearray | memoryview):
        return parser.feed(bytes(body))
    frames: list[_F] = []
    for chunk in body:
        frames += parser.feed(chunk)
    return frames


def parse(body: bytes | Iterable[bytes], *, last_event_id: str = "") -> Parsed:
    """Parse a whole body (or its chunks) at once."""
    parser = SSEParser(last_event_id)
    frames = feed_all(parser, body)
    frames += parser.flush()
    return Parsed(tuple(frames), parser.tail, parser.last_event_id, parser.retry)
