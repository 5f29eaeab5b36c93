"""Timing policies: how recorded times map to replay times. Pure values and pure functions.

Grammar (CLI ``--timing``, pytest ``timing=``, env ``SSEVCR_TIMING``)::

    original | instant | scale:F | fixed:DUR        plus an optional cap: --max-gap DUR
    DUR = 250ms | 1.5s | 2 (seconds) | 100us

    and timing profiles (``ssevcr._profiles``), joined by ``+``, alone or with ``original`` or
    ``scale:F``: ttft:DUR, tps:N, jitter:PCT, profile:CASSETTE
    e.g. ttft:2s+tps:20    profile:cassettes/slow.msgpack+jitter:10%    ttft:1s+scale:0.5

A profile reshapes the recorded times first (each distinct chunk time is one event; the head
never after the first chunk; the end as long after the last chunk as it was; seeded by the
player's seed), then ``scale`` and ``--max-gap`` apply to the result. ``profile:CASSETTE`` names
a file: the front ends resolve it (``Timing.resolved``) before a schedule is built.

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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from ._errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._profiles import Profile

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
    profile: tuple[Profile, ...] = ()  # applied to the recorded times before the mode
    seed: int = 0  # of the profile's random draws (jitter, a fitted profile)

    def __str__(self) -> str:
        base = {"original": "original", "instant": "instant"}.get(self.mode)
        if base is None:
            base = (
                f"scale:{self.factor:g}"
                if self.mode == "scale"
                else f"fixed:{format_duration(self.gap)}"
            )
        if self.profile:
            from ._profiles import describe

            shape = describe(self.profile)
            base = shape if self.mode == "original" else f"{shape}+{base}"
        return base if self.max_gap is None else f"{base} (max gap {format_duration(self.max_gap)})"

    def with_max_gap(self, max_gap: float | None) -> Timing:
        if max_gap is not None and max_gap < 0:
            raise ConfigError(f"--max-gap must not be negative, got {max_gap}")
        return replace(self, max_gap=max_gap)

    def resolved(self, times_of: Callable[[str], Sequence[float]]) -> Timing:
        """This timing with each ``profile:SOURCE`` fitted to ``times_of(SOURCE)`` (the event
        times of that recording, read by the caller)."""
        from ._profiles import Source, resolve

        if not any(isinstance(s, Source) for s in self.profile):
            return self
        return replace(self, profile=resolve(self.profile, times_of))

    def retime(self, times: Sequence[float]) -> dict[float, float]:
        """Map each distinct recorded time point (seconds from the request) to its replay time.
        ``times`` are a response's: its head's time, its end's, then its chunks' (as
        ``_schedule`` passes them; a profile needs to tell them apart).

        ``fixed`` puts every distinct time point ``gap`` after the previous one; ``max_gap`` then
        shortens any longer pause (from the request to the headers included), shifting what follows.
        """
        if self.profile:
            return self._profiled(times)
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

    def _profiled(self, times: Sequence[float]) -> dict[float, float]:
        from ._profiles import retime_points

        if len(times) < 2:
            return Timing(self.mode, self.factor, self.gap, self.max_gap).retime(times)
        head, end, points = times[0], times[1], times[2:]
        new_head, shaped, new_end = retime_points(self.profile, head, points, end, self.seed)
        shaped.setdefault(head, new_head)  # a chunk at the head's time keeps the chunk's
        shaped.setdefault(end, new_end)
        base = Timing(self.mode, self.factor, self.gap, self.max_gap).retime(list(shaped.values()))
        return {t: base[v] for t, v in shaped.items()}


def parse_timing(
    text: str | Timing | None, *, max_gap: str | float | None = None, seed: int | None = None
) -> Timing:
    """Parse the timing grammar; ``None`` means ``original``. ``seed``: the profile's."""
    if isinstance(text, Timing):
        timing = text
    elif text is not None and any(
        part.partition(":")[0].strip().lower() in _PROFILE_STEPS for part in text.split("+")
    ):
        timing = _with_profile(text)
    else:
        timing = _mode(text)
    if seed is not None and timing.profile and seed != timing.seed:
        timing = replace(timing, seed=seed)
    if max_gap is not None:
        timing = timing.with_max_gap(
            parse_duration(max_gap, what="max gap") if isinstance(max_gap, str) else float(max_gap)
        )
    return timing


_PROFILE_STEPS = ("ttft", "tps", "jitter", "profile")


def _with_profile(text: str) -> Timing:
    """``ttft:2s+tps:20``, ``profile:x.msgpack+scale:0.5``: the profile steps in their order, and
    at most one mode, ``original`` or ``scale:F``."""
    from ._profiles import parse

    steps: list[str] = []
    modes: list[str] = []
    for part in text.split("+"):
        name = part.partition(":")[0].strip().lower()
        (steps if name in _PROFILE_STEPS else modes).append(part)
    if len(modes) > 1:
        raise ConfigError(f"bad timing {text!r}: at most one of original and scale:F")
    timing = _mode(modes[0]) if modes else Timing()
    if timing.mode not in ("original", "scale"):
        raise ConfigError(
            f"bad timing {text!r}: a profile (ttft, tps, jitter, profile) combines with original "
            f"or scale:F, not {timing.mode}"
        )
    return replace(timing, profile=parse("+".join(steps)))


def _mode(text: str | None) -> Timing:
    """original, instant, scale:F or fixed:DUR."""
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
        raise ConfigError(
            f"unknown timing {spec!r}; valid: {', '.join(_MODES)}, or a profile: "
            "ttft:DUR, tps:N, jitter:PCT, profile:CASSETTE (joined by +)"
        )
    return timing
