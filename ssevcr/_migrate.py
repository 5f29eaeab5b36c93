"""Cassettes from other tools: vcrpy / pytest-recording (YAML and JSON) and HAR 1.2 (Chrome,
Firefox, Playwright), as ssevcr cassettes. Pure: bytes in, a cassette out (no files, no clock).

    converted = from_vcrpy(data, name="cassettes/test_x.yaml")
    converted = from_har(data, name="session.har")
    converted.cassette, converted.problems      # what could not be converted, each named

vcrpy formats read: the v1 format of vcrpy >= 1 (``{version: 1, interactions: [...]}``, headers
as lists of values, the response body as ``string``, text or ``!!binary`` base64), the older one
(a bare list of interactions, headers as single strings, Python 2 ``!!python/unicode`` tags), and
the JSON serializer's. YAML is read with a safe loader: no tag builds an object. Bodies are kept
as stored: compressed (``content-encoding`` still there) or decompressed
(``decode_compressed_response``, which removed the header).

Credentials are redacted as in every recording. HAR: ``log.entries``; the request's
``postData.text`` (or ``params``), the response's ``content.text`` (``encoding: base64`` for
binary). A HAR holds the body *decoded*, so ``content-encoding`` and ``content-length`` are
dropped; HTTP/2 pseudo-headers (``:status``) too.

Neither format has chunk times, so timing is **synthesized** and the interaction's meta says so
(``synthesized``: where from, ``profile``): an event stream is cut into one chunk per SSE event
(a compressed one stays one chunk: its bytes are not cut), each at the times of the timing
profile (:mod:`ssevcr._profiles`; default ``ttft:400ms+tps:50``: the first event at 400 ms, then
one every 20 ms). A HAR entry's own ``timings`` give its TTFT (``send + wait``) and, when
``receive`` is known, its events are spread evenly over it. Anything that cannot be converted is
a :class:`Problem` naming the field (and the line, where the parser knows it).

When it was recorded (the meta's ``recorded_at``, which ``max_age`` reads: ``ssevcr._expiry``):
a HAR entry's ``startedDateTime`` (ISO 8601 with a UTC offset, as HAR 1.2 requires). One that is
not such a date, lacks the offset, lies before 2000 or (given ``now``) more than a day in the
future is a problem of that entry like any other malformed field: the import names it and
writes nothing, ``--partial`` writes the other entries. An entry without one is imported
undated (it never expires). vcrpy cassettes store no recording time: an interaction is dated by
its response's ``Date`` header when it has a valid one (the server's clock when it answered),
else left undated.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from . import _profiles
from ._cassette import Cassette, End, Headers, Interaction, Request, Response, head_problems
from ._errors import CassetteError
from ._expiry import RECORDED_AT
from ._sse import parse as parse_sse

__all__ = ["DEFAULT_PROFILE", "Converted", "Problem", "from_har", "from_vcrpy"]

DEFAULT_PROFILE = "ttft:400ms+tps:50"
"""Timing given to an imported stream: the first event at 400 ms, then one every 20 ms."""
_END_AFTER = 0.001  # the end comes this long after the last chunk


@dataclass(frozen=True, slots=True)
class Problem:
    """Something that could not be converted: ``where`` the field, ``line`` when known."""

    where: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        line = f"line {self.line}: " if self.line is not None else ""
        return f"{line}{self.where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Converted:
    cassette: Cassette
    problems: tuple[Problem, ...]


class _Skip(Exception):
    def __init__(self, where: str, message: str):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")


# ---------------------------------------------------------------------------------------------
# timing


def _timed(
    body: bytes,
    headers: Headers,
    *,
    steps: tuple[_profiles.Profile, ...],
    first: float | None = None,
    spread: float | None = None,
) -> tuple[float, list[tuple[float, bytes]], End, str]:
    """headers_at, the chunks with synthesized times, the end, and how they were cut."""
    content_type = _header(headers, "content-type").split(";")[0].strip().lower()
    encoded = _header(headers, "content-encoding").strip().lower() not in ("", "identity")
    pieces = [body] if body else []
    how = "one chunk"
    if content_type == "text/event-stream" and body:
        if encoded:
            how = "one chunk (a compressed stream is not cut)"
        else:
            parsed = parse_sse(body)
            pieces = [f.raw for f in parsed.frames] + ([parsed.tail] if parsed.tail else [])
            how = "one chunk per event"
    n = max(1, len(pieces))
    if first is not None:
        gap = (spread / (n - 1)) if spread and n > 1 else 0.02
        times = [round(first + gap * i, 6) for i in range(n)]
    else:
        times = _profiles.synthetic_times(n, steps)
    headers_at = round(times[0] * 0.9, 6) if first is None else round(max(0.0, first), 6)
    chunks = list(zip(times, pieces, strict=False))
    return headers_at, chunks, End(round(times[-1] + _END_AFTER, 6)), how


# ---------------------------------------------------------------------------------------------
# helpers


def _header(headers: Headers, name: str) -> str:
    lname = name.lower()
    return next((v for k, v in headers if k.lower() == lname), "")


def _text_or_bytes(value: Any, where: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise _Skip(where, f"expected text or bytes, got {type(value).__name__}")


def _check_head(status: int, reason: str, headers: Headers, version: str, where: str) -> None:
    for field_name, problem in head_problems(status, reason, headers, version):
        raise _Skip(f"{where}.{field_name}", problem)


def _stored_decoded(body: bytes, headers: Headers) -> tuple[Headers, str]:
    """vcrpy sometimes keeps ``content-encoding: gzip`` over a body it stored decoded (requests
    streams): such a header is dropped (with content-length), else replay would send plain
    text as gzip. A body that does decode keeps its header."""
    from ._content import decode_body

    encoding = _header(headers, "content-encoding").strip().lower()
    if encoding not in ("gzip", "x-gzip", "deflate") or not body:
        return headers, ""
    decoded = decode_body(body, encoding)
    if decoded.ok or "larger than" in decoded.problem:
        return headers, ""
    kept = tuple((k, v) for k, v in headers if k.lower() not in _DROPPED)
    return kept, f"; content-encoding {encoding} dropped: the body was stored decoded"


def _redacted(interaction: Interaction) -> Interaction:
    """Credentials replaced by ``REDACTED``, as in every recording (other tools' cassettes often
    hold the API key)."""
    from ._redaction import Redaction

    return Redaction().interaction(interaction)


_EARLIEST = 946684800.0  # 2000-01-01T00:00:00Z: an earlier recording time is not believed
_AHEAD = 86400.0  # a recording time more than a day after ``now`` is not believed


def _har_recorded_at(entry: Mapping[str, Any], where: str, now: float | None) -> str | None:
    """The entry's ``startedDateTime`` as a ``recorded_at`` value; None when it has none."""
    from datetime import datetime

    from ._expiry import stamp

    value = entry.get("startedDateTime")
    if value is None:
        return None
    where = f"{where}.startedDateTime"
    if not isinstance(value, str):
        raise _Skip(where, f"expected an ISO 8601 date, got {value!r}")
    try:
        started = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _Skip(where, f"not an ISO 8601 date: {value[:64]!r}") from None
    if started.tzinfo is None:
        raise _Skip(where, f"{value[:64]!r} has no UTC offset (HAR 1.2 requires one)")
    epoch = started.timestamp()
    if epoch < _EARLIEST:
        raise _Skip(where, f"{value[:64]!r} is before 2000: not a recording time")
    if now is not None and epoch > now + _AHEAD:
        raise _Skip(where, f"{value[:64]!r} is in the future")
    return stamp(epoch)


