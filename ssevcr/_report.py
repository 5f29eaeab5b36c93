"""The sweep's HTML report: a self-contained page (no scripts, no external files) with the matrix of
verdicts per fault kind, then one row per run with its verdict and the timeline of what the replay
sent. Pure: a report (the JSON ``ssevcr sweep --json`` writes) in, HTML text out. Every value from
the cassette or the command is escaped.

    plays_record(plays)          what a run's replay sent, as the JSON records of a report
    sweep_html(report)           one sweep (``ssevcr sweep``)
    sweeps_html(reports, title)  several on one page (the pytest sweep: one per test)
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._player import Play

__all__ = ["plays_record", "sweep_html", "sweeps_html"]

MAX_STEPS = 2000  # writes of a play kept in a report (its timeline shows as many)

VERDICTS = ("ok", "silent", "broken", "hang", "crash")
_COLOURS = {
    "ok": "#1a7f37",
    "silent": "#b35900",
    "broken": "#cf222e",
    "hang": "#8250df",
    "crash": "#6e7781",
}
_WIDTH = 420  # pixels of a timeline

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1f2328; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table { border-collapse: collapse; } td, th { padding: .25em .6em; text-align: left; }
tr + tr td { border-top: 1px solid #d0d7de; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.v { font-weight: 600; } code { font-size: .95em; }
.muted { color: #6e7781; } svg { vertical-align: middle; }
"""


def plays_record(plays: Iterable[Play]) -> list[dict[str, Any]]:
    """What the replay sent in a run: per play, the faults and the timeline of the schedule (at
    most ``MAX_STEPS`` writes each)."""
    out = []
    for play in plays:
        s = play.schedule
        out.append(
            {
                "interaction": play.index + 1,
                "method": play.request.method,
                "url": play.request.url,
                "status": s.status,
                "fired": list(s.fired),
                "skipped": list(s.skipped),
                "headers_at": s.headers_at,
                "steps": [[round(step.at, 6), len(step.data)] for step in s.steps[:MAX_STEPS]],
                "end": type(s.end).__name__.lower(),
                "end_at": s.end.at,
            }
        )
    return out


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _timeline(plays: Sequence[Mapping[str, Any]], span: float) -> str:
    """An SVG line per play: a tick per write (height by size), the head and the end marked."""
    if not plays:
        return '<span class="muted">no request</span>'
    rows = []
    scale = _WIDTH / span if span > 0 else 0.0
    for n, play in enumerate(plays[:4]):
        y = n * 14
        parts = [f'<line x1="0" y1="{y + 7}" x2="{_WIDTH}" y2="{y + 7}" stroke="#d0d7de"/>']
        head = float(play.get("headers_at", 0.0)) * scale
        parts.append(f'<rect x="{head:.1f}" y="{y + 2}" width="2" height="10" fill="#0969da"/>')
        for at, size in play.get("steps", [])[:MAX_STEPS]:
            h = min(10.0, 2.0 + float(size) ** 0.5 / 4)
            x = float(at) * scale
            bar = f'x="{x:.1f}" y="{y + 12 - h:.1f}" width="1" height="{h:.1f}"'
            parts.append(f'<rect {bar} fill="#57606a"/>')
        end = str(play.get("end", ""))
        colour = "#1a7f37" if end == "close" else "#cf222e"
        x = float(play.get("end_at", 0.0)) * scale
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="3" height="14" fill="{colour}">'
            f"<title>{_e(end)}</title></rect>"
        )
        rows.append("".join(parts))
    height = 14 * min(len(plays), 4)
    return f'<svg width="{_WIDTH + 4}" height="{height}" role="img">{"".join(rows)}</svg>'


def _span(runs: Sequence[Mapping[str, Any]]) -> float:
    longest = 0.0
    for run in runs:
        for play in run.get("plays", []):
            longest = max(longest, float(play.get("end_at", 0.0)))
    return longest


def sweep_html(report: Mapping[str, Any]) -> str:
    cassettes = ", ".join(str(c) for c in report.get("cassettes", []))
    return _page(f"ssevcr sweep: {cassettes}", "<h1>ssevcr sweep</h1>" + _section(report, "h2"))


