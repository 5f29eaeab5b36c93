"""requests in process (``ssevcr._urllib3``, at the urllib3 pool its adapter sends through):
recording from the real local upstream of tests/upstream.py over real sockets, then replay with
the upstream stopped, through requests' own stack (urllib3 and http.client parse the replayed
bytes): exact bytes and lines, the recorded chunks on their deadlines, each fault as requests'
own exception, and a capture server that no replayed request reaches."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from client_helpers import (
    BODY,
    CHAT,
    CHAT_URL,
    FIXTURE,
    SLOW,
    CaptureServer,
    assert_arrival_gaps,
    assert_recorded,
    assert_streamed,
    burst_headers,
    chat_cassette,
    fixture_frames,
)
from test_intercept import steer, stop
from upstream import Upstream

import ssevcr
from ssevcr import NoMatchError, _store
from ssevcr._sse import parse


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def test_record_stream_then_replay_with_the_upstream_stopped(
    tmp_path: Path, upstream: Upstream, capture: CaptureServer, session: requests.Session
) -> None:
    path = tmp_path / "rec.msgpack"
    headers = {"authorization": "Bearer sk-live-1234", **steer(FIXTURE, "rq", chunks="10")}
    with ssevcr.use_cassette(path, record="once") as cas:
        r = session.post(upstream.url + CHAT_URL, json=CHAT, headers=headers, stream=True)
        lines = list(r.iter_lines())
    assert [line for line in lines if line] == [line for line in BODY.split(b"\n") if line]
    sent = upstream.exchange("rq").sent
    stop(upstream)
    recorded = assert_recorded(path, sent, upstream.url + CHAT_URL)
    assert cas.saved

    # replay: the upstream is gone; the client points at a capture server that must see nothing
    with ssevcr.use_cassette(path) as cas:
        t0 = time.monotonic()
        r = session.post(capture.url + CHAT_URL, json=CHAT, stream=True)
        arrived, pieces = [], []
        for piece in r.iter_content(chunk_size=None):
            pieces.append(piece)
            arrived.append(time.monotonic() - t0)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert b"".join(pieces) == BODY
    assert_streamed(list(zip(arrived, pieces, strict=True)), recorded.response)
    assert len(cas.plays) == 1 and not cas.misses
    assert capture.connections == 0 and capture.received == b""


def test_a_slow_consumer_does_not_move_the_recorded_chunks(
    tmp_path: Path, upstream: Upstream, session: requests.Session
) -> None:
    """A consumer that works 150 ms after each chunk: the recorded chunks keep the upstream's
    gaps (a burst of two, together), as urllib3's socket reads brought them."""
    path = tmp_path / "slow.msgpack"
    with ssevcr.use_cassette(path, record="all"):
        r = session.post(
            upstream.url + CHAT_URL, json=CHAT, headers=burst_headers("rqslow"), stream=True
        )
        for _ in r.iter_content(chunk_size=None):
            time.sleep(SLOW)
    assert_arrival_gaps(path, upstream.exchange("rqslow").sent)


def test_iter_lines_and_a_plain_read_replay_the_same_text(
    tmp_path: Path, capture: CaptureServer, session: requests.Session
) -> None:
    path = tmp_path / "c.msgpack"
    chat_cassette(path, count=2)
    with ssevcr.use_cassette(path, timing="instant") as cas:
        r = session.post(capture.url + CHAT_URL, json=CHAT, stream=True)
        lines = [line for line in r.iter_lines(decode_unicode=True) if line]
        whole = session.post(capture.url + CHAT_URL, json=CHAT).content
    assert lines == [line for line in BODY.decode().split("\n") if line]
    assert whole == BODY and len(cas.plays) == 2
    assert capture.connections == 0


def test_a_gzip_recording_replays_encoded_and_requests_decodes_it(
    tmp_path: Path, upstream: Upstream, session: requests.Session
) -> None:
    path = tmp_path / "gz.msgpack"
    with ssevcr.use_cassette(path, record="once"):
        r = session.post(upstream.url + CHAT_URL, json=CHAT, headers=steer(FIXTURE, gzip="1"))
        assert r.content == BODY
    stop(upstream)
    (recorded,) = _store.load(path).interactions
    assert recorded.response.header("content-encoding") == "gzip"
    assert recorded.response.body != BODY  # kept as it came: compressed
    with ssevcr.use_cassette(path):
        r = session.post(upstream.url + CHAT_URL, json=CHAT, stream=True)
        assert r.raw.read(decode_content=False) == recorded.response.body
    with ssevcr.use_cassette(path):
        assert session.post(upstream.url + CHAT_URL, json=CHAT).content == BODY


