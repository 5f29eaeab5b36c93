"""The journal as a file: one JSON object per play per line (``ssevcr replay --journal FILE``).

    journal = JournalFile("journal.jsonl")          # created or emptied now
    ReplayServer(player, journal=journal)           # each play's line as it ends
    journal.close()                                 # raises JournalError if a write failed

A line is written when its play ends (the client took it all, or left), already redacted (see
``_journal``). Lines that end in the same turn of the event loop go out in one write, flushed
before the loop does anything else (``loop=``; without it each line is written and flushed at
once): a reader tailing the file sees every play as soon as it ends. A write that fails (a full
disk) is remembered, later lines are dropped, and ``close`` raises it: the run must not pass as
if the journal were whole.
"""

from __future__ import annotations

import asyncio
import os
from typing import IO

from ._errors import SsevcrError
from ._journal import Journal

__all__ = ["JournalError", "JournalFile"]


class JournalError(SsevcrError):
    """The journal file could not be written."""


class JournalFile:
    """Append each play's journal line to ``path`` (see the module)."""

    def __init__(
        self, path: str | os.PathLike[str], *, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.path = os.fspath(path)
        try:
            self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise JournalError(
                f"cannot write the journal {self.path!r}: {e.strerror or e}"
            ) from None
        self._loop = loop
        self._pending: list[str] = []
        self._scheduled = False
        self.lines = 0
        self.error: str | None = None

    def __call__(self, journal: Journal) -> None:
        if self._file is None:
            return
        self._pending.append(journal.line())
        if self._loop is None:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pending, file = self._pending, self._file
        if not pending or file is None:
            return
        try:
            file.write("\n".join(pending) + "\n")
            file.flush()
        except OSError as e:
            self.error = f"cannot write the journal {self.path!r}: {e.strerror or e}"
            self._file = None
            try:
                file.close()
            except OSError:
                pass
        else:
            self.lines += len(pending)
        pending.clear()

    def close(self) -> None:
        """Write what is pending and close; raises :class:`JournalError` if a write failed."""
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.error is not None:
            raise JournalError(f"{self.error}; lines after the first failed write are lost")
