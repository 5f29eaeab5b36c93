"""Timing profiles: new event times from old ones. Pure functions over a list of times.

Grammar (steps joined by ``+``, applied left to right)::

    ttft:DUR          the first event at DUR after the request, the other gaps kept
    tps:N             N events per second after the first
    jitter:PCT        every interval (request -> first event, event -> event) stretched or shrunk
                      by up to PCT percent, seeded
    profile:SOURCE    the first event at the TTFT of a recording, the gaps drawn (seeded) from the
                      distribution fitted to its gaps (see ``fit``); SOURCE is a cassette, resolved
                      by the caller (``resolve``) since this module reads no files

    e.g. ttft:2s+tps:20   ttft:400ms+tps:40+jitter:25%   profile:cassettes/x.msgpack+jitter:10

Times are seconds from the request, non-decreasing; the result has as many times as the input
and is non-decreasing too. The same seed gives the same times. No clock, no global random.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._errors import ConfigError
from ._timing import format_duration, parse_duration

__all__ = [
    "Fit",
    "Jitter",
    "Profile",
    "Source",
    "Tps",
    "Ttft",
    "apply",
    "describe",
    "fit",
    "parse",
    "resolve",
    "retime_points",
    "synthetic_times",
]

ZERO_GAP = 50e-6  # gaps shorter than this are events that arrived together (one chunk)
MAX_TPS = 1e6


@dataclass(frozen=True, slots=True)
class Ttft:
    seconds: float


@dataclass(frozen=True, slots=True)
class Tps:
    rate: float


@dataclass(frozen=True, slots=True)
class Jitter:
    fraction: float  # 0.25 for 25 %


@dataclass(frozen=True, slots=True)
class Fit:
    """A recording's timing: its TTFT, and its gaps as a point mass at zero (events that came in
    the same chunk, probability ``p_zero``) plus a log-normal (``mu``, ``sigma`` of the log of the
    other gaps, maximum likelihood). ``n`` gaps were fitted."""

    ttft: float
    mu: float
    sigma: float
    p_zero: float
    n: int

    @property
    def median_gap(self) -> float:
        return math.exp(self.mu)


@dataclass(frozen=True, slots=True)
class Source:
    """``profile:SOURCE`` before the caller has fitted the recording it names."""

    path: str


Profile = Ttft | Tps | Jitter | Fit | Source


def parse(spec: str) -> tuple[Profile, ...]:
    """``ttft:2s+tps:20`` -> ``(Ttft(2.0), Tps(20.0))``."""
    steps: list[Profile] = []
    for part in str(spec).split("+"):
        name, sep, arg = part.strip().partition(":")
        name, arg = name.strip().lower(), arg.strip()
        if not sep or not arg:
            raise ConfigError(
                f"bad timing profile {part!r}: expected ttft:DUR, tps:N, jitter:PCT "
                "or profile:CASSETTE"
            )
        if name == "ttft":
            steps.append(Ttft(parse_duration(arg, what=f"ttft in {spec!r}")))
        elif name == "tps":
            try:
                rate = float(arg)
            except ValueError:
                rate = math.nan
            if not (0 < rate <= MAX_TPS):
                raise ConfigError(f"bad tps {arg!r}: events per second, a number > 0")
            steps.append(Tps(rate))
        elif name == "jitter":
            try:
                pct = float(arg.removesuffix("%"))
            except ValueError:
                pct = math.nan
            if not (0 <= pct <= 100):
                raise ConfigError(f"bad jitter {arg!r}: a percentage from 0 to 100, e.g. 25%")
            steps.append(Jitter(pct / 100))
        elif name == "profile":
            steps.append(Source(arg))
        else:
            raise ConfigError(
                f"unknown timing profile {name!r}; valid: ttft:DUR, tps:N, jitter:PCT, profile:FILE"
            )
    return tuple(steps)


def describe(steps: Sequence[Profile]) -> str:
    """The grammar form of ``steps`` (a fitted profile shows its parameters)."""
    out = []
    for s in steps:
        if isinstance(s, Ttft):
            out.append(f"ttft:{format_duration(s.seconds)}")
        elif isinstance(s, Tps):
            out.append(f"tps:{s.rate:g}")
        elif isinstance(s, Jitter):
            out.append(f"jitter:{s.fraction * 100:g}%")
        elif isinstance(s, Source):
            out.append(f"profile:{s.path}")
        else:
            out.append(
                f"profile(ttft={format_duration(s.ttft)}, median gap "
                f"{format_duration(s.median_gap)}, sigma {s.sigma:.3g}, zero gaps {s.p_zero:.0%})"
            )
    return "+".join(out)


def fit(times: Sequence[float]) -> Fit:
    """Fit a recording's event times (seconds from the request, the first one is its TTFT)."""
    if not times:
        raise ConfigError("cannot fit a timing profile to a recording without events")
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    positive = [math.log(g) for g in gaps if g >= ZERO_GAP]
    zero = len(gaps) - len(positive)
    if positive:
        mu = statistics.fmean(positive)
        sigma = statistics.pstdev(positive) if len(positive) > 1 else 0.0
    else:
        mu, sigma = math.log(0.02), 0.0
    return Fit(float(times[0]), mu, sigma, zero / len(gaps) if gaps else 0.0, len(gaps))


