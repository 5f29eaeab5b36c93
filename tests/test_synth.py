"""ssevcr synth: provider-exact streams from content.

Checked three ways: (1) each synthesized stream goes through ``ssevcr.ReplayTransport`` into the
official SDK (openai, anthropic, google-genai), which must assemble exactly the given text and tool
arguments, and every event must validate against the SDK's own event model with no unknown field
and no missing one; (2) a structural diff against the real provider bodies in
``tests/fixtures/providers``: synthesized from the content of a real body (its own pieces), the
stream has the same event types in the same order with the same fields in the same order, and the
same framing; (3) properties of the pieces, the ids and the seeds.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pydantic
import pytest
from google import genai
from google.genai import types as genai_types
from hypothesis import given
from hypothesis import strategies as st

import ssevcr
from ssevcr import _synth
from ssevcr._errors import ConfigError
from ssevcr._matching import MatchOptions
from ssevcr._sse import parse
from ssevcr._synth import Content, ToolCall, Usage

PROVIDERS = Path(__file__).parent / "fixtures" / "providers"

TEXT = "Once upon a time, a small robot named Ada learned to stream — one token at a time. 🤖"
CALLS = (
    ToolCall("get_weather", '{"city": "Edinburgh", "units": "c"}'),
    ToolCall("get_stock_price", '{"ticker":"AAPL","exchange":"NASDAQ"}'),
)
REASONING = "The user wants a story; keep it short and mention streaming."


# ---------------------------------------------------------------------------------------------
# Validation against the SDKs' own models


def _no_extra(value: Any, path: str = "$") -> list[str]:
    """Paths of fields a pydantic model kept as extras (fields the SDK does not know)."""
    out: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        for k in value.model_extra or {}:
            out.append(f"{path}.{k}")
        for name in type(value).model_fields:
            out += _no_extra(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            out += _no_extra(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            out += _no_extra(v, f"{path}.{k}")
    return out


# Fields the real provider bodies carry that the SDK's models do not declare (the real bodies
# in tests/fixtures/providers have them, so synthesis keeps them).
REAL_BUT_UNMODELLED = {
    "$.response.store",  # openai-responses/function_call.sse and text.sse: "store":true
    "$.obfuscation",  # openai-responses/function_call.sse: on every arguments delta
    "$.store",  # the same, in a non-streaming body (the response object itself)
}


@functools.cache
def _adapter(model: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(model)


def _validate(model: Any, data: dict[str, Any]) -> Any:
    """Strict validation: required fields present, types right, no unknown field."""
    value = _adapter(model).validate_python(data)
    extra = [p for p in _no_extra(value) if re.sub(r"\[\d+\]", "[]", p) not in REAL_BUT_UNMODELLED]
    assert extra == [], (data, extra)
    return value


def _json_events(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in parse(body).events if e.data != "[DONE]"]


def _transport(interaction: ssevcr.Interaction, **kw: Any) -> ssevcr.ReplayTransport:
    return ssevcr.ReplayTransport(ssevcr.Cassette((interaction,)), timing="instant", **kw)


# ---------------------------------------------------------------------------------------------
# Through the SDKs


CHAT_REQUEST = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Tell me a story and check the weather"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}


@pytest.mark.parametrize("calls", [(), CALLS[:1], CALLS])
def test_openai_chat_through_the_sdk(calls: tuple[ToolCall, ...]) -> None:
    content = Content(text=TEXT if len(calls) != 1 else "", tool_calls=calls)
    inter = _synth.synthesize("openai-chat", content, request=CHAT_REQUEST, seed=3)
    from openai.types.chat import ChatCompletionChunk

    events = _json_events(inter.response.body)
    for data in events:
        _validate(ChatCompletionChunk, data)
    client = openai.OpenAI(
        api_key="x", base_url="http://t/v1", http_client=httpx2.Client(transport=_transport(inter))
    )
    text, args, names = "", defaultdict(str), {}
    chunks = list(client.chat.completions.create(**CHAT_REQUEST))
    for chunk in chunks:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                args[call.index] += call.function.arguments or ""  # type: ignore[union-attr]
                if call.function and call.function.name:
                    names[call.index] = call.function.name
    assert text == content.text
    assert [args[i] for i in range(len(calls))] == [c.arguments for c in calls]
    assert [names[i] for i in range(len(calls))] == [c.name for c in calls]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert chunks[-2].choices[0].finish_reason == ("tool_calls" if calls else "stop")
    assert inter.response.body.endswith(b"data: [DONE]\n\n")


def test_openai_chat_stream_helper_assembles_the_final_completion() -> None:
    content = Content(text=TEXT, tool_calls=CALLS)
    inter = _synth.synthesize("openai-chat", content, request=CHAT_REQUEST, seed=4)
    client = openai.OpenAI(
        api_key="x", base_url="http://t/v1", http_client=httpx2.Client(transport=_transport(inter))
    )
    params = {k: v for k, v in CHAT_REQUEST.items() if k != "stream"}
    with client.chat.completions.stream(**params) as s:  # type: ignore[arg-type]
        final = s.get_final_completion()
    message = final.choices[0].message
    assert message.content == TEXT
    assert [(c.function.name, c.function.arguments) for c in message.tool_calls or []] == [  # type: ignore[union-attr]
        (c.name, c.arguments) for c in CALLS
    ]


RESPONSES_REQUEST = {
    "model": "gpt-5",
    "input": "Tell me a story",
    "reasoning": {"effort": "low", "summary": "auto"},
    "stream": True,
}


def test_openai_responses_through_the_sdk() -> None:
    content = Content(text=TEXT, tool_calls=CALLS, reasoning=REASONING)
    inter = _synth.synthesize("openai-responses", content, request=RESPONSES_REQUEST, seed=5)
    from openai.types.responses import ResponseStreamEvent

    events = _json_events(inter.response.body)
    for i, data in enumerate(events):
        _validate(ResponseStreamEvent, data)
        assert data["sequence_number"] == i
    client = openai.OpenAI(
        api_key="x", base_url="http://t/v1", http_client=httpx2.Client(transport=_transport(inter))
    )
    params = {k: v for k, v in RESPONSES_REQUEST.items() if k != "stream"}
    with client.responses.stream(**params) as s:  # type: ignore[call-overload]
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert final.output_text == TEXT
    calls = [(o.name, o.arguments) for o in final.output if o.type == "function_call"]
    assert calls == [(c.name, c.arguments) for c in CALLS]
    summary = next(o for o in final.output if o.type == "reasoning").summary
    assert [p.text for p in summary] == [REASONING]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.reasoning_summary_text.delta" in kinds


ANTHROPIC_REQUEST = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "Tell me a story"}],
    "stream": True,
}


@pytest.mark.parametrize("reasoning", ["", REASONING])
def test_anthropic_through_the_sdk(reasoning: str) -> None:
    content = Content(text=TEXT, tool_calls=CALLS, reasoning=reasoning)
    inter = _synth.synthesize("anthropic", content, request=ANTHROPIC_REQUEST, seed=6)
    from anthropic.types import RawMessageStreamEvent

    for data in _json_events(inter.response.body):
        if data["type"] != "ping":
            _validate(RawMessageStreamEvent, data)
    client = anthropic.Anthropic(
        api_key="x", base_url="http://t", http_client=httpx2.Client(transport=_transport(inter))
    )
    params = {k: v for k, v in ANTHROPIC_REQUEST.items() if k != "stream"}
    with client.messages.stream(**params) as s:  # type: ignore[arg-type]
        final = s.get_final_message()
    blocks = final.content
    assert "".join(b.text for b in blocks if b.type == "text") == TEXT
    assert [(b.name, b.input) for b in blocks if b.type == "tool_use"] == [
        (c.name, json.loads(c.arguments)) for c in CALLS
    ]
    assert [b.thinking for b in blocks if b.type == "thinking"] == (
        [reasoning] if reasoning else []
    )
    assert final.stop_reason == "tool_use"
    body = inter.response.body
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in body
    assert body.endswith(b"event: message_stop\n") is False  # ends with the blank line
    assert parse(body).events[-1].type == "message_stop"


def _genai_client(inter: ssevcr.Interaction) -> genai.Client:
    transport = _transport(inter, match=MatchOptions(on=("method", "path", "query")))
    http = genai_types.HttpOptions(
        base_url="http://t/", api_version="v1beta", httpx_client=httpx.Client(transport=transport)
    )
    return genai.Client(api_key="x", http_options=http)


@pytest.mark.parametrize("reasoning", ["", REASONING])
def test_gemini_through_the_sdk(reasoning: str) -> None:
    content = Content(text=TEXT, tool_calls=CALLS, reasoning=reasoning)
    inter = _synth.synthesize("gemini", content, seed=7)
    assert inter.request.url.endswith(
        "/v1beta/models/gemini-3-pro-preview:streamGenerateContent?alt=sse"
    )
    body = inter.response.body
    assert b"\r\n\r\n" in body and b"\n\n" not in body.replace(b"\r\n", b"")
    for data in _json_events(body):
        genai_types.GenerateContentResponse.model_validate(data)  # extra="forbid" in the SDK
    client = _genai_client(inter)
    text, thoughts, calls = "", "", []
    for r in client.models.generate_content_stream(model="gemini-3-pro-preview", contents="Hi"):
        for part in r.candidates[0].content.parts or []:  # type: ignore[index, union-attr]
            if part.function_call:
                calls.append((part.function_call.name, part.function_call.args))
            elif part.thought:
                thoughts += part.text or ""
            else:
                text += part.text or ""
    assert text == TEXT
    assert thoughts == reasoning
    assert calls == [(c.name, json.loads(c.arguments)) for c in CALLS]


def test_generic_with_done() -> None:
    inter = _synth.synthesize(
        "generic", Content(text="one two\nthree"), split_by="words", done=True
    )
    events = parse(inter.response.body).events
    assert [e.data for e in events] == ["one", " two", "\nthree", "[DONE]"]
    assert inter.response.header("content-type") == "text/event-stream"


# ---------------------------------------------------------------------------------------------
# Non-streaming answers: the same text, tool calls and usage


def test_openai_chat_not_streamed() -> None:
    request = {**CHAT_REQUEST, "stream": False}
    request.pop("stream_options")
    content = Content(text=TEXT, tool_calls=CALLS, usage=Usage(11, 22))
    inter = _synth.synthesize("openai-chat", content, request=request, seed=1)
    assert len(inter.response.chunk_sizes) == 1
    from openai.types.chat import ChatCompletion

    _validate(ChatCompletion, json.loads(inter.response.body))
    assert inter.response.body.startswith(b'{\n  "id": "chatcmpl-')
    client = openai.OpenAI(
        api_key="x", base_url="http://t/v1", http_client=httpx2.Client(transport=_transport(inter))
    )
    done = client.chat.completions.create(**request)  # type: ignore[call-overload]
    message = done.choices[0].message
    assert message.content == TEXT
    assert [(c.function.name, c.function.arguments) for c in message.tool_calls] == [
        (c.name, c.arguments) for c in CALLS
    ]
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (11, 22)


def test_responses_anthropic_gemini_not_streamed() -> None:
    from anthropic.types import Message
    from openai.types.responses import Response as OpenAIResponse

    content = Content(text=TEXT, tool_calls=CALLS, reasoning=REASONING, usage=Usage(5, 50, 9))
    r = _synth.stream("openai-responses", content, request={**RESPONSES_REQUEST, "stream": False})
    value = _validate(OpenAIResponse, json.loads(r.body))
    assert value.output_text == TEXT and value.usage.output_tokens == 50
    a = _synth.stream("anthropic", content, request={**ANTHROPIC_REQUEST, "stream": False})
    msg = _validate(Message, json.loads(a.body))
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert msg.usage.output_tokens == 50
    g = _synth.stream("gemini", content, request={"stream": False})
    assert g.request_url.endswith(":generateContent")
    resp = genai_types.GenerateContentResponse.model_validate(json.loads(g.body))
    assert resp.text == TEXT
    assert resp.usage_metadata.candidates_token_count == 50  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# Structural diff against the real provider bodies


def _shape(value: Any) -> Any:
    """Field names in order, recursively; values only for the fields that name a kind."""
    if isinstance(value, dict):
        return [
            (
                k,
                v
                if k in ("type", "object", "role", "finish_reason", "stop_reason", "status")
                else _shape(v),
            )
            for k, v in value.items()
        ]
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__ if value is not None else None


def _chat_content(events: list[dict[str, Any]]) -> tuple[Content, dict[str, Any]]:
    text: list[str] = []
    names: dict[int, str] = {}
    args: dict[int, list[str]] = defaultdict(list)
    usage = Usage()
    finish = None
    for e in events:
        for ch in e["choices"]:
            d = ch["delta"]
            if d.get("content"):
                text.append(d["content"])
            for call in d.get("tool_calls") or []:
                if call.get("id"):
                    names[call["index"]] = call["function"]["name"]
                if call["function"]["arguments"]:
                    args[call["index"]].append(call["function"]["arguments"])
            finish = ch["finish_reason"] or finish
        if e.get("usage"):
            u = e["usage"]
            usage = Usage(u["prompt_tokens"], u["completion_tokens"])
    calls = tuple(ToolCall(names[i], "".join(args[i])) for i in sorted(names))
    content = Content(
        text="".join(text), tool_calls=calls, finish_reason=finish, usage=usage,
        model=events[0]["model"], text_pieces=tuple(text),
        argument_pieces=tuple(tuple(args[i]) for i in sorted(names)),
    )  # fmt: skip
    return content, {"stream": True, "stream_options": {"include_usage": True}}


def _responses_content(events: list[dict[str, Any]]) -> tuple[Content, dict[str, Any]]:
    text, reasoning, calls, args = [], "", [], defaultdict(list)
    request: dict[str, Any] = {"stream": True}
    for e in events:
        if e["type"] == "response.output_text.delta":
            text.append(e["delta"])
        elif e["type"] == "response.function_call_arguments.delta":
            args[e["output_index"]].append(e["delta"])
        elif e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call":
            calls.append((e["output_index"], ToolCall(e["item"]["name"], e["item"]["arguments"])))
        elif e["type"] == "response.output_item.done" and e["item"]["type"] == "reasoning":
            reasoning = "(hidden)"
            if "encrypted_content" in e["item"]:
                request["include"] = ["reasoning.encrypted_content"]
        elif e["type"] == "response.completed":
            r = e["response"]
            for key in ("tools", "tool_choice", "reasoning", "service_tier", "instructions"):
                if key in r:
                    request[key] = r[key]
            usage = Usage(r["usage"]["input_tokens"], r["usage"]["output_tokens"])
    content = Content(
        text="".join(text), tool_calls=tuple(c for _, c in calls), reasoning=reasoning,
        usage=usage, model=events[0]["response"]["model"], text_pieces=tuple(text),
        argument_pieces=tuple(tuple(args[i]) for i, _ in calls),
    )  # fmt: skip
    return content, request


_SERVER_BLOCKS = ("server_tool_use", "tool_search_tool_result", "web_search_tool_result")


def _anthropic_content(events: list[dict[str, Any]]) -> tuple[Content, dict[str, Any]]:
    blocks: dict[int, dict[str, Any]] = {}
    for e in events:
        if e["type"] == "content_block_start":
            blocks[e["index"]] = {"block": e["content_block"], "pieces": []}
        elif e["type"] == "content_block_delta":
            d = e["delta"]
            piece = d.get("text", d.get("partial_json", d.get("thinking")))
            blocks[e["index"]]["pieces"].append(piece)
        elif e["type"] == "message_delta":
            stop = e["delta"]["stop_reason"]
            usage = Usage(e["usage"].get("input_tokens"), e["usage"]["output_tokens"])
    text = [p for b in blocks.values() if b["block"]["type"] == "text" for p in b["pieces"]]
    tools = [b for b in blocks.values() if b["block"]["type"] == "tool_use"]
    calls = tuple(ToolCall(b["block"]["name"], "".join(b["pieces"])) for b in tools)
    content = Content(
        text="".join(text), tool_calls=calls, finish_reason=stop, usage=usage,
        model=events[0]["message"]["model"], text_pieces=tuple(text),
        argument_pieces=tuple(tuple(p for p in b["pieces"][1:]) for b in tools),
    )  # fmt: skip
    return content, {"stream": True}


def _gemini_content(events: list[dict[str, Any]]) -> tuple[Content, dict[str, Any]]:
    text, calls = [], []
    for e in events:
        for part in e["candidates"][0]["content"]["parts"]:
            if "functionCall" in part:
                fc = part["functionCall"]
                calls.append(ToolCall(fc["name"], json.dumps(fc["args"])))
            elif part["text"]:
                text.append(part["text"])
    u = events[-1]["usageMetadata"]
    usage = Usage(u["promptTokenCount"], u["candidatesTokenCount"], u.get("thoughtsTokenCount"))
    content = Content(
        text="".join(text), tool_calls=tuple(calls), usage=usage,
        model=events[0]["modelVersion"], text_pieces=tuple(text),
    )  # fmt: skip
    return content, {}


def _without_server_blocks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Anthropic capture minus the server-side tool blocks (a search the API ran itself),
    which synthesis does not produce; the other blocks are renumbered as if they were absent."""
    drop = {
        e["index"]
        for e in events
        if e["type"] == "content_block_start" and e["content_block"]["type"] in _SERVER_BLOCKS
    }
    out, texts = [], 0
    renumber: dict[int, int] = {}
    for e in events:
        if "index" in e and e["index"] in drop:
            continue
        e = json.loads(json.dumps(e))
        if e["type"] == "content_block_start":
            if e["content_block"]["type"] == "text":
                texts += 1
                if texts > 1:  # the text after the search continues the first text block
                    drop.add(e["index"])
                    continue
            renumber[e["index"]] = len(renumber)
        if "index" in e:
            e["index"] = renumber[e["index"]]
        if e["type"] == "message_delta":
            e["usage"].pop("server_tool_use", None)
        out.append(e)
    return out


