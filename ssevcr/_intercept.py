"""In-process interception: every httpx and httpx2 client replays from, or records into, a cassette.

    with ssevcr.use_cassette("cassettes/chat.msgpack", timing="instant") as cas:
        ...                                   # cas.plays, cas.fired, cas.misses, cas.recorded

    @ssevcr.use_cassette("cassettes/chat.msgpack", record="once")
    async def test_chat(): ...                # also sync functions

While a cassette is in use, ``HTTPTransport.handle_request`` and
``AsyncHTTPTransport.handle_async_request`` of httpx and httpx2 (whichever are installed) are
patched. A request is answered by the innermost open cassette of the context it is made in
(``contextvars``): the thread or task that entered it, the tasks started from there (asyncio copies
the context into each new task), and threads that run in a copy of it (``asyncio.to_thread``,
``anyio.to_thread.run_sync``, ``pool.submit(contextvars.copy_context().run, fn, ...)``). A plain
``threading.Thread`` or a ``ThreadPoolExecutor`` worker starts with an empty context: its requests
go to the network, unless the cassette was entered with ``process_wide=True`` (as the pytest
marker does), which answers every thread that has no cassette of its own. Replay is the
Player plus ``transport.handle_sync``/``handle_async``; recording sends the request through the
original transport and timestamps each raw (still content-encoded) chunk as the client reads it.

Record modes (vcrpy's words): ``none`` replays only, a miss raises NoMatchError; ``once`` records
when the cassette file does not exist, else replays only; ``new_episodes`` replays matches and
records misses; ``all`` records everything and replaces the file (once per run: the first save
of a cassette in a process, or in a pytest session across xdist workers, replaces it, later
saves append, so tests sharing a cassette keep each other's recordings). Recorded interactions are redacted
like ``ssevcr record`` and saved atomically (under the store's lock) when the context exits,
also when its body raised.

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
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from ._cassette import Cassette, End, Interaction, Outcome, Request, Response
from ._errors import ConfigError, NoMatchError

if TYPE_CHECKING:
    from ._faults import Fault
    from ._player import Miss, Play, Player
    from ._redaction import Redaction
    from ._timing import Timing

__all__ = ["RECORD_MODES", "ActiveCassette", "CassetteUse", "RecordMode", "active", "use_cassette"]

RecordMode = Literal["none", "once", "new_episodes", "all"]
RECORD_MODES: tuple[RecordMode, ...] = ("none", "once", "new_episodes", "all")

F = TypeVar("F", bound=Callable[..., Any])


def check_record_mode(mode: str) -> RecordMode:
    if mode not in RECORD_MODES:
        raise ConfigError(f"unknown record mode {mode!r}; valid: {', '.join(RECORD_MODES)}")
    return mode


# ---------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True, slots=True)
class Options:
    """Everything ``use_cassette`` was asked for, parsed once (bad specs fail at the call)."""

    path: Path
    record: RecordMode
    timing: Timing
    faults: tuple[Fault, ...]
    seed: int
    match_on: tuple[str, ...] | None
    ignore_body_keys: tuple[str, ...]
    allow_repeats: bool
    redaction: Redaction

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
        match_on: Sequence[str] | None = None,
        ignore_body_keys: Sequence[str] = (),
        allow_repeats: bool = False,
        redact_headers: Iterable[str] = (),
        redact_query: Iterable[str] = (),
        redact_body: Iterable[str] = (),
    ) -> Options:
        from ._faults import parse_faults
        from ._redaction import Redaction
        from ._timing import parse_timing

        if isinstance(match_on, str):
            match_on = (match_on,)
        options = cls(
            path=Path(path),
            record=check_record_mode(record),
            timing=parse_timing(timing, max_gap=max_gap),
            faults=parse_faults(faults),
            seed=int(seed),
            match_on=None if match_on is None else tuple(match_on),
            ignore_body_keys=tuple(ignore_body_keys),
            allow_repeats=bool(allow_repeats),
            redaction=Redaction().extended(
                headers=redact_headers, query_keys=redact_query, body_paths=redact_body
            ),
        )
        options.match()  # validates match_on now
        return options

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
        )


# ---------------------------------------------------------------------------------------------
# recording: one capture per exchange, filled as the client reads the raw stream


def _pairs(raw: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw)


class _Capture:
    """One exchange being recorded. Its end is set once: the first of complete, upstream error
    or client gone wins."""

    def __init__(self, t0: float, request: Request, response: Any, headers_at: float):
        self.t0 = t0
        self.request = request
        self.response = response
        self.headers_at = headers_at
        self.chunks: list[tuple[float, bytes]] = []
        self.end: End | None = None
        self._interaction: Interaction | None = None
        self._lock = threading.Lock()

    def chunk(self, data: bytes) -> None:
        if data:
            self.chunks.append((time.monotonic() - self.t0, bytes(data)))

    def finish(self, outcome: Outcome, error: str | None = None) -> None:
        with self._lock:
            if self.end is None:
                at = time.monotonic() - self.t0
                if self.chunks:
                    at = max(at, self.chunks[-1][0])
                self.end = End(at, outcome, error)

    def interaction(self, redaction: Redaction) -> Interaction:
        """The redacted interaction (built once, after the end is known)."""
        assert self.end is not None
        if self._interaction is None:
            self._interaction = self._build(redaction)
        return self._interaction

    def _build(self, redaction: Redaction) -> Interaction:
        ext = self.response.extensions
        response = Response.from_chunks(
            self.response.status_code,
            self.chunks,
            reason=bytes(ext.get("reason_phrase", b"")).decode("latin-1"),
            http_version=bytes(ext.get("http_version", b"HTTP/1.1")).decode("ascii", "replace"),
            headers=_pairs(self.response.headers.raw),
            headers_at=self.headers_at,
            end=self.end,
        )
        return redaction.interaction(Interaction(request=self.request, response=response))


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _SyncRecording:
    """The client's response stream, passed through unchanged, each chunk timestamped."""

    def __init__(self, inner: Any, capture: _Capture):
        self.inner = inner
        self.capture = capture

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.inner:
                self.capture.chunk(chunk)
                yield chunk
        except Exception as e:
            self.capture.finish(Outcome.UPSTREAM_ERROR, _error_text(e))
            raise
        except BaseException:  # the consumer stopped reading (GeneratorExit, KeyboardInterrupt)
            self.capture.finish(Outcome.CLIENT_DISCONNECTED)
            raise
        self.capture.finish(Outcome.COMPLETE)

    def close(self) -> None:
        self.capture.finish(Outcome.CLIENT_DISCONNECTED)
        self.inner.close()


