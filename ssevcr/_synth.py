"""Provider-exact streams from content: text, tool calls and reasoning in, the bytes a provider
sends out (SSE frames, or its non-streaming JSON), as a cassette interaction.

The shapes — field order, which fields exist, constant values, SSE framing (``event:`` lines,
CRLF, ``[DONE]``), id formats, padding, response headers — are data: one template per provider
in ``_templates/*.json``, learned from the real bodies in ``tests/fixtures/providers`` (each
template names its sources; a dated name such as ``openai-chat@2024-09`` keeps an older shape).
This module only decides which shapes follow each other (the provider's protocol) and fills them.

Pure: no sockets, clocks, files or global random (the templates are package data, read once).
Ids, timestamps, padding and obfuscation strings come from ``random.Random`` seeded by the caller's
``seed``: the same content and seed give the same bytes.
"""

from __future__ import annotations

import functools
import json
import random
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from json.encoder import encode_basestring
from typing import Any

from . import _profiles
from ._cassette import End, Headers, Interaction, Request, Response
from ._errors import ConfigError

__all__ = [
    "PROVIDERS",
    "Content",
    "Synthesized",
    "ToolCall",
    "Usage",
    "count_tokens",
    "json_body",
    "split",
    "stream",
    "synthesize",
    "template",
    "templates",
]

PROVIDERS = ("openai-chat", "openai-responses", "anthropic", "gemini", "generic")
SPLITS = ("words", "tokens", "chars")
MAX_CONTENT = 16 * 1024 * 1024  # characters of text, reasoning and arguments together

