"""The cassette file format, pure: bytes <-> :class:`~ssevcr._cassette.Cassette`, the lossless
JSON twin, and the migrations of older versions. No files, locks or clocks here (``_store`` has
those): a document comes in as bytes, or as anything sliced like bytes (``_store`` hands over a
file read on demand), and goes out as bytes.

Every way a document can be wrong — truncated, random bytes, a newer version, a field of the
wrong type — raises one :class:`~ssevcr._errors.CassetteError` naming the file and the field (and
for JSON the line); no other exception escapes ``loads``/``import_json``/``loads_any``.

msgpack layout (version 2)::

    {"format": "ssevcr", "version": 2, "meta": {str: str},
     "interactions": [{"request": {"method", "url", "headers": [[k, v]], "body": bin},
                       "response": {"status", "reason", "http_version", "headers", "headers_at",
                                    "body": PART,           # all chunks joined
                                    "chunk_sizes": PART,    # little-endian uint32 per chunk
                                    "chunk_at": PART,       # little-endian float64 per chunk
                                    "end": {"at", "outcome", "error"}},
                       "meta": {str: str},
                       "resumes": {"interaction": int, "after_id": str},  # a reconnection
                       "websocket": {...}}],                 # version 3, only on a WebSocket
     "data": bin}                                            # last; only if a PART refers to it

``resumes`` (only on a recorded reconnection, in any version: older releases ignore it) links an
interaction whose request carried ``Last-Event-ID: after_id`` to the earlier stream it continues,
by its index in the same cassette (lower than its own).

A WebSocket interaction (version 3) is its handshake (the request and the 101 response) plus::

    "websocket": {"data": PART,           # every message's payload joined
                  "sizes": PART,          # little-endian uint32 per message
                  "at": PART,             # little-endian float64 per message (from the handshake)
                  "kinds": PART,          # one byte per message: 1 from the client, 2 binary
                  "close": {"at", "code", "reason", "by"} | nil}

A PART is a bin, or ``[offset, size]``: that many bytes of ``data`` from ``offset``. Responses of
``INLINE_MAX`` bytes or more (body and tables) are written by reference, so a loader reads the
small document in front and leaves their bytes in the file until they are first used: such a
response's body and tables are read and checked (sizes add up to the body, times finite and
non-decreasing) then, and a problem is the same CassetteError, raised where they are used.
Version 1 is version 2 with every PART a bin and no ``data``; version 2 is version 3 without
WebSocket interactions.

A cassette is written as version 3 only when it holds a WebSocket interaction, else as version 2
(the same document), so that releases before 3 keep reading what they can replay.

Older versions are migrated on load by ``MIGRATIONS[n]`` (a ``convert_n_to_n+1`` on the decoded
document); a newer version is refused.
"""

from __future__ import annotations

import math
import re
import sys
from array import array
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import msgpack

from ._cassette import (
    Cassette,
    Columns,
    End,
    Headers,
    Interaction,
    Outcome,
    Request,
    Response,
    Resumes,
    WebSocket,
    WsClose,
    WsMessage,
    column_problem,
    head_problems,
    resumes_problem,
    ws_problem,
)
from ._errors import CassetteError

TYPE_CHECKING = False  # loading a cassette does not import typing
if TYPE_CHECKING:
    import json
    from typing import Any, NoReturn, Protocol

    class Bytes(Protocol):
        """What a document can be read from: its length and slices (``bytes``, a
        ``memoryview``, or the store's file read on demand)."""

        def __len__(self) -> int: ...

        def __getitem__(self, index: slice, /) -> bytes | memoryview: ...


__all__ = [
    "FORMAT",
    "INLINE_MAX",
    "MIGRATIONS",
    "PLAIN_VERSION",
    "VERSION",
    "dump_pieces",
    "dumps",
    "export_json",
    "import_json",
    "loads",
    "loads_any",
]

FORMAT = "ssevcr"
VERSION = 3
PLAIN_VERSION = 2
"""What a cassette without WebSocket interactions is written as (it is a version 2 document):
older ssevcr releases keep reading the cassettes they can replay."""
INLINE_MAX = 64 * 1024
"""Responses smaller than this (body and chunk tables) are written inline, larger by reference."""


