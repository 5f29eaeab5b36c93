"""The replay server under attack, over real sockets on 127.0.0.1 (and real processes where memory
or file descriptors are measured): response splitting from a recorded head, CORS and the Host
guard (DNS rebinding), memory under a stream of distinct 1 MB misses and a 10 GB upload, running
out of file descriptors, and request bytes that used to crash or be logged as server bugs.
"""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import h11
import httpx2
import msgpack
import pytest
from click.testing import CliRunner
from replay_helpers import (
    CLI,
    OPENAI_CHAT,
    example_path,
    interaction,
    json_interaction,
    replay_running,
)
from soak import SoakServer, distinct_misses, upload

from ssevcr._cassette import Cassette
from ssevcr._player import Player
from ssevcr._server_thread import ServerThread
from ssevcr.cli import main

ATTACK = "OK\r\nContent-Length: 5\r\n\r\nHACKD"


def _serve(cassette: Cassette | str, **kw: Any) -> tuple[ServerThread, list[str]]:
    logs: list[str] = []
    source = [example_path(cassette)] if isinstance(cassette, str) else cassette
    player = Player.create(source, timing="instant", repeat=True)
    thread = ServerThread(player, log=logs.append, **kw).start()
    return thread, logs


@pytest.fixture
def served() -> Iterator[list[ServerThread]]:
    threads: list[ServerThread] = []
    yield threads
    for t in threads:
        t.close()


