"""ssevcr sweep, end to end: real replay servers, real consumer processes, the verdicts.

The three consumers in examples/sweep/ are the contract of the README's "Which faults does my
code survive?": the naive one swallows a missing terminal event and a cut at an event boundary
(silent), the careful one survives every fault of the catalogue, the bad line splitter breaks
under re-chunking (broken)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from stream_helpers import CLI, run_sweep

from ssevcr import _store
from ssevcr._cassette import Cassette, Response
from ssevcr._verdict import Result, Verdict, judge

ROOT = Path(__file__).resolve().parent.parent
CASSETTE = ROOT / "cassettes" / "examples" / "openai-chat-text.msgpack"


def sweep(tmp_path: Path, consumer: str, *args: str) -> tuple[int, dict, str]:
    page = tmp_path / f"{consumer}.html"
    r, data = run_sweep(
        CASSETTE,
        ROOT / "examples" / "sweep" / f"{consumer}.py",
        tmp_path / f"{consumer}.json",
        *["--html", str(page), *args],
    )
    if data:
        html = page.read_text()
        assert html.startswith("<!doctype html>") and "<script" not in html
        for run in data["runs"]:
            assert {"fault", "kind", "lossy", "verdict", "exit_code", "duration_s"} <= set(run)
    return r.returncode, data, r.stdout


def verdicts(data: dict) -> dict[str, str]:
    return {run["fault"]: run["verdict"] for run in data["runs"]}


QUICK = ["--catalog", "quick", "-j", "2", "--timeout", "30s", "--stall", "8s"]


def test_the_naive_consumer_is_silent_on_a_lost_terminal_event(tmp_path: Path) -> None:
    code, data, out = sweep(tmp_path, "naive", *QUICK)
    assert code == 1, out
    got = verdicts(data)
    assert got["drop:event=last"] == "silent"  # [DONE] never came; it printed the whole text
    cut = [f for f in got if f.startswith("truncate:after=") and f.endswith(",end=close")]
    assert any(got[f] == "silent" for f in cut), got  # cut before [DONE], cleanly
    assert data["clean"]["exit_code"] == 0 and data["summary"]["silent"] >= 2
    assert "silent" in out and "drop:event=last" in out


def test_the_careful_consumer_passes_every_fault(tmp_path: Path) -> None:
    code, data, out = sweep(tmp_path, "careful", *QUICK)
    assert code == 0, out
    assert data["runs"] and all(run["verdict"] == "ok" for run in data["runs"]), verdicts(data)
    lossy = [run for run in data["runs"] if run["lossy"]]
    # it never reported the clean result after a loss: it failed, or (a middle event dropped or
    # doubled, which an OpenAI stream cannot show) printed what it got
    assert lossy and all(run["exit_code"] != 0 or not run["same_output"] for run in lossy)
    assert sum(run["exit_code"] != 0 for run in lossy) >= len(lossy) - 2


def test_a_bad_line_splitter_is_broken_under_rechunking(tmp_path: Path) -> None:
    code, data, _ = sweep(
        tmp_path,
        "splitter",
        "--catalog",
        "none",
        "--fault",
        "rechunk:hostile",
        "--fault",
        "rechunk:size=1",
        "--fault",
        "drop:event=last",
    )
    assert code == 1
    got = verdicts(data)
    assert got == {
        "rechunk:hostile": "broken",
        "rechunk:size=1": "broken",
        "drop:event=last": "silent",
    }
    # --allow accepts known ones: a fault kind, a spec or a verdict
    code, _, _ = sweep(
        tmp_path,
        "splitter",
        "--catalog",
        "none",
        "--fault",
        "rechunk:hostile",
        "--allow",
        "rechunk",
    )
    assert code == 0


def test_a_hang_is_a_hang_and_the_run_is_killed(tmp_path: Path) -> None:
    code, data, _ = sweep(
        tmp_path,
        "naive",
        "--catalog",
        "none",
        "--timeout",
        "3s",
        "--fault",
        "stall:before=3,for=forever",
    )
    assert code == 1
    (run,) = data["runs"]
    assert run["verdict"] == "hang" and run["timed_out"] and 2.5 < run["duration_s"] < 15


def test_a_clean_run_that_fails_is_refused(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            *CLI,
            "sweep",
            str(CASSETTE),
            "--catalog",
            "quick",
            "--",
            sys.executable,
            "-c",
            "import sys; sys.exit(3)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and "the clean run failed (exit code 3)" in r.stderr
    assert "Traceback" not in r.stderr


def test_usage_errors_are_clean(tmp_path: Path) -> None:
    for args in (
        ["--", "true"],
        ["--timeout", "soon", "--", "true"],
        ["--fault", "nope", "--", "true"],
    ):
        r = subprocess.run(
            [*CLI, "sweep", str(CASSETTE), *args[:-2], *args[-2:]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode in (0, 1, 2) and "Traceback" not in r.stderr
    r = subprocess.run([*CLI, "sweep", str(CASSETTE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "after --" in r.stderr


@pytest.mark.parametrize(
    ("lossy", "run", "verdict"),
    [
        (True, Result(0, b"text"), Verdict.SILENT),
        (True, Result(1, b""), Verdict.OK),
        (True, Result(0, b"partial"), Verdict.OK),
        (False, Result(0, b"text"), Verdict.OK),
        (False, Result(0, b"txet"), Verdict.BROKEN),
        (False, Result(2, b"text"), Verdict.BROKEN),
        (False, Result(None, b"", timed_out=True), Verdict.HANG),
        (True, Result(None, b"", signal=9), Verdict.CRASH),
    ],
)
def test_verdicts(lossy: bool, run: Result, verdict: Verdict) -> None:
    assert judge(Result(0, b"text"), run, lossy=lossy) is verdict


def test_compare_modes() -> None:
    clean = Result(0, b"text")
    assert judge(clean, Result(0, b"partial"), lossy=True, compare="exit") is Verdict.SILENT
    assert judge(clean, Result(0, b"x"), lossy=False, compare="exit") is Verdict.OK
    assert judge(clean, Result(1, b"x"), lossy=False, compare="none") is Verdict.OK


def _late_stream(path: Path, late: float) -> None:
    """The example stream with every chunk ``late`` seconds later: a recording to fit a timing
    profile to (its first event comes after ``late``)."""
    (recorded,) = _store.load(CASSETTE).interactions
    response = recorded.response
    late_response = Response.from_chunks(
        response.status,
        [(c.at + late, c.data) for c in response.chunks],
        reason=response.reason,
        headers=response.headers,
        headers_at=response.headers_at + late,
        end=replace(response.end, at=response.end.at + late),
    )
    _store.save(Cassette((replace(recorded, response=late_response),)), path)


def test_a_timing_profile_fitted_to_a_recording_times_every_run(tmp_path: Path) -> None:
    """``--timing profile:FILE`` as replay takes it: fitted once, it paces the clean run and
    every fault's run (each waits the fitted first-event time); a file that cannot be fitted is a
    clean usage error."""
    late = tmp_path / "late.msgpack"
    _late_stream(late, 1.5)
    code, data, out = sweep(
        tmp_path,
        "careful",
        "--catalog",
        "none",
        "--fault",
        "drop:event=last",
        "--timing",
        f"profile:{late}",
    )
    assert code == 0, out
    assert data["timing"] == f"profile:{late}"
    (run,) = data["runs"]
    assert run["verdict"] == "ok" and run["exit_code"] != 0  # it noticed the lost [DONE]
    assert data["clean"]["exit_code"] == 0 and data["clean"]["duration_s"] >= 1.5
    assert run["duration_s"] >= 1.5
    for bad in (tmp_path / "missing.msgpack", CASSETTE.parent / "README.md"):
        r = subprocess.run(
            [*CLI, "sweep", str(CASSETTE), "--timing", f"profile:{bad}", "--", "true"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2 and "--timing" in r.stderr and str(bad) in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