def _convert_1_to_2(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "version": 2}  # version 2 only adds references: a version 1 document is one


def _convert_2_to_3(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "version": 3}  # version 3 only adds WebSocket interactions


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _convert_1_to_2,
    2: _convert_2_to_3,
}
"""``MIGRATIONS[n]`` turns a decoded version-n document into a version n+1 document."""

_BIG_ENDIAN = sys.byteorder == "big"
_OUTCOMES = {o.value for o in Outcome}
_READ_SIZE = 64 * 1024  # the document in front of ``data`` is read this much at a time


Path = tuple[str | int, ...]
"""Where a field is: ``("interactions", 0, "response", "status")``."""


def _where(path: Path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}" if out else step
    return out or "(top level)"


def _steps(field: str) -> Path:
    """``"headers[2]"`` -> ``("headers", 2)`` (the field names of the model's checks)."""
    return tuple(
        int(index) if index else name for name, index in re.findall(r"(\w+)|\[(\d+)\]", field)
    )


# ---------------------------------------------------------------------------------------------
# msgpack out


def _pack_array(typecode: str, values: Sequence[Any]) -> bytes:
    arr = (
        values
        if isinstance(values, array) and values.typecode == typecode
        else array(typecode, values)
    )
    if _BIG_ENDIAN:
        arr = array(typecode, arr)
        arr.byteswap()
    return arr.tobytes()


def _unpack_array(typecode: str, data: bytes) -> array[Any]:
    arr = array(typecode)
    arr.frombytes(data)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr


class _Data:
    """The ``data`` section being written: parts appended, referred to by [offset, size]."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def ref(self, part: bytes) -> list[int]:
        ref = [self.size, len(part)]
        self.parts.append(part)
        self.size += len(part)
        return ref


def _request_doc(r: Request) -> dict[str, Any]:
    return {
        "method": r.method,
        "url": r.url,
        "headers": [list(h) for h in r.headers],
        "body": r.body,
    }


def _response_doc(r: Response, data: _Data) -> dict[str, Any]:
    parts: list[Any] = [r.body, _pack_array("I", r.chunk_sizes), _pack_array("d", r.chunk_at)]
    if sum(len(p) for p in parts) >= INLINE_MAX:
        parts = [data.ref(p) for p in parts]
    return {
        "status": r.status,
        "reason": r.reason,
        "http_version": r.http_version,
        "headers": [list(h) for h in r.headers],
        "headers_at": r.headers_at,
        "body": parts[0],
        "chunk_sizes": parts[1],
        "chunk_at": parts[2],
        "end": {"at": r.end.at, "outcome": r.end.outcome.value, "error": r.end.error},
    }


def _websocket_doc(ws: WebSocket, data: _Data) -> dict[str, Any]:
    messages = ws.messages
    parts: list[Any] = [
        b"".join(m.data for m in messages),
        _pack_array("I", [len(m.data) for m in messages]),
        _pack_array("d", [m.at for m in messages]),
        bytes(m.from_client | m.binary << 1 for m in messages),
    ]
    if sum(len(p) for p in parts) >= INLINE_MAX:
        parts = [data.ref(p) for p in parts]
    close = ws.close
    return {
        "data": parts[0],
        "sizes": parts[1],
        "at": parts[2],
        "kinds": parts[3],
        "close": None
        if close is None
        else {"at": close.at, "code": close.code, "reason": close.reason, "by": close.by},
    }


def _interaction_doc(i: Interaction, data: _Data) -> dict[str, Any]:
    doc = {
        "request": _request_doc(i.request),
        "response": _response_doc(i.response, data),
        "meta": dict(i.meta),
    }
    if i.resumes is not None:
        doc["resumes"] = _resumes_doc(i.resumes)
    if i.websocket is not None:
        doc["websocket"] = _websocket_doc(i.websocket, data)
    return doc


def _resumes_doc(link: Resumes) -> dict[str, Any]:
    return {"interaction": link.interaction, "after_id": link.after_id}


def _version_of(cassette: Cassette) -> int:
    if any(i.websocket is not None for i in cassette.interactions):
        return VERSION
    return PLAIN_VERSION


def dump_pieces(cassette: Cassette) -> list[bytes]:
    """The msgpack document as pieces to write one after the other (large bodies are not
    copied into one buffer)."""
    data = _Data()
    doc = {
        "format": FORMAT,
        "version": _version_of(cassette),
        "meta": dict(cassette.meta),
        "interactions": [_interaction_doc(i, data) for i in cassette.interactions],
    }
    packer = msgpack.Packer(use_bin_type=True)
    if not data.parts:
        return [packer.pack(doc)]
    if data.size >= 1 << 32:
        raise CassetteError("<memory>", "too large to save: more than 4 GiB of response bodies")
    pieces = [packer.pack_map_header(len(doc) + 1)]
    for key, value in doc.items():
        pieces += [packer.pack(key), packer.pack(value)]
    pieces += [packer.pack("data"), b"\xc6" + data.size.to_bytes(4, "big"), *data.parts]
    return pieces


def dumps(cassette: Cassette) -> bytes:
    return b"".join(dump_pieces(cassette))


# ---------------------------------------------------------------------------------------------
# msgpack in


class _Stream:
    """A file-like view of a document, for msgpack's streaming unpacker."""

    def __init__(self, data: Bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int) -> bytes:
        piece = bytes(self.data[self.pos : self.pos + n])
        self.pos += len(piece)
        return piece


