"""In-process WebSocket replay and recording for the ``websockets`` library.

Replay: the official openai SDK's Realtime client, aimed at the real ``wss://api.openai.com``,
replays a cassette under ``use_cassette`` (its connection goes to a replay server of the
cassette on 127.0.0.1; the network guard refuses anything else): the recorded bytes, faults as
the client's own close, misses and journals on the cassette.

Recording: a real ``websockets`` server on 127.0.0.1 (tests/realtime_upstream.py) sends a known
conversation (text, binary, a fragmented message, with and without permessage-deflate) at known
times and closes it; a real ``websockets`` client (and the openai SDK's Realtime client) talks
to it under ``use_cassette(record="once")``. The cassette holds every message byte for byte, in
its direction and opcode, at offsets that follow the upstream's own send clock (even when the
client reads late), the server's close, and no credential; then the upstream is stopped and
the cassette replays, in process and through a real ``ssevcr replay``, the same bytes at the
recorded gaps."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import websockets
from realtime_upstream import RealtimeUpstream
from stream_helpers import CliReplay
from test_ws_options import UPDATE, realtime_cassette, save
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

import ssevcr
from ssevcr import _websockets

KEY = "sk-live-do-not-record-0123456789abcdef"
QUERY_KEY = "sk-query-do-not-record-0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)


async def sdk(update: dict[str, Any] = UPDATE, *, base: str | None = None) -> list[bytes]:
    """The openai SDK's Realtime client on its default URL (or ``base``, its WebSocket base
    URL): the server messages as read."""
    client = openai.AsyncOpenAI(api_key=KEY, websocket_base_url=base)
    got: list[bytes] = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        got.append(await asyncio.wait_for(conn.recv_bytes(), 10))
        await conn.send(update)
        got.append(await asyncio.wait_for(conn.recv_bytes(), 10))
        await conn.response.create()
        while json.loads(got[-1])["type"] != "response.done":
            got.append(await asyncio.wait_for(conn.recv_bytes(), 10))
    return got


def server_messages(path: Path) -> list[bytes]:
    ws = ssevcr.load(path).interactions[0].websocket
    assert ws is not None
    return [m.data for m in ws.messages if not m.from_client]


def test_the_sdk_replays_in_process(tmp_path: Path) -> None:
    path = save(tmp_path, realtime_cassette())
    with ssevcr.use_cassette(path, timing="instant") as cas:
        got = asyncio.run(sdk())
        assert len(_websockets._servers) == 1  # the cassette's replay server
    assert not _websockets._servers  # stopped with the cassette
    assert got == server_messages(path)
    assert len(cas.plays) == 1 and not cas.misses
    (delivery,) = cas.journal
    assert delivery.url.startswith("http://api.openai.com/v1/realtime")  # the client's own URL
    assert delivery.websocket is not None and delivery.state == "completed"
    assert delivery.websocket.sent == len(got)


def test_a_fault_is_the_clients_own_close(tmp_path: Path) -> None:
    path = save(tmp_path, realtime_cassette())
    with (
        ssevcr.use_cassette(path, faults=["close:after=4,code=4000"]) as cas,
        pytest.raises(ConnectionClosedError) as info,
    ):
        asyncio.run(sdk())
    assert info.value.rcvd is not None and info.value.rcvd.code == 4000
    assert cas.fired == ["close:after=4,code=4000"]


def test_a_near_miss_is_the_cassettes_miss(tmp_path: Path) -> None:
    path = save(tmp_path, realtime_cassette())
    other = {**UPDATE, "session": {"type": "realtime", "voice": "verse"}}
    with ssevcr.use_cassette(path, ws_match="json") as cas, pytest.raises(ConnectionClosedError):
        asyncio.run(sdk(other))
    (miss,) = cas.misses
    assert 'the JSON differs at $.session.voice: recorded "alloy", got "verse"' in miss.message


MARKED = """
import asyncio, json, openai, pytest


async def talk(voice):
    client = openai.AsyncOpenAI(api_key="sk-test")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.recv_bytes()
        await conn.send({"type": "session.update", "session": {"type": "realtime", "voice": voice}})
        return json.loads(await conn.recv_bytes())["type"]


@pytest.mark.ssevcr("realtime", ws_match="json", timing="instant")
def test_same():
    assert asyncio.run(talk("alloy")) == "session.updated"


@pytest.mark.ssevcr("realtime", ws_match="json", timing="instant")
def test_other():
    asyncio.run(talk("verse"))
