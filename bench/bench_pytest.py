"""Per-test overhead of a replayed streaming test: the ssevcr pytest plugin (instant timing) side by
side with vcrpy + pytest-recording replaying the same stream; and the first-byte offsets of
in-process recording.

    .venv/bin/python bench/bench_pytest.py [--tests 200] [--rounds 3] [--repeat 1] [--json FILE]
    .venv/bin/python bench/bench_pytest.py --raw-httpx [--per-test-cassettes] ...   # the old method
    .venv/bin/python bench/bench_pytest.py --in-process 300 [--repeat 30]    # one replay, no pytest
    .venv/bin/python bench/bench_pytest.py --first-byte 40                   # recording, HTTP(S)

One stream, two cassettes made from the same bytes: the ssevcr cassette is built from the OpenAI
chat fixture (``tests/fixtures/providers/openai-chat/text.sse``, one chunk per SSE event;
``--repeat K`` makes the body K times longer); the ssevcr replay server serves it on 127.0.0.1 and
vcrpy records what an httpx client reads from it into its YAML cassette.

Default (the way users run it): each test calls the official ``openai`` SDK (one module-level
client) for a streamed chat completion and joins the text, and each test has its own cassette
at the default place (``cassettes/<module>/<test>.msgpack`` / ``.yaml``; hard links to the same
bytes). ssevcr intercepts the SDK as it is (httpx2); vcrpy does not patch httpx2, so its client
is given ``http_client=httpx.Client()`` (what a vcrpy user must do). Sessions (subprocesses, same
plugins loaded): ``empty`` (the tests without any HTTP: collection, fixtures, reporting), ``floor``
(the same SDK call answered by a transport that hands over the same chunks and does nothing else:
the SDK's own cost), ``ssevcr`` (``@pytest.mark.ssevcr(timing="instant")``) and ``vcrpy``
(``@pytest.mark.vcr``). ``--raw-httpx``: the earlier method (an ``httpx`` client streams the
response and counts ``data:`` lines; one cassette file for all tests unless
``--per-test-cassettes``).

Per-test overhead = (session time - empty session time) / N, best of the rounds (interleaved);
the tool's own cost is that minus the floor's. Each session must pass all N tests.

``--first-byte N``: N recordings in process (``use_cassette(record="all")``, a new client and
connection each, as a test makes) from tests/upstream.py over HTTP and over HTTPS; the recorded
offsets of the headers and of the first chunk against the upstream's own clock (when it sent
them, from when it had read the whole request), and what counting from before connecting (the
earlier t0) would have added. Interleaved with them, the same exchange from a bare (ssl) socket
in a process of its own, kept running (in this one, a thread the recordings left would take
the GIL between ``sendall`` and its stamp), which stamps the request sent when ``sendall``
returns and the first chunk when ``recv`` returns it. The processes share the monotonic clock,
so the error splits into the way there (the upstream's read of the request − the client's t0)
and the way back (the client's stamp − the upstream's write of the chunk): loopback, both TLS
record layers and each side's wake-up, which no recorder can go below. The upstream runs on its
own core and the clients on the other (``--no-pin``: wherever the scheduler puts them; on two
cores a client that wakes the upstream is then often preempted by it before it can stamp its
send, which makes the way there negative in some runs and the figures bimodal); a real API is
on another machine, never on the client's core. No assertions on speed: figures
go to bench/README.md.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIXTURE = ROOT / "tests" / "fixtures" / "providers" / "openai-chat" / "text.sse"
REQUEST = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}

TEST = """
import httpx
import pytest

URL = {url!r}
BODY = {body!r}
# shared: creating a client loads the CA bundle (~30 ms), not what is measured
CLIENT = httpx.Client()


{markers}
@pytest.mark.parametrize("i", {params})
def test_stream(i):
    {call}


def run():
    headers = {{"content-type": "application/json"}}
    with CLIENT.stream("POST", URL, content=BODY, headers=headers) as r:
        events = sum(1 for line in r.iter_lines() if line.startswith("data: "))
    assert events == {events}
