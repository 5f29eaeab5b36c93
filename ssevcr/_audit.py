"""Secret scanning for cassettes: find what looks like a credential, and redact it.

Looks in request and response headers, the request URL (query values and the rest), the request
body and the response body (the chunks joined, decoded if gzip/deflate). It knows the shapes of
provider keys (OpenAI ``sk-``/``sk-proj-``, Anthropic ``sk-ant-``, Google ``AIza``, AWS
``AKIA``/``ASIA``, GitHub, Hugging Face, Slack, JWTs), credentials in ``Authorization`` headers,
and random-looking values under credential-like names (``x-api-key``, ``token``, ``client_secret``,
``?key=``...). ``REDACTED`` is never a finding.

``redact`` replaces each finding with ``REDACTED`` (a whole value for credential headers), keeps
every other byte and each chunk's time, re-encodes a compressed body chunk by chunk and fixes
``content-length``. Pure: no files (the CLI saves atomically), no output.
"""

from __future__ import annotations

import bisect
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import unquote_plus

from ._cassette import Cassette, Headers, Interaction, Request, Response
from ._redaction import DEFAULT_HEADERS, DEFAULT_QUERY_KEYS, PLACEHOLDER
from ._sse import Event, parse
from ._stats import decoded_pieces

__all__ = ["REDACTED", "Finding", "is_credential_name", "looks_random", "redact", "scan"]

REDACTED = PLACEHOLDER

_LEFT = rb"(?<![A-Za-z0-9_\-+/.])"
_RIGHT = rb"(?![A-Za-z0-9_\-])"
_PATTERNS: tuple[tuple[str, re.Pattern[bytes]], ...] = tuple(
    (kind, re.compile(_LEFT + rx + _RIGHT))
    for kind, rx in (
        ("Anthropic API key", rb"sk-ant-[A-Za-z0-9_\-]{20,}"),
        ("OpenAI API key", rb"sk-(?!ant-)[A-Za-z0-9_\-]{20,}"),
        ("Google API key", rb"AIza[0-9A-Za-z_\-]{35}"),
        ("AWS access key", rb"(?:AKIA|ASIA)[0-9A-Z]{16}"),
        ("GitHub token", rb"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
        ("Hugging Face token", rb"hf_[A-Za-z0-9]{30,}"),
        ("Slack token", rb"xox[abprs]-[A-Za-z0-9\-]{10,}"),
        ("JSON Web Token", rb"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    )
)
# a value under a name: "name": "value" (JSON), name=value (query, form), Bearer value
_JSON_MEMBER = re.compile(rb'"([A-Za-z0-9_.\-]{1,64})"\s*:\s*"((?:[^"\\\r\n]|\\.){1,4096})"')
_ASSIGNMENT = re.compile(
    rb"(?<![A-Za-z0-9_.\-])([A-Za-z][A-Za-z0-9_.\-]{0,63})=([^&\s\"'<>;,]{1,4096})"
)
_BEARER = re.compile(rb"\b[Bb]earer\s+([A-Za-z0-9\-._~+/]{8,}=*)")

_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_CREDENTIAL_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "cookie",
        "bearer",
        "passphrase",
    }
)
# named like a credential, but not one
_NOT_CREDENTIALS = frozenset(
    {
        "idempotency-key",
        "idempotency_key",
        "prompt_cache_key",
        "cache_key",
        "key_id",
        "keyid",
        "token_type",
        "token_count",
        "auth_type",
    }
)
_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})


def is_credential_name(name: str) -> bool:
    """``x-api-key``, ``access_token``, ``clientSecret``, ``key``: yes; ``max_tokens``: no.
    Also every name ``redaction`` hides by default (``openai-organization``...)."""
    lname = name.lower()
    if lname in _NOT_CREDENTIALS:
        return False
    if lname in DEFAULT_HEADERS or lname in DEFAULT_QUERY_KEYS:
        return True
    return any(w.lower() in _CREDENTIAL_WORDS for w in _WORD.findall(name))


def _entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(value: str) -> bool:
    """Long, no spaces, mixed character classes, high Shannon entropy: a key, not a word."""
    if len(value) < 16 or REDACTED in value.upper() or any(c.isspace() for c in value):
        return False
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
        )
    )
    return classes >= 2 and _entropy(value) >= 3.2


@dataclass(frozen=True, slots=True)
class Finding:
    interaction: int  # from 1
    location: (
        str  # "request header 'x-api-key'", "request URL query 'key'", "response event 3", ...
    )
    kind: str  # "OpenAI API key", "credential in 'client_secret'", ...
    excerpt: str  # masked: the context before it, the first few characters and the length

    def __str__(self) -> str:
        return f"interaction {self.interaction}: {self.location}: {self.kind}: {self.excerpt}"


