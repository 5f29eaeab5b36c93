"""Faults: the grammar ``NAME[:key=value,...]`` parsed into frozen values. Pure; no I/O.

Events are counted from 1 (SSE events, not comments; NDJSON lines; JSON-array elements);
``event=last`` names the last one. Any fault takes ``on=N`` (the N-th interaction, from 1) or
``on=/path`` (a request path, ``*`` globs) to scope it, and ``times=N`` to fire only on the
first N matching plays (``status:429,times=1`` answers 429 once, then the recording: the
client's retry succeeds).

    truncate:after=N | truncate:byte=K     [end=close|abort|reset]   (default end=abort)
    corrupt:event=N                        [how=json|utf8|bytes]     (default how=json)
    stall:before=N,for=DUR|forever
    drop:event=N|last
    duplicate:event=N|last
    error:after=N|last                     [provider=openai|anthropic|ollama|..., message=TEXT]
    status:CODE                            [retry_after=DUR, provider=...]
    rechunk:size=N | rechunk:random[,max=N,seed=N] | rechunk:hostile
    slow:bps=N
    header:NAME=VALUE | header:drop=NAME | header:content-length
    resume:restart | resume:gap | resume:refuse

``rechunk:random,seed=N`` draws its pieces from its own generator (``seed``), not the play's:
several random splittings of one stream in one run. ``header`` changes the response head: sets
a header (``header:content-type=text/plain``), removes one (``header:drop=content-type``), or
sends a streamed body with its exact ``content-length`` instead of chunked. Hop-by-hop headers
(``transfer-encoding``, ``connection``, ...) are the replay's own and cannot be changed.

``resume`` changes how a reconnecting client's ``Last-Event-ID`` is answered (a play that resumes
a stream whose events carry ids, see ``_resume``): ``restart`` ignores it and sends the stream
from its start (the client must de-duplicate), ``gap`` resumes one event too far (an event is
lost), ``refuse`` answers 204 No Content (which stops an EventSource from reconnecting).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ._cassette import head_problems
from ._errors import ConfigError
from ._timing import parse_duration

__all__ = [
    "Corrupt",
    "Drop",
    "Duplicate",
    "EventRef",
    "Fault",
    "Header",
    "InjectError",
    "Rechunk",
    "Resume",
    "Scope",
    "Slow",
    "Stall",
    "Status",
    "Truncate",
    "parse_fault",
    "parse_faults",
]

EventRef = int | Literal["last"]
Provider = Literal["openai", "openai-responses", "anthropic", "gemini", "ollama", "generic"]
PROVIDERS: tuple[str, ...] = (
    "openai",
    "openai-responses",
    "anthropic",
    "gemini",
    "ollama",
    "generic",
)


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
    seed: int | None = None  # random: its own generator instead of the play's


@dataclass(frozen=True, slots=True)
class Slow(_Base):
    bps: int = 1000


@dataclass(frozen=True, slots=True)
class Header(_Base):
    name: str = "content-type"  # lower case
    value: str | None = None  # what to set (action "set")
    action: Literal["set", "drop", "length"] = "set"


@dataclass(frozen=True, slots=True)
class Resume(_Base):
    how: Literal["restart", "gap", "refuse"] = "restart"


Fault = (
    Truncate
    | Corrupt
    | Stall
    | Drop
    | Duplicate
    | InjectError
    | Status
    | Rechunk
    | Slow
    | Header
    | Resume
)
HOP_BY_HOP = frozenset(
    {
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
"""Headers the replay writes itself (never recorded, never changed by a fault)."""

_KEYS: dict[str, tuple[str, ...]] = {
    "truncate": ("after", "byte", "end"),
    "corrupt": ("event", "how"),
    "stall": ("before", "for"),
    "drop": ("event",),
    "duplicate": ("event",),
    "error": ("after", "provider", "message"),
    "status": ("code", "retry_after", "provider"),
    "rechunk": ("size", "random", "hostile", "max", "seed"),
    "slow": ("bps",),
    "header": ("NAME=VALUE", "drop=NAME", "content-length"),  # any header name is a key
    "resume": ("restart", "gap", "refuse"),
}
FAULT_NAMES = tuple(_KEYS)
_COMMON = ("on", "times")


def _fail(spec: str, problem: str) -> ConfigError:
    return ConfigError(f"bad fault {spec!r}: {problem}")


@dataclass(frozen=True, slots=True)
class _Spec:
    """One fault spec split into its parts: ``name:key=value,...,flag,...`` and the scope."""

    text: str
    name: str
    params: dict[str, str]
    flags: tuple[str, ...]
    scope: Scope

    def fail(self, problem: str) -> ConfigError:
        return _fail(self.text, problem)

    def takes(self) -> str:
        return f"{self.name} takes {', '.join(_KEYS[self.name] + _COMMON)}"

    def no_flags(self) -> _Spec:
        if self.flags:
            raise self.fail(f"unexpected {', '.join(self.flags)!r}; {self.takes()}")
        return self

    def need(self, key: str) -> str:
        if key not in self.params:
            raise self.fail(f"{self.name} needs {key}=...")
        return self.params[key]

    def number(self, key: str, value: str, *, minimum: int) -> int:
        try:
            n = int(value)
        except ValueError:
            raise self.fail(f"{key} must be a whole number, got {value!r}") from None
        if n < minimum:
            raise self.fail(f"{key} must be >= {minimum}, got {n}")
        return n

    def event(self, key: str, *, minimum: int = 1) -> EventRef:
        value = self.need(key)
        if value.strip().lower() == "last":
            return "last"
        return self.number(key, value, minimum=minimum)

    def choice(self, key: str, default: str | None, options: Iterable[str]) -> Any:
        value = self.params.get(key, default)
        options = tuple(options)
        if value is not None and value not in options:
            raise self.fail(f"{key} must be one of {', '.join(options)}, got {value!r}")
        return value


def _split(spec: str) -> _Spec:
    """``NAME:key=value,...``: the name, the keys (each known to the fault, once), bare flags."""
    name, _, rest = spec.partition(":")
    name = name.strip().lower()
    if name not in _KEYS:
        raise ConfigError(
            f"unknown fault {name!r} in {spec!r}; valid faults: {', '.join(FAULT_NAMES)}"
        )
    params: dict[str, str] = {}
    flags: list[str] = []
    for item in rest.split(",") if rest.strip() else ():
        key, eq, value = item.strip().partition("=")
        key = key.strip().lower()
        if not key and not eq:
            raise _fail(spec, "empty item between commas")
        if not eq:
            flags.append(key)
            continue
        if key not in _KEYS[name] and key not in _COMMON and name != "header":
            raise _fail(
                spec, f"unknown key {key!r}; {name} takes {', '.join(_KEYS[name] + _COMMON)}"
            )
        if key in params:
            raise _fail(spec, f"{key} given twice")
        params[key] = value.strip()
    return _Spec(spec, name, params, tuple(flags), _scope(spec, params))


def _scope(spec: str, params: dict[str, str]) -> Scope:
    """``on=N`` / ``on=/path`` and ``times=N`` (taken out of ``params``)."""
    parts = _Spec(spec, "", {}, (), Scope())
    on, times = params.pop("on", None), params.pop("times", None)
    return Scope(
        None if on is None or on.startswith("/") else parts.number("on", on, minimum=1),
        on if on is not None and on.startswith("/") else None,
        None if times is None else parts.number("times", times, minimum=1),
    )


def _truncate(s: _Spec) -> Truncate:
    s.no_flags()
    if ("after" in s.params) == ("byte" in s.params):
        raise s.fail("truncate needs exactly one of after=N (events) or byte=K")
    end = s.choice("end", "abort", ("close", "abort", "reset"))
    if "after" in s.params:
        return Truncate(s.text, s.scope, after=s.event("after", minimum=0), end=end)
    return Truncate(s.text, s.scope, byte=s.number("byte", s.params["byte"], minimum=0), end=end)


def _corrupt(s: _Spec) -> Corrupt:
    how = s.no_flags().choice("how", "json", ("json", "utf8", "bytes"))
    return Corrupt(s.text, s.scope, event=s.event("event"), how=how)


def _stall(s: _Spec) -> Stall:
    text = s.no_flags().need("for")
    duration = (
        None
        if text.lower() == "forever"
        else parse_duration(text, what=f"stall duration in {s.text!r}")
    )
    return Stall(s.text, s.scope, before=s.event("before"), duration=duration)


def _drop(s: _Spec) -> Drop:
    return Drop(s.text, s.scope, event=s.no_flags().event("event"))


def _duplicate(s: _Spec) -> Duplicate:
    return Duplicate(s.text, s.scope, event=s.no_flags().event("event"))


def _error(s: _Spec) -> InjectError:
    provider = s.no_flags().choice("provider", None, PROVIDERS)
    return InjectError(
        s.text, s.scope, after=s.event("after"), provider=provider, message=s.params.get("message")
    )


def _status(s: _Spec) -> Status:
    code_text = s.params.get("code")
    if s.flags:
        if code_text is not None or len(s.flags) != 1:
            s.no_flags()
        code_text = s.flags[0]
    if code_text is None:
        raise s.fail("status needs a code, e.g. status:429")
    code = s.number("code", code_text, minimum=100)
    if code > 599:
        raise s.fail(f"code must be an HTTP status (100-599), got {code}")
    retry_after = s.params.get("retry_after")
    return Status(
        s.text,
        s.scope,
        code=code,
        retry_after=None
        if retry_after is None
        else parse_duration(retry_after, what="retry_after"),
        provider=s.choice("provider", None, PROVIDERS),
    )


def _rechunk(s: _Spec) -> Rechunk:
    modes = [f for f in s.flags if f in ("random", "hostile")]
    if len(modes) != len(s.flags) or len(modes) + ("size" in s.params) != 1:
        raise s.fail("rechunk needs exactly one of size=N, random or hostile")
    maximum = s.number("max", s.params.get("max", "16"), minimum=1)
    seed = s.params.get("seed")
    if seed is not None and modes != ["random"]:
        raise s.fail("seed goes with rechunk:random")
    if not modes:
        return Rechunk(
            s.text, s.scope, how="size", size=s.number("size", s.params["size"], minimum=1)
        )
    return Rechunk(
        s.text,
        s.scope,
        how=modes[0],  # type: ignore[arg-type]
        max=maximum,
        seed=None if seed is None else s.number("seed", seed, minimum=0),
    )


def _slow(s: _Spec) -> Slow:
    return Slow(s.text, s.scope, bps=s.no_flags().number("bps", s.need("bps"), minimum=1))


def _header(s: _Spec) -> Header:
    items = [*s.flags, *s.params]
    if len(items) != 1 or (s.flags and s.flags != ("content-length",)):
        raise s.fail("header takes one of NAME=VALUE, drop=NAME or content-length")
    if s.flags:
        return Header(s.text, s.scope, name="content-length", action="length")
    key = items[0]
    drop = key == "drop"
    name = s.params[key].lower() if drop else key
    value = "" if drop else s.params[key]
    problems = head_problems(200, "OK", ((name, value),))
    if problems:
        raise s.fail(problems[0][1])
    if name in HOP_BY_HOP:
        raise s.fail(f"the replay writes {name} itself; it cannot be changed")
    if name == "content-length" and not drop:
        raise s.fail("header:content-length takes no value (the body's own length is sent)")
    if drop:
        return Header(s.text, s.scope, name=name, action="drop")
    return Header(s.text, s.scope, name=name, value=value)


def _resume(s: _Spec) -> Resume:
    if s.params or len(s.flags) != 1 or s.flags[0] not in ("restart", "gap", "refuse"):
        raise s.fail("resume takes one of restart, gap or refuse")
    return Resume(s.text, s.scope, how=s.flags[0])  # type: ignore[arg-type]


_PARSERS: dict[str, Callable[[_Spec], Fault]] = {
    "truncate": _truncate,
    "corrupt": _corrupt,
    "stall": _stall,
    "drop": _drop,
    "duplicate": _duplicate,
    "error": _error,
    "status": _status,
    "rechunk": _rechunk,
    "slow": _slow,
    "header": _header,
    "resume": _resume,
}


def parse_fault(text: str | Fault) -> Fault:
    """Parse one fault spec; a ConfigError says what is wrong and what is valid."""
    if not isinstance(text, str):
        return text
    parts = _split(text.strip())
    return _PARSERS[parts.name](parts)


def parse_faults(specs: Iterable[str | Fault] | str | None) -> tuple[Fault, ...]:
    if specs is None:
        return ()
    if isinstance(specs, str):
        specs = [specs]
    return tuple(parse_fault(s) for s in specs)