# ---------------------------------------------------------------------------------------------
# Content


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str = "{}"  # JSON text, streamed as given (OpenAI, Anthropic); parsed for Gemini

    def parsed(self) -> Any:
        return json.loads(self.arguments)


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Content:
    """What the answer says. Pieces: ``text_pieces`` etc. give an exact split (else ``split``)."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""
    finish_reason: str | None = None  # the provider's own word (stop, end_turn, STOP, ...)
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    text_pieces: tuple[str, ...] | None = None
    reasoning_pieces: tuple[str, ...] | None = None
    argument_pieces: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self) -> None:
        size = len(self.text) + len(self.reasoning)
        for call in self.tool_calls:
            size += len(call.arguments) + len(call.name)
            if not call.name:
                raise ConfigError("a tool call needs a name")
            try:
                call.parsed()
            except ValueError as e:
                raise ConfigError(
                    f"tool call {call.name!r}: arguments are not JSON ({e}): {call.arguments!r}"
                ) from None
        if size > MAX_CONTENT:
            raise ConfigError(f"content too large ({size} characters; at most {MAX_CONTENT})")
        if self.text_pieces is not None and "".join(self.text_pieces) != self.text:
            raise ConfigError("text_pieces do not join to the text")
        if self.reasoning_pieces is not None and "".join(self.reasoning_pieces) != self.reasoning:
            raise ConfigError("reasoning_pieces do not join to the reasoning")
        if self.argument_pieces is not None and ["".join(p) for p in self.argument_pieces] != [
            c.arguments for c in self.tool_calls
        ]:
            raise ConfigError("argument_pieces do not join to the tool call arguments")


# ---------------------------------------------------------------------------------------------
# Splitting into pieces

# An approximation of the pre-tokenizer of OpenAI's cl100k/o200k: contractions, a word with the
# space or punctuation before it, numbers in groups of up to three digits, punctuation runs, line
# breaks, other spaces. Long words are cut further (BPE gives ~4 characters per token).
_TOKEN = re.compile(
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\w]?[^\W\d_]+|\d{1,3}| ?(?:[^\s\w]|_)+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+|.",
    re.S,
)
_WORD = re.compile(r"\s*\S+|\s+")
_LONG = 8  # word characters kept in one token
_CUT = 5


def split(text: str, how: str | int = "tokens") -> list[str]:
    """Cut ``text`` into the pieces a provider streams; they join back to ``text``.

    ``words``: each word with the white space before it; ``tokens``: approximate model tokens (no
    vocabulary, no download); ``chars``: one character each; an int N: N characters each."""
    if not text:
        return []
    if isinstance(how, int) or (isinstance(how, str) and how.isdigit()):
        n = int(how)
        if n < 1:
            raise ConfigError(f"split size must be at least 1, got {n}")
        return [text[i : i + n] for i in range(0, len(text), n)]
    if how == "chars":
        return list(text)
    if how == "words":
        return _WORD.findall(text)
    if how == "tokens":
        out: list[str] = []
        for piece in _TOKEN.findall(text):
            if len(piece) <= _LONG + 1:
                out.append(piece)
                continue
            head = 1 if not piece[0].isalnum() else 0
            first = head + _CUT
            out.append(piece[:first])
            out += [piece[i : i + _CUT] for i in range(first, len(piece), _CUT)]
        return out
    raise ConfigError(f"unknown split {how!r}; valid: words, tokens, chars or a number")


def count_tokens(text: str) -> int:
    """Approximate token count (the ``tokens`` split)."""
    return len(split(text, "tokens"))


# ---------------------------------------------------------------------------------------------
# Templates (data)


@functools.cache
def templates() -> tuple[str, ...]:
    """The names of the bundled templates (``openai-chat``, ``openai-chat@2024-09``, ...)."""
    folder = resources.files(__package__) / "_templates"
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json")))


@functools.cache
def template(name: str) -> Mapping[str, Any]:
    """A template with what it ``extends`` merged in (its ``shapes`` key by key)."""
    if name not in templates():
        raise ConfigError(f"unknown provider template {name!r}; valid: {', '.join(templates())}")
    raw = (resources.files(__package__) / "_templates" / f"{name}.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(raw)
    parent = data.pop("extends", None)
    if parent:
        base = dict(template(parent))
        shapes = {**base["shapes"], **data.pop("shapes", {})}
        base.update(data)
        base["shapes"] = shapes
        data = base
    return data


# ---------------------------------------------------------------------------------------------
# Ids

_ALPHABETS = {
    "hex": "0123456789abcdef",
    "b62": string.digits + string.ascii_uppercase + string.ascii_lowercase,
    "b58": "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz",
    "b64": string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/",
    "b64url": string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_",
}
_FIELD = re.compile(r"\{(\w+)(?::(\d+))?\}")


def _fill(pattern: str, rng: random.Random, context: Mapping[str, object]) -> str:
    """``chatcmpl-{b62:29}`` -> ``chatcmpl-`` and 29 random base-62 characters; ``{name}`` is
    taken from ``context``."""

    def one(m: re.Match[str]) -> str:
        kind, n = m.group(1), m.group(2)
        if n is not None:
            return "".join(rng.choices(_ALPHABETS[kind], k=int(n)))
        return str(context[kind])

    return _FIELD.sub(one, pattern)


# ---------------------------------------------------------------------------------------------
# Shapes: JSON with "$name" slots, compiled once per stream into literal parts around the slots

OMIT: Any = object()  # a "$name?" slot given OMIT drops its key


class _Slot:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


def _resolve(node: Any, lookup: Callable[[str], Any]) -> Any:
    if isinstance(node, str):
        if node.startswith("$"):
            name = node[1:]
            optional = name.endswith("?")
            value = lookup(name.rstrip("?"))
            if value is OMIT and not optional:
                raise KeyError(f"slot ${name} may not be left out")
            return value
        return node
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            r = _resolve(v, lookup)
            if r is not OMIT:
                out[k] = r
        return out
    if isinstance(node, list):
        return [r for r in (_resolve(v, lookup) for v in node) if r is not OMIT]
    return node


def _dump_parts(node: Any, item_sep: str, key_sep: str) -> tuple[list[str], list[str]]:
    """JSON text of ``node`` as literal parts around its slots: ``parts[0] slot[0] parts[1] ...``
    (separators as given, strings as ``json.dumps(ensure_ascii=False)`` writes them)."""
    parts: list[str] = []
    slots: list[str] = []
    buf: list[str] = []

    def walk(n: Any) -> None:
        if isinstance(n, _Slot):
            parts.append("".join(buf))
            buf.clear()
            slots.append(n.name)
        elif isinstance(n, dict):
            buf.append("{")
            for i, (k, v) in enumerate(n.items()):
                if i:
                    buf.append(item_sep)
                buf.append(encode_basestring(k))
                buf.append(key_sep)
                walk(v)
            buf.append("}")
        elif isinstance(n, list):
            buf.append("[")
            for i, v in enumerate(n):
                if i:
                    buf.append(item_sep)
                walk(v)
            buf.append("]")
        else:
            buf.append(json.dumps(n, ensure_ascii=False))

    walk(node)
    parts.append("".join(buf))
    return parts, slots


class _Compiled:
    __slots__ = ("event", "parts", "slots")

    def __init__(self, parts: list[str], slots: list[str], event: str | None):
        self.parts = parts
        self.slots = slots
        self.event = event


_EOL = {"\n": b"\n", "\r\n": b"\r\n", "\r": b"\r"}


class _Builder:
    """Fills one template for one stream: ``obj`` gives a shape as a value, ``emit`` appends it as
    an SSE frame (compiled once per shape and structure, then only the slot values change)."""

    def __init__(self, tpl: Mapping[str, Any], rng: random.Random, consts: Mapping[str, Any]):
        self.tpl = tpl
        self.shapes: Mapping[str, Any] = tpl["shapes"]
        self.rng = rng
        self.consts = consts
        self.item_sep, self.key_sep = tpl["json"]["separators"]
        framing = tpl["framing"]
        self.eol = _EOL[framing["eol"]]
        self.named = bool(framing["named"])
        self.padding = tpl.get("padding")
        self.obfuscation = tpl.get("obfuscation")
        self.frames: list[bytes] = []
        self.kinds: list[str] = []  # the shape name of each frame
        self.seq = 0
        self._cache: dict[tuple[object, ...], _Compiled] = {}
        self._pool, self._pool_at, self._lengths, self._length_at = "", 0, [0], 0
        self._encoder = json.JSONEncoder(
            separators=(self.item_sep, self.key_sep), ensure_ascii=False
        )

    def _lookup(self, subs: Mapping[str, Any], values: Mapping[str, Any], slots: bool) -> Any:
        def lookup(name: str) -> Any:
            if name in subs:
                sub = subs[name]
                if isinstance(sub, str):
                    return _resolve(self.shapes[sub], lookup)
                return sub  # None (JSON null) or OMIT
            if name in values:
                return _Slot(name) if slots else values[name]
            if name in self.consts:
                return self.consts[name]
            if name in self.shapes:
                return _resolve(self.shapes[name], lookup)
            raise KeyError(f"template {self.tpl['template']}: nothing fills ${name}")

        return lookup

    def obj(self, shape: str, subs: Mapping[str, Any] | None = None, /, **values: Any) -> Any:
        return _resolve(self.shapes[shape], self._lookup(subs or {}, values, slots=False))

    def dumps(self, value: Any) -> str:
        t = type(value)
        if t is str:
            return str(encode_basestring(value))
        if value is None:
            return "null"
        if t is int:
            return int.__repr__(value)
        return self._encoder.encode(value)

    def stream_of(
        self, shape: str, subs: Mapping[str, Any] | None = None, /, **fixed: Any
    ) -> Callable[[str], None]:
        """``emit`` for a hot loop: the shape compiled once with ``fixed`` values; the function
        returned emits it for one ``piece`` (a new ``seq`` and obfuscation each time)."""
        subs = dict(subs or {})
        for k in [k for k, v in fixed.items() if v is OMIT]:
            subs[k] = fixed.pop(k)
        values = {**fixed, "piece": ""}
        values["seq"] = 0  # a shape with $seq numbers its events (Responses)
        if self.obfuscation:
            values["obfuscation"] = ""
        else:
            subs.setdefault("obfuscation", OMIT)
        compiled = self._compile(shape, subs, values)
        parts, slots = compiled.parts, compiled.slots
        encoded = [
            None if k in ("piece", "seq", "obfuscation") else self.dumps(values[k]) for k in slots
        ]
        dumps, frame, event = self.dumps, self._frame, compiled.event

        def emit_piece(piece: str) -> None:
            out = [parts[0]]
            for i, slot in enumerate(slots):
                value = encoded[i]
                if value is None:
                    if slot == "piece":
                        value = dumps(piece)
                    elif slot == "seq":
                        value = str(self.next_seq())
                    else:
                        value = '"' + self._obfuscation() + '"'
                out.append(value)
                out.append(parts[i + 1])
            frame(shape, event, "".join(out))

        return emit_piece

    def _obfuscation(self) -> str:
        """A random-length padding string (OpenAI's ``obfuscation``), cut from a seeded pool."""
        ob = self.obfuscation
        assert ob is not None
        lo, hi = ob["min"], ob["max"]
        if self._pool_at + 2 * hi > len(self._pool):
            alphabet = _ALPHABETS[ob["alphabet"]]
            table = bytes(ord(alphabet[i % len(alphabet)]) for i in range(256))
            self._pool = self.rng.randbytes(1 << 14).translate(table).decode("ascii")
            self._lengths = [lo + b % (hi - lo + 1) for b in self.rng.randbytes(1 << 10)]
            self._pool_at = self._length_at = 0
        n = self._lengths[self._length_at % len(self._lengths)]
        self._length_at += 1
        start = self._pool_at
        self._pool_at += n
        return self._pool[start : start + n]

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq - 1

    def emit(self, shape: str, subs: Mapping[str, Any] | None = None, /, **values: Any) -> None:
        subs = dict(subs or {})
        for k in [k for k, v in values.items() if v is OMIT]:
            subs[k] = values.pop(k)
        if self.obfuscation:
            values["obfuscation"] = ""  # drawn below if the shape has it
        else:
            subs.setdefault("obfuscation", OMIT)
        key = (shape, *((k, v if isinstance(v, str) else id(v)) for k, v in subs.items()), *values)
        compiled = self._cache.get(key)
        if compiled is None:
            compiled = self._cache[key] = self._compile(shape, subs, values)
        parts, slots = compiled.parts, compiled.slots
        if self.obfuscation and "obfuscation" in slots:
            values["obfuscation"] = self._obfuscation()
        out = [parts[0]]
        dumps = self.dumps
        for i, slot in enumerate(slots):
            out.append(dumps(values[slot]))
            out.append(parts[i + 1])
        self._frame(shape, compiled.event, "".join(out))

    def _compile(self, shape: str, subs: Mapping[str, Any], values: Mapping[str, Any]) -> _Compiled:
        node = self.shapes[shape]
        if isinstance(node, str):  # a literal data line (Anthropic's ping: {"type": "ping"})
            event = json.loads(node).get("type") if self.named else None
            return _Compiled([node], [], event)
        resolved = _resolve(node, self._lookup(subs, values, slots=True))
        event = resolved.get("type") if self.named and isinstance(resolved, dict) else None
        parts, slots = _dump_parts(resolved, self.item_sep, self.key_sep)
        return _Compiled(parts, slots, event)

    def _frame(self, shape: str, event: str | None, data: str) -> None:
        pad = self.padding
        if pad and shape not in pad["except"] and data.endswith("}"):
            data = data[:-1] + " " * self.rng.randint(pad["min"], pad["max"]) + "}"
        eol = self.eol
        head = b"event: " + event.encode() + eol if event is not None else b""
        self.frames.append(head + b"data: " + data.encode() + eol + eol)
        self.kinds.append(shape)

    def raw(self, data: str, kind: str = "raw") -> None:
        """A frame whose data is ``data`` as is (``[DONE]``, generic text); newlines in ``data``
        become several ``data:`` lines."""
        eol = self.eol
        lines = b"".join(b"data: " + line.encode() + eol for line in data.split("\n"))
        self.frames.append(lines + eol)
        self.kinds.append(kind)


# ---------------------------------------------------------------------------------------------
# What a request asks for


@dataclass(frozen=True, slots=True)
class _Plan:
    template: str
    provider: str
    model: str
    stream: bool
    request: Mapping[str, Any]
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int


def _strings(node: Any, out: list[str], depth: int = 0) -> None:
    if depth > 64:
        return
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, dict):
        for k, v in node.items():
            if k not in ("model", "type", "role"):
                _strings(v, out, depth + 1)
    elif isinstance(node, list):
        for v in node:
            _strings(v, out, depth + 1)


