"""Faults: the grammar ``NAME[:key=value,...]`` parsed into frozen values. Pure; no I/O.

Events are counted from 1 (SSE events, not comments); ``event=last`` names the last one. Any fault
takes ``on=N`` (the N-th interaction, from 1) or ``on=/path`` (a request path, ``*`` globs) to
scope it, and ``times=N`` to fire only on the first N matching plays (``status:429,times=1``
answers 429 once, then the recording: the client's retry succeeds).

    truncate:after=N | truncate:byte=K     [end=close|abort|reset]   (default end=abort)
    corrupt:event=N                        [how=json|utf8|bytes]     (default how=json)
    stall:before=N,for=DUR|forever
    drop:event=N|last
    duplicate:event=N|last
    error:after=N|last                     [provider=openai|anthropic|generic, message=TEXT]
    status:CODE                            [retry_after=DUR, provider=...]
    rechunk:size=N | rechunk:random[,max=N] | rechunk:hostile
    slow:bps=N
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from ._errors import ConfigError
from ._timing import parse_duration

__all__ = [
    "Corrupt",
    "Drop",
    "Duplicate",
    "EventRef",
    "Fault",
    "InjectError",
    "Rechunk",
    "Scope",
    "Slow",
    "Stall",
    "Status",
    "Truncate",
    "parse_fault",
    "parse_faults",
]

EventRef = int | Literal["last"]
Provider = Literal["openai", "openai-responses", "anthropic", "gemini", "generic"]
PROVIDERS: tuple[str, ...] = ("openai", "openai-responses", "anthropic", "gemini", "generic")


@dataclass(frozen=True, slots=True)
class Scope:
    interaction: int | None = None  # 1-based index in the cassette
    path: str | None = None  # request path or glob
    times: int | None = None  # fire on the first N matching plays only

    def matches(self, index: int, path: str) -> bool:
        if self.interaction is not None and index + 1 != self.interaction:
            return False
        return not (self.path is not None and not fnmatch.fnmatchcase(path, self.path))


@dataclass(frozen=True, slots=True)
class _Base:
    spec: str = field(default="", compare=False)
    scope: Scope = field(default_factory=Scope)

    def __str__(self) -> str:
        return self.spec


@dataclass(frozen=True, slots=True)
class Truncate(_Base):
    after: EventRef | None = None
    byte: int | None = None
    end: Literal["close", "abort", "reset"] = "abort"


@dataclass(frozen=True, slots=True)
class Corrupt(_Base):
    event: EventRef = 1
    how: Literal["json", "utf8", "bytes"] = "json"


@dataclass(frozen=True, slots=True)
class Stall(_Base):
    before: EventRef = 1
    duration: float | None = None  # None: forever


@dataclass(frozen=True, slots=True)
class Drop(_Base):
    event: EventRef = "last"


@dataclass(frozen=True, slots=True)
class Duplicate(_Base):
    event: EventRef = 1


@dataclass(frozen=True, slots=True)
class InjectError(_Base):
    after: EventRef = 1
    provider: Provider | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Status(_Base):
    code: int = 500
    retry_after: float | None = None
    provider: Provider | None = None


@dataclass(frozen=True, slots=True)
class Rechunk(_Base):
    how: Literal["size", "random", "hostile"] = "size"
    size: int = 1
    max: int = 16


@dataclass(frozen=True, slots=True)
class Slow(_Base):
    bps: int = 1000


Fault = Truncate | Corrupt | Stall | Drop | Duplicate | InjectError | Status | Rechunk | Slow

_KEYS: dict[str, tuple[str, ...]] = {
    "truncate": ("after", "byte", "end"),
    "corrupt": ("event", "how"),
    "stall": ("before", "for"),
    "drop": ("event",),
    "duplicate": ("event",),
    "error": ("after", "provider", "message"),
    "status": ("code", "retry_after", "provider"),
    "rechunk": ("size", "random", "hostile", "max"),
    "slow": ("bps",),
}
FAULT_NAMES = tuple(_KEYS)
_COMMON = ("on", "times")


def _fail(spec: str, problem: str) -> ConfigError:
    return ConfigError(f"bad fault {spec!r}: {problem}")


def _int(spec: str, key: str, value: str, *, minimum: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise _fail(spec, f"{key} must be a whole number, got {value!r}") from None
    if n < minimum:
        raise _fail(spec, f"{key} must be >= {minimum}, got {n}")
    return n


def _event(spec: str, key: str, value: str) -> EventRef:
    if value.strip().lower() == "last":
        return "last"
    return _int(spec, key, value, minimum=1)


def _choice(spec: str, key: str, value: str, options: Iterable[str]) -> str:
    options = tuple(options)
    if value not in options:
        raise _fail(spec, f"{key} must be one of {', '.join(options)}, got {value!r}")
    return value


def parse_fault(text: str | Fault) -> Fault:  # noqa: C901 - one branch per fault kind (to split)
    """Parse one fault spec; a ConfigError says what is wrong and what is valid."""
    if not isinstance(text, str):
        return text
    spec = text.strip()
    name, _, rest = spec.partition(":")
    name = name.strip().lower()
    if name not in _KEYS:
        raise ConfigError(
            f"unknown fault {name!r} in {spec!r}; valid faults: {', '.join(FAULT_NAMES)}"
        )
    params: dict[str, str] = {}
    flags: list[str] = []
    if rest.strip():
        for item in rest.split(","):
            item = item.strip()
            if not item:
                raise _fail(spec, "empty item between commas")
            key, eq, value = item.partition("=")
            key = key.strip().lower()
            if not eq:
                flags.append(key)
                continue
            if key not in _KEYS[name] and key not in _COMMON:
                raise _fail(
                    spec, f"unknown key {key!r}; {name} takes {', '.join(_KEYS[name] + _COMMON)}"
                )
            if key in params:
                raise _fail(spec, f"{key} given twice")
            params[key] = value.strip()

    scope = Scope()
    if "on" in params:
        on = params.pop("on")
        if on.startswith("/"):
            scope = Scope(path=on)
        else:
            scope = Scope(interaction=_int(spec, "on", on, minimum=1))
    if "times" in params:
        scope = Scope(
            scope.interaction, scope.path, _int(spec, "times", params.pop("times"), minimum=1)
        )

    def flag_error() -> ConfigError:
        return _fail(
            spec,
            f"unexpected {', '.join(flags)!r}; {name} takes {', '.join(_KEYS[name] + _COMMON)}",
        )

    def need(key: str) -> str:
        if key not in params:
            raise _fail(spec, f"{name} needs {key}=...")
        return params[key]

    fault: Fault
    if name == "truncate":
        if flags:
            raise flag_error()
        if ("after" in params) == ("byte" in params):
            raise _fail(spec, "truncate needs exactly one of after=N (events) or byte=K")
        end = _choice(spec, "end", params.get("end", "abort"), ("close", "abort", "reset"))
        if "after" in params:
            after = params["after"]
            ref: EventRef = (
                "last" if after.strip().lower() == "last" else _int(spec, "after", after, minimum=0)
            )
            fault = Truncate(spec, scope, after=ref, end=end)  # type: ignore[arg-type]
        else:
            byte = _int(spec, "byte", params["byte"], minimum=0)
            fault = Truncate(spec, scope, byte=byte, end=end)  # type: ignore[arg-type]
    elif name == "corrupt":
        if flags:
            raise flag_error()
        how = _choice(spec, "how", params.get("how", "json"), ("json", "utf8", "bytes"))
        fault = Corrupt(spec, scope, event=_event(spec, "event", need("event")), how=how)  # type: ignore[arg-type]
    elif name == "stall":
        if flags:
            raise flag_error()
        duration_text = need("for")
        duration = (
            None
            if duration_text.lower() == "forever"
            else parse_duration(duration_text, what=f"stall duration in {spec!r}")
        )
        fault = Stall(spec, scope, before=_event(spec, "before", need("before")), duration=duration)
    elif name in ("drop", "duplicate"):
        if flags:
            raise flag_error()
        cls = Drop if name == "drop" else Duplicate
        fault = cls(spec, scope, event=_event(spec, "event", need("event")))
    elif name == "error":
        if flags:
            raise flag_error()
        provider = params.get("provider")
        if provider is not None:
            _choice(spec, "provider", provider, PROVIDERS)
        fault = InjectError(
            spec,
            scope,
            after=_event(spec, "after", need("after")),
            provider=provider,  # type: ignore[arg-type]
            message=params.get("message"),
        )
    elif name == "status":
        code_text = params.get("code")
        if flags:
            if code_text is not None or len(flags) != 1:
                raise flag_error()
            code_text = flags[0]
        if code_text is None:
            raise _fail(spec, "status needs a code, e.g. status:429")
        code = _int(spec, "code", code_text, minimum=100)
        if code > 599:
            raise _fail(spec, f"code must be an HTTP status (100-599), got {code}")
        retry_after = params.get("retry_after")
        provider = params.get("provider")
        if provider is not None:
            _choice(spec, "provider", provider, PROVIDERS)
        fault = Status(
            spec,
            scope,
            code=code,
            retry_after=None
            if retry_after is None
            else parse_duration(retry_after, what="retry_after"),
            provider=provider,  # type: ignore[arg-type]
        )
    elif name == "rechunk":
        modes = [f for f in flags if f in ("random", "hostile")] + (
            ["size"] if "size" in params else []
        )
        if len(modes) != 1 or len(flags) != len([f for f in flags if f in ("random", "hostile")]):
            raise _fail(spec, "rechunk needs exactly one of size=N, random or hostile")
        maximum = _int(spec, "max", params.get("max", "16"), minimum=1)
        if modes[0] == "size":
            fault = Rechunk(
                spec, scope, how="size", size=_int(spec, "size", params["size"], minimum=1)
            )
        else:
            fault = Rechunk(spec, scope, how=modes[0], max=maximum)  # type: ignore[arg-type]
    else:  # slow
        if flags:
            raise flag_error()
        fault = Slow(spec, scope, bps=_int(spec, "bps", need("bps"), minimum=1))
    return fault


def parse_faults(specs: Iterable[str | Fault] | str | None) -> tuple[Fault, ...]:
    if specs is None:
        return ()
    if isinstance(specs, str):
        specs = [specs]
    return tuple(parse_fault(s) for s in specs)
