"""HTTP/1.1 for the replay server, sans-IO: request bytes in, request events out; response heads,
bodies and ends out as bytes. No sockets, no clocks, no asyncio (the server is the I/O).

    reader = RequestReader(authority="127.0.0.1:8080")
    event = reader.feed(data)       # Request | NeedData | ProtocolError; feed() again for the next
    head = response_head(200, "OK", headers, content_length=None)    # validated, or BadHead
    writer = ResponseWriter(event.head)
    out = writer.head(head) + writer.data(b"...") + writer.end()     # writer.keep_alive after

Reading: a plain HTTP/1.1 keep-alive request (a strict subset of what h11 accepts: one Host, at
most one numeric Content-Length, no Transfer-Encoding, Expect, Upgrade or Connection other than
keep-alive) is parsed here, its head looked up when the same bytes came before (and the same
request given again, as the same value, when all its bytes come alone again); any other request
is read by h11 (HTTP/1.0, chunked uploads, 100-continue, ``Connection: close``, and malformed
requests, which become a :class:`ProtocolError` with h11's status), and the next request starts on
the fast path again. Bodies are capped (``max_body``: 413), heads too (``max_head``: 431), and a
Host or absolute URL that does not parse is a 400.

Writing: :func:`response_head` is the only way to make a :class:`ResponseHead`, and it validates
with :func:`ssevcr._cassette.head_problems` (status, reason phrase, header names and values), so a
writer cannot emit a head that splits a response. :class:`ResponseWriter` frames as h11 frames for
the request it answers: ``Transfer-Encoding: chunked`` for a body of unknown length to an HTTP/1.1
client, raw until close for HTTP/1.0, ``Connection: close`` when the connection must end, no body
for HEAD, 204, 304. :class:`FramedSchedule` is a schedule's head and body framed once (held with
the schedule, see :func:`framed`), so replaying it again frames nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ._cassette import Headers, head_problems
from ._schedule import Close, Schedule, Timeline

if TYPE_CHECKING:  # h11 is imported by the first request that is not simple (start-up time)
    import h11
    import h11._headers

__all__ = [
    "IDLE",
    "MAX_BODY",
    "MAX_HEAD",
    "BadHead",
    "Cors",
    "FramedSchedule",
    "Head",
    "HeadCache",
    "NeedData",
    "ProtocolError",
    "Request",
    "RequestReader",
    "ResponseHead",
    "ResponseWriter",
    "SimpleHead",
    "framed",
    "parse_simple_head",
    "response_head",
]

RawHeaders = list[tuple[bytes, bytes]]

MAX_HEAD = 16 * 1024
"""Bytes of a request head still incomplete before it is refused (h11's limit: 431)."""
MAX_BODY = 64 * 1024 * 1024
"""Default cap on a request body (413 past it), chunked or not."""

# the fast path's request grammar: h11's (RFC 9112) with stricter header values (no control bytes)
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.1")
_HEADER_LINE = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?)[ \t]*"
)
_BLANK_LINE = re.compile(rb"\n\r?\n")
_NOT_SIMPLE = frozenset({b"transfer-encoding", b"expect", b"upgrade", b"te", b"trailer"})
# a Host (RFC 9110 uri-host [":" port]): reg-name, IPv4 or an IP literal in brackets
_HOST = re.compile(r"(?:[-A-Za-z0-9._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?")
_CHUNKED_END = b"0\r\n\r\n"
_TE_CHUNKED = b"Transfer-Encoding: chunked\r\n"  # as h11 writes them
_CONNECTION_CLOSE = b"Connection: close\r\n"
_AGAIN_MAX = 16 * 1024  # a request up to this size (head and body) is recognized when repeated


# ---------------------------------------------------------------------------------------------
# events


@dataclass(frozen=True, slots=True, eq=False)
class Head:
    """A request head, decoded (latin-1) for matching. ``url`` is absolute: the target itself
    (absolute-form), the forwarded URL a trusted proxy named, or ``http://{Host}{target}``."""

    method: str
    target: str
    url: str
    headers: Headers
    host: str | None  # the Host header (None without one)
    http_version: str  # "1.1", "1.0"
    keep_alive: bool  # whether the connection may carry another request after the answer


@dataclass(frozen=True, slots=True, init=False)
class Request:
    """A whole request: its head and body."""

    head: Head
    body: bytes

    def __init__(self, head: Head, body: bytes) -> None:
        # frozen: the slots' own setters, in ~60% of the generated __init__'s time (one per request)
        _SET_HEAD(self, head)
        _SET_BODY(self, body)