_MAP_HEADERS = {*range(0x80, 0x90), 0xDE, 0xDF}
_BIN_HEADERS = {0xC4: 1, 0xC5: 2, 0xC6: 4}  # bin8/16/32: bytes of length after the type byte


def _document(data: Bytes, size: int) -> tuple[object, tuple[int, int] | None]:
    """The decoded document without the bytes of its ``data`` section, and where they are
    (start, size). msgpack errors escape (the caller names the file)."""
    options: dict[str, Any] = {"raw": False, "strict_map_key": True}
    if bytes(data[0:1])[0] not in _MAP_HEADERS:  # not a cassette: decoded whole, then refused
        return msgpack.unpackb(bytes(data[0:size]), **options), None
    unpacker = msgpack.Unpacker(
        _Stream(data), read_size=min(_READ_SIZE, size), max_buffer_size=size, **options
    )
    doc: dict[Any, Any] = {}
    section = None
    count = unpacker.read_map_header()
    for n in range(count):
        key = unpacker.unpack()
        start = unpacker.tell()
        header = bytes(data[start : start + 5]) if key == "data" else b""
        width = _BIN_HEADERS.get(header[0]) if header else None
        if width is None:
            doc[key] = unpacker.unpack()
            continue
        doc.pop(key, None)
        section = (start + 1 + width, int.from_bytes(header[1 : 1 + width], "big"))
        end = section[0] + section[1]
        if end > size:
            raise msgpack.OutOfData("the data section is cut short")
        if n == count - 1:  # where it belongs: last, and left unread
            if end < size:
                raise msgpack.ExtraData(doc, b"")
            return doc, section
        unpacker.skip()
    if unpacker.tell() != size:
        raise msgpack.ExtraData(doc, b"")
    return doc, section


def loads(data: Bytes, *, path: str = "<memory>") -> Cassette:
    """A cassette from its msgpack bytes. Responses written by reference keep ``data`` (what
    they are sliced from) until their body and tables are first used."""
    size = len(data)
    if size == 0:
        raise CassetteError(path, "the file is empty")
    try:
        doc, section = _document(data, size)
    except CassetteError:
        raise
    except Exception as e:  # msgpack raises several unrelated types for damaged input
        why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise CassetteError(path, f"not a readable msgpack cassette ({why})") from None
    return _Reader(path, binary=True, data=data, section=section).cassette(doc)


# ---------------------------------------------------------------------------------------------
# validation shared by both formats