def _plan(
    name: str, content: Content, request: Mapping[str, Any] | None, stream: bool | None = None
) -> _Plan:
    tpl = template(name)
    provider = tpl["provider"]
    req = dict(request or {})
    model = content.model or (req.get("model") if isinstance(req.get("model"), str) else None)
    model = model or tpl["model"] or ""
    if stream is None:  # a request asks for a stream with "stream": true; Gemini by its URL
        stream = request is None or bool(req.get("stream", provider == "gemini"))
    texts: list[str] = []
    _strings({k: v for k, v in req.items() if k != "tools"}, texts)
    u = content.usage
    reasoning = (
        u.reasoning_tokens if u.reasoning_tokens is not None else count_tokens(content.reasoning)
    )
    output = u.output_tokens
    if output is None:
        output = count_tokens(content.text) + reasoning
        output += sum(count_tokens(c.arguments) + 1 for c in content.tool_calls)
    inputs = u.input_tokens if u.input_tokens is not None else sum(map(count_tokens, texts)) + 8
    return _Plan(name, provider, model, stream, req, inputs, output, reasoning)


# ---------------------------------------------------------------------------------------------
# The providers' protocols


def _pieces(content: Content, how: str | int) -> tuple[list[str], list[str], list[list[str]]]:
    text = (
        list(content.text_pieces) if content.text_pieces is not None else split(content.text, how)
    )
    reasoning = (
        list(content.reasoning_pieces)
        if content.reasoning_pieces is not None
        else split(content.reasoning, how)
    )
    if content.argument_pieces is not None:
        args = [list(p) for p in content.argument_pieces]
    else:
        args = [split(c.arguments, how) for c in content.tool_calls]
    return text, reasoning, args


