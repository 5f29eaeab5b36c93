"""The framing layer (ssevcr._framing) and the event-level machinery on NDJSON lines and
JSON-array elements: which framing a response has, its events, every event fault through the
schedule (the bytes a client gets, parsed again), the provider's error shape, the catalogue's
view and ``show``'s."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st
from test_jsonarray import arrays

from ssevcr import _framing as framings
from ssevcr import _jsonarray as jsonarray
from ssevcr import _ndjson as ndjson
from ssevcr._cassette import Cassette, Interaction, Request, Response
from ssevcr._catalogue import catalogue, classify, stream_of
from ssevcr._faults import parse_faults
from ssevcr._schedule import Abort, Close, Hang, build
from ssevcr._stats import interaction_stats
from ssevcr.cli.review import render_diff_text

PROVIDERS = FIXTURES / "providers"
NDJSON = "application/x-ndjson"
OLLAMA_URL = "http://127.0.0.1:11434/api/generate"
GEMINI_URL = (
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent"
)
GENERATE = (PROVIDERS / "ollama" / "generate.reconstructed.ndjson").read_bytes()
CHAT = (PROVIDERS / "ollama" / "chat.reconstructed.ndjson").read_bytes()
ERROR_MIDSTREAM = (PROVIDERS / "ollama" / "error_midstream.reconstructed.ndjson").read_bytes()
GEMINI_ARRAY = (PROVIDERS / "gemini" / "text.reconstructed.json").read_bytes()


def timed(body: bytes, pieces: list[bytes], content_type: str) -> Response:
    """A response whose chunks are ``pieces`` (joined: ``body``), 10 ms apart."""
    assert b"".join(pieces) == body
    return Response.from_chunks(
        200,
        [(0.01 * (i + 1), p) for i, p in enumerate(pieces)],
        headers=(("content-type", content_type),),
    )


def by_lines(body: bytes) -> list[bytes]:
    return [line + b"\n" for line in body.split(b"\n")[:-1]]


def ollama(body: bytes = GENERATE) -> Response:
    return timed(body, by_lines(body), NDJSON)


def values(body: bytes) -> list[Any]:
    return [json.loads(line.text) for line in ndjson.parse(body).lines]


# ---------------------------------------------------------------------------------------------
# which framing


@pytest.mark.parametrize(
    ("content_type", "body", "url", "framing"),
    [
        ("text/event-stream; charset=utf-8", b"", "", "sse"),
        ("application/x-ndjson", b"", "", "ndjson"),
        ("application/jsonl", b"", "", "ndjson"),
        ("Application/X-NDJSON; charset=utf-8", b"", "", "ndjson"),
        ("application/json", b'{"a":1}\n{"b":2}\n', "", "ndjson"),  # detected
        ("", b'[1]\n{"b":2}\r\n', "", "ndjson"),
        ("application/json", b'{"a":1}\n', "", None),  # one line: a JSON answer
        ("application/json", b'{\n  "a": 1\n}\n', "", None),  # pretty-printed JSON
        ("application/json", b"1\n2\n", "", None),  # scalars: not detected
        ("application/json", b'{"a":1}\n{"b":\n', "", None),
        ("text/html", b'{"a":1}\n{"b":2}\n', "", None),
        ("application/json", b'[{"a": 1}\r\n,\r\n{"b": 2}\r\n]', GEMINI_URL, "json-array"),
        ("application/json; charset=UTF-8", b'\n[{"a": 1}]', GEMINI_URL + "?key=x", "json-array"),
        ("application/json", b'[{"a": 1}]', GEMINI_URL + "?alt=sse", None),
        ("application/json", b'{"error": {}}', GEMINI_URL, None),
        ("application/json", b'[{"a": 1}]', "http://x/v1/list", None),  # a plain JSON list
    ],
)
def test_framing_of(content_type: str, body: bytes, url: str, framing: str | None) -> None:
    assert framings.framing_of(content_type, body, url) == framing


def test_events_give_each_framing_its_value_and_unit() -> None:
    (a, b) = framings.events(
        b"\xef\xbb\xbfevent: x\r\ndata: one\r\ndata: two\r\n\r\ndata:3\n\n", "sse"
    )
    assert (a.index, a.type, a.data, a.unit) == (1, "x", "one\ntwo", (a.start, a.end))
    assert a.raw[a.value[0] - a.start : a.value[1] - a.start] == b"one"  # the first data value
    assert b.raw[b.value[0] - b.start : b.value[1] - b.start] == b"3"
    (x, y) = framings.events(b'\xef\xbb\xbf{"a":1}\r\n{"b":2}', "ndjson")
    assert x.value == (3, 10) and x.unit == (0, 12) and x.type == "line"
    assert y.value == (12, 19) and y.unit == (12, 19) and y.repeat == b'\n{"b":2}'
    body = b'[{"a": 1}\r\n,\r\n{"b": 2} , 3]'
    (p, q, r) = framings.events(body, "json-array")
    assert [body[e.value[0] : e.value[1]] for e in (p, q, r)] == [b'{"a": 1}', b'{"b": 2}', b"3"]
    assert [e.repeat for e in (p, q, r)] == [b'{"a": 1}\r\n,\r\n', b'\r\n,\r\n{"b": 2}', b" , 3"]


def test_terminal_events_per_framing() -> None:
    assert framings.terminal_index(framings.events(GENERATE, "ndjson"), "ndjson") == 28
    assert framings.terminal_index(framings.events(CHAT, "ndjson"), "ndjson") == 28
    assert framings.terminal_index(framings.events(ERROR_MIDSTREAM, "ndjson"), "ndjson") is None
    # a nested "done": true is no end; only the line's own
    nested = b'{"message":{"tool_calls":[{"arguments":{"done":true}}]},"done":false}\n'
    assert framings.terminal_index(framings.events(nested, "ndjson"), "ndjson") is None
    assert (
        framings.terminal_index(framings.events(GEMINI_ARRAY, "json-array"), "json-array") is None
    )


# ---------------------------------------------------------------------------------------------
# every event fault on an Ollama stream: the bytes a client gets, read again line by line


def replayed(
    spec: str, response: Response | None = None, url: str = OLLAMA_URL
) -> tuple[bytes, Any]:
    sched = build(response or ollama(), faults=parse_faults([spec]), seed=7, url=url)
    assert sched.fired == (spec,), (sched.fired, sched.skipped)
    return sched.body, sched


def test_no_fault_replays_the_recorded_lines() -> None:
    sched = build(ollama(), url=OLLAMA_URL)
    assert sched.body == GENERATE and [s.data for s in sched.steps] == by_lines(GENERATE)


def test_drop_duplicate_truncate_on_lines() -> None:
    lines = by_lines(GENERATE)
    body, _ = replayed("drop:event=last")  # the done line gone: a client never sees done
    assert body == b"".join(lines[:-1]) and all(not v["done"] for v in values(body))
    body, _ = replayed("drop:event=3")
    assert body == b"".join(lines[:2] + lines[3:])
    body, _ = replayed("duplicate:event=5")
    assert body == b"".join([*lines[:5], lines[4], *lines[5:]])
    body, sched = replayed("truncate:after=10,end=abort")
    assert body == b"".join(lines[:10]) and isinstance(sched.end, Abort)
    body, sched = replayed("truncate:after=28,end=close")  # just before the done line
    assert body == b"".join(lines[:28]) and isinstance(sched.end, Close)


@pytest.mark.parametrize("how", ["json", "utf8", "bytes"])
def test_corrupt_damages_one_line_and_keeps_the_framing(how: str) -> None:
    lines = by_lines(GENERATE)
    body, _ = replayed(f"corrupt:event=4,how={how}")
    got = by_lines(body)
    assert len(got) == len(lines) and got[:3] == lines[:3] and got[4:] == lines[4:]
    assert got[3] != lines[3] and got[3].endswith(b"\n")
    with pytest.raises((ValueError, UnicodeDecodeError)):
        json.loads(got[3].decode("utf-8"))


def test_error_is_ollamas_own_line() -> None:
    """``error:after=4`` on the generate stream gives exactly the reconstructed mid-stream error
    stream: four lines, then Ollama's error line as its server writes it, then the end."""
    body, sched = replayed("error:after=4")
    assert body == ERROR_MIDSTREAM and isinstance(sched.end, Close)
    body, _ = replayed("error:after=2,message=model crashed")
    assert values(body)[-1] == {"error": "model crashed"}
    crlf = GENERATE.replace(b"\n", b"\r\n")
    body, _ = replayed("error:after=1", timed(crlf, [crlf], NDJSON))
    assert body.endswith(b'}\r\n{"error":"an error was encountered while running the model"}\r\n')


