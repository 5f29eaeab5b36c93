"""The schedule of a response that is still arriving: faults on a recording run. Pure.

While a stream is recorded in process with faults, the client must see what a replay of the
finished recording will show it (same bytes, same pieces, same end), as early as that is certain::

    live = LiveSchedule(head, faults=..., seed=..., url=...)   # head: status and headers
    live.add(at, chunk) ...                                    # each chunk as it arrives
    known = live.known()        # .schedule (the head once decided), .steps (final so far), .end
    live.finish(end)            # the upstream ended: the replay's own schedule, whole

``known().steps`` only ever grows, and is always a prefix of ``_schedule.build`` over the finished
response (timing ``original``: on a recording run nothing can arrive before the upstream sent it).
It is computed with that same ``build``, over the part of the stream no pending fault can change
any more:

- A fault on event N that acts from the event's start (``stall``, ``drop``, ``corrupt``) holds back
  the bytes after the last complete frame until event N is complete; one on ``last`` holds back the
  latest complete event until another one follows (or the stream ends). Faults that act after an
  event (``truncate``, ``duplicate``, ``error``) hold back nothing before it.
- The part given to ``build`` ends at a chunk boundary (never in the middle of a faulted event, nor
  after a lone CR whose LF may follow), so its chunks are the recording's own.
- What only the rest of the stream decides (the end of a cut, where a stall that never ends
  begins, the last piece of a ``rechunk``) counts only when it is the same with a later chunk
  appended.
- ``status`` answers once the provider's error shape is certain (from the URL, else the first
  five events); a body sent with ``content-length`` is decided at its end (the header must carry
  the faulted length).

No clock and no I/O: the adapter stamps the chunks and follows the steps.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from . import _providers as providers
from ._cassette import End, Outcome, Response, with_body
from ._content import ContentDecoder, DecodeError
from ._errors import ConfigError
from ._faults import (
    Corrupt,
    Drop,
    Duplicate,
    Fault,
    Header,
    InjectError,
    Rechunk,
    Slow,
    Stall,
    Status,
    Truncate,
)
from ._schedule import EndStep, Schedule, Send, build
from ._sse import Event, SSEParser
from ._timing import HORIZON, Timing

__all__ = ["Known", "LiveSchedule"]

_LATER = HORIZON / 10  # seconds: after anything recorded (the probe chunk's time)
_OPEN_END = End(2 * _LATER, Outcome.COMPLETE)  # the end of a stream that has not ended
_PROBE = b"x"  # a later byte that completes no line, no event and no hostile split
_ORIGINAL = Timing()
_DETECT_EVENTS = 5  # providers.detect looks at the first five events at most


@dataclass(frozen=True, slots=True)
class _Base:
    """The last prefix schedule built: over the first ``k`` pieces (``size`` bytes of the view),
    with the event faults ``applied``; its certain ``steps`` and ``end``; the stalls' ``shift``."""

    k: int
    applied: frozenset[int]
    schedule: Schedule
    steps: tuple[Send, ...]
    end: EndStep | None
    shift: float
    size: int


@dataclass(frozen=True, slots=True)
class Known:
    """What is certain so far. ``schedule``: a schedule whose head (status, reason, headers) is the
    replay's, None until that is decided; ``steps``: the replay's first steps; ``end``: its end,
    None until known (then ``steps`` are all of them)."""

    schedule: Schedule | None
    steps: tuple[Send, ...]
    end: EndStep | None


_NOTHING = Known(None, (), None)


def _is_event_fault(f: Fault) -> bool:
    """The faults ``build`` places on events (the same test as ``build``'s)."""
    return isinstance(f, Corrupt | Stall | Drop | Duplicate | InjectError) or (
        isinstance(f, Truncate) and f.after is not None
    )


def _ref(f: Fault) -> int | str:
    if isinstance(f, Stall):
        return f.before
    if isinstance(f, Truncate | InjectError):
        assert f.after is not None
        return f.after
    assert isinstance(f, Corrupt | Drop | Duplicate)
    return f.event


