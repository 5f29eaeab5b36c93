"""In-process replay and recording for aiohttp, and for what is built on it: the openai and
anthropic SDKs' ``DefaultAioHttpClient`` (httpx-aiohttp, which calls ``ClientSession.request``),
litellm's aiohttp transport (the same), any ``ClientSession``.

The seam: :meth:`aiohttp.BaseConnector.connect`, the documented coroutine every session calls
for each request's connection, patched on the class while cassettes are open (so sessions made
before the cassette, and every connector that does not override ``connect``: TCP, Unix, custom).
Nothing private of aiohttp is edited. A middleware (``ClientSession(middlewares=...)``) would
reach only sessions we create, and ``ClientSession._request`` (vcrpy's patch) is private and skips
aiohttp's own response parsing, which is the part worth keeping.

Replay: ``connect`` answers with an :class:`aiohttp.Connection` whose protocol is aiohttp's own
``ResponseHandler`` on an in-memory transport. aiohttp writes its request there (read by
:class:`ssevcr._http1.RequestReader`); the cassette's player answers it, and the transport hands
the handler the response as the replay server would send it (:class:`ssevcr._wire.Answer`:
chunked, one HTTP chunk per recorded chunk, each on its absolute deadline from the request). So
aiohttp's own parser, decompression, flow control (the transport stops while aiohttp pauses it)
and errors apply: ``ClientPayloadError`` for a body cut short (``end=abort``, a reset),
``ServerDisconnectedError`` for a connection closed before the head, ``SocketTimeoutError`` when
a stall outlasts ``ClientTimeout(sock_read=...)``; ``content.iter_any()`` yields the recorded
chunks as they come due. The handler is marked ``force_close``: no replayed connection is pooled.
A miss raises :class:`~ssevcr._errors.NoMatchError` from the request. The play's journal counts
what was handed to aiohttp's parser (which buffers what the application has not read yet, up to
its flow-control limit); a connection closed before the end is ``cancel``.

Recording (record modes that reach the network): the same transport relays to a real connection
from the original ``connect`` (TLS, proxies, limits as the session configured them) through
:meth:`asyncio.Transport.set_protocol`; each piece the upstream sends goes to aiohttp as it
arrives and, de-framed by :class:`ssevcr._wire.ResponseReader`, to the recording with its
arrival time (the clock is read in ``data_received``, before any parsing:
:class:`ssevcr._reads.Reads`). The relayed connection is closed at the end, never pooled; its
own handler is told when it is lost (a connector closing waits for that).

Without faults the client is shown the response as the upstream sends it. With faults (a fault
test's recording run) the relayed connection reads the upstream whole and on time whatever the
client does (flow control is not passed on), and aiohttp is handed the live replay of that
recording instead (:class:`ssevcr._recording.Batches` over :mod:`ssevcr._live`: each part as it
becomes certain, framed by one :class:`ssevcr._wire.Answer` continued part after part), so its
parser raises on the recording run what it raises on replay. Until the head the upstream's bytes
are kept, and given to aiohttp if no head comes (its own error). The relayed connection closes
when the upstream ended: a connector's close of it (``ClientSession.close()``) is held until then,
``DRAIN_TIMEOUT`` at most (then the recorder is cancelled and what came is kept). A request
with ``Upgrade:`` or ``Expect:`` is relayed as it comes, and warns if a replay would give it
faults (``UnappliedFaultWarning``).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _http1 as http1
from . import _import_hook
from ._cassette import Outcome, Request
from ._errors import CassetteError, ConfigError, NoMatchError, SsevcrError
from ._follower import Finish, Wait
from ._reads import Reads
from ._recording import DRAIN_TIMEOUT, Batches, _hold
from ._schedule import Abort, Close, Hang
from ._wire import Answer, ResponseReader, to_request

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ._intercept import ActiveCassette, AdapterRecording
    from ._journal import Journal
    from ._recording import Recording, _Held

__all__ = ["install", "uninstall"]

_patches = _import_hook.Patches(
    "aiohttp", lambda aiohttp: [(aiohttp.BaseConnector, "connect", _connect_patch)]
)
install = _patches.install
uninstall = _patches.uninstall


_UNAPPLIED = (
    "an aiohttp request with Upgrade: or Expect: reaches the client as the upstream answers it "
    "(other aiohttp requests show faults on the recording run)"
)


def _connect_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def connect(self: Any, req: Any, traces: Any, timeout: Any) -> Any:
        from ._intercept import active

        cassette = active()
        if cassette is None or cassette.passes(req.url.host or "", req.url.port):
            return await original(self, req, traces, timeout)
        return _replay_connection(self, req, traces, timeout, cassette, original)

    return connect


def _replay_connection(
    connector: Any,
    req: Any,
    traces: Any,
    timeout: Any,
    cassette: ActiveCassette,
    original: Callable[..., Any],
) -> Any:
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.connector import Connection

    loop = asyncio.get_running_loop()
    protocol = ResponseHandler(loop)
    relay = functools.partial(original, connector, req, traces, timeout)
    transport = _Transport(loop, protocol, cassette, req.url, relay)
    protocol.connection_made(transport)
    protocol.force_close()  # never back to the pool
    return Connection(connector, req.connection_key, protocol, loop)


class _Transport(asyncio.Transport):
    """The client's end of one in-memory connection: it reads the request aiohttp writes, then
    feeds the answer (a replay, or a relayed real response) to the protocol."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: Any,
        cassette: ActiveCassette,
        url: Any,
        relay: Callable[[], Any],
    ) -> None:
        host, port = url.host or "", url.port
        super().__init__({"peername": (host, port), "sockname": ("127.0.0.1", 0)})
        self._loop = loop
        self._protocol = protocol
        self._cassette = cassette
        self._scheme = url.scheme
        self._relay_connect = relay
        self._reader = http1.RequestReader(authority=f"{host}:{port}" if port else host)
        self._sent: list[bytes] = []  # the request's bytes, to relay if it goes to the network
        self._closing = False
        self._lost_called = False
        self._paused = False
        self._resumed: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._real: Any = None  # the relayed connection's transport
        self._real_connection: Any = None
        self._recording: ResponseReader | None = None
        self._journal: Journal | None = None  # the replayed play's: what aiohttp was handed
        self._request_head: http1.Head | None = None
        self._faulted = False  # recorded with faults: the recorder reads, whatever the client does
        self._live: Recording | None = None  # ... and its head came: the client follows it
        self._upstream: asyncio.Future[None] | None = None  # done when the upstream ended
        self._held: _Held | None = None  # the relayed connection's close, held till then
        self._give_up: asyncio.TimerHandle | None = None  # a held close waits so long at most

    # -- asyncio.Transport ------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        if self._real is not None:
            self._real.write(data)
            return
        data = bytes(data)
        self._sent.append(data)
        if self._task is not None:  # (bytes past the request: relayed if it goes out)
            return
        event = self._reader.feed(data)
        if isinstance(event, http1.Request):
            self._start(event)
        elif isinstance(event, http1.ProtocolError):
            self._fail(SsevcrError(f"ssevcr: cannot read aiohttp's request: {event.message}"))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._shut(abort=False)

    def abort(self) -> None:
        self._shut(abort=True)

    def pause_reading(self) -> None:
        self._paused = True
        if self._real is not None and not self._faulted:
            self._real.pause_reading()

    def resume_reading(self) -> None:
        self._paused = False
        if self._real is not None and not self._faulted:
            self._real.resume_reading()
        resumed, self._resumed = self._resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def get_write_buffer_size(self) -> int:
        return self._real.get_write_buffer_size() if self._real is not None else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._real is not None:
            self._real.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    # -- answering --------------------------------------------------------------------------

    def _start(self, incoming: http1.Request) -> None:
        t0 = time.monotonic()
        request = to_request(incoming, self._scheme)
        self._request_head = incoming.head
        try:
            play = self._cassette.answer(request)
            answer = None if play is None else Answer(play.schedule, incoming.head)
        except NoMatchError as e:
            self._fail(e)
            return
        except http1.BadHead as e:
            self._fail(self._bad_head(request, e))
            return
        if answer is not None:
            assert play is not None
            self._journal = play.journal
            if self._journal is not None:
                self._journal.begin(t0, time.time())
            self._task = self._loop.create_task(self._replay(answer, t0))
        else:
            self._task = self._loop.create_task(self._relay(request, incoming.head.method))

    def _fail(self, error: BaseException) -> None:
        if not self._closing:
            self._protocol.set_exception(error)

    def _bad_head(self, request: Request, error: http1.BadHead) -> CassetteError:
        return CassetteError(
            str(self._cassette.path),
            f"cannot replay {request.method} {request.url}: the recorded response head is not "
            f"valid HTTP/1.1 ({error})",
        )

    async def _replay(
        self,
        answer: Answer,
        t0: float,
        more: Callable[[Answer], Awaitable[Answer]] | None = None,
    ) -> None:
        """Hand ``answer`` to aiohttp on its deadlines from ``t0``; an answer in parts goes on
        with ``more(previous)`` after each part that is not the last."""
        from ._timer import sleep_until

        protocol = self._protocol
        journal = self._journal
        while not self._closing:
            data, then = answer.next(time.monotonic() - t0)
            if data:
                if journal is not None:  # (first: aiohttp may close the connection in the call)
                    now = time.monotonic()
                    journal.head(now)
                    journal.sent(now, answer.body_sent)
                protocol.data_received(data)
            while self._paused and not self._closing:
                self._resumed = self._loop.create_future()
                await self._resumed
            if self._closing:
                return
            if type(then) is Wait:
                assert isinstance(then, Wait)
                await sleep_until(t0 + then.until)
            elif then is not None:
                assert isinstance(then, Finish)
                if not answer.last:
                    assert more is not None
                    answer = await more(answer)
                    continue
                end = then.end
                if journal is not None and type(end) is not Hang:
                    journal.done(time.monotonic())
                if type(end) is Close or type(end) is Hang:
                    return  # the client closes (or times out); the connection stays open till then
                # as from a socket, the end comes in a later turn of the loop than the bytes
                # before it: the reader they woke takes them first (aiohttp raises a payload
                # error at once, dropping what it still buffers)
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                if self._closing:
                    return
                if type(end) is Abort:
                    protocol.eof_received()
                    self._lost(None)
                else:
                    self._lost(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))
                return

    async def _relay(self, request: Request, method: str) -> None:
        try:
            connection = await self._relay_connect()
        except BaseException as e:  # aiohttp's own connection errors, for the request to raise
            self._fail(e)
            if not isinstance(e, Exception):
                raise
            return
        real = connection.transport
        if self._closing or real is None:
            connection.close()
            return
        recording = self._cassette.record(request, time.monotonic())  # from the request sent
        if request.header("upgrade") is not None or request.header("expect") is not None:
            # (a WebSocket, or a body sent after an interim answer: the client reads them itself)
            recording.warn_unapplied(request.method, _UNAPPLIED)
        else:
            self._faulted = recording.apply_faults(asynchronous=True)
        recording.reads = Reads(time.monotonic())
        self._recording = ResponseReader(recording, method)
        self._real_connection = connection
        relayed = _Relayed(self, self._recording, recording, real.get_protocol(), self._faulted)
        real.set_protocol(relayed)
        self._real = real
        real.write(b"".join(self._sent))
        if self._paused and not self._faulted:
            real.pause_reading()

    # -- a recording with faults: the client follows its live replay -------------------------

    def _go_live(self, recording: Recording) -> None:
        """The head of a faulted recording came: the upstream is read to its end by the relayed
        connection whatever the client does (a connector's close of it waits for that,
        ``DRAIN_TIMEOUT`` at most), and the client is shown the replay of what it records."""
        loop = self._loop
        self._live = recording
        done = self._upstream = loop.create_future()
        recording.task = task = loop.create_task(self._record(done))
        handler = self._real_connection.protocol
        self._held = held = None if handler is None else _hold(handler, sync=True)
        if held is not None:
            asked = handler.close

            def close() -> None:  # the connector's: noted, and given up on after a while
                asked()
                if self._give_up is None:
                    self._give_up = loop.call_later(DRAIN_TIMEOUT, task.cancel)

            handler.__dict__["close"] = close  # (taken away with the hold)
        self._task = loop.create_task(self._follow(recording))

    async def _record(self, done: asyncio.Future[None]) -> None:
        """The recorder's task (what a cassette's save waits for): until the upstream ended;
        then the relayed connection closes."""
        try:
            await done
        except BaseException:  # cancelled: the loop is going away, or a close waited too long
            assert self._recording is not None
            self._recording.recording.finish(
                Outcome.CLIENT_DISCONNECTED, "the recorder was cancelled"
            )
            raise
        finally:
            self._close_real()

    def _upstream_ended(self) -> None:
        done = self._upstream
        if done is not None and not done.done():
            done.set_result(None)

    def _close_real(self) -> None:
        give_up, self._give_up = self._give_up, None
        if give_up is not None:
            give_up.cancel()
        held, self._held = self._held, None
        if held is not None:
            held.release()  # (closes it if the connector asked)
        self._real.close()
        self._real_connection.close()

    async def _follow(self, recording: Recording) -> None:
        """The client's answer: the live replay's parts as each becomes certain (aiohttp's own
        ``sock_read`` timeout applies while it waits), on the recording's clock."""
        batches = Batches()
        head = self._request_head
        assert head is not None

        async def part(after: Answer | None) -> Answer:
            first = after is None
            schedule = await recording.until(lambda known: batches.next(known, head=first))
            return Answer(schedule, head, after=after, last=batches.ended)

        try:
            await self._replay(await part(None), recording.capture.t0, part)
        except http1.BadHead as e:
            self._fail(self._bad_head(recording.capture.request, e))
        except ConfigError as e:  # (two faults on one event: its replays refuse them too)
            self._fail(e)

    def _shut(self, *, abort: bool) -> None:
        if self._closing:
            return
        self._closing = True
        if self._journal is not None:  # (no-op once the answer was complete)
            self._journal.left(time.monotonic(), "cancel")
        live = self._live is not None  # (then the recorder owns the relayed connection)
        if self._recording is not None and not live:
            self._recording.recording.finish(Outcome.CLIENT_DISCONNECTED)
        task = self._task
        if task is not None and not task.done() and task is not _current_task():
            task.cancel()
        resumed = self._resumed
        if resumed is not None and not resumed.done():
            resumed.cancel()
        if self._real_connection is not None and not live:
            (self._real.abort if abort else self._real.close)()
            self._real_connection.close()
        else:
            self._loop.call_soon(self._lost, None)

    def _lost(self, error: BaseException | None) -> None:
        """The connection ended (after close, or as the answer ends: EOF, reset)."""
        self._closing = True
        if not self._lost_called:
            self._lost_called = True
            self._protocol.connection_lost(error)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