"""

SDK_TEST = """
import httpx
import httpx2
import openai
import pytest

URL = {url!r}
EXPECTED = {expected!r}
CHUNKS = {chunks!r}
MESSAGES = [{{"role": "user", "content": "hi"}}]


class Floor(httpx2.BaseTransport):
    def handle_request(self, request):
        request.read()
        headers = [(b"content-type", b"text/event-stream")]
        return httpx2.Response(200, headers=headers, stream=Chunks())


class Chunks(httpx2.SyncByteStream):
    def __iter__(self):
        return iter(CHUNKS)


KIND = {kind!r}
if KIND == "vcrpy":
    CLIENT = openai.OpenAI(api_key="sk-test", base_url=URL, max_retries=0,
                           http_client=httpx.Client())
elif KIND == "floor":
    CLIENT = openai.OpenAI(api_key="sk-test", base_url=URL, max_retries=0,
                           http_client=httpx2.Client(transport=Floor()))
else:
    CLIENT = openai.OpenAI(api_key="sk-test", base_url=URL, max_retries=0)


{markers}
@pytest.mark.parametrize("i", range({tests}))
def test_chat(i):
    {call}


def run():
    stream = CLIENT.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == EXPECTED
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


def both_cassettes(folder: Path, repeat: int) -> tuple[Path, Path, bytes, int, str]:
    """``folder``/stream.msgpack and the vcrpy cassette recorded from it, stream.yaml (the folder
    made): their paths, the request body, the events of the stream, the URL vcrpy recorded."""
    folder.mkdir(exist_ok=True)
    msgpack_path, yaml_path = folder / "stream.msgpack", folder / "stream.yaml"
    request_body, events = build_ssevcr_cassette(msgpack_path, repeat)
    url = record_vcr_cassette(msgpack_path, yaml_path, request_body)
    return msgpack_path, yaml_path, request_body, events, url


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


def session(directory: Path, module: str, *, cpu: bool = False) -> float:
    """Seconds one pytest session takes: wall time, or (``cpu``) the CPU time of the process
    (user + system), which a loaded machine inflates less."""
    import resource

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSEVCR_", "PYTEST_"))}
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    if cpu:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
    return elapsed


def calls_of(directory: Path, module: str) -> int:
    """Python function calls one pytest session makes (cProfile counts them exactly, whatever
    the load on the machine)."""
    import pstats

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSEVCR_", "PYTEST_"))}
    out = directory / f"{module}.prof"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            str(out),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{module}.py",
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        check=True,
    )
    return int(pstats.Stats(str(out)).total_calls)  # type: ignore[attr-defined]


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


def openai_text(body: bytes) -> str:
    from ssevcr._sse import parse

    out = ""
    for event in parse(body).events:
        if event.data != "[DONE]":
            for choice in json.loads(event.data)["choices"]:
                out += choice["delta"].get("content") or ""
    return out


