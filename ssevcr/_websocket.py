"""WebSocket replay on the replay server's connections: the handshake and every frame are
wsproto's (no framing of our own); what to send when is :class:`ssevcr._conversation.Conversation`.

A request that matches a recorded WebSocket interaction is handed over here by the server's
connection: wsproto reads the upgrade request (a bad one gets its 400), answers 101 with the
recorded response headers (less those of the handshake itself, which wsproto writes; a recorded
subprotocol only if the client offers it; no extensions: messages are replayed as recorded,
uncompressed), then the conversation follows its plan: server messages at their offsets from
the client message they answer, client messages matched in order. A client message that differs
from the recording gets OpenAI Realtime's ``error`` event explaining the near miss, is logged,
and the connection closes with 1008. Pings are answered; a client's close is answered and ends
the connection.

Each play's journal (``ssevcr._journal``) gets every message handed to the transport or read
from the client, the close (the first side to close: its code and reason, or none when the TCP
connection ended without a close frame), and how the play ended: completed when the
conversation reached its planned end, or when the client closed (a close frame, FIN or RST)
after every planned server message was handed over and acknowledged by its TCP and every client
message matched, before the recorded close came (the openai SDK closes as soon as it reads
``response.done``); else how the client left: also after a miss or a 1009 of ours, after a
client's close frame with a complaint (a code other than 1000, 1001 or none: its 1009 for a
message past its ``max_size``, 1002, 1007...), and whenever the plan hangs (``stall:forever``,
a recording that never closed).

Bounds: a client message (its fragments joined) larger than ``max_message`` closes with 1009;
bytes waiting for a client that does not read stop the sender (flow control, as for streams).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import wsproto
import wsproto.events as ev
from wsproto.connection import ConnectionState
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ._conversation import Conversation, Ending, Finish, Out, Plan, Wait
from ._providers import realtime_error
from ._secrets import mask_url, printable, safe

if TYPE_CHECKING:
    from . import _http1 as http1
    from ._cassette import Headers
    from ._journal import How, Journal

__all__ = ["MAX_MESSAGE", "WebSocketSession", "handshake_headers", "is_upgrade"]

MAX_MESSAGE = 16 * 1024 * 1024
"""The largest client message read (bytes, fragments joined); past it: close 1009."""

_CLOSE_WAIT = 5.0  # seconds to wait for the client's answer to our close frame
_FINE = frozenset({1000, 1001, 1005})  # a client's close that is no complaint (1005: no code)
_OWN = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "content-length",
        "transfer-encoding",
        "keep-alive",
        "date",
    }
)


def is_upgrade(headers: Headers) -> bool:
    """Whether a request asks for a WebSocket (``Upgrade: websocket``)."""
    return any(k.lower() == "upgrade" and v.strip().lower() == "websocket" for k, v in headers)


def handshake_headers(recorded: Headers) -> list[tuple[bytes, bytes]]:
    """The recorded 101 response's headers that the replay sends again (wsproto writes the
    handshake's own: upgrade, connection, accept, protocol, extensions)."""
    return [
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in recorded if k.lower() not in _OWN
    ]