def _vcr_recorded_at(headers: Headers) -> str | None:
    """A vcrpy interaction's recording time: its response's ``Date`` header (vcrpy keeps no time
    of its own), or None when it has no valid one."""
    from email.utils import parsedate_to_datetime

    from ._expiry import stamp

    value = _header(headers, "date")
    if not value:
        return None
    try:
        epoch = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return stamp(epoch) if epoch >= _EARLIEST else None


def _meta(source: str, index_where: str, how: str, profile: str) -> dict[str, str]:
    return {
        "imported": f"{source} {index_where}",
        "synthesized": f"timing: {source} records none; {how}, times from {profile}",
        "profile": profile,
    }


# ---------------------------------------------------------------------------------------------
# vcrpy


class _SafeLoader:
    """PyYAML's safe loader, plus the Python 2 string tags old vcrpy cassettes carry."""

    loader: Any = None

    @classmethod
    def get(cls) -> Any:
        if cls.loader is None:
            import yaml

            base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

            class Loader(base):  # type: ignore[misc, valid-type]
                pass

            def as_str(loader: Any, node: Any) -> str:
                return str(loader.construct_scalar(node))

            for tag in ("python/unicode", "python/str"):
                Loader.add_constructor(f"tag:yaml.org,2002:{tag}", as_str)
            cls.loader = Loader
        return cls.loader