def test_recorded_gaps_are_replayed_on_absolute_deadlines(
    tmp_path: Path, session: requests.Session
) -> None:
    path = tmp_path / "c.msgpack"
    cassette = chat_cassette(path, gap=0.02, headers_at=0.05)
    with ssevcr.use_cassette(path):
        t0 = time.monotonic()
        r = session.post("https://api.openai.com" + CHAT_URL, json=CHAT, stream=True)
        head_at = time.monotonic() - t0
        pieces = [(time.monotonic() - t0, p) for p in r.iter_content(chunk_size=None)]
    assert head_at >= 0.05 - 0.001
    assert_streamed(pieces, cassette.interactions[0].response)


@pytest.mark.parametrize(
    ("fault", "error", "events"),
    [
        ("truncate:after=3,end=abort", requests.exceptions.ChunkedEncodingError, 3),
        ("truncate:after=3,end=reset", requests.exceptions.ChunkedEncodingError, 3),
        ("stall:before=3,for=forever", requests.exceptions.ConnectionError, 2),
    ],
)
def test_faults_are_requests_own_exceptions_mid_stream(
    tmp_path: Path, session: requests.Session, fault: str, error: type[Exception], events: int
) -> None:
    path = tmp_path / "c.msgpack"
    chat_cassette(path)
    got = []
    with ssevcr.use_cassette(path, timing="instant", faults=[fault]) as cas:
        r = session.post("https://api.openai.com" + CHAT_URL, json=CHAT, stream=True, timeout=0.3)
        with pytest.raises(error) as info:
            for piece in r.iter_content(chunk_size=None):
                got.append(piece)
    frames = fixture_frames()
    assert b"".join(got) == b"".join(frames[:events])  # every byte before the fault
    assert len(parse(b"".join(got)).events) == events
    assert cas.fired == [fault]
    if "reset" in fault:
        assert "Connection reset by peer" in str(info.value)
    if "stall" in fault:
        assert "Read timed out" in str(info.value)


def test_a_head_later_than_the_read_timeout_is_a_read_timeout(
    tmp_path: Path, session: requests.Session
) -> None:
    path = tmp_path / "c.msgpack"
    chat_cassette(path, headers_at=5.0)
    with ssevcr.use_cassette(path):
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            session.post("https://api.openai.com" + CHAT_URL, json=CHAT, timeout=(1, 0.2))
    assert 0.19 <= time.monotonic() - started < 3


def test_a_miss_raises_and_new_episodes_records_it(
    tmp_path: Path, upstream: Upstream, session: requests.Session
) -> None:
    path = tmp_path / "c.msgpack"
    chat_cassette(path)
    other = {**CHAT, "model": "gpt-other"}
    with ssevcr.use_cassette(path) as cas, pytest.raises(NoMatchError, match="gpt-other"):
        session.post(upstream.url + CHAT_URL, json=other)
    assert len(cas.misses) == 1 and not upstream.exchanges
    with ssevcr.use_cassette(path, record="new_episodes") as cas:
        assert session.post(upstream.url + CHAT_URL, json=CHAT).content == BODY  # replayed
        r = session.post(upstream.url + CHAT_URL, json=other, headers=steer(FIXTURE, "new"))
        assert r.content == BODY  # from the upstream
    assert len(upstream.exchanges) == 1 and not cas.misses
    assert len(_store.load(path).interactions) == 2


def test_ignore_hosts_pass_through_unrecorded(
    tmp_path: Path, upstream: Upstream, session: requests.Session
) -> None:
    path = tmp_path / "c.msgpack"
    with ssevcr.use_cassette(path, record="all", ignore_localhost=True) as cas:
        assert session.get(upstream.url + "/health").json()["ok"]
    assert len(upstream.exchanges) == 1 and not cas.recorded and not path.exists()
    chat_cassette(path)
    with ssevcr.use_cassette(path, ignore_hosts=["127.0.0.1"]) as cas:
        assert session.get(upstream.url + "/health").json()["ok"]
    assert len(upstream.exchanges) == 2 and not cas.plays and not cas.misses


def test_the_pool_is_restored_after_the_cassette_and_requests_is_left_alone(
    tmp_path: Path,
) -> None:
    """requests is intercepted at urllib3's pool (``HTTPConnectionPool.urlopen``, which its
    ``HTTPAdapter`` calls): the adapter itself is never patched."""
    from urllib3.connectionpool import HTTPConnectionPool

    chat_cassette(tmp_path / "c.msgpack")
    send, urlopen = requests.adapters.HTTPAdapter.send, HTTPConnectionPool.urlopen
    with ssevcr.use_cassette(tmp_path / "c.msgpack"):
        assert HTTPConnectionPool.urlopen is not urlopen
        assert requests.adapters.HTTPAdapter.send is send
    assert HTTPConnectionPool.urlopen is urlopen
