"""Journal and control-API benchmarks.

    .venv/bin/python bench/bench_control.py [--quick] [--events 2000] [--seconds 3] [--json FILE]

1. Journal cost on instant replay throughput: ``ssevcr replay --timing instant`` of one
   2,000-event stream (each event its own chunk), without and with ``--journal FILE`` (every play
   journaled in memory either way; with the flag each play's redacted JSON line is also written),
   keep-alive clients replaying as fast as they can (bench_replay.py's client), the two servers
   in alternating rounds of the same run. Responses/s, server CPU per response, and the cost
   with the journal file as a ratio (target: <= 10% fewer responses/s).
2. Control-API session creation: ``POST /__ssevcr/sessions`` on ``ssevcr replay --control``
   (one keep-alive connection, a small cassette, then the same with 20 cassettes), p50/p99 wall
   time per session created (target: <= 5 ms), sessions ended afterwards.

Prints figures and ratios (``--json FILE`` also writes them); asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
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
    args = parser.parse_args()
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
