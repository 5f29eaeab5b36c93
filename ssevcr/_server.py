"""The replay server: cassettes over real sockets, for any client (SDKs, curl, browsers).

    async with ReplayServer(player) as server:        # or ServerThread(player).start() from sync code
        ...  server.url  ...

asyncio + h11 (HTTP/1.1, keep-alive, pipelining). A plain HTTP/1.1 keep-alive request (a strict
subset of what h11 accepts: one Host, at most one numeric Content-Length, no Transfer-Encoding,
Expect, Upgrade or Connection other than keep-alive) is parsed here and answered with pre-framed
bytes, the way h11 would frame them; the first request outside that subset hands the connection
to h11 for the rest of its life (HTTP/1.0, chunked uploads, 100-continue, ``Connection: close``,
malformed requests, which get their 400 from h11). Each request is matched by the player, and
the connection follows the schedule it gets: the head at ``headers_at``, every ``Send`` at its absolute
deadline measured from when the request head arrived (never from the previous write, so a slow
write never accumulates drift), then the end: ``Close`` (terminating chunk, keep-alive), ``Abort``
(close without it), ``Reset`` (TCP RST through SO_LINGER 0) or ``Hang`` (open and silent until the
client leaves). Streamed bodies use chunked encoding, others the schedule's content-length.

A miss answers 404 with ``x-should-retry: false`` and an API-shaped JSON error whose message is the
player's explanation; it is logged. Malformed HTTP gets a 400. A client that leaves mid-stream ends
its connection quietly, at once, even in the middle of a long wait.

Waiting for a request is bounded, as in any HTTP server; answering it never is (a stream lasts as
long as its schedule, a ``stall:...,for=forever`` until the client leaves). A connection closes when
no byte of its next request comes within ``idle_timeout`` of the end of the previous answer (quietly:
a FIN, which connection pools and browsers take as "open a new one"), and when a request head is not
complete within ``head_timeout`` of the connection opening or of the request's first byte, or its
body pauses that long (a 408, then close). One timer per connection, armed when the connection
starts waiting and moved only when it fires, keeps keep-alive requests free of timer work.

Steps wait on the loop's timers: for sub-millisecond precision, serve in the loop of
:func:`ssevcr._timer.new_event_loop` (the CLI and :class:`ServerThread` do).

This module only follows schedules: it never decides timing or faults (see ``schedule``).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import re
import socket
import struct
import sys
import termios
from collections.abc import Callable
from http import HTTPStatus
from types import TracebackType
from typing import Any

import h11

from ._cassette import Headers, Request
from ._errors import ConfigError, NoMatchError, SsevcrError
from ._player import Player
from ._schedule import Abort, Close, Hang, Reset, Schedule
from .mitm.protocol import FORWARDED_URL  # set by the --proxy addon: the URL the client asked for

__all__ = ["HEAD_TIMEOUT", "IDLE_TIMEOUT", "ReplayServer", "miss_body"]

Log = Callable[[str], None]
RawHeaders = list[tuple[bytes, bytes]]

MISS_STATUS = 404  # never retried by the SDKs (they retry 408, 409, 429 and 5xx)
_FLUSH_AT = 64 * 1024  # bytes gathered before a write while steps are already due
_READ_PAUSE_AT = 256 * 1024  # stop reading a client that pipelines this much during a response
_RESET_DRAIN_WAIT = 0.5  # seconds to let the peer acknowledge the bytes before a reset
_MAX_HEAD = 16 * 1024  # h11's limit on a request head still incomplete
_CACHED_HEAD = (
    4096  # simple heads up to this size are remembered (clients send the same head again)
)
_WHOLE_MAX = (
    256 * 1024
)  # largest body written at once (larger ones go out _FLUSH_AT at a time, each
# waiting for the client to take the previous one: a client that stops reading holds ~_FLUSH_AT here)

# How long a connection may wait for a request (seconds; None: forever). A request head comes in
# one segment: 60 s (nginx's client_header_timeout, Node's headersTimeout) is for people typing one
# into nc. The idle time outlasts the keep-alive pools of the clients served most (httpx/httpx2 and
# the SDKs 5 s, Node's undici 4 s, aiohttp 15 s, Go 90 s, Firefox 115 s), so that they close first
# and a request never crosses our FIN; servers facing the internet (uvicorn, hypercorn, Node: 5 s,
# nginx: 75 s) save sockets instead, which a local test server does not need to.
HEAD_TIMEOUT = 60.0
IDLE_TIMEOUT = 120.0

# what a connection is waiting for (its timeout depends on it)
_IDLE = 0  # the first byte of the next request, after an answer: idle_timeout from the answer's end
_HEAD = 1  # the rest of a request head (a new connection's first one from the start): head_timeout
_BODY = 2  # the rest of a request body: a pause of head_timeout
_BUSY = 3  # nothing: it is answering (no timeout)

# the fast path's request grammar: h11's (RFC 9112) with stricter header values (no control bytes)
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.1")
_HEADER_LINE = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?)[ \t]*"
)
_BLANK_LINE = re.compile(rb"\n\r?\n")
_NOT_SIMPLE = frozenset({b"transfer-encoding", b"expect", b"upgrade", b"te", b"trailer"})
_CHUNKED_END = b"0\r\n\r\n"
_TE_CHUNKED = b"Transfer-Encoding: chunked\r\n"  # as h11 writes it


class SimpleHead:
    """A request head the fast path can answer without h11 (see :func:`parse_simple_head`)."""

    __slots__ = ("end", "headers", "length", "method", "parts", "target")

    def __init__(self, end: int, method: bytes, target: bytes, headers: RawHeaders, length: int):
        self.end = end  # bytes of the head, blank line included
        self.method = method
        self.target = target
        self.headers = headers
        self.length = length  # of the body (content-length, 0 without one)
        self.parts: tuple[str, str, Headers] | None = (
            None  # the Request's method, URL and headers, once known
        )


def parse_simple_head(data: bytes | bytearray) -> SimpleHead | bool:
    """The head at the start of ``data`` if it is a plain HTTP/1.1 keep-alive request h11 would
    accept as is; ``True`` when more bytes are needed to tell; ``False`` when it is anything else
    (let h11 parse it: it may be fine, or get its 4xx)."""
    blank = _BLANK_LINE.search(data, 0, _MAX_HEAD + 4)  # where h11 sees the head end
    if blank is None:  # (h11 refuses at once a request line that starts with a control byte)
        return len(data) <= _MAX_HEAD and (not data or data[0] > 0x20)
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


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def miss_body(message: str) -> bytes:
    """The JSON error a miss answers with: shaped like OpenAI's and Anthropic's errors, so both
    SDKs raise their own status error carrying the message."""
    error = {
        "type": "ssevcr_no_match",
        "code": "ssevcr_no_match",
        "message": message,
        "param": None,
    }
    return json.dumps({"type": "error", "error": error}).encode()


def _b(text: str) -> bytes:
    return text.encode("latin-1", "replace")


class _Gone(Exception):
    """The client went away."""


class _Connection(asyncio.Protocol):
    """One client connection: its bytes (or h11 state, once a request needs h11), a wake-up future
    for the connection's task, flow control."""

    def __init__(self, server: ReplayServer):
        self.server = server
        self.loop = server.loop
        self.h11: h11.Connection | None = None  # None while every request is a simple one
        self.buffer = bytearray()  # received and not parsed yet (while h11 is None)
        self.eof = False
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.gone = False  # the client closed or reset the connection (or the server is closing)
        self.received_at = 0.0  # when the last bytes arrived
        self.ready_at = 0.0  # when the connection became free for the next request
        self.state = (
            _HEAD  # what it waits for (see _IDLE ...); a new connection owes its first head
        )
        self.started_at = 0.0  # when the request being received began (the connection opened, or its first byte came)
        self._timer: asyncio.TimerHandle | None = (
            None  # the timeout check (at most one per connection)
        )
        self.unread = 0  # bytes fed to h11 since the task last asked for data
        self.reading_paused = False
        self.writing_paused = False
        self._waiter: asyncio.Future[None] | None = None

    # --- protocol callbacks (the loop calls these; they only record and wake the task)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.received_at = self.ready_at = self.started_at = self.loop.time()
        self.task = self.loop.create_task(self._run())
        self.server._connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.received_at = self.loop.time()
        if self.h11 is None:
            self.buffer += data
        else:
            self.h11.receive_data(data)
        self.unread += len(data)
        if self.unread > _READ_PAUSE_AT and not self.reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        # A client that closes its side is gone (as in uvicorn): stop waiting for it. The task
        # still answers what is already buffered (a malformed request gets its 400) and closes.
        self.eof = True
        if self.h11 is not None:
            self.h11.receive_data(b"")
        self.gone = True
        self._wake()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self._wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    # --- waiting

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self, until: float | None = None) -> None:
        """Until something happens on the connection, or ``until`` (loop time) passes."""
        w = self._waiter = self.loop.create_future()
        handle = self.loop.call_at(until, self._wake) if until is not None else None
        try:
            await w
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()

    async def _sleep_until(self, when: float) -> None:
        """Wait for an absolute deadline; raises _Gone as soon as the client leaves."""
        while True:
            if self.gone:
                raise _Gone
            if self.loop.time() >= when:
                return
            await self._wait(when)

    async def _drain(self) -> None:
        while self.writing_paused:
            if self.gone:
                raise _Gone
            await self._wait()

    def _write(self, parts: list[bytes]) -> None:
        if parts and not self.gone and self.transport is not None:
            self.transport.write(b"".join(parts) if len(parts) > 1 else parts[0])
        parts.clear()

    # --- timeouts while waiting for a request. The timer is armed when the connection starts
    # waiting with none pending, never earlier than any deadline it can have then, and moved only
    # when it fires: a keep-alive request costs two assignments, not a timer.

    def _arm(self) -> None:
        soonest = self.server._soonest_timeout
        if soonest is not None:
            self._timer = self.loop.call_at(self.ready_at + soonest, self._on_timer)

    def _deadline(self) -> float | None:
        state = self.state
        if state == _IDLE:
            idle = self.server.idle_timeout
            return None if idle is None else self.ready_at + idle
        head = self.server.head_timeout
        if state == _BUSY or head is None:
            return None
        if state == _HEAD:
            return self.started_at + head
        return max(self.received_at, self.ready_at) + head  # a body: since its last bytes

    def _on_timer(self) -> None:
        self._timer = None
        if self.gone:
            return
        waiter = self._waiter
        if waiter is None or waiter.done():  # the task has not run since it was woken (it may have
            return  # a whole request now): its next wait for a request arms the timer again
        deadline = self._deadline()
        if deadline is None:
            return
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        self._time_out()

    def _time_out(self) -> None:
        """Close a connection whose request did not come in time: quietly when no byte of it came
        (an idle keep-alive connection, a client that connected and said nothing), else with a 408."""
        conn = self.h11
        begun = (
            self.state == _BODY
            or bool(self.buffer)
            or (conn is not None and bool(conn.trailing_data[0]))
        )
        if begun and self.transport is not None:
            message = f"ssevcr: the request did not arrive in time (head_timeout {self.server.head_timeout} s)"
            body = json.dumps(
                {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
            ).encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
            )
        self._close()  # flushes what is buffered, then FIN
        self._wake()

    # --- the connection's task

    async def _run(self) -> None:
        try:
            while True:
                incoming = await self._read_request()
                if incoming is None:
                    break
                self.state = _BUSY
                if not await self._respond(*incoming):
                    break
                conn = self.h11
                if conn is not None:
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        break
                    conn.start_next_cycle()
                self.ready_at = self.loop.time()
                self.state = _IDLE
        except _Gone:
            pass
        except h11.RemoteProtocolError as e:
            self._bad_request(e)
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception as e:  # a bug; log it and drop this connection, never the server
            self.server.log(f"ssevcr: replay server error: {type(e).__name__}: {e}")
        finally:
            self._close()

    def _close(self) -> None:
        self.gone = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.server._connections.discard(self)

    def _ask_for_data(self) -> None:
        self.unread = 0
        if self.reading_paused and self.transport is not None:
            self.transport.resume_reading()
            self.reading_paused = False

    async def _read_request(self) -> tuple[Request, float] | None:
        """The next request and when its head arrived; None when the client is done. Simple
        requests are parsed here (a head seen before is looked up, not parsed again), anything
        else by h11."""
        t0: float | None = None
        seen = self.server._simple_heads
        while self.h11 is None:
            buffer = self.buffer
            head: SimpleHead | bool = True
            if buffer:
                end = buffer.find(b"\r\n\r\n", 0, _MAX_HEAD + 4)
                key = bytes(buffer[: end + 4]) if 0 <= end < _CACHED_HEAD else b""
                cached = seen.get(key) if key else None
                if cached is not None:
                    head = cached
                else:
                    head = parse_simple_head(buffer)
                    if key and isinstance(head, SimpleHead) and head.end == len(key):
                        if len(seen) >= 1024:
                            seen.clear()
                        seen[key] = head
            if head is False or (head is True and self.gone and buffer):
                self._hand_to_h11()  # h11 answers it (or its 4xx, or sees the client leave mid-head)
                break
            if isinstance(head, SimpleHead):
                if t0 is None:
                    t0 = max(self.received_at, self.ready_at)
                total = head.end + head.length
                if len(buffer) >= total:
                    body = bytes(buffer[head.end : total])
                    del buffer[:total]
                    parts = head.parts
                    if parts is None:
                        parts = head.parts = self._request_parts(
                            head.method, head.target, head.headers
                        )
                    return Request(parts[0], parts[1], parts[2], body), t0
                if self.gone:  # the client left half-way through its request
                    raise _Gone
                self.state = _BODY
            elif self.gone:
                return None
            elif buffer and self.state == _IDLE:  # the first bytes of the next request
                self.state, self.started_at = _HEAD, self.loop.time()
            self._ask_for_data()
            if self._timer is None:
                self._arm()
            await self._wait()
        return await self._read_h11_request()

    def _hand_to_h11(self) -> None:
        conn = self.h11 = h11.Connection(h11.SERVER)
        if self.buffer:
            conn.receive_data(bytes(self.buffer))
            self.buffer.clear()
        if self.eof:
            conn.receive_data(b"")

    async def _read_h11_request(self) -> tuple[Request, float] | None:
        conn = self.h11
        assert conn is not None
        head: h11.Request | None = None
        t0 = 0.0
        body: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if self.gone:
                    if head is not None:  # the client left half-way through its request
                        raise _Gone
                    return None
                if head is not None:
                    self.state = _BODY
                elif (
                    self.state == _IDLE and conn.trailing_data[0]
                ):  # the first bytes of the next request
                    self.state, self.started_at = _HEAD, self.loop.time()
                self._ask_for_data()
                if conn.they_are_waiting_for_100_continue:
                    self._write([conn.send(h11.InformationalResponse(status_code=100, headers=[]))])
                if self._timer is None:
                    self._arm()
                await self._wait()
            elif isinstance(event, h11.Request):
                head, t0 = event, max(self.received_at, self.ready_at)
            elif isinstance(event, h11.Data):
                body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                method, url, headers = self._request_parts(
                    head.method, head.target, list(head.headers.raw_items())
                )
                return Request(method, url, headers, b"".join(body)), t0
            elif isinstance(event, h11.ConnectionClosed):
                return None
            else:  # PAUSED cannot happen before EndOfMessage
                return None

    def _request_parts(
        self, method: bytes, raw_target: bytes, raw_headers: RawHeaders
    ) -> tuple[str, str, Headers]:
        """A request's method, URL and headers as the player matches them."""
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers)
        target = raw_target.decode("latin-1")
        forwarded = next((v for k, v in headers if k.lower() == FORWARDED_URL), None)
        if forwarded:
            url = forwarded
            headers = tuple((k, v) for k, v in headers if k.lower() != FORWARDED_URL)
        elif target.startswith("/"):
            host = next((v for k, v in headers if k.lower() == "host"), self.server.authority)
            url = f"http://{host}{target}"
        else:
            url = target  # absolute-form (a client that treats us as its proxy)
        return method.decode("latin-1"), url, headers

    async def _respond(self, request: Request, t0: float) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        self.server.requests += 1
        cors = self.server.cors_headers(request) if self.server.cors else []
        if (
            self.server.cors
            and request.method == "OPTIONS"
            and request.header("access-control-request-method")
        ):
            return self._simple(
                204, [*cors, *self.server.preflight_headers(request)], b"", head_only=False
            )
        try:
            play = self.server.player.play(request)
            self.server.head_of(
                play.schedule
            )  # a head HTTP/1.1 cannot carry fails here, not mid-answer
        except NoMatchError as e:
            self.server.log(str(e))
            return self._simple(
                MISS_STATUS,
                [*cors, (b"x-ssevcr-miss", b"true")],
                miss_body(str(e)),
                head_only=request.method == "HEAD",
            )
        except (SsevcrError, h11.LocalProtocolError) as e:
            why = (
                str(e)
                if isinstance(e, SsevcrError)
                else f"the recorded response head is not valid HTTP/1.1 ({e})"
            )
            message = f"ssevcr: cannot replay {request.method} {request.url}: {why}"
            self.server.log(message)
            return self._simple(400, cors, miss_body(message), head_only=request.method == "HEAD")
        return await self._follow(play.schedule, t0, cors, head_only=request.method == "HEAD")

    def _simple(self, status: int, extra: RawHeaders, body: bytes, *, head_only: bool) -> bool:
        """A small answer of our own (a miss, a preflight); the headers of a HEAD request's answer
        say what a GET would get, without the body."""
        headers: RawHeaders = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-should-retry", b"false"),
            *extra,
        ]
        if not body:
            headers = [(k, v) for k, v in headers if k not in (b"content-type", b"content-length")]
        reason = HTTPStatus(status).phrase.encode()
        conn = self.h11
        if conn is None:  # what h11 writes for a keep-alive HTTP/1.1 request
            chunked = not body and status not in (204, 304)
            lines = b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers)
            rest = b"" if head_only else _CHUNKED_END if chunked else body
            self._write(
                [
                    b"HTTP/1.1 %d %s\r\n%s%s\r\n%s"
                    % (status, reason, lines, _TE_CHUNKED if chunked else b"", rest)
                ]
            )
            return True
        parts = [conn.send(h11.Response(status_code=status, headers=headers, reason=reason))]
        if body and not head_only:  # (h11 refuses body bytes in the answer to a HEAD request)
            parts.append(conn.send(h11.Data(data=body)))
        parts.append(conn.send(h11.EndOfMessage()))
        self._write(parts)
        return True

    async def _follow(  # noqa: C901 - to become the one follower (issue: architecture)
        self, s: Schedule, t0: float, extra: RawHeaders, *, head_only: bool
    ) -> bool:
        """Play a schedule on absolute deadlines from ``t0``."""
        conn = self.h11
        if conn is None and not extra and not head_only and t0 + s.end.at <= self.loop.time():
            whole = self.server.whole_of(s)
            if (
                whole is not None
            ):  # instant replay of a reused schedule: one write, no per-step work
                self._write([whole])
                await self._drain()
                return True
        reason, block = self.server.head_of(s)
        await self._sleep_until(t0 + s.headers_at)
        length = s.content_length
        no_body = head_only or s.status in (204, 304) or s.status < 200
        if conn is None:
            # a simple request: the head h11 would write (see whole_of), keep-alive
            out = [
                _head_bytes(s, reason, block, b"".join(b"%s: %s\r\n" % (k, v) for k, v in extra))
            ]
            chunked = not no_body and length is None
        else:
            # h11 decides the framing and keep-alive from a head that has only the framing header;
            # the recorded headers (validated once per schedule) go in right after the status line
            sized = b"" if length is None else b"content-length: %d\r\n" % length
            framing = [] if length is None else [(b"content-length", b"%d" % length)]
            head = conn.send(
                h11.Response(status_code=s.status, headers=framing + extra, reason=reason)
            )
            status_line = head.index(b"\r\n") + 2
            out = [head[:status_line] + block + head[status_line:].removeprefix(sized)]
            # chunked framing is written here (h11 costs ~4 us per Data event); h11 still frames
            # sized and HTTP/1.0 bodies, and sends the terminating chunk
            chunked = not no_body and length is None and (conn.their_http_version or b"") >= b"1.1"
        sent = 0  # body bytes of a sized response framed here
        pending = 0
        if not no_body and s.steps:
            framed, size = self.server.framed_of(s) if chunked else (None, 0)
            time = self.loop.time
            now = time()
            if (
                framed is not None and size <= _WHOLE_MAX and t0 + s.steps[-1].at <= now
            ):  # all due (instant)
                out.extend(framed)
            else:
                for i, step in enumerate(s.steps):
                    when = t0 + step.at
                    if (when > now and when > (now := time())) or pending > _FLUSH_AT:
                        self._write(out)
                        pending = 0
                        await self._drain()
                        await self._sleep_until(when)
                        now = time()
                    if framed is not None:
                        data = framed[i]
                    elif chunked:
                        data = b"%x\r\n%s\r\n" % (len(step.data), step.data)
                    elif conn is None:
                        data = step.data
                        sent += len(data)
                    else:
                        data = conn.send(h11.Data(data=step.data))
                    out.append(data)
                    pending += len(data)
        end = s.end
        if isinstance(end, Close) or no_body:
            if end.at + t0 > self.loop.time():
                self._write(out)
                await self._sleep_until(t0 + end.at)
            if conn is not None:
                out.append(conn.send(h11.EndOfMessage()))
            elif chunked:
                out.append(_CHUNKED_END)
            elif not no_body and sent != length:  # h11 would refuse to end this message
                raise RuntimeError(f"schedule sends {sent} body bytes with content-length {length}")
            self._write(out)
            await self._drain()
            return True
        self._write(out)
        await self._sleep_until(t0 + end.at)
        if isinstance(end, Abort):
            self._close()  # flushes what is buffered, then FIN: no terminating chunk
        elif isinstance(end, Reset):
            await self._reset()
        elif isinstance(end, Hang):
            while not self.gone:
                await self._wait()
        return False

    async def _reset(self) -> None:
        """Let the client receive every byte sent so far, then close with a TCP RST."""
        transport = self.transport
        assert transport is not None
        give_up = self.loop.time() + _RESET_DRAIN_WAIT
        sock = transport.get_extra_info("socket")
        while not self.gone and self.loop.time() < give_up:
            if transport.get_write_buffer_size() == 0 and _unacked(sock) == 0:
                break
            await self._wait(self.loop.time() + 0.001)
        if sock is not None and not self.gone:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.gone = True
        transport.abort()

    def _bad_request(self, error: h11.RemoteProtocolError) -> None:
        """Answer a malformed request with its 4xx (h11 still lets our side speak), then close."""
        conn = self.h11
        if (
            conn is None
            or conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE)
            or self.transport is None
        ):
            return
        status = error.error_status_hint if 400 <= error.error_status_hint < 500 else 400
        message = f"ssevcr: malformed HTTP request: {error}"
        body = json.dumps(
            {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            parts = [
                conn.send(
                    h11.Response(
                        status_code=status,
                        headers=headers,
                        reason=HTTPStatus(status).phrase.encode(),
                    )
                ),
                conn.send(h11.Data(data=body)),
                conn.send(h11.EndOfMessage()),
            ]
        except h11.LocalProtocolError:
            return
        self.transport.write(b"".join(p for p in parts if p))


def _head_bytes(s: Schedule, reason: bytes, block: bytes, extra: bytes = b"") -> bytes:
    """The response head h11 writes for a keep-alive HTTP/1.1 request: status line, the recorded
    headers, the extra ones, and ``Transfer-Encoding: chunked`` last when the body has no length."""
    chunked = s.content_length is None and s.status not in (204, 304)
    return b"HTTP/1.1 %d %s\r\n%s%s%s\r\n" % (
        s.status,
        reason,
        block,
        extra,
        _TE_CHUNKED if chunked else b"",
    )


def _unacked(sock: Any) -> int:
    """Bytes still in the kernel's send queue (not yet acknowledged by the peer); 0 if unknown."""
    if sock is None:
        return 0
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    value: int = struct.unpack("i", buf)[0]
    return value


class ReplayServer:
    """Serve a :class:`~ssevcr._player.Player` on ``host:port`` (port 0: any free port) in the
    running event loop. ``cors=True`` answers preflights and lets pages on other origins read
    the stream. ``log`` receives one line per miss (default: stderr). ``idle_timeout`` closes a
    keep-alive connection that sends nothing for that long after an answer; ``head_timeout``
    one whose request head is not complete that long after it opened or the head began (or whose
    body pauses that long). Seconds; None waits forever."""

    def __init__(
        self,
        player: Player,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        cors: bool = False,
        log: Log | None = None,
        head_timeout: float | None = HEAD_TIMEOUT,
        idle_timeout: float | None = IDLE_TIMEOUT,
    ):
        for name, value in (("head_timeout", head_timeout), ("idle_timeout", idle_timeout)):
            if value is not None and not 0 < value < float("inf"):
                raise ConfigError(
                    f"{name} must be a positive number of seconds or None (forever), got {value}"
                )
        self.player = player
        self.host = host
        self.port = port
        self.cors = cors
        self.log: Log = log or _stderr
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        timeouts = [t for t in (head_timeout, idle_timeout) if t is not None]
        self._soonest_timeout = min(timeouts) if timeouts else None
        self.requests = 0  # requests seen (plays, misses, preflights, ...)
        self._connections: set[_Connection] = set()
        self._framed: dict[
            int, tuple[Schedule, tuple[bytes, ...], int]
        ] = {}  # id(schedule) -> (it, framed steps, size)
        self._whole: dict[
            int, tuple[Schedule, bytes | None]
        ] = {}  # id(schedule) -> (it, whole response)
        self._heads: dict[
            tuple[int, str, Headers], tuple[bytes, bytes]
        ] = {}  # -> (reason, header lines)
        self._simple_heads: dict[bytes, SimpleHead] = {}  # request heads seen, parsed
        self._head_ids: dict[
            int, tuple[Schedule, tuple[bytes, bytes]]
        ] = {}  # id(schedule) -> (it, head_of)
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the server runs in (once started)."""
        if self._loop is None:
            raise RuntimeError("the replay server is not started")
        return self._loop

    async def start(self) -> ReplayServer:
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=2048, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def head_of(self, s: Schedule) -> tuple[bytes, bytes]:
        """Reason phrase and serialized header lines of a schedule's head, validated by h11 once
        per schedule (h11 would check every header again on every response)."""
        reused = self._head_ids.get(id(s))  # a schedule the player reuses: no tuple to hash again
        if reused is not None and reused[0] is s:
            return reused[1]
        key = (s.status, s.reason, s.headers)
        cached = self._heads.get(key)
        if cached is not None:
            self._remember_head(s, cached)
            return cached
        phrase = HTTPStatus(s.status).phrase if s.status in HTTPStatus._value2member_map_ else ""
        reason = _b(s.reason or phrase)
        headers = [(_b(k), _b(v)) for k, v in s.headers]
        h11.Response(
            status_code=s.status, headers=headers, reason=reason
        )  # raises on what HTTP/1.1 cannot carry
        block = b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers)
        if len(self._heads) >= 1024:
            self._heads.clear()
        self._heads[key] = (reason, block)
        self._remember_head(s, (reason, block))
        return reason, block

    def _remember_head(self, s: Schedule, head: tuple[bytes, bytes]) -> None:
        if not s.fired and not s.skipped:  # fault-free schedules are reused; others are one play's
            if len(self._head_ids) >= 256:
                self._head_ids.clear()
            self._head_ids[id(s)] = (s, head)

    def framed_of(self, s: Schedule) -> tuple[tuple[bytes, ...] | None, int]:
        """The steps in chunked framing and their size, kept for schedules the player reuses
        (fault-free ones), so that replaying a stream again does not frame the same bytes again;
        (None, 0) for other schedules."""
        if s.fired or s.skipped:
            return None, 0
        cached = self._framed.get(id(s))
        if cached is not None and cached[0] is s:
            return cached[1], cached[2]
        framed = tuple(b"%x\r\n%s\r\n" % (len(step.data), step.data) for step in s.steps)
        size = sum(map(len, framed))
        if len(self._framed) >= 256:
            self._framed.clear()
        self._framed[id(s)] = (s, framed, size)
        return framed, size

    def whole_of(self, s: Schedule) -> bytes | None:
        """A reused schedule's whole answer to a simple request (head, body, end of body), kept
        for instant replay; None for schedules with faults, without a clean end, or large."""
        if s.fired or s.skipped or not isinstance(s.end, Close):
            return None
        cached = self._whole.get(id(s))
        if cached is not None and cached[0] is s:
            return cached[1]
        whole: bytes | None = None
        size = sum(len(step.data) for step in s.steps)
        if size <= _WHOLE_MAX:
            reason, block = self.head_of(s)
            head = _head_bytes(s, reason, block)
            if s.status in (204, 304):
                whole = head
            elif s.content_length is None:
                whole = b"".join((head, *(self.framed_of(s)[0] or ()), _CHUNKED_END))
            elif s.content_length == size:
                whole = b"".join((head, *(step.data for step in s.steps)))
        if len(self._whole) >= 256:
            self._whole.clear()
        self._whole[id(s)] = (s, whole)
        return whole

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{self.authority}"

    @property
    def connections(self) -> int:
        """Open client connections (each has exactly one task)."""
        return len(self._connections)

    def tasks(self) -> list[asyncio.Task[None]]:
        return [c.task for c in self._connections if c.task is not None and not c.task.done()]

    async def close(self) -> None:
        """Stop listening and end every connection (streams in flight are cut, hangs released)."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.gone = True
            if conn.transport is not None:
                conn.transport.abort()
            conn._wake()
        tasks = [c.task for c in list(self._connections) if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ReplayServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- CORS

    def cors_headers(self, request: Request) -> RawHeaders:
        origin = request.header("origin")
        headers: RawHeaders = [
            (b"access-control-allow-origin", _b(origin) if origin else b"*"),
            (b"access-control-expose-headers", b"*"),
        ]
        if origin:
            headers += [(b"access-control-allow-credentials", b"true"), (b"vary", b"Origin")]
        return headers

    def preflight_headers(self, request: Request) -> RawHeaders:
        method = request.header("access-control-request-method") or "GET"
        asked = request.header("access-control-request-headers")
        return [
            (b"access-control-allow-methods", _b(f"{method}, GET, POST, OPTIONS")),
            (b"access-control-allow-headers", _b(asked) if asked else b"*"),
            (b"access-control-max-age", b"600"),
        ]
