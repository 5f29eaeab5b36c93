"""``ssevcr sweep``: one recording becomes a resilience report.

Runs ``-- CMD`` once against a clean replay, then once per fault (the cassette's fault catalogue,
``--fault`` specs, or both), each run against its own replay server with the environment of
``ssevcr replay -- CMD`` and a per-run timeout, and judges every run against the clean one
(:mod:`ssevcr._verdict`): ``ok``, ``silent``, ``broken``, ``hang``, ``crash``. Prints a live
progress bar and a table grouped by fault kind; writes JSON (``--json``) and an HTML report
(``--html``). Exits 1 when any verdict is not ``ok`` (minus ``--allow``), 2 when the clean run
itself fails or the options are wrong.

It only runs processes and servers: the faults come from :mod:`ssevcr._catalogue`, the verdicts
from :mod:`ssevcr._verdict`, the page from :mod:`ssevcr._report`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import click

from .. import __version__
from .._cassette import Cassette
from .._errors import ConfigError, SsevcrError
from .._faults import parse_fault
from .._player import Player
from .._report import plays_record
from .._store import profile_times, read_any
from .._timing import Timing, parse_duration, parse_timing
from .._verdict import COMPARE, Compare, Result, Verdict, judge
from . import not_an_input, write_text
from .replay import command_env, cors_option

__all__ = ["Run", "Trial", "run_trials", "sweep_command"]

_STDOUT_LIMIT = 1 << 20  # bytes of a run's stdout kept for comparing (the rest is counted)
_STDERR_TAIL = 2000  # characters of a run's stderr kept for the report
_STDOUT_TAIL = 2000  # bytes of a run's stdout shown in the report
_KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL for a run past its timeout


@dataclass(frozen=True, slots=True)
class Trial:
    """One run to make: a fault (None for the clean run), its kind and whether it is lossy."""

    spec: str | None
    kind: str
    lossy: bool


@dataclass(slots=True)
class Run:
    """One run made: the trial, what the command did, what the replay sent."""

    trial: Trial
    result: Result
    duration_s: float
    stderr_tail: str = ""
    verdict: Verdict = Verdict.OK
    same_output: bool = True
    plays: list[dict[str, Any]] = field(default_factory=list)
    allowed: bool = False

    def record(self) -> dict[str, Any]:
        """The run as one JSON object."""
        return {
            "fault": self.trial.spec,
            "kind": self.trial.kind,
            "lossy": self.trial.lossy,
            "verdict": self.verdict.value,
            "allowed": self.allowed,
            "exit_code": self.result.exit_code,
            "signal": self.result.signal,
            "timed_out": self.result.timed_out,
            "same_output": self.same_output,
            "duration_s": round(self.duration_s, 4),
            "plays": self.plays,
            "stdout_tail": self.result.stdout[-_STDOUT_TAIL:].decode("utf-8", "replace"),
            "stderr_tail": self.stderr_tail,
        }


def _run_one(
    cassettes: Sequence[tuple[str, Cassette]],
    trial: Trial,
    command: Sequence[str],
    *,
    timing: str | Timing,
    seed: int,
    timeout: float,
    cors: Sequence[str] = (),
) -> Run:
    from .._server_thread import ServerThread

    player = Player.create(
        list(cassettes),
        timing=timing,
        faults=[trial.spec] if trial.spec else [],
        seed=seed,
        repeat=True,
        log_limit=1000,
    )
    with ServerThread(player, cors=cors, log=lambda _line: None) as server:
        env = command_env(server.url)
        env["SSEVCR_FAULT"] = trial.spec or ""
        start = time.monotonic()
        try:
            child = subprocess.Popen(
                list(command),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a hung run is killed with everything it started
            )
        except OSError as e:
            raise click.ClickException(f"cannot run {command[0]!r}: {e.strerror or e}") from None
        timed_out = False
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            out, err = _kill(child)
        duration = time.monotonic() - start
        code = child.returncode
    killed = -code if code is not None and code < 0 and not timed_out else None
    result = Result(
        exit_code=None if timed_out or killed is not None else code,
        stdout=out[:_STDOUT_LIMIT],
        timed_out=timed_out,
        signal=killed,
    )
    tail = err.decode("utf-8", "replace")[-_STDERR_TAIL:]
    return Run(trial, result, duration, tail, plays=plays_record(player.plays))


def _kill(child: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """End a run past its timeout: SIGTERM to its process group, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, _KILL_GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return child.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return b"", b""


