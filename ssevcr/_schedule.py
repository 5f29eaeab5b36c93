"""The schedule: a pure function from a recorded response, a timing policy, faults and a seed to
the steps a replay performs, each at an absolute offset from the moment the request arrived.

    build(response, timing=..., faults=..., seed=...) -> Schedule(status, headers, headers_at,
                                                                 steps=(Send(at, data), ...),
                                                                 end=Close | Abort | Reset | Hang)

No clocks, sockets or global randomness here; adapters (server, transport) only follow the steps
(through :mod:`ssevcr._follower`). Absolute offsets mean a slow write never accumulates drift.

Without faults the schedule is the recorded chunks at their mapped times (no parsing). With
faults ``build`` runs named passes, each a small pure function over a :class:`Draft` (see the
list above ``build``): select the body, event faults as edits, apply them, retime, cut bytes,
rechunk, stall, pace, then the end and the framing.

Byte-exactness: without faults the steps are the recorded chunks, bytes and boundaries unchanged.
Event-level faults work on the raw frames of the body's framing (SSE events, NDJSON lines,
JSON-array elements: :mod:`ssevcr._framing`), so every byte a fault did not ask to change
goes out unchanged, at the time it was recorded (mapped by the timing policy). Bytes a fault adds
or rewrites go out when the bytes they replace or follow were recorded — never earlier.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from . import _content as content
from . import _providers as providers
from ._cassette import Headers, Outcome, Response
from ._errors import ConfigError
from ._faults import (
    HOP_BY_HOP,
    CloseWs,
    Corrupt,
    Drop,
    Duplicate,
    EventRef,
    Fault,
    Header,
    InjectError,
    Rechunk,
    Slow,
    Stall,
    Status,
    Truncate,
)
from ._timing import Timing, until_horizon

if TYPE_CHECKING:  # _framing is imported by the faults that need it (start-up time)
    from ._framing import Event

__all__ = [
    "Abort",
    "Close",
    "Hang",
    "Reset",
    "Schedule",
    "Send",
    "Timeline",
    "build",
    "hostile_boundaries",
]


@dataclass(frozen=True, slots=True, init=False)
class Send:
    at: float
    data: bytes

    def __init__(self, at: float, data: bytes) -> None:
        # frozen: the generated __init__ goes through object.__setattr__ per field; the slots'
        # own setters do the same in ~60% of the time (a schedule makes one Send per chunk)
        _SET_AT(self, at)
        _SET_DATA(self, data)


_SET_AT = vars(Send)["at"].__set__
_SET_DATA = vars(Send)["data"].__set__


@dataclass(frozen=True, slots=True)
class Close:
    """A well-formed end of the body."""

    at: float


@dataclass(frozen=True, slots=True)
class Abort:
    """Close the connection without finishing the body (incomplete chunked read)."""

    at: float


@dataclass(frozen=True, slots=True)
class Reset:
    """Reset the connection (TCP RST)."""

    at: float


@dataclass(frozen=True, slots=True)
class Hang:
    """Send nothing more and keep the connection open until the client gives up."""

    at: float


EndStep = Close | Abort | Reset | Hang


@dataclass(frozen=True, slots=True)
class Timeline:
    """A schedule's steps as two columns: ``at[i]`` (never decreasing) and ``ends[i]``, the body
    bytes sent once step ``i`` is."""

    at: Sequence[float]
    ends: Sequence[int]


@dataclass(frozen=True, slots=True)
class Schedule:
    status: int
    reason: str
    http_version: str
    headers: Headers  # as to send: hop-by-hop headers removed, content-length adjusted
    headers_at: float
    steps: tuple[Send, ...]
    end: EndStep
    fired: tuple[str, ...] = ()  # fault specs that changed this response
    skipped: tuple[str, ...] = ()  # "spec: why it did not apply"
    content_length: int | None = (
        None  # when set, the body is sent with this content-length, else chunked
    )
    _timeline: Timeline | None = field(default=None, init=False, repr=False, compare=False)
    # what adapters derive from the schedule once and keep with it (the server's framing): not
    # part of the value, gone with it
    memo: dict[str, object] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def body(self) -> bytes:
        return b"".join(s.data for s in self.steps)

    @property
    def timeline(self) -> Timeline:
        """Each step's time and the body bytes up to the end of each step, computed once per
        schedule (a schedule the player reuses is followed many times)."""
        timeline = self._timeline
        if timeline is None:
            steps = self.steps
            ends = list(itertools.accumulate([len(s.data) for s in steps]))
            timeline = Timeline([s.at for s in steps], ends)
            object.__setattr__(self, "_timeline", timeline)
        return timeline

    @property
    def streamed(self) -> bool:
        return self.content_length is None


def _data_value_span(raw: bytes) -> tuple[int, int]:
    """Start and end of the first ``data`` line's value inside a frame's raw bytes."""
    pos = 0
    while pos < len(raw):
        nl = len(raw)
        for sep in (b"\r", b"\n"):
            i = raw.find(sep, pos)
            if i != -1:
                nl = min(nl, i)
        line = raw[pos:nl]
        if line == b"data" or line.startswith(b"data:"):
            start = pos + 5 if line.startswith(b"data:") else pos + 4
            if raw[start : start + 1] == b" ":
                start += 1
            return start, nl
        pos = nl + (2 if raw[nl : nl + 2] == b"\r\n" else 1)
    return 0, 0


def corrupt(raw: bytes, how: str, rng: random.Random, span: tuple[int, int] | None = None) -> bytes:
    """An event's ``raw`` bytes with its value (``span`` in ``raw``; by default the first data
    value of an SSE event) broken: ``json`` cuts it in half, ``utf8`` puts invalid UTF-8 in its
    middle, ``bytes`` replaces it with seeded random bytes (never CR or LF, so the frame stays
    one event)."""
    start, end = _data_value_span(raw) if span is None else span
    value = raw[start:end]
    if how == "json":
        broken = value[: len(value) // 2] if len(value) > 1 else b"{"
    elif how == "utf8":
        mid = len(value) // 2
        broken = value[:mid] + b"\xff\xfe" + value[mid:]
    else:
        allowed = [b for b in range(256) if b not in (10, 13)]
        broken = bytes(rng.choice(allowed) for _ in range(max(4, len(value))))
    return raw[:start] + broken + raw[end:]


def hostile_boundaries(body: bytes) -> list[int]:
    """Split points a careless line-buffering client gets wrong: between CR and LF, inside UTF-8
    characters, right after a field's colon, and between the two line endings of a blank line."""
    points = set()
    for i in range(1, len(body)):
        b, prev = body[i], body[i - 1]
        if (
            (prev == 13 and b == 10)
            or 0x80 <= b <= 0xBF
            or prev == 0x3A
            or (prev == 10 and b in (10, 13))
        ):
            points.add(i)
    return sorted(points)


