"""The delivery journal: what each play handed its client, over real sockets (the replay server,
``ssevcr replay --journal``) and through the real client libraries in process (httpx, the openai
SDK, aiohttp, requests), and what a pytest run reports from it."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from replay_helpers import OPENAI_CHAT, example_path, params
from stream_helpers import CliReplay, save_stream, stream_cassette, stream_response

import ssevcr
from ssevcr._cassette import Cassette, Interaction, Request, Response
from ssevcr._journal import MAX_PROGRESS, Delivery, Journal, Origin, event_map
from ssevcr._player import Player
from ssevcr._schedule import build
from ssevcr._server_thread import ServerThread

# ---------------------------------------------------------------------------------------------
# the replay server


class Lines:
    """The server's journal sink: every Delivery, from the server's thread."""

    def __init__(self) -> None:
        self.items: list[Delivery] = []
        self.lock = threading.Lock()

    def __call__(self, j: Journal) -> None:
        d = j.value()
        assert json.loads(j.line()) == d.to_json()  # the file's line says the same
        with self.lock:
            self.items.append(d)

    def wait(self, n: int, timeout: float = 10.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.items) >= n:
                    return list(self.items)
            time.sleep(0.01)
        raise AssertionError(f"{len(self.items)} journal lines, expected {n}")


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[ServerThread, Lines]]]:
    started: list[ServerThread] = []

    def start(cassette: Cassette, **kwargs: object) -> tuple[ServerThread, Lines]:
        player = Player.create(cassette, repeat=True, **kwargs)  # type: ignore[arg-type]
        lines = Lines()
        server = ServerThread(player, log=lambda _l: None).start()
        server.server.journal = lines
        started.append(server)
        return server, lines

    yield start
    for s in started:
        s.close()


def read_events(url: str, k: int, *, headers: str = "", rst: bool = False) -> bytes:
    """GET /events on a raw socket, read until ``k`` events have arrived, then leave (a FIN, or
    an RST with ``rst``). Returns what was read."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}\r\n".encode())
    data = b""
    head_end = -1
    while True:
        piece = sock.recv(65536)
        assert piece, "the server closed first"
        data += piece
        if head_end < 0:
            head_end = data.find(b"\r\n\r\n")
        if head_end >= 0 and data[head_end:].count(b"\n\n") >= k:  # (the head ends \r\n\r\n)
            break
    if rst:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    return data


def test_the_server_journals_a_complete_play_with_the_request_headers_as_received(
    serve: Callable[..., tuple[ServerThread, Lines]],
) -> None:
    server, lines = serve(stream_cassette(6), timing="instant")
    r = httpx.get(
        f"{server.url}/events",
        headers={
            "Last-Event-ID": "",
            "X-Stainless-Retry-Count": "2",
            "Authorization": "Bearer sk-proj-0123456789abcdefghijklmnopqrstuvwxyzABCD",
        },
    )
    assert r.status_code == 200
    (d,) = lines.wait(1)
    assert d.completed and d.state == "completed" and d.end == "close" and d.how is None
    assert (d.events, d.planned_events) == (6, 6)
    assert d.bytes == d.planned_bytes == len(r.content)
    assert d.left_at is d.left_after_event is d.left_after_byte is None
    names = [k for k, _ in d.request_headers]
    assert "X-Stainless-Retry-Count" in names  # as sent, case and all
    assert dict(d.request_headers)["X-Stainless-Retry-Count"] == "2"
    assert dict(d.request_headers)["Authorization"] == "REDACTED"
    assert "sk-proj" not in json.dumps(d.to_json())
    assert d.headers_sent_at is not None and 0 <= d.headers_sent_at < 1
    assert d.last_event_id == "6"
    assert server.player.delivery_counts["completed"] == 1


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
def test_the_server_journals_a_client_that_leaves_after_k_events(
    serve: Callable[..., tuple[ServerThread, Lines]], rst: bool
) -> None:
    # 300 ms between events: the client's FIN/RST after event 3 reaches the server long before
    # event 4 is due, so exactly 3 events were handed over
    server, lines = serve(stream_cassette(8, gap=0.3), timing="original")
    sent_at = time.time()
    read_events(server.url, 3, rst=rst)
    left_at = time.time()
    (d,) = lines.wait(1)
    assert d.state == "left" and not d.completed
    assert d.how == ("rst" if rst else "fin")
    assert d.left_after_event == d.events == 3
    third = event_map(server.player.plays[0].schedule).ends[2]  # type: ignore[union-attr]
    assert d.left_after_byte == d.bytes == third
    assert d.last_event_id == "3"
    assert d.left_at is not None
    assert sent_at - 0.05 <= d.started <= left_at
    assert d.started + d.left_at >= left_at - 0.05  # (the server saw it after the client left)
    assert [e for e in d.event_times] == sorted(d.event_times) and len(d.event_times) == 3
    assert d.event_times[1] - d.event_times[0] >= 0.25  # each event when it was handed over


