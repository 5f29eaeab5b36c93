"""The sans-IO HTTP/1.1 module against h11, on bytes only (no sockets: ``_http1`` has none).

Reading: every input is fed whole and one byte at a time, as h11's own tests do, and the reader
agrees with h11 on what the bytes are (a request with the same method, target, headers and body,
more data needed, or an error); on arbitrary bytes it parses them or returns a ProtocolError,
never anything else. Writing: the writer's bytes are h11's for the same request and response, and
no head that would split a response can be made.
"""

from __future__ import annotations

from array import array
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssevcr import _http1 as http1
from ssevcr._cassette import head_problems
from ssevcr._schedule import Abort, Close, Schedule, Send

Event = http1.Request | http1.NeedData | http1.ProtocolError


def read_all(
    data: bytes, *, byte_by_byte: bool = False, pieces: list[bytes] | None = None, **kw: Any
) -> list[Event]:
    """Every event the reader gives for ``data`` (fed whole, byte by byte, or as ``pieces``):
    the requests, then the last NeedData or error."""
    reader = http1.RequestReader(authority="127.0.0.1:1", **kw)
    events: list[Event] = []
    if pieces is None:
        pieces = [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]
    for piece in pieces:
        event = reader.feed(piece)
        while isinstance(event, http1.Request):
            events.append(event)
            event = reader.feed()
        last = event
    if not pieces:
        last = reader.feed()
    events.append(last)
    return events


def summary(events: list[Event]) -> list[Any]:
    out: list[Any] = []
    for e in events:
        if isinstance(e, http1.Request):
            h = e.head
            out.append((h.method, h.target, h.headers, h.http_version, h.keep_alive, e.body))
        elif isinstance(e, http1.ProtocolError):
            out.append(("error", e.status))
        else:
            out.append(("need", e.stage))
    return out