def _usage_values(plan: _Plan) -> dict[str, int]:
    return {
        "input_tokens": plan.input_tokens,
        "output_tokens": plan.output_tokens,
        "total_tokens": plan.input_tokens + plan.output_tokens,
        "reasoning_tokens": plan.reasoning_tokens,
    }


def _call_ids(b: _Builder, content: Content) -> list[str]:
    pattern = b.tpl["ids"].get("call_id", "")
    return [_fill(pattern, b.rng, {}) for _ in content.tool_calls]


def _openai_chat(b: _Builder, plan: _Plan, content: Content, how: str | int) -> Any:
    if content.reasoning:
        raise ConfigError(
            "openai-chat streams no reasoning; use openai-responses, anthropic or gemini"
        )
    text, _, args = _pieces(content, how)
    calls = content.tool_calls
    call_ids = _call_ids(b, content)
    finish = content.finish_reason or ("tool_calls" if calls else "stop")
    req = plan.request
    options = req.get("stream_options") or {}
    include_usage = not req or bool(options.get("include_usage"))
    if not options.get("include_obfuscation", True):
        b.obfuscation = None
    usage_total = b.obj("usage", **_usage_values(plan))
    if not plan.stream:
        tool_calls = [
            b.obj("tool_call", call_id=i, name=c.name, arguments=c.arguments)
            for i, c in zip(call_ids, calls, strict=True)
        ]
        message = "message_tools" if calls else "message_text"
        return b.obj(
            "completion",
            {"message": message},
            text=content.text if content.text or not calls else None,
            tool_calls=tool_calls,
            finish_reason=finish,
            usage=usage_total,
        )
    usage_field = None if include_usage and b.tpl.get("usage_null") else OMIT
    chunk = {"choices": "choices", "usage": usage_field}
    merged = len(calls) == 1 and not content.text
    if merged:
        b.emit(
            "chunk",
            {**chunk, "delta": "delta_role_tool"},
            index=0,
            call_id=call_ids[0],
            name=calls[0].name,
            finish_reason=None,
        )
    else:
        role = "delta_role_tools" if calls and not content.text else "delta_role_text"
        b.emit("chunk", {**chunk, "delta": role}, finish_reason=None)
    emit_text = b.stream_of("chunk", {**chunk, "delta": "delta_content"}, finish_reason=None)
    for piece in text:
        emit_text(piece)
    for i, call in enumerate(calls):
        if not (merged and i == 0):
            b.emit(
                "chunk",
                {**chunk, "delta": "delta_tool_head"},
                index=i,
                call_id=call_ids[i],
                name=call.name,
                finish_reason=None,
            )
        emit_args = b.stream_of(
            "chunk", {**chunk, "delta": "delta_tool_args"}, index=i, finish_reason=None
        )
        for piece in args[i]:
            emit_args(piece)
    b.emit("chunk", {**chunk, "delta": "delta_finish"}, finish_reason=finish)
    if include_usage:
        b.emit("chunk", {"choices": "no_choices", "usage": "usage"}, **_usage_values(plan))
    return None