FIXTURES = [
    ("openai-chat/tool_call_obfuscation_2026.sse", "openai-chat", _chat_content),
    ("openai-chat/text.sse", "openai-chat@2024-09", _chat_content),
    ("openai-chat/tool_call.sse", "openai-chat@2024-09", _chat_content),
    ("openai-chat/parallel_tool_calls.sse", "openai-chat@2024-09", _chat_content),
    ("openai-responses/function_call.sse", "openai-responses@2025-09", _responses_content),
    ("openai-responses/text.sse", "openai-responses@2025-03", _responses_content),
    ("anthropic/text.sse", "anthropic@2025-09", _anthropic_content),
    ("anthropic/tool_use_padded.sse", "anthropic", _anthropic_content),
    ("gemini/text.sse", "gemini@2025-06", _gemini_content),
    ("gemini/tool_call.sse", "gemini", _gemini_content),
]


def _framing(body: bytes) -> tuple[bytes, bool, bool]:
    eol = b"\r\n" if b"\r\n" in body else b"\n"
    return eol, body.startswith(b"event: "), body.endswith(b"data: [DONE]" + eol + eol)


@pytest.mark.parametrize(("fixture", "name", "extract"), FIXTURES, ids=[f[0] for f in FIXTURES])
def test_structure_matches_the_real_body(fixture: str, name: str, extract: Any) -> None:
    real = (PROVIDERS / fixture).read_bytes()
    real_events = _json_events(real)
    if fixture.startswith("anthropic/tool_use_padded"):
        real_events = _without_server_blocks(real_events)
        real_events = [e for e in real_events if e["type"] != "ping"]
    content, request = extract(real_events)
    if fixture.startswith("anthropic/tool_use_padded"):
        text_blocks = [
            e
            for e in _json_events(real)
            if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta"
        ]
        content = Content(
            text="".join(e["delta"]["text"] for e in text_blocks),
            tool_calls=content.tool_calls[-1:],
            finish_reason=content.finish_reason, usage=content.usage, model=content.model,
            text_pieces=tuple(e["delta"]["text"] for e in text_blocks),
            argument_pieces=content.argument_pieces[-1:],  # type: ignore[index]
        )  # fmt: skip
        real_events = [
            e for e in real_events if not (e["type"] == "content_block_delta" and e["index"] == 0)
        ]
        real_events[2:2] = [
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in content.text_pieces or ()
        ]
    ours = _synth.stream(name, content, request=request, seed=1)
    mine = _json_events(ours.body)
    if fixture.startswith("anthropic/tool_use_padded"):
        mine = [e for e in mine if e["type"] != "ping"]
    assert [e.get("type", e.get("object")) for e in mine] == [
        e.get("type", e.get("object")) for e in real_events
    ]
    for a, b in zip(mine, real_events, strict=True):
        assert _shape(a) == _shape(b)
    assert _framing(ours.body) == _framing(real)
    ours_named = [
        (e.type, json.loads(e.data).get("type"))
        for e in parse(ours.body).events
        if e.data != "[DONE]"
    ]
    assert all(t == d or t == "message" for t, d in ours_named)


