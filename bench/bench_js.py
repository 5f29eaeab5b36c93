"""Per-test overhead of the npm package's test helpers (js/, issue 18): a session on the run's one
``ssevcr replay --control`` server (create + end) against a test that starts its own
``ssevcr replay`` process, interleaved in one run. The measuring is js/bench/overhead.js (Node);
this runs it with this checkout's ssevcr, for bench/run_all.py.

    .venv/bin/python bench/bench_js.py [--tests 30] [--request] [--json FILE]

Needs Node >= 18 and ``npm ci`` in js/ (the SDK for --request). Goal: >= 20x less per test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "js" / "bench" / "overhead.js"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=30, help="tests on each side")
    parser.add_argument("--request", action="store_true", help="one instant stream per test")
    parser.add_argument("--json", metavar="FILE", help="write the result as JSON")
    args = parser.parse_args()
    node = shutil.which("node")
    if node is None:
        raise SystemExit("bench_js.py needs node (Node >= 18) on PATH")
    if not (ROOT / "js" / "node_modules").is_dir():
        raise SystemExit("run `npm ci` in js/ first")
    command = [node, str(SCRIPT), "--tests", str(args.tests)]
    if args.request:
        command.append("--request")
    if args.json:
        command += ["--json", str(Path(args.json).resolve())]
    env = {**os.environ, "SSEVCR_BIN": str(Path(sys.executable).parent / "ssevcr")}
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
