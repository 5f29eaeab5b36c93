"""WebSocket through ssevcr's forward proxies, end to end over real sockets: ``ssevcr record`` as
the client's HTTP proxy records a ``ws://`` conversation (the ``websockets`` library's
``proxy=``) and a ``wss://`` one (the openai SDK's Realtime client, TLS intercepted with
mitmproxy's CA); then, the upstreams stopped, ``ssevcr replay --proxy`` answers both from the
cassette: the same bytes, each frame as the replay server sent it (fragments, close codes, a
connection dropped without a close frame), and the SDK pointed at the real
``wss://api.openai.com`` inside a network namespace without network."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import websockets
import wsproto
import wsproto.events as ev
from realtime_upstream import RealtimeUpstream
from test_record import MITMDUMP, RecordCLI
from test_replay_cli import SSEVCR, Replay, _env
from upstream import make_tls_files

from ssevcr import _store
from ssevcr._cassette import Interaction

pytestmark = pytest.mark.skipif(not MITMDUMP, reason="no mitmdump (run ./bootstrap)")

KEY = "sk-live-do-not-record-0123456789abcdef"
QUERY_KEY = "sk-live-query-do-not-record-9876543210"
PROXY = re.compile(r"proxy (http://127\.0\.0\.1:\d+), CA (\S+?)\)")


async def conversation(recv: Any, send: Any) -> list[str]:
    """Read session.created, update the session, ask for a response, read until response.done:
    the server's messages as received."""
    got = [await asyncio.wait_for(recv(), 10)]
    await send({"type": "session.update", "session": {"type": "realtime"}})
    got.append(await asyncio.wait_for(recv(), 10))
    await send({"type": "response.create"})
    while json.loads(got[-1])["type"] != "response.done":
        got.append(await asyncio.wait_for(recv(), 10))
    return got


async def plain_client(url: str, proxy: str) -> list[str]:
    """The ``websockets`` library through an HTTP proxy (CONNECT), a key in the query."""
    async with websockets.connect(
        f"{url}/v1/realtime?model=gpt-realtime&api_key={QUERY_KEY}", proxy=proxy, open_timeout=10
    ) as conn:
        return await conversation(conn.recv, lambda event: conn.send(json.dumps(event)))


