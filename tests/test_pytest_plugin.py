"""The pytest plugin, through real pytest sessions (``pytester``): record against a real local
upstream, replay with the upstream stopped, faults, timing, misses, redaction, pytest-asyncio,
anyio, pytest-xdist and the ``ssevcr_server`` fixture. The SDK calls inside the inner tests are
plain ``openai``/``anthropic`` code with ``base_url`` pointing at the upstream."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import anthropic
import openai
import pytest
from test_intercept import SECRET, stop
from upstream import PROVIDERS, ROOT, Upstream, fixture_body, matched_gaps

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
STEER = {{
    "x-upstream-fixture": "openai-chat/text.sse",
    "x-upstream-chunks": "10",
    "x-upstream-gap-ms": "10-60",
}}


def chat(question=QUESTION, test_id="", **kw):
    kw.setdefault("max_retries", 0)
    headers = {{**STEER, "x-test-id": test_id}}
    client = openai.OpenAI(api_key=KEY, base_url=BASE + "/v1", default_headers=headers, **kw)
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
    assert len(cas.plays) == 1 and not cas.misses   # one request answered, on every run
    if cas.existed and cas.record_mode != "all":   # replay: nothing recorded
        assert not cas.recorded and not cas.plays[0].recorded
    else:                                          # recording: one real exchange
        assert len(cas.recorded) == 1 and cas.plays[0].recorded
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
        "x-upstream-fixture": "anthropic/text.sse",
        "x-upstream-gap-ms": "5",
        "x-upstream-set-cookie": "1",
    })
    async with client.messages.stream(model="claude-opus-4-6", max_tokens=64,
                                      messages=[{"role": "user", "content": "1+1?"}]) as stream:
        assert await stream.get_final_text() == ANTHROPIC_TEXT
    check(ssevcr_cassette)


@pytest.mark.ssevcr
@pytest.mark.anyio
async def test_openai_async_anyio(ssevcr_cassette, anyio_backend):
    client = openai.AsyncOpenAI(api_key=KEY, base_url=BASE + "/v1", max_retries=0,
                                default_headers=STEER)
    stream = await client.chat.completions.create(model="gpt-4o", messages=QUESTION, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == OPENAI_TEXT
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
    arrivals = []
    t0 = time.monotonic()
    assert text_of(chat(), arrivals, t0) == OPENAI_TEXT
    recorded = ssevcr_cassette.cassette.interactions[0].response.chunk_at
    # the recording has nine pauses of 10-60 ms; an instant replay keeps none of them (a loaded
    # machine may stall a read or two, so the count, not the total, is what is checked)
    pauses = lambda times: sum(1 for a, b in zip(times, times[1:]) if b - a >= 0.008)
    assert pauses(recorded) >= 9 and pauses(arrivals) <= 3, (arrivals, recorded)


@pytest.mark.ssevcr(RECORDED, timing="instant")
def test_ssevcr_server_serves_non_httpx_clients(ssevcr_cassette, ssevcr_server):
    import urllib.request

    recorded = ssevcr_cassette.cassette.interactions[0]
    req = urllib.request.Request(ssevcr_server.url + "/v1/chat/completions",
                                 data=recorded.request.body,
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.status == 200
        assert response.read() == recorded.response.body
    assert len(ssevcr_cassette.plays) == 1


@pytest.mark.ssevcr(RECORDED, timing="instant", allow_repeats=True, cors=["http://page.test"])
def test_ssevcr_server_lets_the_named_origin_read_it(ssevcr_cassette, ssevcr_server):
    import urllib.request

    recorded = ssevcr_cassette.cassette.interactions[0]
    allowed = {}
    for origin in ("http://page.test", "http://other.test"):
        headers = {"content-type": "application/json", "origin": origin}
        req = urllib.request.Request(ssevcr_server.url + "/v1/chat/completions",
                                     data=recorded.request.body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=10) as response:
            assert response.read() == recorded.response.body
            allowed[origin] = response.headers.get("access-control-allow-origin")
    assert allowed == {"http://page.test": "http://page.test", "http://other.test": None}


@pytest.mark.ssevcr(RECORDED, timing="instant")
async def test_ssevcr_server_with_aiohttp(ssevcr_cassette, ssevcr_server):
    import aiohttp

    recorded = ssevcr_cassette.cassette.interactions[0]
    async with aiohttp.ClientSession() as session:
        async with session.post(ssevcr_server.url + "/v1/chat/completions",
                                data=recorded.request.body,
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


def record_once(pytester: pytest.Pytester, upstream: Upstream, *, passed: int) -> None:
    """``pytest --ssevcr-record=once`` of the inner project: ``passed`` tests passed, each with
    one request that reached the upstream."""
    result = pytester.runpytest("--ssevcr-record=once", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=passed)
    assert len(upstream.exchanges) == passed


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
    record_once(pytester, upstream, passed=3)
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
    # async one drains it (HTTP/1.1): both read every event, both are recorded complete
    assert recorded.response.end.outcome == Outcome.COMPLETE
    assert _store.load(files[1]).interactions[0].response.end.outcome == Outcome.COMPLETE
    assert recorded.request.header("authorization") == "REDACTED"
    # the record-mode timestamps follow the upstream's send gaps (10-60 ms)
    pairs = matched_gaps(sent, recorded.response.chunk_at, recorded.response.chunk_sizes)
    assert len(pairs) == 9
    # (one gap may take a scheduling stall of the loaded machine; the rest must follow)
    errors = sorted(abs(recorded_gap - sent_gap) for sent_gap, recorded_gap in pairs)
    assert errors[-2] <= 0.03, pairs
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
    result.assert_outcomes(passed=6)
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
        '$.messages[0].content: recorded "What\'s the weather in San Francisco?", '
        'got "And in Paris?"' in out
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
    """Each mistake gets its own message naming what is wrong; only a keyword that does not
    exist is called an unknown keyword; never a traceback."""
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

        @pytest.mark.ssevcr("a\\0b")
        def test_nul():
            pass

        @pytest.mark.ssevcr("one", "two")
        def test_two_names():
            pass

        @pytest.mark.ssevcr(match_on=5)
        def test_match_on():
            pass

        @pytest.mark.ssevcr(seed="x")
        def test_seed():
            pass

        @pytest.mark.ssevcr(faults=5)
        def test_faults():
            pass

        @pytest.mark.ssevcr(5)
        def test_name():
            pass

        @pytest.mark.ssevcr(cors="yes")
        def test_cors(ssevcr_server):
            pass
    """,
        test_bad_config="""
        import pytest

        @pytest.fixture
        def ssevcr_config():
            return {"timming": "instant"}

        def test_config(ssevcr_cassette):
            pass
    """,
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rN")
    result.assert_outcomes(errors=10)
    out = result.stdout.str()
    for expected in (
        "unknown fault 'explode'",
        "the ssevcr marker: unknown keyword 'colour'; valid: record, timing, max_gap",
        "contains a NUL byte",
        "(cassette 2 of this test) does not exist: only the first cassette is recorded into",
        "match_on must be a list of part names or matcher(recorded, incoming) callables, got 5",
        "seed must be a whole number, got 'x'",
        "faults must be a list of fault specs, got 5",
        "a cassette is a file name or path, got 5",
        "cors must be True, False or a list of origins, got 'yes'",
        "ssevcr_config: unknown keyword 'timming'",
    ):
        assert out.count(expected) == 1, expected
    assert out.count("unknown keyword") == 2
    for internal in ("Traceback", "ValueError", "TypeError", "_pytest/", "site-packages"):
        assert internal not in out, internal


