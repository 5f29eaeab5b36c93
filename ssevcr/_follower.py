"""The one schedule follower: what to do next while replaying a schedule, sans-IO.

Every adapter that replays (the replay server, the in-process transports) drives a
:class:`Follower`: it reads its own clock, tells the follower how many seconds have passed since
the request arrived, and does what it is told::

    f = Follower(schedule)
    while True:
        action = f.next(clock() - t0)
        if isinstance(action, Wait):    sleep until t0 + action.until (or give up: a read timeout)
        elif isinstance(action, Head):  send the status and headers
        elif isinstance(action, Write): send schedule.steps[action.start:action.stop]
        else:                           action is Finish: end as action.end says, and stop

Deadlines are absolute offsets from the request (never from the previous write), so a slow write
never accumulates drift. Every step already due is handed over in one ``Write`` (up to
``batch_bytes``, so a client that stops reading never has more than that queued by one call):
instant replay is one write per batch, not one per chunk. A ``Write`` names steps by index so an
adapter can send the recorded bytes or its own pre-framed copy of them.

No clock, no sleeping, no I/O here: only the order of things and their deadlines.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from ._schedule import EndStep, Schedule

__all__ = ["BATCH_BYTES", "Finish", "Follower", "Head", "Wait", "Write"]

BATCH_BYTES = 64 * 1024
"""Body bytes handed over in one ``Write`` at most (a larger step is still one ``Write``)."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing is due before ``until`` seconds after the request arrived."""

    until: float


@dataclass(frozen=True, slots=True)
class Head:
    """Send the response head now."""


@dataclass(frozen=True, slots=True)
class Write:
    """Send the body bytes of ``schedule.steps[start:stop]`` now (``size`` bytes)."""

    start: int
    stop: int
    size: int


@dataclass(frozen=True, slots=True)
class Finish:
    """End the response as ``end`` says (``Close``, ``Abort``, ``Reset`` or ``Hang``)."""

    end: EndStep


_HEAD = Head()


class Follower:
    """Walks one schedule. ``next(elapsed)`` says what to do at ``elapsed`` seconds after the
    request arrived; after ``Finish`` it keeps answering ``Finish``.

    The steps' times never decrease (``schedule.build`` guarantees it), so the steps due at
    ``elapsed`` are found by bisection: a call costs the same for one due step or a thousand.
    ``batch_bytes=None`` hands over every due step at once.
    """

    __slots__ = ("_ats", "_batch", "_end", "_ends", "_headed", "_i", "_n", "schedule")

    def __init__(self, schedule: Schedule, *, batch_bytes: int | None = BATCH_BYTES) -> None:
        self.schedule = schedule
        timeline = schedule.timeline
        self._ats = timeline.at
        self._ends = timeline.ends
        self._n = len(schedule.steps)
        self._i = 0
        self._headed = False
        self._batch = batch_bytes
        self._end = Finish(schedule.end)

    @property
    def position(self) -> int:
        """How many steps have been handed over."""
        return self._i

    def next(self, elapsed: float, batch_bytes: int | None = -1) -> Wait | Head | Write | Finish:
        """What to do at ``elapsed``. ``batch_bytes`` overrides the follower's batch for this
        call (an adapter whose socket takes more right now); -1 keeps it."""
        if not self._headed:
            at = self.schedule.headers_at
            if elapsed < at:
                return Wait(at)
            self._headed = True
            return _HEAD
        i, n = self._i, self._n
        if i < n:
            ats = self._ats
            if ats[i] > elapsed:
                return Wait(ats[i])
            ends = self._ends
            j = bisect_right(ats, elapsed, i + 1) if ats[n - 1] > elapsed else n
            sent = ends[i - 1] if i else 0
            batch = self._batch if batch_bytes == -1 else batch_bytes
            if batch is not None and ends[j - 1] - sent > batch:
                j = max(i + 1, bisect_right(ends, sent + batch, i, j))
            self._i = j
            return Write(i, j, ends[j - 1] - sent)
        end = self._end
        if end.end.at > elapsed:
            return Wait(end.end.at)
        return end

    def all_due(self, elapsed: float) -> bool:
        """Whether everything left, the end included, is due at ``elapsed`` (instant replay)."""
        return (
            self.schedule.end.at <= elapsed
            and (not self._n or self._ats[-1] <= elapsed)
            and self.schedule.headers_at <= elapsed
        )
