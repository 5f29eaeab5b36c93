"""The cassette model: pure, frozen data. No files, no clocks (see ``_format`` for the file format).

cassette → interaction → request + response → chunks (offset, bytes as read off the wire, still
content-encoded) + how the response ended. Chunks are the truth; events, TTFT and gaps are derived
by the SSE parser.

A response keeps its body columnar — one byte string plus the size and arrival offset of each
chunk — because that is how it is stored and it loads a 100k-event stream in milliseconds.
Offsets are seconds (float) from the moment the request was sent. A response loaded from a large
cassette may hold its body and chunk tables still in the file: they are read and checked the
first time one of them is used (see ``_format``), so a cassette loads without reading them.
"""

from __future__ import annotations

import enum
import math
import operator
import re
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from types import MappingProxyType
from urllib.parse import urlsplit

from ._errors import InvalidValueError

TYPE_CHECKING = False  # loading a cassette does not import typing
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Cassette",
    "Chunk",
    "End",
    "Headers",
    "Interaction",
    "Outcome",
    "Pieces",
    "Request",
    "Response",
    "Resumes",
    "WebSocket",
    "WsClose",
    "WsMessage",
    "close_problem",
    "column_problem",
    "head_problems",
    "header",
    "resumes_problem",
    "with_body",
    "ws_problem",
]

Headers = tuple[tuple[str, str], ...]
"""Header pairs in recorded order; names and values are the wire bytes decoded as latin-1."""

_EMPTY_META: Mapping[str, str] = MappingProxyType({})


_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_REASON = re.compile(
    r"[\t \x21-\x7e\x80-\xff]*"
)  # RFC 9110 reason-phrase: HTAB, SP, VCHAR, obs-text
_FIELD_VALUE = _REASON  # field-content: the same bytes (no CR, LF, NUL or other controls)
_HTTP_VERSION = re.compile(
    r"[\x21-\x7e]{0,16}"
)  # what was recorded (HTTP/1.1, HTTP/2.0); never written


def head_problems(
    status: int, reason: str, headers: Headers, http_version: str = "HTTP/1.1"
) -> list[tuple[str, str]]:
    """What makes a response head unsafe to write: ``(field, problem)`` pairs, empty when it is
    valid HTTP/1.1 (status 100-599, the reason an RFC 9110 reason-phrase, header names tokens,
    values without CR, LF, NUL or other control bytes). Checked where cassettes are loaded and
    where heads are written, so no recorded byte can split a response."""
    problems: list[tuple[str, str]] = []
    if not 100 <= status <= 599:
        problems.append(("status", f"expected an HTTP status (100-599), got {status}"))
    if not _REASON.fullmatch(reason) or not _latin1(reason):
        problems.append(("reason", f"not a valid reason phrase (control bytes): {reason!r}"))
    if not _HTTP_VERSION.fullmatch(http_version):
        problems.append(("http_version", f"not an HTTP version: {http_version!r}"))
    for i, (name, value) in enumerate(headers):
        if not _TOKEN.fullmatch(name):
            problems.append((f"headers[{i}]", f"header name is not a token: {name!r}"))
        elif not _FIELD_VALUE.fullmatch(value) or not _latin1(value):
            problems.append(
                (
                    f"headers[{i}]",
                    f"value of {name!r} holds control bytes (CR, LF, NUL...): {value!r}",
                )
            )
    return problems


def column_problem(
    body_size: int, sizes: Sequence[int], ats: Sequence[float]
) -> tuple[str, str] | None:
    """What makes a response's chunk tables unusable, as ``(field, problem)``, or None: one size
    and one time per chunk, sizes adding up to the body, times finite, >= 0 and non-decreasing.
    Checked where responses are built and where cassettes are loaded."""
    if len(sizes) != len(ats):
        return "chunk_at", f"{len(ats)} chunk times for {len(sizes)} chunks"
    total = sum(sizes)
    if total != body_size:
        return "chunk_sizes", f"chunk sizes add up to {total}, body has {body_size} bytes"
    # one C-speed pass: any NaN fails a comparison, so this also refuses NaN
    if ats and not (
        ats[0] >= 0 and math.isfinite(ats[-1]) and all(map(operator.le, ats, islice(ats, 1, None)))
    ):
        bad = next(
            i
            for i, at in enumerate(ats)
            if not (math.isfinite(at) and at >= (ats[i - 1] if i else 0.0))
        )
        return (
            f"chunk_at[{bad}]",
            f"chunk times must be finite and non-decreasing, got {ats[bad]!r}",
        )
    return None


