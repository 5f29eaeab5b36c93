"""Journal and control-API benchmarks.

    .venv/bin/python bench/bench_control.py [--quick] [--events 2000] [--seconds 3] [--json FILE]
    .venv/bin/python bench/bench_control.py --callgrind 1000 [--events 2000] [--slowdown 50]

1. Journal cost on instant replay throughput: ``ssevcr replay --timing instant`` of one
   2,000-event stream (each event its own chunk), without and with ``--journal FILE`` (every play
   journaled in memory either way; with the flag each play's redacted JSON line is also written),
   keep-alive clients replaying as fast as they can (bench_replay.py's client), the two servers
   in alternating rounds of the same run. Responses/s, server CPU per response, and the cost
   with the journal file as a ratio (target: <= 10% fewer responses/s).
   ``--callgrind N`` counts instead the instructions each server spends per response (valgrind's
   callgrind, main thread and journal writer thread apart: load-independent), over N sequential
   requests after a warm-up; the server runs in process as ``ssevcr replay`` builds it, with the
   writer's flush interval scaled by ``--slowdown`` (valgrind runs the server ~50x slower: so
   that a batch holds as many lines as at full speed).
2. Control-API session creation: ``POST /__ssevcr/sessions`` on ``ssevcr replay --control``
   (one keep-alive connection, a small cassette, then the same with 20 cassettes), p50/p99 wall
   time per session created (target: <= 5 ms), sessions ended afterwards.

Prints figures and ratios (``--json FILE`` also writes them); asserts nothing.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_replay import (  # noqa: E402
    Server,
    capture_response,
    long_stream,
    request_bytes,
    throughput,
)

from ssevcr import _store  # noqa: E402

SSEVCR = str(Path(sys.executable).parent / "ssevcr")


def start_cli(*args: str) -> tuple[Server, str]:
    proc = subprocess.Popen(
        [SSEVCR, "replay", *args, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    match = re.search(r"serving http://([\d.]+):(\d+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"no ready line: {line!r}")
    return Server(proc, match.group(1), int(match.group(2))), line


def section_journal(tmp: Path, events: int, seconds: float, rounds: int) -> dict[str, object]:
    cassette = tmp / "long.msgpack"
    long_stream(cassette, events)
    request = request_bytes(_store.load(cassette).interactions[0].request)
    journal = tmp / "journal.jsonl"
    plain, _ = start_cli(str(cassette), "--timing", "instant")
    journaled, _ = start_cli(str(cassette), "--timing", "instant", "--journal", str(journal))
    results: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
    try:
        size = len(capture_response(plain, request))
        assert len(capture_response(journaled, request)) == size
        for _ in range(rounds):
            for name, server in (("without", plain), ("with", journaled)):
                results[name].append(throughput(server, request, size, 4, seconds))
    finally:
        plain.stop()
        journaled.stop()
    lines = len(journal.read_text().splitlines())
    best = {k: max(r for r, _ in v) for k, v in results.items()}
    cpu = {k: min(c for _, c in v) for k, v in results.items()}
    cost = 1 - best["with"] / best["without"]
    print(f"\n1. journal cost, instant replay of a {events}-event stream ({size} bytes/response)")
    for name in ("without", "with"):
        print(
            f"   {name:>7} --journal: {best[name]:8.0f} responses/s (best of {rounds}), "
            f"{cpu[name]:7.1f} us server CPU per response"
        )
    print(f"   cost of --journal: {cost * 100:+.1f}% responses/s (target <= 10%); {lines} lines")
    return {
        "events": events,
        "responses_per_s": best,
        "cpu_us_per_response": cpu,
        "journal_cost": cost,
        "journal_lines": lines,
    }


def serve(cassette: str, journal: str | None, flush_within: float) -> None:
    """A server as ``ssevcr replay CASSETTE --timing instant [--journal FILE]`` builds it, with
    the journal writer's flush interval given; prints its URL, runs until SIGTERM."""
    import asyncio
    import signal

    from ssevcr._journal_file import JournalFile
    from ssevcr._player import Player
    from ssevcr._server import ReplayServer
    from ssevcr._timer import new_event_loop
    from ssevcr.cli.replay import PLAY_LOG_LIMIT

    player = Player.create([cassette], timing="instant", repeat=True, log_limit=PLAY_LOG_LIMIT)
    file = None if journal is None else JournalFile(journal, flush_within=flush_within)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with ReplayServer(player, log=lambda _: None, journal=file) as server:
            print(server.url, flush=True)
            await stop.wait()

    loop = new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        if file is not None:
            file.close()


def _callgrind_total(path: str) -> int:
    text = Path(path).read_text(errors="replace")
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    return int(found.group(1)) if found else 0


