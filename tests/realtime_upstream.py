"""A local WebSocket upstream speaking the shape of OpenAI's Realtime API (the GA event names),
served by the ``websockets`` library on 127.0.0.1 in a thread of its own.

On connect it sends ``session.created``; it answers ``session.update`` with
``session.updated`` and ``response.create`` with ``response.created``, the text deltas of
``WORDS`` ``GAP`` seconds apart, ``response.output_text.done`` and ``response.done``. What it
received and sent (with its clock) is kept per connection in ``conversations``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection, serve

if TYPE_CHECKING:
    from upstream import TLSFiles

WORDS = ["The", " sky", " is", " blue", " because", " of", " Rayleigh", " scattering", "."]
GAP = 0.03
FIRST = 0.02  # from response.create to response.created


def session(**extra: Any) -> dict[str, Any]:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": "sess_ssevcr",
        "model": "gpt-realtime",
        "output_modalities": ["text"],
        **extra,
    }


def response_events() -> list[dict[str, Any]]:
    """What answers ``response.create``, in order."""
    rid, iid = "resp_ssevcr", "item_ssevcr"
    base = {"response_id": rid, "item_id": iid, "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {
            "type": "response.created",
            "event_id": "event_2",
            "response": {"id": rid, "object": "realtime.response", "status": "in_progress"},
        }
    ]
    for n, word in enumerate(WORDS):
        events.append(
            {"type": "response.output_text.delta", "event_id": f"event_d{n}", **base, "delta": word}
        )
    events.append(
        {"type": "response.output_text.done", "event_id": "event_3", **base, "text": "".join(WORDS)}
    )
    events.append(
        {
            "type": "response.done",
            "event_id": "event_4",
            "response": {
                "id": rid,
                "object": "realtime.response",
                "status": "completed",
                "output": [],
                "usage": {"total_tokens": 20, "input_tokens": 10, "output_tokens": 10},
            },
        }
    )
    return events


Handler = Callable[[ServerConnection, Callable[[Any], Awaitable[None]]], Awaitable[None]]


class RealtimeUpstream:
    """``tls``: serve ``wss`` with this certificate (tests/upstream.py's ``make_tls_files``).
    ``handler``: another conversation than the Realtime one, given the connection and a ``send``
    that logs what it sends; ``compression``: the server's (``"deflate"`` or None);
    ``process_request``: the ``websockets`` server's (to answer the handshake otherwise)."""

    def __init__(
        self,
        *,
        tls: TLSFiles | None = None,
        handler: Handler | None = None,
        compression: str | None = None,
        process_request: Any = None,
    ) -> None:
        self.tls = tls
        self.process_request = process_request
        self.handler = handler
        self.compression = compression
        self.conversations: list[list[tuple[float, str, Any]]] = []
        """Per connection: (time, "in"/"out", message) (the Realtime one logs what it gets)."""
        self.handshakes: list[dict[str, str]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    def __enter__(self) -> RealtimeUpstream:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread.is_alive():
            assert self._stop is not None
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = self._loop.create_future()
        context = None
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.cert, self.tls.key)
        async with serve(
            self._handle,
            "127.0.0.1",
            0,
            compression=self.compression,
            ssl=context,
            process_request=self.process_request,
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    async def _handle(self, conn: ServerConnection) -> None:
        log: list[tuple[float, str, Any]] = []
        self.conversations.append(log)
        assert conn.request is not None
        self.handshakes.append({k.lower(): v for k, v in conn.request.headers.raw_items()})
        if self.handler is not None:

            async def logged(message: Any) -> None:
                await conn.send(message)
                log.append((time.monotonic(), "out", message))

            await self.handler(conn, logged)
            return

        async def send(event: dict[str, Any]) -> None:
            text = json.dumps(event)
            await conn.send(text)
            log.append((time.monotonic(), "out", text))

        await send({"type": "session.created", "event_id": "event_1", "session": session()})
        async for message in conn:
            assert isinstance(message, str)
            log.append((time.monotonic(), "in", message))
            kind = json.loads(message).get("type")
            if kind == "session.update":
                await send({"type": "session.updated", "event_id": "event_u", "session": session()})
            elif kind == "response.create":
                await asyncio.sleep(FIRST)
                for n, event in enumerate(response_events()):
                    if n:
                        await asyncio.sleep(GAP)
                    await send(event)
