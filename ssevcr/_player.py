"""The player: replay state shared by every adapter (in-process transport, replay server, pytest).

It matches each request to a recorded interaction (identical requests in recorded order), scopes
the faults to that play, builds its schedule, and keeps the log a test or ``--strict`` asks about:
what was played, what missed, which faults fired, which interactions were never used. A
long-running server caps that log (``log_limit``): it keeps counts of everything, the most recent
plays and the first misses (their requests with at most 4 KiB of body), so serving a million
requests takes no more memory than a thousand. Its caches are bounded by bytes.

Each play carries its delivery journal (:class:`ssevcr._journal.Journal`), which the adapter
that answers it fills in: ``play.delivered`` is what the client got so far (a frozen value).

A request with ``Last-Event-ID: X`` that matches an interaction whose events carry ids resumes it
after event X (see ``_resume``), unless an interaction recorded for that very reconnection is
still unplayed; the ``resume:`` faults change that answer.

No sockets, clocks or files: a lock guards the counters because sync clients may call from threads.
Cassette paths handed to ``Player.create`` are read by the store (``_store.read_named``).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from . import _schedule as schedule_mod
from ._cassette import Cassette, Interaction, Request, Response
from ._errors import NoMatchError
from ._faults import Fault, Resume, Status, parse_faults
from ._journal import Delivery, Journal, Origin
from ._matching import MatchOptions, differences, explain_miss
from ._schedule import Schedule
from ._timing import Timing, parse_timing

if TYPE_CHECKING:
    from os import PathLike

    from ._configured import Config
    from ._conversation import Plan  # _conversation and _resume: imported on first use
    from ._redaction import Redaction

__all__ = ["Miss", "Play", "Player"]

_CACHED_BODY = 64 * 1024  # requests with bodies up to this size have their matches cached
_MATCH_CACHE_BYTES = 4 * 1024 * 1024  # ... in a cache of at most this many bytes of requests
_LOGGED_BODY = 4 * 1024  # in a capped log, the bytes of a request body kept
_ENDINGS_QUEUED = 1024  # plays' endings queued before they are counted


@dataclass(slots=True)
class Play:
    """One answer the player gave: which interaction, under which schedule, to which request,
    and its delivery journal. A record: read it, do not change it (it is not frozen because it
    is made per request, and a frozen dataclass costs several times as much to make)."""

    index: int  # position in the player's interaction list (0-based)
    cassette: str
    interaction: Interaction
    schedule: Schedule
    request: Request
    number: int  # how many times this interaction had been played before (0 = first)
    recorded: bool = False  # the upstream answered it, recorded in process (index: where it goes)
    resumed_after: str | None = None  # the Last-Event-ID this play resumed the stream after
    journal: Journal | None = field(default=None, compare=False, repr=False)
    # a WebSocket interaction: the conversation to follow after the handshake (None when a
    # status fault answers the handshake instead)
    conversation: Plan | None = None

    @property
    def delivered(self) -> Delivery | None:
        """What the client got so far (None for a play no adapter journals: a recorded one)."""
        return None if self.journal is None else self.journal.value()

    @property
    def completed(self) -> bool:
        """Whether the client took the whole answer (to the end its schedule gave it)."""
        return self.journal is not None and self.journal.state == "completed"

    @property
    def left_after_event(self) -> int | None:
        """The events the client had been handed when it left early (None: it did not)."""
        delivered = self.delivered
        return None if delivered is None else delivered.left_after_event

    @property
    def how(self) -> str | None:
        """How the client left early: fin, rst, timeout, cancel, shutdown (None: it did not)."""
        return None if self.journal is None else self.journal.how


@dataclass(frozen=True, slots=True)
class Miss:
    request: Request
    message: str


@dataclass(slots=True)
class _Entry:
    cassette: str
    interaction: Interaction
    plays: int = 0
    last: int = -1  # the player's play count when it was last played
    ids: dict[str, int] | None = None  # event id -> event (resumption), once looked at
    origin: Origin | None = None  # the journals' origin of its plain schedule, once played


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
    redaction: Redaction | None = None  # what journals hide (default: credential headers)
    session: str | None = None  # the control-API session it serves (named in its journals)
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
        # how plays ended ("completed", or how the client left), queued as they end (appending
        # to a deque is atomic: no lock per play) and counted when read or when many are queued
        self._endings: deque[str] = deque()
        self._delivery_counts: Counter[str] = Counter()
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
        # ... and by the identity of the request value (a server hands the same value again for
        # the same bytes on a connection): (that value, its entries, its Last-Event-ID, the value
        # as the log keeps it, its only entry when it has one and no Last-Event-ID, else -1), in
        # the same byte budget; the value is held, so its id cannot be reused while it is here
        self._seen: dict[int, tuple[Request, list[int], str | None, Request, int]] = {}

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
        redaction: Redaction | None = None,
        session: str | None = None,
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
            redaction,
            session,
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
        lock = self._lock
        lock.acquire()  # (not ``with``: half the instructions, and this runs per request)
        try:
            # a request value seen before whose one interaction repeats its plain schedule (what
            # a replay server answers again and again): nothing to choose or build
            seen = self._seen.get(id(request))
            if seen is not None and seen[0] is request and seen[4] >= 0 and not self.faults:
                entry = self._entries[seen[4]]
                origin = entry.origin
                if origin is not None and (self.repeat or not entry.plays):
                    number = entry.plays
                    entry.plays = number + 1
                    entry.last = self.play_count
                    logged = seen[3]
                    play = Play(
                        origin.index,
                        origin.cassette,
                        entry.interaction,
                        origin.schedule,
                        logged,
                        number,
                        False,
                        None,
                        Journal(origin, logged),
                    )
                    self.play_count += 1  # (``_log``, for a schedule no fault changed)
                    plays = self.plays
                    plays.append(play)
                    if self.log_limit is not None and len(plays) >= 2 * self.log_limit:
                        del plays[: -self.log_limit]
                    return play
        finally:
            lock.release()
        return self._play(request)

    def _play(self, request: Request) -> Play:
        """``play``, when the request needs choosing or its schedule building."""
        resume: Resume | None = None
        with self._lock:
            index, resume_after = self._choose(request)
            if index >= 0:
                entry = self._entries[index]
                number = entry.plays
                faults = (
                    self._faults_for(index, request, resume_after is not None)
                    if self.faults
                    else []
                )
                if resume_after is not None and faults:
                    resume = next((f for f in faults if isinstance(f, Resume)), None)
                    faults = [f for f in faults if not isinstance(f, Resume)]
                # a status fault answers instead of the recording: the interaction is still unused,
                # so the client's retry gets it (status:429,times=1 -> 429, then the recording)
                if not faults or not any(isinstance(f, Status) for f in faults):
                    entry.plays += 1
                entry.last = self.play_count
                # without faults a schedule depends only on the interaction (the seed feeds faults
                # only): it is built once (the replay server answers the same request thousands of
                # times)
                sched = None if faults or resume_after else self._plain.get(index)
                if sched is not None and entry.interaction.websocket is None:
                    play = self._new_play(index, entry, sched, request, number, plain=True)
                    self._log(play)
                    return play
        if index < 0:
            assert self.config is not None
            return self._configured(self.config, request)
        seed = f"{self.seed}:{index}:{number}"
        sched, plan = self._built(entry.interaction, faults, seed, resume_after, resume)
        if resume is not None and resume.how == "restart":
            resume_after = None
        plain = not faults and resume is None and resume_after is None
        plain = plain and entry.interaction.websocket is None
        play = self._new_play(index, entry, sched, request, number, resume_after, plan, plain)
        with self._lock:
            if plain:
                self._plain[index] = sched
            self._log(play)
        return play

    def answers(self, request: Request) -> bool:
        """Whether :meth:`play` would answer ``request`` (an interaction not played yet, a
        repeat, or the configured responses), without playing it or logging a miss."""
        with self._lock:
            if self.config is not None:
                return True
            candidates = self._candidates(request)
            entries = self._entries
            return bool(candidates) and (
                self.repeat or any(entries[n].plays == 0 for n in candidates)
            )

    def _choose(self, request: Request) -> tuple[int, str | None]:
        """The interaction that answers ``request`` and the Last-Event-ID it resumes after; -1
        when the configured responses answer it; raises NoMatchError (and logs the miss) when
        nothing does (the caller holds the lock)."""
        entries = self._entries
        seen = self._seen.get(id(request))
        if seen is not None and seen[0] is request:
            candidates, last_id = seen[1], seen[2]
        else:
            candidates = self._candidates(request)
            last_id = request.header("last-event-id") if candidates else None
            self._remember(request, candidates, last_id)
        if candidates and last_id:
            index, resume_after = self._resumption(candidates, last_id)
            if index >= 0:
                return index, resume_after
        for n in candidates:  # (a loop: a generator costs more than the search)
            if entries[n].plays == 0:
                return n, None
        if candidates and self.repeat:
            if len(candidates) == 1:
                return candidates[0], None
            return min(candidates, key=lambda n: (entries[n].plays, n)), None
        if self.config is not None:
            return -1, None
        message = explain_miss(
            self.names,
            [e.interaction.request for e in entries],
            request,
            self.match,
            exhausted=candidates,
        )
        self._miss(request, message)
        raise NoMatchError(message, method=request.method, url=request.url)

    def _built(
        self,
        interaction: Interaction,
        faults: list[Fault],
        seed: str,
        resume_after: str | None,
        resume: Resume | None,
    ) -> tuple[Schedule, Plan | None]:
        """The schedule of one play, and for a WebSocket interaction the conversation to follow
        after the handshake (None when a status fault answers instead)."""
        ws = interaction.websocket
        if ws is None:
            return self._schedule(interaction, faults, seed, resume_after, resume), None
        statuses: list[Fault] = [f for f in faults if isinstance(f, Status)]
        sched = self._schedule(interaction, statuses, seed, None, None)  # the handshake's
        if statuses:
            return sched, None
        from . import _conversation as conversation_mod

        plan = conversation_mod.build(
            ws,
            timing=self.timing,
            faults=faults,
            seed=seed,
            match=self.match.ws_match,  # type: ignore[arg-type]  # (checked: WS_MATCHES)
        )
        return replace(sched, fired=plan.fired, skipped=plan.skipped), plan

    def _schedule(
        self,
        interaction: Interaction,
        faults: list[Fault],
        seed: str,
        resume_after: str | None,
        resume: Resume | None,
    ) -> Schedule:
        """The schedule of one play: the recording (resumed after ``resume_after``, as the
        ``resume`` fault says) under the timing and faults."""
        response: Response | None = interaction.response
        if resume is not None and resume.how == "refuse":
            from . import _resume

            recorded = interaction.response.headers_at
            return _resume.refused(self.timing.retime([recorded])[recorded], (str(resume),))
        if resume_after is not None and (resume is None or resume.how != "restart"):
            from . import _resume

            gap = resume is not None and resume.how == "gap"
            response = _resume.resumed(interaction.response, resume_after, gap=gap)
        sched = schedule_mod.build(
            response or interaction.response,
            timing=self.timing,
            faults=faults,
            seed=seed,
            url=interaction.request.url,
        )
        if resume is not None:
            sched = replace(sched, fired=(*sched.fired, str(resume)))
        return sched

    def _new_play(
        self,
        index: int,
        entry: _Entry | tuple[str, Interaction],
        sched: Schedule,
        request: Request,
        number: int,
        resumed_after: str | None = None,
        conversation: Plan | None = None,
        plain: bool = False,
    ) -> Play:
        """A play and its journal; ``plain``: ``sched`` is the entry's plain schedule, whose
        journal origin the entry keeps (made here once), and which ``play`` then repeats
        without coming here (when no recorded reconnection and no fault is involved)."""
        logged = self._logged(request)
        cassette, interaction = (
            (entry.cassette, entry.interaction) if isinstance(entry, _Entry) else entry
        )
        link = interaction.resumes  # a recorded reconnection, played as recorded: it resumed
        if link and resumed_after is None and request.header("last-event-id") == link.after_id:
            resumed_after = link.after_id
        origin = entry.origin if isinstance(entry, _Entry) and plain else None
        if origin is None or origin.schedule is not sched or resumed_after is not None:
            origin = Origin(
                sched,
                index=index,
                cassette=cassette,
                redaction=self.redaction,
                resumed_after=resumed_after,
                session=self.session,
                ended=self._ended,
            )
            reusable = link is None and not sched.fired and not sched.skipped
            if plain and reusable and isinstance(entry, _Entry):
                entry.origin = origin
        return Play(
            index,
            cassette,
            interaction,
            sched,
            logged,
            number,
            False,
            resumed_after,
            Journal(origin, logged, conversation),
            conversation,
        )

    def _ended(self, journal: Journal) -> None:
        """A play's delivery ended (completed, or the client left): queued to be counted."""
        endings = self._endings
        endings.append(journal.how or "completed")
        if len(endings) >= _ENDINGS_QUEUED:
            self._count_endings()

    def _count_endings(self) -> None:
        with self._lock:
            try:  # (taken from the deque one by one until it is empty, counted in C)
                self._delivery_counts.update(iter(self._endings.popleft, None))
            except IndexError:
                pass

    @property
    def delivery_counts(self) -> Counter[str]:
        """``"completed"`` or how the client left (``fin``, ``rst``, ...) -> plays that ended so."""
        self._count_endings()
        return self._delivery_counts

    def _resumption(self, candidates: list[int], last_id: str) -> tuple[int, str | None]:
        """For a request with ``Last-Event-ID``: an unplayed recording of that very reconnection
        (played as recorded), else a recorded reconnection linked to the stream it continues
        after that id (``Interaction.resumes``; the least played), played as recorded too, else
        the candidate stream holding an event with that id, the most recently played first
        (resumed after it); (-1, None) when none (the caller holds the lock)."""
        entries = self._entries
        for n in candidates:
            e = entries[n]
            if e.plays == 0 and e.interaction.request.header("last-event-id") == last_id:
                return n, None
        recorded = [
            n
            for n in candidates
            if (link := entries[n].interaction.resumes) is not None and link.after_id == last_id
        ]
        if recorded:
            return min(recorded, key=lambda n: (entries[n].plays, n)), None
        best = -1
        for n in candidates:
            e = entries[n]
            if e.ids is None:
                from . import _resume

                stream = _resume.resumable(e.interaction.response)
                e.ids = {} if stream is None else stream.first_with_id
            if last_id in e.ids and (best < 0 or e.last > entries[best].last):
                best = n
        return (best, last_id) if best >= 0 else (-1, None)

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
            timing = parse_timing(
                Timing(profile=answer.timing), max_gap=self.timing.max_gap, seed=self.seed
            )
        sched = schedule_mod.build(
            answer.interaction.response,
            timing=timing,
            faults=faults,
            seed=f"{self.seed}:{answer.rule}:{number}",
            url=request.url,
        )
        name = f"{config.source or 'configuration'}#{answer.rule}"
        play = self._new_play(-1, (name, answer.interaction), sched, request, number)
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
        if "headers" in self.match.on or self.match.custom:  # (a matcher may read anything)
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
            self._make_room(size)
            self._matches[key] = found
            self._matches_bytes += size
        return found

    def _remember(self, request: Request, candidates: list[int], last_id: str | None) -> None:
        """Keep a request value's entries and Last-Event-ID by its identity (the caller holds
        the lock)."""
        if len(request.body) > _CACHED_BODY:
            return
        size = len(request.url) + len(request.body) + 8 * len(candidates) + 256
        size += sum(len(k) + len(v) + 64 for k, v in request.headers)
        size += min(len(request.body), _LOGGED_BODY)  # (its logged copy, when one is made)
        self._make_room(size)
        only = candidates[0] if len(candidates) == 1 and not last_id else -1
        self._seen[id(request)] = (request, candidates, last_id, self._logged(request), only)
        self._matches_bytes += size

    def _make_room(self, size: int) -> None:
        """Empty the match caches when ``size`` more bytes would not fit."""
        if self._matches_bytes + size > _MATCH_CACHE_BYTES:
            self._matches.clear()
            self._seen.clear()
            self._matches_bytes = 0

    def _logged(self, request: Request) -> Request:
        """The request as a capped log keeps it: at most _LOGGED_BODY bytes of its body (the log
        of a long-running server holds thousands of them)."""
        if self.log_limit is None or len(request.body) <= _LOGGED_BODY:
            return request
        return replace(request, body=request.body[:_LOGGED_BODY])

    def _faults_for(self, index: int, request: Request, resuming: bool = False) -> list[Fault]:
        """The faults of one play (the caller holds the lock); ``resume:`` faults only on a
        play that resumes a stream (and only those count towards their ``times``)."""
        chosen = []
        for n, f in enumerate(self.faults):
            if not f.scope.matches(index, request.path):
                continue
            if not resuming and isinstance(f, Resume):
                continue
            if f.scope.times is not None:
                if self._fault_counts.get(n, 0) >= f.scope.times:
                    continue
                self._fault_counts[n] = self._fault_counts.get(n, 0) + 1
            chosen.append(f)
        return chosen

    def faults_for(self, index: int, request: Request, *, count: bool = True) -> list[Fault]:
        """The faults a play of interaction ``index`` gets (counting ``times``, unless not
        ``count``): also what an in-process recording of it shows the client."""
        if not self.faults:
            return []
        with self._lock:
            if not count:
                counts = dict(self._fault_counts)
                try:
                    return self._faults_for(index, request)
                finally:
                    self._fault_counts = counts
            return self._faults_for(index, request)

    def set_faults(self, faults: Iterable[str | Fault] | str | None) -> None:
        """Replace the faults for the plays to come (their ``times`` counted afresh); plays in
        flight keep theirs."""
        parsed = parse_faults(faults)
        with self._lock:
            self.faults = parsed
            self._fault_counts.clear()

    def unconsumed(self) -> list[Play]:
        """Plays (among those kept) whose stream is still open: neither taken to the end nor
        left by the client (a response never read nor closed, a leaked connection)."""
        with self._lock:
            plays = list(self.plays)
        return [p for p in plays if p.journal is not None and p.journal.state == "open"]

    def unused(self) -> list[tuple[int, Interaction]]:
        with self._lock:
            return [(n, e.interaction) for n, e in enumerate(self._entries) if e.plays == 0]

    def usage(self) -> list[tuple[str, int, int, Interaction]]:
        """Every interaction as (cassette name, place in that cassette, plays, interaction), in
        the order they are searched."""
        out, place, last = [], 0, None
        with self._lock:
            for e in self._entries:
                place = place + 1 if e.cassette == last else 0
                last = e.cassette
                out.append((e.cassette, place, e.plays, e.interaction))
        return out

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
            self._endings.clear()
            self._delivery_counts.clear()
            for e in self._entries:
                e.last = -1
