"""The JSON-array stream parser of ssevcr: sans-IO, bytes in, elements out.

Gemini's REST API streams ``:streamGenerateContent`` without ``alt=sse`` as one JSON array that
grows as the answer is generated: ``[{...}`` then ``,\\r\\n{...}`` for each chunk, then ``]``.
A streaming reader hands each element to ``json.loads`` as soon as its last byte is here.

The parser cuts the stream into *frames*: each top-level element is an :class:`Element` (its
bytes exactly: an object, an array, a string or a scalar); the bytes between elements, the
opening ``[``, the commas, the closing ``]`` and the whitespace around them, are :class:`Gap`
frames, one per stretch between two elements. It follows the nesting of brackets and strings
(escapes included, also split across chunks) but does not check the JSON inside an element: a
consumer does (``Element.text`` is what it would parse). An element is a frame once its last
byte is here (a scalar once the byte after it is), a gap once the next element starts, the last
gap at :meth:`JSONArrayParser.flush`.

Bytes that break the array's shape (anything but whitespace before ``[``, between an element
and its comma, or after ``]``), and an element or array left open at the end, are never framed:
they stay in ``tail`` from the start of the stretch they belong to. Joining every frame's
``raw`` and ``tail`` gives back the input, byte for byte, for any chunking of it; frames never
depend on how the input was chunked; the parser never raises on any input.

It does no I/O and keeps no clock: callers attach times using ``Frame.start``/``Frame.end``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ._sse import RawFrame, feed_all

__all__ = ["Element", "Frame", "Gap", "JSONArrayParser", "Parsed", "parse"]

_NONSPACE = re.compile(rb"[^ \t\r\n]")
_IN_STRING = re.compile(rb'["\\]')
_STRUCTURE = re.compile(rb'[\[\]{}"]')
_SCALAR_END = re.compile(rb"[ \t\r\n,\]]")

# where the parser is: the states of the array's grammar
_OPEN = 0  # before "["
_FIRST = 1  # after "[": an element or "]" comes next
_VALUE = 2  # after ",": an element comes next
_ELEMENT = 3  # inside an element
_NEXT = 4  # after an element: "," or "]" comes next
_CLOSED = 5  # after "]": whitespace only
_BROKEN = 6  # the bytes broke the shape: nothing more is framed


@dataclass(frozen=True, slots=True)
class Element(RawFrame):
    """One element of the array: its bytes and its text (UTF-8, bad bytes replaced)."""

    text: str

    # the names every framing's events answer to (see ssevcr._framing)
    @property
    def type(self) -> str:
        return "element"

    @property
    def data(self) -> str:
        return self.text

    @property
    def id(self) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class Gap(RawFrame):
    """The bytes between two elements (or before the first, after the last): brackets, a comma,
    whitespace."""


Frame = Element | Gap


@dataclass(frozen=True, slots=True)
class Parsed:
    """The frames of a whole body, the bytes after the last frame, and whether the array was
    closed (``]`` seen, nothing but whitespace after it)."""

    frames: tuple[Frame, ...]
    tail: bytes
    closed: bool

    @property
    def elements(self) -> tuple[Element, ...]:
        return tuple(f for f in self.frames if isinstance(f, Element))

    @property
    def events(self) -> tuple[Element, ...]:
        """The name every framing's parse result answers to."""
        return self.elements


