"""Redaction: keep credentials out of cassettes. Pure functions on frozen values; no I/O.

A :class:`Redaction` names what to hide — header names, URL query keys and JSON body paths of
the request — and replaces each value with ``REDACTED``. Recorders apply it to every exchange
before it is saved, so secrets never reach disk::

    r = Redaction().extended(headers=["x-my-token"], query_keys=["sig"], body_paths=["auth.token"])
    interaction = r.interaction(interaction)      # or r.request(req) / r.response(resp)

Rules:

- headers: matched case-insensitively, every occurrence, in requests and responses;
- query keys: matched case-insensitively on the decoded name; only the value is replaced, the rest
  of the URL keeps its exact bytes;
- body paths: dotted keys into a JSON request body (``api_key``, ``auth.token``); a list on the
  way applies the rest of the path to each element. The body is re-serialised only when a path
  matched; non-JSON bodies are left alone. Response bodies are never changed (they are the
  recorded wire bytes; providers do not echo credentials in them).

It must not do I/O or know about mitmproxy or httpx.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from ._cassette import Headers, Interaction, Request, Response
from ._errors import ConfigError

__all__ = [
    "DEFAULT_HEADERS",
    "DEFAULT_QUERY_KEYS",
    "PLACEHOLDER",
    "Redaction",
]

PLACEHOLDER = "REDACTED"

DEFAULT_HEADERS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "openai-organization",
        "openai-project",
        "cookie",
        "set-cookie",
    }
)
"""Header names (lower case) redacted by default (DESIGN.md, plus ``proxy-authorization``)."""

DEFAULT_QUERY_KEYS: frozenset[str] = frozenset({"key"})
"""URL query keys (lower case) redacted by default (Gemini's ``?key=``)."""


@dataclass(frozen=True, slots=True)
class Redaction:
    """What to hide. The default instance hides the DESIGN.md credential list."""

    headers: frozenset[str] = DEFAULT_HEADERS
    query_keys: frozenset[str] = DEFAULT_QUERY_KEYS
    body_paths: tuple[tuple[str, ...], ...] = ()

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
        return Redaction(
            headers=self.headers | {h.strip().lower() for h in headers if h.strip()},
            query_keys=self.query_keys | {k.strip().lower() for k in query_keys if k.strip()},
            body_paths=tuple(paths),
        )

    # -- parts ---------------------------------------------------------------------------------

    def redact_headers(self, headers: Headers) -> Headers:
        if not any(k.lower() in self.headers for k, _ in headers):
            return headers
        return tuple((k, PLACEHOLDER if k.lower() in self.headers else v) for k, v in headers)

    def redact_url(self, url: str) -> str:
        if not self.query_keys or "?" not in url:
            return url
        parts = urlsplit(url)
        if not parts.query:
            return url
        changed = False
        pieces = []
        for piece in parts.query.split("&"):
            name = piece.partition("=")[0]
            if unquote_plus(name).lower() in self.query_keys:
                piece = f"{name}={PLACEHOLDER}"
                changed = True
            pieces.append(piece)
        if not changed:
            return url
        return urlunsplit(parts._replace(query="&".join(pieces)))

    def redact_body(self, body: bytes) -> bytes:
        if not self.body_paths or not body:
            return body
        stripped = body.lstrip()
        if stripped[:1] not in (b"{", b"["):
            return body
        try:
            doc = json.loads(body)
        except ValueError:
            return body
        if not any([_redact_path(doc, path) for path in self.body_paths]):
            return body
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    # -- whole values --------------------------------------------------------------------------

    def request(self, request: Request) -> Request:
        return replace(
            request,
            url=self.redact_url(request.url),
            headers=self.redact_headers(request.headers),
            body=self.redact_body(request.body),
        )

    def response(self, response: Response) -> Response:
        headers = self.redact_headers(response.headers)
        return response if headers is response.headers else replace(response, headers=headers)

    def interaction(self, interaction: Interaction) -> Interaction:
        return replace(
            interaction,
            request=self.request(interaction.request),
            response=self.response(interaction.response),
        )


def _redact_path(node: Any, path: tuple[str, ...]) -> bool:
    """Replace the value at ``path`` in place; True when something was replaced."""
    if isinstance(node, list):
        return any([_redact_path(item, path) for item in node])
    if not isinstance(node, dict) or path[0] not in node:
        return False
    if len(path) == 1:
        node[path[0]] = PLACEHOLDER
        return True
    return _redact_path(node[path[0]], path[1:])
