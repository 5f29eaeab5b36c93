"""What the three example consumers share: the request they send (the one recorded in
cassettes/examples/openai-chat-text.msgpack, so the replay matches it) and where they send it
(``OPENAI_BASE_URL``, which ``ssevcr replay -- CMD`` and ``ssevcr sweep -- CMD`` set)."""

from __future__ import annotations

import http.client
import json
import os
from urllib.parse import urlsplit

REQUEST = {
    "messages": [{"role": "user", "content": "What's the weather like in SF?"}],
    "model": "gpt-4o-2024-08-06",
    "stream": True,
    "stream_options": {"include_usage": True},
}


def open_stream(timeout: float = 10.0) -> http.client.HTTPResponse:
    """POST the chat completion request; the response, not read yet."""
    base = urlsplit(os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"))
    conn = http.client.HTTPConnection(
        base.hostname or "127.0.0.1", base.port or 80, timeout=timeout
    )
    body = json.dumps(REQUEST, separators=(",", ":")).encode()
    conn.request(
        "POST",
        base.path.rstrip("/") + "/chat/completions",
        body=body,
        headers={"content-type": "application/json", "authorization": "Bearer sk-example"},
    )
    return conn.getresponse()


def content_of(payload: dict) -> str:
    """The text a chat.completion.chunk carries."""
    return "".join(c.get("delta", {}).get("content") or "" for c in payload.get("choices", []))
