"""Template mode (``ssevcr synth --like``): a recorded stream as the mould for another answer.

The recording keeps its request, status, headers, ids, SSE framing, every event that carries no
content, and its timing; only the content fields change: the text, the reasoning and the tool-call
arguments. Each content stream's delta events are re-cut from the new content, each new delta
being the recorded first delta of that stream with only its content value replaced (so padding,
field order, ids and obfuscation stay the recorded bytes); fields elsewhere that repeat a whole
content value (``output_text.done``, ``response.completed``, ...) get the new value. New deltas
arrive with gaps drawn (seeded) from the quantiles of the recording's own gaps, so the gap
distribution stays the recording's. Pure: no files, no clocks.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

from . import _providers, _synth
from ._cassette import End, Interaction, Response, with_body
from ._errors import ConfigError
from ._sse import Event, Frame
from ._stats import arrivals, decoded_pieces, percentile

__all__ = ["content_slots", "recast", "span"]

Path = tuple[str | int, ...]
Found = list[tuple[str, tuple[Any, ...], Path, str]]
_DECODER = json.JSONDecoder()
_WS = " \t\r\n"


def _ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def span(text: str, path: Path) -> tuple[int, int]:
    """Where the value at ``path`` is in the JSON ``text``: ``text[start:end]``. Every other byte
    of the document stays as it is when that slice is replaced."""
    i = _ws(text, 0)
    for key in path:
        if isinstance(key, str):
            if text[i : i + 1] != "{":
                raise ValueError(f"no object at {key!r}")
            i = _ws(text, i + 1)
            while True:
                if text[i : i + 1] != '"':
                    raise ValueError(f"no key {key!r}")
                name, i = scanstring(text, i + 1)
                i = _ws(text, i)
                if text[i : i + 1] != ":":
                    raise ValueError("expected ':'")
                i = _ws(text, i + 1)
                if name == key:
                    break
                _, i = _DECODER.raw_decode(text, i)
                i = _ws(text, i)
                if text[i : i + 1] != ",":
                    raise ValueError(f"no key {key!r}")
                i = _ws(text, i + 1)
        else:
            if text[i : i + 1] != "[":
                raise ValueError(f"no array at {key}")
            i = _ws(text, i + 1)
            for _ in range(key):
                _, i = _DECODER.raw_decode(text, i)
                i = _ws(text, i)
                if text[i : i + 1] != ",":
                    raise ValueError(f"no item {key}")
                i = _ws(text, i + 1)
    _, end = _DECODER.raw_decode(text, i)
    return i, end


@dataclass(slots=True)
class _Slot:
    """One content stream of a recording: its kind, its delta events and their content path."""

    kind: str  # text | reasoning | args
    key: tuple[Any, ...]
    name: str = ""  # the tool's name (args)
    deltas: list[tuple[int, Path]] = field(default_factory=list)  # (frame index, path)
    recorded: Any = None  # the whole recorded content (str; Gemini args: the object)
    new: Any = None


def _data(frame: Frame) -> Any:
    if not isinstance(frame, Event) or not frame.data.startswith("{"):
        return None
    try:
        return json.loads(frame.data)
    except ValueError:
        return None


def _openai(d: dict[str, Any]) -> Found:
    out: Found = []
    for ci, choice in enumerate(d.get("choices") or []):
        delta = (choice or {}).get("delta") or {}
        for field_name in ("content", "reasoning", "reasoning_content"):
            if isinstance(delta.get(field_name), str) and delta[field_name]:
                kind = "text" if field_name == "content" else "reasoning"
                out.append((kind, (kind, ci), ("choices", ci, "delta", field_name), ""))
        for j, call in enumerate(delta.get("tool_calls") or []):
            fn = call.get("function") or {}
            if isinstance(fn.get("arguments"), str) and fn["arguments"]:
                path: Path = ("choices", ci, "delta", "tool_calls", j, "function", "arguments")
                out.append(("args", ("args", call.get("index")), path, fn.get("name") or ""))
            elif fn.get("name"):
                out.append(("name", ("args", call.get("index")), (), fn["name"]))
    return out


def _responses(d: dict[str, Any]) -> Found:
    t = d.get("type")
    kinds = {
        "response.output_text.delta": "text",
        "response.reasoning_summary_text.delta": "reasoning",
        "response.function_call_arguments.delta": "args",
    }
    if t in kinds and isinstance(d.get("delta"), str):
        return [(kinds[t], (kinds[t], d.get("output_index")), ("delta",), "")]
    item = d.get("item") or {}
    if t == "response.output_item.added" and item.get("type") == "function_call":
        return [("name", ("args", d.get("output_index")), (), item.get("name") or "")]
    return []


def _anthropic(d: dict[str, Any]) -> Found:
    if d.get("type") == "content_block_start":
        block = d.get("content_block") or {}
        if block.get("type") in ("tool_use", "server_tool_use"):
            return [("name", ("args", d.get("index")), (), block.get("name") or "")]
        return []
    if d.get("type") != "content_block_delta":
        return []
    delta = d.get("delta") or {}
    for dtype, kind, key in (
        ("text_delta", "text", "text"),
        ("thinking_delta", "reasoning", "thinking"),
        ("input_json_delta", "args", "partial_json"),
    ):
        if delta.get("type") == dtype and isinstance(delta.get(key), str):
            if kind == "args" and not delta[key]:
                return []  # the empty first fragment is framing
            return [(kind, (kind, d.get("index")), ("delta", key), "")]
    return []


def _gemini(d: dict[str, Any], calls_seen: list[int]) -> Found:
    out: Found = []
    for ci, cand in enumerate(d.get("candidates") or []):
        parts = ((cand or {}).get("content") or {}).get("parts") or []
        for j, part in enumerate(parts):
            base: Path = ("candidates", ci, "content", "parts", j)
            if "functionCall" in part:
                n = calls_seen[0]
                calls_seen[0] += 1
                name = (part["functionCall"] or {}).get("name") or ""
                out.append(("args", ("args", n), (*base, "functionCall", "args"), name))
            elif isinstance(part.get("text"), str) and part["text"]:
                kind = "reasoning" if part.get("thought") else "text"
                out.append((kind, (kind, 0), (*base, "text"), ""))
    return out


def content_slots(frames: Sequence[Frame], provider: str) -> list[_Slot]:
    """The content streams of a recorded stream, in order of first appearance."""
    slots: dict[tuple[Any, ...], _Slot] = {}
    names: dict[tuple[Any, ...], str] = {}
    calls_seen = [0]
    for i, frame in enumerate(frames):
        d = _data(frame)
        if not isinstance(d, dict):
            continue
        if provider == "openai":
            found = _openai(d)
        elif provider == "openai-responses":
            found = _responses(d)
        elif provider == "anthropic":
            found = _anthropic(d)
        elif provider == "gemini":
            found = _gemini(d, calls_seen)
        else:
            found = []
        for kind, key, path, name in found:
            if kind == "name":
                names[key] = name
                continue
            slot = slots.setdefault(key, _Slot(kind, key))
            slot.deltas.append((i, path))
            if name:
                names[key] = name
    for key, slot in slots.items():
        slot.name = names.get(key, "")
    return list(slots.values())


def _value_at(d: Any, path: Path) -> Any:
    for key in path:
        d = d[key]
    return d


def _quantile_gaps(pool: Sequence[float], n: int, rng: random.Random) -> list[float]:
    """``n`` gaps at evenly spaced quantiles of ``pool``, in a seeded order."""
    if n <= 0:
        return []
    if not pool:
        return [0.02] * n
    gaps = [percentile(pool, 100 * (k + 0.5) / n) or 0.0 for k in range(n)]
    rng.shuffle(gaps)
    return gaps


def _new_pieces(slot: _Slot, how: str | int) -> list[Any]:
    if slot.kind == "args" and not isinstance(slot.recorded, str):
        return [json.loads(slot.new)]  # Gemini: the arguments object, whole
    return _synth.split(slot.new, how) if slot.new else []


def _encode(value: Any, like: str) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii="\\u" in like and not like.isascii())
    sep = (",", ": ") if '": ' in like else (",", ":")
    return json.dumps(value, separators=sep, ensure_ascii=False)


def _replace(frame: Frame, edits: Sequence[tuple[Path, Any]]) -> bytes:
    """The frame's bytes with the values at ``edits`` replaced, every other byte kept."""
    assert isinstance(frame, Event)
    raw = frame.raw.decode("utf-8")
    start = raw.index("data:") + 5
    if raw[start : start + 1] == " ":
        start += 1
    end = start + len(frame.data)  # one data line: the providers never fold JSON over lines
    data = frame.data
    if raw[start:end] != data:
        raise ConfigError("--like: an event whose JSON spans several data: lines cannot be recast")
    for path, value in sorted(edits, key=lambda e: span(data, e[0])[0], reverse=True):
        a, b = span(data, path)
        data = data[:a] + _encode(value, data[a:b]) + data[b:]
    return (raw[:start] + data + raw[end:]).encode("utf-8")


