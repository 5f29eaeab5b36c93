"""The replay server: cassettes over real sockets, for any client (SDKs, curl, browsers).

    async with ReplayServer(player) as server:  # or ServerThread(player).start() from sync code
        ...  server.url  ...

A thin asyncio protocol: HTTP/1.1 is :mod:`ssevcr._http1` (reading requests, framing answers,
keep-alive, pipelining), what to send when is :class:`ssevcr._follower.Follower`; this module holds
the buffers, flow control, timers and timeouts, and decides what a request gets (CORS, the Host
guard, a play, a miss). No task per connection: the loop calls back, the follower says what to do.

Each request is matched by the player, and the connection follows the schedule it gets: the head
at ``headers_at``, every step at its absolute deadline measured from when the request head arrived
(never from the previous write, so a slow write never accumulates drift), then the end: ``Close``
(terminating chunk, keep-alive), ``Abort`` (close without it), ``Reset`` (TCP RST through
SO_LINGER 0) or ``Hang`` (open and silent until the client leaves). Due steps go out together:
as much as the peer's TCP window takes at once when everything is due (instant replay: usually
the whole answer in one write, pre-framed), else at most :data:`~ssevcr._follower.BATCH_BYTES` at
a time, each batch waiting for the client to take the previous ones (a client that stops reading
holds ~80 KiB here, not the rest of the body).

A miss answers 404 with ``x-should-retry: false`` and an API-shaped JSON error whose message is the
player's explanation; it is logged. A request the server cannot read gets its 4xx (400, 413 past
``max_body``, 431) and a close; a recorded head HTTP/1.1 cannot carry (a cassette built in memory)
a 502 naming the field, never the bad bytes. By default only Host headers naming a loopback
address or ``localhost`` are answered (a page on another site cannot reach the server through DNS
rebinding): others get a 403 (``allow_hosts`` widens it). A client that leaves mid-stream ends its
connection quietly, at once, even in the middle of a long wait.

Waiting for a request is bounded, as in any HTTP server; answering it never is (a stream lasts as
long as its schedule, a ``stall:...,for=forever`` until the client leaves). A connection closes
when no byte of its next request comes within ``idle_timeout`` of the end of the previous answer
(quietly: a FIN, which connection pools and browsers take as "open a new one"), and when a request
head is not complete within ``head_timeout`` of the connection opening or of the request's first
byte, or its body pauses that long (a 408, then close). One timer per connection, armed when the
connection starts waiting and moved only when it fires, keeps keep-alive requests free of timer
work.

Steps wait on the loop's timers: for sub-millisecond precision, serve in the loop of
:func:`ssevcr._timer.new_event_loop` (the CLI and :class:`ServerThread` do).

This module only follows schedules: it never decides timing or faults (see ``_schedule``).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import ipaddress
import json
import os
import socket
import struct
import sys
import termios
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _http1 as http1
from ._cassette import Headers, Request
from ._errors import ConfigError, NoMatchError, SsevcrError
from ._follower import BATCH_BYTES, Finish, Follower, Head, Wait, Write
from ._journal import How, Journal
from ._player import Play, Player
from ._schedule import Abort, Close, Hang, Reset, Schedule
from ._secrets import safe
from .mitm.protocol import FORWARDED_URL  # set by the --proxy addon: the URL the client asked for

if TYPE_CHECKING:  # imported on first use: a plain replay starts without them (start-up time)
    from ._control import Control, Reply, Routed
    from ._websocket import WebSocketSession

__all__ = ["HEAD_TIMEOUT", "IDLE_TIMEOUT", "MAX_BODY", "ReplayServer", "miss_body"]

Log = Callable[[str], None]

MISS_STATUS = 404  # never retried by the SDKs (they retry 408, 409, 429 and 5xx)
MAX_BODY = http1.MAX_BODY
_KEEP_LAST_BODY = 64 * 1024  # a connection remembers its latest request up to this body size
_READ_PAUSE_AT = 256 * 1024  # stop reading a client that pipelines this much during a response
_WRITE_HIGH = 16 * 1024  # the transport's high-water mark: a batch waits until it drains below
_RESET_DRAIN_WAIT = 0.5  # seconds to let the peer acknowledge the bytes before a reset
_ACCEPT_LOG_EVERY = 1.0  # seconds between two log lines about failing accepts
_ACCEPT_RETRY = 1.0  # asyncio's delay before it accepts again after running out of fds
_SND_WND_AT, _TCP_INFO_SIZE = 228, 232  # struct tcp_info: tcpi_snd_wnd (Linux 5.4+)
_NO_STORE = ("cache-control", "no-store")
_BYTES_ACKED_AT = 120  # struct tcp_info: tcpi_bytes_acked (u64, Linux 4.1+)
_MARKS = 64  # (wire, body) marks kept per answer (thinned past it)

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
_STAGES = {"idle": _IDLE, "head": _HEAD, "body": _BODY}


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


def _error_body(message: str) -> bytes:
    return json.dumps(
        {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    ).encode()


class _Connection(asyncio.Protocol):
    """One client connection: its reader, the answer in progress (writer, follower), its timers
    and flow control. Every method runs in the loop's callbacks; none blocks."""

    def __init__(self, server: ReplayServer):
        self.server = server
        self.loop = server.loop
        self.now = server.now  # the loop's clock
        self.reader = http1.RequestReader(
            authority=server.authority,
            max_body=server.max_body,
            forwarded_header=FORWARDED_URL,
            cache=server._heads,
        )
        self.transport: asyncio.Transport | None = None
        self.gone = False  # the client closed or reset the connection (or the server is closing)
        self.state = (
            _HEAD  # what it waits for (see _IDLE ...); a new connection owes its first head
        )
        self.received_at = 0.0  # when the last bytes arrived
        self.ready_at = 0.0  # when the connection became free for the next request
        self.started_at = (
            0.0  # when the request being received began (connection opened, or its first byte)
        )
        self.head_at: float | None = None  # when the head of the request being received was whole
        self.reading_paused = False
        self.writing_paused = False
        self._timer: asyncio.TimerHandle | None = None  # the timeout check (at most one)
        self._step: asyncio.TimerHandle | None = None  # the follower's next deadline
        # the answer in progress
        self._follower: Follower | None = None
        self._writer: http1.ResponseWriter | None = None
        self._framed: http1.FramedSchedule | None = None
        self._response_head: http1.ResponseHead | None = None
        self._t0 = 0.0
        # the journal of the answer in progress: body bytes handed over (by the latest Write),
        # bytes written to the transport in all, and (wire total, body total) after each write
        self._play: Play | None = None
        self._journal: Journal | None = None
        self._body = 0
        self._wire = 0
        self._marks: list[tuple[int, int]] = []
        self._next_after_drain = False  # answered, waiting for the client to take it
        self._last: Request | None = None  # the latest request, and the head it came with
        self._last_head: http1.Head | None = None
        self._again: http1.Request | None = None  # its event, when answering it is simple
        # the latest plain schedule answered, and its framing
        self._framed_memo: tuple[Schedule, http1.FramedSchedule] | None = None
        self._ws: WebSocketSession | None = None  # after a WebSocket handshake: all of it

    # --- protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        self.received_at = self.ready_at = self.started_at = self.now()
        self.server._connections.add(self)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._ws is not None:
            self._ws.receive(data)
            return
        self.received_at = self.now()
        if self.state == _BUSY:
            self.reader.receive(data)
            if self.reader.buffered > _READ_PAUSE_AT and not self.reading_paused:
                assert self.transport is not None
                self.transport.pause_reading()
                self.reading_paused = True
            return
        self._serve(data)

    def eof_received(self) -> bool:
        # A client that closes its side is gone (as in uvicorn): stop answering it. What it sent
        # before was read on arrival (a malformed request already has its 400).
        self._close("fin")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._close("rst" if isinstance(exc, ConnectionResetError | BrokenPipeError) else "fin")

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.gone:
            return
        if self._ws is not None:
            self._ws.pump()
        elif self._follower is not None:
            if self._step is None:  # (else its deadline goes on)
                self._resume()
        elif self._next_after_drain:
            self._next_after_drain = False
            self._ready()
            self._serve()

    # --- requests

    def _serve(self, data: bytes = b"") -> None:
        """Answer every whole request received (and ``data``), in order, as long as answers
        finish at once; then wait (for bytes, a deadline or the client to read)."""
        reader = self.reader
        while not self.gone:
            event = reader.feed(data)
            data = b""
            if event is http1.IDLE and self._timer is not None and not self.reading_paused:
                self.state = _IDLE  # (all read and answered: its timeout runs already)
                return
            if isinstance(event, http1.NeedData):
                self._waiting(event)
                return
            if isinstance(event, http1.ProtocolError):
                self._refuse(event)
                return
            t0 = self.head_at if self.head_at is not None else max(self.received_at, self.ready_at)
            self.head_at = None
            self.state = _BUSY
            if not self._answer(event, t0):
                return
            self._ready()

    def _waiting(self, event: http1.NeedData) -> None:
        state = _STAGES[event.stage]
        if state == _HEAD and self.state == _IDLE:  # the first bytes of the next request
            self.started_at = self.now()
        elif state == _BODY and self.head_at is None:
            self.head_at = max(self.received_at, self.ready_at)
        self.state = state
        if event.send_continue:
            self._send(http1.ResponseWriter.informational())
        if self.reading_paused and self.transport is not None:
            self.transport.resume_reading()
            self.reading_paused = False
        if self._timer is None:
            self._arm()

    def _ready(self) -> None:
        self.ready_at = self.now()
        self.state = _IDLE

    def _answer(self, incoming: http1.Request, t0: float) -> bool:
        """Start answering; True when the answer is complete and the connection free."""
        server = self.server
        server.requests += 1
        head = incoming.head
        cors: Headers
        if incoming is self._again:  # the latest request again: its Host, CORS, route checked
            player, request, cors, simple = server.player, self._last, (), True
            assert request is not None
        else:
            checked = self._check(incoming)
            if type(checked) is bool:
                return checked
            assert isinstance(checked, tuple)
            player, request, cors, simple = checked
        try:
            play = player.play(request)
            if play.conversation is not None:
                return self._websocket(head, player, play, t0)
            schedule = play.schedule
            memo = self._framed_memo
            if memo is not None and memo[0] is schedule:
                framed = memo[1]
            else:
                framed = http1.framed(schedule)
                if not schedule.fired and not schedule.skipped:  # (kept by the player too)
                    self._framed_memo = (schedule, framed)
            response_head = framed.head.with_headers(cors) if cors else framed.head
        except NoMatchError as e:
            server.log(str(e))
            return self._small(
                head, MISS_STATUS, (*cors, ("x-ssevcr-miss", "true")), miss_body(str(e))
            )
        except http1.BadHead as e:
            message = (
                f"ssevcr: cannot replay {safe(head.method)} {safe(head.url)}: "
                "the recorded response head is "
                f"not valid HTTP/1.1 ({e}); nothing of it was sent"
            )
            server.log(message)
            return self._small(head, 502, cors, miss_body(message))
        except SsevcrError as e:
            message = f"ssevcr: cannot replay {safe(head.method)} {safe(head.url)}: {e}"
            server.log(message)
            return self._small(head, 400, cors, miss_body(message))
        journal = play.journal
        now = self.now()
        if journal is not None:
            journal.begin(t0, time.time() - (now - t0))
        whole = framed.whole
        if (
            whole is not None
            and simple
            and t0 + framed.last <= now
            and (len(whole) <= BATCH_BYTES or len(whole) <= self._room())
        ):  # instant replay the socket can take at once: one write, made once
            self._send(whole)
            if journal is not None:
                journal.whole(self.now(), framed.body)
                server.delivered(play)
            return self._answered(True)
        self._follower = Follower(schedule)
        self._writer = http1.ResponseWriter(head)
        self._framed, self._response_head, self._t0 = framed, response_head, t0
        if journal is not None:
            self._play, self._journal = play, journal
            self._body = 0
            self._marks[:] = [(self._wire, 0)]  # (where this answer starts)
        return self._follow()

    def _check(self, incoming: http1.Request) -> tuple[Player, Request, Headers, bool] | bool:
        """A request refused (Host), answered here (a preflight, the control API, an unknown
        session: the answer's ``_answered``), or the player that answers it, the request value
        it plays, the CORS headers of its answer, and whether it may be answered in one write."""
        server = self.server
        head = incoming.head
        if not server.host_allowed(head.host):
            return self._refused_host(head)
        cors, routed = self._cors(head)
        if (
            cors
            and head.method == "OPTIONS"
            and _header(head.headers, "access-control-request-method")
        ):
            return self._small(head, 204, (*cors, *server.preflight_headers(head)), b"")
        player, url = server.player, head.url
        if server.control is not None:  # (--control: sessions, and the control API)
            found = self._routed(incoming, head, cors, routed)
            if type(found) is bool:
                return found
            assert isinstance(found, tuple)
            player, url = found
        request = self._last
        if request is None or self._last_head is not head or request.body != incoming.body:
            request = Request(head.method, url, head.headers, incoming.body)
            if len(incoming.body) <= _KEEP_LAST_BODY:  # the same request again: the same value
                self._last, self._last_head = request, head
        # what an answer in one write needs of the request
        simple = (
            not cors and head.keep_alive and head.method != "HEAD" and head.http_version == "1.1"
        )
        # the reader gives the same event for the same bytes: answered by the server's own
        # player (no sessions), the next one skips these checks
        keep = simple and server.control is None and request is self._last
        self._again = incoming if keep else None
        return player, request, cors, simple

    def _websocket(self, head: http1.Head, player: Player, play: Play, t0: float) -> bool:
        """Hand the connection over to a replayed WebSocket conversation (never complete: it
        ends with the connection); a client message that misses is ``player``'s (the server's,
        or the control-API session's that played it)."""
        from ._websocket import WebSocketSession, describe_request, is_upgrade

        what = describe_request(head)
        if not is_upgrade(head.headers):
            message = f"ssevcr: {what} was recorded as a WebSocket: connect with a WebSocket client"
            self.server.log(message)
            return self._small(head, 426, (("upgrade", "websocket"),), miss_body(message))
        assert self.transport is not None and play.conversation is not None
        session = WebSocketSession(
            self.transport,
            self.loop,
            play.conversation,
            writable=lambda: not self.writing_paused,
            close=self._close,
            reset=lambda: self._reset(self.now() + _RESET_DRAIN_WAIT),
            log=self.server.log,
            what=what,
            on_miss=lambda message: player.note_miss(play.request, message),
            max_message=max(self.server.max_body, 1),
            journal=play.journal,
            delivered=lambda: self.server.delivered(play),
            held=self._held,
        )
        if play.journal is not None:
            play.journal.begin(t0, time.time() - (self.now() - t0))
        self._ws = session
        problem = session.accept(head, play.interaction.response.headers, self.reader.take())
        if problem is not None:
            self._ws = None
            message = f"ssevcr: cannot replay {what}: {problem}"
            self.server.log(message)
            return self._small(head, 400, (), miss_body(message))
        return False

    def _follow(self) -> bool:
        """Do what the follower says until it says wait (a deadline, or the client to read);
        True when the answer is complete and the connection free."""
        follower, writer, framed = self._follower, self._writer, self._framed
        assert follower is not None and writer is not None and framed is not None
        out: list[bytes | memoryview] = []
        size = 0
        time, t0 = self.now, self._t0
        budget = self._budget(follower, time() - t0)
        while True:
            action = follower.next(time() - t0, max(1, budget - size))  # at most a step over
            if isinstance(action, Write):
                piece = writer.steps(framed, action.start, action.stop)
                out.append(piece)
                size += len(piece)
                self._body = framed.timeline.ends[action.stop - 1]
                if size >= budget:
                    self._send_all(out)
                    self._handed()
                    size = 0
                    if self.writing_paused:  # resume_writing goes on
                        return False
                    budget = self._budget(follower, time() - t0)
            elif isinstance(action, Wait):
                self._send_all(out)
                self._handed()
                self._step = self.loop.call_at(t0 + action.until, self._resume)
                return False
            elif isinstance(action, Head):
                assert self._response_head is not None
                out.append(writer.head(self._response_head))
                if self._journal is not None:
                    self._journal.head(time())
            else:
                return self._finish(action, out)

    def _budget(self, follower: Follower, elapsed: float) -> int:
        """Body bytes to hand to the transport at once: a batch, or as much as the socket takes
        now when everything left is due (instant replay); either way, a client that stops
        reading leaves at most a batch (and the transport's high-water mark) buffered here."""
        if follower.all_due(elapsed):
            return max(BATCH_BYTES, self._room())
        return BATCH_BYTES

    def _room(self) -> int:
        """Bytes the peer can take now: its advertised window less what is in flight (TCP_INFO,
        Linux 5.4+; 0 if unknown). Written at once, they all leave the process: a fast reader
        gets a whole answer in one write, a stalled one batches."""
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or transport is None or transport.get_write_buffer_size():
            return 0
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
        except (OSError, AttributeError):
            return 0
        if len(info) < _TCP_INFO_SIZE:
            return 0
        window: int = struct.unpack_from("I", info, _SND_WND_AT)[0]
        return max(0, window - _unacked(sock))

    def _resume(self) -> None:
        self._step = None
        if not self.gone and not self.writing_paused and self._follow():
            self._ready()
            self._serve()

    def _finish(self, action: Finish, out: list[bytes | memoryview]) -> bool:
        writer = self._writer
        assert writer is not None
        end = action.end
        self._follower = self._writer = self._framed = self._response_head = None
        if isinstance(end, Close) or writer.no_body:
            try:
                out.append(writer.end())
            except ValueError as e:  # the schedule broke its own content-length
                self.server.log(f"ssevcr: replay server error: {e}")
                writer.abort()
            self._send_all(out)
            self._handed(done=True)
            return self._answered(writer.keep_alive)
        self._send_all(out)
        writer.abort()
        if isinstance(end, Abort):
            self._handed(done=True)
            self._close()  # flushes what is buffered, then FIN: no terminating chunk
        elif isinstance(end, Reset):
            self._handed()
            self._reset(self.now() + _RESET_DRAIN_WAIT)
        else:
            assert isinstance(end, Hang)  # open and silent until the client leaves
            self._handed()
        return False

    def _answered(self, keep_alive: bool) -> bool:
        if not keep_alive:
            self._close()
            return False
        if self.writing_paused:  # the next request once the client took this answer
            self._next_after_drain = True
            return False
        return True

    def _cors(self, head: http1.Head) -> tuple[Headers, Routed | Reply | None]:
        """The CORS headers of this request (its session's own policy, else the server's) and,
        with the control API on, where ``Control.route`` sends it (None: no session)."""
        server = self.server
        policy, routed = server.cors_policy, None
        control = server.control
        if control is not None and not control.is_control(head.target):
            from ._control import Routed  # (imported already: the server has a control)

            routed = control.route(head.target, head.url, head.headers)
            if isinstance(routed, Routed) and routed.session.cors is not None:
                policy = routed.session.cors
        return (policy.headers(head.headers) if policy.on else ()), routed

    def _routed(
        self,
        incoming: http1.Request,
        head: http1.Head,
        cors: Headers,
        routed: Routed | Reply | None,
    ) -> tuple[Player, str] | bool:
        """With the control API on: a control request answered, or a request to an unknown
        session answered as a miss (the answer's ``_answered``), else the player and URL the
        request is matched with (``routed``: where ``Control.route`` sent it)."""
        server = self.server
        control = server.control
        assert control is not None
        if control.is_control(head.target):
            reply = control.handle(
                head.method,
                head.target,
                head.headers,
                incoming.body,
                server_url=server.url,
                loopback=self._peer_is_loopback(),
            )
            return self._small(head, reply.status, (*cors, _NO_STORE), reply.encode())
        from ._control import Reply

        if isinstance(routed, Reply):
            message = routed.body["error"]["message"]
            server.log(message)
            return self._small(
                head, MISS_STATUS, (*cors, ("x-ssevcr-miss", "true")), miss_body(message)
            )
        if routed is None:
            return server.player, head.url
        return routed.session.player, routed.url

    def _peer_is_loopback(self) -> bool:
        transport = self.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        return isinstance(peer, tuple) and bool(peer) and _is_loopback(str(peer[0]))

    def _small(self, head: http1.Head, status: int, extra: Headers, body: bytes) -> bool:
        """A small answer of our own (a miss, a preflight, a refusal); the headers of a HEAD
        request's answer say what a GET would get, without the body."""
        base: Headers = (("x-should-retry", "false"),)
        if body:
            base = (("content-type", "application/json"), ("content-length", str(len(body))), *base)
        length = len(body) if body else None
        phrase = HTTPStatus(status).phrase
        try:
            response = http1.response_head(status, phrase, (*base, *extra), length)
        except http1.BadHead:  # (a header made from the request's bytes): without them
            response = http1.response_head(status, phrase, base, length)
        writer = http1.ResponseWriter(head)
        self._send(writer.head(response) + writer.data(body) + writer.end())
        return self._answered(writer.keep_alive)

    def _refused_host(self, head: http1.Head) -> bool:
        message = (
            f"ssevcr: Host {head.host!r} is not allowed: the replay server answers only loopback "
            "names and addresses (a guard against DNS rebinding); allow it with --allow-host "
            "(ReplayServer(allow_hosts=...))"
        )
        self.server.log(message)
        return self._small(head, 403, (), miss_body(message))

    def _refuse(self, error: http1.ProtocolError) -> None:
        """Answer a request that could not be read with its 4xx, then close."""
        self._error_answer(error.status, f"ssevcr: {error.message}")

    def _error_answer(self, status: int, message: str) -> None:
        body = _error_body(message)
        headers = (
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        )
        writer = http1.ResponseWriter(None)
        head = http1.response_head(status, HTTPStatus(status).phrase, headers, len(body))
        self._send(writer.head(head) + writer.data(body) + writer.end())
        self._close()

    # --- writing

    def _send(self, data: bytes | memoryview) -> None:
        if not self.gone and self.transport is not None:
            self.transport.write(data)
            self._wire += len(data)

    # --- the journal of the answer in progress

    def _handed(self, *, done: bool = False) -> None:
        """Tell the journal what the transport has accepted of the answer (and, ``done``, that
        it took the end too)."""
        journal = self._journal
        if journal is None:
            return
        now = self.now()
        body = self._body
        marks = self._marks
        if not marks or marks[-1][1] != body:
            if len(marks) >= _MARKS:  # thinned, not cut: every write stays covered, coarser
                del marks[1::2]
            marks.append((self._wire, body))
            journal.sent(now, body)
        if done:
            journal.done(now)
            self._journal = None
            play, self._play = self._play, None
            if play is not None:
                self.server.delivered(play)

    def _held(self) -> int:
        """Bytes written that the client's TCP has not acknowledged yet (the transport's buffer
        and the kernel's send queue)."""
        transport = self.transport
        if transport is None:
            return 0
        return transport.get_write_buffer_size() + _unacked(transport.get_extra_info("socket"))

    def _left(self, how: How) -> None:
        """The client went away during the answer: only what its side acknowledged counts (the
        bytes still in the transport's buffer or the kernel's send queue never reached it), at
        the latest write wholly acknowledged."""
        journal, play = self._journal, self._play
        self._journal = self._play = None
        if journal is None or play is None:
            return
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        flushed = self._wire - buffered
        acked = _acked(transport.get_extra_info("socket") if transport is not None else None)
        if acked is not None:
            flushed = min(flushed, acked)
        body = self._body
        if flushed < self._wire:
            body = wire_before = body_before = 0
            for wire, handed in self._marks:
                if wire > flushed:  # inside this write: its framing counted first (a floor)
                    framing = (wire - wire_before) - (handed - body_before)
                    body = body_before + max(0, flushed - wire_before - framing)
                    break
                body, wire_before, body_before = handed, wire, handed
        journal.left(self.now(), how, body_bytes=body)
        self.server.delivered(play)

    def _send_all(self, out: list[bytes | memoryview]) -> None:
        """One write: pieces joined (the head and a batch, a batch and the end), or, past a
        batch, each large piece on its own (a slice of the framing: never copied)."""
        if out:
            if len(out) == 1:
                self._send(out[0])
            elif sum(map(len, out)) <= 2 * BATCH_BYTES:
                self._send(b"".join(out))
            else:
                small: list[bytes | memoryview] = []
                for piece in out:
                    if len(piece) < BATCH_BYTES:
                        small.append(piece)
                        continue
                    if small:
                        self._send(b"".join(small))
                        small.clear()
                    self._send(piece)
                if small:
                    self._send(b"".join(small))
            out.clear()

    def _reset(self, give_up: float) -> None:
        """Let the client receive every byte sent so far, then close with a TCP RST."""
        transport = self.transport
        if self.gone or transport is None:
            return
        sock = transport.get_extra_info("socket")
        if self.now() < give_up and (transport.get_write_buffer_size() or _unacked(sock)):
            self._step = self.loop.call_later(0.001, self._reset, give_up)
            return
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._handed(done=True)
        self.gone = True
        transport.abort()
        self._close()

    def _close(self, how: How = "fin") -> None:
        if self._journal is not None:
            self._left(how)
        self.gone = True
        if self._ws is not None:
            self._ws.stop(how)
        self._follower = self._writer = self._framed = self._response_head = None
        for handle in (self._timer, self._step):
            if handle is not None:
                handle.cancel()
        self._timer = self._step = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.server._connections.discard(self)

    # --- timeouts while waiting for a request. The timer is armed when the connection starts
    # waiting with none pending, never earlier than any deadline it can have then, and moved only
    # when it fires: a keep-alive request costs two assignments, not a timer.

    def _arm(self) -> None:
        soonest = self.server._soonest_timeout
        if soonest is not None and not self.gone:
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
        if self.gone or self.state == _BUSY:  # answering: the next wait arms it again
            return
        deadline = self._deadline()
        if deadline is None:
            return
        if self.now() < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        if self.state == _BODY or self.reader.buffered:  # a request had begun: say why
            self._error_answer(
                408,
                "ssevcr: the request did not arrive in time "
                f"(head_timeout {self.server.head_timeout} s)",
            )
        self._close()  # quietly (a FIN) when no byte of a request came


