"""WebSocket replay: timing fidelity and instant throughput of the replay server, each against a
bare ``websockets`` server sending the same messages at the same offsets, in the same run.

    .venv/bin/python bench/bench_ws.py [--messages 400] [--rounds 3] [--burst 20000] [--json FILE]

**Gap error.** A conversation like a Realtime response: ``session.created``, then the client's
``response.create``, then ``--messages`` server messages (180-byte deltas) at recorded offsets
from it with seeded gaps of 1-10 ms. The client (``websockets`` asyncio, 127.0.0.1) stamps each
message as it arrives; the error is |replayed gap - recorded gap| over consecutive messages,
p50 and p99 of all rounds. The baseline is a bare ``websockets`` server (its own thread and
default loop) that sleeps to each absolute deadline measured from when the client's message
arrived and sends: the best a plain asyncio WebSocket server does with the same schedule.

**Instant throughput.** ``--burst`` server messages answering one client message, replayed with
``timing=instant``: messages per second from the client's message to the last message read,
against the bare server sending the same messages in a loop.

No assertions: it prints the figures (``--json FILE`` also writes them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402

from ssevcr._cassette import (  # noqa: E402
    Cassette,
    Interaction,
    Request,
    Response,
    WebSocket,
    WsClose,
    WsMessage,
)
from ssevcr._player import Player  # noqa: E402
from ssevcr._server_thread import ServerThread  # noqa: E402
from ssevcr._timing import parse_timing  # noqa: E402

PATH = "/v1/realtime?model=gpt-realtime"
CREATE = b'{"type":"response.create"}'


def conversation(count: int, seed: int, *, gaps: bool = True) -> WebSocket:
    rng = random.Random(seed)
    msgs = [WsMessage(0.001, False, b'{"type":"session.created"}'), WsMessage(0.01, True, CREATE)]
    at = 0.02
    for n in range(count):
        at += rng.uniform(0.001, 0.010) if gaps else 0.0
        delta = json.dumps(
            {"type": "response.output_text.delta", "event_id": f"e{n}", "delta": "x" * 120}
        )
        msgs.append(WsMessage(at, False, delta.encode()))
    return WebSocket(tuple(msgs), WsClose(at + 0.01, 1000, "", "client"))


def cassette(ws: WebSocket) -> Cassette:
    req = Request("GET", "http://api.openai.com" + PATH, (("upgrade", "websocket"),))
    resp = Response(101, "Switching Protocols", headers=(("upgrade", "websocket"),))
    return Cassette((Interaction(req, resp, websocket=ws),))


class Bare:
    """A bare websockets server playing ``ws`` (sleeping to absolute deadlines; ``instant``:
    sending in a loop)."""

    def __init__(self, ws: WebSocket, *, instant: bool) -> None:
        self.ws, self.instant = ws, instant
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Bare:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PATH}"

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(self._handle, "127.0.0.1", 0, compression=None, max_size=None) as s:
            self.port = next(iter(s.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    async def _handle(self, conn: Any) -> None:
        loop = asyncio.get_running_loop()
        msgs = self.ws.messages
        await conn.send(msgs[0].data.decode())
        await conn.recv()
        t0, anchor = loop.time(), msgs[1].at
        for m in msgs[2:]:
            if not self.instant:
                delay = t0 + (m.at - anchor) - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await conn.send(m.data.decode())
        await conn.wait_closed()


async def _client(url: str, count: int) -> tuple[list[float], float]:
    """Arrival times of the ``count`` messages answering the client's message, and when it
    was sent."""
    times: list[float] = []
    async with websockets.connect(url, compression=None, max_size=None) as conn:
        await conn.recv()
        sent = time.perf_counter()
        await conn.send(CREATE.decode())
        for _ in range(count):
            await conn.recv()
            times.append(time.perf_counter())
    return times, sent


def _errors(times: list[float], ws: WebSocket) -> list[float]:
    recorded = [m.at for m in ws.messages[2:]]
    return [
        abs((b - a) - (d - c))
        for a, b, c, d in zip(times, times[1:], recorded, recorded[1:], strict=False)
    ]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fidelity(messages: int, rounds: int) -> dict[str, Any]:
    ours: list[float] = []
    bare: list[float] = []
    for r in range(rounds):
        ws = conversation(messages, seed=r)
        player = Player([("bench", cassette(ws))], repeat=True)
        with ServerThread(player, log=lambda _l: None) as server:
            url = server.url.replace("http://", "ws://") + PATH
            times, _ = asyncio.run(_client(url, messages))
            ours += _errors(times, ws)
        with Bare(ws, instant=False) as b:
            times, _ = asyncio.run(_client(b.url, messages))
            bare += _errors(times, ws)
    return {
        "messages": messages,
        "rounds": rounds,
        "ssevcr_p50_ms": _pct(ours, 0.5) * 1e3,
        "ssevcr_p99_ms": _pct(ours, 0.99) * 1e3,
        "bare_p50_ms": _pct(bare, 0.5) * 1e3,
        "bare_p99_ms": _pct(bare, 0.99) * 1e3,
    }


def throughput(burst: int, rounds: int) -> dict[str, Any]:
    ws = conversation(burst, seed=0, gaps=False)
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(rounds):
        player = Player([("bench", cassette(ws))], timing=parse_timing("instant"), repeat=True)
        with ServerThread(player, log=lambda _l: None) as server:
            url = server.url.replace("http://", "ws://") + PATH
            times, sent = asyncio.run(_client(url, burst))
            ours.append(burst / (times[-1] - sent))
        with Bare(ws, instant=True) as b:
            times, sent = asyncio.run(_client(b.url, burst))
            bare.append(burst / (times[-1] - sent))
    return {
        "burst": burst,
        "ssevcr_msgs_per_s": statistics.median(ours),
        "bare_msgs_per_s": statistics.median(bare),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--burst", type=int, default=20000)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    fid = fidelity(args.messages, args.rounds)
    thr = throughput(args.burst, args.rounds)
    print(
        f"gap error, {fid['messages']} messages x {fid['rounds']}: ssevcr p50 "
        f"{fid['ssevcr_p50_ms']:.3f} / p99 {fid['ssevcr_p99_ms']:.3f} ms; bare websockets "
        f"p50 {fid['bare_p50_ms']:.3f} / p99 {fid['bare_p99_ms']:.3f} ms"
    )
    print(
        f"instant, {thr['burst']} messages: ssevcr {thr['ssevcr_msgs_per_s']:,.0f} msgs/s; bare "
        f"websockets {thr['bare_msgs_per_s']:,.0f} msgs/s "
        f"({thr['ssevcr_msgs_per_s'] / thr['bare_msgs_per_s']:.2f}x)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"fidelity": fid, "throughput": thr}, indent=1))


if __name__ == "__main__":
    main()
