"""In-process WebSocket replay for the ``websockets`` library: the official openai SDK's
Realtime client, aimed at the real ``wss://api.openai.com``, replays a cassette under
``use_cassette`` (its connection goes to a replay server of the cassette on 127.0.0.1; the
network guard refuses anything else): the recorded bytes, faults as the client's own close,
misses and journals on the cassette, and a clean refusal to record in process."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import openai
import pytest
from test_ws_options import UPDATE, realtime_cassette, save
from websockets.exceptions import ConnectionClosedError

import ssevcr
from ssevcr import _websockets
from ssevcr._errors import SsevcrError


@pytest.fixture(autouse=True)
def _no_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)


async def sdk(update: dict[str, Any] = UPDATE) -> list[bytes]:
    """The openai SDK's Realtime client on its default URL: the server messages as read."""
    client = openai.AsyncOpenAI(api_key="sk-test")
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


def test_recording_in_process_is_refused_cleanly(tmp_path: Path) -> None:
    with (
        ssevcr.use_cassette(tmp_path / "new.msgpack", record="once"),
        pytest.raises(SsevcrError, match="record it through `ssevcr record`") as info,
    ):
        asyncio.run(sdk())
    assert "api.openai.com/v1/realtime" in str(info.value)
    assert (
        not (tmp_path / "new.msgpack").exists()
        or not ssevcr.load(tmp_path / "new.msgpack").interactions
    )


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
