"""In-process interception: every httpx, httpx2, aiohttp, requests and urllib3 client replays
from, or records into, a cassette; while one replays, no other connection leaves the machine.

    with ssevcr.use_cassette("cassettes/chat.msgpack", timing="instant") as cas:
        ...                                   # cas.plays, cas.fired, cas.misses, cas.recorded

    @ssevcr.use_cassette("cassettes/chat.msgpack", record="once")
    async def test_chat(): ...                # also sync functions

While a cassette is in use, each client adapter is installed (:data:`ADAPTERS`, each with
``install``/``uninstall``): here ``HTTPTransport.handle_request`` and
``AsyncHTTPTransport.handle_async_request`` of httpx and httpx2 (whichever are installed);
``ssevcr._aiohttp`` (every aiohttp connector), ``ssevcr._urllib3`` (every urllib3 pool, so also
requests and botocore), ``ssevcr._websockets`` (the ``websockets`` asyncio client: WebSocket replay
through a replay server of the cassette), and ``ssevcr._network``, which refuses connections to
non-loopback addresses from any client while the cassette replays. A request is answered by the
innermost open cassette of the context it is made in (``contextvars``): the thread or task that
entered it, the tasks started from there (asyncio copies the context into each new task), and
threads that run in a copy of it (``asyncio.to_thread``, ``anyio.to_thread.run_sync``,
``pool.submit(contextvars.copy_context().run, fn, ...)``). A plain ``threading.Thread`` or a
``ThreadPoolExecutor`` worker starts with an empty context: its requests go to the network, unless
the cassette was entered with ``process_wide=True`` (as the pytest marker does), which answers every
thread that has no cassette of its own. Replay is the Player plus
``transport.handle_sync``/``handle_async``; recording sends the request through the original
transport and timestamps each raw (still content-encoded) chunk as the client reads it.

Record modes (vcrpy's words): ``none`` replays only, a miss raises NoMatchError; ``once`` records
when the cassette file does not exist, else replays only; ``new_episodes`` replays matches and
records misses; ``all`` records everything and replaces the file (once per run: the first save of a
cassette in a process, or in a pytest session across xdist workers, replaces it, later saves append,
so tests sharing a cassette keep each other's recordings). Recorded interactions are redacted like
``ssevcr record`` and saved atomically (under the store's lock) when the context exits, also when
its body raised.

A cassette file opened again with the same bytes (the next case of a parametrized test) is not
decoded again, and its fault-free schedules are not built again (the store's open-file cache).

This module only routes requests and captures streams: matching, counting and scheduling are
the Player's, the file format is ``_format``'s, files are ``_store``'s.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import inspect
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast

from . import _import_hook
from ._cassette import Cassette, Headers, Interaction, Outcome, Request, Response
from ._errors import ConfigError, NoMatchError, SsevcrError, UnappliedFaultWarning
from ._recording import (
    _UNSET,
    DRAIN_TIMEOUT,
    Recording,
    WsCapture,
    _Capture,
    _live,
    record_async,
    record_sync,
)

if TYPE_CHECKING:
    from ._expiry import Expired
    from ._faults import Fault
    from ._hooks import Hooks
    from ._journal import Delivery
    from ._matching import Part
    from ._network import HostSet
    from ._player import Miss, Play, Player
    from ._reads import Reads
    from ._redaction import Redaction
    from ._timing import Timing

__all__ = [
    "OPTION_NAMES",
    "RECORD_MODES",
    "ActiveCassette",
    "CassetteUse",
    "RecordMode",
    "active",
    "use_cassette",
]

RecordMode = Literal["none", "once", "new_episodes", "all"]
OPTION_NAMES = (
    "record",
    "timing",
    "max_gap",
    "faults",
    "seed",
    "match_on",
    "ws_match",
    "ignore_body_keys",
    "allow_repeats",
    "redact_headers",
    "redact_query",
    "redact_body",
    "allowed_hosts",
    "ignore_hosts",
    "ignore_localhost",
    "config",
    "fail_on_unconsumed",
    "before_record_request",
    "before_record_response",
    "max_age",
    "on_expiry",
)
"""The options of a cassette in use (``use_cassette``'s keywords, the pytest marker's)."""
RECORD_MODES: tuple[RecordMode, ...] = ("none", "once", "new_episodes", "all")

F = TypeVar("F", bound=Callable[..., Any])


def check_record_mode(mode: str) -> RecordMode:
    if mode not in RECORD_MODES:
        raise ConfigError(f"unknown record mode {mode!r}; valid: {', '.join(RECORD_MODES)}")
    return mode


# ---------------------------------------------------------------------------------------------
# options


def _names(option: str, value: object) -> tuple[str, ...]:
    """A name or a list of names (a single string is one name, not its letters)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        items = tuple(value)
        if all(isinstance(item, str) for item in items):
            return items
    raise ConfigError(f"{option} must be a name or a list of names, got {value!r}")