def run_trials(
    cassettes: Sequence[tuple[str, Cassette]],
    trials: Sequence[Trial],
    command: Sequence[str],
    *,
    timing: str | Timing = "instant",
    seed: int = 0,
    timeout: float = 60.0,
    jobs: int = 1,
    compare: Compare = "stdout",
    on_done: Callable[[Run], None] | None = None,
    cors: Sequence[str] = (),
) -> tuple[Run, list[Run]]:
    """The clean run, then every trial (``jobs`` at a time), each judged against the clean run.
    ``cors``: origins the replay servers let read their answers (``"*"``: any), for web pages."""
    clean = _run_one(
        cassettes,
        Trial(None, "clean", False),
        command,
        timing=timing,
        seed=seed,
        timeout=timeout,
        cors=cors,
    )
    if on_done is not None:
        on_done(clean)
    if not clean.result.success:
        return clean, []
    lock = threading.Lock()

    def one(trial: Trial) -> Run:
        run = _run_one(
            cassettes, trial, command, timing=timing, seed=seed, timeout=timeout, cors=cors
        )
        run.verdict = judge(clean.result, run.result, lossy=trial.lossy, compare=compare)
        run.same_output = run.result.stdout == clean.result.stdout
        if on_done is not None:
            with lock:
                on_done(run)
        return run

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        runs = list(pool.map(one, trials))
    return clean, runs


# ---------------------------------------------------------------------------------------------
# the command


def _trials(
    cassettes: Sequence[tuple[str, Cassette]],
    catalog: str | None,
    specs: Sequence[str],
    *,
    seed: int,
    stall: float,
) -> list[Trial]:
    from .._catalogue import catalogue, classify

    trials: list[Trial] = []
    loaded = [c for _, c in cassettes]
    if catalog is not None:
        for entry in catalogue(loaded, level=catalog, seed=seed, stall=stall):
            trials.append(Trial(entry.spec, entry.kind, entry.lossy))
    for spec in specs:
        fault = parse_fault(spec)
        kind, lossy = classify(fault, stall_limit=stall, cassettes=loaded)
        trials.append(Trial(str(fault), kind, lossy))
    seen: set[str | None] = set()
    unique = []
    for t in trials:
        if t.spec not in seen:
            seen.add(t.spec)
            unique.append(t)
    return unique


def _allowed(run: Run, allow: Sequence[str]) -> bool:
    return any(a in (run.trial.kind, run.trial.spec, run.verdict.value) for a in allow)


def _table(runs: Sequence[Run]) -> Any:
    from rich import box
    from rich.table import Table

    kinds: dict[str, dict[str, int]] = {}
    for run in runs:
        row = kinds.setdefault(run.trial.kind, {v.value: 0 for v in Verdict})
        row[run.verdict.value] += 1
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("fault kind")
    table.add_column("runs", justify="right")
    for v in Verdict:
        table.add_column(v.value, justify="right")
    for kind, counts in kinds.items():
        cells = []
        for v in Verdict:
            n = counts[v.value]
            style = "green" if v is Verdict.OK else "red"
            cells.append(f"[{style}]{n}[/{style}]" if n else "·")
        table.add_row(kind, str(sum(counts.values())), *cells)
    return table


class _SweepCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta["ssevcr_command"] = args[at + 1 :]
            args = args[:at]
        return super().parse_args(ctx, args)


def _duration(value: str, what: str) -> float:
    try:
        seconds = parse_duration(value, what=what)
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None
    if seconds <= 0:
        raise click.BadParameter(f"{what} must be longer than 0")
    return seconds