Columns = tuple[bytes, "array[int]", "array[float]"]
"""A response's body and chunk tables (sizes ``'I'``, offsets ``'d'``)."""


def _latin1(text: str) -> bool:
    return all(ord(c) < 256 for c in text)


def header(headers: Headers, name: str, default: str | None = None) -> str | None:
    """The first value of a header (case-insensitive)."""
    lname = name.lower()
    for k, v in headers:
        if k.lower() == lname:
            return v
    return default


class Outcome(enum.StrEnum):
    COMPLETE = "complete"
    UPSTREAM_ERROR = "upstream_error"
    CLIENT_DISCONNECTED = "client_disconnected"


@dataclass(frozen=True, slots=True)
class Chunk:
    at: float
    data: bytes


Pieces = list[tuple[float, bytes]]
"""A body being worked on (decoded, redacted, cut): ``(at, data)`` pairs, each chunk's time."""


@dataclass(frozen=True, slots=True)
class End:
    at: float
    outcome: Outcome = Outcome.COMPLETE
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    headers: Headers = ()
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"

    @property
    def query(self) -> str:
        return urlsplit(self.url).query

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def header(self, name: str, default: str | None = None) -> str | None:
        return header(self.headers, name, default)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str = ""
    http_version: str = "HTTP/1.1"
    headers: Headers = ()
    headers_at: float = 0.0
    body: bytes = b""
    # Columnar chunk tables as typed arrays ('I' sizes, 'd' offsets): no Python object per chunk,
    # which is what lets a 100k-chunk cassette load in milliseconds. Treat them as read-only.
    chunk_sizes: Sequence[int] = field(default_factory=lambda: array("I"))
    chunk_at: Sequence[float] = field(default_factory=lambda: array("d"))
    end: End = field(default_factory=lambda: End(0.0))
    # set on a response loaded with its columns still in the file: reads and checks them once
    _columns: Callable[[], Columns] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for name, code in (("chunk_sizes", "I"), ("chunk_at", "d")):
            value = getattr(self, name)
            if not (isinstance(value, array) and value.typecode == code):
                object.__setattr__(self, name, array(code, value))
        # what cannot be saved and loaded again is refused here, not discovered at load time
        problem = column_problem(len(self.body), self.chunk_sizes, self.chunk_at)
        if problem is not None:
            raise InvalidValueError(problem[1], where=problem[0])
        for name, t in (("headers_at", self.headers_at), ("end.at", self.end.at)):
            if not (math.isfinite(t) and t >= 0):
                raise InvalidValueError(f"must be a finite time >= 0, got {t!r}", where=name)

    @classmethod
    def _unchecked(cls, columns: Columns | Callable[[], Columns], **fields: Any) -> Response:
        """A response from values checked already (by the format, which names the file in its
        errors). ``columns``: the body and tables, or what reads and checks them on first use."""
        self = object.__new__(cls)
        for name, value in fields.items():
            object.__setattr__(self, name, value)
        if callable(columns):
            object.__setattr__(self, "_columns", columns)
        else:
            object.__setattr__(self, "_columns", None)
            self._set_columns(columns)
        return self

    def _set_columns(self, columns: Columns) -> None:
        body, sizes, ats = columns
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "chunk_sizes", sizes)
        object.__setattr__(self, "chunk_at", ats)

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            # reached only for an unset slot: the columns of a response loaded lazily
            columns = self._columns
            if columns is None or name not in ("body", "chunk_sizes", "chunk_at"):
                raise AttributeError(name)
            self._set_columns(columns())  # raises CassetteError naming the file and field
            object.__setattr__(self, "_columns", None)
            return getattr(self, name)

    @classmethod
    def from_chunks(
        cls,
        status: int,
        chunks: Sequence[Chunk | tuple[float, bytes]],
        *,
        reason: str = "",
        http_version: str = "HTTP/1.1",
        headers: Headers = (),
        headers_at: float = 0.0,
        end: End | None = None,
    ) -> Response:
        pairs = [
            (c.at, c.data) if isinstance(c, Chunk) else (float(c[0]), bytes(c[1])) for c in chunks
        ]
        if end is None:
            end = End(pairs[-1][0] if pairs else headers_at)
        return cls(
            status=status,
            reason=reason,
            http_version=http_version,
            headers=tuple(headers),
            headers_at=headers_at,
            body=b"".join(d for _, d in pairs),
            chunk_sizes=array("I", [len(d) for _, d in pairs]),
            chunk_at=array("d", [a for a, _ in pairs]),
            end=end,
        )

    @property
    def chunks(self) -> Iterator[Chunk]:
        body, pos = self.body, 0
        for size, at in zip(self.chunk_sizes, self.chunk_at, strict=True):
            yield Chunk(at, body[pos : pos + size])
            pos += size

    def header(self, name: str, default: str | None = None) -> str | None:
        return header(self.headers, name, default)

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    @property
    def is_event_stream(self) -> bool:
        return self.content_type == "text/event-stream"

    @property
    def content_encoding(self) -> str:
        return (self.header("content-encoding") or "identity").strip().lower()


