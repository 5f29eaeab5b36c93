"""The replay server over real sockets on 127.0.0.1: the official SDKs (sync and async, httpx2
underneath), plain httpx/httpx2, aiohttp, curl and a raw h11 socket get exactly the recorded bytes,
chunk boundaries and (at scale 1) gaps; every fault is observed from a real client; misses,
malformed requests, vanishing clients and 200 concurrent streams are handled; clients that keep a
connection without a request are closed by the head and idle timeouts, and pools reconnect.

Expected content is derived from the recorded bytes with our parser, never from the server."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import socket
import statistics
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import anthropic
import h11
import httpx
import httpx2
import openai
import pytest
from replay_helpers import (
    ALL_EXAMPLES,
    ANTHROPIC,
    ANTHROPIC_TOOLS,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
    OPENAI_TOOLS,
    example_path,
    expected,
    interaction,
    json_interaction,
    params,
    raw_request,
    read_response,
    request_bytes,
)

from ssevcr._cassette import Cassette
from ssevcr._player import Player
from ssevcr._schedule import HOP_BY_HOP
from ssevcr._server import HEAD_TIMEOUT, IDLE_TIMEOUT, ReplayServer
from ssevcr._server_thread import ServerThread
from ssevcr._sse import parse

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning"
)  # anthropic warns about old model names


@dataclass
class Served:
    thread: ServerThread
    logs: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.thread.url

    @property
    def player(self) -> Player:
        return self.thread.player

    @property
    def requests(self) -> int:
        return self.thread.server.requests

    def wait_idle(self, timeout: float = 3.0) -> int:
        """Open connections once they drain (or the count at the timeout)."""
        deadline = time.monotonic() + timeout
        while self.thread.server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.thread.server.connections

    def loop_tasks(self) -> list[str]:
        return self.thread.call(
            lambda: sorted(t.get_coro().__qualname__ for t in asyncio.all_tasks())
        )


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(
        cassettes: Any,
        *,
        cors: bool = False,
        repeat: bool = True,
        head_timeout: float | None = HEAD_TIMEOUT,
        idle_timeout: float | None = IDLE_TIMEOUT,
        **kw: Any,
    ) -> Served:
        if isinstance(cassettes, str):
            cassettes = [example_path(cassettes)]
        player = Player.create(cassettes, repeat=repeat, **kw)
        served = Served(
            ServerThread(player, cors=cors, head_timeout=head_timeout, idle_timeout=idle_timeout)
        )
        served.thread.server.log = served.logs.append
        served.thread.start()
        started.append(served)
        return served

    yield start
    for s in started:
        s.thread.close()


def path_of(name: str) -> str:
    r = interaction(name).request
    return r.path + (f"?{r.query}" if r.query else "")


# -------------------------------------------------------------------------------------------
# bytes


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_raw_socket_receives_the_recorded_head_bytes_and_chunks(
    serve: Callable[..., Served], name: str
) -> None:
    recorded = interaction(name)
    server = serve(name, timing="instant")
    r = raw_request(server.url, recorded.request)
    assert r.end == "complete"
    assert r.body == recorded.response.body
    assert [len(c) for c in r.chunks] == list(
        recorded.response.chunk_sizes
    )  # chunk boundaries kept
    # the head, byte for byte: status line, recorded headers (case and order) minus hop-by-hop
    resp = recorded.response
    lines = [f"HTTP/1.1 {resp.status} {resp.reason}"]
    lines += [f"{k}: {v}" for k, v in resp.headers if k.lower() not in HOP_BY_HOP]
    lines += ["Transfer-Encoding: chunked"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    assert r.wire.startswith(head)


def test_content_length_body_is_not_chunked(serve: Callable[..., Served]) -> None:
    it = json_interaction()
    server = serve(Cassette((it,)), timing="instant")
    r = raw_request(server.url, it.request)
    assert r.end == "complete" and r.status == 200
    assert r.header(b"content-length") == b"11" and r.header(b"transfer-encoding") is None
    assert r.wire.startswith(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
    )
    assert r.body == b'{"data":[]}'


def test_a_recorded_head_http11_cannot_carry_is_a_clear_502(serve: Callable[..., Served]) -> None:
    good = json_interaction()
    bad = replace(good, response=replace(good.response, headers=(("X-Broken", "a\nb"),)))
    server = serve(Cassette((bad,)), timing="instant")
    r = raw_request(server.url, bad.request)
    assert (
        r.status == 502
        and b"not valid HTTP/1.1" in r.body
        and b"headers[0]" in r.body
        and r.header(b"x-should-retry") == b"false"
    )
    assert b"X-Broken: a" not in r.wire
    assert server.logs and "not valid HTTP/1.1" in server.logs[0]


def test_keep_alive_and_pipelining(serve: Callable[..., Served]) -> None:
    recorded = interaction(OPENAI_CHAT)
    server = serve(OPENAI_CHAT, timing="instant")
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        conn = h11.Connection(h11.CLIENT)
        for _ in range(2):  # one after the other on the same connection
            sock.sendall(request_bytes(conn, recorded.request, f"{host}:{port}"))
            r = read_response(sock, conn, time.monotonic())
            assert r.end == "complete" and r.body == recorded.response.body
            conn.start_next_cycle()
        # two requests written at once (pipelined): two answers, in order
        data = request_bytes(conn, recorded.request, f"{host}:{port}")
        sock.sendall(data + data)
        for n in range(2):
            if n:
                assert (
                    request_bytes(conn, recorded.request, f"{host}:{port}") == data
                )  # already sent
            r = read_response(sock, conn, time.monotonic())
            assert r.end == "complete" and r.body == recorded.response.body
            conn.start_next_cycle()
    assert server.requests == 4 and len(server.player.plays) == 4


def test_expect_100_continue(serve: Callable[..., Served]) -> None:
    recorded = interaction(OPENAI_CHAT)
    server = serve(OPENAI_CHAT, timing="instant")
    host, port = server.url.removeprefix("http://").split(":")
    body = recorded.request.body
    head = (
        f"POST {path_of(OPENAI_CHAT)} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        conn = h11.Connection(h11.CLIENT)
        conn.send(
            h11.Request(
                method="POST", target="/", headers=[("host", "localhost"), ("content-length", "0")]
            )
        )
        conn.send(h11.EndOfMessage())
        r = read_response(sock, conn, time.monotonic())
    assert r.end == "complete" and r.body == recorded.response.body


# -------------------------------------------------------------------------------------------
# SDKs and client libraries (instant timing: these check bytes and parsing, not time)


def _fold(item: Any, text: list[str], args: dict[int, str]) -> None:
    kind = getattr(item, "type", None) or getattr(item, "object", None)
    if kind == "chat.completion.chunk":
        for choice in item.choices:
            text.append(choice.delta.content or "")
            for call in choice.delta.tool_calls or []:
                args[call.index] = args.get(call.index, "") + (call.function.arguments or "")
    elif kind == "response.output_text.delta":
        text.append(item.delta)
    elif kind == "content_block_delta":
        if item.delta.type == "text_delta":
            text.append(item.delta.text)
        elif item.delta.type == "input_json_delta":
            args[item.index] = args.get(item.index, "") + item.delta.partial_json


def consume(stream: Any) -> tuple[str, dict[int, str], int]:
    text: list[str] = []
    args: dict[int, str] = {}
    n = 0
    for item in stream:
        n += 1
        _fold(item, text, args)
    return "".join(text), args, n


async def aconsume(stream: Any) -> tuple[str, dict[int, str], int]:
    text: list[str] = []
    args: dict[int, str] = {}
    n = 0
    async for item in stream:
        n += 1
        _fold(item, text, args)
    return "".join(text), args, n


def sdk_call(client: Any, name: str) -> Any:
    if name.startswith("anthropic"):
        return client.messages.create(**params(name))
    if "responses" in name:
        return client.responses.create(**params(name))
    return client.chat.completions.create(**params(name))


def make_client(name: str, url: str, *, asynchronous: bool = False, **kw: Any) -> Any:
    kw.setdefault("max_retries", 0)
    if name.startswith("anthropic"):
        cls: Any = anthropic.AsyncAnthropic if asynchronous else anthropic.Anthropic
        return cls(base_url=url, api_key="test", **kw)
    cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
    return cls(base_url=url + "/v1", api_key="test", **kw)


SDK_EXAMPLES = [OPENAI_CHAT, OPENAI_TOOLS, OPENAI_RESPONSES, ANTHROPIC, ANTHROPIC_TOOLS]


@pytest.mark.parametrize("name", SDK_EXAMPLES)
def test_sdk_sync_streams_the_recording(serve: Callable[..., Served], name: str) -> None:
    server = serve(name, timing="instant")
    with make_client(name, server.url) as client:
        got = consume(sdk_call(client, name))
    assert got == expected(interaction(name).response.body)
    assert server.requests == 1


@pytest.mark.parametrize("name", SDK_EXAMPLES)
async def test_sdk_async_streams_the_recording(serve: Callable[..., Served], name: str) -> None:
    server = serve(name, timing="instant")
    async with make_client(name, server.url, asynchronous=True) as client:
        got = await aconsume(await sdk_call(client, name))
    assert got == expected(interaction(name).response.body)


@pytest.mark.parametrize("name", [OPENAI_CHAT, ANTHROPIC])
def test_sdk_raw_response_is_the_recorded_bytes(serve: Callable[..., Served], name: str) -> None:
    server = serve(name, timing="instant")
    with make_client(name, server.url) as client:
        resource = client.messages if name.startswith("anthropic") else client.chat.completions
        with resource.with_streaming_response.create(**params(name)) as response:
            assert response.status_code == 200
            body = b"".join(response.iter_bytes())
    assert body == interaction(name).response.body


@pytest.mark.parametrize("lib", [httpx, httpx2])
def test_httpx_sync_raw_bytes(serve: Callable[..., Served], lib: Any) -> None:
    recorded = interaction(ANTHROPIC_TOOLS)
    server = serve(ANTHROPIC_TOOLS, timing="instant")
    with (
        lib.Client(base_url=server.url) as client,
        client.stream(
            "POST",
            path_of(ANTHROPIC_TOOLS),
            content=recorded.request.body,
            headers={"content-type": "application/json"},
        ) as response,
    ):
        pieces = list(response.iter_raw())
    assert b"".join(pieces) == recorded.response.body
    assert response.headers["content-type"] == recorded.response.header("content-type")


@pytest.mark.parametrize("lib", [httpx, httpx2])
async def test_httpx_async_raw_bytes(serve: Callable[..., Served], lib: Any) -> None:
    recorded = interaction(OPENAI_TOOLS)
    server = serve(OPENAI_TOOLS, timing="instant")
    async with (
        lib.AsyncClient(base_url=server.url) as client,
        client.stream("POST", path_of(OPENAI_TOOLS), content=recorded.request.body) as response,
    ):
        body = b"".join([piece async for piece in response.aiter_raw()])
    assert body == recorded.response.body


async def test_aiohttp_raw_bytes(serve: Callable[..., Served]) -> None:
    recorded = interaction(OPENAI_RESPONSES)
    server = serve(OPENAI_RESPONSES, timing="instant")
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(
            server.url + path_of(OPENAI_RESPONSES),
            data=recorded.request.body,
            headers={"content-type": "application/json"},
        ) as response,
    ):
        assert response.status == 200
        body = b"".join([piece async for piece in response.content.iter_any()])
    assert body == recorded.response.body


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("name", ["gemini-text", OPENAI_CHAT])
def test_curl_no_buffer_gets_the_recorded_bytes(serve: Callable[..., Served], name: str) -> None:
    recorded = interaction(name)
    server = serve(name, timing="scale:0.1")
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-N",
            "--fail",
            "-H",
            "content-type: application/json",
            "--data-binary",
            "@-",
            server.url + path_of(name),
        ],
        input=recorded.request.body,
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert out.stdout == recorded.response.body


async def test_async_api_in_the_callers_loop() -> None:
    recorded = interaction(OPENAI_CHAT)
    player = Player.create([example_path(OPENAI_CHAT)], timing="instant", repeat=True)
    async with ReplayServer(player) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        async with httpx2.AsyncClient() as client:
            response = await client.post(
                server.url + path_of(OPENAI_CHAT), content=recorded.request.body
            )
        assert response.content == recorded.response.body
    assert server.connections == 0


# -------------------------------------------------------------------------------------------
# timing (the only tests that wait on a real clock; tolerances for a loaded 2-core machine)


def test_gaps_follow_the_recording_at_scale_1(serve: Callable[..., Served]) -> None:
    recorded = interaction(OPENAI_CHAT)
    resp = recorded.response
    server = serve(OPENAI_CHAT)
    r = raw_request(server.url, recorded.request)
    assert r.end == "complete" and r.body == resp.body
    assert r.head_at is not None and resp.headers_at - 0.001 <= r.head_at <= resp.headers_at + 0.3
    # never early (the client's clock starts before the server's); lateness is load, so loose
    for got, want in zip(r.times, resp.chunk_at, strict=True):
        assert want - 0.001 <= got <= want + 0.3
    gaps = [b - a for a, b in itertools.pairwise(r.times)]
    recorded_gaps = [b - a for a, b in itertools.pairwise(resp.chunk_at)]
    errors = [abs(g - w) for g, w in zip(gaps, recorded_gaps, strict=True)]
    assert statistics.median(errors) < 0.005  # ~0.1 ms on an idle machine (bench/bench_replay.py)
    assert resp.end.at - 0.001 <= r.end_at <= resp.end.at + 0.3


@pytest.mark.parametrize("factor", [0.25, 2.0])
def test_total_duration_scales(serve: Callable[..., Served], factor: float) -> None:
    name = ANTHROPIC_TOOLS if factor < 1 else ANTHROPIC
    recorded = interaction(name)
    resp = recorded.response
    server = serve(name, timing=f"scale:{factor}")
    r = raw_request(server.url, recorded.request)
    assert r.end == "complete" and r.body == resp.body
    assert factor * resp.end.at - 0.001 <= r.end_at <= factor * resp.end.at + 0.25
    assert factor * resp.chunk_at[0] - 0.001 <= r.times[0] <= factor * resp.chunk_at[0] + 0.25


def test_instant_timing_sends_everything_at_once(serve: Callable[..., Served]) -> None:
    recorded = interaction(ANTHROPIC_TOOLS)  # 1.8 s recorded
    server = serve(ANTHROPIC_TOOLS, timing="instant")
    r = raw_request(server.url, recorded.request)
    assert r.body == recorded.response.body and r.end_at < 0.9  # recorded: 1.8 s


# -------------------------------------------------------------------------------------------
# faults, observed from real clients


def _first_events(name: str, n: int) -> bytes:
    events = parse(interaction(name).response.body).events
    return interaction(name).response.body[: events[n - 1].end]


def test_abort_is_the_sdks_incomplete_read(serve: Callable[..., Served]) -> None:
    server = serve(OPENAI_CHAT, timing="instant", faults=["truncate:after=3,end=abort"])
    received = 0
    with (
        make_client(OPENAI_CHAT, server.url) as client,
        pytest.raises(openai.APIConnectionError) as info,
    ):
        for _ in sdk_call(client, OPENAI_CHAT):
            received += 1
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
    assert "incomplete chunked read" in str(info.value.__cause__)
    assert received == 3
    r = raw_request(server.url, interaction(OPENAI_CHAT).request)
    assert r.end == "closed" and r.body == _first_events(OPENAI_CHAT, 3)
    assert not r.wire.endswith(b"0\r\n\r\n")


async def test_abort_anthropic_async(serve: Callable[..., Served]) -> None:
    server = serve(ANTHROPIC_TOOLS, timing="instant", faults=["truncate:after=5,end=abort"])
    async with make_client(ANTHROPIC_TOOLS, server.url, asynchronous=True) as client:
        stream = await sdk_call(client, ANTHROPIC_TOOLS)
        with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
            async for _ in stream:
                pass


def test_reset_is_a_tcp_rst_after_the_bytes(serve: Callable[..., Served]) -> None:
    server = serve(OPENAI_CHAT, timing="instant", faults=["truncate:after=3,end=reset"])
    r = raw_request(server.url, interaction(OPENAI_CHAT).request)
    assert r.end == "reset"
    assert r.body == _first_events(OPENAI_CHAT, 3)  # every byte before the reset arrived
    with (
        make_client(OPENAI_CHAT, server.url) as client,
        pytest.raises(openai.APIConnectionError) as info,
    ):
        consume(sdk_call(client, OPENAI_CHAT))
    assert isinstance(info.value.__cause__, httpx2.ReadError)
    assert "reset" in str(info.value.__cause__).lower()


def test_reset_anthropic(serve: Callable[..., Served]) -> None:
    server = serve(ANTHROPIC, timing="instant", faults=["truncate:after=2,end=reset"])
    with make_client(ANTHROPIC, server.url) as client, pytest.raises(httpx2.ReadError):
        consume(sdk_call(client, ANTHROPIC))


def test_truncate_close_ends_well_formed_but_short(serve: Callable[..., Served]) -> None:
    server = serve(OPENAI_CHAT, timing="instant", faults=["truncate:after=3,end=close"])
    with make_client(OPENAI_CHAT, server.url) as client:
        _, _, n = consume(sdk_call(client, OPENAI_CHAT))
    assert n == 3
    r = raw_request(server.url, interaction(OPENAI_CHAT).request)
    assert r.end == "complete" and r.body == _first_events(OPENAI_CHAT, 3)


def test_truncate_byte(serve: Callable[..., Served]) -> None:
    server = serve(OPENAI_CHAT, timing="instant", faults=["truncate:byte=100,end=close"])
    r = raw_request(server.url, interaction(OPENAI_CHAT).request)
    assert r.end == "complete" and r.body == interaction(OPENAI_CHAT).response.body[:100]


def test_truncate_content_length_body_is_an_incomplete_read(serve: Callable[..., Served]) -> None:
    it = json_interaction()
    server = serve(Cassette((it,)), timing="instant", faults=["truncate:byte=5,end=abort"])
    with httpx2.Client() as client, pytest.raises(httpx2.RemoteProtocolError):
        client.get(server.url + "/v1/models")


@pytest.mark.parametrize("name", [OPENAI_CHAT, ANTHROPIC])
def test_stall_forever_is_the_sdks_read_timeout_and_frees_the_connection(
    serve: Callable[..., Served], name: str
) -> None:
    server = serve(name, timing="instant", faults=["stall:before=3,for=forever"])
    started = time.monotonic()
    received = 0
    with (
        make_client(name, server.url, timeout=httpx2.Timeout(5.0, read=0.3)) as client,
        pytest.raises((openai.APITimeoutError, httpx2.ReadTimeout)) as info,
    ):
        for _ in sdk_call(client, name):
            received += 1
    assert 0.25 < time.monotonic() - started < 3
    error = info.value if isinstance(info.value, httpx2.ReadTimeout) else info.value.__cause__
    assert isinstance(error, httpx2.ReadTimeout)
    assert received >= 1  # the events before the stall arrived
    assert server.wait_idle() == 0  # the hang ends when the client goes


def test_stall_for_a_while_delays_one_event(serve: Callable[..., Served]) -> None:
    server = serve(OPENAI_CHAT, timing="instant", faults=["stall:before=3,for=300ms"])
    r = raw_request(server.url, interaction(OPENAI_CHAT).request)
    assert r.end == "complete" and r.body == interaction(OPENAI_CHAT).response.body
    body = interaction(OPENAI_CHAT).response.body
    third = parse(body).events[2].start
    before = [t for t, end in zip(r.times, _ends(r.chunks), strict=True) if end <= third]
    after = [t for t, end in zip(r.times, _ends(r.chunks), strict=True) if end > third]
    assert min(after) >= 0.299 and max(before) < 0.25


def _ends(chunks: list[bytes]) -> list[int]:
    out, pos = [], 0
    for c in chunks:
        pos += len(c)
        out.append(pos)
    return out


@pytest.mark.parametrize("name", [OPENAI_CHAT, ANTHROPIC])
def test_status_429_with_retry_after_is_retried_by_the_sdk(
    serve: Callable[..., Served], name: str
) -> None:
    server = serve(name, timing="instant", faults=["status:429,times=1,retry_after=100ms"])
    started = time.monotonic()
    with make_client(name, server.url, max_retries=2) as client:
        got = consume(sdk_call(client, name))
    assert got == expected(interaction(name).response.body)
    assert server.requests == 2  # the 429, then the retry that got the recording
    assert time.monotonic() - started >= 0.1  # the SDK honoured retry-after-ms
    assert [p.schedule.status for p in server.player.plays] == [429, 200]


def test_status_500_and_529_are_the_sdks_status_errors(serve: Callable[..., Served]) -> None:
    server = serve(OPENAI_CHAT, timing="instant", faults=["status:500"])
    with make_client(OPENAI_CHAT, server.url) as client, pytest.raises(openai.InternalServerError):
        sdk_call(client, OPENAI_CHAT)
    server = serve(ANTHROPIC, timing="instant", faults=["status:529"])
    with (
        make_client(ANTHROPIC, server.url) as client,
        pytest.raises(anthropic.APIStatusError) as info,
    ):
        sdk_call(client, ANTHROPIC)
    assert info.value.status_code == 529


@pytest.mark.parametrize("name", [OPENAI_CHAT, OPENAI_RESPONSES])
def test_error_event_is_openais_api_error(serve: Callable[..., Served], name: str) -> None:
    server = serve(name, timing="instant", faults=["error:after=3"])
    received = 0
    with make_client(name, server.url) as client, pytest.raises(openai.APIError) as info:
        for _ in sdk_call(client, name):
            received += 1
    assert not isinstance(info.value, openai.APIConnectionError)
    assert "server had an error" in info.value.message
    assert received == 3


def test_error_event_is_anthropics_api_error(serve: Callable[..., Served]) -> None:
    server = serve(ANTHROPIC_TOOLS, timing="instant", faults=["error:after=4"])
    with (
        make_client(ANTHROPIC_TOOLS, server.url) as client,
        pytest.raises(anthropic.APIStatusError) as info,
    ):
        consume(sdk_call(client, ANTHROPIC_TOOLS))
    assert "overloaded_error" in str(info.value)


def test_corrupt_json_breaks_the_sdks_parse(serve: Callable[..., Served]) -> None:
    server = serve(OPENAI_CHAT, timing="instant", faults=["corrupt:event=2,how=json"])
    with make_client(OPENAI_CHAT, server.url) as client, pytest.raises(json.JSONDecodeError):
        consume(sdk_call(client, OPENAI_CHAT))


def test_corrupt_utf8_and_seeded_bytes(serve: Callable[..., Served]) -> None:
    request = interaction(OPENAI_CHAT).request
    body = interaction(OPENAI_CHAT).response.body
    r = raw_request(
        serve(OPENAI_CHAT, timing="instant", faults=["corrupt:event=2,how=utf8"]).url, request
    )
    assert b"\xff\xfe" in r.body and len(r.body) == len(body) + 2
    broken = serve(ANTHROPIC, timing="instant", faults=["corrupt:event=2,how=utf8"])
    with make_client(ANTHROPIC, broken.url) as client, pytest.raises(UnicodeDecodeError):
        consume(sdk_call(client, ANTHROPIC))
    same = [
        raw_request(
            serve(OPENAI_CHAT, timing="instant", seed=7, faults=["corrupt:event=5,how=bytes"]).url,
            request,
        ).body
        for _ in range(2)
    ]
    other = raw_request(
        serve(OPENAI_CHAT, timing="instant", seed=8, faults=["corrupt:event=5,how=bytes"]).url,
        request,
    ).body
    assert same[0] == same[1] != body and other not in (body, same[0])


def test_drop_and_duplicate(serve: Callable[..., Served]) -> None:
    body = interaction(OPENAI_CHAT).response.body
    last = parse(body).events[-1]
    r = raw_request(
        serve(OPENAI_CHAT, timing="instant", faults=["drop:event=last"]).url,
        interaction(OPENAI_CHAT).request,
    )
    assert r.body == body[: last.start] + body[last.end :] and b"[DONE]" not in r.body
    server = serve(OPENAI_CHAT, timing="instant", faults=["duplicate:event=2"])
    with make_client(OPENAI_CHAT, server.url) as client:
        _, _, n = consume(sdk_call(client, OPENAI_CHAT))
    assert n == expected(body)[2] + 1


@pytest.mark.parametrize("spec", ["rechunk:size=1", "rechunk:hostile", "rechunk:random,max=7"])
def test_rechunk_changes_boundaries_not_bytes(serve: Callable[..., Served], spec: str) -> None:
    recorded = interaction(ANTHROPIC_TOOLS)
    server = serve(ANTHROPIC_TOOLS, timing="instant", faults=[spec])
    r = raw_request(server.url, recorded.request)
    assert r.body == recorded.response.body
    assert len(r.chunks) > 2 * len(recorded.response.chunk_sizes)
    if spec == "rechunk:size=1":
        assert all(len(c) == 1 for c in r.chunks)
    with make_client(ANTHROPIC_TOOLS, server.url) as client:
        assert consume(sdk_call(client, ANTHROPIC_TOOLS)) == expected(recorded.response.body)


def test_slow_caps_the_bandwidth(serve: Callable[..., Served]) -> None:
    recorded = interaction(OPENAI_CHAT)
    server = serve(OPENAI_CHAT, timing="instant", faults=["slow:bps=20000"])
    r = raw_request(server.url, recorded.request)
    assert r.body == recorded.response.body
    assert (
        len(recorded.response.body) / 20000 - 0.001
        <= r.end_at
        <= len(recorded.response.body) / 20000 + 0.3
    )


# -------------------------------------------------------------------------------------------
# misses, bad requests, clients that leave, load


@pytest.mark.parametrize("name", [OPENAI_CHAT, ANTHROPIC])
def test_miss_is_fast_not_retried_and_names_the_closest_request(
    serve: Callable[..., Served], name: str
) -> None:
    server = serve(name, timing="instant")
    changed = params(name) | {"max_tokens": 7}
    started = time.monotonic()
    with (
        make_client(name, server.url, max_retries=2) as client,
        pytest.raises((openai.NotFoundError, anthropic.NotFoundError)) as info,
    ):
        resource = client.messages if name.startswith("anthropic") else client.chat.completions
        resource.create(**changed)
    assert time.monotonic() - started < 1.0  # no backoff: SDK retries wait 0.4 s and more
    assert server.requests == 1
    message = str(info.value)
    assert "closest: #1 POST" in message and interaction(name).request.url in message
    assert "max_tokens" in message
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(server.player.misses) == 1
    assert server.logs and "closest" in server.logs[0]


def test_miss_is_json_shaped_like_an_api_error(serve: Callable[..., Served]) -> None:
    server = serve(OPENAI_CHAT, timing="instant")
    response = httpx2.post(server.url + "/v1/embeddings", json={"input": "x"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "ssevcr_no_match"
    assert "path: recorded /v1/chat/completions, got /v1/embeddings" in error["message"]


def test_once_makes_a_repeat_a_miss(serve: Callable[..., Served]) -> None:
    recorded = interaction(OPENAI_CHAT)
    server = serve(OPENAI_CHAT, timing="instant", repeat=False)
    assert raw_request(server.url, recorded.request).status == 200
    again = raw_request(server.url, recorded.request)
    assert again.status == 404 and b"already played" in again.body
    repeating = serve(OPENAI_CHAT, timing="instant")
    assert [raw_request(repeating.url, recorded.request).status for _ in range(3)] == [
        200,
        200,
        200,
    ]


def test_the_same_request_bytes_again_on_one_connection_play_the_recordings_in_order(
    serve: Callable[..., Served],
) -> None:
    """The server hands the player the same request value for the same bytes (and the player
    keeps what matched by it): a sequence of identical requests still gets each recording once, in
    order, then a miss (or, repeating, the least played again); a request that differs only in a
    header (Last-Event-ID) is matched on its own."""
    first = json_interaction("/v1/x", b'{"n":1}', method="POST", request_body=b'{"q":1}')
    second = replace(first, response=json_interaction("/v1/x", b'{"n":2}').response)
    for repeat, expected_bodies in ((False, [b'{"n":1}', b'{"n":2}', None]), (True, None)):
        server = serve(Cassette((first, second)), timing="instant", repeat=repeat)
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            conn = h11.Connection(h11.CLIENT)
            bodies: list[bytes | None] = []
            for n in range(5 if repeat else 3):
                extra = [("last-event-id", "7")] if n == 1 and repeat else None
                sock.sendall(request_bytes(conn, first.request, f"{host}:{port}", extra))
                got = read_response(sock, conn, time.monotonic())
                assert got.end == "complete"
                bodies.append(got.body if got.status == 200 else None)
                if got.status != 200:
                    assert got.status == 404 and b"already played" in got.body
                conn.start_next_cycle()
        if expected_bodies is not None:
            assert bodies == expected_bodies
        else:  # least played first: 1, 2 (its Last-Event-ID names no event), then 1, 2, 1
            assert bodies == [b'{"n":1}', b'{"n":2}', b'{"n":1}', b'{"n":2}', b'{"n":1}']
        assert server.player.play_count == (5 if repeat else 2)


def test_the_same_bytes_again_are_answered_as_the_first_time_and_other_bytes_are_checked(
    serve: Callable[..., Served],
) -> None:
    """A keep-alive client repeating its request gets the same request value played again
    (its Host, CORS and route were checked the first time); any other bytes between are checked
    on their own: a Host that is not allowed is refused, an Origin gets its CORS headers."""
    recorded = interaction(OPENAI_CHAT)
    for cors in (False, True):
        server = serve(OPENAI_CHAT, timing="instant", cors=cors)
        host, port = server.url.removeprefix("http://").split(":")

        def request(host: str = f"{host}:{port}", **extra: str) -> bytes:
            conn = h11.Connection(h11.CLIENT)
            return request_bytes(conn, recorded.request, host, list(extra.items()))

        plain = request()
        sent = [plain, plain, request(x="1"), plain, request("evil.example"), plain]
        sent += [request(origin="http://x.test")] * 2 + [plain]
        got = []
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            for data in sent:
                conn = h11.Connection(h11.CLIENT)  # (reads this one response)
                conn.send(h11.Request(method="POST", target="/", headers=[("host", "h")]))
                sock.sendall(data)
                got.append(read_response(sock, conn, time.monotonic()))
        assert [r.status for r in got] == [200, 200, 200, 200, 403, 200, 200, 200, 200]
        assert all(r.body == recorded.response.body for r in got if r.status == 200)
        allowed = [r.header(b"access-control-allow-origin") for r in got]
        anyone = b"*" if cors else None
        assert allowed[6:8] == ([b"http://x.test"] * 2 if cors else [None, None])
        assert allowed[:4] + allowed[5:6] + allowed[8:] == [anyone] * 6 and allowed[4] is None
        assert server.wait_idle(10) == 0  # (the last play's ending is the server's, after ours)
        plays = server.player.plays
        states = [p.journal.state if p.journal else None for p in plays]
        assert len(plays) == 8 and all(p.completed for p in plays), states
        assert plays[0].request is plays[1].request  # the same bytes: the same value, replayed


def test_the_match_caches_stay_within_their_byte_budget() -> None:
    """Thousands of distinct requests (each one kept by identity and by value) never hold more
    than the budget: the caches are emptied when full, and answers stay right."""
    from ssevcr import _player
    from ssevcr._matching import MatchOptions

    recorded = json_interaction("/v1/x", method="POST", request_body=b"{}")
    player = Player(
        [("c", Cassette((recorded,)))],
        match=MatchOptions(on=("method", "path")),
        repeat=True,
        log_limit=10,
    )
    body = b"x" * 60_000
    for n in range(200):
        request = replace(recorded.request, body=body + str(n).encode())
        assert player.play(request).index == 0
        assert player._matches_bytes <= _player._MATCH_CACHE_BYTES
    assert len(player._seen) < 200 and len(player._matches) < 200


@pytest.mark.parametrize(
    "garbage",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nbad header\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: nope\r\n\r\n",
    ],
)
def test_malformed_request_gets_400_and_the_server_lives_on(
    serve: Callable[..., Served], garbage: bytes
) -> None:
    server = serve(OPENAI_CHAT, timing="instant")
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(garbage)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"malformed HTTP request" in reply
    assert raw_request(server.url, interaction(OPENAI_CHAT).request).status == 200
    assert server.wait_idle() == 0


@pytest.mark.parametrize("how", ["close", "rst"])
@pytest.mark.parametrize("fault", [None, "stall:before=4,for=forever"])
def test_client_leaving_mid_stream_frees_its_task_and_socket(
    serve: Callable[..., Served], how: str, fault: str | None
) -> None:
    server = serve(ANTHROPIC_TOOLS, faults=[fault] if fault else [])  # 1.8 s at the recorded pace
    parts = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((parts[0], int(parts[1])), timeout=5)
    conn = h11.Connection(h11.CLIENT)
    sock.sendall(request_bytes(conn, interaction(ANTHROPIC_TOOLS).request, "localhost"))
    r = read_response(sock, conn, time.monotonic(), stop_after=2)
    assert r.end == "stopped" and server.thread.server.connections == 1
    if how == "rst":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    left = time.monotonic()
    sock.close()
    assert server.wait_idle(3.0) == 0
    assert time.monotonic() - left < 1.0  # at once (a hang has no next write to fail on)
    assert server.loop_tasks() == ["ServerThread._serve"]
    assert server.logs == []  # quietly


async def test_200_concurrent_streams(serve: Callable[..., Served]) -> None:
    recorded = interaction(OPENAI_CHAT)
    server = serve(OPENAI_CHAT, timing="scale:0.1")  # 0.15 s per stream
    host, port = server.url.removeprefix("http://").split(":")

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        conn = h11.Connection(h11.CLIENT)
        writer.write(request_bytes(conn, recorded.request, "localhost"))
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        writer.close()
        await writer.wait_closed()
        return body

    started = time.monotonic()
    bodies = await asyncio.wait_for(asyncio.gather(*[one() for _ in range(200)]), 30)
    assert all(b == recorded.response.body for b in bodies)
    assert time.monotonic() - started < 10
    assert len(server.player.plays) == 200 and server.player.misses == []
    assert server.wait_idle() == 0


async def test_many_sdk_streams_at_once(serve: Callable[..., Served]) -> None:
    server = serve(OPENAI_CHAT, timing="scale:0.05")
    want = expected(interaction(OPENAI_CHAT).response.body)
    async with make_client(OPENAI_CHAT, server.url, asynchronous=True) as client:

        async def one() -> Any:
            return await aconsume(await sdk_call(client, OPENAI_CHAT))

        results = await asyncio.gather(*[one() for _ in range(50)])
    assert all(r == want for r in results)


# -------------------------------------------------------------------------------------------
# CORS


def test_cors_preflight_and_readable_stream(serve: Callable[..., Served]) -> None:
    recorded = interaction(OPENAI_CHAT)
    server = serve(OPENAI_CHAT, timing="instant", cors=True)
    origin = "http://localhost:5173"
    pre = httpx2.options(
        server.url + path_of(OPENAI_CHAT),
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == origin
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert pre.headers["access-control-allow-headers"] == "authorization, content-type"
    response = httpx2.post(
        server.url + path_of(OPENAI_CHAT), content=recorded.request.body, headers={"origin": origin}
    )
    assert response.content == recorded.response.body
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-expose-headers"]
    assert len(server.player.plays) == 1  # the preflight is not a play
    plain = serve(OPENAI_CHAT, timing="instant")
    assert (
        "access-control-allow-origin"
        not in httpx2.post(plain.url + path_of(OPENAI_CHAT), content=recorded.request.body).headers
    )


def test_several_cassettes_and_scoped_faults(serve: Callable[..., Served]) -> None:
    server = serve(
        [example_path(OPENAI_CHAT), example_path(ANTHROPIC)],
        timing="instant",
        faults=["truncate:after=1,end=close,on=/v1/messages"],
    )
    chat = raw_request(server.url, interaction(OPENAI_CHAT).request)
    msgs = raw_request(server.url, interaction(ANTHROPIC).request)
    assert chat.body == interaction(OPENAI_CHAT).response.body
    assert msgs.body == _first_events(ANTHROPIC, 1)
    fired = {p.cassette: p.schedule.fired for p in server.player.plays}
    assert fired == {
        example_path(OPENAI_CHAT): (),
        example_path(ANTHROPIC): ("truncate:after=1,end=close,on=/v1/messages",),
    }


# -------------------------------------------------------------------------------------------
# waiting for a request is bounded (head and idle timeouts); answering it never is


def _connect(server: Served) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _until_closed(sock: socket.socket) -> tuple[bytes, str]:
    """Everything the server sends until it closes: (bytes, "fin" or "reset")."""
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        return got, "reset"
    return got, "fin"


def _post_head(name: str, body_length: int | None = None) -> tuple[bytes, bytes]:
    """A plain HTTP/1.1 request for the example's recorded answer: (head, body)."""
    r = interaction(name).request
    length = len(r.body) if body_length is None else body_length
    return (
        f"POST {path_of(name)} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode(), r.body


def test_a_client_that_sends_nothing_is_closed_quietly_after_the_head_timeout(
    serve: Callable[..., Served],
) -> None:
    server = serve(OPENAI_CHAT, timing="instant", head_timeout=0.3, idle_timeout=30)
    connecting = time.monotonic()  # (the server's clock starts when it accepts: later)
    with _connect(server) as sock:
        got, how = _until_closed(sock)
        waited = time.monotonic() - connecting
    assert (got, how) == (b"", "fin")
    assert 0.3 <= waited < 3, waited
    assert server.wait_idle() == 0
    assert server.loop_tasks() == ["ServerThread._serve"]
    assert server.requests == 0 and server.logs == []


@pytest.mark.parametrize(
    "what", ["a head sent a byte at a time (slowloris)", "half a head", "half a body"]
)
def test_a_request_that_does_not_arrive_in_time_gets_a_408_and_a_close(
    serve: Callable[..., Served], what: str
) -> None:
    server = serve(OPENAI_CHAT, timing="instant", head_timeout=0.4, idle_timeout=30)
    head, body = _post_head(OPENAI_CHAT)
    connecting = time.monotonic()
    with _connect(server) as sock:
        if what.startswith("a head sent"):  # still sending when the head's time is up: the limit is
            sock.settimeout(0.05)  # for the whole head, not between its bytes
            got = b""
            for byte in head[:-1]:
                sock.sendall(bytes([byte]))
                try:
                    got = sock.recv(65536)
                except TimeoutError:
                    continue
                break
            sock.settimeout(10)
            rest, how = _until_closed(sock)
            got += rest
        else:
            sock.sendall(
                head[: len(head) // 2] if what == "half a head" else head + body[: len(body) // 2]
            )
            got, how = _until_closed(sock)
        waited = time.monotonic() - connecting
    assert (
        got.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"\r\nconnection: close\r\n" in got
    ), got
    assert b"did not arrive in time" in got
    assert how == "fin"
    assert 0.4 <= waited < 3, waited
    assert server.wait_idle() == 0 and server.requests == 0
    assert server.loop_tasks() == ["ServerThread._serve"]


def test_a_body_that_keeps_coming_is_not_cut(serve: Callable[..., Served]) -> None:
    """In a body the limit is a pause: a slow upload that never stops for head_timeout gets
    through."""
    recorded = interaction(OPENAI_CHAT)
    server = serve(OPENAI_CHAT, timing="instant", head_timeout=0.5, idle_timeout=30)
    conn = h11.Connection(h11.CLIENT)
    data = request_bytes(conn, recorded.request, "localhost")
    body_at = data.index(b"\r\n\r\n") + 4
    step = (len(data) - body_at) // 10 + 1
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(data[:body_at])
        for i in range(body_at, len(data), step):
            time.sleep(0.1)
            sock.sendall(data[i : i + step])
        sent_in = time.monotonic() - started
        r = read_response(sock, conn, time.monotonic())
    assert sent_in > 0.9  # the head timeout, nearly twice
    assert r.status == 200 and r.end == "complete" and r.body == recorded.response.body


def test_an_idle_keep_alive_connection_is_closed_with_a_fin(serve: Callable[..., Served]) -> None:
    recorded = interaction(OPENAI_CHAT)
    server = serve(OPENAI_CHAT, timing="instant", head_timeout=30, idle_timeout=0.3)
    with _connect(server) as sock:
        conn = h11.Connection(h11.CLIENT)
        asked = time.monotonic()  # the idle time runs from the end of the answer: later
        sock.sendall(request_bytes(conn, recorded.request, "localhost"))
        r = read_response(sock, conn, asked)
        assert r.end == "complete" and r.body == recorded.response.body
        got, how = _until_closed(sock)
        waited = time.monotonic() - asked
    assert (got, how) == (b"", "fin")  # no 408: no request had begun
    assert 0.3 <= waited < 3, waited
    assert server.wait_idle() == 0
    assert server.loop_tasks() == ["ServerThread._serve"]


@pytest.mark.parametrize("client", ["httpx2", "httpx2-async", "httpx", "aiohttp", "openai"])
async def test_clients_reconnect_after_an_idle_close_without_an_error(
    serve: Callable[..., Served], client: str
) -> None:
    """A connection pool that keeps its connections longer than the server (here 0.3 s against
    their 4-15 s) finds the FIN when it takes one again, and opens a new connection."""
    recorded = interaction(OPENAI_CHAT)
    if (
        client == "openai"
    ):  # a call that is not a stream: the SDK drops a stream's connection at [DONE]
        recorded = json_interaction("/v1/models", b'{"object": "list", "data": []}')
    server = serve([("c", Cassette((recorded,)))], timing="instant", idle_timeout=0.3)
    path, body, headers = (
        path_of(OPENAI_CHAT),
        recorded.request.body,
        {"content-type": "application/json"},
    )

    async def idle_closed() -> None:  # idle as clients idle: their event loop runs meanwhile
        assert server.thread.server.connections == 1  # the client kept its connection
        await asyncio.sleep(0.3)
        for _ in range(300):
            if not server.thread.server.connections:
                break
            await asyncio.sleep(0.01)
        assert server.thread.server.connections == 0  # and the server closed it
        await asyncio.sleep(0.05)

    if client in ("httpx2", "httpx"):
        lib: Any = httpx2 if client == "httpx2" else httpx
        with lib.Client(base_url=server.url) as c:
            first = c.post(path, content=body, headers=headers).content
            await idle_closed()
            second = c.post(path, content=body, headers=headers).content
    elif client == "httpx2-async":
        async with httpx2.AsyncClient(base_url=server.url) as ac:
            first = (await ac.post(path, content=body, headers=headers)).content
            await idle_closed()
            second = (await ac.post(path, content=body, headers=headers)).content
    elif client == "aiohttp":
        async with aiohttp.ClientSession(server.url) as session:
            async with session.post(path, data=body, headers=headers) as response:
                first = await response.read()
            await idle_closed()
            async with session.post(path, data=body, headers=headers) as response:
                second = await response.read()
    else:
        with make_client(OPENAI_CHAT, server.url) as sdk:  # (no retries)
            first = sdk.models.with_raw_response.list().content
            await idle_closed()
            second = sdk.models.with_raw_response.list().content
    assert first == second == recorded.response.body
    assert server.player.play_count == 2 and server.logs == []


def test_a_connection_in_use_is_kept_alive(serve: Callable[..., Served]) -> None:
    """The timeouts run from the end of the latest answer, not from when the connection opened."""
    recorded = interaction(OPENAI_CHAT)
    server = serve(OPENAI_CHAT, timing="instant", head_timeout=0.4, idle_timeout=0.4)
    with _connect(server) as sock:
        conn = h11.Connection(h11.CLIENT)
        opened = time.monotonic()
        for _ in range(8):
            sock.sendall(request_bytes(conn, recorded.request, "localhost"))
            r = read_response(sock, conn, time.monotonic())
            assert r.end == "complete" and r.body == recorded.response.body
            conn.start_next_cycle()
            time.sleep(0.15)
        assert time.monotonic() - opened > 1.2  # three times either timeout
    assert server.player.play_count == 8


@pytest.mark.parametrize("stall", ["forever", "800ms"])
def test_streams_that_stall_or_outlast_the_timeouts_are_not_cut(
    serve: Callable[..., Served], stall: str
) -> None:
    recorded = interaction(OPENAI_CHAT)
    server = serve(
        OPENAI_CHAT,
        timing="instant",
        faults=[f"stall:before=3,for={stall}"],
        head_timeout=0.2,
        idle_timeout=0.2,
    )
    with _connect(server) as sock:
        conn = h11.Connection(h11.CLIENT)
        sock.sendall(request_bytes(conn, recorded.request, "localhost"))
        r = read_response(sock, conn, time.monotonic(), timeout=1.0 if stall == "forever" else 10)
        if stall == "forever":
            assert (
                r.end == "timeout" and r.status == 200 and r.body
            )  # the events before the stall, then silence
            assert (
                server.thread.server.connections == 1
            )  # held on purpose, a second after the last byte
        else:
            assert r.end == "complete" and r.body == recorded.response.body
            assert r.end_at > 0.75
    assert server.wait_idle() == 0  # the hang ends when the client goes
    assert server.loop_tasks() == ["ServerThread._serve"]
