"""The bundled example cassettes (cassettes/examples/): real provider bytes, synthesized timing.

Checked against the fixtures they were built from (tests/fixtures/providers/), the event counts
PROVENANCE.md states, the timing ranges examples/build_example_cassettes.py promises, and the
request bodies the official SDKs really send.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from ssevcr import _store
from ssevcr._cassette import Cassette, Outcome
from ssevcr._sse import parse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "cassettes" / "examples"
PROVIDERS = ROOT / "tests" / "fixtures" / "providers"
SCRIPT = ROOT / "examples" / "build_example_cassettes.py"

# cassette name -> (fixture, SDK that replays it)
CASSETTES = {
    "openai-chat-text": ("openai-chat/text.sse", "openai-chat"),
    "openai-chat-tool-calls": ("openai-chat/parallel_tool_calls.sse", "openai-chat"),
    "openai-responses-text": ("openai-responses/text.sse", "openai-responses"),
    "openai-responses-function-call": ("openai-responses/function_call.sse", "openai-responses"),
    "anthropic-text": ("anthropic/text.sse", "anthropic"),
    "anthropic-tool-use": ("anthropic/tool_use_padded.sse", "anthropic"),
    "gemini-text": ("gemini/text.sse", "gemini"),
    "groq-error-midstream": ("groq/error_midstream.sse", "groq"),
}
CREDENTIAL = {
    "openai-chat": "authorization",
    "openai-responses": "authorization",
    "groq": "authorization",
    "anthropic": "x-api-key",
    "gemini": "x-goog-api-key",
}
SDK_CASSETTES = [name for name, (_, kind) in CASSETTES.items() if kind != "gemini"]

# The synthesized timing the build script promises (seconds), with rounding slack.
EPS = 2e-6
HEADERS_AT = (0.15, 0.45)
FIRST_EVENT_AFTER_HEADERS = (0.05, 0.30)
EVENT_GAP = (0.010, 0.060)
SPLIT_GAP = (0.0005, 0.0015)
END_AFTER_LAST_CHUNK = (0.0005, 0.0015)


def _load(name: str) -> Cassette:
    return _store.load(EXAMPLES / f"{name}.msgpack")


def _fixture(name: str) -> bytes:
    return (PROVIDERS / CASSETTES[name][0]).read_bytes()


def _stated_events(fixture: str) -> int:
    text = (PROVIDERS / "PROVENANCE.md").read_text(encoding="utf-8")
    section = re.search(rf"^### `{re.escape(fixture)}`\n(.*?)(?=^### |\Z)", text, re.M | re.S)
    assert section, fixture
    count = re.search(
        r"^- checked: WHATWG reference parser -> (\d+) events", section.group(1), re.M
    )
    assert count, fixture
    return int(count.group(1))


def _within(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] - EPS <= value <= bounds[1] + EPS


def test_every_example_is_there() -> None:
    assert set(CASSETTES) <= {p.stem for p in EXAMPLES.glob("*.msgpack")}


@pytest.mark.parametrize("name", CASSETTES)
def test_example_loads_with_one_labelled_interaction(name: str) -> None:
    c = _load(name)
    assert len(c) == 1
    assert c.meta["timing"] == "synthesized"
    assert c.meta["source"] == f"tests/fixtures/providers/{CASSETTES[name][0]}"
    assert "build_example_cassettes.py (seed " in c.meta["note"]
    assert c.meta["provenance"].startswith("real-capture")
    resp = c.interactions[0].response
    assert (resp.status, resp.reason, resp.http_version) == (200, "OK", "HTTP/1.1")
    assert resp.is_event_stream
    names = {k.lower() for k, _ in resp.headers}
    assert not names & {"transfer-encoding", "content-length", "connection"}
    assert resp.end.outcome is Outcome.COMPLETE and resp.end.error is None


@pytest.mark.parametrize("name", CASSETTES)
def test_body_is_the_fixture_byte_for_byte(name: str) -> None:
    resp = _load(name).interactions[0].response
    assert resp.body == _fixture(name)
    assert b"".join(c.data for c in resp.chunks) == _fixture(name)


@pytest.mark.parametrize("name", CASSETTES)
def test_parser_finds_the_event_count_provenance_states(name: str) -> None:
    resp = _load(name).interactions[0].response
    chunked = parse(c.data for c in resp.chunks)
    assert len(chunked.events) == _stated_events(CASSETTES[name][0])
    assert chunked.tail == b""
    assert chunked.frames == parse(resp.body).frames  # chunking never changes what is parsed


@pytest.mark.parametrize("name", CASSETTES)
def test_times_are_within_the_synthesized_ranges(name: str) -> None:
    resp = _load(name).interactions[0].response
    frame_ends = {f.end for f in parse(resp.body).frames}
    assert _within(resp.headers_at, HEADERS_AT)
    assert _within(resp.chunk_at[0] - resp.headers_at, FIRST_EVENT_AFTER_HEADERS)
    offset = 0
    splits = 0
    for i, size in enumerate(resp.chunk_sizes):
        if i:
            gap = resp.chunk_at[i] - resp.chunk_at[i - 1]
            if offset in frame_ends:  # a new event (or two) after the previous one
                assert _within(gap, EVENT_GAP), (i, gap)
            else:  # the rest of an event split over two chunks
                splits += 1
                assert _within(gap, SPLIT_GAP), (i, gap)
        offset += size
    assert offset in frame_ends  # the body ends on a frame boundary
    assert _within(resp.end.at - resp.chunk_at[-1], END_AFTER_LAST_CHUNK)
    assert splits >= 1  # every example exercises client line buffering


def test_chunking_is_mostly_one_event_per_chunk_with_some_coalesced() -> None:
    coalesced = 0
    for name in CASSETTES:
        resp = _load(name).interactions[0].response
        for chunk in resp.chunks:
            coalesced += len(parse(chunk.data).events) >= 2
        assert len(resp.chunk_sizes) >= 0.8 * len(parse(resp.body).events)
    assert coalesced >= len(CASSETTES) // 2


@pytest.mark.parametrize("name", CASSETTES)
def test_request_is_what_an_sdk_sends(name: str) -> None:
    c = _load(name)
    req = c.interactions[0].request
    kind = CASSETTES[name][1]
    assert req.method == "POST"
    assert req.header("content-type") == "application/json"
    assert req.header("accept") is not None and req.header("user-agent") is not None
    assert req.header(CREDENTIAL[kind]) == "REDACTED"
    assert req.header("content-length") == str(len(req.body))
    body = json.loads(req.body)
    assert (
        json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() == req.body
    )  # compact
    first = json.loads(parse(_fixture(name)).events[0].data)
    if kind == "gemini":
        assert req.url == (
            "https://generativelanguage.googleapis.com/v1beta/models/"
            f"{first['modelVersion']}:streamGenerateContent?alt=sse"
        )
        return
    assert body["stream"] is True
    model = {
        "openai-responses": lambda: first["response"]["model"],
        "anthropic": lambda: first["message"]["model"],
    }.get(kind, lambda: first["model"])()
    assert body["model"] == model
    if kind == "anthropic":
        assert req.url == "https://api.anthropic.com/v1/messages"
        assert req.header("anthropic-version") is not None
        assert isinstance(body["max_tokens"], int)


def test_openai_chat_asks_for_usage_only_when_the_stream_has_it() -> None:
    for name, (_, kind) in CASSETTES.items():
        if kind not in ("openai-chat", "groq"):
            continue
        datas = [e.data for e in parse(_fixture(name)).events if e.data.startswith("{")]
        has_usage = '"usage":{' in datas[-1] and '"choices":[]' in datas[-1]
        body = json.loads(_load(name).interactions[0].request.body)
        assert ("stream_options" in body) == has_usage, name
        if has_usage:
            assert body["stream_options"] == {"include_usage": True}


def _drain(stream: Iterator[Any]) -> None:
    for _ in stream:
        pass


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK warns about older model names
@pytest.mark.parametrize("name", SDK_CASSETTES)
def test_sdk_sends_the_recorded_request(name: str) -> None:
    """Send json.loads(request.body) through the official SDK as keyword arguments and compare
    what goes out with the cassette (an httpx2 MockTransport, only to learn what the SDK sends)."""
    c = _load(name)
    req = c.interactions[0].request
    resp = c.interactions[0].response
    sent: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(200, headers=[(k, v) for k, v in resp.headers], content=resp.body)

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    params = json.loads(req.body)
    kind = CASSETTES[name][1]
    if kind == "anthropic":
        a = anthropic.Anthropic(api_key="test", http_client=http, max_retries=0)
        _drain(a.messages.create(**params))
    else:
        base = "https://api.groq.com/openai/v1" if kind == "groq" else "https://api.openai.com/v1"
        o = openai.OpenAI(api_key="test", base_url=base, http_client=http, max_retries=0)
        if kind == "openai-responses":
            _drain(o.responses.create(**params))
        elif kind == "groq":
            with pytest.raises(openai.APIError, match="Tool choice is required"):
                _drain(o.chat.completions.create(**params))
        else:
            _drain(o.chat.completions.create(**params))
    assert len(sent) == 1
    assert sent[0].method == req.method
    assert str(sent[0].url) == req.url
    assert json.loads(sent[0].content) == json.loads(req.body)


def test_rebuilding_gives_byte_identical_files(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    built = sorted(p.name for p in tmp_path.glob("*.msgpack"))
    assert built == sorted(f"{name}.msgpack" for name in CASSETTES)
    for filename in built:
        assert (tmp_path / filename).read_bytes() == (EXAMPLES / filename).read_bytes(), filename
