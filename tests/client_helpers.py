"""Helpers for the in-process client tests (aiohttp, requests, urllib3): a capture server that
counts every connection it is offered (a replayed client pointed at it must offer none),
cassettes made from the provider fixtures, and the checks of a recording and of a replay."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from upstream import Upstream, fixture_body, matched_gaps

from ssevcr import _recording, _store
from ssevcr._cassette import Cassette, Interaction, Outcome, Request, Response
from ssevcr._sse import parse

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}
CHAT_URL = "/v1/chat/completions"
FIXTURE = "openai-chat/text.sse"
BODY = fixture_body(FIXTURE)


def text_of(body: bytes) -> str:
    """The text an OpenAI chat completion stream's chunks carry."""
    return "".join(
        json.loads(e.data)["choices"][0]["delta"].get("content") or ""
        for e in parse(body).events
        if e.data.startswith("{") and json.loads(e.data)["choices"]
    )


TEXT = text_of(BODY)  # the fixture's


READ_TIMEOUT = 2.0
"""The clients' read timeout in the recording-run fault tests: a stall ``for=forever`` ends there.
Long enough that a loaded machine's upstream is never taken for a stall (at 0.5 s, once, the
recorder's upstream read timed out before the head on a loaded run, and the two runs differed)."""

RECORD_RUN_FAULTS = [  # what the clients that parse HTTP themselves are shown while recording
    "",  # (no fault: the stream as it comes; the same before the change)
    "truncate:after=3",
    "truncate:after=2,end=reset",
    "truncate:byte=100",
    "drop:event=2",
    "drop:event=last",
    "corrupt:event=2",
    "corrupt:event=3,how=bytes",
    "duplicate:event=last",
    "stall:before=3,for=150ms",
    "stall:before=3,for=forever",
    "error:after=2",
    "status:429",
    "rechunk:size=7",
]


def longest_gap(pieces: Sequence[tuple[float, bytes]]) -> float:
    """The longest time between two consecutive (time, bytes) pieces."""
    return max((b[0] - a[0] for a, b in zip(pieces, pieces[1:], strict=False)), default=0.0)


def assert_shown_as_replayed(
    runs: Sequence[tuple[int, bytes, str | None, float]],
    fault: str,
    server: Upstream,
    test_id: str,
    path: Path,
    *,
    timed: bool = True,
) -> None:
    """A faulted recording run and the replay after it, each (status, body, error type, the
    longest gap): the client was shown the same, the stall as long (``timed``), and the
    cassette holds the upstream's one stream whole."""
    (status, body, error, gap), replay = runs
    assert runs[0][:3] == replay[:3], runs
    if timed and fault.startswith("stall:") and "forever" not in fault:
        assert gap >= 0.14 and replay[3] >= 0.14, runs
    if not fault:
        assert (status, body, error) == (200, BODY, None)
    assert sum(e.headers.get("x-test-id") == test_id for e in server.exchanges) == 1
    response = _store.load(path).interactions[0].response
    assert response.body == BODY == server.exchange(test_id).sent_body
    assert response.end.outcome == Outcome.COMPLETE


