"""Per-test overhead of a replayed streaming test: the ssevcr pytest plugin (instant timing) side by
side with vcrpy + pytest-recording replaying the same stream.

    .venv/bin/python bench/bench_pytest.py [--tests 200] [--rounds 3] [--repeat 1] [--per-test-cassettes]
                                           [--json FILE]
    .venv/bin/python bench/bench_pytest.py --in-process 300 [--repeat 30]     # one replay, no pytest

One stream, two cassettes made from the same bytes: the ssevcr cassette is built from the OpenAI
chat fixture (``tests/fixtures/providers/openai-chat/text.sse``, one chunk per SSE event;
``--repeat K`` makes the body K times longer); the ssevcr replay server serves it on 127.0.0.1 and
vcrpy records what an httpx client reads from it into its YAML cassette. The same test body (an
``httpx`` client — vcrpy does not patch httpx2 — streams the response and counts ``data:`` lines)
then runs N times (one module-level client) in three pytest sessions (subprocesses, same plugins loaded):

- empty:  the N tests without any HTTP (the baseline: collection, fixtures, reporting)
- ssevcr: ``@pytest.mark.ssevcr("cassettes/stream.msgpack", timing="instant")``
- vcrpy:  ``@pytest.mark.vcr`` + ``@pytest.mark.default_cassette("stream.yaml")`` (pytest-recording)

All N tests replay one cassette file (a parametrized test), or with ``--per-test-cassettes`` each
test its own file (the usual layout, one cassette per test: hard links to the same bytes, so
nothing opened before is opened again).

Per-test overhead = (session time - empty session time) / N, best of the rounds (interleaved).
Each session must pass all N tests. No assertions on speed: figures go to bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from datetime import date
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIXTURE = ROOT / "tests" / "fixtures" / "providers" / "openai-chat" / "text.sse"
REQUEST = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}

TEST = """
import httpx
import pytest

URL = {url!r}
BODY = {body!r}
CLIENT = httpx.Client()  # shared: creating a client loads the CA bundle (~30 ms), not what is measured


{markers}
@pytest.mark.parametrize("i", {params})
def test_stream(i):
    {call}


def run():
    with CLIENT.stream("POST", URL, content=BODY, headers={{"content-type": "application/json"}}) as r:
        events = sum(1 for line in r.iter_lines() if line.startswith("data: "))
    assert events == {events}
"""

CONFTEST = """
import pytest


@pytest.fixture
def vcr_cassette_dir():
    return {directory!r}