@dataclass(frozen=True, slots=True)
class _Hit:
    start: int
    end: int
    kind: str


def mask(secret: str) -> str:
    keep = min(7, len(secret) // 5)
    return f"{secret[:keep]}…({len(secret)} chars)"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


def _excerpt(data: bytes, hit: _Hit, floor: int = 0, context: int = 24) -> str:
    """What precedes the secret (never reaching into the previous finding, ``floor``), then the
    secret masked."""
    before = data[max(floor, hit.start - context) : hit.start].decode("utf-8", "replace")
    before = _printable(before.rsplit("\n", 1)[-1]).lstrip()
    return before + mask(data[hit.start : hit.end].decode("utf-8", "replace"))


def _find(data: bytes) -> list[_Hit]:
    """Credentials in free text (a body, a URL, a header value), without overlaps."""
    hits = []
    for kind, rx in _PATTERNS:
        for m in rx.finditer(data):
            if kind.startswith(("OpenAI", "Anthropic")) and not looks_random(m.group().decode()):
                continue  # "sk-learn-is-a-python-library" is not a key
            hits.append(_Hit(m.start(), m.end(), kind))
    for rx in (_JSON_MEMBER, _ASSIGNMENT):
        for m in rx.finditer(data):
            name = m.group(1).decode("latin-1")
            value = m.group(2).decode("latin-1")
            if is_credential_name(name) and looks_random(unquote_plus(value)):
                hits.append(_Hit(m.start(2), m.end(2), f"credential in {name!r}"))
    for m in _BEARER.finditer(data):
        if looks_random(m.group(1).decode("latin-1")):
            hits.append(_Hit(m.start(1), m.end(1), "bearer token"))
    hits.sort(key=lambda h: (h.start, -h.end))
    kept: list[_Hit] = []
    for h in hits:
        if not kept or h.start >= kept[-1].end:
            kept.append(h)
    return kept


def _excerpts(data: bytes, hits: Sequence[_Hit]) -> list[str]:
    return [_excerpt(data, h, hits[i - 1].end if i else 0) for i, h in enumerate(hits)]


def _replace(data: bytes, hits: Sequence[_Hit]) -> bytes:
    out, pos = [], 0
    for h in hits:
        out += [data[pos : h.start], REDACTED.encode()]
        pos = h.end
    out.append(data[pos:])
    return b"".join(out)


def _header_hits(name: str, value: str) -> tuple[list[_Hit], bool]:
    """Findings in one header value, and whether the whole value should go."""
    raw = value.encode("latin-1", "replace")
    lname = name.lower()
    if lname in _AUTH_HEADERS:
        scheme, _, token = value.strip().partition(" ")
        credential = token.strip() if token else scheme
        if len(credential) >= 8 and credential.upper() != REDACTED:
            kind = (
                "bearer token" if scheme.lower() == "bearer" else f"credentials ({scheme or 'raw'})"
            )
            found = _find(raw)
            return [_Hit(0, len(raw), found[0].kind if found else kind)], True
        return [], False
    hits = _find(raw)
    if (
        is_credential_name(name)
        and value.strip().upper() != REDACTED
        and (
            hits
            or looks_random(value)
            or any(looks_random(t) for t in re.split(r"[\s;,=]+", value))
        )
    ):
        return [_Hit(0, len(raw), hits[0].kind if hits else f"credential in header {name!r}")], True
    return hits, False


def _query_hits(url: str) -> list[_Hit]:
    # query values are ``name=value`` assignments: _find covers them, with the key patterns
    return _find(url.encode("utf-8", "surrogateescape"))


def _query_name(url: bytes, hit: _Hit) -> str:
    qmark = url.find(b"?")
    if qmark < 0 or hit.start < qmark:
        return "request URL"
    amp = url.rfind(b"&", 0, hit.start)
    name = url[max(amp, qmark) + 1 : hit.start].split(b"=")[0]
    return f"request URL query {unquote_plus(name.decode('utf-8', 'replace'))!r}"


def _set_length(headers: Headers, length: int) -> Headers:
    return tuple((k, str(length)) if k.lower() == "content-length" else (k, v) for k, v in headers)


def _headers(where: str, index: int, headers: Headers, findings: list[Finding]) -> Headers:
    out = []
    for name, value in headers:
        hits, whole = _header_hits(name, value)
        raw = value.encode("latin-1", "replace")
        for h, shown in zip(hits, _excerpts(raw, hits), strict=True):
            if whole:  # "Bearer sk-proj…(164 chars)": the scheme stays readable
                scheme, space, rest = value.strip().partition(" ")
                shown = (
                    f"{scheme} {mask(rest.strip())}" if space and scheme.isalpha() else mask(value)
                )
            findings.append(Finding(index, f"{where} header {name!r}", h.kind, f"{name}: {shown}"))
        if whole:
            value = REDACTED
        elif hits:
            value = _replace(raw, hits).decode("latin-1")
        out.append((name, value))
    return tuple(out)


def _request(index: int, req: Request, findings: list[Finding]) -> Request:
    headers = _headers("request", index, req.headers, findings)
    url = req.url
    hits = _query_hits(url)
    if hits:
        raw = url.encode("utf-8", "surrogateescape")
        for h, shown in zip(hits, _excerpts(raw, hits), strict=True):
            findings.append(Finding(index, _query_name(raw, h), h.kind, shown))
        url = _replace(raw, hits).decode("utf-8", "surrogateescape")
    body = req.body
    hits = _find(body)
    if hits:
        for h, shown in zip(hits, _excerpts(body, hits), strict=True):
            findings.append(Finding(index, "request body", h.kind, shown))
        body = _replace(body, hits)
        if any(k.lower() == "content-length" for k, _ in headers):
            headers = _set_length(headers, len(body))
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


def _recut(pieces: list[tuple[float, bytes]], hits: Sequence[_Hit]) -> list[tuple[float, bytes]]:
    """Apply replacements to the joined pieces; each piece keeps its time, a replacement goes
    where the secret started."""
    body = b"".join(d for _, d in pieces)
    new = _replace(body, hits)
    size = len(REDACTED)

    def moved(pos: int) -> int:
        shift = 0
        for h in hits:
            if h.end <= pos:
                shift += size - (h.end - h.start)
            elif h.start < pos:  # a boundary inside a secret: after its replacement
                return h.start + shift + size
            else:
                break
        return pos + shift

    out, prev, pos = [], 0, 0
    for at, data in pieces:
        pos += len(data)
        cut = moved(pos)
        if cut > prev or not data:
            out.append((at, new[prev:cut]))
        prev = cut
    return out


def _encode(pieces: list[tuple[float, bytes]], encoding: str) -> list[tuple[float, bytes]]:
    """Compress again, chunk by chunk (sync-flushed, so each chunk is decodable when it arrives)."""
    c = zlib.compressobj(wbits=31 if encoding in ("gzip", "x-gzip") else 15)
    out = [(at, c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)) for at, data in pieces]
    if out:
        out[-1] = (out[-1][0], out[-1][1] + c.flush())
    return out