def _exchange(port: int, data: bytes, *, until_close: bool = False, count: int = 1) -> bytes:
    """Every byte the server sends back for ``data``: until it closes (``until_close``), or until
    ``count`` whole responses came (the connection kept open)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        got = b""
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
        conn.send(h11.EndOfMessage())
        done = 0
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return got
            got += chunk
            if not chunk:
                return got
            conn.receive_data(chunk)
            while (event := conn.next_event()) is not h11.NEED_DATA:
                if isinstance(event, h11.EndOfMessage):
                    done += 1
                    if done == count and (not until_close or count > 1):
                        return got
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
                        conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
                        conn.send(h11.EndOfMessage())
                elif isinstance(event, h11.ConnectionClosed):
                    return got


# ---------------------------------------------------------------------------------------------
# response splitting


def test_a_recorded_reason_that_splits_the_response_is_never_written(
    served: list[ServerThread],
) -> None:
    good = json_interaction()
    attack = replace(good, response=replace(good.response, reason=ATTACK))
    thread, logs = _serve(Cassette((attack,)))
    served.append(thread)
    request = b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n"
    closing = request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    for data, closes in ((request * 2, False), (closing, True)):
        wire = _exchange(thread.port, data, until_close=True, count=1 if closes else 2)
        head, _, rest = wire.partition(b"\r\n\r\n")
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        body = rest[:length]
        message = json.loads(body)["error"]["message"]
        assert "reason" in message and "not valid HTTP/1.1" in message
        want = (
            b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nx-should-retry: false\r\n" % len(body)
        )
        if closes:
            want += b"Connection: close\r\n"
        one = want + b"\r\n" + body
        assert wire == (one if closes else one + one)  # every byte: our head, our JSON, no more
        assert b"\r\nHACKD" not in wire and b"\r\nContent-Length: 5" not in wire
    assert logs and all("not valid HTTP/1.1" in line for line in logs)
    assert "server error" not in " ".join(logs)


def test_ssevcr_replay_refuses_the_cassette_naming_the_field(tmp_path: Path) -> None:
    doc = msgpack.unpackb(Path(example_path(OPENAI_CHAT)).read_bytes(), raw=False)
    doc["interactions"][0]["response"]["reason"] = ATTACK
    path = tmp_path / "attack.msgpack"
    path.write_bytes(msgpack.packb(doc, use_bin_type=True))
    result = CliRunner().invoke(main, ["replay", str(path), "--listen", "127.0.0.1:0"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "reason" in result.output and str(path) in result.output


# ---------------------------------------------------------------------------------------------
# CORS and the Host guard


def test_cors_any_origin_never_comes_with_credentials(served: list[ServerThread]) -> None:
    recorded = interaction(OPENAI_CHAT).request
    for cors in (True, ["*"]):
        thread, _ = _serve(OPENAI_CHAT, cors=cors)
        served.append(thread)
        for origin in ("http://evil.test", "http://localhost:5173"):
            pre = httpx2.options(
                thread.url + recorded.path,
                headers={"origin": origin, "access-control-request-method": "POST"},
            )
            got = httpx2.post(
                thread.url + recorded.path, content=recorded.body, headers={"origin": origin}
            )
            for r in (pre, got):
                assert r.headers["access-control-allow-origin"] == origin
                assert "access-control-allow-credentials" not in r.headers
            assert got.content == interaction(OPENAI_CHAT).response.body
        no_origin = httpx2.post(thread.url + recorded.path, content=recorded.body)
        assert no_origin.headers["access-control-allow-origin"] == "*"


def test_cors_named_origins_get_credentials_and_others_nothing(served: list[ServerThread]) -> None:
    recorded = interaction(OPENAI_CHAT).request
    thread, _ = _serve(OPENAI_CHAT, cors=["http://localhost:5173", "https://app.test"])
    served.append(thread)
    for origin in ("http://localhost:5173", "https://app.test"):
        r = httpx2.post(
            thread.url + recorded.path, content=recorded.body, headers={"origin": origin}
        )
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-allow-credentials"] == "true"
        assert r.headers["vary"] == "Origin"
    other = httpx2.post(
        thread.url + recorded.path, content=recorded.body, headers={"origin": "http://evil.test"}
    )
    assert other.status_code == 200 and not any(
        k.startswith("access-control-") for k in other.headers
    )


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("LOCALHOST:8080", True),
        ("app.localhost", True),
        ("127.0.0.1", True),
        ("127.9.9.9:1", True),
        ("[::1]:8080", True),
        ("evil.example", False),
        ("evil.example:8080", False),
        ("192.168.1.10", False),
        ("localhost.evil.example", False),
    ],
)
def test_the_host_guard_answers_loopback_names_only(
    served: list[ServerThread], host: str, allowed: bool
) -> None:
    thread, logs = _serve(OPENAI_CHAT)
    served.append(thread)
    recorded = interaction(OPENAI_CHAT).request
    r = httpx2.post(thread.url + recorded.path, content=recorded.body, headers={"host": host})
    if allowed:
        assert r.status_code == 200 and r.content == interaction(OPENAI_CHAT).response.body
        assert logs == []
    else:
        assert r.status_code == 403 and r.headers["x-should-retry"] == "false"
        assert "DNS rebinding" in r.json()["error"]["message"] and "--allow-host" in r.text
        assert len(logs) == 1 and host in logs[0]
        assert thread.player.play_count == 0
    widened, _ = _serve(OPENAI_CHAT, allow_hosts=["evil.example", "192.168.1.10"])
    served.append(widened)
    r = httpx2.post(widened.url + recorded.path, content=recorded.body, headers={"host": host})
    assert r.status_code == (403 if host == "localhost.evil.example" else 200)


CLIENT = textwrap.dedent("""
    import json, os, sys, httpx2
    url = os.environ["SSEVCR_URL"]
    out = []
    cases = [("evil.example", None), ("box.lan:9", "http://a.test"),
             ("localhost", "http://b.test"), ("localhost", "http://c.test")]
    for host, origin in cases:
        headers = {"host": host}
        if origin:
            headers["origin"] = origin
        r = httpx2.post(url + "/v1/chat/completions", content=sys.argv[1], headers=headers)
        h = r.headers
        out.append([r.status_code, h.get("access-control-allow-origin"),
                    h.get("access-control-allow-credentials")])
    print(json.dumps(out))