"""


def test_the_marker_replays_the_sdk_in_process(pytester: pytest.Pytester) -> None:
    folder = pytester.path / "cassettes" / "test_rt"
    folder.mkdir(parents=True)
    save(folder, realtime_cassette())
    pytester.makepyfile(test_rt=MARKED)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    out = result.stdout.str()
    result.assert_outcomes(passed=1, failed=1)
    assert "PASSED test_rt.py::test_same" in out
    assert 'the JSON differs at $.session.voice: recorded "alloy", got "verse"' in out, out


# ---------------------------------------------------------------------------------------------
# recording in process

BINARY = b"\x00\x01\xfe\xff"
PAUSES = (0.05, 0.08, 0.1)  # the upstream's pauses before its 2nd, 3rd and 4th message
TOLERANCE = 0.05  # seconds, on a loaded machine (a stamp taken when the client reads is 0.3 off)
LATE = 0.4  # the recording client reads the 2nd and 3rd message this long after they came
CONVERSATION = [  # (from the client, binary, payload) as recorded
    (False, False, b"hello"),
    (True, False, b'{"ask": 1}'),
    (False, True, BINARY),
    (False, False, b"frag-ment"),
    (True, True, b"\xde\xad\xbe\xef"),
    (False, False, b"last"),
]
SERVER = ["hello", BINARY, "frag-ment", "last"]  # what the client reads


async def chat(conn: Any, send: Any) -> None:
    """The upstream's side: text, then (after the client's text) binary and a message in two
    fragments, then (after the client's binary) text, then its close 4001 "bye"."""
    await send("hello")
    await conn.recv()
    await asyncio.sleep(PAUSES[0])
    await send(BINARY)
    await asyncio.sleep(PAUSES[1])
    await send(["frag-", "ment"])  # (an iterable: one message, two frames)
    await conn.recv()
    await asyncio.sleep(PAUSES[2])
    await send("last")
    await conn.close(4001, "bye")


async def chat_client(
    url: str, *, late: float = 0.0, path: str = "/chat"
) -> tuple[list[Any], list[tuple[str, float]], ConnectionClosed]:
    """The client's side: the messages read, when each was read or sent, and the close."""
    got: list[Any] = []
    clock: list[tuple[str, float]] = []
    async with websockets.connect(
        f"{url}{path}?v=1&api_key={QUERY_KEY}",
        additional_headers={"Authorization": f"Bearer {KEY}"},
        open_timeout=10,
    ) as conn:

        async def recv() -> None:
            got.append(await asyncio.wait_for(conn.recv(), 10))
            clock.append(("in", time.monotonic()))

        async def send(message: Any) -> None:
            await conn.send(message)
            clock.append(("out", time.monotonic()))

        await recv()
        await send('{"ask": 1}')
        await asyncio.sleep(late)  # (the next two messages arrive meanwhile)
        await recv()
        await recv()
        await send(b"\xde\xad\xbe\xef")
        await recv()
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(conn.recv(), 10)
    return got, clock, info.value


def follows(clock: list[tuple[str, float]], ws: Any) -> list[float]:
    """How far (seconds) each server message the client read came from its recorded offset
    after the client message before it (what a replay keeps)."""
    errors = []
    sent = 0.0
    recorded_sent = 0.0
    start = clock[0][1]  # (the first message: at the handshake, as recorded)
    for (way, at), m in zip(clock, ws.messages, strict=True):
        if way == "out":
            sent, recorded_sent = at, m.at
        else:
            errors.append(abs((at - (sent or start)) - (m.at - recorded_sent)))
    return errors


@pytest.fixture(scope="module")
def recorded_chat(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    """The chat recorded in process (``record="once"``), with what the upstream logged (its send
    clock) and what the client got; the upstream is stopped once it is recorded."""
    path = tmp_path_factory.mktemp("wsrec") / "chat.msgpack"
    with RealtimeUpstream(handler=chat) as up:
        with ssevcr.use_cassette(path, record="once") as cas:
            assert cas.mode == "record"
            got, _, closed = asyncio.run(chat_client(up.ws_url, late=LATE))
        (log,) = up.conversations
        (handshake,) = up.handshakes
    assert handshake["authorization"] == f"Bearer {KEY}"  # the upstream got the real key
    assert got == SERVER and closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "bye")
    return path, log, up.ws_url


def check_recording(path: Path, log: Any) -> Any:
    (inter,) = ssevcr.load(path).interactions
    ws = inter.websocket
    assert ws is not None and inter.response.status == 101
    assert [(m.from_client, m.binary, m.data) for m in ws.messages] == CONVERSATION
    assert ws.close is not None
    assert (ws.close.code, ws.close.reason, ws.close.by) == (4001, "bye", "server")
    # the server's messages at the upstream's own send times (same process, same clock): each
    # stamped as it arrived, not when the client (which slept) read it
    sent = [at for at, way, _ in log if way == "out"]
    at = [m.at for m in ws.messages if not m.from_client]
    errors = [abs((a - at[0]) - (s - sent[0])) for a, s in zip(at, sent, strict=True)]
    assert max(errors) < TOLERANCE, (errors, at, sent)
    assert ws.close.at >= at[-1] and ws.close.at - at[-1] < TOLERANCE
    assert "recorded_at" in inter.meta
    return inter


def test_the_websockets_client_records_in_process(recorded_chat: tuple[Path, Any, Any]) -> None:
    path, log, _ = recorded_chat
    inter = check_recording(path, log)
    # the handshake as sent, redacted: no key in the query, the header, or anywhere in the file
    assert inter.request.method == "GET"
    assert inter.request.path == "/chat"
    assert inter.request.url.endswith("/chat?v=1&api_key=REDACTED")
    assert inter.request.header("authorization") == "REDACTED"
    assert inter.request.header("sec-websocket-key")
    assert inter.response.header("sec-websocket-accept")
    data = path.read_bytes()
    assert KEY.encode() not in data and QUERY_KEY.encode() not in data


def test_permessage_deflate_is_recorded_as_the_application_sent_it(tmp_path: Path) -> None:
    path = tmp_path / "deflate.msgpack"
    with RealtimeUpstream(handler=chat, compression="deflate") as up:
        with ssevcr.use_cassette(path, record="all"):
            got, _, _ = asyncio.run(chat_client(up.ws_url))
        (log,) = up.conversations
    inter = check_recording(path, log)
    assert "permessage-deflate" in (inter.response.header("sec-websocket-extensions") or "")
    assert got == SERVER


def test_the_recording_replays_in_process(recorded_chat: tuple[Path, Any, Any]) -> None:
    path, _, url = recorded_chat  # (the upstream is stopped: only the cassette can answer)
    ws = ssevcr.load(path).interactions[0].websocket
    with ssevcr.use_cassette(path) as cas:
        got, clock, closed = asyncio.run(chat_client(url))
    assert got == SERVER  # byte for byte, text as text and binary as binary
    assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (4001, "bye")
    assert len(cas.plays) == 1 and not cas.misses
    errors = follows(clock, ws)
    assert max(errors) < TOLERANCE, errors


def replays_through_ssevcr_replay(path: Path, client: Any) -> None:
    """``client(url)`` (a chat client: messages, clock, close) talking to ``ssevcr replay`` of
    the recorded chat gets every message at its recorded gap and the close; no miss."""
    ws = ssevcr.load(path).interactions[0].websocket
    replay = CliReplay(str(path))
    try:
        got, clock, closed = client(replay.url.replace("http://", "ws://"))
    finally:
        code, err = replay.stop()
    assert code == 0, err
    assert got == SERVER
    assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (4001, "bye")
    errors = follows(clock, ws)
    assert max(errors) < TOLERANCE, errors
    assert "0 misses" in err, err


def test_the_recording_replays_through_ssevcr_replay(recorded_chat: tuple[Path, Any, Any]) -> None:
    replays_through_ssevcr_replay(recorded_chat[0], lambda url: asyncio.run(chat_client(url)))


def new_episodes_replays_a_match_and_records_a_miss(
    recorded: Path, tmp_path: Path, client: Any
) -> None:
    """Under ``new_episodes``, ``client(url, path=...)`` gets the recorded chat from the cassette
    (the upstream is not asked) and a chat on another path from the upstream, recorded after it."""
    path = tmp_path / "episodes.msgpack"
    path.write_bytes(recorded.read_bytes())
    with (
        RealtimeUpstream(handler=chat) as up,
        ssevcr.use_cassette(path, record="new_episodes") as cas,
    ):
        replayed, _, _ = client(up.ws_url)  # recorded: replayed
        assert not up.conversations  # (the upstream was not asked)
        new, _, _ = client(up.ws_url, path="/other")
        assert len(up.conversations) == 1
    assert replayed == new == SERVER and not cas.misses
    first, second = ssevcr.load(path).interactions
    assert (first.request.path, second.request.path) == ("/chat", "/other")
    assert second.websocket is not None and len(second.websocket.messages) == 6


def test_new_episodes_replays_a_match_and_records_a_miss(
    recorded_chat: tuple[Path, Any, Any], tmp_path: Path
) -> None:
    new_episodes_replays_a_match_and_records_a_miss(
        recorded_chat[0], tmp_path, lambda url, **kw: asyncio.run(chat_client(url, **kw))
    )


def test_a_hook_drops_or_edits_the_recorded_handshake(tmp_path: Path) -> None:
    dropped, edited = tmp_path / "dropped.msgpack", tmp_path / "edited.msgpack"

    def tag(request: Any) -> Any:
        request.set_header("x-team", "voice")
        return request

    with RealtimeUpstream(handler=chat) as up:
        with ssevcr.use_cassette(dropped, record="once", before_record_request=lambda r: None):
            asyncio.run(chat_client(up.ws_url))
        with ssevcr.use_cassette(edited, record="once", before_record_request=tag):
            asyncio.run(chat_client(up.ws_url))
    assert not dropped.exists() or not ssevcr.load(dropped).interactions
    (inter,) = ssevcr.load(edited).interactions
    assert inter.request.header("x-team") == "voice"
    assert inter.request.header("authorization") == "REDACTED"  # redaction still ran after it
    assert inter.websocket is not None and len(inter.websocket.messages) == 6


def test_the_sdk_records_in_process_and_replays_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "sdk.msgpack"
    with RealtimeUpstream() as up:
        base = up.ws_url + "/v1"
        with ssevcr.use_cassette(path, record="once"):
            live = asyncio.run(sdk(base=base))
        (log,) = up.conversations
        (handshake,) = up.handshakes
    assert handshake["authorization"] == f"Bearer {KEY}"
    (inter,) = ssevcr.load(path).interactions
    ws = inter.websocket
    assert ws is not None and ws.close is not None and ws.close.by == "client"
    assert [(m.from_client, m.text) for m in ws.messages] == [(d == "in", t) for _, d, t in log]
    assert server_messages(path) == live
    assert inter.request.header("authorization") == "REDACTED"
    assert KEY.encode() not in path.read_bytes()
    # the deltas, stamped as they came: the upstream's gaps
    sent = [at for at, way, text in log if way == "out" and "delta" in text]
    at = [m.at for m in ws.messages if not m.from_client and b"delta" in m.data]
    errors = [abs((a - at[0]) - (s - sent[0])) for a, s in zip(at, sent, strict=True)]
    assert max(errors) < TOLERANCE, errors
    with ssevcr.use_cassette(path, timing="instant") as cas:  # the upstream is stopped
        assert asyncio.run(sdk(base=base)) == live
    assert len(cas.plays) == 1 and not cas.misses
    replay = CliReplay(str(path), "--timing", "instant")
    try:
        got = asyncio.run(sdk(base=replay.url.replace("http://", "ws://") + "/v1"))
    finally:
        code, err = replay.stop()
    assert code == 0, err
    assert got == live


def test_a_refused_handshake_is_recorded_as_its_http_answer(tmp_path: Path) -> None:
    path = tmp_path / "refused.msgpack"

    def refuse(conn: Any, request: Any) -> Any:
        return conn.respond(401, "no valid key\n")

    with RealtimeUpstream(handler=chat, process_request=refuse) as up:
        with (
            ssevcr.use_cassette(path, record="once"),
            pytest.raises(websockets.InvalidStatus) as live,
        ):
            asyncio.run(chat_client(up.ws_url))
        url = up.ws_url
    (inter,) = ssevcr.load(path).interactions
    assert inter.websocket is None and inter.response.status == 401
    assert inter.response.body == b"no valid key\n"
    assert inter.request.header("authorization") == "REDACTED"
    with ssevcr.use_cassette(path), pytest.raises(websockets.InvalidStatus) as replayed:
        asyncio.run(chat_client(url))  # the upstream is stopped: the cassette answers
    assert replayed.value.response.status_code == live.value.response.status_code == 401
    assert replayed.value.response.body == b"no valid key\n"


RECORDING = """
import asyncio, websockets, pytest

URL = {url!r}


async def talk():
    async with websockets.connect(URL + "/chat?v=1") as conn:
        got = [await conn.recv()]
        await conn.send('{{"ask": 1}}')
        got += [await conn.recv(), await conn.recv()]
        await conn.send(b"\\xde\\xad\\xbe\\xef")
        got.append(await conn.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await conn.recv()
        return got


@pytest.mark.ssevcr("chat", timing="instant")
def test_chat():
    assert asyncio.run(talk()) == {server!r}
"""


def test_the_marker_records_then_replays_in_process(pytester: pytest.Pytester) -> None:
    with RealtimeUpstream(handler=chat) as up:
        pytester.makepyfile(test_chat=RECORDING.format(url=up.ws_url, server=SERVER))
        first = pytester.runpytest("-p", "no:cacheprovider", "--ssevcr-record=once")
        first.assert_outcomes(passed=1)
        assert len(up.conversations) == 1
    (cassette,) = (pytester.path / "cassettes").rglob("*.msgpack")
    (inter,) = ssevcr.load(cassette).interactions
    assert inter.websocket is not None
    assert [(m.from_client, m.binary, m.data) for m in inter.websocket.messages] == CONVERSATION
    again = pytester.runpytest("-p", "no:cacheprovider")  # the upstream is stopped
    again.assert_outcomes(passed=1)
