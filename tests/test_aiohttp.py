"""aiohttp in process (``ssevcr._aiohttp``): recording from the real local upstream of
tests/upstream.py over real sockets, then replay with the upstream stopped through aiohttp's own
response parser: raw aiohttp, the openai SDK's ``DefaultAioHttpClient`` (httpx-aiohttp). Exact
bytes and text, the recorded chunks on their deadlines (``content.iter_any()``), each fault as
aiohttp's own exception, and a capture server that no replayed request reaches."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path

import aiohttp
import pytest
from client_helpers import (
    BODY,
    CHAT,
    CHAT_URL,
    FIXTURE,
    READ_TIMEOUT,
    RECORD_RUN_FAULTS,
    SLOW,
    TEXT,
    CaptureServer,
    assert_arrival_gaps,
    assert_recorded,
    assert_shown_as_replayed,
    assert_streamed,
    burst_headers,
    chat_cassette,
    fixture_frames,
    longest_gap,
    small_recordings,
)
from test_intercept import SDK_FAULTS, steer, stop
from upstream import TLSFiles, Upstream, matched_gaps

import ssevcr
from ssevcr import NoMatchError, _store
from ssevcr._cassette import Outcome


async def stream(session: aiohttp.ClientSession, url: str, **kw: object) -> tuple[bytes, list]:
    """The body as ``iter_any`` hands it out, each piece with its time since the request."""
    t0 = time.monotonic()
    pieces = []
    async with session.post(url, json=CHAT, **kw) as r:  # type: ignore[arg-type]
        assert r.status == 200
        async for piece in r.content.iter_any():
            pieces.append((time.monotonic() - t0, piece))
    return b"".join(p for _, p in pieces), pieces


async def test_record_then_replay_with_the_upstream_stopped(
    tmp_path: Path, upstream: Upstream, capture: CaptureServer
) -> None:
    path = tmp_path / "rec.msgpack"
    headers = {"authorization": "Bearer sk-live-1234", **steer(FIXTURE, "aio", chunks="10")}
    async with aiohttp.ClientSession() as session:
        with ssevcr.use_cassette(path, record="once") as cas:
            body, _ = await stream(session, upstream.url + CHAT_URL, headers=headers)
        assert body == BODY
        sent = upstream.exchange("aio").sent
        stop(upstream)
        recorded = assert_recorded(path, sent, upstream.url + CHAT_URL)
        assert cas.saved

        # replay in the same session (its pool may hold the upstream's connection): the client
        # points at a capture server that must see nothing
        with ssevcr.use_cassette(path) as cas:
            body, pieces = await stream(session, capture.url + CHAT_URL)
    assert body == BODY
    assert_streamed(pieces, recorded.response)
    assert len(cas.plays) == 1 and not cas.misses
    assert capture.connections == 0


async def test_a_slow_consumer_does_not_move_the_recorded_chunks(
    tmp_path: Path, upstream: Upstream
) -> None:
    """A consumer that works 150 ms after each piece: the recorded chunks keep the upstream's
    gaps (a burst of two, together), stamped as the bytes reached the connection."""
    path = tmp_path / "slow.msgpack"
    async with aiohttp.ClientSession() as session:
        with ssevcr.use_cassette(path, record="all"):
            async with session.post(
                upstream.url + CHAT_URL, json=CHAT, headers=burst_headers("aioslow")
            ) as r:
                async for _ in r.content.iter_any():
                    await asyncio.sleep(SLOW)
    assert_arrival_gaps(path, upstream.exchange("aioslow").sent)


async def test_a_session_made_before_the_cassette_and_a_gzip_stream(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "gz.msgpack"
    async with aiohttp.ClientSession() as session:
        with ssevcr.use_cassette(path, record="once"):
            body, _ = await stream(
                session, upstream.url + CHAT_URL, headers=steer(FIXTURE, gzip="1")
            )
        assert body == BODY
        stop(upstream)
        (recorded,) = _store.load(path).interactions
        assert recorded.response.header("content-encoding") == "gzip"
        assert recorded.response.body != BODY  # kept compressed, as it came
        with ssevcr.use_cassette(path):
            assert (await stream(session, upstream.url + CHAT_URL))[0] == BODY  # decoded
        with ssevcr.use_cassette(path):
            raw, _ = await stream(session, upstream.url + CHAT_URL, auto_decompress=False)
        assert raw == recorded.response.body


async def test_recorded_gaps_are_replayed_on_absolute_deadlines(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    cassette = chat_cassette(path, gap=0.02, headers_at=0.05)
    response = cassette.interactions[0].response
    async with aiohttp.ClientSession() as session:
        with ssevcr.use_cassette(path):
            body, pieces = await stream(session, "https://api.openai.com" + CHAT_URL)
    assert body == BODY
    assert_streamed(pieces, response)


@pytest.mark.parametrize(
    ("fault", "error", "events"),
    [
        ("truncate:after=3,end=abort", aiohttp.ClientPayloadError, 3),
        ("truncate:after=3,end=reset", aiohttp.ClientPayloadError, 3),
        ("stall:before=3,for=forever", aiohttp.SocketTimeoutError, 2),
    ],
)
async def test_faults_are_aiohttp_own_exceptions(
    tmp_path: Path, fault: str, error: type[Exception], events: int
) -> None:
    path = tmp_path / "c.msgpack"
    chat_cassette(path)
    got = []
    timeout = aiohttp.ClientTimeout(sock_read=0.3)
    async with aiohttp.ClientSession() as session:
        with (
            ssevcr.use_cassette(path, timing="instant", faults=[fault]) as cas,
            pytest.raises(error) as info,
        ):
            async with session.post(
                "https://api.openai.com" + CHAT_URL, json=CHAT, timeout=timeout
            ) as r:
                async for piece in r.content.iter_any():
                    got.append(piece)
    assert b"".join(got) == b"".join(fixture_frames()[:events])
    assert cas.fired == [fault]
    if "reset" in fault:
        assert "Connection reset by peer" in str(info.value)


async def test_a_miss_raises_and_new_episodes_records_it(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "c.msgpack"
    chat_cassette(path)
    other = {**CHAT, "model": "gpt-other"}
    async with aiohttp.ClientSession() as session:
        with ssevcr.use_cassette(path) as cas, pytest.raises(NoMatchError, match="gpt-other"):
            await session.post(upstream.url + CHAT_URL, json=other)
        assert len(cas.misses) == 1 and not upstream.exchanges
        with ssevcr.use_cassette(path, record="new_episodes") as cas:
            async with session.post(upstream.url + CHAT_URL, json=CHAT) as r:
                assert await r.read() == BODY  # replayed
            async with session.post(
                upstream.url + CHAT_URL, json=other, headers=steer(FIXTURE, "new")
            ) as r:
                assert await r.read() == BODY  # relayed from the upstream, recorded
    assert len(upstream.exchanges) == 1 and not cas.misses
    assert len(_store.load(path).interactions) == 2


async def test_a_client_that_leaves_early_is_recorded_as_such(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "c.msgpack"
    async with aiohttp.ClientSession() as session:
        with ssevcr.use_cassette(path, record="once") as cas:
            async with session.post(
                upstream.url + CHAT_URL, json=CHAT, headers=steer(FIXTURE, chunks="8")
            ) as r:
                await r.content.readany()
                r.close()
    (recorded,) = cas.recorded
    assert recorded.response.end.outcome == Outcome.CLIENT_DISCONNECTED
    assert recorded.response.body and BODY.startswith(recorded.response.body)


# faults on a recording run: the client is shown the live replay of what is recorded


async def faulted_stream(
    session: aiohttp.ClientSession, url: str, test_id: str, **kw: object
) -> tuple[int, bytes, str | None, float]:
    """Status, body, aiohttp's error (its type) and the longest gap between two pieces."""
    pieces: list[tuple[float, bytes]] = []
    headers = steer(FIXTURE, test_id, chunks="12", gap_ms="2-6")
    status, error = 0, None
    timeout = aiohttp.ClientTimeout(sock_read=READ_TIMEOUT)
    try:
        async with session.post(url, json=CHAT, headers=headers, timeout=timeout, **kw) as r:  # type: ignore[arg-type]
            status = r.status
            async for piece in r.content.iter_any():
                pieces.append((time.monotonic(), piece))
    except aiohttp.ClientError as e:
        error = type(e).__name__
    return status, b"".join(p for _, p in pieces), error, longest_gap(pieces)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("fault", RECORD_RUN_FAULTS)
