"""Tests for the NDJSON parser (ssevcr._ndjson).

Every reader test runs its input whole and one byte at a time. The fuzz rule: any bytes, any
chunking -> the same frames, nothing raised, and the frames plus the tail give back the input
byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from itertools import pairwise
from typing import Any

import pytest
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st

from ssevcr._ndjson import Blank, Frame, Line, NDJSONParser, Parsed, parse

PROVIDERS = FIXTURES / "providers"


def feed_all(chunks: Iterable[bytes]) -> Parsed:
    """Feed chunks through the incremental API (not ``parse``), then flush."""
    parser = NDJSONParser()
    frames: list[Frame] = []
    for chunk in chunks:
        frames += parser.feed(chunk)
    frames += parser.flush()
    return Parsed(tuple(frames), parser.tail)


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def assert_lossless(data: bytes, result: Any) -> None:
    """The frames and the tail of ``result`` (any of the stream parsers') give back ``data``."""
    assert b"".join(f.raw for f in result.frames) + result.tail == data
    offset = 0
    for f in result.frames:
        assert f.start == offset and f.end == f.start + len(f.raw) and f.raw
        offset = f.end


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_lines_blanks_crlf_bom_and_an_unterminated_last_line(mode: str) -> None:
    data = (
        b'\xef\xbb\xbf{"a":1}\n'  # a BOM: part of the first frame's bytes, not of its text
        b"\n"  # an empty line
        b" \t\r\n"  # whitespace only, CRLF: blank
        b'{"b":"\xc3\xa9"}\r\n'  # CRLF: the CR is part of the line ending
        b"not json\n"  # framed all the same: the consumer judges
        b'{"c":\xff}\n'  # bad UTF-8 replaced in the text, kept in the bytes
        b'{"last":true}'  # no LF: a line once the stream ends
    )
    result = feed_all([data] if mode == "whole" else bytewise(data))
    f = result.frames
    assert [type(x) for x in f] == [Line, Blank, Blank, Line, Line, Line, Line]
    assert f[0] == Line(b'\xef\xbb\xbf{"a":1}\n', 0, '{"a":1}')
    assert f[1] == Blank(b"\n", f[0].end)
    assert f[2] == Blank(b" \t\r\n", f[1].end)
    assert f[3] == Line(b'{"b":"\xc3\xa9"}\r\n', f[2].end, '{"b":"é"}')
    assert f[4].text == "not json"  # type: ignore[union-attr]
    assert f[5].text == '{"c":\ufffd}'  # type: ignore[union-attr]
    assert f[6] == Line(b'{"last":true}', f[5].end, '{"last":true}')
    assert not f[6].terminated and f[5].terminated  # type: ignore[union-attr]
    assert result.tail == b""
    assert_lossless(data, result)
    assert [json.loads(x.text) for x in result.lines[:2]] == [{"a": 1}, {"b": "é"}]


def test_a_line_is_a_frame_only_once_its_lf_is_here() -> None:
    p = NDJSONParser()
    assert p.feed(b'{"a"') == [] and p.tail == b'{"a"' and p.offset == 0
    assert p.feed(b":1}") == []
    (line,) = p.feed(b'\n{"b')
    assert line == Line(b'{"a":1}\n', 0, '{"a":1}') and p.tail == b'{"b' and p.offset == 8
    assert p.flush() == [Line(b'{"b', 8, '{"b')]  # what a consumer reads at the end: a line
    assert p.flush() == [] and p.tail == b""
    with pytest.raises(RuntimeError):
        p.feed(b"x")


def test_a_blank_unterminated_end_stays_in_the_tail() -> None:
    result = parse([b'{"a":1}\n', b"  "])
    assert result.lines == (Line(b'{"a":1}\n', 0, '{"a":1}'),) and result.tail == b"  "
    assert parse(b"").frames == () and parse(b"").tail == b""
    assert parse(b"\xef\xbb\xbf").tail == b"\xef\xbb\xbf"  # a BOM alone is no line


def test_a_bom_split_across_chunks_is_the_same_bom() -> None:
    data = b'\xef\xbb\xbf{"a":1}\n'
    for cut in range(1, 4):
        assert feed_all([data[:cut], data[cut:]]) == feed_all([data])
    # only the stream's first bytes: a BOM later is text
    (one, two) = parse(b"{}\n\xef\xbb\xbf{}\n").lines
    assert one.text == "{}" and two.text == "\ufeff{}"


def test_feeding_is_linear_in_the_input() -> None:
    """A long line fed a byte at a time: the incomplete line grows in place and only new bytes
    are searched, so 200,000 one-byte feeds end at once (a parser that copied or searched the
    incomplete line on every feed would touch 2e10 bytes here)."""
    p = NDJSONParser()
    for _ in range(200_000):
        p.feed(b"x")
    (line,) = p.feed(b"\n")
    assert len(line.raw) == 200_001


# ---------------------------------------------------------------------------------------------
# the fuzz rule


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=12))
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in pairwise(points)]


