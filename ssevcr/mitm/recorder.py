"""The recording addon for mitmproxy: every exchange through the proxy becomes an interaction.

Runs inside mitmdump's interpreter, which may be another environment than ssevcr's (mitmproxy
11 cannot share one with httpx2 on Python 3.11), so it imports only the standard library,
msgpack and ssevcr's pure core, and reaches mitmproxy only through the flows it is handed and
``mitmproxy.ctx`` inside hooks. Used two ways::

    ssevcr record cassette.msgpack ...                     # launches mitmdump with this file
    mitmdump -s /path/to/ssevcr/mitm/recorder.py --set ssevcr_cassette=out.msgpack

How it records:

- ``request`` (this addon should be the first script): a copy of the request as the client sent
  it (headers as pairs, raw body) and ``t0 = time.monotonic()``. All times are seconds from t0,
  the moment the request has fully arrived and is handed on upstream — the same origin the replay
  server uses ("from when the request arrived"), so upstream connect/TLS time is part of
  ``headers_at`` just as the client experienced it.
- ``responseheaders``: ``headers_at``; sets ``flow.response.stream`` to a callable for *every*
  response, so nothing is buffered. The callable stamps each chunk as mitmproxy reads it and
  returns it unchanged; chunks are the raw, still content-encoded body bytes.
- ``response``: the exchange is complete. ``error``: it ended early — ``client_disconnected``
  (the body holds the bytes forwarded to the client before its disconnect was noticed) or
  ``upstream_error`` (mitmproxy's error text and the partial body). An error before any response
  header leaves nothing to record and is only reported.
- Each finished exchange is built, redacted and appended by one writer thread the way
  ``_store.update`` does it (file lock, load, append, atomic rename; the load is skipped while the
  file is still the one this writer saved last), so a SIGKILL loses at most the exchanges still in
  flight and the file always loads. The hooks never wait for the disk. Each save rewrites the
  whole file: ~2 ms per 100 interactions of a few kB, ~40 ms per 1,000 (packing holds the GIL).

It also prints one ready line ``SSEVCR-READY {json}`` on stdout once mitmproxy listens (the bound
address, so ``--listen-port 0`` works) and, with ``ssevcr_report``, one ``SSEVCR-RECORDED {json}``
line per saved exchange; :mod:`ssevcr.mitm.driver` reads them. It must not buffer bodies, change bytes,
or import mitmproxy at module level (the launcher imports this module for its constants).
"""

from __future__ import annotations

import os
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))

# mitmproxy's script loader puts this file's directory first on sys.path (and leaves it there);
# drop it so that the package's modules never shadow top-level ones.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    del sys.path[0]


def _ensure_ssevcr_importable() -> None:
    """Loaded as a script into a mitmdump whose environment lacks ssevcr: expose this package
    through a temporary directory holding only a symlink to it (never its site-packages)."""
    try:
        import ssevcr  # noqa: F401
    except ImportError:
        shim = tempfile.mkdtemp(prefix="ssevcr-addon-")
        os.symlink(os.path.dirname(_HERE), os.path.join(shim, "ssevcr"))
        sys.path.insert(0, shim)


_ensure_ssevcr_importable()

import fnmatch  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import queue  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

from ssevcr import _store  # noqa: E402
from ssevcr._cassette import Cassette, End, Headers, Interaction, Outcome, Request, Response  # noqa: E402
from ssevcr._content import decode_body  # noqa: E402
from ssevcr._errors import SsevcrError  # noqa: E402
from ssevcr._redaction import Redaction  # noqa: E402
from ssevcr._sse import parse  # noqa: E402

__all__ = ["READY", "RECORDED", "Announce", "Recorder", "addons", "events_in", "exchange_summary"]

READY = "SSEVCR-READY"
"""Prefix of the ready line: ``SSEVCR-READY {"pid", "listen": [[host, port]], "mode", "ca_cert", ...}``."""
RECORDED = "SSEVCR-RECORDED"
"""Prefix of a progress line: ``SSEVCR-RECORDED {"method", "url", "status", "outcome", "events", ...}``."""

logger = logging.getLogger("ssevcr")
_stdout_lock = threading.Lock()


def emit(prefix: str, info: dict[str, Any]) -> None:
    """Write one machine-readable line on stdout (thread-safe)."""
    line = f"{prefix} {json.dumps(info, separators=(',', ':'))}\n"
    with _stdout_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# ready line