def test_option_names_are_use_cassettes_keywords() -> None:
    import inspect

    from ssevcr._intercept import OPTION_NAMES, Options, use_cassette

    parse = [p for p in inspect.signature(Options.parse).parameters if p != "path"]
    assert list(OPTION_NAMES) == parse
    assert [p for p in inspect.signature(use_cassette).parameters][1:-1] == parse


def test_a_damaged_cassette_fails_the_test_in_record_mode_all_too(
    inner: tuple[pytest.Pytester, Upstream],
) -> None:
    """``all`` over a damaged cassette: the test fails at its start with the cassette error,
    before a request goes upstream; the file is left as it was. A cassette damaged while the
    test runs makes its save fail: the test fails (it used to pass, then error in teardown)."""
    pytester, upstream = inner
    damaged = pytester.path / "cassettes" / "test_rec" / "test_at_start.msgpack"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"\x93not a cassette")
    pytester.makepyfile(
        test_rec=HEADER
        + """

@pytest.mark.ssevcr
def test_at_start():
    text_of(chat(test_id="at_start"))


@pytest.mark.ssevcr
def test_during(ssevcr_cassette):
    text_of(chat(test_id="during"))
    ssevcr_cassette.path.parent.mkdir(parents=True, exist_ok=True)
    ssevcr_cassette.path.write_bytes(b"garbage")  # someone else broke it meanwhile
"""
    )
    result = pytester.runpytest("--ssevcr-record=all", "-p", "no:cacheprovider", "-rN")
    result.assert_outcomes(errors=1, failed=1)
    out = result.stdout.str()
    assert f"cassette {str(damaged)!r}: " in out
    assert "ERROR at setup of test_at_start" in out
    assert "ssevcr: saving the cassette failed: cassette " in out
    assert "Traceback" not in out
    assert damaged.read_bytes() == b"\x93not a cassette"
    assert [ex.headers.get("x-test-id") for ex in upstream.exchanges] == ["during"]