def test_anthropic_ping_and_padding_as_the_real_server_sends_them() -> None:
    real = (PROVIDERS / "anthropic/tool_use_padded.sse").read_bytes()
    ours = _synth.stream("anthropic", Content(text=TEXT), seed=2).body
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'
    assert ping in real and ping in ours
    pads = [len(m) for m in re.findall(rb"( *)\}\n\n", ours)]
    assert max(pads) > 0 and max(pads) <= 15  # the real server pads with 0-15 spaces
    assert max(len(m) for m in re.findall(rb"( *)\}\n\n", real)) <= 15


def test_gemini_json_spacing_is_the_real_one() -> None:
    real = (PROVIDERS / "gemini/text.sse").read_bytes()
    ours = _synth.stream(
        "gemini@2025-06", Content(text="The capital of France is Paris."), seed=0
    ).body
    assert b'{"candidates": [{"content": {"parts": [{"text": ' in real
    assert ours.startswith(b'data: {"candidates": [{"content": {"parts": [{"text": ')


# ---------------------------------------------------------------------------------------------
# Ids, seeds, pieces


def test_ids_have_the_real_shapes_and_are_stable_per_seed() -> None:
    content = Content(tool_calls=CALLS[:1])
    a = _synth.stream("openai-chat", content, seed=42)
    assert a.body == _synth.stream("openai-chat", content, seed=42).body
    b = _synth.stream("openai-chat", content, seed=43)
    assert a.body != b.body
    first = _json_events(a.body)[0]
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", first["id"])
    assert re.fullmatch(r"fp_[0-9a-f]{10}", first["system_fingerprint"])
    assert isinstance(first["created"], int) and 1.7e9 < first["created"] < 1.8e9
    assert re.fullmatch(
        r"call_[A-Za-z0-9]{24}", first["choices"][0]["delta"]["tool_calls"][0]["id"]
    )
    r = _json_events(_synth.stream("openai-responses", content, seed=1).body)
    rid = r[0]["response"]["id"]
    assert re.fullmatch(r"resp_[0-9a-f]{16}00[0-9a-f]{8}[0-9a-f]{4}8195[0-9a-f]{16}", rid)
    assert rid[23:31] == f"{r[0]['response']['created_at']:08x}"  # the id carries created_at
    m = _json_events(_synth.stream("anthropic", content, seed=1).body)[0]["message"]
    assert re.fullmatch(r"msg_01[1-9A-HJ-NP-Za-km-z]{22}", m["id"])


