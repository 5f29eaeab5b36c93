"""The fault catalogue: the faults worth trying on a cassette, derived from its events. Pure.

    catalogue(cassettes, level="default", seed=0, stall=30.0) -> [Entry(spec, kind, lossy, ...)]
    classify(fault, stall_limit=30.0, cassettes=None) -> (kind, lossy)

For each interaction with events the catalogue proposes, in the fault grammar (nothing here
re-implements a fault; ``ssevcr._schedule`` applies them all):

- ``truncate`` after event k for k in 1, 2, the middle one, the last but one and the last
  (every k in ``full``), ending ``close``, ``abort`` and ``reset``; inside an event; inside a
  multi-byte UTF-8 character where the stream has one;
- ``drop`` the terminal event (``[DONE]``, ``message_stop``, ``response.completed``, as
  :func:`ssevcr._providers.ends_stream` knows them; the last event when the provider has none)
  and a middle one; ``duplicate`` a middle and the terminal event; ``corrupt`` a middle event's
  JSON and UTF-8;
- the provider's own ``error`` event early and late; ``status`` 429 (with retry-after), 500, 503
  and the provider's overload code (Anthropic's 529);
- ``stall`` before the first event and mid-stream, for ``stall`` seconds (past the client's
  timeout) and for a short while (a tenth of it, at most 1 s);
- ``rechunk`` to 1-byte pieces, at hostile boundaries and three seeded random splittings;
  ``slow`` (the body in about 2 s);
- ``header``: a wrong and a missing content-type, a content-length on a stream, a content-encoding
  that lies.

``quick`` is about twenty of these (the ones that found bugs in real clients first: a cut just
before the terminal event, a dropped terminal event, a long stall), ``default`` all of them,
``full`` adds every k and every end.
Interactions without events (plain JSON answers) get the status faults, a cut body, 1-byte
pieces and ``slow``. With several interactions each spec names its own (``on=N``, counted
across the cassettes in order, as the player counts them).

**Lossless or lossy.** A fault is *lossless* when a consumer that follows the SSE standard and
stops at the provider's terminal event ends with the clean run's result: the same events, a
stream that ended (its terminal event, or a well-formed end when the provider has none), no wait
as long as the client's timeout (``stall``). Otherwise it is *lossy*: the consumer must not
report the clean result as a success. So rechunk, slow, a short stall, a content-length, and
anything after the terminal event (a cut, a duplicate, an error) are lossless; a lost, changed or
added event before it, an error status, a long stall, and a content-type or content-encoding
that makes the body unreadable as a stream are lossy.

Deterministic: the same cassettes, level, seed and stall give the same entries (the seed picks
the random splittings' seeds). The framing-specific part is :func:`stream_of` (events, their
byte spans, the terminal one), from :mod:`ssevcr._framing`: SSE events, NDJSON lines (Ollama's
terminal one says ``"done": true``) and JSON-array elements. A content type is part of the
stream only for SSE (an NDJSON or array reader reads what comes, whatever it is called).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from . import _content as content
from . import _framing as framings
from . import _providers as providers
from ._cassette import Cassette, Interaction
from ._errors import ConfigError
from ._faults import (
    Corrupt,
    Drop,
    Duplicate,
    Fault,
    Header,
    InjectError,
    Rechunk,
    Resume,
    Slow,
    Stall,
    Status,
    Truncate,
    parse_fault,
)
from ._timing import format_duration

__all__ = ["LEVELS", "Entry", "Stream", "catalogue", "classify", "stream_of"]

LEVELS = ("quick", "default", "full")
_RANK = {level: n for n, level in enumerate(LEVELS)}
_ENDS = ("close", "abort", "reset")


@dataclass(frozen=True, slots=True)
class Entry:
    """One fault to try: its spec (as the fault grammar reads it), its kind (the fault's name),
    whether it is lossy, the interaction it targets (1-based) and what it tries."""

    spec: str
    kind: str
    lossy: bool
    interaction: int
    why: str

    @property
    def fault(self) -> Fault:
        return parse_fault(self.spec)


@dataclass(frozen=True, slots=True)
class Stream:
    """What the catalogue needs to know of one response body, whatever its framing: each
    event's byte span in the (decoded) body, the terminal event, the provider."""

    framing: str  # sse, ndjson, json-array (ssevcr._framing)
    body: bytes  # decoded
    spans: tuple[tuple[int, int], ...]
    terminal: int | None  # 1-based index of the event that ends the stream, if the provider has one
    provider: str
    encoded: bool  # recorded with a content-encoding (byte positions are not the wire's)
    sized: bool  # recorded with a content-length
    content_type: bool  # recorded with a content-type header

    @property
    def n(self) -> int:
        return len(self.spans)

    @property
    def horizon(self) -> int:
        """The last event a consumer reads: the terminal one, else the last."""
        return self.terminal or self.n

    @property
    def middle(self) -> int:
        """A middle event: neither the first nor the last when there are three or more."""
        return max(1, min((self.n + 1) // 2, self.horizon - 1)) if self.n > 2 else 1


def stream_of(interaction: Interaction) -> Stream | None:
    """The events of a response in any framing (SSE, NDJSON, JSON array; None for a body
    without events, or one that does not decode)."""
    resp = interaction.response
    url = interaction.request.url
    if not framings.may_frame(resp.content_type):
        return None
    body = resp.body
    encoding = resp.content_encoding
    if encoding != "identity":
        decoded = content.decode([(c.at, c.data) for c in resp.chunks], encoding)
        if not decoded.ok:
            return None
        body = b"".join(d for _, d in decoded.pieces)
    framing = framings.framing_of(resp.content_type, body, url)
    if framing is None:
        return None
    events = framings.events(body, framing)
    if not events:
        return None
    terminal = providers.terminal_index(events, framing)
    return Stream(
        framing,
        body,
        tuple((e.start, e.end) for e in events),
        None if terminal is None else terminal + 1,
        providers.detect(url, events),
        encoding != "identity",
        resp.header("content-length") is not None,
        resp.header("content-type") is not None,
    )


# ---------------------------------------------------------------------------------------------
# lossy or lossless


def classify(
    fault: Fault | str,
    *,
    stall_limit: float = 30.0,
    cassettes: Cassette | Sequence[Cassette] | None = None,
) -> tuple[str, bool]:
    """``(kind, lossy)`` of a fault. Without ``cassettes``, the rule for its kind; with them,
    what it does to the interactions it applies to (lossy on any), as the catalogue says."""
    f = parse_fault(fault)
    kind = _KINDS[type(f)]
    if cassettes is not None:
        verdicts = [
            _lossy_on(f, s, stall_limit)
            for n, inter in enumerate(_interactions(cassettes))
            if f.scope.matches(n, inter.request.path) and (s := stream_of(inter)) is not None
        ]
        if verdicts:
            return kind, any(verdicts)
    return kind, _lossy(f, stall_limit)


_KINDS: dict[type, str] = {
    Truncate: "truncate",
    Corrupt: "corrupt",
    Stall: "stall",
    Drop: "drop",
    Duplicate: "duplicate",
    InjectError: "error",
    Status: "status",
    Rechunk: "rechunk",
    Slow: "slow",
    Header: "header",
    Resume: "resume",
}


def _lossy(f: Fault, stall_limit: float) -> bool:
    """The rule for a fault's kind, knowing nothing of the stream."""
    if isinstance(f, Rechunk | Slow):
        return False
    if isinstance(f, Stall):
        return f.duration is None or f.duration >= stall_limit
    if isinstance(f, Header):
        return f.name in ("content-type", "content-encoding")
    if isinstance(f, Resume):  # a client that de-duplicates by id reads a restart right
        return f.how != "restart"
    return True


def _lossy_on(f: Fault, s: Stream, stall_limit: float) -> bool:
    """Whether ``f`` changes what a consumer of stream ``s`` sees (see the module docstring)."""
    if isinstance(f, Truncate):
        return _cut_is_lossy(f, s)
    if isinstance(f, Header):
        return _header_is_lossy(f, s)
    if isinstance(f, Stall | Drop | Corrupt | Duplicate | InjectError):
        j = _event_index(_target(f), s)
        if j is None:
            return False  # not in the stream: the fault changes nothing
        h, no_terminal = s.horizon, s.terminal is None
        if isinstance(f, Stall):
            return j <= h and _lossy(f, stall_limit)
        if isinstance(f, Drop | Corrupt):
            return j <= h
        return j < h or (no_terminal and (j == h or isinstance(f, InjectError)))
    return _lossy(f, stall_limit)


def _cut_is_lossy(f: Truncate, s: Stream) -> bool:
    """A cut loses what a consumer reads when it comes before the end of the terminal event (or,
    without one, when it is not a well-formed end after the last event)."""
    h = s.horizon
    if f.byte is not None:
        return s.encoded or f.byte < s.spans[h - 1][1]
    k = s.n if f.after == "last" else int(f.after or 0)
    return k < h or (s.terminal is None and k <= s.n and f.end != "close")


def _header_is_lossy(f: Header, s: Stream) -> bool:
    """An event stream must be declared one (text/event-stream) and decodable as declared. An
    NDJSON or JSON-array reader reads the lines or elements whatever the content type says."""
    if f.name == "content-encoding":
        return (f.value or "identity").lower() != ("gzip" if s.encoded else "identity")
    if f.name == "content-type" and s.framing == "sse":
        return (f.value or "").split(";")[0].strip().lower() != "text/event-stream"
    return False


def _target(f: Stall | Drop | Corrupt | Duplicate | InjectError) -> int | str:
    """The event a fault names."""
    if isinstance(f, Stall):
        return f.before
    if isinstance(f, InjectError):
        return f.after
    return f.event


def _event_index(ref: int | str, s: Stream) -> int | None:
    j = s.n if ref == "last" else int(ref)
    return j if 1 <= j <= s.n else None


# ---------------------------------------------------------------------------------------------
# the catalogue


@dataclass(frozen=True, slots=True)
class _Try:
    spec: str  # without the interaction's scope
    level: str  # the smallest catalogue that has it
    why: str


def catalogue(
    cassettes: Cassette | Sequence[Cassette],
    *,
    level: str = "default",
    seed: int = 0,
    stall: float = 30.0,
) -> list[Entry]:
    """The faults worth trying on ``cassettes`` at ``level`` (quick, default, full), in order:
    by interaction, then by kind. ``stall``: seconds past the client's timeout."""
    if level not in _RANK:
        raise ConfigError(f"unknown catalogue {level!r}; valid: {', '.join(LEVELS)}")
    if not stall > 0:
        raise ConfigError(f"the catalogue's stall must be longer than 0, got {stall}")
    interactions = _interactions(cassettes)
    rng = random.Random(f"ssevcr-catalogue:{seed}")
    entries: list[Entry] = []
    seen: set[str] = set()
    for n, inter in enumerate(interactions, start=1):
        s = stream_of(inter)
        tries = _for_stream(s, stall, rng) if s is not None else _for_body(inter)
        for t in tries:
            if _RANK[t.level] > _RANK[level]:
                continue
            spec = t.spec if len(interactions) == 1 else f"{t.spec},on={n}"
            if spec in seen:
                continue
            seen.add(spec)
            f = parse_fault(spec)
            kind, lossy = classify(f, stall_limit=stall)
            if s is not None:
                lossy = _lossy_on(f, s, stall)
            entries.append(Entry(spec, kind, lossy, n, t.why))
    return entries


def _interactions(cassettes: Cassette | Sequence[Cassette]) -> list[Interaction]:
    if isinstance(cassettes, Cassette):
        return list(cassettes.interactions)
    return [i for c in cassettes for i in c.interactions]


def _ref(j: int, s: Stream) -> str:
    return "last" if j == s.n else str(j)


def _for_stream(s: Stream, stall: float, rng: random.Random) -> list[_Try]:
    return [
        *_truncations(s),
        *_event_faults(s),
        *_statuses(s.provider),
        *_stalls(s, stall),
        *_splits(len(s.body), rng),
        *_headers(s),
    ]


def _truncations(s: Stream) -> Iterator[_Try]:
    mid = s.middle
    h = s.horizon  # the terminal event: cut just before it (well-formed) and just after it
    quick = {(mid, e) for e in _ENDS} | {(1, "abort"), (h - 1, "close"), (h, "abort")}
    default = {1, 2, mid, s.n - 1, s.n}
    for k in range(1, s.n + 1):
        for end in _ENDS:
            if k == s.n and end == "close":
                continue  # all of it, well ended: nothing changes
            level = "quick" if (k, end) in quick else "default" if k in default else "full"
            what = "the terminal event" if k == s.terminal else f"event {k} of {s.n}"
            yield _Try(f"truncate:after={_ref(k, s)},end={end}", level, f"cut after {what}")
    first, after = s.spans[mid - 1]
    if after - first >= 2 and not s.encoded:
        for how in _ENDS:
            yield _Try(
                f"truncate:byte={first + (after - first) // 2},end={how}",
                "quick" if how == "close" else "full",
                f"cut inside event {mid}",
            )
    utf8 = _inside_a_character(s)
    if utf8 is not None:
        for how in _ENDS:
            yield _Try(
                f"truncate:byte={utf8},end={how}",
                "quick" if how == "abort" else "full",
                "cut inside a multi-byte UTF-8 character",
            )


def _inside_a_character(s: Stream) -> int | None:
    """A byte position inside a multi-byte UTF-8 character of an event a consumer reads, the
    first from the middle event on (else from the start); None without one."""
    if s.encoded:
        return None
    visible = s.spans[: s.horizon]
    order = visible[s.middle - 1 :] + visible[: s.middle - 1]
    for start, end in order:
        for i in range(start + 1, end):
            if 0x80 <= s.body[i] <= 0xBF:  # a continuation byte: inside a character
                return i
    return None


def _event_faults(s: Stream) -> Iterator[_Try]:
    mid, last = s.middle, s.horizon
    terminal = "the terminal event" if s.terminal else "the last event"
    yield _Try(f"drop:event={_ref(last, s)}", "quick", f"drop {terminal}")
    if mid != last:
        yield _Try(f"drop:event={mid}", "quick", f"drop event {mid}")
        yield _Try(f"duplicate:event={mid}", "quick", f"event {mid} twice")
    yield _Try(f"duplicate:event={_ref(last, s)}", "default", f"{terminal} twice")
    yield _Try(f"corrupt:event={mid},how=json", "quick", f"broken JSON in event {mid}")
    yield _Try(f"corrupt:event={mid},how=utf8", "default", f"invalid UTF-8 in event {mid}")
    yield _Try(f"corrupt:event={mid},how=bytes", "full", f"random bytes in event {mid}")
    late = max(1, last - 1)
    yield _Try(f"error:after={late}", "quick", f"the provider's error after event {late}")
    if late != 1:
        yield _Try("error:after=1", "default", "the provider's error after event 1")


def _statuses(provider: str) -> Iterator[_Try]:
    yield _Try("status:429,retry_after=1s", "quick", "rate limited (retry-after 1 s)")
    yield _Try("status:500", "quick", "internal server error")
    yield _Try("status:503", "default", "service unavailable")
    overload = providers.OVERLOAD.get(provider)
    if overload is not None and overload not in (429, 500, 503):
        yield _Try(f"status:{overload}", "default", f"{provider} overloaded")


def _stalls(s: Stream, stall: float) -> Iterator[_Try]:
    long, short = format_duration(stall), format_duration(min(1.0, stall / 10))
    mid = max(2, s.middle) if s.n >= 2 else 1
    yield _Try(f"stall:before={mid},for={long}", "quick", f"stall {long} before event {mid}")
    yield _Try(f"stall:before={mid},for={short}", "quick", f"stall {short} before event {mid}")
    if mid != 1:
        yield _Try(f"stall:before=1,for={long}", "quick", f"stall {long} before event 1")
        yield _Try(f"stall:before=1,for={short}", "default", f"stall {short} before event 1")


def _splits(size: int, rng: random.Random) -> Iterator[_Try]:
    yield _Try("rechunk:size=1", "quick", "1-byte pieces")
    yield _Try("rechunk:hostile", "quick", "split between CR and LF, inside characters")
    for _ in range(3):
        yield _Try(
            f"rechunk:random,seed={rng.randrange(1 << 30)}", "default", "random pieces (seeded)"
        )
    bps = max(1000, size // 2)
    yield _Try(f"slow:bps={bps}", "quick", f"{bps} bytes/s (about 2 s)")


def _headers(s: Stream) -> Iterator[_Try]:
    what = "an event stream" if s.framing == "sse" else s.framing
    yield _Try("header:content-type=text/plain", "quick", f"not declared {what}")
    if s.content_type:
        yield _Try("header:drop=content-type", "default", "no content-type")
    if not s.sized:
        yield _Try("header:content-length", "default", "a content-length on the stream")
    if s.encoded:
        yield _Try("header:drop=content-encoding", "default", "encoded, not declared so")
    else:
        yield _Try("header:content-encoding=gzip", "default", "declared gzip, sent plain")


def _for_body(inter: Interaction) -> Iterator[_Try]:
    """A body without events: its status, a cut, small pieces, slow."""
    yield from _statuses(providers.detect(inter.request.url))
    size = len(inter.response.body)
    if size >= 2:
        yield _Try(f"truncate:byte={size // 2},end=close", "quick", "the body cut in half")
        yield _Try(f"truncate:byte={size // 2},end=abort", "default", "the body cut in half")
    if size:
        yield _Try("rechunk:size=1", "default", "1-byte pieces")
        yield _Try(f"slow:bps={max(1000, size // 2)}", "default", "slow body")