def sweeps_html(reports: Sequence[Mapping[str, Any]], title: str) -> str:
    """Several sweeps on one page (the pytest sweep: one per test), each in its own section."""
    index = "".join(
        f"<li><a href='#s{n}'><code>{_e(' '.join(map(str, r.get('command', []))))}</code></a>: "
        f"{_e(_summary(r) or 'no faults')}</li>"
        for n, r in enumerate(reports)
    )
    sections = "".join(
        f"<section id='s{n}'><h2><code>{_e(' '.join(map(str, r.get('command', []))))}</code>"
        f"</h2>{_section(r, 'h3')}</section>"
        for n, r in enumerate(reports)
    )
    return _page(title, f"<h1>{_e(title)}</h1><ul>{index}</ul>{sections}")


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{_e(title)}</title>"
        f"<style>{_STYLE}</style>{body}</html>\n"
    )


def _summary(report: Mapping[str, Any]) -> str:
    return ", ".join(f"{n} {v}" for v, n in dict(report.get("summary", {})).items() if n)


def _result(run: Mapping[str, Any]) -> str:
    """How a run ended: a pytest case's outcome, else the command's exit."""
    if run.get("outcome"):
        return str(run["outcome"])
    return "timeout" if run.get("timed_out") else f"exit {run.get('exit_code')}"


def _section(report: Mapping[str, Any], h: str) -> str:
    runs: list[Mapping[str, Any]] = list(report.get("runs", []))
    kinds: dict[str, dict[str, int]] = {}
    for run in runs:
        row = kinds.setdefault(str(run["kind"]), dict.fromkeys(VERDICTS, 0))
        row[str(run["verdict"])] = row.get(str(run["verdict"]), 0) + 1
    matrix = ["<tr><th>fault kind</th><th>runs</th>"]
    matrix += [f'<th style="color:{_COLOURS[v]}">{v}</th>' for v in VERDICTS]
    matrix.append("</tr>")
    for kind, counts in kinds.items():
        cells = "".join(
            f'<td class="n" style="color:{_COLOURS[v]}">{counts[v] or "·"}</td>' for v in VERDICTS
        )
        matrix.append(
            f"<tr><td>{_e(kind)}</td><td class='n'>{sum(counts.values())}</td>{cells}</tr>"
        )
    span = _span([*runs, report.get("clean", {})])
    lines = []
    order = {v: i for i, v in enumerate(("crash", "hang", "broken", "silent", "ok"))}
    for run in sorted(runs, key=lambda r: order.get(str(r["verdict"]), 9)):
        verdict = str(run["verdict"])
        exit_text = _result(run)
        tail = str(run.get("stderr_tail", "")).strip().splitlines()[-1:] or [""]
        lines.append(
            "<tr>"
            f'<td class="v" style="color:{_COLOURS.get(verdict, "#000")}">{_e(verdict)}'
            f"{' (allowed)' if run.get('allowed') else ''}</td>"
            f"<td><code>{_e(run['fault'])}</code><br><span class='muted'>{_e(run['kind'])}, "
            f"{'lossy' if run.get('lossy') else 'lossless'}</span></td>"
            f"<td>{_e(exit_text)}<br>"
            f"<span class='muted'>{float(run['duration_s']):.2f} s</span></td>"
            f"<td>{_timeline(run.get('plays', []), span)}</td>"
            f"<td class='muted'>{_e(tail[0][:200])}</td>"
            "</tr>"
        )
    clean = report.get("clean", {})
    summary = _summary(report)
    command = " ".join(str(c) for c in report.get("command", []))
    cassettes = ", ".join(str(c) for c in report.get("cassettes", []))
    return (
        f"<p><code>{_e(command)}</code> against <code>{_e(cassettes)}</code>"
        f" — {len(runs)} faults: {_e(summary or 'none')}. Catalogue {_e(report.get('catalog'))}, "
        f"seed {_e(report.get('seed'))}, timing {_e(report.get('timing'))}, "
        f"compare {_e(report.get('compare'))}.</p>"
        f"<{h}>Verdicts by fault kind</{h}><table>{''.join(matrix)}</table>"
        f"<{h}>Clean run</{h}><p>{_e(_result(clean)) if clean.get('outcome') else ''} "
        f"{float(clean.get('duration_s', 0.0)):.2f} s "
        f"{_timeline(clean.get('plays', []), span)}</p>"
        f"<{h}>Runs</{h}><p class=muted>Timeline: blue, the head; grey, each write (taller for "
        "more bytes); the end in green (clean close) or red (abort, reset, hang).</p>"
        f"<table><tr><th>verdict</th><th>fault</th><th>result</th><th>what was sent</th>"
        f"<th>{_e(report.get('detail', 'stderr'))}</th></tr>{''.join(lines)}</table>"
    )