_SET_HEAD = vars(Request)["head"].__set__
_SET_BODY = vars(Request)["body"].__set__


@dataclass(frozen=True, slots=True)
class NeedData:
    """No whole request yet. ``stage``: ``"idle"`` (no byte of one), ``"head"`` or ``"body"``.
    ``send_continue``: the client waits for ``100 Continue`` before sending its body (told once)."""

    stage: str
    send_continue: bool = False


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The bytes are not a request this server reads; answer ``status`` and close."""

    status: int
    message: str


IDLE = NeedData("idle")  # (always this value: no byte of a request yet)
_HEAD = NeedData("head")
_BODY = NeedData("body")
_CONTINUE = NeedData("body", send_continue=True)


# ---------------------------------------------------------------------------------------------
# reading


class SimpleHead:
    """A request head the fast path reads without h11 (see :func:`parse_simple_head`)."""

    __slots__ = ("end", "headers", "length", "method", "target")

    def __init__(self, end: int, method: bytes, target: bytes, headers: RawHeaders, length: int):
        self.end = end  # bytes of the head, blank line included
        self.method = method
        self.target = target
        self.headers = headers
        self.length = length  # of the body (content-length, 0 without one)


def parse_simple_head(data: bytes | bytearray, max_head: int = MAX_HEAD) -> SimpleHead | bool:
    """The head at the start of ``data`` if it is a plain HTTP/1.1 keep-alive request h11 would
    accept as is; ``True`` when more bytes are needed to tell; ``False`` when it is anything else
    (let h11 parse it: it may be fine, or get its 4xx)."""
    blank = _BLANK_LINE.search(data, 0, max_head + 4)  # where h11 sees the head end
    if blank is None:  # (h11 refuses at once a request line that starts with a control byte)
        return len(data) <= max_head and (not data or data[0] > 0x20)
    end = blank.start() - 1
    if blank[0] != b"\n\r\n" or end < 0 or data[end] != 13:  # bare LF line ends: h11's to judge
        return False
    lines = bytes(data[:end]).split(b"\r\n")
    first = _REQUEST_LINE.fullmatch(lines[0])
    if first is None or first[1] == b"CONNECT":
        return False
    headers: RawHeaders = []
    hosts = 0
    length = -1
    for line in lines[1:]:
        m = _HEADER_LINE.fullmatch(line)
        if m is None:
            return False
        name, value = m[1], m[2]
        lower = name.lower()
        if lower == b"host":
            hosts += 1
        elif lower == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > 20:
                return False
            length = int(value)
        elif lower == b"connection":
            if value.lower() != b"keep-alive":
                return False
        elif lower in _NOT_SIMPLE:
            return False
        headers.append((name, value))
    if hosts != 1:
        return False
    return SimpleHead(end + 4, first[1], first[2], headers, max(length, 0))


class HeadCache:
    """Request heads seen before, parsed (clients send the same head again and again), bounded by
    the bytes of the heads it keeps (``max_bytes``; emptied when full). Shared by the readers of
    one server."""

    __slots__ = ("_bytes", "_heads", "max_bytes", "max_key")

    def __init__(self, max_bytes: int = 1024 * 1024, max_key: int = 4096) -> None:
        self.max_bytes = max_bytes
        self.max_key = max_key  # longer heads are not kept
        self._heads: dict[bytes, tuple[Head, int]] = {}
        self._bytes = 0

    def get(self, key: bytes) -> tuple[Head, int] | None:
        return self._heads.get(key)

    def put(self, key: bytes, value: tuple[Head, int]) -> None:
        size = len(key) + sum(len(k) + len(v) for k, v in value[0].headers) + 512
        if len(key) > self.max_key or size > self.max_bytes:
            return
        if self._bytes + size > self.max_bytes:
            self._heads.clear()
            self._bytes = 0
        self._heads[key] = value
        self._bytes += size

    @property
    def size(self) -> int:
        """Bytes accounted for."""
        return self._bytes


class RequestReader:
    """The requests on one connection, in order. ``feed(data)`` adds bytes and returns the next
    event; ``feed()`` returns the next one from bytes already fed (pipelining). After a
    :class:`ProtocolError` it returns that error again; after a request with ``keep_alive``
    false, ``NeedData("idle")`` (nothing more is read).

    ``authority`` is the Host to assume when a request has none; ``forwarded_header`` names a
    header that carries the URL the client asked for (a proxy in front sets it; it is removed from
    the headers)."""

    __slots__ = (
        "_again",
        "_authority",
        "_body",
        "_body_size",
        "_buffer",
        "_cache",
        "_continued",
        "_error",
        "_forwarded",
        "_h11",
        "_h11_request",
        "_last",
        "_pending",
        "max_body",
        "max_head",
    )

    def __init__(
        self,
        *,
        authority: str = "localhost",
        max_body: int = MAX_BODY,
        max_head: int = MAX_HEAD,
        forwarded_header: str | None = None,
        cache: HeadCache | None = None,
    ) -> None:
        self._authority = authority
        self.max_body = max_body
        self.max_head = max_head
        self._forwarded = forwarded_header.lower() if forwarded_header else None
        self._cache = cache if cache is not None else HeadCache()
        self._buffer = bytearray()
        self._pending: tuple[Head, int, int] | None = None  # (head, head bytes, body length)
        self._h11: h11.Connection | None = None  # reading one request that is not simple
        self._h11_request: h11.Request | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._continued = False
        self._error: ProtocolError | None = None
        self._last = False
        # the bytes of the latest simple request that came alone in one piece, and its event:
        # a keep-alive client sends the same request again and again
        self._again: tuple[bytes, Request] | None = None

    @property
    def buffered(self) -> int:
        """Bytes fed and not yet returned as part of a request."""
        if self._h11 is not None:
            return len(self._h11.trailing_data[0]) + self._body_size
        return len(self._buffer)

    def take(self) -> bytes:
        """The bytes fed after the last request, taken away (the connection switches to another
        protocol: they are its first bytes); nothing more is read."""
        if self._h11 is not None:
            rest = bytes(self._h11.trailing_data[0])
            self._h11 = None
        else:
            rest = bytes(self._buffer)
            self._buffer.clear()
        self._last = True
        self._again = None
        return rest

    def receive(self, data: bytes) -> None:
        """Add bytes without reading them yet (while the connection is busy answering)."""
        if self._error is not None or self._last:
            return
        if self._h11 is not None:
            self._h11.receive_data(data)
        else:
            self._buffer += data

    def feed(self, data: bytes = b"") -> Request | NeedData | ProtocolError:
        """Add ``data`` (if any) and return the next event. The same bytes as the latest
        simple request, coming alone again, give the same event (the same value)."""
        alone = False
        if data:
            again = self._again
            if again is not None and not self._buffer and data == again[0]:
                return again[1]
            alone = not self._buffer and len(data) <= _AGAIN_MAX
            self.receive(data)
        if self._error is not None:
            return self._error
        if self._h11 is not None:
            return self._next_h11()
        if self._last:  # after a request that ends the connection: nothing more is read
            return IDLE
        buffer = self._buffer
        pending = self._pending
        if pending is None:
            if not buffer:
                return IDLE
            end = buffer.find(b"\r\n\r\n", 0, self.max_head + 4)
            if end < 0:
                simple = parse_simple_head(buffer, self.max_head)
                return _HEAD if simple is True else self._to_h11()
            key = bytes(buffer[: end + 4])
            cached = self._cache.get(key)
            if cached is None:
                simple = parse_simple_head(key, self.max_head)
                if not isinstance(simple, SimpleHead):
                    return self._to_h11()
                made = self._head(
                    simple.method, simple.target, simple.headers, "1.1", keep_alive=True
                )
                if isinstance(made, ProtocolError):
                    return self._fail(made)
                cached = (made, simple.length)
                self._cache.put(key, cached)
            if cached[1] > self.max_body:
                return self._fail(self._too_large(cached[1]))
            pending = (cached[0], end + 4, cached[1])
        head, start, length = pending
        total = start + length
        if len(buffer) < total:
            self._pending = pending
            return _BODY
        self._pending = None
        body = bytes(buffer[start:total])
        del buffer[:total]
        request = Request(head, body)
        if alone:
            self._again = None if buffer else (bytes(data), request)
        return request

    # --- h11, for one request that is not simple

    def _to_h11(self) -> Request | NeedData | ProtocolError:
        import h11

        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head)
        conn.receive_data(bytes(self._buffer))
        self._buffer.clear()
        self._again = None
        self._h11, self._h11_request = conn, None
        self._body, self._body_size, self._continued = [], 0, False
        return self._next_h11()

    def _next_h11(self) -> Request | NeedData | ProtocolError:
        import h11

        conn = self._h11
        assert conn is not None
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    if self._h11_request is None:
                        return _HEAD
                    if conn.they_are_waiting_for_100_continue and not self._continued:
                        self._continued = True
                        return _CONTINUE
                    return _BODY
                if isinstance(event, h11.Request):
                    self._h11_request = event
                    length = _content_length(event.headers)
                    if length is not None and length > self.max_body:
                        return self._fail(self._too_large(length))
                elif isinstance(event, h11.Data):
                    self._body.append(event.data)
                    self._body_size += len(event.data)
                    if self._body_size > self.max_body:
                        return self._fail(self._too_large(self._body_size))
                elif isinstance(event, h11.EndOfMessage):
                    return self._h11_done(conn)
                else:  # ConnectionClosed cannot come: the end of the stream is never fed
                    return self._fail(ProtocolError(400, "malformed HTTP request"))
        except h11.RemoteProtocolError as e:
            hint = e.error_status_hint
            return self._fail(
                ProtocolError(hint if 400 <= hint < 500 else 400, f"malformed HTTP request: {e}")
            )

    def _h11_done(self, conn: h11.Connection) -> Request | ProtocolError:
        import h11

        request = self._h11_request
        assert request is not None
        made = self._head(
            request.method,
            request.target,
            list(request.headers.raw_items()),
            request.http_version.decode("ascii"),
            keep_alive=conn.their_state is h11.DONE,
        )
        if isinstance(made, ProtocolError):
            return self._fail(made)
        body = b"".join(self._body)
        # the next request, if any, starts on the fast path; none after the last one
        self._buffer = bytearray(conn.trailing_data[0] if made.keep_alive else b"")
        self._h11, self._h11_request, self._body, self._body_size = None, None, [], 0
        self._last = not made.keep_alive
        return Request(made, body)

    # --- shared

    def _fail(self, error: ProtocolError) -> ProtocolError:
        self._error = error
        self._again = None
        self._buffer.clear()
        self._h11 = None
        return error

    def _too_large(self, size: int) -> ProtocolError:
        return ProtocolError(
            413,
            f"request body of {size} bytes or more is larger than the limit ({self.max_body} "
            "bytes; ssevcr replay --max-body)",
        )

    def _head(
        self,
        method: bytes,
        target: bytes,
        raw: RawHeaders,
        version: str,
        *,
        keep_alive: bool,
    ) -> Head | ProtocolError:
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw)
        text = target.decode("latin-1")
        host = next((v for k, v in headers if k.lower() == "host"), None)
        if host is not None and not _HOST.fullmatch(host):
            return ProtocolError(400, f"malformed HTTP request: invalid Host header {host!r}")
        forwarded = self._forwarded
        url = None
        if forwarded is not None:
            url = next((v for k, v in headers if k.lower() == forwarded), None)
            if url is not None:
                headers = tuple((k, v) for k, v in headers if k.lower() != forwarded)
        if not url:
            # origin-form, or absolute-form (a client that treats us as its proxy), or *
            url = f"http://{host or self._authority}{text}" if text.startswith("/") else text
        try:  # what matching will take apart must come apart
            parts = urlsplit(url)
            _ = parts.port
        except ValueError as e:
            return ProtocolError(400, f"malformed HTTP request: invalid URL {url!r} ({e})")
        return Head(method.decode("latin-1"), text, url, headers, host, version, keep_alive)


def _content_length(headers: h11._headers.Headers) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is digits
    return None


# ---------------------------------------------------------------------------------------------
# writing


class BadHead(Exception):
    """A response head that is not valid HTTP/1.1: ``problems`` as (field, problem) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{f}: {p}" for f, p in problems))