def _yaml_lines(text: str) -> dict[str, int]:
    """Field path -> line (1-based) of each node, from the composed YAML (no objects built)."""
    import yaml

    lines: dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=_SafeLoader.get())
    except yaml.YAMLError:
        return lines

    seen: set[int] = set()

    def walk(node: Any, path: str) -> None:
        lines[path] = node.start_mark.line + 1
        if id(node) in seen:  # an alias: its node was walked where it is defined (a billion
            return  # laughs of nested aliases is walked once per node, not once per path)
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                walk(value, f"{path}.{name}" if path else name)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")

    if root is not None:
        walk(root, "")
    return lines


def _vcr_headers(value: Any, where: str) -> Headers:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise _Skip(where, f"expected a mapping of header names, got {type(value).__name__}")
    pairs: list[tuple[str, str]] = []
    for name, values in value.items():
        items = values if isinstance(values, list) else [values]
        for v in items:
            if not isinstance(v, str | bytes | int | float):
                raise _Skip(f"{where}.{name}", f"expected a header value, got {type(v).__name__}")
            text = v.decode("latin-1") if isinstance(v, bytes) else str(v)
            pairs.append((str(name), text))
    return tuple(pairs)


def _vcr_interaction(
    item: Any, where: str, steps: tuple[_profiles.Profile, ...], profile: str
) -> Interaction:
    if not isinstance(item, Mapping):
        raise _Skip(where, "expected a mapping with request and response")
    req, resp = item.get("request"), item.get("response")
    if not isinstance(req, Mapping):
        raise _Skip(f"{where}.request", "missing or not a mapping")
    if not isinstance(resp, Mapping):
        raise _Skip(f"{where}.response", "missing or not a mapping")
    method, uri = req.get("method"), req.get("uri") or req.get("url")
    if not isinstance(method, str) or not method:
        raise _Skip(f"{where}.request.method", "missing")
    if not isinstance(uri, str) or not urlsplit(uri).scheme:
        raise _Skip(f"{where}.request.uri", f"not an absolute URL: {uri!r}")
    request = Request(
        method.upper(),
        uri,
        _vcr_headers(req.get("headers"), f"{where}.request.headers"),
        _text_or_bytes(req.get("body"), f"{where}.request.body"),
    )
    status = resp.get("status")
    if isinstance(status, Mapping):
        code, reason = status.get("code"), status.get("message") or ""
    else:
        code, reason = status, resp.get("reason") or ""
    if not isinstance(code, int) or isinstance(code, bool):
        raise _Skip(f"{where}.response.status.code", f"expected an HTTP status, got {code!r}")
    headers = _vcr_headers(resp.get("headers"), f"{where}.response.headers")
    version = "HTTP/1.1"
    _check_head(code, str(reason), headers, version, f"{where}.response")
    body_field = resp.get("body")
    if isinstance(body_field, Mapping):
        body = _text_or_bytes(body_field.get("string"), f"{where}.response.body.string")
    else:
        body = _text_or_bytes(body_field, f"{where}.response.body")
    headers, note = _stored_decoded(body, headers)
    headers_at, chunks, end, how = _timed(body, headers, steps=steps)
    response = Response.from_chunks(
        code, chunks, reason=str(reason), headers=headers, headers_at=headers_at, end=end
    )
    meta = _meta("vcrpy", where, how + note, profile)
    recorded = _vcr_recorded_at(headers)
    if recorded is not None:
        meta[RECORDED_AT] = recorded
    return _redacted(Interaction(request, response, meta))


