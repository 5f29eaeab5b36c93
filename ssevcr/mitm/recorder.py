"""The recording addon for mitmproxy: every exchange through the proxy becomes an interaction.

Runs inside mitmdump's interpreter, which may be another environment than ssevcr's (mitmproxy
11 cannot share one with httpx2 on Python 3.11), so it imports only the standard library,
msgpack and ssevcr's core, and reaches mitmproxy only through the flows it is handed and
``mitmproxy.ctx`` inside hooks. mitmdump loads it through ``scripts/record.py`` (see
:mod:`ssevcr.mitm.scripts`); ``ssevcr record`` launches exactly that.

How it records (the capture itself is :class:`ssevcr._capture.Capture`'s):

- ``request`` (this addon should be the first script): a copy of the request as the client sent
  it (headers as pairs, raw body) and ``t0``, the moment mitmproxy has handed it to the upstream
  connection (the loop's next turn after the hook: mitmproxy writes it once its hooks return; a
  connection still opening counts, as it would for the client). Every time is
  seconds from t0, the origin the replay server uses ("from when the request arrived"), so the
  proxy's own work before it sends is not counted as upstream time.
- ``responseheaders``: the head, stamped when mitmproxy read it (its ``timestamp_start``, moved
  onto the monotonic clock); sets ``flow.response.stream`` to a callable for *every* response,
  so nothing is buffered. The callable stamps each chunk as mitmproxy reads it and returns it
  unchanged; chunks are the raw, still content-encoded body bytes. Bytes that came in the same
  read as the head (mitmproxy holds them while its hooks run) get the head's time.
- ``response``: the exchange is complete. ``error``: it ended early — ``client_disconnected``
  (the body holds the bytes forwarded before the disconnect was noticed) or ``upstream_error``
  (mitmproxy's error text and the partial body). An error before any response header leaves
  nothing to record and is reported (``no_response``, with the error: "certificate verify
  failed", "connection refused", ...).
- WebSocket (the ``response`` hook sees the 101): the handshake is recorded as the request and
  the 101 response; ``websocket_message`` stamps each message (direction, text or binary, the
  payload as the application sent it: fragments joined, compression undone) with its time from
  the handshake (when the 101 was read); ``websocket_end`` adds the close (code, reason, which
  side closed; a connection dropped without a close frame is ``by: none``) and saves it. At
  most ``ssevcr_max_body`` bytes of messages are kept per conversation: past it the rest is not
  recorded and the response says so (``upstream_error``).
- ``done`` (SIGTERM, Ctrl-C): every stream still open is saved as ``client_disconnected``, with
  what arrived, before mitmdump exits.
- At most ``ssevcr_max_body`` bytes of each response body are kept (64 MiB by default).
- Recording hooks (``ssevcr_hook_request`` / ``ssevcr_hook_response``: ``MODULE:FUNC``,
  imported from the current folder, see :func:`load_hook`) get each finished exchange as the
  marker's ``before_record_request`` / ``before_record_response`` do (:mod:`ssevcr._hooks`):
  they may edit it or drop it (reported, not saved, not a loss); redaction runs after them. A
  hook that fails costs that exchange (reported as not saved), not the recording.
- Each finished exchange is built, hooked, redacted and appended by one writer thread through the
  store's ``Appender`` (file lock, load, append, atomic rename; the load is skipped while the
  file is still the one this writer saved last), so a SIGKILL loses at most the exchanges still
  in flight and the file always loads. The hooks never wait for the disk.

With ``ssevcr_report`` it prints one ``SSEVCR-RECORDED {json}`` line per exchange (saved or not,
and why), which :mod:`ssevcr.mitm.driver` reads. It must not buffer bodies, change bytes, or
import mitmproxy at module level.
"""

from __future__ import annotations

import fnmatch
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

try:
    from .. import _store
except ModuleNotFoundError as e:  # pragma: no cover - a mitmdump loaded by hand, without msgpack
    if e.name != "msgpack":
        raise
    raise ImportError(
        "ssevcr's recording addon needs msgpack in mitmdump's Python environment (mitmproxy "
        "12.3 and later no longer install it): pip install msgpack there, or run ssevcr record, "
        "which lends its own"
    ) from None
