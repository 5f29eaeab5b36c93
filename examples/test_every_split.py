"""The pattern for chunk boundaries: the consumer's output is the same for every split.

Run it with ``pytest examples/test_every_split.py``. Hypothesis re-splits the recorded bytes of a
real stream (1-byte reads, splits between CR and LF, inside UTF-8 characters, several events in
one read); the code under test must assemble the same text every time. When it does not,
hypothesis shrinks the failure to the fewest, earliest splits that break it.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import openai
from hypothesis import given, settings

import ssevcr
import ssevcr.strategies as sst

CASSETTE = Path(__file__).resolve().parent.parent / "cassettes/examples/openai-chat-text.msgpack"
RECORDED = ssevcr.load(CASSETTE)
REQUEST = json.loads(RECORDED.interactions[0].request.body)


def answer(client: openai.OpenAI) -> str:
    """The code under test: the text of a streamed chat completion."""
    chunks = client.chat.completions.create(**REQUEST)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def client_for(cassette: ssevcr.Cassette) -> openai.OpenAI:
    transport = ssevcr.ReplayTransport(cassette, timing="instant")
    return openai.OpenAI(api_key="x", max_retries=0, http_client=httpx2.Client(transport=transport))


EXPECTED = answer(client_for(RECORDED))


@settings(max_examples=50, deadline=None)
@given(sst.rechunked(RECORDED))
def test_the_same_text_for_every_split(cassette: ssevcr.Cassette) -> None:
    assert answer(client_for(cassette)) == EXPECTED