@dataclass(frozen=True, slots=True, eq=False)
class ResponseHead:
    """A validated response head without its framing headers (see :func:`response_head`)."""

    status: int
    reason: str
    headers: Headers
    content_length: int | None  # None: the body's length is unknown (chunked, or until close)
    line: bytes  # b"HTTP/1.1 200 OK\r\n"
    block: bytes  # the header lines
    closes: bool  # its headers already say Connection: close

    def with_headers(self, extra: Headers) -> ResponseHead:
        """This head with more headers after its own (validated too)."""
        if not extra:
            return self
        return response_head(self.status, self.reason, (*self.headers, *extra), self.content_length)


def response_head(
    status: int, reason: str, headers: Headers, content_length: int | None = None
) -> ResponseHead:
    """A head the writer may emit: raises :class:`BadHead` for anything that is not valid HTTP/1.1
    (status 100-599, an RFC 9110 reason phrase, token names, values without control bytes).
    ``headers`` must not carry the framing (Transfer-Encoding, Connection): the writer adds it;
    a Content-Length among them must be ``content_length``."""
    problems = head_problems(status, reason, headers)
    if problems:
        raise BadHead(problems)
    line = b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("latin-1"))
    block = b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)
    closes = any(k.lower() == "connection" and v.lower() == "close" for k, v in headers)
    return ResponseHead(status, reason, headers, content_length, line, block, closes)


