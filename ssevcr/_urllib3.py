"""In-process replay and recording for urllib3 and what is built on it: ``urllib3.request``,
``PoolManager`` and ``ProxyManager``, ``HTTPConnectionPool``/``HTTPSConnectionPool`` made by hand,
requests (every ``Session``, every ``HTTPAdapter``), botocore, any SDK that sends through a pool.

The seam: :meth:`urllib3.HTTPConnectionPool.urlopen`, the pool's public entry point that every
request through urllib3 reaches (``PoolManager.urlopen`` and requests' ``HTTPAdapter.send`` call
it on the pool they chose; every pool subclass inherits it), patched on the class while cassettes
are open. A replayed request is sent through the same ``urlopen`` on a fresh pool of its own,
whose ``ConnectionCls`` (urllib3's documented extension point) connects to an in-memory socket
instead of the network; the caller's pool, and any connection it holds, is not touched. The
replay pool takes the caller's pool defaults (timeout, retries, headers), so everything else is
the libraries' own: urllib3 writes the request (read back by
:class:`ssevcr._http1.RequestReader`), http.client and urllib3 parse the answer, urllib3 applies
its retries, redirects and timeouts (a retried request is played again: the cassette must hold
the retries), requests maps the errors. The socket hands out the response as the replay server
would send it (:class:`ssevcr._wire.Answer`: chunked, one HTTP chunk per recorded chunk, each on
its absolute deadline from the request), so ``stream()``, ``read_chunked()``, ``read1()``,
requests' ``iter_content`` and ``iter_lines`` see the recorded chunks when they come due
(``read(amt)`` waits for ``amt`` bytes, as it does on a socket). Faults are each library's
exceptions: in urllib3, ``ProtocolError`` for a chunked body cut short (``end=abort``, a reset)
or a connection closed or reset before the head, ``IncompleteRead`` (inside a ``ProtocolError``)
for a sized body cut short, ``ReadTimeoutError`` for a stall past the read timeout, and
``MaxRetryError`` once the retries are spent on errors before the head; in requests,
``ChunkedEncodingError``, ``ConnectionError`` and ``ReadTimeout``. A miss raises
:class:`~ssevcr._errors.NoMatchError` from ``urlopen``. No replayed connection is pooled.

Recording: the request goes out through the caller's pool as usual (its TLS settings, proxy and
connections); the response's raw reader (the http.client response's ``fp``, which urllib3 reads)
is teed, so the client streams live and each piece of the body is recorded (de-framed by
:class:`ssevcr._wire.ResponseReader`, still content-encoded) when the client reads it, stamped
when the socket read that brought it returned (:func:`ssevcr._reads.watch_file`). A
``preload_content=True`` call is sent without preloading and preloaded once teed (as urllib3
does: ``response.data``). A pool's own redirects and status retries (``redirect=True`` on a pool
used by hand; ``PoolManager``, requests and botocore follow redirects one ``urlopen`` per hop) keep
only the last answer.

With faults (a fault test's recording run) the caller's ``urlopen`` runs on a pool of in-memory
connections like a replay's, whose socket follows the recording instead of a cassette
(:class:`_Upstream`): each request urllib3 writes there is sent upstream through the caller's
pool as written, with no retries or redirects of its own (the live pool's urllib3 applies the
caller's: each attempt is a recording, as each is a play on replay); a recorder thread reads the
raw response to its end whatever the client does (stamped at the socket read), and the socket
hands urllib3 the live replay of what it records, in parts as each becomes certain
(:class:`ssevcr._recording.Batches`, one :class:`ssevcr._wire.Answer` continued part after part),
so urllib3 and http.client raise what they raise on replay. The relayed connection is closed at
the end, never reused. Such a recording keeps the request as urllib3 wrote it (its own headers
too), as a replay reads it.
A ``urllib3.HTTPConnection`` used without a pool is not intercepted: while a
cassette replays, the network guard (:mod:`ssevcr._network`) refuses its connection.

The play's journal counts what urllib3 read from the in-memory socket (its buffered reader reads
ahead of the application by up to 8 KiB); a socket closed before the end is ``cancel``, a read
that timed out ``timeout``.
"""

from __future__ import annotations

import errno
import functools
import inspect
import io
import socket
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import _http1 as http1
from . import _import_hook
from ._cassette import Outcome, Request
from ._errors import CassetteError, SsevcrError
from ._follower import Finish, Wait
from ._recording import Batches
from ._schedule import Abort, Close, Hang, Reset, Schedule
from ._transport import MAX_SLEEP
from ._wire import Answer, ResponseReader, to_request

