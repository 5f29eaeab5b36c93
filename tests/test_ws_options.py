"""WebSocket plays beyond the conversation itself, over real sockets with the ``websockets``
library: the delivery journal of each play (``ssevcr replay --journal``: messages out and in,
which matched, the close), client-message matching (``--ws-match``, the pytest marker's
``ws_match``) with its near-miss explanation, and ``ssevcr audit`` of messages and handshakes."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import websockets
from realtime_upstream import response_events, session
from stream_helpers import SSEVCR, CliReplay
from websockets.exceptions import ConnectionClosed

from ssevcr import _store
from ssevcr._cassette import Cassette, Interaction, Request, Response, WebSocket, WsClose, WsMessage

URL = "https://api.openai.com/v1/realtime?model=gpt-realtime"
UPDATE = {"type": "session.update", "session": {"type": "realtime", "voice": "alloy"}}


def realtime_cassette(*, url: str = URL, update: dict[str, Any] = UPDATE) -> Cassette:
    """A Realtime conversation as ``ssevcr record`` keeps one: session.created, the client's
    session.update, session.updated, response.create and its answer, the client's close."""
    out = [{"type": "session.created", "event_id": "event_1", "session": session()}]
    messages = [WsMessage(0.001, False, json.dumps(out[0]).encode())]
    messages.append(WsMessage(0.010, True, json.dumps(update, ensure_ascii=False).encode()))
    messages.append(
        WsMessage(
            0.012, False, json.dumps({"type": "session.updated", "session": session()}).encode()
        )
    )
    messages.append(WsMessage(0.020, True, b'{"type":"response.create"}'))
    at = 0.030
    for event in response_events():
        messages.append(WsMessage(at, False, json.dumps(event).encode()))
        at += 0.002
    request = Request(
        "GET",
        url,
        (("upgrade", "websocket"), ("connection", "Upgrade"), ("authorization", "REDACTED")),
    )
    response = Response(
        101, "Switching Protocols", headers=(("upgrade", "websocket"),), headers_at=0.05
    )
    ws = WebSocket(tuple(messages), WsClose(at + 0.01, 1000, "", "client"))
    return Cassette((Interaction(request, response, websocket=ws),))


SERVER_MESSAGES = sum(
    not m.from_client for m in realtime_cassette().interactions[0].websocket.messages
)  # type: ignore[union-attr]


def save(tmp: Path, cassette: Cassette, name: str = "realtime") -> Path:
    path = tmp / f"{name}.msgpack"
    _store.save(cassette, path)
    return path


async def client(
    base: str,
    *,
    update: dict[str, Any] = UPDATE,
    close_early: bool = False,
    query: str = "",
    audio: bytes = b"",
) -> tuple[list[dict[str, Any]], Any]:
    """Talk as the recording did (or close after session.updated): the messages received and
    the close the client saw (``ConnectionClosed``) or None."""
    url = base.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime" + query
    got: list[dict[str, Any]] = []
    try:
        async with websockets.connect(url, open_timeout=10) as conn:
            got.append(json.loads(await asyncio.wait_for(conn.recv(), 10)))
            await conn.send(json.dumps(update))
            if audio:
                await conn.send(audio)
            got.append(json.loads(await asyncio.wait_for(conn.recv(), 10)))
            if close_early:
                return got, None
            await conn.send('{"type":"response.create"}')
            while got[-1]["type"] != "response.done":
                got.append(json.loads(await asyncio.wait_for(conn.recv(), 10)))
    except ConnectionClosed as e:
        return got, e
    return got, None


def journal_lines(path: Path, n: int, timeout: float = 15) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"journal has {len(lines)} lines, expected {n}")


# ---------------------------------------------------------------------------------------------
# the journal