from .._capture import DEFAULT_MAX_BODY, Capture, Conversation, ws_close
from .._cassette import Headers, Interaction, Outcome, Request, Response, WsClose
from .._errors import SsevcrError
from .._expiry import RECORDED_AT, stamp
from .._framing import framed
from .._hooks import Hooks
from .._redaction import Redaction
from . import protocol
from .announce import Announce, emit

__all__ = ["Recorder", "addons", "events_in", "exchange_summary", "load_hook"]

logger = logging.getLogger("ssevcr")

STOPPED = "recording stopped while the stream was open"
"""The error text of a stream still open when the recorder shut down."""


# ---------------------------------------------------------------------------------------------
# summaries (also what the CLI's progress lines show)


def events_in(response: Response, url: str = "") -> int | None:
    """How many events (SSE events, NDJSON lines, JSON-array elements) a recorded response holds
    (decoding gzip/deflate), or None when it is no event stream or its body cannot be decoded
    (unknown encoding, damaged, too large)."""
    found = framed(response, url)
    return None if found is None else len(found.events)


def exchange_summary(interaction: Interaction) -> dict[str, Any]:
    req, resp = interaction.request, interaction.response
    ws = interaction.websocket
    return {
        "messages": None if ws is None else len(ws.messages),
        "method": req.method,
        "url": req.url,
        "path": req.path,
        "status": resp.status,
        "outcome": resp.end.outcome.value,
        "error": resp.end.error,
        "events": events_in(resp, req.url),
        "chunks": len(resp.chunk_sizes),
        "bytes": len(resp.body),
        "content_type": resp.content_type,
        "duration": round(
            resp.headers_at + ws.close.at if ws is not None and ws.close else resp.end.at, 6
        ),
    }


# ---------------------------------------------------------------------------------------------
# the writer thread


class _Writer:
    """Appends finished interactions to the cassette, in completion order, from one thread."""

    def __init__(
        self, path: str, *, overwrite: bool, on_saved: Callable[[Interaction, str | None], None]
    ):
        self.path = path
        self.overwrite = overwrite
        self.on_saved = on_saved
        self._queue: queue.SimpleQueue[Callable[[], Interaction | None] | None] = (
            queue.SimpleQueue()
        )
        self._closed = False
        self._appender = _store.Appender(path)
        self._thread = threading.Thread(target=self._run, name="ssevcr-writer", daemon=True)
        self._thread.start()

    def submit(self, make: Callable[[], Interaction | None]) -> None:
        """Queue an exchange; ``make`` builds its interaction on the writer thread (None: not
        to be saved), so the event loop never joins bodies, runs hooks or redacts."""
        if not self._closed:
            self._queue.put(make)

    def close(self, timeout: float | None = 30.0) -> None:
        """Save what is queued, then stop."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[Interaction] = []
            item = self._queue.get()
            while True:
                if item is None:
                    stop = True
                else:
                    try:
                        made = item()
                        if made is not None:
                            batch.append(made)
                    except Exception:  # a bug must cost one exchange, not the recorder
                        logger.exception("ssevcr: could not build a recorded exchange")
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._save(batch)

    def _save(self, batch: list[Interaction]) -> None:
        fresh = self.overwrite
        error: str | None = None
        try:
            # the first save of an --overwrite run replaces the file, damaged or not (replacing
            # it is what the user asked for)
            self._appender.append(batch, replace=fresh)
            self.overwrite = False  # only the first save that succeeds replaces the cassette
        except SsevcrError as e:
            error = str(e)
        for interaction in batch:
            try:
                self.on_saved(interaction, error)
            except Exception:  # a broken stdout must not stop the saving
                logger.exception("ssevcr: reporting a recorded exchange failed")


# ---------------------------------------------------------------------------------------------
# recording hooks named on the command line


def load_hook(spec: str, option: str) -> Callable[[Any], Any]:
    """The callable ``MODULE:FUNC`` names (``FUNC`` may be dotted: ``module:Class.method``),
    the module found in the current folder first, then where imports look; raises ConfigError naming
    ``option`` when the spec, the import or the callable is wrong."""
    import importlib.machinery
    import importlib.util
    import os
    import sys

    from .._errors import ConfigError

    module, _, name = spec.strip().partition(":")
    if not module or not name or any(not part.isidentifier() for part in name.split(".")):
        raise ConfigError(
            f"{option} {spec!r}: expected MODULE:FUNC (a module importable from the current "
            "folder, and a function in it)"
        )
    try:
        top = module.split(".")[0]
        if top not in sys.modules:  # from the current folder first (the import path is left alone)
            found_spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
            if found_spec is not None and found_spec.loader is not None:
                loaded = importlib.util.module_from_spec(found_spec)
                sys.modules[top] = loaded
                try:
                    found_spec.loader.exec_module(loaded)
                except BaseException:
                    del sys.modules[top]
                    raise
        found: Any = importlib.import_module(module)
    except BaseException as e:  # (its own errors, SystemExit included, are the user's)
        if isinstance(e, KeyboardInterrupt):
            raise
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise ConfigError(f"{option} {spec!r}: cannot import {module!r} ({text})") from None
    for part in name.split("."):
        found = getattr(found, part, None)
    if not callable(found):
        raise ConfigError(f"{option} {spec!r}: {module!r} has no callable {name!r}")
    return found  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# the recorder


class _Flow:
    """One flow being recorded: its capture and its time origin (a plain class: mitmproxy's
    script loader does not register modules, which dataclasses need)."""

    __slots__ = ("capture", "clock", "end_at", "t0")

    def __init__(self, t0: float, capture: Capture, clock: Callable[[], float]) -> None:
        self.t0 = t0
        self.capture = capture
        self.clock = clock
        self.end_at: float | None = None  # when the body's end was read (the stream's last call)

    def sent(self) -> None:
        """Called once the request hook's step is over: mitmproxy has written the request to
        the upstream connection by then (or started opening one, whose connect counts)."""
        if self.capture.headers_at is None:
            self.t0 = self.clock()


def _after_this_step(callback: Callable[[], None], turns: int = 1) -> bool:
    """Run ``callback`` once the event loop has turned ``turns`` times (after the hook and what
    mitmproxy does synchronously once its hooks return); False outside a running loop."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    if turns <= 1:
        loop.call_soon(callback)
    else:
        loop.call_soon(_after_this_step, callback, turns - 1)
    return True


