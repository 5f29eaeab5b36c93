"""Core benchmarks: cassette load time vs vcrpy, and in-process replay timing fidelity.

    .venv/bin/python bench/bench_core.py [--events 100000] [--big-events 1000000]
                                         [--fidelity-events 400] [--runs 7] [--json FILE]

1. Load a 100k-event stream: ssevcr's msgpack cassette vs vcrpy loading the same stream from its
   YAML cassette (vcrpy's own FilesystemPersister + yaml serializer, libyaml when installed),
   a. in a FRESH process, as ``ssevcr replay`` and a test run do: a new interpreter per load
      (``--runs`` of each, interleaved), timed from before importing what loading needs to the
      loaded cassette, imports included; plus the whole process (spawn to exit) and a bare
      interpreter for scale. ssevcr's figure is the load (what ``replay`` does before it is
      ready); the time of the first use (the body read and the chunk tables checked) is shown
      beside it.
   b. warm: the median of repeated loads in one process.
2. Load ``--big-events`` (1M) events in a fresh process: time, and memory added (RSS) after the
   load and after the first use, against the file size.
3. Timing fidelity at scale 1 through ReplayTransport (httpx2, sync and async): p50/p99 of
   |observed gap - recorded gap| per chunk, side by side with a baseline that only sleeps to the
   same absolute deadlines in the same process (the floor this machine's clock and scheduler allow).
4. The fault catalogue of a 34-event stream (cassettes/examples/openai-chat-text): the time to
   derive it, and schedules built per second over ``default`` (each entry played through the
   player, as a sweep plays it): the core's share of a sweep's faults per second.

Prints figures and ratios (``--json FILE`` also writes them, for bench/run_all.py); asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ssevcr import ReplayTransport, _store
from ssevcr._cassette import Cassette, End, Interaction, Request, Response

URL = "https://api.openai.com/v1/chat/completions"


def stream(
    events: int, *, seed: int = 1, gap_ms: tuple[float, float] = (10, 60)
) -> list[tuple[float, bytes]]:
    rng = random.Random(seed)
    at = 0.3
    chunks = []
    for i in range(events):
        at += rng.uniform(*gap_ms) / 1000
        payload = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1727346168,
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"content": f" token{i}"}, "finish_reason": None}],
        }
        chunks.append(
            (round(at, 6), f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode())
        )
    chunks.append((round(at + 0.01, 6), b"data: [DONE]\n\n"))
    return chunks


def cassette_for(chunks: list[tuple[float, bytes]]) -> Cassette:
    body = json.dumps(
        {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    resp = Response.from_chunks(
        200,
        chunks,
        reason="OK",
        headers=(("content-type", "text/event-stream"),),
        headers_at=0.25,
        end=End(chunks[-1][0] + 0.001),
    )
    return Cassette(
        (Interaction(Request("POST", URL, (("content-type", "application/json"),), body), resp),)
    )


def median_time(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def write_vcr_yaml(cassette: Cassette, path: Path) -> None:
    """The same stream as vcrpy stores it: one body string (vcrpy keeps no chunks or times)."""
    from vcr.serializers import yamlserializer

    inter = cassette.interactions[0]
    vcr_doc = {
        "version": 1,
        "interactions": [
            {
                "request": {
                    "method": "POST",
                    "uri": URL,
                    "body": inter.request.body.decode(),
                    "headers": {"content-type": ["application/json"]},
                },
                "response": {
                    "status": {"code": 200, "message": "OK"},
                    "headers": {"content-type": ["text/event-stream"]},
                    "body": {"string": inter.response.body.decode()},
                },
            }
        ],
    }
    path.write_text(yamlserializer.serialize(vcr_doc))


# Each runs in a new interpreter and prints one JSON line. t0 is taken before anything that
# loading needs is imported; RSS from /proc (current, not peak), in MiB.
_PRELUDE = """
import json, os, sys, time
t0, c0 = time.perf_counter(), time.process_time()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
rss0 = rss()
"""
FRESH_SSEVCR = (
    _PRELUDE
    + """
