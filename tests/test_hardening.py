"""Hardening: what a test tool must survive before people trust it, checked over real sockets and
real processes on 127.0.0.1.

- the replay server after hundreds of clients that vanish mid-stream, stall with full buffers or
  send half a request: no leaked task, socket or connection object, bounded memory, still serving
  (the 10,000-client figure is bench/bench_hardening.py); and after clients that never leave (say
  nothing, send a head a byte at a time, half a body, or idle after an answer), which its timeouts
  close;
- its fast path (simple requests parsed without h11) accepts only what h11 accepts, reads what h11
  reads, and writes the bytes h11's path writes;
- every server binds 127.0.0.1 unless told otherwise (the address the kernel reports);
- damaged cassettes of every kind through every front end: one error naming the file;
- two ``ssevcr record`` processes appending to one cassette lose nothing;
- a long-running replay keeps a bounded log of its plays, and ``--strict`` and the summary still
  count every one.

Already covered elsewhere, not repeated here: parser and loader fuzzing (test_sse, test_codec),
concurrent ``_store.update`` (test_codec), SIGKILL/SIGTERM while recording (test_record),
malformed requests get a 400 (test_server), show/export/audit on damaged files (test_review).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h11
import httpx
import msgpack
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replay_helpers import (
    ALL_EXAMPLES,
    CLI,
    OPENAI_CHAT,
    example_path,
    interaction,
    json_interaction,
    raw_request,
    read_response,
    replay_running,
    request_bytes,
)
from soak import KINDS as CLIENT_KINDS
from soak import Soak, SoakServer, soak_cassette
from upstream import Upstream

import ssevcr
from ssevcr import _format, _store
from ssevcr import _intercept as intercept
from ssevcr._cassette import Cassette, Interaction, Request, Response
from ssevcr._errors import CassetteError, SsevcrError
from ssevcr._http1 import SimpleHead, parse_simple_head
from ssevcr._player import Player
from ssevcr._server import ReplayServer
from ssevcr._server_thread import ServerThread
from ssevcr.cli import main
from ssevcr.cli.replay import strict_problems, summary
from ssevcr.mitm.driver import locate_mitmdump

ROOT = Path(__file__).resolve().parent.parent

try:
    locate_mitmdump()
    HAVE_MITMDUMP = True
except SsevcrError:  # pragma: no cover - bootstrap creates .venv-mitmproxy
    HAVE_MITMDUMP = False
needs_mitmdump = pytest.mark.skipif(
    not HAVE_MITMDUMP, reason="needs mitmdump (bootstrap creates .venv-mitmproxy)"
)


# most bytes the server may buffer for a client that stopped reading: a batch (64 KiB), the
# transport's high-water mark (16 KiB) and a 4 KiB step of the soak's big body
HELD_PER_STALLED_CLIENT = 88 * 1024


# ---------------------------------------------------------------------------------------------
# the replay server under misbehaving clients


def test_misbehaving_clients_leave_no_tasks_sockets_or_memory_behind() -> None:
    cassette = soak_cassette()
    with SoakServer() as server:
        soak = Soak(server.host, server.port, cassette, seed=7)
        at_stall: list[tuple[int, dict[str, Any]]] = []

        async def on_stalled(stallers: int) -> None:
            at_stall.append(
                (stallers, await asyncio.get_running_loop().run_in_executor(None, server.stats))
            )

        def run_round(n: int) -> dict[str, Any]:
            asyncio.run(soak.round(n, on_stalled))
            stats = server.idle()
            assert stats["connections"] == 0, stats
            return stats

        before = run_round(100)  # warm-up: caches, the 8 MiB body framed once, allocator pools
        started = time.monotonic()
        for _ in range(2):
            after = run_round(300)
        elapsed = time.monotonic() - started

        assert soak.stats.errors == []
        assert sum(soak.stats.started.values()) == 700 and set(soak.stats.started) == set(
            CLIENT_KINDS
        )
        # the stall is real: the server's writes wait on every staller's full socket, holding little
        for stallers, stats in at_stall:
            assert stats["paused"] >= stallers > 0, stats
            assert stats["largest_buffer"] <= HELD_PER_STALLED_CLIENT, stats
        assert (
            after["tasks"]
            == before["tasks"]
            == ["_serve.<locals>.main", "_serve.<locals>.main.<locals>.stats"]
        )
        assert after["fds"] == before["fds"]
        assert after["live_connections"] == 0
        grown = after["rss_kib"] - before["rss_kib"]
        assert grown < 8 * 1024, f"server RSS grew by {grown} KiB over 600 clients"
        assert after["errors"] == []
        # and it still serves, byte-exact
        stream = cassette.interactions[0]
        answer = raw_request(server.url, stream.request)
        assert (
            answer.status == 200
            and answer.end == "complete"
            and answer.body == stream.response.body
        )
        assert elapsed < 30


def test_a_client_that_stops_reading_a_large_instant_answer_costs_the_server_little() -> None:
    """The whole answer used to go to the transport in one write: a client that stopped reading
    an 8 MiB body left ~5.5 MiB buffered in the server per connection."""
    cassette = soak_cassette()
    with SoakServer(timing="instant") as server:
        soak = Soak(server.host, server.port, cassette)
        blocked: list[dict[str, Any]] = []

        async def main() -> None:
            release = asyncio.Event()
            done = 0
            all_stalled = asyncio.Event()

            def stalled() -> None:
                nonlocal done
                done += 1
                if done == 5:
                    all_stalled.set()

            clients = [asyncio.ensure_future(soak.one("stall", release, stalled)) for _ in range(5)]
            await asyncio.wait_for(all_stalled.wait(), 20)
            deadline = time.monotonic() + 5
            while True:  # until the server's writes wait on every one of them
                stats = await asyncio.get_running_loop().run_in_executor(None, server.stats)
                if stats["paused"] == 5 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            blocked.append(stats)
            release.set()
            await asyncio.gather(*clients)

        asyncio.run(main())
        assert blocked[0]["paused"] == 5 and blocked[0]["connections"] == 5, blocked
        assert blocked[0]["largest_buffer"] <= HELD_PER_STALLED_CLIENT, blocked
        assert soak.stats.errors == []
        assert server.idle()["connections"] == 0


LINGERERS = ("silent", "slowloris", "half-body", "idle")  # clients that stay connected and wait


def test_clients_that_linger_are_closed_by_the_timeouts_and_leave_nothing_behind() -> None:
    """Clients that never leave: they connect and say nothing, send a head a byte at a time, send
    half a body, or take an answer and keep the connection idle. The server closes each one (a 408
    to those that began a request), and is left as it was."""
    cassette = soak_cassette()
    timeout = 0.5
    with SoakServer(timing="instant", head_timeout=timeout, idle_timeout=timeout) as server:
        soak = Soak(server.host, server.port, cassette, seed=3)
        before = server.stats()
        results: list[tuple[str, float, bytes, str]] = []

        async def linger(kind: str) -> None:
            loop = asyncio.get_running_loop()
            since = (
                time.monotonic()
            )  # the server's clock starts later (when it accepts, or the bytes come)
            sock = await _connect_raw(server.host, server.port)
            try:
                if kind == "slowloris":  # one byte every 50 ms, past the timeout
                    for byte in soak.stream[:-1]:
                        try:
                            await loop.sock_sendall(sock, bytes([byte]))
                        except OSError:
                            break
                        if await _readable(sock, 0.05):
                            break
                elif kind == "half-body":
                    head_end = soak.stream.index(b"\r\n\r\n") + 4
                    since = time.monotonic()
                    await loop.sock_sendall(
                        sock, soak.stream[: head_end + (len(soak.stream) - head_end) // 2]
                    )
                elif kind == "idle":
                    since = time.monotonic()
                    await loop.sock_sendall(sock, soak.stream)
                    answer = b""
                    while not answer.endswith(b"\r\n0\r\n\r\n"):
                        answer += await loop.sock_recv(sock, 65536)
                got, how = b"", "fin"
                try:
                    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 20):
                        got += chunk
                except ConnectionResetError:
                    how = "reset"
                results.append((kind, time.monotonic() - since, got, how))
            finally:
                sock.close()

        async def main() -> None:
            await asyncio.gather(*(linger(kind) for kind in LINGERERS for _ in range(50)))

        asyncio.run(main())
        after = server.idle()

    assert sorted(kind for kind, *_ in results) == sorted(LINGERERS * 50)
    for kind, waited, got, how in results:
        assert timeout <= waited < timeout + 10, (kind, waited)
        if kind in ("silent", "idle"):
            assert (got, how) == (b"", "fin"), kind
        else:
            assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), (kind, got[:100], how)
    assert after["connections"] == 0 and after["live_connections"] == 0, after
    assert after["tasks"] == before["tasks"] and after["fds"] == before["fds"], (before, after)
    assert after["plays"] == 50 and after["errors"] == []


async def _connect_raw(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return sock


async def _readable(sock: socket.socket, timeout: float) -> bool:
    """Whether the server sent something (or closed) within ``timeout``; reads nothing."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(sock.fileno())


