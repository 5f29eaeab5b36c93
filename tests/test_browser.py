"""The chat UI example (examples/chat-ui/) in headless Chromium against a real replay server.

The pages come from one origin (a stdlib static server), the stream from another (the replay
server with CORS, as a thread through the programmatic API or as an ``ssevcr replay --cors``
child process), over real sockets: the browser does the preflight, the chunked decoding, the
ReadableStream reads and the EventSource parsing. What the page shows is compared with what the
cassette's bytes say, derived with ssevcr's own parser, never written out by hand.

Needs Playwright for Python and a Chromium binary (Debian's ``chromium``; ``SSEVCR_CHROMIUM``
points elsewhere). Without them the tests skip locally and FAIL when ``CI`` is set.
Screenshots of every state go to a temporary directory, or to ``SSEVCR_SCREENSHOTS`` if set.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from replay_helpers import EXAMPLES, OPENAI_CHAT, ROOT, example_path, expected, interaction

from ssevcr import _store
from ssevcr._cassette import Cassette, Interaction, Request, Response
from ssevcr._faults import Drop, Duplicate, Truncate, parse_fault
from ssevcr._player import Player
from ssevcr._pytest_sweep import SweepFault
from ssevcr._server_thread import ServerThread
from ssevcr._sse import parse
from ssevcr._stats import arrivals

CHAT_UI = ROOT / "examples" / "chat-ui"
EVENTSOURCE = "anthropic-text-eventsource"
SSEVCR = str(Path(sys.executable).parent / "ssevcr")
CONFORMANCE = ROOT / "tests" / "fixtures" / "sse_conformance.json"
PAGE_TIMEOUT = 2.0  # the chat page's default inactivity timeout (seconds)
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ERRORS = {
    "network",
    "http",
    "bad-type",
    "aborted",
    "provider",
    "bad-event",
    "incomplete",
    "timeout",
}
TERMINAL = {"done", *ERRORS}


def _missing(reason: str) -> None:
    """No browser here: skip locally, fail in CI (a browser test must never vanish there)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def _load_module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# what the cassettes say (our parser, on the recorded bytes)


def chat_text(body: bytes) -> str:
    return expected(body)[0]


def body_through_event(body: bytes, n: int) -> bytes:
    """The recorded body up to the end of event ``n`` (1-based), as a fault counting events cuts
    it."""
    return body[: parse(body).events[n - 1].end]


def content_span(name: str) -> tuple[float, float]:
    """Recorded arrival (seconds from the request) of the first and the last event carrying text."""
    resp = interaction(name).response
    timed, _ = arrivals((c.at, c.data) for c in resp.chunks)
    times = [
        at
        for frame, at in timed
        if getattr(frame, "data", "").startswith("{") and chat_text(frame.raw)
    ]
    return times[0], times[-1]


# ---------------------------------------------------------------------------------------------
# fixtures: browser, static pages, replay servers


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    chromium = os.environ.get("SSEVCR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        _missing(f"no Chromium at {chromium} (apt-get install chromium, or set SSEVCR_CHROMIUM)")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    except PlaywrightError:
        pw.stop()
        raise  # a browser that is there but cannot start is a failure, not a skip
    yield b
    b.close()
    pw.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 900, "height": 700})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.set_default_timeout(15_000)
    yield p
    context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="module")