def h11_reads(data: bytes) -> list[Any]:
    """What h11 (as a server, cycling through keep-alive requests) makes of ``data``, in the form
    of :func:`summary`."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    out: list[Any] = []
    head: h11.Request | None = None
    body = b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if head is not None:
                    out.append(("need", "body"))
                else:
                    out.append(("need", "head" if conn.trailing_data[0] else "idle"))
                return out
            if isinstance(event, h11.Request):
                head, body = event, b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                keep = conn.their_state is h11.DONE
                headers = tuple(
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers.raw_items()
                )
                out.append(
                    (
                        head.method.decode(),
                        head.target.decode("latin-1"),
                        headers,
                        head.http_version.decode(),
                        keep,
                        body,
                    )
                )
                if not keep:
                    return out
                head = None
                conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()
            else:
                return out
    except h11.RemoteProtocolError as e:
        out.append(("error", e.error_status_hint))
        return out


# request bytes: mostly plausible, often broken
METHODS = st.sampled_from([b"GET", b"POST", b"HEAD", b"get", b"P@ST", b"", b"M-SEARCH"])
TARGETS = st.sampled_from(
    [b"/", b"/v1/chat/completions?a=b&c", b"http://h.example/p", b"/a b", b"/\xc3\xa9", b""]
)
VERSIONS = st.sampled_from([b"HTTP/1.1"] * 4 + [b"HTTP/1.0", b"HTTP/2.0", b"http/1.1"])
NAMES = st.sampled_from(
    [
        b"Host",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Connection",
        b"Expect",
        b"Content-Type",
        b"X-Stainless-Lang",
        b"bad name",
        b"",
    ]
)
VALUES = st.sampled_from(
    [
        b"5",
        b"0",
        b"3",
        b"5, 5",
        b"-1",
        b"abc",
        b"\xc2\xb2",
        b"chunked",
        b"close",
        b"keep-alive",
        b"100-continue",
        b"127.0.0.1:8080",
        b"[",
        b"",
        b"a\tb",
        b"\x01",
        b"caf\xc3\xa9",
    ]
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    line = draw(METHODS) + b" " + draw(TARGETS) + b" " + draw(VERSIONS)
    headers = draw(st.lists(st.tuples(NAMES, VALUES), max_size=5))
    if draw(st.booleans()):
        headers.insert(0, (b"Host", b"localhost"))
    eol = draw(st.sampled_from([b"\r\n"] * 6 + [b"\n"]))
    head = eol.join([line, *(n + b": " + v for n, v in headers)]) + eol + eol
    body = draw(st.sampled_from([b"", b"abc", b"3\r\nabc\r\n0\r\n\r\n", b"hello"]))
    return head + body


def normal(events: list[Event]) -> list[Any]:
    out = summary(events)
    if len(out) > 1 and out[-2][0] != "error" and out[-2][4] is False:
        assert out[-1] == ("need", "idle")  # nothing is read after the last request
        out.pop()
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=3).map(b"".join))
def test_the_reader_reads_what_h11_reads_whole_and_byte_by_byte(data: bytes) -> None:
    events = read_all(data)
    got = normal(events)
    assert normal(read_all(data, byte_by_byte=True)) == got, data
    want = h11_reads(data)
    last = events[-1]
    if isinstance(last, http1.ProtocolError) and "invalid " in last.message:
        # what the reader refuses on its own (h11 does not look inside a Host or URL)
        assert "invalid Host" in last.message or "invalid URL" in last.message
        assert got[:-1] == want[: len(got) - 1], (data, got, want)
        return
    if want[-1][0] == "error":
        assert got[-1][0] == "error" and got[:-1] == want[:-1], (data, got, want)
        return
    assert got == want, (data, got, want)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 40))
def test_any_bytes_are_a_request_more_data_or_a_protocol_error(data: bytes, step: int) -> None:
    reader = http1.RequestReader(max_body=100, max_head=200)
    for i in range(0, len(data) + 1, step):
        event = reader.feed(data[i : i + step])
        while isinstance(event, http1.Request):
            event = reader.feed()
        assert isinstance(event, http1.NeedData | http1.ProtocolError)
        if isinstance(event, http1.ProtocolError):
            assert 400 <= event.status < 500 and event.message
            assert reader.feed(b"more") is event  # and stays refused
            return


PLAIN = b"POST /v1/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc"


def test_pipelined_requests_come_out_one_by_one_and_heads_seen_before_are_not_parsed_again() -> (
    None
):
    cache = http1.HeadCache()
    reader = http1.RequestReader(cache=cache)
    first = reader.feed(PLAIN * 3)
    second, third, rest = reader.feed(), reader.feed(), reader.feed()
    assert isinstance(first, http1.Request) and isinstance(second, http1.Request)
    assert isinstance(third, http1.Request) and rest == http1.NeedData("idle")
    assert first.head is second.head is third.head  # one parse, looked up twice
    assert first.head.url == "http://localhost/v1/x" and first.body == b"abc"
    assert 0 < cache.size <= cache.max_bytes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(requests(), min_size=1, max_size=3),
    st.lists(st.integers(0, 2), min_size=1, max_size=6),
)
def test_requests_that_come_again_alone_read_as_the_bytes_do(
    pool: list[bytes], picks: list[int]
) -> None:
    # a keep-alive client sends the same bytes again and again (the reader gives the same event
    # again): the same events as the bytes fed at once, whatever came between
    pieces = [pool[n % len(pool)] for n in picks]
    assert normal(read_all(b"", pieces=pieces)) == normal(read_all(b"".join(pieces)))


def test_the_same_request_again_is_the_same_event_and_nothing_else_is() -> None:
    reader = http1.RequestReader()
    first = reader.feed(PLAIN)
    assert isinstance(first, http1.Request) and reader.feed() == http1.NeedData("idle")
    assert reader.feed(PLAIN) is first  # alone again: the same value, nothing parsed
    other = PLAIN.replace(b"abc", b"abd")
    assert isinstance(third := reader.feed(other), http1.Request) and third.body == b"abd"
    # in two pieces, or behind other bytes, it is read as any request is
    assert reader.feed(other[:9]) == http1.NeedData("head")
    again = reader.feed(other[9:])
    assert isinstance(again, http1.Request) and again.body == b"abd"
    big = http1.RequestReader()  # past _AGAIN_MAX it is not kept, and still read right
    large = PLAIN.replace(b"Content-Length: 3", b"Content-Length: 20000") + b"x" * 19997
    events = [big.feed(large), big.feed(), big.feed(large)]
    assert isinstance(events[0], http1.Request) and isinstance(events[2], http1.Request)
    assert events[0] is not events[2] and events[0].body == events[2].body
    # after an error (found on the fast path, or by h11) the same bytes get the error; after
    # Connection: close, nothing
    for bad in (
        b"GET / HTTP/1.1\r\nHost: [\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ):
        broken = http1.RequestReader()
        assert isinstance(broken.feed(PLAIN), http1.Request)
        error = broken.feed(bad)
        assert isinstance(error, http1.ProtocolError) and broken.feed(PLAIN) is error
    closing = http1.RequestReader()
    assert isinstance(closing.feed(PLAIN), http1.Request)
    close = b"GET /c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    assert isinstance(closing.feed(close), http1.Request)
    assert closing.feed(PLAIN) == http1.NeedData("idle")


def test_the_head_cache_is_bounded_by_bytes() -> None:
    cache = http1.HeadCache(max_bytes=20_000)
    reader = http1.RequestReader(cache=cache)
    for n in range(2_000):
        event = reader.feed(
            b"GET /%d HTTP/1.1\r\nHost: localhost\r\nX-Pad: %s\r\n\r\n" % (n, b"p" * 500)
        )
        assert isinstance(event, http1.Request)
        assert cache.size <= 20_000


def test_one_request_through_h11_then_the_fast_path_again() -> None:
    chunked = (
        b"POST /u HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    close = b"GET /c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    events = read_all(PLAIN + chunked + PLAIN + close + PLAIN)
    got = [
        (e.head.target, e.body, e.head.keep_alive) for e in events if isinstance(e, http1.Request)
    ]
    # after Connection: close the reader stops: the server closes after the answer
    assert got[:4] == [
        ("/v1/x", b"abc", True),
        ("/u", b"abc", True),
        ("/v1/x", b"abc", True),
        ("/c", b"", False),
    ]


def test_expect_100_continue_is_asked_for_once() -> None:
    reader = http1.RequestReader()
    head = (
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    )
    assert reader.feed(head) == http1.NeedData("body", send_continue=True)
    assert reader.feed(b"a") == http1.NeedData("body")
    event = reader.feed(b"bc")
    assert isinstance(event, http1.Request) and event.body == b"abc"


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 101\r\n\r\n",
            413,
            "larger than the limit",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000000\r\n\r\n",
            413,
            "larger than",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"32\r\n"
            + b"x" * 50
            + b"\r\n"
            + b"33\r\n"
            + b"y" * 51
            + b"\r\n",
            413,
            "larger than the limit",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: \xc2\xb2\r\n\r\n",
            400,
            "malformed",
        ),
        (b"GET / HTTP/1.1\r\nHost: [\r\n\r\n", 400, "invalid Host"),
        (b"GET http://[::1 HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "invalid URL"),
        (b"GET http://h:99999/ HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "invalid URL"),
        (b"GET / HTTP/1.1\r\nHost: localhost\r\nX: " + b"x" * 300 + b"\r\n", 431, ""),
    ],
    ids=["length", "10 GB", "chunked", "unicode digit", "Host [", "URL [::1", "port", "long head"],
)
def test_requests_refused_with_their_status(data: bytes, status: int, words: str) -> None:
    for byte_by_byte in (False, True):
        last = read_all(data, byte_by_byte=byte_by_byte, max_body=100, max_head=200)[-1]
        assert isinstance(last, http1.ProtocolError) and last.status == status, last
        assert words in last.message


# ---------------------------------------------------------------------------------------------
# writing


HEADER_PAIRS = st.lists(
    st.tuples(
        st.sampled_from(["Content-Type", "x-request-id", "X-A", "vary"]),
        st.sampled_from(["text/event-stream", "r1", "", "a b", "caf\xe9"]),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from([200, 201, 204, 304, 404, 429, 500, 599]),
    reason=st.sampled_from(["OK", "", "Too Many Requests", "custom reason"]),
    headers=HEADER_PAIRS,
    sized=st.booleans(),
    body=st.lists(st.binary(min_size=0, max_size=20), max_size=4),
    method=st.sampled_from([b"GET", b"POST", b"HEAD"]),
    version=st.sampled_from([b"1.1", b"1.0"]),
    close=st.booleans(),
)
def test_the_writer_writes_the_bytes_h11_writes(
    status: int,
    reason: str,
    headers: list[tuple[str, str]],
    sized: bool,
    body: list[bytes],
    method: bytes,
    version: bytes,
    close: bool,
) -> None:
    request = b"%s / HTTP/%s\r\nHost: localhost\r\n%s\r\n" % (
        method,
        version,
        b"Connection: close\r\n" if close else b"",
    )
    (incoming,) = [e for e in read_all(request) if isinstance(e, http1.Request)]
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request)
    conn.next_event()
    conn.next_event()
    no_body = method == b"HEAD" or status in (204, 304)
    length = sum(map(len, body)) if sized else None
    all_headers = [*headers, *([("Content-Length", str(length))] if sized else [])]
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in all_headers]
    if status in (204, 304) and sized:
        return  # (h11 refuses nothing here, but no recording has both)
    want = conn.send(h11.Response(status_code=status, headers=raw, reason=reason.encode("latin-1")))
    writer = http1.ResponseWriter(incoming.head)
    got = writer.head(http1.response_head(status, reason, tuple(all_headers), length))
    assert got == want
    for piece in body:
        want_data = b"" if no_body else conn.send(h11.Data(data=piece)) or b""
        assert writer.data(piece) == want_data
    assert writer.end() == conn.send(h11.EndOfMessage())
    assert writer.keep_alive == (conn.our_state is h11.DONE)


def test_no_head_that_splits_a_response_can_be_made() -> None:
    attack = "OK\r\nContent-Length: 5\r\n\r\nHACKD"
    with pytest.raises(http1.BadHead) as info:
        http1.response_head(200, attack, ())
    assert info.value.problems == head_problems(200, attack, ())
    assert info.value.problems[0][0] == "reason"
    for headers in ((("X-A", "a\r\nb"),), (("X A", "b"),), (("X-A", "\0"),)):
        with pytest.raises(http1.BadHead):
            http1.response_head(200, "OK", headers)
    with pytest.raises(http1.BadHead):
        http1.response_head(1000, "OK", ())
    ok = http1.response_head(200, "OK", (("X-A", "b"),))
    with pytest.raises(http1.BadHead):
        ok.with_headers((("access-control-allow-origin", "http://a\nb"),))


def _schedule(sized: bool, end: Any = None) -> Schedule:
    steps = tuple(Send(0.01 * i, b"data: %d\n\n" % i) for i in range(50))
    length = sum(len(s.data) for s in steps) if sized else None
    headers = (("content-type", "text/event-stream"),)
    if sized:
        headers += (("content-length", str(length)),)
    return Schedule(
        200, "OK", "HTTP/1.1", headers, 0.0, steps, end or Close(0.6), content_length=length
    )


@pytest.mark.parametrize("sized", [False, True])
def test_a_framed_schedule_gives_the_bytes_of_framing_each_step(sized: bool) -> None:
    s = _schedule(sized)
    f = http1.framed(s)
    assert http1.framed(s) is f  # kept with the schedule
    request = read_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")[0]
    assert isinstance(request, http1.Request)
    sliced, stepped = http1.ResponseWriter(request.head), http1.ResponseWriter(request.head)
    a = (
        [sliced.head(f.head)]
        + [bytes(sliced.steps(f, i, min(i + 7, 50))) for i in range(0, 50, 7)]
        + [sliced.end()]
    )
    b = [stepped.head(f.head)] + [stepped.data(st.data) for st in s.steps] + [stepped.end()]
    assert b"".join(a) == b"".join(b) == f.whole
    old = http1.ResponseWriter(read_all(b"GET / HTTP/1.0\r\n\r\n")[0].head)  # type: ignore[union-attr]
    head = old.head(f.head)
    assert b"Connection: close" in head and (b"Transfer-Encoding" in head) is False
    assert bytes(old.steps(f, 0, 50)) == b"".join(st.data for st in s.steps)


def test_a_faulted_schedule_is_framed_for_its_play_only() -> None:
    s = _schedule(False, Abort(0.6))
    faulted = Schedule(
        **{
            **{
                k: getattr(s, k)
                for k in (
                    "status",
                    "reason",
                    "http_version",
                    "headers",
                    "headers_at",
                    "steps",
                    "end",
                )
            },
            "fired": ("truncate",),
        }
    )  # type: ignore[arg-type]
    assert http1.framed(faulted).whole is None and not faulted.memo  # ends badly, not kept
    assert http1.framed(s).whole is None  # (an abort is never one ready-made write)
    assert array("d", http1.framed(s).timeline.at) == array("d", [st.at for st in s.steps])