class JSONArrayParser:
    """Incremental parser. ``feed`` bytes as they arrive, ``flush`` at end of stream.

    >>> p = JSONArrayParser()
    >>> [f.text for f in p.feed(b'[{"a": 1}\\r\\n,\\r\\n{"b') + p.feed(b'": [2]}]')]
    ['{"a": 1}', '{"b": [2]}']
    """

    __slots__ = (
        "_buf",
        "_depth",
        "_escaped",
        "_flushed",
        "_in_string",
        "_offset",
        "_scalar",
        "_scanned",
        "_state",
        "_value_at",
    )

    def __init__(self) -> None:
        self._buf = bytearray()  # the bytes not framed yet, from stream offset ``_offset``
        self._offset = 0
        self._scanned = 0  # how far into ``_buf`` the grammar has been followed
        self._state = _OPEN
        self._value_at = 0  # where the element being read starts in ``_buf``
        self._depth = 0  # open brackets of that element
        self._in_string = False
        self._escaped = False  # the last byte read was a backslash inside a string
        self._scalar = False  # the element is a number or a literal (it ends before a delimiter)
        self._flushed = False

    @property
    def tail(self) -> bytes:
        """Bytes received but not part of any frame yet."""
        return bytes(self._buf)

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet in a frame."""
        return self._offset

    @property
    def closed(self) -> bool:
        """Whether the array has ended (``]`` seen) and nothing broke its shape since."""
        return self._state == _CLOSED

    def feed(self, data: bytes) -> list[Frame]:
        if self._flushed:
            raise RuntimeError("feed() after flush()")
        if not data or self._state == _BROKEN:
            self._buf += data
            return []
        self._buf += data
        return self._scan()

    def flush(self) -> list[Frame]:
        """End of stream: the gap after the last element is a frame once the array is closed.
        An open element or array stays in ``tail``."""
        if self._flushed:
            return []
        self._flushed = True
        if self._state != _CLOSED or not self._buf:
            return []
        frame = Gap(bytes(self._buf), self._offset)
        self._offset += len(self._buf)
        self._buf.clear()
        self._scanned = 0
        return [frame]

    def _scan(self) -> list[Frame]:
        buf = self._buf
        pos = self._scanned
        n = len(buf)
        frames: list[Frame] = []
        while pos < n:
            state = self._state
            if state == _ELEMENT:
                end = self._element_end(buf, pos)
                if end < 0:
                    pos = n
                    break
                frames += self._cut(end)
                buf, pos, n = self._buf, 0, len(self._buf)
                self._state = _NEXT
                continue
            m = _NONSPACE.search(buf, pos)
            if m is None:
                pos = n
                break
            pos = m.start()
            byte = buf[pos]
            if state == _OPEN:
                if byte != 0x5B:  # "["
                    self._state = _BROKEN
                    break
                self._state = _FIRST
                pos += 1
            elif state == _FIRST and byte == 0x5D:  # "[]": an empty array
                self._state = _CLOSED
                pos += 1
            elif state in (_FIRST, _VALUE):
                if byte in b",]":
                    self._state = _BROKEN
                    break
                else:
                    self._start_element(byte, pos)
            elif state == _NEXT:
                if byte == 0x2C:  # ","
                    self._state = _VALUE
                elif byte == 0x5D:
                    self._state = _CLOSED
                else:
                    self._state = _BROKEN
                    break
                pos += 1
            else:  # _CLOSED: only whitespace may follow
                self._state = _BROKEN
                break
        self._scanned = pos
        return frames

    def _start_element(self, byte: int, pos: int) -> None:
        self._state = _ELEMENT
        self._value_at = pos
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._scalar = byte not in b'{["'

    def _element_end(self, buf: bytearray, pos: int) -> int:
        """Follow the element from ``pos``: the index just after its last byte, or -1 when it
        goes on past the bytes here."""
        if self._scalar:
            m = _SCALAR_END.search(buf, pos)
            return -1 if m is None else m.start()
        n = len(buf)
        while pos < n:
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                    pos += 1
                    continue
                m = _IN_STRING.search(buf, pos)
                if m is None:
                    return -1
                pos = m.end()
                if buf[pos - 1] == 0x5C:  # a backslash: the next byte is escaped
                    self._escaped = True
                    continue
                self._in_string = False
                if self._depth == 0:
                    return pos  # a top-level string
                continue
            m = _STRUCTURE.search(buf, pos)
            if m is None:
                return -1
            pos = m.end()
            byte = buf[pos - 1]
            if byte == 0x22:  # '"'
                self._in_string = True
            elif byte in b"[{":
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth <= 0:
                    return pos
        return -1

    def _cut(self, end: int) -> list[Frame]:
        """Frame the gap before the element and the element (``_buf[_value_at:end]``)."""
        buf = self._buf
        frames: list[Frame] = []
        at = self._value_at
        if at:
            frames.append(Gap(bytes(buf[:at]), self._offset))
        raw = bytes(buf[at:end])
        frames.append(Element(raw, self._offset + at, raw.decode("utf-8", "replace")))
        del buf[:end]
        self._offset += end
        self._scanned = 0
        return frames


def parse(body: bytes | Iterable[bytes]) -> Parsed:
    """Parse a whole body (or its chunks) at once."""
    parser = JSONArrayParser()
    frames = feed_all(parser, body)
    closed = parser.closed
    frames += parser.flush()
    return Parsed(tuple(frames), parser.tail, closed)
