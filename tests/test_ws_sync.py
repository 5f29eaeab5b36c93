"""In-process WebSocket replay and recording for the ``websockets`` library's threading client
(``websockets.sync.client.connect``), over real sockets: the same conversation as
tests/test_ws_inprocess.py (text, binary, a fragmented message, the server's close 4001) from a
real ``websockets`` upstream on 127.0.0.1, recorded through the sync client under
``use_cassette(record="once")`` (its protocol object watched by the asyncio path's recorder),
then replayed to the sync client with the upstream stopped: the same messages at the recorded
gaps, faults as the sync client's own exceptions, a miss naming the host, the journal of the
play; ``new_episodes``, ``ignore_hosts`` and the pytest marker. Cases aimed at non-loopback
hosts are in tests/netns_cases.py (inside ``unshare -n``)."""

from __future__ import annotations

import asyncio
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import websockets
from realtime_upstream import RealtimeUpstream
from test_ws_inprocess import (
    KEY,
    LATE,
    QUERY_KEY,
    SERVER,
    TOLERANCE,
    chat,
    chat_client,
    check_recording,
    follows,
    new_episodes_replays_a_match_and_records_a_miss,
    replays_through_ssevcr_replay,
)
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.sync.client import connect

import ssevcr
from ssevcr import _websockets


def sync_chat_client(
    url: str, *, late: float = 0.0, path: str = "/chat"
) -> tuple[list[Any], list[tuple[str, float]], ConnectionClosed]:
    """tests/test_ws_inprocess.py's ``chat_client`` with the threading client: the messages
    read, when each was read or sent, and the close."""
    got: list[Any] = []
    clock: list[tuple[str, float]] = []
    with connect(
        f"{url}{path}?v=1&api_key={QUERY_KEY}",
        additional_headers={"Authorization": f"Bearer {KEY}"},
        open_timeout=10,
    ) as conn:

        def recv() -> None:
            got.append(conn.recv(10))
            clock.append(("in", time.monotonic()))

        def send(message: Any) -> None:
            conn.send(message)
            clock.append(("out", time.monotonic()))

        recv()
        send('{"ask": 1}')
        time.sleep(late)  # (the next two messages arrive meanwhile)
        recv()
        recv()
        send(b"\xde\xad\xbe\xef")
        recv()
        with pytest.raises(ConnectionClosed) as info:
            conn.recv(10)
    return got, clock, info.value


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, str]:
    """The chat recorded in process through the sync client (the client reads two messages
    late), what the upstream logged, and its URL; the upstream is stopped once recorded."""
    path = tmp_path_factory.mktemp("wssync") / "chat.msgpack"
    with RealtimeUpstream(handler=chat) as up:
        with ssevcr.use_cassette(path, record="once") as cas:
            assert cas.mode == "record"
            got, _, closed = sync_chat_client(up.ws_url, late=LATE)
        (log,) = up.conversations
        (handshake,) = up.handshakes
    assert handshake["authorization"] == f"Bearer {KEY}"  # the upstream got the real key
    assert got == SERVER and closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "bye")
    return path, log, up.ws_url


def test_the_sync_client_records_in_process(recorded: tuple[Path, Any, str]) -> None:
    path, log, _ = recorded
    inter = check_recording(path, log)  # every message at the upstream's send times, the close
    assert inter.request.url.endswith("/chat?v=1&api_key=REDACTED")
    assert inter.request.header("authorization") == "REDACTED"
    assert inter.request.header("sec-websocket-key")
    data = path.read_bytes()
    assert KEY.encode() not in data and QUERY_KEY.encode() not in data


