"""The marker's ``config=``: configured responses answer, in process, what the test's cassette
does not; through a real pytest session and the official openai SDK."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TESTS = """
import openai, pytest, yaml

SPEC = {r["name"]: r["content"] for r in yaml.safe_load(open("mock.yaml"))["responses"]}


def ask(prompt):
    client = openai.OpenAI(max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt}], stream=True)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


@pytest.mark.ssevcr(config="mock.yaml", timing="instant")
def test_configured(ssevcr_cassette):
    assert ask("Tell me a story") == SPEC["story"]["text"]
    assert ask("Hi") == SPEC["short-stream"]["text"]
    rules = [p.cassette.rsplit("#", 1)[1] for p in ssevcr_cassette.plays]
    assert rules == ["story", "short-stream"]


@pytest.mark.ssevcr(config="mock.yaml", timing="instant", faults=["truncate:after=3,end=abort"])
def test_configured_with_a_fault():
    with pytest.raises(openai.APIConnectionError):
        ask("Tell me a story")


@pytest.mark.ssevcr(config="mock.yaml", timing="instant")
def test_a_miss_names_the_closest_rule():
    ask("Hello")
"""


def test_marker_config(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SSEVCR_RECORD", "SSEVCR_TIMING", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    shutil.copy(ROOT / "examples" / "mock.yaml", pytester.path / "mock.yaml")
    pytester.makepyfile(test_cfg=TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    out = result.stdout.str()
    result.assert_outcomes(passed=2, failed=1)
    assert "FAILED test_cfg.py::test_a_miss_names_the_closest_rule" in out
    assert "closest: 'story', where contains 'story': the last user message is 'Hello'" in out
    assert "Traceback" not in out