def test_synthesized_interactions_say_so_in_their_meta() -> None:
    inter = _synth.synthesize("anthropic", Content(text="hi"), seed=9, split_by="words")
    assert inter.meta["synthesized"] == "anthropic; seed 9; split words"
    assert inter.meta["profile"] == "ttft:350ms+tps:50+jitter:25%"


@given(st.text(max_size=300), st.sampled_from(["words", "tokens", "chars", 1, 3, 7]))
def test_pieces_join_back_to_the_text(text: str, how: str | int) -> None:
    pieces = _synth.split(text, how)
    assert "".join(pieces) == text
    assert all(pieces)


def test_tokens_are_roughly_model_tokens() -> None:
    assert _synth.split("I'm unable to provide real-time weather updates.", "tokens") == [
        "I", "'m", " unable", " to", " provide", " real", "-time", " weather", " updates", ".",
    ]  # fmt: skip
    assert _synth.split("1234567", "tokens") == ["123", "456", "7"]
    long = _synth.split(" internationalization", "tokens")
    assert len(long) > 1 and "".join(long) == " internationalization"


@given(st.text(max_size=80), st.integers(0, 2**32))
def test_any_text_streams_and_parses_back(text: str, seed: int) -> None:
    for name in ("openai-chat", "anthropic", "gemini", "openai-responses"):
        body = _synth.stream(name, Content(text=text), seed=seed).body
        got = ""
        for e in _json_events(body):
            if "choices" in e:
                got += "".join(c["delta"].get("content") or "" for c in e["choices"])
            elif e.get("type") == "content_block_delta":
                got += e["delta"]["text"]
            elif e.get("type") == "response.output_text.delta":
                got += e["delta"]
            elif "candidates" in e:
                got += "".join(p.get("text", "") for p in e["candidates"][0]["content"]["parts"])
        assert got == text, name


