"""Recording hooks with vcrpy's names: ``before_record_request`` and ``before_record_response``
edit or drop an interaction before it is saved. Pure: user callables on small mutable copies.

    def before_record_request(request):        # HookRequest -> HookRequest | None
        if request.path == "/health":
            return None                         # not recorded
        request.set_header("x-team", None)      # removed
        return request

    def before_record_response(response):      # HookResponse -> HookResponse | None
        response.set_header("x-request-id", "fixed")
        return response

A hook gets a copy it may change in place and must return it (or a new one of the same type),
or None to drop the interaction: nothing of it is saved. Redaction runs **after** the hooks, on
what they return, so a hook cannot put a credential back into a cassette.

What a hook may change:

- :class:`HookRequest`: ``method``, ``url``, ``headers`` (a list of ``(name, value)`` pairs, in
  order, repeats kept), ``body`` (bytes). ``path`` is read from ``url``; ``uri`` is ``url``
  (vcrpy's name).
- :class:`HookResponse`: ``status``, ``reason``, ``headers``, and the body as ``chunks``: the
  bytes of each chunk in the order they arrived, still content-encoded (gzip stays gzip). A
  chunk edited keeps its arrival time; the number of chunks cannot change. ``body`` is the
  chunks joined; setting it works for a response that arrived in at most one chunk (a buffered
  answer), and for a streamed one raises ConfigError (edit ``chunks``). ``content-length``
  follows the new body length. ``streamed``: more than one chunk.

What a hook leaves alone is saved byte-exact (chunk boundaries and times included). A head it
changed is checked like a loaded cassette (a status 100-599, header names tokens, no control
bytes in values); a wrong type, a bad value or an exception raised by the hook is a ConfigError
naming the hook. WebSocket interactions go through the same hooks (their handshake).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._cassette import Interaction, Request, Response, head_problems
from ._errors import ConfigError

if TYPE_CHECKING:
    from ._redaction import Redaction

__all__ = ["HookRequest", "HookResponse", "Hooks"]

Pairs = list[tuple[str, str]]


def _find(headers: Pairs, name: str) -> str | None:
    lname = name.lower()
    return next((v for k, v in headers if k.lower() == lname), None)


def _set(headers: Pairs, name: str, value: str | None) -> None:
    lname = name.lower()
    at = next((i for i, (k, _) in enumerate(headers) if k.lower() == lname), len(headers))
    headers[:] = [(k, v) for k, v in headers if k.lower() != lname]
    if value is not None:
        headers.insert(min(at, len(headers)), (name, value))


@dataclass(eq=False)
class HookRequest:
    """The request a ``before_record_request`` hook gets (see the module)."""

    method: str
    url: str
    headers: Pairs = field(default_factory=list)
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"

    @property
    def uri(self) -> str:
        return self.url

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        return _find(self.headers, name)

    def set_header(self, name: str, value: str | None) -> None:
        """Replace every ``name`` header by one (in the first one's place); None removes them."""
        _set(self.headers, name, value)


@dataclass(eq=False)
class HookResponse:
    """The response a ``before_record_response`` hook gets (see the module)."""

    status: int
    reason: str = ""
    headers: Pairs = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)

    @property
    def streamed(self) -> bool:
        return len(self.chunks) > 1

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @body.setter
    def body(self, value: bytes) -> None:
        if self.streamed:
            raise ConfigError(
                f"a streamed response ({len(self.chunks)} chunks) is edited chunk by chunk: "
                "change response.chunks[i] (each keeps its arrival time)"
            )
        self.chunks = [bytes(value)]

    def header(self, name: str) -> str | None:
        return _find(self.headers, name)

    def set_header(self, name: str, value: str | None) -> None:
        _set(self.headers, name, value)


def _pairs(value: object, where: str) -> tuple[tuple[str, str], ...]:
    if isinstance(value, list | tuple) and all(
        isinstance(p, tuple | list) and len(p) == 2 and all(isinstance(x, str) for x in p)
        for p in value
    ):
        return tuple((k, v) for k, v in value)
    raise ConfigError(f"{where}: headers must be a list of (name, value) strings, got {value!r}")


