"""The capture of one exchange being recorded: the request, the response head, the chunks as they
arrive, and how it ended. Pure: the adapter that sees the bytes (the mitmproxy addon, the
in-process transport) passes every time in, as seconds from the moment the request was sent.

    cap = Capture(request, max_body=64 << 20)
    cap.head(0.412, 200, reason="OK", headers=(("content-type", "text/event-stream"),))
    cap.chunk(0.413, b"data: ...\\n\\n")            # as each chunk arrives, still content-encoded
    cap.finish(1.532, Outcome.COMPLETE)           # the first end wins: complete, upstream error,
                                                  # or client gone
    interaction = cap.interaction(redaction)      # redacted, once the head and the end are known

Guarantees:

- The end is set once: of several ends (the client leaving while the upstream fails, a save
  while the stream is open), the first one reported wins; later chunks are not kept.
- Memory is bounded: past ``max_body`` bytes nothing more is kept; the interaction then ends as
  ``upstream_error`` saying that the body was larger than the limit and what was kept, so a
  replay never passes the shortened body off as a whole one.
- A client that leaves after the provider's last event (``data: [DONE]``, ``message_stop``, ...)
  at an event boundary has read the whole stream: the SDKs stop there without reading the
  body's final bytes (the terminating chunk). That is recorded as ``complete``.
- Times are clamped so that the response is valid: ``0 <= headers_at <= every chunk <= end``,
  chunks non-decreasing.

A WebSocket conversation (after its 101) is a :class:`Conversation`: every message with its
direction, opcode and payload as the application sent it, at seconds from the handshake; at most
``max_body`` bytes of messages are kept (past it the rest is not recorded and the response says
so). :func:`ws_close` is how a close is kept (a code a peer can send, or none). Both recorders
use them: the mitmproxy addon and the in-process one of the ``websockets`` library.

It does no I/O and reads no clock. Its lock only makes the first-end rule hold across threads.
"""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from ._cassette import (
    End,
    Headers,
    Interaction,
    Outcome,
    Request,
    Response,
    WebSocket,
    WsClose,
    WsMessage,
    close_problem,
)

if TYPE_CHECKING:
    from ._redaction import Redaction

__all__ = ["DEFAULT_MAX_BODY", "Capture", "Conversation", "completed_stream", "ws_close"]

DEFAULT_MAX_BODY = 64 << 20
"""Response body bytes kept per recorded exchange, by default (64 MiB)."""


def _time(at: float, floor: float) -> float:
    return at if math.isfinite(at) and at >= floor else floor


class Capture:
    """One exchange in flight. Not a value: it fills up as the bytes arrive (see the module)."""

    __slots__ = (
        "_chunks",
        "_end",
        "_head",
        "_interaction",
        "_kept",
        "_last",
        "_lock",
        "_raw",
        "max_body",
        "meta",
        "overflow",
        "request",
    )

    def __init__(
        self,
        request: Request,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        meta: dict[str, str] | None = None,
    ) -> None:
        self.request = request
        self.max_body = max_body
        self.meta = dict(meta or {})
        """The interaction's meta (the recorder's ``recorded_at``)."""
        self.overflow = 0
        """Body bytes that arrived past ``max_body`` and were not kept."""
        self._head: tuple[float, int, str, Headers, str] | None = None
        self._chunks: list[tuple[float, bytes]] = []
        self._kept = 0
        self._last = 0.0
        self._end: End | None = None
        self._interaction: Interaction | None = None
        self._raw: Interaction | None = None
        self._lock = threading.Lock()

    # -- what the adapter reports -------------------------------------------------------------

    def head(
        self,
        at: float,
        status: int,
        *,
        reason: str = "",
        headers: Headers = (),
        http_version: str = "HTTP/1.1",
    ) -> None:
        """The response head arrived (once; a second head is ignored)."""
        if self._head is None:
            at = _time(at, 0.0)
            self._head = (at, status, reason, tuple(headers), http_version)
            self._last = at

    def chunk(self, at: float, data: bytes) -> None:
        """Body bytes arrived. Empty ones, and any after the end, are ignored."""
        if not data or self._end is not None:
            return
        room = self.max_body - self._kept
        if len(data) > room:
            self.overflow += len(data) - max(room, 0)
            if room <= 0:
                return
            data = data[:room]
        at = self._last = _time(at, self._last)
        self._chunks.append((at, bytes(data)))
        self._kept += len(data)

    def finish(self, at: float, outcome: Outcome, error: str | None = None) -> bool:
        """The exchange ended; True when this was the first end reported (the one kept)."""
        with self._lock:
            if self._end is not None:
                return False
            self._end = End(_time(at, self._last), outcome, error)
            return True

    # -- what the recorder reads --------------------------------------------------------------

    @property
    def headers_at(self) -> float | None:
        """When the head arrived, or None before it did."""
        return None if self._head is None else self._head[0]

    @property
    def end(self) -> End | None:
        """How it ended as reported (before the rules of :meth:`interaction`), or None."""
        return self._end

    @property
    def size(self) -> int:
        """Body bytes kept so far."""
        return self._kept

    def raw(self) -> Interaction:
        """The interaction before redaction (built once; what recording hooks are given). Needs
        the head and the end."""
        if self._raw is None:
            if self._head is None or self._end is None:
                raise RuntimeError("the capture has no response head or no end yet")
            at, status, reason, headers, version = self._head
            response = Response.from_chunks(
                status,
                self._chunks,
                reason=reason,
                http_version=version,
                headers=headers,
                headers_at=at,
                end=self._end,
            )
            end = self._final_end(response)
            if end is not self._end:
                response = replace(response, end=end)
            self._raw = Interaction(self.request, response, self.meta)
        return self._raw

    def interaction(self, redaction: Redaction) -> Interaction:
        """The redacted interaction (built once). Needs the head and the end."""
        if self._interaction is None:
            self._interaction = redaction.interaction(self.raw())
        return self._interaction

    def raw_snapshot(self, at: float) -> Interaction:
        """:meth:`snapshot` before redaction."""
        if self._end is not None:
            return self.raw()
        if self._head is None:
            raise RuntimeError("the capture has no response head yet")
        head_at, status, reason, headers, version = self._head
        chunks = list(self._chunks)
        response = Response.from_chunks(
            status,
            chunks,
            reason=reason,
            http_version=version,
            headers=headers,
            headers_at=head_at,
            end=End(_time(at, self._last), Outcome.CLIENT_DISCONNECTED, "still being recorded"),
        )
        return Interaction(self.request, response, self.meta)

    def snapshot(self, at: float, redaction: Redaction) -> Interaction:
        """The redacted interaction, or before the end what has arrived so far, ended at ``at``
        as ``client_disconnected`` ("still being recorded"); that one is not kept. Needs the
        head."""
        if self._end is not None:
            return self.interaction(redaction)
        return redaction.interaction(self.raw_snapshot(at))

    def _final_end(self, response: Response) -> End:
        end = self._end
        assert end is not None
        if self.overflow:
            from ._content import format_size

            cause = f"; {end.outcome.value}" + (f": {end.error}" if end.error else "")
            return End(
                end.at,
                Outcome.UPSTREAM_ERROR,
                f"body larger than the recording limit of {format_size(self.max_body)}: only "
                f"its first {format_size(self._kept)} are kept, {format_size(self.overflow)} more "
                f"were not recorded{cause}",
            )
        if end.outcome is Outcome.CLIENT_DISCONNECTED and completed_stream(
            response, self.request.url
        ):
            return End(end.at, Outcome.COMPLETE)
        return end