# ---------------------------------------------------------------------------------------------
# the fast path reads what h11 reads and writes what h11's path writes


_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
METHODS = st.sampled_from(
    [b"GET", b"POST", b"HEAD", b"OPTIONS", b"get", b"CONNECT", b"P@ST", b"", b"M-SEARCH"]
)
TARGETS = st.sampled_from(
    [
        b"/",
        b"/v1/chat/completions?a=b&c",
        b"http://h.example/p",
        b"*",
        b"/a b",
        b"/\x7f",
        b"/\xc3\xa9",
        b"",
    ]
)
VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "])
NAMES = st.one_of(
    st.sampled_from(
        [
            b"Host",
            b"host",
            b"HOST",
            b"Content-Length",
            b"content-length",
            b"Transfer-Encoding",
            b"Connection",
            b"Expect",
            b"Upgrade",
            b"TE",
            b"Content-Type",
            b"X-Stainless-Lang",
            b"bad name",
            b"",
            b"n\x00",
        ]
    ),
    st.text(_TOKEN_CHARS, min_size=1, max_size=12).map(str.encode),
)
VALUES = st.one_of(
    st.sampled_from(
        [
            b"5",
            b"05",
            b"0",
            b"5, 5",
            b"5,6",
            b"-1",
            b"abc",
            b"1" * 21,
            b"chunked",
            b"gzip, chunked",
            b"close",
            b"keep-alive",
            b"Keep-Alive",
            b"keep-alive, upgrade",
            b"100-continue",
            b"127.0.0.1:8080",
            b"",
            b"  spaced  ",
            b"a\tb",
            b"\x01",
            b"caf\xc3\xa9",
            b"a\rb",
        ]
    ),
    st.binary(max_size=12),
)
HEADER_LINES = st.lists(
    st.tuples(NAMES, VALUES, st.sampled_from([b": ", b":", b" : ", b":\t"])), max_size=8
)


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    line = draw(METHODS) + b" " + draw(TARGETS) + b" " + draw(VERSIONS)
    headers = draw(HEADER_LINES)
    if draw(st.booleans()):
        headers.insert(draw(st.integers(0, len(headers))), (b"Host", b"x", b": "))
    lines = [line, *(n + sep + v for n, v, sep in headers)]
    if draw(st.integers(0, 9)) == 0:
        lines.insert(draw(st.integers(1, len(lines))), b" folded")
    eol = draw(st.sampled_from([b"\r\n"] * 8 + [b"\n"]))
    data = eol.join(lines) + eol + eol + draw(st.binary(max_size=12))
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


