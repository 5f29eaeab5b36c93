"""The pytest plugin, through real pytest sessions (``pytester``): record against a real local
upstream, replay with the upstream stopped, faults, timing, misses, redaction, pytest-asyncio,
anyio, pytest-xdist and the ``ssevcr_server`` fixture. The SDK calls inside the inner tests are
plain ``openai``/``anthropic`` code with ``base_url`` pointing at the upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import anthropic
import openai
import pytest
from test_intercept import SECRET, stop
from upstream import PROVIDERS, Upstream, fixture_body, matched_gaps

import ssevcr._player
import ssevcr._server
import ssevcr._transport
from ssevcr import _store
from ssevcr._cassette import Outcome
from ssevcr._sse import parse

# In-process pytester runs drop the modules a run imported. Imported here, what the inner sessions
# use is reused by every run: faster, and one copy of each ssevcr module (a class imported twice
# fails isinstance checks across the copies).
PRELOADED = (aiohttp, anthropic, openai, ssevcr._player, ssevcr._server, ssevcr._transport)


def openai_text() -> str:
    out = ""
    for event in parse((PROVIDERS / "openai-chat/text.sse").read_bytes()).events:
        if event.data != "[DONE]":
            for choice in json.loads(event.data)["choices"]:
                out += choice["delta"].get("content") or ""
    return out


def anthropic_text() -> str:
    out = ""
    for event in parse((PROVIDERS / "anthropic/text.sse").read_bytes()).events:
        data = json.loads(event.data)
        if data["type"] == "content_block_delta":
            out += data["delta"].get("text", "")
    return out


HEADER = f"""
import json, os, time
import anthropic, openai, pytest

BASE = os.environ["SSEVCR_TEST_UPSTREAM"]
KEY = {SECRET!r}
OPENAI_TEXT = {openai_text()!r}
ANTHROPIC_TEXT = {anthropic_text()!r}
QUESTION = [{{"role": "user", "content": "What's the weather in San Francisco?"}}]
# how tests/upstream.py streams: the fixture in 10 chunks, 10-60 ms apart
STEER = {{"x-upstream-fixture": "openai-chat/text.sse", "x-upstream-chunks": "10", "x-upstream-gap-ms": "10-60"}}


def chat(question=QUESTION, test_id="", **kw):
    kw.setdefault("max_retries", 0)
    client = openai.OpenAI(api_key=KEY, base_url=BASE + "/v1", default_headers={{**STEER, "x-test-id": test_id}}, **kw)
    return client.chat.completions.create(model="gpt-4o", messages=question, stream=True)


def text_of(stream, arrivals=None, t0=0.0):
    out = ""
    for chunk in stream:
        if arrivals is not None:
            arrivals.append(time.monotonic() - t0)
        for choice in chunk.choices:
            out += choice.delta.content or ""
    return out


def check(cas):
    if cas.existed and cas.record_mode != "all":   # replay: played once, nothing recorded
        assert len(cas.plays) == 1 and not cas.recorded and not cas.misses
    else:                                          # recording: one real exchange
        assert len(cas.recorded) == 1 and not cas.plays
"""

LLM_TESTS = (
    HEADER
    + """

@pytest.mark.ssevcr
def test_openai_sync(ssevcr_cassette):
    assert text_of(chat(test_id="openai_sync")) == OPENAI_TEXT
    check(ssevcr_cassette)


@pytest.mark.ssevcr
async def test_anthropic_async_pytest_asyncio(ssevcr_cassette):
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=BASE, max_retries=0, default_headers={
        "x-upstream-fixture": "anthropic/text.sse", "x-upstream-gap-ms": "5", "x-upstream-set-cookie": "1"})
    async with client.messages.stream(model="claude-opus-4-6", max_tokens=64,
                                      messages=[{"role": "user", "content": "1+1?"}]) as stream:
        assert await stream.get_final_text() == ANTHROPIC_TEXT
    check(ssevcr_cassette)