def test_the_journal_of_websocket_plays(tmp_path: Path) -> None:
    cassette = save(tmp_path, realtime_cassette())
    journal = tmp_path / "journal.jsonl"
    replay = CliReplay(str(cassette), "--journal", str(journal), "--timing", "instant")
    try:
        got, closed = asyncio.run(client(replay.url))  # the whole conversation
        assert closed is None and len(got) == SERVER_MESSAGES
        (whole,) = journal_lines(journal, 1)
        got, closed = asyncio.run(client(replay.url, close_early=True))  # leaves early
        early = journal_lines(journal, 2)[1]
        other = {**UPDATE, "type": "session.create"}
        got, closed = asyncio.run(client(replay.url, update=other))  # says something else
        miss = journal_lines(journal, 3)[2]
    finally:
        code, err = replay.stop()
    assert code == 0, err
    # taken to the end: every message out, both in (matched), the client's close
    assert whole["state"] == "completed" and whole["status"] == 101
    ws = whole["websocket"]
    assert (ws["sent"], ws["planned"], ws["received"], ws["matched"], ws["expected"]) == (
        SERVER_MESSAGES,
        SERVER_MESSAGES,
        2,
        2,
        2,
    )
    directions = [m[1] for m in ws["messages"]]
    assert directions == ["out", "in", "out", "in", *["out"] * (SERVER_MESSAGES - 2)]
    assert [m[2] for m in ws["messages"] if m[1] == "out"] == list(range(1, SERVER_MESSAGES + 1))
    assert all(m[5] is True for m in ws["messages"] if m[1] == "in")
    times = [m[0] for m in ws["messages"]]
    assert times == sorted(times) and whole["headers_sent_at"] <= times[0]
    assert ws["close"]["by"] == "client" and ws["close"]["code"] == 1000
    assert ws["close"]["at"] >= times[-1]
    assert whole["events"] == SERVER_MESSAGES and whole["request_headers"]
    # left after session.updated: two messages out, one in, the client's close
    assert early["state"] == "left" and early["how"] == "fin"
    assert early["websocket"]["sent"] == 2 and early["websocket"]["received"] == 1
    assert early["websocket"]["close"]["by"] == "client"
    assert early["left_after_event"] == 2
    # a message that differs: not matched, the server's 1008 close
    assert miss["state"] == "left"
    in_miss = [m for m in miss["websocket"]["messages"] if m[1] == "in"]
    assert [m[5] for m in in_miss] == [False]
    assert miss["websocket"]["close"]["by"] == "server"
    assert miss["websocket"]["close"]["code"] == 1008


@pytest.mark.parametrize(
    ("fault", "by", "code", "sent"),
    [
        ("close:after=4,code=4000,reason=bye", "server", 4000, 4),
        ("close:after=4,code=1006", "server", None, 4),  # no close frame
        ("error:after=4", "server", 1011, 5),  # the error event, then 1011
    ],
)
def test_the_journal_says_who_closed_and_how(
    tmp_path: Path, fault: str, by: str, code: int | None, sent: int
) -> None:
    cassette = save(tmp_path, realtime_cassette())
    journal = tmp_path / "journal.jsonl"
    replay = CliReplay(str(cassette), "--journal", str(journal), "--fault", fault)
    try:
        _, closed = asyncio.run(client(replay.url))
        (line,) = journal_lines(journal, 1)
    finally:
        replay.stop()
    assert closed is not None
    ws = line["websocket"]
    assert (ws["close"]["by"], ws["close"]["code"], ws["sent"]) == (by, code, sent), ws
    assert line["state"] == "completed" and line["fired"] == [fault]
    assert line["end"] == ("abort" if code is None else "close")


def sync_client(base: str, *, close_early: bool = False) -> list[dict[str, Any]]:
    """``client`` with the ``websockets`` threading client: the messages received."""
    from websockets.sync.client import connect

    got: list[dict[str, Any]] = []
    with connect(base + "/v1/realtime?model=gpt-realtime", open_timeout=10) as conn:
        got.append(json.loads(conn.recv(10)))
        conn.send(json.dumps(UPDATE))
        got.append(json.loads(conn.recv(10)))
        if not close_early:
            conn.send('{"type":"response.create"}')
            while got[-1]["type"] != "response.done":
                got.append(json.loads(conn.recv(10)))
    return got


LATE_CLOSE = 0.5  # seconds from the last message to the recorded close (the client leaves first)


def late_close(tmp_path: Path, by: str) -> Path:
    """The Realtime cassette with its close (``by`` client or server) ``LATE_CLOSE`` later."""
    inter = realtime_cassette().interactions[0]
    assert inter.websocket is not None and inter.websocket.close is not None
    close = inter.websocket.close
    late = replace(close, at=close.at + LATE_CLOSE, by=by)
    ws = replace(inter.websocket, close=late)
    return save(tmp_path, Cassette((replace(inter, websocket=ws),)))