def h11_reading(data: bytes) -> tuple[str, Any]:
    """What h11 makes of ``data`` as a server: ("error", None), ("need-data", None) or
    ("request", (method, target, headers, keep_alive, body bytes it has so far, complete))."""
    if not data:  # (h11 takes b"" for the end of the stream)
        return "need-data", None
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    try:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            return "need-data", None
        assert isinstance(event, h11.Request)
        body, complete = b"", False
        while True:
            more = conn.next_event()
            if isinstance(more, h11.Data):
                body += more.data
            else:
                complete = isinstance(more, h11.EndOfMessage)
                break
    except h11.RemoteProtocolError:
        return "error", None
    keep_alive = b"close" not in b",".join(
        v.lower() for k, v in event.headers if k == b"connection"
    )
    return "request", (
        event.method,
        event.target,
        list(event.headers.raw_items()),
        event.http_version,
        keep_alive,
        body,
        complete,
    )


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_heads())
def test_simple_heads_are_a_subset_of_what_h11_accepts(data: bytes) -> None:
    parsed = parse_simple_head(data)
    verdict, request = h11_reading(data)
    if isinstance(parsed, SimpleHead):
        assert verdict == "request", (data, verdict)
        method, target, headers, version, keep_alive, body, complete = request
        assert (parsed.method, parsed.target, parsed.headers) == (method, target, headers)
        assert version == b"1.1" and keep_alive
        available = data[parsed.end : parsed.end + parsed.length]
        assert body == available and complete == (len(available) == parsed.length)
    elif parsed is True:  # needs more bytes: h11 has not seen a whole head either
        assert verdict == "need-data", data
    if verdict == "error":
        assert parsed is False, data


