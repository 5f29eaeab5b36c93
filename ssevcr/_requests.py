"""In-process replay and recording for requests (every ``Session``, every mounted ``HTTPAdapter``).

The seam: requests' transport adapter. ``HTTPAdapter.send`` is patched on the class while
cassettes are open, and so is ``HTTPAdapter.get_connection_with_tls_context`` (the documented
hook "exposed for use when subclassing", ``get_connection`` before requests 2.32.2): while a
replayed request is sent, it returns a urllib3 ``HTTPConnectionPool`` whose ``ConnectionCls``
(urllib3's documented extension point) connects to an in-memory socket instead of the network.
Everything else is the libraries' own: urllib3 writes the request (read back by
:class:`ssevcr._http1.RequestReader`), http.client and urllib3 parse the answer, urllib3 applies
the retries and timeouts the adapter was given, requests maps the errors. The socket hands out
the response as the replay server would send it (:class:`ssevcr._wire.Answer`: chunked, one
HTTP chunk per recorded chunk, each on its absolute deadline from the request), so
``iter_content`` and ``iter_lines`` see the recorded chunks when they come due, and faults are
requests' exceptions: ``ChunkedEncodingError`` for a body cut short (``end=abort``, a reset),
``ConnectionError`` for a connection closed or reset before the head and for a stall past the read
timeout while streaming, ``ReadTimeout`` for one before the head. A miss raises
:class:`~ssevcr._errors.NoMatchError` from ``send``. No replayed connection is pooled.

Recording: the request goes out through the adapter as usual; the response's raw reader (the
http.client response's ``fp``, which urllib3 reads) is teed, so the client streams live and each
piece of the body is recorded (de-framed by :class:`ssevcr._wire.ResponseReader`, still
content-encoded) when the client reads it.

urllib3 used directly (``PoolManager``, botocore) is not intercepted in process; while a cassette
replays, the network guard (:mod:`ssevcr._network`) refuses its connections.

The play's journal counts what urllib3 read from the in-memory socket (its buffered reader reads
ahead of the application by up to 8 KiB); a socket closed before the end is ``cancel``, a read
that timed out ``timeout``.
"""

from __future__ import annotations

import contextvars
import errno
import functools
import io
import socket
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import _http1 as http1
from . import _import_hook
from ._cassette import Outcome, Request
from ._errors import CassetteError, SsevcrError
from ._follower import Finish, Wait
from ._schedule import Abort, Close, Hang, Reset
from ._transport import MAX_SLEEP
from ._wire import Answer, ResponseReader, to_request

if TYPE_CHECKING:
    from ._intercept import ActiveCassette
    from ._journal import Journal

__all__ = ["install", "uninstall"]

_installed: list[tuple[type, str, Any, Any]] = []  # (class, attribute, original, ours)
_route: contextvars.ContextVar[ActiveCassette | None] = contextvars.ContextVar(
    "ssevcr_requests_route", default=None
)


class _ToNetwork(Exception):
    """Raised by the in-memory socket when the cassette sends a request to the network
    (``new_episodes`` and no match): ``send`` catches it and sends the request for real."""


def _patch(requests: ModuleType) -> None:
    if _installed:
        return
    import requests.adapters

    cls = requests.adapters.HTTPAdapter
    pool_method = (
        "get_connection_with_tls_context"
        if "get_connection_with_tls_context" in cls.__dict__
        else "get_connection"
    )
    for attr, patch in (("send", _send_patch), (pool_method, _pool_patch)):
        original = cls.__dict__[attr]
        ours = patch(original)
        setattr(cls, attr, ours)
        _installed.append((cls, attr, original, ours))


def install() -> None:
    _import_hook.when_imported("requests", _patch)


def uninstall() -> None:
    _import_hook.forget("requests", _patch)
    while _installed:
        cls, attr, original, ours = _installed.pop()
        if cls.__dict__.get(attr) is ours:  # leave alone what another tool patched over us
            setattr(cls, attr, original)


def _send_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        from ._intercept import active

        cassette = active()
        if cassette is None:
            return original(self, request, *args, **kwargs)
        url = urlsplit(request.url)
        if cassette.passes(url.hostname or "", url.port):
            return original(self, request, *args, **kwargs)
        if cassette.mode != "record":
            token = _route.set(cassette)
            try:
                return original(self, request, *args, **kwargs)
            except _ToNetwork:
                pass
            finally:
                _route.reset(token)
        return _record(cassette, original, self, request, *args, **kwargs)

    return send