_NONE, _LENGTH, _CHUNKED, _RAW = 0, 1, 2, 3  # how a writer frames the body


class ResponseWriter:
    """Frames one response to one request (``None``: a request that could not be read) the way
    h11 would. Call ``head`` once, ``data`` (or ``steps``) any number of times, then ``end`` or
    ``abort``; ``keep_alive`` then says whether the connection may carry the next request."""

    __slots__ = ("_framing", "_head_only", "_length", "_sent", "_version11", "keep_alive")

    def __init__(self, request: Head | None) -> None:
        self._head_only = request is not None and request.method == "HEAD"
        self._version11 = request is not None and request.http_version == "1.1"
        self.keep_alive = request is not None and request.keep_alive
        self._framing = _NONE
        self._length: int | None = None
        self._sent = 0

    def head(self, head: ResponseHead) -> bytes:
        status, length = head.status, head.content_length
        framing_header = b""
        need_close = False
        if status < 200 or status in (204, 304):
            self._framing = _NONE
        elif length is not None:
            self._framing = _NONE if self._head_only else _LENGTH
            self._length = length
        elif self._version11:
            framing_header = _TE_CHUNKED
            self._framing = _NONE if self._head_only else _CHUNKED
        else:  # an HTTP/1.0 client: the body runs until the connection closes
            self._framing = _NONE if self._head_only else _RAW
            need_close = not self._head_only
        if need_close or head.closes:
            self.keep_alive = False
        close = b"" if self.keep_alive or head.closes else _CONNECTION_CLOSE
        return b"".join((head.line, head.block, framing_header, close, b"\r\n"))

    @property
    def no_body(self) -> bool:
        """Whether the answer has no body (HEAD, 204, 304), once the head is written."""
        return self._framing == _NONE

    def data(self, data: bytes) -> bytes:
        framing = self._framing
        if framing == _CHUNKED:
            return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        if framing == _NONE:
            return b""
        self._sent += len(data)
        return data

    def steps(self, framed: FramedSchedule, start: int, stop: int) -> bytes | memoryview:
        """The body bytes of the schedule's steps ``start:stop``: a slice of the framing made once
        when it frames the same way, else framed here."""
        if self._framing == framed.framing:
            offsets = framed.offsets
            a, b = offsets[start], offsets[stop]
            if self._framing == _LENGTH:
                self._sent += b - a
            return framed.view[a:b]
        steps = framed.schedule.steps
        return b"".join(self.data(steps[i].data) for i in range(start, stop))

    def end(self) -> bytes:
        """The end of a well-formed body; raises ValueError if a sized body came out short."""
        framing = self._framing
        if framing == _CHUNKED:
            return _CHUNKED_END
        if framing == _LENGTH and self._sent != self._length:
            raise ValueError(f"{self._sent} body bytes sent with content-length {self._length}")
        if framing == _RAW:
            self.keep_alive = False
        return b""

    def abort(self) -> None:
        """The response ends without its end (the connection closes, or resets)."""
        self.keep_alive = False

    @staticmethod
    def informational(status: int = 100) -> bytes:
        return b"HTTP/1.1 %d Continue\r\n\r\n" % status


