"""The CLI sweep's own cost per run: ``ssevcr sweep -j 2`` against the same commands run from a
plain loop.

    .venv/bin/python bench/bench_sweep.py [--runs 40] [--jobs 2] [--rounds 3] [--json FILE]

The command is ``examples/sweep/careful.py`` (a Python consumer of the example OpenAI chat
cassette, ~40 ms of interpreter start-up and work per run). The sweep runs it once clean and once
per fault, from a list of ``--runs`` faults that each end at once in instant timing (truncations,
drops, duplicates, corrupt events, errors, statuses, rechunks: no stalls or pacing, whose
waiting would be the fault's, not the sweep's). The baseline runs the same command the same
number of times, ``--jobs`` at a time, from a plain loop (a thread pool of ``subprocess.run``)
against one ``ssevcr replay`` started before the clock: what the runs cost without the sweep's
replay per run, verdicts, progress bar and report. Both are timed wall clock, interleaved, best
of ``--rounds``.

The sweep's own cost per run is ``(sweep − loop) × jobs / runs``. Target (issue 16): ≤ 50 ms.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASSETTE = ROOT / "cassettes" / "examples" / "openai-chat-text.msgpack"
CONSUMER = [sys.executable, str(ROOT / "examples" / "sweep" / "careful.py")]
SSEVCR = [sys.executable, "-c", "from ssevcr.cli import main; main()"]

FAULTS = [
    *(f"truncate:after={k},end={end}" for k in (1, 5, 17, 30) for end in ("close", "abort")),
    *(f"drop:event={e}" for e in ("last", 3, 17)),
    *(f"duplicate:event={e}" for e in ("last", 17)),
    *(f"corrupt:event={e},how={how}" for e in (5, 17) for how in ("json", "utf8")),
    "error:after=3",
    "error:after=30",
    "status:429",
    "status:500",
    "status:503",
    "rechunk:size=1",
    "rechunk:hostile",
    *(f"rechunk:random,seed={s}" for s in range(1, 20)),
]


def sweep_once(runs: int, jobs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        args = [*SSEVCR, "sweep", str(CASSETTE), "--catalog", "none", "-j", str(jobs)]
        for fault in FAULTS[:runs]:
            args += ["--fault", fault]
        args += ["--json", os.path.join(tmp, "r.json"), "--", *CONSUMER]
        start = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, cwd=ROOT)
        wall = time.perf_counter() - start
        report = json.loads(Path(tmp, "r.json").read_text())
        assert len(report["runs"]) == runs, (proc.returncode, proc.stderr[-2000:])
        return wall


def loop_once(runs: int, jobs: int, base_url: str) -> float:
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-bench"}

    def one(_: int) -> int:
        return subprocess.run(CONSUMER, capture_output=True, env=env, cwd=ROOT).returncode

    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        codes = list(pool.map(one, range(runs + 1)))  # + the clean run, as the sweep makes
    wall = time.perf_counter() - start
    assert codes.count(0) == len(codes), codes  # the plain replay answers every one in full
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=40, help=f"faults per sweep (≤ {len(FAULTS)})")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    runs = min(args.runs, len(FAULTS))
    server = subprocess.Popen(
        [*SSEVCR, "replay", str(CASSETTE), "--timing", "instant", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert server.stdout is not None
    ready = server.stdout.readline().decode()
    base_url = next(w for w in ready.split() if w.startswith("http://")).rstrip(",") + "/v1"
    sweeps, loops = [], []
    try:
        for _ in range(args.rounds):
            loops.append(loop_once(runs, args.jobs, base_url))
            sweeps.append(sweep_once(runs, args.jobs))
    finally:
        server.terminate()
        server.wait(10)
    sweep, loop = min(sweeps), min(loops)
    per_run = (sweep - loop) * args.jobs / (runs + 1)
    print(
        f"# bench_sweep  {time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cores  Python "
        f"{platform.python_version()}  load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{runs} faults + the clean run, -j {args.jobs}, best of {args.rounds} rounds:")
    print(f"  ssevcr sweep   {sweep:7.2f} s   {(runs + 1) / sweep:6.1f} runs/s")
    print(f"  plain loop     {loop:7.2f} s   {(runs + 1) / loop:6.1f} runs/s")
    print(f"  the sweep's own cost per run: {per_run * 1e3:+.1f} ms  (target <= 50 ms)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"sweep_s": sweep, "loop_s": loop, "runs": runs + 1, "per_run_s": per_run})
        )


if __name__ == "__main__":
    main()