# -------------------------------------------------------------------------------------------
# the passes of ``build`` with faults, in order:
#
#   status_answer    a status fault answers with the provider's HTTP error instead
#   select_body      the recorded pieces (decoded when event faults need the events)
#   event_edits      event faults -> edits at byte positions of the recorded body
#   apply_edits      the body walked with the edits: pieces at their recorded times, pauses, a cut
#   retime           recorded times -> replay times (the timing policy)
#   truncate_bytes   truncate:byte cuts the edited body
#   rechunk          re-split the pieces between pauses
#   stall            pauses shift what follows; a pause forever hangs
#   pace             slow: a bandwidth cap
#   end_step         how and when the body ends
#   set_headers      header faults: set, drop, a content-length on a stream
#   frame            content-length: what a well-formed end sends
#
# Each is a pure function of a Draft (and the faults it applies); byte positions are those of
# the recorded (or decoded) body until apply_edits, and a piece's time is the recorded time of
# the chunk that carried its bytes (a byte a fault adds goes out with the byte it follows).


class Piece(NamedTuple):  # a tuple: rechunk:size=1 makes one per byte
    """Body bytes and when they go out."""

    at: float
    data: bytes


class Pause(NamedTuple):
    """Stop sending for ``seconds`` (None: forever) before the next piece."""

    seconds: float | None


Item = Piece | Pause
Ending = Literal["close", "abort", "reset"]


@dataclass(frozen=True, slots=True)
class Cut:
    """The body ends early, ``how``, at ``at`` (when the first byte not sent would have gone)."""

    how: Ending
    at: float


