"""``ssevcr.use_cassette``: interception of every httpx/httpx2 client, replay and in-process
recording against the real local upstream of tests/upstream.py (real sockets on 127.0.0.1,
provider fixture bytes, known gaps), as a context manager and as a sync/async decorator, nested
and from threads."""

from __future__ import annotations

import asyncio
import contextvars
import gzip
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest
from client_helpers import (
    CHAT,
    SLOW,
    assert_arrival_gaps,
    burst_headers,
    chat_cassette,
    small_recordings,
)
from upstream import Upstream, fixture_body, matched_gaps

import ssevcr
from ssevcr import NoMatchError, ReplayTransport, _format, _store
from ssevcr._cassette import Cassette, Outcome
from ssevcr._intercept import ActiveCassette, active, use_cassette
from ssevcr._sse import parse

SECRET = "sk-live-SECRET-4f9a8b7c6d5e"


def steer(fixture: str | None = None, test_id: str | None = None, **kw: str) -> dict[str, str]:
    """Headers that steer tests/upstream.py (``gap_ms="5-60"`` -> ``x-upstream-gap-ms``)."""
    h = {f"x-upstream-{k.replace('_', '-')}": v for k, v in kw.items()}
    if fixture:
        h["x-upstream-fixture"] = fixture
    if test_id:
        h["x-test-id"] = test_id
    return h


def stop(server: Upstream) -> None:
    """Stop the upstream after ending its connection handlers (a handler still waiting on a
    keep-alive connection when the loop stops is destroyed pending: an unraisable warning).
    Stopping twice is fine."""
    if not server._thread.is_alive():
        return

    async def end_handlers() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(end_handlers(), server._loop).result(10)
    server.stop()


def synthetic(path: Path, gap: float = 0.0, count: int = 1) -> Cassette:
    """A cassette of ``count`` openai chat interactions built from the fixture bytes, one frame
    per chunk, ``gap`` seconds apart (synthesized timing)."""
    return chat_cassette(path, gap=gap, count=count)


def post(client: Any, url: str = "http://127.0.0.1:9/v1/chat/completions", **kw: Any) -> Any:
    return client.post(url, json=CHAT, **kw)


# ------------------------------------------------------------------------------ replay


