"""In-process replay and recording for the ``websockets`` library's clients: the asyncio client
(what the openai SDK's Realtime client uses) and the threading one (``websockets.sync``).

The seams, patched only once the code under test imports the library (``ssevcr._import_hook``):

- asyncio: ``websockets.asyncio.client.connect.open_tcp_connection``, the one method that
  opens the client's socket (subclasses, such as the openai SDK's, inherit it);
- threading (websockets 17.1+): ``websockets.sync.client.reconnect.open_connection``, the one
  method that makes each connection from its socket to its handshake (``connect()``, iterating
  ``reconnect`` and every redirect reach it). The narrower ``open_socket`` does not do: the
  TLS handshake (``enable_tls``) and the protocol object are made after it in the same method,
  and the handshake is sent before it returns. So the wrapper hands the library's own
  ``open_connection`` a copy of the connecter (the caller's is not changed) with what differs:
  to replay, ``sock`` connected to the replay server and ``enable_tls`` a no-op (a preexisting
  ``sock=`` of the caller's is left alone); to record, ``create_connection`` (the library's
  factory hook, the caller's own if given) wrapped to watch the protocol before the handshake.
  Before 17.1 the threading ``connect`` is one function that calls ``socket.create_connection``
  itself: not intercepted (the network guard still refuses it while a cassette replays).

Everything else is shared by both clients: which way a connection goes (``_route``), the replay
server and the recorder. A host the cassette lets through (``ignore_hosts``) goes to the network
untouched.

Replay: while a cassette replays, every connection goes to a replay server of that cassette on
127.0.0.1, whatever the URI's host, scheme, proxy or TLS settings say. The handshake and every
frame are the replay server's (``ssevcr._websocket``: the conversation, its timing and faults,
the near miss), so a WebSocket replays in process exactly as it does over ``ssevcr replay``;
the server shares the cassette's player (plays, misses, fired faults and journals are the
cassette's) and stops when the cassette is exited. What the client sends is not changed: its
Host header and URI name the real service (a miss names it).

Recording (record mode ``all``, ``once`` without a file, and ``new_episodes`` for a connection
no interaction answers): the connection goes to the real service as the client asked, and the
client's own sans-IO protocol object (``connection.protocol``, a ``websockets.ClientProtocol``)
is watched through its public methods, each wrapped on that one object (the threading client
calls them under its protocol lock, from the caller's thread or its reading thread):
``send_request`` (the request head as sent; times count from here), ``events_received`` (the
101 and every frame, stamped when the bytes are handed to the protocol, whenever the
application reads them), ``send_text``/``send_binary``/``send_continuation`` (the client's
messages, stamped as they are written), ``send_close``/``fail`` (the client's close) and
``receive_eof`` (the end).
What is kept is what the mitmproxy addon keeps (``ssevcr.mitm.recorder``): the handshake, every
message (direction, text or binary, the payload as the application sent it: fragments joined,
compression undone) at its time from the handshake, and the close (code, reason, which side
closed first, stamped at the first close frame; ``by: none`` without one). It is saved with
the cassette, through the recording hooks and then redaction. A handshake answered with another
status than 101 is recorded as that HTTP answer. Faults are not applied while recording (the
client is shown the conversation as the service sends it, unlike an httpx stream's recording
run): a recording that a replay would give faults warns (``UnappliedFaultWarning``).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import socket
import threading
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import _import_hook
from ._capture import ws_close
from ._cassette import Headers, Outcome, Request

if TYPE_CHECKING:
    from ._intercept import ActiveCassette, AdapterRecording
    from ._recording import WsCapture
    from ._server_thread import ServerThread

__all__ = ["install", "uninstall"]

_servers: dict[int, ServerThread] = {}  # id(ActiveCassette) -> its replay server
_lock = threading.Lock()


def _route(connect: Any) -> tuple[str, ActiveCassette | None]:
    """What a connection of ``connect`` (either client's connecter: ``ws_uri`` and
    ``additional_headers``) gets: ``pass`` (no cassette, or a host it lets through),
    ``record`` (the network, watched) or ``replay`` (the cassette's replay server)."""
    from ._intercept import active

    current = active()
    if current is None:
        return "pass", None
    uri = connect.ws_uri
    if current.passes(uri.host, uri.port):
        return "pass", current
    mode = current.mode
    if mode == "record" or (mode == "both" and not current.player.answers(_guess(connect))):
        return "record", current
    return "replay", current


def _wrap(original: Any) -> Any:
    @functools.wraps(original)
    async def open_tcp_connection(self: Any) -> Any:
        route, current = _route(self)
        if route == "pass":
            return await original(self)
        assert current is not None
        if route == "record":
            connection = await original(self)
            _Recorder(current, self.ws_uri, connection.protocol)
            return connection
        server = _server(current)
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: self.factory(self.ws_uri), "127.0.0.1", server.port
        )
        return connection

    return open_tcp_connection