def test_bad_content_is_a_clean_error() -> None:
    with pytest.raises(ConfigError, match="not JSON"):
        Content(tool_calls=(ToolCall("f", "{nope"),))
    with pytest.raises(ConfigError, match="unknown provider template"):
        _synth.stream("openai-chatt", Content(text="x"))
    with pytest.raises(ConfigError, match="no reasoning"):
        _synth.stream("openai-chat", Content(text="x", reasoning="y"))
    with pytest.raises(ConfigError, match="unknown split"):
        _synth.split("x", "sentences")
    with pytest.raises(ConfigError, match="too large"):
        Content(text="x" * (_synth.MAX_CONTENT + 1))


# ---------------------------------------------------------------------------------------------
# Template mode: a recording as the mould (every example cassette)

EXAMPLES = Path(__file__).resolve().parent.parent / "cassettes" / "examples"
NEW_TEXT = "Zebras quietly juggle violet umbrellas beneath seventeen humming lanterns tonight."
NEW_ARGS = '{"zebra": "violet", "count": 17}'


def _enc(value: str) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _recast(name: str) -> tuple[ssevcr.Interaction, ssevcr.Interaction, list[Any]]:
    from ssevcr import _mould, _providers

    inter = ssevcr.load(EXAMPLES / f"{name}.msgpack").interactions[0]
    frames = parse(inter.response.body).frames
    slots = _mould.content_slots(
        frames, _providers.detect(inter.request.url, parse(inter.response.body).events)
    )
    calls = tuple(ToolCall(s.name, NEW_ARGS) for s in slots if s.kind == "args")
    text = NEW_TEXT if any(s.kind == "text" for s in slots) else ""
    new = _mould.recast(inter, Content(text=text, tool_calls=calls), seed=11)
    return inter, new, slots


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.msgpack")))
def test_like_keeps_everything_but_the_content(name: str) -> None:
    import statistics

    from ssevcr import _mould

    inter, new, slots = _recast(name)
    old_r, new_r = inter.response, new.response
    assert new.request == inter.request
    assert (new_r.status, new_r.reason, new_r.headers, new_r.headers_at) == (
        old_r.status, old_r.reason, old_r.headers, old_r.headers_at,
    )  # fmt: skip
    assert new_r.end.outcome == old_r.end.outcome
    old_frames = parse(old_r.body).frames
    new_frames = parse(new_r.body).frames
    assert parse(new_r.body).tail == parse(old_r.body).tail
    delta_index = {i: s for s in slots for i, _ in s.deltas}
    moulds = {id(s): old_frames[s.deltas[0][0]].raw for s in slots}
    first_pieces = {}
    for s in slots:
        d = json.loads(old_frames[s.deltas[0][0]].data)
        first_pieces[id(s)] = _mould._value_at(d, s.deltas[0][1])
    # outside the content fields, every frame is a recorded frame byte for byte
    others_old = [f.raw for i, f in enumerate(old_frames) if i not in delta_index]
    others_new = []

    def recorded(slot: Any) -> str:
        return "".join(_mould._value_at(json.loads(old_frames[i].data), p) for i, p in slot.deltas)

    first_text = next((s for s in slots if s.kind == "text"), None)
    new_of = {id(s): NEW_ARGS if s.kind == "args" else NEW_TEXT for s in slots}
    for f in new_frames:
        raw = f.raw
        if any(
            raw.replace(_enc(p), _enc(first_pieces[id(s)]), 1) == moulds[id(s)]
            for s in slots
            if s.kind == "args" or s is first_text
            for p in _synth.split(new_of[id(s)])
        ):
            continue  # a new delta: its mould with the content value replaced
        if any(raw == old_frames[i].raw for i, sl in delta_index.items() if sl.kind == "reasoning"):
            continue  # kept reasoning deltas
        if first_text is not None:  # fields repeating the whole text (output_text.done, ...)
            raw = raw.replace(_enc(NEW_TEXT), _enc(recorded(first_text)))
        args_slots = [s for s in slots if s.kind == "args"]
        if len(args_slots) == 1:
            raw = raw.replace(_enc(NEW_ARGS), _enc(recorded(args_slots[0])))
        others_new.append(raw)
    assert others_new == others_old
    # the content is the new content
    text = "".join(
        _mould._value_at(json.loads(f.data), p)
        for f in new_frames
        if isinstance(f, ssevcr.Event) and f.data.startswith("{")
        for s2 in _mould.content_slots([f], _provider_of(inter))
        if s2.kind == "text"
        for _, p in s2.deltas
    )
    assert text == (NEW_TEXT if first_text is not None else "")
    # the gap distribution is the recording's
    g0, g1 = _mould.event_gaps(old_r), _mould.event_gaps(new_r)
    m0, m1 = statistics.median(g0), statistics.median(g1)
    assert abs(m1 - m0) <= 0.10 * m0, (m0, m1)


