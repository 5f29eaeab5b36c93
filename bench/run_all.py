"""Run every benchmark with reduced but meaningful sizes (a few minutes in all), print each figure
against its target and as a ratio to its baseline, write the summary table into bench/README.md
("## Summary (bench/run_all.py)", replacing the previous one; the per-benchmark sections below it
stay), and append one line to bench/history.csv so regressions show up run after run.

    .venv/bin/python bench/run_all.py [--no-write] [--only NAME ...]

Run it on a quiet machine (``uptime``: load average well under the number of cores); the load
average before and after the run is part of the record. The full-size runs of each script (see its
section in bench/README.md) are the reference; these sizes trade some p99 stability for time:

    bench_core.py       --events 100000 --big-events 1000000 --runs 5 --fidelity-events 200
    bench_replay.py     --quick --many 1000
                        (1 stream x3, 500 streams x1, 3 s throughput, 1,000 streams x2)
    bench_record.py     --events 150 --rounds 3
    bench_pytest.py     --tests 100 --rounds 3
    bench_hardening.py  --clients 10000 --round 500
    bench_control.py    --seconds 2
    bench_ws.py         --messages 400 --rounds 3 --burst 20000
    bench_js.py         --tests 30              (needs node and `npm ci` in js/)
    bench_clients.py    --plays 100             (requests, aiohttp, urllib3 in process vs vcrpy)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
README = BENCH / "README.md"
HISTORY = BENCH / "history.csv"
HEADING = "## Summary (bench/run_all.py)"

RUNS: dict[str, list[str]] = {
    "core": [
        "bench_core.py",
        *("--events", "100000", "--big-events", "1000000", "--runs", "5"),
        *("--fidelity-events", "200"),
    ],
    "replay": ["bench_replay.py", "--quick", "--many", "1000"],
    "record": ["bench_record.py", "--events", "150", "--rounds", "3"],
    "pytest": ["bench_pytest.py", "--tests", "100", "--rounds", "3"],
    "hardening": ["bench_hardening.py", "--clients", "10000", "--round", "500"],
    "control": ["bench_control.py", "--seconds", "2"],
    "ws": ["bench_ws.py", "--messages", "400", "--rounds", "3", "--burst", "20000"],
    "js": ["bench_js.py", "--tests", "30"],
    "clients": ["bench_clients.py", "--plays", "100"],
}


@dataclass
class Row:
    key: str  # column stem in history.csv
    figure: str
    target: str
    measured: str
    ratio: str  # against the baseline
    met: bool | None  # None: no target to meet
    values: dict[str, float | int | str | None]  # for history.csv


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _rows_core(r: dict[str, Any]) -> list[Row]:
    load, fid = r["load"], r["fidelity"]
    rows = [
        Row(
            "load_fresh",
            f"Load a {load['events']:,}-event cassette in a fresh process, imports included "
            "(vs vcrpy loading the same stream from YAML)",
            "≥ 20× faster",
            f"{load['fresh_ssevcr_ms']:.1f} ms (vcrpy {load['fresh_vcrpy_ms']:.0f} ms)",
            f"{load['fresh_ratio']:.0f}× faster than vcrpy",
            load["fresh_ratio"] >= 20,
            {"load_fresh_ms": load["fresh_ssevcr_ms"], "load_fresh_ratio": load["fresh_ratio"]},
        ),
        Row(
            "load",
            f"Load a {load['events']:,}-event cassette, warm (vs vcrpy, the same)",
            "≥ 10× faster",
            f"{load['ssevcr_ms']:.2f} ms (vcrpy {load['vcrpy_ms']:.0f} ms)",
            f"{load['ratio']:.0f}× faster than vcrpy",
            load["ratio"] >= 10,
            {"load_ms": load["ssevcr_ms"], "load_ratio": load["ratio"]},
        ),
    ]
    big = load.get("big")
    if big:
        rows.append(
            Row(
                "load_1m",
                f"Load a {big['events']:,}-event cassette in a fresh process "
                f"({big['file_mib']:.0f} MiB)",
                "≤ 50 ms, memory ≈ the file",
                f"{big['load_ms']:.1f} ms, +{big['rss_load_mib']:.0f} MiB; first use "
                f"{big['first_use_ms']:.0f} ms, +{big['rss_use_mib']:.0f} MiB in all",
                f"{big['rss_use_mib'] / big['file_mib']:.2f}× the file after first use",
                big["load_ms"] <= 50 and big["rss_use_mib"] <= 1.5 * big["file_mib"],
                {"load_1m_ms": big["load_ms"], "load_1m_rss_mib": big["rss_use_mib"]},
            )
        )
    for mode in ("sync", "async"):
        p50, p99 = fid[f"{mode}_p50_ms"], fid[f"{mode}_p99_ms"]
        rows.append(
            Row(
                f"transport_{mode}",
                f"Gap error, in process (ReplayTransport, httpx2 {mode}), scale 1, p50 / p99",
                "≤ 0.3 / ≤ 1.5 ms",
                f"{_ms(p50)} / {_ms(p99)} ms",
                f"{p50 / max(fid['baseline_p50_ms'], 1e-6):.1f}× / "
                f"{p99 / max(fid['baseline_p99_ms'], 1e-6):.1f}× sleeping to the same deadlines "
                f"({_ms(fid['baseline_p50_ms'])} / {_ms(fid['baseline_p99_ms'])} ms)",
                p50 <= 0.3 and p99 <= 1.5,
                {f"transport_{mode}_p50_ms": p50, f"transport_{mode}_p99_ms": p99},
            )
        )
    return rows


def _rows_replay(r: dict[str, Any]) -> list[Row]:
    rows = []
    fid = r["fidelity"]
    one, one_default = fid["1 precise"], fid["1 default"]
    rows.append(
        Row(
            "server_1",
            "Gap error, replay server, 1 stream, scale 1, p50 / p99",
            "≤ 0.3 / ≤ 1.5 ms",
            f"{_ms(one['p50'] * 1e3)} / {_ms(one['p99'] * 1e3)} ms",
            f"{one['p50'] / one_default['p50']:.2f}× / {one['p99'] / one_default['p99']:.2f}× "
            f"asyncio's default loop "
            f"({_ms(one_default['p50'] * 1e3)} / {_ms(one_default['p99'] * 1e3)} ms)",
            one["p50"] * 1e3 <= 0.3 and one["p99"] * 1e3 <= 1.5 and not one["failures"],
            {"server_1_p50_ms": one["p50"] * 1e3, "server_1_p99_ms": one["p99"] * 1e3},
        )
    )
    many, many_default = fid["500 precise"], fid["500 default"]
    rows.append(
        Row(
            "server_500",
            "Gap error, replay server, 500 concurrent streams, p99",
            "≤ 5 ms",
            f"{_ms(many['p99'] * 1e3)} ms "
            f"(p50 {_ms(many['p50'] * 1e3)}; {many['failures']} failures)",
            f"{many['p99'] / many_default['p99']:.2f}× asyncio's default loop "
            f"({_ms(many_default['p99'] * 1e3)} ms)",
            many["p99"] * 1e3 <= 5 and not many["failures"],
            {"server_500_p50_ms": many["p50"] * 1e3, "server_500_p99_ms": many["p99"] * 1e3},
        )
    )
    for key, label in (
        ("36 chunks", "36-chunk LLM answer, 9.3 kB"),
        ("2000 chunks", "2,000-chunk stream, 205 kB"),
    ):
        t = r["throughput"][key]
        col = "throughput_36" if key.startswith("36") else "throughput_2000"
        rows.append(
            Row(
                col,
                f"Instant replay throughput, {label}",
                "≥ 0.5× a bare asyncio server",
                f"{t['ssevcr']['rps']:,.0f} responses/s "
                f"({t['ssevcr']['cpu_us']:.0f} µs server CPU each)",
                f"{t['ratio_streams']:.2f}× bare streams server "
                f"({t['bare streams']['rps']:,.0f}/s), "
                f"{t['ratio_protocol']:.2f}× bare Protocol ({t['bare protocol']['rps']:,.0f}/s)",
                t["ratio_streams"] >= 0.5,
                {f"{col}_rps": t["ssevcr"]["rps"], f"{col}_ratio": t["ratio_streams"]},
            )
        )
    m = r["many"]
    peaks = m["peak_kib"]
    per_stream = (peaks[0] - m["rss_idle_kib"]) / m["streams"]
    rows.append(
        Row(
            "streams_1000",
            f"{m['streams']:,} concurrent streams on one process (2 rounds)",
            "no errors, bounded memory",
            f"{m['failures']} errors; RSS {m['rss_idle_kib'] / 1024:.1f} → "
            f"peak {peaks[0] / 1024:.1f} / {peaks[1] / 1024:.1f} MiB (rounds 1 / 2); "
            f"gap p99 {_ms(m['gap_p99_ms'] or 0)} ms",
            f"{per_stream:.0f} KiB per stream; "
            f"round 2 peak {(peaks[1] - peaks[0]) / 1024:+.1f} MiB over round 1",
            m["failures"] == 0 and peaks[1] - peaks[0] < 4 * 1024,
            {"streams_1000_errors": m["failures"], "streams_1000_peak_mib": peaks[1] / 1024},
        )
    )
    return rows


def _rows_record(r: dict[str, Any]) -> list[Row]:
    med, p99 = r["median_ms"], r["p99_ms"]
    added = med["ssevcr record"] - med["mitmproxy"]
    rows = [
        Row(
            "record",
            f"Recording overhead per event ({r['events']:,} events per path), median",
            "≤ 0.1 ms added",
            f"{added:+.3f} ms (ssevcr record {_ms(med['ssevcr record'])}, "
            f"mitmproxy {_ms(med['mitmproxy'])}, direct {_ms(med['direct'])} ms; "
            f"p99 {_ms(p99['ssevcr record'])} / {_ms(p99['mitmproxy'])} ms)",
            f"{med['ssevcr record'] / med['mitmproxy']:.2f}× mitmproxy streaming "
            "without the addon, "
            f"{med['ssevcr record'] / med['direct']:.1f}× direct",
            added <= 0.1,
            {"record_added_ms": added, "record_ratio": med["ssevcr record"] / med["mitmproxy"]},
        )
    ]
    if r.get("gap_error_median_ms") is not None:
        rows.append(
            Row(
                "record_gap",
                "Recorded gap vs the upstream's send gap, median / p99",
                "median ≤ 1 ms",
                f"{_ms(r['gap_error_median_ms'])} / {_ms(r['gap_error_p99_ms'])} ms",
                "(the upstream's own send gaps are the baseline)",
                r["gap_error_median_ms"] <= 1,
                {"record_gap_median_ms": r["gap_error_median_ms"]},
            )
        )
    return rows


def _rows_pytest(r: dict[str, Any]) -> list[Row]:
    return [
        Row(
            "pytest",
            f"Per-test overhead, replayed streaming test ({r['events']} events), pytest marker"
            f" ({r.get('method', 'raw httpx, one shared cassette')})",
            "≥ 3× less than vcrpy + pytest-recording (issue 20)",
            f"{r['ssevcr_ms']:.2f} ms (vcrpy {r['vcrpy_ms']:.2f} ms"
            + (f"; the SDK alone {r['floor_ms']:.2f} ms)" if "floor_ms" in r else ")"),
            (
                f"{r['ratio']:.2f}× less than vcrpy"
                if r["ratio"] >= 1
                else f"{1 / r['ratio']:.2f}× more than vcrpy"
            )
            + (f"; the tools' own cost {r['own_ratio']:.2f}×" if "own_ratio" in r else ""),
            None,
            {"pytest_ms": r["ssevcr_ms"], "pytest_ratio": r["ratio"]},
        )
    ]


def _rows_hardening(r: dict[str, Any]) -> list[Row]:
    leaks = (
        r["leaked_tasks"]
        + r["leaked_fds"]
        + r["open_connections_after"]
        + r["live_connection_objects_after"]
    )
    grown = (r["rss_after_kib"] - r["rss_before_kib"]) / 1024
    ok = (
        leaks == 0
        and r["client_errors"] == 0
        and not r["server_errors"]
        and r["serves_after"]
        and r["stalls_blocking_every_staller"] == r["stalls"]
        and grown < 16
    )
    return [
        Row(
            "hardening",
            f"{r['clients']:,} misbehaving clients (vanish, stall, half requests) "
            "to the replay server",
            "no leaked task/socket/connection, bounded memory, still serving",
            f"leaked: {r['leaked_tasks']} tasks, {r['leaked_fds']} fds, "
            f"{r['live_connection_objects_after']} connections; "
            f"RSS {r['rss_before_kib'] / 1024:.1f} → {r['rss_after_kib'] / 1024:.1f} MiB "
            f"(peak {r['hwm_kib'] / 1024:.1f}); "
            f"≤ {r['largest_buffer_bytes'] / 1024:.0f} KiB held per stalled client; "
            f"serves: {'yes' if r['serves_after'] else 'NO'}",
            f"RSS {r['rss_after_kib'] / r['rss_before_kib']:.2f}× the warmed-up server",
            ok,
            {"hardening_leaks": leaks, "hardening_rss_growth_mib": grown},
        )
    ]


def _rows_control(r: dict[str, Any]) -> list[Row]:
    j, sessions = r["journal"], r["sessions"]
    one = sessions["1 cassette"]
    return [
        Row(
            "journal_cost",
            f"Journal cost, instant replay of a {j['events']:,}-event stream (with vs without "
            "--journal, same run)",
            "≤ 10% fewer responses/s",
            f"{j['responses_per_s']['with']:,.0f} vs {j['responses_per_s']['without']:,.0f} "
            "responses/s",
            f"{j['journal_cost'] * 100:+.1f}%",
            j["journal_cost"] <= 0.10,
            {"journal_cost": j["journal_cost"]},
        ),
        Row(
            "session_create",
            "Control API: create a session (POST /__ssevcr/sessions, 1 cassette), p50 / p99",
            "≤ 5 ms",
            f"{_ms(one['p50_ms'])} / {_ms(one['p99_ms'])} ms",
            f"20 cassettes: {_ms(sessions['20 cassettes']['p50_ms'])} ms p50",
            one["p99_ms"] <= 5,
            {"session_create_p99_ms": one["p99_ms"]},
        ),
    ]


def _rows_ws(r: dict[str, Any]) -> list[Row]:
    fid, thr = r["fidelity"], r["throughput"]
    ratio = thr["ssevcr_msgs_per_s"] / thr["bare_msgs_per_s"]
    return [
        Row(
            "ws_gap",
            f"WebSocket gap error, replay server, {fid['messages']} messages, p50 / p99",
            "≤ 0.3 / ≤ 1.5 ms (as for streams)",
            f"{_ms(fid['ssevcr_p50_ms'])} / {_ms(fid['ssevcr_p99_ms'])} ms",
            f"bare websockets server sleeping to the same deadlines: "
            f"{_ms(fid['bare_p50_ms'])} / {_ms(fid['bare_p99_ms'])} ms",
            fid["ssevcr_p50_ms"] <= 0.3 and fid["ssevcr_p99_ms"] <= 1.5,
            {"ws_gap_p50_ms": fid["ssevcr_p50_ms"], "ws_gap_p99_ms": fid["ssevcr_p99_ms"]},
        ),
        Row(
            "ws_throughput",
            f"WebSocket instant replay, {thr['burst']:,} messages answering one",
            "none set (a bare websockets server for reference)",
            f"{thr['ssevcr_msgs_per_s']:,.0f} msgs/s",
            f"{ratio:.2f}× a bare websockets server ({thr['bare_msgs_per_s']:,.0f} msgs/s)",
            None,
            {"ws_msgs_per_s": thr["ssevcr_msgs_per_s"], "ws_ratio": ratio},
        ),
    ]


def _rows_js(r: dict[str, Any]) -> list[Row]:
    session, process = r["session"], r["process"]
    return [
        Row(
            "js_test_overhead",
            "JS helpers: per-test overhead, a session on the run's server (create + end) vs a "
            "test starting its own `ssevcr replay`, p50",
            "≥ 20× less",
            f"{_ms(session['p50_ms'])} vs {_ms(process['p50_ms'])} ms",
            f"{r['ratio']:.0f}× less",
            r["ratio"] >= 20,
            {"js_session_ms": session["p50_ms"], "js_ratio": r["ratio"]},
        )
    ]


def _rows_clients(r: dict[str, Any]) -> list[Row]:
    small, big = r["1"], r["30"]  # the 34-event stream and the same x30 (1,020 events)
    rows = []
    for client in ("requests", "aiohttp", "urllib3"):
        ours, theirs = (big[f"{client}: {tool}"][0] for tool in ("ssevcr", "vcrpy"))
        ratio_small = small[f"{client}: ssevcr"][0] / small[f"{client}: vcrpy"][0]
        rows.append(
            Row(
                f"clients_{client}",
                f"In process, {client}: one replayed streaming test (1,020 events), p10, "
                "vs vcrpy on the same bytes",
                "≤ 0.5× vcrpy at 1,000 events",
                f"{_ms(ours)} ms (vcrpy {_ms(theirs)} ms; the client alone "
                f"{_ms(big[f'{client}: floor'][0])} ms)",
                f"{ours / theirs:.2f}× vcrpy (34 events: {ratio_small:.2f}×)",
                ours / theirs <= 0.5,
                {f"clients_{client}_ms": ours, f"clients_{client}_ratio": ours / theirs},
            )
        )
    return rows


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "core": _rows_core,
    "replay": _rows_replay,
    "record": _rows_record,
    "pytest": _rows_pytest,
    "hardening": _rows_hardening,
    "control": _rows_control,
    "ws": _rows_ws,
    "js": _rows_js,
    "clients": _rows_clients,
}
HISTORY_COLUMNS = [
    "date",
    "commit",
    "cpus",
    "load_before",
    "load_after",
    "python",
    "seconds",
    "load_ms",
    "load_ratio",
    "load_fresh_ms",
    "load_fresh_ratio",
    "load_1m_ms",
    "load_1m_rss_mib",
    "transport_sync_p50_ms",
    "transport_sync_p99_ms",
    "transport_async_p50_ms",
    "transport_async_p99_ms",
    "server_1_p50_ms",
    "server_1_p99_ms",
    "server_500_p50_ms",
    "server_500_p99_ms",
    "throughput_36_rps",
    "throughput_36_ratio",
    "throughput_2000_rps",
    "throughput_2000_ratio",
    "streams_1000_errors",
    "streams_1000_peak_mib",
    "record_added_ms",
    "record_ratio",
    "record_gap_median_ms",
    "pytest_ms",
    "pytest_ratio",
    "hardening_leaks",
    "hardening_rss_growth_mib",
    "targets_met",
]


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def _mitmproxy_version() -> str:
    found = sorted(
        (ROOT / ".venv-mitmproxy").glob("lib/python*/site-packages/mitmproxy-*.dist-info")
    )
    if found:
        return found[-1].name.removeprefix("mitmproxy-").removesuffix(".dist-info")
    return _version("mitmproxy")


def _commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "-"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu model not reported"


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def run(name: str, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{name}.json"
    script, *args = RUNS[name]
    print(f"\n===== {script} {' '.join(args)}", flush=True)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json", str(out)], cwd=ROOT
    )
    print(f"===== {script}: {time.monotonic() - started:.0f} s", flush=True)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"{script} failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def table(rows: list[Row]) -> list[str]:
    lines = ["| figure | target | measured | vs baseline | met? |", "|---|---|---|---|---|"]
    for r in rows:
        met = "—" if r.met is None else "yes" if r.met else "**no**"
        lines.append(f"| {r.figure} | {r.target} | {r.measured} | {r.ratio} | {met} |")
    return lines


def write_readme(section: list[str]) -> None:
    text = README.read_text()
    block = "\n".join(section).rstrip() + "\n\n"
    if HEADING in text:
        start = text.index(HEADING)
        nxt = re.search(r"^## ", text[start + len(HEADING) :], re.MULTILINE)
        end = start + len(HEADING) + nxt.start() if nxt else len(text)
        text = text[:start] + block + text[end:]
    else:  # first run: before the first per-benchmark section
        first = re.search(r"^## ", text, re.MULTILINE)
        at = first.start() if first else len(text)
        text = text[:at] + block + text[at:]
    README.write_text(text)


def append_history(values: dict[str, Any]) -> None:
    new = not HISTORY.exists()
    if not new:
        with HISTORY.open() as f:
            header = next(csv.reader(f), [])
        if header != HISTORY_COLUMNS:
            raise SystemExit(
                f"{HISTORY} has other columns than this script writes; "
                "add the new ones to its header"
            )
    with HISTORY.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(HISTORY_COLUMNS)
        w.writerow(
            [
                ""
                if values.get(c) is None
                else (f"{values[c]:.6g}" if isinstance(values[c], float) else values[c])
                for c in HISTORY_COLUMNS
            ]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave README.md and history.csv alone"
    )
    parser.add_argument(
        "--only", nargs="+", choices=list(RUNS), help="run only these (implies --no-write)"
    )
    args = parser.parse_args()
    names = args.only or list(RUNS)
    load_before = _load()
    commit = _commit()  # before this run writes README.md
    started = time.monotonic()
    when = time.strftime("%Y-%m-%d %H:%M")
    print(
        f"# bench/run_all.py  {when}  {os.cpu_count()} cpus  "
        f"load average {load_before} (1/5/15 min)"
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ssevcr-bench-") as tmp:
        for name in names:
            rows += ROWS[name](run(name, Path(tmp)))
    seconds = time.monotonic() - started
    load_after = _load()

    print("\n# summary: figure — measured (target) — against its baseline")
    for r in rows:
        mark = "" if r.met is None else "  [met]" if r.met else "  [NOT MET]"
        print(f"- {r.figure}: {r.measured} (target {r.target}) — {r.ratio}{mark}")
    met = [r.met for r in rows if r.met is not None]
    print(
        f"{sum(met)} of {len(met)} targets met; {seconds:.0f} s; "
        f"load average {load_before} before, {load_after} after"
    )
    if args.no_write or args.only:
        return

    machine = (
        f"{platform.machine()}, {os.cpu_count()} cpus ({_cpu_model()}), "
        f"{platform.system()} {platform.release()}"
    )
    versions = (
        f"Python {platform.python_version()}, ssevcr {commit}, h11 {_version('h11')}, "
        f"httpx {_version('httpx')}, httpx2 {_version('httpx2')}, msgpack {_version('msgpack')}, "
        f"mitmproxy {_mitmproxy_version()} (own venv), vcrpy {_version('vcrpy')}, "
        f"pytest-recording {_version('pytest-recording')}, pytest {_version('pytest')}"
    )
    section = [
        HEADING,
        "",
        textwrap.fill(
            "`bench/run_all.py` runs every script below with reduced sizes "
            f"({seconds / 60:.1f} minutes here) and writes this table; `bench/history.csv` keeps "
            "one line per run, to compare. The per-benchmark sections below hold the full-size "
            "runs and how each figure is measured.",
            100,
        ),
        "",
        textwrap.fill(
            f"Last run {when}: {machine}; load average {load_before} before, {load_after} after "
            f"(1/5/15 min); {versions}. {sum(met)} of {len(met)} targets met.",
            100,
        ),
        "",
        *table(rows),
    ]
    write_readme(section)
    values: dict[str, Any] = {
        "date": when,
        "commit": commit,
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": load_after,
        "python": platform.python_version(),
        "seconds": round(seconds),
        "targets_met": f"{sum(met)}/{len(met)}",
    }
    for r in rows:
        values.update(r.values)
    append_history(values)
    print(f"wrote {README.relative_to(ROOT)} and {HISTORY.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
