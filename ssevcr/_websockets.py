"""In-process replay for the ``websockets`` library's asyncio client (what the openai SDK's
Realtime client uses): while a cassette replays, every connection its ``connect`` opens goes to
a replay server of that cassette on 127.0.0.1, whatever the URI's host, scheme, proxy or TLS
settings say. The handshake and every frame are the replay server's (``ssevcr._websocket``:
the conversation, its timing and faults, the near miss), so a WebSocket replays in process
exactly as it does over ``ssevcr replay`` (``new_episodes`` replays it too: a miss is the
replay server's 404); the server shares the cassette's player (plays,
misses, fired faults and journals are the cassette's) and stops when the cassette is exited.

The seam is ``websockets.asyncio.client.connect.open_tcp_connection``, the one method that
opens the client's socket (subclasses, such as the openai SDK's, inherit it); the library is
patched only once the code under test imports it (``ssevcr._import_hook``). What the client
sends is not changed: its Host header and URI name the real service (a miss names it), its
credentials are redacted in the journal as everywhere.

In-process *recording* of a WebSocket is not done: a cassette that records (``all``, ``once``
without a file) refuses the connection with a clean error saying to record through ``ssevcr
record`` (reverse proxy, or ``HTTPS_PROXY`` for a client that honours it, as ``websockets``
and the openai SDK do).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import _import_hook
from ._errors import SsevcrError
from ._secrets import printable

if TYPE_CHECKING:
    from ._intercept import ActiveCassette
    from ._server_thread import ServerThread

__all__ = ["install", "uninstall"]

_servers: dict[int, ServerThread] = {}  # id(ActiveCassette) -> its replay server
_lock = threading.Lock()


def _wrap(original: Any) -> Any:
    @functools.wraps(original)
    async def open_tcp_connection(self: Any) -> Any:
        from ._intercept import active

        current = active()
        if current is None:
            return await original(self)
        if current.mode == "record":
            uri = self.ws_uri  # (its query may hold a key: not shown)
            raise SsevcrError(
                f"ssevcr: cannot record the WebSocket {printable(uri.host + uri.path)} "
                f"in process (cassette {current.path}): record it through `ssevcr record` "
                "(as the client's base URL, or as HTTPS_PROXY), then replay it here"
            )
        server = _server(current)
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: self.factory(self.ws_uri), "127.0.0.1", server.port
        )
        return connection

    return open_tcp_connection


def _targets(_module: ModuleType) -> list[tuple[type, str, Any]]:
    try:
        from websockets.asyncio.client import connect
    except ImportError:  # (websockets before 13: no asyncio client)
        return []
    if "open_tcp_connection" not in connect.__dict__:
        return []
    return [(connect, "open_tcp_connection", _wrap)]


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