@pytest.mark.parametrize("by", ["client", "server"])
@pytest.mark.parametrize("adapter", ["replay", "control", "in process", "in process, sync"])
def test_a_conversation_read_to_the_end_is_completed(tmp_path: Path, adapter: str, by: str) -> None:
    """A client that read every server message and left before the recorded close came (the
    openai SDK stops at ``response.done``) took the whole conversation: ``completed``; one that
    leaves after ``session.updated`` is ``left`` (fin), in every adapter, at recorded timing."""
    cassette = late_close(tmp_path, by)
    plays: list[dict[str, Any]] = []
    if adapter.startswith("in process"):
        import ssevcr

        base = "wss://api.openai.com"  # (a replay server of the cassette answers it)
        with ssevcr.use_cassette(cassette, allow_repeats=True) as cas:
            if adapter == "in process":
                whole, _ = asyncio.run(client(base))
                early, _ = asyncio.run(client(base, close_early=True))
            else:
                whole, early = sync_client(base), sync_client(base, close_early=True)
            deadline = time.monotonic() + 10
            while any(d.state == "open" for d in cas.journal) and time.monotonic() < deadline:
                time.sleep(0.02)
            plays = [d.to_json() for d in cas.journal]
    else:
        journal = tmp_path / "journal.jsonl"
        args = ["--control"] if adapter == "control" else [str(cassette), "--journal", str(journal)]
        replay = CliReplay(*args)
        try:
            if adapter == "control":
                import ssevcr

                control = ssevcr.ControlClient.from_ready_line(replay.ready)
                with control.session([str(cassette)]) as session:
                    whole, _ = asyncio.run(client(session.base_url))
                    early, _ = asyncio.run(client(session.base_url, close_early=True))
                    deadline = time.monotonic() + 10
                    while len(plays) < 2 and time.monotonic() < deadline:
                        plays = [p for p in session.journal() if p["state"] != "open"]
                        time.sleep(0.02)
            else:
                whole, _ = asyncio.run(client(replay.url))
                early, _ = asyncio.run(client(replay.url, close_early=True))
                plays = journal_lines(journal, 2)
        finally:
            code, err = replay.stop()
        assert code == 0, err
    assert len(whole) == SERVER_MESSAGES and len(early) == 2
    first, second = plays
    assert first["state"] == "completed" and first["how"] is None, first
    assert first["websocket"]["sent"] == first["websocket"]["planned"] == SERVER_MESSAGES
    assert first["websocket"]["close"]["by"] == "client"  # (it closed before the recorded close)
    assert second["state"] == "left" and second["how"] == "fin", second
    assert second["left_after_event"] == 2


@pytest.mark.parametrize(
    ("fault", "read", "state"),
    [
        ("", SERVER_MESSAGES, "completed"),  # every message, then the TCP connection dropped
        (f"stall:before={SERVER_MESSAGES},for=forever", SERVER_MESSAGES - 1, "left"),  # no end
    ],
)
def test_a_client_that_drops_the_connection_at_the_end(
    tmp_path: Path, fault: str, read: int, state: str
) -> None:
    """A client that drops its TCP connection (a FIN, no close frame) once it has nothing more
    to read: completed after the last message; left when the plan hangs (its end never comes,
    however much was read)."""
    from websockets.sync.client import connect

    journal = tmp_path / "journal.jsonl"
    faults = ["--fault", fault] if fault else []
    replay = CliReplay(str(late_close(tmp_path, "server")), "--journal", str(journal), *faults)
    try:
        base = replay.url.replace("http://", "ws://")
        with connect(base + "/v1/realtime?model=gpt-realtime", open_timeout=10) as conn:
            got = [conn.recv(10)]
            conn.send(json.dumps(UPDATE))
            got.append(conn.recv(10))
            conn.send('{"type":"response.create"}')
            while json.loads(got[-1])["type"] != "response.done":
                try:
                    got.append(conn.recv(0.5 if fault else 10))
                except TimeoutError:
                    break
            conn.close_socket()  # (shutdown and close: a FIN, no close frame)
            conn.recv_events_thread.join(10)
        (line,) = journal_lines(journal, 1)
    finally:
        code, err = replay.stop()
    assert code == 0, err
    assert len(got) == read
    assert line["state"] == state, line
    assert line["websocket"]["sent"] == read
    assert line["websocket"]["close"]["by"] == "client"
    assert line["websocket"]["close"]["code"] is None  # (no close frame)
    if state == "completed":
        assert line["how"] is None and line["end"] == "abort"
    else:
        assert line["how"] == "fin" and line["left_after_event"] == read


