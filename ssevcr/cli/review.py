"""``ssevcr show``, ``export``, ``import`` and ``audit``: reviewing cassettes.

Formatting only. Figures come from :mod:`ssevcr._stats` (the SSE parser over the recorded
chunks), secrets from :mod:`ssevcr._audit`, pictures from :mod:`ssevcr._picture`, files from
:mod:`ssevcr._format` and :mod:`ssevcr._store`. Every cassette problem is a
:class:`~ssevcr._errors.CassetteError`, which the group turns into one ``Error: ...`` line.

Text from a cassette reaches the terminal only through :func:`ssevcr._secrets.safe` or
:func:`ssevcr._secrets.printable`: credentials masked, control sequences escaped. Output that is
not a terminal (a file, a pipe, git) is never wrapped. A compressed body larger than
``--max-decoded`` (a decompression bomb) is shown as recorded, with a note saying why.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from .. import _audit as audit
from .. import _content as content
from .. import _format, _store
from .. import _picture as picture
from .._cassette import Cassette, WebSocket
from .._errors import CassetteError, SsevcrError
from .._faults import parse_faults
from .._framing import EVENT_FRAMES, Frame
from .._secrets import Span, mask, mask_header, mask_url, printable, safe
from .._stats import (
    InteractionStats,
    arrivals,
    decoded_pieces,
    excerpt,
    interaction_stats,
    secret_spans,
    stall_indices,
)
from .._timing import parse_timing
from . import not_an_input, write_text

if TYPE_CHECKING:
    pass

__all__ = [
    "audit_command",
    "export_command",
    "import_command",
    "render_diff_text",
    "show_command",
    "summary_json",
]

_SPARK = "▁▂▃▄▅▆▇█"
_EIGHTHS = " ▏▎▍▌▋▊▉█"


# ---------------------------------------------------------------------------------------------
# small formatting helpers


def _dur(t: float | None) -> str:
    if t is None:
        return "—"
    if t < 1:
        return f"{t * 1e3:.1f}ms"
    return f"{t:.3f}s"


def _esc(text: str) -> str:
    """Recorded text is never rich markup (``[red]`` in a URL or an event stays as it is) nor a
    terminal control sequence (``\\x1b[2J`` is shown, not obeyed)."""
    from rich.markup import escape

    return escape(printable(text))


_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def _json_text(doc: Any) -> str:
    """JSON with every control character escaped (json escapes C0; C1 controls such as the 8-bit
    CSI and bidi overrides are escaped here too), so printing it is safe."""
    text = json.dumps(doc, ensure_ascii=False)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _sparkline(values: Sequence[float], width: int) -> str:
    if not values:
        return ""
    if len(values) > width:  # one character per bucket, the bucket's largest gap
        size = len(values) / width
        values = [
            max(values[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)])
            for i in range(width)
        ]
    top = max(values) or 1.0
    return "".join(_SPARK[min(7, int(v / top * 7.999))] for v in values)


def _bar(value: float, top: float, width: int = 16) -> str:
    if top <= 0:
        return ""
    eighths = round(value / top * width * 8)
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def _decoding_note(st: InteractionStats) -> str | None:
    if st.decode_problem:
        return st.decode_problem
    if st.decoded:
        return (
            f"{st.encoding}-encoded on the wire ({st.wire_bytes} bytes); "
            f"decoded for display ({st.body_bytes} bytes)"
        )
    return None


# ---------------------------------------------------------------------------------------------
# show: machine output


def summary_json(
    path: str, cassette: Cassette, *, limit: int = content.DEFAULT_LIMIT
) -> dict[str, Any]:
    """The ``show --json`` document. Times are seconds from the moment the request was sent.
    Credentials in its text are masked."""
    out = []
    for n, inter in enumerate(cassette.interactions, 1):
        st = interaction_stats(n, inter, limit=limit)
        out.append(
            {
                "index": st.index,
                "resumes": None
                if inter.resumes is None
                else {"index": inter.resumes.interaction + 1, "after_id": inter.resumes.after_id},
                "method": st.method,
                "url": st.url,
                "status": st.status,
                "reason": st.reason,
                "outcome": st.outcome,
                "error": st.error,
                "content_type": st.content_type,
                "content_encoding": st.encoding,
                "decoded": st.decoded,
                "decode_problem": st.decode_problem,
                "chunks": st.chunks,
                "bytes": st.wire_bytes,
                "body_bytes": st.body_bytes,
                "headers_at": st.headers_at,
                "ttfb": st.ttfb,
                "ttfe": st.ttfe,
                "duration": st.duration,
                "gap_median": st.gap_median,
                "gap_p95": st.gap_p95,
                "gap_max": st.gap_max,
                "framing": st.framing,
                "event_count": len(st.events),
                "comments": st.comments,
                "tail_bytes": st.tail,
                "events": [
                    {
                        "index": e.index,
                        "at": e.at,
                        "gap": e.gap,
                        "offset": e.offset,
                        "size": e.size,
                        "type": e.type,
                        "id": e.id,
                        "data": e.data,
                    }
                    for e in st.events
                ],
            }
        )
    return {"cassette": path, "interactions": out}


# ---------------------------------------------------------------------------------------------
# show: text for git diff (textconv)


def _body_lines(body: bytes, prefix: str, content_type: str = "") -> list[str]:
    if not body:
        return []
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        b64 = base64.b64encode(body).decode("ascii")
        return [f"{prefix}: {len(body)} bytes, not UTF-8, base64:"] + [
            f"  | {b64[i : i + 76]}" for i in range(0, len(b64), 76)
        ]
    spans = secret_spans(body, content_type)
    if spans:
        text = _masked(body, spans)
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        prefix += " (JSON, reformatted)"
    except ValueError:
        pass
    return [f"{prefix}:"] + [f"  | {safe(line)}" for line in text.split("\n")]


def _masked(body: bytes, spans: Sequence[Span]) -> str:
    """The body as text with each span masked like ``sk-proj…(56 chars)``."""
    out, pos = [], 0
    for s in spans:
        out += [
            body[pos : s.start],
            mask(body[s.start : s.end].decode("utf-8", "replace")).encode(),
        ]
        pos = s.end
    out.append(body[pos:])
    return b"".join(out).decode("utf-8", "replace")


def _holds(spans: Sequence[Span], frame: Frame) -> bool:
    i = bisect.bisect_left(spans, frame.end, key=lambda s: s.start) - 1
    return i >= 0 and spans[i].end > frame.start


_NOT_EVENTS = {"sse": "comment", "ndjson": "blank line", "json-array": "between elements"}


def _frame_lines(
    pieces: list[tuple[float, bytes]], content_type: str, framing: str = "sse"
) -> list[str]:
    """One line per event (time, type, id, data) and per other frame (an SSE comment, a blank
    line, an array's brackets and commas); then an unterminated tail."""
    lines = []
    timed, tail = arrivals(pieces, framing)
    spans = secret_spans(b"".join(d for _, d in pieces), content_type)
    events = 0
    other = _NOT_EVENTS.get(framing, "comment")
    for frame, at in timed:
        show = safe if spans and _holds(spans, frame) else printable
        if isinstance(frame, EVENT_FRAMES):
            events += 1
            ident = f" id={show(frame.id)}" if frame.id else ""
            lines.append(
                f"event {events} at {at:.6f}s {show(frame.type)}{ident}: {show(frame.data)}"
            )
        else:
            lines.append(f"{other} at {at:.6f}s: {show(frame.raw.decode('utf-8', 'replace'))}")
    if tail:
        lines.append(
            f"unterminated tail ({len(tail)} bytes): {safe(tail.decode('utf-8', 'replace'))}"
        )
    return lines


def _link_lines(cassette: Cassette) -> list[str]:
    """One line per recorded reconnection: which stream it continues, after which event ID
    (numbered from 1, as the table)."""
    return [
        f"#{n} resumes #{link.interaction + 1} after event id {safe(link.after_id)} "
        "(a reconnection with Last-Event-ID)"
        for n, inter in enumerate(cassette.interactions, 1)
        if (link := inter.resumes) is not None
    ]


def render_diff_text(cassette: Cassette, *, limit: int = content.DEFAULT_LIMIT) -> str:
    """A stable plain-text view for ``git diff`` (textconv): request, headers, one line per event
    with its arrival time and full data. No colours, no dependence on the terminal width, every
    control character escaped and every credential masked."""
    lines = [f"ssevcr cassette: {len(cassette)} interaction(s)"]
    lines += [f"meta {printable(k)}: {safe(v)}" for k, v in sorted(cassette.meta.items())]
    for n, inter in enumerate(cassette.interactions, 1):
        req, resp = inter.request, inter.response
        st = interaction_stats(n, inter, limit=limit)
        lines += [
            "",
            f"=== interaction {n}",
            f"request: {safe(req.method)} {printable(mask_url(req.url))}",
        ]
        lines += [f"meta {printable(k)}: {safe(v)}" for k, v in sorted(inter.meta.items())]
        if inter.resumes is not None:
            lines.append(
                f"resumes: interaction {inter.resumes.interaction + 1} "
                f"after event id {safe(inter.resumes.after_id)}"
            )
        lines += [
            f"request header {printable(k)}: {printable(mask_header(k, v))}" for k, v in req.headers
        ]
        request_type = (req.header("content-type") or "").split(";")[0].strip().lower()
        lines += _body_lines(req.body, "request body", request_type)
        lines.append(
            f"response: {printable(resp.http_version)} {resp.status} {safe(resp.reason)}".rstrip()
            + f", headers at {resp.headers_at:.6f}s"
        )
        lines += [
            f"response header {printable(k)}: {printable(mask_header(k, v))}"
            for k, v in resp.headers
        ]
        lines.append(
            f"response body: {st.chunks} chunk(s), {st.wire_bytes} bytes"
            + (f", {len(st.events)} event(s)" if st.framing else "")
            + (f" ({st.framing})" if st.framing not in (None, "sse") else "")
        )
        note = _decoding_note(st)
        if note:
            lines.append(f"note: {note}")
        pieces, _ = decoded_pieces(resp, limit=limit)
        if st.framing is not None:
            lines += _frame_lines(pieces, resp.content_type, st.framing)
        else:
            body = b"".join(d for _, d in pieces)
            kind = "" if st.decode_problem else resp.content_type
            lines += _body_lines(body, "response body text", kind)
        end = f"end: {resp.end.outcome.value} at {resp.end.at:.6f}s"
        if st.error:
            end += f": {printable(st.error)}"
        lines.append(end)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# show: terminal


class _Out:
    """Where ``show`` prints. A terminal gets rich's console as it is (tables fit its width, a
    long URL folds). Anything else — a file, a pipe, git, a pager — never gets a line wrapped,
    folded or cropped: plain lines stay one line each, a table is as wide as its content (the
    layout still follows COLUMNS, else 160 columns), trailing padding is stripped."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(highlight=False)
        self.terminal = self.console.is_terminal
        wide = self.terminal or "COLUMNS" in os.environ
        self.width = self.console.width if wide else 160

    def print(self, renderable: Any = "", **kw: Any) -> None:
        if self.terminal:
            self.console.print(renderable, **kw)
            return
        from rich.console import Console
        from rich.table import Table

        kw.pop("overflow", None)
        width = self.width
        if isinstance(renderable, Table):
            width = max(width, Console(width=1 << 20).measure(renderable).maximum)
        buf = io.StringIO()
        Console(file=buf, width=width, highlight=False, soft_wrap=True, color_system=None).print(
            renderable, **kw
        )
        for line in buf.getvalue().splitlines():
            click.echo(line.rstrip())


def _row(st: InteractionStats) -> list[str]:
    outcome = st.outcome if st.outcome == "complete" else f"[red]{st.outcome}[/red]"
    status = str(st.status) if st.status < 400 else f"[red]{st.status}[/red]"
    events = str(len(st.events)) if st.framing is not None else "—"
    return [
        str(st.index),
        _esc(st.method),
        _esc(st.url),
        status,
        outcome,
        events,
        str(st.wire_bytes),
        _dur(st.ttfb),
        _dur(st.ttfe),
        _dur(st.duration),
        _dur(st.gap_median),
        _dur(st.gap_p95),
    ]


_COLUMNS = (
    "#",
    "method",
    "URL",
    "status",
    "outcome",
    "events",
    "bytes",
    "TTFB",
    "TTFE",
    "duration",
    "gap p50",
    "gap p95",
)


def _print_table(path: str, stats: list[InteractionStats]) -> None:
    from rich import box
    from rich.table import Table

    out = _Out()
    out.print(f"{printable(path)} — {len(stats)} interaction(s)", markup=False)
    if out.width < 120:  # too narrow for twelve columns: one block per interaction
        for st in stats:
            row = _row(st)
            out.print(f"#{row[0]} {row[1]} {row[2]}", overflow="fold")
            out.print(
                "    "
                + " · ".join(
                    f"{name} {value}" for name, value in zip(_COLUMNS[3:], row[3:], strict=True)
                )
            )
    else:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for name in _COLUMNS:
            if name == "URL" and out.terminal:
                table.add_column(name, overflow="fold", min_width=16, ratio=1)
            else:
                justify = "left" if name in ("method", "URL", "outcome") else "right"
                table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for st in stats:
            table.add_row(*_row(st))
        out.print(table)
    for st in stats:
        note = _decoding_note(st)
        if note:
            out.print(f"#{st.index}: {note}", markup=False)
        if st.error:
            out.print(f"#{st.index}: {st.outcome}: {printable(st.error)}", markup=False)
        if st.tail:
            out.print(
                f"#{st.index}: {st.tail} bytes after the last complete event "
                "(an unterminated block)"
            )


def _ws_type(data: bytes) -> str:
    """A WebSocket message's JSON ``type`` (or ``event``), else ``-``."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return "-"
    if isinstance(value, dict):
        for key in ("type", "event"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return "-"


def _print_websocket(n: int, ws: WebSocket, *, timeline: bool) -> None:
    """One line per WebSocket conversation; with ``timeline`` each message: time from the
    handshake, gap, direction (``>`` from the client, ``<`` from the server), type, excerpt."""
    out = _Out()
    close = ws.close
    end = (
        "still open when the recording stopped"
        if close is None
        else "dropped without a close frame"
        if close.by == "none"
        else f"closed {close.code if close.code is not None else '(no code)'} by the {close.by}"
    )
    client = sum(m.from_client for m in ws.messages)
    out.print(
        f"#{n}: ws · {len(ws.messages)} msgs ({client} from the client, "
        f"{len(ws.messages) - client} from the server) · {end}"
        + (f" at {_dur(close.at)}" if close is not None else ""),
        markup=False,
    )
    if not timeline:
        return
    prev = 0.0
    for i, m in enumerate(ws.messages, 1):
        kind = "binary" if m.binary else _ws_type(m.data)
        excerpt = "" if m.binary else safe(m.data[:4096].decode("utf-8", "replace"))
        excerpt = excerpt if len(excerpt) <= 100 else excerpt[:99] + "…"
        out.print(
            f"  {i:>4} {m.at:9.4f} {_dur(m.at - prev):>8} {'>' if m.from_client else '<'} "
            f"{kind[:32]:<32} {len(m.data):>7} B  {excerpt}",
            markup=False,
        )
        prev = m.at


def _print_events(st: InteractionStats, body: bytes) -> None:
    from rich.table import Table

    out = _Out()
    out.print()
    status = f"{st.status} {_esc(st.reason)}".rstrip()
    out.print(
        f"[bold]#{st.index} {_esc(st.method)} {_esc(st.url)}[/bold] — {status}, "
        f"{len(st.events)} events, {st.outcome}, {_dur(st.duration)}"
    )
    note = _decoding_note(st)
    if note:
        out.print(note, markup=False)
    if not st.events:
        if body:
            text = safe(body[:8192].decode("utf-8", "replace"))  # 300 characters are shown
            out.print(f"body: {text if len(text) <= 300 else text[:299] + '…'}", markup=False)
        return
    gaps = [0.0 if e.gap is None else e.gap for e in st.events]
    top = max(gaps)
    times = [e.at for e in st.events]
    stalls = set(stall_indices(times, max(st.duration - times[0], times[-1] - times[0])))
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    if len(gaps) > 1:
        out.print(f"gaps {_sparkline(gaps, max(20, min(100, out.width - 12)))}")
        out.print(
            f"     max {_dur(top)} before event {worst + 1}; median {_dur(st.gap_median)}, "
            f"p95 {_dur(st.gap_p95)}" + (f"; {len(stalls)} stall(s) marked !" if stalls else "")
        )
    # on a terminal the type and data columns fit its width (cut with …); elsewhere they are
    # as wide as their text (an excerpt is at most 200 characters)
    type_width = min(24, max(4, *(len(e.type) for e in st.events))) if out.terminal else None
    widths = [max(1, len(str(len(st.events)))), 8, 8, 19, type_width]
    fixed = sum(w or 0 for w in widths) + 2 * len(widths) + 1
    data_width = max(10, out.width - fixed) if out.terminal else None
    table = Table(box=None, pad_edge=False, header_style="bold")
    for (name, justify), width in zip(
        (
            ("#", "right"),
            ("at (s)", "right"),
            ("gap", "right"),
            ("gap timeline", "left"),
            ("type", "left"),
        ),
        widths,
        strict=True,
    ):
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis", width=width)  # type: ignore[arg-type]
    table.add_column("data", no_wrap=True, overflow="ellipsis", width=data_width)
    for i, e in enumerate(st.events):
        bar = _bar(gaps[i], top)
        if i in stalls:
            bar = f"[red]{bar}[/red] !"
        table.add_row(
            str(e.index),
            f"{e.at:.3f}",
            "" if e.gap is None else _dur(e.gap),
            bar,
            _esc(e.type),
            _esc(excerpt(e.data, 200)),
            style=None,
        )
    out.print(table)


# ---------------------------------------------------------------------------------------------
# commands


def _size(value: str | int) -> int:
    if isinstance(value, int):
        return value
    size = content.parse_size(value)
    if not size:
        raise click.BadParameter(f"expected a size like 64M, 2G or 1000000, got {value!r}")
    return size


def max_decoded_option(f: Any) -> Any:
    """``--max-decoded SIZE``: how much of a gzip/deflate body is decoded at most (a bigger body
    is shown and searched as recorded, "not decoded: larger than ..."). Default: the
    ``SSEVCR_MAX_DECODED`` variable, else 64 MiB."""
    return click.option(
        "--max-decoded",
        metavar="SIZE",
        default=lambda: content.limit_from_env(os.environ),
        callback=lambda _ctx, _param, value: _size(value),
        show_default="64M, or SSEVCR_MAX_DECODED",
        help="Decode at most SIZE bytes of a compressed body (64M, 2G...); larger ones are "
        "shown as recorded.",
    )(f)


@contextlib.contextmanager
def _enough_memory(max_decoded: int) -> Iterator[None]:
    """Running out of memory (a huge cassette, or --max-decoded above what the machine has) is
    one clean error, not a traceback."""
    try:
        yield
    except MemoryError:
        raise click.ClickException(
            f"out of memory (decoding at most {max_decoded} bytes per body: "
            "lower --max-decoded or SSEVCR_MAX_DECODED)"
        ) from None


MAX_INPUT = 256 << 20
"""Bytes that ``import`` reads at most (``--max-input``): its input is parsed whole, held in
memory several times over; 4 times the 64 MiB body that ``record``/``replay`` take at most."""


def read_input(file: str, limit: int) -> bytes:
    """The bytes of FILE, or of stdin for ``-`` (a pipe or a file, not a terminal): at most
    ``limit`` bytes; a larger input is one CassetteError, never read whole."""
    hint = " (--max-input SIZE reads more)"
    if file != "-":
        return _store.read_bytes(file, limit=limit, hint=hint)
    stdin = sys.stdin.buffer if sys.stdin is not None else None
    if stdin is None or stdin.closed:
        raise CassetteError("<stdin>", "there is no standard input to read")
    if stdin.isatty():
        raise CassetteError("<stdin>", "is a terminal: pipe or redirect a file to it (- < FILE)")
    try:
        data = stdin.read(limit + 1)
    except OSError as e:
        raise CassetteError("<stdin>", f"cannot be read: {e.strerror or e}") from None
    if len(data) > limit:
        raise CassetteError("<stdin>", _store.too_large(limit, hint))
    return data


def max_input_option(
    what: str = "FILE or stdin",
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--max-input SIZE``: the bytes of ``what`` read at most."""
    return click.option(
        "--max-input",
        metavar="SIZE",
        default=f"{MAX_INPUT >> 20}M",
        callback=lambda _ctx, _param, value: _size(value),
        show_default=True,
        help=f"Read at most SIZE bytes of {what} (256M, 1G...); a larger one is refused.",
    )


def _read_cassette(cassette: str, max_input: int) -> tuple[str, Cassette]:
    """``(name, cassette)`` of what ``show``, ``export`` or ``audit`` was given: a file (msgpack
    read on demand, or its JSON twin), or ``-``: stdin, read whole, at most ``max_input``
    bytes."""
    if cassette != "-":
        return cassette, _store.read_any(cassette)
    return "<stdin>", _format.loads_any(read_input("-", max_input), path="<stdin>")


@click.command("show")
@click.argument("cassette", metavar="CASSETTE")
@click.option(
    "--events", is_flag=True, help="List each event (time, gap, type, data) with a gap timeline."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print figures and events as JSON (see docs/reviewing.md).",
)
@click.option(
    "--diff-text", is_flag=True, help="Plain text for `git diff` (textconv): one line per event."
)
@click.option(
    "--svg",
    "svg_file",
    metavar="FILE",
    help="Write an SVG timeline: recorded vs replayed event arrivals.",
)
@click.option(
    "--html", "html_file", metavar="FILE", help="Write the timeline as a self-contained HTML page."
)
@click.option(
    "--timing",
    metavar="T",
    help="Replay timing for the picture: original, instant, scale:F, fixed:DUR.",
)
@click.option("--max-gap", metavar="DUR", help="Cap long pauses in the pictured replay.")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="F",
    help="A fault for the pictured replay (repeatable).",
)
@click.option(
    "--seed", type=int, default=None, help="Seed of the pictured replay's random choices."
)
@max_decoded_option
@max_input_option("stdin, for CASSETTE -")
def show_command(
    cassette: str,
    events: bool,
    as_json: bool,
    diff_text: bool,
    svg_file: str | None,
    html_file: str | None,
    timing: str | None,
    max_gap: str | None,
    faults: tuple[str, ...],
    seed: int | None,
    max_decoded: int,
    max_input: int,
) -> None:
    """Show what a cassette holds: a table of interactions, or each event (--events).
    CASSETTE - reads it from stdin (a pipe or a redirected file, not a terminal)."""
    if as_json and diff_text:
        raise click.UsageError("--json and --diff-text are two outputs; choose one")
    picture_options = timing is not None or max_gap is not None or faults or seed is not None
    if picture_options and not (svg_file or html_file):
        raise click.UsageError(
            "--timing, --max-gap, --fault and --seed choose the replay pictured "
            "by --svg/--html; give one of those"
        )
    not_an_input(svg_file, [cassette], "--svg")
    not_an_input(html_file, [cassette], "--html")
    with _enough_memory(max_decoded):
        cassette, data = _read_cassette(cassette, max_input)
        if svg_file or html_file:
            replay_timing = parse_timing(timing, max_gap=max_gap)
            fault_list = parse_faults(faults)
            track_list = picture.tracks(
                data, timing=replay_timing, faults=fault_list, seed=seed or 0, limit=max_decoded
            )
            title = f"ssevcr timeline: {os.path.basename(cassette)}"
            subtitle = (
                f"replay: timing {replay_timing}"
                + (f", faults {' '.join(str(f) for f in fault_list)}" if fault_list else "")
                + f", seed {seed or 0}"
            )
            if svg_file:
                write_text(svg_file, picture.svg(track_list, title=title, subtitle=subtitle))
                click.echo(f"wrote {svg_file}", err=True)
            if html_file:
                write_text(html_file, picture.html(track_list, title=title, subtitle=subtitle))
                click.echo(f"wrote {html_file}", err=True)
        if as_json:
            click.echo(_json_text(summary_json(cassette, data, limit=max_decoded)))
            return
        if diff_text:
            click.echo(render_diff_text(data, limit=max_decoded).encode("utf-8"), nl=False)
            return
        stats = [
            interaction_stats(n, i, limit=max_decoded) for n, i in enumerate(data.interactions, 1)
        ]
        _print_table(cassette, stats)
        synthesized = [n for n, i in enumerate(data.interactions, 1) if "synthesized" in i.meta]
        if synthesized:  # made up (ssevcr synth) or imported without times (vcrpy, HAR)
            which = "all" if len(synthesized) == len(stats) else ", ".join(map(str, synthesized))
            click.echo(f"timing synthesized, not recorded: interaction(s) {which}")
        _print_recorded_at(data)
        for line in _link_lines(data):
            click.echo(line)
        for n, inter in enumerate(data.interactions, 1):
            if inter.websocket is not None:
                _print_websocket(n, inter.websocket, timeline=events)
        if events:
            for st, inter in zip(stats, data.interactions, strict=True):
                if inter.websocket is not None:
                    continue
                pieces, _ = decoded_pieces(inter.response, limit=max_decoded)
                _print_events(st, b"".join(d for _, d in pieces))


def _print_recorded_at(data: Cassette) -> None:
    """When the interactions were recorded (``recorded_at``, what ``max_age`` reads)."""
    from .._expiry import RECORDED_AT, recorded_at

    dated = sorted(i.meta[RECORDED_AT] for i in data.interactions if recorded_at(i) is not None)
    if not dated:
        return
    when = dated[0] if dated[0] == dated[-1] else f"{dated[0]} to {dated[-1]}"
    undated = len(data.interactions) - len(dated)
    click.echo(f"recorded: {safe(when)}" + (f" ({undated} undated)" if undated else ""))


@click.command("export")
@click.argument("cassette", metavar="CASSETTE")
@click.option(
    "-o", "--output", metavar="FILE", default="-", help="Where to write the JSON (default: stdout)."
)
@max_input_option("stdin, for CASSETTE -")
def export_command(cassette: str, output: str, max_input: int) -> None:
    """Write a cassette as its lossless JSON twin (import gives back the same file). CASSETTE -
    reads it from stdin (a pipe or a redirected file, not a terminal)."""
    not_an_input(output, [cassette])
    text = _format.export_json(_read_cassette(cassette, max_input)[1])
    if output == "-":
        click.echo(text.encode("utf-8"), nl=False)
    else:
        write_text(output, text)
        click.echo(f"wrote {output}", err=True)


@click.command("import")
@click.argument("file", metavar="FILE")
@click.option(
    "-o", "--output", metavar="CASSETTE", required=True, help="The msgpack cassette to write."
)
@click.option(
    "--from",
    "source",
    type=click.Choice(["json", "vcrpy", "har"]),
    default="json",
    show_default=True,
    help="What FILE is: ssevcr's JSON twin, a vcrpy / pytest-recording cassette (YAML or "
    "JSON), or a HAR file (browser devtools, Playwright).",
)
@click.option(
    "--profile",
    metavar="PROFILE",
    default=None,
    help="Timing given to vcrpy/HAR bodies, which carry none (marked synthesized in the "
    "cassette). Default: ttft:400ms+tps:50 (first event at 400 ms, then one every 20 ms).",
)
@click.option(
    "--partial",
    is_flag=True,
    help="Write the interactions that convert even if some do not (they are listed).",
)
@max_input_option()
def import_command(
    file: str, output: str, source: str, profile: str | None, partial: bool, max_input: int
) -> None:
    """Read a JSON twin (checked; errors name the line and the field), a vcrpy cassette or a
    HAR file, and write the cassette."""
    not_an_input(output, [file])
    name = "<stdin>" if file == "-" else file
    # a FIFO or a directory given by name is refused, never waited on; so is a file too large
    raw = read_input(file, max_input)
    if source == "json":
        if profile is not None:
            raise click.UsageError("--profile applies to --from vcrpy and --from har")
        cassette = _format.import_json(raw, path=name)
    else:
        from .. import _migrate

        profile = profile or _migrate.DEFAULT_PROFILE
        if source == "vcrpy":
            converted = _migrate.from_vcrpy(raw, name=name, profile=profile)
        else:
            converted = _migrate.from_har(raw, name=name, profile=profile, now=time.time())
        for problem in converted.problems:
            click.echo(f"{name}: not converted: {problem}", err=True)
        if converted.problems and not partial:
            raise CassetteError(
                name,
                f"{len(converted.problems)} interaction(s) could not be converted (listed "
                "above); nothing was written (--partial writes the others)",
            )
        cassette = converted.cassette
        if not cassette.interactions:
            raise CassetteError(name, "no interaction to import")
    _store.save(cassette, output)
    note = ", timing synthesized" if source != "json" else ""
    click.echo(f"wrote {output} ({len(cassette)} interaction(s){note})", err=True)


def _is_json_file(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(64).lstrip()[:1] == b"{"


@click.command("audit")
@click.argument("cassettes", nargs=-1, required=True, metavar="CASSETTE...")
@click.option(
    "--fix", is_flag=True, help="Replace what was found by REDACTED, in place (atomic write)."
)
@max_decoded_option
@max_input_option("stdin, for CASSETTE -")
def audit_command(cassettes: tuple[str, ...], fix: bool, max_decoded: int, max_input: int) -> None:
    """Look for credentials in cassettes: API keys, bearer tokens, secrets in headers, URLs,
    bodies and streamed chunks. Exits 1 if anything is found (or left after --fix), or if a body
    could not be searched (damaged, or larger than --max-decoded when decoded). CASSETTE - reads
    one from stdin (not with --fix, which rewrites files in place)."""
    if "-" in cassettes and (fix or cassettes.count("-") > 1):
        why = "--fix rewrites cassettes in place" if fix else "stdin can be read once"
        raise click.UsageError(f"CASSETTE - (stdin): {why}; give a file")
    found = fixed = unsearched = 0
    failed = False
    for path in cassettes:
        try:
            with _enough_memory(max_decoded):
                name, data = _read_cassette(path, max_input)
                result = audit.audit(data, limit=max_decoded)
            for f in result.findings:
                click.echo(f"{name}: {f}")
            for problem in result.problems:
                click.echo(f"{name}: {problem}")
            unsearched += len(result.problems)
            if fix and result.findings:
                if _is_json_file(path):
                    write_text(path, _format.export_json(result.cassette))
                else:
                    _store.save(result.cassette, path)
                left = audit.audit(_store.read_any(path), limit=max_decoded).findings
                for f in left:
                    click.echo(f"{path}: still there after --fix: {f}")
                fixed += len(result.findings) - len(left)
                found += len(left)
            else:
                found += len(result.findings)
        except SsevcrError as e:
            click.echo(f"Error: {e}", err=True)
            failed = True
    n = len(cassettes)
    if fixed:
        click.echo(f"redacted {fixed} finding(s) in place", err=True)
    if unsearched:
        click.echo(
            f"audit: {unsearched} body/bodies could not be searched "
            f"(give --max-decoded or SSEVCR_MAX_DECODED for larger bodies)",
            err=True,
        )
    if found:
        click.echo(f"audit: {found} possible credential(s) in {n} cassette(s)", err=True)
    elif not failed and not unsearched:
        click.echo(f"audit: no credentials found in {n} cassette(s)", err=True)
    if found or failed or unsearched:
        sys.exit(1)
