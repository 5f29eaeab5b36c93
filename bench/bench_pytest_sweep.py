"""The pytest sweep's speed: faults per second, the test body's own work excluded.

    .venv/bin/python bench/bench_pytest_sweep.py [--catalog default] [--rounds 3] [--json FILE]

One test reads the bundled 34-event OpenAI stream in process (httpx2, instant timing) and
swallows whatever the fault does to it. The sweep session runs it with
``@pytest.mark.ssevcr(..., sweep=CATALOG)``: once clean and once per fault. The baseline session
runs the same test body with the same faults without sweeping (``parametrize`` over the sweep's
fault specs, each case with its own marker ``faults=[spec]``): the body's work under each fault
and pytest's per-case cost, without the sweep's catalogue, cases, verdicts and summary. Both
are fresh pytest processes (``-p no:cacheprovider -q``), CPU time of the child (user + system,
which a loaded machine disturbs less than wall time), best of ``--rounds``, interleaved.

Faults per second = faults / (sweep session - baseline session): the sweep's own cost per fault.
Target (issue 16): >= 200. Also printed: each session's CPU per case, pytest's start-up (a
session of one empty test) taken off.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASSETTE = ROOT / "cassettes" / "examples" / "openai-chat-text.msgpack"

BODY = """
import httpx2 as httpx
import pytest

REQUEST = {
    "messages": [{"role": "user", "content": "What's the weather like in SF?"}],
    "model": "gpt-4o-2024-08-06",
    "stream": True,
    "stream_options": {"include_usage": True},
}


CLIENT = httpx.Client()  # one client for the module, as a test suite's fixture would keep it


def consume():
    if True:
        with CLIENT.stream(
            "POST", "https://api.openai.com/v1/chat/completions", json=REQUEST,
            headers={"authorization": "Bearer sk-bench"}, timeout=5.0,
        ) as response:
            return sum(1 for line in response.iter_lines() if line.startswith("data:"))

"""

SWEPT = (
    BODY
    + """
@pytest.mark.ssevcr("chat.msgpack", sweep="{catalog}", timing="instant", sweep_stall="1ms")
def test_chat(ssevcr_fault):
    try:
        consume()
    except Exception:
        pass
"""
)

PLAIN = (
    BODY
    + """
SPECS = {specs}


def _marked(spec):
    faults = [spec] if spec else []
    return pytest.param(
        spec, marks=pytest.mark.ssevcr("chat.msgpack", timing="instant", faults=faults)
    )


@pytest.mark.parametrize("spec", [_marked(s) for s in SPECS])
def test_chat(spec):
    try:
        consume()
    except Exception:
        pass
"""
)


def fault_specs(folder: Path, source: str) -> list[str | None]:
    """The swept test's cases, as fault specs (None: the clean case), from ``--collect-only``."""
    (folder / "test_bench.py").write_text(source)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider"],
        cwd=folder,
        capture_output=True,
        text=True,
    ).stdout
    ids = re.findall(r"::test_chat\[(.*)\]$", out, re.M)
    assert ids, out[-3000:]
    return [None if i == "clean" else i for i in ids]


def session(folder: Path, source: str) -> tuple[float, int]:
    """(CPU seconds of the pytest child, cases passed)."""
    test = folder / "test_bench.py"
    test.write_text(source)
    cassettes = folder / "cassettes" / "test_bench"
    cassettes.mkdir(parents=True, exist_ok=True)
    shutil.copy(CASSETTE, cassettes / "chat.msgpack")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSEVCR_")}
    before = os.times()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    found = re.search(r"(\d+) passed", proc.stdout)
    assert found and "failed" not in proc.stdout, proc.stdout[-3000:]
    return cpu, int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--catalog", default="default", choices=["quick", "default", "full"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    sweeps, plains = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        swept_source = SWEPT.replace("{catalog}", args.catalog)
        session(folder, swept_source)  # the cassette folder made, bytecode cached
        specs = fault_specs(folder, swept_source)
        cases = len(specs)
        plain_source = PLAIN.replace("{specs}", repr(specs))
        empties = []
        for _ in range(args.rounds):
            empties.append(session(folder, "def test_nothing():\n    pass\n")[0])
            cpu, swept = session(folder, swept_source)
            sweeps.append(cpu)
            cpu, plain = session(folder, plain_source)
            plains.append(cpu)
            assert swept == plain == cases, (swept, plain, cases)
        empty = min(empties)
    sweep, plain = min(sweeps), min(plains)
    faults = cases - 1
    print(
        f"# bench_pytest_sweep  {time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cores  "
        f"Python {platform.python_version()}  load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"catalogue {args.catalog}: {faults} faults + the clean case, CPU s, best of {args.rounds}"
    )
    per_case = [(x - empty) / cases * 1e3 for x in (sweep, plain)]
    print(f"  empty session (start-up)    {empty:6.2f} s")
    print(f"  swept session               {sweep:6.2f} s   {per_case[0]:6.2f} ms per case")
    print(f"  the same faults, unswept    {plain:6.2f} s   {per_case[1]:6.2f} ms per case")
    if sweep > plain:
        rate = faults / (sweep - plain)
        print(f"  faults per second, the body's own work excluded: {rate:,.0f}  (target >= 200)")
    else:
        rate = float("inf")
        print(
            "  the swept session costs no more than the same cases unswept: the sweep's own "
            "cost per fault is below this measurement's noise"
        )
    print(
        f"  swept cases per second, the body's own work included: {1e3 / per_case[0]:,.0f}"
        "  (target >= 200 faults/s without it)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"faults": faults, "sweep_cpu_s": sweep, "plain_cpu_s": plain, "rate": rate})
        )


if __name__ == "__main__":
    main()
