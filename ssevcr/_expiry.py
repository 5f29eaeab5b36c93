"""Cassette expiry: how old each recorded interaction is, and which are older than ``max_age``.
Pure: the adapter passes the time in.

Every recorder writes when it recorded an interaction in the interaction's meta, ``recorded_at``:
UTC, ISO 8601 to the second (``2026-12-02T03:05:00Z``). An interaction without one (recorded by
an older ssevcr, imported from vcrpy without a ``Date`` header, synthesized) or with one that is
not such a date is *undated*: it never expires, and :func:`check` counts it so the caller can say
so.

``max_age``: seconds (a number), or a duration with a unit: ``30d``, ``12h``, ``2w``, and what
the timing grammar takes (``90s``, ``5m``, ``250ms``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ._cassette import Interaction
from ._errors import ConfigError

__all__ = [
    "EXPIRY_ACTIONS",
    "RECORDED_AT",
    "Expired",
    "check",
    "check_action",
    "parse_age",
    "recorded_at",
    "stamp",
]

RECORDED_AT = "recorded_at"
EXPIRY_ACTIONS = ("warn", "fail", "rerecord")
_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_LONG = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(w|d|h)\s*$")
_LONG_UNITS = {"w": 7 * 86400.0, "d": 86400.0, "h": 3600.0}


def stamp(epoch: float) -> str:
    """``epoch`` (seconds since 1970, UTC) as a ``recorded_at`` value."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime(_FORMAT)


def recorded_at(interaction: Interaction) -> float | None:
    """When the interaction was recorded (seconds since 1970), None when it is undated."""
    text = interaction.meta.get(RECORDED_AT)
    if not isinstance(text, str) or len(text) != 20:
        return None
    try:
        return datetime.strptime(text, _FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def parse_age(value: object, *, what: str = "max_age") -> float:
    """A maximum age in seconds (> 0); raises ConfigError."""
    from ._timing import parse_duration

    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{what} must be seconds or a duration such as '30d', got {value!r}")
    if isinstance(value, str):
        m = _LONG.match(value)
        seconds = (
            float(m.group(1)) * _LONG_UNITS[m.group(2)]
            if m
            else parse_duration(value, what=f"{what} (e.g. 30d, 12h, 90s)")
        )
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{what} must be longer than 0, got {value!r}")
    return seconds


def check_action(value: object) -> str:
    if value not in EXPIRY_ACTIONS:
        raise ConfigError(
            f"on_expiry must be one of {', '.join(map(repr, EXPIRY_ACTIONS))}, got {value!r}"
        )
    return str(value)


@dataclass(frozen=True, slots=True)
class Expired:
    """What :func:`check` found in one cassette."""

    cassette: str
    expired: tuple[tuple[int, float], ...]  # (position, age in seconds), oldest first
    undated: int  # interactions with no (valid) recorded_at
    total: int

    def __bool__(self) -> bool:
        return bool(self.expired)

    def describe(self, max_age: float) -> str:
        """One line per cassette: how many are older than ``max_age``, the oldest."""
        n, age = self.expired[0]
        more = f", {self.undated} undated (never expire)" if self.undated else ""
        return (
            f"{len(self.expired)} of {self.total} interactions of cassette {self.cassette!r} "
            f"are older than {_days(max_age)} (the oldest, #{n + 1}, {_days(age)}){more}"
        )


def _days(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds:.0f} s"


def check(
    cassette: str, interactions: Sequence[Interaction], max_age: float, now: float
) -> Expired:
    """The interactions recorded more than ``max_age`` seconds before ``now``."""
    expired, undated = [], 0
    for n, interaction in enumerate(interactions):
        at = recorded_at(interaction)
        if at is None:
            undated += 1
        elif now - at > max_age:
            expired.append((n, now - at))
    expired.sort(key=lambda e: -e[1])
    return Expired(cassette, tuple(expired), undated, len(interactions))
