"""Per-test overhead of a replayed stream in process, for aiohttp, requests and urllib3: ssevcr's
``use_cassette`` (instant timing) against vcrpy replaying the same bytes.

    .venv/bin/python bench/bench_clients.py [--plays 200] [--repeat 1 30] [--json FILE]

One stream per size: the OpenAI chat fixture (34 events, 8.8 kB) and the same x30 (1,020 events,
263 kB), one chunk per SSE event. The ssevcr cassette is built from it; the replay server serves
it on 127.0.0.1 and vcrpy records what each client reads from it into its YAML cassette, so both
tools replay the same bytes. One "test" = enter the cassette, POST, read the stream line by line
(requests: ``stream=True`` + ``iter_lines``; aiohttp: ``async for line in r.content``; urllib3:
a ``PoolManager`` with ``preload_content=False`` and ``for line in r``), count the
``data:`` lines, leave the cassette. The floor is the same client reading the same bytes from
the replay server over loopback with no cassette (the client's own cost); the overhead of a tool
is its time less the floor. Cases run interleaved, ``--plays`` times each; the figures are the
p10 and the median in ms, and the ratios ssevcr / vcrpy at the p10, per test and over the floor
(when the floor is below both; goal: <= 0.5 at 1,000 events). Each test opens the same
cassette file, as a parametrized test does. No assertions on speed; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_pytest import build_ssevcr_cassette  # noqa: E402

HEADERS = {"content-type": "application/json"}


def record_vcr(msgpack: Path, folder: Path, request_body: bytes) -> tuple[str, dict[str, Path]]:
    """Serve the ssevcr cassette; let vcrpy record what each client reads from it."""
    import aiohttp
    import requests
    import urllib3
    import vcr

    from ssevcr._player import Player
    from ssevcr._server_thread import ServerThread

    player = Player.create([msgpack], timing="instant", repeat=True)
    expected = player.interactions[0].response.body
    paths = {name: folder / f"{name}.yaml" for name in ("requests", "aiohttp", "urllib3")}
    with ServerThread(player) as server:
        url = server.url + "/v1/chat/completions"
        with vcr.VCR(record_mode="all").use_cassette(str(paths["requests"])):
            body = requests.post(url, data=request_body, headers=HEADERS).content
        assert body == expected, "vcrpy (requests) recorded different bytes"
        with vcr.VCR(record_mode="all").use_cassette(str(paths["urllib3"])):
            body = urllib3.PoolManager().request("POST", url, body=request_body, headers=HEADERS)
        assert body.data == expected, "vcrpy (urllib3) recorded different bytes"

        async def fetch() -> bytes:
            async with (
                aiohttp.ClientSession() as s,
                s.post(url, data=request_body, headers=HEADERS) as r,
            ):
                return await r.read()

        with vcr.VCR(record_mode="all").use_cassette(str(paths["aiohttp"])):
            body = asyncio.run(fetch())
        assert body == expected, "vcrpy (aiohttp) recorded different bytes"
    return url, paths


def cases(  # type: ignore[no-untyped-def]
    msgpack: Path, vcr_paths: dict[str, Path], url: str, request_body: bytes, events: int, live: str
):
    import aiohttp
    import requests
    import urllib3
    import vcr

    import ssevcr

    session = requests.Session()
    manager = urllib3.PoolManager()
    loop = asyncio.new_event_loop()
    aio = loop.run_until_complete(_session(aiohttp))
    recorder = vcr.VCR(record_mode="none")

    def requests_test(to: str = url) -> None:
        r = session.post(to, data=request_body, headers=HEADERS, stream=True)
        n = sum(1 for line in r.iter_lines() if line.startswith(b"data: "))
        assert n == events, n

    def urllib3_test(to: str = url) -> None:
        r = manager.request("POST", to, body=request_body, headers=HEADERS, preload_content=False)
        n = sum(1 for line in r if line.startswith(b"data: "))
        r.release_conn()
        assert n == events, n

    async def aiohttp_stream(to: str) -> None:
        async with aio.post(to, data=request_body, headers=HEADERS) as r:
            n = 0
            async for line in r.content:
                n += line.startswith(b"data: ")
        assert n == events, n

    def aiohttp_test(to: str = url) -> None:
        loop.run_until_complete(aiohttp_stream(to))

    def under_ssevcr(test: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with ssevcr.use_cassette(msgpack, timing="instant"):
                test()

        return run

    def under_vcr(test: Callable[[], None], path: Path) -> Callable[[], None]:
        def run() -> None:
            with recorder.use_cassette(str(path)):
                test()

        return run

    def close() -> None:
        loop.run_until_complete(aio.close())
        loop.close()
        session.close()

    table = {
        "requests: floor": lambda: requests_test(live),
        "requests: ssevcr": under_ssevcr(requests_test),
        "requests: vcrpy": under_vcr(requests_test, vcr_paths["requests"]),
        "aiohttp: floor": lambda: aiohttp_test(live),
        "aiohttp: ssevcr": under_ssevcr(aiohttp_test),
        "aiohttp: vcrpy": under_vcr(aiohttp_test, vcr_paths["aiohttp"]),
        "urllib3: floor": lambda: urllib3_test(live),
        "urllib3: ssevcr": under_ssevcr(urllib3_test),
        "urllib3: vcrpy": under_vcr(urllib3_test, vcr_paths["urllib3"]),
    }
    return table, close


async def _session(aiohttp):  # type: ignore[no-untyped-def]
    return aiohttp.ClientSession()


def measure(repeat: int, plays: int) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory(prefix="ssevcr-bench-clients-") as tmp:
        folder = Path(tmp)
        msgpack = folder / "stream.msgpack"
        request_body, events = build_ssevcr_cassette(msgpack, repeat)
        url, vcr_paths = record_vcr(msgpack, folder, request_body)
        from ssevcr._player import Player
        from ssevcr._server_thread import ServerThread

        player = Player.create([msgpack], timing="instant", repeat=True)
        with ServerThread(player, log=lambda _line: None) as server:
            live = server.url + "/v1/chat/completions"
            table, close = cases(msgpack, vcr_paths, url, request_body, events, live)
            times: dict[str, list[float]] = {name: [] for name in table}
            for fn in table.values():
                fn()  # warm up (imports, first decode)
            for _ in range(plays):
                for name, fn in table.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append((time.perf_counter() - t0) * 1e3)
            close()
    return {name: (sorted(ts)[len(ts) // 10], statistics.median(ts)) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=200)
    parser.add_argument("--repeat", type=int, nargs="+", default=[1, 30])
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    results = {}
    for repeat in args.repeat:
        figures = measure(repeat, args.plays)
        results[repeat] = figures
        print(f"\nstream x{repeat} ({34 * repeat} events), ms per test: p10 / median")
        for name, (p10, med) in figures.items():
            print(f"  {name:<18} {p10:8.3f} / {med:8.3f}")
        for client in ("requests", "aiohttp", "urllib3"):
            ours, theirs = figures[f"{client}: ssevcr"][0], figures[f"{client}: vcrpy"][0]
            floor = figures[f"{client}: floor"][0]
            line = f"  {client}: ssevcr / vcrpy per test (p10) {ours / theirs:.2f}x"
            if floor < ours and floor < theirs:
                line += f", over the floor {(ours - floor) / (theirs - floor):.2f}x"
            else:  # the loopback floor costs more than replaying in memory: no overhead to say
                line += ", over the floor: n/a (the socket floor is slower than in memory)"
            print(line + " (goal <= 0.5x at 1,000 events)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
