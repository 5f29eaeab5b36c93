"""The fault catalogue, checked against what the faults do: every entry is played through the
player (the sweep's path), must apply, and is judged by a model consumer written here, apart
from the catalogue's own rules: it reads the scheduled bytes as an SSE client that follows the
standard would (declared text/event-stream, decoded as declared, stops at the provider's
terminal event, gives up after the client's timeout). Lossless entries must leave what it sees
unchanged, lossy ones must change it."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest

from ssevcr import ReplayTransport, ServerThread, _store
from ssevcr._cassette import Cassette, End, Interaction, Request, Response
from ssevcr._catalogue import LEVELS, catalogue, classify, stream_of
from ssevcr._errors import ConfigError
from ssevcr._faults import Truncate, parse_fault
from ssevcr._live import LiveSchedule
from ssevcr._player import Player
from ssevcr._schedule import Close, Hang, Schedule
from ssevcr._sse import parse

EXAMPLES = Path(__file__).resolve().parent.parent / "cassettes" / "examples"
NAMES = sorted(p.stem for p in EXAMPLES.glob("*.msgpack"))
SSE = "text/event-stream"
STALL = 30.0  # the catalogue's default: past the client's timeout
LAST_WORDS = ("message_stop", "response.completed", "response.incomplete", "response.failed")


def example(name: str) -> Cassette:
    return _store.load(EXAMPLES / f"{name}.msgpack")


def seen(s: Schedule, timeout: float = STALL) -> tuple[Any, ...]:
    """What a standard SSE consumer with a ``timeout`` read timeout ends with."""
    if s.status != 200:
        return ("status", s.status)
    headers = {k.lower(): v for k, v in s.headers}
    if headers.get("content-type", "").split(";")[0].strip().lower() != SSE:
        return ("not an event stream",)
    data, last, gave_up = b"", s.headers_at, False
    for step in s.steps:
        if step.at - last >= timeout:
            gave_up = True
            break
        data, last = data + step.data, step.at
    if isinstance(s.end, Hang) or s.end.at - last >= timeout:
        gave_up = True
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding == "gzip":
        try:
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
        except zlib.error:
            return ("undecodable",)
    elif encoding != "identity":
        return ("undecodable",)
    visible, finished = [], False
    for e in parse(data).events:
        visible.append((e.type, e.data))
        if e.data == "[DONE]" or e.type in LAST_WORDS:
            finished = True
            break
    return (tuple(visible), finished or (not gave_up and isinstance(s.end, Close)))


def play(cassette: Cassette, spec: str | None, index: int = 0) -> Schedule:
    """The schedule the player gives the recorded request of interaction ``index``."""
    player = Player.create(cassette, timing="instant", faults=[spec] if spec else [], repeat=True)
    for i, inter in enumerate(cassette.interactions):  # earlier ones first, as a client would
        p = player.play(inter.request)
        if i == index:
            return p.schedule
    raise IndexError(index)


# ------------------------------------------------------------------ every example cassette


@pytest.mark.parametrize("name", NAMES)
def test_catalogues_nest_and_quick_is_about_twenty(name: str) -> None:
    c = example(name)
    levels = {level: [e.spec for e in catalogue(c, level=level)] for level in LEVELS}
    for specs in levels.values():
        assert len(specs) == len(set(specs))
    assert 18 <= len(levels["quick"]) <= 23
    assert set(levels["quick"]) < set(levels["default"]) <= set(levels["full"])
    assert len(levels["default"]) >= 30
    kinds = {e.kind for e in catalogue(c)}
    assert kinds == {
        "truncate",
        "drop",
        "duplicate",
        "corrupt",
        "error",
        "status",
        "stall",
        "rechunk",
        "slow",
        "header",
    }


@pytest.mark.parametrize("name", NAMES)
def test_every_fault_applies_and_is_classed_by_what_the_consumer_sees(name: str) -> None:
    c = example(name)
    clean = seen(play(c, None))
    assert clean[1] is True  # the recording ends as its provider ends a stream
    for entry in catalogue(c, level="full"):
        assert str(entry.fault) == entry.spec and entry.interaction == 1
        s = play(c, entry.spec)
        assert s.fired == (entry.spec,) and s.skipped == (), entry.spec
        assert (seen(s) != clean) == entry.lossy, entry.spec
        assert classify(entry.spec, stall_limit=STALL, cassettes=c) == (entry.kind, entry.lossy)


@pytest.mark.parametrize("name", NAMES)
def test_the_catalogue_is_deterministic_for_a_seed(name: str) -> None:
    c = example(name)
    assert catalogue(c, seed=7) == catalogue(c, seed=7)
    a, b = catalogue(c, seed=7), catalogue(c, seed=8)
    differ = [(x.spec, y.spec) for x, y in zip(a, b, strict=True) if x != y]
    assert len(differ) == 3 and all(x.startswith("rechunk:random,seed=") for x, _ in differ)
    assert play(c, differ[0][0]).steps == play(c, differ[0][0]).steps  # seeded: the same pieces
    assert play(c, differ[0][0]).steps != play(c, differ[1][0]).steps


def test_quick_on_an_openai_chat_stream() -> None:
    got = {e.spec: e.lossy for e in catalogue(example("openai-chat-text"), level="quick")}
    assert got == {  # 34 events, the 34th is [DONE]; the middle one is 17
        "truncate:after=1,end=abort": True,
        "truncate:after=17,end=close": True,
        "truncate:after=17,end=abort": True,
        "truncate:after=17,end=reset": True,
        "truncate:after=33,end=close": True,  # a well-formed end without [DONE]
        "truncate:after=last,end=abort": False,  # after [DONE]: nothing is lost
        "truncate:byte=4371,end=close": True,  # inside event 17
        "drop:event=last": True,
        "drop:event=17": True,
        "duplicate:event=17": True,
        "corrupt:event=17,how=json": True,
        "error:after=33": True,
        "status:429,retry_after=1s": True,
        "status:500": True,
        "stall:before=17,for=30s": True,
        "stall:before=17,for=1s": False,
        "stall:before=1,for=30s": True,
        "rechunk:size=1": False,
        "rechunk:hostile": False,
        "slow:bps=4380": False,
        "header:content-type=text/plain": True,
    }
    body = example("openai-chat-text").interactions[0].response.body
    e17 = parse(body).events[16]
    assert e17.start < 4371 < e17.end


def test_a_stream_without_a_terminal_event_loses_its_end_to_any_cut() -> None:
    c = example("gemini-text")  # 3 events, the last carries finishReason; no [DONE]
    entries = {e.spec: e for e in catalogue(c, level="full")}
    assert stream_of(c.interactions[0]).terminal is None  # type: ignore[union-attr]
    assert entries["truncate:after=last,end=abort"].lossy
    assert "truncate:after=last,end=close" not in entries  # that is the recording itself
    assert entries["duplicate:event=last"].lossy and entries["drop:event=last"].lossy
    assert entries["drop:event=last"].why == "drop the last event"


def test_the_providers_overload_code_and_error_event() -> None:
    specs = [e.spec for e in catalogue(example("anthropic-text"))]
    assert "status:529" in specs
    s = play(example("anthropic-text"), "error:after=5")
    assert b"event: error" in s.body and b"overloaded_error" in s.body
    assert "status:529" not in [e.spec for e in catalogue(example("openai-chat-text"))]


# ------------------------------------------------------------------ built cassettes


def sse(body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> Interaction:
    pieces = [(0.1 + 0.01 * i, body[i : i + 40]) for i in range(0, len(body), 40)]
    resp = Response.from_chunks(
        200, pieces, headers=(("content-type", SSE), *headers), headers_at=0.05, end=End(1.0)
    )
    return Interaction(Request("POST", "https://api.openai.com/v1/chat/completions", (), b""), resp)


def chat(*texts: str) -> bytes:
    events = [{"choices": [{"delta": {"content": t}}]} for t in texts]
    lines = [f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def test_a_cut_inside_a_multi_byte_character_where_one_exists() -> None:
    c = Cassette((sse(chat("plain", "more", "naïve café", "end")),))
    entries = {e.spec: e for e in catalogue(c, level="quick")}
    (spec,) = [s for s in entries if entries[s].why == "cut inside a multi-byte UTF-8 character"]
    fault = parse_fault(spec)
    assert isinstance(fault, Truncate) and fault.byte is not None
    pos = fault.byte
    body = c.interactions[0].response.body
    assert 0x80 <= body[pos] <= 0xBF and body[pos - 1] >= 0xC0  # between a lead byte and the next
    s = play(c, spec)
    assert s.fired == (spec,) and entries[spec].lossy and seen(s) != seen(play(c, None))
    with pytest.raises(UnicodeDecodeError):
        s.body.decode("utf-8")
    plain = Cassette((sse(chat("plain", "only")),))
    assert not any("UTF-8 character" in e.why for e in catalogue(plain, level="full"))


def test_several_interactions_each_get_their_own_faults() -> None:
    json_body = b'{"id": "x", "object": "list", "data": []}'
    listing = Interaction(
        Request("GET", "https://api.openai.com/v1/models", (), b""),
        Response.from_chunks(
            200, [(0.1, json_body)], headers=(("content-type", "application/json"),)
        ),
    )
    c = Cassette((sse(chat("a", "b", "c")), listing))
    entries = catalogue(c, level="full")
    assert {e.interaction for e in entries} == {1, 2}
    assert all(e.spec.endswith(f",on={e.interaction}") for e in entries)
    plain = [e.spec for e in entries if e.interaction == 2]
    assert plain == [
        "status:429,retry_after=1s,on=2",
        "status:500,on=2",
        "status:503,on=2",
        f"truncate:byte={len(json_body) // 2},end=close,on=2",
        f"truncate:byte={len(json_body) // 2},end=abort,on=2",
        "rechunk:size=1,on=2",
        "slow:bps=1000,on=2",
    ]
    clean_stream, clean_json = seen(play(c, None, 0)), play(c, None, 1)
    for e in entries:
        s = play(c, e.spec, e.interaction - 1)
        assert s.fired == (e.spec,) and s.skipped == (), e.spec
        other = play(c, e.spec, 2 - e.interaction)  # the other interaction is left alone
        assert other.fired == () and other.skipped == ()
        if e.interaction == 1:
            assert (seen(s) != clean_stream) == e.lossy, e.spec
        else:
            changed = (s.status, s.body, type(s.end)) != (200, json_body, type(clean_json.end))
            assert changed == e.lossy and e.lossy == (e.kind in ("status", "truncate")), e.spec


def test_a_compressed_stream_gets_an_encoding_lie_and_no_byte_positions() -> None:
    body = chat("one", "two", "three", "four")
    packed = gzip.compress(body)
    c = Cassette((sse(packed, (("content-encoding", "gzip"),)),))
    entries = {e.spec: e for e in catalogue(c, level="full")}
    assert (
        "header:drop=content-encoding" in entries and entries["header:drop=content-encoding"].lossy
    )
    assert "header:content-encoding=gzip" not in entries
    assert not any(s.startswith("truncate:byte=") for s in entries)
    clean = seen(play(c, None))
    assert clean == seen(play(Cassette((sse(body),)), None))  # the consumer decodes it
    for e in entries.values():
        s = play(c, e.spec)
        assert s.fired == (e.spec,) and s.skipped == (), e.spec
        assert (seen(s) != clean) == e.lossy, e.spec


def test_a_body_that_does_not_decode_has_no_events_to_break() -> None:
    c = Cassette((sse(b"not gzip at all, not at all", (("content-encoding", "gzip"),)),))
    assert stream_of(c.interactions[0]) is None
    assert {e.kind for e in catalogue(c)} == {"status", "truncate", "rechunk", "slow"}


# ------------------------------------------------------------------ classify, options


@pytest.mark.parametrize(
    ("spec", "kind", "lossy"),
    [
        ("truncate:after=3,end=close", "truncate", True),
        ("drop:event=last", "drop", True),
        ("duplicate:event=2", "duplicate", True),
        ("corrupt:event=1,how=utf8", "corrupt", True),
        ("error:after=2", "error", True),
        ("status:503", "status", True),
        ("stall:before=2,for=forever", "stall", True),
        ("stall:before=2,for=30s", "stall", True),
        ("stall:before=2,for=29s", "stall", False),
        ("rechunk:random", "rechunk", False),
        ("slow:bps=10", "slow", False),
        ("header:content-type=text/html", "header", True),
        ("header:drop=content-encoding", "header", True),
        ("header:content-length", "header", False),
        ("header:x-request-id=abc", "header", False),
    ],
)
def test_classify_by_kind_without_a_cassette(spec: str, kind: str, lossy: bool) -> None:
    assert classify(spec, stall_limit=30.0) == (kind, lossy)


def test_classify_with_the_cassette_knows_the_terminal_event() -> None:
    c = example("openai-chat-text")  # 34 events, [DONE] last
    assert classify("truncate:after=last,end=reset", cassettes=c) == ("truncate", False)
    assert classify("truncate:after=last,end=reset") == ("truncate", True)
    assert classify("duplicate:event=34", cassettes=[c]) == ("duplicate", False)
    assert classify("drop:event=99", cassettes=c) == ("drop", False)  # nothing to drop
    assert classify("drop:event=1,on=/v1/messages", cassettes=c) == ("drop", True)  # not this one


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="valid: quick, default, full"):
        catalogue(example("gemini-text"), level="everything")
    with pytest.raises(ConfigError, match="longer than 0"):
        catalogue(example("gemini-text"), stall=0)


def test_the_stall_option_sets_the_long_and_the_short_stall() -> None:
    specs = [e.spec for e in catalogue(example("openai-chat-text"), stall=5.0)]
    assert "stall:before=17,for=5s" in specs and "stall:before=17,for=500ms" in specs


# ------------------------------------------------------------------ header faults on the wire


@pytest.mark.parametrize("mod", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_the_header_faults_reach_clients_over_a_socket_and_in_process(mod: Any) -> None:
    """Each header entry of the catalogue, as the replay server writes it (h11 reads the head
    back in the client) and as the in-process transport answers: the recorded bytes, the head
    the fault asked for, and the client's own error for a content-encoding that lies."""
    c = example("openai-chat-text")
    inter = c.interactions[0]
    body = inter.response.body
    headers = [e.spec for e in catalogue(c) if e.kind == "header"]
    assert len(headers) == 4
    for spec in headers:
        player = Player.create(c, timing="instant", faults=[spec], repeat=True)
        with ServerThread(player, log=lambda _line: None) as server:
            url = server.url + "/v1/chat/completions"
            sockets = mod.Client()
            in_process = mod.Client(transport=ReplayTransport(player))
            for client in (sockets, in_process):
                with client, client.stream("POST", url, content=inter.request.body) as r:
                    got = dict(r.headers)
                    if spec == "header:content-encoding=gzip":
                        assert got["content-encoding"] == "gzip"
                        with pytest.raises(mod.DecodingError):
                            r.read()
                        continue
                    assert r.read() == body, spec
                if spec == "header:content-length":
                    assert got["content-length"] == str(len(body))
                    assert "transfer-encoding" not in got
                elif spec == "header:content-type=text/plain":
                    assert got["content-type"] == "text/plain"
                else:
                    assert "content-type" not in got


# ------------------------------------------------------------------ on a recording run


@pytest.mark.parametrize("name", ["openai-chat-text", "anthropic-tool-use", "gemini-text"])
def test_every_fault_holds_on_a_recording_run(name: str) -> None:
    """While the stream is still being recorded (faults on a recording run), what is known
    early is the start of the final replay, head included (a content-length waits for the end)."""
    c = example(name)
    r = c.interactions[0].response
    for e in catalogue(c):
        live = LiveSchedule(
            Response(r.status, r.reason, r.http_version, r.headers, r.headers_at), faults=[e.fault]
        )
        knowns = []
        for chunk in r.chunks:
            live.add(chunk.at, chunk.data)
            knowns.append(live.known())
        live.finish(r.end)
        final = live.final
        assert final is not None and live.consistent, e.spec
        for k in knowns:
            assert k.steps == final.steps[: len(k.steps)], e.spec
            if k.schedule is not None:
                head = (k.schedule.status, k.schedule.headers, k.schedule.content_length)
                assert head == (final.status, final.headers, final.content_length), e.spec