def sdk_sessions(args: argparse.Namespace) -> dict[str, Any]:
    """The default: the openai SDK in every test, a cassette per test (see the docstring)."""
    from ssevcr import _store

    n = args.tests
    with tempfile.TemporaryDirectory(prefix="ssevcr-bench-pytest-") as tmp:
        d = Path(tmp)
        msgpack_path, yaml_path, _body, events, url = both_cassettes(d / "cassettes", args.repeat)
        response = _store.load(msgpack_path).interactions[0].response
        chunks = [c.data for c in response.chunks]
        (d / "pytest.ini").write_text("[pytest]\n")
        markers = {
            "empty": "",
            "floor": "",
            "ssevcr": '@pytest.mark.ssevcr(timing="instant")',
            "vcrpy": "@pytest.mark.vcr",
        }
        for name in markers:
            folder = d / "cassettes" / f"test_{name}"
            folder.mkdir()
            for i in range(n):
                if name == "ssevcr":
                    os.link(msgpack_path, folder / f"test_chat[{i}].msgpack")
                elif name == "vcrpy":
                    os.link(yaml_path, folder / f"test_chat[{i}].yaml")
            text = SDK_TEST.format(
                url=url.rsplit("/chat/completions", 1)[0],
                expected=openai_text(response.body),
                chunks=chunks,
                kind=name,
                markers=markers[name],
                tests=n,
                call="pass" if name == "empty" else "run()",
            )
            (d / f"test_{name}.py").write_text(text)
        best = {name: float("inf") for name in markers}
        for _ in range(args.rounds):
            for name in markers:
                best[name] = min(best[name], session(d, f"test_{name}", cpu=args.cpu))
        calls = {name: calls_of(d, f"test_{name}") for name in markers} if args.calls else {}
    per = {name: (best[name] - best["empty"]) / n * 1e3 for name in ("floor", "ssevcr", "vcrpy")}
    own = {name: per[name] - per["floor"] for name in ("ssevcr", "vcrpy")}
    size = len(FIXTURE.read_bytes()) * args.repeat
    print(
        f"{date.today()}  {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, "
        f"pytest {version('pytest')}, openai {version('openai')}, vcrpy {version('vcrpy')}, "
        f"pytest-recording {version('pytest-recording')}"
    )
    print(
        f"openai SDK, stream: {events} events, {size} bytes; {n} tests per session, a cassette per "
        f"test, best of {args.rounds} rounds, {'CPU' if args.cpu else 'wall'} time"
    )
    print(f"{'session':<8} {'total s':>8} {'overhead ms':>12} {'tool alone ms':>14}")
    print(f"{'empty':<8} {best['empty']:8.2f} {'-':>12} {'-':>14}")
    print(f"{'floor':<8} {best['floor']:8.2f} {per['floor']:12.2f} {'-':>14}")
    for name in ("ssevcr", "vcrpy"):
        print(f"{name:<8} {best[name]:8.2f} {per[name]:12.2f} {own[name]:14.2f}")
    print(
        f"vcrpy/ssevcr: {per['vcrpy'] / per['ssevcr']:.2f}x per test, "
        f"{own['vcrpy'] / own['ssevcr']:.2f}x the tools' own cost; at best (a tool costing "
        f"nothing) {(per['floor'] + own['vcrpy']) / per['floor']:.2f}x per test"
    )
    extra: dict[str, Any] = {}
    if calls:
        per_call = {k: (v - calls["empty"]) / n for k, v in calls.items() if k != "empty"}
        own_calls = {k: per_call[k] - per_call["floor"] for k in ("ssevcr", "vcrpy")}
        print(
            "Python function calls per test (cProfile, exact): "
            + ", ".join(f"{k} {v:,.0f}" for k, v in per_call.items())
            + f"; the tools' own: ssevcr {own_calls['ssevcr']:,.0f}, "
            f"vcrpy {own_calls['vcrpy']:,.0f} "
            f"({own_calls['vcrpy'] / own_calls['ssevcr']:.2f}x)"
        )
        extra = {
            "calls_per_test": per_call,
            "own_calls_ratio": own_calls["vcrpy"] / own_calls["ssevcr"],
        }
    return {
        **extra,
        "tests": n,
        "events": events,
        "bytes": size,
        "method": "openai SDK, cassette per test",
        "floor_ms": per["floor"],
        "ssevcr_ms": per["ssevcr"],
        "vcrpy_ms": per["vcrpy"],
        "ssevcr_own_ms": own["ssevcr"],
        "vcrpy_own_ms": own["vcrpy"],
        "ratio": per["vcrpy"] / per["ssevcr"],
        "own_ratio": own["vcrpy"] / own["ssevcr"],
    }


UPSTREAM_PROCESS = """
import json, sys
sys.path.insert(0, sys.argv[1])
from upstream import TLSFiles, Upstream
from pathlib import Path
tls = TLSFiles(Path(sys.argv[2]), Path(sys.argv[3])) if len(sys.argv) > 2 else None
server = Upstream(tls=tls).start()
print(server.url, flush=True)
for line in sys.stdin:
    ex = server.exchange(line.strip())
    print(json.dumps([ex.body_at, ex.headers_sent_at, ex.sent[0][0]]), flush=True)
server.stop()
"""


