"""Timing policies: how recorded times map to replay times. Pure values and pure functions.

Grammar (CLI ``--timing``, pytest ``timing=``, env ``SSEVCR_TIMING``)::

    original | instant | scale:F | fixed:DUR        plus an optional cap: --max-gap DUR
    DUR = 250ms | 1.5s | 2 (seconds) | 100us

``Timing.retime`` maps a recorded response's time points (headers, chunk offsets, end) to new
ones; everything else (faults, rechunking) keeps its bytes at the time of the original bytes.

Any finite time a cassette or a spec can hold maps to a replay time in ``[0, HORIZON]``: a
scale, a fixed gap or a stall that would overflow (``1e300`` times ``1e10`` is ``inf``, and
``inf - inf`` is NaN) waits until the horizon instead, which no client outlives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ._errors import ConfigError

__all__ = ["HORIZON", "Timing", "format_duration", "parse_duration", "parse_timing"]

HORIZON = 1e9
"""The latest replay time, in seconds after the request (about 32 years)."""

Mode = Literal["original", "instant", "scale", "fixed"]
_MODES = ("original", "instant", "scale:F", "fixed:DUR")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|s|m)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "m": 60.0}


def parse_duration(text: str, *, what: str = "duration") -> float:
    """``250ms`` -> 0.25, ``1.5s`` -> 1.5, ``2`` -> 2.0 (seconds)."""
    m = _DURATION.match(str(text))
    if not m:
        raise ConfigError(f"bad {what} {text!r}: use a number with a unit, e.g. 250ms, 1.5s, 100us")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(value):
        raise ConfigError(f"bad {what} {text!r}: not a finite number")
    return value


def until_horizon(seconds: float) -> float:
    """``seconds``, no later than the horizon (``inf`` included)."""
    return seconds if seconds < HORIZON else HORIZON


def format_duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1e3:g}ms"


@dataclass(frozen=True, slots=True)
class Timing:
    mode: Mode = "original"
    factor: float = 1.0  # scale:F
    gap: float = 0.0  # fixed:DUR
    max_gap: float | None = None

    def __str__(self) -> str:
        base = {"original": "original", "instant": "instant"}.get(self.mode)
        if base is None:
            base = (
                f"scale:{self.factor:g}"
                if self.mode == "scale"
                else f"fixed:{format_duration(self.gap)}"
            )
        return base if self.max_gap is None else f"{base} (max gap {format_duration(self.max_gap)})"

    def with_max_gap(self, max_gap: float | None) -> Timing:
        if max_gap is not None and max_gap < 0:
            raise ConfigError(f"--max-gap must not be negative, got {max_gap}")
        return Timing(self.mode, self.factor, self.gap, max_gap)

    def retime(self, times: Sequence[float]) -> dict[float, float]:
        """Map each distinct recorded time point (seconds from the request) to its replay time.

        ``fixed`` puts every distinct time point ``gap`` after the previous one; ``max_gap`` then
        shortens any longer pause (from the request to the headers included), shifting what follows.
        """
        if self.max_gap is None and self.mode in ("instant", "original"):  # no order needed
            if self.mode == "instant":
                return dict.fromkeys(times, 0.0)
            return {t: t if t < HORIZON else HORIZON for t in times}
        points = sorted(set(times))
        if self.mode == "original":
            new = list(points)
        elif self.mode == "instant":
            new = [0.0] * len(points)
        elif self.mode == "scale":
            new = [t * self.factor for t in points]
        else:  # fixed: the k-th distinct point after the request comes k gaps after it
            new, k = [], 0
            for t in points:
                k += t > 0
                new.append(self.gap * k)
        new = [t if t < HORIZON else HORIZON for t in new]  # finite from here on
        if self.max_gap is not None:
            capped, prev_old, prev_new = [], 0.0, 0.0
            for t in new:
                gap = min(t - prev_old, self.max_gap)
                prev_old, prev_new = t, prev_new + gap
                capped.append(prev_new)
            new = capped
        return dict(zip(points, new, strict=True))


def parse_timing(text: str | Timing | None, *, max_gap: str | float | None = None) -> Timing:
    """Parse the timing grammar; ``None`` means ``original``."""
    if isinstance(text, Timing):
        timing = text
    else:
        spec = (text or "original").strip()
        name, _, arg = spec.partition(":")
        name = name.strip().lower()
        if name in ("original", "instant") and not arg:
            timing = Timing(name)  # type: ignore[arg-type]
        elif name == "scale":
            try:
                factor = float(arg)
            except ValueError:
                raise ConfigError(
                    f"bad timing {spec!r}: scale needs a number, e.g. scale:0.1 (ten times faster)"
                ) from None
            if not math.isfinite(factor) or factor < 0:
                raise ConfigError(f"bad timing {spec!r}: the scale factor must be a number >= 0")
            timing = Timing("scale", factor=factor)
        elif name == "fixed":
            if not arg:
                raise ConfigError(f"bad timing {spec!r}: fixed needs a duration, e.g. fixed:50ms")
            timing = Timing("fixed", gap=parse_duration(arg, what=f"timing {spec!r} duration"))
        else:
            raise ConfigError(f"unknown timing {spec!r}; valid: {', '.join(_MODES)}")
    if max_gap is not None:
        timing = timing.with_max_gap(
            parse_duration(max_gap, what="max gap") if isinstance(max_gap, str) else float(max_gap)
        )
    return timing