def test_stall_and_rechunk_on_lines() -> None:
    _, sched = replayed("stall:before=3,for=2s")
    recorded = ollama()
    assert sched.steps[2].at == pytest.approx(recorded.chunk_at[2] + 2.0)
    assert sched.steps[1].at == pytest.approx(recorded.chunk_at[1])
    _, sched = replayed("stall:before=3,for=forever")
    assert isinstance(sched.end, Hang) and len(sched.steps) == 2
    for spec in ("rechunk:size=1", "rechunk:hostile", "rechunk:random,seed=3"):
        body, sched = replayed(spec)
        assert body == GENERATE and len(sched.steps) > len(by_lines(GENERATE))


def test_a_gzipped_ndjson_stream_is_decoded_for_event_faults() -> None:
    import gzip

    packed = gzip.compress(GENERATE)
    resp = Response.from_chunks(
        200,
        [(0.1, packed[:50]), (0.2, packed[50:])],
        headers=(("content-type", NDJSON), ("content-encoding", "gzip")),
    )
    sched = build(resp, faults=parse_faults(["drop:event=last"]), url=OLLAMA_URL)
    assert sched.body == b"".join(by_lines(GENERATE)[:-1])
    assert all(k != "content-encoding" for k, _ in sched.headers)


def test_a_detected_ndjson_stream_takes_event_faults_and_a_json_answer_does_not() -> None:
    untyped = timed(GENERATE, by_lines(GENERATE), "application/json")
    body, _ = replayed("drop:event=1", untyped)
    assert body == b"".join(by_lines(GENERATE)[1:])
    answer = timed(b'{"a": 1}', [b'{"a": 1}'], "application/json")
    sched = build(answer, faults=parse_faults(["drop:event=1"]))
    assert sched.body == b'{"a": 1}' and sched.skipped == ("drop:event=1: the stream has 0 events",)