def _bare_exchange(url: str, headers: dict[str, str], cafile: Path) -> tuple[float, float]:
    """One exchange from a bare socket (TLS for https): the monotonic times the request was
    sent (``sendall`` returned) and the first body byte was read (``recv`` returned it)."""
    import socket
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\n{head}"
        "content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
    ).encode()
    sock: socket.socket = socket.create_connection((host, port))
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=str(cafile))
        sock = context.wrap_socket(sock, server_hostname=host)
    with sock:
        sock.sendall(request)
        sent = time.monotonic()
        data, first = b"", 0.0
        while not data.endswith(b"0\r\n\r\n"):
            piece = sock.recv(1 << 16)
            if not piece:
                break
            data += piece
            end = data.find(b"\r\n\r\n")
            if not first and end >= 0 and len(data) > end + 4:
                first = time.monotonic()
    return sent, first


class _Reads:
    """While active, the monotonic time each ``recv`` of a socket class returned bytes (the
    ssl module's for HTTPS): the moment the bytes reached Python, which a recorder's stamp of
    them can only follow; and when each ``send`` returned (``sends``: the request's last is
    what t0 should be). Timestamps only; what the calls take and return is not touched."""

    def __init__(self, cls: Any) -> None:
        self.cls = cls
        self.times: list[float] = []
        self.sends: list[float] = []
        self.original = cls.recv, cls.send

    def __enter__(self) -> _Reads:
        recv_, send_ = self.original
        times, sends = self.times, self.sends

        def recv(sock: Any, *args: Any, **kwargs: Any) -> bytes:
            data: bytes = recv_(sock, *args, **kwargs)
            if data:
                times.append(time.monotonic())
            return data

        def send(sock: Any, *args: Any, **kwargs: Any) -> int:
            sent: int = send_(sock, *args, **kwargs)
            sends.append(time.monotonic())
            return sent

        self.cls.recv, self.cls.send = recv, send
        return self

    def __exit__(self, *exc: object) -> None:
        self.cls.recv, self.cls.send = self.original


def first_byte(n: int, *, pin: bool = True) -> dict[str, Any]:
    """Recorded offsets of the head and the first chunk vs the upstream's clock (see docstring).
    The upstream runs in its own process (in this one it would wait for the GIL)."""
    import os

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = pin and len(cores) >= 2
    if pin:  # the clients (this process and the bare one) on one core, the upstream on another
        os.sched_setaffinity(0, cores[:1])
    try:
        return _first_byte(n, cores[1:2] if pin else [])
    finally:
        if pin:
            os.sched_setaffinity(0, cores)


