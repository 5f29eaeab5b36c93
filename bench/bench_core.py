"""Core benchmarks: cassette load time vs vcrpy, and in-process replay timing fidelity.

    .venv/bin/python bench/bench_core.py [--events 100000] [--fidelity-events 400] [--json FILE]

1. Load a 100k-event stream: ssevcr's msgpack cassette vs vcrpy loading the same stream from its
   YAML cassette (vcrpy's own FilesystemPersister + yaml serializer), median of repeated loads.
2. Timing fidelity at scale 1 through ReplayTransport (httpx2, sync and async): p50/p99 of
   |observed gap - recorded gap| per chunk, side by side with a baseline that only sleeps to the
   same absolute deadlines in the same process (the floor this machine's clock and scheduler allow).

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
import sys
import tempfile
import time
from pathlib import Path

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


def bench_load(events: int) -> dict[str, float]:
    from vcr.persisters.filesystem import FilesystemPersister
    from vcr.serializers import yamlserializer

    chunks = stream(events)
    cassette = cassette_for(chunks)
    body = b"".join(d for _, d in chunks)
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "stream.msgpack"
        _store.save(cassette, ours)
        theirs = Path(tmp) / "stream.yaml"
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
                        "body": {"string": body.decode()},
                    },
                }
            ],
        }
        theirs.write_text(yamlserializer.serialize(vcr_doc))

        def load_ours() -> None:
            assert len(_store.load(ours).interactions[0].response.chunk_at) == events + 1

        def load_theirs() -> None:
            _requests, responses = FilesystemPersister.load_cassette(str(theirs), yamlserializer)
            assert len(responses[0]["body"]["string"]) == len(body)

        ssevcr_s = median_time(load_ours, 15)
        vcr_s = median_time(load_theirs, 3)
        print(
            f"load {events:,} events ({len(body) / 1e6:.1f} MB, {os.path.getsize(ours) / 1e6:.1f} MB msgpack, "
            f"{os.path.getsize(theirs) / 1e6:.1f} MB yaml)"
        )
        print(f"  ssevcr msgpack  {ssevcr_s * 1e3:8.2f} ms   (keeps every chunk and its time)")
        print(f"  vcrpy YAML      {vcr_s * 1e3:8.2f} ms   (one body string, no timing)")
        print(f"  ratio           {vcr_s / ssevcr_s:8.1f}x faster (target >= 10x)")
        return {
            "events": events,
            "ssevcr_ms": ssevcr_s * 1e3,
            "vcrpy_ms": vcr_s * 1e3,
            "ratio": vcr_s / ssevcr_s,
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
        f"in-process timing fidelity at scale 1, {len(recorded)} chunks, gaps 5-20 ms: |observed - recorded| gap"
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--fidelity-events", type=int, default=400)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    print(
        f"# bench_core  {time.strftime('%Y-%m-%d')}  {platform.platform()}  {os.cpu_count()} cores  "
        f"Python {platform.python_version()}"
    )
    results = {"load": bench_load(args.events), "fidelity": bench_fidelity(args.fidelity_events)}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
