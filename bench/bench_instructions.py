"""Instructions per instant replay request, counted by callgrind: a figure no load can move.

    .venv/bin/python bench/bench_instructions.py [--requests N] [--long] [--json FILE]

The throughput ratios of bench_replay.py (responses/s against bare asyncio servers) move by
±10% from run to run on a shared 2-core VM, more than most changes to the request path. This
counts what the server process executes instead: each server of bench_replay.py (ssevcr replay
on its precise loop, the bare one-write streams server, the bare one-write Protocol) runs under
``valgrind --tool=callgrind``, one keep-alive client sends the 36-chunk example request N and 6N
times in sequence, and the difference of the totals divided by 5N is the user-space instructions
per request (start-up and shutdown cancel out; the kernel's share, the same for every server, is
not counted). Ratios of instructions are the load-independent half of bench_replay's throughput
ratios. ``--long`` counts the synthesized 2,000-chunk answer (~205 kB) of bench_replay's second
throughput table instead (with ``--requests`` 50 by default: each request is larger). Needs
valgrind; prints figures (``--json FILE`` also writes them); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_replay as br


def _totals(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {path}")


def _run(
    mode: str, requests: int, request: bytes, tmp: Path, response: Path | None, cassette: Path
) -> int:
    out = tmp / f"callgrind.{mode}.{requests}"
    server = br.start(
        mode,
        timing="instant",
        cassette=cassette,
        response_file=str(response) if response else None,
        prefix=("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q"),
    )
    with socket.create_connection((server.host, server.port)) as sock:
        for _ in range(requests + 2):  # (two to warm up: the first answer imports the journal's)
            sock.sendall(request)
            data = b""
            while not data.endswith(b"0\r\n\r\n"):
                piece = sock.recv(1 << 20)
                if not piece:
                    raise SystemExit(f"{mode}: the server closed the connection")
                data += piece
    server.stop()
    return _totals(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, help="requests per run (default 500, --long 50)")
    parser.add_argument("--long", action="store_true", help="the 2,000-chunk answer")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("bench_instructions.py needs valgrind (apt install valgrind)")
    from ssevcr import _store

    request = br.request_bytes(_store.load(br.CASSETTE).interactions[0].request)
    n = args.requests or (50 if args.long else 500)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        cassette = br.CASSETTE
        if args.long:
            cassette = tmp / "long.msgpack"
            br.long_stream(cassette, 2000)
        ours = br.start("precise", timing="instant", cassette=cassette)
        canned = tmp / "response.bin"
        canned.write_bytes(br.capture_response(ours, request))
        ours.stop()
        size = canned.stat().st_size
        what = "the 2,000-chunk answer" if args.long else br.CASSETTE.name
        print(
            f"instructions per instant request ({what}, {size:,} bytes; {n} and {6 * n} requests)"
        )
        for mode, label in (
            ("precise", "ssevcr replay"),
            ("streams", "bare one-write streams"),
            ("bare", "bare one-write Protocol"),
        ):
            response = None if mode == "precise" else canned
            few = _run(mode, n, request, tmp, response, cassette)
            many = _run(mode, 6 * n, request, tmp, response, cassette)
            figures[label] = (many - few) / (5 * n)
            print(f"  {label:24s} {figures[label]:10,.0f}")
    mine = figures["ssevcr replay"]
    for label in ("bare one-write streams", "bare one-write Protocol"):
        print(f"  ratio {label} / ssevcr: {figures[label] / mine:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