def test_the_recording_replays_to_the_sync_client(recorded: tuple[Path, Any, str]) -> None:
    path, _, url = recorded  # (the upstream is stopped: only the cassette can answer)
    ws = ssevcr.load(path).interactions[0].websocket
    with ssevcr.use_cassette(path) as cas:
        got, clock, closed = sync_chat_client(url)
        assert len(_websockets._servers) == 1  # the cassette's replay server
    assert not _websockets._servers  # stopped with the cassette
    assert got == SERVER  # byte for byte, text as text and binary as binary
    assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (4001, "bye")
    errors = follows(clock, ws)
    assert max(errors) < TOLERANCE, errors
    assert len(cas.plays) == 1 and not cas.misses
    (delivery,) = cas.journal
    assert delivery.state == "completed" and delivery.how is None
    assert delivery.url.startswith(url.replace("ws://", "http://") + "/chat?v=1")
    assert delivery.websocket is not None
    assert (delivery.websocket.sent, delivery.websocket.received) == (4, 2)
    assert delivery.websocket.close is not None
    assert (delivery.websocket.close.by, delivery.websocket.close.code) == ("server", 4001)


def test_the_sync_recording_replays_through_ssevcr_replay(recorded: tuple[Path, Any, str]) -> None:
    replays_through_ssevcr_replay(recorded[0], sync_chat_client)


def test_either_client_replays_what_the_other_recorded(
    recorded: tuple[Path, Any, str], tmp_path: Path
) -> None:
    path, _, url = recorded
    with ssevcr.use_cassette(path):
        got, _, closed = asyncio.run(chat_client(url))  # recorded by the sync client
    assert got == SERVER and closed.rcvd is not None and closed.rcvd.code == 4001
    other = tmp_path / "async.msgpack"
    with RealtimeUpstream(handler=chat) as up:
        with ssevcr.use_cassette(other, record="once"):
            asyncio.run(chat_client(up.ws_url))
        url = up.ws_url
    with ssevcr.use_cassette(other) as cas:
        got, _, closed = sync_chat_client(url)  # recorded by the asyncio client
    assert got == SERVER and closed.rcvd is not None and closed.rcvd.code == 4001
    assert len(cas.plays) == 1 and not cas.misses


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("close:after=2,code=4000,reason=gone", 4000),  # a close frame
        ("close:after=2,code=1006", None),  # the TCP connection dropped: no close frame
        ("truncate:after=2,end=reset", None),  # a TCP RST
    ],
)
def test_a_fault_is_the_sync_clients_own_exception(
    recorded: tuple[Path, Any, str], fault: str, code: int | None
) -> None:
    path, _, url = recorded
    with (
        ssevcr.use_cassette(path, faults=[fault]) as cas,
        pytest.raises(ConnectionClosedError) as info,
    ):
        sync_chat_client(url)
    assert cas.fired == [fault]
    if code is None:
        assert info.value.rcvd is None  # (1006: closed without a close frame)
    else:
        assert info.value.rcvd is not None and info.value.rcvd.code == code
    (delivery,) = cas.journal
    assert delivery.websocket is not None and delivery.websocket.sent == 2
    assert delivery.state == "completed" and delivery.end == ("close" if code else "abort")


def test_a_miss_fails_naming_the_host(recorded: tuple[Path, Any, str]) -> None:
    path, _, url = recorded
    with (
        ssevcr.use_cassette(path) as cas,
        pytest.raises(websockets.InvalidStatus) as info,
    ):
        sync_chat_client(url, path="/other")
    assert info.value.response.status_code == 404
    (miss,) = cas.misses
    host = url.removeprefix("ws://")
    assert f"matches GET http://{host}/other?v=1&api_key=" in miss.message, miss.message
    assert "path: recorded /chat, got /other" in miss.message
    assert QUERY_KEY not in miss.message
    assert info.value.response.body is not None and b"/other" in info.value.response.body


def test_a_client_leaving_early_is_left(recorded: tuple[Path, Any, str]) -> None:
    path, _, url = recorded
    with ssevcr.use_cassette(path) as cas:
        with connect(f"{url}/chat?v=1&api_key={QUERY_KEY}", open_timeout=10) as conn:
            assert conn.recv(10) == "hello"
        deadline = time.monotonic() + 10
        while cas.journal[0].state == "open" and time.monotonic() < deadline:
            time.sleep(0.01)
    (delivery,) = cas.journal
    assert delivery.state == "left" and delivery.how == "fin"
    assert delivery.left_after_event == 1