def test_the_server_journals_a_hang_the_client_gives_up_on_and_one_cut_by_shutdown(
    serve: Callable[..., tuple[ServerThread, Lines]],
) -> None:
    server, lines = serve(
        stream_cassette(5), timing="instant", faults=["stall:before=3,for=forever"]
    )
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.url}/events", timeout=httpx.Timeout(5, read=0.5))
    (d,) = lines.wait(1)
    assert (d.state, d.how, d.left_after_event) == ("left", "fin", 2)
    assert d.fired == ("stall:before=3,for=forever",)
    # a stream in flight when the server stops: 'shutdown'
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    deadline = time.monotonic() + 5
    while len(server.player.plays) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.close()
    d2 = lines.wait(2)[1]
    assert (d2.state, d2.how, d2.left_after_event) == ("left", "shutdown", 2)
    sock.close()


def test_a_fault_that_cuts_the_stream_is_delivered_completely_with_its_end(
    serve: Callable[..., tuple[ServerThread, Lines]],
) -> None:
    server, lines = serve(stream_cassette(6), timing="instant", faults=["truncate:after=2"])
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{server.url}/events")
    (d,) = lines.wait(1)
    assert d.completed and d.end == "abort" and (d.events, d.planned_events) == (2, 2)


def test_what_the_transport_still_held_is_not_counted_when_the_client_leaves(
    serve: Callable[..., tuple[ServerThread, Lines]],
) -> None:
    """A client that reads nothing of a 4 MB answer: the server hands over what the socket takes
    (kernel buffers included, which the journal cannot see) and no more; what its transport held
    when the client left is not counted."""
    big = Response.from_chunks(
        200,
        [(0.01 * i, (b"data: %s\n\n" % (b"x" * 4000))) for i in range(1000)],
        headers=(("content-type", "text/event-stream"),),
    )
    cassette = Cassette(interactions=(Interaction(Request("GET", "http://x/events"), big),))
    server, lines = serve(cassette, timing="instant")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    sock.settimeout(20)  # (a loaded machine: the answer has begun before the client leaves)
    assert sock.recv(1, socket.MSG_PEEK)  # a peek: nothing is read out of the buffer
    time.sleep(0.5)
    sock.close()
    (d,) = lines.wait(1)
    assert d.state == "left" and d.how in ("fin", "rst")
    assert 0 < d.bytes < d.planned_bytes // 4
    assert d.events == d.left_after_event and d.events is not None and d.events < 250


def test_replay_cli_writes_one_redacted_json_line_per_play_as_each_ends(tmp_path: Path) -> None:
    cassette = save_stream(tmp_path, n=4, gap=0.2)
    journal = tmp_path / "journal.jsonl"
    replay = CliReplay(cassette, "--journal", str(journal), "--timing", "original")
    try:
        secret = "sk-ant-api03-" + "x" * 80
        r = httpx.get(f"{replay.url}/events", headers={"x-api-key": secret})
        assert r.status_code == 200
        deadline = time.monotonic() + 5
        while journal.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        first = json.loads(journal.read_text())  # there while the server still runs
        assert first["state"] == "completed" and first["events"] == 4
        assert dict(first["request_headers"])["x-api-key"] == "REDACTED"
        read_events(replay.url, 1)
        deadline = time.monotonic() + 5
        while len(journal.read_text().splitlines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        code, summary = replay.stop()
    finally:
        replay.kill()
    assert code == 0, summary
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(d["state"], d["events"], d["how"]) for d in lines] == [
        ("completed", 4, None),
        ("left", 1, "fin"),
    ]
    assert secret not in journal.read_text()
    assert "delivered: 1 completed, 1 left early (fin 1)" in summary
    assert set(lines[0]) >= {
        "request_headers",
        "headers_sent_at",
        "events",
        "bytes",
        "progress",
        "completed",
        "left_at",
        "left_after_event",
        "left_after_byte",
        "how",
    }


