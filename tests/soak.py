"""Clients that misbehave, for the replay server's hardening test (tests/test_hardening.py) and its
benchmark (bench/bench_hardening.py): each opens a real socket to the server on 127.0.0.1 and
leaves it in one of the ways real clients do.

    vanish-fin        read part of a stream (a random number of bytes), then close (FIN)
    vanish-rst        the same, then close with a TCP RST (SO_LINGER 0)
    stall             ask for a large body with a tiny receive buffer, read a little, stop
                      reading until the server cannot write any more, then leave (FIN or RST)
    half-request      send a random prefix of a request (head or body), then leave (FIN or RST)
    connect-close     connect and leave at once, sending nothing (FIN or RST)
    pipeline-vanish   send three requests in one write, read part of the first answer, leave

The server (:class:`SoakServer`: ``python tests/soak.py --serve`` in a process of its own, so its
RSS and open files are the server's alone) plays :func:`soak_cassette` (a short OpenAI stream and an
8 MiB body) with ``SOAK_TIMING``, and reports from inside its loop on request
(:meth:`SoakServer.stats`): tasks on its loop, open connections and fds, RSS, live connection
objects, blocked writes. Clients
use raw non-blocking sockets (``loop.sock_*``), so no stream buffer reads on their behalf while they
"stall". Nothing here asserts: callers check the server afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (the server process)
    sys.path.insert(0, str(ROOT))

from ssevcr import _store  # noqa: E402
from ssevcr._cassette import Cassette, Interaction, Request, Response  # noqa: E402

STREAM = ROOT / "cassettes" / "examples" / "openai-chat-text.msgpack"  # 36 chunks, 8.8 kB
SOAK_TIMING = "scale:0.2"  # the stream lasts ~0.3 s: long enough to leave in the middle of it
BIG_PATH = "/big"
BIG_SIZE = 8 * 1024 * 1024  # twice the largest kernel send buffer (tcp_wmem): the server must wait
KINDS = ("vanish-fin", "vanish-rst", "stall", "half-request", "connect-close", "pipeline-vanish")
WEIGHTS = (28, 28, 5, 22, 8, 9)  # percent of the clients of each kind


def soak_cassette() -> Cassette:
    """The OpenAI example stream (recorded timing) and an 8 MiB body sent at once."""
    stream = _store.load(STREAM).interactions[0]
    piece = b"data: " + b"x" * 4090 + b"\n\n"  # 4 KiB events
    big = Response.from_chunks(
        200,
        [(0.001, piece)] * (BIG_SIZE // len(piece)),
        reason="OK",
        headers=(("content-type", "text/event-stream"),),
    )
    return Cassette((stream, Interaction(Request("GET", f"http://soak.invalid{BIG_PATH}"), big)))


def request_bytes(request: Request, host: str = "127.0.0.1") -> bytes:
    target = request.url.split("://", 1)[-1]
    target = target[target.find("/") :] if "/" in target else "/"
    head = [f"{request.method} {target} HTTP/1.1", f"Host: {host}"]
    if request.body:
        head += ["Content-Type: application/json", f"Content-Length: {len(request.body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + request.body


@dataclass
class Stats:
    started: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(
        default_factory=list
    )  # unexpected: the server refused or broke a client
    stalled: int = 0  # stall clients that reached the stall


async def _connect(host: str, port: int, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _leave(sock: socket.socket, rst: bool) -> None:
    if rst:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _read_at_least(sock: socket.socket, n: int) -> int:
    loop = asyncio.get_running_loop()
    got = 0
    while got < n:
        data = await loop.sock_recv(sock, min(65536, n - got))
        if not data:
            break
        got += len(data)
    return got


class Soak:
    """One server's worth of misbehaving clients. ``stream`` and ``big`` are the request bytes
    of the two interactions; ``stream_size`` about how many bytes the stream's answer has."""

    def __init__(self, host: str, port: int, cassette: Cassette, seed: int = 0):
        self.host, self.port = host, port
        self.rng = random.Random(seed)
        stream, big = cassette.interactions
        self.stream = request_bytes(stream.request)
        self.big = request_bytes(big.request)
        self.stream_size = len(stream.response.body)
        self.stats = Stats()

    async def one(self, kind: str, release: asyncio.Event, stalled: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        rng = self.rng
        rst = rng.random() < 0.5
        self.stats.started[kind] += 1
        try:
            if kind == "stall":
                sock = await _connect(self.host, self.port, rcvbuf=4096)
                try:
                    await loop.sock_sendall(sock, self.big)
                    await _read_at_least(sock, rng.randint(1, 8192))
                    stalled()
                    await release.wait()
                finally:
                    _leave(sock, rst)
                return
            sock = await _connect(self.host, self.port)
            try:
                if kind in ("vanish-fin", "vanish-rst"):
                    rst = kind == "vanish-rst"
                    await loop.sock_sendall(sock, self.stream)
                    await _read_at_least(sock, rng.randint(1, self.stream_size))
                elif kind == "half-request":
                    data = self.stream
                    await loop.sock_sendall(sock, data[: rng.randint(1, len(data) - 1)])
                    if rng.random() < 0.5:
                        await asyncio.sleep(rng.uniform(0, 0.05))
                elif kind == "pipeline-vanish":
                    await loop.sock_sendall(sock, self.stream * 3)
                    await _read_at_least(sock, rng.randint(1, 2 * self.stream_size))
                elif kind != "connect-close":
                    raise ValueError(kind)
            finally:
                _leave(sock, rst)
        except (
            OSError
        ) as e:  # the server refused, reset or closed on a client that had not left yet
            self.stats.errors.append(f"{kind}: {type(e).__name__}: {e}")

    async def round(
        self, n: int, on_stalled: Callable[[int], Awaitable[None]] | None = None
    ) -> None:
        """``n`` clients at once (kinds drawn by WEIGHTS). When every staller of the round has
        stalled, ``on_stalled(stallers)`` runs (e.g. to check the server is blocked on them); then
        they leave."""
        kinds = self.rng.choices(KINDS, WEIGHTS, k=n)
        stallers = kinds.count("stall")
        release = asyncio.Event()
        all_stalled = asyncio.Event()
        count = 0

        def stalled() -> None:
            nonlocal count
            count += 1
            self.stats.stalled += 1
            if count == stallers:
                all_stalled.set()

        async def supervise() -> None:
            if stallers:
                try:
                    await asyncio.wait_for(all_stalled.wait(), 30)
                except TimeoutError:
                    self.stats.errors.append(f"only {count} of {stallers} stall clients stalled")
                if on_stalled is not None:
                    await on_stalled(stallers)
            release.set()

        await asyncio.gather(supervise(), *(self.one(k, release, stalled) for k in kinds))


def distinct_misses(host: str, port: int, count: int, size: int, first: int = 0) -> None:
    """``count`` requests no cassette matches, each with a distinct ``size``-byte body, one after
    the other on one keep-alive connection; each answer (a 404) read whole."""
    rng = random.Random(first)
    with socket.create_connection((host, port), timeout=60) as sock:
        for n in range(first, first + count):
            body = b"%08d" % n + rng.randbytes(size - 8)
            sock.sendall(
                b"POST /v1/unknown/%d HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
                % (n, len(body))
                + body
            )
            got = b""
            while b"\r\n\r\n" not in got:
                got += sock.recv(65536)
            head, _, rest = got.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 404 "):
                raise AssertionError(f"not a miss: {head[:100]!r}")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += sock.recv(65536)


def upload(host: str, port: int, total: int, *, chunked: bool) -> tuple[int, bytes]:
    """Try to upload ``total`` bytes (declared with Content-Length, or streamed chunked);
    (body bytes sent before the server stopped taking them, its first reply bytes)."""
    piece = b"u" * 0x10000
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % total
    sent = 0
    reply = b""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"POST /v1/upload HTTP/1.1\r\nHost: localhost\r\n%s\r\n\r\n" % framing)
        sock.setblocking(False)
        try:
            while sent < total:
                try:
                    reply += sock.recv(65536)
                    if reply:
                        break
                except BlockingIOError:
                    pass
                data = b"10000\r\n" + piece + b"\r\n" if chunked else piece
                sock.setblocking(True)
                sock.sendall(data)
                sock.setblocking(False)
                sent += len(piece)
        except OSError:
            pass
        sock.setblocking(True)
        sock.settimeout(5)
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except OSError:
            pass
    return sent, reply