class _AsyncRecording:
    def __init__(self, inner: Any, capture: _Capture):
        self.inner = inner
        self.capture = capture

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                self.capture.chunk(chunk)
                yield chunk
        except Exception as e:
            self.capture.finish(Outcome.UPSTREAM_ERROR, _error_text(e))
            raise
        except BaseException:  # cancelled, or the consumer stopped reading
            self.capture.finish(Outcome.CLIENT_DISCONNECTED)
            raise
        self.capture.finish(Outcome.COMPLETE)

    async def aclose(self) -> None:
        self.capture.finish(Outcome.CLIENT_DISCONNECTED)
        await self.inner.aclose()


_STREAM_TYPES: dict[tuple[str, bool], type] = {}


def _recording_stream(response: Any, capture: _Capture, *, sync: bool) -> Any:
    """A recording stream that is also the library's own ``SyncByteStream``/``AsyncByteStream``."""
    from ._transport import module_of

    mod = module_of(response)
    key = (mod.__name__, sync)
    cls = _STREAM_TYPES.get(key)
    if cls is None:
        ours, base = (
            (_SyncRecording, mod.SyncByteStream) if sync else (_AsyncRecording, mod.AsyncByteStream)
        )
        cls = _STREAM_TYPES[key] = type(
            f"Recording{base.__name__}", (ours, base), {"__module__": __name__}
        )
    return cls(response.stream, capture)


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
    _captures: list[_Capture] = field(default_factory=list, repr=False)
    _absorbed: list[Miss] = field(default_factory=list, repr=False)  # misses that were recorded
    passthrough: set[str] = field(default_factory=set)  # host:port sent to the network untouched
    saved: bool = False
    closed: bool = False  # exited: it answers no request any more

    @classmethod
    def open(cls, options: Options) -> ActiveCassette:
        from . import _store
        from ._player import Player

        existed = _store.present(options.path)
        schedules = None
        if existed and options.record != "all":
            # a file opened again with the same bytes (the next case of a parametrized test) is
            # not decoded again, and its fault-free schedules are not built again
            opened = _store.open_cached(options.path)
            cassette = opened.cassette
            schedules = opened.derived.setdefault(options.timing, {})
        else:
            cassette = Cassette()
        player = Player.create(
            [(str(options.path), cassette)],
            timing=options.timing,
            faults=options.faults,
            seed=options.seed,
            match=options.match(),
            repeat=options.allow_repeats,
            schedules=schedules,
        )
        return cls(options, cassette, existed, player)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    # -- what the user reads ------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.options.path

    @property
    def record_mode(self) -> RecordMode:
        return self.options.record

    @property
    def plays(self) -> list[Play]:
        return list(self.player.plays)

    @property
    def fired(self) -> list[str]:
        return self.player.fired

    @property
    def misses(self) -> list[Miss]:
        """Requests that got no answer (in ``new_episodes`` a miss is recorded, not listed)."""
        with self._lock:
            absorbed = list(self._absorbed)
        return [m for m in self.player.misses if not any(m is a for a in absorbed)]

    def unused(self) -> list[tuple[int, Interaction]]:
        return self.player.unused()

    @property
    def recorded(self) -> list[Interaction]:
        """Interactions recorded so far (finished ones, in the order their requests were sent)."""
        with self._lock:
            captures = list(self._captures)
        return [c.interaction(self.options.redaction) for c in captures if c.end is not None]

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

    # -- routing ------------------------------------------------------------------------------

    @property
    def _mode(self) -> Literal["replay", "record", "both"]:
        mode = self.options.record
        if mode == "all" or (mode == "once" and not self.existed):
            return "record"
        return "both" if mode == "new_episodes" else "replay"

    def _absorb(self, error: NoMatchError) -> None:
        message = str(error)
        with self._lock:
            for miss in reversed(self.player.misses):
                if miss.message == message and not any(miss is a for a in self._absorbed):
                    self._absorbed.append(miss)
                    return

    def _miss(self, error: NoMatchError) -> NoMatchError:
        return NoMatchError(f"{error}\n{self.hint()}", method=error.method, url=error.url)

    def handle_sync(self, transport: Any, request: Any, send: Callable[[Any, Any], Any]) -> Any:
        from ._transport import handle_sync

        if request.url.netloc.decode("ascii", "replace") in self.passthrough:
            return send(transport, request)
        mode = self._mode
        if mode != "record":
            try:
                return handle_sync(self.player, request)
            except NoMatchError as e:
                if mode == "replay":
                    raise self._miss(e) from None
                self._absorb(e)
        body = request.read()
        t0 = time.monotonic()
        response = send(transport, request)
        response.stream = _recording_stream(
            response, self._capture(t0, request, body, response), sync=True
        )
        return response

    async def handle_async(
        self, transport: Any, request: Any, send: Callable[[Any, Any], Any]
    ) -> Any:
        from ._transport import handle_async

        if request.url.netloc.decode("ascii", "replace") in self.passthrough:
            return await send(transport, request)
        mode = self._mode
        if mode != "record":
            try:
                return await handle_async(self.player, request)
            except NoMatchError as e:
                if mode == "replay":
                    raise self._miss(e) from None
                self._absorb(e)
        body = await request.aread()
        t0 = time.monotonic()
        response = await send(transport, request)
        response.stream = _recording_stream(
            response, self._capture(t0, request, body, response), sync=False
        )
        return response

    def _capture(self, t0: float, request: Any, body: bytes, response: Any) -> _Capture:
        from ._transport import to_request

        capture = _Capture(t0, to_request(request, body), response, time.monotonic() - t0)
        with self._lock:
            self._captures.append(capture)
        return capture

    # -- saving -------------------------------------------------------------------------------

    def save(self) -> None:
        """Write what was recorded (atomically, under the cassette's lock). A stream still open
        ends as ``client_disconnected``. Nothing recorded: the file is left alone."""
        from . import _store

        with self._lock:
            captures = list(self._captures)
        for c in captures:
            c.finish(Outcome.CLIENT_DISCONNECTED, "still open when the cassette was saved")
        new = tuple(c.interaction(self.options.redaction) for c in captures)
        if not new:
            return
        # record mode all: the first save of this cassette in the run replaces it
        _store.append(
            self.options.path, new, replace="once" if self.options.record == "all" else False
        )
        self.saved = True


