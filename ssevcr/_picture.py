"""A timing picture: event arrivals per interaction, recorded vs a chosen replay, as SVG or a
self-contained HTML page (no scripts, no external files).

The recorded lane comes from ``stats`` (the parser over the recorded chunks); the replay lane
from the steps ``schedule.build`` produces for a timing, faults and seed (through ``Player``, so
fault scoping and seeds are those of a real replay), parsed again with the same parser. Pure:
returns text, writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from . import _content as content
from ._cassette import Cassette, header
from ._errors import NoMatchError
from ._faults import Fault
from ._player import Player
from ._schedule import Hang, Schedule
from ._secrets import mask_text
from ._stats import (
    EventStat,
    arrivals,
    decode,
    event_stats,
    excerpt,
    interaction_stats,
    secret_spans,
    stall_indices,
)
from ._timing import Timing

__all__ = ["Lane", "Mark", "Track", "html", "replay_lane", "svg", "tracks"]

SVG_NS = "http://www.w3.org/2000/svg"


@dataclass(frozen=True, slots=True)
class Mark:
    at: float
    label: str  # tooltip


@dataclass(frozen=True, slots=True)
class Lane:
    name: str
    headers_at: float | None
    events: tuple[Mark, ...]
    end: float | None
    end_label: str
    hangs: bool = False  # the replay keeps the connection open, sending nothing (stall forever)


@dataclass(frozen=True, slots=True)
class Track:
    """One interaction: its title, its lanes (recorded, replay) and notes (faults fired)."""

    title: str
    lanes: tuple[Lane, ...]
    notes: tuple[str, ...] = ()


def _marks(events: Sequence[EventStat]) -> tuple[Mark, ...]:
    return tuple(
        Mark(
            e.at,
            f"event {e.index} at {e.at:.3f}s"
            + ("" if e.gap is None else f" (+{e.gap * 1e3:.1f} ms)")
            + f" · {e.type} · {excerpt(e.data, 80)}",
        )
        for e in events
    )


def replay_lane(
    schedule: Schedule,
    name: str = "replay",
    *,
    limit: int = content.DEFAULT_LIMIT,
    framing: str | None = "sse",
) -> Lane:
    """The lane of a replay: its steps parsed as the client will see them (in the recording's
    ``framing``; an SSE body only when its head still says so)."""
    pieces = [(s.at, s.data) for s in schedule.steps]
    encoding = (header(schedule.headers, "content-encoding") or "identity").strip().lower()
    pieces, problem = decode(pieces, encoding, limit=limit)
    content_type = (header(schedule.headers, "content-type") or "").split(";")[0].strip().lower()
    events: tuple[EventStat, ...] = ()
    if schedule.status >= 400 or (framing == "sse" and content_type != "text/event-stream"):
        framing = None  # an error answer instead, or a head that no longer says SSE
    if framing is not None and problem is None:
        body = b"".join(d for _, d in pieces)
        events = event_stats(arrivals(pieces, framing)[0], secret_spans(body, content_type))
    hangs = isinstance(schedule.end, Hang)
    label = "stalls forever (hangs)" if hangs else type(schedule.end).__name__.lower()
    if schedule.status >= 400:
        label = f"HTTP {schedule.status}, {label}"
    return Lane(name, schedule.headers_at, _marks(events), schedule.end.at, label, hangs)


def tracks(
    cassette: Cassette,
    *,
    timing: Timing | None = None,
    faults: Sequence[Fault] = (),
    seed: int = 0,
    limit: int = content.DEFAULT_LIMIT,
) -> list[Track]:
    """Recorded and replayed lanes for every interaction of ``cassette`` (credentials in its
    text masked; ``limit`` caps decoding a compressed body)."""
    timing = timing or Timing()
    player = Player([("<picture>", cassette)], timing=timing, faults=tuple(faults), seed=seed)
    replay_name = f"replay ({timing})"
    out = []
    for n, inter in enumerate(cassette.interactions, 1):
        st = interaction_stats(n, inter, limit=limit)
        recorded = Lane("recorded", st.headers_at, _marks(st.events), st.duration, st.outcome)
        notes: list[str] = []
        lanes = [recorded]
        try:
            play = player.play(inter.request)
        except NoMatchError as e:  # cannot happen for a cassette's own requests; say so if it does
            notes.append(f"no replay: {e}")
        else:
            lanes.append(
                replay_lane(play.schedule, replay_name, limit=limit, framing=st.framing or "sse")
            )
            notes += [f"fault fired: {f}" for f in play.schedule.fired]
            notes += [f"fault skipped: {f}" for f in play.schedule.skipped]
        title = f"#{n} {inter.request.method} {st.url} — {st.status} {mask_text(st.reason)}"
        title = title.rstrip()
        out.append(Track(title, tuple(lanes), tuple(notes)))
    return out


# ---------------------------------------------------------------------------------------------
# SVG

_WIDTH = 1000
_LEFT = 190
_RIGHT = 40
_TITLE_H = 24
_LANE_H = 28
_AXIS_H = 30
_NOTE_H = 16
_TRACK_GAP = 18

_STYLE = """
text { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; fill: #222; }
.title { font-weight: bold; }
.lane-name { fill: #555; }
.note { fill: #8a5a00; font-size: 11px; }
.lane { stroke: #ccc; stroke-width: 1; }
.tick line { stroke: #999; }
.tick text, .axis-label { fill: #666; font-size: 11px; }
.grid { stroke: #eee; }
.event { fill: #1f6feb; fill-opacity: 0.8; }
.event.replay { fill: #d97706; }
.headers { fill: #666; }
.end { stroke: #222; stroke-width: 2; }
.hang { stroke: #b91c1c; stroke-width: 2; stroke-dasharray: 4 3; }
.stall { fill: #fecaca; fill-opacity: 0.7; }
.stall-label { fill: #b91c1c; font-size: 11px; }
.end-label { fill: #b91c1c; font-size: 11px; }
.subtitle { fill: #555; }
"""


def _nice_step(span: float) -> float:
    raw = span / 8
    mag = 10.0 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * mag >= raw)


def _fmt_seconds(t: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{t:.{decimals}f}s"


def _span(track: Track) -> float:
    points = [0.0]
    for lane in track.lanes:
        points += [m.at for m in lane.events]
        points += [t for t in (lane.headers_at, lane.end) if t is not None]
    span = max(points)
    return span * 1.04 if span > 0 else 0.001


def _stalls(lane: Lane, span: float) -> list[tuple[float, float, int]]:
    """Gaps that stand out (start, end, the event after the gap)."""
    times = [m.at for m in lane.events]
    return [(times[i - 1], times[i], i + 1) for i in stall_indices(times, span)]


def _track_height(track: Track) -> int:
    return _TITLE_H + _LANE_H * len(track.lanes) + _AXIS_H + _NOTE_H * len(track.notes)


def _render_track(n: int, track: Track, top: int) -> list[str]:
    span = _span(track)
    plot = _WIDTH - _LEFT - _RIGHT

    def x(t: float) -> float:
        return round(_LEFT + plot * t / span, 2)

    out = [
        f'<g class="track" data-track="{n}">',
        f'<text class="title" x="8" y="{top + 16}">{escape(_clip(track.title, 128))}'
        f"<title>{escape(track.title)}</title></text>",
    ]
    y0 = top + _TITLE_H
    axis_y = y0 + _LANE_H * len(track.lanes)
    step = _nice_step(span)
    ticks = [i * step for i in range(int(span / step + 1e-9) + 1)]
    for t in ticks:
        out.append(f'<line class="grid" x1="{x(t)}" y1="{y0}" x2="{x(t)}" y2="{axis_y}"/>')
    for k, lane in enumerate(track.lanes):
        cy = y0 + _LANE_H * k + _LANE_H / 2
        kind = "recorded" if k == 0 else "replay"
        out.append(f'<g class="lane-group" data-lane="{kind}">')
        out.append(
            f'<text class="lane-name" x="8" y="{cy + 4}">{escape(_clip(lane.name, 26))}'
            f"<title>{escape(lane.name)}</title></text>"
        )
        out.append(f'<line class="lane" x1="{_LEFT}" y1="{cy}" x2="{_LEFT + plot}" y2="{cy}"/>')
        for a, b, before in _stalls(lane, span):
            out.append(
                f'<rect class="stall" x="{x(a)}" y="{cy - 10}" width="{max(x(b) - x(a), 1)}" '
                f'height="20"><title>stall: {b - a:.3f}s before event {before}</title></rect>'
            )
            out.append(
                f'<text class="stall-label" x="{(x(a) + x(b)) / 2}" y="{cy - 12}" '
                f'text-anchor="middle">{b - a:.2f}s</text>'
            )
        if lane.headers_at is not None:
            hx = x(lane.headers_at)
            out.append(
                f'<rect class="headers" x="{hx - 1}" y="{cy - 8}" width="2" height="16">'
                f"<title>headers at {lane.headers_at:.3f}s</title></rect>"
            )
        for i, m in enumerate(lane.events, 1):
            out.append(
                f'<circle class="event {kind}" data-index="{i}" data-at="{m.at!r}" cx="{x(m.at)}" '
                f'cy="{cy}" r="3.5"><title>{escape(m.label)}</title></circle>'
            )
        if lane.end is not None:
            ex = x(lane.end)
            if lane.hangs:
                out.append(
                    f'<line class="hang" x1="{ex}" y1="{cy}" x2="{_LEFT + plot + 12}" y2="{cy}">'
                    f"<title>{escape(lane.end_label)} from {lane.end:.3f}s</title></line>"
                )
                out.append(
                    f'<text class="stall-label" x="{_LEFT + plot - 4}" y="{cy + 14}" '
                    f'text-anchor="end">hangs…</text>'
                )
            else:
                out.append(
                    f'<line class="end" x1="{ex}" y1="{cy - 9}" x2="{ex}" y2="{cy + 9}">'
                    f"<title>end at {lane.end:.3f}s: {escape(lane.end_label)}</title></line>"
                )
                if lane.end_label not in ("complete", "close"):  # say how it ended when it is news
                    out.append(
                        f'<text class="end-label" x="{ex + 5}" y="{cy + 4}">'
                        f"{escape(lane.end_label)}</text>"
                    )
        out.append("</g>")
    out.append(
        f'<line class="tick" x1="{_LEFT}" y1="{axis_y}" x2="{_LEFT + plot}" y2="{axis_y}" '
        'stroke="#999"/>'
    )
    for t in ticks:
        out.append(
            f'<g class="tick"><line x1="{x(t)}" y1="{axis_y}" x2="{x(t)}" y2="{axis_y + 5}"/>'
            f'<text x="{x(t)}" y="{axis_y + 17}" text-anchor="middle">'
            f"{_fmt_seconds(t, step)}</text></g>"
        )
    out.append(f'<text class="axis-label" x="8" y="{axis_y + 17}">seconds from request</text>')
    for k, note in enumerate(track.notes):
        out.append(
            f'<text class="note" x="8" y="{axis_y + _AXIS_H + _NOTE_H * k + 8}">'
            f"{escape(note)}</text>"
        )
    out.append("</g>")
    return out


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def svg(track_list: Sequence[Track], *, title: str = "ssevcr timeline", subtitle: str = "") -> str:
    """A standalone SVG document: one block per interaction, one circle per event."""
    legend_h = 58 if subtitle else 40
    height = legend_h + sum(_track_height(t) + _TRACK_GAP for t in track_list) + 10
    out = [
        f'<svg xmlns="{SVG_NS}" width="{_WIDTH}" height="{height}" viewBox="0 0 {_WIDTH} {height}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        f'<text class="title" x="8" y="18">{escape(title)}</text>',
        '<g class="legend" transform="translate(8, 32)">'
        '<circle class="legend-key" cx="4" cy="0" r="3.5" style="fill:#1f6feb"/>'
        '<text x="12" y="4">recorded event</text>'
        '<circle class="legend-key" cx="134" cy="0" r="3.5" style="fill:#d97706"/>'
        '<text x="142" y="4">replayed event</text>'
        '<rect x="262" y="-6" width="14" height="12" style="fill:#fecaca"/>'
        '<text x="282" y="4">stall</text>'
        '<line x1="334" y1="-7" x2="334" y2="7" style="stroke:#222;stroke-width:2"/>'
        '<text x="340" y="4">end of response</text></g>',
    ]
    if subtitle:
        out.append(
            f'<text class="subtitle" x="8" y="52">{escape(_clip(subtitle, 135))}'
            f"<title>{escape(subtitle)}</title></text>"
        )
    top = legend_h
    for n, track in enumerate(track_list, 1):
        out += _render_track(n, track, top)
        top += _track_height(track) + _TRACK_GAP
    out.append("</svg>")
    return "\n".join(out) + "\n"


def html(track_list: Sequence[Track], *, title: str = "ssevcr timeline", subtitle: str = "") -> str:
    """A self-contained page (also well-formed XML) around the SVG."""
    sub = f"<p>{escape(subtitle)}</p>" if subtitle else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
        "svg{max-width:100%;height:auto;border:1px solid #ddd}</style></head>\n<body>"
        f"<h1>{escape(title)}</h1>{sub}"
        "<p>Each dot is an SSE event at the time its last byte arrives (recorded) or is sent "
        "(replay); hover for its data. Shaded: gaps that stand out.</p>\n"
        f"{svg(track_list, title=title, subtitle=subtitle)}</body></html>\n"
    )
