"""Resumption: a recorded event stream continued after the event a reconnecting client names in
``Last-Event-ID``, as a server following the SSE specification would. Pure; no I/O.

    resumed(response, "42")            -> the response from just after the event with id 42
    resumed(response, "42", gap=True)  -> the same without the event that follows it
    refused(at)                        -> a 204 schedule (per the spec, EventSource stops)
    linked(earlier, new)               -> ``new``, each recorded reconnection linked to the
                                          stream it continues (``Interaction.resumes``)

The event named is the first one whose ``id:`` set the client's last event ID to that value
(events after it without an ``id:`` line keep it; they are sent again, as the client has not
acknowledged them). Every byte after that event goes out as recorded, at its recorded offset
from the event's end, so the resumed stream keeps the recorded pacing. ``retry:`` is honoured:
when the reconnection time in force at that event was set before it (usually in the stream's
first block), the resumed stream starts with that block's recorded bytes (a ``retry:`` line the
recording carried inside an event is sent as ``retry: N`` alone), so a client connecting afresh
gets the same reconnection time. A compressed body is resumed decoded, without its
content-encoding (its compressed bytes cannot be cut at an event).

A recording of a reconnecting client holds each connection; ``linked`` (the recorders call it,
through the store, as they append) gives a connection whose request carried ``Last-Event-ID: X``
a link to the latest earlier stream of the same method and URL (and the same
``Mcp-Session-Id``, when both requests carry one) that has an event with id X.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from . import _content as content
from ._cassette import (
    End,
    Headers,
    Interaction,
    Pieces,
    Request,
    Response,
    Resumes,
    resumes_problem,
    with_body,
)
from ._schedule import Close, Schedule
from ._sse import Comment, Event, parse

__all__ = ["Resumable", "linked", "refused", "resumable", "resumed"]


@dataclass(frozen=True, slots=True)
class Resumable:
    """A recorded event stream's events and where each id was first set (computed once per
    interaction by the player)."""

    pieces: tuple[tuple[float, bytes], ...]  # the (decoded) body's chunks with their times
    headers: Headers  # without content-encoding when it was decoded
    frames: tuple[Event | Comment, ...]
    first_with_id: dict[str, int]  # id -> index in ``events`` of the event that set it

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(f for f in self.frames if isinstance(f, Event))


def resumable(response: Response) -> Resumable | None:
    """The response as a stream that can be resumed, or None (not an event stream, no event
    with an id, or a body that cannot be decoded)."""
    if response.status != 200 or not response.is_event_stream:
        return None
    pieces: tuple[tuple[float, bytes], ...] = tuple((c.at, c.data) for c in response.chunks)
    headers = response.headers
    encoding = response.content_encoding
    if encoding != "identity":
        decoded = content.decode(pieces, encoding)
        if not decoded.ok:
            return None
        pieces = decoded.pieces
        headers = tuple((k, v) for k, v in headers if k.lower() != "content-encoding")
    frames = parse(b"".join(data for _, data in pieces)).frames
    first: dict[str, int] = {}
    previous = ""
    n = 0
    for frame in frames:
        if isinstance(frame, Event):
            if frame.id and frame.id != previous and frame.id not in first:
                first[frame.id] = n
            previous = frame.id
            n += 1
    if not first:
        return None
    return Resumable(pieces, headers, frames, first)


def resumed(
    response: Response, last_event_id: str, *, gap: bool = False, stream: Resumable | None = None
) -> Response | None:
    """``response`` resumed after the event whose id is ``last_event_id`` (None when there is no
    such event); ``gap`` leaves out the one event that follows it."""
    stream = stream if stream is not None else resumable(response)
    if stream is None or last_event_id not in stream.first_with_id:
        return None
    events = stream.events
    k = stream.first_with_id[last_event_id]
    cut = events[k].end
    kept: list[tuple[int, int]] = []
    if gap and k + 1 < len(events):
        skipped = events[k + 1]
        kept = [(cut, skipped.start), (skipped.end, -1)]
    else:
        kept = [(cut, -1)]
    pieces = list(stream.pieces)
    body_length = sum(len(d) for _, d in pieces)
    resumed_at = _time_at(pieces, cut - 1)  # when the event named was recorded to end
    shift = max(0.0, resumed_at - response.headers_at)
    out: Pieces = []
    preamble = _retry_block(stream.frames, cut)
    if preamble:
        out.append((response.headers_at, preamble))
    for start, stop in kept:
        for at, data in _slice(pieces, start, body_length if stop < 0 else stop):
            out.append((max(response.headers_at, at - shift), data))
    headers = _without_length(stream.headers, sum(len(d) for _, d in out))
    end_at = max(response.headers_at, response.end.at - shift, out[-1][0] if out else 0.0)
    return with_body(
        response, out, headers=headers, end=End(end_at, response.end.outcome, response.end.error)
    )


def refused(at: float, fired: tuple[str, ...] = ()) -> Schedule:
    """The answer that ends EventSource reconnection: 204 No Content, at ``at``."""
    return Schedule(204, "No Content", "HTTP/1.1", (), at, (), Close(at), fired)


def _retry_block(frames: Sequence[Event | Comment], cut: int) -> bytes:
    """The recorded block that set the reconnection time in force at byte ``cut`` (b"" if none
    was set before it)."""
    last: Event | Comment | None = None
    for frame in frames:
        if frame.end > cut:
            break
        if frame.retry is not None:
            last = frame
    if last is None or last.retry is None:
        return b""
    if isinstance(last, Comment):
        return last.raw
    return b"retry: %d\n\n" % last.retry  # (inside an event: the field alone, not the event)


def _time_at(pieces: Pieces, pos: int) -> float:
    """The recorded time of the piece carrying the byte at ``pos``."""
    end = 0
    for at, data in pieces:
        end += len(data)
        if pos < end:
            return at
    return pieces[-1][0] if pieces else 0.0


def _slice(pieces: Pieces, start: int, stop: int) -> Pieces:
    """The bytes ``start:stop`` of the body as pieces at the times of those that carried them."""
    out: Pieces = []
    pos = 0
    for at, data in pieces:
        end = pos + len(data)
        if end > start and pos < stop:
            out.append((at, data[max(0, start - pos) : min(len(data), stop - pos)]))
        pos = end
        if pos >= stop:
            break
    return out


def _without_length(headers: Headers, length: int) -> Headers:
    """A recorded content-length adjusted to the resumed body."""
    return tuple((k, str(length) if k.lower() == "content-length" else v) for k, v in headers)


def linked(earlier: Sequence[Interaction], new: Sequence[Interaction]) -> tuple[Interaction, ...]:
    """``new`` (appended after ``earlier``), each reconnection given its link: an interaction
    whose request carries ``Last-Event-ID`` and has no link yet is linked to the latest
    interaction before it that it continues (see the module); the others are unchanged."""
    everything = list(earlier)
    ids: dict[int, dict[str, int]] = {}  # index -> the ids of its events (worked out once)
    out = []
    for inter in new:
        last_id = inter.request.header("last-event-id")
        if inter.resumes is None and last_id and resumes_problem(0, last_id) is None:
            found = _continued(everything, inter.request, last_id, ids)
            if found is not None:
                inter = replace(inter, resumes=Resumes(found, last_id))
        out.append(inter)
        everything.append(inter)
    return tuple(out)


def _continued(
    interactions: Sequence[Interaction],
    request: Request,
    last_id: str,
    ids: dict[int, dict[str, int]],
) -> int | None:
    session = request.header("mcp-session-id")
    for n in range(len(interactions) - 1, -1, -1):
        earlier = interactions[n]
        if earlier.request.method != request.method or earlier.request.url != request.url:
            continue
        other = earlier.request.header("mcp-session-id")
        if session is not None and other is not None and other != session:
            continue
        if n not in ids:
            stream = resumable(earlier.response) if earlier.websocket is None else None
            ids[n] = {} if stream is None else stream.first_with_id
        if last_id in ids[n]:
            return n
    return None
