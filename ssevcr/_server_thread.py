"""A :class:`~ssevcr._server.ReplayServer` in a background thread with its own event loop, for
synchronous code and tests. Only starts, stops and reaches into the loop; serving is
``_server``'s."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future as ThreadFuture
from types import TracebackType
from typing import Any

from ._control import Control
from ._journal import Journal
from ._player import Player
from ._server import HEAD_TIMEOUT, IDLE_TIMEOUT, MAX_BODY, Log, ReplayServer
from ._timer import new_event_loop

__all__ = ["ServerThread"]


class ServerThread:
    """A :class:`ReplayServer` in a background thread with its own (precise) event loop, for
    synchronous code and tests (the options are the server's)::

        with ServerThread(player) as server:
            requests.post(server.url + "/v1/chat/completions", ...)
    """

    def __init__(
        self,
        player: Player,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        cors: bool | Sequence[str] = False,
        allow_hosts: Sequence[str] = (),
        log: Log | None = None,
        precise: bool = True,
        head_timeout: float | None = HEAD_TIMEOUT,
        idle_timeout: float | None = IDLE_TIMEOUT,
        max_body: int = MAX_BODY,
        journal: Callable[[Journal], None] | None = None,
        control: Control | None = None,
    ):
        self.server = ReplayServer(
            player,
            host,
            port,
            cors=cors,
            allow_hosts=allow_hosts,
            log=log,
            head_timeout=head_timeout,
            idle_timeout=idle_timeout,
            max_body=max_body,
            journal=journal,
            control=control,
        )
        self.precise = precise
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started: ThreadFuture[None] = ThreadFuture()

    @property
    def player(self) -> Player:
        return self.server.player

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> ServerThread:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._main, name="ssevcr-replay-server", daemon=True)
        self._thread.start()
        self._started.result()  # re-raises a failure to bind
        return self

    def _main(self) -> None:
        loop = self._loop = new_event_loop() if self.precise else asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # report a failure to start to the caller of start()
            if not self._started.done():
                self._started.set_exception(e)
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        await self.server.start()
        self._started.set_result(None)
        try:
            await self._stop.wait()
        finally:
            await self.server.close()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the server's loop and return its result (for inspection in tests)."""
        assert self._loop is not None
        fut: ThreadFuture[Any] = ThreadFuture()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)

        self._loop.call_soon_threadsafe(run)
        return fut.result(timeout=10)

    def close(self) -> None:
        if self._thread is None or self._loop is None or self._stop is None:
            return
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
