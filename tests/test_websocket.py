"""A WebSocket conversation end to end: an OpenAI-Realtime-shaped upstream (``websockets`` on
127.0.0.1, tests/realtime_upstream.py) talked to by the official openai SDK's Realtime client
through the real ``ssevcr record`` (mitmdump, a subprocess); then, the upstream stopped, the
replay server plays it back to the same client: the same message bytes, the recorded gaps
(measured), each fault as the client's own exception or close code, and a client that says
something else gets the near-miss explanation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import websockets
from realtime_upstream import GAP, WORDS, RealtimeUpstream
from stream_helpers import show, sweep_all_ok
from test_record import MITMDUMP, RecordCLI
from websockets.exceptions import ConnectionClosedError

from ssevcr import _store
from ssevcr._faults import parse_faults
from ssevcr._format import export_json, import_json
from ssevcr._player import Player
from ssevcr._server_thread import ServerThread
from ssevcr._timing import parse_timing

pytestmark = pytest.mark.skipif(not MITMDUMP, reason="no mitmdump (run ./bootstrap)")

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-live-do-not-record-0123456789abcdef"
DELTAS = len(WORDS)


async def talk(url: str, *, first: dict[str, Any] | None = None, wait: float = 10.0) -> Any:
    """The client under test: connect, read session.created, update the session, ask for a
    response and read until response.done. Returns (events, raw messages, arrival times)."""
    client = openai.AsyncOpenAI(api_key=KEY, base_url=url + "/v1")
    events: list[Any] = []
    raws: list[bytes] = []
    times: list[float] = []

    async def recv(conn: Any) -> Any:
        raw = await asyncio.wait_for(conn.recv_bytes(), wait)
        times.append(time.monotonic())
        raws.append(raw)
        event = conn.parse_event(raw)
        events.append(event)
        return event

    async with client.realtime.connect(model="gpt-realtime") as conn:
        await recv(conn)
        if first is not None:
            await conn.send(first)
        else:
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await recv(conn)
        await conn.response.create()
        while (await recv(conn)).type != "response.done":
            pass
    return events, raws, times


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any, Any]]:
    """The cassette recorded through ``ssevcr record --upstream``, what the upstream logged,
    and what the SDK read while recording."""
    tmp = tmp_path_factory.mktemp("realtime")
    cassette = tmp / "realtime.msgpack"
    with RealtimeUpstream() as up:
        rec = RecordCLI(cassette, "--upstream", up.url, confdir=tmp / "conf")
        try:
            live = run(talk(rec.url))
            deadline = time.monotonic() + 20
            while not (cassette.exists() and _store.load(cassette).interactions):
                assert time.monotonic() < deadline, "".join(rec.stderr)
                time.sleep(0.05)
        finally:
            assert rec.stop() == 0
        (log,) = up.conversations
        handshake = up.handshakes[0]
    assert handshake["authorization"] == f"Bearer {KEY}"  # the upstream got the real key
    yield cassette, log, live


def serve(cassette: Path, *faults: str, timing: str = "original", log: Any = None) -> ServerThread:
    player = Player(
        [("realtime", _store.load(cassette))],
        timing=parse_timing(timing),
        faults=parse_faults(list(faults)),
        repeat=True,
    )
    return ServerThread(player, log=log or (lambda _line: None)).start()


def test_the_recording_holds_the_conversation(recorded: tuple[Path, Any, Any]) -> None:
    cassette, log, _ = recorded
    (inter,) = _store.load(cassette).interactions
    ws = inter.websocket
    assert ws is not None and inter.response.status == 101
    # every message, in order, in its direction, with the upstream's exact bytes
    got = [("in" if m.from_client else "out", m.data.decode()) for m in ws.messages]
    assert got == [(d, text) for _, d, text in log]
    assert not any(m.binary for m in ws.messages)
    assert ws.close is not None and (ws.close.code, ws.close.by) == (1000, "client")
    # the gaps as the upstream sent them (its own clock), measured through the proxy
    sent = [t for t, d, _ in log if d == "out"]
    got_at = [m.at for m in ws.messages if not m.from_client]
    gaps = sorted(
        abs((b - a) - (d - c))
        for a, b, c, d in zip(sent, sent[1:], got_at, got_at[1:], strict=False)
    )
    assert gaps[len(gaps) // 2] < 0.01, gaps
    # the credential never reached the disk: the handshake's authorization is redacted
    assert inter.request.header("authorization") == "REDACTED"
    assert KEY.encode() not in cassette.read_bytes()
    # the JSON twin is lossless; show lists the conversation
    assert import_json(export_json(_store.load(cassette))) == _store.load(cassette)
    shown = show(cassette)
    assert "ws" in shown and "16 msgs" in shown, shown


def test_replay_to_the_openai_sdk_is_byte_exact_with_the_recorded_gaps(
    recorded: tuple[Path, Any, Any],
) -> None:
    cassette, _, (live_events, live_raws, _) = recorded
    ws = _store.load(cassette).interactions[0].websocket
    assert ws is not None
    with serve(cassette) as server:  # the upstream is stopped: only the cassette answers
        events, raws, times = run(talk(server.url))
    assert raws == [m.data for m in ws.messages if not m.from_client] == live_raws
    assert [e.type for e in events] == [e.type for e in live_events]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "".join(WORDS)
    # gaps between the server's messages of one turn, replayed vs recorded
    recorded_at = [m.at for m in ws.messages if not m.from_client][2:]  # the response's turn
    replayed = times[2:]
    errors = sorted(
        abs((b - a) - (d - c))
        for a, b, c, d in zip(replayed, replayed[1:], recorded_at, recorded_at[1:], strict=False)
    )
    p50, worst = errors[len(errors) // 2], errors[-1]
    print(f"gap error p50 {p50 * 1e3:.2f} ms, max {worst * 1e3:.2f} ms")
    assert p50 < 0.015 and worst < 0.150, errors  # a loaded 2-core machine: bench/ is tight
    assert replayed[-1] - replayed[0] > 0.6 * GAP * DELTAS  # the timing, not a burst


def test_instant_replay_is_a_burst(recorded: tuple[Path, Any, Any]) -> None:
    cassette, _, (live_events, _, _) = recorded
    with serve(cassette, timing="instant") as server:
        events, _, times = run(talk(server.url))
    assert [e.type for e in events] == [e.type for e in live_events]
    assert times[-1] - times[2] < 0.5 * GAP * DELTAS


def close_code(exc: BaseException) -> int | None:
    assert isinstance(exc, ConnectionClosedError), repr(exc)
    return None if exc.rcvd is None else exc.rcvd.code


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("close:after=5,code=4000", lambda e, _: close_code(e) == 4000),
        ("close:after=5,code=1011,reason=overloaded", lambda e, _: close_code(e) == 1011),
        ("close:after=5,code=1006", lambda e, _: close_code(e) is None),  # 1006: no close frame
        ("truncate:after=5,end=reset", lambda e, _: close_code(e) is None),
        ("stall:before=5,for=forever", lambda e, _: isinstance(e, TimeoutError)),
        ("drop:event=last", lambda e, _: isinstance(e, TimeoutError)),  # no response.done
        ("corrupt:event=5,how=json", lambda e, _: isinstance(e, json.JSONDecodeError)),
        (
            "status:429",
            lambda e, _: (
                isinstance(e, websockets.exceptions.InvalidStatus) and e.response.status_code == 429
            ),
        ),
        (
            "error:after=5",
            # server messages count from session.created: the 5th is the second delta
            lambda e, ev: (
                close_code(e) == 1011
                and [x.type for x in ev]
                == [*["response.created"], *["response.output_text.delta"] * 2, "error"]
            ),
        ),
    ],
)
def test_each_lossy_fault_is_the_clients_own_failure(
    recorded: tuple[Path, Any, Any], fault: str, check: Any
) -> None:
    cassette, _, _ = recorded
    seen: list[Any] = []

    async def client(url: str) -> None:
        conn_events: list[Any] = []
        client = openai.AsyncOpenAI(api_key=KEY, base_url=url + "/v1")
        try:
            async with client.realtime.connect(model="gpt-realtime") as conn:
                await conn.recv()
                await conn.session.update(session={"type": "realtime"})
                await conn.recv()
                await conn.response.create()
                async for event in _with_timeout(conn, 1.5):
                    conn_events.append(event)
                    if event.type == "response.done":
                        break
        finally:
            seen.append(conn_events)

    with serve(cassette, fault) as server, pytest.raises(Exception) as info:  # checked below
        run(client(server.url))
    assert check(info.value, seen[0]), (info.value, [e.type for e in seen[0]])


async def _with_timeout(conn: Any, timeout: float) -> Any:
    while True:
        yield await asyncio.wait_for(conn.recv(), timeout)


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("rechunk:size=7", lambda events, times: True),  # fragmented: the same messages
        (
            "stall:before=5,for=300ms",
            lambda events, times: max(map(_gap, times[2:], times[3:])) > 0.25,
        ),
        (
            "duplicate:event=5",
            lambda events, times: (
                sum(e.type == "response.output_text.delta" for e in events) == DELTAS + 1
            ),
        ),
    ],
)
def test_lossless_and_visible_faults(
    recorded: tuple[Path, Any, Any], fault: str, check: Any
) -> None:
    cassette, _, (_, live_raws, _) = recorded
    with serve(cassette, fault) as server:
        events, raws, times = run(talk(server.url))
    if not fault.startswith("duplicate"):
        assert raws == live_raws
    assert check(events, times), [e.type for e in events]


def _gap(a: float, b: float) -> float:
    return b - a


def test_a_client_that_says_something_else_gets_the_near_miss(
    recorded: tuple[Path, Any, Any],
) -> None:
    cassette, _, _ = recorded
    logged: list[str] = []
    with serve(cassette, log=logged.append) as server:
        player = server.player

        async def client() -> tuple[Any, BaseException]:
            url = server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
            async with websockets.connect(url) as conn:
                await conn.recv()  # session.created
                await conn.send(json.dumps({"type": "conversation.item.create", "item": {}}))
                error = json.loads(await conn.recv())
                with pytest.raises(ConnectionClosedError) as closed:
                    await conn.recv()
                return error, closed.value

        error, closed = run(client())
    assert error["type"] == "error" and error["error"]["code"] == "ssevcr_no_match"
    message = error["error"]["message"]
    assert "client message 1 differs from the recording" in message, message
    assert "expected a message with type 'session.update'" in message, message
    assert "got a message with type 'conversation.item.create'" in message, message
    assert close_code(closed) == 1008
    assert any("differs from the recording" in line for line in logged), logged
    assert player.miss_count == 1 and "differs from the recording" in player.misses[0].message


def test_a_plain_http_request_for_a_websocket_gets_426(recorded: tuple[Path, Any, Any]) -> None:
    import httpx

    cassette, _, _ = recorded
    with serve(cassette) as server:
        r = httpx.get(server.url + "/v1/realtime?model=gpt-realtime")
    assert r.status_code == 426 and "WebSocket" in r.text


def test_sweep_on_the_websocket_cassette(recorded: tuple[Path, Any, Any], tmp_path: Path) -> None:
    cassette, _, _ = recorded
    runs = sweep_all_ok(
        cassette,
        ROOT / "examples" / "sweep" / "realtime_careful.py",
        tmp_path / "sweep.json",
        *["--catalog", "default", "-j", "2", "--timeout", "30s", "--stall", "4s"],
    )
    assert {"drop:event=last", "close:after=7,code=1006", "status:429", "rechunk:size=16"} <= set(
        runs
    )
    assert (
        runs["close:after=7,code=1011"]["lossy"]
        and runs["close:after=7,code=1011"]["exit_code"] == 5
    )
    assert not runs["rechunk:size=16"]["lossy"] and runs["rechunk:size=16"]["exit_code"] == 0


def test_a_client_message_past_max_body_closes_with_1009(recorded: tuple[Path, Any, Any]) -> None:
    cassette, _, _ = recorded
    player = Player([("realtime", _store.load(cassette))], repeat=True)
    with ServerThread(player, log=lambda _line: None, max_body=4096) as server:

        async def client() -> BaseException:
            url = server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
            async with websockets.connect(url, max_size=None) as conn:
                await conn.recv()  # session.created
                await conn.send(json.dumps({"type": "session.update", "pad": "x" * 8192}))
                with pytest.raises(ConnectionClosedError) as closed:
                    await conn.recv()
                return closed.value

        closed = run(client())
    assert close_code(closed) == 1009