from ssevcr import _store
c = _store.load(sys.argv[1])
request = c.interactions[0].request
t1, c1 = time.perf_counter(), time.process_time()
rss1 = rss()
response = c.interactions[0].response
n = len(response.chunk_at)
assert len(response.body) == sum(response.chunk_sizes)
t2 = time.perf_counter()
print(json.dumps({"load_ms": (t1 - t0) * 1e3, "cpu_ms": (c1 - c0) * 1e3,
                  "use_ms": (t2 - t1) * 1e3, "chunks": n,
                  "rss_load_mib": rss1 - rss0, "rss_use_mib": rss() - rss0}))
"""
)
FRESH_VCRPY = (
    _PRELUDE
    + """
from vcr.persisters.filesystem import FilesystemPersister
from vcr.serializers import yamlserializer
_requests, responses = FilesystemPersister.load_cassette(sys.argv[1], yamlserializer)
n = len(responses[0]["body"]["string"])
t1, c1 = time.perf_counter(), time.process_time()
print(json.dumps({"load_ms": (t1 - t0) * 1e3, "cpu_ms": (c1 - c0) * 1e3, "bytes": n,
                  "rss_load_mib": rss() - rss0}))
"""
)


def fresh(script: str, path: Path) -> dict[str, Any]:
    """One load in a new interpreter: its own figures plus the wall time of the whole process."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    result["process_ms"] = (time.perf_counter() - started) * 1e3
    return result


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def bench_load(events: int, big_events: int, runs: int) -> dict[str, Any]:
    from vcr.persisters.filesystem import FilesystemPersister
    from vcr.serializers import yamlserializer

    chunks = stream(events)
    cassette = cassette_for(chunks)
    body = cassette.interactions[0].response.body
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "stream.msgpack"
        _store.save(cassette, ours, fsync=False)
        theirs = Path(tmp) / "stream.yaml"
        write_vcr_yaml(cassette, theirs)

        def load_ours() -> None:
            response = _store.load(ours).interactions[0].response
            assert len(response.chunk_at) == events + 1

        def load_theirs() -> None:
            _requests, responses = FilesystemPersister.load_cassette(str(theirs), yamlserializer)
            assert len(responses[0]["body"]["string"]) == len(body)

        # fresh processes, interleaved so that both sides see the same machine; ssevcr from
        # compiled bytecode, as an installed package is (vcrpy's was compiled by pip)
        import compileall

        import ssevcr

        compileall.compile_dir(os.path.dirname(ssevcr.__file__), quiet=1)
        bare, fresh_ours, fresh_theirs = [], [], []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            bare.append((time.perf_counter() - started) * 1e3)
            fresh_ours.append(fresh(FRESH_SSEVCR, ours))
            fresh_theirs.append(fresh(FRESH_VCRPY, theirs))
        assert all(r["chunks"] == events + 1 for r in fresh_ours)
        assert all(r["bytes"] == len(body) for r in fresh_theirs)
        ours_ms, theirs_ms = median_of(fresh_ours, "load_ms"), median_of(fresh_theirs, "load_ms")
        use_ms = median_of(fresh_ours, "use_ms")
        ours_cpu, theirs_cpu = median_of(fresh_ours, "cpu_ms"), median_of(fresh_theirs, "cpu_ms")
        ours_proc, theirs_proc = (
            median_of(fresh_ours, "process_ms"),
            median_of(fresh_theirs, "process_ms"),
        )
        bare_ms = statistics.median(bare)

        ssevcr_s = median_time(load_ours, 15)
        vcr_s = median_time(load_theirs, 3)
        print(
            f"load {events:,} events ({len(body) / 1e6:.1f} MB, "
            f"{os.path.getsize(ours) / 1e6:.1f} MB msgpack, "
            f"{os.path.getsize(theirs) / 1e6:.1f} MB yaml)"
        )
        print(f"  fresh process, imports included (median of {runs}, interleaved):")
        print(
            f"    ssevcr msgpack  {ours_ms:8.2f} ms   (+ {use_ms:.1f} ms at first use: body read, "
            f"{events + 1:,} chunk times checked)"
        )
        print(f"    vcrpy YAML      {theirs_ms:8.2f} ms   (one body string, no timing)")
        print(f"    ratio           {theirs_ms / ours_ms:8.1f}x faster (target >= 20x)")
        print(
            f"    CPU time        {ours_cpu:.1f} ms vs {theirs_cpu:.0f} ms, "
            f"{theirs_cpu / ours_cpu:.1f}x (steadier than wall time on a busy machine)"
        )
        print(
            f"    whole process   {ours_proc:.0f} ms vs {theirs_proc:.0f} ms "
            f"(a bare interpreter: {bare_ms:.0f} ms)"
        )
        print("  warm (repeated loads in one process):")
        print(f"    ssevcr msgpack  {ssevcr_s * 1e3:8.2f} ms   (and its first use, each time)")
        print(f"    vcrpy YAML      {vcr_s * 1e3:8.2f} ms")
        print(f"    ratio           {vcr_s / ssevcr_s:8.1f}x faster")
        result: dict[str, Any] = {
            "events": events,
            "fresh_ssevcr_ms": ours_ms,
            "fresh_ssevcr_first_use_ms": use_ms,
            "fresh_vcrpy_ms": theirs_ms,
            "fresh_ratio": theirs_ms / ours_ms,
            "fresh_ssevcr_cpu_ms": ours_cpu,
            "fresh_vcrpy_cpu_ms": theirs_cpu,
            "fresh_ssevcr_process_ms": ours_proc,
            "fresh_vcrpy_process_ms": theirs_proc,
            "bare_interpreter_ms": bare_ms,
            "ssevcr_ms": ssevcr_s * 1e3,
            "vcrpy_ms": vcr_s * 1e3,
            "ratio": vcr_s / ssevcr_s,
        }
        del cassette, chunks
    if big_events:
        result["big"] = bench_big_load(big_events, runs)
    return result