def big_message(tmp_path: Path) -> Path:
    """session.created, then a 16 MiB message (past the ``websockets`` client's ``max_size``,
    and past what socket buffers hold), then the server's close ``LATE_CLOSE`` later."""
    big = b'{"type":"response.output_audio.delta","delta":"' + b"A" * (16 << 20) + b'"}'
    request = Request("GET", URL, (("upgrade", "websocket"), ("connection", "Upgrade")))
    response = Response(101, "Switching Protocols", headers=(("upgrade", "websocket"),))
    messages = (WsMessage(0.001, False, b'{"type":"session.created"}'), WsMessage(0.01, False, big))
    ws = WebSocket(messages, WsClose(0.01 + LATE_CLOSE, 1000, "", "server"))
    return save(tmp_path, Cassette((Interaction(request, response, websocket=ws),)))


def test_a_client_that_refuses_the_last_message_is_left(tmp_path: Path) -> None:
    """Every message handed to the transport is not every message taken: the ``websockets``
    client refuses a 16 MiB message past its ``max_size`` (its close 1009) with most of it still
    in the server's buffers, so the play is left, not completed."""
    from websockets.sync.client import connect

    journal = tmp_path / "journal.jsonl"
    replay = CliReplay(str(big_message(tmp_path)), "--journal", str(journal))
    try:
        base = replay.url.replace("http://", "ws://")
        with connect(base + "/v1/realtime?model=gpt-realtime", open_timeout=10) as conn:
            assert json.loads(conn.recv(10))["type"] == "session.created"
            with pytest.raises(ConnectionClosed) as refused:
                conn.recv(10)
        (line,) = journal_lines(journal, 1)
    finally:
        code, err = replay.stop()
    assert code == 0, err
    assert refused.value.sent is not None and refused.value.sent.code == 1009
    assert line["websocket"]["sent"] == 2  # (handed to the transport)
    assert line["websocket"]["close"]["by"] == "client"
    assert line["websocket"]["close"]["code"] == 1009
    assert line["state"] == "left" and line["how"] == "fin", line


