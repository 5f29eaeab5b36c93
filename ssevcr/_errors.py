"""The ssevcr error tree. Every error a user can cause is one of these; front ends (CLI, pytest)
turn them into one clean message, never a traceback.

    SsevcrError
     ├── ConfigError        a bad timing or fault spec, option or flag
     ├── CassetteError      a cassette that cannot be read, written or validated
     │    └── InvalidValueError  a model value built in code that no cassette can hold
     ├── NoMatchError       a request that no recorded interaction matches
     └── NetworkBlockedError  a connection to a non-loopback address while a cassette replays
"""

from __future__ import annotations


class SsevcrError(Exception):
    """Base class of every error ssevcr raises on purpose."""


class ConfigError(SsevcrError, ValueError):
    """A timing, fault or option that does not parse or does not make sense."""


class CassetteError(SsevcrError):
    """A cassette file that is missing, damaged, of an unknown version, or wrongly shaped, or
    one that cannot be written (read-only directory, disk full, locked by another process).

    ``path`` names the file (or ``<memory>``), ``where`` the field
    (``interactions[2].response.status``) and ``line`` the line of a JSON twin, when known.
    """

    def __init__(self, path: str, problem: str, *, where: str = "", line: int | None = None):
        self.path = path
        self.problem = problem
        self.where = where
        self.line = line
        location = f"line {line}: " if line is not None else ""
        field = f"{where}: " if where else ""
        super().__init__(f"cassette {path!r}: {location}{field}{problem}")


class InvalidValueError(CassetteError, ValueError):
    """A :class:`~ssevcr.Response` (or other model value) built in code with values no cassette
    can hold: chunk tables that disagree with the body, times that are not finite or go back.
    Also a ``ValueError``, which is what such a constructor argument is."""

    def __init__(self, problem: str, *, where: str = ""):
        super().__init__("<memory>", problem, where=where)


class NoMatchError(SsevcrError):
    """No recorded interaction matches a request. The message names the cassette, the closest
    recorded request and what differed."""

    def __init__(self, message: str, *, method: str = "", url: str = ""):
        self.method = method
        self.url = url
        super().__init__(message)


class NetworkBlockedError(SsevcrError):
    """A connection to a non-loopback address while a cassette replays (record mode ``none``):
    refused before it was made. Not an ``OSError``, so no client takes it for a network failure
    to retry or to fall back from. ``host``/``port``: where it was going."""

    def __init__(self, message: str, *, host: str = "", port: int | None = None):
        self.host = host
        self.port = port
        super().__init__(message)


class ExpiredCassetteWarning(UserWarning):
    """A cassette in use holds interactions older than its ``max_age`` (``on_expiry="warn"``)."""


class UnappliedFaultWarning(UserWarning):
    """Faults a replay would apply were not applied to what the client was shown: a WebSocket,
    or an aiohttp ``Upgrade:`` or ``Expect:`` request, recorded in process reaches the client
    as the service sends it (its replays get them; httpx, httpx2, aiohttp, urllib3 and
    requests show them)."""