def _from_start(f: Fault) -> bool:
    """Whether the fault changes its event's own bytes (or what comes right before them)."""
    return isinstance(f, Stall | Drop | Corrupt)


class LiveSchedule:
    """See the module docstring. ``head``: the response as far as its headers (no body)."""

    def __init__(
        self, head: Response, *, faults: Sequence[Fault], seed: int | str = 0, url: str = ""
    ) -> None:
        self._head = head
        self._faults = tuple(faults)
        self._seed = seed
        self._url = url
        self._event_faults = [f for f in self._faults if _is_event_fault(f)]
        self._status = any(isinstance(f, Status) for f in self._faults)
        self._rechunk = any(isinstance(f, Rechunk) for f in self._faults)
        # a byte cut is skipped when another cut applied first (an event cut, or a byte cut
        # earlier in the list that the body was long enough for): those are decided at the end
        byte_cuts = sum(isinstance(f, Truncate) and f.byte is not None for f in faults)
        cuts = sum(isinstance(f, Truncate | InjectError) for f in faults)
        self._two_cuts = bool(byte_cuts) and cuts > 1
        self._random_rechunks = sum(
            isinstance(f, Rechunk) and f.how == "random" for f in self._faults
        )
        self._rng_users = sum(
            (isinstance(f, Corrupt) and f.how == "bytes")
            or (isinstance(f, Rechunk) and f.how == "random")
            for f in self._faults
        )
        # a sized body (recorded so, or given its content-length by a header fault) is known
        # only at the end: its head carries the length
        self._streamed = head.header("content-length") is None and not any(
            isinstance(f, Header) and f.action == "length" for f in self._faults
        )
        encoding = head.content_encoding
        self._decoder: ContentDecoder | None = None
        if self._event_faults and encoding != "identity":
            try:
                self._decoder = ContentDecoder(encoding)
            except DecodeError:
                self._streamed = False  # build will not decode it either: decided at the end
        self._undecodable = False
        self._chunks: list[tuple[float, bytes]] = []  # as recorded (still encoded)
        self._view: list[tuple[float, bytes]] = []  # what build works on (decoded if it decodes)
        self._ends: list[int] = []  # where each piece of the view ends
        self._parser = SSEParser()
        self._events: list[Event] = []
        self._event_ends: list[int] = []
        self._base: _Base | None = None
        # without byte-level faults, pieces no fault acts on are appended as they come
        self._extendable = not any(
            isinstance(f, Rechunk | Slow) or (isinstance(f, Truncate) and f.byte is not None)
            for f in self._faults
        )
        self._end: End | None = None
        self._known = _NOTHING
        self._changed = True
        self.final: Schedule | None = None
        self._error: ConfigError | None = None
        self.consistent = True  # every step handed out early is the final schedule's

    # -- input --------------------------------------------------------------------------------

    def add(self, at: float, data: bytes) -> None:
        """A chunk arrived, ``at`` seconds after the request was sent."""
        if self._end is not None or not data:
            return
        self._chunks.append((at, data))
        piece = data
        if self._decoder is not None and not self._undecodable:
            try:
                piece = self._decoder.feed(data)
            except DecodeError:
                self._undecodable = True  # nothing more is certain before the end
                piece = b""
        self._view.append((at, piece))
        self._ends.append((self._ends[-1] if self._ends else 0) + len(piece))
        if self._event_faults or self._status:
            for frame in self._parser.feed(piece):
                if isinstance(frame, Event):
                    self._events.append(frame)
                    self._event_ends.append(frame.end)
        self._changed = True

    def finish(self, end: End) -> None:
        """The stream ended: the schedule is the replay's own, over the whole recording."""
        if self._end is not None:
            return
        self._end = end
        self._changed = True
        try:
            self.final = self._build(self._response(self._chunks, end), self._faults)
        except ConfigError as e:  # two faults on one event: the replay refuses it too
            self._error = e

    # -- output -------------------------------------------------------------------------------

    def known(self) -> Known:
        """What is certain now (raises the ConfigError the replay would raise for these faults)."""
        if self._error is not None:
            raise self._error
        if not self._changed:
            return self._known
        self._changed = False
        if self.final is not None:
            new = Known(self.final, self.final.steps, self.final.end)
        elif self._status:
            new = self._status_known()
        elif not self._streamed:
            new = _NOTHING
        else:
            try:
                new = self._prefix_known()
            except ConfigError as e:
                self._error = e
                raise
        old = self._known
        n = min(len(old.steps), len(new.steps))
        if new.steps[:n] != old.steps[:n]:  # never: the steps handed out are final
            self.consistent = False
            if self.final is None:
                return old
        if self.final is None and len(new.steps) < len(old.steps):
            return old  # a fault now waiting holds back less than was already certain
        self._known = new
        return new

    # -- the parts ------------------------------------------------------------------------------

    def _build(self, response: Response, faults: Sequence[Fault]) -> Schedule:
        return build(response, timing=_ORIGINAL, faults=faults, seed=self._seed, url=self._url)

    def _response(
        self, chunks: Sequence[tuple[float, bytes]], end: End, *, decoded: bool = False
    ) -> Response:
        head = self._head
        headers = head.headers
        if decoded:
            headers = tuple((k, v) for k, v in headers if k.lower() != "content-encoding")
        return with_body(head, chunks, headers=headers, end=end)

    def _status_known(self) -> Known:
        """A status fault answers instead of the stream: once the provider is certain."""
        statuses = [f for f in self._faults if isinstance(f, Status)]
        certain = (
            statuses[0].provider is not None
            or not self._head.is_event_stream
            or providers.detect(self._url) == "anthropic"  # events can only say anthropic too
            or len(self._events) >= _DETECT_EVENTS
        )
        if not certain:
            return _NOTHING
        schedule = self._build(self._response(self._chunks, _OPEN_END), self._faults)
        return Known(schedule, schedule.steps, schedule.end)

    def _bound(self) -> tuple[int, list[Fault], list[tuple[int, int]]]:
        """How far (in bytes of the view) the stream is certain, the faults to leave out until
        they are, and the spans of the faulted events no cut may fall inside."""
        events = self._events
        parsed = self._parser.offset  # the end of the last complete frame
        bound = self._ends[-1] if self._ends else 0
        later: list[Fault] = []
        spans: list[tuple[int, int]] = []
        for f in self._event_faults:
            ref = _ref(f)
            if ref == 0:  # truncate:after=0 cuts before the first event (at 0 if there is none)
                if not events:
                    bound = 0
                else:
                    spans.append((events[0].start, events[0].end))
                continue
            if ref == "last":  # the latest complete event may not be the last one
                later.append(f)
                last = events[-1] if events else None
                # (not even its end: another fault's insert there may have to follow this one's)
                bound = min(bound, parsed if last is None else last.start)
                continue
            assert isinstance(ref, int)
            if len(events) < ref:  # event N has not arrived whole yet
                if _from_start(f):
                    bound = min(bound, parsed)
                continue
            event = events[ref - 1]
            if _from_start(f):
                spans.append((event.start, event.end))
            if isinstance(f, InjectError) and f.provider is None and len(events) < _DETECT_EVENTS:
                later.append(f)  # the error's shape may still depend on the events to come
                bound = min(bound, event.start)
        # a second rechunk:random re-splits after one whose draws depend on the whole length;
        # a byte cut and an event cut: which one applies depends on both
        if self._random_rechunks > 1 or self._two_cuts:
            bound = 0
        return bound, later, spans

    def _cut(self, bound: int, spans: list[tuple[int, int]]) -> int:
        """How many chunks the certain part has: ending at or before ``bound``, not inside a
        faulted event, not right after a CR."""
        ends = self._ends
        k = bisect.bisect_right(ends, bound)
        while k:  # (the first k pieces: k = 0 is always certain)
            pos = ends[k - 1]
            if (
                not any(start < pos < stop for start, stop in spans)
                and self._byte_before(k) != 0x0D
            ):
                break
            k -= 1
        return k

    def _byte_before(self, k: int) -> int:
        """The last byte of the view's first ``k`` pieces (-1: none)."""
        view = self._view
        while k:
            piece = view[k - 1][1]
            if piece:
                return piece[-1]
            k -= 1
        return -1

    def _applied(self, k: int, later: list[Fault]) -> frozenset[int]:
        """Which event faults ``build`` applies to the first ``k`` pieces (by position)."""
        ends = self._ends
        limit = ends[k - 1] if k else 0
        whole = bisect.bisect_right(self._event_ends, limit)  # events complete in those pieces
        applied = set()
        for n, f in enumerate(self._event_faults):
            if any(f is g for g in later):
                continue
            ref = _ref(f)
            if (ref == 0 and whole) or (isinstance(ref, int) and 0 < ref <= whole):
                applied.add(n)
        return frozenset(applied)

    def _cuts(self, applied: frozenset[int]) -> bool:
        """Whether an applied fault ends the body (nothing after it is sent)."""
        return any(isinstance(self._event_faults[n], Truncate | InjectError) for n in applied)

    def _prefix_known(self) -> Known:
        if self._undecodable:
            return Known(self._known.schedule, self._known.steps, None)
        bound, later, spans = self._bound()
        k = self._cut(bound, spans)
        if k and self._events and self._ends[k - 1] < self._events[0].end:
            # the part has no event yet: truncate:after=0 would cut it at 0, not before event 1
            later += [f for f in self._event_faults if _ref(f) == 0]
        applied = self._applied(k, later)
        if self._rng_users > 1 and any(
            isinstance(f, Corrupt) and f.how == "bytes" and n not in applied
            for n, f in enumerate(self._event_faults)
        ):
            k, applied = 0, frozenset()  # its random bytes, drawn later, would shift the others'
        base = self._base
        if base is not None and k >= base.k and base.end is None:
            if k == base.k and applied == base.applied:
                return Known(base.schedule, base.steps, None)
            if self._extendable and applied == base.applied and not self._cuts(applied):
                return self._extended(base, k)
            if not self._extendable and self._ends[k - 1] - base.size < base.size // 4:
                return self._known  # re-split pieces: built again once a quarter more arrived
        decoded = self._decoder is not None
        chunks = (self._view if decoded else self._chunks)[:k]
        faults = [f for f in self._faults if not any(f is g for g in later)]
        schedule = self._build(self._response(chunks, _OPEN_END, decoded=decoded), faults)
        steps, end_step = schedule.steps, schedule.end
        end: EndStep | None = end_step
        finite_end = end_step.at < _LATER
        if self._rechunk or finite_end:
            # what a later chunk would change is not certain yet
            probe = self._build(
                self._response([*chunks, (_LATER, _PROBE)], _OPEN_END, decoded=decoded), faults
            )
            same = 0
            for a, b in zip(steps, probe.steps, strict=False):
                if a != b:
                    break
                same += 1
            if not (finite_end and end_step == probe.end and same == len(steps)):
                steps, end = steps[:same], None
        else:
            end = None
        shift = sum(
            f.duration or 0.0
            for n, f in enumerate(self._event_faults)
            if n in applied and isinstance(f, Stall)
        )
        size = self._ends[k - 1] if k else 0
        self._base = _Base(k, applied, schedule, steps, end, shift, size)
        return Known(schedule, steps, end)

    def _extended(self, base: _Base, k: int) -> Known:
        """The schedule of the first ``k`` pieces from that of the first ``base.k``, when no fault
        acts on the pieces between: ``build`` sends them as they came, after the stalls so far."""
        steps = list(base.steps)
        last = steps[-1].at if steps else self._head.headers_at
        shift = base.shift
        for at, data in self._view[base.k : k]:
            if data:
                last = max(at + shift, last)
                steps.append(Send(last, data))
        extended = _Base(
            k, base.applied, base.schedule, tuple(steps), None, shift, self._ends[k - 1] if k else 0
        )
        self._base = extended
        return Known(base.schedule, extended.steps, None)