@pytest.mark.ssevcr
@pytest.mark.anyio
async def test_openai_async_anyio(ssevcr_cassette, anyio_backend):
    client = openai.AsyncOpenAI(api_key=KEY, base_url=BASE + "/v1", max_retries=0, default_headers=STEER)
    stream = await client.chat.completions.create(model="gpt-4o", messages=QUESTION, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == OPENAI_TEXT
    check(ssevcr_cassette)


@pytest.fixture
def anyio_backend():
    return "asyncio"
"""
)

AFTER_TESTS = (
    HEADER
    + """

RECORDED = "cassettes/test_llm/test_openai_sync.msgpack"


@pytest.mark.ssevcr(RECORDED, timing="instant", faults=["truncate:after=3,end=abort"])
def test_truncate_makes_the_sdk_raise(ssevcr_cassette):
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in chat():
            seen.append(chunk)
    assert len(seen) == 3
    assert ssevcr_cassette.fired == ["truncate:after=3,end=abort"]


@pytest.mark.ssevcr(RECORDED, timing="original")
def test_original_timing_observes_the_recorded_gaps(ssevcr_cassette):
    arrivals = []
    t0 = time.monotonic()
    assert text_of(chat(), arrivals, t0) == OPENAI_TEXT
    recorded = ssevcr_cassette.cassette.interactions[0].response.chunk_at
    # the upstream paused 10-60 ms between chunks while recording: the replay does it too
    longest = max(b - a for a, b in zip(recorded, recorded[1:]))
    observed = max(b - a for a, b in zip(arrivals, arrivals[1:]))
    assert longest > 0.03 and observed >= 0.7 * longest, (observed, longest)
    assert recorded[-1] - 0.01 <= arrivals[-1] <= recorded[-1] + 0.3, (arrivals[-1], recorded[-1])
    print("TIMING", arrivals[-1], recorded[-1])


@pytest.mark.ssevcr(RECORDED, timing="instant")
def test_instant_timing_ignores_the_gaps(ssevcr_cassette):
    t0 = time.monotonic()
    assert text_of(chat()) == OPENAI_TEXT
    assert time.monotonic() - t0 < ssevcr_cassette.cassette.interactions[0].response.chunk_at[-1]


@pytest.mark.ssevcr(RECORDED, timing="instant")
def test_ssevcr_server_serves_non_httpx_clients(ssevcr_cassette, ssevcr_server):
    import urllib.request

    recorded = ssevcr_cassette.cassette.interactions[0]
    req = urllib.request.Request(ssevcr_server.url + "/v1/chat/completions", data=recorded.request.body,
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.status == 200
        assert response.read() == recorded.response.body
    assert len(ssevcr_cassette.plays) == 1


@pytest.mark.ssevcr(RECORDED, timing="instant")
async def test_ssevcr_server_with_aiohttp(ssevcr_cassette, ssevcr_server):
    import aiohttp

    recorded = ssevcr_cassette.cassette.interactions[0]
    async with aiohttp.ClientSession() as session:
        async with session.post(ssevcr_server.url + "/v1/chat/completions", data=recorded.request.body,
                                headers={"content-type": "application/json"}) as response:
            body = b"".join([chunk async for chunk in response.content.iter_any()])
    assert body == recorded.response.body
"""
)

MISS_TESTS = (
    HEADER
    + """

RECORDED = "cassettes/test_llm/test_openai_sync.msgpack"
OTHER = [{"role": "user", "content": "And in Paris?"}]


@pytest.mark.ssevcr(RECORDED)
def test_unrecorded_question():
    text_of(chat(OTHER))


@pytest.mark.ssevcr("cassettes/test_llm/test_anthropic_async_pytest_asyncio.msgpack")
def test_miss_swallowed_by_the_sdk():
    client = anthropic.Anthropic(api_key=KEY, base_url=BASE, max_retries=1)
    try:  # the SDK retries the miss, then wraps it in APIConnectionError; the code swallows that
        client.messages.create(model="claude-opus-4-6", max_tokens=64, messages=OTHER, stream=True)
    except anthropic.APIConnectionError:
        pass


@pytest.mark.ssevcr("cassettes/test_llm/test_anthropic_async_pytest_asyncio.msgpack")
def test_miss_wrapped_by_the_sdk():
    client = anthropic.Anthropic(api_key=KEY, base_url=BASE, max_retries=0)
    client.messages.create(model="claude-opus-4-6", max_tokens=64, messages=OTHER, stream=True)


@pytest.mark.ssevcr
def test_no_cassette_at_all():
    text_of(chat())
"""
)


def stop_and_scan(upstream: Upstream, root: Path) -> list[Path]:
    stop(upstream)
    files = sorted((root / "cassettes").rglob("*.msgpack"))
    for f in files:
        raw = f.read_bytes()
        assert SECRET.encode() not in raw, f"the API key reached {f}"
    return files


@pytest.fixture
def pt(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """An inner pytest project: pytest-asyncio in auto mode, no ssevcr environment overrides."""
    pytester.makeini("""
        [pytest]
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
    """)
    for var in ("SSEVCR_RECORD", "SSEVCR_TIMING"):
        monkeypatch.delenv(var, raising=False)
    return pytester


@pytest.fixture
def inner(
    pt: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[pytest.Pytester, Upstream]]:
    """The inner project and a running upstream (its URL in SSEVCR_TEST_UPSTREAM)."""
    upstream = Upstream().start()
    monkeypatch.setenv("SSEVCR_TEST_UPSTREAM", upstream.url)
    try:
        yield pt, upstream
    finally:
        stop(upstream)


def test_record_once_then_replay_with_the_upstream_stopped(
    inner: tuple[pytest.Pytester, Upstream],
) -> None:
    pytester, upstream = inner
    pytester.makepyfile(test_llm=LLM_TESTS)
    result = pytester.runpytest("--ssevcr-record=once", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert len(upstream.exchanges) == 3
    keys = [
        ex.headers.get("authorization") or ex.headers.get("x-api-key") for ex in upstream.exchanges
    ]
    assert all(SECRET in (k or "") for k in keys)  # the key really went out while recording
    sent = upstream.exchange("openai_sync").sent
    files = stop_and_scan(upstream, pytester.path)
    assert [f.relative_to(pytester.path).as_posix() for f in files] == [
        "cassettes/test_llm/test_anthropic_async_pytest_asyncio.msgpack",
        "cassettes/test_llm/test_openai_async_anyio.msgpack",
        "cassettes/test_llm/test_openai_sync.msgpack",
    ]
    recorded = _store.load(files[-1]).interactions[0]
    assert (
        recorded.response.body
        == fixture_body("openai-chat/text.sse")
        == b"".join(d for _, d in sent)
    )
    # the sync openai SDK closes the response at [DONE], before the end of the chunked body; the
    # async one drains it (HTTP/1.1): the recorded outcomes say exactly that
    assert recorded.response.end.outcome == Outcome.CLIENT_DISCONNECTED
    assert _store.load(files[1]).interactions[0].response.end.outcome == Outcome.COMPLETE
    assert recorded.request.header("authorization") == "REDACTED"
    # the record-mode timestamps follow the upstream's send gaps (10-60 ms)
    pairs = matched_gaps(sent, recorded.response.chunk_at, recorded.response.chunk_sizes)
    assert len(pairs) == 9
    for sent_gap, recorded_gap in pairs:
        assert abs(recorded_gap - sent_gap) <= 0.03, pairs
    assert _store.load(files[0]).interactions[0].response.header("set-cookie") == "REDACTED"

    # second run: the upstream is gone; replay only (the default mode), same test code
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert [f.stat().st_mtime_ns for f in files] == [
        f.stat().st_mtime_ns for f in stop_and_scan(upstream, pytester.path)
    ]

    # faults, timing and the replay server, against the recorded cassette
    pytester.makepyfile(test_after=AFTER_TESTS)
    result = pytester.runpytest("test_after.py", "-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*TIMING *"])

    # a miss fails the test with the explanation, even when the SDK swallowed it
    pytester.makepyfile(test_miss=MISS_TESTS)
    # -rN: no short summary (under CI=... pytest prints it untruncated, repeating each message)
    result = pytester.runpytest("test_miss.py", "-p", "no:cacheprovider", "-rN")
    result.assert_outcomes(failed=4)
    out = result.stdout.str()
    assert out.count("no recorded interaction in") == 4  # once per test, retries folded
    assert out.count("closest: #1 POST") == 3
    assert (
        '$.messages[0].content: recorded "What\'s the weather in San Francisco?", got "And in Paris?"'
        in out
    )
    assert '$.messages[0].content: recorded "1+1?", got "And in Paris?"' in out
    assert out.count("(the test raised APIConnectionError: Connection error.)") == 1
    assert "(2 times: the client retried)" in out  # max_retries=1, both attempts missed
    assert "does not exist; record it with record='once' or pytest --ssevcr-record=once" in out
    for internal in (
        "Traceback",
        "_pytest/",
        "pluggy/",
        "site-packages",
        "ssevcr/intercept.py",
        "During handling",
    ):
        assert internal not in out, internal
    assert not (pytester.path / "cassettes" / "test_miss").exists()


XDIST_TESTS = (
    HEADER
    + """

QUESTIONS = ["q0", "q1", "q2", "q3"]


@pytest.mark.parametrize("n", range(4))
@pytest.mark.ssevcr
def test_own_cassette(n, ssevcr_cassette):
    assert text_of(chat([{"role": "user", "content": QUESTIONS[n]}])) == OPENAI_TEXT
    check(ssevcr_cassette)


@pytest.mark.parametrize("n", range(4))
@pytest.mark.ssevcr("shared", timing="instant")
def test_shared_cassette(n, ssevcr_cassette):
    assert text_of(chat([{"role": "user", "content": "shared " + QUESTIONS[n]}])) == OPENAI_TEXT
    if ssevcr_cassette.record_mode == "none":
        assert len(ssevcr_cassette.plays) == 1
"""
)


def test_xdist_records_and_replays_in_parallel_workers(
    inner: tuple[pytest.Pytester, Upstream],
) -> None:
    pytester, upstream = inner
    pytester.makepyfile(test_par=XDIST_TESTS)
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "--ssevcr-record=new_episodes"
    )
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*2 workers*"])
    assert len(upstream.exchanges) == 8
    files = stop_and_scan(upstream, pytester.path)
    names = sorted(f.name for f in files)
    assert names == ["shared.msgpack", *(f"test_own_cassette[{n}].msgpack" for n in range(4))]
    shared = _store.load(pytester.path / "cassettes" / "test_par" / "shared.msgpack")
    # four workers' appends under the store's lock: none lost
    assert sorted(
        json.loads(i.request.body)["messages"][0]["content"] for i in shared.interactions
    ) == [f"shared q{n}" for n in range(4)]
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)


def _shared_questions(root: Path) -> list[str]:
    shared = _store.load(root / "cassettes" / "test_par" / "shared.msgpack")
    return sorted(json.loads(i.request.body)["messages"][0]["content"] for i in shared.interactions)


@pytest.mark.parametrize("workers", [0, 2])
def test_record_all_replaces_a_shared_cassette_once_per_run(
    inner: tuple[pytest.Pytester, Upstream], workers: int
) -> None:
    """``all`` re-records: the first save of a cassette in a session replaces the file, the
    other tests sharing it (in this process or another xdist worker) append, so a second
    ``all`` session leaves the same four recordings, not eight and not one."""
    pytester, upstream = inner
    pytester.makepyfile(test_par=XDIST_TESTS)
    args = ("-n", str(workers), "-p", "no:cacheprovider", "--ssevcr-record=all")
    for session in (1, 2):
        result = pytester.runpytest_subprocess(*args)
        result.assert_outcomes(passed=8)
        assert len(upstream.exchanges) == 8 * session  # everything recorded again
        assert _shared_questions(pytester.path) == [f"shared q{n}" for n in range(4)]
        for n in range(4):
            own = _store.load(
                pytester.path / "cassettes" / "test_par" / f"test_own_cassette[{n}].msgpack"
            )
            assert len(own) == 1
    # the claims folder of the run is gone, and no lock file sits among the cassettes
    assert sorted(p.name for p in (pytester.path / "cassettes" / "test_par").iterdir()) == sorted(
        ["shared.msgpack", *(f"test_own_cassette[{n}].msgpack" for n in range(4))]
    )
    stop(upstream)
    result = pytester.runpytest_subprocess("-n", str(workers), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)


def test_precedence_cli_over_env_over_marker(
    pt: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester = pt
    pytester.makepyfile(
        test_prec="""
        import pytest

        @pytest.mark.ssevcr("c", timing="scale:0.5", record="once")
        def test_it(ssevcr_cassette, request):
            print("MODE", ssevcr_cassette.record_mode, ssevcr_cassette.options.timing,
                  ssevcr_cassette.path.relative_to(request.config.rootpath).as_posix())

        def test_config_default(ssevcr_cassette, ssevcr_record_mode, ssevcr_timing):
            print("DEFAULT", ssevcr_record_mode, ssevcr_timing, ssevcr_cassette.path.name)
    """
    )
    result = pytester.runpytest("-s", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "*MODE once scale:0.5 cassettes/test_prec/c.msgpack",
            "*DEFAULT none original test_config_default.msgpack",
        ]
    )
    monkeypatch.setenv("SSEVCR_RECORD", "all")
    monkeypatch.setenv("SSEVCR_TIMING", "instant")
    result = pytester.runpytest("-s", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*MODE all instant *"])
    result = pytester.runpytest(
        "-s", "-p", "no:cacheprovider", "--ssevcr-record=none", "--ssevcr-timing=fixed:5ms"
    )
    result.stdout.fnmatch_lines(["*MODE none fixed:5ms *"])
    result = pytester.runpytest("--ssevcr-record=sometimes")
    result.stderr.fnmatch_lines(["*--ssevcr-record: unknown record mode 'sometimes'*"])


def test_bad_marker_options_fail_cleanly(pt: pytest.Pytester) -> None:
    pytester = pt
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.ssevcr(faults=["explode:now"])
        def test_fault():
            pass

        @pytest.mark.ssevcr(colour="red")
        def test_keyword():
            pass
    """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    assert "explode" in out and "colour" in out and "Traceback" not in out