def with_body(
    response: Response,
    chunks: Sequence[Chunk | tuple[float, bytes]],
    *,
    headers: Headers | None = None,
    end: End | None = None,
) -> Response:
    """``response`` with another body: its status, reason, version and head time kept, ``chunks``
    its body, ``headers`` and ``end`` its own unless given."""
    return Response.from_chunks(
        response.status,
        chunks,
        reason=response.reason,
        http_version=response.http_version,
        headers=response.headers if headers is None else headers,
        headers_at=response.headers_at,
        end=response.end if end is None else end,
    )


WS_CLOSED_BY = ("client", "server", "none")
"""Who ended a WebSocket conversation: a side's close frame, or ``none`` (the connection was
dropped, or the recording stopped, without a close frame: 1006)."""


def close_problem(code: int | None, reason: str) -> str | None:
    """What makes a close frame unsendable (RFC 6455 7.4): a code a peer may send (1000-1003,
    1007-1014, 3000-4999), a reason of at most 123 bytes and only with a code; or None."""
    if code is None:
        return "a close reason needs a close code" if reason else None
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        return f"close code {code} cannot be sent in a close frame"
    if len(reason.encode("utf-8", "surrogatepass")) > 123:
        return "close reason longer than 123 bytes"
    return None


@dataclass(frozen=True, slots=True)
class WsMessage:
    """One WebSocket message as the application sent it (fragments joined, extensions undone):
    ``at`` seconds from the handshake (the 101 response), ``from_client`` its direction,
    ``binary`` its opcode (else text, whose ``data`` is UTF-8)."""

    at: float
    from_client: bool
    data: bytes
    binary: bool = False

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class WsClose:
    """How the conversation ended: ``at`` seconds from the handshake, the close frame's
    ``code`` and ``reason`` (None/"" without one), ``by`` which side closed first."""

    at: float
    code: int | None = 1000
    reason: str = ""
    by: str = "client"


@dataclass(frozen=True, slots=True)
class WebSocket:
    """A recorded WebSocket conversation: its messages in arrival order, then its close (None:
    it was still open when the recording stopped)."""

    messages: tuple[WsMessage, ...] = ()
    close: WsClose | None = None

    def __post_init__(self) -> None:
        problem = ws_problem(self)
        if problem is not None:
            raise InvalidValueError(problem[1], where=problem[0])

    @property
    def server_messages(self) -> tuple[WsMessage, ...]:
        return tuple(m for m in self.messages if not m.from_client)

    @property
    def client_messages(self) -> tuple[WsMessage, ...]:
        return tuple(m for m in self.messages if m.from_client)


