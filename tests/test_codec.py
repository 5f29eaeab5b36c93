"""Tests for cassette files (ssevcr._format, ssevcr._store): msgpack round trip, the JSON twin,
damaged input, migrations, atomic saves and concurrent appends.

The rule for readers, as in h11's fuzzing: any input either loads or raises exactly
CassetteError naming the file; nothing else escapes.
"""

from __future__ import annotations

import copy
import json
import math
import multiprocessing
import os
import struct
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssevcr import _format, _store
from ssevcr._cassette import Cassette, End, Interaction, Outcome, Request, Response
from ssevcr._errors import CassetteError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# a real cassette


def _provider_body() -> bytes:
    return (FIXTURES / "providers" / "anthropic" / "text.sse").read_bytes()


def real_cassette() -> Cassette:
    body = _provider_body()
    cuts = [0, 17, 18, 300, 301, 302, 700, len(body)]
    ats = [0.4, 0.4125, 0.425, 0.4375, 0.45, 0.4625, 0.475]
    chunks = [(at, body[a:b]) for at, (a, b) in zip(ats, pairwise(cuts), strict=True)]
    stream = Interaction(
        request=Request(
            "POST",
            "https://api.anthropic.com/v1/messages",
            (("content-type", "application/json"), ("x-api-key", "REDACTED")),
            b'{"model":"claude","stream":true}',
        ),
        response=Response.from_chunks(
            200,
            chunks,
            reason="OK",
            headers=(("content-type", "text/event-stream; charset=utf-8"), ("x-odd", "caf\xe9")),
            headers_at=0.3999,
            end=End(0.6, Outcome.COMPLETE),
        ),
        meta={"recorded_by": "test"},
    )
    error = Interaction(
        request=Request("GET", "http://localhost/v1/models?key=REDACTED"),
        response=Response.from_chunks(
            529,
            [(0.01, b"\x1f\x8b\x08\x00binary\xff")],
            reason="Overloaded",
            end=End(0.02, Outcome.UPSTREAM_ERROR, "connection reset by peer"),
        ),
    )
    return Cassette((stream, error), meta={"ssevcr": "0.1.0"})


REAL = real_cassette()
REAL_BYTES = _format.dumps(REAL)


def doc_of(cassette: Cassette = REAL) -> dict[str, Any]:
    """The decoded msgpack document, for editing into wrong shapes."""
    doc: dict[str, Any] = msgpack.unpackb(_format.dumps(cassette), raw=False)
    return doc


def pack(doc: object) -> bytes:
    return msgpack.packb(doc, use_bin_type=True)  # type: ignore[no-any-return]


def refused(data: bytes, path: str = "broken.msgpack") -> CassetteError:
    """loads must raise CassetteError (never anything else) that names the file."""
    with pytest.raises(CassetteError) as info:
        _format.loads(data, path=path)
    assert info.type is CassetteError
    assert info.value.path == path
    assert repr(path) in str(info.value)
    return info.value


def loads_or_refuses(data: bytes) -> None:
    try:
        _format.loads(data, path="x.msgpack")
    except CassetteError as e:
        assert e.path == "x.msgpack"


def test_real_cassette_round_trips() -> None:
    assert _format.loads(REAL_BYTES) == REAL
    assert _format.import_json(_format.export_json(REAL)) == REAL
    assert len(list(_format.loads(REAL_BYTES).interactions[0].response.chunks)) == 7
    # the binary body of the 529 goes to the JSON twin as base64
    assert '"data_b64"' in _format.export_json(REAL)


# ---------------------------------------------------------------------------------------------
# hypothesis round trip

latin1 = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=12)
headers = st.lists(st.tuples(latin1, latin1), max_size=4).map(tuple)
# a response head is written by the replay server: names are tokens, values hold no controls
tokens = st.text(alphabet="-!#$%&'*+.^_`|~0123456789abcXYZ", min_size=1, max_size=12)
field_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=255, blacklist_characters="\x7f"),
    max_size=12,
)
response_headers = st.lists(st.tuples(tokens, field_text), max_size=4).map(tuple)
texts = st.text(max_size=12)
metas = st.dictionaries(texts, texts, max_size=3)
special_times = st.sampled_from(
    [0.0, 5e-324, 1e-9, 1e-6, 0.1, 1 / 3, 1e9, 1e300, 1.7976931348623157e308]
)
times = st.one_of(special_times, st.floats(min_value=0.0, allow_nan=False, allow_infinity=False))
bodies = st.one_of(st.binary(max_size=64), texts.map(lambda s: s.encode("utf-8")))


