"""Replay server benchmarks: timing fidelity, instant-mode throughput, 1,000 concurrent streams.

    .venv/bin/python bench/bench_replay.py [--quick] [--only fidelity|throughput|many] [--many N]
                                           [--json FILE]

The server runs in its own process (``--serve MODE``, re-invoking this file) so the client never
steals its event loop; the client is this process (asyncio protocols that only timestamp reads
and walk the chunked framing).

1. Timing fidelity at scale 1: |observed gap - recorded gap| between consecutive HTTP chunks as
   the client receives them, p50/p99/max, for 1 stream (sequential runs) and 500 concurrent
   streams (started over 1 s), with the precise event loop (``ssevcr._timer.new_event_loop``, what
   the CLI uses) and with asyncio's default loop (epoll's millisecond timeout rounding).
2. Instant-mode throughput: keep-alive clients replaying as fast as they can, ssevcr vs two bare
   asyncio servers that answer every request with the same response bytes (captured from ssevcr)
   in one write: the everyday streams idiom (readuntil / readexactly / write / drain) and a
   minimal Protocol (the floor), and a Protocol writing them one framed chunk per write; same
   client, same run, interleaved. Responses/s and server CPU per response; then ssevcr's CPU per
   response for answers of 25 kB to 505 kB (linear in bytes, no cliff at 256 KiB).
3. 1,000 concurrent streams at scale 1: errors (bytes differ, connection failures) and the
   server's RSS before and at its peak (VmHWM); then the same streams read by a light
   timestamping client (reads stamped, parsed afterwards), from ssevcr and from a bare asyncio
   server writing the same framed chunks at their offsets with ``loop.call_at`` on the same
   precise loop: gap error p99 and its ratio (``--many 2000`` for the issue's figure); and from
   ssevcr with ``--journal`` (a line for each of the streams, formatted and written by the
   journal's writer thread while the loop keeps the other streams' deadlines: what the writer
   costs the timing, through the GIL).

Prints figures and ratios (``--json FILE`` also writes them, for bench/run_all.py); asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ssevcr import _store  # noqa: E402
from ssevcr._cassette import Cassette, Interaction, Request, Response  # noqa: E402

CASSETTE = (
    ROOT / "cassettes" / "examples" / "openai-chat-text.msgpack"
)  # 36 chunks, 10-60 ms gaps, 1.47 s


# ---------------------------------------------------------------------------------------------
# server process


def serve(
    mode: str, cassette: str, timing: str, response_file: str | None, journal: str | None = None
) -> None:
    """Run one server until SIGTERM; print its URL on stdout when ready (``journal``: a file
    for the delivery journal, as ``ssevcr replay --journal`` writes it)."""
    if mode in ("bare", "streams", "chunks", "timed"):
        assert response_file
        if mode == "timed":  # same precise loop as ssevcr: the baseline for gaps
            from ssevcr._timer import new_event_loop as precise_loop

            loop = precise_loop()
        else:
            loop = asyncio.new_event_loop()
        loop.run_until_complete(_serve_bare(Path(response_file).read_bytes(), mode, cassette))
        return
    from ssevcr._journal_file import JournalFile
    from ssevcr._player import Player
    from ssevcr._server import ReplayServer
    from ssevcr._timer import new_event_loop

    player = Player.create(
        [cassette], timing=timing, repeat=True, log_limit=1000
    )  # as ssevcr replay
    loop = new_event_loop() if mode == "precise" else asyncio.new_event_loop()

    lines = JournalFile(journal) if journal else None

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with ReplayServer(player, log=lambda _: None, journal=lines) as server:
            print(server.url, flush=True)
            await stop.wait()

    loop.run_until_complete(main())
    if lines is not None:
        lines.close()


def split_framing(response: bytes) -> list[bytes]:
    """A chunked response cut into its head, each framed chunk, and the terminating chunk."""
    end = response.index(b"\r\n\r\n") + 4
    pieces, pos = [response[:end]], end
    while pos < len(response):
        eol = response.index(b"\r\n", pos)
        size = int(response[pos:eol], 16)
        stop = eol + 2 + size + 2
        pieces.append(response[pos:stop])
        pos = stop
    return pieces


class _Bare(asyncio.Protocol):
    """The floor: read a request head (+ content-length body), write canned bytes, keep alive:
    in one write (``bare``), one write per chunk (``chunks``), or each chunk at its recorded
    offset from the request (``timed``: loop.call_at, the bare way to replay with gaps)."""

    def __init__(self, response: bytes, mode: str = "bare", times: list[float] | None = None):
        self.response = response
        self.mode = mode
        self.pieces = split_framing(response) if mode != "bare" else [response]
        self.times = times or []
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            total = end + 4 + length
            if len(self.buf) < total:
                return
            self.buf = self.buf[total:]
            assert self.transport is not None
            if self.mode == "bare":
                self.transport.write(self.response)
            elif self.mode == "chunks":
                for piece in self.pieces:
                    self.transport.write(piece)
            else:
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                write = self.transport.write
                write(self.pieces[0])
                chunks = self.pieces[1:-1]
                chunks[-1] += self.pieces[-1]  # the end with the last chunk (equal deadlines
                for at, piece in zip(self.times, chunks, strict=True):  # may run in any order)
                    loop.call_at(t0 + at, write, piece)


async def _serve_bare(response: bytes, mode: str, cassette: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The everyday asyncio streams idiom: readuntil the blank line, readexactly the body."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    times = list(_store.load(cassette).interactions[0].response.chunk_at) if mode == "timed" else []
    if mode == "streams":
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=2048)
    else:
        server = await loop.create_server(
            lambda: _Bare(response, mode, times), "127.0.0.1", 0, backlog=2048
        )
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    host: str
    port: int

    def cpu(self) -> float:
        """User + system CPU seconds so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB."""
        values = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":")
                values[name] = int(value.split()[0])
        return values["VmRSS"], values["VmHWM"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(
    mode: str,
    timing: str = "original",
    response_file: str | None = None,
    cassette: Path = CASSETTE,
    prefix: tuple[str, ...] = (),
    journal: str | None = None,
) -> Server:
    """A server process (``prefix``: a command that runs it, e.g. valgrind; ``journal``: the
    server's ``--journal`` file)."""
    args = [
        *prefix,
        sys.executable,
        __file__,
        "--serve",
        mode,
        "--timing",
        timing,
        "--cassette",
        str(cassette),
    ]
    if response_file:
        args += ["--response-file", response_file]
    if journal:
        args += ["--journal", journal]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()
    host, port = url.removeprefix("http://").split(":")
    return Server(proc, host, int(port))


# ---------------------------------------------------------------------------------------------
# client


def request_bytes(request: Request) -> bytes:
    head = [
        f"{request.method} {request.path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(request.body)}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + request.body


class ChunkedReader:
    """Walks a chunked response as it arrives; records when each HTTP chunk completed."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.head_done = False
        self.need: int | None = None  # bytes of the current chunk still expected (incl. CRLF)
        self.times: list[float] = []
        self.body = bytearray()
        self.done = False

    def feed(self, data: bytes, now: float) -> None:
        self.buf += data
        while not self.done:
            if not self.head_done:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                del self.buf[: end + 4]
                self.head_done = True
            if self.need is None:
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(self.buf[:end]), 16)
                del self.buf[: end + 2]
                self.need = size + 2
                if size == 0:
                    self.done = True
                    return
            if len(self.buf) < self.need:
                return
            self.body += self.buf[: self.need - 2]
            del self.buf[: self.need]
            self.need = None
            self.times.append(now)


class TimedStream(asyncio.Protocol):
    """The timestamping client: each read goes through the chunked reader as it arrives."""

    def __init__(self, request: bytes, done: asyncio.Future[ChunkedReader]) -> None:
        self.request = request
        self.done = done
        self.reader = ChunkedReader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data, time.monotonic())
        if self.reader.done and not self.done.done():
            self.done.set_result(self.reader)
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed before the end of the body"))


class LightStream(TimedStream):
    """The light timestamping client: each read is kept with its arrival time, nothing parsed
    until the stream is over (so the client's own work does not delay its next read)."""

    def __init__(self, request: bytes, done: asyncio.Future[ChunkedReader]) -> None:
        super().__init__(request, done)
        self.reads: list[tuple[float, bytes]] = []
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        self.reads.append((time.monotonic(), data))
        self.tail = (self.tail + data)[-7:]
        if self.tail.endswith(b"\r\n0\r\n\r\n") and not self.done.done():
            assert self.transport is not None
            self.transport.close()
            for at, piece in self.reads:
                self.reader.feed(piece, at)
            self.done.set_result(self.reader)


async def one_stream(
    server: Server, request: bytes, delay: float = 0.0, *, light: bool = False
) -> ChunkedReader:
    if delay:
        await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[ChunkedReader] = loop.create_future()
    kind = LightStream if light else TimedStream
    await loop.create_connection(lambda: kind(request, done), server.host, server.port)
    return await done


def gap_errors(reader: ChunkedReader, recorded: list[float]) -> list[float]:
    observed = [b - a for a, b in zip(reader.times, reader.times[1:], strict=False)]
    wanted = [b - a for a, b in zip(recorded, recorded[1:], strict=False)]
    return [abs(o - w) for o, w in zip(observed, wanted, strict=True)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fmt_ms(values: list[float]) -> str:
    return (
        f"p50 {pct(values, 0.5) * 1e3:6.3f} ms  p99 {pct(values, 0.99) * 1e3:6.3f} ms  "
        f"max {max(values) * 1e3:6.2f} ms"
    )


# ---------------------------------------------------------------------------------------------
# benchmarks


def fidelity(
    mode: str, streams: int, rounds: int, request: bytes, recorded: list[float], body: bytes
) -> dict[str, float]:
    server = start(mode)
    cpu0 = server.cpu()
    errors: list[float] = []
    failures = 0
    rng = random.Random(1)

    async def run() -> None:
        nonlocal failures
        for _ in range(rounds):
            spread = 1.0 if streams > 1 else 0.0
            results = await asyncio.gather(
                *[one_stream(server, request, rng.uniform(0, spread)) for _ in range(streams)],
                return_exceptions=True,
            )
            for r in results:
                if isinstance(r, BaseException) or bytes(r.body) != body:
                    failures += 1
                else:
                    errors.extend(gap_errors(r, recorded))

    started = time.monotonic()
    asyncio.run(run())
    wall = time.monotonic() - started
    cpu = server.cpu() - cpu0
    server.stop()
    return {
        "p50": pct(errors, 0.5),
        "p99": pct(errors, 0.99),
        "max": max(errors),
        "n": len(errors),
        "failures": failures,
        "cpu": cpu,
        "wall": wall,
    }


def throughput(
    server: Server, request: bytes, response_len: int, clients: int, seconds: float
) -> tuple[float, float]:
    """Responses per second and server CPU microseconds per response."""

    class Client(asyncio.Protocol):
        def __init__(self, stop_at: float, counter: list[int], done: asyncio.Future[None]) -> None:
            self.stop_at, self.counter, self.done = stop_at, counter, done
            self.got = 0
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            transport.write(request)

        def data_received(self, data: bytes) -> None:
            self.got += len(data)
            assert self.transport is not None
            while self.got >= response_len:
                self.got -= response_len
                self.counter[0] += 1
                if time.monotonic() >= self.stop_at:
                    self.transport.close()
                    return
                self.transport.write(request)

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.done.done():
                self.done.set_result(None)

    async def run() -> int:
        loop = asyncio.get_running_loop()
        counter = [0]
        stop_at = time.monotonic() + seconds
        dones = []
        for _ in range(clients):
            done: asyncio.Future[None] = loop.create_future()
            dones.append(done)
            await loop.create_connection(
                lambda d=done: Client(stop_at, counter, d), server.host, server.port
            )
        await asyncio.gather(*dones)
        return counter[0]

    cpu0 = server.cpu()
    started = time.monotonic()
    count = asyncio.run(run())
    wall = time.monotonic() - started
    return count / wall, (server.cpu() - cpu0) / max(count, 1) * 1e6


def capture_response(server: Server, request: bytes) -> bytes:
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(request)
        data = b""
        while not data.endswith(b"\r\n0\r\n\r\n"):
            data += sock.recv(65536)
    return data


def many(
    count: int,
    request: bytes,
    body: bytes,
    recorded: list[float],
    rounds: int = 2,
    *,
    mode: str = "precise",
    response_file: str | None = None,
    light: bool = False,
    journal: str | None = None,
) -> dict[str, object]:
    server = start(mode, response_file=response_file, journal=journal)
    time.sleep(0.3)
    rss0, _ = server.memory()
    failures: list[str] = []
    errors: list[float] = []
    peaks: list[int] = []
    walls: list[float] = []

    async def run() -> None:
        rng = random.Random(2)
        results = await asyncio.gather(
            *[one_stream(server, request, rng.uniform(0, 0.5), light=light) for _ in range(count)],
            return_exceptions=True,
        )
        for r in results:
            if isinstance(r, BaseException):
                failures.append(f"{type(r).__name__}: {r}")
            elif bytes(r.body) != body:
                failures.append("bytes differ")
            else:
                errors.extend(gap_errors(r, recorded))

    for _ in range(rounds):
        started = time.monotonic()
        asyncio.run(run())
        walls.append(time.monotonic() - started)
        peaks.append(server.memory()[1])
    rss_end, _ = server.memory()
    server.stop()
    return {
        "rss0": rss0,
        "peaks": peaks,
        "rss_end": rss_end,
        "failures": len(failures),
        "walls": walls,
        "first": failures[0] if failures else "",
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["fidelity", "throughput", "many"])
    parser.add_argument("--serve")
    parser.add_argument("--timing", default="original")
    parser.add_argument("--cassette", default=str(CASSETTE))
    parser.add_argument("--response-file")
    parser.add_argument("--journal", help="with --serve: the delivery journal's file")
    parser.add_argument(
        "--many", type=int, help="concurrent streams in section 3 [default: 1000; 300 with --quick]"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.cassette, args.timing, args.response_file, args.journal)
        return

    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    interaction = _store.load(CASSETTE).interactions[0]
    request = request_bytes(interaction.request)
    recorded = list(interaction.response.chunk_at)
    body = interaction.response.body
    print(
        f"# ssevcr replay server benchmarks  ({time.strftime('%Y-%m-%d')}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, {platform.machine()}, "
        f"load average {os.getloadavg()[0]:.2f} at start)"
    )
    print(
        f"cassette: {CASSETTE.name} ({len(recorded)} chunks, {len(body)} bytes, "
        f"{interaction.response.end.at:.2f} s)"
    )

    rounds = 3 if args.quick else 8
    results: dict[str, object] = {}
    if args.only in (None, "fidelity"):
        results["fidelity"] = section_fidelity(args.quick, rounds, request, recorded, body)
    if args.only in (None, "throughput"):
        results["throughput"] = section_throughput(args.quick, request)
    if args.only in (None, "many"):
        results["many"] = section_many(
            args.many or (300 if args.quick else 1000), request, body, recorded
        )
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(results, indent=1))


def section_fidelity(
    quick: bool, rounds: int, request: bytes, recorded: list[float], body: bytes
) -> dict[str, dict[str, float]]:
    print("\n## 1. timing fidelity at scale 1: |observed gap - recorded gap| per chunk")
    out = {}
    for streams, n in ((1, rounds), (500, 1 if quick else 2)):
        for mode in ("precise", "default"):
            r = fidelity(mode, streams, n, request, recorded, body)
            out[f"{streams} {mode}"] = r
            label = "precise loop (CLI)" if mode == "precise" else "default asyncio loop"
            print(
                f"  {streams:4d} stream{'s' if streams > 1 else ' '} {label:21s} "
                f"p50 {r['p50'] * 1e3:6.3f} ms  "
                f"p99 {r['p99'] * 1e3:6.3f} ms  max {r['max'] * 1e3:6.2f} ms  ({r['n']} gaps, "
                f"{r['failures']} failures, server CPU {r['cpu'] / r['wall'] * 100:.0f}%)"
            )
    return out


def long_stream(path: Path, events: int) -> None:
    """A synthesized stream of ``events`` small chat-completion chunks, one event per chunk."""
    template = _store.load(CASSETTE).interactions[0]
    chunks, at = [], 0.3
    for i in range(events):
        at += 0.02
        chunks.append(
            (
                at,
                b'data: {"object":"chat.completion.chunk",'
                b'"choices":[{"index":0,"delta":{"content":" tok%d"}}]}\n\n' % i,
            )
        )
    response = Response.from_chunks(
        200, chunks, reason="OK", headers=(("content-type", "text/event-stream"),), headers_at=0.25
    )
    _store.save(Cassette((Interaction(template.request, response),)), path)


def section_throughput(quick: bool, request: bytes) -> dict[str, dict[str, object]]:
    print(
        "\n## 2. instant-mode throughput "
        "(keep-alive, 50 clients; same client for every server, interleaved)"
    )
    seconds = 3.0 if quick else 6.0
    out: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        long = Path(tmp) / "long.msgpack"
        long_stream(long, 2000)  # 2,000 chunks, ~205 kB
        for cassette, label, key in (
            (CASSETTE, f"{CASSETTE.name} (36 chunks)", "36 chunks"),
            (long, "synthesized 2,000-chunk stream", "2000 chunks"),
        ):
            ours = start("precise", timing="instant", cassette=cassette)
            response = capture_response(ours, request)
            canned = Path(tmp) / "response.bin"
            canned.write_bytes(response)
            order = [
                ("bare protocol", start("bare", response_file=str(canned))),
                ("bare streams", start("streams", response_file=str(canned))),
                ("bare per-chunk", start("chunks", response_file=str(canned))),
                ("ssevcr", ours),
            ]
            results: dict[str, tuple[float, float]] = {}
            for name, server in order * 2:  # interleaved, best of two
                rps, cpu_us = throughput(server, request, len(response), 50, seconds / 2)
                if name not in results or rps > results[name][0]:
                    results[name] = (rps, cpu_us)
            for _, server in order:
                server.stop()
            print(f"  {label}, {len(response)} bytes per response:")
            for name, (rps, cpu_us) in results.items():
                print(
                    f"    {name:15s} {rps:8.0f} responses/s  "
                    f"{rps * len(response) / 1e6:7.1f} MB/s  server CPU {cpu_us:7.1f} us/response"
                )
            mine = results["ssevcr"][0]
            print(
                "    ratio ssevcr / bare one-write Protocol: "
                f"{mine / results['bare protocol'][0]:.2f}   "
                f"/ bare one-write streams: {mine / results['bare streams'][0]:.2f}   "
                f"/ bare per-chunk Protocol: {mine / results['bare per-chunk'][0]:.2f}"
            )
            out[key] = {
                "bytes": len(response),
                **{name: {"rps": rps, "cpu_us": cpu_us} for name, (rps, cpu_us) in results.items()},
                "ratio_streams": mine / results["bare streams"][0],
                "ratio_protocol": mine / results["bare protocol"][0],
                "ratio_chunks": mine / results["bare per-chunk"][0],
            }
        out["cliff"] = section_cliff(Path(tmp), request, seconds)
    return out


def section_cliff(tmp: Path, request: bytes, seconds: float) -> dict[str, object]:
    """Server CPU per response either side of 256 KiB (the old whole-answer limit): linear in
    bytes, no step."""
    print("  server CPU per response by size (instant, 50 clients): linear in bytes, no cliff")
    rows: dict[str, object] = {}
    for events in (250, 2520, 2620, 5000):  # 25 kB, 254 kB, 264 kB, 505 kB
        path = tmp / f"cliff-{events}.msgpack"
        long_stream(path, events)
        server = start("precise", timing="instant", cassette=path)
        response = capture_response(server, request)
        rps, cpu_us = throughput(server, request, len(response), 50, seconds / 2)
        server.stop()
        rows[str(events)] = {"bytes": len(response), "rps": rps, "cpu_us": cpu_us}
        print(
            f"    {events:5d} chunks {len(response) / 1024:7.1f} KiB: {cpu_us:7.1f} us/response "
            f"({cpu_us / (len(response) / 1024):.2f} us/KiB)"
        )
    return rows


def section_many(
    count: int, request: bytes, body: bytes, recorded: list[float]
) -> dict[str, object]:
    print("\n## 3. concurrent streams at scale 1 (precise loop), started over 0.5 s, two rounds")
    r = many(count, request, body, recorded)
    peaks = r["peaks"]
    assert isinstance(peaks, list) and isinstance(r["errors"], list)
    rss0 = float(r["rss0"])  # type: ignore[arg-type]
    print(
        f"  {count} streams x 2 rounds: {r['failures']} errors"
        f"{' (' + str(r['first']) + ')' if r['failures'] else ''}; "
        f"gap error {fmt_ms(r['errors'])}"
    )
    print(
        f"    server RSS idle {rss0 / 1024:.1f} MiB, "
        f"peak after round 1 {peaks[0] / 1024:.1f} MiB, "
        f"after round 2 {peaks[1] / 1024:.1f} MiB "
        f"({(peaks[0] - rss0) / count:.0f} KiB per stream), "
        f"after the streams {float(r['rss_end']) / 1024:.1f} MiB"
    )  # type: ignore[arg-type]
    errors = r["errors"]
    assert isinstance(errors, list)
    light = section_many_light(count, request, body, recorded)
    return {
        "light": light,
        "streams": count,
        "failures": r["failures"],
        "first_failure": r["first"],
        "rss_idle_kib": r["rss0"],
        "peak_kib": peaks,
        "rss_end_kib": r["rss_end"],
        "walls": r["walls"],
        "gap_p50_ms": pct(errors, 0.5) * 1e3 if errors else None,
        "gap_p99_ms": pct(errors, 0.99) * 1e3 if errors else None,
    }


def section_many_light(
    count: int, request: bytes, body: bytes, recorded: list[float]
) -> dict[str, object]:
    """The same streams read by the light timestamping client, from ssevcr and from a bare
    asyncio server writing the same framed chunks at the same offsets (loop.call_at, same
    precise loop), one after the other: gap error p99 and its ratio."""
    print(f"  light timestamping client, {count} streams, ssevcr vs a bare asyncio timed server:")
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ours = start("precise")
        canned = Path(tmp) / "response.bin"
        canned.write_bytes(capture_response(ours, request))
        ours.stop()
        journal = str(Path(tmp) / "journal.jsonl")
        for name, mode, lines in (
            ("ssevcr", "precise", None),
            ("bare timed", "timed", None),
            ("ssevcr --journal", "precise", journal),
        ):
            r = many(
                count,
                request,
                body,
                recorded,
                1,
                mode=mode,
                response_file=str(canned),
                light=True,
                journal=lines,
            )
            errors = r["errors"]
            assert isinstance(errors, list)
            figures: dict[str, object] = {
                "failures": r["failures"],
                "gap_p50_ms": pct(errors, 0.5) * 1e3 if errors else None,
                "gap_p99_ms": pct(errors, 0.99) * 1e3 if errors else None,
            }
            written = ""
            if lines is not None:
                figures["journal_lines"] = len(Path(lines).read_bytes().splitlines())
                written = f"; {figures['journal_lines']} journal lines"
            out[name] = figures
            print(
                f"    {name:16s} {r['failures']} errors; "
                f"gap error {fmt_ms(errors) if errors else '-'}{written}"
            )
    a, b = out["ssevcr"], out["bare timed"]
    assert isinstance(a, dict) and isinstance(b, dict)
    if a["gap_p99_ms"] and b["gap_p99_ms"]:
        out["ratio_p99"] = a["gap_p99_ms"] / b["gap_p99_ms"]
        print(f"    gap p99 ssevcr / bare: {out['ratio_p99']:.2f}")
    j = out["ssevcr --journal"]
    assert isinstance(j, dict)
    if a["gap_p99_ms"] and j["gap_p99_ms"]:
        out["journal_ratio_p99"] = j["gap_p99_ms"] / a["gap_p99_ms"]
        print(f"    gap p99 ssevcr --journal / ssevcr: {out['journal_ratio_p99']:.2f}")
    return out


if __name__ == "__main__":
    main()