def _pairs(fields: Iterable[tuple[bytes, bytes]]) -> Headers:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in fields)


def _head(cap: Capture, resp: Any, at: float) -> None:
    cap.head(
        at,
        resp.status_code,
        reason=resp.reason or "",
        headers=_pairs(resp.headers.fields),
        http_version=resp.http_version or "HTTP/1.1",
    )


def _client_gone(flow: Any) -> bool:
    """Did the error come from the client side (it went away) rather than from upstream?"""
    msg = str(getattr(flow.error, "msg", "") or "")
    if msg.startswith("Client disconnected") or "reset by client" in msg:
        return True
    state = getattr(flow.client_conn, "state", None)
    try:
        return state is not None and not (int(state.value) & 1)  # ConnectionState.CAN_READ lost
    except (AttributeError, TypeError, ValueError):
        return False


class _Socket:
    """One WebSocket conversation being recorded (after its 101)."""

    __slots__ = ("capture", "conversation", "origin")

    def __init__(self, capture: Capture, origin: float) -> None:
        self.capture = capture
        self.origin = origin  # the handshake (when the 101 was read), on the monotonic clock
        self.conversation = Conversation(capture.max_body)

    def raw(self, close: WsClose | None) -> Interaction:
        return self.conversation.interaction(self.capture.raw(), close)


def _ws_close(flow: Any, at: float) -> WsClose:
    """How mitmproxy saw the conversation end (a close frame without a code is 1005 to it, no
    close frame at all 1006)."""
    ws = flow.websocket
    code = getattr(ws, "close_code", None)
    reason = str(getattr(ws, "close_reason", "") or "")
    by_client = getattr(ws, "closed_by_client", None)
    by = "none" if by_client is None else "client" if by_client else "server"
    return ws_close(at, code if isinstance(code, int) else None, reason, by)


