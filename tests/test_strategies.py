"""ssevcr.strategies: re-splittings keep every byte and the timing, reach the hostile boundaries,
and shrink a planted line-buffering bug to the one split that triggers it."""

from __future__ import annotations

import json
import re

import httpx2
import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ssevcr
import ssevcr.strategies as sst
from ssevcr import Cassette, End, Interaction, Request, Response, load

CASSETTE = FIXTURES.parent.parent / "cassettes" / "examples" / "openai-chat-text.msgpack"
RECORDED = load(CASSETTE)


@given(st.data())
def test_a_resplit_body_keeps_every_byte_and_never_moves_a_byte_earlier(
    data: st.DataObject,
) -> None:
    response = RECORDED.interactions[0].response
    again = data.draw(sst.rechunked(response))
    assert again.body == response.body
    # each byte goes out with the chunk that carried it, or later: never earlier than recorded
    original = [at for c in response.chunks for at in [c.at] * len(c.data)]
    resplit = [at for c in again.chunks for at in [c.at] * len(c.data)]
    assert all(new >= old for new, old in zip(resplit, original, strict=True))
    assert again.end == response.end and again.headers == response.headers


def test_the_hostile_boundaries_are_drawn() -> None:
    body = b'data: {"t": "\xc3\xa9"}\r\n\r\n'
    seen: set[int] = set()

    @settings(max_examples=300, database=None)
    @given(sst.splits(body))
    def collect(points: tuple[int, ...]) -> None:
        seen.update(points)

    collect()
    crlf = body.index(b"\r\n") + 1
    inside_utf8 = body.index(b"\xc3") + 1
    after_colon = body.index(b":") + 1
    assert {crlf, inside_utf8, after_colon} <= seen


class Broken(Exception):
    """The consumer under test gave the wrong answer."""


_EOL = re.compile(rb"\r\n|\r|\n")


def sse_text(chunks: list[bytes], *, buggy: bool) -> str:
    """A consumer that decodes SSE lines from reads. The buggy one takes a CR at the very end of a
    read as a whole line end, so when the LF of that CRLF opens the next read it sees an extra
    empty line and dispatches the event before its second data line."""
    text, buffer, data = [], b"", []
    for chunk in chunks:
        buffer += chunk
        pos = 0
        for m in _EOL.finditer(buffer):
            if m.group() == b"\r" and m.end() == len(buffer) and not buggy:
                break  # the next read may start with its LF
            line, pos = buffer[pos : m.start()], m.end()
            if line.startswith(b"data: "):
                data.append(line[6:])
            elif not line and data:
                payload, data = b"\n".join(data), []
                if payload != b"[DONE]":
                    text.append(json.loads(payload)["t"])
        buffer = buffer[pos:]
    return "".join(text)


# events whose JSON spans two data lines, CRLF line ends
CRLF_BODY = (
    b"".join(b'data: {"t":\r\ndata: "%d"}\r\n\r\n' % i for i in range(6)) + b"data: [DONE]\r\n\r\n"
)


def test_a_planted_crlf_bug_shrinks_to_a_split_between_cr_and_lf() -> None:
    assert sse_text([CRLF_BODY], buggy=True) == sse_text([CRLF_BODY], buggy=False) == "012345"
    failures: list[list[bytes]] = []

    @settings(
        max_examples=500, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(sst.rechunkings(CRLF_BODY, max_splits=16))
    def consumer_is_robust(chunks: list[bytes]) -> None:
        assert sse_text(chunks, buggy=False) == "012345"  # the correct one never fails
        try:
            ok = sse_text(chunks, buggy=True) == "012345"
        except ValueError:
            ok = False
        if not ok:
            failures.append(chunks)
            raise Broken

    with pytest.raises(Broken):
        consumer_is_robust()
    smallest = failures[-1]  # hypothesis replays the shrunk example last
    assert len(smallest) == 2, smallest  # one split ...
    assert smallest[0].endswith(b"\r") and smallest[1].startswith(b"\n")  # ... between CR and LF
    assert smallest[1].startswith(b"\ndata: ")  # the CRLF between an event's two data lines


@settings(max_examples=25, deadline=None)
@given(sst.rechunked(RECORDED))
def test_the_openai_sdk_assembles_the_same_text_for_every_split(cassette: Cassette) -> None:
    import openai

    transport = ssevcr.ReplayTransport(cassette, timing="instant")
    client = openai.OpenAI(
        api_key="x", max_retries=0, http_client=httpx2.Client(transport=transport)
    )
    params = json.loads(RECORDED.interactions[0].request.body)
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(**params)
        if c.choices
    )
    assert text.startswith("I'm unable to provide real-time weather")


def test_one_byte_reads_are_drawn_unless_the_splits_are_capped() -> None:
    body = CRLF_BODY[:40]
    dense: list[bool] = []

    @settings(max_examples=200, database=None)
    @given(sst.splits(body), sst.splits(body, max_splits=5))
    def collect(points: tuple[int, ...], capped: tuple[int, ...]) -> None:
        dense.append(points == tuple(range(1, len(body))))
        assert len(capped) <= 5

    collect()
    assert any(dense)


@pytest.mark.parametrize("body", [b"", b"x"])
def test_an_empty_body_and_a_one_byte_body(body: bytes) -> None:
    r = Response.from_chunks(200, [(0.0, body)] if body else [], end=End(0.0))

    @given(sst.rechunked(Interaction(Request("GET", "http://x/"), r)))
    def same(i: Interaction) -> None:
        assert i.response.body == body

    same()


def test_the_documented_example_runs() -> None:
    """examples/test_every_split.py, the pattern the README shows, passes as a pytest run."""
    import subprocess
    import sys

    example = FIXTURES.parent.parent / "examples" / "test_every_split.py"
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=example.parent,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout
