"""Which framing a response body uses, and its events for the event-level machinery. Pure.

    framing_of(content_type, body, url) -> "sse" | "ndjson" | "json-array" | None
    parse(body, framing) -> the framing parser's Parsed (frames, events, tail)
    events(body, framing) -> (Event(index, frame, unit, value), ...)

Three framings, one lossless sans-IO parser each: SSE (``text/event-stream``,
:mod:`ssevcr._sse`), NDJSON (``application/x-ndjson``, ``application/jsonl`` and their
spellings, or detected: a JSON or untyped body of one JSON object per line, :mod:`ssevcr._ndjson`),
and the JSON array Gemini's ``:streamGenerateContent`` sends without ``alt=sse``
(:mod:`ssevcr._jsonarray`). Everything that counts events (the faults that name them, ``show``,
the statistics, the fault catalogue, sweeps) asks this module, so the same fault grammar works
on SSE events, NDJSON lines and array elements.

An :class:`Event` is one of them with the two byte ranges faults need beyond its own bytes:
``value``, what ``corrupt`` damages (an SSE event's first ``data`` value, an NDJSON line without
its line ending, a whole array element), and ``unit``, what ``drop`` removes and ``duplicate``
repeats so that the framing stays well formed (the event itself; for an array element also one
comma next to it). Error frames for ``error:`` in each framing are built here from the
provider's error object (:mod:`ssevcr._providers`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import _content as content
from . import _jsonarray as jsonarray
from . import _ndjson as ndjson
from . import _providers as providers
from . import _sse as sse
from ._cassette import Response

__all__ = [
    "EVENT_FRAMES",
    "FRAMINGS",
    "NDJSON_TYPES",
    "Event",
    "EventFrame",
    "Frame",
    "Framed",
    "error_frame",
    "events",
    "framed",
    "framing_of",
    "is_event",
    "may_frame",
    "parse",
    "terminal_index",
]

FRAMINGS = ("sse", "ndjson", "json-array")

NDJSON_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
        "application/json-lines",
    }
)
"""Content types that declare one JSON value per line."""

_UNTYPED = frozenset({"", "application/json", "text/plain", "application/octet-stream"})
_SNIFF = 64 * 1024  # detection looks at the body's first bytes only
_SNIFF_LINES = 16

EventFrame = sse.Event | ndjson.Line | jsonarray.Element
Frame = sse.Frame | ndjson.Frame | jsonarray.Frame
Parsed = sse.Parsed | ndjson.Parsed | jsonarray.Parsed
EVENT_FRAMES = (sse.Event, ndjson.Line, jsonarray.Element)


def may_frame(content_type: str) -> bool:
    """Whether a body of this content type may be a stream of events (declared one, or of a
    type under which one is detected)."""
    ct = content_type.split(";")[0].strip().lower()
    return ct == "text/event-stream" or ct in NDJSON_TYPES or ct in _UNTYPED


def framing_of(content_type: str, body: bytes = b"", url: str = "") -> str | None:
    """The framing of a (decoded) body with this content type (without parameters), answering
    the request ``url``; None for a body that is not a stream of events."""
    ct = content_type.split(";")[0].strip().lower()
    if ct == "text/event-stream":
        return "sse"
    if ct in NDJSON_TYPES:
        return "ndjson"
    if ct not in _UNTYPED:
        return None
    if _gemini_array(url) and body.lstrip(b" \t\r\n")[:1] == b"[":
        return "json-array"
    return "ndjson" if _looks_like_ndjson(body) else None


def _gemini_array(url: str) -> bool:
    """Gemini's streaming endpoint without ``alt=sse``: a JSON array that grows."""
    path, _, query = url.partition("?")
    return path.lower().endswith(":streamgeneratecontent") and "alt=sse" not in query.lower()


def _looks_like_ndjson(body: bytes) -> bool:
    """Two or more lines, each (of the first few) one JSON object or array."""
    head = body[:_SNIFF]
    cut = head.rfind(b"\n")
    if cut < 0:
        return False
    lines = ndjson.parse(head[: cut + 1]).lines[:_SNIFF_LINES]
    if len(lines) < 2:
        return False
    for line in lines:
        text = line.text.strip()
        if text[:1] not in ("{", "["):
            return False
        try:
            json.loads(text)
        except ValueError:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Framed:
    """A response body (decoded) in its framing, parsed."""

    framing: str
    body: bytes
    parsed: Parsed

    @property
    def events(self) -> tuple[EventFrame, ...]:
        return self.parsed.events