def test_a_client_that_stops_reading_then_leaves_is_left(tmp_path: Path) -> None:
    """Messages the server's transport or kernel still holds were not taken: a client (the
    ``websockets`` sans-IO protocol on a socket with a small receive buffer) reads the first
    message, stops reading while the 16 MiB second one is sent, and ends its side (a FIN, no
    close frame): left, though both messages were handed to the transport."""
    from websockets.client import ClientProtocol
    from websockets.frames import Frame
    from websockets.uri import parse_uri

    journal = tmp_path / "journal.jsonl"
    replay = CliReplay(str(big_message(tmp_path)), "--journal", str(journal))
    try:
        protocol = ClientProtocol(
            parse_uri(replay.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime")
        )
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", int(replay.url.rsplit(":", 1)[1])))
            protocol.send_request(protocol.connect())
            sock.sendall(b"".join(protocol.data_to_send()))
            frames: list[Frame] = []
            while not frames:
                protocol.receive_data(sock.recv(4096))
                frames += [e for e in protocol.events_received() if isinstance(e, Frame)]
            assert json.loads(frames[0].data)["type"] == "session.created"
            time.sleep(0.3)  # (the second message is written meanwhile, and not read)
            sock.shutdown(socket.SHUT_WR)
            (line,) = journal_lines(journal, 1)
    finally:
        code, err = replay.stop()
    assert code == 0, err
    assert line["websocket"]["sent"] == 2  # (handed to the transport)
    close = line["websocket"]["close"]
    assert (close["by"], close["code"]) == ("client", None)  # (no close frame)
    assert line["state"] == "left" and line["how"] == "fin", line


# ---------------------------------------------------------------------------------------------
# client-message matching


@pytest.mark.parametrize(
    ("ws_match", "said", "problem"),
    [
        ("type", {**UPDATE, "session": {"voice": "verse"}}, None),  # the type is what counts
        (
            "json",
            {**UPDATE, "session": {"type": "realtime", "voice": "verse"}},
            'the JSON differs at $.session.voice: recorded "alloy", got "verse"',
        ),
        (
            "json",
            {"session": {"voice": "alloy", "type": "realtime"}, "type": "session.update"},
            None,
        ),
        (
            "exact",
            {"session": {"voice": "alloy", "type": "realtime"}, "type": "session.update"},
            "the bytes differ from byte 2",
        ),
    ],
)
def test_replay_ws_match(
    tmp_path: Path, ws_match: str, said: dict[str, Any], problem: str | None
) -> None:
    cassette = save(tmp_path, realtime_cassette())
    replay = CliReplay(str(cassette), "--ws-match", ws_match, "--timing", "instant")
    try:
        got, closed = asyncio.run(client(replay.url, update=said))
    finally:
        code, err = replay.stop()
    assert code == 0, err
    if problem is None:
        assert closed is None and got[-1]["type"] == "response.done"
        assert "0 misses" in err, err
        return
    assert got[-1]["type"] == "error" and closed is not None and closed.rcvd.code == 1008
    message = got[-1]["error"]["message"]
    assert "client message 1 differs from the recording" in message and problem in message
    assert "1 miss" in err and problem in err, err


def test_replay_ws_match_refuses_an_unknown_value(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ssevcr.cli import main

    cassette = save(tmp_path, realtime_cassette())
    result = CliRunner().invoke(main, ["replay", str(cassette), "--ws-match", "fuzzy"])
    assert (
        result.exit_code == 2 and "'fuzzy' is not one of 'type', 'json', 'exact'" in result.output
    )


PYTEST_FILE = """
import asyncio, json, pytest, websockets

UPDATE = {update!r}


async def talk(url, update):
    url = url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    async with websockets.connect(url) as conn:
        await conn.recv()
        await conn.send(json.dumps(update))
        return json.loads(await conn.recv())


@pytest.mark.ssevcr("realtime", ws_match="json", timing="instant")
def test_same_json(ssevcr_server):
    update = {{"session": UPDATE["session"], "type": UPDATE["type"]}}  # other key order
    assert asyncio.run(talk(ssevcr_server.url, update))["type"] == "session.updated"


@pytest.mark.ssevcr("realtime", ws_match="json", timing="instant")
def test_other_json(ssevcr_server):
    update = {{**UPDATE, "session": {{**UPDATE["session"], "voice": "verse"}}}}
    assert asyncio.run(talk(ssevcr_server.url, update))["type"] == "session.updated"


@pytest.mark.ssevcr("realtime", ws_match="bogus")
def test_bad_value(ssevcr_server):
    pass
"""


def test_the_marker_takes_ws_match(pytester: pytest.Pytester) -> None:
    folder = pytester.path / "cassettes" / "test_ws"
    folder.mkdir(parents=True)
    save(folder, realtime_cassette())
    pytester.makepyfile(test_ws=PYTEST_FILE.format(update=UPDATE))
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    out = result.stdout.str()
    result.assert_outcomes(passed=1, failed=1, errors=1)
    assert "PASSED test_ws.py::test_same_json" in out
    assert 'the JSON differs at $.session.voice: recorded "alloy", got "verse"' in out, out
    assert "unknown WebSocket message matching 'bogus'; valid: type, json, exact" in out, out


# ---------------------------------------------------------------------------------------------
# audit


PROJECT_KEY = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" * 2
EPHEMERAL = "ek_68a3c0f1d2e4b5a6978899aabbccddee"
PLANTED_UPDATE = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "client_secret": {"value": EPHEMERAL},
        # a key by its shape, next to characters a byte-level cut could break
        "instructions": f"Réponds en français; use {PROJECT_KEY}; merci",
        # a password=VALUE whose pattern takes the backslash of the escaped quote after it
        "note": 'login with password=Hunter2Secret99"x"',
    },
}


def planted() -> Cassette:
    (inter,) = realtime_cassette(
        url=f"{URL}&api_key={PROJECT_KEY}", update=PLANTED_UPDATE
    ).interactions
    assert inter.websocket is not None
    audio = WsMessage(
        0.011, True, b"\x00\xff\x10" + PROJECT_KEY.encode() + b"\x01\x02", binary=True
    )
    messages = list(inter.websocket.messages)
    messages.insert(2, audio)
    return Cassette((replace(inter, websocket=replace(inter.websocket, messages=tuple(messages))),))


def test_audit_finds_keys_in_messages_and_the_handshake(tmp_path: Path) -> None:
    from ssevcr import _audit

    findings = _audit.scan(planted())
    where = {(f.location, f.kind) for f in findings}
    assert ("request URL query 'api_key'", "OpenAI API key") in where, where
    update = "WebSocket client message 2 (session.update)"
    assert (update, "OpenAI API key") in where, where
    assert (update, "credential in 'client_secret'") in where, where
    assert any(loc == update and "password" in kind for loc, kind in where), where
    assert ("WebSocket client message 3", "OpenAI API key") in where, where  # binary
    assert not any(PROJECT_KEY in str(f) or EPHEMERAL in str(f) for f in findings)  # masked