class _Relayed(asyncio.Protocol):
    """The protocol of a real connection whose bytes go to the client's transport: each piece to
    aiohttp as it arrives, and to the recording. The connection's own handler (``replaced``) is
    still told when it is lost: a connector closing with the connection acquired waits for it
    (``ClientSession.close()`` would wait forever).

    ``faulted``: the pieces go to the recording only (the client follows its live replay, from
    its head on); until the head, they are kept, and given to aiohttp if no head comes (a
    connection closed, a head that is not HTTP: aiohttp's own error)."""

    def __init__(
        self,
        transport: _Transport,
        reader: ResponseReader,
        recording: AdapterRecording,
        replaced: asyncio.BaseProtocol,
        faulted: bool = False,
    ):
        self.transport = transport
        self.reader = reader
        self.recording = recording
        self.replaced = replaced
        self.before_head: list[bytes] | None = [] if faulted else None  # (64 KiB at most: h11's)

    @property
    def passing(self) -> bool:
        """Whether the client is given the upstream's bytes (no faults, or no head came)."""
        return self.before_head is None and self.transport._live is None

    def _headless(self) -> None:
        """Faulted, before the head: once the response ended without one, the client is given
        what came, and what follows."""
        if self.before_head is not None and self.reader.done:
            kept, self.before_head = self.before_head, None
            for data in kept:
                self.transport._protocol.data_received(data)

    def data_received(self, data: bytes) -> None:
        reads = self.recording.reads
        if reads is not None:
            reads.read(len(data))  # (the clock before any parsing: when the bytes arrived)
        self.reader.feed(data)
        kept = self.before_head
        if kept is not None:
            recording = self.recording.recording
            if recording is None:
                kept.append(data)
                self._headless()
                return
            self.before_head = None
            self.transport._go_live(recording)
        live = self.transport._live  # (past the head: the client follows it, if anything)
        if live is None:
            self.transport._protocol.data_received(data)
        elif self.reader.done or live.done:  # (saved meanwhile: it ended there)
            self.transport._upstream_ended()

    def eof_received(self) -> bool | None:
        self.reader.eof()
        self._headless()
        if self.passing:
            return self.transport._protocol.eof_received()  # type: ignore[no-any-return]
        self.transport._upstream_ended()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        from ._intercept import error_text

        if getattr(self.replaced, "transport", True) is None:  # aiohttp closed it: the client left
            self.recording.finish(Outcome.CLIENT_DISCONNECTED)
        if exc is not None:
            self.reader.lost(error_text(exc))
        else:
            self.reader.eof()
        self._headless()
        if self.passing:
            self.transport._lost(exc)
        else:
            self.transport._upstream_ended()
        self.replaced.connection_lost(exc)

    def pause_writing(self) -> None:
        self.transport._protocol.pause_writing()

    def resume_writing(self) -> None:
        self.transport._protocol.resume_writing()
