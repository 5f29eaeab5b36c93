"""``pytest --ssevcr-unused`` through real pytest sessions, alone and under pytest-xdist (``-n 2``:
the workers' plays reach the controller): unused cassettes and interactions are reported; the
cassettes of deselected and skipped tests are not judged; folders no collected test uses are not
looked at; the exit code changes only with ``--ssevcr-strict``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ssevcr import Cassette, load, save

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "cassettes" / "examples"

HELPER = """
import httpx, pytest


def replay_of(path, n=0):
    from ssevcr import load
    req = load(path).interactions[n].request
    with httpx.Client() as client:
        return client.post(req.url, content=req.body)
"""

TEST_U = (
    HELPER
    + """

@pytest.mark.ssevcr(timing="instant")
def test_plays_one():
    replay_of("cassettes/test_u/test_plays_one.msgpack", 0)


@pytest.mark.ssevcr(timing="instant")
def test_plays_all():
    replay_of("cassettes/test_u/test_plays_all.msgpack", 0)


@pytest.mark.ssevcr(timing="instant")
def test_deselected():
    replay_of("cassettes/test_u/test_deselected.msgpack", 0)


@pytest.mark.skip(reason="not today")
@pytest.mark.ssevcr(timing="instant")
def test_skipped():
    pass


@pytest.mark.ssevcr("cassettes/shared/s.msgpack", timing="instant")
def test_shared_first():
    replay_of("cassettes/shared/s.msgpack", 0)
"""
)

TEST_V = (
    HELPER
    + """

@pytest.mark.ssevcr("cassettes/shared/s.msgpack", timing="instant", allow_repeats=True)
def test_shared_second():
    replay_of("cassettes/shared/s.msgpack", 1)
"""
)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for var in ("SSEVCR_RECORD", "SSEVCR_TIMING"):
        monkeypatch.delenv(var, raising=False)
    chat = load(EXAMPLES / "openai-chat-text.msgpack")
    other = load(EXAMPLES / "anthropic-text.msgpack")
    two = Cassette((*chat.interactions, *other.interactions))
    folder = pytester.path / "cassettes" / "test_u"
    folder.mkdir(parents=True)
    for name in ("test_plays_one", "s"):
        save(
            two, (folder if name != "s" else pytester.path / "cassettes/shared") / f"{name}.msgpack"
        )
    for name in ("test_plays_all", "test_deselected", "test_skipped", "orphan"):
        shutil.copy(EXAMPLES / "openai-chat-text.msgpack", folder / f"{name}.msgpack")
    (pytester.path / "cassettes" / "other").mkdir()
    shutil.copy(EXAMPLES / "gemini-text.msgpack", pytester.path / "cassettes/other/else.msgpack")
    pytester.makepyfile(test_u=TEST_U, test_v=TEST_V)
    return pytester


def _section(out: str) -> str:
    assert "ssevcr unused" in out, out
    return out.split("ssevcr unused", 1)[1]


def _check(section: str) -> None:
    assert "unused cassette: cassettes/test_u/orphan.msgpack" in section
    assert (
        "unused interactions: 1 of 2 in cassettes/test_u/test_plays_one.msgpack:\n"
        "  #2 POST https://api.anthropic.com/v1/messages"
    ) in section
    # played by two tests (two xdist workers): wholly used
    assert "s.msgpack" not in section.split("not judged")[0]
    assert "test_plays_all" not in section
    assert "else.msgpack" not in section  # a folder no collected test uses
    assert (
        "not judged: 2 test(s) with the ssevcr marker did not open their cassettes (deselected, "
        "skipped or failed before): cassettes/test_u/test_deselected.msgpack, "
        "cassettes/test_u/test_skipped.msgpack"
    ) in section
    assert "unused cassette: cassettes/test_u/test_deselected" not in section
    assert "checked: the .msgpack/.json files of the folders" in section


def test_unused_in_one_process(project: pytest.Pytester) -> None:
    args = ("-p", "no:cacheprovider", "--ssevcr-unused", "-k", "not deselected")
    result = project.runpytest(*args)
    result.assert_outcomes(passed=4, skipped=1, deselected=1)
    assert result.ret == pytest.ExitCode.OK  # a report, not a failure
    _check(_section(result.stdout.str()))
    plain = project.runpytest("-p", "no:cacheprovider", "-k", "not deselected")
    assert "ssevcr unused" not in plain.stdout.str()


def test_unused_under_xdist(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(
        "-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider", "--ssevcr-unused", "-k",
        "not deselected",
    )  # fmt: skip
    result.assert_outcomes(passed=4, skipped=1)
    assert result.ret == pytest.ExitCode.OK
    _check(_section(result.stdout.str()))


def test_strict_makes_unused_cassettes_fail_the_session(project: pytest.Pytester) -> None:
    # every test that runs plays all of its cassette; only the orphan file is left
    args = ("-p", "no:cacheprovider", "--ssevcr-unused", "-k", "plays_all")
    result = project.runpytest(*args)
    result.assert_outcomes(passed=1, deselected=5)
    assert result.ret == pytest.ExitCode.OK
    result = project.runpytest(*args, "--ssevcr-strict")
    result.assert_outcomes(passed=1, deselected=5)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    section = _section(result.stdout.str())
    assert "unused cassette: cassettes/test_u/orphan.msgpack" in section
    assert "unused interactions" not in section
    # everything used: the report says so, and strict passes
    (project.path / "cassettes/test_u/orphan.msgpack").unlink()
    result = project.runpytest(*args, "--ssevcr-strict")
    assert result.ret == pytest.ExitCode.OK
    assert "every cassette and interaction was played" in _section(result.stdout.str())