if TYPE_CHECKING:
    from ._intercept import ActiveCassette, AdapterRecording
    from ._journal import Journal
    from ._live import Known
    from ._recording import Recording

__all__ = ["install", "uninstall"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class _ToNetwork(Exception):
    """Raised by the in-memory socket when the cassette sends a request to the network
    (``new_episodes`` and no match): ``urlopen`` catches it and sends the request for real."""


def _targets(urllib3: ModuleType) -> list[tuple[type, str, Callable[..., Any]]]:
    return [(urllib3.HTTPConnectionPool, "urlopen", _urlopen_patch)]


_patches = _import_hook.Patches("urllib3", _targets)
install = _patches.install
uninstall = _patches.uninstall


def _urlopen_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        from ._intercept import active

        cassette = active()
        if cassette is None or type(self) is _pool_class():  # (a replay pool's own retries)
            return original(self, method, url, *args, **kwargs)
        scheme, host, port = _target(self, url)
        if cassette.passes(host, port):
            return original(self, method, url, *args, **kwargs)
        if cassette.mode != "record":
            pool = _pool(self, cassette, scheme, host, port)
            try:
                return original(pool, method, url, *args, **kwargs)
            except _ToNetwork:
                pass
        return _record(cassette, original, self, method, url, *args, **kwargs)

    return urlopen


def _target(pool: Any, url: str) -> tuple[str, str, int | None]:
    """Where a request goes: the URL's origin when it is absolute (a proxy's pool is sent the
    whole URL), else the pool's."""
    if url.startswith(("http://", "https://")):
        from urllib3.util import parse_url

        parsed = parse_url(url)
        return parsed.scheme or "http", parsed.host or "localhost", parsed.port
    return str(pool.scheme), str(pool.host), pool.port


def _pool(
    pool: Any,
    cassette: ActiveCassette,
    scheme: str,
    host: str,
    port: int | None,
    upstream: _Upstream | None = None,
) -> Any:
    """A pool of one in-memory connection, with the caller's pool defaults; ``upstream``: what
    a request the cassette does not answer is recorded from (else it raises ``_ToNetwork``)."""
    replay = _pool_class()(
        host,
        port or _DEFAULT_PORTS.get(scheme, 80),
        timeout=pool.timeout,
        retries=pool.retries,
        headers=pool.headers,
        maxsize=1,
    )
    replay.scheme = scheme  # (for urllib3's messages and its same-host check)
    replay.ssevcr_named = type(pool).__name__
    replay.ConnectionCls = functools.partial(
        _connection_class(), ssevcr_cassette=cassette, ssevcr_scheme=scheme, ssevcr_up=upstream
    )
    return replay


@functools.cache
def _pool_class() -> type:
    from urllib3 import HTTPConnectionPool

    class ReplayPool(HTTPConnectionPool):
        """A pool whose connections answer from the cassette (see ``ReplayConnection``), named
        in urllib3's messages as the caller's pool is."""

        ssevcr_named = "HTTPConnectionPool"

        def __str__(self) -> str:
            return f"{self.ssevcr_named}(host={self.host!r}, port={self.port!r})"

    return ReplayPool


@functools.cache
def _connection_class() -> type:
    from urllib3.connection import HTTPConnection

    class ReplayConnection(HTTPConnection):
        """A urllib3 connection to an in-memory socket that answers from the cassette."""

        def __init__(
            self, *args: Any, ssevcr_cassette: Any, ssevcr_scheme: str, ssevcr_up: Any, **kw: Any
        ):
            super().__init__(*args, **kw)
            self._ssevcr = (ssevcr_cassette, ssevcr_scheme, ssevcr_up)

        def connect(self) -> None:
            cassette, scheme, upstream = self._ssevcr
            port = self.port
            self.sock = _ReplaySocket(
                cassette, scheme, f"{self.host}:{port}" if port else self.host, upstream
            )

        @property
        def is_connected(self) -> bool:
            return False  # never reused: each request gets a fresh in-memory socket

    return ReplayConnection


class _ReplaySocket:
    """What http.client and urllib3 use of a socket: ``sendall`` (the request, read as it
    comes), ``makefile`` (the answer, due on the schedule), ``settimeout``, ``close``."""

    def __init__(
        self,
        cassette: ActiveCassette,
        scheme: str,
        authority: str,
        upstream: _Upstream | None = None,
    ) -> None:
        self.cassette = cassette
        self.scheme = scheme
        self.upstream = upstream
        self.live: tuple[Recording, Batches] | None = None  # a recording the answer follows
        self.head: http1.Head | None = None
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
        if self.answer is not None or self.live is not None:
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
        self.head = incoming.head
        if play is None:
            if self.upstream is None:
                raise _ToNetwork
            recording = self.upstream.send(incoming, request)
            self.live = (recording, Batches())
            self.t0 = recording.capture.t0
            return
        self.answer = self._answer(request, play.schedule)
        self.t0 = time.monotonic()
        self.journal = play.journal
        if self.journal is not None:
            self.journal.begin(self.t0, time.time())

    def _answer(self, request: Request, schedule: Schedule, after: Answer | None = None) -> Answer:
        assert self.head is not None
        last = self.live is None or self.live[1].ended
        try:
            return Answer(schedule, self.head, after=after, last=last)
        except http1.BadHead as e:
            raise CassetteError(
                str(self.cassette.path),
                f"cannot replay {request.method} {request.url}: the recorded response head is "
                f"not valid HTTP/1.1 ({e})",
            ) from None

    def part(self, give_up: float | None) -> Answer:
        """The next part of the live answer, once it is certain: past ``give_up`` a timeout, as
        ``recv``'s; closed meanwhile, EBADF."""
        assert self.live is not None
        recording, batches = self.live
        after = self.answer

        def ready(known: Known) -> Schedule | bool | None:
            if self.wake.is_set():
                return False
            return batches.next(known, head=after is None)

        try:
            got = recording.wait(ready, give_up)
        except TimeoutError:
            raise TimeoutError("timed out") from None
        if got is False:
            raise OSError(errno.EBADF, "the connection was closed while waiting")
        assert isinstance(got, Schedule)
        self.answer = self._answer(recording.capture.request, got, after)
        return self.answer

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_Answered(self))

    def shutdown(self, how: int) -> None:
        self._closed()

    def close(self) -> None:
        self._closed()

    def _closed(self) -> None:
        self.wake.set()
        if self.live is not None:  # (a wait for the recording gives up)
            cond = self.live[0].cond
            with cond:
                cond.notify_all()
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
        if (sock.answer is None and sock.live is None) or sock.wake.is_set():
            return b""
        give_up = None if sock.timeout is None else time.monotonic() + sock.timeout
        journal = sock.journal
        while True:
            if self.end is not None:
                return self._ended(self.end, give_up)
            answer = sock.answer
            if answer is None or (answer.done and not answer.last):
                answer = sock.part(give_up)  # (a recording's live answer: its next part)
            data, then = answer.next(time.monotonic() - sock.t0)
            if journal is not None and data:
                now = time.monotonic()
                journal.head(now)
                journal.sent(now, answer.body_sent)
            if type(then) is Finish and answer.last:
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