def test_simple_heads_from_real_clients_take_the_fast_path() -> None:
    """The requests the SDKs, httpx, curl and browsers send are simple; the rest go to h11."""
    recorded = interaction(OPENAI_CHAT).request
    typical = request_bytes(
        h11.Connection(h11.CLIENT),
        recorded,
        "127.0.0.1:8080",
        [
            ("connection", "keep-alive"),
            ("user-agent", "OpenAI/Python 2.0"),
            ("accept-encoding", "gzip, deflate"),
            ("x-stainless-lang", "python"),
        ],
    )
    head = parse_simple_head(typical)
    assert isinstance(head, SimpleHead) and head.length == len(recorded.body)
    for step in range(1, len(typical)):  # any prefix: wait for more (or for the body), never refuse
        partial = parse_simple_head(typical[:step])
        assert partial is True if step < head.end else isinstance(partial, SimpleHead), step
    for to_h11 in (
        b"Connection: close\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Expect: 100-continue\r\n",
        b"Connection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n",
        b"Content-Length: 1\r\n",
    ):
        assert parse_simple_head(typical.replace(b"\r\n", b"\r\n" + to_h11, 1)) is False
    assert parse_simple_head(typical.replace(b"HTTP/1.1", b"HTTP/1.0", 1)) is False
    assert (
        parse_simple_head(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"x" * 20000) is False
    )  # too long: h11's 431