# ---------------------------------------------------------------------------------------------
# which cassette answers: the innermost open one of the request's context, else a process-wide one


_state_lock = threading.RLock()
_context: contextvars.ContextVar[tuple[ActiveCassette, ...]] = contextvars.ContextVar(
    "ssevcr_cassettes", default=()
)
_process_wide: list[ActiveCassette] = []  # entered with process_wide=True (the pytest marker)
_open = 0  # cassettes entered and not yet exited, in every context: the patches stay while > 0
_installed: list[tuple[type, str, Any, Any]] = []  # (class, attribute, original, ours)


def active() -> ActiveCassette | None:
    """The cassette that answers a request made here: the innermost open ``use_cassette`` of
    this thread's or task's context, else the innermost process-wide one, else None."""
    stack = _context.get()
    for cassette in reversed(stack):
        if not cassette.closed:
            return cassette
    everywhere = _process_wide
    return everywhere[-1] if everywhere else None


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


def _install() -> None:
    for name in ("httpx", "httpx2"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        for cls, attr, patch in (
            (mod.HTTPTransport, "handle_request", _sync_patch),
            (mod.AsyncHTTPTransport, "handle_async_request", _async_patch),
        ):
            original = cls.__dict__[attr]
            ours = patch(original)
            setattr(cls, attr, ours)
            _installed.append((cls, attr, original, ours))


def _uninstall() -> None:
    while _installed:
        cls, attr, original, ours = _installed.pop()
        if cls.__dict__.get(attr) is ours:  # leave alone what another tool patched over us
            setattr(cls, attr, original)


def _push(cassette: ActiveCassette, *, process_wide: bool) -> None:
    global _open
    with _state_lock:
        if not _open:
            _install()
        _open += 1
        if process_wide:
            _process_wide.append(cassette)
    if not process_wide:
        _context.set((*_context.get(), cassette))


def _pop(cassette: ActiveCassette) -> None:
    """Close ``cassette``: it answers nothing more, in any context (a task or a copied context
    still holding it skips it); the patches go when the last open cassette is closed."""
    global _open
    cassette.closed = True
    stack = _context.get()
    if cassette in stack:
        _context.set(tuple(c for c in stack if c is not cassette))
    with _state_lock:
        if cassette in _process_wide:
            _process_wide.remove(cassette)
        _open -= 1
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

    async def __aenter__(self) -> ActiveCassette:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
    match_on: Sequence[str] | None = None,
    ignore_body_keys: Sequence[str] = (),
    allow_repeats: bool = False,
    redact_headers: Iterable[str] = (),
    redact_query: Iterable[str] = (),
    redact_body: Iterable[str] = (),
    process_wide: bool = False,
) -> CassetteUse:
    """Replay (or record) ``path`` for every httpx/httpx2 client while active.

    ``record``: none | once | new_episodes | all. ``timing``/``max_gap``/``faults``/``seed``:
    the replay grammar. ``match_on``: parts to match (default method, path, query, body);
    ``ignore_body_keys``: dotted JSON keys left out. ``allow_repeats``: a used-up interaction
    plays again instead of missing. ``redact_*``: more headers, query keys and JSON body paths to
    hide when recording, besides the credential defaults. ``process_wide``: also answer threads
    that did not inherit the context it was entered in (plain threads, thread pools).
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
            ignore_body_keys=ignore_body_keys,
            allow_repeats=allow_repeats,
            redact_headers=redact_headers,
            redact_query=redact_query,
            redact_body=redact_body,
        ),
        process_wide=process_wide,
    )