# ------------------------------------------------------------------ faults on the recording run

FAULT_TESTS = (
    HEADER
    + """

@pytest.mark.ssevcr(faults=["truncate:after=3,end=abort"])
def test_truncate(ssevcr_cassette):
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in chat(test_id="truncate"):
            seen.append(chunk)
    assert len(seen) == 3 and ssevcr_cassette.fired == ["truncate:after=3,end=abort"]
    check(ssevcr_cassette)


@pytest.mark.ssevcr(faults=["stall:before=2,for=forever"])
def test_stall(ssevcr_cassette):
    with pytest.raises(openai.APITimeoutError):
        text_of(chat(test_id="stall", timeout=openai.Timeout(10, read=0.3)))
    check(ssevcr_cassette)


@pytest.mark.ssevcr(faults=["drop:event=last"])
def test_drop(ssevcr_cassette):
    assert text_of(chat(test_id="drop")) == OPENAI_TEXT  # the SDK does not miss [DONE]
    assert ssevcr_cassette.fired == ["drop:event=last"]


@pytest.mark.ssevcr(faults=["corrupt:event=2"])
def test_corrupt(ssevcr_cassette):
    with pytest.raises(json.JSONDecodeError):
        text_of(chat(test_id="corrupt"))


@pytest.mark.ssevcr(faults=["error:after=2"])
def test_error(ssevcr_cassette):
    with pytest.raises(openai.APIError, match="The server had an error"):
        text_of(chat(test_id="error"))


@pytest.mark.ssevcr(faults=["status:429"])
def test_status(ssevcr_cassette):
    with pytest.raises(openai.RateLimitError):
        chat(test_id="status")
    check(ssevcr_cassette)


@pytest.mark.ssevcr(faults=["truncate:after=4"])
async def test_async_truncate(ssevcr_cassette):
    client = openai.AsyncOpenAI(api_key=KEY, base_url=BASE + "/v1", max_retries=0,
                                default_headers={**STEER, "x-test-id": "async"})
    stream = await client.chat.completions.create(model="gpt-4o", messages=QUESTION, stream=True)
    seen = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:  # (the stream is left open: the plugin drains its recorder)
            seen.append(chunk)
    assert len(seen) == 4
    check(ssevcr_cassette)
"""
)