def ws_problem(ws: WebSocket) -> tuple[str, str] | None:
    """What makes a conversation unreplayable, as ``(field, problem)``, or None: times finite,
    >= 0 and non-decreasing (one clock stamped them all), text messages valid UTF-8, a close
    that a peer can send."""
    prev = 0.0
    for i, m in enumerate(ws.messages):
        if not (math.isfinite(m.at) and m.at >= prev):
            return f"messages[{i}].at", f"times must be finite and non-decreasing, got {m.at!r}"
        prev = m.at
        if not m.binary:
            try:
                m.data.decode("utf-8")
            except UnicodeDecodeError as e:
                return f"messages[{i}]", f"a text message that is not UTF-8 (byte {e.start})"
    close = ws.close
    if close is not None:
        if not (math.isfinite(close.at) and close.at >= prev):
            return "close.at", f"must be finite and after the last message, got {close.at!r}"
        if close.by not in WS_CLOSED_BY:
            return "close.by", f"expected one of {', '.join(WS_CLOSED_BY)}, got {close.by!r}"
        problem = close_problem(close.code, close.reason)
        if problem is None and close.by == "none" and close.code is not None:
            problem = "a connection dropped without a close frame has no close code"
        if problem is not None:
            return "close", problem
    return None


def resumes_problem(interaction: object, after_id: object) -> str | None:
    """Why ``(interaction, after_id)`` is not a link to an earlier stream, or None: an index
    >= 0 and an event ID (non-empty text without NUL, CR or LF, as SSE allows)."""
    if not isinstance(interaction, int) or isinstance(interaction, bool) or interaction < 0:
        return f"interaction: expected an index >= 0, got {interaction!r}"[:200]
    if not isinstance(after_id, str) or not after_id or any(c in after_id for c in "\0\r\n"):
        return f"after_id: expected an event ID (text without NUL, CR or LF), got {after_id!r}"[
            :200
        ]
    return None


@dataclass(frozen=True, slots=True)
class Resumes:
    """A recorded reconnection's link: this interaction's request carried ``Last-Event-ID:
    after_id``, naming an event of the earlier stream ``interaction`` (its index in the same
    cassette): the connection continues that stream after that event."""

    interaction: int
    after_id: str

    def __post_init__(self) -> None:
        problem = resumes_problem(self.interaction, self.after_id)
        if problem is not None:
            raise InvalidValueError(problem, where="resumes")


@dataclass(frozen=True, slots=True)
class Interaction:
    """One exchange. A WebSocket interaction is its handshake (the request, the 101 response)
    and the conversation that followed (``websocket``). ``resumes``: a recorded reconnection's
    link to the stream it continues (see :class:`Resumes`)."""

    request: Request
    response: Response
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY_META)
    websocket: WebSocket | None = None
    resumes: Resumes | None = None

    def __post_init__(self) -> None:
        if self.websocket is not None and self.response.status != 101:
            raise InvalidValueError(
                f"a WebSocket conversation needs a 101 response, got {self.response.status}",
                where="websocket",
            )


@dataclass(frozen=True, slots=True)
class Cassette:
    interactions: tuple[Interaction, ...] = ()
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY_META)

    def __post_init__(self) -> None:
        for n, inter in enumerate(self.interactions):
            if inter.resumes is not None and inter.resumes.interaction >= n:
                raise InvalidValueError(
                    f"interaction {n} resumes interaction {inter.resumes.interaction}: "
                    "a link names an earlier one",
                    where=f"interactions[{n}].resumes",
                )

    def __len__(self) -> int:
        return len(self.interactions)

    def append(self, interaction: Interaction) -> Cassette:
        return replace(self, interactions=(*self.interactions, interaction))