def framed(response: Response, url: str = "") -> Framed | None:
    """The body of ``response`` (to the request ``url``) decoded and parsed in its framing;
    None for a body of no framing, or one that does not decode (unknown encoding, damaged,
    too large)."""
    if not may_frame(response.content_type):
        return None
    body = response.body
    if response.content_encoding != "identity":
        decoded = content.decode_body(body, response.content_encoding)
        if not decoded.ok:
            return None
        body = decoded.body
    framing = framing_of(response.content_type, body, url)
    return None if framing is None else Framed(framing, body, parse(body, framing))


def parse(body: bytes | Iterable[bytes], framing: str) -> Parsed:
    """The framing's parser over a whole body (or its pieces)."""
    if framing == "ndjson":
        return ndjson.parse(body)
    if framing == "json-array":
        return jsonarray.parse(body)
    return sse.parse(body)


def is_event(frame: object) -> bool:
    """Whether a parser's frame is an event (not an SSE comment, a blank line, an array's
    brackets and commas)."""
    return isinstance(frame, EVENT_FRAMES)


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a stream in any framing: its parser's frame, and where, in the body, the
    bytes ``drop``/``duplicate`` take (``unit``) and ``corrupt`` damages (``value``) are."""

    index: int  # from 1
    frame: EventFrame
    unit: tuple[int, int]
    value: tuple[int, int]
    repeat: bytes  # what ``duplicate`` inserts after the unit (its bytes; with a separator
    # when the unit has none: a lone array element, an NDJSON line without its LF)

    @property
    def start(self) -> int:
        return self.frame.start

    @property
    def end(self) -> int:
        return self.frame.end

    @property
    def raw(self) -> bytes:
        return self.frame.raw

    @property
    def type(self) -> str:
        return self.frame.type

    @property
    def data(self) -> str:
        return self.frame.data

    @property
    def id(self) -> str:
        return self.frame.id


def events(body: bytes, framing: str) -> tuple[Event, ...]:
    """The events of a whole (decoded) body in ``framing``."""
    if framing == "json-array":
        return _array_events(body, jsonarray.parse(body).elements)
    found: Sequence[EventFrame] = parse(body, framing).events
    out = []
    for n, frame in enumerate(found, start=1):
        span = (frame.start, frame.end)
        repeat = frame.raw
        if isinstance(frame, ndjson.Line) and not frame.terminated:
            repeat = b"\n" + repeat
        out.append(Event(n, frame, span, _value(frame), repeat))
    return tuple(out)


def _value(frame: EventFrame) -> tuple[int, int]:
    if isinstance(frame, sse.Event):
        spans = sse.data_values(frame)
        a, b = spans[0] if spans else (0, 0)
        return frame.start + a, frame.start + b
    raw = frame.raw
    end = len(raw) - (2 if raw.endswith(b"\r\n") else 1 if raw.endswith(b"\n") else 0)
    start = 3 if frame.start == 0 and raw.startswith(b"\xef\xbb\xbf") else 0
    return frame.start + start, frame.start + end


def _array_events(body: bytes, elements: Sequence[jsonarray.Element]) -> tuple[Event, ...]:
    """An element's unit takes the comma before it (the first element: the one after it), so a
    dropped or repeated element leaves a well-formed array."""
    out = []
    for n, el in enumerate(elements, start=1):
        if n > 1:
            unit = (elements[n - 2].end, el.end)
        elif len(elements) > 1:
            unit = (el.start, elements[1].start)
        else:
            unit = (el.start, el.end)
        repeat = body[unit[0] : unit[1]] if len(elements) > 1 else b"," + el.raw
        out.append(Event(n, el, unit, (el.start, el.end), repeat))
    return tuple(out)


def terminal_index(found: Sequence[Event | EventFrame], framing: str) -> int | None:
    """The index of the first event after which the provider sends nothing more (see
    :func:`ssevcr._providers.ends_stream`), or None when the stream just stops."""
    return providers.terminal_index(found, framing)


def error_frame(
    framing: str,
    provider: str,
    *,
    after: Event,
    found: Sequence[Event],
    body: bytes,
    message: str | None = None,
) -> bytes:
    """The bytes the provider sends for a mid-stream error right after event ``after``, in the
    stream's framing and line endings; nothing more follows them."""
    if framing == "sse":
        return providers.error_event(
            provider, message=message, sequence_number=after.index, like=found[0].raw
        )
    payload = providers.error_json(provider, message=message)
    if framing == "ndjson":
        eol = b"\r\n" if found[0].raw.endswith(b"\r\n") else b"\n"
        lead = b"" if after.raw.endswith(b"\n") else eol  # after a last line without its LF
        return lead + payload + eol
    # json-array: a comma as the stream writes them, the error element, the array's end
    comma = body[found[0].end : found[1].start] if len(found) > 1 else b","
    rest = body[found[-1].end :]
    bracket = rest.find(b"]")
    close = rest[: bracket + 1] if bracket >= 0 and not rest[:bracket].strip() else b"]"
    return comma + payload + close
