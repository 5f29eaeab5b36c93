"""Recording overhead: per-event latency through ``ssevcr record`` vs mitmproxy streaming without
the addon vs a direct connection, and how closely recorded gaps follow the upstream's send gaps.

    .venv/bin/python bench/bench_record.py [--events 300] [--gap-ms 2] [--rounds 8] [--json FILE]

An upstream *process* writes one SSE event per write, each carrying its send time
(``time.monotonic_ns()``: one clock for every process on the machine); the client reads with httpx
and takes, per event, arrival time minus send time. Three paths, interleaved over rounds:

- direct:        client -> upstream
- mitmproxy:     client -> mitmdump (reverse proxy, an addon that only sets ``stream = True``)
- ssevcr record: client -> ``ssevcr record --upstream ...`` (the real CLI: mitmdump + recording addon)

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
    '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06",'
    '"system_fingerprint":"fp_bench","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,'
    '"finish_reason":null}]'
)


# ---------------------------------------------------------------------------------------------
# upstream (runs as a subprocess: `bench_record.py --serve`)


async def _serve() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"[?&]n=(\d+)&gap=([\d.]+)", head)
                n, gap = (int(m.group(1)), float(m.group(2)) / 1000) if m else (10, 0.002)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                )
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


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--gap-ms", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return

    import httpx

    from ssevcr import _store
    from ssevcr._sse import parse
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
    plain_url = plain.start().url
    cassette = tmp / "bench.msgpack"
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
            str(tmp / "conf"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert rec.stdout is not None
    m = re.search(r"http://[\d.:]+", rec.stdout.readline())
    assert m
    rec_url = m.group(0)

    paths = {"direct": upstream, "mitmproxy": plain_url, "ssevcr record": rec_url}
    lat: dict[str, list[float]] = {k: [] for k in paths}
    try:
        for _ in range(args.rounds):
            for name, url in paths.items():
                with httpx.Client(timeout=60) as client:
                    measure(client, url, 50, args.gap_ms)  # warm-up on the same connection
                    lat[name] += measure(client, url, args.events, args.gap_ms)
    finally:
        rec.terminate()
        rec.wait(30)
        plain.stop()
        up.terminate()
        up.wait(10)

    # recorded gaps vs sent gaps (one event per chunk)
    gaps: list[float] = []
    for inter in _store.load(cassette).interactions:
        resp = inter.response
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

    cpu = platform.processor() or platform.machine()
    print(
        f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
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
        f"added by the recording addon (ssevcr record - mitmproxy): median {med['ssevcr record'] - med['mitmproxy']:+.3f} ms, "
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
            f"|recorded gap - sent gap| over {len(gaps)} gaps: median {statistics.median(gaps):.3f} ms, "
            f"p99 {pct(gaps, 99):.3f} ms  (target: median <= 1 ms)"
        )
    if args.json:
        results = {
            "events": args.rounds * args.events,
            "median_ms": med,
            "p99_ms": p99,
            "gap_error_median_ms": statistics.median(gaps) if gaps else None,
            "gap_error_p99_ms": pct(gaps, 99) if gaps else None,
        }
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