# ---------------------------------------------------------------------------------------------
# a JSON array: dropped, repeated and added elements leave a well-formed array


def gemini(body: bytes = GEMINI_ARRAY) -> Response:
    frames = jsonarray.parse(body).frames
    return timed(body, [f.raw for f in frames], "application/json; charset=UTF-8")


def test_event_faults_on_the_gemini_array() -> None:
    elements = json.loads(GEMINI_ARRAY)
    for n in (1, 2, 3):
        body, _ = replayed(f"drop:event={n}", gemini(), GEMINI_URL)
        assert json.loads(body) == elements[: n - 1] + elements[n:]
        body, _ = replayed(f"duplicate:event={n}", gemini(), GEMINI_URL)
        assert json.loads(body) == [*elements[:n], elements[n - 1], *elements[n:]]
    body, _ = replayed("error:after=2", gemini(), GEMINI_URL)
    got = json.loads(body)  # the array is closed after the error element
    assert got[:2] == elements[:2] and got[2]["error"]["status"] == "INTERNAL" and len(got) == 3
    assert body.endswith(b'"status":"INTERNAL"}}\r\n]') and b'\r\n,\r\n{"error"' in body
    body, _ = replayed("truncate:after=1,end=close", gemini(), GEMINI_URL)
    with pytest.raises(ValueError):
        json.loads(body)  # an array cut after its first element
    body, _ = replayed("corrupt:event=2", gemini(), GEMINI_URL)
    assert jsonarray.parse(body).elements[0].raw == jsonarray.parse(GEMINI_ARRAY).elements[0].raw