@st.composite
def responses(draw: st.DrawFn) -> Response:
    pieces = draw(st.lists(bodies, max_size=6))
    ats = sorted(draw(st.lists(times, min_size=len(pieces), max_size=len(pieces))))
    return Response.from_chunks(
        draw(st.integers(100, 599)),
        list(zip(ats, pieces, strict=True)),
        reason=draw(field_text),
        http_version=draw(st.sampled_from(["HTTP/1.1", "HTTP/2", "HTTP/1.0", ""])),
        headers=draw(response_headers),
        headers_at=draw(times),
        end=End(draw(times), draw(st.sampled_from(list(Outcome))), draw(st.none() | texts)),
    )


requests = st.builds(
    Request,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]) | texts,
    url=texts | st.just("https://api.openai.com/v1/chat/completions?x=1&y=%20"),
    headers=headers,
    body=bodies,
)
interactions = st.builds(Interaction, request=requests, response=responses(), meta=metas)
cassettes = st.builds(
    Cassette, interactions=st.lists(interactions, max_size=3).map(tuple), meta=metas
)


@FAST
@given(cassettes)
def test_round_trip(cassette: Cassette) -> None:
    data = _format.dumps(cassette)
    assert _format.loads(data) == cassette
    text = _format.export_json(cassette)
    back = _format.import_json(text)
    assert back == cassette
    assert _format.dumps(back) == data  # byte-identical through the JSON twin
    assert _format.import_json(text.encode("utf-8")) == cassette


# ---------------------------------------------------------------------------------------------
# damaged files


def test_empty() -> None:
    e = refused(b"")
    assert "empty" in e.problem


def test_every_truncation_of_a_real_cassette_is_refused() -> None:
    for n in range(len(REAL_BYTES)):
        refused(REAL_BYTES[:n])


def test_trailing_garbage_is_refused() -> None:
    refused(REAL_BYTES + b"\x00")


@FAST
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    loads_or_refuses(data)


@FAST
@given(st.binary(max_size=40), st.integers(0, len(REAL_BYTES) - 1), st.integers(0, 255))
def test_damaged_real_cassette(junk: bytes, pos: int, byte: int) -> None:
    flipped = bytearray(REAL_BYTES)
    flipped[pos] = byte
    loads_or_refuses(bytes(flipped))
    loads_or_refuses(REAL_BYTES[:pos] + junk + REAL_BYTES[pos:])


def test_msgpack_of_the_wrong_shape() -> None:
    assert refused(pack([1, 2, 3])).where == "(top level)"
    assert refused(pack("ssevcr")).where == "(top level)"
    assert refused(pack(None)).where == "(top level)"
    assert refused(pack({1: 2})).path == "broken.msgpack"  # non-text map keys
    assert refused(pack({"format": "vcrpy", "version": 1, "interactions": []})).where == "format"
    assert refused(pack({"version": 1, "interactions": []})).where == "format"
    assert refused(pack({"format": b"ssevcr", "version": 1, "interactions": []})).where == "format"
    for version in ("1", 1.0, True, None, -1, [1]):
        assert (
            refused(pack({"format": "ssevcr", "version": version, "interactions": []})).where
            == "version"
        )
    assert refused(pack({"format": "ssevcr", "interactions": []})).where == "version"


def test_newer_version_is_refused_clearly() -> None:
    doc = doc_of()
    doc["version"] = _format.VERSION + 1
    e = refused(pack(doc))
    assert e.where == "version"
    assert "newer" in e.problem and "upgrade" in e.problem


