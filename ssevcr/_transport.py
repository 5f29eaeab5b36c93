"""In-process replay for httpx and httpx2 clients, sync and async.

    client = httpx2.Client(transport=ssevcr.ReplayTransport("cassettes/x.msgpack", timing="original"))
    openai.OpenAI(http_client=client)

One transport class serves both libraries (it answers with the module of the request it gets) and
both APIs (``handle_request`` / ``handle_async_request``). It follows the schedule with real
sleeps on absolute deadlines and turns faults into the client library's own exceptions:
``RemoteProtocolError`` for an aborted body, ``ReadError`` for a reset, ``ReadTimeout`` when a
wait outlasts the request's read timeout — so the code under test takes its real error path.

The adapter owns the clock and the sleeps; the schedule it follows is pure.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from types import ModuleType, TracebackType
from typing import Any

from ._cassette import Cassette, Request
from ._faults import Fault
from ._matching import MatchOptions
from ._player import Play, Player
from ._schedule import Abort, Hang, Reset, Schedule
from ._timing import Timing

__all__ = ["ReplayTransport", "module_of", "to_request"]

ABORT_MESSAGE = (
    "peer closed connection without sending complete message body (incomplete chunked read)"
)
RESET_MESSAGE = "[Errno 104] Connection reset by peer"


def module_of(request: Any) -> ModuleType:
    """``httpx`` or ``httpx2``: the library a request object belongs to."""
    return sys.modules[type(request).__module__.partition(".")[0]]


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw)


def to_request(request: Any, body: bytes) -> Request:
    return Request(
        method=request.method,
        url=str(request.url),
        headers=_headers(request.headers.raw),
        body=body,
    )


def _read_timeout(request: Any) -> float | None:
    timeout = request.extensions.get("timeout") or {}
    value = timeout.get("read")
    return None if value is None else float(value)


_STREAM_CLASSES: dict[tuple[str, bool], type] = {}


def _stream(mod: ModuleType, *, sync: bool, **kwargs: Any) -> Any:
    """A replay stream that is also an instance of the library's own ``SyncByteStream`` /
    ``AsyncByteStream`` (httpx and httpx2 check it)."""
    key = (mod.__name__, sync)
    cls = _STREAM_CLASSES.get(key)
    if cls is None:
        ours, base = (
            (_SyncStream, mod.SyncByteStream) if sync else (_AsyncStream, mod.AsyncByteStream)
        )
        cls = _STREAM_CLASSES[key] = type(
            f"Replay{base.__name__}", (ours, base), {"__module__": __name__}
        )
    return cls(**kwargs)


def _response(mod: ModuleType, play: Play, stream: Any) -> Any:
    s = play.schedule
    return mod.Response(
        status_code=s.status,
        headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in s.headers],
        stream=stream,
        extensions={
            "http_version": s.http_version.encode("ascii", "replace"),
            "reason_phrase": s.reason.encode("latin-1", "replace"),
            "ssevcr_play": play,
        },
    )


class _Clock:
    """Deadlines relative to the moment the request arrived; waits honour the read timeout."""

    def __init__(self, request: Any, mod: ModuleType, clock: Callable[[], float]):
        self.request = request
        self.mod = mod
        self.clock = clock
        self.t0 = self.now = clock()  # ``now``: the latest reading (the clock never goes back)
        self.read_timeout = _read_timeout(request)

    def due(self, at: float) -> bool:
        """Whether the step at ``at`` was due at the latest reading: then it is due now, with no
        wait and no timeout, and needs no new reading (instant replay reads the clock once)."""
        return self.t0 + at <= self.now

    def delay(self, at: float) -> tuple[float, bool]:
        """Seconds to wait for the step at ``at``, and whether the client gives up first."""
        now = self.now = self.clock()
        delay = max(0.0, self.t0 + at - now)
        if self.read_timeout is not None and delay > self.read_timeout:
            return self.read_timeout, True
        return delay, False

    def hang(self) -> tuple[float | None, bool]:
        if self.read_timeout is None:
            return None, False
        return self.read_timeout, True

    def timeout_error(self) -> Exception:
        return self.mod.ReadTimeout("timed out", request=self.request)  # type: ignore[no-any-return]

    def end_error(self, end: Any) -> Exception | None:
        if isinstance(end, Abort):
            return self.mod.RemoteProtocolError(ABORT_MESSAGE, request=self.request)  # type: ignore[no-any-return]
        if isinstance(end, Reset):
            return self.mod.ReadError(RESET_MESSAGE, request=self.request)  # type: ignore[no-any-return]
        return None


class _SyncStream:
    def __init__(self, schedule: Schedule, clock: _Clock, sleep: Callable[[float], None]):
        self.schedule = schedule
        self.clock = clock
        self.sleep = sleep
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        clock = self.clock
        t0 = clock.t0
        for step in self.schedule.steps:
            if self.closed:
                return
            if t0 + step.at > clock.now:  # not due at the latest reading (clock.due, inlined)
                delay, gives_up = clock.delay(step.at)
                if delay > 0:
                    self.sleep(delay)
                if gives_up:
                    raise clock.timeout_error()
            yield step.data
        end = self.schedule.end
        if isinstance(end, Hang):
            wait, gives_up = clock.hang()
            if wait is None:
                while not self.closed:
                    self.sleep(3600)
                return
            self.sleep(wait)
            raise clock.timeout_error()
        if not clock.due(end.at):
            delay, gives_up = clock.delay(end.at)
            if delay > 0:
                self.sleep(delay)
            if gives_up:
                raise clock.timeout_error()
        error = clock.end_error(end)
        if error is not None:
            raise error

    def close(self) -> None:
        self.closed = True


class _AsyncStream:
    def __init__(self, schedule: Schedule, clock: _Clock, sleep: Callable[[float], Any]):
        self.schedule = schedule
        self.clock = clock
        self.sleep = sleep
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        clock = self.clock
        t0 = clock.t0
        for step in self.schedule.steps:
            if self.closed:
                return
            if t0 + step.at > clock.now:  # not due at the latest reading (clock.due, inlined)
                delay, gives_up = clock.delay(step.at)
                if delay > 0:
                    await self.sleep(delay)
                if gives_up:
                    raise clock.timeout_error()
            yield step.data
        end = self.schedule.end
        if isinstance(end, Hang):
            wait, gives_up = clock.hang()
            if wait is None:
                while not self.closed:
                    await self.sleep(3600)
                return
            await self.sleep(wait)
            raise clock.timeout_error()
        if not clock.due(end.at):
            delay, gives_up = clock.delay(end.at)
            if delay > 0:
                await self.sleep(delay)
            if gives_up:
                raise clock.timeout_error()
        error = clock.end_error(end)
        if error is not None:
            raise error

    async def aclose(self) -> None:
        self.closed = True


async def _default_async_sleep(seconds: float) -> None:
    from ._timer import sleep

    await sleep(seconds)


def handle_sync(
    player: Player,
    request: Any,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Answer an httpx/httpx2 request from ``player`` (shared with the interception patches)."""
    mod = module_of(request)
    t = _Clock(request, mod, clock)
    play = player.play(to_request(request, request.read()))
    delay, gives_up = t.delay(play.schedule.headers_at)
    if delay > 0:
        sleep(delay)
    if gives_up:
        raise t.timeout_error()
    return _response(
        mod, play, _stream(mod, sync=True, schedule=play.schedule, clock=t, sleep=sleep)
    )


