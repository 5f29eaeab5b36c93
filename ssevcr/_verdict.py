"""Sweep verdicts: how a consumer took one fault, judged against its clean run. Pure.

A fault is *lossless* (the consumer must end with the clean run's result: rechunk, slow, a short
stall, timing) or *lossy* (it must not report the clean result as success: truncate, drop,
corrupt, error, status, a stall past the timeout). A run's verdict:

    ok       the consumer did what the fault's kind asks
    silent   a lossy fault, yet exit 0 and the same result as the clean run: data loss swallowed
    broken   a lossless fault changed the result (exit code or output)
    hang     the run outlived its timeout
    crash    the run was killed by a signal

"The same result" is chosen by ``compare``: ``stdout`` (exit code and stdout), ``exit`` (exit
code only) or ``none`` (only hangs and crashes count).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

__all__ = ["COMPARE", "Compare", "Result", "Verdict", "judge", "same_result"]

Compare = Literal["stdout", "exit", "none"]
COMPARE: tuple[Compare, ...] = ("stdout", "exit", "none")


class Verdict(enum.StrEnum):
    OK = "ok"
    SILENT = "silent"
    BROKEN = "broken"
    HANG = "hang"
    CRASH = "crash"


@dataclass(frozen=True, slots=True)
class Result:
    """What one run of the command gave."""

    exit_code: int | None  # None: it did not exit by itself (timed out, killed)
    stdout: bytes = b""
    timed_out: bool = False
    signal: int | None = None  # the signal that killed it, if one did

    @property
    def success(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.signal is None


def same_result(clean: Result, run: Result, compare: Compare) -> bool:
    """Whether ``run`` ended as the clean run did, by ``compare``."""
    if compare == "none":
        return True
    if run.exit_code != clean.exit_code:
        return False
    return compare == "exit" or run.stdout == clean.stdout


def judge(clean: Result, run: Result, *, lossy: bool, compare: Compare = "stdout") -> Verdict:
    """The verdict of ``run`` under a fault of the given kind."""
    if run.timed_out:
        return Verdict.HANG
    if run.signal is not None:
        return Verdict.CRASH
    if compare == "none":
        return Verdict.OK
    same = same_result(clean, run, compare)
    if lossy:
        return Verdict.SILENT if same and run.exit_code == 0 else Verdict.OK
    return Verdict.OK if same else Verdict.BROKEN