class Announce:
    """Prints the ready line when mitmproxy listens; with ``ssevcr_exit_on_eof`` it also shuts
    mitmproxy down when its stdin closes, so a launched mitmdump never outlives its launcher
    (even one killed with SIGKILL). Reusable by any addon file that :mod:`ssevcr.mitm.driver` launches."""

    def load(self, loader: Any) -> None:
        loader.add_option(
            "ssevcr_exit_on_eof",
            bool,
            False,
            "Shut down when stdin reaches end of file (set by ssevcr's launcher).",
        )

    def running(self) -> None:
        from mitmproxy import ctx

        listen: list[list[Any]] = []
        ps = ctx.master.addons.get("proxyserver")
        if ps is not None:
            if callable(getattr(ps, "listen_addrs", None)):  # mitmproxy 11 and 12
                addrs = list(ps.listen_addrs())
            else:  # pragma: no cover - a future layout: ask each server instance
                addrs = [a for server in getattr(ps, "servers", ()) for a in server.listen_addrs]
            for addr in addrs:
                listen.append([str(addr[0]), int(addr[1])])
        confdir = os.path.expanduser(ctx.options.confdir)
        try:
            from mitmproxy.version import VERSION as mitmproxy_version
        except ImportError:  # pragma: no cover
            mitmproxy_version = "?"
        emit(
            READY,
            {
                "pid": os.getpid(),
                "listen": listen,
                "mode": list(ctx.options.mode),
                "confdir": confdir,
                "ca_cert": os.path.join(confdir, "mitmproxy-ca-cert.pem"),
                "mitmproxy": mitmproxy_version,
                "python": sys.version.split()[0],
            },
        )
        if ctx.options.ssevcr_exit_on_eof:
            master = ctx.master

            def watch() -> None:
                # os.read, not sys.stdin: a daemon thread blocked in a buffered read would abort
                # the interpreter at exit.
                try:
                    fd = sys.stdin.fileno()
                    while os.read(fd, 65536):
                        pass
                except (OSError, ValueError):
                    pass
                master.shutdown()

            threading.Thread(target=watch, name="ssevcr-stdin-watch", daemon=True).start()


# ---------------------------------------------------------------------------------------------
# summaries (also used by the CLI's progress lines)


def events_in(response: Response) -> int | None:
    """How many SSE events a recorded response holds (decoding gzip/deflate), or None when it is
    not an event stream or its body cannot be decoded (unknown encoding, damaged, too large)."""
    if not response.is_event_stream:
        return None
    decoded = decode_body(response.body, response.content_encoding)
    if not decoded.ok:
        return None
    return len(parse(decoded.body).events)


def exchange_summary(interaction: Interaction) -> dict[str, Any]:
    req, resp = interaction.request, interaction.response
    return {
        "method": req.method,
        "url": req.url,
        "path": req.path,
        "status": resp.status,
        "outcome": resp.end.outcome.value,
        "error": resp.end.error,
        "events": events_in(resp),
        "chunks": len(resp.chunk_sizes),
        "bytes": len(resp.body),
        "content_type": resp.content_type,
        "duration": round(resp.end.at, 6),
    }


# ---------------------------------------------------------------------------------------------
# the writer thread


