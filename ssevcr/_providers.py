"""Which provider a recorded stream came from, and what its errors look like. Pure.

Used by the ``error:`` fault (the provider's own mid-stream error event, in the stream's own line
endings) and the ``status:`` fault (an HTTP error body and headers shaped like the provider's), so
that the SDK under test takes the same path it takes against the real service. Events here are
those of any framing (SSE events, NDJSON lines, JSON-array elements: ``ssevcr._framing``); only
their ``type`` and ``data`` are read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Protocol

from ._timing import HORIZON

__all__ = [
    "DUMMY_KEYS",
    "OVERLOAD",
    "TERMINAL_EVENT_TYPES",
    "detect",
    "dummy_keys",
    "ends_stream",
    "error_event",
    "error_json",
    "error_response",
    "terminal_index",
]

DUMMY_KEYS = {
    "OPENAI_API_KEY": "sk-ssevcr-replay-dummy",
    "ANTHROPIC_API_KEY": "sk-ant-ssevcr-replay-dummy",
}
"""API-key variables an SDK refuses to start without, and the stand-ins a replay sets when they
are unset (the replay never checks them): ``ssevcr replay -- CMD`` and the pytest marker."""


def dummy_keys(environ: Mapping[str, str]) -> dict[str, str]:
    """The stand-in keys to set in ``environ``: those of :data:`DUMMY_KEYS` unset or empty."""
    return {name: value for name, value in DUMMY_KEYS.items() if not environ.get(name)}


OVERLOAD = {"anthropic": 529}
"""The HTTP status a provider answers when overloaded, beside 429/500/503."""


class Event(Protocol):
    """What this module reads of an event, whatever its framing."""

    @property
    def type(self) -> str: ...

    @property
    def data(self) -> str: ...


def detect(url: str, events: Sequence[Event] = ()) -> str:
    """``openai`` (chat completions and compatibles), ``openai-responses``, ``anthropic``,
    ``gemini``, ``ollama`` or ``generic``, from the request URL and the recorded events."""
    lower = url.lower()
    types = {e.type for e in events[:5]}
    if (
        "message_start" in types
        or "anthropic" in lower
        or lower.split("?")[0].endswith("/v1/messages")
    ):
        return "anthropic"
    if any(t.startswith("response.") for t in types) or lower.split("?")[0].endswith("/responses"):
        return "openai-responses"
    if "generativelanguage" in lower or ":streamgeneratecontent" in lower or "googleapis" in lower:
        return "gemini"
    if "chat/completions" in lower or "/completions" in lower:
        return "openai"
    path = lower.split("?")[0]
    if path.endswith(("/api/chat", "/api/generate")):
        return "ollama"
    for e in events[:3]:
        if '"chat.completion.chunk"' in e.data:
            return "openai"
        if e.type == "line" and all(f'"{k}":' in e.data for k in ("model", "created_at", "done")):
            return "ollama"  # an Ollama line (api/types.go: model, created_at, ..., done)
    return "generic"


TERMINAL_EVENT_TYPES = frozenset(
    {
        "message_stop",  # Anthropic
        "response.completed",  # OpenAI Responses, and its two other last words
        "response.incomplete",
        "response.failed",
    }
)
"""Event types after which a provider sends nothing more (besides ``data: [DONE]``). Not
``error`` (OpenAI Responses follows it with ``response.failed``) nor Cohere's ``message-end``
(``data: [DONE]`` follows it)."""


def ends_stream(event: Event, framing: str = "sse") -> bool:
    """Whether a provider sends nothing after this event: ``data: [DONE]`` (OpenAI chat and the
    compatible APIs: Mistral, Groq, ...) or one of :data:`TERMINAL_EVENT_TYPES`. The SDKs stop
    reading there (openai breaks out at ``[DONE]``), often before the body's last bytes. In an
    NDJSON stream: a line whose object says ``"done": true`` (Ollama's last line)."""
    if framing == "ndjson":
        return _done_line(event.data)
    if framing != "sse":
        return False  # a JSON array ends with its ``]``
    return event.data.strip() == "[DONE]" or event.type in TERMINAL_EVENT_TYPES


def _done_line(text: str) -> bool:
    if '"done"' not in text:
        return False
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("done") is True


def terminal_index(events: Sequence[Event], framing: str = "sse") -> int | None:
    """The index of the first event that ends the stream (:func:`ends_stream`), or None when
    the stream just stops (Gemini: the last chunk carries the finish reason)."""
    return next((i for i, e in enumerate(events) if ends_stream(e, framing)), None)


def _eol(raw: bytes) -> bytes:
    """The line ending the stream uses (from an event's raw bytes)."""
    if b"\r\n" in raw:
        return b"\r\n"
    if b"\r" in raw and b"\n" not in raw:
        return b"\r"
    return b"\n"


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def error_event(
    provider: str, *, message: str | None = None, sequence_number: int = 0, like: bytes = b"\n"
) -> bytes:
    """One SSE frame with the provider's mid-stream error, ending with a blank line."""
    eol = _eol(like)
    data: dict[str, object]
    if provider == "anthropic":
        data = {
            "type": "error",
            "error": {"type": "overloaded_error", "message": message or "Overloaded"},
        }
        return b"event: error" + eol + b"data: " + _json(data) + eol + eol
    if provider == "openai-responses":
        data = {
            "type": "error",
            "sequence_number": sequence_number,
            "error": {
                "type": "server_error",
                "code": "server_error",
                "message": message
                or "The server had an error while processing your request. Sorry about that!",
                "param": None,
            },
        }
        return b"event: error" + eol + b"data: " + _json(data) + eol + eol
    if provider == "openai":
        data = {
            "error": {
                "message": message
                or "The server had an error while processing your request. Sorry about that!",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        return b"data: " + _json(data) + eol + eol
    if provider == "gemini":
        data = {
            "error": {
                "code": 500,
                "message": message or "An internal error has occurred.",
                "status": "INTERNAL",
            }
        }
        return b"data: " + _json(data) + eol + eol
    data = {"error": {"message": message or "Internal server error", "type": "server_error"}}
    return b"event: error" + eol + b"data: " + _json(data) + eol + eol


OLLAMA_ERROR = "an error was encountered while running the model"
"""The message of Ollama's documented mid-stream error (docs/api/errors.mdx)."""


def error_json(provider: str, *, message: str | None = None) -> bytes:
    """The provider's mid-stream error as one compact JSON value, for a stream that carries
    JSON values one by one (NDJSON lines, JSON-array elements): Ollama's ``{"error": "..."}``
    (its server writes it with Go's json.Encoder, as every line), Gemini's error object, else
    an OpenAI-style one."""
    if provider == "ollama":
        return _json({"error": message or OLLAMA_ERROR})
    if provider == "gemini":
        return _json(
            {
                "error": {
                    "code": 500,
                    "message": message or "An internal error has occurred.",
                    "status": "INTERNAL",
                }
            }
        )
    return _json({"error": {"message": message or "Internal server error", "type": "server_error"}})


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_OPENAI: dict[int, tuple[str, str | None, str]] = {
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_GEMINI = {
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
}


def error_response(
    provider: str, code: int, *, retry_after: float | None = None
) -> tuple[str, tuple[tuple[str, str], ...], bytes]:
    """Reason phrase, headers and JSON body of an HTTP error as the provider sends it. 429, 503 and
    529 carry ``retry-after`` (default 1 s) and ``retry-after-ms``."""
    reason = _REASONS.get(code, "Error")
    content_type = "application/json"
    if provider == "anthropic":
        kind = _ANTHROPIC_TYPES.get(code, "api_error")
        body = _json(
            {
                "type": "error",
                "error": {"type": kind, "message": reason if code != 529 else "Overloaded"},
            }
        )
    elif provider in ("openai", "openai-responses"):
        kind, err_code, message = _OPENAI.get(
            code, ("invalid_request_error" if code < 500 else "server_error", None, reason)
        )
        body = _json({"error": {"message": message, "type": kind, "param": None, "code": err_code}})
    elif provider == "gemini":
        body = _json(
            {"error": {"code": code, "message": reason, "status": _GEMINI.get(code, "UNKNOWN")}}
        )
    elif provider == "ollama":  # gin's c.JSON(status, gin.H{"error": ...})
        body = _json({"error": reason.lower()})
        content_type = "application/json; charset=utf-8"
    else:
        body = _json({"error": {"message": reason, "code": code}})
    headers: list[tuple[str, str]] = [
        ("content-type", content_type),
        ("content-length", str(len(body))),
    ]
    if retry_after is not None or code in (429, 503, 529):
        seconds = 1.0 if retry_after is None else min(retry_after, HORIZON)  # (x 1000: finite)
        headers.append(("retry-after", str(max(0, math.ceil(seconds)))))
        headers.append(("retry-after-ms", str(round(seconds * 1000))))
    headers.append(("x-ssevcr-fault", f"status:{code}"))
    return reason, tuple(headers), body
