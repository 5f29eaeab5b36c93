"""The pytest sweep, through real pytest sessions (``pytester``) on the bundled OpenAI cassette:
``sweep=`` and ``--ssevcr-sweep`` parametrize a test over the cassette's fault catalogue, the
``ssevcr_fault`` fixture tells each case its fault, the terminal summary and
``--ssevcr-sweep-report`` give the verdicts (the same ``_verdict`` values and ``_report`` page as
``ssevcr sweep``), across xdist workers too.

The inner tests stream the recorded request with httpx (answered in process from the cassette)
and read it as two consumers do: ``careful`` fails on a cut, a bad status or content type, broken
JSON, a read timeout and a stream without ``finish_reason`` and ``[DONE]``; ``naive`` prints what
it got. Both state the same expectation (a lossy fault must raise, a lossless one must give the
clean text), so the careful one passes every case and the naive one is ``silent`` exactly where
it swallows data loss."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ssevcr._catalogue import catalogue
from ssevcr._store import load

ROOT = Path(__file__).resolve().parent.parent
CASSETTE = ROOT / "cassettes" / "examples" / "openai-chat-text.msgpack"
STALL = "2s"  # the long stalls; the short ones last 0.2 s, the consumers' read timeout is 1 s

CONSUMERS = """
import json, os
import httpx, pytest


def stream_text(cas, careful):
    req = cas.cassette.interactions[0].request
    timeout = httpx.Timeout(5.0, read=1.0)
    with httpx.Client(timeout=timeout) as client:
        with client.stream(req.method, req.url, content=req.body,
                           headers={"content-type": "application/json"}) as r:
            if careful and r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}")
            if careful and not r.headers.get("content-type", "").startswith("text/event-stream"):
                raise RuntimeError("not an event stream")
            text, finished, done = [], False, False
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    if careful:
                        break  # the stream's end: what follows does not matter
                    continue
                try:
                    payload = json.loads(data)
                except ValueError:
                    if careful:
                        raise
                    continue
                if careful and "error" in payload:
                    raise RuntimeError(payload["error"])
                for choice in payload.get("choices", []):
                    text.append((choice.get("delta") or {}).get("content") or "")
                    finished = finished or bool(choice.get("finish_reason"))
            if careful and not (finished and done):
                raise RuntimeError("the stream ended early")
            return "".join(text)


def expect(cas, fault, careful, clean):
    # a lossy fault must not end as a success with the clean text; a lossless one must
    if not fault.lossy:
        assert stream_text(cas, careful) == clean
        return
    try:
        text = stream_text(cas, careful)
    except Exception:
        return
    assert text != clean, "the clean text reported as a success"
"""

TESTS = (
    CONSUMERS
    + """
CLEAN = os.environ["SWEEP_CLEAN_TEXT"]


@pytest.mark.ssevcr("cassettes/chat.msgpack", sweep="quick", timing="instant", sweep_stall="2s")
def test_careful(ssevcr_cassette, ssevcr_fault):
    expect(ssevcr_cassette, ssevcr_fault, True, CLEAN)
    assert ssevcr_cassette.fired == ([ssevcr_fault.spec] if ssevcr_fault else [])


@pytest.mark.ssevcr("cassettes/chat.msgpack", sweep="quick", timing="instant", sweep_stall="2s")
def test_naive(ssevcr_cassette, ssevcr_fault):
    expect(ssevcr_cassette, ssevcr_fault, False, CLEAN)


def test_not_swept(ssevcr_fault):
    assert not ssevcr_fault and ssevcr_fault.spec is None and ssevcr_fault.kind == "clean"
"""
)


def clean_text() -> str:
    body = load(CASSETTE).interactions[0].response.body
    out = []
    for line in body.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                out.append((choice.get("delta") or {}).get("content") or "")
    return "".join(out)


def quick() -> list:
    return catalogue(load(CASSETTE), level="quick", seed=0, stall=2.0)


@pytest.fixture
def project(pt: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """conftest's inner project, with the cassette and its clean text."""
    monkeypatch.setenv("SWEEP_CLEAN_TEXT", clean_text())
    (pt.path / "cassettes").mkdir()
    shutil.copy(CASSETTE, pt.path / "cassettes" / "chat.msgpack")
    return pt


def report_of(path: Path) -> dict[str, dict[str, str]]:
    """test -> fault -> verdict, from a --ssevcr-sweep-report JSON file."""
    data = json.loads(path.read_text())
    return {t["command"][0]: {r["fault"]: r["verdict"] for r in t["runs"]} for t in data["tests"]}