# Which types each field accepts; any other type must be refused naming exactly that field.
_I = "interactions[0]"
_Q = f"{_I}.request"
_R = f"{_I}.response"
FIELDS: dict[str, tuple[type, ...]] = {
    "meta": (dict,),
    "interactions": (list,),
    _I: (dict,),
    f"{_I}.meta": (dict,),
    _Q: (dict,),
    f"{_Q}.method": (str,),
    f"{_Q}.url": (str,),
    f"{_Q}.headers": (list,),
    f"{_Q}.headers[0]": (list,),
    f"{_Q}.body": (bytes,),
    _R: (dict,),
    f"{_R}.status": (int,),
    f"{_R}.reason": (str,),
    f"{_R}.http_version": (str,),
    f"{_R}.headers": (list,),
    f"{_R}.headers[0]": (list,),
    f"{_R}.headers_at": (int, float),
    f"{_R}.body": (bytes,),
    f"{_R}.chunk_sizes": (bytes,),
    f"{_R}.chunk_at": (bytes,),
    f"{_R}.end": (dict,),
    f"{_R}.end.at": (int, float),
    f"{_R}.end.outcome": (str,),
    f"{_R}.end.error": (str, type(None)),
}
OPTIONAL = {
    "meta",
    f"{_I}.meta",
    f"{_Q}.headers",
    f"{_Q}.body",
    f"{_R}.reason",
    f"{_R}.http_version",
    f"{_R}.headers",
    f"{_R}.end.error",
}
# a missing response body is an empty one, which the chunk table then contradicts
MISSING_BLAMES = {f"{_R}.body": f"{_R}.chunk_sizes"}
WRONG_VALUES: list[object] = [
    None,
    True,
    7,
    1.5,
    "text",
    b"bytes",
    [],
    {},
    [["a", "b"]],
    {"k": "v"},
]


def _locate(doc: dict[str, Any], path: str) -> tuple[Any, str | int]:
    """The container and key of a dotted path like ``interactions[0].request.headers[0]``."""
    parts: list[str | int] = []
    for name in path.split("."):
        base, *indexes = name.split("[")
        parts.append(base)
        parts += [int(i.rstrip("]")) for i in indexes]
    node: Any = doc
    for p in parts[:-1]:
        node = node[p]
    return node, parts[-1]


