"""When a recorded response's bytes were read from the network, so an in-process recording stamps
each chunk when its bytes arrived, not when the client's consumer pulled it out of the library's
parser (after the library's own parsing, and as late as a slow consumer asks for it).

A :class:`Reads` notes the monotonic clock at every read of the connection that returned bytes;
the adapter says which bytes it is handing to the recording, and ``Reads.at`` is when they were
read. The watches install that note for the one response being recorded and take it away at its
end, so a pooled connection is left as it was:

- :func:`watch_stream`: httpcore and httpcore2 (httpx, httpx2): the HTTP/1.1 connection's network
  stream (the response's ``network_stream`` extension), its ``read`` wrapped on the instance.
  httpcore parses with h11, whose body readers hand out every body byte they hold before the
  connection reads again, so each chunk came with the latest read (``latest``): no byte
  counting, so neither chunked framing nor a content-encoding can put it out of step. HTTP/2 is
  not watched (a read carries frames of every stream on the connection): its chunks are stamped
  when they come out of the transport, as before.
- :func:`watch_file`: urllib3 and requests, whose http.client reads the socket file (a buffered
  reader) that the recording tees: its raw reader's ``readinto`` wrapped on the instance. The
  tee sees the raw bytes in order, framing included, so they are matched to the reads by count
  (``take``), the bytes already buffered with the head counted as read when the watch began.
- aiohttp's relay is our own protocol: its ``data_received`` notes the read (``read``) before the
  bytes go to aiohttp's parser and the recording.

What a read brought and what is handed on is never touched: these only read the clock.

A sync client's reads happen when its consumer asks (httpcore and http.client read the socket
then): bytes that waited in the kernel for a consumer slower than the stream are stamped when
they were read. What arrived in one read (an upstream's burst, several events in one write) is
stamped with that read, however long the consumer takes between its chunks.
"""

from __future__ import annotations

import io
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_READS", "Reads", "watch_file", "watch_stream"]

MAX_READS = 4096
"""Reads kept waiting for their bytes to be handed on (a counted watch): a buffered reader holds
a few (8 KiB); past this, the oldest are dropped (their bytes are taken as handed on)."""


class Reads:
    """The reads of one response's connection (see the module). ``at`` is when the bytes being
    handed on now were read: the latest read, or with ``counted`` the read that brought the
    first of the bytes ``take`` was told of. Until a read is seen it is ``at``, the time given
    (when the head was read: bytes that came with it)."""

    __slots__ = ("_queue", "_skip", "_undo", "at", "latest")

    def __init__(self, at: float, *, counted: bool = False) -> None:
        self.at = at
        self.latest = at  # the latest read
        self._queue: deque[tuple[float, int]] | None = deque() if counted else None
        self._skip = 0  # bytes of the queue's first read already handed on
        self._undo: Callable[[], None] | None = None

    def read(self, n: int) -> None:
        """A read returned ``n`` bytes just now."""
        if n <= 0:
            return
        now = self.latest = time.monotonic()
        queue = self._queue
        if queue is None:
            self.at = now
            return
        queue.append((now, n))
        if len(queue) > MAX_READS:
            queue.popleft()
            self._skip = 0

    def take(self, n: int) -> float:
        """The next ``n`` bytes read are handed on: ``at`` becomes when the first of them was
        read (the latest read, when the reads seen do not hold them)."""
        queue = self._queue
        first: float | None = None
        while n > 0 and queue:
            at, size = queue[0]
            if first is None:
                first = at
            left = size - self._skip
            if n < left:
                self._skip += n
                break
            n -= left
            self._skip = 0
            queue.popleft()
        self.at = self.latest if first is None else first
        return self.at

    def stop(self) -> None:
        """Take the watch away (once; later calls do nothing)."""
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()


def _wrap(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Any:
    """``owner.name`` replaced on the instance by ``make(current)``; the undo (None: it cannot
    be, the instance has no ``__dict__``)."""
    namespace = getattr(owner, "__dict__", None)
    if not isinstance(namespace, dict):
        return None
    previous = namespace.get(name)
    wrapper = make(getattr(owner, name))
    namespace[name] = wrapper

    def undo() -> None:
        if namespace.get(name) is wrapper:
            if previous is None:
                del namespace[name]
            else:
                namespace[name] = previous

    return undo


def watch_stream(response: Any, at: float, *, sync: bool) -> Reads | None:
    """The reads of the httpcore (httpcore2) HTTP/1.1 connection that carries ``response`` (an
    httpx or httpx2 transport's response, or httpcore's), from now on; ``at``: when its head was
    read. None when its connection is not one this knows (HTTP/2, no network stream)."""
    extensions = getattr(response, "extensions", None)
    if not isinstance(extensions, dict):
        return None
    if extensions.get("http_version", b"HTTP/1.1") not in (b"HTTP/1.1", b"HTTP/1.0"):
        return None
    stream = extensions.get("network_stream")
    if not callable(getattr(stream, "read", None)):
        return None
    reads = Reads(at)
    note = reads.read

    def make(read: Callable[..., Any]) -> Callable[..., Any]:
        if sync:

            def watched(*args: Any, **kwargs: Any) -> Any:
                data = read(*args, **kwargs)
                note(len(data))
                return data

            return watched

        async def awatched(*args: Any, **kwargs: Any) -> Any:
            data = await read(*args, **kwargs)
            note(len(data))
            return data

        return awatched

    reads._undo = _wrap(stream, "read", make)
    return None if reads._undo is None else reads


def watch_file(fp: Any) -> Reads | None:
    """The reads under ``fp``, a buffered socket file (http.client's), counted from now on: the
    bytes it already buffered (read with the head) as read now. None when ``fp`` is not one."""
    raw = getattr(fp, "raw", None)
    if not isinstance(fp, io.BufferedReader) or raw is None:
        return None
    reads = Reads(time.monotonic(), counted=True)
    note = reads.read
    probing = [True]

    def make(readinto: Callable[..., Any]) -> Callable[..., Any]:
        def watched(buffer: Any) -> Any:
            if probing[0]:
                return None  # (no bytes yet, as a non-blocking reader says: the peek below)
            n = readinto(buffer)
            if n:
                note(n)
            return n

        return watched

    undo = _wrap(raw, "readinto", make)
    if undo is None:
        return None
    try:
        # what the buffer holds, without a read (a peek reads the raw stream only when empty)
        buffered = len(fp.peek())
    except Exception:  # closed, or a reader that is not what it seems
        undo()
        return None
    finally:
        probing[0] = False
    if buffered:
        assert reads._queue is not None
        reads._queue.appendleft((reads.at, buffered))
    reads._undo = undo
    return reads