async def sdk_client(url: str, proxy: str, ca: str) -> list[str]:
    """The openai SDK's Realtime client through the proxy, trusting its CA."""
    client = openai.AsyncOpenAI(api_key=KEY, base_url=url + "/v1")
    options: Any = {"proxy": proxy, "ssl": ssl.create_default_context(cafile=ca)}
    async with client.realtime.connect(
        model="gpt-realtime", websocket_connection_options=options
    ) as conn:

        async def recv() -> str:
            return (await conn.recv_bytes()).decode()

        return await conversation(recv, conn.send)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A cassette recorded through ``ssevcr record`` in forward-proxy mode: a ws:// and a wss://
    conversation, with what each upstream logged and what each client read."""
    tmp = tmp_path_factory.mktemp("wsproxy")
    cassette = tmp / "forward.msgpack"
    tls = make_tls_files(tmp / "tls")
    seen: dict[str, Any] = {}
    rec = RecordCLI(cassette, "--insecure-upstream", confdir=tmp / "conf")
    try:
        with RealtimeUpstream() as plain, RealtimeUpstream(tls=tls) as secure:
            seen["ws"] = asyncio.run(plain_client(plain.ws_url, rec.url))
            seen["wss"] = asyncio.run(sdk_client(secure.url, rec.url, rec.ca))
            deadline = time.monotonic() + 20
            while not (cassette.exists() and len(_store.load(cassette).interactions) == 2):
                assert time.monotonic() < deadline, "".join(rec.stderr)
                time.sleep(0.05)
        seen["logs"] = {"ws": plain.conversations[0], "wss": secure.conversations[0]}
        seen["handshakes"] = {"ws": plain.handshakes[0], "wss": secure.handshakes[0]}
    finally:
        assert rec.stop(signal.SIGINT) == 0, rec.stderr
    yield cassette, seen


def by_scheme(cassette: Path) -> dict[str, Interaction]:
    found = {}
    for inter in _store.load(cassette).interactions:
        found["wss" if inter.request.url.startswith("https://") else "ws"] = inter
    return found


def test_forward_recording_of_ws_and_wss(recorded: tuple[Path, dict[str, Any]]) -> None:
    cassette, seen = recorded
    found = by_scheme(cassette)
    assert set(found) == {"ws", "wss"}
    for scheme, inter in found.items():
        ws = inter.websocket
        assert ws is not None and inter.response.status == 101, scheme
        # every message in order, in its direction, with the upstream's exact bytes
        got = [("in" if m.from_client else "out", m.data.decode()) for m in ws.messages]
        assert got == [(d, text) for _, d, text in seen["logs"][scheme]], scheme
        assert [m.data.decode() for m in ws.messages if not m.from_client] == seen[scheme]
        assert ws.close is not None and (ws.close.code, ws.close.by) == (1000, "client")
    # the upstreams got the real credentials; the cassette has none of them
    assert seen["handshakes"]["wss"]["authorization"] == f"Bearer {KEY}"
    assert found["wss"].request.header("authorization") == "REDACTED"
    assert found["ws"].request.url.endswith("/v1/realtime?model=gpt-realtime&api_key=REDACTED")
    data = cassette.read_bytes()
    assert KEY.encode() not in data and QUERY_KEY.encode() not in data


@pytest.fixture
def replay(recorded: tuple[Path, dict[str, Any]], tmp_path: Path, request: Any) -> Iterator[Any]:
    """``ssevcr replay --proxy`` of the forward recording (the upstreams are stopped), with the
    faults of the test's parameter (if any): (proxy URL, CA file, the Replay)."""
    cassette, _ = recorded
    faults = getattr(request, "param", ())
    args = [a for f in faults for a in ("--fault", f)]
    r = Replay(
        str(cassette), "--listen", "127.0.0.1:0", "--proxy", "--confdir", str(tmp_path), *args
    )
    try:
        match = PROXY.search(r.line)
        assert match, r.line
        yield match.group(1), match.group(2), r
    finally:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


def test_replay_proxy_answers_ws_and_wss_from_the_cassette(
    recorded: tuple[Path, dict[str, Any]], replay: tuple[str, str, Replay]
) -> None:
    cassette, seen = recorded
    proxy, ca, r = replay
    found = by_scheme(cassette)
    ws_host = found["ws"].request.url.split("/")[2]
    wss_url = found["wss"].request.url.split("/v1/")[0]
    assert asyncio.run(plain_client(f"ws://{ws_host}", proxy)) == seen["ws"]
    assert asyncio.run(sdk_client(wss_url, proxy, ca)) == seen["wss"]
    assert r.stop() == 0
    assert "2 plays, 0 misses" in r.stderr, r.stderr


# ---------------------------------------------------------------------------------------------
# the frames as the replay server sent them: wsproto by hand over a CONNECT tunnel


def frames_through(proxy: str, target: str, path: str) -> tuple[list[tuple[bytes, bool]], Any]:
    """Talk through the proxy (CONNECT ``target``, then a WebSocket) as the recorded client did
    (closing after response.done): every data frame the client got (payload, whether it ends
    its message), and how it ended: the server's CloseConnection, or None when the connection
    ended without a close frame."""
    host, port = proxy.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    with sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 200"), head
        conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        sock.sendall(conn.send(ev.Request(host=target, target=path)))
        frames: list[tuple[bytes, bool]] = []
        finished = 0
        asks = [{"type": "session.update", "session": {}}, {"type": "response.create"}]
        while True:
            data = sock.recv(65536)
            conn.receive_data(data or None)
            for event in conn.events():
                if isinstance(event, ev.CloseConnection):  # (wsproto's own 1006 at EOF)
                    return frames, event if data else None
                if isinstance(event, ev.TextMessage):
                    frames.append((event.data.encode(), event.message_finished))
                    if not event.message_finished:
                        continue
                    finished += 1
                    if finished <= len(asks):
                        sock.sendall(conn.send(ev.TextMessage(json.dumps(asks[finished - 1]))))
                    elif b'"response.done"' in messages_of(frames)[-1]:  # as the client did
                        sock.sendall(conn.send(ev.CloseConnection(1000)))
            if not data:
                return frames, None