""")


def test_ssevcr_replay_cors_and_allow_host_options(tmp_path: Path) -> None:
    result = replay_running(
        tmp_path,
        CLIENT,
        *["--cors", "http://a.test", "--cors", "http://b.test", "--allow-host", "box.lan"],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        [403, None, None],
        [200, "http://a.test", "true"],
        [200, "http://b.test", "true"],
        [200, None, None],
    ]
    assert "'evil.example' is not allowed" in result.stderr
    bad = CliRunner().invoke(main, ["replay", "--cors", example_path(OPENAI_CHAT)])
    assert bad.exit_code == 2 and "takes an origin" in bad.output


# ---------------------------------------------------------------------------------------------
# memory: distinct misses, huge uploads


def test_a_thousand_distinct_1mb_misses_leave_memory_flat() -> None:
    with SoakServer(timing="instant") as server:
        distinct_misses(server.host, server.port, 30, 1 << 20)  # warm-up: allocator pools, buffers
        before = server.stats()
        distinct_misses(server.host, server.port, 1000, 1 << 20, first=30)
        after = server.stats()
    assert after["misses"] == 1030 and after["errors"] == []
    grown = after["rss_kib"] - before["rss_kib"]
    assert grown < 50 * 1024, f"RSS grew {grown} KiB over 1,000 distinct 1 MB misses"


def test_a_10gb_upload_is_refused_without_the_server_growing() -> None:
    with SoakServer(timing="instant", max_body=1 << 20) as server:
        before = server.stats()
        # declared: refused before a byte of the body is read
        sent, reply = upload(server.host, server.port, 10 << 30, chunked=False)
        assert reply.startswith(b"HTTP/1.1 413 ") and b"larger than the limit" in reply, reply
        assert sent < 64 << 20, sent
        # streamed (chunked, no length): read up to the limit, refused, closed
        sent, reply = upload(server.host, server.port, 10 << 30, chunked=True)
        assert reply.startswith(b"HTTP/1.1 413 ") or reply == b"", reply[:100]
        assert sent < 64 << 20, sent  # refused long before 10 GB
        after = server.idle()
    assert after["rss_kib"] - before["rss_kib"] < 16 * 1024, (before, after)
    assert after["connections"] == 0 and after["errors"] == []


# ---------------------------------------------------------------------------------------------
# out of file descriptors


def test_running_out_of_fds_is_logged_once_a_second_and_serving_goes_on() -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    proc = subprocess.Popen(
        [
            *CLI,
            "replay",
            example_path(OPENAI_CHAT),
            "--timing",
            "instant",
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=low_limit,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        url = line.split("serving ")[1].split()[0]
        port = int(url.rsplit(":", 1)[1])
        errors: list[str] = []
        threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
        held = []
        for _ in range(80):  # more than the server has fds for: the kernel queues the rest
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            held.append(s)
        time.sleep(3.2)
        for s in held:
            s.close()
        recorded = interaction(OPENAI_CHAT).request
        deadline = time.monotonic() + 20
        while True:  # the queued connections are accepted and closed; a new one gets its answer
            try:
                r = httpx2.post(url + recorded.path, content=recorded.body, timeout=5)
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert r.status_code == 200 and r.content == interaction(OPENAI_CHAT).response.body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    accept_lines = [e for e in errors if "cannot accept connections" in e]
    assert 1 <= len(accept_lines) <= 6, errors  # about one a second, not one per attempt
    assert all(
        "Too many open files" in e and "times since the last report" in e for e in accept_lines
    )
    assert "Traceback" not in "".join(errors), "".join(errors)[-4000:]


# ---------------------------------------------------------------------------------------------
# small defects: bytes that used to crash or be logged as server bugs


@pytest.mark.parametrize(
    "data",
    [
        "POST /v1/chat HTTP/1.1\r\nHost: localhost\r\ncontent-length: ²\r\n\r\n".encode(),
        b"GET / HTTP/1.1\r\nHost: [\r\n\r\n",
        b"GET http://[::1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET http://[::1/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ],
    ids=["unicode digit", "Host [", "URL [::1", "URL [::1/x"],
)
def test_bad_bytes_get_a_clean_400_and_are_not_server_bugs(
    served: list[ServerThread], data: bytes
) -> None:
    thread, logs = _serve(OPENAI_CHAT)
    served.append(thread)
    reply = _exchange(thread.port, data, until_close=True)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply
    assert b"malformed HTTP request" in reply
    assert logs == []
    recorded = interaction(OPENAI_CHAT).request
    assert httpx2.post(thread.url + recorded.path, content=recorded.body).status_code == 200


def test_closing_while_out_of_fds_logs_no_traceback() -> None:
    """asyncio retries accepting a second after EMFILE, also once the server is closed; the
    retry finds the closed socket. The server closed meanwhile must not print that traceback."""
    code = (
        "import asyncio, resource, socket\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (30, 30))\n"
        "import ssevcr\n"
        f"path = {example_path(OPENAI_CHAT)!r}\n"
        "async def main():\n"
        "    s = ssevcr.ReplayServer(ssevcr.Player.create([path]), log=print)\n"
        "    await s.start()\n"
        "    held = []\n"
        "    for _ in range(40):\n"
        "        try:\n"
        "            c = socket.socket(); c.setblocking(False); held.append(c)\n"
        "            c.connect_ex(('127.0.0.1', s.port))\n"
        "        except OSError:\n"
        "            break\n"
        "    await asyncio.sleep(0.3)\n"
        "    await s.close()\n"
        "    await asyncio.sleep(2.5)\n"
        "asyncio.run(main())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "cannot accept connections: Too many open files" in r.stdout
    assert "Traceback" not in r.stderr and "Invalid file descriptor" not in r.stderr, r.stderr