def test_replay_cli_journal_that_cannot_be_written_is_a_clean_error(tmp_path: Path) -> None:
    import subprocess

    from stream_helpers import SSEVCR

    cassette = save_stream(tmp_path, n=2)
    out = subprocess.run(
        [SSEVCR, "replay", cassette, "--journal", str(tmp_path / "no" / "such" / "dir.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "cannot write the journal" in out.stderr and "Traceback" not in out.stderr


# ---------------------------------------------------------------------------------------------
# in process


def test_openai_stream_broken_off_after_3_events_and_one_read_to_the_end() -> None:
    import openai

    with ssevcr.use_cassette(
        example_path(OPENAI_CHAT), timing="instant", allow_repeats=True
    ) as cas:
        client = openai.OpenAI(api_key="sk-test", max_retries=0)
        with client.chat.completions.create(**params(OPENAI_CHAT)) as stream:
            for i, _chunk in enumerate(stream):
                if i == 2:
                    break
        with client.chat.completions.create(**params(OPENAI_CHAT)) as stream:
            chunks = list(stream)
    broken, whole = cas.plays
    d = broken.delivered
    assert d is not None
    assert (d.events, d.left_after_event, d.how, d.state) == (3, 3, "cancel", "left")
    assert broken.left_after_event == 3 and broken.how == "cancel" and not broken.completed
    assert d.left_after_byte == event_map(broken.schedule).ends[2]  # type: ignore[union-attr]
    assert whole.completed and whole.left_after_event is None
    w = whole.delivered
    assert w is not None and w.events == w.planned_events and len(chunks) > 3
    assert cas.unconsumed() == []


async def test_async_httpx_stream_read_timeout_is_journaled_as_timeout(tmp_path: Path) -> None:
    path = save_stream(tmp_path, n=5)
    with ssevcr.use_cassette(path, timing="instant", faults=["stall:before=4,for=10s"]) as cas:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=0.2)) as client:
            with pytest.raises(httpx.ReadTimeout):
                async with client.stream("GET", "http://localhost/events") as r:
                    async for _ in r.aiter_raw():
                        pass
    d = cas.player.plays[0].delivered
    assert d is not None and (d.how, d.left_after_event) == ("timeout", 3)


def test_a_stream_opened_and_never_read_nor_closed_is_unconsumed() -> None:
    transport = ssevcr.ReplayTransport(stream_cassette(3), timing="instant", repeat=True)
    client = httpx.Client(transport=transport)
    leaked = client.send(client.build_request("GET", "http://localhost/events"), stream=True)
    client.get("http://localhost/events")  # read to the end
    (open_play,) = transport.player.unconsumed()
    assert open_play is transport.player.plays[0]
    d = open_play.delivered
    assert d is not None and (d.state, d.bytes, d.events) == ("open", 0, 0)
    assert "still open" in d.describe()
    leaked.close()
    assert transport.player.unconsumed() == []
    assert transport.player.plays[0].how == "cancel"


def test_use_cassette_fail_on_unconsumed(tmp_path: Path) -> None:
    path = save_stream(tmp_path, n=3)
    with (
        pytest.raises(ssevcr.SsevcrError, match="never read to the end nor closed"),
        ssevcr.use_cassette(path, timing="instant", fail_on_unconsumed=True),
    ):
        client = httpx.Client()
        client.send(client.build_request("GET", "http://localhost/events"), stream=True)
    with ssevcr.use_cassette(path, timing="instant", fail_on_unconsumed=True) as cas:
        httpx.get("http://localhost/events")
    assert cas.plays[0].completed


async def test_aiohttp_journal_counts_what_aiohttp_was_handed(tmp_path: Path) -> None:
    import aiohttp

    path = save_stream(tmp_path, n=6, gap=0.05)
    with ssevcr.use_cassette(path, allow_repeats=True) as cas:
        async with aiohttp.ClientSession() as session:
            async with session.get("http://localhost/events") as r:
                got = b""
                while got.count(b"\n\n") < 2:
                    got += await r.content.readany()
            async with session.get("http://localhost/events") as r:
                await r.read()
    left, whole = cas.player.plays
    d = left.delivered
    assert d is not None and d.how == "cancel" and d.left_after_event is not None
    assert 2 <= d.left_after_event < 6
    assert whole.completed


def test_requests_journal_counts_what_urllib3_read(tmp_path: Path) -> None:
    import requests

    path = save_stream(tmp_path, n=6, gap=0.05)
    with ssevcr.use_cassette(path, allow_repeats=True) as cas:
        with requests.get("http://localhost/events", stream=True) as r:
            for line in r.iter_lines():
                if line.startswith(b"data"):
                    break
        requests.get("http://localhost/events")
    left, whole = cas.player.plays
    d = left.delivered
    assert d is not None and d.how == "cancel" and d.left_after_event is not None
    assert 1 <= d.left_after_event < 6
    assert whole.completed


# ---------------------------------------------------------------------------------------------
# pytest


def test_a_failing_test_reports_the_journal_and_fail_on_unconsumed_fails_a_test(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    path = save_stream(tmp_path, n=4)
    pytester.makepyfile(
        f"""
        import httpx, pytest

        @pytest.mark.ssevcr({path!r}, timing="instant")
        def test_fails():
            with httpx.stream("GET", "http://localhost/events") as r:
                for _ in r.iter_raw():
                    break
            assert False, "on purpose"

        @pytest.mark.ssevcr({path!r}, timing="instant", fail_on_unconsumed=True)
        def test_leaks():
            client = httpx.Client()
            client.send(client.build_request("GET", "http://localhost/events"), stream=True)

        @pytest.mark.ssevcr({path!r}, timing="instant", fail_on_unconsumed=True)
        def test_consumes(ssevcr_cassette):
            httpx.get("http://localhost/events")
            assert ssevcr_cassette.plays[0].completed
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "ssevcr journal" in out
    assert "left after event 1 (cancel" in out
    assert "never read to the end nor closed (fail_on_unconsumed)" in out


# ---------------------------------------------------------------------------------------------
# the values


def test_event_map_of_a_gzip_stream_counts_an_event_with_the_chunk_that_completes_it() -> None:
    body = b"".join(b"data: %d\n\n" % i for i in range(20))
    packed = gzip.compress(body)
    pieces = [packed[i : i + 7] for i in range(0, len(packed), 7)]
    resp = Response.from_chunks(
        200,
        [(0.01 * i, p) for i, p in enumerate(pieces)],
        headers=(("content-type", "text/event-stream"), ("content-encoding", "gzip")),
    )
    events = event_map(build(resp))
    assert events is not None and len(events.ends) == 20
    # each event ends at the end of a chunk: the one whose decoding completes it (the last one
    # before the gzip trailer's chunks)
    boundaries = {min(i + 7, len(packed)) for i in range(0, len(packed), 7)}
    assert set(events.ends) <= boundaries and events.ends == tuple(sorted(events.ends))
    assert len(packed) - 8 <= events.ends[-1] + 7 and events.ends[-1] <= len(packed)
    assert event_map(build(Response.from_chunks(200, [(0, b"{}")]))) is None


def test_journal_progress_is_bounded_and_left_takes_back_what_was_not_flushed() -> None:
    resp = stream_response(5)
    sched = build(resp)
    j = Journal(Origin(sched), Request("GET", "http://x/events"))
    j.begin(100.0, 1_700_000_000.0)
    for i in range(MAX_PROGRESS + 50):
        j.sent(100.0 + i * 0.001, i + 1)
    assert len(j.value().progress) == MAX_PROGRESS
    assert j.value().bytes == MAX_PROGRESS + 50
    j2 = Journal(Origin(sched), Request("GET", "http://x/events"))
    j2.begin(0.0, 0.0)
    ends = sched.timeline.ends
    j2.sent(0.1, ends[1])
    j2.sent(0.2, ends[3])
    j2.left(0.3, "fin", body_bytes=ends[1])
    v = j2.value()
    assert (v.bytes, v.events, v.left_after_event, v.left_at) == (ends[1], 2, 2, 0.3)
    assert [m.bytes for m in v.progress] == [ends[1]]


def _deliver(player: Player, requests: list[Request], leave: int) -> None:
    """Play each request and journal it as the replay server does: instant plays handed over
    whole, play number ``leave`` left by its client after the head."""
    for n, request in enumerate(requests):
        journal = player.play(request).journal
        assert journal is not None
        journal.begin(10.0 + n, 1_700_000_000.0 + n)
        if n == leave:
            journal.head(10.25 + n)
            journal.left(10.5 + n, "rst")
        else:
            journal.whole(10.125 + n, journal.schedule.timeline.ends[-1])


def test_a_request_value_played_again_is_journaled_as_a_new_request_is() -> None:
    # the replay server hands the player the same request value for the same bytes, and the
    # player repeats that play without choosing or building (one journal origin for them all):
    # every play, journal, line and count as for a new value each time
    cassette = stream_cassette(6)
    recorded = cassette.interactions[0].request

    def fresh() -> Request:
        return Request(recorded.method, recorded.url, recorded.headers, recorded.body)

    same, again = Player.create(cassette, repeat=True), Player.create(cassette, repeat=True)
    value = fresh()
    _deliver(same, [value] * 6, leave=3)
    _deliver(again, [fresh() for _ in range(6)], leave=3)
    assert [p.number for p in same.plays] == list(range(6))
    for a, b in zip(same.plays, again.plays, strict=True):
        assert a == b and a.delivered == b.delivered
        assert a.journal is not None and b.journal is not None
        assert a.journal.line() == b.journal.line()
    assert same.delivery_counts == again.delivery_counts == {"completed": 5, "rst": 1}
    assert same.usage() == again.usage() and same.play_count == again.play_count == 6
    journals = [p.journal for p in same.plays]
    assert len({id(j) for j in journals}) == 6  # a journal per play ...
    assert len({id(j._origin) for j in journals if j is not None}) == 1  # ... one origin
    # faults set meanwhile apply to the next play of the same value; Last-Event-ID resumes
    same.set_faults("truncate:after=2")
    assert same.play(value).schedule.fired == ("truncate:after=2",)
    same.set_faults(None)
    assert same.play(value).schedule.fired == ()
    resuming = Request(recorded.method, recorded.url, (("last-event-id", "2"),), recorded.body)
    assert same.play(resuming).resumed_after == "2"
    # played once only (tests): the value's second play is a miss
    once = Player.create(cassette)
    once.play(value)
    with pytest.raises(ssevcr.NoMatchError):
        once.play(value)


def test_a_client_that_had_every_byte_and_closed_before_the_end_completed() -> None:
    sched = build(stream_response(3))
    j = Journal(Origin(sched), Request("GET", "http://x/events"))
    j.sent(0.1, sched.timeline.ends[-1])
    j.left(0.2, "cancel")
    assert j.value().completed and j.value().how is None


def test_in_process_journal_in_an_event_loop_thread_is_consistent() -> None:
    async def main() -> Delivery | None:
        transport = ssevcr.ReplayTransport(stream_cassette(4), timing="instant")
        async with httpx.AsyncClient(transport=transport) as client:
            r = await client.get("http://localhost/events")
            assert r.status_code == 200
        return transport.player.plays[0].delivered

    d = asyncio.run(main())
    assert d is not None and d.completed and d.events == 4 and d.headers_sent_at == 0.0


def test_event_map_counts_ndjson_lines_as_events() -> None:
    lines = [b'{"message": {"content": "w%d"}, "done": false}\n' % i for i in range(5)]
    resp = Response.from_chunks(
        200,
        [(0.01 * i, line) for i, line in enumerate(lines)],
        headers=(("content-type", "application/x-ndjson"),),
    )
    events = event_map(build(resp))
    assert events is not None
    assert events.ends == tuple(sum(len(x) for x in lines[: i + 1]) for i in range(5))


# ---------------------------------------------------------------------------------------------
# the journal file (``ssevcr replay --journal``): batched by a writer thread, bounded, never lossy


def _ended_journals(n: int) -> list[Journal]:
    player = Player.create(stream_cassette(3), repeat=True)
    journals = []
    for i in range(n):
        play = player.play(Request("GET", "http://localhost/events", (("x-n", str(i)),)))
        assert play.journal is not None
        play.journal.begin(10.0, 1_700_000_000.0 + i)
        play.journal.whole(10.001, play.schedule.timeline.ends[-1])
        journals.append(play.journal)
    return journals


def test_journal_file_lines_reach_the_file_within_flush_within_and_close_writes_the_rest(
    tmp_path: Path,
) -> None:
    from ssevcr._journal_file import JournalFile

    journals = _ended_journals(40)
    path = tmp_path / "j.jsonl"
    batched = JournalFile(path)
    for j in journals[:20]:
        batched(j)
    deadline = time.monotonic() + 5  # (FLUSH_WITHIN is 10 ms; the machine may be loaded)
    while len(path.read_text().splitlines()) < 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(path.read_text().splitlines()) == 20 and batched.pending == 0  # no close needed
    for j in journals[20:]:
        batched(j)
    batched.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [j.value().to_json() for j in journals]  # each once, in order, as to_json

    slow = JournalFile(tmp_path / "slow.jsonl", flush_within=3600.0)  # the writer never wakes
    for j in journals[:5]:
        slow(j)
    assert slow.pending == 5 and (tmp_path / "slow.jsonl").read_text() == ""
    slow.close()  # what is queued is written on close, not lost
    assert len((tmp_path / "slow.jsonl").read_text().splitlines()) == 5


def test_journal_file_queue_is_bounded_by_bytes_the_caller_writes_past_it(tmp_path: Path) -> None:
    from ssevcr._journal_file import MAX_PENDING, JournalFile, queued_bytes

    journals = _ended_journals(2)
    size = queued_bytes(journals[0].line())
    path = tmp_path / "j.jsonl"
    f = JournalFile(path, flush_within=3600.0)
    fills = -(-MAX_PENDING // size)  # the line that takes the queue to MAX_PENDING bytes
    for i in range(fills - 1):
        f(journals[i % 2])
    assert f.pending == fills - 1 and path.read_text() == ""
    f(journals[0])  # it writes the queue itself, on the caller's thread, before returning
    assert f.pending == 0 and len(path.read_text().splitlines()) == fills
    f.close()


def test_journal_file_on_a_full_disk_counts_and_reports_the_lost_lines() -> None:
    from ssevcr._journal_file import JournalError, JournalFile

    f = JournalFile("/dev/full")  # every write fails: ENOSPC
    for j in _ended_journals(3):
        f(j)
    time.sleep(0.1)
    for j in _ended_journals(2):
        f(j)
    with pytest.raises(JournalError, match=r"cannot write the journal '/dev/full'.*5 lines lost"):
        f.close()
    assert f.lines == 0 and f.lost == 5


@pytest.mark.parametrize("marks", [0, 1, 3, 8, 9, 40])
def test_journal_line_says_what_to_json_says_for_any_number_of_marks_and_any_ending(
    marks: int,
) -> None:
    sched = build(stream_response(50))
    ends = sched.timeline.ends
    plain = build(Response.from_chunks(200, [(0.01 * i, b"x" * 10) for i in range(50)]))
    for schedule, how in ((sched, None), (sched, "rst"), (plain, None), (plain, "fin")):
        j = Journal(
            Origin(schedule), Request("GET", "http://x/events", (("x-api-key", "sk-secret"),))
        )
        j.begin(10.0, 1_700_000_000.123456789)
        j.head(10.0001234567)
        for i in range(marks):
            j.sent(10.001 + i * 0.0011, schedule.timeline.ends[i])
        if how is None:
            j.done(10.5)
        else:
            j.left(10.25, how, body_bytes=ends[marks // 2] if marks and schedule is sched else None)
        assert json.loads(j.line()) == j.value().to_json()
        assert "sk-secret" not in j.line()


def test_journal_lines_of_one_origin_stay_true_as_requests_and_endings_alternate() -> None:
    # the line parts found last are kept on the origin and the ending found last on them: a
    # play with another request or another ending must not reuse them
    sched = build(stream_response(20))
    ends = sched.timeline.ends
    origin = Origin(sched, cassette="c")
    a = Request("GET", "http://x/events", (("x-api-key", "sk-a"),))
    b = Request("GET", "http://x/events", (("x-other", "b"),))
    for n, (request, ending) in enumerate(
        [(a, "done"), (a, "done"), (b, "done"), (a, "rst"), (a, "rst"), (b, "fin"), (a, "done")]
    ):
        j = Journal(origin, request)
        j.begin(1.0, 1_700_000_000.5 + n)
        j.head(1.001)
        j.sent(1.002, ends[n % 5])
        if ending == "done":
            j.sent(1.003, ends[-1])
            j.done(1.004)
        else:
            j.left(1.004, ending)
        assert json.loads(j.line()) == j.value().to_json(), (n, request, ending)