_LINE = st.one_of(
    st.sampled_from([b'{"a":1}', b"[1,2]", b"", b" ", b"\t", b"\r", b"x", b"\xef\xbb\xbf{}"]),
    st.binary(max_size=8),
)
_END = st.sampled_from([b"\n", b"\r\n", b"\r", b""])


@st.composite
def ndjson_like(draw: st.DrawFn) -> bytes:
    return b"".join(draw(_LINE) + draw(_END) for _ in range(draw(st.integers(0, 12))))


def same_for_any_chunking(
    data: bytes, chunks: list[bytes], feed_all: Callable[[Iterable[bytes]], Any], parse: Any
) -> Any:
    """``data`` through a parser whole, in ``chunks``, one byte at a time (``feed_all``) and by
    its ``parse``: the same, lossless frames each way. The frames of the whole."""
    whole = feed_all([data])
    assert_lossless(data, whole)
    assert feed_all(chunks) == whole
    assert feed_all(bytewise(data)) == whole
    assert parse(data) == whole == parse(chunks)
    return whole


def _check_invariant(data: bytes, chunks: list[bytes]) -> None:
    whole = same_for_any_chunking(data, chunks, feed_all, parse)
    # a frame holds at most one LF, at its end; a tail holds none and only whitespace
    for f in whole.frames:
        assert b"\n" not in f.raw[:-1]
    assert b"\n" not in whole.tail and not whole.tail.strip(b" \t\r\xef\xbb\xbf")


@settings(deadline=None)  # a loaded machine: no per-example time limit
@given(st.data())
def test_any_bytes_any_chunking(data: st.DataObject) -> None:
    body = data.draw(st.binary(max_size=300))
    _check_invariant(body, data.draw(chunkings(body)))


@settings(deadline=None)  # a loaded machine: no per-example time limit
@given(st.data())
def test_ndjson_like_bytes_any_chunking(data: st.DataObject) -> None:
    body = data.draw(ndjson_like())
    _check_invariant(body, data.draw(chunkings(body)))


@settings(deadline=None)  # a loaded machine: no per-example time limit
@given(st.lists(st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4))))
def test_json_values_one_per_line_come_back(values: list[dict[str, object]]) -> None:
    body = b"".join(json.dumps(v).encode() + b"\n" for v in values)
    assert [json.loads(line.text) for line in parse(body).lines] == values


# ---------------------------------------------------------------------------------------------
# the reconstructed Ollama streams (tests/fixtures/providers; see PROVENANCE.md there)

_SHA = re.compile(r"`(ollama/[\w.]+\.ndjson)`.*?sha256\s+`([0-9a-f]{64})`", re.S)


def test_every_ndjson_fixture_has_provenance() -> None:
    text = (PROVIDERS / "PROVENANCE.md").read_text("utf-8")
    on_disk = {p.relative_to(PROVIDERS).as_posix() for p in PROVIDERS.rglob("*.ndjson")}
    assert on_disk == {
        "ollama/chat.reconstructed.ndjson",
        "ollama/generate.reconstructed.ndjson",
        "ollama/error_midstream.reconstructed.ndjson",
    }
    for name in on_disk:
        assert f"`{name}`" in text and "RECONSTRUCTED" in text


@pytest.mark.parametrize(
    ("name", "sha", "lines"),
    [
        ("chat", "4075fb647f826b942a2b3f5f43c690c1e68461eacb8b1d0280ce55e5cd398099", 29),
        ("generate", "10eec375928c15ca29143c957197b8396fe0355d4e4036e590cf528d7782a805", 29),
        ("error_midstream", "e293b5398ee1d72972d55a7b08f2f6f157ec07b54c8f9bc60bc24e4a1305669f", 5),
    ],
)
def test_ollama_fixture(name: str, sha: str, lines: int) -> None:
    data = (PROVIDERS / "ollama" / f"{name}.reconstructed.ndjson").read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha
    assert sha in (PROVIDERS / "PROVENANCE.md").read_text("utf-8")
    whole = feed_all([data])
    assert len(whole.lines) == lines and whole.tail == b"" and whole.frames == whole.lines
    assert_lossless(data, whole)
    assert feed_all(bytewise(data)) == whole
    values = [json.loads(line.text) for line in whole.lines]
    if name == "error_midstream":
        assert values[-1] == {"error": "an error was encountered while running the model"}
        return
    # Go's field order (api/types.go) and the last line's done
    first = list(values[0])
    assert first == ["model", "created_at", "message" if name == "chat" else "response", "done"]
    assert [v["done"] for v in values] == [False] * (lines - 1) + [True]
    assert values[-1]["done_reason"] == "stop"
