"""Cases that aim at non-loopback addresses: they run ONLY inside a network namespace whose only
interface is loopback (``unshare -n``; tests/test_network.py starts them there), so nothing can
leave the machine even if the guard fails. Every address aimed at is a documentation address
(192.0.2.0/24, 2001:db8::/32). Outside such a namespace every case fails at once.

Without the guard, connecting to 192.0.2.1 here fails with ENETUNREACH ("Network is
unreachable"): a NetworkBlockedError shows the guard refused before connecting.
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import ssevcr
from ssevcr import _network
from ssevcr._errors import NetworkBlockedError

TARGET = ("192.0.2.1", 443)
TARGET6 = ("2001:db8::1", 443)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def only_in_a_namespace_without_network() -> None:
    names = sorted(name for _, name in socket.if_nameindex())
    if names != ["lo"]:
        pytest.fail(
            f"these cases run only inside `unshare -n` (interfaces here: {names}); "
            "tests/test_network.py runs them there",
            pytrace=False,
        )


@pytest.fixture
def cassette(tmp_path: Path) -> Path:
    path = tmp_path / "c.msgpack"
    ssevcr.save(ssevcr.Cassette(), path)
    return path


def unreachable(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)


def test_without_a_cassette_the_kernel_answers() -> None:
    with pytest.raises(OSError) as info:
        socket.create_connection(TARGET, timeout=2)
    assert unreachable(info.value)


def test_a_raw_connection_is_refused_before_connecting(cassette: Path) -> None:
    with ssevcr.use_cassette(cassette) as cas:
        with pytest.raises(NetworkBlockedError) as info:
            socket.create_connection(TARGET, timeout=2)
        sock = socket.socket()
        with pytest.raises(NetworkBlockedError):
            sock.connect(TARGET)
        assert sock.fileno() == -1  # closed, never connected
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(NetworkBlockedError):
            udp.sendto(b"x", ("192.0.2.7", 53))
        probe = socket.socket()
        with pytest.raises(NetworkBlockedError):
            probe.connect_ex(("192.0.2.8", 80))
    assert str(info.value).startswith(
        f"network blocked while replaying cassette {str(cassette)!r}: 192.0.2.1:443"
    )
    assert info.value.host == "192.0.2.1" and info.value.port == 443
    assert cas.blocked == [
        f"network blocked while replaying cassette {str(cassette)!r}: {where}"
        for where in ("192.0.2.1:443", "192.0.2.1:443", "192.0.2.7:53", "192.0.2.8:80")
    ]
    assert _network.report(cas).count("\n") == 2  # each refusal once


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 in this Python")
def test_ipv6_is_refused_too(cassette: Path) -> None:
    with ssevcr.use_cassette(cassette) as cas:
        sock = socket.socket(socket.AF_INET6)
        with pytest.raises(NetworkBlockedError, match=r"\[2001:db8::1\]:443"):
            sock.connect(TARGET6)
    assert len(cas.blocked) == 1


def test_loopback_and_unix_sockets_are_allowed(cassette: Path, tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "s"))
    unix.listen()
    with ssevcr.use_cassette(cassette) as cas:
        socket.create_connection(server.getsockname(), timeout=2).close()
        socket.create_connection(("localhost", server.getsockname()[1]), timeout=2).close()
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(tmp_path / "s"))
        client.close()
    server.close()
    unix.close()
    assert not cas.blocked


@pytest.mark.parametrize(
    "options",
    [
        {"allowed_hosts": ["192.0.2.1"]},
        {"allowed_hosts": ["192.0.2.0/24"]},
        {"ignore_hosts": ["192.0.2.1"]},
        {"record": "new_episodes"},
    ],
)
def test_allowed_hosts_and_recording_let_it_through(cassette: Path, options: dict) -> None:
    with ssevcr.use_cassette(cassette, **options) as cas:
        with pytest.raises(OSError) as info:
            socket.create_connection(TARGET, timeout=2)
        assert unreachable(info.value)  # the kernel's answer: the guard let it pass
        replaying = "record" not in options  # only the listed host passes; recording: all
        with pytest.raises(NetworkBlockedError if replaying else OSError):
            socket.create_connection(("192.0.3.1", 443), timeout=2)
    assert len(cas.blocked) == (1 if replaying else 0)


def test_other_clients_and_threads_without_a_cassette(cassette: Path) -> None:
    with ssevcr.use_cassette(cassette) as cas:
        with pytest.raises(NetworkBlockedError):
            urllib.request.urlopen("http://192.0.2.1/", timeout=2)
        with pytest.raises(NetworkBlockedError):
            http.client.HTTPSConnection("192.0.2.2", timeout=2).request("GET", "/")
        errors: list[BaseException] = []

        def background() -> None:  # a plain thread: not in the cassette's context
            try:
                socket.create_connection(("192.0.2.3", 80), timeout=2)
            except BaseException as e:
                errors.append(e)

        thread = threading.Thread(target=background)
        thread.start()
        thread.join()

        async def asyncio_client() -> None:
            await asyncio.open_connection("192.0.2.4", 80)

        with pytest.raises(NetworkBlockedError):
            asyncio.run(asyncio_client())
    assert [type(e) for e in errors] == [NetworkBlockedError]
    assert [m.rsplit(": ", 1)[1] for m in cas.blocked] == [
        "192.0.2.1:80",
        "192.0.2.2:443",
        "192.0.2.3:80",
        "192.0.2.4:80",
    ]


def test_urllib3_and_requests_are_answered_in_process_and_the_rest_is_blocked(
    tmp_path: Path,
) -> None:
    """Pools aimed at a documentation address (unreachable here: a connect fails with
    ENETUNREACH) get the recorded answer in memory; what is not intercepted is still refused
    before connecting, and a host let through reaches the kernel."""
    import requests
    import urllib3
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    body = b'data: {"n": 1}\n\ndata: [DONE]\n\n'
    path = tmp_path / "c.msgpack"
    interaction = ssevcr.Interaction(
        ssevcr.Request("POST", "https://192.0.2.1/v1/chat", (), b'{"q": 1}'),
        ssevcr.Response.from_chunks(
            200, [(0.0, body)], headers=(("content-type", "text/event-stream"),)
        ),
    )
    ssevcr.save(ssevcr.Cassette((interaction,)), path)
    with ssevcr.use_cassette(path, allow_repeats=True, ignore_hosts=["192.0.2.9"]) as cas:
        url = "https://192.0.2.1/v1/chat"
        assert urllib3.PoolManager().request("POST", url, body=b'{"q": 1}').data == body
        pool = urllib3.HTTPSConnectionPool("192.0.2.1", 443)
        r = pool.urlopen("POST", "/v1/chat", body=b'{"q": 1}', preload_content=False)
        assert b"".join(r.stream(None)) == body
        assert requests.post(url, data=b'{"q": 1}').content == body
        with pytest.raises(ssevcr.NoMatchError):
            urllib3.request("POST", url, body=b'{"q": 2}')
        with pytest.raises(NetworkBlockedError):
            http.client.HTTPSConnection("192.0.2.1", timeout=2).request("GET", "/")
        with pytest.raises(NetworkBlockedError):  # a urllib3 connection used without a pool
            urllib3.connection.HTTPConnection("192.0.2.3", 80, timeout=2).request("GET", "/")
        with pytest.raises(MaxRetryError) as info:  # let through: the kernel answers
            urllib3.request("GET", "http://192.0.2.9/", retries=0, timeout=2)
    assert isinstance(info.value.reason, NewConnectionError)
    assert "Network is unreachable" in str(info.value.reason)
    assert len(cas.plays) == 3 and len(cas.misses) == 1
    assert [m.rsplit(": ", 1)[1] for m in cas.blocked] == ["192.0.2.1:443", "192.0.2.3:80"]


def test_the_websockets_sync_client_is_answered_in_process(tmp_path: Path) -> None:
    """The threading ``websockets`` client aimed at a documentation address (and at
    ``wss://api.openai.com``: no DNS here) replays from the cassette's replay server, a miss
    names the host it aimed at, and a host let through reaches the kernel untouched."""
    import websockets
    from test_ws_options import realtime_cassette
    from websockets.sync.client import connect

    path = tmp_path / "rt.msgpack"
    url = "wss://192.0.2.1/v1/realtime?model=gpt-realtime"
    ssevcr.save(realtime_cassette(url=url.replace("wss://", "https://")), path)
    options = {"allow_repeats": True, "ignore_hosts": ["192.0.2.9"], "timing": "instant"}
    with ssevcr.use_cassette(path, **options) as cas:
        for aimed in (url, "wss://api.openai.com/v1/realtime?model=gpt-realtime"):
            with connect(aimed, open_timeout=5) as conn:
                assert json.loads(conn.recv(5))["type"] == "session.created"
        with pytest.raises(websockets.InvalidStatus) as miss:
            connect("wss://192.0.2.1/v1/other", open_timeout=5)
        with pytest.raises(OSError) as let_through:  # the kernel answers
            connect("ws://192.0.2.9/v1/realtime?model=gpt-realtime", open_timeout=5)
    assert unreachable(let_through.value)
    assert miss.value.response.status_code == 404
    assert len(cas.plays) == 2 and not cas.blocked
    (message,) = [m.message for m in cas.misses]
    assert "matches GET http://192.0.2.1/v1/other" in message, message


def test_after_the_cassette_nothing_is_guarded(cassette: Path) -> None:
    connect = socket.socket.connect
    with ssevcr.use_cassette(cassette):
        assert socket.socket.connect is not connect
    assert "connect" not in socket.socket.__dict__ and socket.socket.connect is connect
    with pytest.raises(OSError) as info:
        socket.create_connection(TARGET, timeout=2)
    assert unreachable(info.value)


def test_litellm_through_aiohttp_records_and_replays(tmp_path: Path) -> None:
    """litellm's aiohttp path, with LITELLM_LOCAL_MODEL_COST_MAP unset (litellm then fetches its
    model cost map from the internet, here refused or unreachable): recorded from the local
    upstream, replayed with it stopped, a capture server seeing nothing."""
    pytest.importorskip("litellm", reason="litellm is not installed in this environment")
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "litellm_scenario.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["recorded_text"] == report["expected_text"] == report["replayed_text"]
    assert report["upstream_requests"] == 1 and report["capture_connections"] == 0
    assert report["plays"] == 1 and report["misses"] == 0
    assert "ClientPayloadError" in report["fault_chain"]


PLUGIN_TESTS = """
import socket, threading, time
import pytest