def test_context_manager_replays_every_client_kind_and_restores_the_transports(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.msgpack"
    cassette = synthetic(path, count=4)
    body = cassette.interactions[0].response.body
    originals = {
        m: (m.HTTPTransport.handle_request, m.AsyncHTTPTransport.handle_async_request)
        for m in (httpx, httpx2)
    }
    with ssevcr.use_cassette(path, timing="instant") as cas:
        assert active() is cas
        with httpx.Client() as c1, httpx2.Client() as c2:
            assert post(c1).content == body
            assert post(c2).content == body

        async def both() -> list[bytes]:
            async with httpx.AsyncClient() as a1, httpx2.AsyncClient() as a2:
                return [(await post(a1)).content, (await post(a2)).content]

        assert asyncio.run(both()) == [body, body]
        assert len(cas.plays) == 4 and not cas.misses and not cas.unused()
    assert active() is None
    for m, (sync, asyn) in originals.items():
        assert m.HTTPTransport.handle_request is sync
        assert m.AsyncHTTPTransport.handle_async_request is asyn
    assert not cas.recorded and not cas.saved


def test_outside_the_context_requests_go_to_the_network(tmp_path: Path, upstream: Upstream) -> None:
    synthetic(tmp_path / "c.msgpack")
    with ssevcr.use_cassette(tmp_path / "c.msgpack", timing="instant"):
        pass
    with httpx2.Client() as client:
        assert post(client, upstream.url + "/v1/chat/completions").status_code == 200
    assert len(upstream.exchanges) == 1


def test_nested_cassettes_innermost_answers_and_each_exit_restores(tmp_path: Path) -> None:
    outer_path, inner_path = tmp_path / "outer.msgpack", tmp_path / "inner.msgpack"
    synthetic(outer_path, count=2)
    synthetic(inner_path, count=1)
    with httpx2.Client() as client, ssevcr.use_cassette(outer_path, timing="instant") as outer:
        with ssevcr.use_cassette(inner_path, timing="instant") as inner:
            assert active() is inner
            post(client)
            with pytest.raises(NoMatchError, match="already played"):
                post(client)  # the inner one is used up; the outer one is not asked
        assert active() is outer
        post(client)
        assert (len(outer.plays), len(inner.plays), len(inner.misses)) == (1, 1, 1)
    assert active() is None
    assert httpx2.HTTPTransport.handle_request.__name__ == "handle_request"
    assert not hasattr(httpx2.HTTPTransport.handle_request, "__wrapped__")


def test_the_same_use_object_reentered_and_exited_out_of_order(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    synthetic(path, count=3)
    use = ssevcr.use_cassette(path, timing="instant")
    with use as a, use as b:
        assert a is not b and active() is b
    assert active() is None
    # two cassettes left in another order than entered (interleaved tasks) still unpatch
    first, second = ssevcr.use_cassette(path), ssevcr.use_cassette(path)
    x = first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert active() is not x and active() is not None
    second.__exit__(None, None, None)
    assert active() is None and not hasattr(httpx.HTTPTransport.handle_request, "__wrapped__")


def test_sync_decorator_and_async_decorator(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    cassette = synthetic(path, count=1)
    body = cassette.interactions[0].response.body

    @ssevcr.use_cassette(path, timing="instant")
    def sync_call(n: int) -> bytes:
        assert active() is not None
        with httpx2.Client() as client:
            return bytes(post(client).content) * n

    @ssevcr.use_cassette(path, timing="instant")
    async def async_call() -> bytes:
        async with httpx2.AsyncClient() as client:
            return bytes((await post(client)).content)

    assert sync_call.__name__ == "sync_call"
    assert sync_call(2) == body * 2
    assert sync_call(1) == body  # each call is a fresh entry: the interaction plays again
    assert asyncio.run(async_call()) == body
    assert asyncio.iscoroutinefunction(async_call)
    assert active() is None


async def test_async_with_and_original_timing_sleeps_the_recorded_gaps(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    synthetic(path, gap=0.01)
    async with httpx2.AsyncClient() as client, ssevcr.use_cassette(path) as cas:
        t0 = time.monotonic()
        async with client.stream("POST", "http://x/v1/chat/completions", json=CHAT) as r:
            arrivals = [time.monotonic() - t0 async for _ in r.aiter_raw()]
    recorded = cas.cassette.interactions[0].response.chunk_at
    assert len(arrivals) == len(recorded)
    assert arrivals[-1] >= recorded[-1] - 0.005
    assert arrivals[-1] < recorded[-1] + 0.25


def tagged(path: Path, tag: str, *, count: int = 1, gap: float = 0.0) -> bytes:
    """A cassette of ``count`` identical chat interactions whose stream names ``tag`` (three
    events ``gap`` seconds apart); returns the body."""
    frames = [f"data: {tag} {n}\n\n".encode() for n in range(3)]
    chat_cassette(path, gap=gap, count=count, chunks=frames)
    return b"".join(frames)


NETWORK = b'{"ok": true, "path": "/v1/chat/completions", "method": "POST"}'  # the upstream's answer


def test_two_threads_with_their_own_cassettes_at_once(tmp_path: Path) -> None:
    """Both cassettes are open at the same time, in two threads (httpx in one, httpx2 in the
    other): each thread's requests are answered by its own, none misses."""
    both_open = threading.Barrier(2, timeout=20)
    results: dict[str, Any] = {}

    def work(tag: str, lib: Any) -> None:
        path = tmp_path / f"{tag}.msgpack"
        body = tagged(path, tag, count=3, gap=0.002)
        with lib.Client() as client, ssevcr.use_cassette(path) as cas:
            both_open.wait()
            got = [bytes(post(client).content) for _ in range(3)]
            both_open.wait()  # neither exits before the other's requests were answered
        results[tag] = (got == [body] * 3, len(cas.plays), len(cas.misses), cas.unused())

    threads = [
        threading.Thread(target=work, args=("a", httpx)),
        threading.Thread(target=work, args=("b", httpx2)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"a": (True, 3, 0, []), "b": (True, 3, 0, [])}
    assert active() is None and not hasattr(httpx.HTTPTransport.handle_request, "__wrapped__")


async def test_two_tasks_with_their_own_cassettes_at_once(
    tmp_path: Path, upstream: Upstream
) -> None:
    """Two tasks of one event loop, each inside its own cassette, streaming interleaved (the
    recorded gaps make each wait while the other reads), and a third task outside any cassette
    whose requests reach the network meanwhile."""
    both_open = asyncio.Barrier(3)

    async def work(tag: str, lib: Any) -> tuple[list[bytes], int, int]:
        path = tmp_path / f"{tag}.msgpack"
        body = tagged(path, tag, count=2, gap=0.003)
        async with lib.AsyncClient() as client, ssevcr.use_cassette(path) as cas:
            await both_open.wait()
            got = []
            for _ in range(2):
                async with client.stream("POST", "http://x/v1/chat/completions", json=CHAT) as r:
                    got.append(b"".join([c async for c in r.aiter_raw()]))
            assert got == [body, body]
        return got, len(cas.plays), len(cas.misses)

    async def outside() -> bytes:
        async with httpx2.AsyncClient() as client:
            await both_open.wait()
            return bytes((await post(client, upstream.url + "/v1/chat/completions")).content)

    a, b, net = await asyncio.gather(work("a", httpx2), work("b", httpx), outside())
    assert (a[1:], b[1:]) == ((2, 0), (2, 0))
    assert json.loads(net) == json.loads(NETWORK) and len(upstream.exchanges) == 1


def test_what_threads_started_inside_see(tmp_path: Path, upstream: Upstream) -> None:
    """Threads inherit no cassette, unless they run in a copy of the context: a plain thread and
    a thread pool worker reach the network; ``contextvars.copy_context().run`` and
    ``asyncio.to_thread`` replay."""
    path = tmp_path / "c.msgpack"
    body = tagged(path, "replayed", count=3)
    url = upstream.url + "/v1/chat/completions"

    def call() -> bytes:
        with httpx2.Client() as client:
            return bytes(post(client, url).content)

    seen: dict[str, bytes] = {}
    with ssevcr.use_cassette(path, timing="instant") as cas:
        plain = threading.Thread(target=lambda: seen.update(plain=call()))
        plain.start()
        plain.join(20)
        context = contextvars.copy_context()
        copied = threading.Thread(target=lambda: seen.update(copied=context.run(call)))
        copied.start()
        copied.join(20)
        with ThreadPoolExecutor(2) as pool:
            seen["pool"] = pool.submit(call).result(20)
            seen["pool, copied context"] = pool.submit(contextvars.copy_context().run, call).result(
                20
            )

        async def to_thread() -> bytes:
            return await asyncio.to_thread(call)

        seen["asyncio.to_thread"] = asyncio.run(to_thread())
    assert {k: v == body for k, v in seen.items()} == {
        "plain": False,
        "copied": True,
        "pool": False,
        "pool, copied context": True,
        "asyncio.to_thread": True,
    }
    assert seen["plain"] == seen["pool"] and json.loads(seen["plain"]) == json.loads(NETWORK)
    assert len(upstream.exchanges) == 2 and len(cas.plays) == 3 and not cas.misses


def test_a_process_wide_cassette_answers_threads_without_one_of_their_own(
    tmp_path: Path,
) -> None:
    outer_path, inner_path = tmp_path / "outer.msgpack", tmp_path / "inner.msgpack"
    outer_body = tagged(outer_path, "outer", count=3)
    inner_body = tagged(inner_path, "inner", count=1)

    def call() -> bytes:
        with httpx.Client() as client:
            return bytes(post(client).content)

    def in_a_thread() -> bytes:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(call).result(20)

    with ssevcr.use_cassette(outer_path, timing="instant", process_wide=True) as outer:
        assert in_a_thread() == outer_body
        with ssevcr.use_cassette(inner_path, timing="instant") as inner:
            assert call() == inner_body  # this context's own cassette first
            assert in_a_thread() == outer_body  # a thread without one: the process-wide one
        assert call() == outer_body
    assert (len(outer.plays), len(inner.plays)) == (3, 1)
    assert active() is None


def test_one_use_object_entered_from_two_threads_saves_each_stream_whole(
    tmp_path: Path, upstream: Upstream
) -> None:
    """Thread A enters, then thread B enters the same object and starts a stream; A exits (and
    saves) while B's stream is still open. Each exit saves its own entry: both streams whole."""
    path = tmp_path / "rec.msgpack"
    use = ssevcr.use_cassette(path, record="new_episodes")
    a_in, b_streaming, a_out = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def stream(client: Any, test_id: str, gap: str) -> Iterator[bytes]:
        with client.stream(
            "POST",
            upstream.url + "/v1/chat/completions",
            json={**CHAT, "model": test_id},
            headers=steer("openai-chat/text.sse", test_id, gap_ms=gap),
        ) as r:
            yield from r.iter_raw()

    def a() -> None:
        try:
            with httpx2.Client() as client, use:
                a_in.set()
                assert b_streaming.wait(20)
                b"".join(stream(client, "a", "5"))
        except BaseException as e:  # reported by the main thread
            errors.append(e)
        finally:
            a_out.set()

    def b() -> None:
        try:
            assert a_in.wait(20)
            with httpx2.Client() as client, use:
                pieces = stream(client, "b", "15")
                next(pieces)
                b_streaming.set()
                assert a_out.wait(20)
                b"".join(pieces)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    saved = _store.load(path).interactions
    assert sorted(json.loads(i.request.body)["model"] for i in saved) == ["a", "b"]
    for interaction in saved:
        assert interaction.response.end.outcome == Outcome.COMPLETE
        assert interaction.response.body == fixture_body("openai-chat/text.sse")


async def test_exits_in_another_task_or_context_than_the_entry(
    tmp_path: Path, upstream: Upstream
) -> None:
    """pytest-asyncio runs an async fixture's setup and teardown in different tasks: the exit
    closes the entry all the same. A task started inside and still running after the exit holds
    a copy of the context with the closed cassette in it: its requests reach the network."""
    path = tmp_path / "c.msgpack"
    body = tagged(path, "replayed", count=2)
    url = upstream.url + "/v1/chat/completions"
    use = ssevcr.use_cassette(path, timing="instant")

    async def call() -> bytes:
        async with httpx2.AsyncClient() as client:
            return bytes((await post(client, url)).content)

    async def enter() -> ActiveCassette:
        return use.__enter__()

    cas = await asyncio.create_task(enter())
    assert active() is None  # entered in the other task's context, not this one
    use.__exit__(None, None, None)
    assert cas.closed and not hasattr(httpx2.AsyncHTTPTransport.handle_async_request, "__wrapped__")

    go = asyncio.Event()

    async def later() -> tuple[bytes, bytes]:
        first = await call()
        await go.wait()
        return first, await call()

    async with use as cas:
        task = asyncio.create_task(later())  # copies this context: the cassette is in it
        await asyncio.sleep(0.05)
    go.set()
    first, second = await asyncio.wait_for(task, 20)
    assert first == body and json.loads(second) == json.loads(NETWORK)
    assert len(cas.plays) == 1 and len(upstream.exchanges) == 1


def test_faults_and_a_miss_in_process(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    synthetic(path)
    with (
        httpx2.Client() as client,
        ssevcr.use_cassette(path, timing="instant", faults=["truncate:after=3,end=abort"]) as cas,
    ):
        with client.stream("POST", "http://x/v1/chat/completions", json=CHAT) as r:
            got = []
            with pytest.raises(httpx2.RemoteProtocolError):
                for chunk in r.iter_raw():
                    got.append(chunk)
        assert len(parse(b"".join(got)).events) == 3
        assert cas.fired == ["truncate:after=3,end=abort"]
        with pytest.raises(NoMatchError) as info:
            client.post("http://x/v1/chat/completions", json={**CHAT, "model": "gpt-other"})
    text = str(info.value)
    assert '$.model: recorded "gpt-4o", got "gpt-other"' in text
    assert "record mode 'none'" in text
    assert cas.explain() == text and cas.explain(1) == ""
    assert [m.request.body for m in cas.misses] == [
        json.dumps({**CHAT, "model": "gpt-other"})
        .encode()
        .replace(b", ", b",")
        .replace(b": ", b":")
    ]


def test_missing_cassette_in_none_mode_says_how_to_record(tmp_path: Path) -> None:
    with (
        httpx2.Client() as client,
        ssevcr.use_cassette(tmp_path / "absent.msgpack") as cas,
        pytest.raises(NoMatchError, match="does not exist; record it with record='once'"),
    ):
        post(client)
    assert len(cas.misses) == 1 and not (tmp_path / "absent.msgpack").exists()


def test_bad_options_fail_at_the_call() -> None:
    with pytest.raises(ssevcr.ConfigError, match="record mode"):
        use_cassette("x.msgpack", record="sometimes")
    with pytest.raises(ssevcr.ConfigError):
        use_cassette("x.msgpack", timing="warp")
    with pytest.raises(ssevcr.ConfigError):
        use_cassette("x.msgpack", faults=["explode"])
    with pytest.raises(ssevcr.ConfigError):
        use_cassette("x.msgpack", match_on=["colour"])


# ------------------------------------------------------------------------------ recording


def test_record_once_timestamps_follow_the_upstream_gaps_and_redacts(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "rec.msgpack"
    headers = {
        "authorization": f"Bearer {SECRET}",
        **steer("openai-chat/text.sse", "gaps", chunks="12", gap_ms="5-60", set_cookie="1"),
    }
    with httpx2.Client() as client, ssevcr.use_cassette(path, record="once") as cas:
        t0 = time.monotonic()
        with client.stream(
            "POST", upstream.url + "/v1/chat/completions?key=" + SECRET, json=CHAT, headers=headers
        ) as r:
            seen = b"".join(r.iter_raw())
    ex = upstream.exchange("gaps")
    assert ex.headers["authorization"] == f"Bearer {SECRET}"  # the real key went upstream
    saved = _store.load(path)
    assert saved.interactions == tuple(cas.recorded) and cas.saved
    response = saved.interactions[0].response
    assert response.body == fixture_body("openai-chat/text.sse") == ex.sent_body == seen
    assert response.end.outcome == Outcome.COMPLETE and response.status == 200
    assert 0 <= response.headers_at <= response.chunk_at[0]
    # each chunk is stamped when it arrived: at the upstream's write time, gap for gap
    pairs = matched_gaps(ex.sent, response.chunk_at, response.chunk_sizes)
    assert len(pairs) == 11 and max(s for s, _ in pairs) > 0.03
    for sent_gap, recorded_gap in pairs:
        assert abs(recorded_gap - sent_gap) <= 0.03, pairs
    assert abs(t0 + response.chunk_at[-1] - ex.send_times[-1]) <= 0.05
    raw = path.read_bytes()
    assert SECRET.encode() not in raw and b"REDACTED" in raw
    assert response.header("set-cookie") == "REDACTED"
    assert saved.interactions[0].request.url.endswith("?key=REDACTED")


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
@pytest.mark.parametrize("mod", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_a_slow_consumer_does_not_move_the_recorded_chunks(
    tmp_path: Path, upstream: Upstream, mod: Any, encoding: str
) -> None:
    """A consumer that works between chunks: each chunk is stamped when the connection read it
    (a burst of two chunks in one read, together), not when the consumer pulled it (150 ms
    apart); gzip too (the consumer's chunks are decoded, the recorded ones the wire's)."""
    path = tmp_path / "slow.msgpack"
    headers = burst_headers("slow", gzip="1" if encoding == "gzip" else "0")
    with (
        mod.Client() as client,
        use_cassette(path, record="all"),
        client.stream("POST", upstream.url + "/v1/chat", json=CHAT, headers=headers) as r,
    ):
        for _ in r.iter_bytes():
            time.sleep(SLOW)
    response = assert_arrival_gaps(path, upstream.exchange("slow").sent)
    assert response.content_encoding == encoding


@pytest.mark.parametrize("mod", [httpx, httpx2], ids=["httpx", "httpx2"])
async def test_a_slow_async_consumer_does_not_move_the_recorded_chunks(
    tmp_path: Path, upstream: Upstream, mod: Any
) -> None:
    path = tmp_path / "slow.msgpack"
    async with mod.AsyncClient() as client:
        with use_cassette(path, record="all"):
            async with client.stream(
                "POST", upstream.url + "/v1/chat", json=CHAT, headers=burst_headers("aslow")
            ) as r:
                async for _ in r.aiter_raw():
                    await asyncio.sleep(SLOW)
    assert_arrival_gaps(path, upstream.exchange("aslow").sent)


@pytest.mark.parametrize("mod", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_a_first_chunk_read_with_the_head_is_stamped_when_it_arrived(
    tmp_path: Path, upstream: Upstream, mod: Any
) -> None:
    """The first chunk came in the head's write; the consumer asks for it 300 ms later: it is
    recorded when it came (with the head), as the upstream sent it."""
    path = tmp_path / "first.msgpack"
    headers = steer("openai-chat/text.sse", "first", chunks="3", gap_ms="30", head_with_first="1")
    with (
        mod.Client() as client,
        use_cassette(path, record="all"),
        client.stream("POST", upstream.url + "/v1/chat", json=CHAT, headers=headers) as r,
    ):
        time.sleep(0.3)
        for _ in r.iter_raw():
            pass
    ex = upstream.exchange("first")
    response = _store.load(path).interactions[0].response
    assert response.chunk_at[0] - response.headers_at <= 0.005, response.chunk_at
    assert abs(response.chunk_at[0] - (ex.sent[0][0] - ex.received_at)) <= 0.04


def test_the_read_watch_leaves_the_pooled_connection_as_it_was(
    tmp_path: Path, upstream: Upstream
) -> None:
    """The recorded response's network stream has its reads watched until the response ends
    or is closed early; then its connection, back in the pool, reads as before."""
    path = tmp_path / "pool.msgpack"
    url = upstream.url + "/v1/chat"
    with httpx.Client() as client, use_cassette(path, record="all"):
        streams = []
        for test_id, whole in (("pool-1", True), ("pool-2", False), ("pool-3", True)):
            headers = steer("openai-chat/text.sse", test_id, chunks="3", gap_ms="1")
            with client.stream("POST", url, json=CHAT, headers=headers) as r:
                stream = r.extensions["network_stream"]
                assert "read" in vars(stream)  # watched while it streams
                chunks = r.iter_raw()
                next(chunks)
                if whole:
                    for _ in chunks:
                        pass
            assert "read" not in vars(stream)
            streams.append(stream)
    assert streams[0] is streams[1]  # (the connection was reused: the pool's)
    assert len(_store.load(path).interactions) == 3


async def test_record_async_gzip_keeps_the_encoded_bytes(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "gz.msgpack"
    headers = steer("anthropic/text.sse", gzip="1", gap_ms="1")
    async with httpx2.AsyncClient() as client:
        with ssevcr.use_cassette(path, record="all"):
            r = await client.post(upstream.url + "/v1/messages", json=CHAT, headers=headers)
        assert r.content == fixture_body("anthropic/text.sse")  # the client got the decoded text
        response = _store.load(path).interactions[0].response
        assert response.content_encoding == "gzip"
        assert gzip.decompress(response.body) == r.content  # the cassette holds the wire bytes
        assert len(response.chunk_sizes) > 1
        with ssevcr.use_cassette(path, timing="instant"):
            again = await client.post("http://elsewhere/v1/messages", json=CHAT)
        assert again.content == r.content


def test_record_upstream_error_and_client_disconnect(tmp_path: Path, upstream: Upstream) -> None:
    path = tmp_path / "ends.msgpack"
    with httpx.Client() as client, ssevcr.use_cassette(path, record="all"):
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(
                upstream.url + "/v1/chat/completions",
                json=CHAT,
                headers=steer("openai-chat/text.sse", "dies", die_after="3", gap_ms="1"),
            )
        with client.stream(
            "POST",
            upstream.url + "/v1/chat/completions",
            json=CHAT,
            headers=steer("openai-chat/text.sse", gap_ms="20"),
        ) as r:
            first = next(r.iter_raw())
    broken, left = _store.load(path).interactions
    assert broken.response.end.outcome == Outcome.UPSTREAM_ERROR
    assert "RemoteProtocolError" in (broken.response.end.error or "")
    assert broken.response.body == upstream.exchange("dies").sent_body
    assert left.response.end.outcome == Outcome.CLIENT_DISCONNECTED
    assert left.response.body.startswith(first)
    # replaying the broken one raises the same library error after the same bytes
    with (
        httpx.Client() as client,
        ssevcr.use_cassette(path, timing="instant"),
        client.stream("POST", "http://x/v1/chat/completions", json=CHAT) as r,
    ):
        got = []
        with pytest.raises(httpx.RemoteProtocolError):
            got.extend(r.iter_raw())
    assert b"".join(got) == broken.response.body


def test_new_episodes_replays_matches_and_appends_misses(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "ep.msgpack"
    synthetic(path)
    other = {**CHAT, "model": "gpt-new"}
    with (
        httpx2.Client() as client,
        ssevcr.use_cassette(path, record="new_episodes", timing="instant") as cas,
    ):
        post(client, upstream.url + "/v1/chat/completions")  # replayed
        client.post(upstream.url + "/v1/chat/completions", json=other)  # recorded
    assert len(upstream.exchanges) == 1 and json.loads(upstream.exchanges[0].body) == other
    assert not cas.misses and len(cas.player.misses) == 1
    # plays: the replayed one, then the recorded one, at the place it takes in the cassette
    assert [(p.index, p.recorded) for p in cas.plays] == [(0, False), (1, True)]
    assert cas.plays[1].interaction == cas.recorded[0]
    saved = _store.load(path)
    assert [json.loads(i.request.body)["model"] for i in saved.interactions] == [
        "gpt-4o",
        "gpt-new",
    ]


def test_once_with_an_existing_file_replays_only_and_all_overwrites(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "c.msgpack"
    synthetic(path, count=2)
    with httpx2.Client() as client:
        with ssevcr.use_cassette(path, record="once"):
            post(client, upstream.url + "/v1/chat/completions")
        assert not upstream.exchanges
        with ssevcr.use_cassette(path, record="all") as cas:
            post(client, upstream.url + "/v1/chat/completions")
    assert len(upstream.exchanges) == 1 and [p.recorded for p in cas.plays] == [True]
    saved = _store.load(path)
    assert len(saved.interactions) == 1 and saved.interactions[0].request.url.startswith(
        upstream.url
    )


def test_saved_when_the_body_raises(tmp_path: Path, upstream: Upstream) -> None:
    path = tmp_path / "c.msgpack"
    with (
        pytest.raises(ZeroDivisionError),
        httpx2.Client() as client,
        ssevcr.use_cassette(path, record="once"),
    ):
        post(client, upstream.url + "/v1/chat/completions")
        1 / 0  # noqa: B018
    assert len(_store.load(path).interactions) == 1


def test_extra_redaction_and_matching_despite_redacted_values(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "c.msgpack"
    body = {**CHAT, "user": "alice@example.com"}
    with httpx2.Client() as client:
        with ssevcr.use_cassette(
            path,
            record="once",
            redact_headers=["x-team"],
            redact_query=["sig"],
            redact_body=["user"],
        ):
            client.post(
                upstream.url + "/v1/chat/completions?sig=abc123&key=k1",
                json=body,
                headers={"x-team": "team-secret"},
            )
        raw = path.read_bytes()
        assert b"team-secret" not in raw and b"abc123" not in raw and b"alice@" not in raw
        # the live request still carries its real values: it matches the redacted recording
        with ssevcr.use_cassette(
            path, timing="instant", redact_query=["sig"], redact_body=["user"]
        ) as cas:
            client.post("http://x/v1/chat/completions?sig=other&key=k2", json=body)
        assert len(cas.plays) == 1


# ------------------------------------------------------------------ a cassette opened again


def chunks_of(client: Any, **kw: Any) -> list[bytes]:
    """The raw pieces the client library receives, one per transport chunk (boundaries kept)."""
    with client.stream("POST", "http://x/v1/chat/completions", json=CHAT, **kw) as r:
        return list(r.iter_raw())


def test_a_cassette_opened_again_is_not_decoded_or_scheduled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.msgpack"
    recorded = [c.data for c in synthetic(path).interactions[0].response.chunks]
    decodes: list[str] = []
    loads_any = _format.loads_any
    monkeypatch.setattr(
        _format,
        "loads_any",
        lambda data, *, path: decodes.append(path) or loads_any(data, path=path),
    )
    entries = []
    with httpx2.Client() as client:
        for _ in range(3):
            with ssevcr.use_cassette(path, timing="instant") as cas:
                assert chunks_of(client) == recorded  # bytes and chunk boundaries
            entries.append(cas)
        # what a fresh, never shared decode and schedule send: the same pieces
        fresh = ReplayTransport(_store.load(path), timing="instant")
        with httpx2.Client(transport=fresh) as own:
            assert chunks_of(own) == recorded
    assert decodes == [str(path)]
    first = entries[0]
    for cas in entries[1:]:
        assert cas.cassette is first.cassette
        assert cas.plays[0].schedule is first.plays[0].schedule
        assert cas.player is not first.player and len(cas.plays) == 1 and not cas.unused()
    assert fresh.player.plays[0].schedule == first.plays[0].schedule


def test_a_rewritten_cassette_is_read_again_even_with_the_same_size_and_times(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.msgpack"
    synthetic(path)
    with httpx2.Client() as client:
        with ssevcr.use_cassette(path, timing="instant"):
            before = b"".join(chunks_of(client))
        raw = path.read_bytes()
        stat = path.stat()
        assert raw.count(b"[DONE]") == 1 and b"[DONE]" in before
        path.write_bytes(raw.replace(b"[DONE]", b"[GONE]"))  # same size, in place
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        with ssevcr.use_cassette(path, timing="instant"):
            after = b"".join(chunks_of(client))
    assert after == before.replace(b"[DONE]", b"[GONE]")


def test_faults_and_seeds_on_a_reused_cassette(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    recorded = [c.data for c in synthetic(path, count=2).interactions[0].response.chunks]
    body = b"".join(recorded)

    def entry(**kw: Any) -> tuple[list[list[bytes]], Any]:
        with httpx2.Client() as client, ssevcr.use_cassette(path, timing="instant", **kw) as cas:
            return [chunks_of(client), chunks_of(client)], cas

    plain, cas = entry()
    assert plain == [recorded, recorded]
    cached = cas.plays[0].schedule
    # a fault applies to every play of a cassette already scheduled without it
    cut, cas = entry(faults=["truncate:after=3,end=close"])
    assert [len(parse(b"".join(c)).events) for c in cut] == [3, 3]
    assert cas.fired == ["truncate:after=3,end=close"] and cas.plays[0].schedule is not cached
    # seeds are per play (seed, interaction, how often played): the two plays are split differently,
    # the same seed splits the same way again, another seed differently
    split, _ = entry(faults=["rechunk:random"])
    again, _ = entry(faults=["rechunk:random"])
    other, _ = entry(faults=["rechunk:random"], seed=1)
    assert all(b"".join(c) == body for c in [*split, *again, *other])
    assert split[0] != split[1] and split == again and other != split
    # and the fault-free schedule is still the recording, still shared
    plain, cas = entry()
    assert plain == [recorded, recorded] and cas.plays[0].schedule is cached


def test_each_timing_has_its_own_schedules(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    synthetic(path, gap=0.002)
    schedules = {}
    with httpx2.Client() as client:
        for timing in ("instant", "original", "instant", "scale:0.5"):
            with ssevcr.use_cassette(path, timing=timing) as cas:
                chunks_of(client)
            schedules.setdefault(timing, []).append(cas.plays[0].schedule)
    instant, original, scaled = (
        schedules["instant"][0],
        schedules["original"][0],
        schedules["scale:0.5"][0],
    )
    assert schedules["instant"][1] is instant
    assert {s.at for s in instant.steps} == {0.0}
    assert [s.at for s in original.steps] == pytest.approx(
        [0.002 * (i + 1) for i in range(len(original.steps))]
    )
    assert [s.at for s in scaled.steps] == pytest.approx([s.at * 0.5 for s in original.steps])
    assert (
        [s.data for s in instant.steps]
        == [s.data for s in original.steps]
        == [s.data for s in scaled.steps]
    )


# ------------------------------------------------------------------ faults on a recording run

RECORD_FAULTS = [
    "truncate:after=3",
    "truncate:after=3,end=close",
    "truncate:after=2,end=reset",
    "truncate:byte=100",
    "stall:before=3,for=150ms",
    "drop:event=2",
    "drop:event=last",
    "corrupt:event=2",
    "corrupt:event=3,how=bytes",
    "duplicate:event=last",
    "error:after=2",
    "status:429",
    "rechunk:size=7",
    "rechunk:random",
]


def streamed(client: Any, url: str, fault_id: str) -> tuple[int, list[bytes], str | None]:
    """Status, raw pieces and the library error of one streamed request to the upstream."""
    pieces: list[bytes] = []
    headers = steer("openai-chat/text.sse", fault_id, chunks="12", gap_ms="2-6")
    try:
        with client.stream("POST", url, json=CHAT, headers=headers) as r:
            status = r.status_code
            pieces.extend(r.iter_raw())
    except httpx2.HTTPError as e:
        return status, pieces, type(e).__name__
    return status, pieces, None


@pytest.mark.parametrize("fault", RECORD_FAULTS)
def test_a_fault_shows_the_same_on_the_recording_run_and_on_replay(
    fault: str, tmp_path: Path, upstream: Upstream
) -> None:
    """The recording run shows the client the replay of what it records: the same status,
    pieces (bytes and boundaries) and error as the replay that follows; the cassette holds the
    upstream's stream whole."""
    path = tmp_path / "c.msgpack"
    url = upstream.url + "/v1/chat/completions"
    runs = []
    for _ in range(2):
        with httpx2.Client() as client, use_cassette(path, record="once", faults=[fault]) as cas:
            runs.append((streamed(client, url, fault), cas))
    (recording, rec), (replay, rep) = runs
    assert [p.recorded for p in rec.plays] == [True] and [p.recorded for p in rep.plays] == [False]
    assert recording == replay
    assert rec.fired == rep.fired == [fault]
    assert len(upstream.exchanges) == 1
    response = _store.load(path).interactions[0].response
    assert (
        response.body == fixture_body("openai-chat/text.sse") == upstream.exchange(fault).sent_body
    )
    assert response.end.outcome == Outcome.COMPLETE


def test_a_body_past_the_recording_limit_shows_what_is_kept(
    tmp_path: Path, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the recording limit the cassette keeps no more and ends as an upstream error: the
    recording run shows the client that, as the replay does (before, the whole body, held in
    the live schedule too)."""
    small_recordings(monkeypatch, 1000)
    path = tmp_path / "c.msgpack"
    url = upstream.url + "/v1/chat/completions"
    runs = []
    for n in range(2):
        with httpx2.Client() as client, use_cassette(path, record="once", faults=["drop:event=2"]):
            runs.append(streamed(client, url, f"big{n}"))
    assert runs[0] == runs[1] and runs[0][2] is not None, runs
    response = _store.load(path).interactions[0].response
    assert response.end.outcome == Outcome.UPSTREAM_ERROR and len(response.body) == 1000


async def astreamed(client: Any, url: str, fault_id: str) -> tuple[int, list[bytes], str | None]:
    pieces: list[bytes] = []
    headers = steer("openai-chat/text.sse", fault_id, chunks="12", gap_ms="2-6")
    try:
        async with client.stream("POST", url, json=CHAT, headers=headers) as r:
            status = r.status_code
            pieces.extend([c async for c in r.aiter_raw()])
    except httpx.HTTPError as e:
        return status, pieces, type(e).__name__
    return status, pieces, None


@pytest.mark.parametrize("fault", RECORD_FAULTS)
async def test_async_a_fault_shows_the_same_on_the_recording_run_and_on_replay(
    fault: str, tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "c.msgpack"
    url = upstream.url + "/v1/chat/completions"
    runs = []
    for _ in range(2):
        async with (
            httpx.AsyncClient() as client,
            use_cassette(path, record="once", faults=[fault]) as cas,
        ):
            runs.append(await astreamed(client, url, fault))
            if not runs[1:]:  # closing the stream waited for the recorder: the upstream is read
                assert [r.done for r in cas._recordings] == [True]
    assert runs[0] == runs[1] and len(upstream.exchanges) == 1
    response = _store.load(path).interactions[0].response
    assert response.body == fixture_body("openai-chat/text.sse")
    assert response.end.outcome == Outcome.COMPLETE


def sdk_outcome(call: Any) -> tuple[str, str]:
    """What the code under test ends with: its text, or the SDK exception it raised."""
    try:
        return "ok", call()
    except (openai.APIError, json.JSONDecodeError) as e:
        return type(e).__name__, str(e)[:80]


SDK_FAULTS = {
    "truncate:after=3": "APIConnectionError",
    "stall:before=2,for=forever": "APITimeoutError",
    "drop:event=last": "ok",
    "corrupt:event=2": "JSONDecodeError",
    "error:after=2": "APIError",
    "status:429": "RateLimitError",
    "status:503,times=1": "ok",  # the SDK retries: the recording plays
}


@pytest.mark.parametrize("fault", SDK_FAULTS)
def test_the_openai_sdk_ends_the_same_on_the_recording_run_and_on_replay(
    fault: str, tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "c.msgpack"

    def chat() -> str:
        client = openai.OpenAI(
            api_key=SECRET,
            base_url=upstream.url + "/v1",
            max_retries=1 if "times" in fault else 0,
            timeout=httpx2.Timeout(
                10, read=3.0
            ),  # only the forever-stall waits for it (a loaded machine can pause 0.5 s)
            default_headers=steer("openai-chat/text.sse", gap_ms="2-6", chunks="10"),
        )
        stream = client.chat.completions.create(model="gpt-4o", messages=[], stream=True)
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    outcomes = []
    for _ in range(2):
        with use_cassette(path, record="once", faults=[fault]) as cas:
            outcomes.append(sdk_outcome(chat))
        assert cas.fired == [fault]
    assert outcomes[0] == outcomes[1] and outcomes[0][0] == SDK_FAULTS[fault], outcomes
    assert _store.load(path).interactions[0].response.end.outcome == Outcome.COMPLETE


async def test_the_async_openai_sdk_ends_the_same_on_both_runs(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "c.msgpack"

    async def chat() -> tuple[str, str]:
        client = openai.AsyncOpenAI(
            api_key=SECRET,
            base_url=upstream.url + "/v1",
            max_retries=0,
            default_headers=steer("openai-chat/text.sse", gap_ms="2-6", chunks="10"),
        )
        stream = await client.chat.completions.create(model="gpt-4o", messages=[], stream=True)
        seen = []
        try:
            async for c in stream:
                seen.append(c)
        except openai.APIError as e:
            return type(e).__name__, str(len(seen))
        return "ok", str(len(seen))

    outcomes = []
    for _ in range(2):
        async with use_cassette(path, record="once", faults=["truncate:after=4"]):
            outcomes.append(await chat())
    assert outcomes == [("APIConnectionError", "4")] * 2
    assert _store.load(path).interactions[0].response.body == fixture_body("openai-chat/text.sse")


CLOSED_EARLY = ("openai-chat/text.sse", "closed-early")  # 10 chunks 60 ms apart: 0.6 s


def test_a_client_closed_while_its_faulted_stream_is_recorded_waits_for_the_recorder(
    tmp_path: Path, upstream: Upstream
) -> None:
    """The client gives up on a faulted stream and is closed at once (openai's SDK closes its
    pool when the client is garbage collected): the close waits for the recorder, which reads
    the upstream to its end and then closes the pool. Before, the close cut the recording."""
    path = tmp_path / "c.msgpack"
    headers = steer(*CLOSED_EARLY, chunks="10", gap_ms="60")
    with use_cassette(path, record="once", faults=["truncate:after=2"]) as cas:
        client = httpx2.Client()
        pool = client._transport._pool  # type: ignore[attr-defined]
        with (
            client.stream(
                "POST", upstream.url + "/v1/chat/completions", json=CHAT, headers=headers
            ) as r,
            pytest.raises(httpx2.HTTPError),
        ):
            list(r.iter_raw())
        (recording,) = cas._recordings
        assert not recording.done  # the upstream is still streaming
        client.close()
        assert pool.connections  # held
    response = _store.load(path).interactions[0].response
    assert response.body == fixture_body(CLOSED_EARLY[0]), response.end
    assert response.end.outcome == Outcome.COMPLETE
    assert not pool.connections and "close" not in vars(client._transport)  # closed, unwatched


async def test_an_async_client_closed_while_its_faulted_stream_is_recorded_waits_too(
    tmp_path: Path, upstream: Upstream
) -> None:
    """The async client closed with its response left open (``AsyncOpenAI`` garbage collected
    closes its pool in a task)."""
    path = tmp_path / "c.msgpack"
    headers = steer(*CLOSED_EARLY, chunks="10", gap_ms="60")
    async with use_cassette(path, record="once", faults=["truncate:after=2"]) as cas:
        client = httpx.AsyncClient()
        pool = client._transport._pool  # type: ignore[attr-defined]
        url = upstream.url + "/v1/chat/completions"
        r = await client.send(
            client.build_request("POST", url, json=CHAT, headers=headers), stream=True
        )
        with pytest.raises(httpx.HTTPError):  # (closing the response would wait for the recorder)
            _ = [c async for c in r.aiter_raw()]
        (recording,) = cas._recordings
        assert not recording.done
        await client.aclose()
        assert pool.connections
    response = _store.load(path).interactions[0].response
    assert response.body == fixture_body(CLOSED_EARLY[0]), response.end
    assert response.end.outcome == Outcome.COMPLETE
    assert not pool.connections and "aclose" not in vars(client._transport)


def test_the_client_is_stalled_not_the_recorder(tmp_path: Path, upstream: Upstream) -> None:
    """A stall shows the client a pause before event 3, while the recorder reads on: the
    recorded chunk times follow the upstream's own gaps, not the client's."""
    path = tmp_path / "c.msgpack"
    url = upstream.url + "/v1/chat/completions"
    headers = steer("openai-chat/text.sse", "stall", chunks="10", gap_ms="10-20")
    with (
        httpx2.Client() as client,
        use_cassette(path, record="once", faults=["stall:before=3,for=400ms"]),
    ):
        t0 = time.monotonic()
        with client.stream("POST", url, json=CHAT, headers=headers) as r:
            arrivals = [(time.monotonic() - t0, len(c)) for c in r.iter_raw()]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) >= 0.35 and sum(g >= 0.3 for g in gaps) == 1, gaps
    response = _store.load(path).interactions[0].response
    pairs = matched_gaps(upstream.exchange("stall").sent, response.chunk_at, response.chunk_sizes)
    assert len(pairs) == 9
    # (one gap may take a scheduling stall of the loaded machine; the rest must follow)
    errors = sorted(abs(recorded_gap - sent_gap) for sent_gap, recorded_gap in pairs)
    assert errors[-2] <= 0.03, pairs


def test_the_recording_is_whole_when_the_client_stops_early(
    tmp_path: Path, upstream: Upstream
) -> None:
    """After a truncate the client is gone; the recorder reads the rest of the upstream (the
    save waits for it), so the replay has every event to truncate again."""
    path = tmp_path / "c.msgpack"
    url = upstream.url + "/v1/chat/completions"
    headers = steer("openai-chat/text.sse", "early", chunks="10", gap_ms="20-30")
    with httpx2.Client() as client, use_cassette(path, record="once", faults=["truncate:after=1"]):
        with client.stream("POST", url, json=CHAT, headers=headers) as r:
            first = next(r.iter_raw())
        left = time.monotonic()
    waited = time.monotonic() - left
    assert waited > 0.1  # the save waited for the upstream's last chunks
    assert len(parse(first).events) == 1
    response = _store.load(path).interactions[0].response
    assert response.body == fixture_body("openai-chat/text.sse")
    assert response.end.outcome == Outcome.COMPLETE


@pytest.mark.parametrize("lib", [httpx, httpx2])
async def test_offsets_count_from_the_request_fully_sent(
    lib: Any, tmp_path: Path, upstream: Upstream
) -> None:
    """Connecting and sending are not the upstream's time: t0 is when the transport's trace says
    the body went out, the head's time when it says the head came in; the request's own trace
    callback still sees every event."""
    path = tmp_path / "c.msgpack"
    seen: dict[str, float] = {}

    async def trace(name: str, info: dict[str, Any]) -> None:
        seen.setdefault(name, time.monotonic())

    async with lib.AsyncClient() as client, use_cassette(path, record="all") as cas:
        await client.post(
            upstream.url + "/v1/chat/completions",
            json=CHAT,
            headers=steer("openai-chat/text.sse", gap_ms="5"),
            extensions={"trace": trace},
        )
    t0 = cas._recordings[0].capture.t0
    assert seen["connection.connect_tcp.complete"] < seen["http11.send_request_body.started"]
    assert (
        seen["http11.send_request_body.started"]
        < t0
        < seen["http11.receive_response_headers.complete"]
    )
    head = _store.load(path).interactions[0].response.headers_at
    assert 0 < head < seen["http11.response_closed.complete"] - t0
    assert t0 + head >= seen["http11.receive_response_headers.started"]