@click.command("sweep", cls=_SweepCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument(
    "cassettes", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="CASSETTE..."
)
@click.option(
    "--catalog",
    type=click.Choice(["quick", "default", "full", "none"]),
    default="default",
    show_default=True,
    help="Which faults to try: the cassette's catalogue (none: only --fault).",
)
@click.option(
    "--fault", "faults", multiple=True, metavar="F", help="Also try this fault (repeatable)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")
@click.option(
    "--timing",
    default="instant",
    show_default=True,
    metavar="T",
    help="Timing of every run: original, instant, scale:F, fixed:DUR, or a profile: ttft:DUR, "
    "tps:N, jitter:PCT, profile:CASSETTE, joined by + (with original or scale:F).",
)
@click.option(
    "--timeout",
    default="60s",
    show_default=True,
    metavar="DUR",
    help="A run still going after DUR is a hang (and is killed).",
)
@click.option(
    "--stall",
    default="30s",
    show_default=True,
    metavar="DUR",
    help="How long the catalogue's long stalls last (past the client's timeout).",
)
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True, help="Runs at once."
)
@click.option(
    "--compare",
    type=click.Choice(list(COMPARE)),
    default="stdout",
    show_default=True,
    help="What 'the same result as the clean run' means.",
)
@click.option(
    "--allow",
    multiple=True,
    metavar="KIND",
    help="Accept runs of this fault kind, fault spec or verdict (repeatable).",
)
@cors_option(
    "As ssevcr replay --cors: let web pages (a browser the command drives) read the answers."
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write the report as JSON.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write the report as an HTML page.",
)
@click.pass_context
def sweep_command(
    ctx: click.Context,
    cassettes: tuple[str, ...],
    catalog: str,
    faults: tuple[str, ...],
    seed: int,
    timing: str,
    timeout: str,
    stall: str,
    jobs: int,
    compare: Compare,
    allow: tuple[str, ...],
    cors: tuple[str, ...],
    json_path: str | None,
    html_path: str | None,
) -> None:
    """Run -- CMD once clean and once per fault, and say which faults it mishandles."""
    command = ctx.meta.get("ssevcr_command")
    if not command:
        raise click.UsageError("give the command to sweep after --", ctx=ctx)
    try:  # profile:FILE is fitted once, for every run
        shaped = parse_timing(timing, seed=seed).resolved(profile_times)
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--timing") from None
    run_timeout = _duration(timeout, "--timeout")
    stall_s = _duration(stall, "--stall")
    not_an_input(json_path, cassettes, "--json")
    not_an_input(html_path, cassettes, "--html")
    loaded = [(p, read_any(p)) for p in cassettes]
    try:
        trials = _trials(
            loaded, None if catalog == "none" else catalog, faults, seed=seed, stall=stall_s
        )
    except SsevcrError as e:
        raise click.BadParameter(str(e), param_hint="--fault") from None
    if not trials:
        raise click.UsageError("no faults to try (the catalogue is empty and no --fault)", ctx=ctx)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    err = Console(stderr=True, highlight=False)
    progress = Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=True,
    )
    with progress:
        task = progress.add_task("clean run", total=len(trials) + 1)

        def done(run: Run) -> None:
            label = run.trial.spec or "clean run"
            progress.update(task, advance=1, description=f"{label}: {run.verdict.value}")

        clean, runs = run_trials(
            loaded,
            trials,
            command,
            timing=shaped,
            seed=seed,
            timeout=run_timeout,
            jobs=jobs,
            compare=compare,
            on_done=done,
            cors=cors,
        )
    if not clean.result.success:
        why = "timed out" if clean.result.timed_out else f"exit code {clean.result.exit_code}"
        if clean.result.signal is not None:
            why = f"killed by signal {clean.result.signal}"
        tail = clean.stderr_tail.strip().splitlines()[-5:]
        raise click.ClickException(
            f"the clean run failed ({why}); the command must succeed on the clean replay first"
            + ("".join(f"\n  {line}" for line in tail) if tail else "")
        )  # exit 1
    for run in runs:
        run.allowed = run.verdict is not Verdict.OK and _allowed(run, allow)
    report = {
        "ssevcr": __version__,
        "cassettes": list(cassettes),
        "command": list(command),
        "catalog": catalog,
        "seed": seed,
        "timing": timing,
        "timeout_s": run_timeout,
        "compare": compare,
        "clean": clean.record(),
        "runs": [r.record() for r in runs],
        "summary": {v.value: sum(r.verdict is v for r in runs) for v in Verdict},
    }
    out = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
    out.print(
        f"sweep of {', '.join(cassettes)}: {len(runs)} faults, clean run {clean.duration_s:.2f} s"
    )
    out.print(_table(runs))
    bad = [r for r in runs if r.verdict is not Verdict.OK]
    for r in bad:
        note = " (allowed)" if r.allowed else ""
        last = r.stderr_tail.strip().splitlines()[-1:] or [""]
        exit_text = "timeout" if r.result.timed_out else f"exit {r.result.exit_code}"
        out.print(
            f"  {r.verdict.value:<7} {r.trial.spec}  [{exit_text}, {r.duration_s:.2f} s]"
            f"{note}  {last[0][:120]}",
            markup=False,
        )
    partial = [
        r
        for r in runs
        if r.trial.lossy
        and r.verdict is Verdict.OK
        and r.result.exit_code == 0
        and not r.same_output
    ]
    if partial and compare == "stdout":
        out.print(
            f"note: {len(partial)} lossy run(s) exited 0 with another output than the clean "
            "run (counted ok); if a non-zero exit is how your command reports a failure, "
            "use --compare exit",
            markup=False,
        )
    # written after the table: a file that cannot be written loses no result
    if json_path:
        write_text(json_path, json.dumps(report, indent=1) + "\n")
    if html_path:
        from .._report import sweep_html

        write_text(html_path, sweep_html(report))
    failing = [r for r in bad if not r.allowed]
    ctx.exit(1 if failing else 0)