@dataclass(frozen=True, slots=True)
class Hooks:
    """The two hooks (either may be None)."""

    before_record_request: Callable[[HookRequest], Any] | None = None
    before_record_response: Callable[[HookResponse], Any] | None = None

    def __post_init__(self) -> None:
        for name in ("before_record_request", "before_record_response"):
            hook = getattr(self, name)
            if hook is not None and not callable(hook):
                raise ConfigError(f"{name} must be a function or None, got {hook!r}")

    def __bool__(self) -> bool:
        return self.before_record_request is not None or self.before_record_response is not None

    def recorded(self, raw: Interaction, redaction: Redaction) -> Interaction | None:
        """What a recorder saves of ``raw``: through the hooks (None: one dropped it), then
        redaction (after them: a hook cannot put a credential back)."""
        edited = self.apply(raw) if self else raw
        return None if edited is None else redaction.interaction(edited)

    def apply(self, interaction: Interaction) -> Interaction | None:
        """The interaction as the hooks leave it, or None when one dropped it."""
        request = interaction.request
        if self.before_record_request is not None:
            edited = self._request(self.before_record_request, request)
            if edited is None:
                return None
            request = edited
        response = interaction.response
        if self.before_record_response is not None:
            answer = self._response(self.before_record_response, response)
            if answer is None:
                return None
            response = answer
        if request is interaction.request and response is interaction.response:
            return interaction
        return replace(interaction, request=request, response=response)

    @staticmethod
    def _request(hook: Callable[[HookRequest], Any], request: Request) -> Request | None:
        given = HookRequest(request.method, request.url, list(request.headers), request.body)
        where = "before_record_request"
        got = _call(hook, given, where)
        if got is None:
            return None
        if not isinstance(got, HookRequest):
            raise ConfigError(f"{where} must return the request or None, got {got!r}")
        if not isinstance(got.method, str) or not got.method.isascii() or not got.method:
            raise ConfigError(f"{where}: method must be a word such as 'POST', got {got.method!r}")
        if not isinstance(got.url, str) or any(ord(c) < 33 for c in got.url):
            raise ConfigError(f"{where}: url must be text without spaces, got {got.url!r}")
        if not isinstance(got.body, bytes | bytearray):
            raise ConfigError(f"{where}: body must be bytes, got {type(got.body).__name__}")
        headers = _pairs(got.headers, where)
        bad = [] if headers == request.headers else head_problems(200, "", headers)
        if bad:
            raise ConfigError(f"{where}: {bad[0][1]}")
        out = Request(got.method, got.url, headers, bytes(got.body))
        return request if out == request else out

    @staticmethod
    def _response(hook: Callable[[HookResponse], Any], response: Response) -> Response | None:
        chunks = [c.data for c in response.chunks]
        given = HookResponse(response.status, response.reason, list(response.headers), list(chunks))
        where = "before_record_response"
        got = _call(hook, given, where)
        if got is None:
            return None
        if not isinstance(got, HookResponse):
            raise ConfigError(f"{where} must return the response or None, got {got!r}")
        status, reason = got.status, got.reason
        if isinstance(status, bool) or not isinstance(status, int) or not isinstance(reason, str):
            raise ConfigError(f"{where}: status must be a number and reason text")
        headers = _pairs(got.headers, where)
        changed = (status, reason, headers) != (response.status, response.reason, response.headers)
        problems = head_problems(status, reason, headers, response.http_version) if changed else []
        if problems:
            raise ConfigError(f"{where}: {problems[0][0]}: {problems[0][1]}")
        new = got.chunks
        if not isinstance(new, list) or not all(isinstance(c, bytes | bytearray) for c in new):
            raise ConfigError(f"{where}: chunks must be a list of bytes")
        if len(new) != len(chunks) and not (len(chunks) == 0 and len(new) == 1):
            raise ConfigError(
                f"{where}: the response arrived in {len(chunks)} chunks, the hook returned "
                f"{len(new)}: edit the chunks in place (each keeps its arrival time)"
            )
        body = b"".join(new)
        if body != response.body:
            from ._redaction import set_length

            headers = set_length(headers, len(body))
        if (status, reason, headers) == (response.status, response.reason, response.headers) and (
            body == response.body and [bytes(c) for c in new] == chunks
        ):
            return response
        times = list(response.chunk_at) or [response.headers_at]
        return Response.from_chunks(
            status,
            list(zip(times, (bytes(c) for c in new), strict=True)),
            reason=reason,
            http_version=response.http_version,
            headers=headers,
            headers_at=response.headers_at,
            end=response.end,
        )


def _call(hook: Callable[[Any], Any], value: Any, where: str) -> Any:
    try:
        return hook(value)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{where} raised {type(e).__name__}: {e}") from e