def from_vcrpy(data: bytes, *, name: str, profile: str = DEFAULT_PROFILE) -> Converted:
    """A vcrpy or pytest-recording cassette (YAML or JSON, any vcrpy version) as a cassette.
    Raises :class:`CassetteError` when the file is not one at all."""
    import yaml

    steps = _profiles.parse(profile)
    text = data.decode("utf-8", "surrogateescape")
    stripped = text.lstrip()
    lines: dict[str, int] = {}
    if stripped.startswith("{") or (stripped.startswith("[") and "\n- " not in text):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise CassetteError(name, f"not valid JSON: {e.msg}", line=e.lineno) from None
        except (ValueError, RecursionError) as e:  # > 4300 digits; deep nesting
            raise CassetteError(name, f"not usable JSON: {e}") from None
    else:
        try:
            text.encode("utf-8")  # YAML is text: a byte that is not UTF-8 is no cassette
        except UnicodeEncodeError as e:
            raise CassetteError(
                name,
                f"not UTF-8 text (byte {len(text[: e.start].encode('utf-8', 'surrogateescape'))})",
            ) from None
        try:
            doc = yaml.load(text, Loader=_SafeLoader.get())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(e, "problem", None) or str(e)
            raise CassetteError(name, f"not valid YAML: {problem}", line=line) from None
        lines = _yaml_lines(text)
    if isinstance(doc, list):  # vcrpy < 1.0: a bare list of interactions
        items, prefix = doc, ""
    elif isinstance(doc, Mapping) and "interactions" in doc:
        version = doc.get("version", 1)
        if version != 1:
            raise CassetteError(
                name,
                f"vcrpy cassette format version {version!r} is not known (1 is)",
                where="version",
            )
        items, prefix = doc["interactions"], "interactions"
        if not isinstance(items, list):
            raise CassetteError(
                name, "expected a list", where="interactions", line=lines.get(prefix)
            )
    else:
        raise CassetteError(name, "not a vcrpy cassette (no interactions)")
    interactions, problems = [], []
    for i, item in enumerate(items):
        where = f"{prefix}[{i}]"
        try:
            interactions.append(_vcr_interaction(item, where, steps, profile))
        except _Skip as e:
            problems.append(Problem(e.where, e.message, _line(lines, e.where)))
    meta = {"imported_from": f"vcrpy: {name}", "synthesized": f"timing: {profile}"}
    return Converted(Cassette(tuple(interactions), meta), tuple(problems))


def _line(lines: Mapping[str, int], where: str) -> int | None:
    path = where
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


# ---------------------------------------------------------------------------------------------
# HAR 1.2

_DROPPED = frozenset({"content-encoding", "content-length"})  # the HAR body is decoded


def _har_headers(value: Any, where: str, drop: frozenset[str] = frozenset()) -> Headers:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _Skip(where, "expected a list of {name, value}")
    pairs = []
    for i, h in enumerate(value):
        if not isinstance(h, Mapping) or not isinstance(h.get("name"), str):
            raise _Skip(f"{where}[{i}]", "expected {name, value}")
        name = h["name"]
        if name.startswith(":") or name.lower() in drop:
            continue
        pairs.append((name, str(h.get("value", ""))))
    return tuple(pairs)


def _har_ms(timings: Any, key: str) -> float:
    value = timings.get(key) if isinstance(timings, Mapping) else None
    return float(value) / 1000 if isinstance(value, int | float) and value > 0 else 0.0


def _har_body(content: Any, where: str) -> bytes:
    if not isinstance(content, Mapping):
        raise _Skip(where, "missing")
    text = content.get("text")
    if text is None:
        if content.get("size", 0) in (0, None):
            return b""
        raise _Skip(f"{where}.text", "missing: the HAR was saved without response bodies")
    if not isinstance(text, str):
        raise _Skip(f"{where}.text", f"expected text, got {type(text).__name__}")
    if content.get("encoding") == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise _Skip(f"{where}.text", f"not valid base64: {e}") from None
    return text.encode("utf-8", "surrogateescape")