def _header(headers: Headers, name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


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


def _acked(sock: Any) -> int | None:
    """Bytes the peer has acknowledged on this connection (TCP_INFO); None if unknown."""
    if sock is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except (OSError, AttributeError):
        return None
    if len(info) < _BYTES_ACKED_AT + 8:
        return None
    value: int = struct.unpack_from("Q", info, _BYTES_ACKED_AT)[0]
    return value


def _is_loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """The name in a Host header, without the port and brackets, lower case."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower()
    return host.rsplit(":", 1)[0].lower().rstrip(".")


class ReplayServer:
    """Serve a :class:`~ssevcr._player.Player` on ``host:port`` (port 0: any free port) in the
    running event loop.

    ``cors``: ``True`` (or ``["*"]``) answers preflights and lets pages on any origin read the
    answers, without credentials; a list of origins (``["http://localhost:5173"]``) lets those
    pages read them with credentials. ``allow_hosts``: Host names answered besides loopback ones
    (``"*"``: any). ``log`` receives one line per miss or refusal (default: stderr).
    ``idle_timeout`` closes a keep-alive connection that sends nothing for that long after an
    answer; ``head_timeout`` one whose request head is not complete that long after it opened or
    the head began (or whose body pauses that long); seconds, None waits forever. ``max_body``:
    the largest request body read (bytes; 413 past it). ``journal`` receives each play's
    :class:`~ssevcr._journal.Journal` as it ends (``.value()``: the Delivery, ``.line()``: its
    JSON line). ``control``: a
    :class:`~ssevcr._control.Control` turns on the control API and its sessions (off by
    default: ``/__ssevcr/`` paths are then ordinary requests)."""

    def __init__(
        self,
        player: Player,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        cors: bool | Sequence[str] = False,
        allow_hosts: Sequence[str] = (),
        log: Log | None = None,
        head_timeout: float | None = HEAD_TIMEOUT,
        idle_timeout: float | None = IDLE_TIMEOUT,
        max_body: int = MAX_BODY,
        journal: Callable[[Journal], None] | None = None,
        control: Control | None = None,
    ):
        for name, value in (("head_timeout", head_timeout), ("idle_timeout", idle_timeout)):
            if value is not None and not 0 < value < float("inf"):
                raise ConfigError(
                    f"{name} must be a positive number of seconds or None (forever), got {value}"
                )
        if max_body < 0:
            raise ConfigError(f"max_body must be a number of bytes >= 0, got {max_body}")
        self.player = player
        self.host = host
        self.port = port
        try:
            self.cors_policy = http1.Cors(cors if isinstance(cors, bool) else list(map(str, cors)))
        except ValueError as e:
            raise ConfigError(f"cors: {e}") from None
        self.cors = self.cors_policy.on
        self.allow_hosts = tuple(allow_hosts)
        self._any_host = "*" in self.allow_hosts
        self._hosts = {_host_name(h) for h in self.allow_hosts if h != "*"}
        self._host_verdicts: dict[str, bool] = {}
        self.log: Log = log or _stderr
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        self.max_body = max_body
        self.journal = journal
        self.control = control
        timeouts = [t for t in (head_timeout, idle_timeout) if t is not None]
        self._soonest_timeout = min(timeouts) if timeouts else None
        self.requests = 0  # requests seen (plays, misses, preflights, ...)
        self._connections: set[_Connection] = set()
        self._heads = http1.HeadCache()  # request heads seen, parsed
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.now: Callable[[], float] = time.monotonic  # the loop's clock (see start)
        self._handler: Any = None  # the loop's exception handler before ours
        self._accept_errors = 0  # failed accepts not logged yet
        self._accept_logged_at = float("-inf")
        self._accept_failed_at = float("-inf")  # the last failed accept

    def delivered(self, play: Play) -> None:
        """A play's delivery ended (the client took it all, or left): to the journal."""
        if self.journal is not None and play.journal is not None:
            self.journal(play.journal)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the server runs in (once started)."""
        if self._loop is None:
            raise RuntimeError("the replay server is not started")
        return self._loop

    async def start(self) -> ReplayServer:
        loop = self._loop = asyncio.get_running_loop()
        # the loop's clock; asyncio's own is time.monotonic, called without its Python wrapper
        # (several readings per request)
        stock = getattr(type(loop), "time", None) is asyncio.BaseEventLoop.time
        self.now = time.monotonic if stock else loop.time
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=2048, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._handler = loop.get_exception_handler()
        loop.set_exception_handler(self._on_loop_error)
        loop.call_soon(self._warm_up)  # after the caller's ready line, before the first request
        return self

    def _warm_up(self) -> None:
        """Import what answers may need and start-up leaves out (so the ready line comes first
        and no request pays for it): the journal's framings (every first answer), h11 (a request
        that is not simple, a malformed one too), resumption (Last-Event-ID), the WebSocket replay
        when the cassettes hold one. Out of file descriptors (an import opens its file) it tries
        again a second later, while the server runs."""
        try:
            import h11  # noqa: F401

            from . import _framing, _resume  # noqa: F401

            if any(i.websocket is not None for i in self.player.interactions):
                from . import _websocket  # noqa: F401
        except OSError:
            if self._server is not None and self._loop is not None:
                self._loop.call_later(1.0, self._warm_up)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Out of file descriptors (or memory), asyncio stops accepting for a second and reports
        each time: one line per second with a count, not a traceback per attempt."""
        exc = context.get("exception")
        if (
            isinstance(exc, OSError)
            and exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
            and "accept" in str(context.get("message", ""))
        ):
            self._accept_errors += 1
            now = self._accept_failed_at = loop.time()
            if now - self._accept_logged_at >= _ACCEPT_LOG_EVERY:
                self.log(
                    f"ssevcr: cannot accept connections: {os.strerror(exc.errno)} "
                    f"({self._accept_errors} times since the last report; retrying every second)"
                )
                self._accept_errors = 0
                self._accept_logged_at = now
            return
        handle = context.get("handle")
        callback = getattr(handle, "_callback", None)
        if (
            self._server is None
            and isinstance(exc, ValueError | OSError)
            and getattr(callback, "__name__", "") == "_start_serving"
        ):
            # asyncio retries accepting a second after running out of fds, also when the server
            # was closed meanwhile: the retry finds the closed socket. Nothing to report.
            return
        if self._handler is not None:
            self._handler(loop, context)
        else:
            loop.default_exception_handler(context)

    def host_allowed(self, host: str | None) -> bool:
        """Whether a request with this Host header is answered (None: no Host, HTTP/1.0)."""
        if host is None or self._any_host:
            return True
        verdict = self._host_verdicts.get(host)
        if verdict is None:
            name = _host_name(host)
            verdict = _is_loopback(name) or name in self._hosts or name == self.host.lower()
            if len(self._host_verdicts) >= 256:
                self._host_verdicts.clear()
            if len(host) <= 256:
                self._host_verdicts[host] = verdict
        return verdict

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
        """Open client connections."""
        return len(self._connections)

    async def close(self) -> None:
        """Stop listening and end every connection (streams in flight are cut, hangs released)."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn._close("shutdown")
            if conn.transport is not None:
                conn.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        loop = self._loop
        if loop is not None and loop.get_exception_handler() == self._on_loop_error:
            if loop.time() - self._accept_failed_at < 2 * _ACCEPT_RETRY:
                # an accept retry may still be pending (see _on_loop_error): restore later
                loop.call_later(2 * _ACCEPT_RETRY, self._restore_handler)
            else:
                self._restore_handler()

    def _restore_handler(self) -> None:
        loop = self._loop
        if loop is not None and loop.get_exception_handler() == self._on_loop_error:
            loop.set_exception_handler(self._handler)

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

    def cors_headers(self, head: http1.Head) -> Headers:
        """The server's CORS headers for this request (see :class:`~ssevcr._http1.Cors`)."""
        return self.cors_policy.headers(head.headers)

    def preflight_headers(self, head: http1.Head) -> Headers:
        method = _header(head.headers, "access-control-request-method") or "GET"
        asked = _header(head.headers, "access-control-request-headers")
        return (
            ("access-control-allow-methods", f"{method}, GET, POST, OPTIONS"),
            ("access-control-allow-headers", asked or "*"),
            ("access-control-max-age", "600"),
        )