def _responses_echo(b: _Builder, plan: _Plan) -> dict[str, Any]:
    echo = {k: plan.request.get(k, v) for k, v in b.tpl["echo"].items()}
    if echo.get("service_tier") == "auto":
        echo["service_tier"] = "default"
    return echo


def _responses_reasoning(
    b: _Builder, plan: _Plan, content: Content, pieces: list[str], index: int
) -> Any:
    """The reasoning item at ``index``; its summary streamed when the request asks for one."""
    ids, ctx, seq, stream = b.tpl["ids"], b.consts, b.next_seq, plan.stream
    include = plan.request.get("include") or []
    summary_on = not plan.request or (plan.request.get("reasoning") or {}).get("summary")
    rid = _fill(ids["reasoning_id"], b.rng, ctx)
    crypt = "reasoning.encrypted_content" in include
    enc = (lambda: _fill(ids["encrypted"], b.rng, ctx)) if crypt else (lambda: OMIT)
    if stream:
        item = b.obj("item_reasoning", item_id=rid, summary=[], encrypted=enc())
        b.emit("item_added", output_index=index, item=item, seq=seq())
        if summary_on:
            part = {"part": "summary_text"}
            b.emit("summary_part_added", part, item_id=rid, output_index=index, text="", seq=seq())
            emit_summary = b.stream_of("summary_delta", item_id=rid, output_index=index)
            for piece in pieces:
                emit_summary(piece)
            b.emit(
                "summary_done", item_id=rid, output_index=index, text=content.reasoning, seq=seq()
            )
            b.emit(
                "summary_part_done",
                part,
                item_id=rid,
                output_index=index,
                text=content.reasoning,
                seq=seq(),
            )
    summary = [b.obj("summary_text", text=content.reasoning)] if summary_on else []
    final = b.obj("item_reasoning", item_id=rid, summary=summary, encrypted=enc())
    if stream:
        b.emit("item_done", output_index=index, item=final, seq=seq())
    return final


def _responses_message(
    b: _Builder, plan: _Plan, content: Content, pieces: list[str], index: int
) -> Any:
    """The message item at ``index``: its text part, streamed delta by delta."""
    seq = b.next_seq
    mid = _fill(b.tpl["ids"]["message_id"], b.rng, b.consts)
    if plan.stream:
        item = b.obj("item_message", item_id=mid, status="in_progress", content=[])
        b.emit("item_added", output_index=index, item=item, seq=seq())
        part = {"part": "part_text"}
        b.emit("part_added", part, item_id=mid, output_index=index, text="", seq=seq())
        emit_text = b.stream_of("text_delta", item_id=mid, output_index=index)
        for piece in pieces:
            emit_text(piece)
        b.emit("text_done", item_id=mid, output_index=index, text=content.text, seq=seq())
        b.emit("part_done", part, item_id=mid, output_index=index, text=content.text, seq=seq())
    part = b.obj("part_text", text=content.text)
    final = b.obj("item_message", item_id=mid, status="completed", content=[part])
    if plan.stream:
        b.emit("item_done", output_index=index, item=final, seq=seq())
    return final


