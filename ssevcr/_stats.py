"""Per-interaction figures for review: events with their arrival times, TTFB, TTFE, gaps.

Everything is derived from the recorded chunks by the parser of the body's framing (SSE, NDJSON,
JSON array: ``ssevcr._framing``): an event (an SSE event, an NDJSON line, an array element)
arrives with the chunk that carries its last byte. Content-encoded bodies (gzip, deflate) are
decoded chunk by chunk, each piece keeping its chunk's time, up to ``limit`` decoded bytes (a
bigger body, a decompression bomb, is reported as not decoded and counted as recorded).

Text meant to be shown (the URL, the error, an event's data, type and id) comes with credentials
masked (``ssevcr._secrets``): a cassette holding a live key never prints it. Offsets and sizes are
those of the real bytes. Pure: no files, no clocks, no output.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, overload

from . import _content as content
from . import _framing as framings
from . import _sse as sse
from ._cassette import Interaction, Pieces, Response
from ._redaction import Redaction
from ._secrets import Span, find, mask_text, mask_url, merge, printable

__all__ = [
    "EventStat",
    "InteractionStats",
    "arrivals",
    "decoded_pieces",
    "event_times",
    "excerpt",
    "interaction_stats",
    "percentile",
    "secret_spans",
    "stall_indices",
]


@dataclass(frozen=True, slots=True)
class EventStat:
    index: int  # from 1, events only (SSE comments, blank lines, array brackets not counted)
    at: float  # arrival: seconds from the request, the chunk that carried the event's last byte
    gap: float | None  # seconds since the previous event (None for the first)
    offset: int  # byte offset of the event in the (decoded) body
    size: int  # bytes of the event's frame, blank line included
    type: str
    id: str
    data: str


@dataclass(frozen=True, slots=True)
class InteractionStats:
    index: int  # from 1
    method: str
    url: str
    status: int
    reason: str
    outcome: str
    error: str | None
    content_type: str
    encoding: str  # content-encoding on the wire ("identity" if none)
    decoded: bool  # the body below was decoded from ``encoding``
    decode_problem: str | None  # why an encoded body could not be decoded
    chunks: int
    wire_bytes: int  # body bytes as recorded (still encoded)
    body_bytes: int  # body bytes after decoding
    headers_at: float
    ttfb: float | None  # first body chunk
    ttfe: float | None  # first SSE event
    duration: float  # end of the response
    events: tuple[EventStat, ...]
    comments: int  # frames that dispatched no event (keep-alive comments, stray blank lines)
    tail: int  # bytes after the last complete frame (an unterminated block)
    framing: str | None = None  # sse, ndjson, json-array; None for a body without events

    @property
    def gaps(self) -> list[float]:
        return [e.gap for e in self.events if e.gap is not None]

    @property
    def gap_median(self) -> float | None:
        return percentile(self.gaps, 50)

    @property
    def gap_p95(self) -> float | None:
        return percentile(self.gaps, 95)

    @property
    def gap_max(self) -> float | None:
        gaps = self.gaps
        return max(gaps) if gaps else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def stall_indices(times: Sequence[float], span: float) -> list[int]:
    """Positions ``i`` in ``times`` whose gap from ``times[i-1]`` stands out: over 4x the median
    gap and over 4% of ``span`` (the duration shown), so a stall or a pause is seen at a glance."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    median = percentile(gaps, 50) or 0.0
    return [i + 1 for i, g in enumerate(gaps) if g > 4 * median and g > 0.04 * span]


def decoded_pieces(
    response: Response, *, limit: int = content.DEFAULT_LIMIT
) -> tuple[Pieces, str | None]:
    """The body as (time, bytes) pieces, decoded if content-encoded; and a problem, if the
    encoding could not be decoded (then the pieces are the raw chunks)."""
    pieces = [(c.at, c.data) for c in response.chunks]
    return decode(pieces, response.content_encoding, limit=limit)


def decode(
    pieces: Pieces, encoding: str, *, limit: int = content.DEFAULT_LIMIT
) -> tuple[Pieces, str | None]:
    if encoding == "identity" or not pieces:
        return pieces, None
    decoded = content.decode(pieces, encoding, limit=limit)
    if not decoded.ok:
        return (
            pieces,
            f"the body is {encoding}-encoded and was {decoded.problem}; shown as recorded",
        )
    return list(decoded.pieces), None


_RULES = Redaction()


def secret_spans(body: bytes, content_type: str) -> list[Span]:
    """Where credentials are in a (decoded) body: by their shape, and in secret places (JSON keys
    like ``password`` in a JSON body or an event's data, form fields)."""
    return merge([*find(body), *_RULES.body_spans(body, content_type)])


Frame = framings.Frame


@overload
def arrivals(
    pieces: Iterable[tuple[float, bytes]], framing: Literal["sse"] = "sse"
) -> tuple[Sequence[tuple[sse.Frame, float]], bytes]: ...
@overload
def arrivals(
    pieces: Iterable[tuple[float, bytes]], framing: str
) -> tuple[Sequence[tuple[Frame, float]], bytes]: ...
def arrivals(
    pieces: Iterable[tuple[float, bytes]], framing: str = "sse"
) -> tuple[Sequence[tuple[Frame, float]], bytes]:
    """Parse timed pieces of a body in ``framing``: every frame with the time of the piece
    carrying its last byte, and the unterminated tail."""
    ends: list[int] = []
    times: list[float] = []
    parts: list[bytes] = []
    total = 0
    for at, data in pieces:
        if not data:
            continue
        total += len(data)
        ends.append(total)
        times.append(at)
        parts.append(data)
    parsed = framings.parse(parts, framing)
    timed = [(f, times[bisect.bisect_left(ends, f.end)]) for f in parsed.frames]
    return timed, parsed.tail


