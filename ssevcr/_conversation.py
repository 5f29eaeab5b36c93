"""A recorded WebSocket conversation as a replay plan, and the sans-IO follower that plays it.
Pure: no sockets, clocks or files (the replay server's ``_websocket`` does the I/O with wsproto).

    plan = build(websocket, timing=Timing(), faults=[...], seed="0:3:0")
    talk = Conversation(plan)                   # at the handshake: replay time 0
    talk.received(at, data, binary)             # each client message: None, or why it is wrong
    talk.next(at) -> Wait(until) | Out | Finish # what to do now (until None: the client's turn)

**Timing.** Each server message is anchored to the client message that came before it (or to
the handshake): it goes out at its recorded offset from that client message, mapped by the
timing policy, measured from when the client's message *arrived in the replay*. A slower client
still gets a correct conversation: what answers its message waits for it. Messages never go out
of recorded order (a deadline is never earlier than the previous one).

**Client messages** are matched in order against the recorded ones, as the plan's ``match``
says (``ssevcr replay --ws-match``, the ``ws_match`` option): ``type`` (the default) compares a
JSON object's ``type`` (or ``event``) field, other JSON canonically, other text exactly, binary
by opcode (audio differs every run); ``json`` compares JSON canonically (a recorded
``REDACTED`` string stands for any value, as in request matching) and the rest exactly;
``exact`` compares opcode and bytes. A message that differs gets an explanation naming what
was expected, for JSON the first differing field (the adapter sends it to the client and
closes with 1008).

**Faults** count the server's messages from 1 (as events are counted in a stream):
``drop``/``duplicate``/``corrupt`` change one message (``how=json`` cuts it in half,
``bytes`` replaces it with seeded random text, or bytes for a binary message; ``utf8`` applies
to binary messages only: a text frame must be UTF-8), ``stall`` delays a message and the rest
of its turn (``forever``: nothing more), ``error`` sends OpenAI Realtime's ``error`` event after
message N and closes with 1011, ``close`` closes after message N with its code (1006: the TCP
connection is dropped, no close frame), ``truncate:after=N`` closes (``end=close``: 1000),
drops (``abort``) or resets (``reset``) there, ``rechunk`` fragments every server message into
frames of ``size`` bytes (``random``: seeded sizes up to ``max``; ``hostile``: 1 byte), never
inside a UTF-8 character of a text message.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from ._cassette import WebSocket, WsMessage
from ._faults import (
    CloseWs,
    Corrupt,
    Drop,
    Duplicate,
    EventRef,
    Fault,
    InjectError,
    Rechunk,
    Stall,
    Truncate,
)
from ._matching import json_difference
from ._providers import realtime_error
from ._timing import Timing

__all__ = [
    "Conversation",
    "Ending",
    "Finish",
    "Out",
    "Plan",
    "Wait",
    "build",
    "describe",
    "mismatch",
]

Match = Literal["type", "json", "exact"]  # _matching.WS_MATCHES
How = Literal["close", "drop", "reset", "hang", "client"]


@dataclass(frozen=True, slots=True)
class Out:
    """A server message to send ``delay`` replay seconds after client message ``after``
    arrived (0: after the handshake). ``pieces``: fragment sizes in bytes (rechunk), () for one
    frame. ``number``: the recorded server message (from 1), 0 for one a fault added."""

    after: int
    delay: float
    data: bytes
    binary: bool = False
    pieces: tuple[int, ...] = ()
    number: int = 0


@dataclass(frozen=True, slots=True)
class Ending:
    """How the conversation ends, timed like a message: a close frame (``code``, ``reason``),
    the TCP connection dropped (``drop``: the client sees 1006) or reset, ``hang`` (open and
    silent until the client leaves), or ``client`` (wait for the client's close)."""

    after: int
    delay: float
    how: How
    code: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    messages: tuple[Out, ...]
    expected: tuple[WsMessage, ...]  # the client's messages, in recorded order
    ending: Ending
    fired: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    match: Match = "type"  # how the client's messages are compared


@dataclass(frozen=True, slots=True)
class Wait:
    until: float | None  # None: until the client's next message


@dataclass(frozen=True, slots=True)
class Finish:
    ending: Ending


_CLIENT_TURN = Wait(None)


# ---------------------------------------------------------------------------------------------
# the plan


def build(
    ws: WebSocket,
    *,
    timing: Timing | None = None,
    faults: Sequence[Fault] = (),
    seed: int | str = 0,
    match: Match = "type",
) -> Plan:
    """The replay of ``ws`` under ``timing`` with ``faults`` (scoped to this play already),
    comparing the client's messages as ``match`` says."""
    timing = timing or Timing()
    close = ws.close
    tmap = timing.retime([0.0, *(m.at for m in ws.messages), *([close.at] if close else [])])
    outs: list[Out] = []
    expected: list[WsMessage] = []
    anchor, anchor_at = 0, 0.0
    for m in ws.messages:
        if m.from_client:
            expected.append(m)
            anchor, anchor_at = anchor + 1, m.at
            continue
        delay = max(0.0, tmap[m.at] - tmap[anchor_at])
        outs.append(Out(anchor, delay, m.data, m.binary, number=len(outs) + 1))
    if close is None:
        ending = Ending(anchor, 0.0, "hang")
    else:
        delay = max(0.0, tmap[close.at] - tmap[anchor_at])
        how: How = {"client": "client", "server": "close", "none": "drop"}[close.by]  # type: ignore[assignment]
        ending = Ending(anchor, delay, how, close.code, close.reason)
    plan = Plan(tuple(outs), tuple(expected), ending, match=match)
    rng = random.Random(f"ssevcr:ws:{seed}")
    for f in faults:
        plan = _apply(plan, f, rng)
    return plan


def _apply(plan: Plan, f: Fault, rng: random.Random) -> Plan:
    if isinstance(f, Rechunk):
        return _rechunk(plan, f, rng)
    if isinstance(f, Truncate) and f.after is None:
        return _skip(plan, f, "byte offsets do not apply to WebSocket messages; use after=N")
    if not isinstance(f, Drop | Duplicate | Corrupt | Stall | InjectError | CloseWs | Truncate):
        return _skip(plan, f, "does not apply to WebSocket conversations")
    ref: EventRef = (
        f.event
        if isinstance(f, Drop | Duplicate | Corrupt)
        else f.before
        if isinstance(f, Stall)
        else f.after  # type: ignore[assignment]  # (Truncate.after is set: see above)
    )
    numbers = [o.number for o in plan.messages if o.number]
    count = max(numbers, default=0)
    number = count if ref == "last" else ref
    assert isinstance(number, int)
    if number == 0 and isinstance(f, CloseWs | Truncate):  # at the handshake
        return _end_at(plan, 0, _cut_ending(f, None), f)
    i = next((i for i, o in enumerate(plan.messages) if o.number == number), None)
    if i is None:
        return _skip(plan, f, f"the conversation has {count} server messages")
    msgs = list(plan.messages)
    target = msgs[i]
    if isinstance(f, Drop):
        del msgs[i]
    elif isinstance(f, Duplicate):
        msgs.insert(i + 1, replace(target, number=0))
    elif isinstance(f, Corrupt):
        if f.how == "utf8" and not target.binary:
            return _skip(plan, f, "a text frame must be UTF-8 (use how=json or how=bytes)")
        msgs[i] = replace(target, data=_corrupt(target, f.how, rng), pieces=())
    elif isinstance(f, Stall):
        if f.duration is None:
            return _end_at(plan, i, Ending(target.after, target.delay, "hang"), f)
        stalled = [
            replace(o, delay=o.delay + f.duration) if o.after == target.after else o
            for o in msgs[i:]
        ]
        ending = plan.ending
        if ending.after == target.after:
            ending = replace(ending, delay=ending.delay + f.duration)
        return replace(plan, messages=(*msgs[:i], *stalled), ending=ending, fired=_fire(plan, f))
    elif isinstance(f, InjectError):
        error = Out(target.after, target.delay, realtime_error(message=f.message))
        msgs = [*msgs[: i + 1], error]
        ending = Ending(target.after, target.delay, "close", 1011, "server error")
        return replace(plan, messages=tuple(msgs), ending=ending, fired=_fire(plan, f))
    else:  # CloseWs, Truncate: the end after message i
        return _end_at(plan, i + 1, _cut_ending(f, target), f)
    return replace(plan, messages=tuple(msgs), fired=_fire(plan, f))


def _cut_ending(f: CloseWs | Truncate, at: Out | None) -> Ending:
    after, delay = (at.after, at.delay) if at is not None else (0, 0.0)
    if isinstance(f, CloseWs):
        if f.code == 1006:
            return Ending(after, delay, "drop")
        return Ending(after, delay, "close", f.code, f.reason)
    how: How = {"close": "close", "abort": "drop", "reset": "reset"}[f.end]  # type: ignore[assignment]
    return Ending(after, delay, how, 1000 if how == "close" else None)


def _end_at(plan: Plan, keep: int, ending: Ending, f: Fault) -> Plan:
    """Keep the first ``keep`` messages, then ``ending``."""
    return replace(plan, messages=plan.messages[:keep], ending=ending, fired=_fire(plan, f))


def _fire(plan: Plan, f: Fault) -> tuple[str, ...]:
    return (*plan.fired, str(f))


def _skip(plan: Plan, f: Fault, why: str) -> Plan:
    return replace(plan, skipped=(*plan.skipped, f"{f}: {why}"))


def _corrupt(out: Out, how: str, rng: random.Random) -> bytes:
    data = out.data
    if how == "json":
        return data[: len(data) // 2] if len(data) > 1 else b"{"
    if how == "utf8":  # binary only
        mid = len(data) // 2
        return data[:mid] + b"\xff\xfe" + data[mid:]
    size = max(4, len(data))
    if out.binary:
        return bytes(rng.randrange(256) for _ in range(size))
    return bytes(rng.randrange(32, 127) for _ in range(size))  # still text


def _rechunk(plan: Plan, f: Rechunk, rng: random.Random) -> Plan:
    own = rng if f.seed is None else random.Random(f"ssevcr:rechunk:{f.seed}")
    msgs = []
    for o in plan.messages:
        if f.how == "random":
            sizes = _sizes(len(o.data), lambda: own.randint(1, f.max))
        else:
            sizes = _sizes(len(o.data), (lambda: 1) if f.how == "hostile" else (lambda: f.size))
        if not o.binary:
            sizes = _on_characters(o.data, sizes)
        msgs.append(replace(o, pieces=tuple(sizes) if len(sizes) > 1 else ()))
    return replace(plan, messages=tuple(msgs), fired=_fire(plan, f))


def _sizes(total: int, draw: Callable[[], int]) -> list[int]:
    sizes, left = [], total
    while left > 0:
        n = min(left, max(1, draw()))
        sizes.append(n)
        left -= n
    return sizes


def _on_characters(data: bytes, sizes: list[int]) -> list[int]:
    """The cuts of ``sizes`` moved forward to the next UTF-8 character boundary."""
    out, start, pos = [], 0, 0
    for n in sizes:
        pos = max(pos + n, start)
        while pos < len(data) and data[pos] & 0xC0 == 0x80:  # a continuation byte
            pos += 1
        if pos > start:
            out.append(min(pos, len(data)) - start)
            start = min(pos, len(data))
    return out


# ---------------------------------------------------------------------------------------------
# matching client messages


def _key(data: bytes, binary: bool, match: Match) -> tuple[str, object]:
    if binary:
        return ("binary", None if match == "type" else data)
    text = data.decode("utf-8", "replace")
    if match == "exact":
        return ("text", text)
    value = _json(data)
    if value is _NOT_JSON:
        return ("text", text)
    if match == "type" and isinstance(value, dict):
        for name in ("type", "event"):
            if isinstance(value.get(name), str):
                return (name, value[name])
    try:
        return ("json", json.dumps(value, sort_keys=True, separators=(",", ":")))
    except (ValueError, RecursionError):
        return ("text", text)


_NOT_JSON = object()


def _json(data: bytes) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return _NOT_JSON


def describe(data: bytes, binary: bool, match: Match = "type") -> str:
    """A client message as a near-miss explanation names it (never more than ~80 characters
    of it)."""
    kind, value = _key(data, binary, "type" if match == "json" else match)
    if kind == "binary":
        return f"a binary message of {len(data)} bytes"
    if kind in ("type", "event"):
        return f"a message with {kind} {value!r}"
    shown = str(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"the {'JSON' if kind == 'json' else 'text'} message {shown!r}"


def mismatch(expected: WsMessage, data: bytes, binary: bool, match: Match = "type") -> str | None:
    """Why a client message is not the recorded one, or None when it matches."""
    if match == "json" and not binary and not expected.binary:
        a, b = _json(expected.data), _json(data)
        if a is not _NOT_JSON and b is not _NOT_JSON:
            diff = json_difference(a, b)
            if diff is None:
                return None
            return f"expected {describe(expected.data, False, match)}, the JSON differs at {diff}"
    if _key(expected.data, expected.binary, match) == _key(data, binary, match):
        return None
    problem = (
        f"expected {describe(expected.data, expected.binary, match)}, "
        f"got {describe(data, binary, match)}"
    )
    if match == "exact" and binary == expected.binary:
        a, b = expected.data, data
        at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        at = min(len(a), len(b)) if at is None else at
        problem += f" (the bytes differ from byte {at}: recorded {len(a)}, got {len(b)})"
    return problem


# ---------------------------------------------------------------------------------------------
# the follower


class Conversation:
    """One replay of a plan, from the handshake (replay time 0). Not thread-safe: one
    connection's loop drives it."""

    __slots__ = ("_arrived", "_last", "_next", "match", "plan")

    def __init__(self, plan: Plan, *, match: Match | None = None) -> None:
        self.plan = plan
        self.match: Match = plan.match if match is None else match
        self._arrived = [0.0]  # when the handshake, then each client message, arrived
        self._next = 0  # the next message to send
        self._last = 0.0  # the deadline of the latest message sent

    @property
    def heard(self) -> int:
        """Client messages received and matched."""
        return len(self._arrived) - 1

    @property
    def sent(self) -> int:
        """Planned messages handed out by :meth:`next`."""
        return self._next

    @property
    def at_end(self) -> bool:
        """Only the planned ending is left: every planned server message was handed out and
        every client message it follows was heard (what remains is its delay)."""
        plan = self.plan
        return self._next >= len(plan.messages) and plan.ending.after < len(self._arrived)

    def received(self, at: float, data: bytes, binary: bool) -> str | None:
        """A client message arrived at ``at``: None when it is the next recorded one (what
        answers it is now due at its offsets from ``at``), else why it is not."""
        n = self.heard
        expected = self.plan.expected
        if n >= len(expected):
            return (
                f"client message {n + 1} was not in the recording (it has {len(expected)}): "
                f"got {describe(data, binary, self.match)}"
            )
        problem = mismatch(expected[n], data, binary, self.match)
        if problem is not None:
            return f"client message {n + 1} differs from the recording: {problem}"
        self._arrived.append(at)
        return None

    def next(self, at: float) -> Wait | Out | Finish:
        """What to do at replay time ``at``: wait (until a deadline, or for the client), send
        a message (then ask again), or end."""
        plan = self.plan
        item: Out | Ending = (
            plan.messages[self._next] if self._next < len(plan.messages) else plan.ending
        )
        if item.after >= len(self._arrived):
            return _CLIENT_TURN
        deadline = self._arrived[item.after] + item.delay
        if deadline < self._last:
            deadline = self._last
        if at < deadline:
            return Wait(deadline)
        self._last = deadline
        if isinstance(item, Out):
            self._next += 1
            return item
        return Finish(item)