def _responses_function(
    b: _Builder, plan: _Plan, call: ToolCall, call_id: str, pieces: list[str], index: int
) -> Any:
    """The function call item at ``index``: its arguments, streamed delta by delta."""
    seq = b.next_seq
    fid = _fill(b.tpl["ids"]["function_id"], b.rng, b.consts)
    fields = {"item_id": fid, "call_id": call_id, "name": call.name}
    if plan.stream:
        item = b.obj("item_function", status="in_progress", arguments="", **fields)
        b.emit("item_added", output_index=index, item=item, seq=seq())
        emit_args = b.stream_of("args_delta", item_id=fid, output_index=index)
        for piece in pieces:
            emit_args(piece)
        b.emit("args_done", item_id=fid, output_index=index, arguments=call.arguments, seq=seq())
    final = b.obj("item_function", status="completed", arguments=call.arguments, **fields)
    if plan.stream:
        b.emit("item_done", output_index=index, item=final, seq=seq())
    return final


def _openai_responses(b: _Builder, plan: _Plan, content: Content, how: str | int) -> Any:
    text, reasoning, args = _pieces(content, how)
    if content.reasoning and not b.tpl.get("reasoning"):
        raise ConfigError(f"template {plan.template} has no reasoning items")
    status = content.finish_reason or "completed"
    if status not in ("completed", "incomplete"):
        raise ConfigError(
            f"openai-responses ends with a status: completed or incomplete, not {status!r}"
        )
    echo = _responses_echo(b, plan)
    call_ids = _call_ids(b, content)
    usage = b.obj("usage", **_usage_values(plan))

    def response(state: str, items: list[Any], used: Any) -> Any:
        return b.obj("response", status=state, output=items, usage=used, **echo)

    if plan.stream:
        b.emit("created", response=response("in_progress", [], None), seq=b.next_seq())
        b.emit("in_progress", response=response("in_progress", [], None), seq=b.next_seq())
    output: list[Any] = []
    if content.reasoning:
        output.append(_responses_reasoning(b, plan, content, reasoning, len(output)))
    if content.text or not content.tool_calls:
        output.append(_responses_message(b, plan, content, text, len(output)))
    for i, call in enumerate(content.tool_calls):
        output.append(_responses_function(b, plan, call, call_ids[i], args[i], len(output)))
    done = response(status, output, usage)
    if not plan.stream:
        return done
    shape = "completed" if status == "completed" else "incomplete"
    if shape not in b.shapes:
        shape = "completed"
    b.emit(shape, response=done, seq=b.next_seq())
    return None


_ANTHROPIC_STOP = ("end_turn", "tool_use", "max_tokens", "stop_sequence", "pause_turn", "refusal")


def _anthropic(b: _Builder, plan: _Plan, content: Content, how: str | int) -> Any:
    text, reasoning, args = _pieces(content, how)
    calls = content.tool_calls
    call_ids = _call_ids(b, content)
    stop = content.finish_reason or ("tool_use" if calls else "end_turn")
    ids = b.tpl["ids"]
    signature = _fill(ids["signature"], b.rng, {}) if content.reasoning else ""
    final: list[Any] = []
    if content.reasoning:
        final.append(b.obj("block_thinking", thinking=content.reasoning, signature=signature))
    if content.text or not calls:
        final.append(b.obj("block_text", text=content.text))
    for i, call in enumerate(calls):
        final.append(
            b.obj("block_tool_use", call_id=call_ids[i], name=call.name, input=call.parsed())
        )
    values = _usage_values(plan)
    if not plan.stream:
        usage = b.obj("usage_start", **values)
        return b.obj("message", content=final, stop_reason=stop, usage=usage)
    start_usage = b.obj("usage_start", **{**values, "output_tokens": 1})
    message = b.obj("message", content=[], stop_reason=None, usage=start_usage)
    b.emit("message_start", message=message)
    index = 0

    def start(block: str, **fields: Any) -> None:
        b.emit("block_start", {"block": block}, index=index, **fields)
        if index == 0:
            b.emit("ping")

    if content.reasoning:
        start("block_thinking", thinking="", signature="")
        emit = b.stream_of("block_delta", {"delta": "delta_thinking"}, index=index)
        for piece in reasoning:
            emit(piece)
        b.emit("block_delta", {"delta": "delta_signature"}, index=index, signature=signature)
        b.emit("block_stop", index=index)
        index += 1
    if content.text or not calls:
        start("block_text", text="")
        emit = b.stream_of("block_delta", {"delta": "delta_text"}, index=index)
        for piece in text:
            emit(piece)
        b.emit("block_stop", index=index)
        index += 1
    for i, call in enumerate(calls):
        start("block_tool_use", call_id=call_ids[i], name=call.name, input={})
        emit = b.stream_of("block_delta", {"delta": "delta_input"}, index=index)
        for piece in ["", *args[i]]:
            emit(piece)
        b.emit("block_stop", index=index)
        index += 1
    b.emit("message_delta", {"usage": "usage_delta"}, stop_reason=stop, **values)
    b.emit("message_stop")
    return None


