"""The journal as a file: one JSON object per play per line (``ssevcr replay --journal FILE``).

    journal = JournalFile("journal.jsonl")          # created or emptied now
    ReplayServer(player, journal=journal)           # each play's line as it ends
    journal.close()                                 # raises JournalError if a write failed

A play that ends is handed over as its line (``Journal.line``: already redacted, see
``_journal``; a few µs) on a deque (thread-safe at both ends: no lock per play); a writer
thread joins the lines, writes them in one write and flushes, at most ``flush_within`` seconds
(``FLUSH_WITHIN``) after the first of the batch was queued, so a reader tailing the file sees
every play within that. The line is made by the caller, on the event loop: a writer thread
that formatted the lines itself held the GIL for each batch while the loop waited at every
system call, which cost more than the formatting (``bench/bench_control.py``: +25-45% against
+9-16% responses/s). Writing off the event loop, without a timer on it (the replay server's
precise loop would wake for it) and waking the writer once per batch, not per play, keeps the
rest small. The queue is bounded by bytes (``MAX_PENDING``, ``queued_bytes``): past it, when
the disk is slower than the server, the play that ends writes the queue itself and the event
loop waits for the write (back-pressure: no line is ever dropped for want of room). ``close``
writes what is queued (the replay command closes it on every way out, SIGINT and SIGTERM
included).
``flush_within=None``: each line is written by the caller, at once.

A write that fails (a full disk) is remembered, the lines after it are counted as lost (never
silently), and ``close`` raises it: the run must not pass as if the journal were whole.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import deque
from typing import BinaryIO

from ._errors import SsevcrError
from ._journal import Journal

__all__ = ["FLUSH_WITHIN", "MAX_PENDING", "JournalError", "JournalFile", "queued_bytes"]

FLUSH_WITHIN = 0.01
"""Seconds a finished play's line may wait before it is written and flushed."""
MAX_PENDING = 256 * 1024
"""Bytes of lines that may wait for the writer; past it the caller writes them at once."""


class JournalError(SsevcrError):
    """The journal file could not be written."""


class JournalFile:
    """Append each play's journal line to ``path`` (see the module). Called by one thread at a
    time (the replay server's loop); ``flush`` and ``close`` from any thread."""

    def __init__(
        self, path: str | os.PathLike[str], *, flush_within: float | None = FLUSH_WITHIN
    ) -> None:
        self.path = os.fspath(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        try:
            # O_NONBLOCK: a FIFO nothing reads fails the open (ENXIO) instead of hanging it
            fd = os.open(self.path, flags | getattr(os, "O_NONBLOCK", 0), 0o666)
        except OSError as e:
            why = "a FIFO that nothing reads" if e.errno == errno.ENXIO else e.strerror or e
            raise JournalError(f"cannot write the journal {self.path!r}: {why}") from None
        os.set_blocking(fd, True)  # a pipe's reader that is slow is waited for, as before
        self._file: BinaryIO | None = os.fdopen(fd, "wb", buffering=0)
        self.flush_within = flush_within
        # The queue: lines appended by the caller, taken by whoever flushes (a deque: both
        # ends thread-safe, no lock per line). Bytes queued and taken are counted apart, each
        # by one side, so neither needs a lock: pending bytes = queued - taken.
        self._queue: deque[str] = deque()
        self._queued = 0  # bytes ever queued (the caller's)
        self._taken = 0  # bytes ever taken from the queue (under _writing)
        self._writing = threading.Lock()  # the file (the writer, or a caller past MAX_PENDING)
        self._wake = threading.Event()  # lines are queued: the writer wakes
        self._woken = False  # the caller has set _wake since the writer last cleared it
        self._stop = threading.Event()  # close() was called
        self._closing = False
        self._direct = flush_within is None  # the caller writes each line itself
        self.lines = 0  # lines written
        self.lost = 0  # lines not written (the failed write's and those after it)
        self.error: str | None = None
        self._writer: threading.Thread | None = None
        if flush_within is not None:
            self._writer = threading.Thread(target=self._run, name="ssevcr-journal", daemon=True)
            self._writer.start()

    def __call__(self, journal: Journal) -> None:
        line = journal.line()
        self._queue.append(line)
        self._queued += queued_bytes(line)
        if self._direct or self._queued - self._taken >= MAX_PENDING:
            self.flush()
        elif not self._woken:  # (the first line since the writer's last batch)
            self._woken = True
            self._wake.set()

    @property
    def pending(self) -> int:
        """Lines queued, not yet written."""
        return len(self._queue)

    def _run(self) -> None:
        """The writer thread: a batch at most ``flush_within`` s after its first line. (It
        clears ``_wake`` before ``_woken`` and both before taking the queue: a line queued
        meanwhile is either in this batch or sets them again.)"""
        assert self.flush_within is not None
        while True:
            self._wake.wait()
            if self._closing:
                return
            self._stop.wait(self.flush_within)  # (close cuts the wait short)
            self._wake.clear()
            self._woken = False
            self.flush()
            if self._closing:  # (close set the event before the clear above)
                return

    def flush(self) -> None:
        """Write and flush the lines queued (never raises: see ``close``)."""
        with self._writing:
            queue = self._queue
            count = len(queue)
            if not count:
                return
            popleft = queue.popleft
            lines = [popleft() for _ in range(count)]
            self._taken += sum(map(len, lines)) + count
            data = "\n".join(lines) + "\n"
            file = self._file
            if file is None:
                self.lost += count
                return
            try:
                _write_all(file, data.encode())
            except OSError as e:
                self.error = f"cannot write the journal {self.path!r}: {e.strerror or e}"
                self.lost += count
                self._file = None
                try:
                    file.close()
                except OSError:
                    pass
            else:
                self.lines += count

    def close(self) -> None:
        """Write what is queued, stop the writer and close; raises :class:`JournalError` if a
        write failed."""
        self._closing = self._direct = True
        self._stop.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join()
        self.flush()
        with self._writing:
            if self._file is not None:
                self._file.close()
                self._file = None
        if self.error is not None:
            raise JournalError(
                f"{self.error}; {self.lost} line{'' if self.lost == 1 else 's'} lost"
                " (the first failed write's and those after it)"
            )


def queued_bytes(line: str) -> int:
    """What a line waiting in the queue counts for, towards ``MAX_PENDING``."""
    return len(line) + 1


def _write_all(file: BinaryIO, data: bytes) -> None:
    """All of ``data``, in as many writes as the file takes (a raw file may take part)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:  # (None: a non-blocking file that would block; 0: took nothing)
            raise OSError(f"the journal file took none of {len(view)} bytes")
        view = view[written:]