def _wrap_sync(original: Any) -> Any:
    @functools.wraps(original)
    def open_connection(self: Any, deadline: Any) -> Any:
        route, current = _route(self)
        if route == "pass":
            return original(self, deadline)
        assert current is not None
        view = copy.copy(self)  # this attempt's connecter: the caller's is not changed
        if route == "record":
            factory = self.create_connection

            def create_connection(sock: Any, protocol: Any, **kwargs: Any) -> Any:
                _Recorder(current, self.ws_uri, protocol)  # (before the handshake is sent)
                return factory(sock, protocol, **kwargs)

            view.create_connection = create_connection
            return original(view, deadline)
        server = _server(current)
        view.sock = socket.create_connection(("127.0.0.1", server.port), deadline.timeout())
        view.sock.settimeout(None)
        view.enable_tls = _plain  # (the replay server speaks plain WebSocket)
        return original(view, deadline)

    return open_connection


def _plain(sock: Any, _deadline: Any) -> Any:
    return sock


def _targets(_module: ModuleType) -> list[tuple[type, str, Any]]:
    targets: list[tuple[type, str, Any]] = []
    try:
        from websockets.asyncio.client import connect
    except ImportError:  # (websockets before 13: no asyncio client)
        pass
    else:
        if "open_tcp_connection" in connect.__dict__:
            targets.append((connect, "open_tcp_connection", _wrap))
    try:
        from websockets.sync.client import reconnect
    except ImportError:  # (websockets before 17.1: no connecter to patch, see the module)
        return targets
    if all(name in reconnect.__dict__ for name in ("open_connection", "enable_tls")):
        targets.append((reconnect, "open_connection", _wrap_sync))
    return targets


_patches = _import_hook.Patches("websockets", _targets)
install = _patches.install
uninstall = _patches.uninstall


def _server(cassette: ActiveCassette) -> ServerThread:
    """The replay server of ``cassette`` (started on its first WebSocket, stopped when it is
    exited)."""
    with _lock:
        server = _servers.get(id(cassette))
        if server is None:
            from ._server_thread import ServerThread

            server = ServerThread(cassette.player, allow_hosts=("*",), log=lambda _line: None)
            server.start()
            _servers[id(cassette)] = server
            cassette.on_close.append(functools.partial(_stop, id(cassette)))
        return server


def _stop(key: int) -> None:
    with _lock:
        server = _servers.pop(key, None)
    if server is not None:
        server.close()


# ---------------------------------------------------------------------------------------------
# recording


def _url(uri: Any) -> str:
    """The URL a recorded WebSocket is kept under: ``http``/``https`` as ``ssevcr record``
    keeps it, the port only when it is not the scheme's default, no user info."""
    scheme = "https" if uri.secure else "http"
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    port = "" if uri.port == (443 if uri.secure else 80) else f":{uri.port}"
    return f"{scheme}://{host}{port}{uri.resource_name}"


def _guess(connect: Any) -> Request:
    """The handshake request as far as it is known before the connection opens (to ask whether
    the cassette answers it: ``new_episodes``)."""
    from websockets.datastructures import Headers as WsHeaders

    extra = connect.additional_headers
    pairs: Headers = ()
    if extra is not None:
        pairs = tuple((str(k), str(v)) for k, v in WsHeaders(extra).raw_items())
    return Request("GET", _url(connect.ws_uri), pairs)