"""


def build_ssevcr_cassette(path: Path, repeat: int) -> tuple[bytes, int]:
    from ssevcr import _store
    from ssevcr._cassette import Cassette, Interaction, Request, Response
    from ssevcr._sse import parse

    body = FIXTURE.read_bytes() * repeat
    frames = [f.raw for f in parse(body).frames]
    chunks = [
        (0.001 * (i + 1), f) for i, f in enumerate(frames)
    ]  # synthesized offsets (instant ignores them)
    request_body = json.dumps(REQUEST).encode()
    interaction = Interaction(
        Request(
            "POST",
            "https://api.openai.com/v1/chat/completions",
            (("content-type", "application/json"),),
            request_body,
        ),
        Response.from_chunks(
            200,
            chunks,
            reason="OK",
            headers=(("content-type", "text/event-stream; charset=utf-8"),),
        ),
    )
    _store.save(Cassette((interaction,)), path)
    events = sum(1 for line in body.split(b"\n") if line.startswith(b"data: "))
    return request_body, events


def record_vcr_cassette(msgpack_path: Path, yaml_path: Path, request_body: bytes) -> str:
    """Serve the ssevcr cassette and let vcrpy record what httpx reads from it."""
    import httpx
    import vcr

    from ssevcr._player import Player
    from ssevcr._server_thread import ServerThread

    player = Player.create([msgpack_path], timing="instant", repeat=True)
    with ServerThread(player) as server:
        url = server.url + "/v1/chat/completions"
        with (
            vcr.VCR(record_mode="all").use_cassette(str(yaml_path)),
            httpx.Client() as client,
            client.stream(
                "POST", url, content=request_body, headers={"content-type": "application/json"}
            ) as r,
        ):
            body = r.read()
    assert body == player.interactions[0].response.body, "vcrpy recorded different bytes"
    return url


def session(directory: Path, module: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSEVCR_", "PYTEST_"))}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{module}.py"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{module}: pytest failed\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def in_process(repeat: int, plays: int) -> dict[str, tuple[float, float]]:
    """The costs of one replay in this process, no pytest: (p10, median) ms of each, interleaved."""
    import shutil
    import statistics

    import httpx

    import ssevcr
    from ssevcr import _schedule as schedule
    from ssevcr import _store
    from ssevcr._timing import parse_timing

    with tempfile.TemporaryDirectory(prefix="ssevcr-bench-inprocess-") as tmp:
        path = Path(tmp) / "stream.msgpack"
        request_body, events = build_ssevcr_cassette(path, repeat)
        others = [
            Path(tmp) / f"other-{i}.msgpack" for i in range(8)
        ]  # more than use_cassette keeps
        for other in others:
            shutil.copy(path, other)
        response = _store.load(path).interactions[0].response
        chunks = [c.data for c in response.chunks]

        class Chunks(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                return iter(chunks)

        class Floor(httpx.BaseTransport):
            """httpx's own cost: the same chunks handed over by a transport doing nothing else."""

            def handle_request(self, request: httpx.Request) -> httpx.Response:
                request.read()
                return httpx.Response(
                    200, headers=[(b"content-type", b"text/event-stream")], stream=Chunks()
                )

        floor_client, client = httpx.Client(transport=Floor()), httpx.Client()
        url, headers = (
            "http://127.0.0.1:9/v1/chat/completions",
            {"content-type": "application/json"},
        )
        instant = parse_timing("instant")
        turn = [0]

        def stream(c: httpx.Client) -> None:
            with c.stream("POST", url, content=request_body, headers=headers) as r:
                assert sum(1 for line in r.iter_lines() if line.startswith("data: ")) == events

        def play(p: Path) -> None:
            with ssevcr.use_cassette(p, timing="instant"):
                stream(client)

        def fresh() -> None:
            turn[0] += 1
            play(others[turn[0] % len(others)])

        def enter() -> None:
            with ssevcr.use_cassette(path, timing="instant"):
                pass

        cases = {
            "httpx alone (the floor)": lambda: stream(floor_client),
            "schedule.build (no faults)": lambda: schedule.build(response, timing=instant),
            "use_cassette enter + exit": enter,
            "play, cassette opened before": lambda: play(path),
            "play, cassette not opened before": fresh,
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for fn in cases.values():
            fn()
        for _ in range(plays):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: (sorted(ts)[len(ts) // 10], statistics.median(ts)) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=200, help="tests per session")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="make the stream K times longer")
    parser.add_argument(
        "--per-test-cassettes",
        action="store_true",
        help="each test replays its own cassette file (default: all tests share one)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--in-process",
        type=int,
        metavar="PLAYS",
        help="instead: the costs of one replay in this process (no pytest), over PLAYS plays",
    )
    args = parser.parse_args()

    if args.in_process:
        figures = in_process(args.repeat, args.in_process)
        print(
            f"in process, {args.in_process} plays each (interleaved), instant, --repeat {args.repeat}"
        )
        print(f"{'':34} {'p10 ms':>8} {'median ms':>10}")
        for name, (p10, median) in figures.items():
            print(f"{name:34} {p10:8.3f} {median:10.3f}")
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {k: {"p10_ms": a, "median_ms": b} for k, (a, b) in figures.items()}, indent=1
                )
            )
        return

    with tempfile.TemporaryDirectory(prefix="ssevcr-bench-pytest-") as tmp:
        d = Path(tmp)
        (d / "cassettes").mkdir()
        msgpack_path, yaml_path = (
            d / "cassettes" / "stream.msgpack",
            d / "cassettes" / "stream.yaml",
        )
        request_body, events = build_ssevcr_cassette(msgpack_path, args.repeat)
        url = record_vcr_cassette(msgpack_path, yaml_path, request_body)
        (d / "pytest.ini").write_text("[pytest]\n")
        (d / "conftest.py").write_text(CONFTEST.format(directory=str(d / "cassettes")))
        common = {"url": url, "body": request_body, "events": events}
        params = {name: f"range({args.tests})" for name in ("empty", "ssevcr", "vcrpy")}
        markers = {
            "empty": "",
            "ssevcr": '@pytest.mark.ssevcr("cassettes/stream.msgpack", timing="instant")',
            "vcrpy": '@pytest.mark.vcr\n@pytest.mark.default_cassette("stream.yaml")',
        }
        if args.per_test_cassettes:
            for i in range(args.tests):
                os.link(msgpack_path, d / "cassettes" / f"stream-{i}.msgpack")
                os.link(yaml_path, d / "cassettes" / f"stream-{i}.yaml")
            params["ssevcr"] = (
                '[pytest.param(i, marks=pytest.mark.ssevcr(f"cassettes/stream-{i}.msgpack", '
                f'timing="instant")) for i in range({args.tests})]'
            )
            params["vcrpy"] = (
                '[pytest.param(i, marks=pytest.mark.default_cassette(f"stream-{i}.yaml")) '
                f"for i in range({args.tests})]"
            )
            markers = {"empty": "", "ssevcr": "", "vcrpy": "@pytest.mark.vcr"}
        variants = {
            name: TEST.format(
                markers=markers[name],
                params=params[name],
                call="pass" if name == "empty" else "run()",
                **common,
            )
            for name in ("empty", "ssevcr", "vcrpy")
        }
        for name, text in variants.items():
            (d / f"test_{name}.py").write_text(textwrap.dedent(text))
        best = {name: float("inf") for name in variants}
        for _ in range(args.rounds):
            for name in variants:
                best[name] = min(best[name], session(d, f"test_{name}"))

    n = args.tests
    per = {name: (best[name] - best["empty"]) / n for name in ("ssevcr", "vcrpy")}
    size = len(FIXTURE.read_bytes()) * args.repeat
    print(
        f"{date.today()}  {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"pytest {version('pytest')}, vcrpy {version('vcrpy')}, pytest-recording {version('pytest-recording')}"
    )
    print(
        f"stream: {events} events, {size} bytes; {n} tests per session, best of {args.rounds} rounds; "
        f"{'one cassette file per test' if args.per_test_cassettes else 'one cassette file for all tests'}"
    )
    print(f"{'session':<8} {'total s':>8} {'per test ms':>12} {'overhead ms':>12}")
    print(f"{'empty':<8} {best['empty']:8.2f} {best['empty'] / n * 1e3:12.2f} {'-':>12}")
    for name in ("ssevcr", "vcrpy"):
        print(f"{name:<8} {best[name]:8.2f} {best[name] / n * 1e3:12.2f} {per[name] * 1e3:12.2f}")
    print(f"ratio vcrpy/ssevcr overhead: {per['vcrpy'] / per['ssevcr']:.2f}x")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "tests": n,
                    "events": events,
                    "bytes": size,
                    "per_test_cassettes": args.per_test_cassettes,
                    "ssevcr_ms": per["ssevcr"] * 1e3,
                    "vcrpy_ms": per["vcrpy"] * 1e3,
                    "ratio": per["vcrpy"] / per["ssevcr"],
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