def _identity(path: str) -> tuple[int, int, int] | None:
    """Which file is at ``path`` (an atomic save by anyone replaces the inode)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class _Writer:
    """Appends finished interactions to the cassette, in completion order, from one thread."""

    def __init__(
        self, path: str, *, overwrite: bool, on_saved: Callable[[Interaction, str | None], None]
    ):
        self.path = path
        self.overwrite = overwrite
        self.on_saved = on_saved
        self._queue: queue.SimpleQueue[Callable[[], Interaction] | None] = queue.SimpleQueue()
        self._closed = False
        self._cache: tuple[Cassette, tuple[int, int, int] | None] | None = None
        self._thread = threading.Thread(target=self._run, name="ssevcr-writer", daemon=True)
        self._thread.start()

    def submit(self, make: Callable[[], Interaction]) -> None:
        """Queue an exchange; ``make`` builds its interaction on the writer thread, so the
        event loop never joins bodies or redacts."""
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
                        batch.append(item())
                    except Exception:  # a bug must cost one exchange, not the recorder
                        logger.exception("ssevcr: could not build a recorded exchange")
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._save(batch)

    def _cached(self) -> Cassette | None:
        """The cassette as we last saved it, if the file is still the one we wrote."""
        if self._cache is None:
            return None
        cassette, identity = self._cache
        return cassette if identity is not None and identity == _identity(self.path) else None

    def _save(self, batch: list[Interaction]) -> None:
        fresh = self.overwrite
        self.overwrite = False  # only the first save replaces the old cassette

        def change(current: Cassette) -> Cassette:
            base = Cassette(meta=current.meta) if fresh else current
            return Cassette(interactions=(*base.interactions, *batch), meta=base.meta)

        error: str | None = None
        try:
            # _store.update's contract (lock, load, change, atomic save), without re-reading a
            # file nobody else wrote since our last save: loading is most of the cost.
            with _store.locked(self.path):
                current = self._cached()
                if current is None:
                    current = _store.load(self.path) if os.path.exists(self.path) else Cassette()
                new = change(current)
                _store.save(new, self.path)
                self._cache = (new, _identity(self.path))
        except SsevcrError as e:
            self._cache = None
            error = str(e)
        except OSError as e:  # the lock file cannot be created, ...
            self._cache = None
            error = f"cassette {self.path!r}: cannot be written: {e.strerror or e}"
        for interaction in batch:
            try:
                self.on_saved(interaction, error)
            except Exception:  # a broken stdout must not stop the saving
                logger.exception("ssevcr: reporting a recorded exchange failed")


# ---------------------------------------------------------------------------------------------
# the recorder


class _Capture:
    """Mutable state of one exchange in flight (not a value: it fills up as bytes arrive).
    A plain class: mitmproxy's script loader does not register the module, which dataclasses need."""

    __slots__ = ("chunks", "end_at", "headers_at", "request", "t0")

    def __init__(self, t0: float, request: Request) -> None:
        self.t0 = t0
        self.request = request
        self.headers_at: float | None = None
        self.chunks: list[tuple[float, bytes]] = []
        self.end_at: float | None = None


def _pairs(fields: Iterable[tuple[bytes, bytes]]) -> Headers:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in fields)


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


