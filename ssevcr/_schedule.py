"""The schedule: a pure function from a recorded response, a timing policy, faults and a seed to
the steps a replay performs, each at an absolute offset from the moment the request arrived.

    build(response, timing=..., faults=..., seed=...) -> Schedule(status, headers, headers_at,
                                                                 steps=(Send(at, data), ...),
                                                                 end=Close | Abort | Reset | Hang)

No clocks, sockets or global randomness here; adapters (server, transport) only follow the steps.
Absolute offsets mean a slow write never accumulates drift.

Byte-exactness: without faults the steps are the recorded chunks, bytes and boundaries unchanged.
Event-level faults work on the parser's raw frames, so every byte a fault did not ask to change
goes out unchanged, at the time it was recorded (mapped by the timing policy). Bytes a fault adds
or rewrites go out when the bytes they replace or follow were recorded — never earlier.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import _content as content
from . import _providers as providers
from ._cassette import Headers, Outcome, Response
from ._errors import ConfigError
from ._faults import (
    Corrupt,
    Drop,
    Duplicate,
    EventRef,
    Fault,
    InjectError,
    Rechunk,
    Slow,
    Stall,
    Status,
    Truncate,
)
from ._sse import Event, parse
from ._timing import Timing

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

HOP_BY_HOP = frozenset(
    {
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)


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


# -------------------------------------------------------------------------------------------
# edits on the recorded body, in original byte positions

_INSERT, _MARK, _CUT, _REPLACE = 0, 1, 2, 3


@dataclass(order=True, slots=True)
class _Op:
    pos: int
    kind: int
    order: int
    end: int = 0  # _REPLACE: end of the replaced range
    data: bytes = field(default=b"", compare=False)
    stall: float | None = field(default=None, compare=False)  # _MARK: seconds, None = forever
    how: str = field(default="", compare=False)  # _CUT: close / abort / reset


@dataclass(slots=True)
class _Piece:
    at: float
    data: bytes


@dataclass(slots=True)
class _Marker:
    stall: float | None


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


def _corrupt(raw: bytes, how: str, rng: random.Random) -> bytes:
    start, end = _data_value_span(raw)
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


def _resolve(ref: EventRef, events: Sequence[Event]) -> Event | None:
    if ref == "last":
        return events[-1] if events else None
    return events[ref - 1] if 0 < ref <= len(events) else None


def build(  # noqa: C901 - to become named passes (issue: architecture)
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
    rng = random.Random(f"ssevcr:{seed}")
    fired: list[str] = []
    skipped: list[str] = []

    recorded = list(
        zip(response.chunk_at, _split(response.body, response.chunk_sizes), strict=True)
    )
    headers = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP]
    time_points = [response.headers_at, response.end.at, *response.chunk_at]
    tmap = timing.retime(time_points)

    event_faults = [
        f
        for f in faults
        if isinstance(f, Corrupt | Stall | Drop | Duplicate | InjectError)
        or (isinstance(f, Truncate) and f.after is not None)
    ]

    # --- status: answer with the provider's HTTP error instead of the recording
    status_faults = [f for f in faults if isinstance(f, Status)]
    if status_faults:
        sf = status_faults[0]
        provider = sf.provider or providers.detect(
            url, parse(response.body).events if response.is_event_stream else ()
        )
        reason, err_headers, body = providers.error_response(
            provider, sf.code, retry_after=sf.retry_after
        )
        at = tmap[response.headers_at]
        skipped += [f"{g}: only one status fault applies" for g in status_faults[1:]]
        return Schedule(
            sf.code,
            reason,
            "HTTP/1.1",
            err_headers,
            at,
            (Send(at, body),),
            Close(at),
            (str(sf),),
            tuple(skipped),
            content_length=len(body),
        )

    # --- a compressed body: event faults need the decoded bytes (then served without encoding)
    encoding = response.content_encoding
    if event_faults and encoding != "identity":
        decoded = content.decode(recorded, encoding)
        if not decoded.ok:
            skipped += [
                f"{f}: the body is {encoding}-encoded and was {decoded.problem}"
                for f in event_faults
            ]
            event_faults = []
        else:
            recorded = list(decoded.pieces)
            headers = [(k, v) for k, v in headers if k.lower() != "content-encoding"]

    body = b"".join(d for _, d in recorded)
    ends: list[int] = []
    total = 0
    for _, d in recorded:
        total += len(d)
        ends.append(total)
    times = [a for a, _ in recorded]

    def time_at(pos: int) -> float:
        """The recorded time of the byte at ``pos`` (the chunk that carried it)."""
        if not recorded:
            return response.headers_at
        i = bisect.bisect_right(ends, max(pos, 0))
        return times[min(i, len(times) - 1)]

    # --- event-level faults become edits at original byte positions
    ops: list[_Op] = []
    if event_faults:
        events = parse(body).events
        provider = providers.detect(url, events)
        for order, f in enumerate(event_faults):
            if isinstance(f, Truncate):
                assert f.after is not None
                if f.after == 0:
                    ops.append(_Op(events[0].start if events else 0, _CUT, order, how=f.end))
                    fired.append(str(f))
                    continue
                ev = _resolve(f.after, events)
                if ev is None:
                    skipped.append(f"{f}: the stream has {len(events)} events")
                    continue
                ops.append(_Op(ev.end, _CUT, order, how=f.end))
            elif isinstance(f, InjectError):
                ev = _resolve(f.after, events)
                if ev is None:
                    skipped.append(f"{f}: the stream has {len(events)} events")
                    continue
                n = events.index(ev) + 1
                frame = providers.error_event(
                    f.provider or provider, message=f.message, sequence_number=n, like=events[0].raw
                )
                ops.append(_Op(ev.end, _INSERT, order, data=frame))
                ops.append(_Op(ev.end, _CUT, order, how="close"))
            elif isinstance(f, Stall):
                ev = _resolve(f.before, events)
                if ev is None:
                    skipped.append(f"{f}: the stream has {len(events)} events")
                    continue
                ops.append(_Op(ev.start, _MARK, order, stall=f.duration))
            else:
                ref = f.event
                ev = _resolve(ref, events)
                if ev is None:
                    skipped.append(f"{f}: the stream has {len(events)} events")
                    continue
                if isinstance(f, Drop):
                    ops.append(_Op(ev.start, _REPLACE, order, end=ev.end, data=b""))
                elif isinstance(f, Duplicate):
                    ops.append(_Op(ev.end, _INSERT, order, data=ev.raw))
                else:
                    ops.append(
                        _Op(
                            ev.start, _REPLACE, order, end=ev.end, data=_corrupt(ev.raw, f.how, rng)
                        )
                    )
            fired.append(str(f))

    ops.sort()
    replaced = [(o.pos, o.end) for o in ops if o.kind == _REPLACE]
    for (s1, e1), (s2, _) in itertools.pairwise(replaced):
        if s2 < e1:
            raise ConfigError(
                f"two faults change the same event (bytes {s1}-{e1}); use one fault per event"
            )

    # --- walk the body: kept ranges (with their chunk times), literals and markers
    items: list[_Piece | _Marker] = []
    cut: str | None = None
    cut_at = response.end.at

    def keep(a: int, b: int) -> None:
        if a >= b:
            return
        i = bisect.bisect_right(ends, a)
        while a < b:
            chunk_end = ends[i]
            stop = min(b, chunk_end)
            items.append(_Piece(times[i], body[a:stop]))
            a = stop
            i += 1

    cursor = 0
    full_length = len(body)
    for op in ops:
        keep(cursor, op.pos)
        cursor = max(cursor, op.pos)
        if op.kind == _INSERT:
            items.append(_Piece(time_at(op.pos - 1), op.data))
            full_length += len(op.data)
        elif op.kind == _MARK:
            items.append(_Marker(op.stall))
        elif op.kind == _REPLACE:
            if op.data:
                items.append(_Piece(time_at(op.end - 1), op.data))
            full_length += len(op.data) - (op.end - op.pos)
            cursor = op.end
        else:
            cut = op.how
            # the connection dies when the first byte not sent would have arrived
            cut_at = time_at(op.pos) if op.pos < len(body) else response.end.at
            break
    if cut is None:
        keep(cursor, len(body))

    # --- timing
    for it in items:
        if isinstance(it, _Piece):
            it.at = tmap.get(it.at, it.at)
    headers_at = tmap[response.headers_at]
    end_at = tmap[response.end.at]
    cut_at = tmap.get(cut_at, cut_at)

    # --- byte-level faults: truncate:byte, rechunk, stall shifts, slow
    for bf in faults:
        if not (isinstance(bf, Truncate) and bf.byte is not None):
            continue
        limit = bf.byte
        if cut is not None:
            skipped.append(f"{bf}: the body is already cut by another fault")
            continue
        if limit >= full_length:
            skipped.append(f"{bf}: the body has only {full_length} bytes")
            continue
        sent, kept_items = 0, []
        for it in items:
            if isinstance(it, _Piece):
                if sent >= limit:
                    cut_at = it.at
                    break
                if sent + len(it.data) > limit:
                    cut_at = it.at
                    it = _Piece(it.at, it.data[: limit - sent])
                sent += len(it.data)
            kept_items.append(it)
        items, cut = kept_items, bf.end
        fired.append(str(bf))

    for rf in faults:
        if isinstance(rf, Rechunk):
            items = _rechunk(items, rf, rng)
            fired.append(str(rf))

    shifted: list[_Piece] = []
    shift = 0.0
    hang_at: float | None = None
    last_at = headers_at
    for it in items:
        if isinstance(it, _Marker):
            if it.stall is None:
                hang_at = max(last_at, _next_at(items, it, last_at) + shift)
                break
            # the stall starts when the next byte would have been sent
            shift += it.stall
            continue
        at = max(it.at + shift, last_at)
        shifted.append(_Piece(at, it.data))
        last_at = at
    end_at += shift

    slow = [f for f in faults if isinstance(f, Slow)]
    if slow:
        bps = min(f.bps for f in slow)
        piece_max = max(1, bps // 50)
        paced: list[_Piece] = []
        free = headers_at
        for p in shifted:
            for i in range(0, len(p.data), piece_max):
                part = p.data[i : i + piece_max]
                at = max(p.at, free)
                paced.append(_Piece(at, part))
                free = at + len(part) / bps
        end_at = max(end_at, free)
        shifted = paced
        fired += [str(f) for f in slow]

    steps = tuple(Send(p.at, p.data) for p in shifted if p.data)
    last = steps[-1].at if steps else headers_at
    end: EndStep
    if hang_at is not None:
        end = Hang(max(hang_at, last))
    elif cut == "close":
        end = Close(max(last, cut_at + shift))
    elif cut == "abort":
        end = Abort(max(last, cut_at + shift))
    elif cut == "reset":
        end = Reset(max(last, cut_at + shift))
    elif response.end.outcome == Outcome.UPSTREAM_ERROR:
        end = Abort(max(end_at, last))
    else:
        end = Close(max(end_at, last))

    # --- content-length: what a well-formed end sends; an aborted body keeps the full length
    sent_length = sum(len(s.data) for s in steps)
    content_length: int | None = None
    if any(k.lower() == "content-length" for k, _ in headers):
        recorded_length = response.header("content-length")
        if isinstance(end, Close):
            content_length = sent_length
        elif cut is None and recorded_length and recorded_length.strip().isdigit():
            content_length = int(recorded_length)
        else:
            content_length = max(full_length, sent_length + 1)
        headers = [
            (k, str(content_length) if k.lower() == "content-length" else v) for k, v in headers
        ]

    return Schedule(
        status=response.status,
        reason=response.reason,
        http_version=response.http_version,
        headers=tuple(headers),
        headers_at=headers_at,
        steps=steps,
        end=end,
        fired=tuple(dict.fromkeys(fired)),
        skipped=tuple(skipped),
        content_length=content_length,
    )


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


def _next_at(items: list[_Piece | _Marker], marker: _Marker, default: float) -> float:
    """The time of the first piece after ``marker`` (when the stall begins)."""
    seen = False
    for it in items:
        if it is marker:
            seen = True
        elif seen and isinstance(it, _Piece):
            return it.at
    return default


def _split(body: bytes, sizes: Sequence[int]) -> list[bytes]:
    out, pos = [], 0
    for n in sizes:
        out.append(body[pos : pos + n])
        pos += n
    return out


def _rechunk(
    items: list[_Piece | _Marker], f: Rechunk, rng: random.Random
) -> list[_Piece | _Marker]:
    """Re-split each run of pieces between markers; a new piece goes out at the time of the piece
    that carried its last byte (never earlier than recorded)."""
    out: list[_Piece | _Marker] = []
    run: list[_Piece] = []

    def flush() -> None:
        if not run:
            return
        data = b"".join(p.data for p in run)
        piece_ends, acc = [], 0
        for p in run:
            acc += len(p.data)
            piece_ends.append(acc)
        if f.how == "size":
            cuts = list(range(f.size, len(data), f.size))
        elif f.how == "random":
            cuts, pos = [], 0
            while True:
                pos += rng.randint(1, f.max)
                if pos >= len(data):
                    break
                cuts.append(pos)
        else:
            cuts = hostile_boundaries(data)
        start = 0
        for end in [*cuts, len(data)]:
            if end <= start:
                continue
            owner = bisect.bisect_left(piece_ends, end)
            out.append(_Piece(run[min(owner, len(run) - 1)].at, data[start:end]))
            start = end
        run.clear()

    for it in items:
        if isinstance(it, _Marker):
            flush()
            out.append(it)
        else:
            run.append(it)
    flush()
    return out
