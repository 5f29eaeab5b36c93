"""urllib3 used directly in process (``ssevcr._urllib3``): ``PoolManager``, ``urllib3.request`` and
pools made by hand, recorded from the real local upstream of tests/upstream.py (HTTP, and HTTPS
with a self-signed certificate) over real sockets, then replayed with the upstream stopped through
urllib3's own stack (http.client and urllib3 parse the replayed bytes): exact bytes, the recorded
chunks on their deadlines (``stream()``, ``read_chunked()``, ``read(amt)``), each fault as
urllib3's own exception, the play's journal, and a capture server that no replayed request
reaches."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import client_helpers as helpers
import pytest
import urllib3
from client_helpers import (
    BODY,
    CHAT,
    CHAT_URL,
    FIXTURE,
    READ_TIMEOUT,
    RECORD_RUN_FAULTS,
    SLOW,
    TEXT,
    CaptureServer,
    assert_arrival_gaps,
    assert_recorded,
    assert_shown_as_replayed,
    burst_headers,
    chat_cassette,
    longest_gap,
)
from test_intercept import steer, stop
from upstream import Script, TLSFiles, Upstream
from urllib3.exceptions import IncompleteRead, MaxRetryError, ProtocolError, ReadTimeoutError
from urllib3.util import Retry

import ssevcr
from ssevcr import NoMatchError, _store
from ssevcr._cassette import Cassette, Interaction, Outcome, Request, Response
from ssevcr._sse import parse

JSON = {"content-type": "application/json"}
PAYLOAD = json.dumps(CHAT).encode()


def timed_stream(response: urllib3.BaseHTTPResponse, t0: float) -> list[tuple[float, bytes]]:
    return [(time.monotonic() - t0, piece) for piece in response.stream(None)]


def test_record_a_stream_live_then_replay_it_with_the_upstream_stopped(
    tmp_path: Path, upstream: Upstream, capture: CaptureServer
) -> None:
    path = tmp_path / "rec.msgpack"
    http = urllib3.PoolManager()
    headers = {**JSON, "authorization": "Bearer sk-live-1234", **steer(FIXTURE, "u3", chunks="10")}
    with ssevcr.use_cassette(path, record="once") as cas:
        t0 = time.monotonic()
        r = http.request(
            "POST", upstream.url + CHAT_URL, body=PAYLOAD, headers=headers, preload_content=False
        )
        live = [(t0 + at, piece) for at, piece in timed_stream(r, t0)]
    sent = upstream.exchange("u3").sent
    stop(upstream)
    assert b"".join(p for _, p in live) == BODY == b"".join(d for _, d in sent)
    # streamed to the client as the upstream sent it, not once the recording ended
    assert live[0][0] < sent[-1][0] - 0.1, (live[0][0], sent[-1][0])
    recorded = assert_recorded(path, sent, upstream.url + CHAT_URL)
    assert cas.saved and recorded.request.body == PAYLOAD

    # replay: the upstream is gone; the pool points at a capture server that must see nothing
    with ssevcr.use_cassette(path) as cas:
        t0 = time.monotonic()
        r = http.request(
            "POST", capture.url + CHAT_URL, body=PAYLOAD, headers=JSON, preload_content=False
        )
        pieces = timed_stream(r, t0)
        assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert b"".join(p for _, p in pieces) == BODY
    assert helpers.text_of(b"".join(p for _, p in pieces)) == TEXT
    helpers.assert_streamed(pieces, recorded.response)
    assert len(cas.plays) == 1 and not cas.misses and not cas.blocked
    assert capture.connections == 0 and capture.received == b""


def test_a_slow_consumer_does_not_move_the_recorded_chunks(
    tmp_path: Path, upstream: Upstream
) -> None:
    """Each piece is stamped when the socket read that brought its first byte returned (a burst
    of two chunks: one read, the second piece from http.client's buffer), not when the consumer
    asked for it (150 ms later)."""
    path = tmp_path / "slow.msgpack"
    with ssevcr.use_cassette(path, record="all"):
        r = urllib3.PoolManager().request(
            "POST",
            upstream.url + CHAT_URL,
            body=PAYLOAD,
            headers={**JSON, **burst_headers("u3slow")},
            preload_content=False,
        )
        for _ in r.stream(None):
            time.sleep(SLOW)
    assert_arrival_gaps(path, upstream.exchange("u3slow").sent)


def test_a_first_chunk_read_with_the_head_is_stamped_when_it_arrived(
    tmp_path: Path, upstream: Upstream
) -> None:
    """The first chunk came in the head's write (it waits in http.client's buffer); the consumer
    asks for it 300 ms later: it is recorded when it came, as the upstream sent it."""
    path = tmp_path / "first.msgpack"
    headers = {**JSON, **steer(FIXTURE, "u3first", chunks="3", gap_ms="30", head_with_first="1")}
    with ssevcr.use_cassette(path, record="all"):
        t0 = time.monotonic()
        r = urllib3.PoolManager().request(
            "POST", upstream.url + CHAT_URL, body=PAYLOAD, headers=headers, preload_content=False
        )
        time.sleep(0.3)
        assert b"".join(r.stream(None)) == BODY
    ex = upstream.exchange("u3first")
    response = _store.load(path).interactions[0].response
    assert response.chunk_at[0] - response.headers_at <= 0.01, response.chunk_at
    assert abs(t0 + response.chunk_at[0] - ex.sent[0][0]) <= 0.04


def test_the_socket_file_watch_matches_pieces_to_reads_by_count() -> None:
    """Over a real socket pair: the bytes buffered with the head count as read at the watch's
    start, each later piece as read by the read that brought its first byte (a piece that
    straddles two reads, by the first), and the watch is taken away at ``stop``."""
    import socket

    from ssevcr._reads import watch_file

    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"HTTP/1.1 200 OK\r\n\r\nab")
        time.sleep(0.02)
        fp = b.makefile("rb")
        assert fp.readline() == b"HTTP/1.1 200 OK\r\n"
        reads = watch_file(fp)
        assert reads is not None
        started = reads.at
        assert fp.read(2) == b"\r\n" and reads.take(2) == started  # (buffered: no read)
        time.sleep(0.05)
        a.sendall(b"cdef")
        assert fp.read(4) == b"abcd"  # "ab" buffered, "cdef" read
        assert reads.take(4) == started  # (its first byte came with the head)
        assert fp.read1(100) == b"ef"
        late = reads.take(2)  # the second read's
        assert late - started >= 0.04
        assert reads.take(0) == late
        reads.stop()
        assert "readinto" not in vars(fp.raw)


def test_https_record_and_replay_through_pools_made_by_hand(
    tmp_path: Path, tls_files: TLSFiles
) -> None:
    path = tmp_path / "tls.msgpack"
    server = Upstream(tls=tls_files).start()
    try:
        pool = urllib3.HTTPSConnectionPool(
            "127.0.0.1", server.port, ca_certs=str(tls_files.cert), assert_hostname="127.0.0.1"
        )
        with ssevcr.use_cassette(path, record="once"):
            r = pool.urlopen(
                "POST",
                CHAT_URL,
                body=PAYLOAD,
                headers={**JSON, **steer(FIXTURE, "tls", chunks="6")},
                preload_content=False,
            )
            recorded_pieces = list(r.read_chunked())
        pool.close()
        assert server.exchange("tls").sent_body == BODY
    finally:
        stop(server)
    assert b"".join(recorded_pieces) == BODY
    (recorded,) = _store.load(path).interactions
    assert recorded.request.url == f"https://127.0.0.1:{server.port}{CHAT_URL}"
    assert list(recorded.response.chunk_sizes) == [len(p) for p in recorded_pieces]

    # replay with the upstream stopped: a new pool made by hand, PoolManager, urllib3.request
    with ssevcr.use_cassette(path, timing="instant", allow_repeats=True) as cas:
        pool = urllib3.HTTPSConnectionPool("127.0.0.1", server.port, ca_certs=str(tls_files.cert))
        r = pool.urlopen("POST", CHAT_URL, body=PAYLOAD, headers=JSON, preload_content=False)
        chunks = list(r.read_chunked())
        whole = urllib3.request("POST", server.url + CHAT_URL, body=PAYLOAD, headers=JSON).data
        manager = urllib3.PoolManager(ca_certs=str(tls_files.cert))
        text = manager.request("POST", server.url + CHAT_URL, body=PAYLOAD, headers=JSON).data
    assert chunks == [c.data for c in recorded.response.chunks]  # one read per recorded chunk
    assert whole == text == BODY and helpers.text_of(whole) == TEXT
    assert len(cas.plays) == 3 and not cas.misses


def test_a_gzip_recording_replays_encoded_and_urllib3_decodes_it(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "gz.msgpack"
    http = urllib3.PoolManager()
    url = upstream.url + CHAT_URL
    with ssevcr.use_cassette(path, record="once"):  # preloaded (urllib3's default)
        r = http.request("POST", url, body=PAYLOAD, headers={**JSON, **steer(FIXTURE, gzip="1")})
        assert r.data == BODY
    stop(upstream)
    (recorded,) = _store.load(path).interactions
    assert recorded.response.header("content-encoding") == "gzip"
    assert recorded.response.body != BODY  # kept as it came: compressed
    with ssevcr.use_cassette(path, allow_repeats=True):
        r = http.request("POST", url, body=PAYLOAD, headers=JSON, preload_content=False)
        assert r.read(decode_content=False) == recorded.response.body
        assert http.request("POST", url, body=PAYLOAD, headers=JSON).data == BODY
        r = http.request("POST", url, body=PAYLOAD, headers=JSON, preload_content=False)
        assert b"".join(r.stream(None, decode_content=True)) == BODY
        r = http.request("POST", url, body=PAYLOAD, headers=JSON, preload_content=False)
        # urllib3's read_chunked does not decode unless told to, from a socket too
        assert b"".join(r.stream(None)) == recorded.response.body


def test_recorded_gaps_are_replayed_on_absolute_deadlines(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    cassette = chat_cassette(path, gap=0.02, headers_at=0.05)
    response = cassette.interactions[0].response
    http = urllib3.PoolManager()
    with ssevcr.use_cassette(path, allow_repeats=True):
        for read in ("stream", "read_chunked", "read1"):
            t0 = time.monotonic()
            r = http.request(
                "POST",
                "https://api.openai.com" + CHAT_URL,
                body=PAYLOAD,
                headers=JSON,
                preload_content=False,
            )
            head_at = time.monotonic() - t0
            assert head_at >= 0.05 - 0.001
            readers = {"stream": r.stream, "read_chunked": r.read_chunked}
            pieces = readers[read](None) if read in readers else iter(r.read1, b"")
            helpers.assert_streamed([(time.monotonic() - t0, p) for p in pieces], response)
        t0 = time.monotonic()  # read(amt) waits for amt bytes, as on a socket
        r = http.request(
            "POST", "https://api.openai.com" + CHAT_URL, body=PAYLOAD, preload_content=False
        )
        got = []
        while piece := r.read(1000):
            got.append((time.monotonic() - t0, piece))
    assert b"".join(p for _, p in got) == BODY
    assert [len(p) for _, p in got[:-1]] == [1000] * (len(got) - 1)
    ends = [sum(response.chunk_sizes[: i + 1]) for i in range(len(response.chunk_sizes))]
    for i, (at, _) in enumerate(got[:-1]):  # no read returns before its last byte was due
        due = next(j for j, end in enumerate(ends) if end >= 1000 * (i + 1))
        assert at >= response.chunk_at[due] - 0.001


FAULTS = [
    ("truncate:after=3,end=abort", ProtocolError),
    ("truncate:after=3,end=reset", ProtocolError),
    ("stall:before=3,for=forever", ReadTimeoutError),
]


def message_of(fault: str, read: str) -> str:
    """What urllib3 says: its own chunk parser (``stream``, ``read_chunked``) finds a chunked
    body cut short; http.client's (``read``, a preload) raises IncompleteRead, kept as the
    ProtocolError's reason."""
    if "abort" in fault:
        chunked = read in ("stream", "read_chunked")
        return "Response ended prematurely" if chunked else "Connection broken: IncompleteRead"
    return "Connection reset by peer" if "reset" in fault else "Read timed out"