async def handle_async(
    player: Player,
    request: Any,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Any] = _default_async_sleep,
) -> Any:
    mod = module_of(request)
    t = _Clock(request, mod, clock)
    play = player.play(to_request(request, await request.aread()))
    delay, gives_up = t.delay(play.schedule.headers_at)
    if delay > 0:
        await sleep(delay)
    if gives_up:
        raise t.timeout_error()
    return _response(
        mod, play, _stream(mod, sync=False, schedule=play.schedule, clock=t, sleep=sleep)
    )


class ReplayTransport:
    """A transport for ``httpx``/``httpx2`` ``Client`` and ``AsyncClient`` that answers from cassettes.

    ``cassette``: a path, a :class:`Cassette`, several paths, or a ready :class:`Player`.
    In tests each interaction plays once (``repeat=False``); a miss raises NoMatchError.
    """

    def __init__(
        self,
        cassette: str | os.PathLike[str] | Cassette | Player | list[str | os.PathLike[str]],
        *,
        timing: str | Timing | None = None,
        max_gap: str | float | None = None,
        faults: Iterable[str | Fault] | str | None = None,
        seed: int = 0,
        match: MatchOptions | None = None,
        repeat: bool = False,
    ) -> None:
        if isinstance(cassette, Player):
            self.player = cassette
        else:
            sources: Any = cassette if isinstance(cassette, Cassette | list) else [cassette]
            self.player = Player.create(
                sources,
                timing=timing,
                max_gap=max_gap,
                faults=faults,
                seed=seed,
                match=match,
                repeat=repeat,
            )

    def handle_request(self, request: Any) -> Any:
        return handle_sync(self.player, request)

    async def handle_async_request(self, request: Any) -> Any:
        return await handle_async(self.player, request)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def __enter__(self) -> ReplayTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        pass

    async def __aenter__(self) -> ReplayTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        pass
