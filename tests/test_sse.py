"""Tests for the one SSE parser (ssevcr._sse).

Every reader test runs its input whole, one byte at a time and (where the case gives one) in the
recorded chunking. The fuzz rule: any bytes, any chunking -> the same frames, nothing raised, and
the frames plus the tail give back the input byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssevcr._sse import Comment, Event, Frame, Parsed, SSEParser, parse

# ---------------------------------------------------------------------------------------------
# helpers


def feed_all(chunks: Iterable[bytes], last_event_id: str = "") -> Parsed:
    """Feed chunks through the incremental API (not ``parse``), then flush."""
    parser = SSEParser(last_event_id)
    frames: list[Frame] = []
    for chunk in chunks:
        frames += parser.feed(chunk)
    frames += parser.flush()
    return Parsed(tuple(frames), parser.tail, parser.last_event_id, parser.retry)


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in pairwise(points)]


def assert_lossless(data: bytes, result: Parsed) -> None:
    assert b"".join(f.raw for f in result.frames) + result.tail == data
    offset = 0
    for f in result.frames:
        assert f.start == offset
        assert f.end == f.start + len(f.raw)
        assert f.raw  # a frame always holds at least its blank line
        offset = f.end


def event_triples(result: Parsed) -> list[tuple[str, str, str]]:
    return [(e.type, e.data, e.id) for e in result.events]


# ---------------------------------------------------------------------------------------------
# the conformance suite (WPT eventsource + cases derived from the WHATWG spec)

CONFORMANCE: list[dict[str, Any]] = json.loads(
    (FIXTURES / "sse_conformance.json").read_text("utf-8")
)

# Cases with expected_fail_connection=true are about the HTTP status or the MIME type (the browser
# must fail the connection before reading the body); they say nothing about parsing, so they are
# left out here rather than skipped. Everything else is run.
PARSING_CASES = [c for c in CONFORMANCE if not c["expected_fail_connection"]]


def _case_params() -> list[Any]:
    params = []
    for case in PARSING_CASES:
        data = base64.b64decode(case["input_bytes_b64"])
        modes: list[tuple[str, list[bytes]]] = [("whole", [data]), ("bytewise", bytewise(data))]
        if case["chunks_b64"] is not None:
            modes.insert(0, ("chunked", [base64.b64decode(c) for c in case["chunks_b64"]]))
        for mode, chunks in modes:
            params.append(pytest.param(case, data, chunks, id=f"{case['id']}-{mode}"))
    return params


def test_conformance_suite_is_whole() -> None:
    assert len(CONFORMANCE) == 81
    assert len(PARSING_CASES) == 72
    left_out = [c for c in CONFORMANCE if c["expected_fail_connection"]]
    # only MIME and status cases are left out, and none of them expects an event
    assert all(c["id"].startswith(("wpt/format-mime", "wpt/request-status")) for c in left_out)
    assert all(c["expected_events"] == [] for c in left_out)


@pytest.mark.parametrize(("case", "data", "chunks"), _case_params())
def test_conformance(case: dict[str, Any], data: bytes, chunks: list[bytes]) -> None:
    assert b"".join(chunks) == data
    initial = case["initial_last_event_id"]
    result = feed_all(chunks, initial)
    expected = [(e["type"], e["data"], e["lastEventId"]) for e in case["expected_events"]]
    assert event_triples(result) == expected
    state = case["expected_final_state"]
    assert result.last_event_id == state["last_event_id"]
    assert result.retry == state["reconnection_time_ms"]
    assert_lossless(data, result)
    # parse() over the same chunks agrees with the incremental API
    assert parse(chunks, last_event_id=initial) == result


def test_conformance_chunked_cases_exist() -> None:
    # the split-BOM, split-CR and split-UTF-8 cases must really be run in their chunking
    chunked = {c["id"] for c in PARSING_CASES if c["chunks_b64"] is not None}
    assert {
        "wpt/format-bom-split",
        "spec/bom-split-over-3-chunks",
        "spec/utf8-split-2byte",
        "spec/eol-cr-at-chunk-end-then-data",
    } <= chunked


# ---------------------------------------------------------------------------------------------
# frames: events, comments, blank lines, retry-only blocks


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_frames_of_a_mixed_stream(mode: str) -> None:
    data = (
        b": hello\r\n: world\r\n\r\n"  # comment block, CRLF
        b"\n"  # stray blank line
        b"retry: 250\n\n"  # retry-only block: no event, retry honoured
        b"event: ping\n\n"  # event type without data: nothing dispatched, type reset
        b"id: 7\n\n"  # id-only block commits the id
        b"data: x\r"  # CR line ending
        b"\r"
        b"event: done\ndata: a\ndata: b\n: note\n\n"
        b"data: unterminated"
    )
    result = feed_all([data] if mode == "whole" else bytewise(data))
    f = result.frames
    assert [type(x) for x in f] == [Comment, Comment, Comment, Comment, Comment, Event, Event]
    assert f[0] == Comment(raw=b": hello\r\n: world\r\n\r\n", start=0, text="hello\nworld")
    assert f[1] == Comment(raw=b"\n", start=f[0].end, text="")
    assert f[2] == Comment(raw=b"retry: 250\n\n", start=f[1].end, text="", retry=250)
    assert f[3] == Comment(raw=b"event: ping\n\n", start=f[2].end, text="")
    assert f[4] == Comment(raw=b"id: 7\n\n", start=f[3].end, text="")
    assert f[5] == Event(raw=b"data: x\r\r", start=f[4].end, type="message", data="x", id="7")
    assert f[6] == Event(
        raw=b"event: done\ndata: a\ndata: b\n: note\n\n",
        start=f[5].end,
        type="done",
        data="a\nb",
        id="7",
    )
    assert result.tail == b"data: unterminated"
    assert result.retry == 250
    assert result.last_event_id == "7"
    assert_lossless(data, result)


def test_event_carries_retry_of_its_own_block_only() -> None:
    result = parse(b"retry: 5\ndata: a\n\ndata: b\n\n")
    assert [e.retry for e in result.events] == [5, None]
    assert result.retry == 5


def test_retry_in_unterminated_block_is_honoured_but_id_is_not() -> None:
    # retry takes effect when its line is read; an id only when its block is dispatched
    result = parse(b"data: a\n\nid: 9\nretry: 42\ndata: b\n")
    assert event_triples(result) == [("message", "a", "")]
    assert result.retry == 42
    assert result.last_event_id == ""
    assert result.tail == b"id: 9\nretry: 42\ndata: b\n"


def test_retry_with_thousands_of_digits_does_not_raise() -> None:
    # int() refuses more than 4300 digits by default; the parser must not raise on any input
    digits = b"1" * 5000
    result = parse(b"retry: " + digits + b"\ndata: x\n\n")
    assert result.retry == (10**5000 - 1) // 9  # 5000 ones, computed without int(str)
    assert result.events[0].retry == result.retry
    assert parse(b"retry: 000" + digits + b"\n\n").retry == result.retry


def test_bom_only_once_and_only_at_start() -> None:
    bom = b"\xef\xbb\xbf"
    result = parse(bom + b"data: a\n\n" + bom + b"data: b\n\ndata: c\n\n")
    assert [e.data for e in result.events] == ["a", "c"]
    assert result.frames[0].raw.startswith(bom)  # the BOM stays in the raw bytes
    # a stream that is only part of a BOM keeps it as tail
    for data in (b"\xef", b"\xef\xbb", bom):
        assert feed_all(bytewise(data)).tail == data


def test_offset_and_tail_while_feeding() -> None:
    p = SSEParser()
    assert p.feed(b"data: a\n") == []
    assert p.tail == b"data: a\n" and p.offset == 0
    frames = p.feed(b"\ndata: b")
    assert [f.raw for f in frames] == [b"data: a\n\n"]
    assert p.tail == b"data: b" and p.offset == 9
    assert p.feed(b"") == []
    assert p.flush() == []
    assert p.tail == b"data: b"


def test_cr_at_end_is_held_until_next_byte_or_flush() -> None:
    p = SSEParser()
    assert p.feed(b"data: a\r\r") == []  # the second CR may be the first half of CRLF
    frames = p.feed(b"\n")
    assert [f.raw for f in frames] == [b"data: a\r\r\n"]
    p = SSEParser()
    assert p.feed(b"data: a\r\r") == []
    assert [f.raw for f in p.flush()] == [b"data: a\r\r"]


def test_feed_after_flush_is_a_usage_error() -> None:
    p = SSEParser()
    p.feed(b"data: a\n\n")
    p.flush()
    assert p.flush() == []  # a second flush is harmless
    with pytest.raises(RuntimeError):
        p.feed(b"data: b\n\n")
    with pytest.raises(RuntimeError):
        p.feed(b"")


def test_initial_last_event_id() -> None:
    result = parse(b"data: a\n\nid: 2\ndata: b\n\n", last_event_id="1")
    assert event_triples(result) == [("message", "a", "1"), ("message", "b", "2")]
    assert parse(b"", last_event_id="1").last_event_id == "1"


def test_parse_accepts_bytes_like_and_iterables() -> None:
    data = b"data: a\n\ndata: b\n\n"
    expected = parse(data)
    assert parse(bytearray(data)) == expected
    assert parse(memoryview(data)) == expected
    assert parse(iter(bytewise(data))) == expected
    assert parse([]) == Parsed((), b"", "", None)


# ---------------------------------------------------------------------------------------------
# property tests

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    if not data:
        return draw(st.sampled_from([[], [b""]]))
    cuts = draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=min(len(data), 12)))
    return split_at(data, cuts)


_EOL = st.sampled_from([b"\n", b"\r", b"\r\n"])
_NAMES = st.sampled_from(
    [
        b"data",
        b"event",
        b"id",
        b"retry",
        b"Data",
        b" data",
        b"\xef\xbb\xbfdata",
        b"foo",
        b"",
        b"dat",
    ]
)
_VALUE_TEXT = st.text(
    alphabet=st.sampled_from(list("ab 01:9\x00\u2026\u00e9\U0001f600\u2028\t")), max_size=8
).map(lambda s: s.encode("utf-8"))
_VALUE = st.one_of(
    _VALUE_TEXT,
    st.sampled_from([b"", b"0", b"1500", b"+1", b"1.5", b"\xff", b"\xc3", b"\xe2\x80", b"\x00x"]),
)


@st.composite
def sse_lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["field", "field", "field", "bare", "comment", "blank", "junk"]))
    if kind == "field":
        line = draw(_NAMES) + draw(st.sampled_from([b":", b": ", b":  "])) + draw(_VALUE)
    elif kind == "bare":
        line = draw(_NAMES)
    elif kind == "comment":
        line = b":" + draw(_VALUE)
    elif kind == "blank":
        line = b""
    else:
        line = draw(st.binary(max_size=6)).replace(b"\r", b"").replace(b"\n", b"")
    return line + draw(_EOL)


@st.composite
def sse_streams(draw: st.DrawFn) -> bytes:
    prefix = draw(
        st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xef\xbb"])
    )
    body = b"".join(draw(st.lists(sse_lines(), max_size=25)))
    cut = draw(st.integers(0, len(body)))  # often end mid-line
    return prefix + (body if draw(st.booleans()) else body[:cut])


def _check_invariant(data: bytes, chunks: list[bytes]) -> None:
    whole = feed_all([data])
    assert_lossless(data, whole)
    assert feed_all(chunks) == whole
    assert feed_all(bytewise(data)) == whole
    assert parse(data) == whole
    # the tail never holds a complete block, and two more LFs always end it
    more = feed_all([data, b"\n\n"])
    assert more.tail == b""
    assert len(more.frames) >= len(whole.frames) + (1 if whole.tail else 0)


@FUZZ
@given(st.data())
def test_any_bytes_any_chunking(data: st.DataObject) -> None:
    body = data.draw(st.binary(max_size=300))
    _check_invariant(body, data.draw(chunkings(body)))


@FUZZ
@given(st.data())
def test_sse_like_bytes_any_chunking(data: st.DataObject) -> None:
    body = data.draw(sse_streams())
    _check_invariant(body, data.draw(chunkings(body)))


# A model of well-formed streams, built from blocks whose meaning is known by construction
# (no parsing in the test): data lines joined by LF, the last event type, an id without NUL.

_SAFE = st.text(alphabet=st.sampled_from(list("ab :\u00e9\u2026\U0001f600")), max_size=6)


@st.composite
def well_formed(
    draw: st.DrawFn,
) -> tuple[bytes, list[tuple[str, str, str]], str, int | None, bytes]:
    out = [draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))]
    expected: list[tuple[str, str, str]] = []
    last_id, retry = "", None
    for _ in range(draw(st.integers(0, 6))):
        data_lines: list[str] = []
        etype = ""
        pending_id: str | None = None
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from(["data", "event", "id", "retry", ""]))  # "" -> a comment
            eol = draw(_EOL)
            value = draw(_SAFE)
            space = draw(st.sampled_from(["", " "]))
            line = f"{kind}:{space}{value}"
            if not space and value.startswith(" "):
                value = value[1:]  # one space after the colon is not part of the value
            if kind == "data":
                data_lines.append(value)
            elif kind == "event":
                etype = value
            elif kind == "id":
                if draw(st.booleans()):
                    line += "\x00"  # an id containing NUL is ignored
                else:
                    pending_id = value
            elif kind == "retry":
                value = str(draw(st.integers(0, 10**6)))
                line = f"retry:{space}{value}"
                retry = int(value)
            out.append(line.encode() + eol)
        blank = draw(_EOL)
        if out[-1].endswith(b"\r") and blank == b"\n":
            blank = b"\r\n"  # CR then LF would be one line end, not an empty line
        out.append(blank)
        if pending_id is not None:
            last_id = pending_id
        if data_lines:
            expected.append((etype or "message", "\n".join(data_lines), last_id))
    tail = out[0] if len(out) == 1 else b""  # a lone BOM is not a frame yet
    return b"".join(out), expected, last_id, retry, tail


@FUZZ
@given(well_formed(), st.data())
def test_well_formed_streams_mean_what_they_say(
    stream: tuple[bytes, list[tuple[str, str, str]], str, int | None, bytes], data: st.DataObject
) -> None:
    body, expected, last_id, retry, tail = stream
    chunks = data.draw(chunkings(body))
    for result in (feed_all([body]), feed_all(chunks)):
        # a CR at the very end is only a line end once the stream ends, so flush() matters here
        assert event_triples(result) == expected
        assert result.last_event_id == last_id
        assert result.retry == retry
        assert result.tail == tail
        assert_lossless(body, result)


# ---------------------------------------------------------------------------------------------
# real provider streams (tests/fixtures/providers; see PROVENANCE.md there)

PROVIDERS = FIXTURES / "providers"

_SECTION = re.compile(r"^### `([^`]+)`$(.*?)(?=^### |\Z)", re.M | re.S)
_CHECKED = re.compile(
    r"^- checked: WHATWG reference parser -> (\d+) events, .*?event types=(\{.*\})$", re.M
)
_SHA = re.compile(r"sha256 `([0-9a-f]{64})`")
_ENDS = re.compile(r"ends with blank line: (True|False)")


def _provenance() -> list[tuple[str, int, dict[str, int], str, bool]]:
    text = (PROVIDERS / "PROVENANCE.md").read_text("utf-8")
    out = []
    for path, body in _SECTION.findall(text):
        checked, sha, ends = _CHECKED.search(body), _SHA.search(body), _ENDS.search(body)
        assert checked and sha and ends, (
            f"PROVENANCE.md: no 'checked:', sha256 or line-ending note for {path}"
        )
        out.append(
            (
                path,
                int(checked.group(1)),
                json.loads(checked.group(2)),
                sha.group(1),
                ends.group(1) == "True",
            )
        )
    return out


PROVENANCE = _provenance()


def test_every_provider_fixture_has_provenance() -> None:
    on_disk = {p.relative_to(PROVIDERS).as_posix() for p in PROVIDERS.rglob("*.sse")}
    assert on_disk, f"no provider fixtures under {PROVIDERS}"
    assert on_disk == {path for path, *_ in PROVENANCE}


@pytest.mark.parametrize(
    ("path", "count", "types", "sha", "ends_blank"), [pytest.param(*p, id=p[0]) for p in PROVENANCE]
)
def test_provider_fixture(
    path: str, count: int, types: dict[str, int], sha: str, ends_blank: bool
) -> None:
    data = (PROVIDERS / path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha
    whole = feed_all([data])
    assert len(whole.events) == count
    assert Counter(e.type for e in whole.events) == Counter(types)
    # a body that does not end with a blank line keeps its last block (never dispatched) as tail
    assert (whole.tail == b"") == ends_blank
    assert_lossless(data, whole)
    assert feed_all(bytewise(data)) == whole
    for size in (2, 7, 64, 1000):
        assert feed_all(split_at(data, range(size, len(data), size))) == whole


# ---------------------------------------------------------------------------------------------
# linear: every byte searched once, whatever the chunking (a quadratic parser is caught by
# counting, not by a clock)


class _CountingEOL:
    """Stands in for the parser's line-end pattern and counts the bytes each search covers."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern
        self.searched = 0

    def search(self, buf: bytes, pos: int = 0) -> re.Match[bytes] | None:
        m = self.pattern.search(buf, pos)
        self.searched += (m.end() if m else len(buf)) - pos
        return m


