"""Reading a configured-responses file (YAML or TOML) and the cassettes it names.

The I/O side of :mod:`ssevcr._configured`: the file is read here (bounded in size), its format
chosen by its suffix (``.toml``, else YAML), and the paths of cassettes and of ``profile:FILE``
timings resolved against the file's folder.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from . import _store
from ._cassette import Cassette
from ._configured import Config, parse
from ._errors import ConfigError

__all__ = ["MAX_CONFIG", "load"]

MAX_CONFIG = 4 * 1024 * 1024  # bytes of a configuration file


def load(path: str | os.PathLike[str]) -> Config:
    """The configuration in ``path``; a missing, unreadable or invalid file is a ConfigError."""
    p = Path(path)
    try:
        text = _store.read_regular(p, limit=MAX_CONFIG).decode("utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read configuration {str(p)!r}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"cannot read configuration {str(p)!r}: not UTF-8 text (byte {e.start})"
        ) from None
    base = p.parent

    def load_cassette(name: str) -> Cassette:
        target = Path(name)
        return _store.load(target if target.is_absolute() else base / target)

    @functools.cache  # a top-level timing is every rule's: its recording is read once
    def profile_times(name: str) -> tuple[float, ...]:
        target = Path(name)
        return tuple(_store.profile_times(str(target if target.is_absolute() else base / target)))

    fmt = "toml" if p.suffix.lower() == ".toml" else "yaml"
    return parse(text, fmt, source=str(p), load_cassette=load_cassette, profile_times=profile_times)