def resolve(
    steps: Sequence[Profile], times_of: Callable[[str], Sequence[float]]
) -> tuple[Profile, ...]:
    """Replace each ``profile:SOURCE`` by the fit of ``times_of(SOURCE)`` (the event times of the
    recording, read by the caller)."""
    return tuple(fit(times_of(s.path)) if isinstance(s, Source) else s for s in steps)


def _rng(seed: int, k: int, what: str) -> random.Random:
    return random.Random(f"ssevcr-profile:{what}:{seed}:{k}")


def apply(
    profile: Profile | Sequence[Profile], times: Sequence[float], seed: int = 0
) -> list[float]:
    """New event times for ``times`` (seconds from the request, non-decreasing)."""
    steps = (profile,) if not isinstance(profile, Sequence) else tuple(profile)
    out = [float(t) for t in times]
    if not out:
        return out
    for k, step in enumerate(steps):
        if isinstance(step, Ttft):
            shift = step.seconds - out[0]
            out = [t + shift for t in out]
        elif isinstance(step, Tps):
            first = out[0]
            out = [first + i / step.rate for i in range(len(out))]
        elif isinstance(step, Jitter):
            rng = _rng(seed, k, "jitter")
            prev_old, now, new = 0.0, 0.0, []
            for t in out:
                gap = max(0.0, t - prev_old)
                prev_old = t
                now += gap * (1 + step.fraction * rng.uniform(-1.0, 1.0))
                new.append(now)
            out = new
        elif isinstance(step, Fit):
            rng = _rng(seed, k, "fit")
            now = step.ttft
            new = [now]
            for _ in out[1:]:
                if rng.random() >= step.p_zero:
                    now += rng.lognormvariate(step.mu, step.sigma)
                new.append(now)
            out = new
        else:
            raise ConfigError(f"profile:{step.path} was not resolved to a recording")
        out[0] = max(out[0], 0.0)
        for i in range(1, len(out)):  # never before the previous event, never before the request
            out[i] = max(out[i], out[i - 1])
    return out


def retime_points(
    profile: Profile | Sequence[Profile],
    headers_at: float,
    points: Sequence[float],
    end: float,
    seed: int = 0,
) -> tuple[float, dict[float, float], float]:
    """A recorded response's times under ``profile``: the new ``headers_at``, a map from each
    distinct chunk time to its new time (each distinct time counts as one event), and the new end
    (as long after the last chunk as it was). Headers never come after the first chunk."""
    distinct = sorted(set(points))
    new = apply(profile, distinct, seed)
    mapping = dict(zip(distinct, new, strict=True))
    if not distinct:
        return headers_at, mapping, end
    headers = min(headers_at, new[0])
    return headers, mapping, new[-1] + max(0.0, end - distinct[-1])


def synthetic_times(n: int, profile: Profile | Sequence[Profile], seed: int = 0) -> list[float]:
    """``n`` event times for a synthesized stream: 20 ms apart from 300 ms on, then ``profile``;
    rounded to the microsecond."""
    base = [0.3 + 0.02 * i for i in range(n)]
    return [round(t, 6) for t in apply(profile, base, seed)]