def _parts(value: object) -> tuple[Part, ...]:
    """``match_on``: part names and custom matchers (callables), or one name."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        items = tuple(value)
        if all(isinstance(item, str) or callable(item) for item in items):
            return items
    raise ConfigError(
        f"match_on must be a list of part names or matcher(recorded, incoming) callables, "
        f"got {value!r}"
    )


def _cassette_path(path: object) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"a cassette is a file name or path, got {path!r}")
    text = os.fspath(path)
    if not isinstance(text, str) or "\0" in text:
        raise ConfigError(f"cassette path {text!r} contains a NUL byte (or is not text)")
    if not text:
        raise ConfigError("the cassette path is empty")
    return Path(text)


@dataclass(frozen=True, slots=True)
class Options:
    """Everything ``use_cassette`` was asked for, parsed once (bad specs fail at the call)."""

    path: Path
    record: RecordMode
    timing: Timing
    faults: tuple[Fault, ...]
    seed: int
    match_on: tuple[Part, ...] | None
    ignore_body_keys: tuple[str, ...]
    allow_repeats: bool
    redaction: Redaction
    allowed_hosts: HostSet = field(default_factory=lambda: _empty_hosts())
    ignore_hosts: HostSet = field(default_factory=lambda: _empty_hosts())
    config: Path | None = None  # configured responses (``ssevcr._config_file``)
    fail_on_unconsumed: bool = False
    hooks: Hooks = field(default_factory=lambda: _no_hooks())
    max_age: float | None = None  # seconds (``ssevcr._expiry``)
    on_expiry: str = "warn"
    more: tuple[Path, ...] = ()  # further cassettes searched after ``path``, never written
    ws_match: str = "type"  # WebSocket client messages (ssevcr_server): type | json | exact

    @classmethod
    def parse(
        cls,
        path: str | os.PathLike[str],
        *,
        record: str = "none",
        timing: str | Timing | None = None,
        max_gap: str | float | None = None,
        faults: Iterable[str | Fault] | str | None = None,
        seed: int = 0,
        match_on: Sequence[Part] | None = None,
        ws_match: str = "type",
        ignore_body_keys: Sequence[str] = (),
        allow_repeats: bool = False,
        redact_headers: Iterable[str] = (),
        redact_query: Iterable[str] = (),
        redact_body: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
        ignore_hosts: Iterable[str] = (),
        ignore_localhost: bool = False,
        config: str | os.PathLike[str] | None = None,
        fail_on_unconsumed: bool = False,
        before_record_request: Callable[[Any], Any] | None = None,
        before_record_response: Callable[[Any], Any] | None = None,
        max_age: str | float | None = None,
        on_expiry: str = "warn",
    ) -> Options:
        from ._expiry import check_action, parse_age
        from ._faults import Fault, parse_faults
        from ._hooks import Hooks
        from ._network import HostSet
        from ._redaction import Redaction
        from ._timing import Timing, parse_timing

        if not isinstance(timing, str | Timing | type(None)):
            raise ConfigError(f"timing must be a timing spec such as 'instant', got {timing!r}")
        if max_gap is not None and (
            isinstance(max_gap, bool)
            or not isinstance(max_gap, str | int | float)
            or (not isinstance(max_gap, str) and not math.isfinite(max_gap))
        ):
            raise ConfigError(f"max_gap must be a duration such as '2s', got {max_gap!r}")
        fault_list: list[str | Fault] | None = None
        if faults is not None:
            given = [faults] if isinstance(faults, str) else faults
            if not isinstance(given, Iterable) or isinstance(given, bytes | Mapping):
                raise ConfigError(f"faults must be a list of fault specs, got {faults!r}")
            fault_list = list(given)
            if not all(isinstance(f, str | Fault) for f in fault_list):
                raise ConfigError(f"faults must be a list of fault specs, got {faults!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be a whole number, got {seed!r}")
        if not isinstance(allow_repeats, bool):
            raise ConfigError(f"allow_repeats must be True or False, got {allow_repeats!r}")
        if not isinstance(ignore_localhost, bool):
            raise ConfigError(f"ignore_localhost must be True or False, got {ignore_localhost!r}")
        if config is not None and not isinstance(config, str | os.PathLike):
            raise ConfigError(f"config must be the path of a YAML or TOML file, got {config!r}")
        shaped = parse_timing(timing, max_gap=max_gap, seed=seed)
        if shaped.profile:  # profile:CASSETTE read now
            from . import _store

            shaped = shaped.resolved(_store.profile_times)
        if not isinstance(fail_on_unconsumed, bool):
            raise ConfigError(
                f"fail_on_unconsumed must be True or False, got {fail_on_unconsumed!r}"
            )
        options = cls(
            path=_cassette_path(path),
            record=check_record_mode(record),
            timing=shaped,
            faults=parse_faults(fault_list),
            seed=seed,
            match_on=None if match_on is None else _parts(match_on),
            ignore_body_keys=_names("ignore_body_keys", ignore_body_keys),
            allow_repeats=allow_repeats,
            redaction=Redaction().extended(
                headers=_names("redact_headers", redact_headers),
                query_keys=_names("redact_query", redact_query),
                body_paths=_names("redact_body", redact_body),
            ),
            allowed_hosts=HostSet.parse(
                _names("allowed_hosts", allowed_hosts), what="allowed_hosts"
            ),
            ignore_hosts=HostSet.parse(
                _names("ignore_hosts", ignore_hosts), what="ignore_hosts", loopback=ignore_localhost
            ),
            config=None if config is None else Path(os.fspath(config)),
            fail_on_unconsumed=fail_on_unconsumed,
            hooks=Hooks(before_record_request, before_record_response),
            max_age=None if max_age is None else parse_age(max_age),
            on_expiry=check_action(on_expiry),
            ws_match=ws_match,
        )
        options.match()  # validates match_on and ws_match now
        return options

    def searching(self, more: Iterable[str | os.PathLike[str]]) -> Options:
        """These options with further cassettes, searched after ``path`` in order (never
        written; each must exist when the cassette is opened)."""
        return replace(self, more=tuple(_cassette_path(p) for p in more))

    def match(self) -> Any:
        """The MatchOptions: what the user asked for, and never a redacted value (the recording
        holds ``REDACTED`` where the live request holds the secret)."""
        from ._matching import MatchOptions

        base = MatchOptions() if self.match_on is None else MatchOptions(on=self.match_on)
        body_keys = (*self.ignore_body_keys, *(".".join(p) for p in self.redaction.body_paths))
        return MatchOptions(
            on=base.on,
            ignore_body_keys=tuple(dict.fromkeys(body_keys)),
            ignore_query=tuple(sorted(self.redaction.query_keys)),
            ws_match=self.ws_match,
        )


def _further(path: Path, nth: int) -> Cassette:
    """A further cassette of a use (searched after the first, never written): it must exist."""
    from . import _store

    if not _store.present(path):
        raise ConfigError(
            f"cassette {str(path)!r} (cassette {nth} of this test) does not exist: only the "
            "first cassette is recorded into; record it on its own, or name it first"
        )
    return _store.open_cached(path).cassette


def _expiry(
    options: Options, cassette: Cassette, more: Sequence[tuple[Path, Cassette]]
) -> tuple[Options, Cassette, list[Expired]]:
    """``max_age``: the interactions older than it, in every cassette, handled as
    ``on_expiry`` says: ``warn`` (an ExpiredCassetteWarning), ``fail`` (CassetteError), or
    ``rerecord`` (the first cassette recorded again whole, record mode ``all``; a further one,
    never written, is warned about)."""
    import warnings

    from ._errors import CassetteError, ExpiredCassetteWarning
    from ._expiry import check

    assert options.max_age is not None
    now = time.time()
    found = [
        e
        for e in (
            check(str(p), c.interactions, options.max_age, now)
            for p, c in ((options.path, cassette), *more)
        )
        if e
    ]
    if not found:
        return options, cassette, found
    lines = [e.describe(options.max_age) for e in found]
    if options.on_expiry == "fail":
        raise CassetteError(
            str(found[0].cassette),
            "expired (max_age, on_expiry='fail'): "
            + "; ".join(lines)
            + ". Record it again: record='all' (pytest --ssevcr-record=all), or "
            "on_expiry='rerecord'",
        )
    first = found[0].cassette == str(options.path)
    if options.on_expiry == "rerecord" and first and options.record != "all":
        options = replace(options, record="all")
        cassette = Cassette()
        lines = lines[1:]
        if lines:
            lines = [line + " (only the first cassette is recorded again)" for line in lines]
    for line in lines:
        warnings.warn(f"ssevcr: {line}", ExpiredCassetteWarning, stacklevel=4)
    return options, cassette, found


def _configured(path: Path) -> Any:
    """The configured responses in ``path`` (parsed again only when the file changed)."""
    from ._config_file import load

    stat = path.stat() if path.exists() else None
    key = (str(path.resolve()), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)
    found = _CONFIGS.get(key)
    if found is None:
        found = load(path)
        if len(_CONFIGS) >= 32:
            _CONFIGS.clear()
        _CONFIGS[key] = found
    return found


_CONFIGS: dict[tuple[str, int, int], Any] = {}


def _no_hooks() -> Hooks:
    from ._hooks import Hooks

    return Hooks()


def _empty_hosts() -> HostSet:
    from ._network import HostSet

    return HostSet()


# ---------------------------------------------------------------------------------------------
# recording for the adapters that report a head, then chunks, then the end (aiohttp, urllib3)


class AdapterRecording:
    """One exchange an adapter records: its head (which makes it a :class:`Recording` of the
    cassette, in the order the requests went out), the raw chunks as they arrive, the end.
    Times are measured from ``t0``, when the request was sent; a chunk is stamped when its bytes
    were read, as ``reads`` says (:mod:`ssevcr._reads`), else when it is handed over. Before its
    head nothing is kept: an exchange that failed before any answer is not recorded."""

    __slots__ = (
        "asynchronous",
        "capture",
        "cassette",
        "faults",
        "followed",
        "index",
        "reads",
        "recording",
        "request",
        "t0",
    )

    def __init__(self, cassette: ActiveCassette, request: Request, t0: float, index: int) -> None:
        self.cassette = cassette
        self.request = request
        self.t0 = t0
        self.index = index
        self.capture: _Capture | None = None
        self.reads: Reads | None = None
        self.recording: Recording | None = None  # once the head arrived
        self.faults: list[Fault] = []
        self.followed = False  # the client follows the live replay
        self.asynchronous = False

    def apply_faults(self, *, asynchronous: bool, always: bool = False) -> bool:
        """Whether a replay of this recording gets faults (counted as that play's ``times``):
        then (or ``always``) its client is to be shown the live replay (``recording.live``,
        which each chunk and the end go to; the recorder's waits on this loop's events when
        ``asynchronous``, else on its condition)."""
        self.faults = self.cassette.player.faults_for(self.index, self.request)
        self.asynchronous = asynchronous
        self.followed = always or bool(self.faults)
        return bool(self.faults)

    def head(
        self, status: int, *, reason: str = "", headers: Headers = (), http_version: str = ""
    ) -> None:
        if self.capture is not None:
            return
        head = Response(
            status,
            reason=reason,
            http_version=http_version or "HTTP/1.1",
            headers=tuple(headers),
            headers_at=max(0.0, time.monotonic() - self.t0),
        )
        capture = self.capture = _Capture(self.t0, self.request, head)
        recording = self.recording = Recording(capture, self.index)
        if self.followed:
            recording.live = _live(capture, self.faults, self.cassette.seed_of(self.index))
            if self.asynchronous:
                import asyncio

                recording.changed = asyncio.Event()
        self.cassette._add(recording)

    def websocket(
        self, *, reason: str = "", headers: Headers = (), http_version: str = ""
    ) -> WsCapture:
        """The 101 arrived: the exchange is a WebSocket conversation, whose messages and close
        go to the capture returned (see :class:`ssevcr._recording.WsCapture`)."""
        assert self.capture is None
        head = Response(
            101,
            reason=reason,
            http_version=http_version or "HTTP/1.1",
            headers=tuple(headers),
            headers_at=max(0.0, time.monotonic() - self.t0),
        )
        capture = WsCapture(self.t0, self.request, head)
        self.capture = capture
        self.cassette._add(Recording(capture, self.index))
        return capture

    def chunk(self, data: bytes) -> None:
        if self.capture is not None and data:
            recording = self.recording
            if recording is not None and recording.live is not None:
                recording.arrived(data, self.reads)
            else:
                reads = self.reads
                self.capture.stamp(data, None if reads is None else reads.at)

    def finish(self, outcome: Outcome, error: str | None = None) -> None:
        recording = self.recording
        if recording is not None and recording.live is not None:
            recording.ended(outcome, error)
        elif self.capture is not None:
            self.capture.end_now(outcome, error)
        else:
            self.cassette._settle(self.index)

    def warn_unapplied(self, what: str, why: str) -> None:
        """The faults a replay of this recording will apply are not shown to the client while
        it is recorded (``why``: it reads what the upstream sends): say so, so that a fault test
        passing on its recording run is not taken for one passing under the fault."""
        faults = self.cassette.player.faults_for(self.index, self.request, count=False)
        if faults:
            names = ", ".join(str(f) for f in faults)
            warnings.warn(
                f"ssevcr: {what} {self.request.url} was recorded without the faults {names}: "
                f"{why}; its replays apply them",
                UnappliedFaultWarning,
                stacklevel=3,
            )


def error_text(exc: BaseException) -> str:
    """How an upstream error is written into a cassette: ``Type: message``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# the active cassette


@dataclass(eq=False)
class ActiveCassette:
    """What one ``use_cassette`` entry did: the cassette it replays, the player (plays, fired
    faults, misses) and what it recorded. Bound by ``with ... as``, and by the pytest fixture."""

    options: Options
    cassette: Cassette
    existed: bool
    player: Player
    _recordings: list[Recording] = field(default_factory=list, repr=False)
    _absorbed: list[Miss] = field(default_factory=list, repr=False)  # misses that were recorded
    passthrough: set[str] = field(default_factory=set)  # host:port sent to the network untouched
    blocked: list[str] = field(default_factory=list)
    """Connections the network guard refused while this cassette replayed (``HOST:PORT``
    messages, in order; see :mod:`ssevcr._network`), from any thread."""
    saved: bool = False
    closed: bool = False  # exited: it answers no request any more
    save_failed: bool = False  # a save failed and was reported (the pytest plugin)
    checked: bool = False  # fail_on_unconsumed was checked already (the pytest plugin)
    more: tuple[tuple[Path, Cassette], ...] = ()
    """The further cassettes searched after the first (``Options.more``), as loaded."""
    expired: tuple[Expired, ...] = ()
    """What the ``max_age`` check found in each cassette (only those with expired interactions)."""
    on_close: list[Callable[[], None]] = field(default_factory=list, repr=False)
    """Called once it is exited (an adapter's replay server stops)."""

    @classmethod
    def open(cls, options: Options) -> ActiveCassette:
        from . import _store
        from ._player import Player

        existed = _store.present(options.path)
        schedules = None
        cassette = Cassette()
        if existed:
            # a file opened again with the same bytes (the next case of a parametrized test) is
            # not decoded again, and its fault-free schedules are not built again. ``all``
            # replaces the file, but a damaged one is reported now, before anything is recorded
            # (its save would fail): deleting it is the way to record it again
            opened = _store.open_cached(options.path)
            if options.record != "all":
                cassette = opened.cassette
                schedules = opened.derived.setdefault(options.timing, {})
        more = tuple((p, _further(p, n)) for n, p in enumerate(options.more, 2))
        expired: list[Expired] = []
        if options.max_age is not None:
            options, cassette, expired = _expiry(options, cassette, more)
            if options.record == "all":
                schedules = None
        player = Player.create(
            [(str(options.path), cassette), *((str(p), c) for p, c in more)],
            timing=options.timing,
            faults=options.faults,
            seed=options.seed,
            match=options.match(),
            repeat=options.allow_repeats,
            # (shared by index with other players of the same file: only when it is alone)
            schedules=None if more else schedules,
            config=None if options.config is None else _configured(options.config),
            redaction=options.redaction,
        )
        return cls(options, cassette, existed, player, more=more, expired=tuple(expired))

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._sending: set[int] = set()  # places of recordings whose answer has not come yet

    # -- what the user reads ------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.options.path

    @property
    def record_mode(self) -> RecordMode:
        return self.options.record

    @property
    def replays_only(self) -> bool:
        """Whether every request is answered from the cassette (nothing goes upstream)."""
        return self.mode == "replay"

    @property
    def plays(self) -> list[Play]:
        """Every request answered: the replayed ones, then the recorded ones (``recorded``
        true) with the schedule the client was shown (as far as it is known)."""
        plays = list(self.player.plays)
        name, redaction = str(self.options.path), self.options.redaction
        with self._lock:
            recordings = list(self._recordings)
        return plays + [r.play(name, redaction) for r in recordings]

    @property
    def fired(self) -> list[str]:
        """Fault specs that changed a response, replayed or recorded, in the order they fired."""
        fired = dict.fromkeys(self.player.fired)
        for play in self.plays[len(self.player.plays) :]:
            fired.update(dict.fromkeys(play.schedule.fired))
        return list(fired)

    @property
    def misses(self) -> list[Miss]:
        """Requests that got no answer (in ``new_episodes`` a miss is recorded, not listed)."""
        with self._lock:
            absorbed = list(self._absorbed)
        return [m for m in self.player.misses if not any(m is a for a in absorbed)]

    def unused(self) -> list[tuple[int, Interaction]]:
        """Interactions never played: (place among every cassette's, in order; interaction)."""
        return self.player.unused()

    def unused_in(self) -> list[tuple[str, int, Interaction]]:
        """Interactions never played: (cassette, place in that cassette, interaction)."""
        return [(name, n, i) for name, n, plays, i in self.player.usage() if not plays]

    @property
    def paths(self) -> list[Path]:
        """Every cassette of this use, the one recorded into first."""
        return [self.options.path, *(p for p, _ in self.more)]

    def unconsumed(self) -> list[Play]:
        """Replayed streams still open: neither read to the end nor closed (a response the code
        never read, or read part of and leaked)."""
        return self.player.unconsumed()

    def unconsumed_problem(self) -> str:
        """What ``fail_on_unconsumed`` fails with (empty when every stream was consumed)."""
        left = self.unconsumed()
        if not left:
            return ""
        lines = [
            f"ssevcr: {len(left)} replayed stream(s) were never read to the end nor closed "
            "(fail_on_unconsumed):"
        ]
        lines += [f"  {p.delivered.describe()}" for p in left if p.delivered is not None]
        return "\n".join(lines)

    @property
    def journal(self) -> list[Delivery]:
        """The delivery journal of every replayed play (what its client got, how it ended)."""
        return [d for p in self.player.plays if (d := p.delivered) is not None]

    @property
    def recorded(self) -> list[Interaction]:
        """Interactions recorded (in the order their requests were sent); one still arriving
        as far as it has arrived, ended as ``client_disconnected``."""
        with self._lock:
            recordings = list(self._recordings)
        out = []
        for r in recordings:
            kept = self._final(r) if r.done else self._kept(r.capture.raw_snapshot(r.capture.now()))
            if kept is not None:
                out.append(kept)
        return out

    def explain(self, start: int = 0) -> str:
        """The misses from ``start`` on: each distinct explanation once (a client that retried
        says so), then what to do. Empty when there are none."""
        counts: dict[str, int] = {}
        for miss in self.misses[start:]:
            counts[miss.message] = counts.get(miss.message, 0) + 1
        if not counts:
            return ""
        lines = [
            text if n == 1 else f"{text}\n  ({n} times: the client retried)"
            for text, n in counts.items()
        ]
        return "\n".join([*lines, self.hint()])

    def hint(self) -> str:
        if not self.existed:
            return (
                f"(cassette file {str(self.path)!r} does not exist; record it with record='once' "
                f"or pytest --ssevcr-record=once)"
            )
        return (
            f"(record mode {self.record_mode!r}: add new requests with record='new_episodes' "
            f"or pytest --ssevcr-record=new_episodes, or re-record with 'all')"
        )

    # -- routing (shared by every client adapter) ---------------------------------------------

    @property
    def mode(self) -> Literal["replay", "record", "both"]:
        """What a request gets: ``replay`` (from the cassette only: a miss raises, the network
        is blocked), ``record`` (the network, recorded) or ``both`` (a match replays, a miss is
        recorded: ``new_episodes``)."""
        mode = self.options.record
        if mode == "all" or (mode == "once" and not self.existed):
            return "record"
        return "both" if mode == "new_episodes" else "replay"

    def passes(self, host: str, port: int | None = None) -> bool:
        """Whether a request to ``host:port`` goes to the network untouched (neither replayed
        nor recorded): the ``ssevcr_server`` fixture's own server, ``ignore_hosts``,
        ``ignore_localhost``."""
        if self.passthrough and not self.passthrough.isdisjoint(
            (host, f"{host}:{port}", f"[{host}]:{port}")
        ):
            return True
        return self.options.ignore_hosts.matches(host)

    def answer(self, request: Request) -> Play | None:
        """The play that answers ``request``, or None when it goes to the network to be recorded.
        In replay mode a miss raises :class:`NoMatchError` (with how to record it)."""
        mode = self.mode
        if mode == "record":
            return None
        try:
            return self.player.play(request)
        except NoMatchError as e:
            if mode == "replay":
                raise self.miss(e) from None
            self.absorb(e)
            return None

    def record(self, request: Request, t0: float) -> AdapterRecording:
        """Start recording an exchange whose request was sent at ``t0`` (``time.monotonic()``);
        it takes its place in the cassette now, and is kept once its head arrives."""
        with self._lock:
            index = len(self.cassette.interactions) + len(self._recordings) + len(self._sending)
            self._sending.add(index)
        return AdapterRecording(self, request, t0, index)

    def absorb(self, error: NoMatchError) -> None:
        """A miss that is recorded instead (``new_episodes``): no longer listed in ``misses``."""
        message = str(error)
        with self._lock:
            for miss in reversed(self.player.misses):
                if miss.message == message and not any(miss is a for a in self._absorbed):
                    self._absorbed.append(miss)
                    return

    def miss(self, error: NoMatchError) -> NoMatchError:
        """The error a miss raises in process: the player's explanation and how to record."""
        return NoMatchError(f"{error}\n{self.hint()}", method=error.method, url=error.url)

    def handle_sync(self, transport: Any, request: Any, send: Callable[[Any, Any], Any]) -> Any:
        from ._transport import handle_sync

        url = request.url
        if self.passes(url.host, url.port):
            return send(transport, request)
        mode = self.mode
        if mode != "record":
            try:
                return handle_sync(self.player, request)
            except NoMatchError as e:
                if mode == "replay":
                    raise self.miss(e) from None
                self.absorb(e)
        body = request.read()
        index, faults, seed = self._next_recording(request, body)
        try:
            return record_sync(
                transport,
                request,
                send,
                body=body,
                index=index,
                faults=faults,
                seed=seed,
                add=self._add,
            )
        finally:
            self._settle(index)

    async def handle_async(
        self, transport: Any, request: Any, send: Callable[[Any, Any], Any]
    ) -> Any:
        from ._transport import handle_async

        url = request.url
        if self.passes(url.host, url.port):
            return await send(transport, request)
        mode = self.mode
        if mode != "record":
            try:
                return await handle_async(self.player, request)
            except NoMatchError as e:
                if mode == "replay":
                    raise self.miss(e) from None
                self.absorb(e)
        body = await request.aread()
        index, faults, seed = self._next_recording(request, body)
        try:
            return await record_async(
                transport,
                request,
                send,
                body=body,
                index=index,
                faults=faults,
                seed=seed,
                add=self._add,
            )
        finally:
            self._settle(index)

    def _next_recording(self, request: Any, body: bytes) -> tuple[int, list[Fault], str]:
        """Where the next recording goes in the cassette, the faults its client is shown (those
        a replay of it gets) and its seed (a replay's first play of it)."""
        from ._transport import to_request

        with self._lock:
            index = len(self.cassette.interactions) + len(self._recordings) + len(self._sending)
            self._sending.add(index)
        faults = self.player.faults_for(index, to_request(request, body))
        return index, faults, self.seed_of(index)

    def seed_of(self, index: int) -> str:
        """The seed of a recording's faults: that of a replay's first play of it."""
        return f"{self.options.seed}:{index}:0"

    def _add(self, recording: Recording) -> None:
        with self._lock:
            self._recordings.append(recording)
            self._recordings.sort(key=lambda r: r.index)  # the order their requests went out
            self._sending.discard(recording.index)

    def _final(self, recording: Recording) -> Interaction | None:
        """A finished recording as it is saved: through the hooks (None: one dropped it), then
        redaction (after them: a hook cannot put a credential back). Built once."""
        if recording.final is _UNSET:
            recording.final = self._kept(recording.capture.raw())
        return cast("Interaction | None", recording.final)

    def _kept(self, raw: Interaction) -> Interaction | None:
        return self.options.hooks.recorded(raw, self.options.redaction)

    def _settle(self, index: int) -> None:
        """A request that never got an answer to record leaves no place taken."""
        with self._lock:
            self._sending.discard(index)

    # -- saving -------------------------------------------------------------------------------

    def save(self, *, final: bool = True) -> None:
        """Write what was recorded and not saved yet (atomically, under the cassette's lock),
        once the recorders of faulted streams have read their upstream to the end
        (``DRAIN_TIMEOUT`` at most). ``final``: a stream still open ends as
        ``client_disconnected`` and is saved too (else it waits for a later save). Nothing new:
        the file is left alone."""
        from . import _store

        with self._lock:
            recordings = [r for r in self._recordings if not r.saved]
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for r in recordings:
            if r.live is not None:
                r.drain(max(0.0, deadline - time.monotonic()))
        if final:
            for r in recordings:
                r.capture.end_now(
                    Outcome.CLIENT_DISCONNECTED, "still open when the cassette was saved"
                )
        ready = [r for r in recordings if r.done]
        new = tuple(i for r in ready if (i := self._final(r)) is not None)
        if not new:
            for r in ready:  # every one dropped by a hook
                r.saved = True
            return
        # record mode all: the first save of this cassette in the run replaces it
        _store.append(
            self.options.path, new, replace="once" if self.options.record == "all" else False
        )
        for r in ready:
            r.saved = True
        self.saved = True

    async def drain(self) -> None:
        """Wait for the recorders of faulted async streams on this event loop (before a save
        from ``async with``, where they can still run)."""
        with self._lock:
            recordings = list(self._recordings)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for r in recordings:
            await r.adrain(max(0.0, deadline - time.monotonic()))


# ---------------------------------------------------------------------------------------------
# which cassette answers: the innermost open one of the request's context, else a process-wide one


_state_lock = threading.RLock()
_context: contextvars.ContextVar[tuple[ActiveCassette, ...]] = contextvars.ContextVar(
    "ssevcr_cassettes", default=()
)
_process_wide: list[ActiveCassette] = []  # entered with process_wide=True (the pytest marker)
_open: list[ActiveCassette] = []  # entered and not yet exited, in every context, oldest first:
# the patches stay while there is one


def active() -> ActiveCassette | None:
    """The cassette that answers a request made here: the innermost open ``use_cassette`` of
    this thread's or task's context, else the innermost process-wide one, else None."""
    stack = _context.get()
    for cassette in reversed(stack):
        if not cassette.closed:
            return cassette
    everywhere = _process_wide
    return everywhere[-1] if everywhere else None


def open_cassettes() -> list[ActiveCassette]:
    """Every cassette entered and not yet exited, in any thread or task, oldest first."""
    with _state_lock:
        return list(_open)


def _sync_patch(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    @functools.wraps(original)
    def handle_request(self: Any, request: Any) -> Any:
        current = active()
        if current is None:
            return original(self, request)
        return current.handle_sync(self, request, original)

    return handle_request


def _async_patch(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    @functools.wraps(original)
    async def handle_async_request(self: Any, request: Any) -> Any:
        current = active()
        if current is None:
            return await original(self, request)
        return await current.handle_async(self, request, original)

    return handle_async_request


class _HttpxAdapter:
    """httpx and httpx2 (whichever are installed): their transports' request methods."""

    def __init__(self) -> None:
        def targets(mod: ModuleType) -> list[tuple[type, str, Callable[[Any], Any]]]:
            return [
                (mod.HTTPTransport, "handle_request", _sync_patch),
                (mod.AsyncHTTPTransport, "handle_async_request", _async_patch),
            ]

        self._patches = [_import_hook.Patches(name, targets) for name in ("httpx", "httpx2")]

    def install(self) -> None:
        for patches in self._patches:
            patches.install()

    def uninstall(self) -> None:
        for patches in self._patches:
            patches.uninstall()


class Adapter(Protocol):
    """What intercepts one client library (or, for ``_network``, every socket) while cassettes
    are open: ``install`` when the first one opens, ``uninstall`` when the last one closes.
    Each routes what it sees through :func:`active` and the :class:`ActiveCassette` methods
    (``passes``, ``answer``, ``record``)."""

    def install(self) -> None: ...

    def uninstall(self) -> None: ...


ADAPTERS: tuple[str, ...] = (
    "ssevcr._aiohttp",
    "ssevcr._urllib3",
    "ssevcr._websockets",
    "ssevcr._network",
)
"""The adapter modules besides httpx/httpx2, each a module with ``install`` and ``uninstall``
(a library that is not imported yet is patched when it is)."""

_httpx = _HttpxAdapter()
_installed_adapters: list[Adapter] = []


def _install() -> None:
    adapters: list[Adapter] = [_httpx]
    adapters += [cast(Adapter, importlib.import_module(name)) for name in ADAPTERS]
    for adapter in adapters:
        adapter.install()
        _installed_adapters.append(adapter)


def _uninstall() -> None:
    while _installed_adapters:
        _installed_adapters.pop().uninstall()


def _push(cassette: ActiveCassette, *, process_wide: bool) -> None:
    with _state_lock:
        if not _open:
            _install()
        _open.append(cassette)
        if process_wide:
            _process_wide.append(cassette)
    if not process_wide:
        _context.set((*_context.get(), cassette))


def _pop(cassette: ActiveCassette) -> None:
    """Close ``cassette``: it answers nothing more, in any context (a task or a copied context
    still holding it skips it); the patches go when the last open cassette is closed."""
    cassette.closed = True
    while cassette.on_close:
        cassette.on_close.pop()()
    stack = _context.get()
    if cassette in stack:
        _context.set(tuple(c for c in stack if c is not cassette))
    with _state_lock:
        if cassette in _process_wide:
            _process_wide.remove(cassette)
        _open.remove(cassette)
        if not _open:
            _uninstall()


# ---------------------------------------------------------------------------------------------
# the front end


class CassetteUse:
    """Returned by :func:`use_cassette`: a context manager (``with``/``async with``) and a
    decorator for sync and async functions. Each entry (each call of a decorated function) is
    a fresh :class:`ActiveCassette`; entries from several threads or tasks at once are apart,
    and each exit closes the entry made in its own context."""

    def __init__(self, options: Options, *, process_wide: bool = False):
        self.options = options
        self.process_wide = process_wide
        self._entered: list[ActiveCassette] = []  # open entries, oldest first
        self._lock = threading.Lock()

    def __enter__(self) -> ActiveCassette:
        cassette = ActiveCassette.open(self.options)
        with self._lock:
            self._entered.append(cassette)
        _push(cassette, process_wide=self.process_wide)
        return cassette

    def _exiting(self) -> ActiveCassette:
        """The entry this exit closes: the innermost one of this context, else (an exit in
        another context than its entry, or a process-wide entry) the latest one still open."""
        with self._lock:
            mine = [c for c in _context.get() if c in self._entered]
            cassette = mine[-1] if mine else self._entered[-1]
            self._entered.remove(cassette)
        return cassette

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cassette = self._exiting()
        try:
            cassette.save()
        finally:
            _pop(cassette)
        if exc_type is None and cassette.options.fail_on_unconsumed and not cassette.checked:
            problem = cassette.unconsumed_problem()
            if problem:
                raise SsevcrError(problem)

    async def __aenter__(self) -> ActiveCassette:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            mine = [c for c in _context.get() if c in self._entered]
        if mine:
            await mine[-1].drain()
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        options, process_wide = self.options, self.process_wide
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with CassetteUse(options, process_wide=process_wide):
                    return await func(*args, **kwargs)

            return cast(F, run_async)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with CassetteUse(options, process_wide=process_wide):
                return func(*args, **kwargs)

        return cast(F, run)


def use_cassette(
    path: str | os.PathLike[str],
    *,
    record: str = "none",
    timing: str | Timing | None = None,
    max_gap: str | float | None = None,
    faults: Iterable[str | Fault] | str | None = None,
    seed: int = 0,
    match_on: Sequence[Part] | None = None,
    ws_match: str = "type",
    ignore_body_keys: Sequence[str] = (),
    allow_repeats: bool = False,
    redact_headers: Iterable[str] = (),
    redact_query: Iterable[str] = (),
    redact_body: Iterable[str] = (),
    allowed_hosts: Iterable[str] = (),
    ignore_hosts: Iterable[str] = (),
    ignore_localhost: bool = False,
    config: str | os.PathLike[str] | None = None,
    fail_on_unconsumed: bool = False,
    before_record_request: Callable[[Any], Any] | None = None,
    before_record_response: Callable[[Any], Any] | None = None,
    max_age: str | float | None = None,
    on_expiry: str = "warn",
    process_wide: bool = False,
) -> CassetteUse:
    """Replay (or record) ``path`` for every httpx/httpx2/aiohttp/urllib3 client while active.

    ``record``: none | once | new_episodes | all. ``timing``/``max_gap``/``faults``/``seed``:
    the replay grammar. ``match_on``: parts to match (default method, path, query, body), and
    custom matchers ``matcher(recorded, incoming) -> bool`` (``ssevcr._matching``);
    ``ignore_body_keys``: dotted JSON keys left out. ``ws_match``: how a WebSocket
    client's messages are compared on ``ssevcr_server`` (``type``, ``json``, ``exact``).
    ``allow_repeats``: a used-up interaction
    plays again instead of missing. ``redact_*``: more headers, query keys and JSON body paths to
    hide when recording, besides the credential defaults. ``allowed_hosts``: hosts the network
    guard lets any client connect to while replaying (names, addresses, ``*.example.com``,
    ``10.0.0.0/8``; loopback always is); ``ignore_hosts`` / ``ignore_localhost`` (vcrpy's):
    requests to these hosts go to the network, neither replayed nor recorded. ``config``: a
    file of configured responses (YAML/TOML) answering, while replaying, what no interaction
    matches. ``fail_on_unconsumed``: the exit raises when a replayed stream was neither read to
    the end nor closed (``cas.unconsumed()``). ``before_record_request`` /
    ``before_record_response``: vcrpy's hooks, edit or drop what is recorded (before redaction;
    ``ssevcr._hooks``). ``max_age`` (seconds or ``30d``) / ``on_expiry`` (``warn``, ``fail``,
    ``rerecord``): interactions recorded longer ago than that (``ssevcr._expiry``).
    ``process_wide``: also answer threads that did not inherit the context it was entered in
    (plain threads, thread pools).
    """
    return CassetteUse(
        Options.parse(
            path,
            record=record,
            timing=timing,
            max_gap=max_gap,
            faults=faults,
            seed=seed,
            match_on=match_on,
            ws_match=ws_match,
            ignore_body_keys=ignore_body_keys,
            allow_repeats=allow_repeats,
            redact_headers=redact_headers,
            redact_query=redact_query,
            redact_body=redact_body,
            allowed_hosts=allowed_hosts,
            ignore_hosts=ignore_hosts,
            ignore_localhost=ignore_localhost,
            config=config,
            fail_on_unconsumed=fail_on_unconsumed,
            before_record_request=before_record_request,
            before_record_response=before_record_response,
            max_age=max_age,
            on_expiry=on_expiry,
        ),
        process_wide=process_wide,
    )
