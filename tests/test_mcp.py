"""MCP Streamable HTTP: the GET stream's resumption through ``ssevcr replay``.

The server is the official ``mcp`` SDK's (``MCPServer.streamable_http_app`` under uvicorn, with an
event store, so its SSE events carry ids and it honours ``Last-Event-ID``); the client is raw
httpx speaking the specification's wire shape (POST ``initialize`` and
``notifications/initialized``, then GET with ``Accept: text/event-stream`` and
``Mcp-Session-Id``, and on a cut GET again with ``Last-Event-ID``): the SDK's client does not
expose its GET stream's events or a way to reconnect it on demand. Recorded through the real
mitmdump (``ssevcr record``), replayed with the MCP server stopped and the GET stream cut after
its second notification: the client resumes at the right event and sees every notification once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventMessage, EventStore
from stream_helpers import CliReplay, serve_asgi
from test_record import MITMDUMP, RecordCLI

from ssevcr import _store
from ssevcr._resume import resumable

PROTOCOL = "2025-06-18"
JSON_AND_SSE = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": PROTOCOL,
        "capabilities": {},
        "clientInfo": {"name": "raw-httpx", "version": "1"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
ANNOUNCE = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "announce", "arguments": {"count": 5}},
}


def mcp_app() -> Any:
    class Store(EventStore):  # type: ignore[misc]
        """Every event kept, ids ev-1, ev-2, ...; replays a stream after the id named."""

        def __init__(self) -> None:
            self.events: list[tuple[str, str, Any]] = []
            self.numbers = itertools.count(1)

        async def store_event(self, stream_id: str, message: Any) -> str:
            event_id = f"ev-{next(self.numbers)}"
            self.events.append((stream_id, event_id, message))
            return event_id

        async def replay_events_after(self, last_event_id: str, send_callback: Any) -> Any:
            at = next((i for i, e in enumerate(self.events) if e[1] == last_event_id), None)
            if at is None:
                return None
            stream = self.events[at][0]
            for sid, event_id, message in self.events[at + 1 :]:
                if sid == stream and message is not None:
                    await send_callback(EventMessage(message, event_id))
            return stream

    server = MCPServer("ticker")

    @server.tool()
    async def announce(count: int, ctx: Context) -> str:  # type: ignore[type-arg]
        """Tell the client, ``count`` times, on its GET stream, that the resources changed."""
        for _ in range(count):
            await ctx.session.send_resource_list_changed()
            await asyncio.sleep(0.02)
        return f"announced {count}"

    return server.streamable_http_app(event_store=Store())


@pytest.fixture
def mcp_server() -> Iterator[str]:
    with serve_asgi(mcp_app()) as url:
        yield url


def start_session(client: httpx.Client, url: str) -> str:
    """initialize + notifications/initialized; the session's id."""
    r = client.post(url, headers=JSON_AND_SSE, json=INITIALIZE)
    assert r.status_code == 200 and "serverInfo" in r.text, r.text
    session = r.headers["mcp-session-id"]
    r = client.post(url, headers=session_headers(session, JSON_AND_SSE), json=INITIALIZED)
    assert r.status_code == 202, r.text
    return session


def session_headers(session: str, base: dict[str, str]) -> dict[str, str]:
    return {**base, "mcp-session-id": session, "mcp-protocol-version": PROTOCOL}


def read_get_stream(
    client: httpx.Client, url: str, session: str, want: int, last_id: str | None = None
) -> tuple[list[tuple[str, str]], bool]:
    """GET the session's stream until ``want`` messages came (or it breaks): their (id,
    method), and whether it broke first."""
    headers = session_headers(session, {"accept": "text/event-stream"})
    if last_id is not None:
        headers["last-event-id"] = last_id
    from httpx_sse import EventSource

    got: list[tuple[str, str]] = []
    try:
        with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200, response.status_code
            for sse in EventSource(response).iter_sse():
                if sse.data:
                    got.append((sse.id, json.loads(sse.data)["method"]))
                if len(got) == want:
                    return got, False
    except httpx.TransportError:
        return got, True
    return got, True


def test_mcp_get_stream_recorded_then_cut_resumes_at_the_right_event(
    tmp_path: Path, mcp_server: str
) -> None:
    if not MITMDUMP:  # pragma: no cover - bootstrap creates .venv-mitmproxy
        pytest.skip("needs mitmdump (bootstrap creates .venv-mitmproxy, or set SSEVCR_MITMDUMP)")
    cassette = tmp_path / "mcp.msgpack"
    rec = RecordCLI(cassette, "--upstream", mcp_server, confdir=tmp_path / "mitm")
    url = f"{rec.url}/mcp"
    with httpx.Client(timeout=30) as client, httpx.Client(timeout=30) as listener:
        session = start_session(client, url)
        live: list[tuple[list[tuple[str, str]], bool]] = []
        reader = threading.Thread(
            target=lambda: live.append(read_get_stream(listener, url, session, 5))
        )
        reader.start()
        time.sleep(0.5)  # (the GET stream is open before the tool announces)
        r = client.post(url, headers=session_headers(session, JSON_AND_SSE), json=ANNOUNCE)
        assert "announced 5" in r.text, r.text
        reader.join(30)
    assert rec.stop(signal.SIGTERM) == 0, rec.stderr
    ((notifications, broke),) = live
    assert not broke and len(notifications) == 5
    assert {m for _, m in notifications} == {"notifications/resources/list_changed"}
    ids = [i for i, _ in notifications]
    assert len(set(ids)) == 5 and all(ids)

    recorded = _store.load(cassette).interactions
    (get_index,) = [n for n, i in enumerate(recorded, 1) if i.request.method == "GET"]
    stream = resumable(recorded[get_index - 1].response)
    assert stream is not None and list(stream.first_with_id) == ids  # the ids, recorded

    journal = tmp_path / "journal.jsonl"
    replay = CliReplay(
        str(cassette),
        "--timing",
        "instant",
        "--fault",
        f"truncate:after=2,on={get_index},times=1",  # the GET stream, cut once
        "--journal",
        str(journal),
    )
    try:
        url = f"{replay.url}/mcp"
        with httpx.Client(timeout=30) as client:
            replayed_session = start_session(client, url)
            assert replayed_session == session  # the recorded session
            first, broke = read_get_stream(client, url, session, 5)
            assert broke and first == notifications[:2]  # cut after the second notification
            rest, broke = read_get_stream(client, url, session, 3, last_id=first[-1][0])
            assert not broke
    finally:
        code, summary = replay.stop()
    assert code == 0, summary
    assert first + rest == notifications  # resumed at the right event: each once, in order
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    resumed = [d for d in lines if d["resumed_after"] is not None]
    assert [d["resumed_after"] for d in resumed] == [ids[1]]
    assert dict(resumed[0]["request_headers"])["mcp-session-id"] == session
    assert resumed[0]["events"] == 3