def _exchange(url: str, request: Request, extra: list[tuple[str, str]]) -> bytes:
    """Every byte of the answer to one request, as a raw socket receives it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        conn = h11.Connection(h11.CLIENT)
        sock.sendall(request_bytes(conn, request, "localhost", extra))
        answer = read_response(sock, conn, time.monotonic())
    assert answer.end in ("complete", "closed"), answer.end
    return answer.wire


SLOW = [
    ("connection", "keep-alive, x-not-simple")
]  # keeps the connection alive, but only h11 reads it


@pytest.mark.parametrize("timing", ["instant", "scale:0.02"])
def test_fast_and_h11_paths_write_the_same_bytes(timing: str, tmp_path: Path) -> None:
    """For every example and for sized, 204, HEAD, CORS, miss, preflight and faulted answers, a
    simple request and the same request read by h11 get byte-identical answers."""
    empty = Interaction(
        Request("DELETE", "https://api.example.com/v1/files/f1"),
        Response.from_chunks(204, [], reason="No Content", headers=(("x-request-id", "r1"),)),
    )
    extras = Cassette((json_interaction(), empty))
    extra_path = tmp_path / "extras.msgpack"
    _store.save(extras, extra_path)
    cases: list[tuple[Request, list[tuple[str, str]]]] = []
    for name in ALL_EXAMPLES:
        cases.append((interaction(name).request, []))
    cases.append((extras.interactions[0].request, []))
    cases.append((extras.interactions[1].request, []))
    chat = interaction(OPENAI_CHAT).request
    cases.append((Request("HEAD", chat.url, chat.headers, chat.body), []))  # a miss
    get = interaction("anthropic-text-eventsource").request
    cases.append((Request("HEAD", get.url, get.headers), []))  # a hit: the stream's head, no body
    cases.append((chat, [("origin", "http://localhost:5173")]))
    cases.append(
        (
            Request(
                "OPTIONS",
                chat.url,
                (("origin", "http://a.test"), ("access-control-request-method", "POST")),
            ),
            [],
        )
    )
    cases.append((Request("POST", "http://x/v1/unknown", (), b'{"a": 1}'), []))
    for faults in (
        [],
        ["truncate:after=2,end=close"],
        ["truncate:after=2,end=abort"],
        ["status:429"],
        ["truncate:after=1,end=abort,on=/v1/models"],
    ):
        player = Player.create(
            [*(example_path(n) for n in ALL_EXAMPLES), str(extra_path)],
            timing=timing,
            faults=faults,
            repeat=True,
        )
        with ServerThread(player, cors=True, log=lambda _m: None) as thread:
            for request, extra in cases:
                fast = _exchange(thread.url, request, extra)
                slow = _exchange(thread.url, request, extra + SLOW)
                assert fast.startswith(b"HTTP/1.1 ") and fast == slow, (
                    faults,
                    request.method,
                    request.url,
                )


def test_one_connection_moves_from_the_fast_path_to_h11_and_keeps_serving() -> None:
    recorded = interaction(OPENAI_CHAT)
    player = Player.create([example_path(OPENAI_CHAT)], timing="instant", repeat=True)
    with ServerThread(player) as thread:
        host, port = thread.url.removeprefix("http://").split(":")
        head = (
            f"POST {recorded.request.path} HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        body = recorded.request.body
        simple = head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        chunked_upload = head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            len(body),
            body,
        )
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            for byte in simple:  # one byte at a time: every partial head on the fast path
                sock.sendall(bytes([byte]))
            sock.sendall(chunked_upload + simple)  # then h11 takes over, for good
            conn = h11.Connection(h11.CLIENT)
            conn.send(
                h11.Request(
                    method="POST",
                    target="/",
                    headers=[("host", "localhost"), ("content-length", "0")],
                )
            )
            conn.send(h11.EndOfMessage())
            answers = []
            for _ in range(3):
                r = read_response(sock, conn, time.monotonic())
                answers.append((r.status, r.end, r.body))
                conn.start_next_cycle()
                conn.send(
                    h11.Request(
                        method="POST",
                        target="/",
                        headers=[("host", "localhost"), ("content-length", "0")],
                    )
                )
                conn.send(h11.EndOfMessage())
        assert answers == [(200, "complete", recorded.response.body)] * 3
        assert thread.server.requests == 3 and player.play_count == 3


# ---------------------------------------------------------------------------------------------
# servers bind 127.0.0.1 unless told otherwise: the addresses the kernel reports


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                out += _tree(int(child))
    except OSError:
        pass
    return out


def _address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words), int(port, 16)


def listening(pid: int) -> set[tuple[str, int]]:
    """Every TCP address a process and its descendants listen on (/proc/PID/fd + /proc/net/tcp*)."""
    inodes = set()
    for p in _tree(pid):
        try:
            fds = list(Path(f"/proc/{p}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[9]) in inodes:  # LISTEN
                found.add(_address(fields[1]))
    return found


def test_replay_servers_in_process_bind_loopback_by_default() -> None:
    player = Player.create([example_path(OPENAI_CHAT)])
    with ServerThread(player) as thread:
        assert thread.call(lambda: [s.getsockname()[0] for s in thread.server._server.sockets]) == [
            "127.0.0.1"
        ]  # type: ignore[union-attr]
        assert ("127.0.0.1", thread.port) in listening(os.getpid())

    async def in_the_callers_loop() -> list[str]:
        async with ReplayServer(player) as server:
            assert server._server is not None
            return [s.getsockname()[0] for s in server._server.sockets]

    assert asyncio.run(in_the_callers_loop()) == ["127.0.0.1"]
    with ServerThread(player, host="0.0.0.0") as told:  # told otherwise
        assert ("0.0.0.0", told.port) in listening(os.getpid())


@pytest.mark.ssevcr("cassettes/examples/openai-chat-text.msgpack", timing="instant")
def test_the_pytest_server_fixture_binds_loopback(ssevcr_server: ServerThread) -> None:
    assert ssevcr_server.url.startswith("http://127.0.0.1:")
    assert ("127.0.0.1", ssevcr_server.port) in listening(os.getpid())


class Running:
    """A CLI server as a subprocess, until it printed its ready line (stdout or stderr)."""

    def __init__(self, *args: str, ready: str, timeout: float = 60.0):
        self.proc = subprocess.Popen(
            [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        got = threading.Event()

        def reader(stream: Any) -> None:
            for line in stream:
                self.lines.append(line)
                if ready in line:
                    got.set()

        self.threads = [
            threading.Thread(target=reader, args=(s,), daemon=True)
            for s in (self.proc.stdout, self.proc.stderr)
        ]
        for t in self.threads:
            t.start()
        if not got.wait(timeout):
            self.stop()
            raise AssertionError(f"not ready: {''.join(self.lines)}")

    def stop(self) -> int | None:
        """SIGTERM, as a user stops it; its exit code (None if it had to be killed)."""
        tree = _tree(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        for pid in reversed(tree):  # whatever did not stop: the CLI, its mitmdump, its command
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(10)
        for t in self.threads:
            t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code


SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.mark.parametrize(
    ("args", "host"),
    [
        (["replay", example_path(OPENAI_CHAT), "--listen", "0"], "127.0.0.1"),  # told a port only
        (
            ["replay", example_path(OPENAI_CHAT), "--", *SLEEP],
            "127.0.0.1",
        ),  # no --listen at all (with a command)
        (
            ["replay", example_path(OPENAI_CHAT), "--listen", "0.0.0.0:0"],
            "0.0.0.0",
        ),  # told otherwise
    ],
    ids=["replay --listen PORT", "replay -- CMD", "replay --listen 0.0.0.0:0"],
)
def test_replay_cli_binds_loopback_unless_told_otherwise(args: list[str], host: str) -> None:
    server = Running(*args, ready="serving http://")
    try:
        addresses = listening(server.proc.pid)
        assert len(addresses) == 1 and next(iter(addresses))[0] == host, addresses
    finally:
        server.stop()


@needs_mitmdump
def test_record_and_the_replay_proxy_bind_loopback_by_default(tmp_path: Path) -> None:
    conf = str(tmp_path / "conf")
    recorder = Running(
        "record",
        str(tmp_path / "r.msgpack"),
        "--listen",
        "0",
        "--upstream",
        "http://127.0.0.1:9",
        "--confdir",
        conf,
        ready="Recording on",
    )
    try:
        addresses = listening(recorder.proc.pid)
        assert addresses and {a for a, _ in addresses} == {"127.0.0.1"}, addresses
    finally:
        assert recorder.stop() == 0
    proxy = Running(
        "replay",
        example_path(OPENAI_CHAT),
        "--proxy",
        "--confdir",
        conf,
        "--",
        *SLEEP,
        ready="serving http://",
    )
    try:
        addresses = listening(proxy.proc.pid)
        assert len(addresses) == 2 and {a for a, _ in addresses} == {"127.0.0.1"}, (
            addresses
        )  # server + proxy
    finally:
        proxy.stop()


# ---------------------------------------------------------------------------------------------
# damaged cassettes through every front end: one error, naming the file


def _doc() -> dict[str, Any]:
    return msgpack.unpackb(Path(example_path(OPENAI_CHAT)).read_bytes(), raw=False)  # type: ignore[no-any-return]


def _changed(change: Callable[[dict[str, Any]], None]) -> bytes:
    doc = _doc()
    change(doc)
    return msgpack.packb(doc, use_bin_type=True)  # type: ignore[no-any-return]


def _twin(old: str, new: str) -> bytes:
    text = _format.export_json(_store.load(example_path(OPENAI_CHAT)))
    assert old in text
    return text.replace(old, new, 1).encode()


GOOD = Path(example_path(OPENAI_CHAT)).read_bytes()
DAMAGED: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "truncated": lambda: GOOD[: len(GOOD) // 2],
    "one byte short": lambda: GOOD[:-1],
    "random bytes": lambda: random.Random(4).randbytes(300),
    "NUL bytes": lambda: b"\0" * 64,
    "trailing garbage": lambda: GOOD + b"\x00",
    "not a cassette": lambda: msgpack.packb({"foo": "bar"}),
    "another format": lambda: _changed(lambda d: d.update(format="vcrpy")),
    "newer version": lambda: _changed(lambda d: d.update(version=99)),
    "interactions not a list": lambda: _changed(lambda d: d.update(interactions="none")),
    "status of the wrong type": lambda: _changed(
        lambda d: d["interactions"][0]["response"].update(status="200")
    ),
    "chunk table inconsistent": lambda: _changed(
        lambda d: d["interactions"][0]["response"].update(chunk_sizes=b"\1\0\0\0")
    ),
    "negative time": lambda: _changed(
        lambda d: d["interactions"][0]["response"].update(headers_at=-1.0)
    ),
    "deeply nested": lambda: b"\x91" * 100_000 + b"\xc0",
    "JSON twin, invalid": lambda: b'{"format": "ssevcr", "version": 1, "interactions": [',
    "JSON twin, wrong field": lambda: _twin('"status": 200', '"status": "200"'),
    "JSON twin, not UTF-8": lambda: b'{"format": "\xff"}',
}
SPECIAL = ("a directory", "a symlink loop")
KINDS = [*DAMAGED, *SPECIAL]
REVIEW_COVERS = {
    "empty",
    "truncated",
    "random bytes",
    "not a cassette",
    "JSON twin, invalid",
    "newer version",
}


def make_damaged(kind: str, directory: Path) -> Path:
    path = directory / f"{kind.replace(' ', '-').replace(',', '')}.msgpack"
    if kind == "a directory":
        path.mkdir()
    elif kind == "a symlink loop":
        path.symlink_to(path.name)
    else:
        path.write_bytes(DAMAGED[kind]())
    return path


def one_error(output: str, path: Path) -> str:
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and str(path) in errors[0], output
    return errors[0]


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_cassette_replay_and_record_refuse_with_one_error(
    kind: str, tmp_path: Path
) -> None:
    path = make_damaged(kind, tmp_path)
    result = CliRunner().invoke(main, ["replay", str(path), "--timing", "instant"])
    assert result.exit_code == (2 if kind in SPECIAL else 1) and isinstance(
        result.exception, SystemExit
    )
    one_error(result.output, path)
    # record refuses before starting mitmdump: nothing to record into a file it would break
    result = CliRunner().invoke(
        main, ["record", str(path), "--listen", "0", "--upstream", "http://127.0.0.1:9"]
    )
    assert result.exit_code == (2 if kind == "a directory" else 1) and isinstance(
        result.exception, SystemExit
    )
    one_error(result.output, path)
    if kind not in REVIEW_COVERS:  # test_review checks show/export/audit on those
        result = CliRunner().invoke(main, ["show", str(path)])
        assert result.exit_code == 1
        one_error(result.output, path)
    if kind not in SPECIAL:
        assert path.read_bytes() == DAMAGED[kind]()  # left as it was


@pytest.mark.parametrize("record", ["none", "once", "new_episodes"])
def test_damaged_cassette_use_cassette_raises_one_cassette_error(
    record: str, tmp_path: Path
) -> None:
    for kind in KINDS:
        path = make_damaged(kind, tmp_path)
        with pytest.raises(CassetteError) as caught, ssevcr.use_cassette(path, record=record):
            pytest.fail("entered a damaged cassette")
        assert str(path) in str(caught.value) and "\n" not in str(caught.value), kind
        assert intercept.active() is None  # nothing left patched or active
        if kind not in SPECIAL:
            assert path.read_bytes() == DAMAGED[kind](), kind


DAMAGED_TESTS = """
import pytest

