"""Small event-stream cassettes for the journal, resumption and control-API tests: ``n`` events,
one recorded chunk each, ``gap`` seconds apart, optionally with ids and a leading ``retry:``; and
the ssevcr commands as children (``replay``, ``sweep``) and a uvicorn app in a thread."""

from __future__ import annotations

import asyncio
import json
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ssevcr import _store
from ssevcr._cassette import Cassette, End, Interaction, Request, Response

SSEVCR = str(Path(sys.executable).parent / "ssevcr")
CLI = [sys.executable, "-c", "from ssevcr.cli import main; main()"]


def event_bytes(i: int, *, ids: bool = True) -> bytes:
    """Event ``i`` (1-based) of the test streams."""
    head = b"id: %d\n" % i if ids else b""
    return head + b"data: " + json.dumps({"n": i, "text": f"w{i} "}).encode() + b"\n\n"


def stream_response(
    n: int, *, gap: float = 0.01, ids: bool = True, retry: int | None = None
) -> Response:
    chunks: list[tuple[float, bytes]] = []
    at = 0.01
    if retry is not None:
        chunks.append((at, b"retry: %d\n\n" % retry))
    for i in range(1, n + 1):
        at += gap
        chunks.append((at, event_bytes(i, ids=ids)))
    return Response.from_chunks(
        200,
        chunks,
        reason="OK",
        headers=(("content-type", "text/event-stream"), ("cache-control", "no-cache")),
        headers_at=0.005,
        end=End(at + gap / 2),
    )


def stream_cassette(
    n: int = 10,
    *,
    gap: float = 0.01,
    ids: bool = True,
    retry: int | None = None,
    path: str = "/events",
    method: str = "GET",
    body: bytes = b"",
) -> Cassette:
    request = Request(method, f"http://localhost{path}", (("accept", "text/event-stream"),), body)
    response = stream_response(n, gap=gap, ids=ids, retry=retry)
    return Cassette(interactions=(Interaction(request, response),))


def save_stream(tmp: Path, name: str = "stream", **kwargs: object) -> str:
    path = tmp / f"{name}.msgpack"
    _store.save(stream_cassette(**kwargs), path)  # type: ignore[arg-type]
    return str(path)


def texts(body: bytes) -> list[str]:
    """The ``text`` of each event in a body of the test streams."""
    return [json.loads(m)["text"] for m in re.findall(rb"data: (.*)\n", body)]


class CliReplay:
    """``ssevcr replay ARGS --listen 127.0.0.1:0`` as a child: ``url``, the ready line, ``stop``."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [SSEVCR, "replay", *args, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        self.ready = self.proc.stdout.readline().decode() if ready else ""
        match = re.search(r"serving (http://127\.0\.0\.1:\d+)", self.ready)
        if not match:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"no ready line: {self.ready!r} {err.decode()!r}")
        self.url = match.group(1)

    def stop(self) -> tuple[int, str]:
        """SIGTERM; the exit code and stderr (the summary)."""
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def read_reconnecting(
    url: str, headers: dict[str, str] | None = None, *, attempts: int = 5
) -> tuple[list[tuple[str, str]], list[str | None]]:
    """An SSE client that reconnects as EventSource does (httpx-sse over httpx): GET ``url``; when
    the stream ends or breaks before an ``event: done``, GET it again with ``Last-Event-ID``.
    Returns the (id, data) of every event with data, and the Last-Event-ID each connection sent
    (None for the first)."""
    import httpx
    from httpx_sse import connect_sse

    got: list[tuple[str, str]] = []
    sent: list[str | None] = []
    last: str | None = None
    with httpx.Client(timeout=30) as client:
        for _ in range(attempts):
            sent.append(last)
            extra = {} if last is None else {"Last-Event-ID": last}
            try:
                with connect_sse(client, "GET", url, headers={**(headers or {}), **extra}) as src:
                    assert src.response.status_code == 200, src.response.status_code
                    for sse in src.iter_sse():
                        if sse.id:
                            last = sse.id
                        if sse.data:
                            got.append((sse.id, sse.data))
                        if sse.event == "done":
                            return got, sent
            except httpx.TransportError:  # cut: reconnect, as EventSource does
                pass
    raise AssertionError(f"no done event after {attempts} connections: {got}")


@contextmanager
def serve_asgi(app: Any, **config: Any) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 in a thread, for the ``with`` block: its base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **config)
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def run_sweep(
    cassette: Path, consumer: Path, report: Path, *options: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``ssevcr sweep CASSETTE --json REPORT OPTIONS -- python CONSUMER``: the finished process
    (no traceback on its stderr) and its JSON report (``{}`` when it wrote none)."""
    command = [*CLI, "sweep", str(cassette), "--json", str(report), *options]
    r = subprocess.run(
        [*command, "--", sys.executable, str(consumer)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r, json.loads(report.read_text()) if report.exists() else {}


def sweep_all_ok(
    cassette: Path, consumer: Path, report: Path, *options: str
) -> dict[str, dict[str, Any]]:
    """``run_sweep`` of a consumer that must take every fault: the sweep, the clean run and every
    verdict ok. The runs by fault."""
    r, data = run_sweep(cassette, consumer, report, *options)
    assert r.returncode == 0, r.stdout
    runs = {run["fault"]: run for run in data["runs"]}
    assert data["clean"]["exit_code"] == 0
    assert all(run["verdict"] == "ok" for run in runs.values()), runs
    return runs


def show(cassette: Path) -> str:
    """``ssevcr show CASSETTE``'s table (a child process that must succeed)."""
    return subprocess.run(
        [*CLI, "show", str(cassette)], capture_output=True, text=True, check=True
    ).stdout