def _har_request(req: Any, where: str) -> Request:
    if not isinstance(req, Mapping):
        raise _Skip(where, "missing")
    method, url = req.get("method"), req.get("url")
    if not isinstance(method, str) or not method:
        raise _Skip(f"{where}.method", "missing")
    if not isinstance(url, str) or not urlsplit(url).scheme:
        raise _Skip(f"{where}.url", f"not an absolute URL: {url!r}")
    body = b""
    post = req.get("postData")
    if isinstance(post, Mapping):
        if isinstance(post.get("text"), str):
            body = post["text"].encode("utf-8", "surrogateescape")
        elif isinstance(post.get("params"), list):
            body = urlencode(
                [(str(p.get("name", "")), str(p.get("value", ""))) for p in post["params"]]
            ).encode()
    return Request(method.upper(), url, _har_headers(req.get("headers"), f"{where}.headers"), body)


def _har_entry(
    entry: Any, where: str, steps: tuple[_profiles.Profile, ...], profile: str, now: float | None
) -> Interaction:
    if not isinstance(entry, Mapping):
        raise _Skip(where, "expected an entry")
    recorded = _har_recorded_at(entry, where, now)
    request = _har_request(entry.get("request"), f"{where}.request")
    resp = entry.get("response")
    if not isinstance(resp, Mapping):
        raise _Skip(f"{where}.response", "missing")
    status = resp.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or status == 0:
        raise _Skip(
            f"{where}.response.status",
            f"{status!r}: the request got no response (failed, blocked or cancelled)",
        )
    reason = str(resp.get("statusText") or "")
    headers = _har_headers(resp.get("headers"), f"{where}.response.headers", _DROPPED)
    version = str(resp.get("httpVersion") or "HTTP/1.1")
    version = {"h2": "HTTP/2.0", "h3": "HTTP/3.0"}.get(version.lower(), version)
    _check_head(status, reason, headers, version, f"{where}.response")
    body = _har_body(resp.get("content"), f"{where}.response.content")
    timings = entry.get("timings")
    first = _har_ms(timings, "send") + _har_ms(timings, "wait")
    receive = _har_ms(timings, "receive")
    if first > 0:
        headers_at, chunks, end, how = _timed(
            body, headers, steps=steps, first=first, spread=receive or None
        )
        timing = "the entry's timings (send + wait, then events spread over receive)"
        if not receive:
            timing = "the entry's timings (send + wait), then 20 ms per event"
        meta = _meta("HAR", where, how, profile)
        meta["synthesized"] = f"timing: from {timing}; {how}"
        meta.pop("profile")
    else:
        headers_at, chunks, end, how = _timed(body, headers, steps=steps)
        meta = _meta("HAR", where, how, profile)
    if recorded is not None:
        meta[RECORDED_AT] = recorded
    response = Response.from_chunks(
        status,
        chunks,
        reason=reason,
        http_version=version,
        headers=headers,
        headers_at=headers_at,
        end=end,
    )
    return _redacted(Interaction(request, response, meta))


def from_har(
    data: bytes, *, name: str, profile: str = DEFAULT_PROFILE, now: float | None = None
) -> Converted:
    """A HAR 1.2 file (browser devtools, Playwright ``record_har_path``) as a cassette.
    ``now`` (seconds since 1970): an entry started more than a day after it is a problem."""
    steps = _profiles.parse(profile)
    try:
        doc = json.loads(data.decode("utf-8", "surrogateescape"))
    except json.JSONDecodeError as e:
        raise CassetteError(name, f"not valid JSON: {e.msg}", line=e.lineno) from None
    except (ValueError, RecursionError) as e:  # > 4300 digits; deep nesting
        raise CassetteError(name, f"not usable JSON: {e}") from None
    log = doc.get("log") if isinstance(doc, Mapping) else None
    entries = log.get("entries") if isinstance(log, Mapping) else None
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise CassetteError(name, "not a HAR file (no log.entries)", where="log.entries")
    interactions, problems = [], []
    for i, entry in enumerate(entries):
        where = f"log.entries[{i}]"
        try:
            interactions.append(_har_entry(entry, where, steps, profile, now))
        except _Skip as e:
            problems.append(Problem(e.where, e.message))
    assert isinstance(log, Mapping)
    creator = log.get("creator")
    creator = creator if isinstance(creator, Mapping) else {}
    made_by = " ".join(str(creator.get(k, "")) for k in ("name", "version")).strip() or "HAR"
    meta = {"imported_from": f"{made_by}: {name}", "synthesized": "timing: see each interaction"}
    return Converted(Cassette(tuple(interactions), meta), tuple(problems))
