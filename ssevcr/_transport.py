"""In-process replay for httpx and httpx2 clients, sync and async.

    transport = ssevcr.ReplayTransport("cassettes/x.msgpack", timing="original")
    client = httpx2.Client(transport=transport)
    openai.OpenAI(http_client=client)

One transport class serves both libraries (it answers with the module of the request it gets) and
both APIs (``handle_request`` / ``handle_async_request``). Both drive the one schedule follower
(:class:`ssevcr._follower.Follower`) through :class:`_Replay`, which says what to do next; the
sync and async streams are the same loop, one sleeping and one awaiting. Deadlines are absolute
(from the request), and faults become the client library's own exceptions:
``RemoteProtocolError`` for an aborted body, ``ReadError`` for a reset, ``ReadTimeout`` when a
wait outlasts the request's read timeout — so the code under test takes its real error path.

Each play's journal (``play.delivered``) counts what the client library read from the stream:
a chunk counts once the stream hands it over; closing the stream before its end is ``cancel``,
a read that times out ``timeout``.

The adapter owns the clock and the sleeps; the schedule and the follower are pure.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import ModuleType, TracebackType
from typing import Any

from ._cassette import Cassette, Request
from ._faults import Fault
from ._follower import Finish, Follower, Head, Wait, Write
from ._journal import Journal
from ._matching import MatchOptions
from ._player import Play, Player
from ._schedule import Abort, Close, Hang, Schedule, Send
from ._timing import Timing

__all__ = ["ReplayTransport", "client_response", "module_of", "to_request"]

ABORT_MESSAGE = (
    "peer closed connection without sending complete message body (incomplete chunked read)"
)
RESET_MESSAGE = "[Errno 104] Connection reset by peer"
MAX_SLEEP = 3600.0
"""The longest single sleep (a longer wait is several): ``time.sleep`` overflows near 1e10 s."""


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


Action = tuple[Send, ...] | float | Head | BaseException | None
"""What a stream does next (see :meth:`_Replay.next`)."""


class _Replay:
    """One response as the transport replays it: the :class:`Follower` on this adapter's clock,
    with the request's read timeout. Both streams (sync and async) loop over :meth:`next`::

        steps (a tuple)  hand their bytes to the client, in order
        seconds (float)  sleep that long, then ask again
        Head             the response head is due (the transport returns the response)
        an exception     raise it (the client library's own: ReadTimeout, RemoteProtocolError, ...)
        None             the body ended well (or the client closed the stream)

    The clock is read only when the follower says to wait (the deadline may have passed while
    the client worked): instant replay reads it once. A read gives up ``read_timeout`` seconds
    after the client began waiting for it, as httpx's read timeout does.
    """

    __slots__ = (
        "clock",
        "closed",
        "elapsed",
        "follower",
        "give_up",
        "journal",
        "mod",
        "pending",
        "read",
        "read_timeout",
        "request",
        "steps",
        "t0",
    )

    def __init__(
        self,
        schedule: Schedule,
        request: Any,
        mod: ModuleType,
        clock: Callable[[], float],
        t0: float,
        journal: Journal | None = None,
    ) -> None:
        self.follower = Follower(schedule, batch_bytes=None)
        self.steps = schedule.steps
        self.request = request
        self.mod = mod
        self.clock = clock
        self.t0 = t0  # when the request arrived, on ``clock``
        self.elapsed = 0.0  # seconds after t0 at the latest reading (or the deadline slept to)
        self.read_timeout = _read_timeout(request)
        self.give_up: float | None = None  # when the current read times out (seconds after t0)
        self.pending: BaseException | None = None  # raised after the sleep that precedes it
        self.closed = False
        self.journal = journal
        self.read = 0  # body bytes handed to the client
        if journal is not None:
            journal.begin(t0, time.time())

    def next(self) -> Action:
        if self.pending is not None:
            if self.journal is not None and isinstance(self.pending, self.mod.ReadTimeout):
                self.journal.left(self.t0 + self.elapsed, "timeout")
            return self.pending
        while not self.closed:
            action = self.follower.next(self.elapsed)
            if type(action) is Write:
                self.give_up = None  # the client has data: its next read starts afresh
                return self.steps[action.start : action.stop]
            if type(action) is Wait:
                now = self.elapsed = self.clock() - self.t0
                if action.until <= now:
                    continue  # due while the client worked
                return self._wait(action.until, now)
            if type(action) is Head:
                self.give_up = None
                if self.journal is not None:
                    self.journal.head(self.t0 + self.elapsed)
                return action
            assert isinstance(action, Finish)
            end = action.end
            if self.journal is not None and type(end) is not Hang:
                self.journal.done(self.t0 + self.elapsed)
            if type(end) is Close:
                return None
            if type(end) is Hang:
                return self._wait(math.inf, self.clock() - self.t0)
            error: BaseException = (
                self.mod.RemoteProtocolError(ABORT_MESSAGE, request=self.request)
                if type(end) is Abort
                else self.mod.ReadError(RESET_MESSAGE, request=self.request)
            )
            return error
        return None

    def _wait(self, until: float, now: float) -> float:
        """Seconds to sleep towards ``until`` (or towards the read timeout, then raise it)."""
        if self.give_up is None and self.read_timeout is not None:
            self.give_up = now + self.read_timeout
        if self.give_up is not None and until > self.give_up:
            until = self.give_up
            self.pending = self.mod.ReadTimeout("timed out", request=self.request)
        seconds = min(max(0.0, until - now), MAX_SLEEP)
        if seconds < MAX_SLEEP:
            self.elapsed = until
        else:  # a long wait is several sleeps (the clock is read again after each)
            self.pending = None
        return seconds

    def handed(self, data: bytes) -> None:
        """The client library takes ``data`` now (its journal counts it)."""
        self.read += len(data)
        journal = self.journal
        if journal is not None:
            journal.sent(self.t0 + self.elapsed, self.read)

    def close(self) -> None:
        """The client closed the stream (before its end: it left, ``cancel``)."""
        self.closed = True
        if self.journal is not None and self.journal.state == "open":
            self.journal.left(self.clock(), "cancel")


_STREAM_CLASSES: dict[tuple[str, bool], type] = {}


def _stream(mod: ModuleType, replay: _Replay, sleep: Callable[[float], Any], *, sync: bool) -> Any:
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
    return cls(replay, sleep)


def client_response(mod: Any, s: Schedule, stream: Any, play: Play | None = None) -> Any:
    """The library's own response for the head of ``s``, its body read from ``stream`` (and
    ``play`` under the ``ssevcr_play`` extension: replay)."""
    extensions: dict[str, Any] = {
        "http_version": s.http_version.encode("ascii", "replace"),
        "reason_phrase": s.reason.encode("latin-1", "replace"),
    }
    if play is not None:
        extensions["ssevcr_play"] = play
    return mod.Response(
        status_code=s.status,
        headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in s.headers],
        stream=stream,
        extensions=extensions,
    )


class _SyncStream:
    def __init__(self, replay: _Replay, sleep: Callable[[float], None]) -> None:
        self.replay = replay
        self.sleep = sleep

    def __iter__(self) -> Iterator[bytes]:
        replay, sleep = self.replay, self.sleep
        handed = replay.handed
        while True:
            action = replay.next()
            if type(action) is tuple:
                for step in action:
                    data = step.data
                    handed(data)
                    yield data
            elif type(action) is float:
                sleep(action)
            elif action is None:
                return
            elif isinstance(action, BaseException):
                raise action

    def close(self) -> None:
        self.replay.close()


class _AsyncStream:
    def __init__(self, replay: _Replay, sleep: Callable[[float], Awaitable[Any]]) -> None:
        self.replay = replay
        self.sleep = sleep

    async def __aiter__(self) -> AsyncIterator[bytes]:
        replay, sleep = self.replay, self.sleep
        handed = replay.handed
        while True:
            action = replay.next()
            if type(action) is tuple:
                for step in action:
                    data = step.data
                    handed(data)
                    yield data
            elif type(action) is float:
                await sleep(action)
            elif action is None:
                return
            elif isinstance(action, BaseException):
                raise action

    async def aclose(self) -> None:
        self.replay.close()


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
    t0 = clock()
    play = player.play(to_request(request, request.read()))
    replay = _Replay(play.schedule, request, mod, clock, t0, play.journal)
    while type(action := replay.next()) is not Head:
        if type(action) is float:
            sleep(action)
        elif isinstance(action, BaseException):
            raise action
    return client_response(mod, play.schedule, _stream(mod, replay, sleep, sync=True), play)


async def handle_async(
    player: Player,
    request: Any,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = _default_async_sleep,
) -> Any:
    mod = module_of(request)
    t0 = clock()
    play = player.play(to_request(request, await request.aread()))
    replay = _Replay(play.schedule, request, mod, clock, t0, play.journal)
    while type(action := replay.next()) is not Head:
        if type(action) is float:
            await sleep(action)
        elif isinstance(action, BaseException):
            raise action
    return client_response(mod, play.schedule, _stream(mod, replay, sleep, sync=False), play)


class ReplayTransport:
    """A transport for ``httpx``/``httpx2`` ``Client`` and ``AsyncClient``: answers from cassettes.

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