def _type_ok(value: object, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


@pytest.mark.parametrize("field", list(FIELDS))
def test_each_field_of_the_wrong_type(field: str) -> None:
    for value in WRONG_VALUES:
        doc = doc_of()
        node, key = _locate(doc, field)
        node[key] = copy.deepcopy(value)
        data = pack(doc)
        if _type_ok(value, FIELDS[field]):
            loads_or_refuses(data)  # right type, maybe a wrong value: either is fine here
        else:
            e = refused(data)
            assert e.where == field, (value, e)


@pytest.mark.parametrize("field", [f for f in FIELDS if not f.endswith("]")])
def test_each_field_missing(field: str) -> None:
    doc = doc_of()
    node, key = _locate(doc, field)
    del node[key]
    if field in OPTIONAL:
        _format.loads(pack(doc))
    elif field in MISSING_BLAMES:
        assert refused(pack(doc)).where == MISSING_BLAMES[field]
    else:
        e = refused(pack(doc))
        assert e.where == field
        assert "missing" in e.problem


def test_meta_must_map_text_to_text() -> None:
    for meta, where in [({"k": 1}, "meta.k"), ({"k": None}, "meta.k"), ({b"k": "v"}, "meta")]:
        doc = doc_of()
        doc["meta"] = meta
        assert refused(pack(doc)).where == where


def test_headers_must_be_latin1_pairs() -> None:
    for pair in (
        ["a"],
        ["a", "b", "c"],
        ["a", 1],
        [b"a", "b"],
        ["a", "\u2026"],
        ["\U0001f600", "v"],
    ):
        doc = doc_of()
        doc["interactions"][0]["request"]["headers"][0] = pair
        assert refused(pack(doc)).where == f"{_Q}.headers[0]"


def test_status_out_of_range() -> None:
    for status in (0, 99, 1000, -200, 2**63):
        doc = doc_of()
        doc["interactions"][0]["response"]["status"] = status
        assert refused(pack(doc)).where == f"{_R}.status"


def test_chunk_tables_inconsistent_with_body() -> None:
    def edit(change: Callable[[dict[str, Any]], None]) -> CassetteError:
        doc = doc_of()
        change(doc["interactions"][0]["response"])
        return refused(pack(doc))

    def sizes(r: dict[str, Any]) -> list[int]:
        return list(struct.unpack(f"<{len(r['chunk_sizes']) // 4}I", r["chunk_sizes"]))

    def ats(r: dict[str, Any]) -> list[float]:
        return list(struct.unpack(f"<{len(r['chunk_at']) // 8}d", r["chunk_at"]))

    assert edit(lambda r: r.update(chunk_sizes=r["chunk_sizes"][:-1])).where == f"{_R}.chunk_sizes"
    assert edit(lambda r: r.update(chunk_at=r["chunk_at"][:-3])).where == f"{_R}.chunk_sizes"
    assert edit(lambda r: r.update(chunk_at=r["chunk_at"][:-8])).where == f"{_R}.chunk_at"
    assert edit(lambda r: r.update(body=r["body"][:-1])).where == f"{_R}.chunk_sizes"
    assert edit(lambda r: r.update(body=r["body"] + b"x")).where == f"{_R}.chunk_sizes"

    def bump_size(r: dict[str, Any]) -> None:
        s = sizes(r)
        s[0] += 1
        r["chunk_sizes"] = struct.pack(f"<{len(s)}I", *s)

    assert edit(bump_size).where == f"{_R}.chunk_sizes"

    for i, bad in [(3, 0.0), (0, -1.0), (2, math.nan), (5, math.inf), (1, -math.inf), (0, -5e-324)]:

        def set_at(r: dict[str, Any], i: int = i, bad: float = bad) -> None:
            a = ats(r)
            a[i] = bad
            r["chunk_at"] = struct.pack(f"<{len(a)}d", *a)

        assert edit(set_at).where == f"{_R}.chunk_at[{i}]"


def test_times_must_be_finite_and_not_negative() -> None:
    for field in (f"{_R}.headers_at", f"{_R}.end.at"):
        for bad in (math.nan, math.inf, -math.inf, -0.5, -1):
            doc = doc_of()
            node, key = _locate(doc, field)
            node[key] = bad
            assert refused(pack(doc)).where == field


def test_bad_outcome() -> None:
    for outcome in ("COMPLETE", "", "timeout", "complete "):
        doc = doc_of()
        doc["interactions"][0]["response"]["end"]["outcome"] = outcome
        e = refused(pack(doc))
        assert e.where == f"{_R}.end.outcome"
        assert "client_disconnected" in e.problem  # lists what is allowed


def test_deeply_nested_values_are_refused_not_crashing() -> None:
    # 1000 nested one-element arrays around "x", spliced in by hand: msgpack < 1.2 (which
    # mitmproxy 12.2 pins) refuses to pack more than 511 levels
    marker = "\x00ssevcr-deep\x00"
    deep = b"\x91" * 1000 + pack("x")
    for field in ("format", "version", f"{_Q}.headers[0]", "meta"):
        doc = doc_of()
        node, key = _locate(doc, field)
        node[key] = marker
        data = pack(doc)
        assert data.count(pack(marker)) == 1
        refused(data.replace(pack(marker), deep))
    refused(b"\x91" * 5000)  # 5000 nested one-element arrays


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.msgpack"
    with pytest.raises(CassetteError) as info:
        _store.load(missing)
    assert info.value.path == str(missing) and "no such file" in info.value.problem
    with pytest.raises(CassetteError) as info:
        _store.load(tmp_path)
    assert info.value.path == str(tmp_path)
    with pytest.raises(CassetteError):
        _store.read_any(missing)
    with pytest.raises(CassetteError):
        _store.read_any(tmp_path)
    empty = tmp_path / "empty.msgpack"
    empty.write_bytes(b"")
    with pytest.raises(CassetteError) as info:
        _store.load(empty)
    assert info.value.path == str(empty) and "empty" in info.value.problem


def test_load_names_the_file_for_every_truncation(tmp_path: Path) -> None:
    path = tmp_path / "cut.msgpack"
    for n in range(0, len(REAL_BYTES), 97):
        path.write_bytes(REAL_BYTES[:n])
        with pytest.raises(CassetteError) as info:
            _store.load(path)
        assert info.value.path == str(path)


# ---------------------------------------------------------------------------------------------
# the JSON twin


def _line_of(text: str, needle: str) -> int:
    [number] = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return number


def _json_refused(text: str | bytes, path: str = "c.json") -> CassetteError:
    with pytest.raises(CassetteError) as info:
        _format.import_json(text, path=path)
    assert info.type is CassetteError
    assert info.value.path == path
    return info.value


@pytest.mark.parametrize(
    ("needle", "old", "new", "where"),
    [
        ('"method": "POST"', '"method": "POST"', '"method": 5', f"{_Q}.method"),
        ('"status": 200', '"status": 200', '"status": "200"', f"{_R}.status"),
        ('"headers_at": 0.3999', "0.3999", "-0.3999", f"{_R}.headers_at"),
        ('"headers_at": 0.3999', "0.3999", '"soon"', f"{_R}.headers_at"),
        (
            '"content-type", "text/event-stream',
            '["x-odd", "caf\u00e9"]',
            '["x-odd"]',
            f"{_R}.headers[1]",
        ),
        ('"at": 0.4125', '"at": 0.4125', '"at": 0.1', f"{_R}.chunks[1].at"),
        ('"at": 0.4375', '"data":', '"dat":', f"{_R}.chunks[3]"),
        (
            '"data_b64"',
            '"data_b64": "',
            '"data_b64": "!',
            "interactions[1].response.chunks[0].data_b64",
        ),
        (
            '"outcome": "upstream_error"',
            '"upstream_error"',
            '"failed"',
            "interactions[1].response.end.outcome",
        ),
        ('"outcome": "complete"', '"at": 0.6', '"at": null', f"{_R}.end.at"),
        ('"recorded_by"', '"test"', "1", f"{_I}.meta.recorded_by"),
    ],
)
def test_json_bad_field_names_field_and_line(needle: str, old: str, new: str, where: str) -> None:
    text = _format.export_json(REAL)
    line = _line_of(text, needle)
    lines = text.splitlines(keepends=True)
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    e = _json_refused("".join(lines))
    assert (e.where, e.line) == (where, line)
    assert f"line {line}:" in str(e) and where in str(e)


def test_json_of_any_layout_names_the_line_of_the_field() -> None:
    # a twin edited by hand or written by another tool: indented differently, keys repeated
    doc = json.loads(_format.export_json(REAL))
    doc["interactions"][1]["response"]["chunks"][0]["at"] = "soon"
    text = json.dumps(doc, indent=4)
    e = _json_refused(text)
    assert e.where == "interactions[1].response.chunks[0].at"
    assert '"at": "soon"' in text.splitlines()[e.line - 1]  # type: ignore[operator]
    # the last of duplicate keys is the one json.loads keeps, and the one named
    one_line = json.dumps(doc)
    assert _json_refused(one_line).line == 1
    twice = text.replace('"at": "soon"', '"at": "soon",\n"at": -1', 1)
    e = _json_refused(twice)
    assert "-1" in twice.splitlines()[e.line - 1]  # type: ignore[operator]
    # a missing field: the line of the object that lacks it
    del doc["interactions"][0]["response"]["end"]
    text = json.dumps(doc, indent=2)
    e = _json_refused(text)
    assert e.where == f"{_R}.end" and e.problem == "missing"
    assert '"response": {' in text.splitlines()[e.line - 1]  # type: ignore[operator]


def test_json_invalid_names_the_line() -> None:
    text = _format.export_json(REAL)
    line = _line_of(text, '"at": 0.4375')
    lines = text.splitlines(keepends=True)
    lines[line - 1] = lines[line - 1].replace('"at"', "at", 1)
    e = _json_refused("".join(lines))
    assert e.line == line and "not valid JSON" in e.problem
    assert _json_refused(text[: len(text) // 2]).line is not None
    assert _json_refused("").line == 1


def test_json_of_the_wrong_kind() -> None:
    assert "UTF-8" in _json_refused(b'{"format": "ssevcr", "x": "\xff"}').problem
    assert _json_refused("[]").where == "(top level)"
    assert (
        _json_refused(
            f'{{"format": "ssevcr", "version": {_format.VERSION + 1}, "interactions": []}}'
        ).where
        == "version"
    )
    # numbers Python parses but cannot use: a 400-digit time, a 5000-digit integer, NaN
    text = _format.export_json(REAL)
    for bad in ("1" + "0" * 400, "1" + "0" * 5000, "NaN", "Infinity", "1e400", "true"):
        e = _json_refused(text.replace('"headers_at": 0.3999', f'"headers_at": {bad}', 1))
        assert e.where in (f"{_R}.headers_at", "")


def test_json_text_that_is_not_unicode() -> None:
    # JSON can spell lone surrogates; they cannot be encoded, so they must be refused on import
    text = _format.export_json(REAL)
    for old, new, where in [
        ('"method": "POST"', '"method": "P\\ud800"', f"{_Q}.method"),
        ('"body": "{', '"body": "\\udc00{', f"{_Q}.body"),
        ('"data": "event', '"data": "\\ud83d event', f"{_R}.chunks[0].data"),
        ('"reason": "OK"', '"reason": "\\udfff"', f"{_R}.reason"),
        ('"recorded_by": "test"', '"recorded_by": "\\ud800"', f"{_I}.meta.recorded_by"),
        ('"recorded_by": "test"', '"\\ud800": "test"', f"{_I}.meta"),
    ]:
        assert old in text
        assert _json_refused(text.replace(old, new, 1)).where == where


def test_json_deep_nesting_is_refused() -> None:
    text = _format.export_json(REAL)
    for depth in (100, 900, 100_000):
        deep = "[" * depth + "]" * depth
        _json_refused(text.replace('"headers_at": 0.3999', f'"headers_at": {deep}', 1))
        _json_refused(text.replace('"recorded_by": "test"', f'"recorded_by": {deep}', 1))


@FAST
@given(st.text(max_size=200))
def test_json_random_text(text: str) -> None:
    try:
        _format.import_json(text, path="r.json")
    except CassetteError as e:
        assert e.path == "r.json"


@FAST
@given(
    st.integers(0, 10_000),
    st.sampled_from(['"', "{", "}", "[", "]", ",", ":", "1", "-", "\\", " "]),
)
def test_json_damaged_twin(pos: int, char: str) -> None:
    text = _format.export_json(REAL)
    pos %= len(text)
    for damaged in (text[:pos] + char + text[pos:], text[:pos] + text[pos + 1 :], text[:pos]):
        try:
            _format.import_json(damaged, path="d.json")
        except CassetteError as e:
            assert e.path == "d.json"


def test_read_any_tells_the_formats_apart(tmp_path: Path) -> None:
    mp, js = tmp_path / "c.msgpack", tmp_path / "c.json"
    _store.save(REAL, mp)
    js.write_text("\n  " + _format.export_json(REAL), "utf-8")
    assert _store.read_any(mp) == REAL
    assert _store.read_any(js) == REAL


# ---------------------------------------------------------------------------------------------
# migrations


def test_migration_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    old = doc_of()
    old["version"] = 0
    for inter in old["interactions"]:  # pretend version 0 called the response "reply"
        inter["reply"] = inter.pop("response")
    data = pack(old)

    e = refused(data)  # no migration registered: refused clearly
    assert e.where == "version" and "version 0 is not supported" in e.problem

    seen: list[int] = []

    def convert_0_to_1(doc: dict[str, Any]) -> dict[str, Any]:
        seen.append(doc["version"])
        for inter in doc["interactions"]:
            inter["response"] = inter.pop("reply")
        return {**doc, "version": 1}

    monkeypatch.setitem(_format.MIGRATIONS, 0, convert_0_to_1)
    assert _format.loads(data) == REAL
    assert seen == [0]


def test_failing_or_bad_migration_is_a_cassette_error(monkeypatch: pytest.MonkeyPatch) -> None:
    old = doc_of()
    old["version"] = 0

    def broken(doc: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("reply")

    monkeypatch.setitem(_format.MIGRATIONS, 0, broken)
    e = refused(pack(old))
    assert e.where == "version" and "migrating from version 0 failed" in e.problem

    for result in (None, [], "x"):
        monkeypatch.setitem(_format.MIGRATIONS, 0, lambda doc, result=result: result)
        refused(pack(old))


def test_migrations_chain_and_a_gap_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # pretend the current version is 4: a version-2 file goes through MIGRATIONS[2] and [3]
    assert msgpack.unpackb(REAL_BYTES)["version"] == 2
    monkeypatch.setattr(_format, "VERSION", 4)
    steps: list[int] = []

    def step(n: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def convert(doc: dict[str, Any]) -> dict[str, Any]:
            steps.append(n)
            return doc

        return convert

    monkeypatch.setitem(_format.MIGRATIONS, 2, step(2))
    e = refused(REAL_BYTES)
    assert e.where == "version" and "version 3 is not supported (no migration to 4)" in e.problem
    monkeypatch.setitem(_format.MIGRATIONS, 3, step(3))
    steps.clear()
    assert _format.loads(REAL_BYTES) == REAL
    assert steps == [2, 3]


# ---------------------------------------------------------------------------------------------
# atomic save


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_save_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    _store.save(REAL, path)
    _store.save(REAL.append(REAL.interactions[0]), path)
    assert _listing(tmp_path) == ["c.msgpack"]
    assert len(_store.load(path)) == 3
    _store.save(REAL, tmp_path / "new" / "dir" / "c.msgpack")  # parents are created
    assert _store.load(tmp_path / "new" / "dir" / "c.msgpack") == REAL


def test_save_gives_the_usual_file_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "c.msgpack"
    _store.save(REAL, path)  # a new file: what open() would give, not mkstemp's 0600
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    path.chmod(0o640)
    _store.save(Cassette(), path)  # replacing a file keeps its mode
    assert path.stat().st_mode & 0o777 == 0o640
    assert _store.load(path) == Cassette()


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_failed_save_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "c.msgpack"
    _store.save(REAL, path)
    before = path.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    if failing == "write":
        real_fdopen = os.fdopen

        class Failing:
            def __init__(self, f: Any) -> None:
                self.f = f

            def __enter__(self) -> Failing:
                return self

            def __exit__(self, *exc: object) -> None:
                self.f.close()

            def write(self, data: bytes) -> None:
                self.f.write(data[:3])  # part of the data, then the disk fills up
                boom()

        monkeypatch.setattr(_store.os, "fdopen", lambda fd, mode: Failing(real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(_store.os, failing, boom)
    with pytest.raises(CassetteError) as info:
        _store.save(Cassette(), path)
    assert info.value.path == str(path) and "No space left" in info.value.problem
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _store.load(path) == REAL
    assert _listing(tmp_path) == ["c.msgpack"]


def test_interrupted_save_removes_its_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.msgpack"
    _store.save(REAL, path)

    def interrupt(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_store.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _store.save(Cassette(), path)
    monkeypatch.undo()
    assert _listing(tmp_path) == ["c.msgpack"]
    assert _store.load(path) == REAL


def test_save_where_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    for target in (blocker / "c.msgpack", tmp_path):  # parent is a file; target is a directory
        with pytest.raises(CassetteError) as info:
            _store.save(REAL, target)
        assert info.value.path == str(target)
    assert blocker.read_bytes() == b"not a directory"
    assert _listing(tmp_path) == ["file"]


def _append_worker(path: str, worker: int, count: int) -> None:
    for n in range(count):
        inter = Interaction(
            Request("POST", f"http://x/{worker}/{n}"),
            Response.from_chunks(200, [(0.0, f"data: {worker}-{n}\n\n".encode())]),
            meta={"worker": str(worker), "n": str(n)},
        )
        _store.update(path, lambda c, inter=inter: c.append(inter), fsync=False)


def test_concurrent_update_loses_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.msgpack")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_worker, args=(path, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cassette = _store.load(path)
    assert len(cassette) == 100
    seen = [(i.meta["worker"], int(i.meta["n"])) for i in cassette.interactions]
    assert len(set(seen)) == 100
    for w in range(4):  # each worker's appends stay in its order
        assert [n for worker, n in seen if worker == str(w)] == list(range(25))
    # no temp files left, and the lock lives outside the cassette folder (nothing to commit by
    # mistake)
    assert sorted(p for p in _listing(tmp_path)) == ["shared.msgpack"]
    assert os.path.exists(_store.lock_path(path))


def test_lock_is_per_real_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    one = _store.lock_path(tmp_path / "real" / "c.msgpack")
    assert one == _store.lock_path(tmp_path / "link" / "c.msgpack")
    assert one != _store.lock_path(tmp_path / "real" / "d.msgpack")
    assert not one.startswith(str(tmp_path))


def test_update_starts_empty_and_returns_what_it_saved(tmp_path: Path) -> None:
    path = tmp_path / "u.msgpack"
    new = _store.update(path, lambda c: c.append(REAL.interactions[1]))
    assert new == _store.load(path) == Cassette((REAL.interactions[1],))
    with pytest.raises(CassetteError):  # a damaged file is not silently replaced
        path.write_bytes(b"\xc1")
        _store.update(path, lambda c: c)
    assert path.read_bytes() == b"\xc1"


# ---------------------------------------------------------------------------------------------
# size


def _many_chunks(n: int) -> Iterator[tuple[float, bytes]]:
    for i in range(n):
        yield i * 1e-4, b'data: {"i":%d}\n\n' % i


def test_a_100k_chunk_cassette_loads(tmp_path: Path) -> None:
    response = Response.from_chunks(
        200, list(_many_chunks(100_000)), headers=(("content-type", "text/event-stream"),)
    )
    cassette = Cassette((Interaction(Request("POST", "http://x/v1/chat/completions"), response),))
    path = tmp_path / "big.msgpack"
    _store.save(cassette, path)
    loaded = _store.load(path)
    assert loaded == cassette
    chunks = list(loaded.interactions[0].response.chunks)
    assert len(chunks) == 100_000
    assert chunks[-1].data == b'data: {"i":99999}\n\n' and chunks[-1].at == 99_999 * 1e-4


def test_json_shape_matches_the_design() -> None:
    doc = json.loads(_format.export_json(REAL))
    assert doc["format"] == "ssevcr" and doc["version"] == _format.PLAIN_VERSION
    resp = doc["interactions"][0]["response"]
    assert set(resp) == {
        "status",
        "reason",
        "http_version",
        "headers",
        "headers_at",
        "chunks",
        "end",
    }
    assert resp["chunks"][0] == {
        "at": 0.4,
        "data": REAL.interactions[0].response.body[:17].decode(),
    }
    assert doc["interactions"][1]["response"]["end"] == {
        "at": 0.02,
        "outcome": "upstream_error",
        "error": "connection reset by peer",
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chunk_at": [0.2, 0.1]},
        {"chunk_at": [0.1, float("nan")]},
        {"chunk_at": [-0.1, 0.1]},
        {"headers_at": float("inf")},
        {"end": End(-1.0)},
    ],
)
def test_the_model_refuses_times_that_could_not_be_loaded_again(kwargs: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "status": 200,
        "body": b"ab",
        "chunk_sizes": [1, 1],
        "chunk_at": [0.1, 0.2],
    }
    with pytest.raises(ValueError):
        Response(**{**base, **kwargs})


# ---------------------------------------------------------------------------------------------
# response heads that would split a response are refused at load, with the field named


@pytest.mark.parametrize(
    ("edit", "where", "problem"),
    [
        ({"reason": "OK\r\nContent-Length: 5\r\n\r\nHACKD"}, "response.reason", "reason phrase"),
        ({"reason": "OK\x00"}, "response.reason", "reason phrase"),
        ({"reason": "OK\x1b[31m"}, "response.reason", "reason phrase"),
        ({"status": 600}, "response.status", "100-599"),
        ({"status": 99}, "response.status", "100-599"),
        ({"headers": [["x-a", "1\r\nset-cookie: a=b"]]}, "response.headers[0]", "control bytes"),
        ({"headers": [["x-a", "1\nx"]]}, "response.headers[0]", "control bytes"),
        ({"headers": [["x-a", "a\x00b"]]}, "response.headers[0]", "control bytes"),
        ({"headers": [["bad name", "1"]]}, "response.headers[0]", "not a token"),
        ({"headers": [["x:y", "1"]]}, "response.headers[0]", "not a token"),
        ({"headers": [["", "1"]]}, "response.headers[0]", "not a token"),
        ({"http_version": "HTTP/1.1\r\nX: y"}, "response.http_version", "not an HTTP version"),
    ],
)
def test_a_response_head_that_could_split_a_response_is_refused(
    edit: dict[str, Any], where: str, problem: str
) -> None:
    doc = doc_of()
    doc["interactions"][1]["response"].update(edit)
    error = refused(pack(doc))
    assert error.where == f"interactions[1].{where}" and problem in error.problem
    # the JSON twin refuses it the same way, naming the line
    twin = json.loads(_format.export_json(REAL))
    twin["interactions"][1]["response"].update(edit)
    with pytest.raises(CassetteError) as info:
        _format.import_json(json.dumps(twin, indent=1))
    assert info.value.where == f"interactions[1].{where}" and info.value.line is not None
