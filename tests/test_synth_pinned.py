"""The bytes ``ssevcr synth`` writes, pinned: the sha256 of whole synthesized interactions (request,
head, every chunk with its time, end, meta, as saved to a cassette) for every template, at the
benchmark's size (10,000 tokens) and with reasoning, tool calls and the request options that
change the stream. Refactoring or speeding up synthesis must not change a byte of these; a
deliberate change of output updates the pins here in the same commit."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from ssevcr import _format, _synth
from ssevcr._cassette import Cassette
from ssevcr._synth import Content, ToolCall

WORDS = (" stream", " token", " by", " token", ",", " the", " answer", " arrives", " now")
LONG = "".join(WORDS[i % len(WORDS)] for i in range(10_000))  # what bench/bench_synth.py times
CALLS = (
    ToolCall("get_weather", '{"city": "Edinburgh", "units": "c"}'),
    ToolCall("get_stock_price", '{"ticker":"AAPL","exchange":"NASDAQ"}'),
)
MIXED = Content(
    text="Once upon a time — one token at a time. 🤖",
    tool_calls=CALLS,
    reasoning="The user wants a story; keep it short.",
)
RESPONSES_OPTIONS = {
    "model": "o4-mini",
    "input": "Tell me a story and check the weather",
    "include": ["reasoning.encrypted_content"],
    "reasoning": {"effort": "low", "summary": "auto"},
    "stream": True,
}


def _sha(name: str, content: Content, **kw: Any) -> str:
    interaction = _synth.synthesize(name, content, seed=1, **kw)
    return hashlib.sha256(_format.dumps(Cassette((interaction,)))).hexdigest()


LONG_SHA = {
    "anthropic": "f248d06dd40edf0871084b247c70ece234bf233e38b90ac2abbd7b3f2589f879",
    "anthropic@2025-09": "da16a3b27a5a3e399248bed52e75c1c37669d5f5673e74f3fd2f77b2d16615df",
    "gemini": "961629da6b89dd86e34ddcf6284f1e9006a4bab09b1bb2f9543105e289268b39",
    "gemini@2025-06": "52527bde774c0faa2b6c07638f0daee89a1f6f83d27f50cc48f0bb1e3a57bf33",
    "generic": "57ae973bec9cefa7c4ae0ec37cf1da2bed4d590b81b854514b7a2ed69e8373e4",
    "openai-chat": "b18ffd90eef1b643d0897ffc8a4a49cb850b1a5bd2a3e04260abdfb5b9b64d47",
    "openai-chat@2024-09": "cb65a6f1bd7cb3a7b151bc80e4dc09cd0b14760c816a57a9b7503c180acd44f9",
    "openai-responses": "4413ce305ff4c77424d4ca904d28f066097dbe5c19f705dcf4a7b52cadd43eef",
    "openai-responses@2025-03": "25cec91a83ca57cf2466bcceec2e78cef70217a97ef6e58590580a978e898b8c",
    "openai-responses@2025-09": "3c73f4be3f028fc0fb38d521181150ffe00cdf4bae8b845fc698330c0dcaaf76",
}


def test_every_template_is_pinned() -> None:
    assert sorted(LONG_SHA) == sorted(_synth.templates())


@pytest.mark.parametrize("name", sorted(LONG_SHA))
def test_a_10000_token_answer_is_byte_for_byte_the_pinned_one(name: str) -> None:
    assert _sha(name, Content(text=LONG)) == LONG_SHA[name]


MIXED_CASES: dict[str, tuple[str, Content, dict[str, Any]]] = {
    "responses-streamed": ("openai-responses", MIXED, {"request": RESPONSES_OPTIONS}),
    "responses-json": (
        "openai-responses",
        MIXED,
        {"request": {**RESPONSES_OPTIONS, "stream": False}},
    ),
    "responses-no-summary": (
        "openai-responses",
        MIXED,
        {"request": {**RESPONSES_OPTIONS, "reasoning": {"effort": "low"}, "include": []}},
    ),
    "responses-incomplete": (
        "openai-responses",
        Content(tool_calls=CALLS, finish_reason="incomplete"),
        {},
    ),
    "responses-2025-03": (
        "openai-responses@2025-03",
        Content(text=MIXED.text, tool_calls=CALLS),
        {"request": RESPONSES_OPTIONS},
    ),
    "chat": ("openai-chat", Content(text=MIXED.text, tool_calls=CALLS), {}),
    "anthropic": ("anthropic", MIXED, {}),
    "gemini": ("gemini", MIXED, {}),
    "responses-words": ("openai-responses", Content(text=LONG[:2000]), {"split_by": "words"}),
}
MIXED_SHA = {
    "responses-streamed": "d262e4fb0d9493bfeab1d5ba67389e579b2b2feefea522ac5b579351805ef574",
    "responses-json": "521b90d3ce4f9a849b20f5514acab40b3cf35afe2c0198d01457d8d7091ed965",
    "responses-no-summary": "4382f5d1ea6d47140d49f38759eb9bc13ea7d70fa474199a99f9830cc03ede90",
    "responses-incomplete": "f6a66a2cd0bc069a72100fbef15d979d46b08ef62fac15f6ae149424ded4bce2",
    "responses-2025-03": "84f5012a11360a141f61a52108a4d24d533ed4e7b0e2b890a075a272ca192aa4",
    "chat": "3655f7bbe21ffee114aa1c6009bae2f9f76929a64addc8ce907f91cd09e0517f",
    "anthropic": "d7f34ee540a40c10ebfc71c70fbffda5484e19b8cc76bd0acd92342eaf5e3700",
    "gemini": "3e15d3528ba3c47f6639c9a3b4c9fc9c61fb4692d76168c2893f69e528d384c3",
    "responses-words": "56b26fbefce87d9257778fe54e4c32ccb55093bd16dbb191a19f9d53aefc0187",
}


@pytest.mark.parametrize("case", sorted(MIXED_CASES))
def test_reasoning_tool_calls_and_options_are_byte_for_byte_the_pinned_ones(case: str) -> None:
    name, content, kw = MIXED_CASES[case]
    assert _sha(name, content, **kw) == MIXED_SHA[case]
