"""In-process recording: the upstream's answer captured with the arrival time of every chunk.

Times are offsets from the moment the request was fully sent (what a replay counts from: the
moment the request arrived), taken from the transport's own trace (httpcore's ``trace``
extension: ``*.send_request_body.complete``, ``*.receive_response_headers.complete``), so
connecting, TLS and sending the request are not counted as the upstream's time.

- Without faults the client reads the real stream; each raw (still content-encoded) chunk is
  stamped when the connection read its bytes (:mod:`ssevcr._reads`: the network stream's reads
  of an HTTP/1.1 connection; an HTTP/2 one's chunks as they come out of the transport), not
  when the consumer pulls it, and the end is whatever happened first: complete,
  an upstream error, or the client leaving.
- With faults (a fault test's recording run) a recorder of its own (a thread for sync clients, a
  task for async ones) reads the upstream stream whole and on time, whatever the client does,
  and the client is shown the replay of that recording as it arrives: :mod:`ssevcr._live` says
  which steps of the replay's schedule are certain, :class:`ssevcr._follower.Follower` when each
  is due. So the client sees the same bytes, pieces, stalls and end on the recording run as on
  every replay. Closing an async client's stream waits for its recorder (it runs on the client's
  event loop); the cassette's save waits for every recorder, ``DRAIN_TIMEOUT`` at most.

This module moves bytes and reads clocks; the schedule is ``_schedule``'s, the matching the
Player's, the routing ``_intercept``'s.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ._capture import Capture
from ._cassette import End, Interaction, Outcome, Request, Response, WsClose
from ._errors import ConfigError
from ._follower import Head
from ._schedule import Close, EndStep, Schedule

if TYPE_CHECKING:
    from ._faults import Fault
    from ._live import Known, LiveSchedule
    from ._player import Play
    from ._reads import Reads
    from ._redaction import Redaction
    from ._transport import _Replay

_T = TypeVar("_T")

__all__ = ["DRAIN_TIMEOUT", "Batches", "Recording", "WsCapture", "record_async", "record_sync"]

DRAIN_TIMEOUT = 300.0
"""Seconds a cassette's save waits for the recorders of faulted streams still reading their
upstream; what has not arrived by then is saved, ended as ``client_disconnected``."""


_UNSET = object()


def _pairs(raw: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw)


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# when the request went out: the transport's trace


class _Trace:
    """Notes when the request was fully sent and the response head received (httpcore's
    ``trace`` extension), then calls the trace the request already had, if any."""

    __slots__ = ("head", "inner", "sent")

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: float | None = None
        self.head: float | None = None

    def note(self, name: str) -> None:
        if name.endswith(".send_request_body.complete"):
            self.sent = time.monotonic()
        elif name.endswith(".receive_response_headers.complete"):
            self.head = time.monotonic()

    def sync(self, name: str, info: dict[str, Any]) -> None:
        self.note(name)
        if self.inner is not None:
            self.inner(name, info)

    async def asynchronous(self, name: str, info: dict[str, Any]) -> None:
        self.note(name)
        if self.inner is not None:
            await self.inner(name, info)


def _traced(request: Any, *, sync: bool) -> _Trace:
    trace = _Trace(request.extensions.get("trace"))
    request.extensions = {
        **request.extensions,
        "trace": trace.sync if sync else trace.asynchronous,
    }
    return trace


# ---------------------------------------------------------------------------------------------
# one exchange being recorded


class _Capture(Capture):
    """A :class:`ssevcr._capture.Capture` on this process's monotonic clock, counted from
    ``t0`` (the request fully sent), with the head it was given."""

    __slots__ = ("response_head", "t0")

    def __init__(self, t0: float, request: Request, head: Response) -> None:
        from ._expiry import RECORDED_AT, stamp

        super().__init__(request, meta={RECORDED_AT: stamp(time.time())})
        self.t0 = t0
        self.response_head = head  # the response as far as its headers
        self.head(
            head.headers_at,
            head.status,
            reason=head.reason,
            headers=head.headers,
            http_version=head.http_version,
        )

    def now(self) -> float:
        return time.monotonic() - self.t0

    def stamp(self, data: bytes, read_at: float | None = None) -> float:
        """A chunk arrived now, or with the network read at ``read_at`` (the monotonic clock,
        :class:`ssevcr._reads.Reads`); its offset."""
        at = (time.monotonic() if read_at is None else read_at) - self.t0
        self.chunk(at, data)
        return at

    def end_now(self, outcome: Outcome, error: str | None = None) -> End:
        """The exchange ends now (unless it ended before); how it ended."""
        self.finish(self.now(), outcome, error)
        assert self.end is not None
        return self.end

    def snapshot_now(self, redaction: Redaction) -> Interaction:
        return self.snapshot(self.now(), redaction)


class WsCapture(_Capture):
    """A WebSocket exchange being recorded: its handshake (the request and the 101, an
    exchange complete at its head) and then its :class:`ssevcr._capture.Conversation`, each
    message at seconds from the handshake. It is done (``end``) once the conversation closed;
    saved while still open, it has no close."""

    __slots__ = ("close", "closed", "conversation", "origin")

    def __init__(self, t0: float, request: Request, head: Response) -> None:
        from ._capture import Conversation

        super().__init__(t0, request, head)
        self.finish(head.headers_at, Outcome.COMPLETE)
        self.origin = t0 + head.headers_at  # the handshake, on the monotonic clock
        self.conversation = Conversation(self.max_body)
        self.close: WsClose | None = None
        self.closed = False

    @property
    def end(self) -> End | None:
        return self._end if self.closed else None

    def message(self, now: float, from_client: bool, data: bytes, binary: bool) -> None:
        """A whole message went by at ``now`` (``time.monotonic()``)."""
        if not self.closed:
            self.conversation.message(now - self.origin, from_client, data, binary)

    def ended(self, close: WsClose | None) -> None:
        """The conversation is over (the first end reported wins)."""
        if not self.closed:
            self.close, self.closed = close, True

    def raw(self) -> Interaction:
        return self.conversation.interaction(super().raw(), self.close)

    def raw_snapshot(self, at: float) -> Interaction:
        return self.raw()  # (the messages so far, no close yet)

    def interaction(self, redaction: Redaction) -> Interaction:
        return redaction.interaction(self.raw())

    def end_now(self, outcome: Outcome, error: str | None = None) -> End:
        self.ended(None)  # still open: saved without a close
        assert self._end is not None
        return self._end


class Recording:
    """One recorded exchange: its capture and, for a faulted one, the live schedule the client
    follows and the recorder reading the upstream."""

    def __init__(self, capture: _Capture, index: int, live: LiveSchedule | None = None) -> None:
        self.capture = capture
        self.index = index  # its place in the cassette it is recorded into
        self.live = live
        self.cond = threading.Condition()  # guards ``live``; notified at each chunk and the end
        self.thread: threading.Thread | None = None
        self.task: asyncio.Task[None] | None = None
        self.changed: asyncio.Event | None = None  # set at each chunk (async recorders)
        self._schedule: Schedule | None = None
        self.saved = False  # written to the cassette file
        self.final: object = _UNSET  # as saved: hooked and redacted, None when a hook dropped it
        self.held: _Held | None = None  # the transport's close, held while the recorder reads

    @property
    def done(self) -> bool:
        return self.capture.end is not None

    # -- the recorder --------------------------------------------------------------------------

    def arrived(self, data: bytes, reads: Reads | None = None) -> None:
        """A chunk arrived (stamped when ``reads`` read it, else now): the live schedule gets
        what the capture kept (nothing past its ``max_body``, nor after its end)."""
        capture = self.capture
        before = capture.size
        at = capture.stamp(data, None if reads is None else reads.at)
        kept = capture.size - before
        assert self.live is not None
        if not kept:
            return
        with self.cond:
            self.live.add(at, bytes(data[:kept]))
            self.cond.notify_all()
        if self.changed is not None:
            self.changed.set()

    def ended(self, outcome: Outcome, error: str | None = None) -> None:
        """The upstream ended (unless it ended before): the live schedule is the replay's, to
        the end the cassette saves (a body past ``max_body`` says so, a stream the client left
        at its last event is complete)."""
        self.capture.end_now(outcome, error)
        end = self.capture.raw().response.end
        assert self.live is not None
        with self.cond:
            self.live.finish(end)
            self.cond.notify_all()
        if self.changed is not None:
            self.changed.set()

    def pump_sync(self, stream: Any, reads: Reads | None = None) -> None:
        try:
            for chunk in stream:
                self.arrived(chunk, reads)
        except Exception as e:
            self.ended(Outcome.UPSTREAM_ERROR, _error_text(e))
        except BaseException:
            self.ended(Outcome.CLIENT_DISCONNECTED)
            raise
        else:
            self.ended(Outcome.COMPLETE)
        finally:
            if reads is not None:
                reads.stop()  # (before the connection can go back to its pool)
            stream.close()
            if self.held is not None:
                self.held.release()

    async def pump_async(self, stream: Any, reads: Reads | None = None) -> None:
        try:
            async for chunk in stream:
                self.arrived(chunk, reads)
        except Exception as e:
            self.ended(Outcome.UPSTREAM_ERROR, _error_text(e))
        except BaseException:  # cancelled: the loop is going away
            self.ended(Outcome.CLIENT_DISCONNECTED, "the recorder was cancelled")
            raise
        else:
            self.ended(Outcome.COMPLETE)
        finally:
            if reads is not None:
                reads.stop()
            await stream.aclose()
            if self.held is not None:
                await self.held.arelease()

    def known(self) -> Known:
        assert self.live is not None
        with self.cond:
            return self.live.known()

    def wait(self, ready: Callable[[Known], _T | None], deadline: float | None = None) -> _T:
        """``ready(known)`` once it is not None, waiting for the recording (a recorder thread's)
        until ``deadline`` (``time.monotonic()``; TimeoutError past it)."""
        with self.cond:
            while (got := ready(self.known())) is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError
                self.cond.wait(left)
        return got

    async def until(self, ready: Callable[[Known], _T | None], deadline: float | None = None) -> _T:
        """``ready(known)`` once it is not None, waiting for the recording (an async recorder's,
        on this loop) until ``deadline`` (``time.monotonic()``; TimeoutError past it)."""
        changed = self.changed
        assert changed is not None
        while True:
            changed.clear()
            got = ready(self.known())
            if got is not None:
                return got
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError
            await asyncio.wait_for(changed.wait(), left)

    # -- waiting for the recorder ------------------------------------------------------------

    def drain(self, timeout: float) -> None:
        """Wait for the recorder to read the upstream to its end (sync callers)."""
        if self.thread is not None:
            self.thread.join(timeout)
            return
        task = self.task
        if task is None or task.done():
            return
        loop = task.get_loop()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None or loop.is_closed():
            return  # it cannot progress while we wait here: saved as it stands
        if not loop.is_running():  # the loop of a test that returned (pytest-asyncio, anyio)
            loop.run_until_complete(asyncio.wait({task}, timeout=timeout))
            return
        waited = asyncio.run_coroutine_threadsafe(asyncio.wait({task}, timeout=timeout), loop)
        try:
            waited.result(timeout + 1)
        except Exception:  # the loop stopped meanwhile
            pass

    async def adrain(self, timeout: float) -> None:
        """Wait for an async recorder of this loop (``async with`` exits, the client's close)."""
        task = self.task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            return
        await asyncio.wait({asyncio.shield(task)}, timeout=timeout)

    # -- what the cassette reports -----------------------------------------------------------

    def play(self, cassette: str, redaction: Redaction) -> Play:
        """The recorded exchange as a play: what the client was shown (the faulted schedule, or
        the recording as it came), of the interaction as saved; while it is still being
        recorded, both as far as they are known."""
        from ._player import Play
        from ._schedule import build

        done = self.done
        interaction = self.capture.snapshot_now(redaction)
        schedule = self._schedule
        if schedule is None:
            if self.live is not None:
                try:
                    known = self.known()
                except ConfigError:
                    known = None
                schedule = None if known is None else (self.live.final or known.schedule)
            if schedule is None:
                schedule = build(interaction.response)
            if done:
                self._schedule = schedule
        request = self.capture.request
        return Play(self.index, cassette, interaction, schedule, request, 0, recorded=True)


# ---------------------------------------------------------------------------------------------
# a client closed while the recorder of its faulted stream still reads through its transport

_HELD = "_ssevcr_held"
_held_lock = threading.Lock()


class _Held:
    """A transport's ``close`` (``aclose``) while recorders read upstream through it: asked,
    it only notes that it was; the last recorder to end closes it. A client closed as soon as
    its faulted stream gave up (openai's SDK closes its pool when the client is garbage
    collected) would otherwise close the connection under the recorder, and the recording would
    be cut short. Installed on the transport instance, and taken away with the last hold."""

    __slots__ = ("asked", "count", "name", "namespace", "previous", "real")

    def __init__(self, namespace: dict[str, Any], name: str, real: Callable[..., Any]) -> None:
        self.namespace = namespace
        self.name = name
        self.previous = namespace.get(name)
        self.real = real
        self.asked = False
        self.count = 0

    def _holding(self) -> bool:
        """Whether a recorder still reads (the close asked now waits for it)."""
        with _held_lock:
            self.asked = self.asked or self.count > 0
            return self.count > 0

    def close(self, *args: Any, **kwargs: Any) -> Any:
        if not self._holding():
            return self.real(*args, **kwargs)
        return None

    async def aclose(self, *args: Any, **kwargs: Any) -> Any:
        if not self._holding():
            return await self.real(*args, **kwargs)
        return None

    def _let_go(self) -> bool:
        """One recorder ended; whether the close that was asked for is due now."""
        with _held_lock:
            self.count -= 1
            if self.count > 0:
                return False
            self.namespace.pop(_HELD, None)
            if self.previous is None:
                self.namespace.pop(self.name, None)
            else:
                self.namespace[self.name] = self.previous
            return self.asked

    def release(self) -> None:
        if self._let_go():
            self.real()

    async def arelease(self) -> None:
        if self._let_go():
            await self.real()


def _hold(transport: Any, *, sync: bool) -> _Held | None:
    """Hold ``transport``'s close until the recorder now starting ends (``release``). None
    when the transport cannot be held (no instance ``__dict__`` or no such method)."""
    name = "close" if sync else "aclose"
    namespace = getattr(transport, "__dict__", None)
    real = getattr(transport, name, None)
    if not isinstance(namespace, dict) or not callable(real):
        return None
    with _held_lock:
        held = namespace.get(_HELD)
        if not isinstance(held, _Held):
            held = namespace[_HELD] = _Held(namespace, name, real)
            namespace[name] = held.close if sync else held.aclose
        held.count += 1
    return held


# ---------------------------------------------------------------------------------------------
# without faults: the client's own stream, each chunk stamped as it passes


class _SyncPassing:
    def __init__(self, inner: Any, capture: _Capture, reads: Reads | None = None):
        self.inner = inner
        self.capture = capture
        self.reads = reads  # the connection's reads: each chunk stamped when it was read

    def __iter__(self) -> Iterator[bytes]:
        reads = self.reads
        try:
            for chunk in self.inner:
                self.capture.stamp(chunk, None if reads is None else reads.at)
                yield chunk
        except Exception as e:
            self.capture.end_now(Outcome.UPSTREAM_ERROR, _error_text(e))
            raise
        except BaseException:  # the consumer stopped reading (GeneratorExit, KeyboardInterrupt)
            self.capture.end_now(Outcome.CLIENT_DISCONNECTED)
            raise
        finally:
            if reads is not None:
                reads.stop()
        self.capture.end_now(Outcome.COMPLETE)

    def close(self) -> None:
        self.capture.end_now(Outcome.CLIENT_DISCONNECTED)
        if self.reads is not None:
            self.reads.stop()  # (before the connection can go back to its pool)
        self.inner.close()


class _AsyncPassing:
    def __init__(self, inner: Any, capture: _Capture, reads: Reads | None = None):
        self.inner = inner
        self.capture = capture
        self.reads = reads

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reads = self.reads
        try:
            async for chunk in self.inner:
                self.capture.stamp(chunk, None if reads is None else reads.at)
                yield chunk
        except Exception as e:
            self.capture.end_now(Outcome.UPSTREAM_ERROR, _error_text(e))
            raise
        except BaseException:  # cancelled, or the consumer stopped reading
            self.capture.end_now(Outcome.CLIENT_DISCONNECTED)
            raise
        finally:
            if reads is not None:
                reads.stop()
        self.capture.end_now(Outcome.COMPLETE)

    async def aclose(self) -> None:
        self.capture.end_now(Outcome.CLIENT_DISCONNECTED)
        if self.reads is not None:
            self.reads.stop()
        await self.inner.aclose()


# ---------------------------------------------------------------------------------------------
# with faults: the client follows the live schedule


class Batches:
    """The client's side of a faulted recording, as schedules to replay one after another: the
    steps that became certain since the last batch (ending ``Close`` at its last step, which
    sends no end), then the end (``ended``). Each has the replay's head (sent with the first)
    and is due on the recording's clock (offsets from its ``t0``)."""

    __slots__ = ("ended", "position")

    def __init__(self) -> None:
        self.position = 0  # steps handed over
        self.ended = False  # the end was handed over

    def next(self, known: Known, *, head: bool = False) -> Schedule | None:
        """The next batch (None: nothing new is certain). ``head``: a batch of no steps will do
        once the head is decided (a client that is shown the head as soon as it is)."""
        steps = known.steps[self.position :]
        if steps:
            self.position = len(known.steps)
            end: EndStep = Close(steps[-1].at)
        elif known.end is not None:
            self.ended, end = True, known.end
        elif head and known.schedule is not None:
            end = Close(0.0)
        else:
            return None
        first = known.schedule
        assert first is not None  # (steps and an end come with the head)
        return Schedule(
            first.status,
            first.reason,
            first.http_version,
            first.headers,
            0.0,
            tuple(steps),
            end,
            content_length=first.content_length,
        )


class _Follow(Batches):
    """The client's side of a faulted recording: the steps that became certain, a batch at a
    time, each batch and then the end replayed by the transport's own :class:`_Replay` (the
    follower on this clock, the request's read timeout, the library's exceptions)."""

    def __init__(self, recording: Recording, request: Any) -> None:
        from ._transport import _read_timeout, module_of

        super().__init__()
        self.recording = recording
        self.request = request
        self.mod = module_of(request)
        self.read_timeout = _read_timeout(request)
        self.closed = False

    def replay(self, known: Known) -> _Replay | None:
        """A replay of what became certain since the last one (None: nothing yet)."""
        from ._transport import _Replay

        schedule = self.next(known)
        if schedule is None:
            return None
        replay = _Replay(
            schedule, self.request, self.mod, time.monotonic, self.recording.capture.t0
        )
        head = replay.next()
        assert isinstance(head, Head)  # (due at once: the head went out with the response)
        return replay

    def deadline(self) -> float | None:
        """When a wait for more gives up (the request's read timeout from now)."""
        return None if self.read_timeout is None else time.monotonic() + self.read_timeout

    def timeout_error(self) -> Exception:
        return self.mod.ReadTimeout("timed out", request=self.request)  # type: ignore[no-any-return]


class _SyncLive(_Follow):
    def __iter__(self) -> Iterator[bytes]:
        while not self.closed and not self.ended:
            replay = self.wait(self.replay)
            while True:
                action = replay.next()
                if type(action) is tuple:
                    for step in action:
                        yield step.data
                elif type(action) is float:
                    time.sleep(action)
                elif action is None:
                    break
                elif isinstance(action, BaseException):
                    raise action

    def wait(self, ready: Callable[[Known], _T | None]) -> _T:
        """``ready(known)`` once it is not None, waiting for the recording within the request's
        read timeout."""
        try:
            return self.recording.wait(ready, self.deadline())
        except TimeoutError:
            raise self.timeout_error() from None

    def close(self) -> None:
        self.closed = True


class _AsyncLive(_Follow):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        from ._timer import sleep

        while not self.closed and not self.ended:
            replay = await self.wait(self.replay)
            while True:
                action = replay.next()
                if type(action) is tuple:
                    for step in action:
                        yield step.data
                elif type(action) is float:
                    await sleep(action)
                elif action is None:
                    break
                elif isinstance(action, BaseException):
                    raise action

    async def wait(self, ready: Callable[[Known], _T | None]) -> _T:
        """``ready(known)`` once it is not None, waiting for the recording within the request's
        read timeout."""
        try:
            return await self.recording.until(ready, self.deadline())
        except TimeoutError:
            raise self.timeout_error() from None

    async def aclose(self) -> None:
        self.closed = True
        await self.recording.adrain(DRAIN_TIMEOUT)  # the rest of the upstream, recorded whole


# ---------------------------------------------------------------------------------------------
# the library's own stream types and responses


_STREAM_TYPES: dict[tuple[str, str], type] = {}


def _stream(mod: Any, ours: type, *args: Any) -> Any:
    """One of our streams that is also the library's own ``SyncByteStream``/``AsyncByteStream``
    (httpx and httpx2 check it)."""
    sync = ours in (_SyncPassing, _SyncLive)
    key = (mod.__name__, ours.__name__)
    cls = _STREAM_TYPES.get(key)
    if cls is None:
        base = mod.SyncByteStream if sync else mod.AsyncByteStream
        cls = _STREAM_TYPES[key] = type(
            f"{ours.__name__.strip('_')}{base.__name__}", (ours, base), {"__module__": __name__}
        )
    return cls(*args)


# ---------------------------------------------------------------------------------------------
# the entry points (called by the interception patches)


def _capture(request: Any, body: bytes, response: Any, trace: _Trace, started: float) -> _Capture:
    from ._transport import to_request

    t0 = trace.sent if trace.sent is not None else started
    head_at = trace.head if trace.head is not None else time.monotonic()
    ext = response.extensions
    head = Response(
        response.status_code,
        reason=bytes(ext.get("reason_phrase", b"")).decode("latin-1"),
        http_version=bytes(ext.get("http_version", b"HTTP/1.1")).decode("ascii", "replace"),
        headers=_pairs(response.headers.raw),
        headers_at=max(0.0, head_at - t0),
    )
    return _Capture(t0, to_request(request, body), head)


def _watch(response: Any, capture: _Capture, *, sync: bool) -> Reads | None:
    """The reads of the response's connection, from when its head was read (bytes that came
    with the head were read then)."""
    from ._reads import watch_stream

    return watch_stream(response, capture.t0 + capture.response_head.headers_at, sync=sync)


def _live(capture: _Capture, faults: Sequence[Fault], seed: str) -> LiveSchedule:
    from ._live import LiveSchedule

    return LiveSchedule(capture.response_head, faults=faults, seed=seed, url=capture.request.url)


def _head(known: Known) -> Schedule | None:
    """The replay's head once it is decided."""
    return known.schedule


def record_sync(
    transport: Any,
    request: Any,
    send: Callable[[Any, Any], Any],
    *,
    body: bytes,
    index: int,
    faults: Sequence[Fault],
    seed: str,
    add: Callable[[Recording], None],
) -> Any:
    """Send ``request`` upstream and answer the client: the real response, recorded as it is
    read, or with ``faults`` the live replay of its recording."""
    from ._transport import client_response, module_of

    trace = _traced(request, sync=True)
    started = time.monotonic()
    response = send(transport, request)
    recording = Recording(_capture(request, body, response, trace, started), index)
    mod = module_of(response)
    if not faults:
        add(recording)
        reads = _watch(response, recording.capture, sync=True)
        response.stream = _stream(mod, _SyncPassing, response.stream, recording.capture, reads)
        return response
    recording.live = _live(recording.capture, faults, seed)
    add(recording)
    recording.held = _hold(transport, sync=True)
    recording.thread = threading.Thread(
        target=recording.pump_sync,
        args=(response.stream, _watch(response, recording.capture, sync=True)),
        name="ssevcr-recorder",
        daemon=True,
    )
    recording.thread.start()
    follow = _stream(mod, _SyncLive, recording, request)
    # the head: a status fault's, or once a content-length body ended
    return client_response(mod, follow.wait(_head), follow)


async def record_async(
    transport: Any,
    request: Any,
    send: Callable[[Any, Any], Any],
    *,
    body: bytes,
    index: int,
    faults: Sequence[Fault],
    seed: str,
    add: Callable[[Recording], None],
) -> Any:
    from ._transport import client_response, module_of

    trace = _traced(request, sync=False)
    started = time.monotonic()
    response = await send(transport, request)
    recording = Recording(_capture(request, body, response, trace, started), index)
    mod = module_of(response)
    if not faults:
        add(recording)
        reads = _watch(response, recording.capture, sync=False)
        response.stream = _stream(mod, _AsyncPassing, response.stream, recording.capture, reads)
        return response
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        await response.aclose()
        raise ConfigError(
            "faults on a recording run need asyncio (record this cassette without faults first)"
        ) from None
    recording.live = _live(recording.capture, faults, seed)
    recording.changed = asyncio.Event()
    add(recording)
    reads = _watch(response, recording.capture, sync=False)
    recording.held = _hold(transport, sync=False)
    recording.task = loop.create_task(recording.pump_async(response.stream, reads))
    follow = _stream(mod, _AsyncLive, recording, request)
    return client_response(mod, await follow.wait(_head), follow)