def test_audit_fix_redacts_messages_byte_safely(tmp_path: Path) -> None:
    path = save(tmp_path, planted())
    before = planted().interactions[0].websocket
    assert before is not None
    found = subprocess.run([SSEVCR, "audit", str(path)], capture_output=True, text=True)
    assert found.returncode == 1 and "WebSocket client message 2 (session.update)" in found.stdout
    fixed = subprocess.run([SSEVCR, "audit", "--fix", str(path)], capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "redacted" in fixed.stderr and "still there" not in fixed.stdout
    data = path.read_bytes()
    for secret in (PROJECT_KEY, EPHEMERAL, "Hunter2Secret99"):
        assert secret.encode() not in data
    (inter,) = _store.load(path).interactions
    ws = inter.websocket
    assert ws is not None and len(ws.messages) == len(before.messages)
    assert inter.request.url.endswith("&api_key=REDACTED")
    for old, new in zip(before.messages, ws.messages, strict=True):
        assert (old.at, old.from_client, old.binary) == (new.at, new.from_client, new.binary)
        if new.binary:
            assert len(new.data) == len(old.data) and new.data[:3] == old.data[:3]
            continue
        new.data.decode("utf-8")  # still UTF-8
        if old.data == new.data:
            continue
        value = json.loads(new.data)  # still JSON, and only the secrets changed
        session = value["session"]
        assert session["client_secret"] == {"value": "REDACTED"}
        assert session["instructions"] == "Réponds en français; use REDACTED; merci"
        assert session["note"] == "REDACTED"  # (the whole string: a cut would break the escape)
        assert value == {
            **PLANTED_UPDATE,
            "session": {**session, "type": "realtime"},
        } and list(session) == list(PLANTED_UPDATE["session"])  # type: ignore[call-overload]
    again = subprocess.run([SSEVCR, "audit", str(path)], capture_output=True, text=True)
    assert again.returncode == 0, again.stdout
    # the redacted conversation still replays (the type matches)
    replay = CliReplay(str(path), "--timing", "instant")
    try:
        live = f"&api_key={PROJECT_KEY}"  # the client's own key: REDACTED matches it
        got, closed = asyncio.run(
            client(replay.url, update=PLANTED_UPDATE, query=live, audio=b"\x00")
        )
    finally:
        replay.stop()
    assert closed is None and got[-1]["type"] == "response.done"


def test_a_control_session_takes_ws_match_and_defaults_to_the_servers(tmp_path: Path) -> None:
    import httpx

    import ssevcr

    cassette = str(save(tmp_path, realtime_cassette()))
    other_voice = {**UPDATE, "session": {"type": "realtime", "voice": "verse"}}
    replay = CliReplay("--control", "--ws-match", "json", "--timing", "instant")
    try:
        control = ssevcr.ControlClient.from_ready_line(replay.ready)
        with control.session([cassette]) as inherited:  # the server's --ws-match json
            assert inherited.created["ws_match"] == "json"
            got, closed = asyncio.run(client(inherited.base_url, update=other_voice))
            assert got[-1]["type"] == "error" and closed is not None and closed.rcvd.code == 1008
            assert 'recorded "alloy", got "verse"' in got[-1]["error"]["message"]
            (miss,) = inherited.misses()
            assert "client message 1 differs from the recording" in miss["message"]
        with control.session([cassette], ws_match="type") as by_type:  # its own
            assert by_type.info()["ws_match"] == "type"
            got, closed = asyncio.run(client(by_type.base_url, update=other_voice))
            assert closed is None and got[-1]["type"] == "response.done"
            assert by_type.misses() == []
            (play,) = by_type.journal()
            assert play["session"] == by_type.id
            assert (play["websocket"]["received"], play["websocket"]["matched"]) == (2, 2), play
        for bad in ('"fuzzy"', "1", "null"):
            r = httpx.post(
                f"{control.url}/__ssevcr/sessions",
                content=f'{{"cassettes": [{json.dumps(cassette)}], "ws_match": {bad}}}',
                headers={"authorization": f"Bearer {control.token}"},
            )
            assert r.status_code == 400, r.text
            message = r.json()["error"]["message"]
            assert "ws_match must be one of type, json, exact" in message, message
            assert "Traceback" not in r.text
        with pytest.raises(ssevcr.ControlError, match="ws_match must be one of") as refused:
            control.create_session([cassette], ws_match="bytes")
        assert refused.value.status == 400 and control.sessions() == []
    finally:
        code, err = replay.stop()
    assert code == 0, err
