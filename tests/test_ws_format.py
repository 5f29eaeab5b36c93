"""WebSocket interactions in the cassette format (version 3): both encodings round-trip, older
versions migrate, plain cassettes stay version 2, and every hostile shape of a conversation is
one CassetteError naming the field (msgpack and the JSON twin alike)."""

from __future__ import annotations

import json
import random
from typing import Any

import msgpack
import pytest

from ssevcr import _format
from ssevcr._cassette import (
    Cassette,
    Interaction,
    Request,
    Response,
    WebSocket,
    WsClose,
    WsMessage,
)
from ssevcr._errors import CassetteError, InvalidValueError
from ssevcr._redaction import Redaction

REQ = Request(
    "GET",
    "https://api.openai.com/v1/realtime?model=gpt-realtime",
    (("upgrade", "websocket"), ("connection", "Upgrade"), ("authorization", "REDACTED")),
)
RESP = Response(101, "Switching Protocols", headers=(("upgrade", "websocket"),), headers_at=0.2)
WS = WebSocket(
    (
        WsMessage(0.001, False, b'{"type":"session.created"}'),
        WsMessage(0.05, True, '{"type":"session.update","x":"é"}'.encode()),
        WsMessage(0.07, False, b"\x00\x01\xff", binary=True),
        WsMessage(0.09, False, b""),
    ),
    WsClose(0.5, 1000, "bye", "client"),
)
CASSETTE = Cassette((Interaction(REQ, RESP, websocket=WS), Interaction(REQ, Response(200))))


def doc() -> dict[str, Any]:
    value: dict[str, Any] = msgpack.unpackb(_format.dumps(CASSETTE), raw=False)
    return value


def refused(data: bytes) -> CassetteError:
    with pytest.raises(CassetteError) as info:
        _format.loads_any(data, path="hostile")
    assert info.type is CassetteError and info.value.path == "hostile"
    return info.value


def test_both_encodings_round_trip() -> None:
    assert _format.loads(_format.dumps(CASSETTE)) == CASSETTE
    text = _format.export_json(CASSETTE)
    assert _format.import_json(text) == CASSETTE
    assert json.loads(text)["version"] == 3
    # one message per line in the twin: a review diff shows the changed message
    assert sum('"from": ' in line for line in text.splitlines()) == 4


def test_a_large_conversation_is_written_by_reference() -> None:
    big = WebSocket(
        tuple(WsMessage(i * 0.001, i % 3 == 0, b"x" * 200, binary=i % 2 == 0) for i in range(2000))
    )
    cassette = Cassette((Interaction(REQ, RESP, websocket=big),))
    data = _format.dumps(cassette)
    raw = msgpack.unpackb(data, raw=False)
    assert isinstance(raw["interactions"][0]["websocket"]["data"], list)  # [offset, size]
    assert _format.loads(data) == cassette


def test_plain_cassettes_stay_version_2_and_version_2_migrates() -> None:
    plain = Cassette((Interaction(REQ, Response(200)),))
    assert msgpack.unpackb(_format.dumps(plain))["version"] == _format.PLAIN_VERSION == 2
    assert json.loads(_format.export_json(plain))["version"] == 2
    assert _format.loads(_format.dumps(plain)) == plain
    assert _format.MIGRATIONS[2]({"version": 2})["version"] == 3
    newer = doc()
    newer["version"] = 4
    assert "newer than this ssevcr" in refused(msgpack.packb(newer)).problem


