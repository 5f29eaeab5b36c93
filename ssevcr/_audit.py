"""Secret scanning for cassettes: find what looks like a credential, and redact it.

Looks in request and response headers, the request URL, the request body, the response body
(the chunks joined, decoded if gzip/deflate) and every WebSocket message, both directions (the
handshake is the request and the 101 response). A finding is anything
:class:`~ssevcr._redaction.Redaction` would have hidden at record time (a secret place:
credential headers, URL userinfo and query keys, JSON keys like ``api_key`` or ``password`` in
bodies and SSE data, form fields) and anything
:func:`ssevcr._secrets.find` recognises by its shape (provider keys by prefix and length, SigV4
signatures, Basic credentials, JWTs, bearer tokens, random values under credential-like names).
``REDACTED`` is never a finding.

``redact`` replaces each finding with ``REDACTED`` (a whole value for credential headers), keeps
every other byte and each chunk's time, re-encodes a compressed body chunk by chunk and fixes
``content-length``; what it leaves, a second scan does not find. In a WebSocket message the
replacement keeps the message what it was: a text message stays valid UTF-8 (a span never cuts
a character), a JSON message stays valid JSON (a finding that would cut an escape sequence or a
quote takes the whole string it sits in), and in a binary message the finding is overwritten
with as many bytes (``REDACTEDREDA...``), so lengths a binary protocol keeps stay true. A body
that cannot be decoded (damaged, or larger than the limit: a decompression bomb) cannot be
searched: it is reported as a ``problem``, never silently passed. Pure: no files (the CLI
saves atomically), no output.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import unquote_plus

from . import _content as content
from ._cassette import Cassette, Headers, Request, Response, WebSocket, WsMessage
from ._redaction import PLACEHOLDER, Redaction, replaced, set_length
from ._secrets import (
    Span,
    find,
    is_credential_name,
    is_redacted,
    json_spans,
    looks_random,
    mask,
    merge,
)
from ._secrets import replace as replace_spans
from ._sse import Event, parse

__all__ = [
    "REDACTED",
    "Audit",
    "Finding",
    "audit",
    "is_credential_name",
    "looks_random",
    "mask",
    "scan",
]

REDACTED = PLACEHOLDER
_RULES = Redaction()


@dataclass(frozen=True, slots=True)
class Finding:
    interaction: int  # from 1
    location: str  # "request header 'x-api-key'", "request URL query 'key'", "response event 3"
    kind: str  # "OpenAI API key", "credential in 'client_secret'", ...
    excerpt: str  # masked: the context before it, the first few characters and the length

    def __str__(self) -> str:
        return f"interaction {self.interaction}: {self.location}: {self.kind}: {self.excerpt}"


@dataclass(frozen=True, slots=True)
class Audit:
    """What auditing a cassette gave: the redacted cassette (the same object when nothing was
    found), the findings, and the places that could not be searched (``"interaction 2:
    response body: not decoded: larger than 64 MiB when decoded"``)."""

    cassette: Cassette
    findings: tuple[Finding, ...]
    problems: tuple[str, ...] = ()


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


def _excerpt(data: bytes, hit: Span, floor: int = 0, context: int = 24) -> str:
    """What precedes the secret (never reaching into the previous finding, ``floor``), then the
    secret masked."""
    before = data[max(floor, hit.start - context) : hit.start].decode("utf-8", "replace")
    before = _printable(before.rsplit("\n", 1)[-1]).lstrip()
    return before + mask(_printable(data[hit.start : hit.end].decode("utf-8", "replace")))


def _excerpts(data: bytes, hits: Sequence[Span]) -> list[str]:
    return [_excerpt(data, h, hits[i - 1].end if i else 0) for i, h in enumerate(hits)]


def _spans(data: bytes, places: Sequence[Span]) -> list[Span]:
    """Shapes first (their kind is the more precise), then the secret places; no empty ones
    (a bare ``?token`` leaks nothing)."""
    return merge([*find(data), *(s for s in places if s.end > s.start)])


def _header(name: str, value: str) -> tuple[list[Span], bool]:
    """Findings in one header value, and whether the whole value should go."""
    raw = value.encode("latin-1", "replace")
    hits = find(raw)
    if _RULES.secret_header(name) and not is_redacted(value):
        return [Span(0, len(raw), hits[0].kind if hits else f"credential in header {name!r}")], True
    if hits and is_credential_name(name) and not is_redacted(value):
        return [Span(0, len(raw), hits[0].kind)], True
    return hits, False


def _query_name(url: bytes, hit: Span) -> str:
    qmark = url.find(b"?")
    if qmark < 0 or hit.start < qmark:
        return "request URL"
    amp = url.rfind(b"&", 0, hit.start)
    name = url[max(amp, qmark) + 1 : hit.start].split(b"=")[0]
    return f"request URL query {unquote_plus(name.decode('utf-8', 'replace'))!r}"


def _headers(where: str, index: int, headers: Headers, findings: list[Finding]) -> Headers:
    out = []
    for name, value in headers:
        hits, whole = _header(name, value)
        raw = value.encode("latin-1", "replace")
        for h, shown in zip(hits, _excerpts(raw, hits), strict=True):
            if whole:  # "Bearer sk-proj…(164 chars)": the scheme stays readable
                scheme, space, rest = value.strip().partition(" ")
                shown = (
                    f"{scheme} {mask(rest.strip())}" if space and scheme.isalpha() else mask(value)
                )
            findings.append(
                Finding(index, f"{where} header {name!r}", h.kind, _printable(f"{name}: {shown}"))
            )
        if whole:
            value = REDACTED
        elif hits:
            value = replace_spans(raw, hits).decode("latin-1")
        out.append((name, value))
    return tuple(out)


def _request(index: int, req: Request, findings: list[Finding]) -> Request:
    headers = _headers("request", index, req.headers, findings)
    url = req.url
    raw = url.encode("utf-8", "surrogateescape")
    hits = _spans(raw, _RULES.url_spans(url))
    if hits:
        for h, shown in zip(hits, _excerpts(raw, hits), strict=True):
            findings.append(Finding(index, _query_name(raw, h), h.kind, shown))
        url = replace_spans(raw, hits).decode("utf-8", "surrogateescape")
    body = req.body
    content_type = (req.header("content-type") or "").split(";")[0].strip().lower()
    hits = _spans(body, _RULES.body_spans(body, content_type))
    if hits:
        for h, shown in zip(hits, _excerpts(body, hits), strict=True):
            findings.append(Finding(index, "request body", h.kind, shown))
        body = replace_spans(body, hits)
        headers = set_length(headers, len(body))
    return replace(req, url=url, headers=headers, body=body)


def _frame_namer(body: bytes, is_sse: bool) -> Callable[[int], str]:
    if not is_sse:
        return lambda pos: f"response body (byte {pos})"
    frames = parse(body).frames
    starts = [f.start for f in frames]
    numbers, n = [], 0
    for f in frames:
        n += isinstance(f, Event)
        numbers.append(n)

    def name(pos: int) -> str:
        i = bisect.bisect_right(starts, pos) - 1
        if i < 0 or pos >= frames[i].end:
            return f"response body (byte {pos}, after the last event)"
        kind = "event" if isinstance(frames[i], Event) else "comment after event"
        return f"response {kind} {numbers[i]}"

    return name


def _response(
    index: int, resp: Response, findings: list[Finding], problems: list[str], limit: int
) -> Response:
    headers = _headers("response", index, resp.headers, findings)
    pieces = [(c.at, c.data) for c in resp.chunks]
    encoding = resp.content_encoding
    decoded = content.decode(pieces, encoding, limit=limit)
    if decoded.ok:
        pieces = list(decoded.pieces)
    else:  # searched as recorded (what can be found there is), and said
        problems.append(
            f"interaction {index}: response body ({encoding}) not searched: {decoded.problem}"
        )
    body = b"".join(d for _, d in pieces)
    hits = _spans(body, _RULES.body_spans(body, resp.content_type) if decoded.ok else [])
    if not hits:
        return resp if headers is resp.headers else replace(resp, headers=headers)
    where = _frame_namer(body, resp.is_event_stream and decoded.ok)
    for h, shown in zip(hits, _excerpts(body, hits), strict=True):
        findings.append(Finding(index, where(h.start), h.kind, shown))
    return replaced(resp, pieces, hits, headers, encoding if decoded.ok else "identity")


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _valid_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


def _in_strings(data: bytes, spans: list[Span]) -> list[Span]:
    """Spans of a JSON document kept inside its strings: one wholly inside a string that cuts
    no escape sequence stays; any other takes the contents of each string it touches."""
    strings = [(m.start() + 1, m.end() - 1) for m in _JSON_STRING.finditer(data)]
    out: list[Span] = []
    for sp in spans:
        for a, b in strings:
            if b <= sp.start or a >= sp.end:
                continue
            if a <= sp.start and sp.end <= b and b"\\" not in data[max(a, sp.start - 1) : sp.end]:
                out.append(sp)
            else:
                out.append(Span(a, b, sp.kind))
    return merge(out)


def _on_characters(data: bytes, spans: list[Span]) -> list[Span]:
    """Spans widened to whole UTF-8 characters."""
    out = []
    for sp in spans:
        start, end = sp.start, sp.end
        while start > 0 and data[start] & 0xC0 == 0x80:
            start -= 1
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end += 1
        out.append(Span(start, end, sp.kind, sp.replacement))
    return merge(out)


def _message_name(index: int, m: WsMessage) -> str:
    side = "client" if m.from_client else "server"
    kind = ""
    if not m.binary and m.data.lstrip()[:1] == b"{":
        try:
            value = json.loads(m.data)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict) and isinstance(value.get("type"), str):
            kind = f" ({_printable(value['type'][:60])})"
    return f"WebSocket {side} message {index}{kind}"