CLIENT_FAULT_TESTS = (
    HEADER
    + """
import aiohttp, requests

URL = BASE + "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": QUESTION, "stream": True}


@pytest.mark.ssevcr(faults=["truncate:after=3"])
async def test_aiohttp_cut(ssevcr_cassette):
    got = b""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.post(URL, json=BODY, headers={**STEER, "x-test-id": "aio-cut"}) as r:
                async for piece in r.content.iter_any():
                    got += piece
    assert got.count(b"data: ") == 3 and ssevcr_cassette.fired == ["truncate:after=3"]
    check(ssevcr_cassette)


@pytest.mark.ssevcr(faults=["corrupt:event=2"])
async def test_aiohttp_sdk_corrupt(ssevcr_cassette):
    client = openai.AsyncOpenAI(api_key=KEY, base_url=BASE + "/v1", max_retries=0,
                                http_client=openai.DefaultAioHttpClient(),
                                default_headers={**STEER, "x-test-id": "aio-sdk"})
    async with client:
        stream = await client.chat.completions.create(model="gpt-4o", messages=QUESTION,
                                                      stream=True)
        with pytest.raises(json.JSONDecodeError):
            async for chunk in stream:
                pass
    check(ssevcr_cassette)


@pytest.mark.ssevcr(faults=["stall:before=2,for=forever"])
def test_requests_stall(ssevcr_cassette):
    with pytest.raises(requests.ConnectionError):
        with requests.post(URL, json=BODY, stream=True, timeout=(5, 0.3),
                           headers={**STEER, "x-test-id": "req-stall"}) as r:
            for _ in r.iter_content(None):
                pass
    check(ssevcr_cassette)


@pytest.mark.ssevcr(faults=["drop:event=1"])
def test_requests_drop(ssevcr_cassette):
    r = requests.post(URL, json=BODY, headers={**STEER, "x-test-id": "req-drop"})
    assert r.content.count(b"data: ") == OPENAI_EVENTS - 1
    check(ssevcr_cassette)
"""
)


def test_client_fault_tests_pass_on_the_recording_run_and_on_replay(
    inner: tuple[pytest.Pytester, Upstream],
) -> None:
    """The same for the clients that parse HTTP themselves: aiohttp (plain, and the openai SDK's
    ``DefaultAioHttpClient``) and requests. Before, their recording run showed the stream
    unfaulted and these tests failed there."""
    pytester, upstream = inner
    events = fixture_body("openai-chat/text.sse").count(b"data: ")
    pytester.makepyfile(test_client_faults=CLIENT_FAULT_TESTS.replace("OPENAI_EVENTS", str(events)))
    assert_pass_recording_and_replaying(pytester, upstream, 4)


def assert_pass_recording_and_replaying(
    pytester: pytest.Pytester, upstream: Upstream, passed: int
) -> None:
    """The inner fault tests pass on their recording run, each stream recorded whole, and again
    replayed with the upstream gone."""
    record_once(pytester, upstream, passed=passed)
    files = stop_and_scan(upstream, pytester.path)
    assert len(files) == passed
    for f in files:  # every stream recorded whole, whatever the client was shown
        response = _store.load(f).interactions[0].response
        assert response.body == fixture_body("openai-chat/text.sse"), f
        assert response.end.outcome == Outcome.COMPLETE, f
    result = pytester.runpytest("-p", "no:cacheprovider")  # the upstream is gone: replay
    result.assert_outcomes(passed=passed)


def test_fault_tests_pass_on_the_recording_run_and_on_replay(
    inner: tuple[pytest.Pytester, Upstream],
) -> None:
    pytester, upstream = inner
    pytester.makepyfile(test_faults=FAULT_TESTS)
    assert_pass_recording_and_replaying(pytester, upstream, 7)


