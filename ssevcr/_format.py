"""The cassette file format, pure: bytes <-> :class:`~ssevcr._cassette.Cassette`, and the lossless
JSON twin. No files, locks or clocks here (see ``_store`` for those).

Every way a document can be wrong — truncated, random bytes, a newer version, a field of the
wrong type — raises one :class:`~ssevcr._errors.CassetteError` naming the file and the field; no
other exception escapes ``loads``/``import_json``/``loads_any``.

msgpack layout (version 1)::

    {"format": "ssevcr", "version": 1, "meta": {str: str},
     "interactions": [{"request": {"method", "url", "headers": [[k, v]], "body": bin},
                       "response": {"status", "reason", "http_version", "headers", "headers_at",
                                    "body": bin,                  # all chunks joined
                                    "chunk_sizes": bin,           # little-endian uint32 per chunk
                                    "chunk_at": bin,              # little-endian float64 per chunk
                                    "end": {"at", "outcome", "error"}},
                       "meta": {str: str}}]}

Older versions are migrated on load by ``MIGRATIONS[n]`` (a ``convert_n_to_n+1`` on the decoded
document); a newer version is refused.
"""

from __future__ import annotations

import base64
import json
import math
import operator
import re
import reprlib
import sys
from array import array
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NoReturn

import msgpack

from ._cassette import (
    Cassette,
    End,
    Headers,
    Interaction,
    Outcome,
    Request,
    Response,
    head_problems,
)
from ._errors import CassetteError

__all__ = [
    "FORMAT",
    "MIGRATIONS",
    "VERSION",
    "dumps",
    "export_json",
    "import_json",
    "loads",
    "loads_any",
]

