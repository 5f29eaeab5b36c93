"""An Ollama NDJSON stream end to end: recorded through the real ``ssevcr record`` (mitmdump, a
subprocess) from a local upstream that streams the reconstructed Ollama fixture line by line,
then replayed by the replay server (the upstream stopped) to the official ``ollama`` Python
client and to httpx's line iteration: byte-exact, with its recorded timing, and every event
fault on it as the client's own error. Last, ``ssevcr sweep`` on the cassette with an Ollama
consumer."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from stream_helpers import show, sweep_all_ok
from test_record import MITMDUMP, RecordCLI, tid
from upstream import Script, Upstream

from ssevcr import _store
from ssevcr._cassette import Outcome
from ssevcr._faults import parse_faults
from ssevcr._player import Player
from ssevcr._server_thread import ServerThread
from ssevcr._timing import parse_timing

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "providers" / "ollama" / "generate.reconstructed.ndjson"
GENERATE = FIXTURE.read_bytes()
LINES = [line + b"\n" for line in GENERATE.split(b"\n")[:-1]]
GAP = 0.03  # between the upstream's lines
PROMPT = "Why is the sky blue?"

pytestmark = pytest.mark.skipif(not MITMDUMP, reason="no mitmdump (run ./bootstrap)")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any, list[Any]]]:
    """The cassette recorded from the upstream through ``ssevcr record --upstream``, what the
    upstream sent, and what the ollama client read while recording."""
    tmp = tmp_path_factory.mktemp("ollama")
    cassette = tmp / "ollama.msgpack"
    with Upstream() as up:
        rec = RecordCLI(cassette, "--upstream", up.url, confdir=tmp / "conf")
        try:
            test_id = tid()
            up.script(
                test_id,
                Script(
                    headers=(("content-type", "application/x-ndjson"),),
                    pieces=tuple(LINES),
                    gap=GAP,
                ),
            )
            client = ollama.Client(host=rec.url, headers={"x-test-id": test_id})
            parts = list(client.generate(model="llama3.2", prompt=PROMPT, stream=True))
            rec.recorded(test_id)
        finally:
            assert rec.stop() == 0
        sent = up.exchange(test_id)
    yield cassette, sent, parts


def serve(cassette: Path, *faults: str, timing: str = "original") -> ServerThread:
    player = Player(
        [("ollama", _store.load(cassette))],
        timing=parse_timing(timing),
        faults=tuple(parse_faults(list(faults))),
        repeat=True,
    )
    return ServerThread(player, log=lambda _line: None).start()


def generate(url: str, **kw: Any) -> list[Any]:
    client = ollama.Client(host=url, **kw)
    return list(client.generate(model="llama3.2", prompt=PROMPT, stream=True))


def text(parts: list[Any]) -> str:
    return "".join(p.response for p in parts)


def test_the_recording_holds_the_upstreams_lines_at_their_times(
    recorded: tuple[Path, Any, list[Any]],
) -> None:
    cassette, sent, parts = recorded
    (inter,) = _store.load(cassette).interactions
    resp = inter.response
    assert resp.body == GENERATE == sent.sent_body and resp.end.outcome is Outcome.COMPLETE
    assert resp.header("content-type") == "application/x-ndjson"
    assert len(parts) == 29 and parts[-1].done and parts[-1].done_reason == "stop"
    # one recorded chunk per line here (the upstream wrote them 30 ms apart), at its time
    gaps = [b - a for a, b in zip(resp.chunk_at, resp.chunk_at[1:], strict=False)]
    assert len(resp.chunk_sizes) == len(LINES)
    assert sorted(abs(g - GAP) for g in gaps)[len(gaps) // 2] < 0.01, gaps
    shown = show(cassette)
    assert " 29 " in shown  # the events column counts lines


def test_replay_is_byte_exact_to_httpx_and_the_ollama_client(
    recorded: tuple[Path, Any, list[Any]],
) -> None:
    cassette, _, live = recorded
    with serve(cassette) as server:
        body = _store.load(cassette).interactions[0].request.body  # what the client sent
        times, pieces = [], []
        with httpx.stream("POST", server.url + "/api/generate", content=body) as r:
            assert r.headers["content-type"] == "application/x-ndjson"
            for piece in r.iter_raw():
                times.append(time.monotonic())
                pieces.append(piece)
        assert b"".join(pieces) == GENERATE
        span = times[-1] - times[0]
        assert span > 0.6 * GAP * (len(LINES) - 1), span  # the recorded timing, not a burst
        with httpx.stream("POST", server.url + "/api/generate", content=body) as r:
            assert [line + "\n" for line in r.iter_lines()] == [x.decode() for x in LINES]
        parts = generate(server.url)
    assert [p.model_dump() for p in parts] == [p.model_dump() for p in live]
    assert text(parts) == text(live) and parts[-1].done


@pytest.mark.parametrize(
    ("fault", "raises", "check"),
    [
        ("truncate:after=10,end=abort", httpx.RemoteProtocolError, None),
        ("truncate:after=10,end=reset", (httpx.ReadError, httpx.RemoteProtocolError), None),
        ("truncate:after=10,end=close", None, lambda p, live: len(p) == 10 and not p[-1].done),
        ("drop:event=last", None, lambda p, live: len(p) == 28 and not p[-1].done),
        ("drop:event=2", None, lambda p, live: len(p) == 28 and " sky" not in text(p)),
        ("duplicate:event=2", None, lambda p, live: text(p).startswith("The sky sky appears")),
        ("corrupt:event=5,how=json", json.JSONDecodeError, None),
        # httpx decodes lines with errors="replace": the bad bytes land inside a JSON string
        # (a key here), so the client gets a changed part, silently
        ("corrupt:event=5,how=utf8", None, lambda p, live: len(p) == 29 and p[4] != live[4]),
        ("error:after=4", ollama.ResponseError, None),
        ("rechunk:size=1", None, lambda p, live: p == live),
        ("rechunk:hostile", None, lambda p, live: p == live),
    ],
)
def test_each_event_fault_reaches_the_ollama_client(
    recorded: tuple[Path, Any, list[Any]], fault: str, raises: Any, check: Any
) -> None:
    cassette, _, live = recorded
    with serve(cassette, fault, timing="instant") as server:
        if raises is not None:
            with pytest.raises(raises) as info:
                generate(server.url)
            if fault.startswith("error"):
                assert "an error was encountered while running the model" in str(info.value)
            return
        parts = generate(server.url)
    assert check(parts, live), [p.response for p in parts]


def test_stalls_reach_the_ollama_client(recorded: tuple[Path, Any, list[Any]]) -> None:
    cassette, _, _ = recorded
    with serve(cassette, "stall:before=3,for=forever", timing="instant") as server:
        client = ollama.Client(host=server.url, timeout=httpx.Timeout(5.0, read=0.5))
        got = []
        with pytest.raises(httpx.ReadTimeout):
            for part in client.generate(model="llama3.2", prompt=PROMPT, stream=True):
                got.append(part)
        assert len(got) == 2
    with serve(cassette, "stall:before=3,for=600ms", timing="instant") as server:
        stamps = []
        for part in ollama.Client(host=server.url).generate(
            model="llama3.2", prompt=PROMPT, stream=True
        ):
            stamps.append((time.monotonic(), part))
        assert len(stamps) == 29
        assert stamps[2][0] - stamps[1][0] > 0.5  # the pause before the third line


def test_sweep_on_the_ndjson_cassette(
    recorded: tuple[Path, Any, list[Any]], tmp_path: Path
) -> None:
    cassette, _, _ = recorded
    runs = sweep_all_ok(
        cassette,
        ROOT / "examples" / "sweep" / "ollama_careful.py",
        tmp_path / "sweep.json",
        *["--catalog", "quick", "-j", "2", "--timeout", "30s", "--stall", "4s"],
    )
    assert {"drop:event=last", "error:after=28", "truncate:after=28,end=close"} <= set(runs)
    assert runs["drop:event=last"]["lossy"] and runs["drop:event=last"]["exit_code"] != 0
    assert not runs["rechunk:hostile"]["lossy"] and runs["rechunk:hostile"]["exit_code"] == 0
