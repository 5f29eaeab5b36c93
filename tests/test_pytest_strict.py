"""``strict=True`` and ``--ssevcr-strict`` through real pytest sessions on the bundled cassettes:
a test that leaves interactions of its cassette unplayed fails, naming them; one that plays them
all passes; recording is never strict."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "cassettes" / "examples"

TESTS = """
import httpx, pytest


def play_first(cas):
    req = cas.cassette.interactions[0].request
    with httpx.Client() as client:
        r = client.post(req.url, content=req.body)
        assert r.content == cas.cassette.interactions[0].response.body


@pytest.mark.ssevcr("cassettes/two.msgpack", timing="instant", strict=True)
def test_plays_one_of_two(ssevcr_cassette):
    play_first(ssevcr_cassette)


@pytest.mark.ssevcr("cassettes/one.msgpack", timing="instant", strict=True)
def test_plays_all(ssevcr_cassette):
    play_first(ssevcr_cassette)


@pytest.mark.ssevcr("cassettes/two.msgpack", timing="instant")
def test_lenient(ssevcr_cassette):
    play_first(ssevcr_cassette)


@pytest.mark.ssevcr("cassettes/one.msgpack", strict="yes")
def test_bad_value():
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for var in ("SSEVCR_RECORD", "SSEVCR_TIMING"):
        monkeypatch.delenv(var, raising=False)
    from ssevcr import Cassette, load, save

    (pytester.path / "cassettes").mkdir()
    chat = load(EXAMPLES / "openai-chat-text.msgpack")
    other = load(EXAMPLES / "anthropic-text.msgpack")
    save(
        Cassette((*chat.interactions, *other.interactions)), pytester.path / "cassettes/two.msgpack"
    )
    shutil.copy(EXAMPLES / "openai-chat-text.msgpack", pytester.path / "cassettes/one.msgpack")
    pytester.makepyfile(test_strict=TESTS)
    return pytester


def test_strict_fails_on_interactions_never_played(project: pytest.Pytester) -> None:
    result = project.runpytest("-p", "no:cacheprovider", "-rA")
    out = result.stdout.str()
    result.assert_outcomes(passed=2, failed=2)
    assert "FAILED test_strict.py::test_plays_one_of_two" in out
    assert "ssevcr strict: 1 of 2 interactions of cassette '" in out
    assert "#2 POST https://api.anthropic.com/v1/messages" in out
    assert "strict must be True or False, got 'yes'" in out
    assert "Traceback" not in out


def test_the_option_makes_every_test_strict(project: pytest.Pytester) -> None:
    result = project.runpytest("-p", "no:cacheprovider", "-rA", "--ssevcr-strict")
    out = result.stdout.str()
    result.assert_outcomes(passed=1, failed=3)
    assert "FAILED test_strict.py::test_lenient" in out
    # once per failing test in the failures section (the short summary repeats the message in
    # full where pytest does not truncate it, as with CI set)
    failures = out.split("short test summary info")[0]
    assert failures.count("ssevcr strict: 1 of 2 interactions of cassette '") == 2
    assert "PASSED test_strict.py::test_plays_all" in out
