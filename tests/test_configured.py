"""Configured responses: every matcher kind hit and missed, priorities, the miss explanation,
YAML and TOML, and examples/mock.yaml (the OpenAI Mock API's own example) streamed to the
official openai SDK, streaming and not."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

import ssevcr
from ssevcr import _config_file, _configured, _store, _synth
from ssevcr._configured import Answer, Miss
from ssevcr._errors import ConfigError
from ssevcr._sse import parse

ROOT = Path(__file__).resolve().parent.parent
MOCK = ROOT / "examples" / "mock.yaml"


def chat(
    *messages: str, model: str = "gpt-4o", tools: bool = False, **extra: Any
) -> ssevcr.Request:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "user" if i % 2 == 0 else "assistant", "content": m}
            for i, m in enumerate(messages)
        ],
        "stream": True,
        **extra,
    }
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    return ssevcr.Request("POST", "http://x/v1/chat/completions", (), json.dumps(body).encode())


def config(yaml_text: str) -> _configured.Config:
    return _configured.parse(yaml_text, source="test.yaml")


def rule_of(cfg: _configured.Config, request: ssevcr.Request) -> str | None:
    a = cfg.answer(request)
    return a.rule if isinstance(a, Answer) else None


@pytest.mark.parametrize(
    ("match", "hit", "miss"),
    [
        ("{exact: Hi}", chat("Hi"), chat("Hi!")),
        ("{contains: STORY}", chat("tell me a story"), chat("tell me a joke")),
        ("{contains: {text: secret, in: any}}", chat("the secret word", "ok", "go"), chat("go")),
        ("{regex: '^weather in \\w+$'}", chat("weather in Paris"), chat("the weather in Paris?")),
        (
            "{regex: {pattern: 'be (brief|short)', in: any}}",
            chat("be brief", "ok", "go"),
            chat("go"),
        ),
        ("{jsonpath: {path: '$.temperature', equals: 0}}", chat("x", temperature=0), chat("x")),
        ("{jsonpath: {path: '$.messages[0].content', regex: '^x'}}", chat("xy"), chat("yx")),
        ("{jsonpath: {path: '$..name', equals: f}}", chat("x", tools=True), chat("x")),
        ("{jsonpath: {path: '$.tools[*].type', exists: true}}", chat("x", tools=True), chat("x")),
        ("{model: 'gpt-4*'}", chat("x", model="gpt-4o-mini"), chat("x", model="o3")),
        ("{has_tools: true}", chat("x", tools=True), chat("x")),
        ("{turn: 2}", chat("a", "b", "c"), chat("a")),
        ("{turn: {min: 2}}", chat("a", "b", "c", "d", "e"), chat("a")),
        (
            "{path: '/v1/chat/*'}",
            chat("x"),
            ssevcr.Request("POST", "http://x/v1/messages", (), b"{}"),
        ),
        ("{method: get}", ssevcr.Request("GET", "http://x/v1/models"), chat("x")),
    ],
)
def test_each_matcher_hits_and_misses(
    match: str, hit: ssevcr.Request, miss: ssevcr.Request
) -> None:
    cfg = config(f"responses:\n  - name: r\n    match: {match}\n    content: ok\n")
    assert rule_of(cfg, hit) == "r"
    result = cfg.answer(miss)
    assert isinstance(result, Miss)
    assert result.closest == "r" and len(result.failed) == 1
    # the linear scan and the index agree
    assert cfg.match(hit, index=False) is cfg.match(hit)
    assert cfg.match(miss, index=False) is None


def test_priority_then_file_order() -> None:
    cfg = config(
        """
responses:
  - {name: first, match: {contains: a}, content: one}
  - {name: second, match: {contains: a}, content: two}
  - {name: urgent, priority: 5, match: {contains: ab}, content: three}
  - {name: fallback, priority: -1, content: four}
"""
    )
    assert rule_of(cfg, chat("abc")) == "urgent"
    assert rule_of(cfg, chat("a")) == "first"
    assert rule_of(cfg, chat("zzz")) == "fallback"


def test_exact_rules_are_indexed_without_changing_the_order() -> None:
    rules = "\n".join(
        f"  - {{name: e{i}, match: {{exact: 'q{i}'}}, content: x}}" for i in range(200)
    )
    last = "  - {name: any-q, priority: 1, match: {contains: q1}, content: y}\n"
    cfg = config(f"responses:\n{rules}\n{last}")
    assert rule_of(cfg, chat("q5")) == "e5"
    assert rule_of(cfg, chat("q17")) == "any-q"  # higher priority wins over the exact one
    assert rule_of(cfg, chat("q199")) == "any-q"
    assert cfg.match(chat("q5"), index=False) is cfg.match(chat("q5"))


def test_a_miss_explains_the_closest_rule() -> None:
    cfg = config(
        """
responses:
  - name: story
    match: {contains: story, model: "gpt-4*"}
    content: once upon a time
  - name: tools
    match: {has_tools: true, contains: weather, turn: 1}
    content: sunny