def _message(m: WsMessage) -> tuple[list[Span], bytes]:
    """The findings in one message (as found) and its bytes with them replaced."""
    data = m.data
    if m.binary:  # overwritten in place: the same length
        hits = find(data)
        filler = REDACTED.encode() * (1 + max((h.end - h.start for h in hits), default=0) // 8)
        same = [Span(h.start, h.end, h.kind, filler[: h.end - h.start]) for h in hits]
        return hits, replace_spans(data, same)
    is_json = data.lstrip()[:1] in (b"{", b"[") and _valid_json(data)
    hits = _spans(data, json_spans(data) if is_json else [])
    if not hits:
        return [], data
    fixed = _in_strings(data, hits) if is_json else hits
    try:
        data.decode("utf-8")
        fixed = _on_characters(data, fixed)
    except UnicodeDecodeError:
        pass
    return hits, replace_spans(data, fixed)


def _websocket(index: int, ws: WebSocket, findings: list[Finding]) -> WebSocket:
    messages = []
    for n, m in enumerate(ws.messages, 1):
        hits, data = _message(m)
        if hits:
            where = _message_name(n, m)
            for h, shown in zip(hits, _excerpts(m.data, hits), strict=True):
                findings.append(Finding(index, where, h.kind, _printable(shown)))
            m = replace(m, data=data)
        messages.append(m)
    return replace(ws, messages=tuple(messages))


def audit(cassette: Cassette, *, limit: int = content.DEFAULT_LIMIT) -> Audit:
    """Every credential in ``cassette``, in order, and the cassette with each one replaced by
    ``REDACTED``. ``limit`` caps how much of a compressed body is decoded to search it."""
    findings: list[Finding] = []
    problems: list[str] = []
    interactions = tuple(
        replace(
            inter,
            request=_request(n, inter.request, findings),
            response=_response(n, inter.response, findings, problems, limit),
            websocket=None if inter.websocket is None else _websocket(n, inter.websocket, findings),
        )
        for n, inter in enumerate(cassette.interactions, 1)
    )
    clean = replace(cassette, interactions=interactions) if findings else cassette
    return Audit(clean, tuple(findings), tuple(problems))


def scan(cassette: Cassette, *, limit: int = content.DEFAULT_LIMIT) -> list[Finding]:
    """Everything in ``cassette`` that looks like a credential, in order."""
    return list(audit(cassette, limit=limit).findings)
