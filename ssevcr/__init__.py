"""ssevcr — a VCR for Server-Sent Events.

Record real SSE streams with the arrival time of every chunk; replay them byte-exact with the
original, scaled or no timing, and break them on purpose. ``import ssevcr`` stays light: it never
imports mitmproxy, httpx or click.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cassette import Cassette, Chunk, End, Interaction, Outcome, Request, Response
from .errors import CassetteError, ConfigError, NoMatchError, SsevcrError

if TYPE_CHECKING:
    from .intercept import use_cassette
    from .player import Player
    from .transport import ReplayTransport

__version__ = "0.1.0"

__all__ = [
    "Cassette",
    "CassetteError",
    "Chunk",
    "ConfigError",
    "End",
    "Interaction",
    "NoMatchError",
    "Outcome",
    "Player",
    "ReplayTransport",
    "Request",
    "Response",
    "SsevcrError",
    "__version__",
    "use_cassette",
]

_LAZY = {"ReplayTransport": "transport", "Player": "player", "use_cassette": "intercept"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ssevcr' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
