"""Tests for the JSON-array stream parser (ssevcr._jsonarray): Gemini without ``alt=sse``.

Every reader test runs its input whole and one byte at a time. The fuzz rule: any bytes, any
chunking -> the same frames, nothing raised, and the frames plus the tail give back the input
byte for byte; a well-formed array's elements are exactly what ``json.loads`` reads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import pytest
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ndjson import assert_lossless, bytewise, chunkings, same_for_any_chunking

from ssevcr._jsonarray import Element, Frame, Gap, JSONArrayParser, Parsed, parse
from ssevcr._sse import parse as parse_sse

PROVIDERS = FIXTURES / "providers"


def feed_all(chunks: Iterable[bytes]) -> Parsed:
    parser = JSONArrayParser()
    frames: list[Frame] = []
    for chunk in chunks:
        frames += parser.feed(chunk)
    closed = parser.closed
    frames += parser.flush()
    return Parsed(tuple(frames), parser.tail, closed)


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_elements_and_the_gaps_between_them(mode: str) -> None:
    data = (
        b' [{"a": "x]}\\"{"}\r\n'  # brackets and an escaped quote inside a string
        b",\r\n"
        b'[1, {"b": [2]}]'  # a nested array
        b' , "s\\\\"'  # a top-level string ending in an escaped backslash
        b",-1.5e3 , true"  # scalars end before the delimiter after them
        b"\r\n]\n"
    )
    result = feed_all([data] if mode == "whole" else bytewise(data))
    kinds = [type(f) for f in result.frames]
    assert kinds == [Gap, Element, Gap, Element, Gap, Element, Gap, Element, Gap, Element, Gap]
    assert [e.text for e in result.elements] == [
        '{"a": "x]}\\"{"}',
        '[1, {"b": [2]}]',
        '"s\\\\"',
        "-1.5e3",
        "true",
    ]
    assert [g.raw for g in result.frames if isinstance(g, Gap)] == [
        b" [",
        b"\r\n,\r\n",
        b" , ",
        b",",
        b" , ",
        b"\r\n]\n",
    ]
    assert result.closed and result.tail == b""
    assert_lossless(data, result)
    assert [json.loads(e.text) for e in result.elements] == json.loads(data)


def test_an_element_is_a_frame_once_its_last_byte_is_here() -> None:
    p = JSONArrayParser()
    assert p.feed(b'[{"a": [1') == []
    (gap, el) = p.feed(b"]}")
    assert gap == Gap(b"[", 0) and el == Element(b'{"a": [1]}', 1, '{"a": [1]}')
    assert p.feed(b",\n7") == []  # a number may go on
    (gap, seven) = p.feed(b"\n")
    assert gap == Gap(b",\n", 11) and seven.text == "7"
    assert p.feed(b"]") == [] and p.closed
    assert p.flush() == [Gap(b"\n]", 14)] and p.tail == b""


@pytest.mark.parametrize(
    ("data", "frames", "tail", "closed"),
    [
        (b"[]", 1, b"", True),
        (b" [ ] \n", 1, b"", True),
        (b"", 0, b"", False),
        (b"[", 0, b"[", False),
        (b'[{"a": 1}', 2, b"", False),  # cut after an element: framed, not closed
        (b'[{"a": 1},{"b', 2, b',{"b', False),  # an element left open stays in the tail
        (b'{"error": {}}', 0, b'{"error": {}}', False),  # not an array: nothing framed
        (b"[1,]", 2, b",]", False),  # a trailing comma breaks the shape there
        (b"[,1]", 0, b"[,1]", False),
        (b"[1 2]", 2, b" 2]", False),
        (b"[1] x", 2, b"] x", False),  # bytes after the end: the last gap is not a frame
        (b'["\\', 0, b'["\\', False),
    ],
)
def test_shapes_that_end_early_or_break(
    data: bytes, frames: int, tail: bytes, closed: bool
) -> None:
    for result in (feed_all([data]), feed_all(bytewise(data))):
        assert len(result.frames) == frames and result.tail == tail and result.closed == closed
        assert_lossless(data, result)


def test_deep_nesting_is_counted_not_stacked() -> None:
    data = b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]"
    result = parse(data)
    assert len(result.elements) == 1 and result.closed


# ---------------------------------------------------------------------------------------------
# the fuzz rule


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
_SPACE = st.sampled_from(["", " ", "\r\n", "\n  ", "\t"])


@st.composite
def arrays(draw: st.DrawFn) -> tuple[bytes, list[Any]]:
    values = draw(st.lists(_JSON, max_size=6))
    indent = draw(st.sampled_from([None, 2]))
    parts = [json.dumps(v, indent=indent, ensure_ascii=draw(st.booleans())) for v in values]
    text = draw(_SPACE) + "[" + draw(_SPACE)
    text += "".join(
        (draw(_SPACE) + "," + draw(_SPACE) if i else "") + part for i, part in enumerate(parts)
    )
    text += draw(_SPACE) + "]" + draw(_SPACE)
    return text.encode(), values


def _check_invariant(data: bytes, chunks: list[bytes]) -> Parsed:
    whole: Parsed = same_for_any_chunking(data, chunks, feed_all, parse)
    return whole


@settings(deadline=None)  # a loaded machine: no per-example time limit
@given(st.data())
def test_any_bytes_any_chunking(data: st.DataObject) -> None:
    body = data.draw(st.binary(max_size=200))
    _check_invariant(body, data.draw(chunkings(body)))


@settings(deadline=None)  # a loaded machine: no per-example time limit
@given(st.data())
def test_array_like_bytes_any_chunking(data: st.DataObject) -> None:
    body = data.draw(st.text(alphabet='[]{}",\\ \r\n1a:', max_size=60)).encode()
    _check_invariant(body, data.draw(chunkings(body)))


@settings(deadline=None)  # a loaded machine: no per-example time limit
@given(arrays(), st.data())
def test_well_formed_arrays_give_their_elements(
    array: tuple[bytes, list[Any]], data: st.DataObject
) -> None:
    body, values = array
    whole = _check_invariant(body, data.draw(chunkings(body)))
    assert whole.closed and whole.tail == b""
    assert [json.loads(e.text) for e in whole.elements] == json.loads(body) == values
    # any prefix frames a prefix of the elements
    cut = data.draw(st.integers(0, len(body)))
    assert parse(body[:cut]).elements == whole.elements[: len(parse(body[:cut]).elements)]


# ---------------------------------------------------------------------------------------------
# the reconstructed Gemini stream (see PROVENANCE.md)


def test_gemini_fixture_holds_the_sse_fixtures_payloads() -> None:
    data = (PROVIDERS / "gemini" / "text.reconstructed.json").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert sha == "cf74f55647d003a403812aee0c830677acc13e874a5ae6a935ffdbf412de6973"
    assert sha in (PROVIDERS / "PROVENANCE.md").read_text("utf-8")
    whole = feed_all([data])
    assert whole.closed and whole.tail == b"" and feed_all(bytewise(data)) == whole
    assert_lossless(data, whole)
    sse = parse_sse((PROVIDERS / "gemini" / "text.sse").read_bytes()).events
    assert [json.loads(e.text) for e in whole.elements] == [json.loads(e.data) for e in sse]
    assert [g.raw for g in whole.frames if isinstance(g, Gap)] == [
        b"[",
        b"\r\n,\r\n",
        b"\r\n,\r\n",
        b"\r\n]",
    ]