def _searched(monkeypatch: pytest.MonkeyPatch, chunks: list[bytes]) -> tuple[int, Parsed]:
    import ssevcr._sse as sse

    counter = _CountingEOL(sse._EOL)
    monkeypatch.setattr(sse, "_EOL", counter)
    result = feed_all(chunks)
    return counter.searched, result


@pytest.mark.parametrize(
    "name",
    ["long line", "long line ending in CR", "one block of many lines", "many events", "CR pairs"],
)
def test_each_byte_is_searched_once(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    n = 20_000
    body = {
        "long line": b"data: " + b"x" * n + b"\n\n",
        "long line ending in CR": b"data: " + b"x" * n + b"\r\r",
        "one block of many lines": b"data: y\n" * (n // 8) + b"\n",
        "many events": b"data: z\n\n" * (n // 9),
        "CR pairs": b"data: a\r\n\r\n" * (n // 11),
    }[name]
    searched, result = _searched(monkeypatch, bytewise(body))
    assert_lossless(body, result)
    assert result.events and result.tail == b""
    # at most twice (a line whose CR ends a chunk is searched again with the next byte, which
    # may be its LF); a quadratic parser searches ~len(body)**2 / 2
    assert searched <= 3 * len(body), (searched, len(body))


def test_cost_grows_linearly_with_a_long_line() -> None:
    """CPU time for 10x the one-byte chunks of one line grows about 10x (a generous bound: a
    quadratic parser grows 100x)."""

    def cost(size: int) -> float:
        best = math.inf
        for _ in range(3):
            parser = SSEParser()
            t0 = time.process_time()
            for _ in range(size):
                parser.feed(b"a")
            frames = parser.feed(b"\n\n")
            best = min(best, time.process_time() - t0)
            assert len(frames) == 1 and len(frames[0].raw) == size + 2
        return best

    small, large = cost(20_000), cost(200_000)
    assert large < 30 * max(small, 1e-3), (small, large)


def test_data_values_are_where_the_data_is() -> None:
    from ssevcr._sse import data_values

    body = b'\xef\xbb\xbfdata: {"a":1}\r\nevent: x\r\ndata:b\r\n:c\r\ndata\r\n\r\ndata:  two\n\n'
    frames = parse(body).frames
    assert [[f.raw[a:b] for a, b in data_values(f)] for f in frames] == [
        [b'{"a":1}', b"b", b""],
        [b" two"],
    ]