# ---------------------------------------------------------------------------------------------
# a schedule framed once


@dataclass(frozen=True, slots=True, eq=False)
class FramedSchedule:
    """A schedule's head (validated) and body framed once, laid out as the answer to a plain
    keep-alive HTTP/1.1 request: ``data`` is that head, the body (chunked when its length is
    unknown, as is otherwise) and its end, in one buffer that ``view`` slices without copying;
    step i starts at ``offsets[i]``. ``whole`` is ``data`` when it is the entire answer (the
    schedule ends well), else None."""

    schedule: Schedule
    head: ResponseHead
    framing: int
    data: bytes
    view: memoryview
    offsets: Sequence[int]
    timeline: Timeline
    whole: bytes | None
    last: float  # when everything is due: the head, every step and the end
    body: int  # body bytes in all (what a journal counts of a whole answer)


_MEMO = "http1.framed"


def framed(schedule: Schedule) -> FramedSchedule:
    """The schedule framed (raises :class:`BadHead` for a head HTTP/1.1 cannot carry). Kept in the
    schedule's memo when the player reuses it (no fault fired or skipped): framed once per
    interaction, and gone with the schedule."""
    memo = schedule.memo
    done = memo.get(_MEMO)
    if done is not None:
        assert isinstance(done, FramedSchedule)
        return done
    s = schedule
    head = response_head(s.status, s.reason or _phrase(s.status), s.headers, s.content_length)
    plain = ResponseWriter(_PLAIN)
    head_bytes = plain.head(head)
    timeline = s.timeline
    steps = s.steps
    if s.content_length is None:
        pieces = [b"%x\r\n%s\r\n" % (len(st.data), st.data) if st.data else b"" for st in steps]
        framing = _CHUNKED
    else:
        pieces = [st.data for st in steps]
        framing = _LENGTH
    offsets = list(accumulate(map(len, pieces), initial=len(head_bytes)))
    whole: bytes | None = None
    if plain.no_body:
        data = head_bytes
        whole = data if isinstance(s.end, Close) else None
    else:
        plain._sent = offsets[-1] - offsets[0]
        try:
            end = plain.end()
        except ValueError:  # a sized body that does not add up: never one whole answer
            end = None
        data = b"".join((head_bytes, *pieces, end or b""))
        if end is not None and isinstance(s.end, Close):
            whole = data
    last = max(s.headers_at, s.end.at, timeline.at[-1] if steps else 0.0)
    body = timeline.ends[-1] if timeline.ends else 0
    result = FramedSchedule(
        s, head, framing, data, memoryview(data), offsets, timeline, whole, last, body
    )
    if not s.fired and not s.skipped:
        memo[_MEMO] = result
    return result


