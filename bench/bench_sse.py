"""SSE parser benchmark: a long unterminated line fed one byte at a time, and a normal stream.

    .venv/bin/python bench/bench_sse.py [--bytes 1000000] [--events 100000] [--baseline REV]
                                        [--json FILE]

1. One line of ``--bytes`` bytes fed as that many one-byte chunks, then its end: the case that was
   quadratic (a bytes buffer copied on every feed and the line searched again from its start:
   100k chunks took 26 s in ``ssevcr show``). Target: 1M chunks well under a second.
2. Throughput of a normal provider-like stream (``--events`` JSON events, chunked as a real
   stream is, ~40 bytes to ~400 bytes per read), fed incrementally and parsed whole.

Each figure is measured for the parser of this tree and, side by side, for the parser at git
revision ``--baseline`` (default: the commit before the linear parser, loaded from git into its
own module). The long line is compared at a hundredth of ``--bytes`` (the baseline is quadratic:
at 1M chunks it would take hours).
Prints figures; ``--json FILE`` also writes them. Asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ssevcr import _sse  # noqa: E402

BASELINE = (
    "572daff"  # main before the linear parser (the bytes buffer, searched from each line start)
)


def load_baseline(rev: str) -> ModuleType | None:
    """``ssevcr/_sse.py`` as it was at ``rev``, as a module of its own (None without git)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:ssevcr/_sse.py"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "baseline_sse.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("baseline_sse", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_sse"] = module
    spec.loader.exec_module(module)
    return module


def long_line(module: Any, size: int) -> float:
    """Seconds to feed ``size`` one-byte chunks of one line, then end it."""
    parser = module.SSEParser()
    byte = b"a"
    t0 = time.perf_counter()
    for _ in range(size):
        parser.feed(byte)
    frames = parser.feed(b"\n\n") + parser.flush()
    elapsed = time.perf_counter() - t0
    assert len(frames) == 1 and len(frames[0].raw) == size + 2
    return elapsed


def stream(events: int, seed: int = 7) -> list[bytes]:
    """A provider-like stream cut into reads of 40..400 bytes (inside events, as sockets do)."""
    rng = random.Random(seed)
    body = b"".join(
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,'
        b'"delta":{"content":" token%d"},"finish_reason":null}]}\n\n' % i
        for i in range(events)
    )
    reads, pos = [], 0
    while pos < len(body):
        size = rng.randint(40, 400)
        reads.append(body[pos : pos + size])
        pos += size
    return reads


def throughput(module: Any, reads: list[bytes], rounds: int = 3) -> tuple[float, float]:
    """(MB/s fed incrementally, MB/s parsed whole), best of ``rounds``."""
    total = sum(len(r) for r in reads)
    body = b"".join(reads)
    fed, whole = [], []
    for _ in range(rounds):
        parser = module.SSEParser()
        t0 = time.perf_counter()
        for r in reads:
            parser.feed(r)
        parser.flush()
        fed.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        module.parse(body)
        whole.append(time.perf_counter() - t0)
    return total / min(fed) / 1e6, total / min(whole) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--bytes", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument(
        "--baseline", default=BASELINE, help="git revision to compare with ('' for none)"
    )
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()

    base = load_baseline(args.baseline) if args.baseline else None
    out: dict[str, Any] = {"bytes": args.bytes, "events": args.events, "baseline": args.baseline}

    out["long_line_s"] = long_line(_sse, args.bytes)
    print(f"long line, {args.bytes:,} one-byte chunks: {out['long_line_s']:.3f} s (target < 1 s)")
    small = max(1, args.bytes // 100)
    out["long_line_small_s"] = long_line(_sse, small)
    if base is not None:
        out["baseline_long_line_small_s"] = long_line(base, small)
        print(
            f"  {small:,} chunks: {out['long_line_small_s']:.3f} s here, "
            f"{out['baseline_long_line_small_s']:.3f} s at {args.baseline} "
            f"(x{out['baseline_long_line_small_s'] / out['long_line_small_s']:.0f}; that one is "
            f"quadratic: x10,000 more for {args.bytes:,})"
        )

    reads = stream(args.events)
    fed, whole = throughput(_sse, reads)
    out["stream_fed_mb_s"], out["stream_whole_mb_s"] = fed, whole
    line = (
        f"normal stream, {args.events:,} events, {len(reads):,} reads: "
        f"fed {fed:.1f} MB/s, whole {whole:.1f} MB/s"
    )
    if base is not None:
        bfed, bwhole = throughput(base, reads)
        out["baseline_stream_fed_mb_s"], out["baseline_stream_whole_mb_s"] = bfed, bwhole
        line += (
            f"; at {args.baseline}: fed {bfed:.1f} MB/s, whole {bwhole:.1f} MB/s "
            f"(ratio {fed / bfed:.2f}, {whole / bwhole:.2f})"
        )
    print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