def _raw_head(head: http1.Head) -> bytes:
    lines = [f"{head.method} {head.target} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in head.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class WebSocketSession:
    """One replayed WebSocket conversation on a server connection. The connection calls
    :meth:`receive` with every byte after the handshake, :meth:`pump` when its transport can
    take more, :meth:`stop` when it closes."""

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        plan: Plan,
        *,
        writable: Callable[[], bool],
        close: Callable[[], None],
        reset: Callable[[], None],
        log: Callable[[str], None],
        what: str,
        on_miss: Callable[[str], None] = lambda _message: None,
        max_message: int = MAX_MESSAGE,
        journal: Journal | None = None,
        delivered: Callable[[], None] = lambda: None,
        held: Callable[[], int] = lambda: 0,
    ) -> None:
        self.transport = transport
        self.loop = loop
        self.talk = Conversation(plan)
        self.writable = writable
        self._close_connection = close
        self._reset = reset
        self.log = log
        self.on_miss = on_miss
        self.what = what  # "GET /v1/realtime?model=..." for messages
        self.max_message = max_message
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        self.t0 = 0.0
        self.done = False  # the connection is closing
        self.ending = False  # the conversation's end was sent (a close frame, the last message)
        self._timer: asyncio.TimerHandle | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self.journal = journal
        self._delivered = delivered
        self._held = held
        self._awaiting_client = False  # every planned message sent; the client's close ends it

    # --- the handshake

    def accept(self, head: http1.Head, recorded: Headers, leftover: bytes = b"") -> str | None:
        """Answer the upgrade: None once the 101 is written and the conversation started, else
        why the request is no WebSocket handshake (the caller answers 400)."""
        try:
            self.ws.receive_data(_raw_head(head))
            request = next((e for e in self.ws.events() if isinstance(e, ev.Request)), None)
        except RemoteProtocolError as e:
            return f"not a WebSocket handshake: {e}"
        if request is None:
            return "not a WebSocket handshake"
        offered = {p.strip() for p in request.subprotocols}
        protocol = next(
            (v.strip() for k, v in recorded if k.lower() == "sec-websocket-protocol"), None
        )
        accept = ev.AcceptConnection(
            subprotocol=protocol if protocol in offered else None,
            extra_headers=handshake_headers(recorded),
        )
        try:
            data = self.ws.send(accept)
        except LocalProtocolError as e:  # a recorded header h11 refuses to write
            return f"the recorded handshake cannot be answered: {e}"
        self.transport.write(data)
        self.t0 = self.loop.time()
        if self.journal is not None:
            self.journal.head(self.t0)
        self.pump()
        if leftover:
            self.receive(leftover)
        return None

    # --- the client's side

    def receive(self, data: bytes | None) -> None:
        """Bytes from the client (None: it closed its side)."""
        if self.done:
            return
        try:
            self.ws.receive_data(data)
            for event in self.ws.events():
                if self.done:
                    return
                self._event(event)
        except RemoteProtocolError as e:  # wsproto answers a broken frame with a close
            self.log(f"ssevcr: {self.what}: the client broke the WebSocket protocol: {e}")
            self._end()

    def _event(self, event: ev.Event) -> None:
        if isinstance(event, ev.Message):
            data = event.data.encode("utf-8") if isinstance(event, ev.TextMessage) else event.data
            self._size += len(data)
            if self._size > self.max_message:
                self._send_close(1009, "message too big")
                return
            self._parts.append(data)
            if event.message_finished:
                whole = b"".join(self._parts)
                self._parts.clear()
                self._size = 0
                self._heard(whole, isinstance(event, ev.BytesMessage))
        elif isinstance(event, ev.Ping):
            self._send(event.response())
        elif isinstance(event, ev.CloseConnection):
            completed = event.code in _FINE and (  # (asked before our answer is written)
                self._awaiting_client or self._read_to_end()
            )
            if self.ws.state is ConnectionState.REMOTE_CLOSING:
                self._send(event.response())
            if self.journal is not None and not self.ending:
                self.journal.ws_closed(self.loop.time(), "client", event.code, event.reason or "")
            if completed:
                self._completed()
            self._end()

    def _heard(self, data: bytes, binary: bool) -> None:
        if self.ending:  # (after our close frame: what the client still sends is not read)
            return
        now = self.loop.time()
        problem = self.talk.received(now - self.t0, data, binary)
        if self.journal is not None:
            self.journal.ws_received(now, len(data), binary, problem is None)
        if problem is None:
            self.pump()
            return
        message = safe(f"ssevcr: {self.what}: {problem}")  # never a client's secret in a log
        self.log(message)
        self.on_miss(message)
        self._send(ev.TextMessage(realtime_error(message=message, code="ssevcr_no_match").decode()))
        self._send_close(1008, "ssevcr: no match for this message (see the error event)")

    # --- the server's side

    def pump(self) -> None:
        """Send what is due; then wait for the next deadline, the client, or the transport."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        talk, loop, t0 = self.talk, self.loop, self.t0
        while not (self.done or self.ending) and self.writable():
            action = talk.next(loop.time() - t0)
            if isinstance(action, Out):
                self._out(action)
            elif isinstance(action, Wait):
                if action.until is not None:
                    self._timer = loop.call_at(t0 + action.until, self.pump)
                return
            else:
                assert isinstance(action, Finish)
                self._finish(action.ending)
                return

    def _out(self, out: Out) -> None:
        data, pieces = out.data, out.pieces or (len(out.data),)
        pos, last = 0, len(pieces) - 1
        frames = []
        for n, size in enumerate(pieces):
            piece = data[pos : pos + size]
            pos += size
            event: ev.Event = (
                ev.BytesMessage(piece, message_finished=n == last)
                if out.binary
                else ev.TextMessage(piece.decode("utf-8"), message_finished=n == last)
            )
            frames.append(self.ws.send(event))
        self.transport.write(b"".join(frames))
        if self.journal is not None:
            self.journal.ws_sent(self.loop.time(), out.number, len(data), out.binary)

    def _finish(self, ending: Ending) -> None:
        how = ending.how
        journal, now = self.journal, self.loop.time()
        if how == "close":
            assert ending.code is not None
            self._send_close(ending.code, ending.reason)
            self._completed()
        elif how == "drop":  # what was sent still goes out, then a FIN: no close frame (1006)
            if journal is not None:
                journal.ws_closed(now, "server", None, "")
            self._completed()
            self._end()
        elif how == "reset":
            if journal is not None:
                journal.ws_closed(now, "server", None, "")
            self._completed()
            self.done = True
            self._reset()
        elif how == "client":  # the client's close ends it
            self._awaiting_client = True
        # "hang": open and silent

    def _send(self, event: ev.Event) -> None:
        if self.done or self.ws.state is ConnectionState.CLOSED:
            return
        try:
            self.transport.write(self.ws.send(event))
        except LocalProtocolError:  # (a close already sent)
            pass

    def _send_close(self, code: int, reason: str) -> None:
        if self.ending:  # sent already: the client's answer (or the wait for it) ends it
            return
        self.ending = True
        if self.ws.state is ConnectionState.OPEN:
            self._send(ev.CloseConnection(code, reason or None))
            if self.journal is not None:
                self.journal.ws_closed(self.loop.time(), "server", code, reason)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(_CLOSE_WAIT, self._end)  # if it never answers

    def _end(self) -> None:
        self.stop()
        self._close_connection()

    def stop(self, how: How = "fin") -> None:
        """The connection is closing (``how``: the client closed it or reset it): no more
        sending, no more timers; the journal says how the play ended."""
        self.done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        journal = self.journal
        if journal is not None:
            self.journal = None
            now = self.loop.time()
            journal.ws_closed(now, "client", None, "")  # (unless a side closed before)
            if journal.state == "open" and self._read_to_end():
                journal.done(now)
            journal.left(now, how)  # (unless completed)
            self._delivered()

    def _read_to_end(self) -> bool:
        """The client leaves having taken the whole conversation: every planned server message
        handed over and none still held by the transport or unacknowledged by the client's TCP,
        every client message it follows heard and matched, only the planned ending's delay left
        (the openai SDK closes at ``response.done``, before a recorded close comes). Not after a
        close of ours (a miss, 1009), nor when the plan hangs (``stall:forever``, or a recording
        that never closed: it has no end to reach); a client's close frame with a complaint is
        not an end either (see ``_FINE``)."""
        talk = self.talk
        return (
            not self.ending and talk.at_end and talk.plan.ending.how != "hang" and self._held() == 0
        )

    def _completed(self) -> None:
        """The conversation reached its planned end."""
        if self.journal is not None:
            self.journal.done(self.loop.time())


def describe_request(head: http1.Head) -> str:
    """``GET /v1/realtime?model=...`` as a log line may show it (secrets masked)."""
    return printable(f"{head.method} {mask_url(head.target)}")
