"""Helpers for the replay server tests: the example cassettes, what their bytes say (derived with
our parser, independently of any client), a raw-socket h11 client that keeps every chunk
boundary, its arrival time and how the connection ended, and ``ssevcr replay -- CLIENT``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11

from ssevcr import _store
from ssevcr._cassette import Cassette, Interaction, Request, Response
from ssevcr._sse import parse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "cassettes" / "examples"
PROVIDERS = ROOT / "tests" / "fixtures" / "providers"

OPENAI_CHAT = "openai-chat-text"
OPENAI_TOOLS = "openai-chat-tool-calls"
OPENAI_RESPONSES = "openai-responses-text"
ANTHROPIC = "anthropic-text"
ANTHROPIC_TOOLS = "anthropic-tool-use"
ALL_EXAMPLES = sorted(p.stem for p in EXAMPLES.glob("*.msgpack"))
CLI = [sys.executable, "-c", "from ssevcr.cli import main; main()"]


def example(name: str) -> Cassette:
    return _store.load(EXAMPLES / f"{name}.msgpack")


def example_path(name: str) -> str:
    return str(EXAMPLES / f"{name}.msgpack")


def interaction(name: str) -> Interaction:
    return example(name).interactions[0]


def params(name: str) -> dict[str, Any]:
    """The SDK call that sends the recorded request: ``create(**params(name))``."""
    return json.loads(interaction(name).request.body)  # type: ignore[no-any-return]


def expected(body: bytes) -> tuple[str, dict[int, str], int]:
    """Text, tool arguments (by index) and the number of items an SDK yields for a recorded body
    (events without ``[DONE]`` and Anthropic's ``ping``, which the SDKs swallow)."""
    text, args, count = "", defaultdict(str), 0
    for event in parse(body).events:
        if event.data == "[DONE]" or event.type == "ping":
            continue
        count += 1
        data = json.loads(event.data)
        if data.get("object") == "chat.completion.chunk":
            for choice in data["choices"]:
                delta = choice.get("delta") or {}
                text += delta.get("content") or ""
                for call in delta.get("tool_calls") or []:
                    args[call["index"]] += (call.get("function") or {}).get("arguments") or ""
        elif data.get("type") == "response.output_text.delta":
            text += data["delta"]
        elif data.get("type") == "response.function_call_arguments.delta":
            args[data["output_index"]] += data["delta"]
        elif data.get("type") == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                text += delta["text"]
            elif delta["type"] == "input_json_delta":
                args[data["index"]] += delta["partial_json"]
    return text, dict(args), count


def json_interaction(
    path: str = "/v1/models",
    body: bytes = b'{"data":[]}',
    status: int = 200,
    method: str = "GET",
    request_body: bytes = b"",
) -> Interaction:
    """A non-streaming interaction: one chunk, a content-length."""
    response = Response.from_chunks(
        status,
        [(0.01, body)],
        reason="OK",
        headers=(("Content-Type", "application/json"), ("Content-Length", str(len(body)))),
        headers_at=0.005,
    )
    return Interaction(
        Request(method, f"https://api.example.com{path}", (), request_body), response
    )


@dataclass
class RawResponse:
    """What a raw socket saw: head, chunks (boundaries as framed on the wire), times in seconds
    from the moment the request was sent, and how it ended: ``complete``, ``closed`` (EOF before
    the end of the body), ``reset`` or ``timeout``."""

    status: int = 0
    reason: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    head_at: float | None = None
    chunks: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    end: str = ""
    end_at: float = 0.0
    wire: bytes = b""  # every byte received, framing included

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def request_bytes(
    conn: h11.Connection, request: Request, host: str, extra: list[tuple[str, str]] | None = None
) -> bytes:
    target = request.path + (f"?{request.query}" if request.query else "")
    skip = {"host", "content-length", "transfer-encoding", "connection"}
    headers = [("host", host)] + [(k, v) for k, v in request.headers if k.lower() not in skip]
    headers += extra or []
    headers.append(("content-length", str(len(request.body))))
    out = conn.send(h11.Request(method=request.method, target=target, headers=headers))
    if request.body:
        out += conn.send(h11.Data(data=request.body))
    return out + conn.send(h11.EndOfMessage())


def read_response(
    sock: socket.socket,
    conn: h11.Connection,
    t0: float,
    *,
    timeout: float = 10.0,
    stop_after: int | None = None,
) -> RawResponse:
    """Read one response; ``stop_after``: return after that many body chunks (the socket stays
    open)."""
    out = RawResponse()
    sock.settimeout(timeout)
    pending = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                out.end, out.end_at = "reset", time.monotonic() - t0
                return out
            except TimeoutError:
                out.end, out.end_at = "timeout", time.monotonic() - t0
                return out
            now = time.monotonic() - t0
            out.wire += data
            if not data:
                out.end, out.end_at = "closed", now
                if pending:
                    out.chunks.append(pending)
                    out.times.append(now)
                return out
            conn.receive_data(data)
            continue
        now = time.monotonic() - t0
        if isinstance(event, h11.Response):
            out.status, out.reason, out.headers, out.head_at = (
                event.status_code,
                event.reason,
                list(event.headers),
                now,
            )
        elif isinstance(event, h11.Data):
            pending += event.data
            if event.chunk_end or not _chunked(
                out
            ):  # a whole HTTP chunk, or any piece of a sized body
                out.chunks.append(pending)
                out.times.append(now)
                pending = b""
                if stop_after is not None and len(out.chunks) >= stop_after:
                    out.end = "stopped"
                    return out
        elif isinstance(event, h11.EndOfMessage):
            out.end, out.end_at = "complete", now
            return out
        elif isinstance(event, h11.ConnectionClosed):
            out.end, out.end_at = "closed", now
            return out


def _chunked(r: RawResponse) -> bool:
    return (r.header(b"transfer-encoding") or b"").lower() == b"chunked"


def raw_request(
    url: str,
    request: Request,
    *,
    timeout: float = 10.0,
    extra: list[tuple[str, str]] | None = None,
    stop_after: int | None = None,
) -> RawResponse:
    """Send ``request`` (its path, query, headers and body) to ``url`` over a fresh socket."""
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        conn = h11.Connection(h11.CLIENT)
        data = request_bytes(conn, request, parts.netloc, extra)
        t0 = time.monotonic()  # before sending: the server's clock cannot start earlier
        sock.sendall(data)
        return read_response(sock, conn, t0, timeout=timeout, stop_after=stop_after)


def replay_running(
    tmp: Path, client: str, *options: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``ssevcr replay`` of the OpenAI chat example (instant timing, then ``options``) with the
    Python source ``client`` as its command, given the recorded request body as its argument
    (``OPENAI_BASE_URL`` comes from the replay): the finished replay, its stdout the client's."""
    script = tmp / "client.py"
    script.write_text(client)
    body = interaction(OPENAI_CHAT).request.body.decode()
    command = [*CLI, "replay", example_path(OPENAI_CHAT), "--timing", "instant", *options]
    return subprocess.run(
        [*command, "--", sys.executable, str(script), body],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
