"""Resumption replay: a request with ``Last-Event-ID`` resumes the recorded stream after that
event (with its ``retry:``), and the ``resume:restart|gap|refuse`` faults, seen by a real
httpx-sse client over real sockets; the pure cut (``_resume``) checked on the recorded bytes."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator

import httpx
import pytest
from stream_helpers import event_bytes, stream_cassette, stream_response, texts

from ssevcr._cassette import Cassette, Interaction, Request, Response
from ssevcr._player import Player
from ssevcr._resume import resumable, resumed
from ssevcr._server_thread import ServerThread
from ssevcr._sse import parse


@pytest.fixture
def serve() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(cassette: Cassette, **kwargs: object) -> ServerThread:
        player = Player.create(cassette, repeat=True, **kwargs)  # type: ignore[arg-type]
        server = ServerThread(player, log=lambda _l: None).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.close()


def all_events(n: int, start: int = 1) -> bytes:
    return b"".join(event_bytes(i) for i in range(start, n + 1))


# ---------------------------------------------------------------------------------------------
# the cut, on the recorded bytes


def test_resumed_sends_every_byte_after_the_event_named_at_its_recorded_pace() -> None:
    response = stream_response(6, gap=0.1)
    after = resumed(response, "2")
    assert after is not None
    assert after.body == all_events(6, 3)
    recorded = [c.at for c in response.chunks]
    # event 3 was recorded 0.1 s after event 2 ended: it comes 0.1 s after the head, and so on
    assert [round(c.at - after.headers_at, 6) for c in after.chunks] == [
        round(recorded[k] - recorded[1] + response.headers_at - after.headers_at, 6)
        for k in range(2, 6)
    ]
    assert resumed(response, "6") is not None and resumed(response, "6").body == b""  # type: ignore[union-attr]
    assert resumed(response, "99") is None


def test_resumed_with_gap_loses_exactly_one_event_and_keeps_the_retry_block() -> None:
    response = stream_response(5, retry=150)
    after = resumed(response, "2", gap=True)
    assert after is not None
    assert after.body == b"retry: 150\n\n" + event_bytes(4) + event_bytes(5)
    frames = parse(after.body)
    assert frames.frames[0].retry == 150


def test_an_event_stream_without_ids_or_not_an_event_stream_cannot_be_resumed() -> None:
    assert resumable(stream_response(3, ids=False)) is None
    plain = Response.from_chunks(200, [(0.0, b'{"id": 1}')], headers=(("content-type", "a/j"),))
    assert resumable(plain) is None


def test_a_gzip_stream_resumes_decoded() -> None:
    body = all_events(4)
    packed = gzip.compress(body)
    response = Response.from_chunks(
        200,
        [(0.01 * i, packed[i * 9 : (i + 1) * 9]) for i in range(len(packed) // 9 + 1)],
        headers=(("content-type", "text/event-stream"), ("content-encoding", "gzip")),
    )
    after = resumed(response, "1")
    assert after is not None and after.body == all_events(4, 2)
    assert all(k.lower() != "content-encoding" for k, _ in after.headers)


# ---------------------------------------------------------------------------------------------
# over sockets, with httpx-sse


def sse_client_events(  # type: ignore[no-untyped-def]
    url: str, last_id: str | None = None, stop_after: int | None = None
):
    """GET ``url`` with httpx-sse: (status, the events with data, the retry times seen).
    httpx-sse also dispatches a block without data (a lone ``retry:``); a spec-following
    client does not, so those only count for their retry."""
    from httpx_sse import connect_sse

    headers = {"Last-Event-ID": last_id} if last_id is not None else {}
    got, retries = [], []
    with httpx.Client() as client, connect_sse(client, "GET", url, headers=headers) as source:
        status = source.response.status_code
        if status != 200:
            return status, got, retries
        for sse in source.iter_sse():
            if sse.retry is not None:
                retries.append(sse.retry)
            if not sse.data:
                continue
            got.append(sse)
            if stop_after is not None and len(got) == stop_after:
                break
    return status, got, retries


def test_httpx_sse_reconnects_with_last_event_id_and_gets_the_rest(
    serve: Callable[..., ServerThread],
) -> None:
    server = serve(stream_cassette(8, retry=100), timing="instant")
    url = f"{server.url}/events"
    _, first, retries = sse_client_events(url, stop_after=3)
    assert [e.id for e in first] == ["1", "2", "3"] and retries == [100]
    _, rest, retries = sse_client_events(url, last_id=first[-1].id)
    assert [e.id for e in rest] == ["4", "5", "6", "7", "8"]
    assert retries == [100]  # the recorded reconnection time, sent again
    assert [e.json()["text"] for e in first + rest] == [f"w{i} " for i in range(1, 9)]
    resumed_play = server.player.plays[1]
    assert resumed_play.resumed_after == "3"
    d = resumed_play.delivered
    assert d is not None and d.resumed_after == "3" and d.events == 5 and d.completed
    assert dict(d.request_headers)["Last-Event-ID"] == "3"


@pytest.mark.parametrize(
    ("fault", "status", "ids"),
    [
        ("resume:restart", 200, [str(i) for i in range(1, 7)]),  # from the start: de-duplicate
        ("resume:gap", 200, ["5", "6"]),  # event 4 (the one after 3) lost
        ("resume:refuse", 204, []),  # EventSource stops
    ],
)
def test_each_resume_fault_is_seen_by_the_client(
    serve: Callable[..., ServerThread], fault: str, status: int, ids: list[str]
) -> None:
    server = serve(stream_cassette(6), timing="instant", faults=[fault])
    url = f"{server.url}/events"
    _, first, _ = sse_client_events(url)  # (a first connection is not a resumption: no fault)
    assert [e.id for e in first] == [str(i) for i in range(1, 7)]
    got_status, again, _ = sse_client_events(url, last_id="3")
    assert got_status == status
    assert [e.id for e in again] == ids
    d = server.player.plays[1].delivered
    assert d is not None and d.fired == (fault,)


def test_a_recorded_reconnection_is_played_as_recorded_before_any_resumption(
    serve: Callable[..., ServerThread],
) -> None:
    first = Interaction(Request("GET", "http://x/events"), stream_response(3))
    recorded_retry = Interaction(
        Request("GET", "http://x/events", (("last-event-id", "3"),)),
        Response.from_chunks(
            200,
            [(0.01, b'id: 9\ndata: {"text": "recorded "}\n\n')],
            headers=(("content-type", "text/event-stream"),),
        ),
    )
    server = serve(Cassette(interactions=(first, recorded_retry)), timing="instant")
    url = f"{server.url}/events"
    assert texts(httpx.get(url).content) == ["w1 ", "w2 ", "w3 "]
    r = httpx.get(url, headers={"Last-Event-ID": "3"})
    assert texts(r.content) == ["recorded "]
    r = httpx.get(url, headers={"Last-Event-ID": "2"})  # now resumed from the first stream
    assert r.content == event_bytes(3)
