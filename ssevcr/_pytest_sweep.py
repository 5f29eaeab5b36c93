"""The pytest sweep: one test, run once clean and once per fault worth trying on its cassettes.

    @pytest.mark.ssevcr("chat", sweep="quick", timing="instant")
    def test_chat(ssevcr_fault):
        if ssevcr_fault.lossy:
            with pytest.raises(StreamError):
                consume()
        else:
            assert consume() == TEXT

The marker's ``sweep=`` (or ``--ssevcr-sweep=quick|default|full`` for every test with the marker)
parametrizes the test at collection over its cassettes' fault catalogue (:mod:`ssevcr._catalogue`):
a ``clean`` case, then one case per fault, with the fault spec as its id
(``test_chat[truncate:after=3,end=abort]``). Deterministic for the cassettes and the seed, so
every xdist worker collects the same cases. A cassette that is not there yet (the recording run)
or does not load gives only the clean case. Faulted cases always replay (record mode ``none``).

The ``ssevcr_fault`` fixture is the case's :class:`SweepFault`: its ``spec`` (None for the clean
case), ``kind`` (``clean`` for it), whether it is ``lossy`` and ``why`` it is tried; false for the
clean case.

**Verdicts from pass and fail** (:func:`verdict`): a case that passes is ``ok``. A case that fails
is ``hang`` when pytest-timeout stopped it, ``silent`` when the fault is lossy and the test's own
expectation failed (an ``AssertionError``, or ``pytest.raises``' "DID NOT RAISE": the code reported
success with data lost), and ``broken`` otherwise (a lossless fault made it fail, or a lossy one
made it fail another way than the test expects: an exception nobody caught). A case whose xdist
worker crashed is ``crash``. Skipped and xfailed cases are not judged. A failing clean case is
listed as such: the test fails without any fault.

The records travel on the test reports (``report.ssevcr_sweep``, kept by xdist), so the
controller summarizes every worker's cases: :class:`Summary`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._verdict import Verdict

__all__ = ["CLEAN", "LEVELS", "Summary", "SweepFault", "cases", "strip_case", "verdict"]

LEVELS = ("quick", "default", "full")
DEFAULT_STALL = 30.0


@dataclass(frozen=True, slots=True)
class SweepFault:
    """The fault of one sweep case (the ``ssevcr_fault`` fixture)."""

    spec: str | None  # the fault spec; None for the clean case
    kind: str  # the fault's name; "clean" for the clean case
    lossy: bool
    why: str = ""
    interaction: int = 0  # the interaction it targets (1-based), 0 for the clean case

    def __bool__(self) -> bool:
        return self.spec is not None

    def __str__(self) -> str:
        return self.spec or "clean"


CLEAN = SweepFault(None, "clean", False, "no fault")


def cases(paths: Sequence[Path], level: str, *, seed: int, stall: float) -> list[SweepFault]:
    """The clean case, then the catalogue of the cassettes at ``paths`` (in order). Only the
    clean case when one is missing or does not load (its test then says why)."""
    from . import _store
    from ._catalogue import catalogue
    from ._errors import SsevcrError

    try:
        opened = [_store.open_cached(p) for p in paths]
    except (SsevcrError, OSError):
        return [CLEAN]
    key = ("sweep", tuple(map(str, paths)), level, seed, stall)
    found: list[SweepFault] | None = opened[0].derived.get(key)
    if found is None:
        entries = catalogue([o.cassette for o in opened], level=level, seed=seed, stall=stall)
        found = [
            CLEAN,
            *(SweepFault(e.spec, e.kind, e.lossy, e.why, e.interaction) for e in entries),
        ]
        opened[0].derived[key] = found
    return found


def strip_case(name: str, fault: SweepFault) -> str:
    """A swept test's name without its case's id: ``test_chat[drop:event=last]`` -> ``test_chat``,
    ``test_x[1-clean]`` -> ``test_x[1]`` (its cassette is the test's, whatever the case)."""
    case = str(fault)
    base, sep, inner = name.partition("[")
    if not sep or not inner.endswith("]"):
        return name
    inner = inner[:-1]
    if inner == case:
        return base
    if inner.endswith(f"-{case}"):
        inner = inner[: -len(case) - 1]
    elif inner.startswith(f"{case}-"):
        inner = inner[len(case) + 1 :]
    elif f"-{case}-" in inner:
        inner = inner.replace(f"-{case}-", "-", 1)
    else:
        return name
    return f"{base}[{inner}]"


_TIMEOUT = re.compile(r"^Timeout\b")  # pytest-timeout's failure message


def verdict(fault: SweepFault, excinfo: Any | None) -> Verdict:
    """The verdict of a case from how it ended (``excinfo``: pytest's ExceptionInfo of the
    failure, None when it passed)."""
    if excinfo is None:
        return Verdict.OK
    import pytest

    value = excinfo.value
    failed = isinstance(value, pytest.fail.Exception)
    if failed and _TIMEOUT.match(str(value)):
        return Verdict.HANG
    if fault.lossy and (
        isinstance(value, AssertionError) or (failed and str(value).startswith("DID NOT RAISE"))
    ):
        return Verdict.SILENT
    return Verdict.BROKEN


def record(
    fault: SweepFault, test: str, when: str, outcome: str, v: Verdict | None
) -> dict[str, Any]:
    """What one phase of a case tells the summary (it travels on the report)."""
    return {
        "test": test,
        "fault": fault.spec,
        "kind": fault.kind,
        "lossy": fault.lossy,
        "why": fault.why,
        "when": when,
        "outcome": outcome,
        "verdict": v.value if v is not None else None,
    }


# ---------------------------------------------------------------------------------------------
# the summary (on the controller)


@dataclass(slots=True)
class _Case:
    test: str
    fault: str | None
    kind: str
    lossy: bool
    why: str
    outcome: str = "passed"
    verdict: str | None = "ok"
    message: str = ""
    duration: float = 0.0
    plays: list[dict[str, Any]] | None = None


class Summary:
    """Every swept case of the session, from the reports of every phase."""

    def __init__(self, level: str | None) -> None:
        self.level = level
        self.cases: dict[str, _Case] = {}  # by node id, in the order they ran
        self.meta: dict[str, dict[str, Any]] = {}  # by test: cassettes, seed, timing

    def add(self, report: Any) -> None:
        info = getattr(report, "ssevcr_sweep", None)
        if info is None:
            if report.failed and "crashed" in str(report.longrepr) and "[" in report.nodeid:
                self._crashed(report)
            return
        case = self.cases.get(report.nodeid)
        if case is None:
            case = self.cases[report.nodeid] = _Case(
                info["test"], info["fault"], info["kind"], info["lossy"], info["why"]
            )
        case.duration += float(getattr(report, "duration", 0.0) or 0.0)
        if "meta" in info:
            self.meta.setdefault(case.test, info["meta"])
        if "plays" in info:
            case.plays = info["plays"]
        outcome = info["outcome"]
        if outcome == "passed" or case.outcome != "passed":
            return  # the first phase that did not pass decides
        case.outcome = outcome
        case.verdict = info["verdict"]
        text = getattr(report, "longreprtext", "") or ""
        case.message = _message(report, text)

    def _crashed(self, report: Any) -> None:
        """A case whose xdist worker died: known by its node id only."""
        from ._catalogue import classify
        from ._errors import SsevcrError
        from ._faults import parse_fault

        head, _, inner = report.nodeid.partition("[")
        inner = inner.removesuffix("]")
        for start in range(len(inner)):
            if start and inner[start - 1] != "-":
                continue
            spec = inner[start:]
            try:
                kind, lossy = classify(parse_fault(spec))
            except (SsevcrError, ValueError):
                continue
            rest = inner[: max(0, start - 1)]
            test = f"{head}[{rest}]" if rest else head
            self.cases[report.nodeid] = _Case(
                test, spec, kind, lossy, "", "crashed", Verdict.CRASH.value, "worker crashed"
            )
            return

    def tests(self) -> dict[str, list[tuple[str, _Case]]]:
        out: dict[str, list[tuple[str, _Case]]] = {}
        for nodeid, case in self.cases.items():
            out.setdefault(case.test, []).append((nodeid, case))
        return out

    def lines(self) -> list[str]:
        """The terminal table: one row per test, then each case that is not ok."""
        tests = self.tests()
        if not tests:
            return []
        verdicts = [v.value for v in Verdict]
        width = max(len(t) for t in tests)
        head = f"{'test':<{width}}  {'cases':>5}  " + "  ".join(f"{v:>6}" for v in verdicts)
        out = [head]
        bad: list[str] = []
        for test, items in tests.items():
            counts = dict.fromkeys(verdicts, 0)
            clean_failed = False
            judged = 0
            for _, case in items:
                if case.fault is None:
                    clean_failed = case.outcome != "passed" and case.verdict is not None
                    continue
                if case.verdict is not None:
                    counts[case.verdict] += 1
                    judged += 1
            cells = "  ".join(f"{counts[v] or '.':>6}" for v in verdicts)
            out.append(f"{test:<{width}}  {judged:>5}  {cells}")
            if clean_failed:
                bad.append(f"  {test}: the clean case failed: every verdict of it means little")
            for _, case in items:
                if case.fault is not None and case.verdict not in (None, "ok"):
                    kind = "lossy" if case.lossy else "lossless"
                    bad.append(
                        f"  {case.verdict:<7} {test}[{case.fault}] ({kind})  {case.message[:120]}"
                    )
        return out + bad

    def reports(self) -> list[dict[str, Any]]:
        """One report per test, in the shape of ``ssevcr sweep --json`` (``_report`` draws it)."""
        out = []
        for test, items in self.tests().items():
            meta = self.meta.get(test, {})
            clean: dict[str, Any] = {}
            runs = []
            for _, case in items:
                run = {
                    "fault": case.fault,
                    "kind": case.kind,
                    "lossy": case.lossy,
                    "verdict": case.verdict or "skipped",
                    "allowed": False,
                    "outcome": case.outcome,
                    "exit_code": None,
                    "timed_out": case.verdict == Verdict.HANG.value,
                    "duration_s": round(case.duration, 4),
                    "plays": case.plays or [],
                    "stderr_tail": case.message,
                    "why": case.why,
                }
                if case.fault is None:
                    clean = run
                else:
                    runs.append(run)
            summary = {v.value: sum(r["verdict"] == v.value for r in runs) for v in Verdict}
            out.append(
                {
                    "command": [test],
                    "cassettes": meta.get("cassettes", []),
                    "catalog": meta.get("level", self.level),
                    "seed": meta.get("seed", 0),
                    "timing": meta.get("timing", ""),
                    "compare": "pytest",
                    "detail": "failure",
                    "clean": clean,
                    "runs": runs,
                    "summary": summary,
                }
            )
        return out

    def write(self, path: str) -> None:
        """``--ssevcr-sweep-report``: JSON for a ``.json`` file, else the HTML page."""
        from ._report import sweeps_html

        reports = self.reports()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix.lower() == ".json":
            target.write_text(json.dumps({"tests": reports}, indent=1) + "\n")
        else:
            target.write_text(sweeps_html(reports, "ssevcr pytest sweep"))


def _message(report: Any, text: str) -> str:
    """The first line that says why a case failed."""
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    message = str(getattr(crash, "message", "") or "")
    if message:
        return message.splitlines()[0]
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("E "):
            return line[1:].strip()
    return lines[-1].strip() if lines else ""