@pytest.mark.parametrize("read", ["stream", "read_chunked", "read(amt)", "preload"])
@pytest.mark.parametrize(("fault", "error"), FAULTS)
def test_faults_are_urllib3s_own_exceptions_mid_stream(
    tmp_path: Path, read: str, fault: str, error: type[Exception]
) -> None:
    path = tmp_path / "c.msgpack"
    chat_cassette(path)
    got: list[bytes] = []
    events = 3 if "truncate" in fault else 2
    http = urllib3.PoolManager()
    with ssevcr.use_cassette(path, timing="instant", faults=[fault]) as cas:
        started = time.monotonic()
        with pytest.raises(error) as info:
            r = http.request(
                "POST",
                "https://api.openai.com" + CHAT_URL,
                body=PAYLOAD,
                preload_content=read == "preload",
                timeout=0.3,
                retries=False,
            )
            if read in ("stream", "read_chunked"):
                for piece in r.stream(None) if read == "stream" else r.read_chunked():
                    got.append(piece)
            else:
                while piece := r.read(100):
                    got.append(piece)
    assert isinstance(info.value, ProtocolError) != (error is ReadTimeoutError)
    frames = b"".join(helpers.fixture_frames()[:events])
    if read == "read(amt)":  # whole 100-byte reads of the bytes before the fault
        assert b"".join(got) == frames[: len(frames) // 100 * 100]
    elif read != "preload":
        assert b"".join(got) == frames  # every byte before the fault
        assert len(parse(b"".join(got)).events) == events
    assert message_of(fault, read) in str(info.value)
    assert cas.fired == [fault] and len(cas.plays) == 1
    if "stall" in fault:
        assert 0.29 <= time.monotonic() - started < 5
        (delivery,) = cas.journal
        assert delivery.how == "timeout"


def test_a_sized_body_cut_short_is_an_incomplete_read(tmp_path: Path) -> None:
    body = json.dumps({"object": "list", "data": [{"id": f"model-{i}"} for i in range(20)]})
    path = tmp_path / "sized.msgpack"
    data = body.encode()
    interaction = Interaction(
        Request("GET", "https://api.openai.com/v1/models", (), b""),
        Response.from_chunks(
            200,
            [(0.0, data[:200]), (0.01, data[200:])],
            reason="OK",
            headers=(("content-type", "application/json"), ("content-length", str(len(data)))),
        ),
    )
    _store.save(Cassette((interaction,)), path)
    http = urllib3.PoolManager()
    with ssevcr.use_cassette(path, timing="instant", allow_repeats=True) as cas:
        assert http.request("GET", "https://api.openai.com/v1/models").json()["data"][19]
    assert len(cas.plays) == 1
    with ssevcr.use_cassette(path, timing="instant", faults=["truncate:byte=50,end=abort"]):
        r = http.request("GET", "https://api.openai.com/v1/models", preload_content=False)
        got = []
        with pytest.raises(ProtocolError) as info:
            for piece in r.stream(32):
                got.append(piece)
    assert b"".join(got) == data[:32]  # whole 32-byte pieces only
    reason = info.value.args[1]
    assert isinstance(reason, IncompleteRead)
    assert (reason.partial, reason.expected) == (50, len(data) - 50)


def test_before_the_head_retries_are_urllib3s_then_max_retry_error(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    chat_cassette(path, headers_at=5.0)
    http = urllib3.PoolManager()
    url = "https://api.openai.com" + CHAT_URL
    with ssevcr.use_cassette(path) as cas:
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            http.request("POST", url, body=PAYLOAD, timeout=0.2, retries=False)
        assert 0.19 <= time.monotonic() - started < 3
    retry = Retry(2, allowed_methods=None, backoff_factor=0)  # (POST is not retried by default)
    with (
        ssevcr.use_cassette(path, allow_repeats=True) as cas,
        pytest.raises(MaxRetryError) as info,
    ):
        http.request("POST", url, body=PAYLOAD, timeout=0.1, retries=retry)
    assert isinstance(info.value.reason, ReadTimeoutError)
    assert len(cas.plays) == 3  # the first request and its two retries, each played
    # without repeats the retry finds nothing
    with ssevcr.use_cassette(path) as cas, pytest.raises(NoMatchError):
        http.request("POST", url, body=PAYLOAD, timeout=0.1, retries=retry)
    assert len(cas.plays) == 1 and len(cas.misses) == 1

    chat_cassette(path)
    retry = Retry(2, status_forcelist=[503], allowed_methods=None, backoff_factor=0)
    with (
        ssevcr.use_cassette(path, faults=["status:code=503"], allow_repeats=True) as cas,
        pytest.raises(MaxRetryError, match="too many 503 error responses"),
    ):
        http.request("POST", url, body=PAYLOAD, retries=retry)
    assert len(cas.plays) == 3


def test_the_journal_says_what_urllib3_read_and_when_it_left(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    chat_cassette(path, gap=0.02)
    http = urllib3.PoolManager()
    url = "https://api.openai.com" + CHAT_URL
    with ssevcr.use_cassette(path, allow_repeats=True) as cas:
        r = http.request("POST", url, body=PAYLOAD, preload_content=False)
        got = b""
        for piece in r.stream(None):
            got += piece
            if got.count(b"\n\n") >= 3:
                break
        r.close()  # early close
        assert http.request("POST", url, body=PAYLOAD).data == BODY
    left, whole = cas.journal
    assert left.how == "cancel" and left.left_after_event is not None
    assert 3 <= left.left_after_event < len(helpers.fixture_frames())
    assert len(got) <= left.bytes < len(BODY)  # urllib3 reads ahead of the application
    assert whole.completed and whole.bytes == len(BODY) and whole.end == "close"
    assert not cas.unconsumed()


def test_a_pool_that_connected_before_the_cassette_is_answered_from_it(
    tmp_path: Path, upstream: Upstream
) -> None:
    """A kept-alive real connection in the caller's pool is never used while a cassette
    replays: the request goes through a pool of its own."""
    http = urllib3.PoolManager()
    assert http.request("GET", upstream.url + "/health").json()["ok"]  # a pooled connection
    path = tmp_path / "c.msgpack"
    chat_cassette(path)
    with ssevcr.use_cassette(path, timing="instant") as cas:
        r = http.request("POST", upstream.url + CHAT_URL, body=PAYLOAD, headers=JSON)
        assert r.data == BODY
    assert len(upstream.exchanges) == 1 and len(cas.plays) == 1
    assert http.request("GET", upstream.url + "/health").json()["ok"]  # the pool still works
    assert len(upstream.exchanges) == 2


def test_a_miss_raises_and_new_episodes_records_it(tmp_path: Path, upstream: Upstream) -> None:
    path = tmp_path / "c.msgpack"
    chat_cassette(path)
    other = json.dumps({**CHAT, "model": "gpt-other"}).encode()
    http = urllib3.PoolManager()
    url = upstream.url + CHAT_URL
    with ssevcr.use_cassette(path) as cas, pytest.raises(NoMatchError, match="gpt-other"):
        http.request("POST", url, body=other, headers=JSON)
    assert len(cas.misses) == 1 and not upstream.exchanges
    with ssevcr.use_cassette(path, record="new_episodes") as cas:
        assert http.request("POST", url, body=PAYLOAD, headers=JSON).data == BODY  # replayed
        r = http.request("POST", url, body=other, headers={**JSON, **steer(FIXTURE, "new")})
        assert r.data == BODY  # from the upstream
    assert len(upstream.exchanges) == 1 and not cas.misses
    assert [i.request.body for i in _store.load(path).interactions] == [PAYLOAD, other]


def test_pool_manager_redirects_record_each_hop_and_replay_them(
    tmp_path: Path, upstream: Upstream
) -> None:
    """PoolManager follows a redirect with one ``urlopen`` per hop: both are recorded, and the
    replay follows the recorded redirect to the recorded stream."""
    final = Upstream(fixture=FIXTURE).start()
    path = tmp_path / "redirect.msgpack"
    moved = Script(
        headers=(("location", final.url + "/v1/stream"),), pieces=(b"moved",), status=302
    )
    upstream.script("hop", moved)
    http = urllib3.PoolManager()
    try:
        with ssevcr.use_cassette(path, record="once"):
            r = http.request("GET", upstream.url + "/v1/start", headers={"x-test-id": "hop"})
            assert r.status == 200 and r.data == BODY
    finally:
        http.clear()
        stop(final)
    stop(upstream)
    first, second = _store.load(path).interactions
    assert (first.response.status, first.response.body) == (302, b"moved")
    assert second.request.url == final.url + "/v1/stream" and second.response.body == BODY
    with ssevcr.use_cassette(path, timing="instant") as cas:
        r = http.request("GET", upstream.url + "/v1/start")
        assert r.status == 200 and r.data == BODY
        assert r.retries is not None and len(r.retries.history) == 1  # the recorded redirect
    assert len(cas.plays) == 2 and not cas.misses


def test_an_upstream_that_dies_is_recorded_as_such(tmp_path: Path, upstream: Upstream) -> None:
    path = tmp_path / "died.msgpack"
    http = urllib3.PoolManager()
    headers = {**JSON, **steer(FIXTURE, "die", die_after="3", gap_ms="5")}
    got = []
    with ssevcr.use_cassette(path, record="all"):
        r = http.request(
            "POST", upstream.url + CHAT_URL, body=PAYLOAD, headers=headers, preload_content=False
        )
        with pytest.raises(ProtocolError):
            for piece in r.stream(None):
                got.append(piece)
    (recorded,) = _store.load(path).interactions
    assert recorded.response.end.outcome == Outcome.UPSTREAM_ERROR
    assert recorded.response.body == b"".join(got) == upstream.exchange("die").sent_body
    stop(upstream)
    with ssevcr.use_cassette(path, timing="instant"):
        r = http.request("POST", upstream.url + CHAT_URL, body=PAYLOAD, preload_content=False)
        replayed = []
        with pytest.raises(ProtocolError):
            for piece in r.stream(None):
                replayed.append(piece)
    assert b"".join(replayed) == recorded.response.body


# faults on a recording run: the client reads the live replay of what is recorded


def faulted(get: Any, test_id: str) -> tuple[int, bytes, str | None, float]:
    """Status, body, the library's error (its type) and the longest gap between two pieces of
    one streamed chat through ``get(headers) -> (status, pieces iterator)``."""
    pieces: list[tuple[float, bytes]] = []
    status, error = 0, None
    try:
        status, stream = get(steer(FIXTURE, test_id, chunks="12", gap_ms="2-6"))
        pieces.extend((time.monotonic(), p) for p in stream)
    except Exception as e:
        error = type(e).__name__
    return status, b"".join(p for _, p in pieces), error, longest_gap(pieces)


def urllib3_get(server: Upstream, ca: str | None, preload: bool) -> Any:
    http = urllib3.PoolManager(ca_certs=ca, timeout=urllib3.Timeout(connect=5, read=READ_TIMEOUT))

    def get(headers: dict[str, str]) -> tuple[int, Any]:
        r = http.request(
            "POST",
            server.url + CHAT_URL,
            body=PAYLOAD,
            headers={**JSON, **headers},
            preload_content=preload,
            retries=False,
        )
        return r.status, iter([r.data]) if preload else r.stream(None)

    return get


def requests_get(server: Upstream, ca: str | None, preload: bool) -> Any:
    import requests

    session = requests.Session()

    def get(headers: dict[str, str]) -> tuple[int, Any]:
        r = session.post(
            server.url + CHAT_URL,
            json=CHAT,
            headers=headers,
            stream=not preload,
            timeout=(5, READ_TIMEOUT),
            verify=ca or True,
        )
        return r.status_code, iter([r.content]) if preload else r.iter_content(None)

    return get


@pytest.mark.parametrize("fault", RECORD_RUN_FAULTS)
@pytest.mark.parametrize(
    ("client", "tls", "preload"),
    [
        (urllib3_get, False, False),
        (urllib3_get, True, False),
        (urllib3_get, False, True),
        (requests_get, False, False),
        (requests_get, True, False),
        (requests_get, False, True),
    ],
    ids=[
        "urllib3",
        "urllib3-https",
        "urllib3-preload",
        "requests",
        "requests-https",
        "requests-preload",
    ],
)
def test_a_fault_shows_the_same_on_the_recording_run_and_on_replay(
    fault: str,
    client: Any,
    tls: bool,
    preload: bool,
    tmp_path: Path,
    upstream: Upstream,
    upstream_tls: Upstream,
    tls_files: TLSFiles,
) -> None:
    """urllib3 and requests recording a faulted stream read the replay of what is recorded,
    through their own parsers: the same status, bytes and error as the replay that follows,
    the stall as long; the cassette holds the upstream's stream whole. Before, the recording
    run showed the stream unfaulted (and warned)."""
    path = tmp_path / "c.msgpack"
    server = upstream_tls if tls else upstream
    get = client(server, str(tls_files.cert) if tls else None, preload)
    test_id = f"{client.__name__}-{tls}-{preload}-{fault}"
    faults = [fault] if fault else []
    runs = []
    for _ in range(2):
        with ssevcr.use_cassette(path, record="once", faults=faults) as cas:
            runs.append(faulted(get, test_id))
        assert cas.fired == faults
    assert_shown_as_replayed(runs, fault, server, test_id, path, timed=not preload)


def test_faults_for_other_requests_leave_the_stream_as_it_comes(
    tmp_path: Path, upstream: Upstream
) -> None:
    """With faults that do not apply to this request (scoped to another path) the recording
    run's client still follows the recording: the stream as it comes, chunk by chunk."""
    path = tmp_path / "c.msgpack"
    http = urllib3.PoolManager()
    with ssevcr.use_cassette(path, record="once", faults=["drop:event=2,on=/other"]) as cas:
        r = http.request(
            "POST",
            upstream.url + CHAT_URL,
            body=PAYLOAD,
            preload_content=False,
            headers={**JSON, **steer(FIXTURE, "scoped", chunks="6")},
        )
        pieces = list(r.stream(None))
    assert b"".join(pieces) == BODY and len(pieces) >= 2 and cas.fired == []
    assert upstream.exchange("scoped").path == CHAT_URL  # the request as urllib3 wrote it
    with ssevcr.use_cassette(tmp_path / "head.msgpack", record="once", faults=["drop:event=2"]):
        assert http.request("HEAD", upstream.url + "/health").status == 200  # (no body at all)
    response = _store.load(path).interactions[0].response
    assert response.body == BODY and response.end.outcome == Outcome.COMPLETE


def test_a_recording_saved_before_the_upstream_ended_lets_it_go(
    tmp_path: Path, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The save waits for the recorder ``DRAIN_TIMEOUT`` at most, then keeps what came: the
    recorder thread stops at the upstream's next bytes and closes the connection, instead of
    reading on for nothing."""
    monkeypatch.setattr(ssevcr._intercept, "DRAIN_TIMEOUT", 0.2)
    path = tmp_path / "c.msgpack"
    http = urllib3.PoolManager()
    with ssevcr.use_cassette(path, record="once", faults=["truncate:after=1"]):
        r = http.request(
            "POST",
            upstream.url + CHAT_URL,
            body=PAYLOAD,
            preload_content=False,
            headers={**JSON, **steer(FIXTURE, "u3-saved", chunks="10", gap_ms="100")},
        )
        with pytest.raises(ProtocolError):
            list(r.stream(None))
    assert upstream.exchange("u3-saved", timeout=0.6).outcome == "client_gone"  # (1 s whole)
    response = _store.load(path).interactions[0].response
    assert response.end.outcome == Outcome.CLIENT_DISCONNECTED
    assert BODY.startswith(response.body) and response.body != BODY


def test_a_retried_status_fault_records_each_attempt(tmp_path: Path, upstream: Upstream) -> None:
    """urllib3's own retries on the recording run: the faulted 503 is retried by the caller's
    ``Retry`` and each attempt goes upstream and is recorded, as its replay plays one
    interaction per attempt."""
    path = tmp_path / "c.msgpack"
    retry = Retry(total=2, status_forcelist=[503], allowed_methods=None, backoff_factor=0)
    http = urllib3.PoolManager(retries=retry)
    runs = []
    for _ in range(2):
        with ssevcr.use_cassette(path, record="once", faults=["status:503,times=1"]) as cas:
            r = http.request(
                "POST",
                upstream.url + CHAT_URL,
                body=PAYLOAD,
                headers={**JSON, **steer(FIXTURE, "retried")},
            )
            runs.append((r.status, r.data, len(r.retries.history)))
        assert cas.fired == ["status:503,times=1"]
    assert runs[0] == runs[1] == (200, BODY, 1), runs
    assert len(upstream.exchanges) == 2
    assert [i.response.body for i in _store.load(path).interactions] == [BODY, BODY]


def test_ignore_hosts_pass_through_unrecorded(tmp_path: Path, upstream: Upstream) -> None:
    path = tmp_path / "c.msgpack"
    http = urllib3.PoolManager()
    with ssevcr.use_cassette(path, record="all", ignore_localhost=True) as cas:
        assert http.request("GET", upstream.url + "/health").json()["ok"]
    assert len(upstream.exchanges) == 1 and not cas.recorded and not path.exists()
    chat_cassette(path)
    with ssevcr.use_cassette(path, ignore_hosts=["127.0.0.1"]) as cas:
        assert urllib3.request("GET", upstream.url + "/health").json()["ok"]
    assert len(upstream.exchanges) == 2 and not cas.plays and not cas.misses


def test_the_pool_is_restored_after_the_cassette(tmp_path: Path) -> None:
    from urllib3.connectionpool import HTTPConnectionPool

    chat_cassette(tmp_path / "c.msgpack")
    urlopen = HTTPConnectionPool.urlopen
    with ssevcr.use_cassette(tmp_path / "c.msgpack"):
        assert HTTPConnectionPool.urlopen is not urlopen
    assert HTTPConnectionPool.urlopen is urlopen


def test_botocore_records_and_replays_through_its_own_pools(tmp_path: Path) -> None:
    """botocore sends through urllib3 pools of its own classes (``AWSHTTPConnectionPool``):
    an S3 GetObject recorded from the local upstream, replayed with it stopped, and cut short
    as botocore's own ``ResponseStreamingError``."""
    import botocore.session as botocore_session
    from botocore.config import Config
    from botocore.exceptions import ResponseStreamingError

    def s3(url: str) -> Any:
        return botocore_session.get_session().create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=url,
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    path = tmp_path / "s3.msgpack"
    server = Upstream(fixture=FIXTURE).start()
    try:
        with ssevcr.use_cassette(path, record="once"):
            recorded = s3(server.url).get_object(Bucket="bucket", Key="chat.sse")["Body"].read()
        assert len(server.exchanges) == 1
    finally:
        stop(server)
    assert recorded == BODY
    (interaction,) = _store.load(path).interactions
    assert interaction.request.url == f"{server.url}/bucket/chat.sse"
    assert "AKIDEXAMPLE" not in (interaction.request.header("authorization") or "")
    with ssevcr.use_cassette(path, timing="instant") as cas:
        body = s3(server.url).get_object(Bucket="bucket", Key="chat.sse")["Body"]
        assert b"".join(body.iter_chunks(None)) == BODY
    assert len(cas.plays) == 1 and not cas.misses
    with ssevcr.use_cassette(path, timing="instant", faults=["truncate:after=3,end=reset"]):
        body = s3(server.url).get_object(Bucket="bucket", Key="chat.sse")["Body"]
        with pytest.raises(ResponseStreamingError, match="Connection reset by peer"):
            body.read()