def fd_count(pid: int | str = "self") -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def rss_kib(pid: int | str = "self", field: str = "VmRSS") -> int:
    """Resident memory (``VmHWM``: its peak) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


# ---------------------------------------------------------------------------------------------
# the server, in a process of its own


def _serve(
    timing: str,
    log_limit: int,
    head_timeout: float | None,
    idle_timeout: float | None,
    max_body: int,
) -> None:
    from ssevcr._player import Player
    from ssevcr._server import ReplayServer, _Connection
    from ssevcr._timer import new_event_loop

    player = Player.create(
        [("soak", soak_cassette())], timing=timing, repeat=True, log_limit=log_limit
    )
    errors: list[str] = []
    loop = new_event_loop()

    def log(line: str) -> None:  # misses are expected (a cut request can still parse); bugs are not
        if "server error" in line:
            errors.append(line)

    async def main() -> None:
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with ReplayServer(
            player,
            log=log,
            head_timeout=head_timeout,
            idle_timeout=idle_timeout,
            max_body=max_body,
        ) as server:

            async def stats() -> dict[str, object]:  # in the server's loop
                gc.collect()
                conns = list(server._connections)
                buffers = [
                    c.transport.get_write_buffer_size() for c in conns if c.transport is not None
                ]
                return {
                    "tasks": sorted(t.get_coro().__qualname__ for t in asyncio.all_tasks()),  # type: ignore[union-attr]
                    "connections": server.connections,
                    "fds": fd_count(),
                    "rss_kib": rss_kib(),
                    "hwm_kib": rss_kib(field="VmHWM"),
                    "live_connections": sum(isinstance(o, _Connection) for o in gc.get_objects()),
                    "paused": sum(c.writing_paused for c in conns),
                    "largest_buffer": max(buffers, default=0),
                    "requests": server.requests,
                    "plays": player.play_count,
                    "misses": player.miss_count,
                    "errors": errors[:5],
                }

            def commands() -> None:
                for _line in sys.stdin:
                    answer = asyncio.run_coroutine_threadsafe(stats(), loop).result()
                    print(json.dumps(answer), flush=True)

            print(server.url, flush=True)
            threading.Thread(target=commands, daemon=True).start()
            await stop.wait()

    loop.run_until_complete(main())


class SoakServer:
    """``python tests/soak.py --serve``: the replay server on 127.0.0.1:0 in its own process
    (timeouts and the body limit: the server's defaults unless given; None waits forever)."""

    def __init__(
        self,
        timing: str = SOAK_TIMING,
        log_limit: int = 1000,
        *,
        head_timeout: float | str | None = "default",
        idle_timeout: float | str | None = "default",
        max_body: int | None = None,
    ):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                timing,
                str(log_limit),
                str(head_timeout),
                str(idle_timeout),
                str(max_body or 0),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url:
            self.proc.wait(10)
            raise RuntimeError("the soak server did not start")
        host, port = self.url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self._lock = threading.Lock()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write("stats\n")
            self.proc.stdin.flush()
            answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
            return answer

    def idle(self, timeout: float = 10.0) -> dict[str, Any]:
        """Stats once no connection is open (or at the timeout)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["connections"] == 0 or time.monotonic() > deadline:
                return stats
            time.sleep(0.02)

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        return code

    def __enter__(self) -> SoakServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _timeout(arg: str, default: float) -> float | None:
    return default if arg == "default" else None if arg == "None" else float(arg)


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    from ssevcr._server import HEAD_TIMEOUT, IDLE_TIMEOUT, MAX_BODY

    _serve(
        sys.argv[2],
        int(sys.argv[3]),
        _timeout(sys.argv[4], HEAD_TIMEOUT),
        _timeout(sys.argv[5], IDLE_TIMEOUT),
        int(sys.argv[6]) or MAX_BODY,
    )