@pytest.mark.parametrize(
    "path", [pytest.param(p, marks=pytest.mark.ssevcr(p), id=p) for p in {paths!r}]
)
def test_damaged(path, ssevcr_cassette):
    pass
"""


def test_damaged_cassette_pytest_marker_errors_with_one_message(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    directory = tmp_path / "damaged"
    directory.mkdir()
    paths = [str(make_damaged(kind, directory)) for kind in KINDS]
    pytester.makepyfile(test_damaged=DAMAGED_TESTS.format(paths=paths))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rN")
    result.assert_outcomes(errors=len(KINDS))
    out = result.stdout.str()
    # the message once (it used to be chained to a copy of itself), naming the file
    for path in paths:
        assert out.count(f"cassette {path!r}: ") == 1, (path, out)
    for internal in ("Traceback", "_pytest/", "ssevcr/_store.py", "During handling"):
        assert internal not in out, internal


# ---------------------------------------------------------------------------------------------
# two recorders, one cassette


@needs_mitmdump
def test_two_record_processes_appending_to_one_cassette_lose_nothing(tmp_path: Path) -> None:
    cassette = tmp_path / "shared.msgpack"
    first = Interaction(
        Request("GET", "http://pre.existing/marker"), Response.from_chunks(200, [(0.001, b"kept")])
    )
    _store.save(Cassette((first,)), cassette)
    conf = str(tmp_path / "conf")
    with Upstream() as upstream:
        recorders = []
        try:
            for _ in range(2):  # one after the other: the first creates the mitmproxy CA
                recorders.append(
                    Running(
                        "record",
                        str(cassette),
                        "--listen",
                        "0",
                        "--upstream",
                        upstream.url,
                        "--confdir",
                        conf,
                        ready="Recording on",
                    )
                )
            urls = []
            for rec in recorders:
                line = next(line for line in rec.lines if "Recording on" in line)
                urls.append(line.split("Recording on ")[1].split()[0].rstrip(","))
            sent: list[str] = []
            failures: list[str] = []

            def client(url: str, n: int) -> None:
                with httpx.Client(base_url=url, timeout=30) as http:
                    for i in range(n):
                        test_id = uuid.uuid4().hex
                        headers = {
                            "x-test-id": test_id,
                            "x-upstream-fixture": "openai-chat/text.sse",
                            "x-upstream-chunks": "3",
                            "x-upstream-gap-ms": "1-3",
                        }
                        if i % 2:
                            headers["x-upstream-json"] = "1"
                        r = http.post("/v1/chat/completions", json={"n": i}, headers=headers)
                        if r.status_code != 200:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                        sent.append(test_id)

            threads = [
                threading.Thread(target=client, args=(url, 12)) for url in urls for _ in range(3)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        finally:
            codes = [rec.stop() for rec in recorders]
    assert failures == [] and codes == [0, 0]
    assert len(sent) == 72
    saved = _store.load(cassette)
    ids = [i.request.header("x-test-id") or "" for i in saved.interactions]
    assert saved.interactions[0] == first
    assert sorted(ids[1:]) == sorted(sent)  # each exchange once: none lost, none twice


# ---------------------------------------------------------------------------------------------
# a long-running replay keeps a bounded log


def test_player_log_limit_keeps_counts_of_everything() -> None:
    chat = interaction(OPENAI_CHAT)
    other = json_interaction()
    player = Player.create(
        [("c", Cassette((chat, other)))],
        timing="instant",
        repeat=True,
        log_limit=100,
        faults=["truncate:after=1,end=close,on=1", "drop:event=99,on=1"],
    )
    miss = Request("POST", "http://x/v1/nothing", (), b"{}")
    for n in range(5_000):
        player.play(chat.request if n % 2 else other.request)
        if n % 20 == 0:
            with pytest.raises(ssevcr.NoMatchError):
                player.play(miss)
    assert player.play_count == 5_000 and player.miss_count == 250
    assert 100 <= len(player.plays) < 200 and player.plays[-1].request == chat.request
    assert len(player.misses) == 100
    assert player.fired_counts == {"truncate:after=1,end=close,on=1": 2_500}
    assert sum(player.skipped_counts.values()) == 2_500
    assert player.fired == ["truncate:after=1,end=close,on=1"]
    lines = summary(player)
    assert lines[0] == "ssevcr replay: 5000 plays, 250 misses"
    assert "truncate:after=1,end=close,on=1 (2500 times)" in lines[1]
    problems = strict_problems(player)
    assert len(problems) == 101 and problems[-1] == "  ... and 150 more misses"
    assert player.unused() == []
    player.reset()
    assert (player.play_count, player.miss_count, player.plays, player.fired) == (0, 0, [], [])


CLIENT = textwrap.dedent("""
    import os, socket, sys, json
    url = os.environ["SSEVCR_URL"].removeprefix("http://")
    host, port = url.split(":")
    body = sys.argv[1].encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\\r\\nHost: localhost\\r\\n"
               b"Content-Type: application/json\\r\\n"
               b"Content-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
    def rss():
        for line in open(f"/proc/{os.getppid()}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    sock = socket.create_connection((host, int(port)))
    size = None
    samples = {}
    for n in range(1, 20_001):
        sock.sendall(request)
        data = b""
        while size is None or len(data) < size:
            data += sock.recv(65536)
            if size is None and data.endswith(b"\\r\\n0\\r\\n\\r\\n"):
                size = len(data)
        if n in (2_000, 20_000):
            samples[n] = rss()
    print(json.dumps(samples))
""")


def test_a_long_running_replay_has_bounded_memory(tmp_path: Path) -> None:
    """20,000 requests to ``ssevcr replay``: the server's RSS stays flat after the first 2,000
    (before the cap, its log of plays grew ~1 MiB per 1,000 requests), and the summary and
    --strict still count them all."""
    result = replay_running(tmp_path, CLIENT, "--strict", timeout=300)
    assert result.returncode == 0, result.stderr
    samples = {int(k): v for k, v in __import__("json").loads(result.stdout).items()}
    grown = samples[20_000] - samples[2_000]
    assert grown < 4 * 1024, f"server RSS grew {grown} KiB over 18,000 requests"
    assert "ssevcr replay: 20000 plays, 0 misses" in result.stderr