def test_new_episodes_replays_a_match_and_records_a_miss(
    recorded: tuple[Path, Any, str], tmp_path: Path
) -> None:
    new_episodes_replays_a_match_and_records_a_miss(recorded[0], tmp_path, sync_chat_client)


def test_a_host_the_cassette_lets_through_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ignored.msgpack"
    with RealtimeUpstream(handler=chat) as up:
        with ssevcr.use_cassette(path, record="all", ignore_hosts=["127.0.0.1"]) as cas:
            got, _, _ = sync_chat_client(up.ws_url)
        assert len(up.conversations) == 1  # the upstream answered
    assert got == SERVER
    assert not cas.plays and not _websockets._servers
    assert not path.exists() or not ssevcr.load(path).interactions  # nothing recorded


MARKED = """
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

URL = {url!r}


@pytest.mark.ssevcr("chat", timing="instant")
def test_chat(ssevcr_cassette):
    with connect(URL + "/chat?v=1") as conn:
        got = [conn.recv(10)]
        conn.send('{{"ask": 1}}')
        got += [conn.recv(10), conn.recv(10)]
        conn.send(b"\\xde\\xad\\xbe\\xef")
        got.append(conn.recv(10))
        with pytest.raises(ConnectionClosed):
            conn.recv(10)
    assert got == {server!r}
    assert ssevcr_cassette.mode == "record" or len(ssevcr_cassette.plays) == 1
"""


def test_the_marker_records_then_replays_the_sync_client(pytester: pytest.Pytester) -> None:
    with RealtimeUpstream(handler=chat) as up:
        pytester.makepyfile(test_chat=MARKED.format(url=up.ws_url, server=SERVER))
        first = pytester.runpytest("-p", "no:cacheprovider", "--ssevcr-record=once")
        first.assert_outcomes(passed=1)
        assert len(up.conversations) == 1
    (cassette,) = (pytester.path / "cassettes").rglob("*.msgpack")
    (inter,) = ssevcr.load(cassette).interactions
    assert inter.websocket is not None and len(inter.websocket.messages) == 6
    again = pytester.runpytest("-p", "no:cacheprovider", "--ssevcr-record=none")  # upstream gone
    again.assert_outcomes(passed=1)


@pytest.mark.parametrize("client", ["sync", "asyncio"])
def test_recording_with_faults_warns_that_they_were_not_applied(
    tmp_path: Path, client: str
) -> None:
    """A WebSocket recorded in process reaches the client as the service sends it, so a fault
    the replays will apply is not shown on the recording run: the test is told, and the
    replay that follows fires it."""
    path = tmp_path / "chat.msgpack"
    with RealtimeUpstream(handler=chat) as up:
        with (
            ssevcr.use_cassette(path, record="once", faults=["truncate:after=2,times=1"]) as cas,
            pytest.warns(ssevcr.UnappliedFaultWarning, match=r"without the faults truncate"),
        ):
            if client == "sync":
                got, _, _ = sync_chat_client(up.ws_url)
            else:
                got, _, _ = asyncio.run(chat_client(up.ws_url))
        assert got == SERVER and cas.fired == []  # the whole conversation, as the service sent it
        with (
            ssevcr.use_cassette(path, faults=["truncate:after=2,times=1"]) as cas,
            pytest.raises(ConnectionClosedError),
        ):
            sync_chat_client(up.ws_url)
        assert cas.fired == ["truncate:after=2,times=1"]


def test_recording_without_faults_does_not_warn(tmp_path: Path) -> None:
    with (
        RealtimeUpstream(handler=chat) as up,
        ssevcr.use_cassette(tmp_path / "c.msgpack", record="once") as cas,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error", ssevcr.UnappliedFaultWarning)
        got, _, _ = sync_chat_client(up.ws_url)
    assert got == SERVER and len(cas.plays) == 1 and cas.plays[0].recorded
