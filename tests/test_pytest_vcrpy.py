"""What vcrpy users expect of the marker, through real pytest sessions: several cassettes per test
(searched in order, the first recorded into), the recording hooks (``before_record_request`` /
``before_record_response``, redaction after them), custom matchers, and expiry (``max_age`` /
``on_expiry``, from each interaction's ``recorded_at``). Recording runs against a real local
upstream (tests/upstream.py); replay runs with it stopped."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_intercept import SECRET, stop
from upstream import ROOT, Upstream, fixture_body

from ssevcr import Cassette, load, save
from ssevcr._expiry import RECORDED_AT, recorded_at
from ssevcr.cli import main

EXAMPLES = ROOT / "cassettes" / "examples"
RUN = ("-p", "no:cacheprovider", "-rA")

HEADER = f"""
import json, os
import httpx, pytest

BASE = os.environ.get("SSEVCR_TEST_UPSTREAM", "http://127.0.0.1:9")
SECRET = {SECRET!r}
STEER = {{"x-upstream-fixture": "openai-chat/text.sse", "x-upstream-chunks": "6",
          "x-upstream-gap-ms": "5"}}


def post(path, body, **headers):
    with httpx.Client() as client:
        return client.post(BASE + path, json=body, headers={{**STEER, **headers}})


def replay_of(cas_path, n=0):
    from ssevcr import load
    req = load(cas_path).interactions[n].request
    with httpx.Client() as client:
        json_type = {{"content-type": "application/json"}}
        return client.post(req.url, content=req.body, headers=json_type)
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for var in ("SSEVCR_RECORD", "SSEVCR_TIMING", "SSEVCR_TEST_UPSTREAM"):
        monkeypatch.delenv(var, raising=False)
    (pytester.path / "cassettes").mkdir()
    return pytester


