"""The one content decoder: gzip, deflate (zlib-wrapped, raw), chunk by chunk with the arrival
times kept, and a cap on decoded bytes so a decompression bomb is reported, never inflated."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssevcr._content import DEFAULT_LIMIT, ContentDecoder, DecodeError, decode, limit_from_env

BODY = b"".join(b'data: {"n": %d, "text": "h\xc3\xa9llo"}\n\n' % i for i in range(500))


def deflate(data: bytes, wbits: int) -> bytes:
    c = zlib.compressobj(wbits=wbits)
    return c.compress(data) + c.flush()


def pieces_of(data: bytes, size: int) -> list[tuple[float, bytes]]:
    return [(i / 1000, data[i : i + size]) for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("deflate", deflate(BODY, 15)),  # zlib-wrapped, as RFC 9110 says
        ("deflate", deflate(BODY, -15)),  # raw deflate, as many servers send it
        ("deflate", gzip.compress(BODY)),  # a gzip stream labelled deflate: clients accept it
        ("identity", BODY),
        ("GZIP ", gzip.compress(BODY)),
    ],
)
@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 20])
def test_every_encoding_decodes_chunk_by_chunk(encoding: str, encoded: bytes, size: int) -> None:
    got = decode(pieces_of(encoded, size), encoding)
    assert got.ok and got.body == BODY
    # each decoded piece keeps the time of the chunk that carried it
    assert [at for at, _ in got.pieces] == [at for at, _ in pieces_of(encoded, size)]


def test_a_decompression_bomb_is_reported_not_inflated() -> None:
    # 1 GiB of zeros in about 1 MB of gzip: decoding stops at the limit
    c = zlib.compressobj(level=9, wbits=31)
    block = bytes(1 << 20)
    bomb = b"".join(c.compress(block) for _ in range(1024)) + c.flush()
    assert len(bomb) < 2 << 20
    got = decode(pieces_of(bomb, 64 << 10), "gzip")
    assert not got.ok and got.pieces == ()
    assert got.problem == "not decoded: larger than 64 MiB when decoded"
    small = decode(pieces_of(bomb, 64 << 10), "gzip", limit=1 << 20)
    assert small.problem == "not decoded: larger than 1 MiB when decoded"


def test_exactly_at_the_limit_decodes() -> None:
    data = bytes(1000)
    assert decode([(0.0, gzip.compress(data))], "gzip", limit=1000).body == data
    assert not decode([(0.0, gzip.compress(data))], "gzip", limit=999).ok


@pytest.mark.parametrize(
    ("encoding", "encoded", "problem"),
    [
        ("gzip", b"not gzip at all", "not decoded: damaged gzip data"),
        ("deflate", b"\xff\xff\xff\xff", "not decoded: damaged deflate data"),
        ("br", b"\x0b\x02\x80", "not decoded: 'br' content-encoding is not supported here"),
    ],
)
def test_what_cannot_be_decoded_says_why(encoding: str, encoded: bytes, problem: str) -> None:
    got = decode([(0.0, encoded)], encoding)
    assert not got.ok and got.problem.startswith(problem)


def test_the_decoder_raises_only_decode_error() -> None:
    d = ContentDecoder("gzip", limit=10)
    with pytest.raises(DecodeError):
        d.feed(gzip.compress(bytes(100)))


@given(st.binary(max_size=300), st.sampled_from(["gzip", "deflate", "identity"]))
def test_any_bytes_decode_or_say_why(data: bytes, encoding: str) -> None:
    got = decode(pieces_of(data, 5), encoding)
    assert got.ok or got.problem.startswith("not decoded: ")


@pytest.mark.parametrize(
    ("value", "limit"),
    [
        ("", DEFAULT_LIMIT),
        ("1000", 1000),
        ("2M", 2 << 20),
        ("1GiB", 1 << 30),
        ("3k", 3 << 10),
        ("lots", DEFAULT_LIMIT),
        ("²", DEFAULT_LIMIT),
    ],
)
def test_the_limit_from_the_environment(value: str, limit: int) -> None:
    assert limit_from_env({"SSEVCR_MAX_DECODED": value}) == limit