def static() -> Iterator[str]:
    """The example pages, served by examples/chat-ui/serve.py on their own port (their own
    origin)."""
    server: ThreadingHTTPServer = _load_module(CHAT_UI / "serve.py").start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("SSEVCR_SCREENSHOTS")
    path = Path(wanted) if wanted else tmp_path_factory.mktemp("browser-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def replay() -> Iterator[Callable[..., ServerThread]]:
    """Start a replay server (a thread, CORS on, each interaction once) for an example cassette
    (its name, or a path)."""
    started: list[ServerThread] = []

    def start(
        name: str, *, timing: str = "original", faults: tuple[str, ...] = (), cors: bool = True
    ) -> ServerThread:
        path = name if "/" in name else example_path(name)
        player = Player.create([path], timing=timing, faults=list(faults))
        server = ServerThread(player, cors=cors, log=lambda line: None).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.close()


class Replay:
    """``ssevcr replay CASSETTE --cors --once ...`` as a child process; ``stop()`` -> its
    summary."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [SSEVCR, "replay", *args, "--cors", "--once", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline().decode() if ready else ""
        match = re.search(r"serving (http://127\.0\.0\.1:\d+)", line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"no ready line: {line!r} {self.proc.communicate()[1].decode()!r}")
        self.url = match.group(1)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err.decode()
        return err.decode()


@pytest.fixture
def cli_replay() -> Iterator[Callable[..., Replay]]:
    started: list[Replay] = []

    def start(*args: str) -> Replay:
        r = Replay(*args)
        started.append(r)
        return r

    yield start
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


# ---------------------------------------------------------------------------------------------
# driving the pages


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the click
    state: str
    text: str


def open_chat(page: Any, static: str, api: str, **params: str) -> None:
    page.goto(f"{static}/index.html?{urlencode({'api': api, **params})}")
    page.wait_for_function("document.body.dataset.state === 'idle'")


def watch(
    page: Any, button: str, *, shots: Path | None = None, name: str = "", limit: float = 15.0
) -> list[Sample]:
    """Click, then sample the rendered answer and the state until the page settles."""
    read = "() => [document.body.dataset.state, document.getElementById('answer').textContent]"
    samples: list[Sample] = []
    t0 = time.monotonic()
    page.click(button)
    shot_taken = False
    while True:
        state, text = page.evaluate(read)
        now = time.monotonic() - t0
        samples.append(Sample(now, state, text))
        if state in TERMINAL or now > limit:
            break
        if shots is not None and not shot_taken and state == "streaming" and len(text) > 40:
            page.screenshot(path=str(shots / f"{name}-streaming.png"))
            shot_taken = True
        time.sleep(0.025)
    return samples


def stats(page: Any) -> dict[str, int]:
    raw = page.evaluate("() => ({...document.getElementById('stats').dataset})")
    return {k: int(v) for k, v in raw.items()}


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# ---------------------------------------------------------------------------------------------
# fetch + ReadableStream


def test_text_grows_with_the_recorded_timing(
    page: Any, static: str, cli_replay: Callable[..., Replay], shots: Path
) -> None:
    body = interaction(OPENAI_CHAT).response.body
    recorded = chat_text(body)
    first_at, last_at = content_span(OPENAI_CHAT)
    server = cli_replay(
        example_path(OPENAI_CHAT)
    )  # timing original: what `ssevcr replay --cors` does
    open_chat(page, static, server.url)
    samples = watch(page, "#send", shots=shots, name="chat")
    page.screenshot(path=str(shots / "chat-done.png"))

    final = samples[-1]
    assert final.state == "done", page.text_content("#detail")
    assert final.text == recorded
    # the page only ever appends: every sample is a prefix of every later one
    for earlier, later in zip(samples, samples[1:], strict=False):
        assert later.text.startswith(earlier.text), (earlier, later)
    partial = sorted({s.text for s in samples if s.text and s.text != recorded}, key=len)
    assert len(partial) >= 4, f"the text did not grow in steps: {[s.text[:20] for s in samples]}"
    # the stream is paced as recorded, not delivered at once: no text before the first content
    # event was due, and the text takes most of its recorded span to complete (load only delays)
    first_seen = next(s.at for s in samples if s.text)
    complete = next(s.at for s in samples if s.text == recorded)
    assert first_seen >= 0.8 * first_at
    assert complete - first_seen >= 0.5 * (last_at - first_at), (
        first_seen,
        complete,
        first_at,
        last_at,
    )
    summary = server.stop()
    assert "1 play, 0 misses" in summary


def test_truncated_stream_shows_the_aborted_state(
    page: Any, static: str, replay: Callable[..., ServerThread], shots: Path
) -> None:
    body = interaction(OPENAI_CHAT).response.body
    server = replay(OPENAI_CHAT, faults=("truncate:after=5,end=abort",))
    open_chat(page, static, server.url)
    final = watch(page, "#send")[-1]
    page.screenshot(path=str(shots / "chat-aborted.png"))
    assert final.state == "aborted", page.text_content("#detail")
    assert "mid-stream" in page.text_content("#detail")
    assert server.player.plays[0].schedule.fired == ("truncate:after=5,end=abort",)
    # What arrived stays on the page, as whole events. How much arrives is up to Chromium: it
    # drops the bytes still unread when it learns the chunked body broke (here event 5, sent in
    # the same instant as the close, in about one run out of three; under load, more).
    seen = stats(page)
    k = seen["events"]
    assert 0 <= k <= 5
    assert seen["bytes"] == (len(body_through_event(body, k)) if k else 0)
    assert final.text == (chat_text(body_through_event(body, k)) if k else "")


def test_stalled_stream_fires_the_page_timeout(
    page: Any, static: str, replay: Callable[..., ServerThread], shots: Path
) -> None:
    body = interaction(OPENAI_CHAT).response.body
    server = replay(OPENAI_CHAT, faults=("stall:before=3,for=forever",))
    open_chat(page, static, server.url)
    samples = watch(page, "#send")
    page.screenshot(path=str(shots / "chat-timeout.png"))
    final = samples[-1]
    assert final.state == "timeout", page.text_content("#detail")
    assert final.text == chat_text(body_through_event(body, 2))
    # the page's own timer: 2 s after the last byte (event 2, due ~0.45 s after the request),
    # never sooner (a sample can only see it later)
    assert final.at >= PAGE_TIMEOUT + 0.8 * content_span(OPENAI_CHAT)[0]
    assert final.at < PAGE_TIMEOUT + 8  # loose: a loaded machine is slow, not stuck
    # the page gave up for real: it aborted the request, and the server saw the connection go
    assert wait_for(lambda: server.call(lambda: server.server.connections) == 0)


@pytest.mark.parametrize(
    "faults",
    [("rechunk:size=1",), ("rechunk:size=1", "slow:bps=6000")],
    ids=["rechunk-1", "rechunk-1-slow"],
)
def test_one_byte_chunks_render_exactly_the_recorded_text(
    page: Any,
    static: str,
    shots: Path,
    replay: Callable[..., ServerThread],
    faults: tuple[str, ...],
) -> None:
    body = interaction(OPENAI_CHAT).response.body
    server = replay(OPENAI_CHAT, timing="instant" if len(faults) > 1 else "original", faults=faults)
    # what is rendered, not when the page gives up: 10 s without a byte, not 2 s (a loaded
    # machine running two suites once kept Chromium from reading for 2 s)
    open_chat(page, static, server.url, timeout="10000")
    final = watch(page, "#send")[-1]
    page.screenshot(path=str(shots / f"chat-{'-'.join(f.split(':')[0] for f in faults)}-done.png"))
    assert final.state == "done", page.text_content("#detail")
    assert final.text == chat_text(body)
    schedule = server.player.plays[0].schedule
    assert set(faults) <= set(schedule.fired)
    assert all(
        len(step.data) == 1 for step in schedule.steps
    )  # the server really sent 1-byte chunks
    seen = stats(page)
    assert seen["bytes"] == len(body) and seen["events"] == len(parse(body).events)
    # 1-byte chunks due at the same instant go out in one write and Chromium reads them at once;
    # paced by slow:bps (1/6000 s a byte) they reach the page a few bytes per read
    if "slow" in faults[-1]:
        assert seen["splitReads"] > seen["events"], seen


def test_provider_error_event_shows_the_provider_state(
    page: Any, static: str, shots: Path, replay: Callable[..., ServerThread]
) -> None:
    body = interaction(OPENAI_CHAT).response.body
    server = replay(
        OPENAI_CHAT, timing="scale:0.3", faults=("error:after=6,message=The server is overloaded",)
    )
    open_chat(page, static, server.url)
    final = watch(page, "#send")[-1]
    page.screenshot(path=str(shots / "chat-provider-error.png"))
    assert final.state == "provider"
    assert page.text_content("#detail") == "The server is overloaded"
    assert final.text == chat_text(body_through_event(body, 6))


def test_missing_done_shows_the_incomplete_state(
    page: Any, static: str, shots: Path, replay: Callable[..., ServerThread]
) -> None:
    body = interaction(OPENAI_CHAT).response.body
    assert parse(body).events[-1].data == "[DONE]"
    server = replay(OPENAI_CHAT, timing="instant", faults=("drop:event=last",))
    open_chat(page, static, server.url)
    final = watch(page, "#send")[-1]
    page.screenshot(path=str(shots / "chat-incomplete.png"))
    assert final.state == "incomplete"
    assert page.text_content("#detail") == "the stream ended without [DONE]"
    assert final.text == chat_text(body)  # every text event came; only the end marker is missing


def test_without_cors_the_browser_refuses_the_stream(
    page: Any, static: str, shots: Path, replay: Callable[..., ServerThread]
) -> None:
    server = replay(OPENAI_CHAT, timing="instant", cors=False)
    open_chat(page, static, server.url)
    final = watch(page, "#send")[-1]
    page.screenshot(path=str(shots / "chat-network-error.png"))
    assert final.state == "network"
    assert final.text == ""
    assert server.player.plays == []  # the preflight was refused: the POST never went out


def test_a_request_the_cassette_lacks_shows_the_miss(
    page: Any, static: str, shots: Path, replay: Callable[..., ServerThread]
) -> None:
    server = replay(OPENAI_CHAT, timing="instant")
    open_chat(page, static, server.url)
    page.fill("#prompt", "What's the weather like in Paris?")
    final = watch(page, "#send")[-1]
    page.screenshot(path=str(shots / "chat-miss.png"))
    assert final.state == "http"
    detail = page.text_content("#detail")
    assert detail.startswith("HTTP 404: ssevcr: no recorded interaction")
    assert "Paris" in detail and len(server.player.misses) == 1


def test_corrupt_utf8_shows_the_bad_event_state(
    page: Any, static: str, replay: Callable[..., ServerThread]
) -> None:
    """An API's stream is UTF-8: the page decodes it strictly, so a damaged byte is an error, not
    a U+FFFD in the answer (the standard's lenient decoding stays the decoder's default)."""
    body = interaction(OPENAI_CHAT).response.body
    server = replay(OPENAI_CHAT, timing="instant", faults=("corrupt:event=17,how=utf8",))
    open_chat(page, static, server.url)
    final = watch(page, "#send")[-1]
    assert final.state == "bad-event"
    assert page.text_content("#detail").startswith("the stream is not valid UTF-8")
    # the read holding the bad byte is refused whole: what shows is a prefix of the text before
    assert chat_text(body_through_event(body, 16)).startswith(final.text)


# ---------------------------------------------------------------------------------------------
# the chat page swept over the quick catalogue (the pytest sweep, one case per fault)

SWEEP_STALL = "4s"  # the long stalls: past the page's own 2 s timeout; the short ones 0.4 s


def unseen(fault: SweepFault, body: bytes) -> str | None:
    """The text the page shows for a fault no page can see, else None. An OpenAI chat stream
    numbers nothing, so a middle event dropped or sent twice leaves a well-formed stream that
    ends with [DONE]: the page says "done" with the text the fault left."""
    if fault.spec is None:
        return None
    f = parse_fault(fault.spec)
    events = parse(body).events
    if not isinstance(f, Drop | Duplicate) or f.event in ("last", len(events)):
        return None  # a dropped [DONE] is seen (incomplete); a repeated one changes nothing
    assert isinstance(f.event, int)
    e = events[f.event - 1]
    cut = (
        body[: e.start] + body[e.end :] if isinstance(f, Drop) else body[: e.end] + body[e.start :]
    )
    return chat_text(cut)


def cut_after_the_end(fault: SweepFault) -> bool:
    """A connection broken (abort, reset) right after the last event: lossless, since every
    byte went out, and the page ends "done" when it read them first. But Chromium errors the
    body's ReadableStream when it learns the chunked body broke, and an errored stream drops the
    chunks still queued: when the bytes and the break arrive together (instant timing) the page
    may never see [DONE], and says "aborted", which is true of the connection."""
    f = parse_fault(fault.spec) if fault.spec else None
    return isinstance(f, Truncate) and f.after == "last" and f.end != "close"


@pytest.mark.ssevcr(
    "cassettes/examples/openai-chat-text.msgpack",
    sweep="quick",
    timing="instant",
    sweep_stall=SWEEP_STALL,
    cors=True,
)
def test_chat_page_under_every_quick_fault(
    page: Any, static: str, ssevcr_cassette: Any, ssevcr_server: ServerThread, ssevcr_fault: Any
) -> None:
    """A lossy fault ends in one of the page's error states, never "done"; a lossless one in
    "done" with exactly the recorded text. The two faults no page can see are stated as such."""
    body = ssevcr_cassette.cassette.interactions[0].response.body
    clean = chat_text(body)
    open_chat(page, static, ssevcr_server.url)
    final = watch(page, "#send")[-1]
    detail = page.text_content("#detail")
    assert ssevcr_cassette.fired == ([ssevcr_fault.spec] if ssevcr_fault else [])
    left = unseen(ssevcr_fault, body)
    if left is not None:
        assert left != clean
        assert (final.state, final.text) == ("done", left)
    elif ssevcr_fault.lossy:
        assert final.state in ERRORS, f"the page says {final.state!r} ({detail!r})"
        assert clean.startswith(final.text)  # what it shows is what arrived, nothing invented
    elif cut_after_the_end(ssevcr_fault) and final.state != "done":
        assert final.state == "aborted", f"the page says {final.state!r} ({detail!r})"
        assert clean.startswith(final.text)
    else:
        assert final.state == "done", f"the page says {final.state!r} ({detail!r})"
        assert final.text == clean


# ---------------------------------------------------------------------------------------------
# EventSource


def event_rows(page: Any) -> list[tuple[str, str]]:
    rows = page.evaluate(
        "() => [...document.querySelectorAll('#events li')]"
        ".map(li => [li.dataset.type, li.querySelector('code').textContent])"
    )
    return [(t, d) for t, d in rows]


def test_eventsource_page_renders_the_events_of_its_cassette(
    page: Any, static: str, shots: Path, cli_replay: Callable[..., Replay]
) -> None:
    resp = interaction(EVENTSOURCE).response
    events = parse(resp.body).events
    server = cli_replay(example_path(EVENTSOURCE))
    page.goto(f"{static}/eventsource.html?{urlencode({'api': server.url})}")
    page.click("#start")
    page.wait_for_function("['done', 'aborted', 'provider'].includes(document.body.dataset.state)")
    page.screenshot(path=str(shots / "eventsource-done.png"), full_page=True)
    assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#detail")
    assert event_rows(page) == [(e.type, e.data) for e in events]
    deltas = [json.loads(e.data)["delta"] for e in events if e.type == "content_block_delta"]
    assert page.text_content("#answer") == "".join(
        d["text"] for d in deltas if d["type"] == "text_delta"
    )
    summary = server.stop()
    assert "1 play, 0 misses" in summary  # one GET that matched, no reconnect


def test_eventsource_page_stops_on_a_cut_stream(
    page: Any, static: str, shots: Path, replay: Callable[..., ServerThread]
) -> None:
    events = parse(interaction(EVENTSOURCE).response.body).events
    server = replay(EVENTSOURCE, timing="instant", faults=("truncate:after=4,end=close",))
    page.goto(f"{static}/eventsource.html?{urlencode({'api': server.url})}")
    page.click("#start")
    page.wait_for_function("['done', 'aborted', 'provider'].includes(document.body.dataset.state)")
    page.screenshot(path=str(shots / "eventsource-aborted.png"), full_page=True)
    assert page.evaluate("document.body.dataset.state") == "aborted"
    assert event_rows(page) == [(e.type, e.data) for e in events[:4]]
    assert len(server.player.plays) == 1


def test_eventsource_page_tells_the_provider_error_event_from_a_broken_connection(
    page: Any, static: str, shots: Path, replay: Callable[..., ServerThread]
) -> None:
    events = parse(interaction(EVENTSOURCE).response.body).events
    server = replay(EVENTSOURCE, timing="instant", faults=("error:after=3,message=Overloaded",))
    page.goto(f"{static}/eventsource.html?{urlencode({'api': server.url})}")
    page.click("#start")
    page.wait_for_function("['done', 'aborted', 'provider'].includes(document.body.dataset.state)")
    page.screenshot(path=str(shots / "eventsource-provider-error.png"), full_page=True)
    assert page.evaluate("document.body.dataset.state") == "provider"
    assert page.text_content("#detail") == "Overloaded"
    rows = event_rows(page)
    assert rows[:3] == [(e.type, e.data) for e in events[:3]]
    assert [t for t, _ in rows[3:]] == [
        "error"
    ]  # Anthropic's own error event, as the fault injects it


# ---------------------------------------------------------------------------------------------
# WebSocket: examples/chat-ui/realtime.html against a replayed Realtime conversation

REALTIME = str(EXAMPLES / "websocket" / "openai-realtime-text.msgpack")
SETTLED_WS = (
    "['done', 'closed', 'provider', 'bad-event', 'timeout'].includes(document.body.dataset.state)"
)


def realtime(page: Any, static: str, api: str) -> dict[str, Any]:
    """Open the page, press Ask, wait until it settles; what it shows."""
    page.goto(f"{static}/realtime.html?{urlencode({'api': api})}")
    page.click("#start")
    page.wait_for_function(SETTLED_WS)
    shown: dict[str, Any] = page.evaluate(
        """() => ({
             state: document.body.dataset.state,
             detail: document.getElementById('detail').textContent,
             answer: document.getElementById('answer').textContent,
             code: document.getElementById('code').textContent,
             messages: [...document.querySelectorAll('#messages li')].map((li) => li.textContent),
           })"""
    )
    return shown


def server_texts() -> list[str]:
    ws = _store.load(REALTIME).interactions[0].websocket
    assert ws is not None
    return [m.data.decode() for m in ws.server_messages]


def deltas(texts: list[str]) -> str:
    events = [json.loads(t) for t in texts]
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def test_realtime_page_shows_the_replayed_conversation(
    page: Any, static: str, shots: Path, cli_replay: Callable[..., Replay]
) -> None:
    """``ssevcr replay`` of the WebSocket cassette to Chromium's own WebSocket: every server
    message as recorded, in order, the text they stream, and the page's clean close."""
    server = cli_replay(REALTIME)
    shown = realtime(page, static, server.url)
    page.screenshot(path=str(shots / "realtime-done.png"), full_page=True)
    assert shown["state"] == "done", shown["detail"]
    assert shown["messages"] == server_texts()
    assert shown["answer"] == deltas(server_texts()) != ""
    assert wait_for(lambda: page.text_content("#code") == "1000")  # the close the page began
    assert "1 play, 0 misses" in server.stop()


@pytest.mark.parametrize(
    ("fault", "code"),
    [("close:after=6,code=4000,reason=going away", "4000"), ("close:after=6,code=1006", "1006")],
    ids=["close-4000", "close-1006"],
)
def test_realtime_page_shows_the_close_code_of_a_close_fault(
    page: Any, static: str, shots: Path, replay: Callable[..., ServerThread], fault: str, code: str
) -> None:
    """The server closes after its 6th message (a close frame with 4000, or the TCP connection
    dropped: 1006 in the browser): the page stops there and shows the code."""
    server = replay(REALTIME, timing="instant", faults=(fault,))
    shown = realtime(page, static, server.url)
    page.screenshot(path=str(shots / f"realtime-{code}.png"), full_page=True)
    assert shown["state"] == "closed"
    assert shown["code"] == code
    assert shown["messages"] == server_texts()[:6]
    assert shown["answer"] == deltas(server_texts()[:6])
    assert server.player.plays[0].schedule.fired == (fault,)


def test_realtime_page_shows_the_providers_error_event(
    page: Any, static: str, replay: Callable[..., ServerThread]
) -> None:
    server = replay(REALTIME, timing="instant", faults=("error:after=5,message=Overloaded",))
    shown = realtime(page, static, server.url)
    assert shown["state"] == "provider"
    assert shown["detail"] == "Overloaded"
    assert shown["messages"][:5] == server_texts()[:5]
    assert json.loads(shown["messages"][5])["type"] == "error"


# ---------------------------------------------------------------------------------------------
# resumption: examples/chat-ui/resume.html lets EventSource reconnect with Last-Event-ID


def resume_cassette(n: int = 8) -> Cassette:
    """``n`` text events with ids, a ``retry: 100`` first (the browser reconnects after 100 ms,
    not its default 3 s) and a final ``done`` event."""
    chunks: list[tuple[float, bytes]] = [(0.01, b"retry: 100\n\n")]
    for i in range(1, n + 1):
        data = json.dumps({"n": i, "text": f"w{i} "}).encode()
        chunks.append((0.01 + 0.01 * i, b"id: %d\ndata: %s\n\n" % (i, data)))
    chunks.append((0.02 + 0.01 * n, b"id: %d\nevent: done\ndata: {}\n\n" % (n + 1)))
    response = Response.from_chunks(
        200, chunks, headers=(("content-type", "text/event-stream"),), headers_at=0.005
    )
    return Cassette(interactions=(Interaction(Request("GET", "http://x/events"), response),))


def resume_page(page: Any, static: str, faults: tuple[str, ...]) -> tuple[ServerThread, str]:
    player = Player.create(resume_cassette(), timing="instant", faults=list(faults), repeat=True)
    server = ServerThread(player, cors=True, log=lambda line: None).start()
    page.goto(f"{static}/resume.html?{urlencode({'api': server.url})}")
    page.click("#start")
    page.wait_for_function("['done', 'closed'].includes(document.body.dataset.state)")
    return server, page.evaluate("document.body.dataset.state")


ALL_TEXT = "".join(f"w{i} " for i in range(1, 9))


@pytest.mark.parametrize(
    ("resume", "connections", "duplicates"),
    [(None, 2, 0), ("resume:restart", 2, 3)],
    ids=["resumed", "restart"],
)
def test_eventsource_resumes_after_a_cut_and_the_text_is_exact_and_not_duplicated(
    page: Any,
    static: str,
    shots: Path,
    resume: str | None,
    connections: int,
    duplicates: int,
) -> None:
    faults = ("truncate:after=3,end=close,times=1", *([resume] if resume else []))
    server, state = resume_page(page, static, faults)
    try:
        page.screenshot(path=str(shots / f"resume-{resume or 'resumed'}.png"), full_page=True)
        assert state == "done"
        assert page.text_content("#answer") == ALL_TEXT
        assert page.text_content("#connections") == str(connections)
        assert page.text_content("#duplicates") == str(duplicates)
        first, again = server.player.plays[:2]
        sent = dict((k.lower(), v) for k, v in again.request.headers)
        assert sent["last-event-id"] == "3"  # the browser's own header
        assert again.resumed_after == ("3" if resume is None else None)
        assert first.delivered is not None and first.delivered.events == 3
    finally:
        server.close()


def test_eventsource_stops_when_the_resumption_is_refused(
    page: Any, static: str, shots: Path
) -> None:
    server, state = resume_page(
        page, static, ("truncate:after=3,end=close,times=1", "resume:refuse")
    )
    try:
        page.screenshot(path=str(shots / "resume-refused.png"), full_page=True)
        assert state == "closed"
        assert page.text_content("#answer") == "w1 w2 w3 "
        time.sleep(0.5)  # (a reconnection would come after 100 ms)
        assert len(server.player.plays) == 2
        assert server.player.plays[1].schedule.status == 204
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------
# the page's SSE decoder, in the browser, on the WHATWG/WPT cases ssevcr's parser passes


def test_page_decoder_passes_the_conformance_cases(page: Any, static: str) -> None:
    """The same cases as tests/test_sse.py (parsing cases only), fed to examples/chat-ui/sse.js
    whole, one byte at a time and in the case's own chunking."""
    cases = [
        c for c in json.loads(CONFORMANCE.read_text("utf-8")) if not c["expected_fail_connection"]
    ]
    runs = []
    for c in cases:
        data = base64.b64decode(c["input_bytes_b64"])
        chunkings = {"whole": [data], "bytewise": [data[i : i + 1] for i in range(len(data))]}
        if c["chunks_b64"] is not None:
            chunkings["chunked"] = [base64.b64decode(x) for x in c["chunks_b64"]]
        for mode, chunks in chunkings.items():
            runs.append(
                {
                    "id": f"{c['id']}-{mode}",
                    "initial": c["initial_last_event_id"],
                    "chunks": [list(ch) for ch in chunks],
                }
            )
    page.goto(f"{static}/index.html")
    results = page.evaluate(
        """async (runs) => {
             const { SSEDecoder } = await import('./sse.js');
             return runs.map((run) => {
               const d = new SSEDecoder(run.initial);
               const events = [];
               for (const chunk of run.chunks) events.push(...d.decode(new Uint8Array(chunk)));
               events.push(...d.flush());
               return { id: run.id, events: events.map((e) => [e.type, e.data, e.lastEventId]),
                        lastEventId: d.lastEventId, retry: d.retry };
             });
           }""",
        runs,
    )
    by_id = {r["id"]: r for r in results}
    assert len(by_id) == len(runs) >= 2 * len(cases)
    for c in cases:
        want = [[e["type"], e["data"], e["lastEventId"]] for e in c["expected_events"]]
        state = c["expected_final_state"]
        for run_id in (r["id"] for r in runs if r["id"].rsplit("-", 1)[0] == c["id"]):
            got = by_id[run_id]
            assert got["events"] == want, run_id
            assert (got["lastEventId"], got["retry"]) == (
                state["last_event_id"],
                state["reconnection_time_ms"],
            ), run_id


# ---------------------------------------------------------------------------------------------
# the EventSource cassette (no browser needed)


def run_builder(script: str, out: Path) -> None:
    """Run one of examples/chat-ui's build scripts as its docs say, into ``out``."""
    r = subprocess.run(
        [sys.executable, str(CHAT_UI / script), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr


def test_eventsource_cassette_rebuilds_identically_from_anthropic_text(tmp_path: Path) -> None:
    run_builder("build_eventsource_cassette.py", tmp_path)
    built = tmp_path / f"{EVENTSOURCE}.msgpack"
    assert built.read_bytes() == (EXAMPLES / f"{EVENTSOURCE}.msgpack").read_bytes()
    it, source = interaction(EVENTSOURCE), interaction("anthropic-text")
    assert it.response == source.response  # the same bytes, chunking and synthesized timing
    assert (it.request.method, it.request.body) == ("GET", b"")
    meta = _store.load(built).meta
    assert meta["timing"] == "synthesized" and "synthesized" in meta["request"]


def test_realtime_cassette_rebuilds_identically(tmp_path: Path) -> None:
    run_builder("build_realtime_cassette.py", tmp_path)
    assert (tmp_path / Path(REALTIME).name).read_bytes() == Path(REALTIME).read_bytes()
    assert _store.load(REALTIME).meta["timing"] == "synthesized"
