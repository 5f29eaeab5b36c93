"""The player: replay state shared by every adapter (in-process transport, replay server, pytest).

It matches each request to a recorded interaction (identical requests in recorded order), scopes
the faults to that play, builds its schedule, and keeps the log a test or ``--strict`` asks about:
what was played, what missed, which faults fired, which interactions were never used.

No sockets, clocks or files: a lock guards the counters because sync clients may call from threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from . import schedule as schedule_mod
from .cassette import Cassette, Interaction, Request
from .errors import NoMatchError
from .faults import Fault, Status, parse_faults
from .matching import MatchOptions, differences, explain_miss
from .schedule import Schedule
from .timing import Timing, parse_timing

__all__ = ["Miss", "Play", "Player"]


@dataclass(frozen=True, slots=True)
class Play:
    index: int  # position in the player's interaction list (0-based)
    cassette: str
    interaction: Interaction
    schedule: Schedule
    request: Request
    number: int  # how many times this interaction had been played before (0 = first)


@dataclass(frozen=True, slots=True)
class Miss:
    request: Request
    message: str


@dataclass(slots=True)
class _Entry:
    cassette: str
    interaction: Interaction
    plays: int = 0


@dataclass
class Player:
    """Serve one or more cassettes. ``repeat=False`` (tests): each interaction plays once and one
    request too many is a miss. ``repeat=True`` (the replay server): a used-up sequence of
    identical requests starts over."""

    cassettes: Sequence[tuple[str, Cassette]]
    timing: Timing = field(default_factory=Timing)
    faults: tuple[Fault, ...] = ()
    seed: int = 0
    match: MatchOptions = field(default_factory=MatchOptions)
    repeat: bool = False
    plays: list[Play] = field(default_factory=list, init=False)
    misses: list[Miss] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._entries = [_Entry(name, i) for name, c in self.cassettes for i in c.interactions]
        self._fault_counts: dict[int, int] = {}
        self._plain: dict[int, Schedule] = {}  # fault-free schedules by interaction index

    @classmethod
    def create(
        cls,
        cassettes: Cassette | Sequence[tuple[str, Cassette]] | Iterable[str | os.PathLike[str]],
        *,
        timing: str | Timing | None = None,
        max_gap: str | float | None = None,
        faults: Iterable[str | Fault] | str | None = None,
        seed: int = 0,
        match: MatchOptions | None = None,
        repeat: bool = False,
    ) -> Player:
        """Build a player from cassettes, paths, or (name, cassette) pairs, parsing the specs."""
        from . import codec

        named: list[tuple[str, Cassette]] = []
        if isinstance(cassettes, Cassette):
            named = [("<cassette>", cassettes)]
        else:
            for item in cassettes:
                if isinstance(item, tuple):
                    named.append(item)
                else:
                    path = os.fspath(item)
                    named.append((path, codec.read_any(path)))
        return cls(named, parse_timing(timing, max_gap=max_gap), parse_faults(faults), seed,
                   match or MatchOptions(), repeat)

    @property
    def interactions(self) -> list[Interaction]:
        return [e.interaction for e in self._entries]

    @property
    def names(self) -> str:
        names = list(dict.fromkeys(e.cassette for e in self._entries)) or [n for n, _ in self.cassettes]
        return ", ".join(repr(n) for n in names) or "(no cassette)"

    def play(self, request: Request) -> Play:
        """The next recorded answer to ``request``; raises NoMatchError (and logs the miss)."""
        with self._lock:
            candidates = [n for n, e in enumerate(self._entries)
                          if not differences(e.interaction.request, request, self.match)]
            fresh = [n for n in candidates if self._entries[n].plays == 0]
            if fresh:
                index = fresh[0]
            elif candidates and self.repeat:
                index = min(candidates, key=lambda n: (self._entries[n].plays, n))
            else:
                message = explain_miss(self.names, [e.interaction.request for e in self._entries], request,
                                       self.match, exhausted=candidates)
                self.misses.append(Miss(request, message))
                raise NoMatchError(message, method=request.method, url=request.url)
            entry = self._entries[index]
            number = entry.plays
            faults = self._faults_for(index, request)
            # a status fault answers instead of the recording: the interaction is still unused,
            # so the client's retry gets it (status:429,times=1 -> 429, then the recording)
            if not any(isinstance(f, Status) for f in faults):
                entry.plays += 1
        # without faults a schedule depends only on the interaction (the seed feeds faults only):
        # build it once (the replay server answers the same request thousands of times)
        sched = None if faults else self._plain.get(index)
        if sched is None:
            sched = schedule_mod.build(entry.interaction.response, timing=self.timing, faults=faults,
                                       seed=f"{self.seed}:{index}:{number}", url=entry.interaction.request.url)
            if not faults:
                self._plain[index] = sched
        play = Play(index, entry.cassette, entry.interaction, sched, request, number)
        with self._lock:
            self.plays.append(play)
        return play

    def _faults_for(self, index: int, request: Request) -> list[Fault]:
        chosen = []
        for n, f in enumerate(self.faults):
            if not f.scope.matches(index, request.path):
                continue
            if f.scope.times is not None:
                if self._fault_counts.get(n, 0) >= f.scope.times:
                    continue
                self._fault_counts[n] = self._fault_counts.get(n, 0) + 1
            chosen.append(f)
        return chosen

    def unused(self) -> list[tuple[int, Interaction]]:
        with self._lock:
            return [(n, e.interaction) for n, e in enumerate(self._entries) if e.plays == 0]

    @property
    def fired(self) -> list[str]:
        return list(dict.fromkeys(f for p in self.plays for f in p.schedule.fired))

    def reset(self) -> None:
        with self._lock:
            for e in self._entries:
                e.plays = 0
            self._fault_counts.clear()
            self.plays.clear()
            self.misses.clear()