class Recorder:
    """Records every exchange (or those matching the host/path filters) into one cassette."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.cassette: str = ""
        self.redaction = Redaction()
        self.hosts: tuple[str, ...] = ()
        self.paths: tuple[str, ...] = ()
        self.report = False
        self._writer: _Writer | None = None
        self._captures: dict[str, _Capture] = {}

    # -- options ---------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option("ssevcr_cassette", str, "", "Cassette file to record into (msgpack).")
        loader.add_option(
            "ssevcr_overwrite",
            bool,
            False,
            "Replace the cassette's interactions instead of appending to them.",
        )
        loader.add_option(
            "ssevcr_redact_headers",
            Sequence[str],
            [],
            "More header names to redact (besides the defaults).",
        )
        loader.add_option(
            "ssevcr_redact_query", Sequence[str], [], "More URL query keys to redact."
        )
        loader.add_option(
            "ssevcr_redact_body",
            Sequence[str],
            [],
            "Dotted JSON paths of the request body to redact (auth.token).",
        )
        loader.add_option(
            "ssevcr_hosts",
            Sequence[str],
            [],
            "Record only hosts matching these glob patterns (host or host:port).",
        )
        loader.add_option(
            "ssevcr_paths", Sequence[str], [], "Record only URL paths matching these glob patterns."
        )
        loader.add_option(
            "ssevcr_report",
            bool,
            False,
            "Print one machine-readable SSEVCR-RECORDED line per saved exchange.",
        )

    def configure(self, updated: set[str]) -> None:
        from mitmproxy import ctx, exceptions

        opts = ctx.options
        try:
            self.redaction = Redaction().extended(
                headers=opts.ssevcr_redact_headers,
                query_keys=opts.ssevcr_redact_query,
                body_paths=opts.ssevcr_redact_body,
            )
        except SsevcrError as e:
            raise exceptions.OptionsError(str(e)) from None
        self.hosts = tuple(h.lower() for h in opts.ssevcr_hosts)
        self.paths = tuple(opts.ssevcr_paths)
        self.report = bool(opts.ssevcr_report)
        if "ssevcr_cassette" in updated or "ssevcr_overwrite" in updated:
            path = opts.ssevcr_cassette
            if self._writer is not None and (not path or path != self._writer.path):
                self._writer.close()
                self._writer = None
            if path and not opts.ssevcr_overwrite and os.path.exists(path):
                try:
                    _store.load(path)  # refuse to start appending to a damaged cassette
                except SsevcrError as e:
                    raise exceptions.OptionsError(
                        f"{e} (use ssevcr_overwrite to replace it)"
                    ) from None
            if path and self._writer is None:
                self._writer = _Writer(
                    path, overwrite=bool(opts.ssevcr_overwrite), on_saved=self._saved
                )
            elif self._writer is not None:
                self._writer.overwrite = bool(opts.ssevcr_overwrite)
            if not path:
                logger.warning(
                    "ssevcr: no cassette set (--set ssevcr_cassette=FILE); nothing is recorded"
                )

    def done(self) -> None:
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
        self._captures[flow.id] = _Capture(
            t0=t0,
            request=Request(
                method=req.method,
                url=req.url,
                headers=_pairs(req.headers.fields),
                body=bytes(req.raw_content or b""),
            ),
        )

    def responseheaders(self, flow: Any) -> None:
        cap = self._captures.get(flow.id)
        if cap is None:
            if not flow.response.stream:
                flow.response.stream = True  # never buffer, even what is not recorded
            return
        clock, t0, chunks = self.clock, cap.t0, cap.chunks
        cap.headers_at = clock() - t0
        downstream = flow.response.stream if callable(flow.response.stream) else None

        def stream(data: bytes) -> bytes | Iterable[bytes]:
            if data:
                chunks.append((clock() - t0, data))
            else:
                cap.end_at = clock() - t0
            return data if downstream is None else downstream(data)

        flow.response.stream = stream

    def response(self, flow: Any) -> None:
        cap = self._captures.pop(flow.id, None)
        if cap is None or self._writer is None:
            return
        now = self.clock() - cap.t0
        if flow.response.status_code == 101:
            logger.info(
                "ssevcr: not recording a protocol upgrade (%s %s)",
                cap.request.method,
                cap.request.url,
            )
            return
        if cap.headers_at is None:  # a response made by an addon, never streamed
            cap.headers_at = now
        if not cap.chunks and flow.response.raw_content:  # another addon turned streaming off
            cap.chunks.append((now, bytes(flow.response.raw_content)))
        self._finish(
            flow, cap, End(cap.end_at if cap.end_at is not None else now, Outcome.COMPLETE)
        )

    def error(self, flow: Any) -> None:
        cap = self._captures.pop(flow.id, None)
        if cap is None or self._writer is None:
            return
        now = self.clock() - cap.t0
        message = str(getattr(flow.error, "msg", "") or "error")
        if flow.response is None or cap.headers_at is None:
            logger.warning(
                "ssevcr: not recorded (no response): %s %s: %s",
                cap.request.method,
                cap.request.url,
                message,
            )
            if self.report:
                emit(
                    RECORDED,
                    {
                        "method": cap.request.method,
                        "url": cap.request.url,
                        "path": cap.request.path,
                        "status": None,
                        "outcome": "no_response",
                        "error": message,
                        "saved": False,
                    },
                )
            return
        outcome = Outcome.CLIENT_DISCONNECTED if _client_gone(flow) else Outcome.UPSTREAM_ERROR
        self._finish(
            flow, cap, End(max(now, cap.chunks[-1][0] if cap.chunks else 0.0), outcome, message)
        )

    # -- saving ----------------------------------------------------------------------------

    def _finish(self, flow: Any, cap: _Capture, end: End) -> None:
        resp = flow.response
        status, reason, version = (
            resp.status_code,
            resp.reason or "",
            resp.http_version or "HTTP/1.1",
        )
        headers, redaction = tuple(resp.headers.fields), self.redaction

        def make() -> Interaction:
            response = Response.from_chunks(
                status,
                cap.chunks,
                reason=reason,
                http_version=version,
                headers=_pairs(headers),
                headers_at=cap.headers_at or 0.0,
                end=end,
            )
            return redaction.interaction(Interaction(request=cap.request, response=response))

        assert self._writer is not None
        self._writer.submit(make)

    def _saved(self, interaction: Interaction, error: str | None) -> None:
        summary = exchange_summary(interaction)
        if error is not None:
            logger.error(
                "ssevcr: could not save %s %s: %s", summary["method"], summary["url"], error
            )
        else:
            events = summary["events"]
            logger.info(
                "ssevcr: recorded %s %s %s %s %.3fs %s",
                summary["method"],
                summary["path"],
                summary["status"],
                f"{events} events" if events is not None else f"{summary['bytes']} bytes",
                summary["duration"],
                summary["outcome"],
            )
        if self.report:
            emit(RECORDED, {**summary, "saved": error is None, "save_error": error})


addons = [Announce(), Recorder()]