def messages_of(frames: list[tuple[bytes, bool]]) -> list[bytes]:
    out, parts = [], []
    for data, last in frames:
        parts.append(data)
        if last:
            out.append(b"".join(parts))
            parts = []
    return out


def _target(recorded: tuple[Path, dict[str, Any]]) -> tuple[str, str]:
    url = by_scheme(recorded[0])["ws"].request.url
    return url.split("/")[2], "/" + url.split("/", 3)[3]


@pytest.mark.parametrize("replay", [("rechunk:size=7",)], indirect=True)
def test_replay_proxy_keeps_the_replays_fragments(
    recorded: tuple[Path, dict[str, Any]], replay: tuple[str, str, Replay]
) -> None:
    _, seen = recorded
    frames, close = frames_through(replay[0], *_target(recorded))
    assert messages_of(frames) == [m.encode() for m in seen["ws"]]
    assert all(len(data) <= 7 for data, _ in frames) and len(frames) > 5 * len(seen["ws"])
    assert close is not None and close.code == 1000  # as recorded (the client closed)


@pytest.mark.parametrize(
    ("replay", "ending"),
    [
        (("close:after=5,code=4000,reason=bye",), (4000, "bye")),
        (("close:after=5,code=1006",), None),  # no close frame: the TCP connection ends
        (("truncate:after=5,end=reset",), None),
    ],
    indirect=["replay"],
)
def test_replay_proxy_passes_the_close_on(
    recorded: tuple[Path, dict[str, Any]], replay: tuple[str, str, Replay], ending: Any
) -> None:
    _, seen = recorded
    frames, close = frames_through(replay[0], *_target(recorded))
    assert messages_of(frames) == [m.encode() for m in seen["ws"][:5]]
    assert (None if close is None else (close.code, close.reason)) == ending


# ---------------------------------------------------------------------------------------------
# the SDK aimed at the real API, in a network namespace with loopback only

SDK_CLIENT = textwrap.dedent("""
    import asyncio, json, sys, openai
    async def main():
        client = openai.AsyncOpenAI(api_key="sk-test")  # wss://api.openai.com, HTTPS_PROXY
        async with client.realtime.connect(model="gpt-realtime") as conn:
            got = [(await conn.recv()).type]
            await conn.session.update(session={"type": "realtime"})
            got.append((await conn.recv()).type)
            await conn.response.create()
            text = ""
            while got[-1] != "response.done":
                event = await conn.recv()
                got.append(event.type)
                text += getattr(event, "delta", "") if event.type.endswith(".delta") else ""
        print(json.dumps({"types": got, "text": text}))
    asyncio.run(main())
""")


def test_the_openai_sdk_on_the_real_url_through_replay_proxy(
    recorded: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2)")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -rn is not permitted here: {probe.stderr.strip()}")
    cassette, seen = recorded
    command = [
        *SSEVCR,
        "replay",
        str(cassette),
        "--proxy",
        "--confdir",
        str(tmp_path),
        "--",
        sys.executable,
        "-c",
        SDK_CLIENT,
    ]
    env = {k: v for k, v in _env().items() if k != "SSL_CERT_FILE"}
    if "SSEVCR_MITMDUMP" not in env and len(MITMDUMP) == 1:  # (else: this Python's mitmproxy)
        env["SSEVCR_MITMDUMP"] = MITMDUMP[0]
    out = subprocess.run(
        ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 play, 0 misses" in out.stderr, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["types"] == [json.loads(m)["type"] for m in seen["wss"]]
    assert got["text"] == "".join(
        json.loads(m).get("delta", "") for m in seen["wss"] if "delta" in m
    )
