"""A real upstream for tests and benchmarks: an asyncio HTTP/1.1 server (plain or TLS with a
self-signed certificate made by ``openssl`` at test time) that streams provider SSE fixtures in
chunks with known gaps, and logs what it sent and when (``time.monotonic()``, which is one clock
for every process on the machine).

Each request is steered by headers, so any client (SDK, httpx, curl) and any path work:

    x-upstream-fixture: openai-chat/text.sse    stream that fixture (tests/fixtures/providers)
    x-upstream-chunks: 8                        how many chunks (default 8, at most one per event)
    x-upstream-split: events|bytes              cut between events (default) or at byte offsets
    x-upstream-gap-ms: 20-40                    gap before each chunk, uniform in the range (seeded)
    x-upstream-burst: 2                         send the chunks 2 at a time, each burst in one
                                                write after the gap (a read brings them together)
    x-upstream-gzip: 1                          gzip the stream (one sync-flushed member per chunk)
    x-upstream-die-after: 3                     close the connection after 3 chunks (no last chunk)
    x-upstream-end-delay-ms: 500                hold the terminating chunk back (SDKs leave at
                                                [DONE])
    x-upstream-head-with-first: 1               send the head in one write with the first chunk
    x-upstream-forever: 1                       then send the fixture's events again, forever
    x-upstream-json: 1                          a plain JSON answer with content-length
    x-upstream-set-cookie: 1                    add a set-cookie header with a fresh secret
    x-upstream-events: 8                        a resumable stream: events 1..8 with ids (the
                                                last is ``event: done``), after Last-Event-ID
    x-upstream-cut-after: 3                     ...a connection without Last-Event-ID is closed
                                                after event 3 (no last chunk)
    x-test-id: ID                               key of the logged :class:`Exchange`

A test can also write a response itself (``up.script(test_id, Script(...))``: status, headers and
body pieces, gzip-encoded or not), answered to the request carrying that ``x-test-id``; for what
no fixture holds (secrets planted in response headers and bodies).

It runs on its own thread and event loop; tests stay synchronous.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import ssl
import subprocess
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ssevcr._sse import parse

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = ROOT / "tests" / "fixtures" / "providers"


def fixture_names() -> list[str]:
    return sorted(str(p.relative_to(PROVIDERS)) for p in PROVIDERS.glob("*/*.sse"))


def fixture_body(name: str) -> bytes:
    return (PROVIDERS / name).read_bytes()


@dataclass(frozen=True, slots=True)
class TLSFiles:
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TLSFiles:
    """A self-signed certificate for localhost / 127.0.0.1, made with the openssl command."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "upstream-cert.pem", directory / "upstream-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return TLSFiles(cert, key)


