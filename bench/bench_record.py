"""Recording overhead: per-event latency through ``ssevcr record`` vs mitmproxy streaming without
the addon vs a direct connection, and how closely recorded gaps follow the upstream's send gaps.

    .venv/bin/python bench/bench_record.py [--events 300] [--gap-ms 2] [--rounds 8] [--json FILE]

An upstream *process* writes one SSE event per write, each carrying its send time
(``time.monotonic_ns()``: one clock for every process on the machine); the client reads with httpx
and takes, per event, arrival time minus send time. Three paths, interleaved over rounds:

- direct:        client -> upstream
- mitmproxy:     client -> mitmdump (reverse proxy, an addon that only sets ``stream = True``)
- ssevcr record: client -> ``ssevcr record --upstream ...``
                 (the real CLI: mitmdump + recording addon)

Each measured stream is preceded by a short warm-up stream on the same connection. Prints median
and p99 per path, the added latency and ratios (``--json FILE`` also writes them). No assertions:
figures go to bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAYLOAD = (  # an OpenAI chat chunk without its closing brace
    '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1727346168,'
    '"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_bench",'
    '"choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}]'
)


# ---------------------------------------------------------------------------------------------
# upstream (runs as a subprocess: `bench_record.py --serve`)


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _first(writer: asyncio.StreamWriter, received: int, n: int, gap: float) -> None:
    """The first-byte case: after ``gap`` (the upstream's think time) the head and the first
    event go out in one write; then ``n - 1`` events ``gap`` apart. Each event carries its send
    time ``t``; the first also ``r``, when the request had arrived."""
    start = time.monotonic()
    for i in range(n):
        delay = start + (i + 1) * gap - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.monotonic_ns()
        data = f'data: {PAYLOAD},"i":{i},"t":{sent},"r":{received}}}\n\n'.encode()
        writer.write(
            (HEAD if i == 0 else b"") + _chunk(data) + (b"0\r\n\r\n" if i == n - 1 else b"")
        )
        await writer.drain()


async def _serve() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                received = time.monotonic_ns()
                m = re.search(rb"[?&]n=(\d+)&gap=([\d.]+)", head)
                n, gap = (int(m.group(1)), float(m.group(2)) / 1000) if m else (10, 0.002)
                if head.startswith(b"GET /first"):
                    await _first(writer, received, n, gap)
                    continue
                writer.write(HEAD)
                await writer.drain()
                start = time.monotonic()
                for i in range(n):
                    # absolute schedule: a late wake-up does not shift the following events
                    delay = start + (i + 1) * gap - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    data = f'data: {PAYLOAD},"i":{i},"t":{time.monotonic_ns()}}}\n\n'.encode()
                    writer.write(
                        b"%x\r\n%s\r\n" % (len(data), data) + (b"0\r\n\r\n" if i == n - 1 else b"")
                    )
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


# ---------------------------------------------------------------------------------------------
# client


def measure(client: object, url: str, n: int, gap_ms: float) -> list[float]:
    """Latency (ms) of each event: arrival minus the upstream's send time."""
    import httpx

    from ssevcr._sse import SSEParser

    assert isinstance(client, httpx.Client)
    parser = SSEParser()
    out: list[float] = []
    with client.stream("GET", f"{url}/stream?n={n}&gap={gap_ms}") as r:
        for piece in r.iter_raw():
            now = time.monotonic_ns()
            for frame in parser.feed(piece):
                sent = json.loads(frame.data)["t"]  # type: ignore[union-attr]
                out.append((now - sent) / 1e6)
    assert len(out) == n, (len(out), n)
    return out


def first_byte_errors(resp: object) -> dict[str, float]:
    """For a ``/first`` stream (head and first event in one write, the next event 20 ms later):
    how late the first chunk is stamped compared with the next one, against the upstream's own
    send times (``first``), how far after ``headers_at`` (``head``; they arrived together), and
    the first chunk's offset minus the upstream's think time (``absolute``), all in ms."""
    from ssevcr._cassette import Response
    from ssevcr._sse import parse

    assert isinstance(resp, Response)
    stamps: list[tuple[float, dict[str, int]]] = []
    for chunk in resp.chunks:
        for event in parse(chunk.data).events:
            stamps.append((chunk.at, json.loads(event.data)))
    (c1, e1), (c2, e2) = stamps[0], stamps[1]
    return {
        "first": ((e2["t"] - e1["t"]) / 1e9 - (c2 - c1)) * 1000,
        "head": (c1 - resp.headers_at) * 1000,
        "absolute": (c1 - (e1["t"] - e1["r"]) / 1e9) * 1000,
    }


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


EMPTY_ADDON = textwrap.dedent(
    """
    from ssevcr.mitm.announce import Announce

    class StreamOnly:
        def responseheaders(self, flow):
            flow.response.stream = True

    addons = [Announce(), StreamOnly()]
    """
)


def _recorder(
    cassette: Path, upstream: str, confdir: Path, pythonpath: str | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``ssevcr record --upstream ...`` (this checkout, or the one at ``pythonpath``)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    rec = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from ssevcr.cli import main; main()",
            "record",
            str(cassette),
            "--upstream",
            upstream,
            "--listen",
            "127.0.0.1:0",
            "--confdir",
            str(confdir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd="/",  # not a checkout: `python -c` puts the working directory first on sys.path
    )
    assert rec.stdout is not None
    line = rec.stdout.readline()
    m = re.search(r"http://[\d.:]+", line)
    if not m:
        rec.kill()
        rec.wait(10)
        raise SystemExit(f"ssevcr record ({pythonpath or 'this checkout'}) did not start: {line!r}")
    return rec, m.group(0)


def _recorded(cassette: Path) -> tuple[list[float], dict[str, list[float]]]:
    """The recorded gaps vs the sent ones (ms; one event per chunk), and the first-byte figures
    of the ``/first`` streams (see :func:`first_byte_errors`)."""
    from ssevcr import _store
    from ssevcr._sse import parse

    gaps: list[float] = []
    first: dict[str, list[float]] = {"first": [], "head": [], "absolute": []}
    for inter in _store.load(cassette).interactions:
        resp = inter.response
        if inter.request.path == "/first":
            for key, value in first_byte_errors(resp).items():
                first[key].append(value)
            continue
        prev = None
        for chunk in resp.chunks:
            events = parse(chunk.data).events
            if len(events) != 1:
                prev = None
                continue
            sent = json.loads(events[0].data)["t"] / 1e9
            if prev is not None:
                gaps.append(abs((chunk.at - prev[0]) - (sent - prev[1])) * 1000)
            prev = (chunk.at, sent)
    return gaps, first


def _print_first(name: str, first: dict[str, list[float]]) -> None:
    if not first["first"]:
        return
    med = {k: statistics.median(v) for k, v in first.items()}
    print(
        f"{name}: first chunk arriving with the head, {len(first['first'])} streams: "
        f"first-chunk offset error (vs the next chunk, against the upstream's send gap) median "
        f"{med['first']:+.3f} ms, p99 {pct(first['first'], 99):+.3f} ms (target <= 0.5 ms); "
        f"first chunk - headers_at median {med['head']:+.3f} ms (sent together: 0); first-chunk "
        f"offset - the upstream's think time median {med['absolute']:+.3f} ms, p10 "
        f"{pct(first['absolute'], 10):+.3f} ms (the request's way to the upstream and back)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--gap-ms", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument(
        "--first-byte", type=int, default=40, help="streams whose head comes with the first event"
    )
    ap.add_argument(
        "--baseline",
        metavar="PATH",
        help="also record the first-byte streams with the ssevcr of this checkout (PYTHONPATH)",
    )
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return

    import httpx

    from ssevcr.mitm.driver import Mitmdump, locate_mitmdump

    if "SSEVCR_MITMDUMP" not in os.environ and (ROOT / ".venv-mitmproxy/bin/mitmdump").exists():
        os.environ["SSEVCR_MITMDUMP"] = str(ROOT / ".venv-mitmproxy/bin/mitmdump")
    locate_mitmdump()
    tmp = Path(tempfile.mkdtemp(prefix="ssevcr-bench-"))
    up = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    assert up.stdout is not None
    upstream = f"http://127.0.0.1:{int(up.stdout.readline())}"
    addon = tmp / "stream_only.py"
    addon.write_text(EMPTY_ADDON)
    plain = Mitmdump(addon, mode=f"reverse:{upstream}", listen_port=0, confdir=tmp / "conf")
    recorders: dict[str, tuple[subprocess.Popen[str], str]] = {}
    lat: dict[str, list[float]] = {}
    try:
        plain_url = plain.start().url
        recorders["ssevcr record"] = _recorder(tmp / "bench.msgpack", upstream, tmp / "conf")
        if args.baseline:
            path = str(Path(args.baseline).resolve())
            recorders["baseline"] = _recorder(
                tmp / "baseline.msgpack", upstream, tmp / "conf", path
            )
        paths = {
            "direct": upstream,
            "mitmproxy": plain_url,
            "ssevcr record": recorders["ssevcr record"][1],
        }
        lat = {k: [] for k in paths}
        for _ in range(args.rounds):
            for name, url in paths.items():
                with httpx.Client(timeout=60) as client:
                    measure(client, url, 50, args.gap_ms)  # warm-up on the same connection
                    lat[name] += measure(client, url, args.events, args.gap_ms)
        clients = {name: httpx.Client(timeout=60) for name in recorders}
        for i in range(args.first_byte):  # interleaved, on one keep-alive connection each
            for name, (_, url) in recorders.items():
                with clients[name].stream("GET", f"{url}/first?n=3&gap=20&k={i}") as r:
                    for _ in r.iter_raw():
                        pass
        for client in clients.values():
            client.close()
    finally:
        for rec, _ in recorders.values():
            rec.terminate()
            rec.wait(30)
        plain.stop()
        up.terminate()
        up.wait(10)

    gaps, first = _recorded(tmp / "bench.msgpack")
    cpu = platform.processor() or platform.machine()
    print(
        f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, "
        f"{args.rounds} x {args.events} events per path, {args.gap_ms:g} ms apart\n"
    )
    print("| path | median (ms) | p99 (ms) |")
    print("|---|---:|---:|")
    for name, values in lat.items():
        print(f"| {name} | {statistics.median(values):.3f} | {pct(values, 99):.3f} |")
    med = {k: statistics.median(v) for k, v in lat.items()}
    p99 = {k: pct(v, 99) for k, v in lat.items()}
    print()
    print(
        "added by the recording addon (ssevcr record - mitmproxy): "
        f"median {med['ssevcr record'] - med['mitmproxy']:+.3f} ms, "
        f"p99 {p99['ssevcr record'] - p99['mitmproxy']:+.3f} ms  (target <= 0.1 ms per event)"
    )
    print(
        f"ratio ssevcr record / mitmproxy: median {med['ssevcr record'] / med['mitmproxy']:.2f}x, "
        f"p99 {p99['ssevcr record'] / p99['mitmproxy']:.2f}x"
    )
    print(
        f"ratio mitmproxy / direct:        median {med['mitmproxy'] / med['direct']:.2f}x, "
        f"p99 {p99['mitmproxy'] / p99['direct']:.2f}x"
    )
    if gaps:
        print(
            f"|recorded gap - sent gap| over {len(gaps)} gaps: "
            f"median {statistics.median(gaps):.3f} ms, "
            f"p99 {pct(gaps, 99):.3f} ms  (target: median <= 1 ms)"
        )
    _print_first("ssevcr record", first)
    baseline_first = _recorded(tmp / "baseline.msgpack")[1] if args.baseline else None
    if baseline_first:
        _print_first(f"baseline ({args.baseline})", baseline_first)
    if args.json:
        results = {
            "events": args.rounds * args.events,
            "median_ms": med,
            "p99_ms": p99,
            "gap_error_median_ms": statistics.median(gaps) if gaps else None,
            "gap_error_p99_ms": pct(gaps, 99) if gaps else None,
            "first_byte_error_median_ms": statistics.median(first["first"])
            if first["first"]
            else None,
            "first_byte_error_p99_ms": pct(first["first"], 99) if first["first"] else None,
            "first_byte_after_head_median_ms": statistics.median(first["head"])
            if first["head"]
            else None,
            "first_byte_baseline_error_median_ms": (
                statistics.median(baseline_first["first"]) if baseline_first else None
            ),
        }
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