def completed_stream(response: Response, url: str = "") -> bool:
    """Whether an event stream's body (SSE, NDJSON, JSON array) ends at an event boundary right
    after the provider's last event (see :func:`ssevcr._providers.ends_stream`): nothing more
    was coming but the body's framing. Bodies that cannot be decoded (unknown encoding,
    damaged, too large) are not."""
    if not response.body:
        return False
    from ._framing import EVENT_FRAMES, framed
    from ._providers import ends_stream

    found = framed(response, url)
    if found is None or found.parsed.tail:
        return False
    frames = found.parsed.frames
    last = next((f for f in reversed(frames) if isinstance(f, EVENT_FRAMES)), None)
    return last is not None and ends_stream(last, found.framing)


# ---------------------------------------------------------------------------------------------
# a WebSocket conversation


def ws_close(at: float, code: int | None, reason: str, by: str) -> WsClose:
    """A close as a recorder saw it, as it is kept: ``by`` ``client``/``server`` (which side
    closed first) or ``none`` (no close frame: the connection dropped, which 1006 also says); a
    close frame without a code (1005), or with one no peer may send, keeps no code."""
    if by not in ("client", "server") or code is None or code == 1006:
        return WsClose(at, None, "", "none")
    if code == 1005 or close_problem(code, reason) is not None:
        code, reason = None, ""
    return WsClose(at, code, reason, by)


class Conversation:
    """The messages of one WebSocket conversation being recorded (after its 101), each at
    seconds from the handshake; at most ``max_body`` bytes of them are kept."""

    __slots__ = ("kept", "max_body", "messages", "overflow")

    def __init__(self, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.max_body = max_body
        self.messages: list[WsMessage] = []
        self.kept = 0
        self.overflow = 0
        """Message bytes past ``max_body``, not kept."""

    def message(self, at: float, from_client: bool, data: bytes, binary: bool) -> None:
        if self.kept + len(data) > self.max_body:
            self.overflow += len(data)
            return
        last = self.messages[-1].at if self.messages else 0.0
        self.messages.append(WsMessage(_time(at, last), from_client, bytes(data), binary))
        self.kept += len(data)

    def interaction(self, handshake: Interaction, close: WsClose | None) -> Interaction:
        """The handshake's interaction (the request and the 101, not redacted) with this
        conversation and ``close`` (None: still open when the recording stopped)."""
        last = self.messages[-1].at if self.messages else 0.0
        if close is not None and not (math.isfinite(close.at) and close.at >= last):
            close = WsClose(last, close.code, close.reason, close.by)
        response = handshake.response
        if self.overflow:
            from ._content import format_size

            response = replace(
                response,
                end=End(
                    response.end.at,
                    Outcome.UPSTREAM_ERROR,
                    f"conversation larger than the recording limit of "
                    f"{format_size(self.max_body)}: {format_size(self.overflow)} of "
                    "messages were not recorded",
                ),
            )
        return Interaction(
            handshake.request,
            response,
            handshake.meta,
            websocket=WebSocket(tuple(self.messages), close),
        )
