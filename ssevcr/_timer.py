"""Precise timing for asyncio: replay steps on their deadlines to a fraction of a millisecond.

asyncio wakes timers late by up to 1-2 ms: ``epoll_wait`` takes its timeout in whole milliseconds,
and the stock selector rounds up, sometimes by a whole extra millisecond. Replaying a stream whose
gaps are 10-60 ms that is a visible error (p50 lateness ~0.5 ms measured here). There are two
remedies, one for each kind of event loop:

- **A loop we own** (the replay server: ``ssevcr replay`` and
  :class:`~ssevcr._server.ServerThread`): :func:`new_event_loop` makes a loop whose
  :class:`PreciseSelector` waits the whole milliseconds in epoll and the sub-millisecond rest in
  ``nanosleep`` (p50 ~0.1 ms). The cost: I/O that arrives during that rest waits for it (never
  more than 1 ms, only when no timer is due sooner), and more loop iterations
  (bench/bench_replay.py measures both).
- **A loop we don't own** (the in-process transports run in the caller's loop, whatever it is):
  :func:`sleep_until` spends long waits on the loop's own (cheap) timer and the last few
  milliseconds on one daemon thread, which waits for the earliest deadline with a
  nanosecond-resolution timeout and wakes the waiting loops with ``call_soon_threadsafe``. That
  loop is never blocked. Outside asyncio (e.g. trio through anyio) it falls back to ``anyio.sleep``.

Nothing here knows about cassettes or schedules: it only waits.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import select
import selectors
import sys
import threading
import time
from collections import defaultdict

__all__ = ["PreciseSelector", "new_event_loop", "sleep", "sleep_until"]

_COARSE = 0.005  # waits longer than this sleep on the loop first, the last part on the thread


# --- a loop we own: a selector with sub-millisecond timeouts

if sys.platform == "linux":
    _Epoll = selectors.EpollSelector
    _EPOLLIN, _EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
else:  # pragma: no cover - this module also serves the in-process transports, on any platform
    _Epoll = selectors.DefaultSelector  # (PreciseSelector is then never used: see new_event_loop)


class PreciseSelector(_Epoll):
    """An epoll selector with sub-millisecond timeouts: whole milliseconds in ``epoll_wait``, the
    rest in ``nanosleep``, then a non-blocking poll (events are level-triggered, so collecting them
    with the stock ``select(0)`` after the sleep loses nothing). A wait that I/O ends early
    returns what ``epoll_wait`` gave, as the stock ``select`` would (one system call per wake).

    The stock selector passes ``math.ceil(t * 1e3) * 1e-3`` to ``epoll.poll``, which rounds it up
    again: for some values (0.013000000000000001) it waits a whole millisecond more than asked.
    Here the millisecond count goes in as ``(ms - 0.5) / 1000``, which rounds up to exactly ``ms``.
    """

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            return super().select(timeout)
        deadline = time.monotonic() + timeout
        ms = int(timeout * 1e3)
        if ms > 0:
            try:
                woke = self._selector.poll(  # type: ignore[attr-defined]  # (the stock's own)
                    (ms - 0.5) / 1e3,
                    max(len(self._fd_to_key), 1),  # type: ignore[attr-defined]
                )
            except InterruptedError:
                woke = []
            if woke:  # (what the stock select makes of them: one epoll_wait per wake, not two)
                return self._ready(woke)
        rest = deadline - time.monotonic()
        if rest > 0:
            time.sleep(rest)
        return super().select(0)

    def _ready(self, woke: list[tuple[int, int]]) -> list[tuple[selectors.SelectorKey, int]]:
        ready = []
        keys = self._fd_to_key  # type: ignore[attr-defined]
        for fd, event in woke:
            key = keys.get(fd)
            if key is not None:
                events = (selectors.EVENT_WRITE if event & ~_EPOLLIN else 0) | (
                    selectors.EVENT_READ if event & ~_EPOLLOUT else 0
                )
                ready.append((key, events & key.events))
        return ready


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers fire within ~0.1 ms instead of ~1 ms (Linux; elsewhere the
    default)."""
    if sys.platform == "linux":
        return asyncio.SelectorEventLoop(PreciseSelector())
    return asyncio.new_event_loop()  # pragma: no cover - not Linux


# --- a loop we don't own: the timer thread


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
