"""The delivery journal: what each play actually delivered to its client, as frozen values.

A play's schedule is what ssevcr planned to send; its journal is what happened: the request
headers as they arrived (``Last-Event-ID``, ``x-stainless-retry-count``...), when the head went
out, the body bytes and events handed over with their times, whether the client took the answer
to its end, and, if it left first, when, after which event and byte, and how::

    journal = Journal(Origin(schedule, ...), request)  # by the player, one per play
    journal.begin(t0, wall)            # the adapter: when the request arrived
    journal.whole(at, body_bytes)      # ... the whole answer handed over at once (instant), or:
    journal.head(at)                   # the response head was handed over
    journal.sent(at, body_bytes)       # body bytes handed over so far
    journal.done(at)                   # the answer ended as its schedule says
    journal.left(at, how)              # the client went away first
    journal.value() -> Delivery        # a frozen snapshot, at any time

Times are the adapter's clock (``at``), stored as seconds after ``t0``; ``wall`` is the same
instant on the wall clock (seconds since the epoch), so journals of several processes line up.
How a client leaves (``how``): ``fin`` (it closed the connection), ``rst`` (it reset it),
``timeout`` (its read timed out: in process), ``cancel`` (it closed the stream or cancelled the
read: in process), ``shutdown`` (the server stopped while answering).

What "handed over" means depends on the adapter, and each says it: the replay server counts what
its transport accepted, less what the transport still held when the client left (the kernel's
send buffer and the client's receive buffer may hold more that the client never read); the
in-process transports count what the client library read from them. Events are counted from the
bytes, in the body's framing (SSE events, NDJSON lines, JSON-array elements: ``_framing``): an
event is delivered once the byte that ends it is (for a compressed body, once the chunk whose
decoding completes it is).

A WebSocket play (the adapter calls ``ws_sent`` for each server message handed over,
``ws_received`` for each client message, ``ws_closed`` for the close) has a ``websocket`` part:
every message with its time, direction, number and size (client messages: whether they matched
the recording), the counts against the plan, and the close (code and reason, or none when the
TCP connection ended without a close frame; who closed first; when). Its ``events`` and
``bytes`` count the server messages handed over; it is completed when the conversation reached
its planned end (every planned message sent, then the planned close, or the client's close
when the recording ends with it) or when the client left having taken all of it before that
close came (every planned message handed over and acknowledged, every client message matched:
the openai SDK closes at ``response.done``; the adapter decides, ``_websocket``), else the client
left (``fin``/``rst``), also after a client message that did not match, after a client's close
with a complaint (1009, 1002...), and always when the plan hangs (``stall:forever``, a recording
that never closed).

The recording side is cheap by design: an adapter calls ``sent`` once per write (instant replay:
once per answer), and the journal stores a time and a byte count; events, ids and redaction are
worked out only when a value is asked for. Request headers in a value are redacted (credential
headers replaced, as in a cassette). Pure: no clock, no I/O; adapters pass the times in.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ._cassette import Headers, Request, header
from ._content import ContentDecoder, DecodeError
from ._redaction import Redaction
from ._schedule import Abort, Close, Hang, Reset, Schedule

if TYPE_CHECKING:  # imported by WebSocket plays only (start-up time)
    from ._conversation import Plan

__all__ = [
    "HOWS",
    "Delivery",
    "EventMap",
    "How",
    "Journal",
    "Origin",
    "Progress",
    "WsClosing",
    "WsDelivery",
    "WsMark",
    "event_map",
]

How = Literal["fin", "rst", "timeout", "cancel", "shutdown"]
HOWS: tuple[str, ...] = ("fin", "rst", "timeout", "cancel", "shutdown")
MAX_PROGRESS = 4096
"""Progress marks a journal keeps per play (one per write); past it, the latest mark is updated
in place: the counts stay exact, the times of the writes in between are not kept."""
_MEMO = "journal.events"
_DEFAULT_REDACTION = Redaction()
_ENDS = {Close: "close", Abort: "abort", Reset: "reset", Hang: "hang"}


class Progress(NamedTuple):
    """Body bytes (and events) handed over by ``at`` seconds after the request arrived."""

    at: float
    bytes: int
    events: int | None


@dataclass(frozen=True, slots=True)
class EventMap:
    """Where a schedule's events end in its body as sent: event ``i`` is delivered once
    ``ends[i]`` body bytes are; ``ids[i]`` is the last event ID in force after it."""

    ends: tuple[int, ...]
    ids: tuple[str, ...]

    def count(self, sent: int) -> int:
        return bisect_right(self.ends, sent)


def event_map(schedule: Schedule) -> EventMap | None:
    """The events of a schedule's body (None when it is not a stream of events), computed once
    per schedule (kept in its memo)."""
    memo = schedule.memo
    if _MEMO in memo:
        found = memo[_MEMO]
        return found if isinstance(found, EventMap) else None
    result = _event_map(schedule)
    memo[_MEMO] = result if result is not None else False
    return result


def _event_map(schedule: Schedule) -> EventMap | None:
    from . import _framing as framing  # on first use (start-up time; the server warms it up)

    content_type = header(schedule.headers, "content-type") or ""
    if schedule.status != 200 or not framing.may_frame(content_type):
        return None
    encoding = (header(schedule.headers, "content-encoding") or "identity").strip().lower()
    if encoding == "identity":
        body = schedule.body
        marks: list[tuple[int, int]] | None = None
    else:  # an event counts once the chunk that completes it (decoded) is delivered
        try:
            decoder = ContentDecoder(encoding)
            parts, marks, decoded, sent = [], [], 0, 0
            for n, step in enumerate(schedule.steps):
                sent += len(step.data)
                data = decoder.feed(step.data)
                if n == len(schedule.steps) - 1:
                    data += decoder.flush()
                parts.append(data)
                decoded += len(data)
                marks.append((decoded, sent))
        except DecodeError:
            return None
        body = b"".join(parts)
    kind = framing.framing_of(content_type, body)
    if kind is None:
        return None
    found = framing.events(body, kind)
    ends = [e.end for e in found]
    if marks is not None:
        decoded_ends = [m[0] for m in marks]
        ends = [marks[min(bisect_left(decoded_ends, end), len(marks) - 1)][1] for end in ends]
    ids = tuple(getattr(e.frame, "id", "") for e in found)
    return EventMap(tuple(ends), ids)


class WsMark(NamedTuple):
    """A WebSocket message: ``at`` seconds after the request arrived, ``out`` (server to client)
    or ``in``, its number (server messages as planned from 1, 0 for one a fault added; client
    messages from 1), its size, and for a client message whether it matched the recording."""

    at: float
    direction: Literal["out", "in"]
    number: int
    size: int
    binary: bool
    matched: bool | None = None


class WsClosing(NamedTuple):
    """How a WebSocket conversation closed: who closed first (``server`` or ``client``), the
    close frame's code and reason (``code`` None: the TCP connection ended without one), when."""

    at: float
    by: Literal["server", "client"]
    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class WsDelivery:
    """The WebSocket part of a play's delivery: the messages (at most ``MAX_PROGRESS`` listed;
    the counts are exact), server messages ``sent`` of ``planned``, client messages
    ``received`` of ``expected`` (``matched`` of them matched), and the close."""

    messages: tuple[WsMark, ...]
    sent: int
    planned: int
    received: int
    matched: int
    expected: int
    close: WsClosing | None

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": [
                [round(m.at, 6), m.direction, m.number, m.size, m.binary, m.matched]
                for m in self.messages
            ],
            "sent": self.sent,
            "planned": self.planned,
            "received": self.received,
            "matched": self.matched,
            "expected": self.expected,
            "close": None
            if self.close is None
            else {
                "at": round(self.close.at, 6),
                "by": self.close.by,
                "code": self.close.code,
                "reason": self.close.reason,
            },
        }

    def describe(self) -> str:
        """``16/16 messages out, 2/2 in, closed by the client (1000)``."""
        close = self.close
        if close is None:
            closed = "not closed"
        else:
            frame = "no close frame" if close.code is None else str(close.code)
            closed = (
                f"closed by the {close.by} ({frame}{f': {close.reason}' if close.reason else ''})"
            )
        missed = self.received - self.matched
        return (
            f"{self.sent}/{self.planned} messages out, {self.matched}/{self.expected} in"
            f"{f' ({missed} not matching)' if missed else ''}, {closed}"
        )