def _provider_of(inter: ssevcr.Interaction) -> str:
    from ssevcr import _providers

    return _providers.detect(inter.request.url, parse(inter.response.body).events)


@pytest.mark.parametrize(
    "name",
    [
        "openai-chat-text",
        "openai-chat-tool-calls",
        "anthropic-tool-use",
        "openai-responses-function-call",
    ],
)
def test_like_through_the_sdk(name: str) -> None:
    inter, new, _ = _recast(name)
    params = dict(json.loads(inter.request.body))
    if "anthropic" in name:
        client = anthropic.Anthropic(
            api_key="x", base_url="http://t", http_client=httpx2.Client(transport=_transport(new))
        )
        params.pop("stream")
        with client.messages.stream(**params) as s:
            final = s.get_final_message()
        assert "".join(b.text for b in final.content if b.type == "text") == NEW_TEXT
        assert [b.input for b in final.content if b.type == "tool_use"] == [json.loads(NEW_ARGS)]
        return
    client2 = openai.OpenAI(
        api_key="x", base_url="http://t/v1", http_client=httpx2.Client(transport=_transport(new))
    )
    if "responses" in name:
        events = list(client2.responses.create(**params))
        final = events[-1].response
        assert [o.arguments for o in final.output if o.type == "function_call"] == [NEW_ARGS]
        return
    text, args = "", defaultdict(str)
    for chunk in client2.chat.completions.create(**params):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                args[call.index] += call.function.arguments or ""  # type: ignore[union-attr]
    if "tool" in name:
        assert dict(args) == {0: NEW_ARGS, 1: NEW_ARGS}
    else:
        assert text == NEW_TEXT