async def test_a_fault_shows_the_same_on_the_recording_run_and_on_replay(
    fault: str,
    tls: bool,
    tmp_path: Path,
    upstream: Upstream,
    upstream_tls: Upstream,
    tls_files: TLSFiles,
) -> None:
    """aiohttp recording a faulted stream is shown the replay of what it records, through its
    own parser: the same status, bytes and error as the replay that follows, the stall as long;
    the cassette holds the upstream's stream whole. Before, the recording run showed the stream
    unfaulted (and warned)."""
    path = tmp_path / "c.msgpack"
    server = upstream_tls if tls else upstream
    context = ssl.create_default_context(cafile=str(tls_files.cert)) if tls else None
    test_id = f"aio-{tls}-{fault}"
    faults = [fault] if fault else []
    runs = []
    for _ in range(2):
        async with (
            aiohttp.ClientSession() as session,
            ssevcr.use_cassette(path, record="once", faults=faults) as cas,
        ):
            runs.append(await faulted_stream(session, server.url + CHAT_URL, test_id, ssl=context))
        assert cas.fired == faults
    assert_shown_as_replayed(runs, fault, server, test_id, path)


@pytest.mark.parametrize("fault", ["stall:before=2,for=10ms", "truncate:after=3"])
async def test_a_body_past_the_recording_limit_shows_what_is_kept(
    fault: str, tmp_path: Path, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the recording limit nothing more is kept, and the cassette says so (an upstream
    error): the recording run shows the client that too, as the replay does, and the live
    schedule holds no more than the capture. Before, it showed (and held) the whole body."""
    small_recordings(monkeypatch, 1000)
    path = tmp_path / "c.msgpack"
    runs = []
    for n in range(2):
        async with (
            aiohttp.ClientSession() as session,
            ssevcr.use_cassette(path, record="once", faults=[fault]) as cas,
        ):
            runs.append(await faulted_stream(session, upstream.url + CHAT_URL, f"big{fault}{n}"))
            if not n:
                (recording,) = cas._recordings
                assert recording.live is not None
                assert sum(len(d) for _, d in recording.live._chunks) <= 1000
    assert runs[0][:3] == runs[1][:3], runs
    response = _store.load(path).interactions[0].response
    assert response.body == BODY[:1000] and response.end.outcome == Outcome.UPSTREAM_ERROR
    assert BODY.startswith(runs[0][1]) and len(runs[0][1]) < len(BODY)


async def test_an_upgrade_request_is_relayed_as_it_comes_and_warns(
    tmp_path: Path, upstream: Upstream
) -> None:
    """A request with ``Upgrade:`` (``ws_connect``) reads the upstream's answer itself, so a
    faulted cassette still relays it as it comes, and says that its faults were not shown."""
    path = tmp_path / "c.msgpack"
    async with aiohttp.ClientSession() as session:
        with (
            ssevcr.use_cassette(path, record="once", faults=["truncate:after=2"]) as cas,
            pytest.warns(ssevcr.UnappliedFaultWarning, match=r"GET http.*/health .* Upgrade"),
            pytest.raises(aiohttp.WSServerHandshakeError, match="200"),  # (not a WebSocket)
        ):
            await asyncio.wait_for(session.ws_connect(upstream.url + "/health"), 5)
    assert [i.response.status for i in cas.recorded] == [200]


async def test_the_stream_is_recorded_whole_when_the_client_is_cut_off(
    tmp_path: Path, upstream: Upstream
) -> None:
    """A cut shows the client its end while the upstream still streams; the relayed connection
    reads on (the session's close waits for it) and the recorded chunks keep the upstream's
    own times."""
    path = tmp_path / "c.msgpack"
    headers = steer(FIXTURE, "aio-cut", chunks="10", gap_ms="60")
    async with ssevcr.use_cassette(path, record="once", faults=["truncate:after=1"]) as cas:
        session = aiohttp.ClientSession()
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.post(upstream.url + CHAT_URL, json=CHAT, headers=headers) as r:
                async for _ in r.content.iter_any():
                    pass
        (recording,) = cas._recordings
        assert not recording.done  # the upstream is still streaming
        await asyncio.wait_for(session.close(), 5)
        assert recording.done
    exchange = upstream.exchange("aio-cut")
    assert exchange.outcome == "complete"
    response = _store.load(path).interactions[0].response
    assert response.body == BODY and response.end.outcome == Outcome.COMPLETE
    pairs = matched_gaps(exchange.sent, response.chunk_at, response.chunk_sizes)
    assert len(pairs) == 9 and sorted(abs(r - s) for s, r in pairs)[-2] <= 0.03, pairs


@pytest.mark.parametrize("fault", SDK_FAULTS)
async def test_the_openai_sdk_on_aiohttp_ends_the_same_on_the_recording_run_and_on_replay(
    fault: str, tmp_path: Path, upstream: Upstream
) -> None:
    """``AsyncOpenAI(http_client=DefaultAioHttpClient())``: the code under test ends the same
    (its text, or the SDK's exception) when its cassette is recorded and when it replays.
    Before, the recording run read the stream unfaulted."""
    openai = pytest.importorskip("openai")
    import httpx

    path = tmp_path / "sdk.msgpack"

    async def chat() -> tuple[str, str]:
        client = openai.AsyncOpenAI(
            api_key="sk-test",
            base_url=upstream.url + "/v1",
            http_client=openai.DefaultAioHttpClient(),
            timeout=httpx.Timeout(10, read=1.0),
            max_retries=1 if "times" in fault else 0,
            default_headers=steer(FIXTURE, gap_ms="2-6", chunks="10"),
        )
        async with client:
            try:
                stream = await client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
                )
                parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            except (openai.APIError, json.JSONDecodeError) as e:
                return type(e).__name__, str(e)[:80]
            return "ok", "".join(parts)

    outcomes = []
    for _ in range(2):
        async with ssevcr.use_cassette(path, record="once", faults=[fault]) as cas:
            outcomes.append(await chat())
        assert cas.fired == [fault]
    assert outcomes[0] == outcomes[1] and outcomes[0][0] == SDK_FAULTS[fault], outcomes
    response = _store.load(path).interactions[0].response
    assert response.body == BODY and response.end.outcome == Outcome.COMPLETE


async def test_a_recording_saved_before_the_upstream_ended_lets_it_go(
    tmp_path: Path, upstream: Upstream
) -> None:
    """A plain ``with`` in async code saves at its exit (it cannot wait for the loop): the
    faulted stream is saved as far as it came, and the relayed connection then closes at the
    upstream's next bytes instead of reading on for nothing."""
    path = tmp_path / "c.msgpack"
    headers = steer(FIXTURE, "aio-saved", chunks="10", gap_ms="100")  # 1 s in all
    async with aiohttp.ClientSession() as session:
        with (
            ssevcr.use_cassette(path, record="once", faults=["truncate:after=1"]),
            pytest.raises(aiohttp.ClientPayloadError),
        ):
            async with session.post(upstream.url + CHAT_URL, json=CHAT, headers=headers) as r:
                await r.read()
        exchange = await asyncio.to_thread(upstream.exchange, "aio-saved", 0.6)  # (1 s whole)
    assert exchange.outcome == "client_gone"
    response = _store.load(path).interactions[0].response
    assert response.end.outcome == Outcome.CLIENT_DISCONNECTED
    assert BODY.startswith(response.body) and response.body != BODY


async def test_a_held_close_gives_up_after_the_drain_timeout(
    tmp_path: Path, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's close waits for the recorder of a faulted stream, ``DRAIN_TIMEOUT`` at
    most: then the relayed connection closes and what came is kept (an upstream that never
    ends does not hang the close)."""
    monkeypatch.setattr(ssevcr._aiohttp, "DRAIN_TIMEOUT", 0.2)
    path = tmp_path / "c.msgpack"
    headers = steer(FIXTURE, "aio-held", chunks="10", gap_ms="300")  # 3 s in all
    async with ssevcr.use_cassette(path, record="once", faults=["truncate:after=1"]) as cas:
        session = aiohttp.ClientSession()
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.post(upstream.url + CHAT_URL, json=CHAT, headers=headers) as r:
                await r.read()
        t0 = time.monotonic()
        await asyncio.wait_for(session.close(), 5)
        assert 0.15 <= time.monotonic() - t0 < 1.5
        (recording,) = cas._recordings
        assert recording.done
    assert upstream.exchange("aio-held").outcome == "client_gone"
    response = _store.load(path).interactions[0].response
    assert response.end.outcome == Outcome.CLIENT_DISCONNECTED
    assert response.end.error == "the recorder was cancelled"
    assert response.body and BODY.startswith(response.body) and response.body != BODY


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_a_session_closed_while_its_recorded_stream_is_open_closes(
    tls: bool, tmp_path: Path, upstream: Upstream, tls_files: TLSFiles
) -> None:
    """``ClientSession.close()`` with a recorded response still streaming (the openai SDK's
    ``DefaultAioHttpClient`` closed, or garbage collected, as its stream gave up) closes the
    relayed connection at once, as it does without a cassette. Before, the connector waited
    forever for the real connection's handler, which the relay had taken the bytes from."""
    path = tmp_path / "c.msgpack"
    headers = steer(FIXTURE, "aio-closed", chunks="10", gap_ms="60")
    server = Upstream(tls=tls_files).start() if tls else upstream
    context = ssl.create_default_context(cafile=str(tls_files.cert)) if tls else None
    try:
        with ssevcr.use_cassette(path, record="once") as cas:
            session = aiohttp.ClientSession()
            r = await session.post(server.url + CHAT_URL, json=CHAT, headers=headers, ssl=context)
            assert await r.content.readany()
            await asyncio.wait_for(session.close(), 5)
            assert session.closed and not session.connector  # (dropped once closed)
        assert server.exchange("aio-closed").outcome == "client_gone"  # really closed
    finally:
        if tls:
            server.stop()
    (recorded,) = cas.recorded
    assert recorded.response.end.outcome == Outcome.CLIENT_DISCONNECTED
    assert recorded.response.body and BODY.startswith(recorded.response.body)
    assert _store.load(path).interactions[0].response.body == recorded.response.body


async def test_the_openai_sdk_closed_with_its_recorded_stream_open_closes(
    tmp_path: Path, upstream: Upstream
) -> None:
    """``AsyncOpenAI(http_client=DefaultAioHttpClient())`` closed while the stream it recorded
    is still open (httpx-aiohttp closes its ``ClientSession``)."""
    openai = pytest.importorskip("openai")
    path = tmp_path / "sdk.msgpack"
    with ssevcr.use_cassette(path, record="once") as cas:
        client = openai.AsyncOpenAI(
            api_key="sk-test",
            base_url=upstream.url + "/v1",
            http_client=openai.DefaultAioHttpClient(),
            max_retries=0,
            default_headers=steer(FIXTURE, "sdk-closed", chunks="10", gap_ms="60"),
        )
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        await anext(aiter(stream))
        await asyncio.wait_for(client.close(), 5)
    assert upstream.exchange("sdk-closed").outcome == "client_gone"
    (recorded,) = cas.recorded
    assert recorded.response.end.outcome == Outcome.CLIENT_DISCONNECTED
    assert recorded.response.body and BODY.startswith(recorded.response.body)


async def test_the_openai_sdk_with_the_aiohttp_client(
    tmp_path: Path, upstream: Upstream, capture: CaptureServer
) -> None:
    openai = pytest.importorskip("openai")
    path = tmp_path / "sdk.msgpack"

    async def chat(base_url: str, **options: object) -> str:
        client = openai.AsyncOpenAI(
            api_key="sk-test",
            base_url=base_url + "/v1",
            http_client=openai.DefaultAioHttpClient(),
            max_retries=0,
            default_headers=steer(FIXTURE, chunks="10"),
        )
        async with client:
            parts = []
            stream = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
            return "".join(parts)

    with ssevcr.use_cassette(path, record="once"):
        assert await chat(upstream.url) == TEXT
    assert len(upstream.exchanges) == 1
    stop(upstream)
    with ssevcr.use_cassette(path) as cas:
        assert await chat(capture.url) == TEXT
    assert len(cas.plays) == 1 and capture.connections == 0
    with (
        ssevcr.use_cassette(path, faults=["truncate:after=3,end=abort"]),
        pytest.raises(Exception) as info,
    ):
        await chat(capture.url)
    chain, cause = [], info.value
    while cause is not None:
        chain.append(type(cause))
        cause = cause.__cause__ or cause.__context__
    assert aiohttp.ClientPayloadError in chain  # aiohttp's own error, under the SDK's
    assert capture.connections == 0


def test_the_connector_is_restored_after_the_cassette(tmp_path: Path) -> None:
    chat_cassette(tmp_path / "c.msgpack")
    connect = aiohttp.BaseConnector.connect
    with ssevcr.use_cassette(tmp_path / "c.msgpack"):
        assert aiohttp.BaseConnector.connect is not connect

        async def one() -> bytes:
            async with aiohttp.ClientSession() as s, s.post("http://x" + CHAT_URL, json=CHAT) as r:
                return await r.read()

        assert asyncio.run(one()) == BODY
    assert aiohttp.BaseConnector.connect is connect