def small_recordings(monkeypatch: pytest.MonkeyPatch, max_body: int) -> None:
    """In-process recordings keep ``max_body`` body bytes at most (64 MiB otherwise)."""
    init = _recording._Capture.__init__

    def small(self: _recording._Capture, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.max_body = max_body

    monkeypatch.setattr(_recording._Capture, "__init__", small)


class CaptureServer:
    """A TCP listener on 127.0.0.1 that accepts, reads and keeps whatever arrives (never answers).
    ``connections`` and ``received`` say whether anything reached it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.settimeout(0.2)
            try:
                while chunk := conn.recv(65536):
                    self.received += chunk
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def __enter__(self) -> CaptureServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fixture_frames(name: str = FIXTURE) -> list[bytes]:
    parsed = parse(fixture_body(name))
    return [f.raw for f in parsed.frames] + ([parsed.tail] if parsed.tail else [])


def chat_cassette(
    path: Path,
    *,
    gap: float = 0.0,
    count: int = 1,
    headers_at: float = 0.0,
    chunks: Sequence[bytes] | None = None,
) -> Cassette:
    """``count`` openai chat interactions of the fixture, one frame per chunk, ``gap`` apart."""
    pieces = list(chunks) if chunks is not None else fixture_frames()
    timed = [(headers_at + gap * (i + 1), f) for i, f in enumerate(pieces)]
    interaction = Interaction(
        Request(
            "POST",
            f"https://api.openai.com{CHAT_URL}",
            (("content-type", "application/json"),),
            json.dumps(CHAT).encode(),
        ),
        Response.from_chunks(
            200,
            timed,
            reason="OK",
            headers=(("content-type", "text/event-stream"),),
            headers_at=headers_at,
        ),
    )
    cassette = Cassette((interaction,) * count)
    _store.save(cassette, path)
    return cassette


def gaps(times: Sequence[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def assert_recorded(path: Path, sent: Sequence[tuple[float, bytes]], url: str) -> Interaction:
    """The one interaction of the cassette at ``path`` is the fixture's stream as the upstream
    ``sent`` it (time, bytes): the same bytes, complete, its ten chunks' nine gaps within 30 ms of
    the upstream's, the request to ``url`` with its authorization redacted."""
    (recorded,) = _store.load(path).interactions
    assert recorded.response.body == BODY == b"".join(d for _, d in sent)
    assert recorded.response.end.outcome == Outcome.COMPLETE
    assert recorded.request.header("authorization") == "REDACTED"
    assert recorded.request.url == url
    pairs = matched_gaps(sent, recorded.response.chunk_at, recorded.response.chunk_sizes)
    assert len(pairs) == 9
    assert all(abs(rec - snt) <= 0.03 for snt, rec in pairs), pairs
    return recorded


def assert_streamed(
    pieces: Sequence[tuple[float, bytes]], response: Response, *, late: float = 0.05
) -> None:
    """The pieces a client read (time since the request, bytes) are the recorded body, cut only
    at recorded chunk boundaries (a reader that was late may get several chunks at once, never
    part of one), each read no earlier than its last chunk was due, and, at the median, at most
    ``late`` seconds after its first chunk was due (so a client that got the body buffered at
    the end fails)."""
    chunks = list(response.chunks)
    assert b"".join(p for _, p in pieces) == response.body
    i, lateness = 0, []
    for at, data in pieces:
        first, size = i, 0
        while size < len(data):
            size += len(chunks[i].data)
            i += 1
        assert size == len(data), f"a piece ends inside recorded chunk {i - 1}"
        assert at >= chunks[i - 1].at - 0.001, (at, chunks[i - 1].at)
        lateness.append(at - chunks[first].at)
    lateness.sort()
    assert lateness[len(lateness) // 2] <= late, lateness
    assert len(pieces) >= len(chunks) // 2, "most chunks should arrive on their own"


SLOW = 0.15
"""What a slow consumer does between two chunks (seconds): less than the bursts' gap."""


def burst_headers(test_id: str, **more: str) -> dict[str, str]:
    """Headers for tests/upstream.py: the fixture in 6 chunks, sent 2 at a time (one write each)
    500 ms apart; ``more`` are other ``x-upstream-*`` options (``gzip="1"``)."""
    return {
        "x-upstream-fixture": FIXTURE,
        "x-upstream-chunks": "6",
        "x-upstream-burst": "2",
        "x-upstream-gap-ms": "500",
        "x-test-id": test_id,
        **{f"x-upstream-{k.replace('_', '-')}": v for k, v in more.items()},
    }


def assert_arrival_gaps(path: Path, sent: Sequence[tuple[float, bytes]]) -> Response:
    """The one interaction of the cassette at ``path`` has the upstream's bytes and gaps, however
    slowly its consumer read it (``SLOW`` after each chunk of :func:`burst_headers`): the chunks
    of one burst at the same time, the bursts 500 ms apart, within 40 ms (a loaded machine)."""
    (recorded,) = _store.load(path).interactions
    response = recorded.response
    assert response.body == b"".join(d for _, d in sent)
    assert response.end.outcome == Outcome.COMPLETE
    pairs = matched_gaps(sent, response.chunk_at, response.chunk_sizes)
    assert len(pairs) == 5 and [s >= 0.45 for s, _ in pairs] == [False, True] * 2 + [False]
    assert all(abs(rec - snt) <= 0.04 for snt, rec in pairs), pairs
    return response