def test_a_marker_sweep_parametrizes_judges_and_reports(project: pytest.Pytester) -> None:
    entries = quick()
    assert 12 <= len(entries) <= 30
    project.makepyfile(test_chat=TESTS)
    result = project.runpytest(
        "-p", "no:cacheprovider", "--ssevcr-sweep-report=sweep.json", "-v", "-rN"
    )
    out = result.stdout.str()
    # one clean case and one per catalogue fault, each named by its spec
    for e in entries:
        assert f"test_chat.py::test_careful[{e.spec}] PASSED" in out, e.spec
    assert "test_chat.py::test_careful[clean] PASSED" in out
    assert "test_chat.py::test_naive[clean] PASSED" in out
    assert "test_chat.py::test_not_swept PASSED" in out
    verdicts = report_of(project.path / "sweep.json")
    assert set(verdicts) == {"test_chat.py::test_careful", "test_chat.py::test_naive"}
    careful = verdicts["test_chat.py::test_careful"]
    assert careful == {e.spec: "ok" for e in entries}
    naive = verdicts["test_chat.py::test_naive"]
    assert set(naive) == {e.spec for e in entries}
    silent = {spec for spec, v in naive.items() if v == "silent"}
    broken = {spec for spec, v in naive.items() if v == "broken"}
    # the misses the sweep exists to find: the terminal event dropped, a clean cut before it,
    # the provider's error event ignored, a body that does not say it is a stream
    assert {"drop:event=last", "header:content-type=text/plain"} <= silent, silent
    assert any(s.startswith("truncate:after=") and s.endswith("end=close") for s in silent)
    assert any(s.startswith("error:after=") for s in silent)
    # a cut body and a stall past the read timeout make httpx raise: the naive one is ok there
    lossy = {e.spec for e in entries if e.lossy}
    assert all(naive[s] == "ok" for s in lossy if "end=abort" in s or "end=reset" in s)
    assert all(naive[s] == "ok" for s in lossy if s.startswith("status:"))  # no text at all
    assert silent <= lossy and broken <= {e.spec for e in entries if not e.lossy}
    # it reads on after [DONE]: a cut after the terminal event breaks it
    assert broken == {s for s in naive if s.startswith("truncate:after=last,end=")} - {
        "truncate:after=last,end=close"
    }, broken
    bad = len(silent) + len(broken)
    result.assert_outcomes(passed=2 * len(entries) + 3 - bad, failed=bad)
    assert result.ret == 1
    # the terminal summary: a row per test, then every case that is not ok, with why
    summary = out[out.index("= ssevcr sweep =") :]
    rows = {line.split()[0]: line.split()[1:] for line in summary.splitlines()[1:4]}
    n = str(len(entries))
    assert rows["test_chat.py::test_careful"] == [n, n, ".", ".", ".", "."], rows
    assert rows["test_chat.py::test_naive"][:4] == [
        n, str(len(entries) - bad), str(len(silent)), str(len(broken) or "."),
    ], rows  # fmt: skip
    for spec in silent:
        assert f"silent  test_chat.py::test_naive[{spec}] (lossy)" in summary, spec
    for spec in broken:
        assert f"broken  test_chat.py::test_naive[{spec}] (lossless)" in summary, spec
    assert "the clean text reported as a success" in summary
    assert "test_careful[" not in summary


def test_the_html_report_is_ssevcr_sweeps_page(project: pytest.Pytester) -> None:
    project.makepyfile(test_chat=TESTS)
    project.runpytest("-p", "no:cacheprovider", "--ssevcr-sweep-report=out/sweep.html")
    page = (project.path / "out" / "sweep.html").read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page
    assert "<code>test_chat.py::test_naive</code>" in page
    assert "Verdicts by fault kind" in page and "drop:event=last" in page
    assert "cassettes/chat.msgpack" in page  # the cassette each test swept
    assert "<svg" in page  # the timeline of what the replay sent


SWEPT_BY_OPTION = (
    CONSUMERS
    + """
CLEAN = os.environ["SWEEP_CLEAN_TEXT"]


@pytest.mark.ssevcr("cassettes/chat.msgpack", timing="instant", sweep_stall="2s")
def test_sync(ssevcr_cassette, ssevcr_fault):
    expect(ssevcr_cassette, ssevcr_fault, True, CLEAN)


@pytest.mark.ssevcr("cassettes/chat.msgpack", timing="instant", sweep_stall="2s")
async def test_async(ssevcr_cassette, ssevcr_fault):
    import asyncio

    await asyncio.sleep(0)
    expect(ssevcr_cassette, ssevcr_fault, True, CLEAN)


@pytest.mark.ssevcr("cassettes/chat.msgpack", timing="instant", sweep_stall="2s")
def test_dies_on_a_status(ssevcr_cassette, ssevcr_fault):
    if ssevcr_fault.kind == "status":
        os._exit(3)  # the worker dies: a crash
    expect(ssevcr_cassette, ssevcr_fault, True, CLEAN)
"""
)