class _WsLog:
    """What a journal keeps of a WebSocket play while it runs."""

    __slots__ = (
        "bytes",
        "close",
        "expected",
        "marks",
        "matched",
        "planned",
        "planned_bytes",
        "received",
        "sent",
    )

    def __init__(self, plan: Plan) -> None:
        self.planned = sum(1 for m in plan.messages if m.number)
        self.planned_bytes = sum(len(m.data) for m in plan.messages if m.number)
        self.expected = len(plan.expected)
        self.marks: list[WsMark] = []
        self.sent = self.bytes = self.received = self.matched = 0
        self.close: WsClosing | None = None

    def mark(self, mark: WsMark) -> None:
        if len(self.marks) < MAX_PROGRESS:
            self.marks.append(mark)

    def value(self) -> WsDelivery:
        return WsDelivery(
            tuple(self.marks),
            self.sent,
            self.planned,
            self.received,
            self.matched,
            self.expected,
            self.close,
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one play delivered (a snapshot: a play still in flight gives a newer one later).

    ``completed``: the client took the whole answer, to the end its schedule gave it (``end``:
    ``close``, or ``abort``/``reset`` when a fault or the recording cut it). ``left_*`` and
    ``how`` are set when the client went away before that. ``events`` is None for a body that
    is not a stream of events (SSE, NDJSON, JSON array). Times are seconds after the request
    arrived (``started``, on the wall clock)."""

    index: int  # the interaction's position in the player (0-based), as Play.index
    cassette: str
    method: str
    url: str  # redacted
    status: int
    request_headers: Headers  # as received, redacted
    started: float  # wall clock (seconds since the epoch) when the request arrived
    headers_sent_at: float | None
    bytes: int  # body bytes handed over
    events: int | None  # events handed over (None: not an event stream)
    planned_bytes: int
    planned_events: int | None
    progress: tuple[Progress, ...]  # one mark per write: (at, bytes, events)
    completed: bool
    end: str | None  # how the answer ended when completed: close | abort | reset
    left_at: float | None
    left_after_event: int | None
    left_after_byte: int | None
    how: How | None
    last_event_id: str  # the last event ID in force after the last event handed over
    resumed_after: str | None = None  # the Last-Event-ID this play resumed after
    fired: tuple[str, ...] = ()  # fault specs that changed this play
    session: str | None = None  # the control-API session that served it
    websocket: WsDelivery | None = None  # a WebSocket play: its messages and close

    @property
    def state(self) -> Literal["open", "completed", "left"]:
        if self.completed:
            return "completed"
        return "left" if self.how is not None else "open"

    @property
    def left(self) -> bool:
        return self.how is not None

    @property
    def event_times(self) -> tuple[float, ...]:
        """When each event handed over was (seconds after the request arrived)."""
        times: list[float] = []
        for mark in self.progress:
            if mark.events is not None and mark.events > len(times):
                times += [mark.at] * (mark.events - len(times))
        return tuple(times)

    def to_json(self) -> dict[str, Any]:
        """The journal line of this play (``ssevcr replay --journal``, the control API)."""
        return {
            "session": self.session,
            "index": self.index,
            "cassette": self.cassette,
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "request_headers": [list(h) for h in self.request_headers],
            "started": round(self.started, 6),
            "headers_sent_at": _round(self.headers_sent_at),
            "events": self.events,
            "bytes": self.bytes,
            "planned_events": self.planned_events,
            "planned_bytes": self.planned_bytes,
            "progress": [[round(m.at, 6), m.bytes, m.events] for m in self.progress],
            "state": self.state,
            "completed": self.completed,
            "end": self.end,
            "left_at": _round(self.left_at),
            "left_after_event": self.left_after_event,
            "left_after_byte": self.left_after_byte,
            "how": self.how,
            "last_event_id": self.last_event_id,
            "resumed_after": self.resumed_after,
            "fired": list(self.fired),
            **({} if self.websocket is None else {"websocket": self.websocket.to_json()}),
        }

    def describe(self) -> str:
        """One line for a terminal: ``GET /x: 200, 12/40 events (3.1 KiB), left after event 12
        (fin, 0.52 s)``."""
        events = "" if self.events is None else f"{self.events}/{self.planned_events} events, "
        if self.completed:
            how = "completed" + ("" if self.end == "close" else f" (ended: {self.end})")
        elif self.how is not None:
            after = (
                f"event {self.left_after_event}"
                if self.left_after_event is not None
                else f"byte {self.left_after_byte}"
            )
            how = f"left after {after} ({self.how}, {self.left_at:.3f} s)"
        else:
            how = "still open (neither read to the end nor closed)"
        resumed = f" resumed after id {self.resumed_after!r}," if self.resumed_after else ""
        if self.websocket is not None:
            return (
                f"#{self.index + 1} {self.method} {self.url}: WebSocket, "
                f"{self.websocket.describe()}, {how}"
            )
        return (
            f"#{self.index + 1} {self.method} {self.url}: {self.status},{resumed} "
            f"{events}{self.bytes}/{self.planned_bytes} bytes, {how}"
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


class Origin:
    """What the journals of one kind of play share: the schedule played, where its interaction is
    (``index``, ``cassette``), the redaction, the Last-Event-ID it resumed after, the control-API
    session and the callback told when a play's delivery ends (``ended``). A player makes one per
    interaction whose plain schedule it repeats, so a play's journal (``Journal(origin,
    request)``) holds two references and its own facts."""

    __slots__ = (
        "cassette",
        "ended",
        "fired",
        "index",
        "key",
        "line_parts",
        "redaction",
        "resumed_after",
        "schedule",
        "session",
    )

    def __init__(
        self,
        schedule: Schedule,
        *,
        index: int = 0,
        cassette: str = "",
        redaction: Redaction | None = None,
        resumed_after: str | None = None,
        session: str | None = None,
        ended: Callable[[Journal], None] | None = None,
    ) -> None:
        self.schedule = schedule
        self.index = index
        self.cassette = cassette
        self.redaction = redaction
        self.resumed_after = resumed_after
        self.session = session
        self.ended = ended
        self.fired = schedule.fired
        # what a journal line says of the play besides its request and schedule (_line's key)
        self.key = (redaction, index, cassette, session, resumed_after)
        # the last request value whose line parts were found, with them (``Journal._line``)
        self.line_parts: tuple[Request, _LineParts] | None = None


class Journal:
    """The journal of one play while it is delivered (see the module). Adapters call it from one
    thread or task at a time; ``value`` may be called from anywhere. Made from the play's
    :class:`Origin` (shared by the plays of one interaction and schedule), the request as it
    arrived, and for a WebSocket play the conversation planned."""

    __slots__ = (
        "_done_at",
        "_head_at",
        "_left_at",
        "_origin",
        "_progress",
        "_sent",
        "_wall",
        "_ws",
        "how",
        "request",
        "t0",
    )
    _origin: Origin
    request: Request
    t0: float  # when the request arrived, on the adapter's clock (``begin``)
    _wall: float
    _head_at: float | None
    _progress: list[tuple[float, int]]
    _sent: int
    _done_at: float | None
    _left_at: float | None
    how: How | None  # how the client left early (None: it did not, or not yet)
    _ws: _WsLog | None

    def __init__(self, origin: Origin, request: Request, conversation: Plan | None = None) -> None:
        self._origin = origin
        self.request = request
        self.t0 = 0.0
        self._wall = 0.0
        self._head_at = None
        self._progress = []
        self._sent = 0
        self._done_at = None
        self._left_at = None
        self.how = None
        self._ws = None if conversation is None else _WsLog(conversation)

    # what the play is (its origin's)

    @property
    def schedule(self) -> Schedule:
        return self._origin.schedule

    @property
    def index(self) -> int:
        return self._origin.index

    @property
    def cassette(self) -> str:
        return self._origin.cassette

    @property
    def redaction(self) -> Redaction | None:
        return self._origin.redaction

    @property
    def resumed_after(self) -> str | None:
        return self._origin.resumed_after

    @property
    def session(self) -> str | None:
        return self._origin.session

    @property
    def fired(self) -> tuple[str, ...]:
        return self._origin.fired

    # -- what adapters report ----------------------------------------------------------------

    def begin(self, t0: float, wall: float) -> None:
        """The request arrived at ``t0`` on the adapter's clock, ``wall`` on the wall clock."""
        self.t0 = t0
        self._wall = wall

    def head(self, at: float) -> None:
        if self._head_at is None:
            self._head_at = at - self.t0

    def sent(self, at: float, body_bytes: int) -> None:
        """``body_bytes`` of the body have been handed over by ``at`` (a running total)."""
        if body_bytes <= self._sent or self.how is not None:
            return
        self._sent = body_bytes
        progress = self._progress
        at -= self.t0
        if progress and (progress[-1][0] == at or len(progress) >= MAX_PROGRESS):
            progress[-1] = (max(at, progress[-1][0]), body_bytes)
        else:
            progress.append((at, body_bytes))

    def whole(self, at: float, body_bytes: int) -> None:
        """The whole answer was handed over at once (instant replay): head, body and end."""
        at -= self.t0
        self._head_at = at
        if body_bytes:
            self._sent = body_bytes
            self._progress.append((at, body_bytes))
        self._done_at = at
        ended = self._origin.ended
        if ended is not None:
            ended(self)

    def done(self, at: float) -> None:
        """The answer ended as its schedule says, and the client took it all."""
        if self._done_at is None and self.how is None:
            self._done_at = at - self.t0
            if self._head_at is None:
                self._head_at = self._done_at
            ended = self._origin.ended
            if ended is not None:
                ended(self)

    def ws_sent(self, at: float, number: int, size: int, binary: bool) -> None:
        """A server message (``number`` as planned, 0: added by a fault) was handed over."""
        ws = self._ws
        if ws is None or self.how is not None:
            return
        ws.sent += 1
        ws.bytes += size
        ws.mark(WsMark(at - self.t0, "out", number, size, binary))
        self.sent(at, ws.bytes)

    def ws_received(self, at: float, size: int, binary: bool, matched: bool) -> None:
        """A client message arrived (``matched``: it is the recorded one)."""
        ws = self._ws
        if ws is None or self.how is not None:
            return
        ws.received += 1
        ws.matched += matched
        ws.mark(WsMark(at - self.t0, "in", ws.received, size, binary, matched))

    def ws_closed(
        self, at: float, by: Literal["server", "client"], code: int | None, reason: str
    ) -> None:
        """The conversation closes: the first side to close (a close frame with ``code``, or
        the TCP connection ended without one: ``code`` None). Later calls change nothing."""
        ws = self._ws
        if ws is not None and ws.close is None:
            ws.close = WsClosing(at - self.t0, by, code, reason)

    def left(self, at: float, how: How, *, body_bytes: int | None = None) -> None:
        """The client went away (``how``) before the end; ``body_bytes``: what it had been
        handed by then, when less than reported (a server's transport still held the rest).
        A client that had every body byte and closed before the end came (an SDK that stops at
        its terminal event) took it all: that play is completed."""
        if self._done_at is not None or self.how is not None:
            return
        schedule = self.schedule
        planned = schedule.timeline.ends[-1] if schedule.steps else 0
        if self._ws is not None:  # (a conversation is completed only by its adapter)
            pass
        elif (
            (body_bytes is None or body_bytes >= planned)
            and self._sent >= planned
            and type(schedule.end) is not Hang
            and (planned or self._head_at is not None)
        ):
            self.done(at)  # it had every byte and closed before the end came: it read it all
            return
        if self._ws is None and body_bytes is not None and body_bytes < self._sent:
            self._sent = body_bytes
            progress = self._progress
            while progress and progress[-1][1] > body_bytes:
                progress.pop()
            if body_bytes and (not progress or progress[-1][1] < body_bytes):
                progress.append((at - self.t0, body_bytes))
        self._left_at = at - self.t0
        self.how = how
        ended = self._origin.ended
        if ended is not None:
            ended(self)

    # -- reading -----------------------------------------------------------------------------

    @property
    def state(self) -> Literal["open", "completed", "left"]:
        if self._done_at is not None:
            return "completed"
        return "left" if self.how is not None else "open"

    def value(self) -> Delivery:
        if self._ws is not None:
            return self._ws_value()
        schedule = self.schedule
        events = event_map(schedule)
        sent = self._sent
        redaction = self.redaction or _DEFAULT_REDACTION
        request = self.request
        progress = tuple(
            Progress(at, n, None if events is None else events.count(n))
            for at, n in list(self._progress)
        )
        delivered = None if events is None else events.count(sent)
        completed = self._done_at is not None
        left = self.how is not None
        return Delivery(
            index=self.index,
            cassette=self.cassette,
            method=request.method,
            url=redaction.redact_url(request.url),
            status=schedule.status,
            request_headers=redaction.redact_headers(request.headers),
            started=self._wall,
            headers_sent_at=self._head_at,
            bytes=sent,
            events=delivered,
            planned_bytes=schedule.timeline.ends[-1] if schedule.steps else 0,
            planned_events=None if events is None else len(events.ends),
            progress=progress,
            completed=completed,
            end=_ENDS[type(schedule.end)] if completed else None,
            left_at=self._left_at,
            left_after_event=delivered if left else None,
            left_after_byte=sent if left else None,
            how=self.how,
            last_event_id=events.ids[delivered - 1] if events is not None and delivered else "",
            resumed_after=self.resumed_after,
            fired=self.fired,
            session=self.session,
        )

    def _ws_value(self) -> Delivery:
        ws = self._ws
        assert ws is not None
        redaction = self.redaction or _DEFAULT_REDACTION
        request = self.request
        marks, n, size = [], 0, 0
        for m in ws.marks:
            if m.direction == "out":
                n, size = n + 1, size + m.size
                marks.append(Progress(m.at, size, n))
        left = self.how is not None
        return Delivery(
            index=self.index,
            cassette=self.cassette,
            method=request.method,
            url=redaction.redact_url(request.url),
            status=self.schedule.status,
            request_headers=redaction.redact_headers(request.headers),
            started=self._wall,
            headers_sent_at=self._head_at,
            bytes=ws.bytes,
            events=ws.sent,
            planned_bytes=ws.planned_bytes,
            planned_events=ws.planned,
            progress=tuple(marks),
            completed=self._done_at is not None,
            end=None
            if self._done_at is None
            else "close"
            if ws.close is not None and ws.close.code is not None
            else "abort",
            left_at=self._left_at,
            left_after_event=ws.sent if left else None,
            left_after_byte=ws.bytes if left else None,
            how=self.how,
            last_event_id="",
            resumed_after=self.resumed_after,
            fired=self.fired,
            session=self.session,
            websocket=ws.value(),
        )

    def line(self) -> str:
        """``value().to_json()`` as one JSON line (no newline), made cheaply: ``ssevcr replay
        --journal`` writes one per play, thousands a second. What the play's request and schedule
        fix (its redacted headers above all) and what the way it ended fixes (the counts, the state,
        the last event ID) are serialized once and kept in the schedule's memo (``_LineParts``),
        found by the request value itself (a keep-alive connection repeats it), else by its content.
        The parts found last are kept on the play's ``Origin`` with their request value, and the
        ending found last on the parts, so the plays of one interaction that repeat a request and an
        ending find them at once. A line then only formats its times (six decimals: the values
        ``to_json`` rounds to; a time the line repeats is formatted once) and its progress marks,
        and joins the parts in one f-string."""
        if self._ws is not None:  # (rare, and with its own part: made whole)
            return json.dumps(self.value().to_json(), separators=(",", ":"))
        return self._line(
            self._wall,
            self._head_at,
            self._progress,
            self._sent,
            self._done_at is not None,
            self.how,
            self._left_at,
        )

    def _line(
        self,
        wall: float,
        head_at: float | None,
        marks: Sequence[tuple[float, int]],
        sent: int,
        completed: bool,
        how: How | None,
        left_at: float | None,
    ) -> str:
        request = self.request
        origin = self._origin
        last = origin.line_parts
        if last is not None and last[0] is request:  # (the origin's plays repeat a request)
            parts = last[1]
        else:
            memo = self.schedule.memo
            cache = memo.get(_LINE_MEMO)
            if cache is None:
                cache = memo[_LINE_MEMO] = {}
            assert isinstance(cache, dict)
            same = cache.get(id(request))
            extra = origin.key
            if same is not None and same[0] is request and same[1] == extra:
                parts = same[2]
            else:
                parts = self._line_parts(cache, extra)
            origin.line_parts = (request, parts)
        last_ending = parts.last
        if (
            last_ending is not None
            and last_ending[0] == sent
            and last_ending[1] is completed
            and last_ending[2] is how
        ):
            ending = last_ending[3]
        else:
            found = parts.endings.get((sent, completed, how))
            ending = parts.ending(self.schedule, sent, completed, how) if found is None else found
            parts.last = (sent, completed, how, ending)
        at0 = "null" if head_at is None else f"{head_at:.6f}"
        if not marks:
            progress = ""
        elif len(marks) == 1:  # (instant replay: one write, at the head's time)
            at = marks[0][0]
            progress = f"[{at0 if at == head_at else f'{at:.6f}'}{ending[1]}"
        else:
            progress = parts.marks(marks, ending[1])
        return (
            f'{parts.head},"started":{wall:.6f},"headers_sent_at":{at0}{ending[0]}'
            f"{progress}{ending[2]}{'null' if left_at is None else f'{left_at:.6f}'}{ending[3]}"
        )

    def _line_parts(self, cache: dict[Any, Any], extra: tuple[object, ...]) -> _LineParts:
        """The parts of this play's line that its request and schedule fix, from ``cache``
        (by the request's content) or made now; kept by the request value too."""
        request = self.request
        key = (request.method, request.url, request.headers, extra)
        parts = cache.get(key)
        if parts is None:
            v = self.value()
            head = {
                "session": v.session,
                "index": v.index,
                "cassette": v.cassette,
                "method": v.method,
                "url": v.url,
                "status": v.status,
                "request_headers": [list(h) for h in v.request_headers],
                "planned_events": v.planned_events,
                "planned_bytes": v.planned_bytes,
                "resumed_after": v.resumed_after,
                "fired": list(v.fired),
            }  # (open: the rest of the line follows)
            parts = _LineParts(
                json.dumps(head, separators=(",", ":"))[:-1], event_map(self.schedule)
            )
        if len(cache) >= _LINE_CACHE:
            cache.clear()
        cache[key] = parts
        cache[id(request)] = (request, extra, parts)
        return parts