def event_times(interactions: Iterable[Interaction]) -> list[float]:
    """The event arrival times of the first interaction with streamed events (for a timing
    profile fitted to a recording); empty when none has any."""
    for inter in interactions:
        pieces, _ = decoded_pieces(inter.response)
        timed, _ = arrivals(pieces)
        times = [t for frame, t in timed if isinstance(frame, sse.Event)]
        if times:
            return times
    return []


def event_stats(
    timed: Sequence[tuple[Frame, float]], secrets: Sequence[Span] = ()
) -> tuple[EventStat, ...]:
    """The events of ``timed``; the text of an event that holds one of ``secrets`` (spans in the
    body) comes masked."""
    out: list[EventStat] = []
    prev: float | None = None
    starts = [s.start for s in secrets]
    for frame, at in timed:
        if not isinstance(frame, framings.EVENT_FRAMES):
            continue
        kind, ident, data = frame.type, frame.id, frame.data
        i = bisect.bisect_left(starts, frame.end) - 1
        if secrets and i >= 0 and secrets[i].end > frame.start:
            kind, ident, data = mask_text(kind), mask_text(ident), mask_text(data)
        out.append(
            EventStat(
                len(out) + 1,
                at,
                None if prev is None else at - prev,
                frame.start,
                len(frame.raw),
                kind,
                ident,
                data,
            )
        )
        prev = at
    return tuple(out)


def interaction_stats(
    index: int, interaction: Interaction, *, limit: int = content.DEFAULT_LIMIT
) -> InteractionStats:
    """The figures of one interaction (``index`` counts from 1)."""
    req, resp = interaction.request, interaction.response
    pieces, problem = decoded_pieces(resp, limit=limit)
    events: tuple[EventStat, ...] = ()
    comments = tail = 0
    framing = None
    if problem is None and framings.may_frame(resp.content_type):
        body = b"".join(d for _, d in pieces)
        framing = framings.framing_of(resp.content_type, body, req.url)
    if framing is not None:
        timed, rest = arrivals(pieces, framing)
        events = event_stats(timed, secret_spans(body, resp.content_type))
        comments = len(timed) - len(events)
        tail = len(rest)
    return InteractionStats(
        index=index,
        method=req.method,
        url=mask_url(req.url),
        status=resp.status,
        reason=resp.reason,
        outcome=resp.end.outcome.value,
        error=None if resp.end.error is None else mask_text(resp.end.error),
        content_type=resp.content_type,
        encoding=resp.content_encoding,
        decoded=resp.content_encoding != "identity" and problem is None and bool(pieces),
        decode_problem=problem,
        chunks=len(resp.chunk_sizes),
        wire_bytes=len(resp.body),
        body_bytes=sum(len(d) for _, d in pieces),
        headers_at=resp.headers_at,
        ttfb=resp.chunk_at[0] if resp.chunk_at else None,
        ttfe=events[0].at if events else None,
        duration=resp.end.at,
        events=events,
        comments=comments,
        tail=tail,
        framing=framing,
    )


# ---------------------------------------------------------------------------------------------
# a readable one-line excerpt of an event's data

# string members that carry the text a stream is made of, across providers: OpenAI chat
# (delta.content, tool_calls[].function.arguments, reasoning), OpenAI responses (delta, text),
# Anthropic (delta.text, partial_json, thinking), Gemini (parts[].text), Cohere (tool_plan,
# content.text), Mistral (content[].thinking[].text), Ollama (message.content, response), and
# error messages
_TEXT_KEYS = frozenset(
    {
        "text",
        "content",
        "delta",
        "partial_json",
        "arguments",
        "thinking",
        "reasoning",
        "reasoning_content",
        "refusal",
        "tool_plan",
        "message",
        "response",
    }
)
_LABEL_KEYS = ("name", "finish_reason", "stop_reason", "finishReason", "done_reason")
_ARG_KEYS = frozenset({"args", "input"})
_SKIP_KEYS = frozenset(
    {
        "tools",
        "usage",
        "usageMetadata",
        "metadata",
        "instructions",
        "signature",
        "thoughtSignature",
        "obfuscation",
        "logprobs",
    }
)

_BORING_KEYS = frozenset(
    {
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "service_tier",
        "sequence_number",
        "obfuscation",
    }
)


def _walk(node: object, texts: list[str], labels: list[str], depth: int = 0) -> None:
    if depth > 12:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _SKIP_KEYS:
                continue
            if isinstance(value, str):
                if key in _TEXT_KEYS and value:
                    texts.append(value)
                elif key in _LABEL_KEYS and value:
                    labels.append(f"{key}={value}")
            elif key in _ARG_KEYS and isinstance(value, dict) and value:
                texts.append(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
            else:
                _walk(value, texts, labels, depth + 1)
    elif isinstance(node, list):
        for item in node:
            _walk(item, texts, labels, depth + 1)


def excerpt(data: str, limit: int = 120) -> str:
    """One readable line for an event's data: for JSON, the text it carries (delta text, tool
    arguments, error message) quoted, then labels (``finish_reason=stop``); else the data."""
    text = data.strip()
    result = ""
    if text[:1] in ("{", "["):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if doc is not None:
            texts: list[str] = []
            labels: list[str] = []
            _walk(doc, texts, labels)
            parts = []
            if texts:
                parts.append(json.dumps("".join(texts), ensure_ascii=False))
            parts += labels
            if not parts and isinstance(doc, dict):  # no text: the JSON without its boilerplate
                doc = {k: v for k, v in doc.items() if k not in _BORING_KEYS} or doc
            result = " ".join(parts) or json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    if not result:
        result = text
    result = printable(result)
    return result if len(result) <= limit else result[: limit - 1] + "…"