@pytest.fixture
def upstream(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    up = Upstream().start()
    monkeypatch.setenv("SSEVCR_TEST_UPSTREAM", up.url)
    try:
        yield up
    finally:
        stop(up)


def _answer(body: bytes) -> Cassette:
    """The bundled openai chat cassette with its response body replaced (same request)."""
    chat = load(EXAMPLES / "openai-chat-text.msgpack").interactions[0]
    from ssevcr import Response

    response = Response.from_chunks(
        200, [(0.01, body)], headers=(("content-type", "text/event-stream"),), end=None
    )
    return Cassette((replace(chat, response=response),))


# -- several cassettes -----------------------------------------------------------------------

SEVERAL = (
    HEADER
    + """

@pytest.mark.ssevcr("cassettes/a.msgpack", "cassettes/b.msgpack", timing="instant")
def test_first_named_wins():
    assert replay_of("cassettes/a.msgpack").content == b"data: from a\\n\\n"


@pytest.mark.ssevcr("cassettes/b.msgpack", "cassettes/a.msgpack", timing="instant")
def test_order_is_the_markers():
    assert replay_of("cassettes/a.msgpack").content == b"data: from b\\n\\n"


@pytest.mark.ssevcr("cassettes/b.msgpack")
@pytest.mark.ssevcr("cassettes/a.msgpack", timing="instant")
def test_several_markers_top_first():
    assert replay_of("cassettes/a.msgpack").content == b"data: from b\\n\\n"


@pytest.mark.ssevcr("cassettes/a.msgpack", "cassettes/b.msgpack", timing="instant")
def test_used_up_first_then_the_next(ssevcr_cassette):
    assert replay_of("cassettes/a.msgpack").content == b"data: from a\\n\\n"
    assert replay_of("cassettes/a.msgpack").content == b"data: from b\\n\\n"
    names = [p.cassette.rsplit("/", 1)[1] for p in ssevcr_cassette.plays]
    assert names == ["a.msgpack", "b.msgpack"]


@pytest.mark.ssevcr("cassettes/a.msgpack", "cassettes/chat.msgpack", timing="instant", strict=True)
def test_strict_counts_every_cassette():
    assert replay_of("cassettes/a.msgpack").content == b"data: from a\\n\\n"


@pytest.mark.ssevcr("cassettes/a.msgpack", "cassettes/missing.msgpack")
def test_a_further_cassette_must_exist():
    pass
"""
)


def test_several_cassettes_are_searched_in_order(project: pytest.Pytester) -> None:
    save(_answer(b"data: from a\n\n"), project.path / "cassettes/a.msgpack")
    save(_answer(b"data: from b\n\n"), project.path / "cassettes/b.msgpack")
    shutil.copy(EXAMPLES / "anthropic-text.msgpack", project.path / "cassettes/chat.msgpack")
    project.makepyfile(test_several=SEVERAL)
    result = project.runpytest(*RUN)
    out = result.stdout.str()
    result.assert_outcomes(passed=4, failed=1, errors=1)
    assert "FAILED test_several.py::test_strict_counts_every_cassette" in out
    # strict names the cassette and the place in it of what was never played
    assert "ssevcr strict: 1 of 1 interactions of cassette '" in out
    assert "chat.msgpack' never played:\n  #1 POST https://api.anthropic.com/v1/messages" in out
    assert "missing.msgpack' (cassette 2 of this test) does not exist" in out
    assert "Traceback" not in out


RECORD_FIRST = (
    HEADER
    + """

@pytest.mark.ssevcr("cassettes/new.msgpack", "cassettes/a.msgpack", timing="instant", strict=True)
def test_mixed(ssevcr_cassette):
    assert replay_of("cassettes/a.msgpack").content == b"data: from a\\n\\n"
    body = post("/v1/chat/completions", {"model": "gpt-4o", "stream": True}).content
    assert body == open("expected.sse", "rb").read()
"""
)


def test_recording_goes_to_the_first_cassette(project: pytest.Pytester, upstream: Upstream) -> None:
    a = project.path / "cassettes/a.msgpack"
    save(_answer(b"data: from a\n\n"), a)
    before = a.read_bytes()
    (project.path / "expected.sse").write_bytes(fixture_body("openai-chat/text.sse"))
    project.makepyfile(test_rec=RECORD_FIRST)
    result = project.runpytest(*RUN, "--ssevcr-record=new_episodes")
    result.assert_outcomes(passed=1)
    assert len(upstream.exchanges) == 1  # a.msgpack answered the other request
    assert a.read_bytes() == before
    new = load(project.path / "cassettes/new.msgpack")
    assert len(new) == 1 and new.interactions[0].request.path == "/v1/chat/completions"
    stop(upstream)
    result = project.runpytest(*RUN)  # both replay, the upstream gone; strict holds
    result.assert_outcomes(passed=1)


# -- hooks -------------------------------------------------------------------------------------

HOOKS = (
    HEADER
    + """

def smuggle(request):
    if request.path == "/health":
        return None                                   # dropped: never recorded
    request.set_header("x-team", None)
    request.set_header("authorization", "Bearer " + SECRET)   # put back by a hook ...
    body = json.loads(request.body)
    body["api_key"] = SECRET                          # ... and into the body
    request.body = json.dumps(body).encode()
    return request


def stamp(response):
    response.set_header("x-request-id", "fixed")
    response.chunks[0] = response.chunks[0].replace(b"chatcmpl", b"CHATCMPL")
    return response


def drop_json(response):
    return None if "json" in (response.header("content-type") or "") else response


@pytest.mark.ssevcr(before_record_request=smuggle, before_record_response=stamp)
def test_hooked():
    team = {"x-team": "blue"}
    assert post("/v1/chat/completions", {"model": "gpt-4o"}, **team).status_code == 200
    assert post("/health", {"ping": 1}).status_code == 200


@pytest.mark.ssevcr(before_record_response=drop_json)
def test_dropped_by_status():
    post("/v1/chat/completions", {"model": "gpt-4o"}, **{"x-upstream-json": "1"})


def whole_body(response):
    response.body = b"nope"
    return response


@pytest.mark.ssevcr(before_record_response=whole_body)
def test_a_streamed_body_is_edited_by_chunk():
    post("/v1/chat/completions", {"model": "gpt-4o"})


@pytest.mark.ssevcr(before_record_request=lambda r: "not a request")
def test_a_wrong_return():
    post("/v1/chat/completions", {"model": "gpt-4o"})
"""
)

CONFTEST_HOOK = """
import pytest


def untouched(request):
    request.set_header("x-seen-by-the-hook", "1")
    return request


@pytest.fixture(scope="module")
def ssevcr_config():
    return {"before_record_request": untouched}
"""

PLAIN = (
    HEADER
    + """

@pytest.mark.ssevcr
def test_plain():
    post("/v1/chat/completions", {"model": "gpt-4o"})
"""
)


def test_hooks_edit_and_drop_and_redaction_runs_after_them(
    project: pytest.Pytester, upstream: Upstream
) -> None:
    project.makepyfile(test_hooks=HOOKS)
    (project.path / "sub").mkdir()
    (project.path / "sub" / "conftest.py").write_text(CONFTEST_HOOK)
    (project.path / "sub" / "test_plain.py").write_text(PLAIN)
    result = project.runpytest(*RUN, "--ssevcr-record=once")
    out = result.stdout.str()
    result.assert_outcomes(passed=3, failed=2)
    assert "a streamed response (6 chunks) is edited chunk by chunk" in out
    assert "before_record_request must return the request or None, got 'not a request'" in out
    assert "Traceback" not in out
    folder = project.path / "cassettes" / "test_hooks"
    for f in [*folder.iterdir(), *(project.path / "cassettes").rglob("*.msgpack")]:
        assert SECRET.encode() not in f.read_bytes(), f
    hooked = load(folder / "test_hooked.msgpack")
    assert len(hooked) == 1  # /health was dropped
    inter = hooked.interactions[0]
    assert inter.request.header("authorization") == "REDACTED"
    assert b'"api_key": "REDACTED"' in inter.request.body
    assert inter.request.header("x-team") is None
    body = fixture_body("openai-chat/text.sse")
    sent = [d for _, d in upstream.exchanges[0].sent]
    assert b"".join(sent) == body and len(sent) == 6
    # the first chunk as the hook edited it, every other byte as the upstream sent it, in the
    # same chunks
    assert inter.response.body == sent[0].replace(b"chatcmpl", b"CHATCMPL") + b"".join(sent[1:])
    assert list(inter.response.chunk_sizes) == [len(d) for d in sent]
    assert inter.response.header("x-request-id") == "fixed"
    assert not (folder / "test_dropped_by_status.msgpack").exists()  # nothing left to save
    plain = load(project.path / "cassettes" / "test_plain" / "test_plain.msgpack").interactions[0]
    assert plain.request.header("x-seen-by-the-hook") == "1"  # ssevcr_config's hook
    assert plain.response.body == body  # no response hook: the bytes as they came
    assert RECORDED_AT in plain.meta and recorded_at(plain) is not None


# -- custom matchers -------------------------------------------------------------------------

MATCHERS = (
    HEADER
    + """

def same_model(recorded, live):
    assert json.loads(recorded.body)["model"] == json.loads(live.body)["model"], "another model"
    return True


def never(recorded, live):
    return False


def ask(model, question):
    with httpx.Client() as client:
        messages = [{"role": "user", "content": question}]
        return client.post("https://api.openai.com/v1/chat/completions",
                           json={"model": model, "messages": messages})


@pytest.mark.ssevcr("cassettes/chat.msgpack", timing="instant",
                    match_on=("method", "path", same_model))
def test_matches_on_the_model_only(ssevcr_cassette):
    assert ask("gpt-4o-2024-08-06", "anything at all").status_code == 200
    assert len(ssevcr_cassette.plays) == 1


@pytest.mark.ssevcr("cassettes/chat.msgpack", timing="instant",
                    match_on=["method", "path", same_model])
def test_the_miss_names_the_matcher():
    ask("gpt-5", "anything")


@pytest.mark.ssevcr("cassettes/chat.msgpack", timing="instant", match_on=["method", never])
def test_a_false_matcher():
    ask("gpt-4o-2024-08-06", "anything")
"""
)


def test_custom_matchers(project: pytest.Pytester) -> None:
    shutil.copy(EXAMPLES / "openai-chat-text.msgpack", project.path / "cassettes/chat.msgpack")
    project.makepyfile(test_match=MATCHERS)
    result = project.runpytest(*RUN)
    out = result.stdout.str()
    result.assert_outcomes(passed=1, failed=2)
    assert "    - matcher same_model: another model" in out
    assert "    - matcher never: returned False" in out
    assert "Traceback" not in out


# -- expiry ------------------------------------------------------------------------------------

EXPIRY = (
    HEADER
    + """

@pytest.mark.ssevcr("cassettes/old.msgpack", timing="instant", max_age="30d")
def test_warns():
    replay_of("cassettes/old.msgpack")


@pytest.mark.ssevcr("cassettes/old.msgpack", timing="instant", max_age=3600, on_expiry="fail")
def test_fails():
    replay_of("cassettes/old.msgpack")


@pytest.mark.ssevcr("cassettes/undated.msgpack", timing="instant", max_age=1, on_expiry="fail")
def test_undated_never_expires():
    replay_of("cassettes/undated.msgpack")


@pytest.mark.ssevcr("cassettes/old.msgpack", timing="instant", max_age="two weeks")
def test_bad_age():
    pass
"""
)


def _dated(source: Path, when: str) -> Cassette:
    cassette = load(source)
    return Cassette(
        tuple(replace(i, meta={**i.meta, RECORDED_AT: when}) for i in cassette.interactions)
    )


def test_expiry_warns_fails_and_undated_never_expires(project: pytest.Pytester) -> None:
    save(
        _dated(EXAMPLES / "openai-chat-text.msgpack", "2020-01-01T00:00:00Z"),
        project.path / "cassettes/old.msgpack",
    )
    shutil.copy(EXAMPLES / "openai-chat-text.msgpack", project.path / "cassettes/undated.msgpack")
    project.makepyfile(test_exp=EXPIRY)
    result = project.runpytest(*RUN)
    out = result.stdout.str()
    result.assert_outcomes(passed=2, errors=2)
    assert "ExpiredCassetteWarning: ssevcr: 1 of 1 interactions of cassette '" in out
    assert "old.msgpack' are older than 30.0 days (the oldest, #1, " in out
    assert "expired (max_age, on_expiry='fail'): 1 of 1 interactions" in out
    assert "bad max_age (e.g. 30d, 12h, 90s) 'two weeks'" in out
    assert "Traceback" not in out
    # the options make every test strict about age
    result = project.runpytest(
        *RUN, "--ssevcr-max-age=30d", "--ssevcr-on-expiry=fail", "-k", "warns"
    )
    result.assert_outcomes(errors=1)
    bad = project.runpytest(*RUN, "--ssevcr-max-age=soon")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "--ssevcr-max-age" in bad.stderr.str()


REREC = (
    HEADER
    + """

@pytest.mark.ssevcr(timing="instant", max_age="1d", on_expiry="rerecord")
def test_chat(ssevcr_cassette):
    expected = open("expected.sse", "rb").read()
    assert post("/v1/chat/completions", {"model": "gpt-4o"}).content == expected
"""
)


def test_rerecord_records_an_expired_cassette_again_whole(
    project: pytest.Pytester, upstream: Upstream
) -> None:
    (project.path / "expected.sse").write_bytes(fixture_body("openai-chat/text.sse"))
    project.makepyfile(test_re=REREC)
    result = project.runpytest(*RUN, "--ssevcr-record=once")
    result.assert_outcomes(passed=1)
    path = project.path / "cassettes" / "test_re" / "test_chat.msgpack"
    fresh = load(path)
    assert recorded_at(fresh.interactions[0]) is not None
    # age it: two interactions, both recorded long ago
    old = fresh.interactions[0]
    dated = replace(old, meta={**old.meta, RECORDED_AT: "2021-06-01T12:00:00Z"})
    save(Cassette((dated, dated)), path)
    result = project.runpytest(*RUN)  # replay mode, but expired: recorded again, whole
    result.assert_outcomes(passed=1)
    assert len(upstream.exchanges) == 2
    again = load(path)
    when = recorded_at(again.interactions[0])
    assert len(again) == 1 and when is not None and when > time.time() - 3600
    stop(upstream)
    result = project.runpytest(*RUN)  # fresh now: replays with the upstream gone
    result.assert_outcomes(passed=1)
    shown = CliRunner().invoke(main, ["show", str(path)])
    assert shown.exit_code == 0 and f"recorded: {again.interactions[0].meta[RECORDED_AT]}" in (
        shown.output
    )