def test_like_refuses_what_it_cannot_do() -> None:
    from ssevcr import _mould

    inter = ssevcr.load(EXAMPLES / "openai-chat-tool-calls.msgpack").interactions[0]
    with pytest.raises(ConfigError, match="no text"):
        _mould.recast(inter, Content(text="hi"))
    with pytest.raises(ConfigError, match="recorded tool names"):
        _mould.recast(inter, Content(tool_calls=(ToolCall("other", "{}"),)))
    with pytest.raises(ConfigError, match="2 tool call"):
        _mould.recast(inter, Content(tool_calls=(ToolCall("GetWeatherArgs", "{}"),) * 3))


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
        max_leaves=10,
    )
)
def test_span_finds_every_value(doc: Any) -> None:
    from ssevcr import _mould

    def paths(v: Any, p: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = [p]
        if isinstance(v, dict):
            for k, x in v.items():
                out += paths(x, (*p, k))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                out += paths(x, (*p, i))
        return out

    for sep in ((",", ":"), (", ", ": ")):
        text = json.dumps(doc, separators=sep, ensure_ascii=False)
        for p in paths(doc):
            a, b = _mould.span(text, p)
            assert json.loads(text[a:b]) == _mould._value_at(json.loads(text), p)


# ---------------------------------------------------------------------------------------------
# The command


def _run(args: list[str]) -> Any:
    from click.testing import CliRunner

    from ssevcr.cli import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_cli_synth_writes_a_cassette_marked_synthesized(tmp_path: Path) -> None:
    out = tmp_path / "story.msgpack"
    r = _run(["synth", "--provider", "openai-chat", "--text", TEXT, "--tool-call", "f", '{"a":1}',
              "--usage", "input=3,output=9", "--seed", "5", "-o", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    cassette = ssevcr.load(out)
    assert cassette.meta["synthesized"] == "openai-chat; seed 5; split tokens"
    inter = cassette.interactions[0]
    assert inter.meta["profile"] == "ttft:350ms+tps:50+jitter:25%"
    usage = _json_events(inter.response.body)[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (3, 9)
    r = _run(["synth", "--provider", "openai-chat", "--text", "x", "-o", str(out)])
    assert r.exit_code == 1 and "exists" in r.output
    r = _run(["synth", "--provider", "anthropic", "--text", "x", "-o", str(out), "--append"])
    assert r.exit_code == 0 and len(ssevcr.load(out).interactions) == 2
    exported = _run(["export", str(out)])
    assert '"synthesized": "openai-chat; seed 5; split tokens"' in exported.output
    damaged = tmp_path / "damaged.msgpack"
    damaged.write_bytes(b"\x93not a cassette")
    r = _run(["synth", "--provider", "anthropic", "--text", "x", "-o", str(damaged), "--append"])
    assert r.exit_code == 1 and "not saved" in r.output, r.output
    assert damaged.read_bytes() == b"\x93not a cassette"  # kept as it was


def test_cli_synth_to_stdout_and_like(tmp_path: Path) -> None:
    r = _run(["synth", "--provider", "generic", "--text", "a b", "--split", "words", "--done"])
    assert r.exit_code == 0 and r.output == "data: a\n\ndata:  b\n\ndata: [DONE]\n\n"
    out = tmp_path / "like.msgpack"
    r = _run(["synth", "--like", str(EXAMPLES / "openai-chat-text.msgpack"), "--text", NEW_TEXT,
              "-o", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    inter = ssevcr.load(out).interactions[0]
    assert inter.meta["synthesized"].startswith("like the recording")
    assert (
        ssevcr.load(out).meta["source"] == "tests/fixtures/providers/openai-chat/text.sse"
    )  # kept


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "nope", "--text", "x"], "unknown provider template"),
        (["--tool-call", "f", "{bad"], "not JSON"),
        (["--request", "[1]"], "JSON object"),
        (["--request", "@/nonexistent/x.json"], "cannot read"),
        (["--usage", "input=x"], "whole number"),
        (["--timing", "tps:0"], "bad tps"),
        (["--like", "/nonexistent.msgpack"], "nonexistent"),
    ],
)
def test_cli_synth_errors_are_clean(args: list[str], message: str) -> None:
    r = _run(["synth", *args])
    assert r.exit_code == 1, r.output
    assert message in r.output and "Traceback" not in r.output