def _response(index: int, resp: Response, findings: list[Finding]) -> Response:
    headers = _headers("response", index, resp.headers, findings)
    pieces, problem = decoded_pieces(resp)
    body = b"".join(d for _, d in pieces)
    hits = _find(body)
    if hits:
        where = _frame_namer(body, resp.is_event_stream)
        for h, shown in zip(hits, _excerpts(body, hits), strict=True):
            findings.append(Finding(index, where(h.start), h.kind, shown))
        pieces = _recut(pieces, hits)
        if resp.content_encoding != "identity" and problem is None:
            pieces = _encode(pieces, resp.content_encoding)
        wire = sum(len(d) for _, d in pieces)
        if any(k.lower() == "content-length" for k, _ in headers):
            headers = _set_length(headers, wire)
        return Response.from_chunks(
            resp.status,
            pieces,
            reason=resp.reason,
            http_version=resp.http_version,
            headers=headers,
            headers_at=resp.headers_at,
            end=resp.end,
        )
    return replace(resp, headers=headers)


def _interaction(index: int, inter: Interaction, findings: list[Finding]) -> Interaction:
    return replace(
        inter,
        request=_request(index, inter.request, findings),
        response=_response(index, inter.response, findings),
    )


def scan(cassette: Cassette) -> list[Finding]:
    """Everything in ``cassette`` that looks like a credential, in order."""
    return redact(cassette)[1]


def redact(cassette: Cassette) -> tuple[Cassette, list[Finding]]:
    """The cassette with every finding replaced by ``REDACTED``, and the findings. A cassette
    with no findings comes back unchanged (the same object)."""
    findings: list[Finding] = []
    interactions = tuple(
        _interaction(n, i, findings) for n, i in enumerate(cassette.interactions, 1)
    )
    if not findings:
        return cassette, []
    return replace(cassette, interactions=interactions), findings