"""
    )
    miss = cfg.answer(chat("what's the weather?", model="gpt-4o"))
    assert isinstance(miss, Miss)
    assert miss.closest == "tools"
    assert miss.failed == ("has_tools true: the request has no tools",)
    text = str(miss)
    assert "no configured response in test.yaml matches POST /v1/chat/completions" in text
    assert 'last user message "what\'s the weather?"' in text
    assert "closest: 'tools'" in text
    miss2 = cfg.answer(chat("a story", model="claude"))
    assert isinstance(miss2, Miss) and miss2.closest == "story"
    assert miss2.failed == ("model gpt-4*: the model is 'claude'",)
    assert "no responses" in str(config("responses: []").answer(chat("x")))


def test_answers_content_cassette_and_error(tmp_path: Path) -> None:
    (tmp_path / "mock.toml").write_text(
        """
provider = "openai-chat"
[[responses]]
name = "recorded"
match = { contains = "weather" }
cassette = { path = "rec.msgpack", interaction = 1 }
[[responses]]
name = "limited"
match = { contains = "limit" }
error = { status = 429, retry_after = 2, message = "slow down" }
faults = ["truncate:after=2"]
[[responses]]
name = "anthropic"
match = { path = "/v1/messages" }
content = { text = "Bonjour", tool_calls = [{ name = "f", arguments = { a = 1 } }] }
"""
    )
    source = ssevcr.load(ROOT / "cassettes" / "examples" / "openai-chat-text.msgpack")
    ssevcr.save(source, tmp_path / "rec.msgpack")
    cfg = _config_file.load(tmp_path / "mock.toml")
    a = cfg.answer(chat("weather?"))
    assert isinstance(a, Answer) and a.interaction.response == source.interactions[0].response
    e = cfg.answer(chat("over the limit"))
    assert isinstance(e, Answer) and e.faults == ("truncate:after=2",)
    r = e.interaction.response
    assert r.status == 429 and r.header("retry-after") == "2"
    assert json.loads(r.body)["error"]["message"] == "slow down"
    assert r.header("content-length") == str(len(r.body))
    body = {"model": "claude-x", "max_tokens": 10, "stream": True}
    body["messages"] = [{"role": "user", "content": "hi"}]
    msg = ssevcr.Request("POST", "http://x/v1/messages", (), json.dumps(body).encode())
    m = cfg.answer(msg)
    assert isinstance(m, Answer)
    events = parse(m.interaction.response.body).events
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    assert json.loads(events[0].data)["message"]["model"] == "claude-x"
    assert m.interaction.meta["configured"] == "anthropic"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("responses: [{name: a, content: x, error: 500}]", "exactly one of"),
        ("responses: [{name: a, match: {contain: x}, content: x}]", "unknown matcher"),
        ("responses: [{name: a, match: {regex: '('}, content: x}]", "bad regex"),
        (
            "responses: [{name: a, match: {jsonpath: {path: 'a.b'}}, content: x}]",
            "must start with [$]",
        ),
        ("responses: [{name: a, content: x}, {name: a, content: y}]", "two responses"),
        (
            "responses: [{name: a, content: {text: x, tool_calls: [{name: f, arguments: '{'}]}}]",
            "not JSON",
        ),
        ("responses: [{name: a, error: {status: 200}}]", "400-599"),
        ("responses: [{name: a, content: x, timing: 'tps:-1'}]", "bad tps"),
        ("responses: [{name: a, content: x, provider: nope}]", "unknown provider template"),
        ("responses: [{name: a, cassette: x.msgpack}]", "cannot be read here"),
        ("responses: [{name: a, cassette: {interaction: 2}}]", "cassette is a path"),
        ("responses: [{name: a, match: [x], content: x}]", "match must be a mapping"),
        ("responses: [{name: a, error: 500, faults: [1]}]", "faults is a list"),
        ("responses: [{name: a, content: x, seed: one}]", "whole numbers"),
        ("responses: [{name: a, content: x, priority: true}]", "whole numbers"),
        ("responses: {a: 1}", "must be a list"),
        ("- just a list", "expected a mapping"),
        ("responses: [{name: a, content: x, colour: red}]", "unknown key"),
        ("key: [unclosed", "not valid YAML"),
    ],
)
def test_bad_configurations_are_clean_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(text)


def test_a_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        _config_file.load(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------------------------
# examples/mock.yaml, the OpenAI Mock API's example, streamed to the official openai SDK


class _ConfiguredTransport:
    """What a server or player does with a configuration: answer each request, replay it."""

    def __init__(self, cfg: _configured.Config):
        self.cfg = cfg
        self.rules: list[str] = []

    def handle_request(self, request: Any) -> Any:
        body = request.read()
        ours = ssevcr.Request(request.method, str(request.url), (), body)
        a = self.cfg.answer(ours)
        assert isinstance(a, Answer), str(a)
        self.rules.append(a.rule)
        transport = ssevcr.ReplayTransport(ssevcr.Cassette((a.interaction,)), timing="instant")
        return transport.handle_request(request)


@pytest.mark.parametrize(
    ("prompt", "rule"),
    [("Tell me a story", "story"), ("Hi", "short-stream"), ("Show me some CODE", "code-stream")],
)
@pytest.mark.parametrize("stream", [True, False])
def test_mock_yaml_through_the_openai_sdk(prompt: str, rule: str, stream: bool) -> None:
    cfg = _config_file.load(MOCK)
    transport = _ConfiguredTransport(cfg)
    client = openai.OpenAI(
        api_key="x", base_url="http://t/v1", http_client=httpx2.Client(transport=transport)
    )
    import yaml

    spec = {r["name"]: r for r in yaml.safe_load(MOCK.read_text())["responses"]}[rule]
    messages = [{"role": "user", "content": prompt}]
    if stream:
        chunks = list(client.chat.completions.create(
            model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}  # type: ignore[arg-type]
        ))  # fmt: skip
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = chunks[-1].usage
        assert len(chunks) > 3
    else:
        done = client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
        text, usage = done.choices[0].message.content or "", done.usage
    assert transport.rules == [rule]
    assert text == spec["content"]["text"]
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        spec["content"]["usage"]["input"], spec["content"]["usage"]["output"]
    )  # fmt: skip


def test_mock_yaml_misses_say_why() -> None:
    cfg = _config_file.load(MOCK)
    miss = cfg.answer(chat("Hello"))
    assert isinstance(miss, Miss)
    assert miss.closest == "story"
    assert "contains 'story': the last user message is 'Hello'" in str(miss)


def test_a_cassette_answer_names_an_interaction_the_cassette_has(tmp_path: Path) -> None:
    path = tmp_path / "one.msgpack"
    _store.save(
        ssevcr.Cassette((_synth.synthesize("openai-chat", _synth.Content(text="hi")),)), path
    )
    text = "responses: [{name: a, cassette: {path: one.msgpack, interaction: %s}}]"

    def load(p: str) -> ssevcr.Cassette:
        return _store.load(tmp_path / p)

    cfg = _configured.parse(text % 1, load_cassette=load)
    assert cfg.rules[0].interaction is not None
    for n in (0, 2, "'1'"):
        with pytest.raises(ConfigError, match=r"one\.msgpack has 1 interaction\(s\), not"):
            _configured.parse(text % n, load_cassette=load)


def test_a_timing_profile_file_in_a_cassette_rule_is_fitted_and_paces_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``timing: profile:FILE`` in a rule (the file beside the configuration, read when it is
    loaded, once for every rule that names it): a cassette answer and a content answer are
    paced by the fitted recording, served over a real socket with the recorded bytes."""
    import time

    from ssevcr._player import Player
    from ssevcr._server_thread import ServerThread

    source = ssevcr.load(ROOT / "cassettes" / "examples" / "openai-chat-text.msgpack")
    (recorded,) = source.interactions
    late = 0.8  # the profile's recording starts streaming after this
    shifted = ssevcr.Response.from_chunks(
        200,
        [(c.at + late, c.data) for c in recorded.response.chunks],
        headers=recorded.response.headers,
        headers_at=recorded.response.headers_at + late,
    )
    ssevcr.save(ssevcr.Cassette((replace(recorded, response=shifted),)), tmp_path / "late.msgpack")
    ssevcr.save(source, tmp_path / "rec.msgpack")
    (tmp_path / "mock.yaml").write_text(
        "timing: profile:late.msgpack\n"
        "responses:\n"
        "  - {name: recorded, match: {contains: weather}, cassette: {path: rec.msgpack}}\n"
        "  - {name: written, content: {text: Bonjour tout le monde}}\n"
    )
    monkeypatch.chdir(ROOT)  # paths are the configuration's folder's, not the working folder's
    cfg = _config_file.load(tmp_path / "mock.yaml")
    first = shifted.chunk_at[0]
    for rule in cfg.rules:
        assert rule.timing is not None and len(rule.timing) == 1
        assert getattr(rule.timing[0], "ttft", None) == pytest.approx(first, abs=0.05)
    with ServerThread(Player.create([], config=cfg)) as server:
        for prompt, body in (("weather?", recorded.response.body), ("hello", None)):
            request = chat(prompt)
            started = time.monotonic()
            with httpx2.stream(
                "POST", server.url + "/v1/chat/completions", content=request.body
            ) as response:
                chunks = []
                for chunk in response.iter_raw():
                    chunks.append((time.monotonic() - started, chunk))
            assert response.status_code == 200
            assert chunks[0][0] >= first - 0.05, chunks[0][0]  # the fitted first event
            got = b"".join(c for _, c in chunks)
            if body is not None:
                assert got == body
            else:
                assert b"Bonjour" in got and got.rstrip().endswith(b"data: [DONE]")
    (tmp_path / "bad.yaml").write_text(
        "responses: [{name: a, content: x, timing: 'profile:nope.msgpack'}]"
    )
    with pytest.raises(ConfigError, match=r"nope\.msgpack"):
        _config_file.load(tmp_path / "bad.yaml")