def test_the_option_sweeps_every_marked_test_across_xdist_workers(
    project: pytest.Pytester,
) -> None:
    entries = quick()
    statuses = [e.spec for e in entries if e.kind == "status"]
    assert statuses
    project.makepyfile(test_opt=SWEPT_BY_OPTION)
    result = project.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "--ssevcr-sweep=quick",
        "--ssevcr-sweep-report=sweep.json",
    )  # fmt: skip
    out = result.stdout.str()
    assert "2 workers" in out
    verdicts = report_of(project.path / "sweep.json")
    assert verdicts["test_opt.py::test_sync"] == {e.spec: "ok" for e in entries}
    assert verdicts["test_opt.py::test_async"] == {e.spec: "ok" for e in entries}
    dies = verdicts["test_opt.py::test_dies_on_a_status"]
    assert {s for s, v in dies.items() if v == "crash"} == set(statuses)
    assert all(v == "ok" for s, v in dies.items() if s not in statuses)
    assert "crash   test_opt.py::test_dies_on_a_status[status:" in out


def test_no_cassette_yet_gives_only_the_clean_case(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_new="""
        import httpx, pytest

        @pytest.mark.ssevcr(sweep="quick")
        def test_new(ssevcr_cassette, ssevcr_fault):
            assert not ssevcr_fault
            httpx.post("https://api.openai.com/v1/chat/completions", json={})
        """
    )
    result = project.runpytest("-p", "no:cacheprovider", "-v", "-rN")
    result.stdout.fnmatch_lines(["*test_new.py::test_new?clean? FAILED*"])
    result.stdout.fnmatch_lines(["*test_new.msgpack' does not exist; record it*"])
    result.stdout.fnmatch_lines(["*test_new.py::test_new: the clean case failed*"])
    result.assert_outcomes(failed=1)


def test_bad_sweep_options_fail_cleanly(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_level="""
        import pytest

        @pytest.mark.ssevcr("cassettes/chat.msgpack", sweep="most")
        def test_level():
            pass
        """,
        test_param="""
        import pytest

        @pytest.mark.ssevcr(sweep="quick")
        @pytest.mark.parametrize("n", [1, 2])
        def test_parametrized(n):
            pass
        """,
        test_stall="""
        import pytest

        @pytest.mark.ssevcr("cassettes/chat.msgpack", sweep="quick", sweep_stall="-1s")
        def test_stall():
            pass
        """,
    )
    result = project.runpytest("-p", "no:cacheprovider")
    out = result.stdout.str() + result.stderr.str()
    assert "sweep='most': use 'quick', 'default', 'full'" in out
    assert "a parametrized test sweeps a cassette named in the marker" in out
    assert "bad sweep_stall duration '-1s'" in out
    assert "3 errors" in out and "Traceback" not in out
    result = project.runpytest("-p", "no:cacheprovider", "--ssevcr-sweep-stall=soon")
    assert result.ret == 4  # a usage error
    assert "bad --ssevcr-sweep-stall duration 'soon'" in result.stderr.str()


PATIENT = """
import httpx, pytest


@pytest.mark.ssevcr("cassettes/chat.msgpack", sweep="quick", timing="instant", sweep_stall="60s")
def test_patient(ssevcr_cassette, ssevcr_fault):
    req = ssevcr_cassette.cassette.interactions[0].request
    got = b""
    try:
        with httpx.Client(timeout=None) as client:  # no read timeout: a stall is waited out
            with client.stream(req.method, req.url, content=req.body) as r:
                for piece in r.iter_bytes():
                    got += piece
                    if b"data: [DONE]" in got:
                        break  # the stream's end
    except httpx.TransportError:
        if not ssevcr_fault.lossy:
            raise
    if not ssevcr_fault.lossy:
        assert b"[DONE]" in got
"""


def test_a_test_that_hangs_on_a_long_stall_is_a_hang(project: pytest.Pytester) -> None:
    """pytest-timeout stops a case that waits out a stall longer than any timeout (60 s here,
    3 s allowed per test): the summary and the report call it ``hang``, and only those cases."""
    entries = catalogue(load(CASSETTE), level="quick", seed=0, stall=60.0)
    long_stalls = {e.spec for e in entries if e.kind == "stall" and e.lossy}
    assert long_stalls  # before the first event and mid-stream
    project.makepyfile(test_patient=PATIENT)
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "--timeout=3", "--timeout-method=signal",
        "--ssevcr-sweep-report=sweep.json",
    )  # fmt: skip
    out = result.stdout.str()
    verdicts = report_of(project.path / "sweep.json")["test_patient.py::test_patient"]
    assert verdicts == {e.spec: "hang" if e.spec in long_stalls else "ok" for e in entries}
    summary = out[out.index("= ssevcr sweep =") :]
    row = next(line.split() for line in summary.splitlines() if "::test_patient" in line)
    assert row[5] == str(len(long_stalls)), row  # the hang column
    for spec in long_stalls:
        assert f"hang    test_patient.py::test_patient[{spec}]" in summary, summary
    assert result.ret == 1