_PLAIN = Head("GET", "/", "http://localhost/", (), "localhost", "1.1", True)


def _phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


_ORIGIN = re.compile(r"[!-~]{1,200}")  # printable ASCII, no space: what an Origin header holds


class Cors:
    """Which pages may read the answers (CORS). ``True`` (or ``["*"]``): any origin, without
    credentials (the page's origin reflected, or ``*``); a list of origins: those, with
    credentials; ``False``: none (no CORS headers). Origins are compared without a trailing
    slash; a listed origin that is not printable ASCII without spaces is a ``ValueError``."""

    __slots__ = ("_any", "_origins", "on")

    def __init__(self, cors: bool | Sequence[str] = False) -> None:
        if isinstance(cors, bool):
            origins: tuple[str, ...] = ("*",) if cors else ()
        else:
            origins = tuple(cors)
            bad = [o for o in origins if not isinstance(o, str) or not _ORIGIN.fullmatch(o)]
            if bad:
                raise ValueError(f"not an origin: {str(bad[0])[:60]!r}")
        self.on = bool(origins)
        self._any = "*" in origins
        self._origins = frozenset(o.rstrip("/") for o in origins if o != "*")

    def describe(self) -> bool | list[str]:
        """The policy as it was given: True (any origin), False, or the sorted origins."""
        if not self.on:
            return False
        if not self._origins:
            return True
        return [*sorted(self._origins), *(["*"] if self._any else [])]

    def headers(self, headers: Headers) -> Headers:
        """What lets the page that sent ``headers`` read the answer: any origin without
        credentials, or a named origin with them; nothing for an origin not named."""
        origin = None
        for k, v in headers:
            if k.lower() == "origin":
                origin = v
                break
        if origin and origin.rstrip("/") in self._origins:
            return (
                ("access-control-allow-origin", origin),
                ("access-control-allow-credentials", "true"),
                ("access-control-expose-headers", "*"),
                ("vary", "Origin"),
            )
        if not self._any:
            return ()
        if origin:  # reflected (never with credentials)
            return (
                ("access-control-allow-origin", origin),
                ("access-control-expose-headers", "*"),
                ("vary", "Origin"),
            )
        return (("access-control-allow-origin", "*"), ("access-control-expose-headers", "*"))