# ------------------------------------------------------------------ the README's example


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## pytest and use_cassette") :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_passes_when_recording_and_when_replaying_offline(
    pt: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's pytest module as it stands: recorded with a key and a base URL (a local
    upstream), then replayed with neither, in a network namespace with no network at all."""
    upstream = Upstream(fixture="openai-chat/text.sse").start()
    monkeypatch.setenv("OPENAI_BASE_URL", upstream.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    pt.makepyfile(test_readme=readme_example())
    try:
        record_once(pt, upstream, passed=2)
    finally:
        files = stop_and_scan(upstream, pt.path)
    assert [f.name for f in files] == ["broken.msgpack", "test_chat.msgpack"]
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    result = pt.run(
        "unshare", "-rn", sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"
    )
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*2 passed*"])


def test_replay_sets_stand_in_api_keys_and_puts_them_back(
    pt: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ssevcr._providers import DUMMY_KEYS

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-mine")
    pt.makepyfile(
        test_keys="""
        import os
        import pytest

        def keys():
            return os.environ.get("OPENAI_API_KEY"), os.environ.get("ANTHROPIC_API_KEY")

        @pytest.mark.ssevcr("absent")
        def test_replay(ssevcr_cassette):
            print("REPLAY", *keys())

        @pytest.mark.ssevcr("absent", record="once")
        def test_record(ssevcr_cassette):
            print("RECORD", *keys())

        def test_after():
            print("AFTER", *keys())
    """
    )
    result = pt.runpytest("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            f"*REPLAY {DUMMY_KEYS['OPENAI_API_KEY']} sk-ant-mine",
            "*RECORD None sk-ant-mine",
            "*AFTER None sk-ant-mine",
        ]
    )


def test_the_cassette_comes_first_and_every_knob_override_still_wins(pt: pytest.Pytester) -> None:
    """The marker's cassette is active before the test's function-scoped fixtures (conftest
    autouse ones too) and after the session's; a test without the marker gets none. The knobs
    the plugin computes itself (bench/bench_pytest.py --calls) give way to a conftest's,
    module's or class's fixture of the same name and to a parametrized value; a marker a
    conftest adds at collection counts."""
    pt.makeconftest("""
        import pytest
        from ssevcr import _intercept

        def active():
            cassettes = _intercept.open_cassettes()
            return cassettes[-1].path.name if cassettes else None

        @pytest.fixture(scope="session", autouse=True)
        def session_wide():
            print("SESSION", active())

        @pytest.fixture(autouse=True)
        def each_test(request):
            print("AUTOUSE", request.node.name, active())

        @pytest.fixture(scope="module")
        def ssevcr_cassette_dir(request):
            return request.config.rootpath / "mine"

        def pytest_collection_modifyitems(items):
            for item in items:
                if "added" in item.name:
                    item.add_marker(pytest.mark.ssevcr(timing="instant"))
    """)
    pt.makepyfile(
        test_order="""
        import pytest
        from conftest import active

        def where(cas, request):
            return cas.path.relative_to(request.config.rootpath).as_posix()

        @pytest.fixture
        def client():
            return active()

        @pytest.mark.ssevcr
        def test_marked(client, ssevcr_cassette, request):
            print("MARKED", client, where(ssevcr_cassette, request), ssevcr_cassette.record_mode)

        def test_plain(client, request):
            print("PLAIN", client, "ssevcr_cassette" in request.fixturenames)

        def test_added(ssevcr_cassette, request):
            print("ADDED", ssevcr_cassette.options.timing, where(ssevcr_cassette, request))

        @pytest.mark.ssevcr
        @pytest.mark.parametrize("ssevcr_record_mode", ["new_episodes"])
        def test_param(ssevcr_cassette):
            print("PARAM", ssevcr_cassette.record_mode)

        class TestTiming:
            @pytest.fixture
            def ssevcr_timing(self):
                return "scale:0.5"

            @pytest.mark.ssevcr
            def test_cls(self, ssevcr_cassette):
                print("CLASS", ssevcr_cassette.options.timing)
    """,
        test_named="""
        import pytest

        @pytest.fixture
        def ssevcr_cassette_name():
            return "by-module"

        @pytest.fixture(scope="module")
        def ssevcr_config():
            return {"timing": "fixed:5ms", "record": "once"}

        @pytest.mark.ssevcr
        def test_named(ssevcr_cassette, request):
            print("NAMED", ssevcr_cassette.path.relative_to(request.config.rootpath).as_posix(),
                  ssevcr_cassette.options.timing, ssevcr_cassette.record_mode)
    """,
    )
    sub = pt.mkpydir("sub")
    (sub / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef ssevcr_cassette_path(request):\n"
        "    return request.config.rootpath / 'elsewhere' / 'p.msgpack'\n"
    )
    (sub / "test_sub.py").write_text(
        "import pytest\n\n@pytest.mark.ssevcr\ndef test_sub(ssevcr_cassette, request):\n"
        "    print('SUB', ssevcr_cassette.path.relative_to(request.config.rootpath).as_posix())\n"
    )
    result = pt.runpytest("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        [
            "*SESSION None*",
            "*SUB elsewhere/p.msgpack*",
            "*NAMED mine/by-module.msgpack fixed:5ms once*",
            "*AUTOUSE test_marked test_marked.msgpack*",
            "*MARKED test_marked.msgpack mine/test_marked.msgpack none*",
            "*AUTOUSE test_plain None*",
            "*PLAIN None False*",
            "*AUTOUSE test_added test_added.msgpack*",
            "*ADDED instant mine/test_added.msgpack*",
            "*PARAM new_episodes*",
            "*CLASS scale:0.5*",
        ]
    )