class _Recorder:
    """Records one connection by watching its sans-IO protocol (see the module)."""

    def __init__(self, cassette: ActiveCassette, uri: Any, protocol: Any) -> None:
        from websockets.frames import Opcode

        self.cassette = cassette
        self.url = _url(uri)
        self.protocol = protocol
        self.opcode = Opcode
        self.recording: AdapterRecording | None = None
        self.capture: WsCapture | None = None
        self.pieces: dict[bool, list[bytes]] = {True: [], False: []}  # a message in fragments
        self.binary: dict[bool, bool] = {True: False, False: False}
        self.close_at: float | None = None  # the first close frame, either way
        self.done = False
        for name in (
            "send_request",
            "events_received",
            "send_text",
            "send_binary",
            "send_continuation",
            "send_close",
            "fail",
            "receive_eof",
        ):
            setattr(protocol, name, functools.partial(getattr(self, name), getattr(protocol, name)))

    # -- the client's side ---------------------------------------------------------------------

    def send_request(self, original: Any, request: Any) -> None:
        original(request)
        if self.recording is None:
            headers = tuple((str(k), str(v)) for k, v in request.headers.raw_items())
            self.recording = self.cassette.record(
                Request("GET", self.url, headers), time.monotonic()
            )
            self.recording.warn_unapplied(
                "the WebSocket",
                "a WebSocket recorded in process reaches the client as the service sends it",
            )

    def send_text(self, original: Any, data: Any, fin: bool = True) -> None:
        original(data, fin)
        self._piece(True, data, fin, binary=False)

    def send_binary(self, original: Any, data: Any, fin: bool = True) -> None:
        original(data, fin)
        self._piece(True, data, fin, binary=True)

    def send_continuation(self, original: Any, data: Any, fin: bool) -> None:
        original(data, fin)
        self._piece(True, data, fin)

    def send_close(self, original: Any, code: Any = None, reason: str = "") -> None:
        original(code, reason)
        self._closing(time.monotonic())

    def fail(self, original: Any, code: Any, reason: str = "") -> None:
        original(code, reason)
        if self.protocol.close_sent is not None:
            self._closing(time.monotonic())

    # -- the server's side ---------------------------------------------------------------------

    def events_received(self, original: Any) -> list[Any]:
        events: list[Any] = original()
        if events and not self.done:
            now = time.monotonic()
            for event in events:
                self._event(event, now)
        return events

    def _event(self, event: Any, now: float) -> None:
        from websockets.frames import Frame

        if not isinstance(event, Frame):  # the handshake's answer (a websockets Response)
            self._answered(event)
            return
        op = self.opcode
        if event.opcode is op.CONT:
            self._piece(False, event.data, event.fin, now=now)
        elif event.opcode in (op.TEXT, op.BINARY):
            self._piece(False, event.data, event.fin, now=now, binary=event.opcode is op.BINARY)
        elif event.opcode is op.CLOSE:
            self._closing(now)

    def _answered(self, response: Any) -> None:
        recording = self.recording
        if recording is None or recording.capture is not None:
            return
        headers = tuple((str(k), str(v)) for k, v in response.headers.raw_items())
        reason = str(response.reason_phrase or "")
        if response.status_code == 101:
            self.capture = recording.websocket(reason=reason, headers=headers)
            return
        recording.head(response.status_code, reason=reason, headers=headers)
        recording.chunk(bytes(response.body or b""))
        recording.finish(Outcome.COMPLETE)
        self.done = True

    def receive_eof(self, original: Any) -> None:
        original()
        if self.done:
            return
        self.done = True
        capture, protocol = self.capture, self.protocol
        if capture is None:
            if self.recording is not None:  # lost before any answer: nothing to keep
                self.recording.finish(Outcome.UPSTREAM_ERROR)
            return
        rcvd, sent, then = protocol.close_rcvd, protocol.close_sent, protocol.close_rcvd_then_sent
        if then is True or (then is None and sent is None and rcvd is not None):
            by, close = "server", rcvd
        elif sent is not None:
            by, close = "client", sent
        else:
            by, close = "none", None
        at = self.close_at if self.close_at is not None else time.monotonic()
        code = None if close is None else int(close.code)
        reason = "" if close is None else str(close.reason)
        capture.ended(ws_close(at - capture.origin, code, reason, by))

    # -- messages --------------------------------------------------------------------------------

    def _piece(
        self,
        from_client: bool,
        data: Any,
        fin: bool,
        *,
        now: float | None = None,
        binary: bool | None = None,
    ) -> None:
        if self.capture is None or self.done:
            return
        pieces = self.pieces[from_client]
        if binary is not None:
            pieces.clear()
            self.binary[from_client] = binary
        pieces.append(bytes(data))
        if fin:
            whole = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            pieces.clear()
            at = time.monotonic() if now is None else now
            self.capture.message(at, from_client, whole, self.binary[from_client])

    def _closing(self, now: float) -> None:
        if self.close_at is None and self.capture is not None:
            self.close_at = now