def _pool_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def get_connection(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        cassette = _route.get()
        if cassette is None:
            return original(self, request, *args, **kwargs)
        url = urlsplit(request if isinstance(request, str) else request.url)
        return _pool(cassette, url.scheme, url.hostname or "localhost", url.port)

    return get_connection


def _pool(cassette: ActiveCassette, scheme: str, host: str, port: int | None) -> Any:
    from urllib3 import HTTPConnectionPool

    pool = HTTPConnectionPool(host, port or (443 if scheme == "https" else 80), maxsize=1)
    pool.scheme = scheme  # (for urllib3's messages)
    pool.ConnectionCls = functools.partial(  # type: ignore[assignment]
        _connection_class(), ssevcr_cassette=cassette, ssevcr_scheme=scheme
    )
    return pool


@functools.cache
def _connection_class() -> type:
    from urllib3.connection import HTTPConnection

    class ReplayConnection(HTTPConnection):
        """A urllib3 connection to an in-memory socket that answers from the cassette."""

        def __init__(self, *args: Any, ssevcr_cassette: Any, ssevcr_scheme: str, **kw: Any):
            super().__init__(*args, **kw)
            self._ssevcr = (ssevcr_cassette, ssevcr_scheme)

        def connect(self) -> None:
            cassette, scheme = self._ssevcr
            port = self.port
            self.sock = _ReplaySocket(
                cassette, scheme, f"{self.host}:{port}" if port else self.host
            )

        @property
        def is_connected(self) -> bool:
            return False  # never reused: each request gets a fresh in-memory socket

    return ReplayConnection


class _ReplaySocket:
    """What http.client and urllib3 use of a socket: ``sendall`` (the request, read as it
    comes), ``makefile`` (the answer, due on the schedule), ``settimeout``, ``close``."""

    def __init__(self, cassette: ActiveCassette, scheme: str, authority: str) -> None:
        self.cassette = cassette
        self.scheme = scheme
        self.reader = http1.RequestReader(authority=authority)
        self.timeout: float | None = None
        self.answer: Answer | None = None
        self.journal: Journal | None = None  # the play's: what urllib3 read
        self.t0 = 0.0
        self.wake = threading.Event()  # set by close/shutdown: a waiting read gives up
        self.family = socket.AF_INET
        self.type = socket.SOCK_STREAM

    def settimeout(self, value: float | None) -> None:
        self.timeout = None if value is None else float(value)

    def gettimeout(self) -> float | None:
        return self.timeout

    def setsockopt(self, *args: Any) -> None:
        pass

    def sendall(self, data: Any) -> None:
        if self.answer is not None:
            return  # bytes after the request (none for an HTTP/1.1 client)
        event = self.reader.feed(bytes(data))
        if isinstance(event, http1.Request):
            self._play(event)
        elif isinstance(event, http1.ProtocolError):
            raise SsevcrError(f"ssevcr: cannot read the request urllib3 wrote: {event.message}")

    def send(self, data: Any) -> int:
        self.sendall(data)
        return len(data)

    def _play(self, incoming: http1.Request) -> None:
        request = to_request(incoming, self.scheme)
        play = self.cassette.answer(request)  # NoMatchError in record mode none
        if play is None:
            raise _ToNetwork
        try:
            self.answer = Answer(play.schedule, incoming.head)
        except http1.BadHead as e:
            raise CassetteError(
                str(self.cassette.path),
                f"cannot replay {request.method} {request.url}: the recorded response head is "
                f"not valid HTTP/1.1 ({e})",
            ) from None
        self.t0 = time.monotonic()
        self.journal = play.journal
        if self.journal is not None:
            self.journal.begin(self.t0, time.time())

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_Answered(self))

    def shutdown(self, how: int) -> None:
        self._closed()

    def close(self) -> None:
        self._closed()

    def _closed(self) -> None:
        self.wake.set()
        if self.journal is not None:  # (no-op once the answer was complete)
            self.journal.left(time.monotonic(), "cancel")

    def fileno(self) -> int:
        return -1


