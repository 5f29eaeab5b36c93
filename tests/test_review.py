"""Reviewing cassettes: ``show`` (table, --events, --json, --diff-text, --svg/--html), ``export`` /
``import``, ``audit`` (--fix), and ``git diff`` through the textconv.

Cassettes are the bundled examples and cassettes built here from the real provider bytes in
tests/fixtures/providers, cut into chunks at seeded random byte positions (inside events, inside
UTF-8 characters, between CR and LF) with seeded times. Expected figures are computed here from
those chunks with the parser, independently of ``ssevcr._stats``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ssevcr import _format, _store
from ssevcr._audit import looks_random, scan
from ssevcr._cassette import Cassette, End, Interaction, Outcome, Request, Response
from ssevcr._sse import Event, parse
from ssevcr._stats import excerpt
from ssevcr.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "cassettes" / "examples").glob("*.msgpack"))
PROVIDERS = ROOT / "tests" / "fixtures" / "providers"
FIXTURES = sorted(PROVIDERS.glob("*/*.sse"))
SVG = "{http://www.w3.org/2000/svg}"

# secrets planted by the audit tests (made up; shaped like the real thing)
OPENAI_KEY = "sk-proj-Xq7Lr2Vb9Tn4Wc1Zs8Pd3Kf6Hj0Mg5Ya_Rt2Ue7Io4Qw9Ez1Nx"
ANTHROPIC_KEY = "sk-ant-api03-Jd8Kq2Lm7Np4Rs9Tv1Wy6Xz3Ab5Cd0Ef-Gh2Ij4Kl6Mn8Op"
GOOGLE_KEY = "AIzaSyB3d5F7h9J1l3N5p7R9t1V3x5Z7b9D1f3H"
BODY_SECRET = "Zx8Kq2Lm9Np4Rs7Tv1Wy3Qa6"


def run(*args: str, input: bytes | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=True)
    assert "Traceback" not in result.output
    if result.exit_code == 1:  # every failure is one clean error, not an escaped exception
        assert isinstance(result.exception, SystemExit), result.exception
    return result


# ---------------------------------------------------------------------------------------------
# building cassettes from real bytes


def chunked(
    body: bytes, seed: int, *, stall_before_chunk: int | None = None, stall: float = 2.0
) -> list[tuple[float, bytes]]:
    """Cut at random byte positions, 1..160 bytes, 1..40 ms apart."""
    rng = random.Random(seed)
    pieces: list[tuple[float, bytes]] = []
    pos, t = 0, 0.3 + rng.random() / 5
    while pos < len(body):
        if stall_before_chunk is not None and len(pieces) == stall_before_chunk:
            t += stall
        size = rng.randint(1, 160)
        pieces.append((round(t, 6), body[pos : pos + size]))
        pos += size
        t += rng.uniform(0.001, 0.04)
    return pieces


def gzipped(pieces: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    c = zlib.compressobj(wbits=31)
    out = [(at, c.compress(d) + c.flush(zlib.Z_SYNC_FLUSH)) for at, d in pieces]
    out[-1] = (out[-1][0], out[-1][1] + c.flush())
    return out


def interaction(
    body: bytes,
    *,
    seed: int = 1,
    url: str = "https://api.openai.com/v1/chat/completions",
    gzip: bool = False,
    request_headers: tuple[tuple[str, str], ...] = (),
    request_body: bytes = b'{"model":"m","stream":true}',
    **kw: object,
) -> Interaction:
    pieces = chunked(body, seed, **kw)  # type: ignore[arg-type]
    headers: tuple[tuple[str, str], ...] = (("content-type", "text/event-stream; charset=utf-8"),)
    if gzip:
        pieces = gzipped(pieces)
        headers += (("content-encoding", "gzip"),)
    req = Request(
        "POST",
        url,
        (("content-type", "application/json"), ("authorization", "REDACTED"), *request_headers),
        request_body,
    )
    resp = Response.from_chunks(
        200, pieces, reason="OK", headers=headers, headers_at=0.25, end=End(pieces[-1][0] + 0.001)
    )
    return Interaction(req, resp)


def fixture_cassette(fixture: Path, **kw: object) -> Cassette:
    return Cassette((interaction(fixture.read_bytes(), **kw),))  # type: ignore[arg-type]


# non-ASCII text, split inside characters when chunked; CR and CRLF line endings; a comment
ODD_STREAM = (
    'data: {"delta":{"text":"héllo — 日本語 ✓"}}\r\r: keep-alive\r\n\r\n'
    "event: note\ndata: line one\ndata: line two\n\ndata: [DONE]\n\n"
).encode()


def mixed_cassette() -> Cassette:
    """Several interactions: SSE, gzip SSE, plain JSON, a stream cut by an upstream error."""
    text = (PROVIDERS / "openai-chat" / "text.sse").read_bytes()
    plain = Response.from_chunks(
        400,
        [(0.2, b'{"error":{"message":"bad model"}}')],
        reason="Bad Request",
        headers=(("content-type", "application/json"),),
        headers_at=0.19,
    )
    cut = interaction(
        (PROVIDERS / "anthropic" / "text.sse").read_bytes()[:700],
        seed=3,
        url="https://api.anthropic.com/v1/messages",
    )
    cut = Interaction(
        cut.request,
        Response.from_chunks(
            200,
            list(cut.response.chunks),
            headers=cut.response.headers,
            headers_at=0.2,
            end=End(cut.response.end.at, Outcome.UPSTREAM_ERROR, "connection reset by peer"),
        ),
    )
    return Cassette(
        (
            interaction(text, seed=2),
            interaction(text, seed=2, gzip=True),
            Interaction(
                Request("POST", "https://api.openai.com/v1/chat/completions", (), b"{}"), plain
            ),
            cut,
            interaction(ODD_STREAM, seed=5),
        ),
        meta={"note": "built by tests/test_review.py"},
    )


def expected_events(
    response: Response, pieces: list[tuple[float, bytes]] | None = None
) -> list[tuple[Event, float]]:
    """Each event with the time of the chunk that carries its last byte (computed here)."""
    chunks = pieces if pieces is not None else [(c.at, c.data) for c in response.chunks]
    body = b"".join(d for _, d in chunks)
    out = []
    for ev in parse(body).events:
        total = 0
        for at, data in chunks:
            total += len(data)
            if total >= ev.end:
                out.append((ev, at))
                break
    return out


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.msgpack"
    _store.save(mixed_cassette(), path)
    return path


# ---------------------------------------------------------------------------------------------
# show


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_show_every_example(path: Path) -> None:
    cassette = _store.load(path)
    plain = CliRunner(env={"COLUMNS": "300"}).invoke(main, ["show", str(path)])
    assert plain.exit_code == 0, plain.output
    for inter in cassette.interactions:
        assert inter.request.url in plain.stdout
    events = run("show", str(path), "--events")
    assert events.exit_code == 0, events.output
    assert "gaps " in events.stdout
    for inter in cassette.interactions:
        parsed = parse(inter.response.body).events
        assert f"{len(parsed)} events" in events.stdout
    doc = json.loads(run("show", str(path), "--json").stdout)
    for item, inter in zip(doc["interactions"], cassette.interactions, strict=True):
        expected = expected_events(inter.response)
        assert [(e["type"], e["data"], e["at"]) for e in item["events"]] == [
            (ev.type, ev.data, at) for ev, at in expected
        ]
    text = run("show", str(path), "--diff-text")
    assert text.exit_code == 0 and "\x1b" not in text.stdout
    assert text.stdout.count("\nevent ") == sum(
        len(parse(i.response.body).events) for i in cassette.interactions
    )


def test_examples_are_there() -> None:
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f"{p.parent.name}/{p.stem}" for p in FIXTURES])
def test_show_json_matches_the_parser(fixture: Path, tmp_path: Path) -> None:
    cassette = fixture_cassette(fixture, seed=len(fixture.name), stall_before_chunk=7)
    path = tmp_path / "c.msgpack"
    _store.save(cassette, path)
    result = run("show", str(path), "--json")
    assert result.exit_code == 0, result.output
    [item] = json.loads(result.stdout)["interactions"]
    resp = cassette.interactions[0].response
    expected = expected_events(resp)
    assert item["event_count"] == len(expected) > 0
    times = [at for _, at in expected]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert [e["index"] for e in item["events"]] == list(range(1, len(expected) + 1))
    assert [
        (e["type"], e["data"], e["id"], e["offset"], e["size"], e["at"]) for e in item["events"]
    ] == [(ev.type, ev.data, ev.id, ev.start, len(ev.raw), at) for ev, at in expected]
    assert [e["gap"] for e in item["events"]] == [None, *gaps]
    assert item["ttfe"] == times[0]
    assert item["ttfb"] == resp.chunk_at[0]
    assert item["duration"] == resp.end.at
    assert item["bytes"] == item["body_bytes"] == len(fixture.read_bytes())
    if gaps:
        assert item["gap_median"] == pytest.approx(statistics.median(gaps))
        assert item["gap_max"] == max(gaps)
    # the 2 s stall is between two events, or before the first one
    assert max(gaps, default=0) >= 2.0 or item["ttfe"] - item["ttfb"] >= 2.0


def test_show_table_and_events_on_a_mixed_cassette(saved: Path) -> None:
    cassette = _store.load(saved)
    wide = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["show", str(saved)])
    assert wide.exit_code == 0
    header = next(line for line in wide.stdout.splitlines() if "TTFB" in line)
    for column in (
        "method",
        "URL",
        "status",
        "outcome",
        "events",
        "bytes",
        "TTFE",
        "duration",
        "gap p50",
        "gap p95",
    ):
        assert column in header
    assert "upstream_error" in wide.stdout and "connection reset by peer" in wide.stdout
    assert "gzip-encoded on the wire" in wide.stdout and "decoded for display" in wide.stdout
    narrow = CliRunner(env={"COLUMNS": "80"}).invoke(main, ["show", str(saved)])
    assert narrow.exit_code == 0 and "TTFE" in narrow.stdout
    # too narrow for the table: one block per interaction; piped, no line is ever broken
    lines = narrow.stdout.splitlines()
    assert lines[0] == f"{saved} — {len(cassette.interactions)} interaction(s)"
    for n, inter in enumerate(cassette.interactions, 1):
        assert f"#{n} {inter.request.method} {inter.request.url}" in lines

    events = run("show", str(saved), "--events").stdout
    # the delta text of the OpenAI stream, as text (not JSON), in both the plain and the gzip one
    assert events.count('" unable"') == 2
    assert "héllo — 日本語 ✓" in events
    assert '{"error":{"message":"bad model"}}' in events
    text = run("show", str(saved), "--diff-text").stdout
    assert text.count("event 2 at ") == 4  # openai, openai gzip, anthropic (cut), odd
    assert "comment at " in text and "keep-alive" in text
    assert "line one\\nline two" in text  # multi-line data stays on one line
    assert "note: gzip-encoded on the wire" in text
    assert '"message": "bad model"' in text  # the JSON error body, reformatted
    assert "end: upstream_error at" in text
    # the gzip interaction shows the same events as the plain one
    blocks = text.split("=== interaction ")
    plain_events = [
        line.split(" at ")[0] + line.split("s ", 1)[1]
        for line in blocks[1].splitlines()
        if line.startswith("event ")
    ]
    gzip_events = [
        line.split(" at ")[0] + line.split("s ", 1)[1]
        for line in blocks[2].splitlines()
        if line.startswith("event ")
    ]
    assert plain_events == gzip_events and len(plain_events) == 34
    doc = json.loads(run("show", str(saved), "--json").stdout)
    assert doc["interactions"][1]["decoded"] is True
    assert doc["interactions"][1]["events"] == doc["interactions"][0]["events"]
    assert doc["interactions"][1]["bytes"] < doc["interactions"][1]["body_bytes"]
    assert doc["interactions"][2]["event_count"] == 0 and doc["interactions"][2]["status"] == 400
    odd = doc["interactions"][4]
    assert [e["data"] for e in odd["events"]] == [
        '{"delta":{"text":"héllo — 日本語 ✓"}}',
        "line one\nline two",
        "[DONE]",
    ]
    assert odd["comments"] == 1
    assert len(cassette) == len(doc["interactions"])


def test_show_marks_a_stall_in_the_terminal_timeline(tmp_path: Path) -> None:
    path = tmp_path / "stall.msgpack"
    _store.save(
        fixture_cassette(PROVIDERS / "openai-chat" / "text.sse", seed=9, stall_before_chunk=20),
        path,
    )
    out = run("show", str(path), "--events").stdout
    spark = next(line for line in out.splitlines() if line.startswith("gaps "))[5:]
    assert spark.count("█") == 1 and set(spark) - {"█"} <= set("▁▂")  # one tall bar, the rest flat
    assert "1 stall(s) marked !" in out
    stalled = [line for line in out.splitlines() if "█ !" in line]
    assert len(stalled) == 1 and "████████████████ !" in stalled[0] and " 2." in stalled[0]


def test_excerpt_finds_the_text() -> None:
    assert excerpt('{"choices":[{"delta":{"content":" unable"}}]}') == '" unable"'
    assert (
        excerpt(
            '{"type":"content_block_delta","delta":{"type":"input_json_delta","partial_json":"{\\"a"}}'
        )
        == '"{\\"a"'
    )
    assert excerpt('{"choices":[{"delta":{},"finish_reason":"stop"}]}') == "finish_reason=stop"
    assert excerpt("[DONE]") == "[DONE]"
    assert excerpt("x" * 500, 20) == "x" * 19 + "…"
    assert excerpt("a\nb") == "a\\nb"


DAMAGED = {
    "truncated": lambda good: good[: len(good) // 2],
    "random bytes": lambda good: bytes(random.Random(4).randrange(256) for _ in range(300)),
    "empty": lambda good: b"",
    "not a cassette": lambda good: b"\x81\xa3foo\xa3bar",
    "bad json": lambda good: b'{"format": "ssevcr", "version": 1, "interactions": [',
    "newer version": lambda good: (
        _format.export_json(_format.loads(good))
        .replace(f'"version": {_format.PLAIN_VERSION}', '"version": 99')
        .encode()
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGED), ids=list(DAMAGED))
@pytest.mark.parametrize(
    "command",
    [
        ["show"],
        ["show", "--events"],
        ["show", "--json"],
        ["show", "--diff-text"],
        ["export"],
        ["audit"],
    ],
    ids=lambda c: " ".join(c),
)
def test_damaged_cassettes_give_one_clean_error(
    damage: str, command: list[str], saved: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(DAMAGED[damage](saved.read_bytes()))
    result = run(*command, str(bad))
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and str(bad) in errors[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    "command", [["show"], ["export"], ["audit"], ["import", "-o", "x.msgpack"]]
)
def test_missing_file(command: list[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.msgpack")
    result = run(command[0], missing, *command[1:])
    assert result.exit_code == 1 and "no such file" in result.stderr and missing in result.stderr


def test_picture_options_need_a_picture(saved: Path) -> None:
    result = run("show", str(saved), "--timing", "instant")
    assert result.exit_code == 2 and "--svg/--html" in result.output
    assert run("show", str(saved), "--svg", "x.svg", "--timing", "sideways").exit_code == 1


# ---------------------------------------------------------------------------------------------
# export / import


@pytest.mark.parametrize("path", [*EXAMPLES, None], ids=[*(p.stem for p in EXAMPLES), "mixed"])
def test_export_import_is_byte_identical(path: Path | None, saved: Path, tmp_path: Path) -> None:
    source = path or saved
    twin = tmp_path / "twin.json"
    back = tmp_path / "back.msgpack"
    assert run("export", str(source), "-o", str(twin)).exit_code == 0
    assert run("import", str(twin), "-o", str(back)).exit_code == 0
    assert back.read_bytes() == source.read_bytes()
    # stdout / stdin too
    exported = run("export", str(source))
    assert exported.stdout_bytes == twin.read_bytes()
    assert run("import", "-", "-o", str(back), input=exported.stdout_bytes).exit_code == 0
    assert back.read_bytes() == source.read_bytes()


def test_export_uses_base64_only_where_needed(saved: Path) -> None:
    doc = json.loads(run("export", str(saved)).stdout)
    gz = doc["interactions"][1]["response"]["chunks"]
    assert all("data_b64" in c for c in gz)
    odd = doc["interactions"][4]["response"]["chunks"]
    assert any("data_b64" in c for c in odd) or all("data" in c for c in odd)
    assert all("data" in c for c in doc["interactions"][0]["response"]["chunks"])


def _edit(text: str, old: str, new: str, occurrence: int = 0) -> tuple[str, int]:
    """Replace one occurrence; the 1-based line it is on."""
    pos = -1
    for _ in range(occurrence + 1):
        pos = text.index(old, pos + 1)
    return text[:pos] + new + text[pos + len(old) :], text.count("\n", 0, pos) + 1


@pytest.mark.parametrize(
    ("old", "new", "field", "problem"),
    [
        (
            '"headers_at": 0.25',
            '"headers_at": "soon"',
            "interactions[0].response.headers_at",
            "expected",
        ),
        ('"status": 200', '"status": 2000', "interactions[0].response.status", "HTTP status"),
        (
            '"outcome": "complete"',
            '"outcome": "finished"',
            "interactions[0].response.end.outcome",
            "finished",
        ),
        ('"method": "POST"', '"method": null', "interactions[0].request.method", "expected text"),
        ('{"at": ', '{"at": -3, "was": ', "interactions[0].response.chunks[0].at", "seconds"),
    ],
)
def test_a_hand_edited_json_names_the_field_and_its_line(
    old: str, new: str, field: str, problem: str, saved: Path, tmp_path: Path
) -> None:
    text = run("export", str(saved)).stdout
    edited, line = _edit(text, old, new)
    bad = tmp_path / "edited.json"
    bad.write_text(edited, encoding="utf-8")
    result = run("import", str(bad), "-o", str(tmp_path / "out.msgpack"))
    assert result.exit_code == 1
    assert f"line {line}: {field}:" in result.stderr and problem in result.stderr
    assert not (tmp_path / "out.msgpack").exists()


def test_a_chunk_line_is_named_exactly(saved: Path, tmp_path: Path) -> None:
    text = run("export", str(saved)).stdout
    edited, line = _edit(text, '"data": "', '"dat": "', occurrence=5)
    bad = tmp_path / "edited.json"
    bad.write_text(edited, encoding="utf-8")
    result = run("import", str(bad), "-o", str(tmp_path / "out.msgpack"))
    assert (
        result.exit_code == 1 and f"line {line}: interactions[0].response.chunks[" in result.stderr
    )
    assert "needs 'data' or 'data_b64'" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(text.replace('"chunks": [', '"chunks": [[', 1), encoding="utf-8")
    result = run("import", str(broken), "-o", str(tmp_path / "out.msgpack"))
    assert result.exit_code == 1 and "line " in result.stderr


# ---------------------------------------------------------------------------------------------
# git diff through the textconv


def _ssevcr_executable() -> str | None:
    beside = Path(sys.executable).with_name("ssevcr")
    return str(beside) if beside.exists() else shutil.which("ssevcr")


@pytest.mark.skipif(
    shutil.which("git") is None or _ssevcr_executable() is None, reason="needs git and ssevcr"
)
def test_git_diff_shows_the_changed_event(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=repo,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout

    body = (PROVIDERS / "openai-chat" / "text.sse").read_bytes()
    cassette = repo / "cassettes" / "story.msgpack"
    _store.save(Cassette((interaction(body, seed=11),)), cassette)
    git("init", "-q")
    (repo / ".gitattributes").write_text("*.msgpack diff=ssevcr\n")
    git("add", ".")
    git("commit", "-q", "-m", "record")

    # the same length, so the chunk boundaries (and every other event's time) stay as they were
    changed = body.replace(b'"content":" unable"', b'"content":" UNABLE"')
    assert changed != body
    _store.save(Cassette((interaction(changed, seed=11),)), cassette)
    assert "Binary files" in git("diff")  # without the textconv, git sees bytes

    git("config", "diff.ssevcr.textconv", f"{_ssevcr_executable()} show --diff-text")
    diff = git("diff")
    removed = [
        line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")
    ]
    added = [
        line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    ]
    assert len([line for line in removed if line.startswith("-event ")]) == 1
    [old_event] = [line for line in removed if line.startswith("-event ")]
    [new_event] = [line for line in added if line.startswith("+event ")]
    assert old_event.startswith("-event 3 at ") and '"content":" unable"' in old_event
    assert new_event.startswith("+event 3 at ") and '"content":" UNABLE"' in new_event
    assert old_event.replace("unable", "UNABLE")[1:] == new_event[1:]
    assert len(removed) == len(added) == 1


def test_diff_text_is_stable(saved: Path) -> None:
    a = CliRunner(env={"COLUMNS": "40"}).invoke(main, ["show", str(saved), "--diff-text"]).stdout
    b = CliRunner(env={"COLUMNS": "300"}).invoke(main, ["show", str(saved), "--diff-text"]).stdout
    assert a == b and "\x1b[" not in a


# ---------------------------------------------------------------------------------------------
# audit


def planted() -> Cassette:
    """Secrets in a header, a query parameter, a request body, and an SSE chunk (split across two
    chunks), plus the same stream gzip-encoded."""
    body = (PROVIDERS / "anthropic" / "text.sse").read_bytes()
    leak = (
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
        f'{{"type":"text_delta","text":"use {ANTHROPIC_KEY} here"}}}}\n\n'
    ).encode()
    at = body.index(b"event: content_block_stop")
    leaky = body[:at] + leak + body[at:]
    secret_pos = leaky.index(ANTHROPIC_KEY.encode())
    one = interaction(
        leaky,
        seed=2,
        url="https://api.anthropic.com/v1/messages?beta=true",
        request_headers=(("x-api-key", "REDACTED"), ("x-debug-auth", f"Bearer {OPENAI_KEY}")),
    )
    # make a chunk boundary fall inside the key
    pieces = [(c.at, c.data) for c in one.response.chunks]
    joined = b"".join(d for _, d in pieces)
    split = secret_pos + 10
    cut = [(pieces[0][0], joined[:split]), (pieces[1][0], joined[split:])]
    one = Interaction(
        one.request,
        Response.from_chunks(
            200, cut, headers=one.response.headers, headers_at=0.25, end=one.response.end
        ),
    )
    two = interaction(
        (PROVIDERS / "gemini" / "text.sse").read_bytes(),
        seed=3,
        url=f"https://generativelanguage.googleapis.com/v1beta/models/g:streamGenerateContent?alt=sse&key={GOOGLE_KEY}",
    )
    three = interaction(
        leaky,
        seed=4,
        gzip=True,
        request_body=json.dumps({"model": "m", "api_key": BODY_SECRET, "stream": True}).encode(),
        request_headers=(("content-length", "64"),),
    )
    return Cassette((one, two, three))


SECRETS = (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, BODY_SECRET)


def test_audit_finds_planted_secrets_and_fix_removes_them(tmp_path: Path) -> None:
    path = tmp_path / "leaky.msgpack"
    original = planted()
    _store.save(original, path)
    result = run("audit", str(path))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    expected = [
        ("interaction 1: request header 'x-debug-auth'", "OpenAI API key"),
        ("interaction 1: response event 5", "Anthropic API key"),
        ("interaction 2: request URL query 'key'", "Google API key"),
        ("interaction 3: request body", "credential in 'api_key'"),
        ("interaction 3: response event 5", "Anthropic API key"),
    ]
    assert len(lines) == len(expected)
    for line, (where, kind) in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}: {where}: {kind}: ")
    for secret in SECRETS:  # never printed whole
        assert secret not in result.output and secret[:4] in result.output

    fixed = run("audit", "--fix", str(path))
    assert fixed.exit_code == 0 and "redacted 5 finding(s)" in fixed.stderr
    again = run("audit", str(path))
    assert again.exit_code == 0 and again.stdout == ""
    clean = _store.load(path)
    raw = path.read_bytes()
    assert not any(s.encode() in raw for s in SECRETS)
    # everything else kept: chunk times, event count, other headers, the rest of the bytes
    for before, after in zip(original.interactions, clean.interactions, strict=True):
        assert after.response.chunk_at == before.response.chunk_at
        assert (
            len(parse(after.response.body).events) == len(parse(before.response.body).events)
            or after.response.content_encoding == "gzip"
        )
    one = clean.interactions[0]
    assert (
        one.request.header("x-debug-auth") == "REDACTED"
    )  # a whole credential header, as at record time
    assert one.response.body == original.interactions[0].response.body.replace(
        ANTHROPIC_KEY.encode(), b"REDACTED"
    )
    assert (
        one.response.chunk_sizes[0]
        == len(original.interactions[0].response.body.split(ANTHROPIC_KEY.encode())[0]) + 8
    )
    assert clean.interactions[1].request.url.endswith("?alt=sse&key=REDACTED")
    three = clean.interactions[2]
    assert json.loads(three.request.body)["api_key"] == "REDACTED"
    assert three.request.header("content-length") == str(len(three.request.body))
    assert three.response.content_encoding == "gzip"  # still gzip, decodes chunk by chunk
    decoded = zlib.decompressobj(wbits=31)
    plain = b"".join(decoded.decompress(c.data) for c in three.response.chunks)
    assert plain == one.response.body
    doc = json.loads(run("show", str(path), "--json").stdout)
    assert doc["interactions"][2]["events"][4]["data"].count("use REDACTED here") == 1
    original_three = original.interactions[2].response
    assert [e["at"] for e in doc["interactions"][2]["events"]] == [
        at for _, at in expected_events(original_three, _decoded(original_three))
    ]


def _decoded(response: Response) -> list[tuple[float, bytes]]:
    d = zlib.decompressobj(wbits=31)
    return [(c.at, d.decompress(c.data)) for c in response.chunks]


def test_audit_fix_on_a_json_twin_keeps_it_json(tmp_path: Path) -> None:
    twin = tmp_path / "leaky.json"
    twin.write_text(_format.export_json(planted()), encoding="utf-8")
    assert run("audit", str(twin)).exit_code == 1
    assert run("audit", "--fix", str(twin)).exit_code == 0
    assert twin.read_text(encoding="utf-8").startswith("{")
    assert not scan(_format.import_json(twin.read_bytes()))


def test_audit_passes_on_examples_and_fixture_streams(tmp_path: Path) -> None:
    assert EXAMPLES
    result = run("audit", *map(str, EXAMPLES))
    assert result.exit_code == 0, result.output
    assert f"no credentials found in {len(EXAMPLES)} cassette(s)" in result.stderr
    for fixture in FIXTURES:
        assert scan(fixture_cassette(fixture)) == [], fixture
        assert scan(fixture_cassette(fixture, gzip=True)) == [], fixture


def test_audit_knows_what_is_not_a_secret() -> None:
    fine = Cassette(
        (
            interaction(
                b'data: {"text":"sk-learn-is-a-python-library-for-ml"}\n\n',
                request_headers=(
                    ("x-api-key", "REDACTED"),
                    ("authorization", "Bearer REDACTED"),
                    ("idempotency-key", "stainless-python-retry-4f1c9b7e-2d3a"),
                    ("x-ratelimit-remaining-tokens", "39985"),
                ),
            ),
        )
    )
    assert scan(fine) == []
    assert (
        looks_random("Zx8Kq2Lm9Np4Rs7Tv1Wy3Qa6")
        and not looks_random("REDACTED")
        and not looks_random("hello-world-again")
    )
    for headers in (
        (("authorization", "Bearer abcdefgh12345678"),),
        (("cookie", "session=9f8e7d6c5b4a39281706f5e4d3c2b1a0"),),
        (("x-amz-security-token", "FwoGZXIvYXdzEJr2Ab4Cd6Ef8Gh0"),),
    ):
        found = scan(Cassette((interaction(b"data: x\n\n", request_headers=headers),)))
        assert len(found) == 1 and found[0].location == f"request header {headers[0][0]!r}"


def test_audit_reports_each_damaged_file_and_goes_on(saved: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\x00\x01")
    result = run("audit", str(bad), str(saved))
    assert result.exit_code == 1 and result.stderr.count("Error: ") == 1
    assert "no credentials found" not in result.stderr


# ---------------------------------------------------------------------------------------------
# the picture


def lanes(svg_root: ET.Element) -> dict[tuple[str, str], list[float]]:
    """(track, lane) -> event marker times."""
    out = {}
    for track in svg_root.iter(f"{SVG}g"):
        if track.get("class") != "track":
            continue
        for lane in track.iter(f"{SVG}g"):
            if lane.get("class") == "lane-group":
                out[(track.get("data-track", ""), lane.get("data-lane", ""))] = [
                    float(c.get("data-at", "nan"))
                    for c in lane.iter(f"{SVG}circle")
                    if "event" in c.get("class", "").split()
                ]
    return out


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_svg_has_one_marker_per_event_for_the_examples(path: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.svg"
    assert run("show", str(path), "--svg", str(out)).exit_code == 0
    found = lanes(ET.parse(out).getroot())
    for n, inter in enumerate(_store.load(path).interactions, 1):
        expected = [at for _, at in expected_events(inter.response)]
        assert found[(str(n), "recorded")] == expected
        assert found[(str(n), "replay")] == expected  # original timing: the same arrivals


def test_svg_and_html_show_a_replay_with_a_stall(saved: Path, tmp_path: Path) -> None:
    svg_file, html_file = tmp_path / "t.svg", tmp_path / "t.html"
    result = run(
        "show",
        str(saved),
        "--svg",
        str(svg_file),
        "--html",
        str(html_file),
        "--timing",
        "scale:0.5",
        "--fault",
        "stall:before=3,for=2s,on=1",
        "--fault",
        "drop:event=last",
        "--seed",
        "7",
    )
    assert result.exit_code == 0, result.output
    root = ET.parse(svg_file).getroot()
    assert root.tag == f"{SVG}svg"
    found = lanes(root)
    cassette = _store.load(saved)
    for n, inter in enumerate(cassette.interactions, 1):
        pieces = _decoded(inter.response) if inter.response.content_encoding == "gzip" else None
        recorded = [at for _, at in expected_events(inter.response, pieces)]
        assert found[(str(n), "recorded")] == recorded
        replay = found[(str(n), "replay")]
        if recorded:
            assert len(replay) == len(recorded) - 1  # drop:event=last
        if n == 1:  # the stall: 2 s before event 3, the rest at half speed
            assert replay[2] - replay[1] == pytest.approx(
                2 + (recorded[2] - recorded[1]) / 2, abs=1e-6
            )
            assert replay[5] - replay[4] == pytest.approx((recorded[5] - recorded[4]) / 2, abs=1e-6)
        elif len(recorded) > 3:
            assert replay[:3] == pytest.approx([t / 2 for t in recorded[:3]])
    track1 = next(g for g in root.iter(f"{SVG}g") if g.get("data-track") == "1")
    stalls = [r for r in track1.iter(f"{SVG}rect") if r.get("class") == "stall"]
    assert len(stalls) == 1 and "before event 3" in "".join(stalls[0].itertext())
    ticks = [
        "".join(t.itertext())
        for g in track1.iter(f"{SVG}g")
        if g.get("class") == "tick"
        for t in g.iter(f"{SVG}text")
    ]
    assert ticks[0] == "0.0s" and all(t.endswith("s") for t in ticks) and len(ticks) >= 4
    notes = "".join(t.text or "" for t in track1.iter(f"{SVG}text") if t.get("class") == "note")
    assert "fault fired: stall:before=3,for=2s,on=1" in notes
    page = ET.parse(html_file).getroot()  # the page is well-formed XML too
    inner = page.find(f".//{SVG}svg")
    assert inner is not None and lanes(inner) == found
    assert "scale:0.5" in html_file.read_text(encoding="utf-8")


def test_recorded_text_is_never_terminal_markup(tmp_path: Path) -> None:
    path = tmp_path / "edge.msgpack"
    odd = Response.from_chunks(
        200,
        [(0.1, b"data: [red]not markup[/red] [/] [link=x]y\n\n"), (0.2, b"data: b\n\n")],
        headers=(("content-type", "text/event-stream"),),
    )
    empty = Response(204, headers=(("content-type", "text/event-stream"),))
    _store.save(
        Cassette(
            (
                Interaction(Request("GET", "https://x/[bold]y[/bold]"), empty),
                Interaction(Request("GET", "https://x/s"), odd),
            )
        ),
        path,
    )
    for args in ([], ["--events"]):
        result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["show", str(path), *args])
        assert result.exit_code == 0, result.output
        assert "https://x/[bold]y[/bold]" in result.stdout
        if args:
            assert "[red]not markup[/red] [/] [link=x]y" in result.stdout


def test_an_empty_cassette(tmp_path: Path) -> None:
    path = tmp_path / "empty.msgpack"
    _store.save(Cassette(), path)
    assert "0 interaction(s)" in run("show", str(path), "--events").stdout
    assert json.loads(run("show", str(path), "--json").stdout) == {
        "cassette": str(path),
        "interactions": [],
    }
    assert run("show", str(path), "--svg", str(tmp_path / "e.svg")).exit_code == 0
    assert ET.parse(tmp_path / "e.svg").getroot().tag == f"{SVG}svg"
    assert run("audit", str(path)).exit_code == 0


# ---------------------------------------------------------------------------------------------
# terminal safety: control sequences from a cassette are shown, never obeyed

OSC52 = "\x1b]52;c;SGVsbG8gY2xpcGJvYXJk\x07"  # would set the clipboard
CLEAR = "\x1b[2J\x1b[H"  # would clear the screen
CSI8 = "\u009b31m"  # the 8-bit CSI


def hostile() -> Cassette:
    evil = OSC52 + CLEAR + CSI8 + "\u202e"
    sse = (
        f'event: t{evil}\nid: i{evil}\ndata: {{"text":"a{evil}"}}\n\n'
        f": c{evil}\n\ndata: plain {evil}\n\ndata: tail{evil}"
    ).encode()
    stream = Response.from_chunks(
        200,
        [(0.1, sse[:30]), (0.2, sse[30:])],
        headers=(("content-type", "text/event-stream"),),
        end=End(0.3, Outcome.UPSTREAM_ERROR, f"reset {evil}"),
    )
    plain = Response.from_chunks(
        200, [(0.1, f"body {evil}".encode())], headers=(("content-type", "text/plain"),)
    )
    req = Request("POST", f"https://h/p{CLEAR}?q={OSC52}", (("x-note", "n"),), f"b{evil}".encode())
    return Cassette(
        (Interaction(req, stream, meta={"note": f"m{evil}"}), Interaction(req, plain)),
        meta={"by": f"x{evil}"},
    )


def assert_inert(text: str) -> None:
    for c in ("\x1b", "\x07", "\u009b", "\u202e"):
        assert c not in text, (c, text[:2000])


def test_control_sequences_are_escaped_in_every_output(tmp_path: Path) -> None:
    path = tmp_path / "hostile.msgpack"
    _store.save(hostile(), path)
    for args in ([], ["--events"], ["--diff-text"], ["--json"]):
        for columns in ("80", "200"):
            result = CliRunner(env={"COLUMNS": columns}).invoke(main, ["show", str(path), *args])
            assert result.exit_code == 0, result.output
            assert_inert(result.output)
            if args != ["--json"]:
                assert "\\x1b]52;c;" in result.output or "\\x1b[2J" in result.output
    diff = run("show", str(path), "--diff-text").stdout
    assert (
        "event 1 at 0.200000s t\\x1b]52;c;SGVsbG8gY2xpcGJvYXJk\\x07\\x1b[2J\\x1b[H\\x9b31m\\u202e"
        in diff
    )
    doc = json.loads(run("show", str(path), "--json").stdout)  # JSON escapes, the data is intact
    assert doc["interactions"][0]["events"][0]["type"] == "t" + OSC52 + CLEAR + CSI8 + "\u202e"
    audit_out = run("audit", str(path))
    assert_inert(audit_out.output)


def test_miss_explanations_escape_control_sequences() -> None:
    from ssevcr._matching import MatchOptions, explain_miss

    cassette = hostile()
    recorded = [i.request for i in cassette.interactions]
    live = Request("GET", f"https://h/other{OSC52}", (), f"x{CLEAR}".encode())
    text = explain_miss(f"c{CLEAR}.msgpack", recorded, live, MatchOptions())
    assert_inert(text.replace(CLEAR, ""))  # the cassette name is the caller's
    assert "\\x1b]52;c;" in text and "closest: #1 POST https://h/p\\x1b[2J" in text


# ---------------------------------------------------------------------------------------------
# piped output never wraps


def test_piped_show_never_wraps_in_any_mode(tmp_path: Path) -> None:
    url = "https://api.example.com/v1/" + "segment/" * 40 + "end?alt=sse"
    data = '{"text":"' + "word " * 30 + 'end"}'
    stream = Response.from_chunks(
        200,
        [(0.1, f"data: {data}\n\n".encode()), (0.2, b"data: b\n\n")],
        headers=(("content-type", "text/event-stream"),),
        end=End(0.3, Outcome.UPSTREAM_ERROR, "connection reset " + "x" * 200),
    )
    path = tmp_path / "long.msgpack"
    _store.save(Cassette((Interaction(Request("GET", url), stream),)), path)
    for columns in (None, "40", "80", "200"):
        for args in ([], ["--events"], ["--diff-text"], ["--json"]):
            out = CliRunner(env={"COLUMNS": columns}).invoke(main, ["show", str(path), *args])
            assert out.exit_code == 0, out.output
            lines = out.stdout.splitlines()
            assert any(url in line for line in lines), (columns, args, out.stdout[:500])
            if args != ["--json"]:
                assert any(("x" * 200) in line for line in lines) or args == ["--diff-text"]
            if args == ["--events"]:
                assert any(excerpt(data, 200) in line for line in lines)
            assert all(line == line.rstrip() for line in lines)  # no padding to a width