class Recorder:
    """Records every exchange (or those matching the host/path filters) into one cassette."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.wall = wall
        self.redaction = Redaction()
        self.hooks = Hooks()
        self.hosts: tuple[str, ...] = ()
        self.paths: tuple[str, ...] = ()
        self.report = False
        self.max_body = DEFAULT_MAX_BODY
        self._writer: _Writer | None = None
        self._flows: dict[str, _Flow] = {}
        self._sockets: dict[str, _Socket] = {}

    # -- options ---------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        add = loader.add_option
        add(protocol.CASSETTE, str, "", "Cassette file to record into (msgpack).")
        add(
            protocol.OVERWRITE,
            bool,
            False,
            "Replace the cassette's interactions instead of appending to them.",
        )
        add(
            protocol.REDACT_HEADERS,
            Sequence[str],
            [],
            "More header names to redact (besides the defaults).",
        )
        add(protocol.REDACT_QUERY, Sequence[str], [], "More URL query keys to redact.")
        add(
            protocol.REDACT_BODY,
            Sequence[str],
            [],
            "Dotted JSON paths of the request body to redact (auth.token).",
        )
        add(
            protocol.HOSTS,
            Sequence[str],
            [],
            "Record only hosts matching these glob patterns (host or host:port).",
        )
        add(
            protocol.PATHS, Sequence[str], [], "Record only URL paths matching these glob patterns."
        )
        add(
            protocol.MAX_BODY,
            int,
            DEFAULT_MAX_BODY,
            "Response body bytes kept per exchange; past it the rest is not recorded.",
        )
        add(
            protocol.HOOK_REQUEST,
            str,
            "",
            "MODULE:FUNC of a before_record_request hook (importable from the current folder).",
        )
        add(
            protocol.HOOK_RESPONSE,
            str,
            "",
            "MODULE:FUNC of a before_record_response hook (importable from the current folder).",
        )
        add(
            protocol.REPORT,
            bool,
            False,
            "Print one machine-readable SSEVCR-RECORDED line per exchange.",
        )

    def configure(self, updated: set[str]) -> None:
        from mitmproxy import ctx, exceptions

        opts = ctx.options
        try:
            self.redaction = Redaction().extended(
                headers=getattr(opts, protocol.REDACT_HEADERS),
                query_keys=getattr(opts, protocol.REDACT_QUERY),
                body_paths=getattr(opts, protocol.REDACT_BODY),
            )
        except SsevcrError as e:
            raise exceptions.OptionsError(str(e)) from None
        if protocol.HOOK_REQUEST in updated or protocol.HOOK_RESPONSE in updated:
            try:
                self.hooks = Hooks(
                    *(
                        load_hook(spec, f"--{name.removeprefix('ssevcr_').replace('_', '-')}")
                        if (spec := getattr(opts, name))
                        else None
                        for name in (protocol.HOOK_REQUEST, protocol.HOOK_RESPONSE)
                    )
                )
            except SsevcrError as e:
                raise exceptions.OptionsError(str(e)) from None
        self.hosts = tuple(h.lower() for h in getattr(opts, protocol.HOSTS))
        self.paths = tuple(getattr(opts, protocol.PATHS))
        self.report = bool(getattr(opts, protocol.REPORT))
        max_body = int(getattr(opts, protocol.MAX_BODY))
        if max_body < 0:
            raise exceptions.OptionsError(f"{protocol.MAX_BODY} must be >= 0")
        self.max_body = max_body
        if protocol.CASSETTE in updated or protocol.OVERWRITE in updated:
            self._open(getattr(opts, protocol.CASSETTE), bool(getattr(opts, protocol.OVERWRITE)))

    def _open(self, path: str, overwrite: bool) -> None:
        from mitmproxy import exceptions

        if self._writer is not None and (not path or path != self._writer.path):
            self._writer.close()
            self._writer = None
        if path and not overwrite and _store.present(path):
            try:
                _store.load(path, check=True)  # refuse to start appending to a damaged cassette
            except SsevcrError as e:
                raise exceptions.OptionsError(
                    f"{e} (use {protocol.OVERWRITE} to replace it)"
                ) from None
        if path and self._writer is None:
            self._writer = _Writer(path, overwrite=overwrite, on_saved=self._saved)
        elif self._writer is not None:
            self._writer.overwrite = overwrite
        if not path:
            logger.warning(
                "ssevcr: no cassette set (--set %s=FILE); nothing is recorded", protocol.CASSETTE
            )

    def done(self) -> None:
        """mitmdump stops: save every stream still open with what arrived, then drain."""
        for flow_id in list(self._flows):
            entry = self._flows.pop(flow_id)
            cap = entry.capture
            if cap.headers_at is None:
                self._report_unrecorded(cap.request, STOPPED + " (before the response head)")
                continue
            cap.finish(self.clock() - entry.t0, Outcome.CLIENT_DISCONNECTED, STOPPED)
            self._submit(cap)
        for flow_id in list(self._sockets):  # still open: no close
            self._submit_socket(self._sockets.pop(flow_id), None)
        if self._writer is not None:
            self._writer.close()

    # -- flow hooks ------------------------------------------------------------------------

    def wanted(self, host: str, port: int, path: str) -> bool:
        if self.hosts:
            host = host.lower()
            hostport = f"{host}:{port}"
            if not any(
                fnmatch.fnmatchcase(host, p) or fnmatch.fnmatchcase(hostport, p) for p in self.hosts
            ):
                return False
        return not self.paths or any(fnmatch.fnmatchcase(path, p) for p in self.paths)

    def request(self, flow: Any) -> None:
        t0 = self.clock()
        if self._writer is None:
            return
        req = flow.request
        if not self.wanted(req.host, req.port, req.path.split("?", 1)[0]):
            return
        request = Request(
            method=req.method,
            url=req.url,
            headers=_pairs(req.headers.fields),
            body=bytes(req.raw_content or b""),
        )
        meta = {RECORDED_AT: stamp(time.time())}
        entry = _Flow(t0, Capture(request, max_body=self.max_body, meta=meta), self.clock)
        self._flows[flow.id] = entry
        _after_this_step(entry.sent, turns=2)  # see responseheaders

    def responseheaders(self, flow: Any) -> None:
        entry = self._flows.get(flow.id)
        if entry is None:
            if not flow.response.stream:
                flow.response.stream = True  # never buffer, even what is not recorded
            return
        clock, t0, cap = self.clock, entry.t0, entry.capture
        resp = flow.response
        now = clock()
        head_at = self._read_at(resp, now, t0)
        _head(cap, resp, head_at - t0)
        # Body bytes that came in the same read as the head wait in mitmproxy while its hooks
        # run; they are handed over before the loop has turned twice (mitmproxy 11 hands them
        # over as the hooks return; 12.3 runs hooks as eager tasks that resume once the read is
        # processed), so until then they are stamped with the head's arrival, not with the
        # moment the hooks let them through. Bytes read later are stamped as they come.
        waiting = [True]
        if not _after_this_step(waiting.clear, turns=2):
            waiting.clear()
        downstream = resp.stream if callable(resp.stream) else None
        chunk = cap.chunk

        def stream(data: bytes) -> bytes | Iterable[bytes]:
            if data:
                chunk((head_at if waiting else clock()) - t0, data)
            else:
                entry.end_at = clock() - t0
            return data if downstream is None else downstream(data)

        resp.stream = stream

    def _read_at(self, resp: Any, now: float, t0: float) -> float:
        """When mitmproxy read the response head, on our clock: its own stamp
        (``timestamp_start``, wall clock, taken as it parsed the head) moved onto the monotonic
        clock, kept within [t0, now] (a wall clock that jumped is not believed)."""
        read = getattr(resp, "timestamp_start", None)
        if not isinstance(read, int | float):
            return now
        at = now - (self.wall() - read)
        return at if t0 <= at <= now else now

    def response(self, flow: Any) -> None:
        entry = self._flows.pop(flow.id, None)
        if entry is None or self._writer is None:
            return
        cap = entry.capture
        now = self.clock() - entry.t0
        if flow.response.status_code == 101:
            if cap.headers_at is None:
                _head(cap, flow.response, now)
            if getattr(flow, "websocket", None) is None:
                logger.info(
                    "ssevcr: not recording a protocol upgrade that is no WebSocket (%s %s)",
                    cap.request.method,
                    self.redaction.redact_url(cap.request.url),  # never a live secret in a log
                )
                return
            assert cap.headers_at is not None
            cap.finish(cap.headers_at, Outcome.COMPLETE)
            self._sockets[flow.id] = _Socket(cap, entry.t0 + cap.headers_at)
            return
        if cap.headers_at is None:  # a response made by an addon, never streamed
            _head(cap, flow.response, now)
        if not cap.size and flow.response.raw_content:  # another addon turned streaming off
            cap.chunk(now, bytes(flow.response.raw_content))
        cap.finish(entry.end_at if entry.end_at is not None else now, Outcome.COMPLETE)
        self._submit(cap)

    def error(self, flow: Any) -> None:
        entry = self._flows.pop(flow.id, None)
        if entry is None or self._writer is None:
            return
        cap = entry.capture
        message = str(getattr(flow.error, "msg", "") or "error")
        if flow.response is None or cap.headers_at is None:
            self._report_unrecorded(cap.request, message)
            return
        outcome = Outcome.CLIENT_DISCONNECTED if _client_gone(flow) else Outcome.UPSTREAM_ERROR
        cap.finish(self.clock() - entry.t0, outcome, message)
        self._submit(cap)

    def websocket_message(self, flow: Any) -> None:
        sock = self._sockets.get(flow.id)
        if sock is None:
            return
        m = flow.websocket.messages[-1]
        binary = int(getattr(m.type, "value", m.type)) == 2  # Opcode.BINARY (else TEXT)
        sock.conversation.message(
            self.clock() - sock.origin, bool(m.from_client), bytes(m.content), binary
        )

    def websocket_end(self, flow: Any) -> None:
        sock = self._sockets.pop(flow.id, None)
        if sock is not None:
            self._submit_socket(sock, _ws_close(flow, self.clock() - sock.origin))

    # -- reporting -------------------------------------------------------------------------

    def _submit_socket(self, sock: _Socket, close: WsClose | None) -> None:
        self._submit_raw(lambda: sock.raw(close))

    def _submit(self, cap: Capture) -> None:
        self._submit_raw(cap.raw)

    def _submit_raw(self, raw: Callable[[], Interaction]) -> None:
        redaction, hooks = self.redaction, self.hooks
        assert self._writer is not None

        def make() -> Interaction | None:
            exchange = raw()
            try:
                kept = hooks.recorded(exchange, redaction)
            except SsevcrError as e:  # a hook failed: this exchange is lost, and said so
                self._saved(redaction.interaction(exchange), str(e))
                return None
            if kept is None:
                self._dropped(redaction.interaction(exchange))
            return kept

        self._writer.submit(make)

    def _dropped(self, interaction: Interaction) -> None:
        """A hook dropped the exchange: not saved, as asked (the line says so)."""
        summary = exchange_summary(interaction)
        logger.info("ssevcr: dropped by a recording hook: %s %s", summary["method"], summary["url"])
        if self.report:
            emit(protocol.RECORDED, {**summary, "saved": False, "dropped": True})

    def _report_unrecorded(self, request: Request, message: str) -> None:
        redacted = self.redaction.request(request)  # never a live secret in a log
        logger.warning(
            "ssevcr: not recorded (no response): %s %s: %s", redacted.method, redacted.url, message
        )
        if self.report:
            emit(
                protocol.RECORDED,
                {
                    "method": redacted.method,
                    "url": redacted.url,
                    "path": redacted.path,
                    "status": None,
                    "outcome": "no_response",
                    "error": message,
                    "saved": False,
                },
            )

    def _saved(self, interaction: Interaction, error: str | None) -> None:
        summary = exchange_summary(interaction)
        if error is not None:
            logger.error(
                "ssevcr: could not save %s %s: %s", summary["method"], summary["url"], error
            )
        else:
            events, messages = summary["events"], summary["messages"]
            logger.info(
                "ssevcr: recorded %s %s %s %s %.3fs %s",
                summary["method"],
                summary["path"],
                summary["status"],
                f"{messages} WebSocket messages"
                if messages is not None
                else f"{events} events"
                if events is not None
                else f"{summary['bytes']} bytes",
                summary["duration"],
                summary["outcome"],
            )
        if self.report:
            emit(protocol.RECORDED, {**summary, "saved": error is None, "save_error": error})


addons = [Announce(), Recorder()]