class _LineParts:
    """What a schedule's journal lines for one request share: the line's head (up to the
    request's last field, open) and, per way a play ended (bytes sent, completed, how), the
    pieces around the progress marks: ``(events and bytes up to the marks, the last mark's
    bytes and events, the fields up to left_at, the fields after it)``."""

    __slots__ = ("endings", "events", "head", "last")

    def __init__(self, head: str, events: EventMap | None) -> None:
        self.head = head
        self.events = events
        self.endings: dict[tuple[int, bool, How | None], tuple[str, str, str, str]] = {}
        # the ending found last, with its key: (sent, completed, how, the ending)
        self.last: tuple[int, bool, How | None, tuple[str, str, str, str]] | None = None

    def ending(
        self, schedule: Schedule, sent: int, completed: bool, how: How | None
    ) -> tuple[str, str, str, str]:
        events = self.events
        delivered = None if events is None else events.count(sent)
        left = how is not None
        last_id = events.ids[delivered - 1] if events is not None and delivered else ""
        state = "completed" if completed else "left" if left else "open"
        found = (
            f',"events":{_int(delivered)},"bytes":{sent},"progress":[',
            f",{sent},{_int(delivered)}]",
            f'],"state":"{state}","completed":{"true" if completed else "false"}'
            f',"end":{_str(_ENDS[type(schedule.end)]) if completed else "null"},"left_at":',
            f',"left_after_event":{_int(delivered) if left else "null"}'
            f',"left_after_byte":{sent if left else "null"},"how":{_str(how)}'
            f',"last_event_id":{_str(last_id)}}}',
        )
        if len(self.endings) >= _LINE_CACHE:
            self.endings.clear()
        self.endings[(sent, completed, how)] = found
        return found

    def marks(self, marks: Sequence[tuple[float, int]], last: str) -> str:
        """Two progress marks or more (the last's bytes and events: ``last``)."""
        events = self.events
        *before, (at, _) = marks
        if events is None:
            done = ",".join([f"[{t:.6f},{n},null]" for t, n in before])
        elif len(before) < len(_MARKS):  # (the usual few: one format of them all)
            ends = events.ends
            flat: list[float] = []
            for t, n in before:
                flat += (t, n, bisect_right(ends, n))
            done = _MARKS[len(before)] % tuple(flat)
        else:
            count = events.count
            done = ",".join([f"[{t:.6f},{n},{count(n)}]" for t, n in before])
        return f"{done},[{at:.6f}{last}"


_LINE_MEMO = "journal.line"
_MARKS = tuple(",".join(["[%.6f,%d,%d]"] * k) for k in range(9))  # k progress marks
_LINE_CACHE = 128  # request values and contents (and endings) a schedule's line parts keep


def _int(value: int | None) -> str:
    return "null" if value is None else str(value)


def _str(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)
