"""The player: replay state shared by every adapter (in-process transport, replay server, pytest).

It matches each request to a recorded interaction (identical requests in recorded order), scopes
the faults to that play, builds its schedule, and keeps the log a test or ``--strict`` asks about:
what was played, what missed, which faults fired, which interactions were never used. A
long-running server caps that log (``log_limit``): it keeps counts of everything, the most recent
plays and the first misses (their requests with at most 4 KiB of body), so serving a million
requests takes no more memory than a thousand. Its caches are bounded by bytes.

No sockets, clocks or files: a lock guards the counters because sync clients may call from threads.
Cassette paths handed to ``Player.create`` are read by the store (``_store.read_named``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from . import _conversation as conversation_mod
from . import _schedule as schedule_mod
from ._cassette import Cassette, Interaction, Request
from ._conversation import Plan
from ._errors import NoMatchError
from ._faults import Fault, Status, parse_faults
from ._matching import MatchOptions, differences, explain_miss
from ._schedule import Schedule
from ._timing import Timing, parse_timing

if TYPE_CHECKING:
    from os import PathLike

    from ._configured import Config

__all__ = ["Miss", "Play", "Player"]

_CACHED_BODY = 64 * 1024  # requests with bodies up to this size have their matches cached
_MATCH_CACHE_BYTES = 4 * 1024 * 1024  # ... in a cache of at most this many bytes of requests
_LOGGED_BODY = 4 * 1024  # in a capped log, the bytes of a request body kept


@dataclass(frozen=True, slots=True)
class Play:
    index: int  # position in the player's interaction list (0-based)
    cassette: str
    interaction: Interaction
    schedule: Schedule
    request: Request
    number: int  # how many times this interaction had been played before (0 = first)
    recorded: bool = False  # the upstream answered it, recorded in process (index: where it goes)
    # a WebSocket interaction: the conversation to follow after the handshake (None when a
    # status fault answers the handshake instead)
    conversation: Plan | None = None


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
    log_limit: int | None = None  # keep the last N plays and the first N misses (None: all)
    # fault-free schedules by interaction index, to share with other players of the same
    # interactions and timing (use_cassette keeps one per cassette file and timing); None: own
    schedules: dict[int, Schedule] | None = field(default=None, repr=False)
    # configured responses (``ssevcr._configured``): they answer what no interaction matches
    config: Config | None = field(default=None, repr=False)
    plays: list[Play] = field(default_factory=list, init=False)
    misses: list[Miss] = field(default_factory=list, init=False)
    play_count: int = field(default=0, init=False)  # every play, also those no longer in ``plays``
    miss_count: int = field(default=0, init=False)
    fired_counts: Counter[str] = field(
        default_factory=Counter, init=False
    )  # fault spec -> plays it changed
    skipped_counts: Counter[str] = field(
        default_factory=Counter, init=False
    )  # "spec: why" -> plays

    def __post_init__(self) -> None:
        if self.log_limit is not None and self.log_limit < 1:
            raise ValueError("log_limit must be at least 1")
        self._lock = threading.Lock()
        self._entries = [_Entry(name, i) for name, c in self.cassettes for i in c.interactions]
        self._fault_counts: dict[int, int] = {}
        self._rule_plays: dict[str, int] = {}  # configured answers given, by rule
        # fault-free schedules by interaction index
        self._plain: dict[int, Schedule] = {} if self.schedules is None else self.schedules
        # the entries that match a request, by (method, url, body): a server answers the same
        # request again and again, and matching compares URLs and canonical JSON each time;
        # bounded by the bytes of the requests it keeps (emptied when full)
        self._matches: dict[tuple[str, str, bytes], list[int]] = {}
        self._matches_bytes = 0

    @classmethod
    def create(
        cls,
        cassettes: Cassette | Sequence[tuple[str, Cassette]] | Iterable[str | PathLike[str]],
        *,
        timing: str | Timing | None = None,
        max_gap: str | float | None = None,
        faults: Iterable[str | Fault] | str | None = None,
        seed: int = 0,
        match: MatchOptions | None = None,
        repeat: bool = False,
        log_limit: int | None = None,
        schedules: dict[int, Schedule] | None = None,
        config: Config | None = None,
    ) -> Player:
        """Build a player from cassettes, paths, or (name, cassette) pairs, parsing the specs."""
        from . import _store

        named: list[tuple[str, Cassette]] = []
        if isinstance(cassettes, Cassette):
            named = [("<cassette>", cassettes)]
        else:
            for item in cassettes:
                if isinstance(item, tuple):
                    named.append(item)
                else:
                    named.append(_store.read_named(item))
        return cls(
            named,
            parse_timing(timing, max_gap=max_gap, seed=seed),
            parse_faults(faults),
            seed,
            match or MatchOptions(),
            repeat,
            log_limit,
            schedules,
            config,
        )

    @property
    def interactions(self) -> list[Interaction]:
        return [e.interaction for e in self._entries]

    @property
    def names(self) -> str:
        names = list(dict.fromkeys(e.cassette for e in self._entries)) or [
            n for n, _ in self.cassettes
        ]
        return ", ".join(repr(n) for n in names) or "(no cassette)"

    def play(self, request: Request) -> Play:
        """The next recorded answer to ``request``; raises NoMatchError (and logs the miss)."""
        entries = self._entries
        configured: Config | None = None
        with self._lock:
            candidates = self._candidates(request)
            index = -1
            for n in candidates:  # (a loop: a generator costs more than the search, per request)
                if entries[n].plays == 0:
                    index = n
                    break
            if index < 0:
                if candidates and self.repeat:
                    index = (
                        candidates[0]
                        if len(candidates) == 1
                        else min(candidates, key=lambda n: (entries[n].plays, n))
                    )
                elif self.config is not None:
                    configured = self.config
                else:
                    message = explain_miss(
                        self.names,
                        [e.interaction.request for e in entries],
                        request,
                        self.match,
                        exhausted=candidates,
                    )
                    self._miss(request, message)
                    raise NoMatchError(message, method=request.method, url=request.url)
            if configured is None:
                entry = entries[index]
                number = entry.plays
                faults = self._faults_for(index, request) if self.faults else []
                # a status fault answers instead of the recording: the interaction is still unused,
                # so the client's retry gets it (status:429,times=1 -> 429, then the recording)
                if not faults or not any(isinstance(f, Status) for f in faults):
                    entry.plays += 1
                # without faults a schedule depends only on the interaction (the seed feeds faults
                # only): it is built once (the replay server answers the same request thousands of times)
                sched = None if faults else self._plain.get(index)
                if sched is not None and entry.interaction.websocket is None:
                    play = Play(
                        index,
                        entry.cassette,
                        entry.interaction,
                        sched,
                        self._logged(request),
                        number,
                    )
                    self._log(play)
                    return play
        if configured is not None:
            return self._configured(configured, request)
        seed = f"{self.seed}:{index}:{number}"
        ws = entry.interaction.websocket
        statuses = [f for f in faults if isinstance(f, Status)]
        sched = schedule_mod.build(
            entry.interaction.response,
            timing=self.timing,
            faults=statuses if ws is not None else faults,
            seed=seed,
            url=entry.interaction.request.url,
        )
        plan = None
        if ws is not None and not statuses:
            plan = conversation_mod.build(ws, timing=self.timing, faults=faults, seed=seed)
            sched = replace(sched, fired=plan.fired, skipped=plan.skipped)
        play = Play(
            index,
            entry.cassette,
            entry.interaction,
            sched,
            self._logged(request),
            number,
            conversation=plan,
        )
        with self._lock:
            if not faults and ws is None:
                self._plain[index] = sched
            self._log(play)
        return play

    def _configured(self, config: Config, request: Request) -> Play:
        """The play a configured response gives a request no interaction matched (its rule's
        faults and timing, then the player's faults scoped to it); a miss names the closest
        rule."""
        from ._configured import Miss as ConfigMiss

        answer = config.answer(request)
        if isinstance(answer, ConfigMiss):
            message = str(answer)
            if self._entries:
                message = (
                    explain_miss(
                        self.names,
                        [e.interaction.request for e in self._entries],
                        request,
                        self.match,
                    )
                    + f"\n{message}"
                )
            with self._lock:
                self._miss(request, message)
            raise NoMatchError(message, method=request.method, url=request.url)
        with self._lock:
            number = self._rule_plays.get(answer.rule, 0)
            self._rule_plays[answer.rule] = number + 1
            faults = [*parse_faults(answer.faults), *self._faults_for(-1, request)]
        timing = self.timing
        if answer.timing:
            timing = parse_timing(answer.timing, max_gap=self.timing.max_gap, seed=self.seed)
        sched = schedule_mod.build(
            answer.interaction.response,
            timing=timing,
            faults=faults,
            seed=f"{self.seed}:{answer.rule}:{number}",
            url=request.url,
        )
        name = f"{config.source or 'configuration'}#{answer.rule}"
        play = Play(-1, name, answer.interaction, sched, self._logged(request), number)
        with self._lock:
            self._log(play)
        return play

    def _miss(self, request: Request, message: str) -> None:
        """Count a miss and keep it in the (capped) log; the caller holds the lock."""
        self.miss_count += 1
        if self.log_limit is None or len(self.misses) < self.log_limit:
            self.misses.append(Miss(self._logged(request), message))

    def note_miss(self, request: Request, message: str) -> None:
        """A miss found after the match: a WebSocket client message that differs from the
        recording (what ``--strict`` and the tests' misses report)."""
        with self._lock:
            self._miss(request, message)

    def _log(self, play: Play) -> None:
        """Count a play and keep it in the (capped) log; the caller holds the lock."""
        self.play_count += 1
        sched = play.schedule
        if sched.fired:
            self.fired_counts.update(sched.fired)
        if sched.skipped:
            self.skipped_counts.update(sched.skipped)
        plays = self.plays
        plays.append(play)
        if self.log_limit is not None and len(plays) >= 2 * self.log_limit:
            del plays[: -self.log_limit]  # amortized: one trim per log_limit plays

    def _candidates(self, request: Request) -> list[int]:
        """Indices of the entries that match ``request`` (the caller holds the lock)."""
        if "headers" in self.match.on:
            return [
                n
                for n, e in enumerate(self._entries)
                if not differences(e.interaction.request, request, self.match)
            ]
        if len(request.body) > _CACHED_BODY:
            return [
                n
                for n, e in enumerate(self._entries)
                if not differences(e.interaction.request, request, self.match)
            ]
        key = (request.method, request.url, request.body)
        found = self._matches.get(key)
        if found is None:
            found = [
                n
                for n, e in enumerate(self._entries)
                if not differences(e.interaction.request, request, self.match)
            ]
            size = len(request.url) + len(request.body) + 8 * len(found) + 256
            if self._matches_bytes + size > _MATCH_CACHE_BYTES:
                self._matches.clear()
                self._matches_bytes = 0
            self._matches[key] = found
            self._matches_bytes += size
        return found

    def _logged(self, request: Request) -> Request:
        """The request as a capped log keeps it: at most _LOGGED_BODY bytes of its body (the log
        of a long-running server holds thousands of them)."""
        if self.log_limit is None or len(request.body) <= _LOGGED_BODY:
            return request
        return replace(request, body=request.body[:_LOGGED_BODY])

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

    def faults_for(self, index: int, request: Request) -> list[Fault]:
        """The faults a play of interaction ``index`` gets (counting ``times``): also what an
        in-process recording of it shows the client."""
        if not self.faults:
            return []
        with self._lock:
            return self._faults_for(index, request)

    def unused(self) -> list[tuple[int, Interaction]]:
        with self._lock:
            return [(n, e.interaction) for n, e in enumerate(self._entries) if e.plays == 0]

    @property
    def fired(self) -> list[str]:
        """Fault specs that changed at least one play, in the order they first fired."""
        return list(self.fired_counts)

    def reset(self) -> None:
        with self._lock:
            for e in self._entries:
                e.plays = 0
            self._fault_counts.clear()
            self.plays.clear()
            self.misses.clear()
            self.play_count = self.miss_count = 0
            self.fired_counts.clear()
            self.skipped_counts.clear()
