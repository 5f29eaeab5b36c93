"""examples/streaming_proxy/app.py (a Starlette streaming proxy under uvicorn) with ``ssevcr
replay --control`` as its upstream: a client that leaves after 5 events, and the delivery journal
of the upstream play showing when the app closed its upstream stream. The correct relay closes it
within 100 ms of its client leaving, after event 5; the deliberately buggy one keeps reading to
the end, and the same check catches it."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from stream_helpers import CliReplay, save_stream, serve_asgi

import ssevcr

ROOT = Path(__file__).resolve().parent.parent
EVENTS, GAP, LEAVE_AFTER = 16, 0.25, 5


def load_app() -> Any:
    path = ROOT / "examples" / "streaming_proxy" / "app.py"
    spec = importlib.util.spec_from_file_location("streaming_proxy_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CliReplay, str]]:
    cassette = save_stream(
        tmp_path_factory.mktemp("proxy"),
        n=EVENTS,
        gap=GAP,
        ids=False,
        path="/v1/chat/completions",
        method="POST",
        body=b'{"model": "m", "stream": true}',
    )
    replay = CliReplay("--control")
    yield replay, cassette
    replay.kill()


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    with serve_asgi(load_app().app, lifespan="off") as url:
        yield url


def leave_after_events(url: str, k: int) -> float:
    """POST to the app, read its stream until ``k`` events came, leave; when it left (wall)."""
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", url, json={"model": "m", "stream": True}) as r,
    ):
        assert r.status_code == 200
        got = b""
        for piece in r.iter_raw():
            got += piece
            if got.count(b"\n\n") >= k:
                break
        left = time.time()
    return left


def upstream_play(
    upstream: tuple[CliReplay, str], app_url: str, route: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], float]:
    """The journal of the upstream play while the app's client leaves after 5 events: (the
    play, seconds from the client leaving to the upstream stream's end)."""
    replay, cassette = upstream
    control = ssevcr.ControlClient.from_ready_line(replay.ready)
    with control.session([cassette], timing="original") as session:
        monkeypatch.setenv("UPSTREAM_URL", session.base_url)
        client_left = leave_after_events(f"{app_url}{route}", LEAVE_AFTER)
        deadline = time.monotonic() + EVENTS * GAP + 10
        while True:
            (play,) = session.journal()
            if play["state"] != "open" or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    ended = play["started"] + (
        play["left_at"] if play["state"] == "left" else play["progress"][-1][0]
    )
    return play, ended - client_left


def test_the_proxy_closes_its_upstream_within_100ms_of_its_client_leaving(
    upstream: tuple[CliReplay, str], app_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    play, delay = upstream_play(upstream, app_url, "/chat", monkeypatch)
    assert play["state"] == "left", play
    assert play["how"] in ("fin", "rst")
    assert play["left_after_event"] == LEAVE_AFTER  # (event 6 was due 250 ms later)
    assert delay <= 0.1, f"the upstream was closed {delay * 1000:.0f} ms after the client left"


def test_the_buggy_proxy_that_keeps_reading_upstream_is_caught(
    upstream: tuple[CliReplay, str], app_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    play, delay = upstream_play(upstream, app_url, "/chat-buggy", monkeypatch)
    # the same checks fail: it read the upstream to the end, long after its client left
    assert play["state"] == "completed" and play["events"] == EVENTS
    assert delay > (EVENTS - LEAVE_AFTER - 1) * GAP