class _Answered(io.RawIOBase):
    """The answer as a raw stream: each read waits for the next due bytes (giving up after the
    socket's timeout, as ``recv`` does), then returns them; the end is EOF, a reset or a hang."""

    def __init__(self, sock: _ReplaySocket) -> None:
        self.sock = sock
        self.pending = memoryview(b"")
        self.end: Close | Abort | Reset | Hang | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        pending = self.pending
        if not pending:
            pending = self.pending = memoryview(self._next())
        n = min(len(buffer), len(pending))
        buffer[:n] = pending[:n]
        self.pending = pending[n:]
        return n

    def _next(self) -> bytes:
        """The next due bytes (b"" at EOF), waiting for them."""
        sock = self.sock
        answer = sock.answer
        if answer is None or sock.wake.is_set():
            return b""
        give_up = None if sock.timeout is None else time.monotonic() + sock.timeout
        journal = sock.journal
        while True:
            if self.end is not None:
                return self._ended(self.end, give_up)
            data, then = answer.next(time.monotonic() - sock.t0)
            if journal is not None and data:
                now = time.monotonic()
                journal.head(now)
                journal.sent(now, answer.body_sent)
            if type(then) is Finish:
                assert isinstance(then, Finish)
                self.end = then.end
                if journal is not None and type(then.end) is not Hang:
                    journal.done(time.monotonic())
            if data:
                return data
            if type(then) is Wait:
                assert isinstance(then, Wait)
                self._wait(sock.t0 + then.until, give_up)

    def _ended(self, end: Close | Abort | Reset | Hang, give_up: float | None) -> bytes:
        if type(end) is Reset:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        if type(end) is Hang:
            while True:
                self._wait(None, give_up)
        return b""  # a close: EOF (the body's end, or a body cut short)

    def _wait(self, deadline: float | None, give_up: float | None) -> None:
        """Sleep until ``deadline`` (None: forever); past ``give_up``, time out as recv does."""
        wake = self.sock.wake
        times_out = give_up is not None and (deadline is None or deadline > give_up)
        until = give_up if times_out else deadline
        while True:
            now = time.monotonic()
            if until is None:
                if wake.wait(MAX_SLEEP):
                    raise OSError(errno.EBADF, "the connection was closed while waiting")
                continue
            left = until - now
            if left <= 0:
                break
            if wake.wait(min(left, MAX_SLEEP)):
                raise OSError(errno.EBADF, "the connection was closed while waiting")
        if times_out:
            journal = self.sock.journal
            if journal is not None:
                journal.left(time.monotonic(), "timeout")
            raise TimeoutError("timed out")


# ---------------------------------------------------------------------------------------------
# recording


def _record(
    cassette: ActiveCassette,
    original: Callable[..., Any],
    adapter: Any,
    request: Any,
    *args: Any,
    **kwargs: Any,
) -> Any:
    t0 = time.monotonic()
    response = original(adapter, request, *args, **kwargs)
    raw = response.raw
    httplib = getattr(raw, "_original_response", None)
    if httplib is None or not hasattr(httplib, "fp") or httplib.fp is None:
        return response  # (a response urllib3 did not read off a connection: nothing to tee)
    headers = tuple((str(k), str(v)) for k, v in httplib.msg.items())
    recording = cassette.record(_request_of(request), t0)
    recording.head(
        int(httplib.status),
        reason=str(httplib.reason or ""),
        headers=headers,
        http_version="HTTP/1.0" if httplib.version == 10 else "HTTP/1.1",
    )
    reader = ResponseReader.body_only(recording, request.method, int(httplib.status), headers)
    httplib.fp = _Tee(httplib.fp, reader)
    return response


def _request_of(prepared: Any) -> Request:
    body = prepared.body
    if isinstance(body, str):
        try:
            body = body.encode("latin-1")  # as http.client sends a str body
        except UnicodeEncodeError:
            body = body.encode("utf-8")
    elif not isinstance(body, bytes | bytearray):
        body = b""  # a generator or a file: streamed out, not kept
    headers = tuple((str(k), str(v)) for k, v in prepared.headers.items())
    return Request(str(prepared.method), str(prepared.url), headers, bytes(body))


class _Tee:
    """The response's raw reader, passed through; every piece read goes to the recording."""

    def __init__(self, inner: Any, reader: ResponseReader) -> None:
        self._inner = inner
        self._reader = reader

    def _seen(self, data: bytes) -> bytes:
        if data:
            self._reader.feed(data)
        else:
            self._reader.eof()
        return data

    def _read(self, method: Callable[..., Any], *args: Any) -> Any:
        from ._intercept import error_text

        try:
            return method(*args)
        except Exception as e:
            self._reader.lost(error_text(e))
            raise

    def read(self, *args: Any) -> bytes:
        return self._seen(self._read(self._inner.read, *args))

    def read1(self, *args: Any) -> bytes:
        return self._seen(self._read(self._inner.read1, *args))

    def readline(self, *args: Any) -> bytes:
        return self._seen(self._read(self._inner.readline, *args))

    def readinto(self, buffer: Any) -> int:
        n: int = self._read(self._inner.readinto, buffer)
        self._seen(bytes(memoryview(buffer)[:n]))
        return n

    def close(self) -> None:
        self._reader.recording.finish(Outcome.CLIENT_DISCONNECTED)
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