def _gemini(b: _Builder, plan: _Plan, content: Content, how: str | int) -> Any:
    text, reasoning, _ = _pieces(content, how)
    if content.reasoning and not b.tpl.get("reasoning"):
        raise ConfigError(f"template {plan.template} has no thought parts")
    calls = content.tool_calls
    finish = content.finish_reason or "STOP"
    values = _usage_values(plan)
    if not values["reasoning_tokens"]:
        values["reasoning_tokens"] = OMIT
    sig_pattern = b.tpl["ids"]["signature"]
    call_parts = [
        b.obj(
            "part_call",
            name=c.name,
            args=c.parsed(),
            signature=_fill(sig_pattern, b.rng, {}) if i == 0 else OMIT,
        )
        for i, c in enumerate(calls)
    ]
    if not plan.stream:
        parts: list[Any] = []
        if content.reasoning:
            parts.append(b.obj("part_thought", piece=content.reasoning))
        if content.text or not calls:
            parts.append(b.obj("part_text", piece=content.text))
        parts += call_parts
        return b.obj("chunk", {"usage": "usage_final"}, parts=parts, finish_reason=finish, **values)
    last_text = len(text) - 1 if b.tpl.get("finish_on_last_text") and not calls else -1
    partial = {"parts": "parts_one", "usage": "usage_partial", "finish_reason": OMIT}
    emit_thought = b.stream_of("chunk", {**partial, "part": "part_thought"}, **values)
    for piece in reasoning:
        emit_thought(piece)
    emit_text = b.stream_of("chunk", {**partial, "part": "part_text"}, **values)
    for i, piece in enumerate(text):
        if i == last_text:
            b.emit(
                "chunk",
                {"parts": "parts_one", "part": "part_text", "usage": "usage_final"},
                piece=piece,
                finish_reason=finish,
                **values,
            )
        else:
            emit_text(piece)
    if calls:
        b.emit(
            "chunk", {"usage": "usage_partial", "finish_reason": OMIT}, parts=call_parts, **values
        )
    if last_text < 0:
        b.emit(
            "chunk",
            {"parts": "parts_one", "part": "part_text", "usage": "usage_final"},
            piece="",
            finish_reason=finish,
            **values,
        )
    return None


def _generic(b: _Builder, plan: _Plan, content: Content, how: str | int, done: bool) -> Any:
    if content.tool_calls or content.reasoning:
        raise ConfigError("generic streams carry text only (no tool calls, no reasoning)")
    text, _, _ = _pieces(content, how)
    if not plan.stream:
        return content.text
    for piece in text:
        b.raw(piece, "text")
    if done:
        b.raw("[DONE]", "done")
    return None


# ---------------------------------------------------------------------------------------------
# Entry points


@dataclass(frozen=True, slots=True)
class Synthesized:
    """One synthesized response: its head and either SSE ``frames`` or a JSON ``body``."""

    template: str
    provider: str
    model: str
    stream: bool
    status: int
    headers: Headers
    frames: tuple[bytes, ...]
    kinds: tuple[str, ...]  # the template shape of each frame (for tests and template mode)
    body: bytes  # the frames joined, or the non-streaming body
    request_url: str


def _consts(tpl: Mapping[str, Any], plan: _Plan, rng: random.Random) -> dict[str, Any]:
    created = 1_700_000_000 + rng.randrange(100_000_000)
    ctx: dict[str, Any] = {"created_hex": f"{created:08x}", "created": created}
    for key, pattern in tpl["ids"].items():
        ctx[key] = _fill(pattern, rng, ctx)
    ctx.update(tpl.get("defaults", {}))
    ctx["model"] = plan.model
    return ctx


def _url(tpl: Mapping[str, Any], plan: _Plan) -> str:
    key = "url" if plan.stream or "json_url" not in tpl else "json_url"
    return str(tpl[key]).replace("{model}", plan.model)


