"""Start-up of the command line in fresh processes: ``ssevcr --help`` and ``ssevcr replay`` until
its ready line (a 34-event example cassette, port 0), as users and CI run them.

    .venv/bin/python bench/bench_cli.py [--runs 30] [--baseline PATH] [--json FILE]

Each run is a new process (``python -c 'from ssevcr.cli import main; main()' ...``); the figure
is the wall time from spawning it to its exit (``--help``) or to its ready line (``replay``),
and the CPU time it used (user + system, which a loaded machine disturbs less; for replay up to
its exit on SIGTERM right after the ready line). ``--baseline
PATH`` runs the same commands with another checkout of ssevcr first on ``PYTHONPATH`` (e.g. a
``git worktree`` of main), interleaved run by run with this one, so both see the same load.
Prints min / median per command; no assertions (targets: ``--help`` <= 100 ms, replay to ready
<= 150 ms; issue 20).

Bytecode is cached as for an installed package (pip compiles it): ``PYTHONDONTWRITEBYTECODE`` is
dropped and the caches go to a temp folder (``PYTHONPYCACHEPREFIX``), filled by one warm-up
run of each command; without them every run would also compile ssevcr's sources.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAIN = "from ssevcr.cli import main; main()"
CWD = "/"  # not a checkout: `python -c` puts the working directory first on sys.path


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cassette_of(env: dict[str, str]) -> Path:
    """The example cassette of the checkout this side runs (an older checkout may not read the
    current format version, so each side replays its own copy of the same stream)."""
    root = Path(env["PYTHONPATH"]) if "PYTHONPATH" in env else ROOT
    return root / "cassettes" / "examples" / "openai-chat-text.msgpack"


def run_once(command: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one fresh process."""
    cpu0 = _cpu()
    start = time.perf_counter()
    if command == "help":
        subprocess.run(
            [sys.executable, "-c", MAIN, "--help"],
            env=env,
            cwd=CWD,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        return time.perf_counter() - start, _cpu() - cpu0
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, "replay", str(cassette_of(env)), "--listen", "127.0.0.1:0"],
        env=env,
        cwd=CWD,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    wall = time.perf_counter() - start
    assert b"serving" in line, line
    proc.send_signal(signal.SIGTERM)
    _, _, usage = os.wait4(proc.pid, 0)  # CPU to the ready line and the clean stop after it
    proc.returncode = 0
    proc.stdout.close()
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--baseline", help="another ssevcr checkout to compare with (PYTHONPATH)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    }
    caches = tempfile.mkdtemp(prefix="ssevcr-bench-pycache-")
    sides = {"this": {**base, "PYTHONPYCACHEPREFIX": os.path.join(caches, "this")}}
    if args.baseline:
        sides["baseline"] = {
            **base,
            "PYTHONPATH": str(Path(args.baseline).resolve()),
            "PYTHONPYCACHEPREFIX": os.path.join(caches, "baseline"),
        }
    for env in sides.values():  # fill the bytecode caches
        for command in ("help", "replay"):
            run_once(command, env)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for command in ("help", "replay"):
        walls: dict[str, list[float]] = {s: [] for s in sides}
        cpus: dict[str, list[float]] = {s: [] for s in sides}
        for _ in range(args.runs):
            for side, env in sides.items():
                wall, cpu = run_once(command, env)
                walls[side].append(wall * 1000)
                cpus[side].append(cpu * 1000)
        for side in sides:
            results.setdefault(side, {})[command] = {
                "wall_min_ms": min(walls[side]),
                "wall_median_ms": statistics.median(walls[side]),
                "cpu_min_ms": min(cpus[side]),
                "cpu_median_ms": statistics.median(cpus[side]),
            }
    load = os.getloadavg()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {args.runs} runs each, load {load[0]:.2f}\n")
    print("| command | side | wall min / median (ms) | CPU min / median (ms) |")
    print("|---|---|---:|---:|")
    names = {"help": "ssevcr --help", "replay": "ssevcr replay, to ready"}
    for command in ("help", "replay"):
        for side in sides:
            r = results[side][command]
            print(
                f"| {names[command]} | {side} | {r['wall_min_ms']:.1f} / {r['wall_median_ms']:.1f}"
                f" | {r['cpu_min_ms']:.1f} / {r['cpu_median_ms']:.1f} |"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
