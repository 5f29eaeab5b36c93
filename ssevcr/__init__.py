"""ssevcr — a VCR for Server-Sent Events.

Record real SSE streams with the arrival time of every chunk; replay them byte-exact with the
original, scaled or no timing, and break them on purpose. ``import ssevcr`` stays light: it never
imports mitmproxy, httpx or click; the replay machinery is imported on first use.

The public API is what this module exports (``__all__``); every other module is private.
Errors (one tree, see ``SsevcrError``)::

    SsevcrError
     ├── ConfigError        a bad timing or fault spec, option or flag
     ├── CassetteError      a cassette that cannot be read, written or validated
     ├── NoMatchError       a request that no recorded interaction matches
     ├── NetworkBlockedError  a connection off the machine while a cassette replays
     └── ControlError       the control API of ``ssevcr replay --control`` refused a request

Warnings (``UserWarning``s): ``ExpiredCassetteWarning`` (a cassette older than its ``max_age``)
and ``UnappliedFaultWarning`` (a WebSocket, or an aiohttp ``Upgrade:``/``Expect:`` request,
recorded in process was shown to the client without the faults its replays apply).
"""

from __future__ import annotations

import importlib

from ._cassette import Cassette, Chunk, End, Interaction, Outcome, Request, Response
from ._errors import (
    CassetteError,
    ConfigError,
    ExpiredCassetteWarning,
    NetworkBlockedError,
    NoMatchError,
    SsevcrError,
    UnappliedFaultWarning,
)

TYPE_CHECKING = False  # typing itself is not imported: loading a cassette does not need it
if TYPE_CHECKING:
    from typing import Any

    from ._control_client import ControlClient, ControlError
    from ._intercept import use_cassette
    from ._player import Player
    from ._server import ReplayServer
    from ._server_thread import ServerThread
    from ._sse import Comment, Event, SSEParser
    from ._sse import parse as parse_sse
    from ._store import load, save
    from ._transport import ReplayTransport

__version__ = "0.2.0"

__all__ = [
    "Cassette",
    "CassetteError",
    "Chunk",
    "Comment",
    "ConfigError",
    "ControlClient",
    "ControlError",
    "End",
    "Event",
    "ExpiredCassetteWarning",
    "Interaction",
    "NetworkBlockedError",
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
    "UnappliedFaultWarning",
    "__version__",
    "load",
    "parse_sse",
    "save",
    "use_cassette",
]

_LAZY = {  # name: (module, its name there)
    "ReplayTransport": ("_transport", "ReplayTransport"),
    "Player": ("_player", "Player"),
    "use_cassette": ("_intercept", "use_cassette"),
    "ReplayServer": ("_server", "ReplayServer"),
    "ServerThread": ("_server_thread", "ServerThread"),
    "load": ("_store", "load"),
    "save": ("_store", "save"),
    "SSEParser": ("_sse", "SSEParser"),
    "Event": ("_sse", "Event"),
    "Comment": ("_sse", "Comment"),
    "ControlClient": ("_control_client", "ControlClient"),
    "ControlError": ("_control_client", "ControlError"),
    "parse_sse": ("_sse", "parse"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ssevcr' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value  # found once; later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