class _Reader:
    """Turns a decoded document into a Cassette, or raises CassetteError naming the field."""

    def __init__(
        self,
        path: str,
        *,
        binary: bool,
        line_of: Callable[[Path], int | None] | None = None,
        data: Bytes | None = None,
        section: tuple[int, int] | None = None,
    ):
        self.path = path
        self.binary = binary
        self.line_of = line_of or (lambda _path: None)
        self.data = data
        self.section = section

    def error(self, path: Path, problem: str) -> CassetteError:
        return CassetteError(self.path, problem, where=_where(path), line=self.line_of(path))

    def fail(self, path: Path, problem: str) -> NoReturn:
        raise self.error(path, problem)

    def map(self, value: object, path: Path) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"expected a map, got {_kind(value)}")
        return value

    def get(
        self,
        node: dict[str, Any],
        key: str,
        path: Path,
        kind: type | tuple[type, ...],
        default: Any = ...,
    ) -> Any:
        here = (*path, key)
        if key not in node:
            if default is not ...:
                return default
            self.fail(here, "missing")
        value = node[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            self.fail(here, f"expected a number, got {_kind(value)}")
        if not isinstance(value, kind):
            self.fail(here, f"expected {_kind_name(kind)}, got {_kind(value)}")
        if isinstance(value, str) and not _is_unicode(value):
            self.fail(here, "not valid Unicode text (a lone surrogate)")
        return value

    def time(self, node: dict[str, Any], key: str, path: Path) -> float:
        raw = self.get(node, key, path, (int, float))
        try:
            value = float(raw)
        except OverflowError:  # an integer too large for a float (JSON allows any length)
            value = math.inf
        if not math.isfinite(value) or value < 0:
            self.fail((*path, key), f"expected a time in seconds >= 0, got {value!r}")
        return value

    def meta(self, node: dict[str, Any], path: Path) -> Mapping[str, str]:
        meta = self.get(node, "meta", path, dict, {})
        for k, v in meta.items():
            if not (isinstance(k, str) and _is_unicode(k)):
                self.fail((*path, "meta"), f"keys must be text, got {_show(k)}")
            if not (isinstance(v, str) and _is_unicode(v)):
                self.fail((*path, "meta", k), f"expected text, got {_show(v)}")
        return MappingProxyType(dict(meta))

    def headers(self, node: dict[str, Any], path: Path) -> Headers:
        raw = self.get(node, "headers", path, list, [])
        out = []
        for i, pair in enumerate(raw):
            if not (isinstance(pair, list) and len(pair) == 2 and all(_is_latin1(x) for x in pair)):
                self.fail(
                    (*path, "headers", i),
                    f"expected a [name, value] pair of latin-1 text, got {_show(pair)}",
                )
            out.append((pair[0], pair[1]))
        return tuple(out)

    def body(self, node: dict[str, Any], path: Path, key: str = "body") -> bytes:
        if self.binary:
            return bytes(self.get(node, key, path, bytes, b""))
        if f"{key}_b64" in node:
            text = self.get(node, f"{key}_b64", path, str)
            import base64

            try:
                return base64.b64decode(text, validate=True)
            except ValueError:
                self.fail((*path, f"{key}_b64"), "not valid base64")
        return self.get(node, key, path, str, "").encode("utf-8")  # type: ignore[no-any-return]

    def cassette(self, doc: object) -> Cassette:
        doc = self.map(doc, ())
        fmt = doc.get("format")
        if fmt != FORMAT:
            self.fail(
                ("format",), f"not an ssevcr cassette (format is {_show(fmt)}, expected {FORMAT!r})"
            )
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            self.fail(("version",), f"expected a version number, got {_show(version)}")
        if version > VERSION:
            self.fail(
                ("version",),
                f"version {version} is newer than this ssevcr understands (up to {VERSION}); "
                "upgrade ssevcr",
            )
        while version < VERSION:
            doc = self.migrate(doc, version)
            version += 1
        raw_interactions = self.get(doc, "interactions", (), list)
        interactions = tuple(
            self.interaction(self.map(item, ("interactions", i)), ("interactions", i))
            for i, item in enumerate(raw_interactions)
        )
        return Cassette(interactions=interactions, meta=self.meta(doc, ()))

    def migrate(self, doc: dict[str, Any], version: int) -> dict[str, Any]:
        migrate = MIGRATIONS.get(version)
        if migrate is None:
            self.fail(
                ("version",), f"version {version} is not supported (no migration to {version + 1})"
            )
        try:
            new = migrate(doc)
        except Exception as e:
            self.fail(("version",), f"migrating from version {version} failed: {e}")
        if not isinstance(new, dict):
            self.fail(
                ("version",), f"migrating from version {version} gave {_kind(new)}, not a map"
            )
        return new

    def interaction(self, node: dict[str, Any], path: Path) -> Interaction:
        req = self.map(self.get(node, "request", path, dict), (*path, "request"))
        resp = self.map(self.get(node, "response", path, dict), (*path, "response"))
        response = self.response(resp, (*path, "response"))
        websocket = None
        if node.get("websocket") is not None:
            here = (*path, "websocket")
            ws = self.map(node["websocket"], here)
            if response.status != 101:
                self.fail(
                    here, f"a WebSocket conversation needs a 101 response, not {response.status}"
                )
            websocket = self.websocket(ws, here)
        return Interaction(
            request=self.request(req, (*path, "request")),
            response=response,
            meta=self.meta(node, path),
            websocket=websocket,
            resumes=self.resumes(node, path),
        )

    def resumes(self, node: dict[str, Any], path: Path) -> Resumes | None:
        """A reconnection's link, checked: an earlier interaction's index and an event ID."""
        if node.get("resumes") is None:
            return None
        here = (*path, "resumes")
        link = self.map(node["resumes"], here)
        index = self.get(link, "interaction", here, int)
        after_id = self.get(link, "after_id", here, str)
        problem = resumes_problem(index, after_id)
        if problem is not None:
            key = problem.split(":", 1)[0]
            self.fail((*here, key), problem.split(": ", 1)[1])
        own = path[-1]
        if isinstance(own, int) and index >= own:
            self.fail(
                (*here, "interaction"),
                f"a reconnection links to an earlier interaction, not {index} (it is {own})",
            )
        return Resumes(index, after_id)

    def websocket(self, node: dict[str, Any], path: Path) -> WebSocket:
        messages = self.ws_columns(node, path) if self.binary else self.ws_messages(node, path)
        close = None
        if node.get("close") is not None:
            here = (*path, "close")
            c = self.map(node["close"], here)
            code = self.get(c, "code", here, (int, type(None)), None)
            if isinstance(code, bool):
                self.fail((*here, "code"), "expected a close code, got a boolean")
            close = WsClose(
                at=self.time(c, "at", here),
                code=code,
                reason=self.get(c, "reason", here, str, ""),
                by=self.get(c, "by", here, str),
            )
        ws = object.__new__(WebSocket)  # checked below, naming the file and the field
        object.__setattr__(ws, "messages", tuple(messages))
        object.__setattr__(ws, "close", close)
        problem = ws_problem(ws)
        if problem is not None:
            self.fail((*path, *_steps(problem[0])), problem[1])
        return ws

    def ws_columns(self, node: dict[str, Any], path: Path) -> list[WsMessage]:
        data, sizes, ats, kinds = (
            self.read(self.part(node, k, path)) for k in ("data", "sizes", "at", "kinds")
        )
        if len(sizes) % 4 or len(ats) % 8 or not (len(sizes) // 4 == len(ats) // 8 == len(kinds)):
            self.fail((*path, "sizes"), "message tables are damaged (their lengths disagree)")
        size_list, at_list = _unpack_array("I", sizes), _unpack_array("d", ats)
        if sum(size_list) != len(data):
            self.fail(
                (*path, "sizes"), f"message sizes add up to {sum(size_list)}, data has {len(data)}"
            )
        out, pos = [], 0
        for i, (size, at, kind) in enumerate(zip(size_list, at_list, kinds, strict=True)):
            if kind > 3:
                self.fail((*path, "kinds", i), f"expected a message kind 0-3, got {kind}")
            out.append(WsMessage(at, bool(kind & 1), data[pos : pos + size], bool(kind & 2)))
            pos += size
        return out

    def ws_messages(self, node: dict[str, Any], path: Path) -> list[WsMessage]:
        out = []
        for i, m in enumerate(self.get(node, "messages", path, list)):
            here = (*path, "messages", i)
            m = self.map(m, here)
            side = self.get(m, "from", here, str)
            if side not in ("client", "server"):
                self.fail((*here, "from"), f"expected client or server, got {side!r}")
            kind = self.get(m, "type", here, str)
            if kind not in ("text", "binary"):
                self.fail((*here, "type"), f"expected text or binary, got {kind!r}")
            if "data" not in m and "data_b64" not in m:
                self.fail(here, "needs 'data' or 'data_b64'")
            at = self.time(m, "at", here)
            out.append(
                WsMessage(at, side == "client", self.body(m, here, "data"), kind == "binary")
            )
        return out

    def request(self, node: dict[str, Any], path: Path) -> Request:
        return Request(
            method=self.get(node, "method", path, str),
            url=self.get(node, "url", path, str),
            headers=self.headers(node, path),
            body=self.body(node, path),
        )

    def response(self, node: dict[str, Any], path: Path) -> Response:
        status = self.get(node, "status", path, int)
        if not 100 <= status <= 599:
            self.fail((*path, "status"), f"expected an HTTP status (100-599), got {status}")
        headers_at = self.time(node, "headers_at", path)
        columns = self.columns(node, path) if self.binary else self.chunks(node, path)
        end_node = self.map(self.get(node, "end", path, dict), (*path, "end"))
        outcome = self.get(end_node, "outcome", (*path, "end"), str)
        if outcome not in _OUTCOMES:
            self.fail(
                (*path, "end", "outcome"),
                f"expected one of {', '.join(sorted(_OUTCOMES))}, got {outcome!r}",
            )
        error = self.get(end_node, "error", (*path, "end"), (str, type(None)), None)
        reason = self.get(node, "reason", path, str, "")
        http_version = self.get(node, "http_version", path, str, "HTTP/1.1")
        headers = self.headers(node, path)
        for field, problem in head_problems(status, reason, headers, http_version):
            self.fail((*path, *_steps(field)), problem)
        return Response._unchecked(
            columns,
            status=status,
            reason=reason,
            http_version=http_version,
            headers=headers,
            headers_at=headers_at,
            end=End(self.time(end_node, "at", (*path, "end")), Outcome(outcome), error),
        )

    def part(self, node: dict[str, Any], key: str, path: Path) -> bytes | tuple[int, int]:
        """A PART: its bytes, or where they are in the document (start, size)."""
        value = (
            node.get(key, b"")
            if key in ("body", "data")
            else self.get(node, key, path, (bytes, list))
        )
        if isinstance(value, bytes):
            return value
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)
        ):
            self.fail((*path, key), f"expected bytes or an [offset, size] pair, got {_show(value)}")
        if self.section is None:
            self.fail((*path, key), "refers to the data section, which the cassette lacks")
        offset, size = value
        if offset + size > self.section[1]:
            self.fail(
                (*path, key),
                f"refers to bytes {offset}-{offset + size} of a data section of {self.section[1]}",
            )
        return self.section[0] + offset, size

    def columns(self, node: dict[str, Any], path: Path) -> Columns | Callable[[], Columns]:
        """The body and chunk tables of a msgpack response: checked now when they are inline,
        else their lengths now and the rest when first used."""
        body, sizes, ats = (self.part(node, k, path) for k in ("body", "chunk_sizes", "chunk_at"))
        lengths = [len(p) if isinstance(p, bytes) else p[1] for p in (body, sizes, ats)]
        if lengths[1] % 4 or lengths[2] % 8:
            self.fail((*path, "chunk_sizes"), "chunk tables are damaged (wrong length)")
        if lengths[1] // 4 != lengths[2] // 8:
            self.fail(
                (*path, "chunk_at"), f"{lengths[2] // 8} chunk times for {lengths[1] // 4} chunks"
            )

        def read() -> Columns:
            values = (self.read(body), self.read(sizes), self.read(ats))
            columns = values[0], _unpack_array("I", values[1]), _unpack_array("d", values[2])
            problem = column_problem(len(columns[0]), columns[1], columns[2])
            if problem is not None:
                raise self.error((*path, *_steps(problem[0])), problem[1])
            return columns

        if all(isinstance(p, bytes) for p in (body, sizes, ats)):
            return read()
        return read

    def read(self, part: bytes | tuple[int, int]) -> bytes:
        if isinstance(part, bytes):
            return part
        assert self.data is not None
        start, size = part
        data = bytes(self.data[start : start + size])
        if len(data) != size:
            raise CassetteError(self.path, "the file was cut short since it was loaded")
        return data

    def chunks(self, node: dict[str, Any], path: Path) -> Columns:
        """The body and chunk tables of a JSON response (a list of chunks)."""
        chunks = self.get(node, "chunks", path, list)
        parts: list[bytes] = []
        times: list[float] = []
        prev = 0.0
        for i, c in enumerate(chunks):
            here = (*path, "chunks", i)
            c = self.map(c, here)
            at = self.time(c, "at", here)
            if at < prev:
                self.fail((*here, "at"), f"chunk times must not decrease ({at!r} after {prev!r})")
            prev = at
            if "data" not in c and "data_b64" not in c:
                self.fail(here, "needs 'data' or 'data_b64'")
            parts.append(self.body(c, here, "data"))
            times.append(at)
        return b"".join(parts), array("I", [len(p) for p in parts]), array("d", times)


