"""Configured responses: rules that answer requests by what they ask, not by a recording.

A configuration (YAML or TOML; see ``examples/mock.yaml``) is a list of responses, each with
matchers and one answer::

    provider: openai-chat            # the template content answers use (else: from the path)
    responses:
      - name: story
        priority: 0                  # higher first; then file order
        match: {contains: story}     # every matcher must hold; none: matches everything
        content: {text: "Once upon a time...", usage: {input: 12, output: 40}}
        timing: ttft:300ms+tps:40    # optional; faults: [...] optional
      - name: rate-limited
        match: {model: "gpt-4*", has_tools: true}
        error: {status: 429, retry_after: 2}
      - name: recorded
        match: {regex: "^weather in \\w+$"}
        cassette: {path: cassettes/examples/openai-chat-text.msgpack, interaction: 1}

Matchers: ``exact`` (the last user message, exactly), ``contains`` (case-insensitive substring
of the last user message, or of any message with ``{text: ..., in: any}``), ``regex`` (searched
in the same texts), ``jsonpath`` (``{path: $.a.b[0], equals | exists | regex}`` on the request
body), ``model`` (a glob), ``has_tools``, ``turn`` (how many user messages the conversation has:
an int, a list, or ``{min, max}``), ``path`` and ``method``.

``Config.answer(request)`` gives an :class:`Answer` (an interaction, synthesized or recorded,
plus the rule's faults and timing) or a :class:`Miss` that names the closest rule and what did
not hold. Pure: the caller reads the file (``parse(text, ...)``) and gives a cassette loader.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import _profiles, _providers, _synth
from ._cassette import Cassette, End, Interaction, Request, Response
from ._errors import ConfigError

__all__ = ["Answer", "Config", "Miss", "RequestView", "parse", "view"]

MAX_TEXT = 1024 * 1024  # characters of a request's messages that matchers look at
MAX_RULES = 100_000
_RULE_KEYS = {
    "name", "priority", "match", "content", "cassette", "error", "provider", "faults",
    "timing", "seed",
}  # fmt: skip
_MATCHERS = (
    "exact",
    "contains",
    "regex",
    "jsonpath",
    "model",
    "has_tools",
    "turn",
    "path",
    "method",
)


# ---------------------------------------------------------------------------------------------
# What a request says


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") if isinstance(p, dict) and isinstance(p.get("text"), str) else ""
            for p in content
        )
    return ""


@dataclass(frozen=True, slots=True)
class RequestView:
    """The parts of a request the matchers look at, computed once per request."""

    method: str
    path: str
    body: Any  # parsed JSON, or None
    last_user: str
    last_user_lower: str
    all_text: str
    all_text_lower: str
    model: str
    has_tools: bool
    turn: int


def view(request: Request) -> RequestView:
    body: Any = None
    if request.body:
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            body = None
    messages: list[tuple[str, str]] = []  # (role, text)
    if isinstance(body, dict):
        for key in ("system", "instructions"):
            if body.get(key):
                messages.append(("system", _text_of(body[key])))
        raw = body.get("messages", body.get("contents", body.get("input")))
        if isinstance(raw, str):
            messages.append(("user", raw))
        elif isinstance(raw, list):
            for m in raw:
                if isinstance(m, dict):
                    role = str(m.get("role") or "user")
                    text = _text_of(m.get("content", m.get("parts")))
                    if m.get("type") in (None, "message"):
                        messages.append((role, text))
    users = [t for r, t in messages if r == "user"]
    last = users[-1][:MAX_TEXT] if users else ""
    every = "\n".join(t for _, t in messages)[:MAX_TEXT]
    model = ""
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        model = body["model"]
    elif "/models/" in request.path:  # Gemini: the model is in the path
        model = request.path.split("/models/", 1)[1].split(":", 1)[0]
    tools = isinstance(body, dict) and bool(body.get("tools"))
    return RequestView(
        request.method.upper(), request.path, body, last, last.lower(), every, every.lower(),
        model, tools, len(users),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# JSONPath (the subset people write: $.a.b, ['a'], [0], [*], ..key)

_JP_TOKEN = re.compile(r"\.\.(\w+)|\.(\w+|\*)|\[(\d+|\*)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def _jsonpath(path: str) -> list[tuple[str, Any]]:
    if not path.startswith("$"):
        raise ConfigError(f"jsonpath {path!r} must start with $")
    steps: list[tuple[str, Any]] = []
    i = 1
    while i < len(path):
        m = _JP_TOKEN.match(path, i)
        if not m:
            raise ConfigError(f"jsonpath {path!r}: cannot read {path[i:]!r}")
        deep, key, index, q1, q2 = m.groups()
        if deep is not None:
            steps.append(("deep", deep))
        elif key == "*" or index == "*":
            steps.append(("all", None))
        elif key is not None:
            steps.append(("key", key))
        elif index is not None:
            steps.append(("index", int(index)))
        else:
            steps.append(("key", q1 if q1 is not None else q2))
        i = m.end()
    return steps


def _walk_deep(node: Any, key: str, out: list[Any], depth: int = 0) -> None:
    if depth > 64:
        return
    if isinstance(node, dict):
        if key in node:
            out.append(node[key])
        for v in node.values():
            _walk_deep(v, key, out, depth + 1)
    elif isinstance(node, list):
        for v in node:
            _walk_deep(v, key, out, depth + 1)


def _select(steps: Sequence[tuple[str, Any]], doc: Any) -> list[Any]:
    nodes = [doc]
    for kind, arg in steps:
        nxt: list[Any] = []
        for n in nodes:
            if (kind == "key" and isinstance(n, dict) and arg in n) or (
                kind == "index" and isinstance(n, list) and -len(n) <= arg < len(n)
            ):
                nxt.append(n[arg])
            elif kind == "all":
                nxt += list(n.values()) if isinstance(n, dict) else n if isinstance(n, list) else []
            elif kind == "deep":
                _walk_deep(n, arg, nxt)
        nodes = nxt
    return nodes


# ---------------------------------------------------------------------------------------------
# Matchers


@dataclass(frozen=True, slots=True)
class _Matcher:
    kind: str
    label: str  # what it asks, for explanations: contains 'story'
    test: Callable[[RequestView], bool]
    why: Callable[[RequestView], str]  # what the request had instead


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[: n - 1] + "…")


def _where(spec: Any, rule: str, kind: str) -> tuple[str, str]:
    """``(value, in)`` of a matcher given as a string or ``{text|pattern: ..., in: ...}``."""
    if isinstance(spec, str):
        return spec, "last_user"
    if isinstance(spec, dict):
        value = spec.get("text", spec.get("pattern", spec.get("value")))
        scope = spec.get("in", "last_user")
        if isinstance(value, str) and scope in ("last_user", "any"):
            return value, scope
    raise ConfigError(
        f"response {rule!r}: {kind} takes a string or {{text: ..., in: last_user|any}}"
    )


def _text_matcher(kind: str, spec: Any, rule: str) -> _Matcher:
    value, scope = _where(spec, rule, kind)
    where = "the last user message" if scope == "last_user" else "any message"

    def has(v: RequestView) -> str:
        return v.last_user if scope == "last_user" else v.all_text

    def why(v: RequestView) -> str:
        return f"{where} is {_short(has(v))}" if has(v) else f"no {where[4:]}"

    if kind == "exact":
        if scope != "last_user":
            raise ConfigError(f"response {rule!r}: exact compares the last user message only")
        return _Matcher(kind, f"exact {_short(value)}", lambda v: v.last_user == value, why)
    if kind == "contains":
        low = value.lower()
        if scope == "last_user":
            return _Matcher(
                kind, f"contains {_short(value)}", lambda v: low in v.last_user_lower, why
            )
        return _Matcher(
            kind, f"contains {_short(value)} in any message", lambda v: low in v.all_text_lower, why
        )
    try:
        pattern = re.compile(value)
    except re.error as e:
        raise ConfigError(f"response {rule!r}: bad regex {value!r}: {e}") from None
    return _Matcher(
        kind, f"regex {_short(value)}", lambda v: pattern.search(has(v)) is not None, why
    )


def _jsonpath_matcher(spec: Any, rule: str) -> _Matcher:
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
        raise ConfigError(f"response {rule!r}: jsonpath takes {{path: $..., equals|exists|regex}}")
    steps = _jsonpath(spec["path"])
    label = f"jsonpath {spec['path']}"
    if "equals" in spec:
        want = spec["equals"]
        test: Callable[[list[Any]], bool] = lambda found: any(x == want for x in found)  # noqa: E731
        label += f" == {json.dumps(want)}"
    elif "regex" in spec:
        try:
            rx = re.compile(str(spec["regex"]))
        except re.error as e:
            raise ConfigError(f"response {rule!r}: bad jsonpath regex: {e}") from None
        test = lambda found: any(isinstance(x, str) and rx.search(x) for x in found)  # noqa: E731
        label += f" ~ {spec['regex']!r}"
    else:
        exists = bool(spec.get("exists", True))
        test = lambda found: bool(found) == exists  # noqa: E731
        label += " exists" if exists else " is absent"

    def why(v: RequestView) -> str:
        found = _select(steps, v.body) if v.body is not None else []
        return f"found {json.dumps(found[:3])[:80]}" if found else "nothing there"

    return _Matcher(
        "jsonpath", label, lambda v: v.body is not None and test(_select(steps, v.body)), why
    )


def _turn_matcher(spec: Any, rule: str) -> _Matcher:
    if isinstance(spec, bool):
        spec = None
    if isinstance(spec, int):
        ok: Callable[[int], bool] = lambda n: n == spec  # noqa: E731
    elif isinstance(spec, list) and all(isinstance(x, int) for x in spec):
        ok = lambda n: n in spec  # noqa: E731
    elif isinstance(spec, dict) and set(spec) <= {"min", "max"}:
        lo, hi = spec.get("min", 0), spec.get("max", 1 << 62)
        ok = lambda n: lo <= n <= hi  # noqa: E731
    else:
        raise ConfigError(f"response {rule!r}: turn takes a number, a list or {{min, max}}")
    return _Matcher(
        "turn", f"turn {spec}", lambda v: ok(v.turn), lambda v: f"the request is turn {v.turn}"
    )


def _matcher(kind: str, spec: Any, rule: str) -> _Matcher:
    if kind in ("exact", "contains", "regex"):
        return _text_matcher(kind, spec, rule)
    if kind == "jsonpath":
        return _jsonpath_matcher(spec, rule)
    if kind == "turn":
        return _turn_matcher(spec, rule)
    if kind == "has_tools":
        if not isinstance(spec, bool):
            raise ConfigError(f"response {rule!r}: has_tools takes true or false")
        return _Matcher(
            kind, f"has_tools {str(spec).lower()}", lambda v: v.has_tools == spec,
            lambda v: "the request has tools" if v.has_tools else "the request has no tools",
        )  # fmt: skip
    globs = [spec] if isinstance(spec, str) else spec
    if not isinstance(globs, list) or not all(isinstance(g, str) for g in globs) or not globs:
        raise ConfigError(f"response {rule!r}: {kind} takes a string or a list of strings")
    if kind == "method":
        methods = {g.upper() for g in globs}
        return _Matcher(
            kind, f"method {'|'.join(sorted(methods))}", lambda v: v.method in methods,
            lambda v: f"the method is {v.method}",
        )  # fmt: skip
    field_of: Callable[[RequestView], str] = (
        (lambda v: v.model) if kind == "model" else (lambda v: v.path)
    )
    return _Matcher(
        kind, f"{kind} {'|'.join(globs)}",
        lambda v: any(fnmatch.fnmatchcase(field_of(v), g) for g in globs),
        lambda v: f"the {kind} is {_short(field_of(v))}" if field_of(v) else f"no {kind}",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Answers


@dataclass(frozen=True, slots=True)
class Answer:
    rule: str
    interaction: Interaction
    faults: tuple[str, ...] = ()
    # a cassette answer's timing profile, each profile:FILE fitted (content is timed already)
    timing: tuple[_profiles.Profile, ...] | None = None


@dataclass(frozen=True, slots=True)
class Miss:
    explanation: str
    closest: str | None  # the rule that came closest
    failed: tuple[str, ...] = ()  # what did not hold for it

    def __str__(self) -> str:
        return self.explanation


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    priority: int
    order: int
    matchers: tuple[_Matcher, ...]
    exact: str | None  # the exact matcher's text (indexed)
    kind: str  # content | cassette | error
    content: _synth.Content | None
    provider: str | None
    split: str | int
    interaction: Interaction | None
    status: int
    retry_after: float | None
    message: str | None
    faults: tuple[str, ...]
    timing: tuple[_profiles.Profile, ...] | None  # profile:FILE fitted when the file was read
    seed: int


_PATH_PROVIDER = (
    ("/chat/completions", "openai-chat"),
    ("/responses", "openai-responses"),
    ("/messages", "anthropic"),
    (":streamgeneratecontent", "gemini"),
    (":generatecontent", "gemini"),
)


def _provider_for(path: str, default: str | None) -> str:
    lower = path.lower()
    for suffix, name in _PATH_PROVIDER:
        if lower.endswith(suffix):
            return name
    return default or "openai-chat"


class Config:
    """Rules in priority order. ``answer`` is what a server or player calls per request."""

    def __init__(self, rules: Sequence[_Rule], *, provider: str | None = None, source: str = ""):
        self.rules = tuple(sorted(rules, key=lambda r: (-r.priority, r.order)))
        self.provider = provider
        self.source = source
        # index: the rules an exact text can reach, and those without an exact matcher
        self._by_exact: dict[str, list[int]] = {}
        self._open: list[int] = []
        for i, r in enumerate(self.rules):
            if r.exact is None:
                self._open.append(i)
            else:
                self._by_exact.setdefault(r.exact, []).append(i)

    def __len__(self) -> int:
        return len(self.rules)

    def match(self, request: Request | RequestView, *, index: bool = True) -> _Rule | None:
        """The first rule, in priority order, whose matchers all hold (``index=False``: a plain
        scan of every rule, the baseline the index is measured against)."""
        v = request if isinstance(request, RequestView) else view(request)
        if index:
            exact = self._by_exact.get(v.last_user, ())
            candidates: Sequence[int] = sorted((*exact, *self._open)) if exact else self._open
        else:
            candidates = range(len(self.rules))
        rules = self.rules
        for i in candidates:
            rule = rules[i]
            for m in rule.matchers:
                if not m.test(v):
                    break
            else:
                return rule
        return None

    def answer(self, request: Request) -> Answer | Miss:
        v = view(request)
        rule = self.match(v)
        if rule is None:
            return self.explain(request, v)
        timing = rule.timing if rule.kind == "cassette" else None  # content is timed already
        return Answer(rule.name, self._interaction(rule, request, v), rule.faults, timing)

    def explain(self, request: Request, v: RequestView | None = None) -> Miss:
        v = v or view(request)
        head = f"no configured response in {self.source or 'the configuration'} matches "
        head += f"{request.method} {request.path}"
        if v.last_user:
            head += f" (last user message {_short(v.last_user)})"
        if not self.rules:
            return Miss(head + "; it has no responses", None)
        best, best_score = self.rules[0], -1.0
        for r in self.rules:
            held = sum(m.test(v) for m in r.matchers)
            score = held / len(r.matchers) if r.matchers else 1.0
            if score > best_score:
                best, best_score = r, score
        failed = tuple(f"{m.label}: {m.why(v)}" for m in best.matchers if not m.test(v))
        return Miss(
            f"{head}; closest: {best.name!r}, where " + "; ".join(failed), best.name, failed
        )

    def _interaction(self, rule: _Rule, request: Request, v: RequestView) -> Interaction:
        if rule.kind == "cassette":
            assert rule.interaction is not None
            return Interaction(request, rule.interaction.response, rule.interaction.meta)
        provider = rule.provider or _provider_for(request.path, self.provider)
        if rule.kind == "error":
            family = _synth.template(provider)["provider"]
            family = "openai" if family == "openai-chat" else family
            reason, headers, body = _providers.error_response(
                family, rule.status, retry_after=rule.retry_after
            )
            if rule.message:
                data = json.loads(body)
                data["error"]["message"] = rule.message
                body = json.dumps(data, separators=(",", ":")).encode()
                headers = tuple(
                    (k, str(len(body)) if k == "content-length" else val) for k, val in headers
                )
            headers = tuple((k, val) for k, val in headers if k != "x-ssevcr-fault")
            response = Response.from_chunks(
                rule.status, [(0.05, body)], reason=reason, headers=headers, headers_at=0.05,
                end=End(0.051),
            )  # fmt: skip
            return Interaction(request, response, {"configured": rule.name})
        assert rule.content is not None
        doc = v.body if isinstance(v.body, dict) else {}
        stream = None
        if _synth.template(provider)["provider"] == "gemini":
            stream = "streamgeneratecontent" in request.path.lower()
        inter = _synth.synthesize(
            provider, rule.content, request=doc, split_by=rule.split, seed=rule.seed,
            profile=rule.timing, url=request.url, streaming=stream,
        )  # fmt: skip
        return Interaction(request, inter.response, {**inter.meta, "configured": rule.name})


# ---------------------------------------------------------------------------------------------
# Reading a configuration


def _content(spec: Any, rule: str) -> tuple[_synth.Content, str | int]:
    if isinstance(spec, str):
        spec = {"text": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"response {rule!r}: content takes a text or a mapping")
    unknown = set(spec) - {
        "text",
        "tool_calls",
        "reasoning",
        "finish_reason",
        "usage",
        "model",
        "split",
    }
    if unknown:
        raise ConfigError(f"response {rule!r}: unknown content key(s) {_keys(unknown)}")
    calls = []
    for c in spec.get("tool_calls") or []:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise ConfigError(f"response {rule!r}: a tool call is {{name: ..., arguments: ...}}")
        args = c.get("arguments", {})
        calls.append(
            _synth.ToolCall(c["name"], args if isinstance(args, str) else json.dumps(args))
        )
    usage = spec.get("usage") or {}
    if not isinstance(usage, dict):
        raise ConfigError(f"response {rule!r}: usage is {{input: N, output: N, reasoning: N}}")
    counts: dict[str, int] = {}
    for k, n in usage.items():
        name = str(k).removesuffix("_tokens")
        if name not in ("input", "output", "reasoning") or not isinstance(n, int) or n < 0:
            raise ConfigError(f"response {rule!r}: bad usage {k}: {n!r}")
        counts[f"{name}_tokens"] = n
    split = spec.get("split", "tokens")
    if not (isinstance(split, int) or split in _synth.SPLITS):
        raise ConfigError(f"response {rule!r}: split is words, tokens, chars or a number")
    content = _synth.Content(
        text=str(spec.get("text", "")), tool_calls=tuple(calls),
        reasoning=str(spec.get("reasoning", "")), finish_reason=spec.get("finish_reason"),
        usage=_synth.Usage(**counts), model=spec.get("model"),
    )  # fmt: skip
    return content, split


def _rule_matchers(match: Any, name: str) -> tuple[tuple[_Matcher, ...], str | None]:
    """A rule's ``match:``: its matchers, and the exact matcher's text (indexed) if it has one."""
    if not isinstance(match, dict):
        raise ConfigError(f"response {name!r}: match must be a mapping of matchers")
    bad = set(match) - set(_MATCHERS)
    if bad:
        raise ConfigError(
            f"response {name!r}: unknown matcher(s) {', '.join(sorted(bad))}; "
            f"valid: {', '.join(_MATCHERS)}"
        )
    matchers = tuple(_matcher(k, v, name) for k, v in match.items())
    exact = match.get("exact") if isinstance(match.get("exact"), str) else None
    return matchers, exact


def _cassette_answer(
    spec: Any, name: str, load_cassette: Callable[[str], Cassette] | None
) -> Interaction:
    """A ``cassette:`` answer (a path, or ``{path, interaction}``): the interaction it names."""
    c = {"path": spec} if isinstance(spec, str) else spec
    if not isinstance(c, dict) or not isinstance(c.get("path"), str):
        raise ConfigError(f"response {name!r}: cassette is a path or {{path, interaction}}")
    if load_cassette is None:
        raise ConfigError(f"response {name!r}: cassettes cannot be read here")
    cassette = load_cassette(c["path"])
    n = c.get("interaction", 1)
    if not isinstance(n, int) or not 1 <= n <= len(cassette.interactions):
        raise ConfigError(
            f"response {name!r}: {c['path']} has {len(cassette.interactions)} interaction(s), "
            f"not {n}"
        )
    return cassette.interactions[n - 1]


def _error_answer(spec: Any, name: str) -> tuple[int, Any, Any]:
    """An ``error:`` answer (a status, or ``{status, message, retry_after}``): status,
    retry_after, message."""
    e = {"status": spec} if isinstance(spec, int) else spec
    if (
        not isinstance(e, dict)
        or not isinstance(e.get("status"), int)
        or not 400 <= e["status"] <= 599
    ):
        raise ConfigError(f"response {name!r}: error is {{status: 400-599, message, retry_after}}")
    return e["status"], e.get("retry_after"), e.get("message")


def _rule_faults(faults: Any, name: str) -> tuple[str, ...]:
    if isinstance(faults, str):
        faults = [faults]
    if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
        raise ConfigError(f"response {name!r}: faults is a list of fault specs")
    return tuple(faults)


TimesOf = Callable[[str], Sequence[float]]


def _rule(
    spec: Any,
    order: int,
    load_cassette: Callable[[str], Cassette] | None,
    profile_times: TimesOf | None = None,
) -> _Rule:
    if not isinstance(spec, dict):
        raise ConfigError(f"responses[{order}] must be a mapping")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"responses[{order}] needs a name")
    unknown = set(spec) - _RULE_KEYS
    if unknown:
        raise ConfigError(f"response {name!r}: unknown key(s) {_keys(unknown)}")
    matchers, exact = _rule_matchers(spec.get("match") or {}, name)
    answers = [k for k in ("content", "cassette", "error") if k in spec]
    if len(answers) != 1:
        raise ConfigError(f"response {name!r} needs exactly one of content, cassette, error")
    kind = answers[0]
    provider = spec.get("provider")
    if provider is not None:
        _synth.template(provider)  # known, or a clean error
    content: _synth.Content | None = None
    split: str | int = "tokens"
    interaction: Interaction | None = None
    status, retry_after, message = 0, None, None
    if kind == "content":
        content, split = _content(spec["content"], name)
    elif kind == "cassette":
        interaction = _cassette_answer(spec["cassette"], name, load_cassette)
    else:
        status, retry_after, message = _error_answer(spec["error"], name)
    faults = _rule_faults(spec.get("faults") or [], name)
    timing = spec.get("timing")
    steps = None if timing is None else _timing_steps(str(timing), name, profile_times)
    seed = spec.get("seed", 0)
    if (
        not isinstance(seed, int)
        or isinstance(priority := spec.get("priority", 0), bool)
        or not isinstance(priority, int)
    ):
        raise ConfigError(f"response {name!r}: seed and priority are whole numbers")
    return _Rule(
        name, priority, order, matchers, exact, kind, content, provider, split, interaction,
        status, retry_after, message, faults, steps, seed,
    )  # fmt: skip


def _timing_steps(
    text: str, rule: str, profile_times: TimesOf | None
) -> tuple[_profiles.Profile, ...]:
    """A rule's timing profile, parsed now (a clean error, not at the first request), each
    ``profile:FILE`` fitted to the event times ``profile_times(FILE)`` reads."""
    steps = _profiles.parse(text)
    if any(isinstance(s, _profiles.Source) for s in steps):
        if profile_times is None:
            raise ConfigError(f"response {rule!r}: timing {text!r} names a file, and none is read")
        steps = _profiles.resolve(steps, profile_times)
    return steps


def _keys(keys: Any) -> str:
    """Keys a file should not hold, quoted (a key may be any YAML value: a number, a newline)."""
    return ", ".join(sorted(repr(k) for k in keys))


def _one_line(e: Exception) -> str:
    """What a YAML or TOML parser said, on one line: PyYAML's problem and its line and column
    (its message spans lines, with a caret under a copy of the line)."""
    mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
    if mark is not None and problem:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(e).split())


def parse(
    text: str,
    fmt: str = "yaml",
    *,
    source: str = "<config>",
    load_cassette: Callable[[str], Cassette] | None = None,
    profile_times: TimesOf | None = None,
) -> Config:
    """A configuration from YAML or TOML text. ``load_cassette(path)`` reads the cassettes that
    ``cassette:`` answers name, ``profile_times(path)`` the event times of the recordings that
    ``profile:FILE`` timings name (paths as written in the file). Errors name ``source`` quoted
    (a newline or control character in a file name stays on the one line)."""
    where = repr(source)
    try:
        if fmt == "toml":
            import tomllib

            data: Any = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml.YAMLError, tomllib.TOMLDecodeError
        raise ConfigError(f"{where}: not valid {fmt.upper()}: {_one_line(e)}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'responses' list")
    unknown = set(data) - {"provider", "responses", "seed", "timing"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {_keys(unknown)}")
    responses = data.get("responses")
    if not isinstance(responses, list):
        raise ConfigError(f"{where}: 'responses' must be a list")
    if len(responses) > MAX_RULES:
        raise ConfigError(f"{where}: more than {MAX_RULES} responses")
    provider = data.get("provider")
    if provider is not None:
        _synth.template(provider)
    defaults = {k: data[k] for k in ("seed", "timing") if k in data}
    rules = []
    names: set[str] = set()
    for i, spec in enumerate(responses):
        if isinstance(spec, dict):
            spec = {**defaults, **spec}
        try:
            rule = _rule(spec, i, load_cassette, profile_times)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        if rule.name in names:
            raise ConfigError(f"{where}: two responses are named {rule.name!r}")
        names.add(rule.name)
        rules.append(rule)
    return Config(rules, provider=provider, source=source)