def stream(
    name: str,
    content: Content,
    *,
    request: Mapping[str, Any] | None = None,
    split_by: str | int = "tokens",
    seed: int = 0,
    done: bool = False,
    processing_ms: int = 0,
    streaming: bool | None = None,
) -> Synthesized:
    """The response ``name`` (a template: ``openai-chat``, ``anthropic@2025-09``, ...) sends for
    ``content``: a stream, or the non-streaming JSON when the request does not say
    ``"stream": true`` (Gemini: unless it asks for one; ``streaming`` decides when given)."""
    tpl = template(name)
    plan = _plan(name, content, request, streaming)
    rng = random.Random(f"ssevcr-synth:{seed}:{name}")
    consts = _consts(tpl, plan, rng)
    b = _Builder(tpl, rng, consts)
    provider = tpl["provider"]
    if provider == "generic":
        value = _generic(b, plan, content, split_by, done)
    else:
        build = {
            "openai-chat": _openai_chat,
            "openai-responses": _openai_responses,
            "anthropic": _anthropic,
            "gemini": _gemini,
        }[provider]
        value = build(b, plan, content, split_by)
    if plan.stream:
        done_line = tpl["framing"]["done"]
        if done_line:
            b.raw(done_line, "done")
        body = b"".join(b.frames)
        head = tpl["headers"]
    else:
        body = json_body(tpl, value)
        head = tpl["json_headers"]
    ctx = {**consts, "processing_ms": processing_ms}
    headers = tuple((k, _fill(v, rng, ctx)) for k, v in head)
    return Synthesized(
        template=name,
        provider=provider,
        model=plan.model,
        stream=plan.stream,
        status=200,
        headers=headers,
        frames=tuple(b.frames) if plan.stream else (),
        kinds=tuple(b.kinds) if plan.stream else (),
        body=body,
        request_url=_url(tpl, plan),
    )


def json_body(tpl: Mapping[str, Any], value: Any) -> bytes:
    """A non-streaming body as the provider writes it (indented for OpenAI and Gemini)."""
    if isinstance(value, str):
        return value.encode()
    form = tpl["response_json"]
    text = json.dumps(
        value, indent=form["indent"], separators=tuple(form["separators"]), ensure_ascii=False
    )
    return text.encode()


DEFAULT_PROFILE = "ttft:350ms+tps:50+jitter:25%"


def synthesize(
    name: str,
    content: Content,
    *,
    request: Mapping[str, Any] | None = None,
    split_by: str | int = "tokens",
    seed: int = 0,
    done: bool = False,
    profile: str | Sequence[_profiles.Profile] | None = None,
    url: str | None = None,
    streaming: bool | None = None,
) -> Interaction:
    """A whole interaction: the request it answers (``request`` as the JSON body, POST to the
    provider's URL or ``url``) and the synthesized response, one event per chunk, timed by
    ``profile`` (default ``ttft:350ms+tps:50+jitter:25%``, seeded by ``seed``). Its meta says
    ``synthesized`` (template, seed, split) and ``profile``."""
    if profile is None or isinstance(profile, str):
        steps = _profiles.parse(profile or DEFAULT_PROFILE)
    else:
        steps = tuple(profile)
    first = _profiles.synthetic_times(1, steps, seed)[0]
    headers_at = round(first * 0.9, 6)
    s = stream(
        name,
        content,
        request=request,
        split_by=split_by,
        seed=seed,
        done=done,
        processing_ms=round(headers_at * 1000),
        streaming=streaming,
    )
    if s.stream:
        times = _profiles.synthetic_times(len(s.frames), steps, seed)
        chunks = list(zip(times, s.frames, strict=True))
        end_at = (times[-1] if times else headers_at) + 0.001
    else:
        count = max(1, content.usage.output_tokens or count_tokens(content.text))
        at = _profiles.synthetic_times(count, steps, seed)[-1]
        headers_at = at
        chunks = [(at, s.body)]
        end_at = at + 0.001
    response = Response.from_chunks(
        s.status,
        chunks,
        reason="OK",
        headers=s.headers,
        headers_at=headers_at,
        end=End(round(end_at, 6)),
    )
    body = json.dumps(
        dict(request or _default_request(s)), separators=(",", ":"), ensure_ascii=False
    )
    req = Request(
        "POST", url or s.request_url, (("content-type", "application/json"),), body.encode()
    )
    meta = {
        "synthesized": f"{name}; seed {seed}; split {split_by}",
        "profile": _profiles.describe(steps),
    }
    return Interaction(req, response, meta)


def _default_request(s: Synthesized) -> dict[str, Any]:
    """What the answer is taken to answer when no request is given."""
    if s.provider == "openai-chat":
        return {
            "model": s.model,
            "messages": [{"role": "user", "content": "(synthesized)"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    if s.provider == "openai-responses":
        return {"model": s.model, "input": "(synthesized)", "stream": True}
    if s.provider == "anthropic":
        return {
            "model": s.model,
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": "(synthesized)"}],
            "stream": True,
        }
    if s.provider == "gemini":
        return {"contents": [{"role": "user", "parts": [{"text": "(synthesized)"}]}]}
    return {}