def _first_byte(n: int, upstream_cores: list[int]) -> dict[str, Any]:
    import os
    import statistics
    import sys as _sys

    import httpx2

    import ssevcr
    from ssevcr import _store

    _sys.path.insert(0, str(ROOT / "tests"))
    from upstream import make_tls_files

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ssevcr-bench-firstbyte-") as tmp:
        tls = make_tls_files(Path(tmp) / "tls")
        for scheme, extra in (("http", []), ("https", [str(tls.cert), str(tls.key)])):
            server = subprocess.Popen(
                [_sys.executable, "-c", UPSTREAM_PROCESS, str(ROOT / "tests"), *extra],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=(lambda: os.sched_setaffinity(0, upstream_cores))
                if upstream_cores
                else None,
            )
            assert server.stdin is not None and server.stdout is not None
            url = server.stdout.readline().strip()
            # the bare socket's exchanges, from a process of their own (in this one a thread the
            # recordings left would take the GIL between ``sendall`` and its stamp), kept warm
            bare = subprocess.Popen(
                [_sys.executable, __file__, "--bare-exchanges"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert bare.stdin is not None and bare.stdout is not None
            head_err, first_err, before, floor, after_read, after_send = [], [], [], [], [], []
            there, back, bare_there, bare_back = [], [], [], []
            import socket
            import ssl

            sockets = ssl.SSLSocket if scheme == "https" else socket.socket
            try:
                for i in range(n):
                    path = Path(tmp) / f"{scheme}-{i}.msgpack"
                    test_id = f"{scheme}-{i}"
                    connect: list[float] = []

                    def trace(
                        name: str, info: dict[str, Any], connect: list[float] = connect
                    ) -> None:
                        if name == "connection.connect_tcp.started":
                            connect.append(time.monotonic())

                    headers = {
                        "x-upstream-fixture": "openai-chat/text.sse",
                        "x-upstream-gap-ms": "20",
                        "x-upstream-chunks": "4",
                        "x-test-id": test_id,
                    }
                    with (
                        httpx2.Client(verify=str(tls.cert)) as client,
                        ssevcr.use_cassette(path, record="all") as cas,
                        _Reads(sockets) as watch,
                    ):
                        with client.stream(
                            "POST",
                            url + "/v1/chat/completions",
                            content=b"{}",
                            headers=headers,
                            extensions={"trace": trace},
                        ) as r:
                            for _ in r.iter_raw():
                                pass
                        t0 = cas._recordings[0].capture.t0
                    server.stdin.write(test_id + "\n")
                    server.stdin.flush()
                    received, head_sent, first_sent = json.loads(server.stdout.readline())
                    response = _store.load(path).interactions[0].response
                    head_err.append((response.headers_at - (head_sent - received)) * 1e3)
                    first_err.append((response.chunk_at[0] - (first_sent - received)) * 1e3)
                    there.append((received - t0) * 1e3)
                    back.append((t0 + response.chunk_at[0] - first_sent) * 1e3)
                    before.append((t0 - connect[0]) * 1e3 if connect else 0.0)
                    stamp = t0 + response.chunk_at[0]  # the read that brought it: the last before
                    after_read.append((stamp - max(t for t in watch.times if t <= stamp)) * 1e3)
                    after_send.append((t0 - max(t for t in watch.sends if t <= t0)) * 1e3)
                    headers["x-test-id"] = bare_id = f"{scheme}-bare-{i}"
                    bare.stdin.write(json.dumps([url, headers, str(tls.cert)]) + "\n")
                    bare.stdin.flush()
                    sent, first_at = json.loads(bare.stdout.readline())
                    server.stdin.write(bare_id + "\n")
                    server.stdin.flush()
                    received, head_sent, first_sent = json.loads(server.stdout.readline())
                    floor.append((first_at - sent - (first_sent - received)) * 1e3)
                    bare_there.append((received - sent) * 1e3)
                    bare_back.append((first_at - first_sent) * 1e3)
            finally:
                server.stdin.close()
                server.wait(10)
                bare.stdin.close()
                bare.wait(10)
            out[scheme] = {
                "head_error_median_ms": statistics.median(head_err),
                "first_byte_error_median_ms": statistics.median(first_err),
                "first_byte_error_p90_ms": sorted(first_err)[int(0.9 * (n - 1))],
                "before_t0_added_median_ms": statistics.median(before),
                "bare_socket_first_byte_error_median_ms": statistics.median(floor),
                "bare_socket_first_byte_error_p90_ms": sorted(floor)[int(0.9 * (n - 1))],
                # what the recorder adds to the truth (the socket's own send and receive times)
                "first_byte_error_above_bare_ms": statistics.median(first_err)
                - statistics.median(floor),
                # the two halves on the shared clock: the upstream's read of the whole request
                # after the client's t0, and the client's stamp after the upstream's write
                "way_there_median_ms": statistics.median(there),
                "way_back_median_ms": statistics.median(back),
                "bare_way_there_median_ms": statistics.median(bare_there),
                "bare_way_back_median_ms": statistics.median(bare_back),
                # in the recording process: the first chunk's stamp after its recv returned
                "stamp_after_read_median_ms": statistics.median(after_read),
                "stamp_after_read_p90_ms": sorted(after_read)[int(0.9 * (n - 1))],
                # t0 (httpcore's send_request_body.complete) after the request's last send
                "t0_after_send_median_ms": statistics.median(after_send),
            }
    print(
        f"in-process recording, {n} recordings each, a new connection each, the upstream in its "
        "own process"
        + (f" on core {upstream_cores[0]}, the clients on another" if upstream_cores else "")
        + " (error = recorded - true offset)"
    )
    print(
        f"{'':6} {'head ms':>8} {'first byte ms':>14} {'p90 ms':>8} "
        f"{'t0 before connecting would add ms':>34} {'bare socket ms':>15} {'p90 ms':>8} "
        f"{'recorder - bare ms':>19} {'stamp after recv ms':>20} {'p90 ms':>8} "
        f"{'t0 after send ms':>17}"
    )
    for scheme, f in out.items():
        print(
            f"{scheme:6} {f['head_error_median_ms']:+8.3f} "
            f"{f['first_byte_error_median_ms']:+14.3f} "
            f"{f['first_byte_error_p90_ms']:+8.3f} {f['before_t0_added_median_ms']:+34.3f} "
            f"{f['bare_socket_first_byte_error_median_ms']:+15.3f} "
            f"{f['bare_socket_first_byte_error_p90_ms']:+8.3f} "
            f"{f['first_byte_error_above_bare_ms']:+19.3f} "
            f"{f['stamp_after_read_median_ms']:+20.3f} {f['stamp_after_read_p90_ms']:+8.3f} "
            f"{f['t0_after_send_median_ms']:+17.3f}"
        )
    print(f"{'':6} {'way there ms':>13} {'way back ms':>12} {'bare: there ms':>15} {'back ms':>8}")
    for scheme, f in out.items():
        print(
            f"{scheme:6} {f['way_there_median_ms']:+13.3f} {f['way_back_median_ms']:+12.3f} "
            f"{f['bare_way_there_median_ms']:+15.3f} {f['bare_way_back_median_ms']:+8.3f}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=200, help="tests per session")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="make the stream K times longer")
    parser.add_argument(
        "--raw-httpx",
        action="store_true",
        help="the earlier method: raw httpx streaming, one cassette file unless "
        "--per-test-cassettes",
    )
    parser.add_argument(
        "--per-test-cassettes",
        action="store_true",
        help="with --raw-httpx: each test replays its own cassette file",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--calls",
        action="store_true",
        help="also count the Python function calls of each session (cProfile: exact, "
        "load-independent)",
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time sessions by their CPU time instead of wall time (steadier on a loaded machine)",
    )
    parser.add_argument(
        "--in-process",
        type=int,
        metavar="PLAYS",
        help="instead: the costs of one replay in this process (no pytest), over PLAYS plays",
    )
    parser.add_argument(
        "--first-byte",
        type=int,
        metavar="N",
        help="instead: recorded first-byte offsets of N in-process recordings, HTTP and HTTPS",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="--first-byte: leave the upstream and the clients wherever the scheduler puts them",
    )
    parser.add_argument("--bare-exchanges", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.bare_exchanges:  # (--first-byte's child: an exchange a line, its two times printed)
        for line in sys.stdin:
            url, headers, cafile = json.loads(line)
            print(json.dumps(_bare_exchange(url, headers, Path(cafile))), flush=True)
        return
    if args.first_byte:
        figures: Any = first_byte(args.first_byte, pin=not args.no_pin)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1))
        return
    if not args.raw_httpx and not args.in_process:
        figures = sdk_sessions(args)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1))
        return
    raw_main(args)


def raw_main(args: argparse.Namespace) -> None:

    if args.in_process:
        figures = in_process(args.repeat, args.in_process)
        print(
            f"in process, {args.in_process} plays each (interleaved), instant, "
            f"--repeat {args.repeat}"
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
        msgpack_path, yaml_path, request_body, events, url = both_cassettes(
            d / "cassettes", args.repeat
        )
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
        f"{date.today()}  {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, pytest {version('pytest')}, "
        f"vcrpy {version('vcrpy')}, pytest-recording {version('pytest-recording')}"
    )
    print(
        f"stream: {events} events, {size} bytes; {n} tests per session, "
        f"best of {args.rounds} rounds; one cassette file "
        f"{'per test' if args.per_test_cassettes else 'for all tests'}"
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