FORMAT = "ssevcr"
VERSION = 1
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""``MIGRATIONS[n]`` turns a decoded version-n document into a version n+1 document."""

_BIG_ENDIAN = sys.byteorder == "big"
_OUTCOMES = {o.value for o in Outcome}


# ---------------------------------------------------------------------------------------------
# msgpack


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


def _request_doc(r: Request) -> dict[str, Any]:
    return {
        "method": r.method,
        "url": r.url,
        "headers": [list(h) for h in r.headers],
        "body": r.body,
    }


def _response_doc(r: Response) -> dict[str, Any]:
    return {
        "status": r.status,
        "reason": r.reason,
        "http_version": r.http_version,
        "headers": [list(h) for h in r.headers],
        "headers_at": r.headers_at,
        "body": r.body,
        "chunk_sizes": _pack_array("I", r.chunk_sizes),
        "chunk_at": _pack_array("d", r.chunk_at),
        "end": {"at": r.end.at, "outcome": r.end.outcome.value, "error": r.end.error},
    }


def dumps(cassette: Cassette) -> bytes:
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "meta": dict(cassette.meta),
        "interactions": [
            {
                "request": _request_doc(i.request),
                "response": _response_doc(i.response),
                "meta": dict(i.meta),
            }
            for i in cassette.interactions
        ],
    }
    return msgpack.packb(doc, use_bin_type=True)  # type: ignore[no-any-return]


def loads(data: bytes, *, path: str = "<memory>") -> Cassette:
    try:
        doc = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types for damaged input
        if not data:
            raise CassetteError(path, "the file is empty") from None
        raise CassetteError(
            path, f"not a readable msgpack cassette ({type(e).__name__}: {e})"
        ) from None
    return _Reader(path, binary=True).cassette(doc)


# ---------------------------------------------------------------------------------------------
# validation shared by both formats


class _Reader:
    """Turns a decoded document into a Cassette, or raises CassetteError naming the field."""

    def __init__(
        self, path: str, *, binary: bool, line_of: Callable[[object, str], int | None] | None = None
    ):
        self.path = path
        self.binary = binary
        self.line_of = line_of or (lambda _node, _key: None)

    def fail(self, where: str, problem: str, node: object = None) -> NoReturn:
        # the field's own name (``headers_at`` in ``interactions[0].response.headers_at``) lets the
        # JSON twin point at the field's line rather than the line its object starts on
        key = _LAST_KEY.search(where)
        line = self.line_of(node, key.group(1) if key else "")
        raise CassetteError(self.path, problem, where=where, line=line)

    def map(self, value: object, where: str, parent: object = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"expected a map, got {_kind(value)}", parent)
        return value

    def get(
        self,
        node: dict[str, Any],
        key: str,
        where: str,
        kind: type | tuple[type, ...],
        default: Any = ...,
    ) -> Any:
        if key not in node:
            if default is not ...:
                return default
            self.fail(f"{where}.{key}" if where else key, "missing", node)
        value = node[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            self.fail(
                f"{where}.{key}" if where else key, f"expected a number, got {_kind(value)}", node
            )
        if not isinstance(value, kind):
            self.fail(
                f"{where}.{key}" if where else key,
                f"expected {_kind_name(kind)}, got {_kind(value)}",
                node,
            )
        if isinstance(value, str) and not _is_unicode(value):
            self.fail(
                f"{where}.{key}" if where else key,
                "not valid Unicode text (a lone surrogate)",
                node,
            )
        return value

    def time(self, node: dict[str, Any], key: str, where: str) -> float:
        raw = self.get(node, key, where, (int, float))
        try:
            value = float(raw)
        except OverflowError:  # an integer too large for a float (JSON allows any length)
            value = math.inf
        if not math.isfinite(value) or value < 0:
            self.fail(f"{where}.{key}", f"expected a time in seconds >= 0, got {value!r}", node)
        return value

    def meta(self, node: dict[str, Any], where: str) -> Mapping[str, str]:
        meta = self.get(node, "meta", where, dict, {})
        for k, v in meta.items():
            if not (isinstance(k, str) and _is_unicode(k)):
                self.fail(
                    f"{where}.meta" if where else "meta", f"keys must be text, got {_show(k)}", node
                )
            if not (isinstance(v, str) and _is_unicode(v)):
                self.fail(
                    f"{where}.meta.{k}" if where else f"meta.{k}",
                    f"expected text, got {_show(v)}",
                    meta,
                )
        return MappingProxyType(dict(meta))

    def headers(self, node: dict[str, Any], where: str) -> Headers:
        raw = self.get(node, "headers", where, list, [])
        out = []
        for i, pair in enumerate(raw):
            if not (isinstance(pair, list) and len(pair) == 2 and all(_is_latin1(x) for x in pair)):
                self.fail(
                    f"{where}.headers[{i}]",
                    f"expected a [name, value] pair of latin-1 text, got {_show(pair)}",
                    node,
                )
            out.append((pair[0], pair[1]))
        return tuple(out)

    def body(self, node: dict[str, Any], where: str, key: str = "body") -> bytes:
        if self.binary:
            return bytes(self.get(node, key, where, bytes, b""))
        if f"{key}_b64" in node:
            text = self.get(node, f"{key}_b64", where, str)
            try:
                return base64.b64decode(text, validate=True)
            except ValueError:
                self.fail(f"{where}.{key}_b64", "not valid base64", node)
        return self.get(node, key, where, str, "").encode("utf-8")  # type: ignore[no-any-return]

    def cassette(self, doc: object) -> Cassette:
        doc = self.map(doc, "(top level)")
        fmt = doc.get("format")
        if fmt != FORMAT:
            self.fail(
                "format",
                f"not an ssevcr cassette (format is {_show(fmt)}, expected {FORMAT!r})",
                doc,
            )
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            self.fail("version", f"expected a version number, got {_show(version)}", doc)
        if version > VERSION:
            self.fail(
                "version",
                f"version {version} is newer than this ssevcr understands (up to {VERSION}); upgrade ssevcr",
                doc,
            )
        while version < VERSION:
            migrate = MIGRATIONS.get(version)
            if migrate is None:
                self.fail(
                    "version",
                    f"version {version} is not supported (no migration to {version + 1})",
                    doc,
                )
            try:
                doc = migrate(doc)
            except Exception as e:
                self.fail("version", f"migrating from version {version} failed: {e}", doc)
            if not isinstance(doc, dict):
                self.fail(
                    "version", f"migrating from version {version} gave {_kind(doc)}, not a map"
                )
            version += 1
        raw_interactions = self.get(doc, "interactions", "", list)
        interactions = tuple(
            self.interaction(
                self.map(item, f"interactions[{i}]", raw_interactions), f"interactions[{i}]"
            )
            for i, item in enumerate(raw_interactions)
        )
        return Cassette(interactions=interactions, meta=self.meta(doc, ""))

    def interaction(self, node: dict[str, Any], where: str) -> Interaction:
        req = self.map(self.get(node, "request", where, dict), f"{where}.request", node)
        resp = self.map(self.get(node, "response", where, dict), f"{where}.response", node)
        return Interaction(
            request=self.request(req, f"{where}.request"),
            response=self.response(resp, f"{where}.response"),
            meta=self.meta(node, where),
        )

    def request(self, node: dict[str, Any], where: str) -> Request:
        return Request(
            method=self.get(node, "method", where, str),
            url=self.get(node, "url", where, str),
            headers=self.headers(node, where),
            body=self.body(node, where),
        )

    def response(self, node: dict[str, Any], where: str) -> Response:
        status = self.get(node, "status", where, int)
        if not 100 <= status <= 599:
            self.fail(f"{where}.status", f"expected an HTTP status (100-599), got {status}", node)
        headers_at = self.time(node, "headers_at", where)
        if self.binary:
            body = self.body(node, where)
            sizes_raw = self.get(node, "chunk_sizes", where, bytes)
            ats_raw = self.get(node, "chunk_at", where, bytes)
            if len(sizes_raw) % 4 or len(ats_raw) % 8:
                self.fail(f"{where}.chunk_sizes", "chunk tables are damaged (wrong length)", node)
            sizes = _unpack_array("I", sizes_raw)
            ats = _unpack_array("d", ats_raw)
            if len(sizes) != len(ats):
                self.fail(
                    f"{where}.chunk_at", f"{len(ats)} chunk times for {len(sizes)} chunks", node
                )
            if sum(sizes) != len(body):
                self.fail(
                    f"{where}.chunk_sizes",
                    f"chunk sizes add up to {sum(sizes)}, body has {len(body)} bytes",
                    node,
                )
            # one C-speed pass: any NaN fails a comparison, so this also rejects NaN
            if ats and not (
                ats[0] >= 0 and math.isfinite(ats[-1]) and all(map(operator.le, ats, ats[1:]))
            ):
                bad = next(
                    i
                    for i, at in enumerate(ats)
                    if not (math.isfinite(at) and at >= (ats[i - 1] if i else 0.0))
                )
                self.fail(
                    f"{where}.chunk_at[{bad}]",
                    f"chunk times must be finite and non-decreasing, got {ats[bad]!r}",
                    node,
                )
        else:
            chunks = self.get(node, "chunks", where, list)
            parts: list[bytes] = []
            times: list[float] = []
            prev = 0.0
            for i, c in enumerate(chunks):
                cw = f"{where}.chunks[{i}]"
                c = self.map(c, cw, chunks)
                at = self.time(c, "at", cw)
                if at < prev:
                    self.fail(
                        f"{cw}.at", f"chunk times must not decrease ({at!r} after {prev!r})", c
                    )
                prev = at
                if "data" not in c and "data_b64" not in c:
                    self.fail(cw, "needs 'data' or 'data_b64'", c)
                parts.append(self.body(c, cw, "data"))
                times.append(at)
            body = b"".join(parts)
            sizes = array("I", [len(p) for p in parts])
            ats = array("d", times)
        end_node = self.map(self.get(node, "end", where, dict), f"{where}.end", node)
        outcome = self.get(end_node, "outcome", f"{where}.end", str)
        if outcome not in _OUTCOMES:
            self.fail(
                f"{where}.end.outcome",
                f"expected one of {', '.join(sorted(_OUTCOMES))}, got {outcome!r}",
                end_node,
            )
        error = self.get(end_node, "error", f"{where}.end", (str, type(None)), None)
        reason = self.get(node, "reason", where, str, "")
        http_version = self.get(node, "http_version", where, str, "HTTP/1.1")
        headers = self.headers(node, where)
        for field, problem in head_problems(status, reason, headers, http_version):
            self.fail(f"{where}.{field}", problem, node)
        return Response(
            status=status,
            reason=reason,
            http_version=http_version,
            headers=headers,
            headers_at=headers_at,
            body=body,
            chunk_sizes=sizes,
            chunk_at=ats,
            end=End(self.time(end_node, "at", f"{where}.end"), Outcome(outcome), error),
        )


def _show(value: object) -> str:
    """A short repr, safe for deeply nested values (plain repr would raise RecursionError)."""
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
        return {f"{key}_b64": base64.b64encode(data).decode("ascii")}


def _dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def export_json(cassette: Cassette) -> str:
    """The lossless, reviewable JSON twin: one chunk per line, so a diff shows the changed chunk."""
    out = [f'{{"format": "{FORMAT}", "version": {VERSION},']
    if cassette.meta:
        out.append(f' "meta": {_dump(dict(cassette.meta))},')
    out.append(' "interactions": [')
    for n, inter in enumerate(cassette.interactions):
        req, resp = inter.request, inter.response
        request = {"method": req.method, "url": req.url, "headers": [list(h) for h in req.headers]}
        request.update(_text_or_b64(req.body, "body"))
        out.append("  {")
        if inter.meta:
            out.append(f'   "meta": {_dump(dict(inter.meta))},')
        out.append(f'   "request": {_dump(request)},')
        out.append(
            f'   "response": {{"status": {resp.status}, "reason": {_dump(resp.reason)}, '
            f'"http_version": {_dump(resp.http_version)},'
        )
        out.append(f'    "headers": {_dump([list(h) for h in resp.headers])},')
        out.append(f'    "headers_at": {_dump(resp.headers_at)},')
        chunks = list(resp.chunks)
        if chunks:
            out.append('    "chunks": [')
            for i, c in enumerate(chunks):
                item = {"at": c.at, **_text_or_b64(c.data, "data")}
                out.append(f"     {_dump(item)}{',' if i < len(chunks) - 1 else ''}")
            out.append("    ],")
        else:
            out.append('    "chunks": [],')
        end: dict[str, Any] = {"at": resp.end.at, "outcome": resp.end.outcome.value}
        if resp.end.error is not None:
            end["error"] = resp.end.error
        out.append(f'    "end": {_dump(end)}}}')
        out.append("  }" + ("," if n < len(cassette.interactions) - 1 else ""))
    out.append(" ]}")
    return "\n".join(out) + "\n"


_LAST_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[\d+\])*$")
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]]')


class _PositionDecoder(json.JSONDecoder):
    """A JSON decoder that remembers where each object starts and ends (pure-Python scanner:
    slow, used only to point at the line of an error already found)."""

    def __init__(self) -> None:
        super().__init__()
        self.positions: dict[int, tuple[int, int]] = {}
        original: Callable[..., tuple[Any, int]] = self.parse_object  # type: ignore[has-type]

        def parse_object(s_and_end: tuple[str, int], *args: Any) -> tuple[Any, int]:
            obj, end = original(s_and_end, *args)
            self.positions[id(obj)] = (s_and_end[1] - 1, end)
            return obj, end

        self.parse_object = parse_object
        self.scan_once = json.scanner.py_make_scanner(self)  # type: ignore[attr-defined]


def import_json(text: str | bytes, *, path: str = "<json>") -> Cassette:
    """Read the JSON twin; errors name the line and the field that is wrong."""
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
    try:
        return _Reader(path, binary=False).cassette(doc)
    except CassetteError as e:
        first = e
    # Parse again, keeping positions, to say on which line the bad field is.
    decoder = _PositionDecoder()
    try:
        doc = decoder.decode(text)
    except RecursionError:  # the pure-Python scanner nests deeper than the C one
        raise first from None

    def line_of(node: object, key: str) -> int | None:
        span = decoder.positions.get(id(node))
        if span is None:
            return None
        pos = _key_position(text, *span, key) if key else None
        return text.count("\n", 0, span[0] if pos is None else pos) + 1

    return _Reader(path, binary=False, line_of=line_of).cassette(doc)


def _key_position(text: str, start: int, end: int, key: str) -> int | None:
    """Where the member ``key`` of the object at ``text[start:end]`` is (not a nested one's)."""
    depth = 0
    for m in _JSON_TOKEN.finditer(text, start, end):
        token = m.group()
        if token in "{[":
            depth += 1
        elif token in "}]":
            depth -= 1
        elif depth == 1 and token[1:-1] == key and text[m.end() : end].lstrip()[:1] == ":":
            return m.start()
    return None


def loads_any(data: bytes, *, path: str = "<memory>") -> Cassette:
    """A cassette from msgpack or JSON bytes (told apart by content)."""
    if data.lstrip()[:1] == b"{":
        return import_json(data, path=path)
    return loads(data, path=path)
