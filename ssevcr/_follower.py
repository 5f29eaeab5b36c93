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
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from ._schedule import EndStep, Schedule

__all__ = ["BATCH_BYTES", "Finish", "Follower", "Head", "Track", "Wait", "Write"]

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


@dataclass(frozen=True, slots=True, eq=False)
class Track:
    """A schedule's deadlines and sizes as the follower reads them, made once per schedule (an
    adapter that replays a schedule again keeps it): ``due[i]``, when step i may go (never before
    the steps before it: a running maximum), and ``ends[i]``, the body bytes before step i
    (``ends[0] == 0``, ``ends[-1]`` the whole body)."""

    due: Sequence[float]
    ends: Sequence[int]

    @classmethod
    def of(cls, schedule: Schedule) -> Track:
        steps = schedule.steps
        due = list(accumulate((s.at for s in steps), max))
        ends = list(accumulate((len(s.data) for s in steps), initial=0))
        return cls(due, ends)


class Follower:
    """Walks one schedule. ``next(elapsed)`` says what to do at ``elapsed`` seconds after the
    request arrived; after ``Finish`` it keeps answering ``Finish``. Each call costs the same
    however many steps are due (binary searches over the :class:`Track`)."""

    __slots__ = ("_batch", "_due", "_end", "_ends", "_headed", "_i", "_n", "schedule")

    def __init__(
        self, schedule: Schedule, *, batch_bytes: int = BATCH_BYTES, track: Track | None = None
    ) -> None:
        self.schedule = schedule
        track = track or Track.of(schedule)
        self._due = track.due
        self._ends = track.ends
        self._n = len(schedule.steps)
        self._i = 0
        self._headed = False
        self._batch = batch_bytes
        self._end = Finish(schedule.end)

    @property
    def position(self) -> int:
        """How many steps have been handed over."""
        return self._i

    def next(self, elapsed: float) -> Wait | Head | Write | Finish:
        if not self._headed:
            at = self.schedule.headers_at
            if elapsed < at:
                return Wait(at)
            self._headed = True
            return _HEAD
        i = self._i
        if i < self._n:
            due = self._due
            if due[i] > elapsed:
                return Wait(due[i])
            ends = self._ends
            stop = bisect_right(due, elapsed, i + 1)  # the first step not due
            fits = bisect_right(ends, ends[i] + self._batch, i) - 1  # within the batch
            j = stop if stop <= fits else max(fits, i + 1)
            self._i = j
            return Write(i, j, ends[j] - ends[i])
        end = self._end
        if end.end.at > elapsed:
            return Wait(end.end.at)
        return end

    def all_due(self, elapsed: float) -> bool:
        """Whether everything left, the end included, is due at ``elapsed`` (instant replay)."""
        return (
            self.schedule.end.at <= elapsed
            and (not self._n or self._due[-1] <= elapsed)
            and self.schedule.headers_at <= elapsed
        )