@dataclass(frozen=True, slots=True)
class Draft:
    """A schedule being built: the pieces and pauses of the body, how it ends, what fired."""

    headers: Headers
    items: tuple[Item, ...]
    length: int  # of the body after edits, as a complete body would have it
    end_at: float  # when the body ends as recorded (no cut)
    cut: Cut | None = None
    hang_at: float | None = None  # a stall forever: nothing more from then on
    fired: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    def fire(self, fault: Fault) -> Draft:
        return replace(self, fired=(*self.fired, str(fault)))

    def skip(self, fault: Fault, why: str) -> Draft:
        return replace(self, skipped=(*self.skipped, f"{fault}: {why}"))


_INSERT, _PAUSE, _CUT, _REPLACE = 0, 1, 2, 3


@dataclass(frozen=True, order=True, slots=True)
class Edit:
    """One change at a byte position of the recorded body; edits apply in (pos, kind, order)."""

    pos: int
    kind: int  # _INSERT data before pos, _PAUSE, _CUT the body, _REPLACE pos:end with data
    order: int  # the fault's place among the faults
    end: int = 0
    data: bytes = field(default=b"", compare=False)
    stall: float | None = field(default=None, compare=False)
    how: Ending = field(default="abort", compare=False)


EVENT_FAULTS = (Corrupt, Stall, Drop, Duplicate, InjectError)


def is_event_fault(f: Fault) -> bool:
    """Whether ``f`` names events (and so needs the body parsed)."""
    return isinstance(f, EVENT_FAULTS) or (isinstance(f, Truncate) and f.after is not None)


def build(
    response: Response,
    *,
    timing: Timing | None = None,
    faults: Sequence[Fault] = (),
    seed: int | str = 0,
    url: str = "",
) -> Schedule:
    """The replay of ``response`` under ``timing`` with ``faults`` (already scoped to this play).

    ``url`` (the recorded request URL) helps tell the provider for ``error`` and ``status``.
    """
    timing = timing or Timing()
    if not faults:  # the common case: the recorded chunks at their mapped times
        return _plain(response, timing)
    tmap = timing.retime([response.headers_at, response.end.at, *response.chunk_at])
    statuses = [f for f in faults if isinstance(f, Status)]
    if statuses:
        return status_answer(response, statuses, tmap[response.headers_at], url)
    rng = random.Random(f"ssevcr:{seed}")
    draft, events, framing = select_body(response, [f for f in faults if is_event_fault(f)], url)
    if events is not None:
        provider = providers.detect(url, events)
        edits, draft = event_edits(draft, events, faults, provider, rng, framing)
        draft = apply_edits(draft, edits)
    headers_at = tmap[response.headers_at]
    draft = retime(draft, tmap)
    draft = truncate_bytes(
        draft, [f for f in faults if isinstance(f, Truncate) and f.byte is not None]
    )
    for f in faults:
        if isinstance(f, Rechunk):
            own = rng if f.seed is None else random.Random(f"ssevcr:rechunk:{f.seed}")
            draft = rechunk(draft, f, own)
    draft = stall(draft, headers_at)
    for f in faults:
        if isinstance(f, CloseWs):
            draft = draft.skip(f, "close applies to WebSocket conversations only")
    slow = [f for f in faults if isinstance(f, Slow)]
    if slow:
        draft = pace(draft, slow, headers_at)
    pieces: Sequence[Any] = draft.items  # only pieces are left after ``stall``
    kept = [p for p in pieces if p[1]]
    steps: tuple[Send, ...] = tuple(map(Send, *zip(*kept, strict=True))) if kept else ()
    end = end_step(draft, steps[-1].at if steps else headers_at, response.end.outcome)
    header_faults = [f for f in faults if isinstance(f, Header)]
    if header_faults:
        draft = set_headers(draft, header_faults)
    headers, content_length = frame(draft, response, end, sum(len(s.data) for s in steps))
    return Schedule(
        status=response.status,
        reason=response.reason,
        http_version=response.http_version,
        headers=headers,
        headers_at=headers_at,
        steps=steps,
        end=end,
        fired=tuple(dict.fromkeys(draft.fired)),
        skipped=draft.skipped,
        content_length=content_length,
    )


