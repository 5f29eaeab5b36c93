"""Resumption replay: a request with ``Last-Event-ID`` resumes the recorded stream after that
event (with its ``retry:``), and the ``resume:restart|gap|refuse`` faults, seen by a real
httpx-sse client over real sockets; the pure cut (``_resume``) checked on the recorded bytes."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from stream_helpers import event_bytes, read_reconnecting, stream_cassette, stream_response, texts
from upstream import Upstream

from ssevcr._cassette import Cassette, End, Interaction, Outcome, Request, Response
from ssevcr._errors import InvalidValueError
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
    deadline = time.monotonic() + 10  # (the server's thread journals after its write)
    while not resumed_play.completed and time.monotonic() < deadline:
        time.sleep(0.01)
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


# ---------------------------------------------------------------------------------------------
# recording a reconnecting client: each connection, linked to the stream it continues


def _reconnection(last_id: str, url: str = "http://x/events", **headers: str) -> Interaction:
    request = Request("GET", url, (("last-event-id", last_id), *headers.items()))
    return Interaction(request, stream_response(2))


def test_linked_names_the_latest_earlier_stream_of_that_url_holding_the_id() -> None:
    from ssevcr._cassette import Resumes
    from ssevcr._resume import linked

    first = Interaction(Request("GET", "http://x/events"), stream_response(3))
    other = Interaction(Request("GET", "http://x/other"), stream_response(3))
    again = Interaction(Request("GET", "http://x/events"), stream_response(5))
    out = linked(
        [first, other, again],
        [
            _reconnection("3"),  # ids 1..5 are in `again` (2), the latest: not `first` (0)
            _reconnection("3", "http://x/other"),  # the other URL's stream (1)
            _reconnection("9"),  # no stream has event 9
            Interaction(
                Request("POST", "http://x/events", (("last-event-id", "2"),)), first.response
            ),
        ],
    )
    assert [i.resumes for i in out] == [Resumes(2, "3"), Resumes(1, "3"), None, None]
    # a reconnection in the same batch links to one before it in the batch
    chained = linked([], [first, _reconnection("2")])
    assert chained[1].resumes == Resumes(0, "2")
    # MCP: both requests name a session: it must be the same
    mcp_first = Interaction(
        Request("GET", "http://x/mcp", (("mcp-session-id", "a"),)), stream_response(3)
    )
    assert (
        linked([mcp_first], [_reconnection("2", "http://x/mcp", **{"mcp-session-id": "b"})])[
            0
        ].resumes
        is None
    )
    assert linked([mcp_first], [_reconnection("2", "http://x/mcp", **{"mcp-session-id": "a"})])[
        0
    ].resumes == Resumes(0, "2")


@pytest.mark.parametrize(
    ("link", "problem"),
    [
        (
            {"interaction": 1, "after_id": "3"},
            "interactions[1].resumes.interaction: a reconnection",
        ),
        ({"interaction": 5, "after_id": "3"}, "interactions[1].resumes.interaction"),
        ({"interaction": -1, "after_id": "3"}, "expected an index >= 0"),
        ({"interaction": True, "after_id": "3"}, "expected a number"),
        ({"interaction": 0.0, "after_id": "3"}, "expected an integer"),
        ({"interaction": 0, "after_id": ""}, "resumes.after_id: expected an event ID"),
        ({"interaction": 0, "after_id": "a\nb"}, "resumes.after_id: expected an event ID"),
        ({"interaction": 0, "after_id": 3}, "resumes.after_id: expected text"),
        ({"interaction": 0}, "resumes.after_id: missing"),
        ([0, "3"], "resumes: expected a map"),
    ],
)
def test_a_hostile_resumes_link_is_one_clean_cassette_error(link: object, problem: str) -> None:
    import json

    import msgpack

    from ssevcr import _format
    from ssevcr._errors import CassetteError

    cassette = Cassette(
        (Interaction(Request("GET", "http://x/events"), stream_response(3)), _reconnection("3"))
    )
    doc = json.loads(_format.export_json(cassette))
    doc["interactions"][1]["resumes"] = link
    with pytest.raises(CassetteError, match=re.escape(problem)):
        _format.import_json(json.dumps(doc, indent=1))
    packed = msgpack.unpackb(_format.dumps(cassette), raw=False)
    packed["interactions"][1]["resumes"] = link
    with pytest.raises(CassetteError, match=re.escape(problem)):
        _format.loads(msgpack.packb(packed, use_bin_type=True))


def test_a_link_round_trips_in_msgpack_and_json_and_a_cassette_without_one_is_unchanged() -> None:
    from ssevcr import _format
    from ssevcr._cassette import Resumes

    plain = Cassette((Interaction(Request("GET", "http://x/events"), stream_response(3)),))
    assert b"resumes" not in _format.dumps(plain) and "resumes" not in _format.export_json(plain)
    linked_cassette = plain.append(replace(_reconnection("3"), resumes=Resumes(0, "3")))
    assert _format.loads(_format.dumps(linked_cassette)) == linked_cassette
    assert _format.import_json(_format.export_json(linked_cassette)) == linked_cassette
    with pytest.raises(InvalidValueError):
        Cassette((replace(_reconnection("3"), resumes=Resumes(0, "3")),))  # not an earlier one


def test_a_linked_reconnection_answers_its_last_event_id_every_time_it_comes(
    serve: Callable[..., ServerThread],
) -> None:
    from ssevcr._cassette import Resumes

    first = Interaction(
        Request("GET", "http://x/events"),
        Response.from_chunks(
            200,
            [(0.01, event_bytes(1)), (0.02, event_bytes(2))],
            headers=(("content-type", "text/event-stream"),),
            end=End(0.03, Outcome.UPSTREAM_ERROR, "cut"),
        ),
    )
    rest = Interaction(
        Request("GET", "http://x/events", (("last-event-id", "2"),)),
        Response.from_chunks(
            200, [(0.01, event_bytes(3))], headers=(("content-type", "text/event-stream"),)
        ),
        resumes=Resumes(0, "2"),
    )
    server = serve(Cassette((first, rest)), timing="instant")
    url = f"{server.url}/events"
    for _ in range(2):  # the second time both were played already: the link still decides
        with pytest.raises(httpx.HTTPError):
            httpx.get(url)  # cut after event 2, as recorded
        r = httpx.get(url, headers={"Last-Event-ID": "2"})
        assert r.content == event_bytes(3)  # the recorded continuation, not a resumption of #1
    plays = server.player.plays
    assert [p.index for p in plays] == [0, 1, 0, 1]
    assert [p.resumed_after for p in plays] == [None, "2", None, "2"]


def _show(path: Path) -> str:
    import subprocess

    from stream_helpers import SSEVCR

    out = subprocess.run([SSEVCR, "show", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_recording_a_reconnecting_client_in_process_links_its_connections(
    tmp_path: Path,
) -> None:
    import ssevcr
    from ssevcr import _store
    from ssevcr._cassette import Resumes

    path = tmp_path / "reconnect.msgpack"
    headers = {"x-upstream-events": "8", "x-upstream-cut-after": "3"}
    with Upstream() as up:
        url = f"{up.url}/events"
        with ssevcr.use_cassette(path, record="once"):
            live, sent = read_reconnecting(url, headers)
        assert sent == [None, "3"]  # cut after event 3 by the upstream, then resumed there
        assert [i for i, _ in live] == [str(i) for i in range(1, 9)]
        assert [json.loads(d)["text"] for _, d in live[:-1]] == [f"w{i} " for i in range(1, 8)]
    first, second = _store.load(path).interactions  # (the upstream is gone from here on)
    assert first.resumes is None and first.response.end.outcome is Outcome.UPSTREAM_ERROR
    assert second.resumes == Resumes(0, "3")
    assert second.request.header("last-event-id") == "3"
    assert "#2 resumes #1 after event id 3" in _show(path)
    with ssevcr.use_cassette(path, timing="instant") as cas:
        replayed, sent_again = read_reconnecting(url, headers)
    assert replayed == live and sent_again == [None, "3"]
    assert [p.resumed_after for p in cas.plays] == [None, "3"]
