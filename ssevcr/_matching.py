"""Request matching: which recorded interaction answers a request, and why none does. Pure.

Default: method, path, query (order-insensitive) and body (JSON compared canonically, other bytes
exactly). The host is ignored, so a cassette recorded against api.openai.com replays behind any
base URL. A recorded ``REDACTED`` (what redaction left of a credential) stands for any value: in a
query value, a JSON string, a form field, a header and the URL's userinfo. A miss is explained
against the closest recording: which parts differed, and for a JSON body the first differing field.

Explanations are safe to print: credentials in them are masked (``sk-proj…(56 chars)``, see
``ssevcr._secrets``) and control characters escaped, so a live key in the request or a terminal
escape sequence in a cassette never reaches a terminal or a log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ._cassette import Request
from ._errors import ConfigError
from ._secrets import (
    PLACEHOLDER,
    is_secret_header,
    is_secret_json_key,
    mask,
    mask_text,
    mask_url,
    printable,
    safe,
)

__all__ = ["PARTS", "WS_MATCHES", "MatchOptions", "differences", "explain_miss", "json_difference"]

PARTS = ("method", "scheme", "host", "path", "query", "body", "headers")
WS_MATCHES = ("type", "json", "exact")
"""How WebSocket client messages are compared (``ssevcr._conversation``): by their ``type``
field, as canonical JSON, or byte for byte."""
_WEIGHT = {"method": 8, "path": 8, "scheme": 1, "host": 1, "query": 3, "body": 2, "headers": 1}
_MISSING = object()
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class MatchOptions:
    on: tuple[str, ...] = ("method", "path", "query", "body")
    ignore_body_keys: tuple[str, ...] = ()  # dotted JSON paths left out of the comparison
    ignore_query: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()  # header names compared when "headers" is in `on`
    ws_match: str = "type"  # WebSocket client messages: type | json | exact (_conversation)

    def __post_init__(self) -> None:
        if self.ws_match not in WS_MATCHES:
            raise ConfigError(
                f"unknown WebSocket message matching {self.ws_match!r}; "
                f"valid: {', '.join(WS_MATCHES)}"
            )
        unknown = [p for p in self.on if p not in PARTS]
        if unknown:
            raise ConfigError(
                f"unknown match part(s) {', '.join(unknown)}; valid: {', '.join(PARTS)}"
            )


_JSON_CACHE_BYTES = 8 * 1024 * 1024  # bodies kept parsed, at most (emptied when full)
_JSON_CACHED_BODY = 64 * 1024  # larger bodies are parsed each time, never kept
_json_cache: dict[bytes, Any] = {}
_json_cache_bytes = 0


def _json_or_none(body: bytes) -> Any:
    """Parsed JSON (cached: recorded bodies are compared again and again; never mutated). The
    cache is bounded by the bytes of the bodies it keeps: a server seeing a stream of distinct
    requests never keeps them."""
    global _json_cache_bytes
    if not body:
        return _MISSING
    found = _json_cache.get(body, _ABSENT)
    if found is not _ABSENT:
        return found
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        value = _MISSING
    if len(body) <= _JSON_CACHED_BODY:
        if _json_cache_bytes + len(body) > _JSON_CACHE_BYTES:
            _json_cache.clear()
            _json_cache_bytes = 0
        _json_cache[body] = value
        _json_cache_bytes += len(body)
    return value


def _drop_keys(value: Any, paths: Sequence[str]) -> Any:
    if not paths or not isinstance(value, dict):
        return value
    value = json.loads(json.dumps(value))  # deep copy
    for path in paths:
        node: Any = value
        keys = path.removeprefix("$.").split(".")
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(keys[-1], None)
    return value


def _first_json_difference(a: Any, b: Any, path: str = "$") -> str | None:
    """Where the recorded JSON ``a`` and the incoming ``b`` first differ (None: they match, a
    recorded ``REDACTED`` string matching any value)."""
    if a == PLACEHOLDER:
        return None
    if type(a) is not type(b) and not (isinstance(a, int | float) and isinstance(b, int | float)):
        return f"{path}: recorded {_short(a, path)}, got {_short(b, path)}"
    if isinstance(a, dict):
        for key in list(dict.fromkeys([*a, *b])):
            where = f"{path}.{key}"
            if key not in a:
                return f"{where}: not recorded, got {_short(b[key], where)}"
            if key not in b:
                return f"{where}: recorded {_short(a[key], where)}, missing"
            diff = _first_json_difference(a[key], b[key], where)
            if diff:
                return diff
        return None
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            diff = _first_json_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        if len(a) != len(b):
            return f"{path}: recorded {len(a)} items, got {len(b)}"
        return None
    return None if a == b else f"{path}: recorded {_short(a, path)}, got {_short(b, path)}"


def json_difference(recorded: Any, incoming: Any) -> str | None:
    """Where two parsed JSON values first differ, safe to print (``$.session.voice: recorded
    "alloy", got "verse"``); None when they match, a recorded ``REDACTED`` string matching any
    value."""
    return _first_json_difference(recorded, incoming)


def _short(value: Any, path: str = "", limit: int = 60) -> str:
    """A value as a miss shows it: JSON, at most ``limit`` characters, credentials masked (the
    whole value when its key names a secret), control characters escaped."""
    if isinstance(value, bytes):
        text = printable(repr(value))
    else:
        text = json.dumps(value, ensure_ascii=False)
        key = path.rsplit(".", 1)[-1].split("[", 1)[0]
        if isinstance(value, str) and key and is_secret_json_key(key) and value != PLACEHOLDER:
            text = json.dumps(mask(value), ensure_ascii=False)
    text = mask_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _query(url: str, ignore: Sequence[str]) -> list[tuple[str, str]]:
    return sorted(
        (k, v) for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True) if k not in ignore
    )


def _pairs_match(recorded: list[tuple[str, str]], incoming: list[tuple[str, str]]) -> bool:
    """Name/value pairs (query, form), order-insensitive; a recorded ``REDACTED`` value matches
    any value of its name."""
    if recorded == incoming:
        return True
    if len(recorded) != len(incoming) or not any(v == PLACEHOLDER for _, v in recorded):
        return False
    left = list(incoming)
    wild = []
    for pair in recorded:
        if pair[1] == PLACEHOLDER:
            wild.append(pair[0])
        elif pair in left:
            left.remove(pair)
        else:
            return False
    return sorted(wild) == sorted(k for k, _ in left)


def _host(netloc: str) -> str:
    return netloc.rpartition("@")[2].lower()  # userinfo is never compared (it is redacted)


def differences(
    recorded: Request, incoming: Request, options: MatchOptions
) -> list[tuple[str, str]]:
    """The parts (in ``options.on``) where ``incoming`` differs from ``recorded``, each with a
    human description (safe to print); empty when they match."""
    out: list[tuple[str, str]] = []
    r, i = urlsplit(recorded.url), urlsplit(incoming.url)
    for part in options.on:
        if part == "method" and recorded.method.upper() != incoming.method.upper():
            out.append((part, f"method: recorded {recorded.method}, got {incoming.method}"))
        elif part == "scheme" and r.scheme != i.scheme:
            out.append((part, f"scheme: recorded {r.scheme}, got {i.scheme}"))
        elif part == "host" and _host(r.netloc) != _host(i.netloc):
            out.append((part, f"host: recorded {_host(r.netloc)}, got {_host(i.netloc)}"))
        elif part == "path" and (r.path or "/") != (i.path or "/"):
            out.append((part, f"path: recorded {r.path or '/'}, got {i.path or '/'}"))
        elif part == "query":
            rq, iq = (
                _query(recorded.url, options.ignore_query),
                _query(incoming.url, options.ignore_query),
            )
            if not _pairs_match(rq, iq):
                shown = [mask_url("?" + q)[1:] if q else "(none)" for q in (r.query, i.query)]
                out.append((part, f"query: recorded {shown[0]!r}, got {shown[1]!r}"))
        elif part == "body":
            diff = _body_difference(recorded.body, incoming.body, options.ignore_body_keys)
            if diff:
                out.append((part, f"body {diff}"))
        elif part == "headers":
            for name in options.headers:
                a, b = recorded.header(name), incoming.header(name)
                if a != b and a != PLACEHOLDER:
                    if b is not None and is_secret_header(name):
                        b = mask(b)
                    out.append((part, f"header {name}: recorded {a!r}, got {b!r}"))
    return [(part, safe(text)) for part, text in out]


def _body_difference(recorded: bytes, incoming: bytes, ignore: Sequence[str]) -> str | None:
    if recorded == incoming:
        return None
    a, b = _json_or_none(recorded), _json_or_none(incoming)
    if a is not _MISSING and b is not _MISSING:
        a, b = _drop_keys(a, ignore), _drop_keys(b, ignore)
        return None if a == b else _first_json_difference(a, b)
    if PLACEHOLDER.encode() in recorded and _form_match(recorded, incoming):
        return None
    return (
        f"differs: recorded {len(recorded)} bytes {_short(recorded[:40])}, "
        f"got {len(incoming)} bytes {_short(incoming[:40])}"
    )


def _form_match(recorded: bytes, incoming: bytes) -> bool:
    """Form-encoded bodies equal but for redacted values."""
    try:
        a = parse_qsl(recorded.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        b = parse_qsl(incoming.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return False
    return _pairs_match(sorted(a), sorted(b))


def explain_miss(
    cassette: str,
    recorded: Sequence[Request],
    incoming: Request,
    options: MatchOptions,
    *,
    exhausted: Sequence[int] = (),
) -> str:
    """The message of a miss: the request, the cassette, the closest recording and what differed."""
    head = (
        f"ssevcr: no recorded interaction in {cassette} matches "
        f"{safe(incoming.method)} {printable(mask_url(incoming.url))}"
    )
    if exhausted:
        nums = ", ".join(f"#{n + 1}" for n in exhausted)
        return (
            f"{head}: the matching interaction(s) {nums} were already played "
            f"(each plays once in a test; allow repeats to replay them again, or record more)"
        )
    if not recorded:
        return f"{head}: the cassette has no interactions"
    scored = []
    for n, req in enumerate(recorded):
        diffs = differences(req, incoming, options)
        scored.append((sum(_WEIGHT[p] for p, _ in diffs), n, diffs))
    scored.sort(key=lambda s: (s[0], s[1]))
    _, n, diffs = scored[0]
    closest = recorded[n]
    closest_url = printable(mask_url(closest.url))
    lines = [head, f"  closest: #{n + 1} {safe(closest.method)} {closest_url}"]
    lines += [f"    - {text}" for _, text in diffs]
    if len(recorded) > 1:
        lines.append(
            f"  ({len(recorded)} interactions recorded; matching on {', '.join(options.on)})"
        )
    return "\n".join(lines)