def _show(value: object) -> str:
    """A short repr, safe for deeply nested values (plain repr would raise RecursionError)."""
    import reprlib

    return reprlib.repr(value)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_latin1(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "text",
        bytes: "bytes",
        list: "a list",
        dict: "a map",
    }.get(type(value), type(value).__name__)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = [_kind(k()) if k is not type(None) else "null" for k in kinds]
    return " or ".join(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------
# JSON twin


def _text_or_b64(data: bytes, key: str) -> dict[str, str]:
    try:
        return {key: data.decode("utf-8")}
    except UnicodeDecodeError:
        import base64

        return {f"{key}_b64": base64.b64encode(data).decode("ascii")}


def _twin(cassette: Cassette) -> dict[str, Any]:
    """The JSON twin as data (what ``json.loads`` of ``export_json`` gives back)."""
    doc: dict[str, Any] = {"format": FORMAT, "version": _version_of(cassette)}
    if cassette.meta:
        doc["meta"] = dict(cassette.meta)
    doc["interactions"] = []
    for inter in cassette.interactions:
        req, resp = inter.request, inter.response
        item: dict[str, Any] = {"meta": dict(inter.meta)} if inter.meta else {}
        item["request"] = {
            "method": req.method,
            "url": req.url,
            "headers": [list(h) for h in req.headers],
            **_text_or_b64(req.body, "body"),
        }
        end: dict[str, Any] = {"at": resp.end.at, "outcome": resp.end.outcome.value}
        if resp.end.error is not None:
            end["error"] = resp.end.error
        item["response"] = {
            "status": resp.status,
            "reason": resp.reason,
            "http_version": resp.http_version,
            "headers": [list(h) for h in resp.headers],
            "headers_at": resp.headers_at,
            "chunks": [{"at": c.at, **_text_or_b64(c.data, "data")} for c in resp.chunks],
            "end": end,
        }
        if inter.resumes is not None:
            item["resumes"] = _resumes_doc(inter.resumes)
        if inter.websocket is not None:
            item["websocket"] = _websocket_twin(inter.websocket)
        doc["interactions"].append(item)
    return doc


def _websocket_twin(ws: WebSocket) -> dict[str, Any]:
    messages = [
        {
            "at": m.at,
            "from": "client" if m.from_client else "server",
            "type": "binary" if m.binary else "text",
            **_text_or_b64(m.data, "data"),
        }
        for m in ws.messages
    ]
    close = ws.close
    return {
        "messages": messages,
        "close": None
        if close is None
        else {"at": close.at, "code": close.code, "reason": close.reason, "by": close.by},
    }


_ONE_PER_LINE = ("interactions", "response", "chunks", "websocket", "messages")


def _layout(value: Any, key: str | int | None, parent: str | int | None, indent: str) -> str:
    """``value`` as JSON text. One member per line: the document, the interactions and each of
    them, each response and its chunks; anything deeper is one line (a chunk, the headers),
    written by the ``json`` module."""
    encode = _encoder().encode
    if not (
        isinstance(value, dict | list)
        and value
        and (key is None or key in _ONE_PER_LINE or parent == "interactions")
    ):
        return encode(value)
    inner = indent + " "
    if isinstance(value, dict):
        members = [f"{encode(k)}: {_layout(v, k, key, inner)}" for k, v in value.items()]
        return "{\n" + inner + (",\n" + inner).join(members) + "\n" + indent + "}"
    items = [_layout(v, n, key, inner) for n, v in enumerate(value)]
    return "[\n" + inner + (",\n" + inner).join(items) + "\n" + indent + "]"


_json_encoder: json.JSONEncoder | None = None


def _encoder() -> json.JSONEncoder:
    global _json_encoder
    if _json_encoder is None:
        import json

        _json_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
    return _json_encoder


def export_json(cassette: Cassette) -> str:
    """The lossless, reviewable JSON twin: one chunk per line, so a diff shows the changed chunk."""
    return _layout(_twin(cassette), None, None, "") + "\n"


_WS = re.compile(r"[ \t\n\r]*")


def _position(text: str, target: Path) -> int | None:
    """Where in ``text`` (valid JSON) the member or element at ``target`` starts: walks down the
    path, stepping over each sibling with ``json.JSONDecoder.raw_decode``; of duplicate keys
    the last, as ``json.loads`` keeps the last."""
    import json

    decode = json.JSONDecoder().raw_decode
    pos = _WS.match(text).end()  # type: ignore[union-attr]
    for depth, step in enumerate(target):
        opener = "{" if isinstance(step, str) else "["
        if text[pos : pos + 1] != opener:
            return None
        pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        hit: int | None = None
        value = n = 0
        while text[pos : pos + 1] not in ("", "}", "]"):
            start = pos
            if isinstance(step, str):
                key, pos = decode(text, pos)
                pos = _WS.match(text, pos).end() + 1  # type: ignore[union-attr]  # the colon
                pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
                if key == step:
                    hit, value = start, pos
            elif n == step:
                hit = value = start
                break
            _, pos = decode(text, pos)  # the value, skipped
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            if text[pos : pos + 1] == ",":
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
            n += 1
        if hit is None:
            return None
        if depth == len(target) - 1:
            return hit
        pos = value
    return pos


def import_json(text: str | bytes, *, path: str = "<json>") -> Cassette:
    """Read the JSON twin; errors name the line and the field that is wrong."""
    import json

    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CassetteError(path, f"not UTF-8 text (byte {e.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise CassetteError(
            path, f"not valid JSON: {e.msg} (column {e.colno})", line=e.lineno
        ) from None
    except (ValueError, RecursionError) as e:  # an integer of more than 4300 digits; deep nesting
        raise CassetteError(path, f"not usable JSON: {e}") from None
    source = text

    def line_of(where: Path) -> int | None:
        # the field's line, else the line of the nearest enclosing one that is there
        for n in range(len(where), -1, -1):
            try:
                pos = _position(source, where[:n])
            except (ValueError, RecursionError):  # nested deeper than the decoder goes
                continue
            if pos is not None:
                return source.count("\n", 0, pos) + 1
        return None

    return _Reader(path, binary=False, line_of=line_of).cassette(doc)


def loads_any(data: Bytes, *, path: str = "<memory>") -> Cassette:
    """A cassette from msgpack or JSON bytes (told apart by content: JSON starts with ``{``)."""
    head = bytes(data[0:64]).lstrip()
    if not head:
        head = bytes(data[0 : len(data)]).lstrip()
    if head[:1] == b"{":
        return import_json(bytes(data[0 : len(data)]), path=path)
    return loads(data, path=path)