def _summaries(d: Any, slots: Sequence[_Slot], path: Path = ()) -> list[tuple[Path, Any]]:
    """Paths of values that repeat a recorded content whole (``output_text.done`` ...)."""
    out: list[tuple[Path, Any]] = []
    for slot in slots:
        if slot.recorded not in ("", None) and d == slot.recorded and isinstance(d, str):
            return [(path, slot.new)]
    if isinstance(d, dict):
        for k, v in d.items():
            out += _summaries(v, slots, (*path, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _summaries(v, slots, (*path, i))
    return out


def _assign(
    slots: list[_Slot],
    text: str | None,
    reasoning: str | None,
    calls: Sequence[_synth.ToolCall],
) -> None:
    for kind, value in (("text", text), ("reasoning", reasoning)):
        of_kind = [s for s in slots if s.kind == kind]
        if value is not None and not of_kind:
            raise ConfigError(f"the recording streams no {kind} to replace")
        for n, slot in enumerate(of_kind):
            slot.new = slot.recorded if value is None else (value if n == 0 else "")
    tools = [s for s in slots if s.kind == "args"]
    if len(calls) > len(tools):
        raise ConfigError(
            f"the recording has {len(tools)} tool call(s); got {len(calls)} --tool-call"
        )
    for n, slot in enumerate(tools):
        if n < len(calls):
            if slot.name and calls[n].name != slot.name:
                raise ConfigError(
                    f"--like keeps the recorded tool names: call {n + 1} is {slot.name!r}, "
                    f"not {calls[n].name!r}"
                )
            slot.new = calls[n].arguments
        else:
            slot.new = (
                slot.recorded if isinstance(slot.recorded, str) else json.dumps(slot.recorded)
            )


def recast(
    interaction: Interaction,
    content: _synth.Content | None = None,
    *,
    text: str | None = None,
    reasoning: str | None = None,
    seed: int = 0,
    split_by: str | int = "tokens",
) -> Interaction:
    """``interaction`` answering with new content. ``content`` gives the text (when not empty),
    reasoning (when not empty) and tool-call arguments; ``text``/``reasoning`` override it."""
    if content is not None:
        text = text if text is not None else (content.text or None)
        reasoning = reasoning if reasoning is not None else (content.reasoning or None)
    calls = content.tool_calls if content is not None else ()
    response = interaction.response
    if response.content_encoding != "identity":
        raise ConfigError(
            f"--like needs a stream that is not content-encoded (this one is {response.content_encoding})"  # noqa: E501
        )
    pieces, _ = decoded_pieces(response)
    timed, tail = arrivals(pieces)
    frames = [f for f, _ in timed]
    times = [t for _, t in timed]
    events = [f for f in frames if isinstance(f, Event)]
    provider = _providers.detect(interaction.request.url, events)
    slots = content_slots(frames, provider)
    if not slots:
        raise ConfigError("the recording streams no text, reasoning or tool arguments to replace")
    parsed = {i: _data(frames[i]) for s in slots for i, _ in s.deltas}
    for slot in slots:
        values = [_value_at(parsed[i], p) for i, p in slot.deltas]
        slot.recorded = values[0] if not isinstance(values[0], str) else "".join(values)
    _assign(slots, text, reasoning, calls)

    rng = random.Random(f"ssevcr-like:{seed}")
    event_times = [t for f, t in timed if isinstance(f, Event)]
    pool = [b - a for a, b in zip(event_times, event_times[1:], strict=False)]
    changed = [s for s in slots if s.new != s.recorded]  # the others keep their recorded frames
    first_delta = {s.deltas[0][0]: s for s in changed}
    deltas = {i for s in changed for i, _ in s.deltas}
    kept = {i for s in slots for i, _ in s.deltas} - deltas
    out: list[tuple[float, bytes]] = []
    shift = 0.0  # how much later than recorded the frames after the new deltas come
    for i, frame in enumerate(frames):
        at = times[i] + shift
        if i in first_delta:
            slot = first_delta[i]
            mould_index, path = slot.deltas[0]
            new = _new_pieces(slot, split_by)
            gaps = _quantile_gaps(pool, max(0, len(new) - 1), rng)
            t = at
            for k, piece in enumerate(new):
                if k:
                    t += gaps[k - 1]
                out.append((t, _replace(frames[mould_index], [(path, piece)])))
            last_recorded = times[slot.deltas[-1][0]] + shift
            shift += (t if new else at) - last_recorded
            continue
        if i in deltas:
            continue
        d = _data(frame) if i not in kept else None
        edits = _summaries(d, changed) if isinstance(d, dict) else []
        out.append((at, _replace(frame, edits) if edits else frame.raw))
    if tail:
        out.append((times[-1] + shift if times else response.headers_at, tail))
    out = [(round(max(t, response.headers_at), 6), b) for t, b in out]
    for k in range(1, len(out)):  # times never go back
        if out[k][0] < out[k - 1][0]:
            out[k] = (out[k - 1][0], out[k][1])
    last_recorded_chunk = response.chunk_at[-1] if response.chunk_sizes else response.headers_at
    after = max(0.0, response.end.at - last_recorded_chunk)
    end_at = (out[-1][0] if out else response.headers_at) + after
    new_response = with_body(
        response, out, end=End(round(end_at, 6), response.end.outcome, response.end.error)
    )
    meta = {**interaction.meta, "synthesized": f"like the recording; seed {seed}; split {split_by}"}
    return replace(interaction, response=new_response, meta=meta)


def event_gaps(response: Response) -> list[float]:
    """Gaps between consecutive events (seconds), as the SSE parser sees their arrival."""
    pieces, _ = decoded_pieces(response)
    timed, _ = arrivals(pieces)
    ts = [t for f, t in timed if isinstance(f, Event)]
    return [b - a for a, b in zip(ts, ts[1:], strict=False)]
