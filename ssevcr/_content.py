"""Content decoding: the one decoder of ssevcr for ``content-encoding`` (gzip, deflate), incremental
and capped.

Recorded bodies stay as they came off the wire (still encoded); whoever needs the bytes underneath
(event faults, ``show``, ``audit``, stats, the recorder's summary) decodes them here, chunk by
chunk, each decoded piece keeping the arrival time of the chunk that carried it. Decoding stops at
``limit`` decoded bytes (``DEFAULT_LIMIT``, 64 MiB, unless the caller or ``SSEVCR_MAX_DECODED``
says otherwise): a 4 MB gzip body that inflates to 2 GB is reported as "not decoded: larger than
64 MiB" and the caller keeps working on the raw bytes, instead of running out of memory.

``deflate`` is read as clients read it: a zlib stream (or a gzip one), else raw deflate.
Pure: no I/O. The environment variable is read by front ends through :func:`limit_from_env`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_LIMIT",
    "ContentDecoder",
    "DecodeError",
    "Decoded",
    "decode",
    "decode_body",
    "format_size",
    "limit_from_env",
    "parse_size",
]

DEFAULT_LIMIT = 64 << 20
"""Decoded bytes at most, by default (64 MiB)."""

ENV_LIMIT = "SSEVCR_MAX_DECODED"
_ENCODINGS = ("gzip", "x-gzip", "deflate", "identity")


class DecodeError(Exception):
    """The body cannot be decoded: an unknown encoding, damaged data, or more than the limit."""


def format_size(n: int) -> str:
    """``64 MiB``, ``1.5 KiB``, ``12 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def parse_size(text: str) -> int | None:
    """A size in bytes: digits, optionally with a KiB/MiB/GiB suffix (``K``, ``KB``, ``KiB``,
    ``M``, ``G``, any case: powers of 1024); None when it is not one."""
    raw = text.strip().upper().removesuffix("IB").removesuffix("B").strip()
    if not raw:
        return None
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(raw[-1], 1)
    digits = raw[:-1].strip() if scale > 1 else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 15:
        return None
    return int(digits) * scale


def limit_from_env(environ: Mapping[str, str], default: int = DEFAULT_LIMIT) -> int:
    """The limit ``SSEVCR_MAX_DECODED`` asks for (see :func:`parse_size`); ``default`` when
    unset or not a size."""
    size = parse_size(environ.get(ENV_LIMIT, ""))
    return default if size is None else max(1, size)


class ContentDecoder:
    """Decode one encoded stream piece by piece: ``feed`` each chunk, then ``flush``. Raises
    :class:`DecodeError` for damaged data or once more than ``limit`` bytes would come out (no
    more than ``limit`` + one chunk's worth is ever held)."""

    __slots__ = ("_d", "_encoding", "_fallback", "_fed", "_limit", "_out", "_raw")

    def __init__(self, encoding: str, *, limit: int = DEFAULT_LIMIT) -> None:
        encoding = encoding.strip().lower()
        if encoding not in _ENCODINGS:
            raise DecodeError(f"not decoded: {encoding!r} content-encoding is not supported here")
        self._encoding = encoding
        self._limit = limit
        self._out = 0
        self._fed = b""  # deflate: the first bytes, kept until we know whether it is raw deflate
        self._fallback = encoding == "deflate"
        self._raw = encoding == "identity"
        wbits = 31 if encoding in ("gzip", "x-gzip") else 47  # 47: a zlib or a gzip header
        self._d = None if self._raw else zlib.decompressobj(wbits=wbits)

    def _take(self, data: bytes) -> bytes:
        d = self._d
        assert d is not None
        out = []
        while True:
            room = self._limit - self._out
            piece = d.decompress(data, room + 1)
            if len(piece) > room or d.unconsumed_tail:
                raise DecodeError(
                    f"not decoded: larger than {format_size(self._limit)} when decoded"
                )
            self._out += len(piece)
            out.append(piece)
            if not (d.eof and d.unused_data and self._encoding in ("gzip", "x-gzip")):
                return b"".join(out)
            # another gzip member follows (as gzip and clients read them: one stream), never
            # left unread: what it holds is shown, searched and counted against the limit
            data = d.unused_data
            if not b"\x1f\x8b".startswith(data[:2]):
                raise DecodeError(
                    f"not decoded: damaged gzip data ({len(data)} bytes after the stream's end)"
                )
            d = self._d = zlib.decompressobj(wbits=31)

    def feed(self, data: bytes) -> bytes:
        if self._raw:
            return data
        if not data:
            return b""
        try:
            out = self._take(data)
        except zlib.error as e:
            if not (self._fallback and self._out == 0):
                raise DecodeError(f"not decoded: damaged {self._encoding} data ({e})") from None
            # deflate without the zlib wrapper, as servers often send it: start over raw
            self._fallback = False
            self._d = zlib.decompressobj(wbits=-15)
            data, self._fed = self._fed + data, b""
            try:
                return self._take(data)
            except zlib.error as e2:
                raise DecodeError(f"not decoded: damaged deflate data ({e2})") from None
        if self._fallback:
            if self._out:
                self._fallback, self._fed = False, b""
            else:
                self._fed += data
        return out

    def flush(self) -> bytes:
        if self._d is None:
            return b""
        try:
            out = self._d.flush()
        except zlib.error as e:
            raise DecodeError(f"not decoded: damaged {self._encoding} data ({e})") from None
        if len(out) > self._limit - self._out:
            raise DecodeError(f"not decoded: larger than {format_size(self._limit)} when decoded")
        self._out += len(out)
        return out


@dataclass(frozen=True, slots=True)
class Decoded:
    """What decoding a body gave: the decoded pieces, each at the time of the chunk that carried
    it, or (``problem`` set, ``pieces`` empty) why it was not decoded."""

    pieces: tuple[tuple[float, bytes], ...]
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def body(self) -> bytes:
        return b"".join(data for _, data in self.pieces)


def decode(
    pieces: Iterable[tuple[float, bytes]], encoding: str, *, limit: int = DEFAULT_LIMIT
) -> Decoded:
    """Decode timed chunks (``(at, bytes)``) of a body sent with ``encoding``."""
    try:
        decoder = ContentDecoder(encoding, limit=limit)
        out: list[tuple[float, bytes]] = []
        at = 0.0
        for at, data in pieces:
            out.append((at, decoder.feed(data)))
        tail = decoder.flush()
        if tail:
            if out:
                out[-1] = (out[-1][0], out[-1][1] + tail)
            else:
                out.append((at, tail))
    except DecodeError as e:
        return Decoded((), str(e))
    return Decoded(tuple(out))


def decode_body(body: bytes, encoding: str, *, limit: int = DEFAULT_LIMIT) -> Decoded:
    """Decode a whole body (one piece at time 0)."""
    return decode([(0.0, body)], encoding, limit=limit)