def plan_chunks(body: bytes, count: int, split: str) -> list[bytes]:
    """Cut a body into at most ``count`` contiguous pieces, between events or at byte offsets."""
    if split == "bytes":
        count = max(1, min(count, len(body)))
        step = -(-len(body) // count)
        return [body[i : i + step] for i in range(0, len(body), step)]
    parsed = parse(body)
    frames = [f.raw for f in parsed.frames] + ([parsed.tail] if parsed.tail else [])
    count = max(1, min(count, len(frames)))
    out = []
    for i in range(count):
        lo, hi = i * len(frames) // count, (i + 1) * len(frames) // count
        out.append(b"".join(frames[lo:hi]))
    return [c for c in out if c]


@dataclass(frozen=True, slots=True)
class Script:
    """A response a test writes itself: sent chunked, one piece per chunk, ``gap`` apart."""

    headers: tuple[tuple[str, str], ...]
    pieces: tuple[bytes, ...]
    status: int = 200
    gzip: bool = False
    gap: float = 0.005


@dataclass(slots=True)
class Exchange:
    """What the upstream saw and sent for one request (mutable: filled while it runs)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # the request's head read
    headers_sent_at: float = 0.0
    body_at: float = 0.0  # the request's body read too: the request fully received
    sent: list[tuple[float, bytes]] = field(default_factory=list)  # body pieces, as sent
    outcome: str = "running"  # complete | died | client_gone
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def sent_body(self) -> bytes:
        return b"".join(d for _, d in self.sent)

    @property
    def send_times(self) -> list[float]:
        return [t for t, _ in self.sent]


class Upstream:
    """The server. ``with Upstream() as up: up.url ...``; ``up.exchange(test_id)`` waits for
    that request's exchange to finish."""

    def __init__(
        self, *, tls: TLSFiles | None = None, host: str = "127.0.0.1", fixture: str | None = None
    ) -> None:
        self.tls = tls
        self.host = host
        self.fixture = fixture  # streamed for requests without x-upstream-fixture (SDK code as is)
        self.port = 0
        self.exchanges: list[Exchange] = []
        self._by_id: dict[str, Exchange] = {}
        self._scripts: dict[str, Script] = {}
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="upstream", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> Upstream:
        self._thread.start()
        ctx = None
        if self.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.tls.cert, self.tls.key)
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, self.host, 0, ssl=ctx), self._loop
        )
        self._server = fut.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Close the listener, end every connection handler (one left pending on a keep-alive
        connection would be destroyed with the loop: an unraisable warning), stop the loop."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, test_id: str, script: Script) -> None:
        """Answer the request carrying ``x-test-id: test_id`` with ``script``."""
        with self._cond:
            self._scripts[test_id] = script

    def exchange(self, test_id: str, timeout: float = 20.0) -> Exchange:
        """The finished exchange of the request that carried ``x-test-id: test_id``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while test_id not in self._by_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"upstream never saw x-test-id {test_id!r}")
                self._cond.wait(left)
            ex = self._by_id[test_id]
        if not ex.done.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"upstream exchange {test_id!r} did not finish")
        return ex

    # -- server side -------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                received_at = time.monotonic()
                lines = head.decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int((await reader.readline()).split(b";")[0], 16)
                        if size == 0:
                            await reader.readline()
                            break
                        parts.append(await reader.readexactly(size))
                        await reader.readline()
                    body = b"".join(parts)
                ex = Exchange(method, target, headers, body, received_at, body_at=time.monotonic())
                with self._cond:
                    self.exchanges.append(ex)
                    if "x-test-id" in headers:
                        self._by_id[headers["x-test-id"]] = ex
                    self._cond.notify_all()
                try:
                    keep = await self._respond(ex, writer)
                finally:
                    ex.done.set()
                if not keep:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return
        finally:
            writer.close()

    async def _scripted(self, ex: Exchange, script: Script, writer: asyncio.StreamWriter) -> bool:
        head = "".join(f"{k}: {v}\r\n" for k, v in script.headers)
        if script.gzip:
            head += "content-encoding: gzip\r\n"
        writer.write(
            f"HTTP/1.1 {script.status} OK\r\n{head}transfer-encoding: chunked\r\n\r\n".encode()
        )
        ex.headers_sent_at = time.monotonic()
        comp = zlib.compressobj(6, zlib.DEFLATED, 31)
        for i, piece in enumerate(script.pieces):
            await asyncio.sleep(script.gap)
            last = i == len(script.pieces) - 1
            if script.gzip:
                piece = comp.compress(piece) + (
                    comp.flush() if last else comp.flush(zlib.Z_SYNC_FLUSH)
                )
            ex.sent.append((time.monotonic(), piece))
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        ex.outcome = "complete"
        return True

    async def _respond(self, ex: Exchange, writer: asyncio.StreamWriter) -> bool:
        h = ex.headers
        script = self._scripts.get(h.get("x-test-id", ""))
        if script is not None:
            return await self._scripted(ex, script, writer)
        extra = ""
        if "x-upstream-set-cookie" in h:  # a fresh secret the client never sent
            extra += f"set-cookie: sid={uuid.uuid4().hex}\r\n"
        if "x-upstream-events" in h:
            return await self._resumable(ex, writer)
        name = h.get("x-upstream-fixture", self.fixture)
        if name is None or h.get("x-upstream-json"):
            return await self._json(ex, writer, extra)
        body = fixture_body(name)
        pieces = plan_chunks(
            body, int(h.get("x-upstream-chunks", "8")), h.get("x-upstream-split", "events")
        )
        lo, _, hi = h.get("x-upstream-gap-ms", "20-40").partition("-")
        gap_lo, gap_hi = float(lo) / 1000, float(hi or lo) / 1000
        rng = random.Random(f"{name}:{len(pieces)}:{gap_lo}:{gap_hi}")
        gzip = h.get("x-upstream-gzip") == "1"
        die_after = int(h["x-upstream-die-after"]) if "x-upstream-die-after" in h else None
        end_delay = float(h.get("x-upstream-end-delay-ms", "0")) / 1000
        forever = h.get("x-upstream-forever") == "1"
        burst = max(1, int(h.get("x-upstream-burst", "1")))
        held: list[tuple[bytes, bytes]] = []  # a burst's (piece, frame) not sent yet
        if gzip:
            extra += "content-encoding: gzip\r\n"
            comp = zlib.compressobj(6, zlib.DEFLATED, 31)
        head = (
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            "cache-control: no-cache\r\n"
            f"transfer-encoding: chunked\r\n{extra}\r\n"
        ).encode()
        with_first = h.get("x-upstream-head-with-first") == "1"
        if with_first:  # the head goes out in one write with the first chunk, after a gap
            await asyncio.sleep(rng.uniform(gap_lo, gap_hi))
        else:
            writer.write(head)
            ex.headers_sent_at = time.monotonic()
            await writer.drain()
        for i, piece in enumerate(pieces):
            if (i or not with_first) and i % burst == 0:
                await asyncio.sleep(rng.uniform(gap_lo, gap_hi))
            last = i == len(pieces) - 1
            if gzip:
                piece = comp.compress(piece) + (
                    comp.flush() if last else comp.flush(zlib.Z_SYNC_FLUSH)
                )
            if die_after is not None and i >= die_after:
                return await self._die(ex, writer, held)
            frame = b"%x\r\n%s\r\n" % (len(piece), piece)
            if last and not end_delay and not forever:
                frame += b"0\r\n\r\n"
            if with_first and i == 0:
                frame = head + frame
                ex.headers_sent_at = time.monotonic()
            held.append((piece, frame))
            if len(held) < burst and not last:
                continue
            if not await self._send_all(ex, writer, held):
                return False
            held = []
        return await self._end(ex, writer, body, forever=forever, delay=end_delay)

    async def _die(
        self, ex: Exchange, writer: asyncio.StreamWriter, held: list[tuple[bytes, bytes]]
    ) -> bool:
        """Close the connection (no last chunk), after the burst held so far."""
        if not held or await self._send_all(ex, writer, held):
            ex.outcome = "died"
            writer.transport.close()
        return False

    async def _end(
        self,
        ex: Exchange,
        writer: asyncio.StreamWriter,
        body: bytes,
        *,
        forever: bool,
        delay: float,
    ) -> bool:
        """After the planned chunks: forever the events again, or the terminating chunk late."""
        while forever:  # a stream that never ends: the events again, as fast as they are read
            if not await self._send(ex, writer, body, b"%x\r\n%s\r\n" % (len(body), body)):
                return False
        if delay:
            await asyncio.sleep(delay)
            if not await self._send(ex, writer, b"", b"0\r\n\r\n"):
                return False
        ex.outcome = "complete"
        return True

    async def _resumable(self, ex: Exchange, writer: asyncio.StreamWriter) -> bool:
        """A server following the SSE specification: events with ids, resumed after the one
        ``Last-Event-ID`` names; a first connection cut after ``x-upstream-cut-after`` events."""
        h = ex.headers
        count = int(h["x-upstream-events"])
        after = int(h.get("last-event-id") or 0)
        cut = int(h["x-upstream-cut-after"]) if "x-upstream-cut-after" in h else None
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        ex.headers_sent_at = time.monotonic()
        if not after and not await self._send(
            ex, writer, b"retry: 50\n\n", b"b\r\nretry: 50\n\n\r\n"
        ):
            return False
        for i in range(after + 1, count + 1):
            await asyncio.sleep(0.01)
            if cut is not None and not after and i > cut:
                ex.outcome = "died"
                writer.transport.close()
                return False
            piece = resumable_event(i, last=i == count)
            if not await self._send(ex, writer, piece, b"%x\r\n%s\r\n" % (len(piece), piece)):
                return False
        return await self._end(ex, writer, b"", forever=False, delay=0.001)

    async def _json(self, ex: Exchange, writer: asyncio.StreamWriter, extra: str) -> bool:
        payload = json.dumps(
            {"ok": True, "path": ex.path.split("?")[0], "method": ex.method}
        ).encode()
        writer.write(
            (
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                f"content-length: {len(payload)}\r\n{extra}\r\n"
            ).encode()
            + payload
        )
        ex.headers_sent_at = time.monotonic()
        ex.sent.append((ex.headers_sent_at, payload))
        await writer.drain()
        ex.outcome = "complete"
        return True

    async def _send(
        self, ex: Exchange, writer: asyncio.StreamWriter, piece: bytes, frame: bytes
    ) -> bool:
        return await self._send_all(ex, writer, [(piece, frame)])

    async def _send_all(
        self, ex: Exchange, writer: asyncio.StreamWriter, held: list[tuple[bytes, bytes]]
    ) -> bool:
        """Send the frames in one write, each piece logged as sent then."""
        if writer.transport.is_closing():
            ex.outcome = "client_gone"
            return False
        now = time.monotonic()
        ex.sent.extend((now, piece) for piece, _ in held if piece)
        writer.write(b"".join(frame for _, frame in held))
        try:
            await writer.drain()
        except ConnectionError:
            ex.outcome = "client_gone"
            return False
        return True


def resumable_event(i: int, *, last: bool = False) -> bytes:
    """Event ``i`` of the ``x-upstream-events`` streams (the last one is ``event: done``)."""
    kind = b"event: done\n" if last else b""
    return b"id: %d\n%sdata: %s\n\n" % (i, kind, json.dumps({"n": i, "text": f"w{i} "}).encode())


def matched_gaps(
    sent: list[tuple[float, bytes]], chunk_at: tuple[float, ...], chunk_sizes: tuple[int, ...]
) -> list[tuple[float, float]]:
    """Pairs (sent gap, recorded gap) between consecutive upstream writes: each write is
    matched to the recorded chunk that holds its last byte (robust to coalesced reads)."""
    ends, pos = [], 0
    for size in chunk_sizes:
        pos += size
        ends.append(pos)
    times, pos, j = [], 0, 0
    for _t, data in sent:
        pos += len(data)
        while j < len(ends) and ends[j] < pos:
            j += 1
        times.append(chunk_at[min(j, len(chunk_at) - 1)])
    sent_t = [t for t, _ in sent]
    return [(sent_t[i] - sent_t[i - 1], times[i] - times[i - 1]) for i in range(1, len(sent))]
