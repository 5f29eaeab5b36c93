"""Redaction: keep credentials out of cassettes. Pure functions on frozen values; no I/O.

A :class:`Redaction` says what to hide and replaces each value with ``REDACTED``. Recorders (the
mitmproxy addon in reverse and forward mode, and ``use_cassette(record=...)`` in process) apply it
to every exchange before it is saved, so secrets never reach disk::

    r = Redaction().extended(headers=["x-my-token"], query_keys=["sig"], body_paths=["auth.token"])
    interaction = r.interaction(interaction)      # or r.request(req) / r.response(resp)

By default it hides what :mod:`ssevcr._secrets` calls a secret *place*:

- headers (requests and responses, every occurrence, whole value): ``authorization``,
  ``x-api-key``, ``cookie``, ``set-cookie``, ``x-amz-security-token``... and any name ending in
  ``-api-key``, ``-token`` or ``-secret``;
- the URL: its userinfo (``https://user:password@host``) and the values of query keys ``key``,
  ``api_key``, ``token``, ``sig``, ``signature``, ``X-Amz-Signature``... (case-insensitive); the
  rest of the URL keeps its exact bytes;
- bodies, requests and responses alike: every JSON string under a key named like ``api_key``,
  ``client_secret``, ``access_token``, ``refresh_token`` or ``password``, at any depth, in a JSON
  body and in the JSON of each SSE ``data:`` line (only the characters between the quotes change:
  the framing and every other byte stay), and the secret fields of a form-encoded body. A
  gzip/deflate body is decoded (``ssevcr._content``, capped), redacted and encoded again chunk by
  chunk; each chunk keeps its time. A body too large to decode is left as recorded (``ssevcr
  audit`` reports it). ``content-length`` follows the new length;
- WebSocket messages (both directions): every JSON string under such a key in a text message
  (OpenAI Realtime's ``session.update`` carrying a key); the handshake is a request like any;
- user additions: header names, query keys, dotted JSON paths of the request body (``auth.token``;
  a list on the way applies the rest of the path to each element; the whole value goes).

Matching knows that a recorded ``REDACTED`` stands for any value (``ssevcr._matching``).
It must not do I/O or know about mitmproxy or httpx.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from . import _content as content
from ._cassette import Headers, Interaction, Pieces, Request, Response, WebSocket, with_body
from ._errors import ConfigError
from ._secrets import (
    DEFAULT_HEADERS,
    DEFAULT_QUERY_KEYS,
    PLACEHOLDER,
    Span,
    form_spans,
    is_secret_header,
    json_spans,
    may_name_a_secret,
    url_spans,
)
from ._secrets import replace as replace_spans

__all__ = [
    "DEFAULT_HEADERS",
    "DEFAULT_QUERY_KEYS",
    "PLACEHOLDER",
    "Redaction",
    "encode",
    "recut",
    "replaced",
    "set_length",
]


@dataclass(frozen=True, slots=True)
class Redaction:
    """What to hide. The default instance hides every secret place of :mod:`ssevcr._secrets`;
    ``max_decoded`` caps how much of a compressed body is decoded to look inside it."""

    headers: frozenset[str] = DEFAULT_HEADERS
    query_keys: frozenset[str] = DEFAULT_QUERY_KEYS
    body_paths: tuple[tuple[str, ...], ...] = ()
    max_decoded: int = field(default=content.DEFAULT_LIMIT)

    def extended(
        self,
        *,
        headers: Iterable[str] = (),
        query_keys: Iterable[str] = (),
        body_paths: Iterable[str] = (),
    ) -> Redaction:
        """A copy that also hides these header names, query keys and dotted JSON body paths."""
        paths = list(self.body_paths)
        for p in body_paths:
            parts = tuple(p.strip().split("."))
            if any(not part for part in parts):
                raise ConfigError(
                    f"bad JSON body path {p!r}: expected dotted keys like 'auth.token'"
                )
            if parts not in paths:
                paths.append(parts)
        return replace(
            self,
            headers=self.headers | {h.strip().lower() for h in headers if h.strip()},
            query_keys=self.query_keys | {k.strip().lower() for k in query_keys if k.strip()},
            body_paths=tuple(paths),
        )

    # -- where the secrets are -----------------------------------------------------------------

    def secret_header(self, name: str) -> bool:
        return is_secret_header(name, self.headers)

    def url_spans(self, url: str) -> list[Span]:
        """Spans in ``url.encode("utf-8", "surrogateescape")``."""
        return url_spans(url.encode("utf-8", "surrogateescape"), self.query_keys)

    def body_spans(
        self, body: bytes, content_type: str, *, paths: Sequence[tuple[str, ...]] = ()
    ) -> list[Span]:
        """Secret places in a (decoded) body of this content type: SSE data JSON, a JSON
        document (and ``paths`` in it), a form."""
        if not body:
            return []
        if content_type == "text/event-stream":
            return _event_stream_spans(body)
        if content_type == "application/x-www-form-urlencoded":
            return form_spans(body, self.query_keys)
        if body.lstrip()[:1] in (b"{", b"["):
            return json_spans(body, paths=paths)
        return []

    # -- parts ---------------------------------------------------------------------------------

    def redact_headers(self, headers: Headers) -> Headers:
        if not any(self.secret_header(k) for k, _ in headers):
            return headers
        return tuple((k, PLACEHOLDER if self.secret_header(k) else v) for k, v in headers)

    def redact_url(self, url: str) -> str:
        spans = self.url_spans(url)
        if not spans:
            return url
        raw = url.encode("utf-8", "surrogateescape")
        return replace_spans(raw, spans).decode("utf-8", "surrogateescape")

    def redact_body(self, body: bytes, content_type: str = "") -> bytes:
        """A request body with its secrets replaced (unchanged, the same object, when none)."""
        return replace_spans(body, self.body_spans(body, content_type, paths=self.body_paths))

    # -- whole values --------------------------------------------------------------------------

    def request(self, request: Request) -> Request:
        headers = self.redact_headers(request.headers)
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        body = self.redact_body(request.body, content_type)
        if body is not request.body:
            headers = set_length(headers, len(body))
        return replace(request, url=self.redact_url(request.url), headers=headers, body=body)

    def response(self, response: Response) -> Response:
        headers = self.redact_headers(response.headers)
        pieces = [(c.at, c.data) for c in response.chunks]
        encoding = response.content_encoding
        decoded = content.decode(pieces, encoding, limit=self.max_decoded)
        spans: list[Span] = []
        if decoded.ok:
            spans = self.body_spans(decoded.body, response.content_type)
        if not spans:
            return response if headers is response.headers else replace(response, headers=headers)
        return replaced(response, list(decoded.pieces), spans, headers, encoding)

    def websocket(self, ws: WebSocket) -> WebSocket:
        """The conversation with the secrets of its JSON text messages replaced."""
        messages = []
        for m in ws.messages:
            data = m.data
            if not m.binary and data.lstrip()[:1] in (b"{", b"["):
                data = replace_spans(data, json_spans(data, paths=self.body_paths))
            messages.append(m if data is m.data else replace(m, data=data))
        return replace(ws, messages=tuple(messages))

    def interaction(self, interaction: Interaction) -> Interaction:
        ws = interaction.websocket
        return replace(
            interaction,
            request=self.request(interaction.request),
            response=self.response(interaction.response),
            websocket=None if ws is None else self.websocket(ws),
        )


def _event_stream_spans(body: bytes) -> list[Span]:
    """Secrets in the JSON of each event's data: the data lines joined as the parser joins
    them, each span found there moved back to the line it came from."""
    if not may_name_a_secret(body):
        return []
    from ._sse import Event, data_values, parse  # on first use (the replay server's start-up)

    out: list[Span] = []
    for frame in parse(body).frames:
        if not isinstance(frame, Event):
            continue
        lines = data_values(frame)
        raw = frame.raw
        data = b"\n".join(raw[a:b] for a, b in lines)
        found = json_spans(data)
        if not found:
            continue
        starts, pos = [], 0
        for a, b in lines:
            starts.append(pos)
            pos += b - a + 1
        for s in found:
            i = max(k for k, st in enumerate(starts) if st <= s.start)
            a, b = lines[i]
            if s.end - starts[i] > b - a:  # across a line break: not a JSON string
                continue
            shift = frame.start + a - starts[i]
            out.append(Span(s.start + shift, s.end + shift, s.kind, s.replacement))
    return out


# ---------------------------------------------------------------------------------------------
# rewriting timed bodies (shared with ssevcr._audit)


def recut(pieces: Pieces, spans: Sequence[Span]) -> Pieces:
    """Apply replacements to the joined pieces; each piece keeps its time, a replacement goes
    with the piece where its span started (a piece left empty inside a span is dropped)."""
    body = b"".join(d for _, d in pieces)
    new = replace_spans(body, spans)

    def moved(pos: int) -> int:
        shift = 0
        for s in spans:
            if s.end <= pos and not (s.start == s.end == pos):
                shift += len(s.replacement) - (s.end - s.start)
            elif s.start < pos:  # a boundary inside a span: after its replacement
                return s.start + shift + len(s.replacement)
            else:
                break
        return pos + shift

    out, prev, pos = [], 0, 0
    for at, data in pieces:
        pos += len(data)
        cut = moved(pos) if pos < len(body) else len(new)
        if cut > prev or not data:
            out.append((at, new[prev:cut]))
        prev = max(prev, cut)
    return out


def encode(pieces: Pieces, encoding: str) -> Pieces:
    """Compress again, chunk by chunk (sync-flushed, so each chunk is decodable when it
    arrives), for a ``gzip`` or ``deflate`` body."""
    c = zlib.compressobj(wbits=31 if encoding in ("gzip", "x-gzip") else 15)
    out = [(at, c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)) for at, data in pieces]
    if out:
        out[-1] = (out[-1][0], out[-1][1] + c.flush())
    return out


def replaced(
    response: Response, pieces: Pieces, spans: Sequence[Span], headers: Headers, encoding: str
) -> Response:
    """``response`` with ``spans`` of its body ``pieces`` (decoded) replaced, compressed again
    in ``encoding``, under ``headers`` with their length set (redaction and the audit's fix)."""
    new = recut(pieces, spans)
    if encoding != "identity":
        new = encode(new, encoding)
    return with_body(response, new, headers=set_length(headers, sum(len(d) for _, d in new)))


def set_length(headers: Headers, length: int) -> Headers:
    """``content-length`` set to ``length`` where there is one."""
    if not any(k.lower() == "content-length" for k, _ in headers):
        return headers
    return tuple((k, str(length)) if k.lower() == "content-length" else (k, v) for k, v in headers)