def _ws(d: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = d["interactions"][0]["websocket"]
    return value


@pytest.mark.parametrize(
    ("edit", "where", "problem"),
    [
        (lambda d: d["interactions"][0]["response"].update(status=200), "websocket", "101"),
        (lambda d: _ws(d).update(kinds=b"\x00\x00\x07\x00"), "kinds[2]", "kind"),
        (lambda d: _ws(d).update(kinds=b"\x00"), "sizes", "lengths disagree"),
        (lambda d: _ws(d).update(data=b"\xff" + _ws(d)["data"][1:]), "messages[0]", "UTF-8"),
        (lambda d: _ws(d).update(data=_ws(d)["data"] + b"!"), "sizes", "add up"),
        (lambda d: _ws(d).update(sizes=b"\x00" * 15), "sizes", "damaged"),
        (
            lambda d: _ws(d).update(at=_ws(d)["at"][8:] + _ws(d)["at"][:8]),
            "messages[",
            "decreasing",
        ),
        (lambda d: _ws(d).update(at=b"\x00" * 24 + b"\xff" * 8), "messages[3].at", "finite"),
        (lambda d: _ws(d)["close"].update(code=999), "close", "code 999"),
        (lambda d: _ws(d)["close"].update(code=1006), "close", "code 1006"),
        (lambda d: _ws(d)["close"].update(code=True), "close.code", "boolean"),
        (lambda d: _ws(d)["close"].update(reason="x" * 124), "close", "123 bytes"),
        (lambda d: _ws(d)["close"].update(by="alien"), "close.by", "alien"),
        (lambda d: _ws(d)["close"].update(by="none"), "close", "no close code"),
        (lambda d: _ws(d)["close"].update(at=0.01), "close.at", "after the last message"),
        (lambda d: _ws(d)["close"].update(at=float("nan")), "close.at", "time"),
        (lambda d: _ws(d).pop("sizes"), "sizes", "missing"),
        (lambda d: _ws(d).update(data=[0, 10**9]), "data", "refers to"),
        (lambda d: d["interactions"][0].update(websocket=[]), "websocket", "map"),
    ],
)
def test_hostile_msgpack_conversations_are_refused_naming_the_field(
    edit: Any, where: str, problem: str
) -> None:
    d = doc()
    edit(d)
    e = refused(msgpack.packb(d, use_bin_type=True))
    assert where in e.where and problem in e.problem, (e.where, e.problem)


def _twin() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(_format.export_json(CASSETTE))
    return value


def _msgs(d: dict[str, Any]) -> list[dict[str, Any]]:
    value: list[dict[str, Any]] = d["interactions"][0]["websocket"]["messages"]
    return value


@pytest.mark.parametrize(
    ("edit", "where", "problem"),
    [
        (lambda d: _msgs(d)[0].update({"from": "both"}), "messages[0].from", "client or server"),
        (lambda d: _msgs(d)[0].update(type="ping"), "messages[0].type", "text or binary"),
        (lambda d: _msgs(d)[0].pop("data"), "messages[0]", "data"),
        (lambda d: _msgs(d)[2].update(data_b64="!!"), "messages[2].data_b64", "base64"),
        (lambda d: _msgs(d)[0].update(data_b64="/w=="), "messages[0]", "UTF-8"),
        (lambda d: _msgs(d)[1].update(at=-1), "messages[1].at", "time"),
        (lambda d: _msgs(d)[1].update(at=0.0), "messages[1].at", "decreasing"),
    ],
)
def test_hostile_json_conversations_are_refused_naming_the_field_and_line(
    edit: Any, where: str, problem: str
) -> None:
    d = _twin()
    edit(d)
    text = _format.export_json(CASSETTE).replace(
        _format.export_json(CASSETTE), json.dumps(d, indent=1)
    )
    e = refused(text.encode())
    assert where in e.where and problem in e.problem, (e.where, e.problem)
    assert e.line is not None


def test_random_damage_is_only_ever_a_cassette_error() -> None:
    data = _format.dumps(CASSETTE)
    rng = random.Random(19)
    for _ in range(1500):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            loaded = _format.loads(bytes(damaged))
        except CassetteError:
            continue
        for inter in loaded.interactions:  # what loads is usable
            if inter.websocket is not None:
                for m in inter.websocket.messages:
                    assert m.binary or m.data.decode("utf-8") is not None


def test_values_built_in_code_are_checked() -> None:
    with pytest.raises(InvalidValueError):
        WebSocket((WsMessage(0.2, False, b"a"), WsMessage(0.1, False, b"b")))
    with pytest.raises(InvalidValueError):
        WebSocket((WsMessage(0.0, False, b"\xff"),))
    with pytest.raises(InvalidValueError):
        Interaction(REQ, Response(200), websocket=WS)
    with pytest.raises(InvalidValueError):
        WebSocket(close=WsClose(0.0, 1005, "", "server"))  # 1005 is never sent


def test_redaction_reaches_the_messages_and_the_handshake() -> None:
    key = "sk-live-abcdefghijklmnop"
    ws = WebSocket(
        (
            WsMessage(0.0, True, json.dumps({"type": "session.update", "api_key": key}).encode()),
            WsMessage(0.1, False, b'{"type":"session.updated"}'),
            WsMessage(0.2, True, key.encode(), binary=True),  # binary: audio, left as it is
        )
    )
    req = Request("GET", f"wss://x/v1/realtime?api_key={key}", (("authorization", key),))
    out = Redaction().interaction(Interaction(req, RESP, websocket=ws))
    assert key not in out.request.url and out.request.header("authorization") == "REDACTED"
    assert out.websocket is not None
    first = json.loads(out.websocket.messages[0].data)
    assert first == {"type": "session.update", "api_key": "REDACTED"}
    assert out.websocket.messages[1] == ws.messages[1]
    assert out.websocket.messages[2] == ws.messages[2]