@settings(max_examples=60, deadline=None)
@given(arrays(), st.data())
def test_drop_and_duplicate_any_element_of_any_array(
    array: tuple[bytes, list[Any]], data: st.DataObject
) -> None:
    body, elements = array
    if not elements:
        return
    resp = timed(body, [body], "application/json")
    n = data.draw(st.integers(1, len(elements)))
    dropped = build(resp, faults=parse_faults([f"drop:event={n}"]), url=GEMINI_URL).body
    assert json.loads(dropped) == elements[: n - 1] + elements[n:]
    doubled = build(resp, faults=parse_faults([f"duplicate:event={n}"]), url=GEMINI_URL).body
    assert json.loads(doubled) == [*elements[:n], elements[n - 1], *elements[n:]]
    errored = build(resp, faults=parse_faults([f"error:after={n}"]), url=GEMINI_URL).body
    assert json.loads(errored)[:-1] == elements[:n]


# ---------------------------------------------------------------------------------------------
# the catalogue and show see lines as events


def ollama_cassette(body: bytes = GENERATE, url: str = OLLAMA_URL) -> Cassette:
    req = Request("POST", url, (("content-type", "application/json"),), b'{"model":"llama3.2"}')
    return Cassette((Interaction(req, ollama(body)),))


def test_the_catalogue_of_an_ollama_stream() -> None:
    cassette = ollama_cassette()
    s = stream_of(cassette.interactions[0])
    assert s is not None and s.framing == "ndjson" and s.n == 29 and s.terminal == 29
    assert s.provider == "ollama"
    entries = {e.spec: e for e in catalogue(cassette, level="default")}
    assert entries["drop:event=last"].lossy  # the done line: the client never learns it ended
    assert entries["truncate:after=28,end=close"].lossy
    assert not entries["duplicate:event=last"].lossy  # after done: nothing a client reads
    assert entries["error:after=28"].lossy and entries["corrupt:event=15,how=json"].lossy
    assert not entries["rechunk:hostile"].lossy
    assert not entries["header:content-type=text/plain"].lossy  # a line reader reads lines
    assert entries["header:content-encoding=gzip"].lossy
    assert classify("drop:event=3", cassettes=cassette) == ("drop", True)
    # every entry applies through the schedule (none is skipped on this stream)
    for e in entries.values():
        if e.kind in ("status", "header", "slow"):
            continue
        sched = build(cassette.interactions[0].response, faults=[e.fault], url=OLLAMA_URL)
        assert sched.fired, (e.spec, sched.skipped)


def test_show_counts_lines_as_events() -> None:
    cassette = ollama_cassette(CHAT, "http://127.0.0.1:11434/api/chat")
    st_ = interaction_stats(1, cassette.interactions[0])
    assert st_.framing == "ndjson" and len(st_.events) == 29 and st_.comments == 0
    assert st_.ttfe == pytest.approx(0.01) and st_.events[-1].gap == pytest.approx(0.01)
    text = render_diff_text(cassette)
    assert "29 event(s) (ndjson)" in text
    assert 'event 1 at 0.010000s line: {"model":"llama3.2"' in text


def test_the_same_seed_corrupts_a_line_the_same_way() -> None:
    faults = parse_faults(["corrupt:event=2,how=bytes"])
    one, two = (build(ollama(), faults=faults, seed=1).body for _ in range(2))
    assert one == two != build(ollama(), faults=faults, seed=2).body