@functools.cache
def _signature(urlopen: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(urlopen)


def _record(
    cassette: ActiveCassette,
    original: Callable[..., Any],
    pool: Any,
    method: str,
    url: str,
    *args: Any,
    **kwargs: Any,
) -> Any:
    call = _signature(original).bind(pool, method, url, *args, **kwargs)
    call.apply_defaults()
    given = call.arguments
    if cassette.player.faults:  # the client's own call on a pool that follows the recording
        scheme, host, port = _target(pool, url)
        upstream = _Upstream(cassette, original, pool, given["timeout"])
        live = _pool(pool, cassette, scheme, host, port, upstream)
        return original(live, method, url, *args, **kwargs)
    preload = bool(given["preload_content"])
    if preload:  # sent without preloading, preloaded below once teed
        given["preload_content"] = False
        given["release_conn"] = False  # (the response gives it back once read to the end)
    t0 = time.monotonic()
    response = original(*call.args, **call.kwargs)
    httplib = getattr(response, "_original_response", None)
    fp = getattr(httplib, "fp", None)
    if fp is not None and not isinstance(fp, _Tee):  # (a pool's own retry was teed already)
        request = _request_of(pool, method, url, given["body"], given["headers"])
        recording = cassette.record(request, t0)
        _tee(recording, httplib, method)
    if preload:
        response.data  # noqa: B018 (read and kept, as preload_content does)
    return response


def _tee(recording: AdapterRecording, httplib: Any, method: str) -> None:
    """Record the response urllib3 is reading: its head now, its body as it is read, each piece
    stamped when the socket read that brought its first byte returned (the socket file's reads,
    :func:`ssevcr._reads.watch_file`)."""
    from ._reads import watch_file

    headers = tuple((str(k), str(v)) for k, v in httplib.msg.items())
    recording.head(
        int(httplib.status),
        reason=str(httplib.reason or ""),
        headers=headers,
        http_version="HTTP/1.0" if httplib.version == 10 else "HTTP/1.1",
    )
    reader = ResponseReader.body_only(recording, method, int(httplib.status), headers)
    recording.reads = watch_file(httplib.fp)
    httplib.fp = _Tee(httplib.fp, reader)


class _Upstream:
    """Where a request a live replay pool reads is recorded from (faults on a recording run):
    it is sent through the caller's pool as it was written (no retries, no redirects: the live
    pool's own urllib3 applies the caller's, each attempt recorded as a replay would play it),
    and a recorder thread reads the response to its end whatever the client does, into the
    recording whose live replay the client's socket hands out."""

    def __init__(
        self, cassette: ActiveCassette, original: Callable[..., Any], pool: Any, timeout: Any
    ) -> None:
        self.cassette = cassette
        self.original = original
        self.pool = pool
        self.timeout = timeout

    def send(self, incoming: http1.Request, request: Request) -> Recording:
        from urllib3 import HTTPHeaderDict

        from ._reads import watch_file

        head = incoming.head
        headers = HTTPHeaderDict()
        for k, v in head.headers:
            if k.lower() not in ("transfer-encoding", "content-length"):  # (the body is whole)
                headers.add(k, v)
        body = incoming.body or None
        t0 = time.monotonic()
        response = self.original(
            self.pool,
            head.method,
            head.target,  # (as the caller's call wrote it: absolute for a proxy's pool)
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            preload_content=False,
            release_conn=False,
            timeout=self.timeout,
        )
        recording = self.cassette.record(request, t0)
        recording.apply_faults(asynchronous=False, always=True)
        httplib = response._original_response
        status, hs = int(httplib.status), tuple((str(k), str(v)) for k, v in httplib.msg.items())
        recording.head(
            status,
            reason=str(httplib.reason or ""),
            headers=hs,
            http_version="HTTP/1.0" if httplib.version == 10 else "HTTP/1.1",
        )
        reader = ResponseReader.body_only(recording, head.method, status, hs)
        recording.reads = watch_file(httplib.fp)
        live = recording.recording
        assert live is not None
        live.thread = threading.Thread(
            target=_pump, args=(reader, httplib.fp, response), name="ssevcr-recorder", daemon=True
        )
        live.thread.start()
        return live


def _pump(reader: ResponseReader, fp: Any, response: Any) -> None:
    """The recorder: the raw response read to its end (then its connection is closed)."""
    from ._intercept import error_text

    reads = reader.recording.reads
    recording = reader.recording.recording
    assert recording is not None
    try:
        if fp is None:  # (http.client saw no body to read)
            reader.eof()
        while not reader.done and not recording.done:  # (saved meanwhile: ended there)
            data = fp.read1(65536)
            if not data:
                reader.eof()
                break
            if reads is not None:
                reads.take(len(data))
            reader.feed(data)
    except Exception as e:
        reader.lost(error_text(e))
    finally:
        if reads is not None:
            reads.stop()
        response.close()  # (read behind http.client's back: never reused)
        response.release_conn()


def _request_of(pool: Any, method: str, url: str, body: Any, headers: Any) -> Request:
    """The cassette's request for one ``urlopen``: the absolute URL, the headers it was given
    (urllib3 adds its own on the wire), the body as urllib3 sends it (a str in UTF-8)."""
    if not url.startswith(("http://", "https://")):
        scheme, host, port = str(pool.scheme), str(pool.host), pool.port
        if ":" in host:
            host = f"[{host}]"
        if port is not None and port != _DEFAULT_PORTS.get(scheme):
            host = f"{host}:{port}"
        url = f"{scheme}://{host}{url if url.startswith('/') else '/' + url}"
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif not isinstance(body, bytes | bytearray | memoryview):
        body = b""  # a generator or a file: streamed out, not kept
    items = (pool.headers if headers is None else headers).items()
    return Request(method, url, tuple((str(k), str(v)) for k, v in items), bytes(body))


class _Tee:
    """The response's raw reader, passed through; every piece read goes to the recording."""

    def __init__(self, inner: Any, reader: ResponseReader) -> None:
        self._inner = inner
        self._reader = reader

    def _seen(self, data: bytes) -> bytes:
        reads = self._reader.recording.reads
        if data:
            if reads is not None:
                reads.take(len(data))
            self._reader.feed(data)
        else:
            self._reader.eof()
        if self._reader.done and reads is not None:
            reads.stop()
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
        recording = self._reader.recording
        recording.finish(Outcome.CLIENT_DISCONNECTED)
        if recording.reads is not None:
            recording.reads.stop()
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