TARGET = ("192.0.2.1", 443)


def swallowed():
    try:
        socket.create_connection(TARGET, timeout=2)
    except Exception as e:  # the client swallows whatever it got
        return e


@pytest.mark.ssevcr("c.msgpack")
def test_a_background_thread_swallows_it():
    t = threading.Thread(target=swallowed)
    t.start()
    t.join()


@pytest.mark.ssevcr("c.msgpack")
def test_the_test_itself_connects():
    socket.create_connection(TARGET, timeout=2)


@pytest.fixture
def late():
    threads = []
    yield threads
    for t in threads:
        t.join()  # before the cassette's own teardown (it was set up first)


@pytest.mark.ssevcr("c.msgpack")
def test_a_thread_connects_after_the_test(late):
    late.append(threading.Thread(target=lambda: (time.sleep(0.2), swallowed())))
    late[0].start()


def test_no_cassette_no_guard():
    assert isinstance(swallowed(), OSError)
"""


def test_the_plugin_fails_the_test_that_owns_the_cassette(pytester: pytest.Pytester) -> None:
    """A refused connection fails the test whose cassette replayed, also when a background
    thread made it and the client swallowed the error (at the end of the call, or at teardown
    for a thread still running then), with the "network blocked" message and no traceback;
    ``--ssevcr-allow-host`` lets it through (to the namespace's unreachable network)."""
    (pytester.path / "cassettes" / "test_guard").mkdir(parents=True)
    ssevcr.save(ssevcr.Cassette(), pytester.path / "cassettes" / "test_guard" / "c.msgpack")
    pytester.makepyfile(test_guard=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    out = result.stdout.str()
    result.assert_outcomes(passed=2, failed=2, errors=1)
    blocked = "network blocked while replaying cassette '{}': 192.0.2.1:443".format(
        pytester.path / "cassettes" / "test_guard" / "c.msgpack"
    )
    assert out.count(blocked) >= 3, out
    assert "--ssevcr-allow-host HOST" in out
    assert "ERROR at teardown of test_a_thread_connects_after_the_test" in out
    assert "FAILED test_guard.py::test_a_background_thread_swallows_it" in out
    assert "FAILED test_guard.py::test_the_test_itself_connects" in out
    assert "Traceback" not in out and "_network.py" not in out
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rA", "--ssevcr-allow-host", "192.0.2.0/24"
    )
    out = result.stdout.str()
    result.assert_outcomes(passed=3, failed=1)
    assert "network blocked" not in out
    assert "FAILED test_guard.py::test_the_test_itself_connects - OSError" in out, out


@pytest.fixture(autouse=True)
def no_stray_cassette() -> Iterator[None]:
    yield
    from ssevcr._intercept import open_cassettes

    assert not open_cassettes()
