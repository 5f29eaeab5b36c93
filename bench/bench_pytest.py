"""Per-test overhead of a replayed streaming test: the ssevcr pytest plugin (instant timing) side by
side with vcrpy + pytest-recording replaying the same stream.

    .venv/bin/python bench/bench_pytest.py [--tests 200] [--rounds 3] [--repeat 1] [--json FILE]

One stream, two cassettes made from the same bytes: the ssevcr cassette is built from the OpenAI
chat fixture (``tests/fixtures/providers/openai-chat/text.sse``, one chunk per SSE event;
``--repeat K`` makes the body K times longer); the ssevcr replay server serves it on 127.0.0.1 and
vcrpy records what an httpx client reads from it into its YAML cassette. The same test body (an
``httpx`` client — vcrpy does not patch httpx2 — streams the response and counts ``data:`` lines)
then runs N times (one module-level client) in three pytest sessions (subprocesses, same plugins loaded):

- empty:  the N tests without any HTTP (the baseline: collection, fixtures, reporting)
- ssevcr: ``@pytest.mark.ssevcr("cassettes/stream.msgpack", timing="instant")``
- vcrpy:  ``@pytest.mark.vcr`` + ``@pytest.mark.default_cassette("stream.yaml")`` (pytest-recording)

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
@pytest.mark.parametrize("i", range({n}))
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
    from ssevcr import codec
    from ssevcr.cassette import Cassette, Interaction, Request, Response
    from ssevcr.sse import parse

    body = FIXTURE.read_bytes() * repeat
    frames = [f.raw for f in parse(body).frames]
    chunks = [(0.001 * (i + 1), f) for i, f in enumerate(frames)]  # synthesized offsets (instant ignores them)
    request_body = json.dumps(REQUEST).encode()
    interaction = Interaction(
        Request("POST", "https://api.openai.com/v1/chat/completions",
                (("content-type", "application/json"),), request_body),
        Response.from_chunks(200, chunks, reason="OK",
                             headers=(("content-type", "text/event-stream; charset=utf-8"),)),
    )
    codec.save(Cassette((interaction,)), path)
    events = sum(1 for line in body.split(b"\n") if line.startswith(b"data: "))
    return request_body, events


def record_vcr_cassette(msgpack_path: Path, yaml_path: Path, request_body: bytes) -> str:
    """Serve the ssevcr cassette and let vcrpy record what httpx reads from it."""
    import httpx
    import vcr

    from ssevcr.player import Player
    from ssevcr.server import ServerThread

    player = Player.create([msgpack_path], timing="instant", repeat=True)
    with ServerThread(player) as server:
        url = server.url + "/v1/chat/completions"
        with vcr.VCR(record_mode="all").use_cassette(str(yaml_path)), httpx.Client() as client, \
                client.stream("POST", url, content=request_body,
                              headers={"content-type": "application/json"}) as r:
            body = r.read()
    assert body == player.interactions[0].response.body, "vcrpy recorded different bytes"
    return url


def session(directory: Path, module: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSEVCR_", "PYTEST_"))}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{module}.py"],
                          cwd=directory, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{module}: pytest failed\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=200, help="tests per session")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="make the stream K times longer")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ssevcr-bench-pytest-") as tmp:
        d = Path(tmp)
        (d / "cassettes").mkdir()
        msgpack_path, yaml_path = d / "cassettes" / "stream.msgpack", d / "cassettes" / "stream.yaml"
        request_body, events = build_ssevcr_cassette(msgpack_path, args.repeat)
        url = record_vcr_cassette(msgpack_path, yaml_path, request_body)
        (d / "pytest.ini").write_text("[pytest]\n")
        (d / "conftest.py").write_text(CONFTEST.format(directory=str(d / "cassettes")))
        common = {"url": url, "body": request_body, "n": args.tests, "events": events}
        variants = {
            "empty": TEST.format(markers="", call="pass", **common),
            "ssevcr": TEST.format(markers='@pytest.mark.ssevcr("cassettes/stream.msgpack", timing="instant")',
                                  call="run()", **common),
            "vcrpy": TEST.format(markers='@pytest.mark.vcr\n@pytest.mark.default_cassette("stream.yaml")',
                                 call="run()", **common),
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
    print(f"{date.today()}  {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"pytest {version('pytest')}, vcrpy {version('vcrpy')}, pytest-recording {version('pytest-recording')}")
    print(f"stream: {events} events, {size} bytes; {n} tests per session, best of {args.rounds} rounds")
    print(f"{'session':<8} {'total s':>8} {'per test ms':>12} {'overhead ms':>12}")
    print(f"{'empty':<8} {best['empty']:8.2f} {best['empty'] / n * 1e3:12.2f} {'-':>12}")
    for name in ("ssevcr", "vcrpy"):
        print(f"{name:<8} {best[name]:8.2f} {best[name] / n * 1e3:12.2f} {per[name] * 1e3:12.2f}")
    print(f"ratio vcrpy/ssevcr overhead: {per['vcrpy'] / per['ssevcr']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"tests": n, "events": events, "bytes": size,
                                               "ssevcr_ms": per["ssevcr"] * 1e3, "vcrpy_ms": per["vcrpy"] * 1e3,
                                               "ratio": per["vcrpy"] / per["ssevcr"]}, indent=1))


if __name__ == "__main__":
    main()
