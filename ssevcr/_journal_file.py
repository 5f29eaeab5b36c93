"""The journal as a file: one JSON object per play per line (``ssevcr replay --journal FILE``).

    journal = JournalFile("journal.jsonl")          # created or emptied now
    ReplayServer(player, journal=journal)           # each play's line as it ends
    journal.close()                                 # raises JournalError if a write failed

A play's line is made once, when it ends (the client took it all, or left), already redacted
(see ``_journal``), and queued; a writer thread writes and flushes what is queued at most
``flush_within`` seconds (``FLUSH_WITHIN``) after the first of it was queued, so a reader
tailing the file sees every play within that. One write per batch, off the event loop and
without a timer on it (the replay server's precise loop would wake for it), is what keeps the
journal's cost small at thousands of plays a second (``bench/bench_control.py``). The queue is
bounded by bytes (``MAX_PENDING``): past it, the play that ends writes the queue itself and the
event loop waits for the write (back-pressure: no line is ever dropped for want of room).
``close`` writes what is queued (the replay command closes it on every way out, SIGINT and
SIGTERM included). ``flush_within=None``: each line is written and flushed by the caller, at once.

A write that fails (a full disk) is remembered, the lines after it are counted as lost (never
silently), and ``close`` raises it: the run must not pass as if the journal were whole.
"""

from __future__ import annotations

import os
import threading
from typing import IO

from ._errors import SsevcrError
from ._journal import Journal

__all__ = ["FLUSH_WITHIN", "MAX_PENDING", "JournalError", "JournalFile"]

FLUSH_WITHIN = 0.01
"""Seconds a finished play's line may wait before it is written and flushed."""
MAX_PENDING = 256 * 1024
"""Bytes of lines that may wait for the writer; past it the caller writes them at once."""


class JournalError(SsevcrError):
    """The journal file could not be written."""


class JournalFile:
    """Append each play's journal line to ``path`` (see the module). Callable from any thread."""

    def __init__(
        self, path: str | os.PathLike[str], *, flush_within: float | None = FLUSH_WITHIN
    ) -> None:
        self.path = os.fspath(path)
        try:
            self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise JournalError(
                f"cannot write the journal {self.path!r}: {e.strerror or e}"
            ) from None
        self.flush_within = flush_within
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._lock = threading.Lock()  # the queue
        self._writing = threading.Lock()  # the file (the writer, or a caller past MAX_PENDING)
        self._wake = threading.Event()  # lines are queued
        self._stop = threading.Event()  # close() was called
        self._closing = False
        self.lines = 0  # lines written
        self.lost = 0  # lines not written (the failed write's and those after it)
        self.error: str | None = None
        self._writer: threading.Thread | None = None
        if flush_within is not None:
            self._writer = threading.Thread(target=self._run, name="ssevcr-journal", daemon=True)
            self._writer.start()

    def __call__(self, journal: Journal) -> None:
        line = journal.line()
        with self._lock:
            was_empty = not self._pending
            self._pending.append(line)
            self._pending_bytes += len(line) + 1
            full = self._pending_bytes >= MAX_PENDING
        if full or self._writer is None or self._closing:
            self.flush()
        elif was_empty:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Lines queued, not yet written."""
        return len(self._pending)

    def _run(self) -> None:
        """The writer thread: a batch at most ``flush_within`` s after its first line."""
        assert self.flush_within is not None
        while True:
            self._wake.wait()
            if self._closing:
                return
            self._stop.wait(self.flush_within)  # (close cuts the wait short)
            self._wake.clear()  # (a line queued after the flush below finds the queue empty: sets)
            self.flush()
            if self._closing:  # (close set the event before the clear above)
                return

    def flush(self) -> None:
        """Write and flush the lines queued (never raises: see ``close``)."""
        with self._writing:
            with self._lock:
                pending = self._pending
                if not pending:
                    return
                self._pending, self._pending_bytes = [], 0
            file = self._file
            if file is None:
                self.lost += len(pending)
                return
            try:
                file.write("\n".join(pending) + "\n")
                file.flush()
            except OSError as e:
                self.error = f"cannot write the journal {self.path!r}: {e.strerror or e}"
                self.lost += len(pending)
                self._file = None
                try:
                    file.close()
                except OSError:
                    pass
            else:
                self.lines += len(pending)

    def close(self) -> None:
        """Write what is queued, stop the writer and close; raises :class:`JournalError` if a
        write failed."""
        self._closing = True
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
