"""The ``ssevcr replay --proxy`` addon for mitmproxy: forward-proxy clients get the replay.

Every request that reaches the proxy (plain HTTP or intercepted HTTPS) is redirected to the replay
server given by ``ssevcr_replay_url``, with the URL the client asked for in
``x-ssevcr-forwarded-url`` (so matching sees the original scheme and host), and every response is
streamed back as it comes (``flow.response.stream = True``): timing and faults are the replay
server's. Run it with ``upstream_cert=false`` and ``connection_strategy=lazy`` so mitmproxy never
contacts the real host: it works with no network at all.

A WebSocket upgrade is passed on the same way; once the replay server has answered 101, the
connection is relayed as raw TCP (mitmproxy's own WebSocket layer is turned off for it), so the
client gets the replay server's frames byte for byte: fragmented messages (``rechunk``), close
codes and reasons, and a connection dropped without a close frame (``close:...,code=1006``,
``truncate:...,end=reset``), which mitmproxy's WebSocket layer would have turned into a clean
close.

Nothing is ever forwarded anywhere else: a connection mitmproxy would open to any address but the
replay server's (bytes after CONNECT that are neither HTTP nor TLS, which mitmproxy passes through
as raw TCP; UDP; a flow an addon sent elsewhere) is refused before it opens, and reported on
stdout as ``SSEVCR-REFUSED {json}``.

Runs inside mitmdump's interpreter (possibly another environment): the standard library and
ssevcr's core only, mitmproxy only through ``ctx`` inside hooks (mitmdump loads it through
``scripts/replay_proxy.py``). It must not buffer bodies or change bytes.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from .announce import Announce, emit
from .protocol import FORWARDED_URL, REFUSED, REPLAY_URL

__all__ = ["ReplayRedirect", "addons"]

logger = logging.getLogger("ssevcr")


def _address(addr: Any) -> str:
    if not addr:
        return "?"
    host, port = str(addr[0]), addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ReplayRedirect:
    """Send every flow to the replay server; stream every response back unbuffered; refuse every
    connection to anywhere else."""

    def __init__(self) -> None:
        self.target: tuple[str, int] | None = None
        self._raw: set[object] = set()  # client connections that went raw TCP
        self._upgraded: set[object] = set()  # ... after a 101 from the replay server

    def load(self, loader: Any) -> None:
        loader.add_option(
            REPLAY_URL, str, "", "Replay server URL (http://HOST:PORT) that receives every flow."
        )

    def configure(self, updated: set[str]) -> None:
        from mitmproxy import ctx

        if REPLAY_URL in updated:
            url = urlsplit(getattr(ctx.options, REPLAY_URL))
            self.target = (url.hostname, url.port or 80) if url.hostname else None

    def request(self, flow: Any) -> None:
        if self.target is None:
            return
        flow.request.headers[FORWARDED_URL] = flow.request.url
        flow.request.scheme = "http"
        flow.request.host, flow.request.port = self.target

    def responseheaders(self, flow: Any) -> None:
        flow.response.stream = True

    def response(self, flow: Any) -> None:
        """A 101 from the replay server: relay what follows as raw TCP (the replay's frames as
        they are), not through mitmproxy's WebSocket layer (which reframes messages and closes
        cleanly where the replay dropped the connection)."""
        if flow.response.status_code == 101 and getattr(flow, "websocket", None) is not None:
            flow.websocket = None
            self._upgraded.add(getattr(flow.client_conn, "id", None))

    def server_connect(self, data: Any) -> None:
        """The one door out: only the replay server's address opens."""
        server = data.server
        address = tuple(server.address or ())
        if self.target is not None and address[:2] == self.target:
            return
        client_id = getattr(data.client, "id", None)
        what = "raw TCP (neither HTTP nor TLS)" if client_id in self._raw else "a connection"
        self._raw.discard(client_id)
        target, peer = _address(address), _address(getattr(data.client, "peername", None))
        server.error = f"ssevcr replay --proxy forwards nothing: refused {what} to {target}"
        logger.warning("ssevcr: %s (from %s)", server.error, peer)
        emit(
            REFUSED,
            {"what": what, "peer": peer, "target": target, "reason": "not the replay server"},
        )

    def tcp_start(self, flow: Any) -> None:
        """Raw TCP after CONNECT (the client spoke neither HTTP nor TLS): its server connection
        is refused above; noted here to say so (not a WebSocket relayed after its 101)."""
        client_id = getattr(flow.client_conn, "id", None)
        if client_id not in self._upgraded:
            self._raw.add(client_id)

    def client_disconnected(self, client: Any) -> None:
        self._raw.discard(getattr(client, "id", None))
        self._upgraded.discard(getattr(client, "id", None))


addons = [Announce(), ReplayRedirect()]
