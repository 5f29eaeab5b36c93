"""Precise sleeps for asyncio.

asyncio wakes timers late by up to a millisecond: epoll takes its timeout in whole milliseconds,
rounded up. Replaying a stream whose gaps are 10-60 ms that is a visible error, so the adapters
sleep the last stretch on one daemon thread instead: it waits for the earliest deadline with a
nanosecond-resolution timeout and wakes the waiting loops with ``call_soon_threadsafe``. The event
loop itself is never blocked. Long waits spend all but the last few milliseconds on the loop's own
(cheap) timer.

Outside asyncio (e.g. trio through anyio) it falls back to ``anyio.sleep``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections import defaultdict

__all__ = ["sleep", "sleep_until"]

_COARSE = 0.005  # waits longer than this sleep on the loop first, the last part on the thread


class _TimerThread:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def wait_until(self, deadline: float, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ssevcr-timer", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (deadline, next(self._seq), loop, future))
            if self._heap[0][3] is future:
                self._cond.notify()
        return future

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                now = time.monotonic()
                wait = self._heap[0][0] - now
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                due: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = defaultdict(list)
                while self._heap and self._heap[0][0] <= now:
                    _, _, loop, future = heapq.heappop(self._heap)
                    due[loop].append(future)
            for loop, futures in due.items():
                try:
                    loop.call_soon_threadsafe(_release, futures)
                except RuntimeError:  # the loop was closed meanwhile
                    pass


def _release(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


_timer = _TimerThread()


async def sleep_until(deadline: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``deadline``."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio through anyio)
        import anyio

        await anyio.sleep(max(0.0, deadline - time.monotonic()))
        return
    delay = deadline - time.monotonic()
    if delay <= 0:
        return
    if delay > _COARSE:
        await asyncio.sleep(delay - _COARSE)
    if deadline - time.monotonic() > 0:
        await _timer.wait_until(deadline, loop)


async def sleep(seconds: float) -> None:
    await sleep_until(time.monotonic() + seconds)
