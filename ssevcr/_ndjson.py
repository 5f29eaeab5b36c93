"""The NDJSON parser of ssevcr: sans-IO, bytes in, lines out.

NDJSON and JSON Lines (``application/x-ndjson``, ``application/jsonl``; Ollama streams it) put
one JSON value on each line. Lines end with LF; a CR before the LF is part of the line ending.
The parser cuts the stream into *frames*, each the bytes of one line up to and including its LF:
a line with nothing but whitespace (spaces, tabs, CR) is a :class:`Blank` (NDJSON readers skip
them), any other a :class:`Line`, whether or not it holds valid JSON (the parser frames, a
consumer judges: :attr:`Line.text` is what it would hand to ``json.loads``). One UTF-8 BOM at
the very start belongs to the first frame's bytes, not to its text.

JSON Lines lets the last line go without its LF; a consumer reads it once the stream ends, so
:meth:`NDJSONParser.flush` makes such a line a frame (unterminated: ``Line.terminated`` is
False). Until then it stays in ``tail``. Joining every frame's ``raw`` and ``tail`` gives back
the input, byte for byte, for any chunking of it, and frames never depend on how the input was
chunked. The parser never raises on any input.

It does no I/O and keeps no clock: callers attach times using ``Frame.start``/``Frame.end``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._sse import RawFrame, feed_all

__all__ = ["Blank", "Frame", "Line", "NDJSONParser", "Parsed", "parse"]

_BOM = b"\xef\xbb\xbf"
_SPACE = b" \t\r"


@dataclass(frozen=True, slots=True)
class Line(RawFrame):
    """One line of the stream: its bytes (line ending included) and its text (decoded as UTF-8,
    bad bytes replaced, without the line ending or a leading BOM)."""

    text: str

    @property
    def terminated(self) -> bool:
        """Whether the line ends with its LF (only the last line of a stream may not)."""
        return self.raw.endswith(b"\n")

    # the names every framing's events answer to (see ssevcr._framing)
    @property
    def type(self) -> str:
        return "line"

    @property
    def data(self) -> str:
        return self.text

    @property
    def id(self) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class Blank(RawFrame):
    """A line holding only whitespace: no value."""


Frame = Line | Blank


@dataclass(frozen=True, slots=True)
class Parsed:
    """The frames of a whole body and the bytes after the last frame."""

    frames: tuple[Frame, ...]
    tail: bytes

    @property
    def lines(self) -> tuple[Line, ...]:
        return tuple(f for f in self.frames if isinstance(f, Line))

    @property
    def events(self) -> tuple[Line, ...]:
        """The name every framing's parse result answers to."""
        return self.lines


class NDJSONParser:
    """Incremental parser. ``feed`` bytes as they arrive, ``flush`` at end of stream.

    >>> p = NDJSONParser()
    >>> [f.text for f in p.feed(b'{"a":1}\\n{"b"') + p.feed(b':2}\\n')]
    ['{"a":1}', '{"b":2}']
    """

    __slots__ = ("_first", "_flushed", "_offset", "_pend")

    def __init__(self) -> None:
        # the incomplete line: searched for LF once per byte (only new bytes are searched), so
        # feeding is linear in the input however it is chunked
        self._pend = bytearray()
        self._offset = 0  # stream offset of the incomplete line
        self._first = True  # the next frame is the stream's first (a BOM may lead it)
        self._flushed = False

    @property
    def tail(self) -> bytes:
        """Bytes received but not part of any frame yet (an incomplete line)."""
        return bytes(self._pend)

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet in a frame."""
        return self._offset

    def feed(self, data: bytes) -> list[Frame]:
        if self._flushed:
            raise RuntimeError("feed() after flush()")
        nl = data.find(b"\n")
        if nl < 0:
            self._pend += data
            return []
        frames = [self._frame(bytes(self._pend) + data[: nl + 1])]
        self._pend.clear()
        pos = nl + 1
        while (nl := data.find(b"\n", pos)) >= 0:
            frames.append(self._frame(data[pos : nl + 1]))
            pos = nl + 1
        self._pend += data[pos:]
        return frames

    def flush(self) -> list[Frame]:
        """End of stream: an incomplete line with a value in it becomes the last frame (a blank
        one stays in ``tail``, as an SSE parser keeps an unterminated block)."""
        if self._flushed:
            return []
        self._flushed = True
        pend = bytes(self._pend)
        if not _content(pend, self._first).strip(_SPACE):
            return []
        self._pend.clear()
        return [self._frame(pend)]

    def _frame(self, raw: bytes) -> Frame:
        body = _content(raw, self._first)
        self._first = False
        start = self._offset
        self._offset += len(raw)
        if body.endswith(b"\n"):
            body = body[:-2] if body.endswith(b"\r\n") else body[:-1]
        if not body.strip(_SPACE):
            return Blank(raw, start)
        return Line(raw, start, body.decode("utf-8", "replace"))


def _content(raw: bytes, first: bool) -> bytes:
    """A line's bytes without the stream's BOM."""
    return raw[3:] if first and raw.startswith(_BOM) else raw


def parse(body: bytes | Iterable[bytes]) -> Parsed:
    """Parse a whole body (or its chunks) at once."""
    parser = NDJSONParser()
    frames = feed_all(parser, body)
    frames += parser.flush()
    return Parsed(tuple(frames), parser.tail)