def status_answer(
    response: Response, faults: Sequence[Status], at: float, url: str = ""
) -> Schedule:
    """The provider's HTTP error instead of the recording, whole at ``at`` (the first fault)."""
    from . import _framing as framings

    f = faults[0]
    framing = framings.framing_of(response.content_type, response.body, url)
    provider = f.provider or providers.detect(
        url, framings.events(response.body, framing) if framing else ()
    )
    reason, headers, body = providers.error_response(provider, f.code, retry_after=f.retry_after)
    return Schedule(
        f.code,
        reason,
        "HTTP/1.1",
        headers,
        at,
        (Send(at, body),),
        Close(at),
        (str(f),),
        tuple(f"{g}: only one status fault applies" for g in faults[1:]),
        content_length=len(body),
    )


def select_body(
    response: Response, event_faults: Sequence[Fault], url: str = ""
) -> tuple[Draft, tuple[Event, ...] | None, str]:
    """The recorded body as pieces at their recorded times, and its events and framing (see
    :mod:`ssevcr._framing`; no events for a body of none) when ``event_faults`` need them: a
    compressed body is decoded (and then sent without its content-encoding); one that cannot be
    decoded skips them (events None)."""
    chunks = zip(response.chunk_at, _split(response.body, response.chunk_sizes), strict=True)
    pieces = tuple(Piece(at, data) for at, data in chunks if data)  # an empty chunk sends nothing
    headers = tuple((k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP)
    draft = Draft(headers, pieces, len(response.body), response.end.at)
    if not event_faults:
        return draft, None, "sse"
    encoding = response.content_encoding
    if encoding != "identity":
        decoded = content.decode([(p.at, p.data) for p in pieces], encoding)
        if not decoded.ok:
            why = f"the body is {encoding}-encoded and was {decoded.problem}"
            for f in event_faults:
                draft = draft.skip(f, why)
            return draft, None, "sse"
        pieces = tuple(Piece(at, data) for at, data in decoded.pieces if data)
        headers = tuple((k, v) for k, v in headers if k.lower() != "content-encoding")
        draft = replace(
            draft, headers=headers, items=pieces, length=sum(len(p.data) for p in pieces)
        )
    from . import _framing as framings

    body = b"".join(p.data for p in pieces)
    framing = framings.framing_of(response.content_type, body, url)
    if framing is None:
        return draft, (), "sse"
    return draft, framings.events(body, framing), framing


def _resolve(ref: EventRef, events: Sequence[Event]) -> Event | None:
    if ref == "last":
        return events[-1] if events else None
    return events[ref - 1] if 0 < ref <= len(events) else None


def _edits_of(
    f: Fault,
    order: int,
    events: Sequence[Event],
    provider: str,
    rng: random.Random,
    context: tuple[str, Draft],
) -> list[Edit] | None:
    """The edits one event fault makes, or None when the event it names is not there."""
    if isinstance(f, Truncate):
        assert f.after is not None
        if f.after == 0:
            return [Edit(events[0].start if events else 0, _CUT, order, how=f.end)]
        ev = _resolve(f.after, events)
        return None if ev is None else [Edit(ev.end, _CUT, order, how=f.end)]
    if isinstance(f, InjectError):
        ref = f.after
    elif isinstance(f, Stall):
        ref = f.before
    else:
        assert isinstance(f, Corrupt | Drop | Duplicate)
        ref = f.event
    ev = _resolve(ref, events)
    if ev is None:
        return None
    if isinstance(f, InjectError):
        from . import _framing as framings

        framing, draft = context
        body = b"".join(p.data for p in draft.items if isinstance(p, Piece))
        frame = framings.error_frame(
            framing, f.provider or provider, after=ev, found=events, body=body, message=f.message
        )
        return [Edit(ev.end, _INSERT, order, data=frame), Edit(ev.end, _CUT, order, how="close")]
    if isinstance(f, Stall):
        return [Edit(ev.start, _PAUSE, order, stall=f.duration)]
    unit_start, unit_end = ev.unit
    if isinstance(f, Drop):
        return [Edit(unit_start, _REPLACE, order, end=unit_end)]
    if isinstance(f, Duplicate):
        return [Edit(unit_end, _INSERT, order, data=ev.repeat)]
    assert isinstance(f, Corrupt)
    span = (ev.value[0] - ev.start, ev.value[1] - ev.start)
    return [Edit(ev.start, _REPLACE, order, end=ev.end, data=corrupt(ev.raw, f.how, rng, span))]


def event_edits(
    draft: Draft,
    events: Sequence[Event],
    faults: Sequence[Fault],
    provider: str,
    rng: random.Random,
    framing: str = "sse",
) -> tuple[list[Edit], Draft]:
    """The edits the event faults make on the events of a body in ``framing``, sorted, with
    what fired and what was skipped. Two faults that replace the same bytes are refused
    (ConfigError)."""
    edits: list[Edit] = []
    context = (framing, draft)
    for order, f in enumerate(f for f in faults if is_event_fault(f)):
        made = _edits_of(f, order, events, provider, rng, context)
        if made is None:
            draft = draft.skip(f, f"the stream has {len(events)} events")
        else:
            edits += made
            draft = draft.fire(f)
    edits.sort()
    replaced = [(e.pos, e.end) for e in edits if e.kind == _REPLACE]
    for (s1, e1), (s2, _) in itertools.pairwise(replaced):
        if s2 < e1:
            raise ConfigError(
                f"two faults change the same event (bytes {s1}-{e1}); use one fault per event"
            )
    return edits, draft


def apply_edits(draft: Draft, edits: Sequence[Edit]) -> Draft:
    """Walk the body with the (sorted) edits: kept ranges keep their pieces' times, added bytes
    go out with the recorded byte before them, a cut ends the walk."""
    pieces = [p for p in draft.items if isinstance(p, Piece)]
    body = b"".join(p.data for p in pieces)
    ends = list(itertools.accumulate(len(p.data) for p in pieces))
    end_at = draft.end_at

    def time_at(pos: int) -> float:
        """The recorded time of the byte at ``pos`` (the piece that carried it)."""
        if not pieces:
            return end_at
        return pieces[min(bisect.bisect_right(ends, max(pos, 0)), len(pieces) - 1)].at

    items: list[Item] = []

    def keep(a: int, b: int) -> None:
        i = bisect.bisect_right(ends, a)
        while a < b:
            stop = min(b, ends[i])
            items.append(Piece(pieces[i].at, body[a:stop]))
            a, i = stop, i + 1

    cursor, length, cut = 0, len(body), None
    for e in edits:
        keep(cursor, e.pos)
        cursor = max(cursor, e.pos)
        if e.kind == _INSERT:
            items.append(Piece(time_at(e.pos - 1), e.data))
            length += len(e.data)
        elif e.kind == _PAUSE:
            items.append(Pause(e.stall))
        elif e.kind == _REPLACE:
            if e.data:
                items.append(Piece(time_at(e.end - 1), e.data))
            length += len(e.data) - (e.end - e.pos)
            cursor = e.end
        else:  # the connection dies when the first byte not sent would have arrived
            cut = Cut(e.how, time_at(e.pos) if e.pos < len(body) else end_at)
            break
    if cut is None:
        keep(cursor, len(body))
    return replace(draft, items=tuple(items), length=length, cut=cut)


def retime(draft: Draft, tmap: dict[float, float]) -> Draft:
    """Recorded times -> replay times (``tmap``: the timing policy's map of the recorded ones)."""
    get = tmap.get
    items = tuple(
        Piece(get(p.at, p.at), p.data) if isinstance(p, Piece) else p for p in draft.items
    )
    cut = draft.cut and Cut(draft.cut.how, get(draft.cut.at, draft.cut.at))
    return replace(draft, items=items, end_at=get(draft.end_at, draft.end_at), cut=cut)


def truncate_bytes(draft: Draft, faults: Sequence[Truncate]) -> Draft:
    """``truncate:byte=K``: the body as sent so far is cut after K bytes (the first that fits)."""
    for f in faults:
        assert f.byte is not None
        if draft.cut is not None:
            draft = draft.skip(f, "the body is already cut by another fault")
            continue
        if f.byte >= draft.length:
            draft = draft.skip(f, f"the body has only {draft.length} bytes")
            continue
        sent, kept, cut_at = 0, [], draft.end_at
        for it in draft.items:
            if isinstance(it, Piece):
                if sent >= f.byte:
                    cut_at = it.at
                    break
                if sent + len(it.data) > f.byte:
                    cut_at = it.at
                    it = Piece(it.at, it.data[: f.byte - sent])
                sent += len(it.data)
            kept.append(it)
        draft = replace(draft, items=tuple(kept), cut=Cut(f.end, cut_at)).fire(f)
    return draft


def rechunk(draft: Draft, f: Rechunk, rng: random.Random) -> Draft:
    """Re-split each run of pieces between pauses; a new piece goes out at the time of the piece
    that carried its last byte (never earlier than recorded)."""
    out: list[Item] = []
    run: list[Piece] = []

    def flush() -> None:
        if not run:
            return
        data = b"".join(p.data for p in run)
        piece_ends = list(itertools.accumulate(len(p.data) for p in run))
        ats = [p.at for p in run]
        bounds = [0, *_cuts(data, f, rng), len(data)]  # increasing: cuts are inside the data
        ends = bounds[1:]
        owners = map(bisect.bisect_left, itertools.repeat(piece_ends), ends)
        out.extend(
            map(
                Piece, map(ats.__getitem__, owners), map(data.__getitem__, map(slice, bounds, ends))
            )
        )
        run.clear()

    for it in draft.items:
        if isinstance(it, Pause):
            flush()
            out.append(it)
        else:
            run.append(it)
    flush()
    return replace(draft, items=tuple(out)).fire(f)


def _cuts(data: bytes, f: Rechunk, rng: random.Random) -> list[int]:
    """Where ``rechunk`` splits ``data``."""
    if f.how == "size":
        return list(range(f.size, len(data), f.size))
    if f.how == "hostile":
        return hostile_boundaries(data)
    cuts: list[int] = []
    pos = 0
    while True:
        pos += rng.randint(1, f.max)
        if pos >= len(data):
            return cuts
        cuts.append(pos)


def stall(draft: Draft, headers_at: float) -> Draft:
    """Pauses shift every later piece and the end; a pause forever hangs the body there (the
    hang starts when the next byte would have gone). Pieces never go out of order. What is left
    is pieces only."""
    items = draft.items
    if not any(isinstance(it, Pause) for it in items):
        ats = [headers_at, *(p.at for p in items)]  # type: ignore[union-attr]
        if all(map(operator.le, ats, ats[1:])):  # the common case: nothing to shift or order
            return draft
    pieces: list[Item] = []
    shift, last_at = 0.0, headers_at
    for n, it in enumerate(items):
        if isinstance(it, Pause):
            if it.seconds is None:
                after = next((p.at for p in items[n + 1 :] if isinstance(p, Piece)), last_at)
                hang_at = until_horizon(max(last_at, after + shift))
                end_at = until_horizon(draft.end_at + shift)
                return replace(draft, items=tuple(pieces), end_at=end_at, hang_at=hang_at)
            shift = until_horizon(shift + it.seconds)
            continue
        at = until_horizon(it.at + shift)
        if at < last_at:
            at = last_at
        pieces.append(it if at == it.at else Piece(at, it.data))
        last_at = at
    cut = draft.cut and Cut(draft.cut.how, until_horizon(draft.cut.at + shift))
    return replace(draft, items=tuple(pieces), end_at=until_horizon(draft.end_at + shift), cut=cut)


def pace(draft: Draft, faults: Sequence[Slow], headers_at: float) -> Draft:
    """``slow:bps=N``: pieces of at most N/50 bytes, each no earlier than the cap allows."""
    bps = min(f.bps for f in faults)
    most = max(1, bps // 50)
    paced: list[Item] = []
    free = headers_at
    for p in draft.items:
        assert isinstance(p, Piece)
        for i in range(0, len(p.data), most):
            part = p.data[i : i + most]
            at = max(p.at, free)
            paced.append(Piece(at, part))
            free = until_horizon(at + len(part) / bps)
    draft = replace(draft, items=tuple(paced), end_at=max(draft.end_at, free))
    for f in faults:
        draft = draft.fire(f)
    return draft


_ENDS: dict[str, type[Close | Abort | Reset]] = {"close": Close, "abort": Abort, "reset": Reset}


def end_step(draft: Draft, last: float, outcome: Outcome) -> EndStep:
    """How the body ends (a hang, a cut, else as recorded: an upstream error aborts), never
    before the last step (``last``)."""
    if draft.hang_at is not None:
        return Hang(max(draft.hang_at, last))
    if draft.cut is not None:
        return _ENDS[draft.cut.how](max(last, draft.cut.at))
    if outcome == Outcome.UPSTREAM_ERROR:
        return Abort(max(draft.end_at, last))
    return Close(max(draft.end_at, last))


def set_headers(draft: Draft, faults: Sequence[Header]) -> Draft:
    """``header`` faults, in order: set a header (in place of the first of that name, the others
    removed; else last), drop one, or give a streamed body a content-length (``frame`` sets
    its value)."""
    for f in faults:
        headers = draft.headers
        present = [v for k, v in headers if k.lower() == f.name]
        if f.action == "length":
            if present:
                draft = draft.skip(f, "the body already has a content-length")
                continue
            headers = (*headers, ("content-length", "0"))
        elif f.action == "drop":
            if not present:
                draft = draft.skip(f, f"the response has no {f.name} header")
                continue
            headers = tuple((k, v) for k, v in headers if k.lower() != f.name)
        else:
            assert f.value is not None
            if present == [f.value]:
                draft = draft.skip(f, f"{f.name} is already {f.value!r}")
                continue
            headers = _set(headers, f.name, f.value)
        draft = replace(draft, headers=headers).fire(f)
    return draft


def _set(headers: Headers, name: str, value: str) -> Headers:
    out, done = [], False
    for k, v in headers:
        if k.lower() != name:
            out.append((k, v))
        elif not done:
            out.append((k, value))
            done = True
    return tuple(out) if done else (*out, (name, value))


def frame(draft: Draft, response: Response, end: EndStep, sent: int) -> tuple[Headers, int | None]:
    """The headers to send and the content-length, for a body that had one (else chunked): a
    well-formed end sends what was sent; an unfinished body keeps the length it promised."""
    headers = draft.headers
    if not any(k.lower() == "content-length" for k, _ in headers):
        return headers, None
    recorded = (response.header("content-length") or "").strip()
    if isinstance(end, Close):
        length = sent
    elif draft.cut is None and recorded.isdigit():
        length = int(recorded)
    else:
        length = max(draft.length, sent + 1)
    return _with_length(headers, length), length


def _with_length(headers: Headers, length: int) -> Headers:
    return tuple((k, str(length) if k.lower() == "content-length" else v) for k, v in headers)


def _plain(response: Response, timing: Timing) -> Schedule:
    """The schedule without faults: no SSE parsing, one ``Send`` per non-empty recorded chunk."""
    headers = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP]
    tmap = timing.retime([response.headers_at, response.end.at, *response.chunk_at])
    ats: Sequence[float] = response.chunk_at
    chunks = _split(response.body, response.chunk_sizes)
    if 0 in response.chunk_sizes:  # an empty chunk sends nothing
        kept = [(at, data) for at, data in zip(ats, chunks, strict=True) if data]
        ats, chunks = [at for at, _ in kept], [data for _, data in kept]
    steps = tuple(map(Send, map(tmap.__getitem__, ats), chunks))
    last = steps[-1].at if steps else tmap[response.headers_at]
    end_at = max(tmap[response.end.at], last)
    end: EndStep = (
        Abort(end_at) if response.end.outcome == Outcome.UPSTREAM_ERROR else Close(end_at)
    )
    length: int | None = None
    if any(k.lower() == "content-length" for k, _ in headers):
        declared = (response.header("content-length") or "").strip()
        if isinstance(end, Close):
            length = len(response.body)
        else:  # an upstream error: keep the length the client was promised
            length = int(declared) if declared.isdigit() else len(response.body) + 1
        headers = [(k, str(length) if k.lower() == "content-length" else v) for k, v in headers]
    return Schedule(
        response.status,
        response.reason,
        response.http_version,
        tuple(headers),
        tmap[response.headers_at],
        steps,
        end,
        content_length=length,
    )


def _split(body: bytes, sizes: Sequence[int]) -> list[bytes]:
    out, pos = [], 0
    for n in sizes:
        out.append(body[pos : pos + n])
        pos += n
    return out