def bench_big_load(events: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.msgpack"
        _store.save(cassette_for(stream(events)), path, fsync=False)
        size_mib = path.stat().st_size / 2**20
        loads = [fresh(FRESH_SSEVCR, path) for _ in range(runs)]
    load_ms, use_ms = median_of(loads, "load_ms"), median_of(loads, "use_ms")
    cpu_ms = median_of(loads, "cpu_ms")
    rss_load, rss_use = median_of(loads, "rss_load_mib"), median_of(loads, "rss_use_mib")
    print(f"load {events:,} events in a fresh process ({size_mib:.0f} MiB file, median of {runs}):")
    print(
        f"  load            {load_ms:8.2f} ms   (target <= 50 ms; CPU {cpu_ms:.1f} ms), "
        f"RSS +{rss_load:.1f} MiB"
    )
    print(
        f"  first use       {use_ms:8.1f} ms   (body read, chunk times checked), "
        f"RSS +{rss_use:.0f} MiB in all ({rss_use / size_mib:.2f}x the file)"
    )
    return {
        "events": events,
        "file_mib": size_mib,
        "load_ms": load_ms,
        "load_cpu_ms": cpu_ms,
        "first_use_ms": use_ms,
        "rss_load_mib": rss_load,
        "rss_use_mib": rss_use,
    }


def percentiles(errors: list[float]) -> tuple[float, float]:
    s = sorted(errors)
    return s[len(s) // 2], s[min(len(s) - 1, int(len(s) * 0.99))]


def gap_errors(observed: list[float], recorded: list[float]) -> list[float]:
    return [
        abs((o2 - o1) - (r2 - r1))
        for o1, o2, r1, r2 in zip(observed, observed[1:], recorded, recorded[1:], strict=False)
    ]


def bench_fidelity(events: int) -> dict[str, float]:
    chunks = stream(events, seed=2, gap_ms=(5, 20))
    cassette = cassette_for(chunks)
    recorded = [at for at, _ in chunks]
    inter = cassette.interactions[0]

    # baseline: sleep to the same absolute deadlines, nothing else
    t0 = time.monotonic()
    base = []
    for at in recorded:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        base.append(time.monotonic())
    b50, b99 = percentiles(gap_errors(base, recorded))

    with (
        httpx2.Client(transport=ReplayTransport(cassette, timing="original")) as client,
        client.stream("POST", URL, content=inter.request.body) as r,
    ):
        sync_obs = []
        for _ in r.iter_raw():
            sync_obs.append(time.monotonic())
    s50, s99 = percentiles(gap_errors(sync_obs, recorded))

    async def run_async() -> list[float]:
        async with (
            httpx2.AsyncClient(transport=ReplayTransport(cassette, timing="original")) as client,
            client.stream("POST", URL, content=inter.request.body) as r,
        ):
            return [time.monotonic() async for _ in r.aiter_raw()]

    async_obs = asyncio.run(run_async())
    a50, a99 = percentiles(gap_errors(async_obs, recorded))
    print(
        f"in-process timing fidelity at scale 1, {len(recorded)} chunks, gaps 5-20 ms: "
        "|observed - recorded| gap"
    )
    print(f"  baseline (sleep to deadline)  p50 {b50 * 1e3:6.3f} ms  p99 {b99 * 1e3:6.3f} ms")
    print(
        f"  ReplayTransport sync          p50 {s50 * 1e3:6.3f} ms  p99 {s99 * 1e3:6.3f} ms  "
        f"(x{s50 / max(b50, 1e-9):.1f} / x{s99 / max(b99, 1e-9):.1f} baseline)"
    )
    print(
        f"  ReplayTransport async         p50 {a50 * 1e3:6.3f} ms  p99 {a99 * 1e3:6.3f} ms  "
        f"(x{a50 / max(b50, 1e-9):.1f} / x{a99 / max(b99, 1e-9):.1f} baseline)"
    )
    print("  target: p50 <= 0.3 ms, p99 <= 1.5 ms")
    return {
        "chunks": len(recorded),
        "baseline_p50_ms": b50 * 1e3,
        "baseline_p99_ms": b99 * 1e3,
        "sync_p50_ms": s50 * 1e3,
        "sync_p99_ms": s99 * 1e3,
        "async_p50_ms": a50 * 1e3,
        "async_p99_ms": a99 * 1e3,
    }


def bench_catalogue(repeat: int = 5) -> dict[str, float]:
    from ssevcr._catalogue import catalogue
    from ssevcr._player import Player

    cassette = _store.load(
        Path(__file__).resolve().parent.parent / "cassettes/examples/openai-chat-text.msgpack"
    )
    request = cassette.interactions[0].request
    derive = median_time(lambda: catalogue(cassette), repeat * 4)
    entries = catalogue(cassette)

    def play_all() -> None:
        for e in entries:
            Player.create(cassette, timing="instant", faults=[e.spec]).play(request)

    per = median_time(play_all, repeat) / len(entries)
    print(f"fault catalogue of a 34-event stream ({len(entries)} faults in default)")
    print(f"  catalogue()                  {derive * 1e3:8.3f} ms")
    print(f"  one fault's schedule         {per * 1e3:8.3f} ms  ({1 / per:,.0f} faults/s)")
    return {"faults": len(entries), "catalogue_ms": derive * 1e3, "faults_per_s": 1 / per}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--big-events", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per figure")
    parser.add_argument("--fidelity-events", type=int, default=400)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    print(
        f"# bench_core  {time.strftime('%Y-%m-%d')}  {platform.platform()}  "
        f"{os.cpu_count()} cores  Python {platform.python_version()}"
    )
    results = {
        "load": bench_load(args.events, args.big_events, args.runs),
        "fidelity": bench_fidelity(args.fidelity_events),
        "catalogue": bench_catalogue(),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