def section_callgrind(tmp: Path, events: int, count: int, slowdown: float) -> dict[str, object]:
    cassette = tmp / "long.msgpack"
    long_stream(cassette, events)
    request = request_bytes(_store.load(cassette).interactions[0].request)
    print(
        f"\n1. journal cost in instructions (callgrind), instant replay of a {events}-event "
        f"stream, {count} requests one after another"
    )
    out: dict[str, object] = {}
    for name in ("without", "with"):
        prefix = tmp / f"cg.{name}"
        journal = ["--journal", str(tmp / "journal.jsonl")] if name == "with" else []
        proc = subprocess.Popen(
            [
                *("valgrind", "--tool=callgrind", "--separate-threads=yes"),
                f"--callgrind-out-file={prefix}.%p",
                *(sys.executable, __file__, "--serve", str(cassette), *journal),
                *("--flush-within", str(0.01 * slowdown)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        url = proc.stdout.readline().decode()
        match = re.search(r"http://([\d.]+):(\d+)", url)
        if not match:
            proc.kill()
            raise SystemExit(f"no URL from the server under valgrind: {url!r}")
        server = Server(proc, match.group(1), int(match.group(2)))
        size = len(capture_response(server, request))
        with socket.create_connection((server.host, server.port)) as sock:

            def play(n: int, size: int = size) -> None:
                for _ in range(n):
                    sock.sendall(request)
                    got = 0
                    while got < size:
                        got += len(sock.recv(1 << 20))

            play(100)  # warm up (the first journal line's caches, the writer's first batch)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True)
            play(count)
            time.sleep(0.02 * slowdown)  # the writer's last batch
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True)
        server.stop()
        threads = {}
        for path in glob.glob(f"{prefix}.{proc.pid}.1-*"):  # the dump after zeroing, by thread
            threads[path.rsplit("-", 1)[1]] = _callgrind_total(path) / count
        main = threads.pop("01", 0.0)
        others = sum(threads.values())
        print(
            f"   {name:>7} --journal: {main + others:9,.0f} instructions per response "
            f"(event loop {main:,.0f}, journal writer {others:,.0f})"
        )
        out[name] = {"total": main + others, "loop": main, "writer": others}
        for path in glob.glob(f"{prefix}.*"):
            os.unlink(path)
    with_, without = out["with"], out["without"]
    assert isinstance(with_, dict) and isinstance(without, dict)
    cost = with_["total"] / without["total"] - 1
    print(f"   cost of --journal: {cost * 100:+.1f}% instructions per response (user space only)")
    out["cost"] = cost
    return out


def section_sessions(tmp: Path, count: int) -> dict[str, object]:
    small = tmp / "small.msgpack"
    long_stream(small, 20)
    many = []
    for i in range(20):
        path = tmp / f"c{i}.msgpack"
        long_stream(path, 20 + i)
        many.append(str(path))
    server, line = start_cli("--control")
    token = re.search(r"token ([A-Za-z0-9._~-]+)", line).group(1)  # type: ignore[union-attr]
    conn = http.client.HTTPConnection(server.host, server.port)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    out: dict[str, object] = {}
    try:
        for label, cassettes in (("1 cassette", [str(small)]), ("20 cassettes", many)):
            body = json.dumps({"cassettes": cassettes, "timing": "instant"}).encode()
            times, ids = [], []
            for _ in range(count):
                t = time.perf_counter()
                conn.request("POST", "/__ssevcr/sessions", body=body, headers=headers)
                r = conn.getresponse()
                answer = json.loads(r.read())
                times.append(time.perf_counter() - t)
                assert r.status == 201, answer
                ids.append(answer["id"])
            for sid in ids:
                conn.request("DELETE", f"/__ssevcr/sessions/{sid}", headers=headers)
                conn.getresponse().read()
            times.sort()
            p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
            print(
                f"   {label:>12}: p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms per session "
                f"({count} created; target <= 5 ms)"
            )
            out[label] = {"p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3, "count": count}
    finally:
        conn.close()
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--callgrind", type=int, metavar="N")
    parser.add_argument("--slowdown", type=float, default=50.0)
    parser.add_argument("--serve", metavar="CASSETTE", help=argparse.SUPPRESS)
    parser.add_argument("--journal", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--flush-within", type=float, default=0.01, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.journal, args.flush_within)
        return
    if args.callgrind:
        with tempfile.TemporaryDirectory() as tmp:
            figures = section_callgrind(Path(tmp), args.events, args.callgrind, args.slowdown)
        if args.json:
            Path(args.json).write_text(json.dumps({"callgrind": figures}, indent=1))
        return
    seconds = 1.0 if args.quick else args.seconds
    rounds = 2 if args.quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        journal = section_journal(Path(tmp), args.events, seconds, rounds)
        print("\n2. control-API session creation")
        sessions = section_sessions(Path(tmp), 100 if args.quick else 500)
    if args.json:
        Path(args.json).write_text(json.dumps({"journal": journal, "sessions": sessions}, indent=1))


if __name__ == "__main__":
    main()
