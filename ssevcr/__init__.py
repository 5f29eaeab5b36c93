"""ssevcr — a VCR for Server-Sent Events.

Record real SSE streams with the arrival time of every chunk; replay them byte-exact with the
original, scaled or no timing, and break them on purpose. ``import ssevcr`` stays light: it never
imports mitmproxy, httpx or click; the replay machinery is imported on first use.

The public API is what this module exports (``__all__``); every other module is private.
Errors (one tree, see ``SsevcrError``)::

    SsevcrError
     ├── ConfigError        a bad timing or fault spec, option or flag
     ├── CassetteError      a cassette that cannot be read, written or validated
     └── NoMatchError       a request that no recorded interaction matches
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._cassette import Cassette, Chunk, End, Interaction, Outcome, Request, Response
from ._errors import CassetteError, ConfigError, NoMatchError, SsevcrError
from ._sse import Comment, Event, SSEParser
from ._sse import parse as parse_sse

if TYPE_CHECKING:
    from ._intercept import use_cassette
    from ._player import Player
    from ._server import ReplayServer
    from ._server_thread import ServerThread
    from ._store import load, save
    from ._transport import ReplayTransport

__version__ = "0.1.0"

__all__ = [
    "Cassette",
    "CassetteError",
    "Chunk",
    "Comment",
    "ConfigError",
    "End",
    "Event",
    "Interaction",
    "NoMatchError",
    "Outcome",
    "Player",
    "ReplayServer",
    "ReplayTransport",
    "Request",
    "Response",
    "SSEParser",
    "ServerThread",
    "SsevcrError",
    "__version__",
    "load",
    "parse_sse",
    "save",
    "use_cassette",
]

_LAZY = {
    "ReplayTransport": "_transport",
    "Player": "_player",
    "use_cassette": "_intercept",
    "ReplayServer": "_server",
    "ServerThread": "_server_thread",
    "load": "_store",
    "save": "_store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ssevcr' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # found once; later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
