"""What a credential looks like, where one sits, and how to show text without leaking one. Pure.

Two kinds of knowledge, both as *spans* (byte ranges to replace) over bytes:

- **places**: where credentials are kept by name. Header names (``authorization``, ``x-api-key``,
  any name ending in ``-api-key``, ``-token`` or ``-secret``...), URL userinfo and query keys
  (``key``, ``token``, ``sig``, ``X-Amz-Signature``...), JSON keys at any depth (``api_key``,
  ``client_secret``, ``access_token``, ``refresh_token``, ``password``... in snake, kebab or camel
  case) and form fields. :mod:`ssevcr._redaction` replaces what is in these places at record time.
- **shapes**: credentials found by their look alone, in any text: provider keys by prefix and
  length whatever their entropy (OpenAI ``sk-``/``sk-proj-``, Anthropic ``sk-ant-``, Google
  ``AIza``, Groq ``gsk_``, xAI ``xai-``, OpenRouter, Perplexity, Replicate, Hugging Face, AWS,
  GitHub, GitLab, Slack, Stripe, JWTs...), AWS SigV4 ``Signature=``, ``Basic`` credentials and
  ``user:password@`` in URLs, bearer tokens, and random-looking values under credential-like names.
  :mod:`ssevcr._audit` reports both; :func:`mask_text` hides both in text meant for a terminal or a
  log (``sk-proj…(56 chars)``).

Text from a cassette meant for a terminal goes through :func:`safe`: credentials masked, control
characters (terminal escape sequences) escaped. ``REDACTED`` is never a credential. No I/O, no
state.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_plus

__all__ = [
    "DEFAULT_HEADERS",
    "DEFAULT_QUERY_KEYS",
    "HEADER_SUFFIXES",
    "PLACEHOLDER",
    "Span",
    "find",
    "form_spans",
    "is_credential_name",
    "is_redacted",
    "is_secret_header",
    "is_secret_json_key",
    "is_secret_query_key",
    "json_spans",
    "looks_random",
    "mask",
    "mask_header",
    "mask_text",
    "mask_url",
    "may_name_a_secret",
    "merge",
    "printable",
    "replace",
    "safe",
    "url_spans",
]

PLACEHOLDER = "REDACTED"
_PLACEHOLDER = PLACEHOLDER.encode()
_QUOTED = b'"' + _PLACEHOLDER + b'"'

DEFAULT_HEADERS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "openai-organization",
        "openai-project",
        "cookie",
        "set-cookie",
        "x-amz-security-token",
        "ocp-apim-subscription-key",
        "anthropic-api-key",
        "x-auth-token",
        "x-portkey-api-key",
    }
)
"""Header names (lower case) redacted by default, besides every name ending in one of
:data:`HEADER_SUFFIXES`."""

HEADER_SUFFIXES = ("-api-key", "-token", "-secret")

DEFAULT_QUERY_KEYS: frozenset[str] = frozenset(
    {
        "key",
        "api_key",
        "api-key",
        "apikey",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "client_secret",
        "password",
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
    }
)
"""URL query keys and form fields (lower case) redacted by default, besides the JSON names of
:func:`is_secret_json_key`."""

# JSON keys: the last words of the name (snake_case, kebab-case or camelCase)
_SECRET_ENDINGS: tuple[tuple[str, ...], ...] = (
    ("api", "key"),
    ("apikey",),
    ("secret",),  # client_secret, api_secret, clientSecret
    ("secret", "key"),
    ("private", "key"),
    ("access", "token"),
    ("refresh", "token"),
    ("id", "token"),
    ("session", "token"),
    ("auth", "token"),
    ("bearer", "token"),
    ("password",),
    ("passwd",),
)
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


@dataclass(frozen=True, slots=True)
class Span:
    """Bytes ``start:end`` hold a credential (``kind`` says which); ``replacement`` goes there."""

    start: int
    end: int
    kind: str
    replacement: bytes = _PLACEHOLDER


# ---------------------------------------------------------------------------------------------
# names


def _words(name: str) -> tuple[str, ...]:
    return tuple(w.lower() for w in _WORD.findall(name))


def is_secret_json_key(name: str) -> bool:
    """``api_key``, ``clientSecret``, ``x-api-key``, ``refresh_token``, ``newPassword``: yes;
    ``token`` (logprobs), ``max_tokens``, ``signature`` (thinking blocks), ``key_id``: no."""
    words = _words(name)
    return any(words[-len(end) :] == end for end in _SECRET_ENDINGS if len(words) >= len(end))


def is_secret_query_key(name: str, extra: Iterable[str] = ()) -> bool:
    """A URL query key or form field that holds a credential (case-insensitive)."""
    lname = name.lower()
    return lname in DEFAULT_QUERY_KEYS or lname in extra or is_secret_json_key(name)


def is_secret_header(name: str, extra: Iterable[str] = ()) -> bool:
    """A header whose whole value is a credential (case-insensitive)."""
    lname = name.lower()
    return lname in DEFAULT_HEADERS or lname.endswith(HEADER_SUFFIXES) or lname in extra


def is_redacted(value: str | bytes) -> bool:
    """Empty, or already holding the placeholder (``REDACTED``, ``Bearer REDACTED``)."""
    if isinstance(value, bytes):
        return not value.strip() or _PLACEHOLDER in value.upper()
    return not value.strip() or PLACEHOLDER in value.upper()


# ---------------------------------------------------------------------------------------------
# places: URLs, forms, JSON


def _pairs_spans(
    data: bytes, start: int, end: int, secret: Callable[[str], bool], kind: str
) -> list[Span]:
    """``name=value&...`` between ``start`` and ``end``: the values of secret names."""
    out = []
    pos = start
    while pos <= end:
        amp = data.find(b"&", pos, end)
        stop = end if amp < 0 else amp
        eq = data.find(b"=", pos, stop)
        name = data[pos : stop if eq < 0 else eq].decode("utf-8", "replace")
        if name and secret(unquote_plus(name)):
            if eq < 0:  # a bare key: the value is added
                out.append(Span(stop, stop, f"{kind} {unquote_plus(name)!r}", b"=" + _PLACEHOLDER))
            elif not is_redacted(data[eq + 1 : stop]):
                out.append(Span(eq + 1, stop, f"{kind} {unquote_plus(name)!r}"))
        if amp < 0:
            break
        pos = amp + 1
    return out


def url_spans(url: bytes, extra_keys: Iterable[str] = ()) -> list[Span]:
    """The userinfo (``user:password@``) and the values of secret query keys of a URL."""
    extra = frozenset(extra_keys)
    out = []
    scheme = url.find(b"://")
    if scheme > 0:
        auth_start = scheme + 3
        auth_end = len(url)
        for sep in (b"/", b"?", b"#"):
            i = url.find(sep, auth_start)
            if 0 <= i < auth_end:
                auth_end = i
        at = url.rfind(b"@", auth_start, auth_end)
        if at > auth_start and not is_redacted(url[auth_start:at]):
            out.append(Span(auth_start, at, "credentials in the URL (userinfo)"))
    q = url.find(b"?")
    if q >= 0:
        end = url.find(b"#", q)
        out += _pairs_spans(
            url,
            q + 1,
            len(url) if end < 0 else end,
            lambda n: is_secret_query_key(n, extra),
            "credential in query",
        )
    return out


def form_spans(body: bytes, extra_keys: Iterable[str] = ()) -> list[Span]:
    """The values of secret fields of an ``application/x-www-form-urlencoded`` body."""
    extra = frozenset(extra_keys)
    return _pairs_spans(
        body, 0, len(body), lambda n: is_secret_query_key(n, extra), "credential in form field"
    )


_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')


def may_name_a_secret(data: bytes) -> bool:
    """Cheap test: could a JSON key in ``data`` name a secret? (False: :func:`json_spans` finds
    nothing there, without parsing.) One fast search per ending, then a look at each key."""
    lowered = data.lower()
    for ending in _KEY_ENDINGS:
        for pos in _occurrences(lowered, ending):
            stop = pos + len(ending) - 1
            start = stop
            while start > 0 and stop - start < 64 and data[start - 1] in _NAME_CHARS:
                start -= 1
            if start and data[start - 1] == 0x22 and _secret_key(data[start:stop]):
                return True
    return False


_KEY_ENDINGS = (b'key"', b'secret"', b'token"', b'password"', b'passwd"')


@functools.lru_cache(maxsize=1024)
def _secret_key(name: bytes) -> bool:
    return is_secret_json_key(name.decode("latin-1"))


def _key_text(token: bytes) -> str:
    if b"\\" not in token:
        return token[1:-1].decode("utf-8", "replace")
    try:
        return str(json.loads(token))
    except ValueError:
        return token[1:-1].decode("utf-8", "replace")


def json_spans(
    doc: bytes,
    *,
    paths: Sequence[tuple[str, ...]] = (),
    secret_key: Callable[[str], bool] = is_secret_json_key,
) -> list[Span]:
    """Credentials in a JSON document: every string under a secret key (at any depth, also
    inside an object or list held by one), and the whole value at each dotted ``path`` (lists on
    the way are looked through). Only the characters between the quotes of a string are
    replaced (a path's other value becomes ``"REDACTED"``), so every other byte stays. A document
    that is not JSON has none."""
    if not paths and not may_name_a_secret(doc):
        return []
    try:
        json.loads(doc)
    except (ValueError, RecursionError):
        return []
    out: list[Span] = []
    stack: list[_Container] = []
    expect_key = False
    skipping = False  # inside a path's container: it is replaced whole
    for m in _JSON_TOKEN.finditer(doc):
        tok = m.group()
        c = tok[:1]
        if c in b"}]":
            done = stack.pop()
            if done.path_start >= 0:
                out.append(Span(done.path_start, m.end(), _path_kind(done.keys), _QUOTED))
                skipping = False
            expect_key = False
            continue
        top = stack[-1] if stack else None
        if c == b",":
            expect_key = top is not None and top.is_object
            continue
        if c == b":":
            continue
        if top is not None and top.is_object and expect_key:
            top.key = _key_text(tok)
            expect_key = False
            continue
        keys, holder = _place(top, secret_key)
        at_path = not skipping and keys in paths
        if c in b"{[":
            stack.append(_Container(c == b"{", keys, holder, m.start() if at_path else -1))
            skipping = skipping or at_path
            expect_key = c == b"{"
        elif not skipping:
            span = _value_span(m, keys, holder, at_path)
            if span is not None:
                out.append(span)
    return out


def _place(
    top: _Container | None, secret_key: Callable[[str], bool]
) -> tuple[tuple[str, ...], str]:
    """Where the next value is (its keys from the root) and the secret key holding it, if any."""
    if top is None:
        return (), ""
    if top.is_object:
        return (*top.keys, top.key), top.holder or (top.key if secret_key(top.key) else "")
    return top.keys, top.holder


def _value_span(
    m: re.Match[bytes], keys: tuple[str, ...], holder: str, at_path: bool
) -> Span | None:
    tok = m.group()
    if tok[:1] == b'"':
        if (at_path or holder) and not is_redacted(tok[1:-1]):
            kind = _path_kind(keys) if at_path else f"credential in {holder!r}"
            return Span(m.start() + 1, m.end() - 1, kind)
        return None
    if at_path and tok != b"null":
        return Span(m.start(), m.end(), _path_kind(keys), _QUOTED)
    return None


class _Container:
    """An open JSON object or array while :func:`json_spans` walks a document."""

    __slots__ = ("holder", "is_object", "key", "keys", "path_start")

    def __init__(self, is_object: bool, keys: tuple[str, ...], holder: str, path_start: int):
        self.is_object = is_object
        self.keys = keys  # object keys from the root to here (lists are looked through)
        self.holder = holder  # the secret key that holds this container, if any
        self.path_start = path_start  # where it starts, when it is a path's value (else -1)
        self.key = ""  # the member being read (objects)


def _path_kind(keys: tuple[str, ...]) -> str:
    return f"credential at {'.'.join(keys)!r}"


# ---------------------------------------------------------------------------------------------
# shapes: credentials by their look


def _entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(value: str) -> bool:
    """Long, no spaces, mixed character classes, high Shannon entropy: a key, not a word."""
    if len(value) < 16 or PLACEHOLDER in value.upper() or any(c.isspace() for c in value):
        return False
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
        )
    )
    return classes >= 2 and _entropy(value) >= 3.2


_CREDENTIAL_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "cookie",
        "bearer",
        "passphrase",
    }
)
_NOT_CREDENTIALS = frozenset(
    {
        "idempotency-key",
        "idempotency_key",
        "prompt_cache_key",
        "cache_key",
        "key_id",
        "keyid",
        "token_type",
        "token_count",
        "auth_type",
    }
)


def is_credential_name(name: str) -> bool:
    """Named like a credential (``x-api-key``, ``access_token``, ``clientSecret``, ``key``;
    not ``max_tokens``): a random-looking value under it is reported."""
    lname = name.lower()
    if lname in _NOT_CREDENTIALS:
        return False
    if is_secret_header(lname) or lname in DEFAULT_QUERY_KEYS:
        return True
    return any(w in _CREDENTIAL_WORDS for w in _words(name))


def _strong_name(name: str) -> bool:
    """Named so plainly that any value under it is a credential, in free text too."""
    return is_secret_json_key(name) or name.lower().startswith(("x-amz-", "x-goog-"))


def _basic(m: re.Match[bytes]) -> bool:
    try:
        raw = base64.b64decode(m.group(1), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in raw and raw.isascii()


_Check = Callable[[re.Match[bytes]], bool]


@dataclass(frozen=True, slots=True)
class _Shape:
    """A credential shape: ``pattern`` is tried where one of its ``prefixes`` occurs (found with
    ``bytes.find``, in the lower-cased text when ``fold``), so a text without the prefixes costs
    one fast search per prefix. The credential is group 1 when the pattern has one."""

    kind: str
    prefixes: tuple[bytes, ...]
    pattern: re.Pattern[bytes]
    fold: bool = False  # the prefixes are lower case, searched case-insensitively
    bounded: bool = True  # must not continue a word on the left
    check: _Check | None = None


def _shape(kind: str, prefixes: str, rx: bytes, **kw: object) -> _Shape:
    pre = tuple(p.encode() for p in prefixes.split())
    return _Shape(kind, pre, re.compile(rx), **kw)  # type: ignore[arg-type]


_R = rb"(?![A-Za-z0-9_\-])"


# lengths as the providers issue them (gitleaks' rules), with room for shorter test keys;
# entropy is never asked: a low-entropy key is still a key
@functools.cache
def _shapes() -> tuple[_Shape, ...]:
    """The credential shapes, compiled on first use (some 30 patterns: start-up time)."""
    return (
        _shape(
            "Anthropic API key", "sk-ant-", rb"sk-ant-(?:[A-Za-z0-9]{1,16}-){0,2}\w{20,}[\w\-]*"
        ),
        _shape("OpenRouter API key", "sk-or-", rb"sk-or-(?:v\d+-)?[A-Za-z0-9]{32,}" + _R),
        _shape("OpenAI API key", "sk-", rb"sk-(?!ant-)(?:[A-Za-z0-9]{1,16}-){0,3}\w{20,}[\w\-]*"),
        _shape("Google API key", "AIza", rb"AIza[0-9A-Za-z_\-]{35}" + _R),
        _shape("Google OAuth token", "ya29.", rb"ya29\.[0-9A-Za-z_\-]{20,}"),
        _shape("Groq API key", "gsk_", rb"gsk_[A-Za-z0-9]{20,}" + _R),
        _shape("xAI API key", "xai-", rb"xai-[A-Za-z0-9]{32,}" + _R),
        _shape("Perplexity API key", "pplx-", rb"pplx-[A-Za-z0-9]{32,}" + _R),
        _shape("Replicate API token", "r8_", rb"r8_[A-Za-z0-9]{30,}" + _R),
        _shape("Fireworks API key", "fw_", rb"fw_[A-Za-z0-9]{20,}" + _R),
        _shape("NVIDIA API key", "nvapi-", rb"nvapi-[A-Za-z0-9_\-]{40,}" + _R),
        _shape("Cerebras API key", "csk-", rb"csk-[A-Za-z0-9]{32,}" + _R),
        _shape("Tavily API key", "tvly-", rb"tvly-(?:dev-|prod-)?[A-Za-z0-9]{24,}" + _R),
        _shape("LangSmith API key", "lsv2_", rb"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}" + _R),
        _shape("Hugging Face token", "hf_ api_org_", rb"(?:hf_|api_org_)[A-Za-z0-9]{30,}" + _R),
        _shape("AWS access key", "AKIA ASIA ABIA ACCA", rb"A[KSBC][IC]A[0-9A-Z]{16}" + _R),
        _shape(
            "GitHub token",
            "ghp_ gho_ ghu_ ghs_ ghr_ github_pat_",
            rb"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{22,})",
        ),
        _shape(
            "GitLab token", "glpat- gldt- glrt- glptt-", rb"gl[a-z]{2,3}-[A-Za-z0-9_\-]{20,}" + _R
        ),
        _shape(
            "Slack token", "xoxa- xoxb- xoxp- xoxr- xoxs- xoxe-", rb"xox[a-z]-[A-Za-z0-9\-]{10,}"
        ),
        _shape(
            "Stripe key",
            "sk_live_ sk_test_ rk_live_ rk_test_",
            rb"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}" + _R,
        ),
        _shape("SendGrid API key", "SG.", rb"SG\.[\w\-]{16,}\.[\w\-]{16,}" + _R),
        _shape("JSON Web Token", "eyJ", rb"eyJ[\w\-]{8,}\.eyJ[\w\-]{8,}\.[\w\-]{8,}"),
        _shape(
            "private key", "-----begin", rb"(?i:-----BEGIN[A-Z ]{0,32} PRIVATE KEY-----)", fold=True
        ),
        _shape(
            "AWS SigV4 signature",
            "signature=",
            rb"(?i:signature)=([0-9a-fA-F]{64})(?![0-9a-fA-F])",
            fold=True,
            bounded=False,
        ),
        _shape(
            "Basic credentials",
            "basic",
            rb"(?i:basic)[ \t]+([A-Za-z0-9+/]{6,}={0,2})(?![\w+/=])",
            fold=True,
            check=_basic,
        ),
        _shape(
            "bearer token", "bearer", rb"(?i:bearer)[ \t]+([A-Za-z0-9\-._~+/]{8,}=*)", fold=True
        ),
    )


_URL_CREDENTIALS = re.compile(
    rb"[A-Za-z][A-Za-z0-9+.\-]{0,15}://([^\s/?#@:\"'<>]{1,256}:[^\s/?#@\"'<>]{1,256})@"
)
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_LEFT_OF_KEY = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/.")
# a value under a name: "name": "value" (JSON), name=value (query, form)
_JSON_VALUE = re.compile(rb'"[ \t]*:[ \t]*"((?:[^"\\\r\n]|\\.){1,4096})"')
_ASSIGNED_VALUE = re.compile(rb"=([^&\s\"'<>;,]{1,4096})")
_NAME_WORDS = (b"key", b"token", b"secret", b"passw", b"pwd", b"auth", b"credential", b"cookie")


def _occurrences(text: bytes, needle: bytes) -> Iterable[int]:
    pos = text.find(needle)
    while pos >= 0:
        yield pos
        pos = text.find(needle, pos + 1)


def _shape_spans(data: bytes, lowered: bytes) -> list[Span]:
    hits = []
    for shape in _shapes():
        where = lowered if shape.fold else data
        for prefix in shape.prefixes:
            for pos in _occurrences(where, prefix):
                if shape.bounded and pos and data[pos - 1] in _LEFT_OF_KEY:
                    continue
                m = shape.pattern.match(data, pos)
                if m is None or (shape.check is not None and not shape.check(m)):
                    continue
                g = 1 if shape.pattern.groups else 0
                if not is_redacted(m.group(g)):
                    hits.append(Span(m.start(g), m.end(g), shape.kind))
    for pos in _occurrences(data, b"://"):
        start = pos
        while (
            start > max(0, pos - 16) and data[start - 1] in _NAME_CHARS and data[start - 1] != 0x2E
        ):
            start -= 1
        m = _URL_CREDENTIALS.match(data, start)
        if m is not None and not is_redacted(m.group(1)):
            hits.append(Span(m.start(1), m.end(1), "credentials in a URL"))
    return hits


def _named_spans(data: bytes, lowered: bytes) -> list[Span]:
    """Values under credential-like names: ``"client_secret": "..."``, ``password=...``."""
    hits = []
    seen: set[int] = set()
    for word in _NAME_WORDS:
        for pos in _occurrences(lowered, word):
            start = pos
            while start > 0 and pos - start < 64 and data[start - 1] in _NAME_CHARS:
                start -= 1
            end = pos + len(word)
            while end < len(data) and end - start < 64 and data[end] in _NAME_CHARS:
                end += 1
            if start in seen or not (65 <= data[start] <= 90 or 97 <= data[start] <= 122):
                continue
            seen.add(start)
            if start and data[start - 1] == 0x22:  # "name": "value"
                m = _JSON_VALUE.match(data, end)
            elif start and data[start - 1] in _NAME_CHARS:
                continue
            else:
                m = _ASSIGNED_VALUE.match(data, end)
            if m is None:
                continue
            name = data[start:end].decode("latin-1")
            value = m.group(1).decode("latin-1")
            if is_redacted(value):
                continue
            if _strong_name(name) or (
                is_credential_name(name) and looks_random(unquote_plus(value))
            ):
                hits.append(Span(m.start(1), m.end(1), f"credential in {name!r}"))
    return hits


def find(data: bytes) -> list[Span]:
    """Credentials in free text (a body, a URL, a header value, a message), in order, without
    overlaps (of two at one place, the more specific kind wins)."""
    lowered = data.lower()
    return merge([*_shape_spans(data, lowered), *_named_spans(data, lowered)])


def merge(spans: Iterable[Span]) -> list[Span]:
    """Spans in order, each overlap resolved for the first listed (stable: list the preferred
    kind first)."""
    ordered = sorted(spans, key=lambda s: (s.start, -s.end))
    kept: list[Span] = []
    for s in ordered:
        if not kept or s.start >= kept[-1].end:
            kept.append(s)
    return kept


def replace(data: bytes, spans: Sequence[Span]) -> bytes:
    """``data`` with each span's bytes replaced by its replacement (spans in order)."""
    if not spans:
        return data
    out, pos = [], 0
    for s in spans:
        out += [data[pos : s.start], s.replacement]
        pos = s.end
    out.append(data[pos:])
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# showing text safely


def mask(secret: str) -> str:
    """A credential as it may be shown: its first few characters and its length."""
    keep = min(7, len(secret) // 5)
    return f"{secret[:keep]}…({len(secret)} chars)"


def mask_text(text: str) -> str:
    """``text`` with every credential masked (``sk-proj…(56 chars)``): what :func:`find` sees,
    the secret places of URLs in it (userinfo, ``?key=``...) and, in a JSON document, the
    strings under secret keys."""
    raw = text.encode("utf-8", "surrogateescape")
    spans = find(raw)
    for m in _URL_IN_TEXT.finditer(raw):
        spans += [
            Span(s.start + m.start(), s.end + m.start(), s.kind)
            for s in url_spans(m.group())
            if s.end > s.start
        ]
    if raw.lstrip()[:1] in (b"{", b"["):
        spans += json_spans(raw)
    spans = merge(spans)
    return _masked(raw, spans) if spans else text


_URL_IN_TEXT = re.compile(rb"\b[A-Za-z][A-Za-z0-9+.\-]{0,15}://[^\s\"'<>]+")


def printable(text: str) -> str:
    """Control characters (ESC, CSI, CR, LF, NUL, bidi overrides...) escaped (``\\x1b``), so
    text from a cassette stays one inert line on a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def safe(text: str) -> str:
    """Cassette text as it may reach a terminal or a log: credentials masked, controls escaped."""
    return printable(mask_text(text))


def mask_url(url: str) -> str:
    """A URL (or a bare ``?query``) with its userinfo and secret query values masked, and
    whatever else :func:`mask_text` sees."""
    raw = url.encode("utf-8", "surrogateescape")
    spans = merge([*find(raw), *(s for s in url_spans(raw) if s.end > s.start)])
    return _masked(raw, spans)


def _masked(raw: bytes, spans: Sequence[Span]) -> str:
    if not spans:
        return raw.decode("utf-8", "surrogateescape")
    out, pos = [], 0
    for s in spans:
        out += [raw[pos : s.start], mask(raw[s.start : s.end].decode("utf-8", "replace")).encode()]
        pos = s.end
    out.append(raw[pos:])
    return b"".join(out).decode("utf-8", "surrogateescape")


def mask_header(name: str, value: str, extra: Iterable[str] = ()) -> str:
    """A header value as it may be shown: masked whole when the header holds a credential (the
    auth scheme stays readable: ``Bearer sk-proj…(164 chars)``), else :func:`mask_text`."""
    if is_secret_header(name, extra) and not is_redacted(value):
        scheme, space, rest = value.strip().partition(" ")
        if space and scheme.isalpha() and rest.strip():
            return f"{scheme} {mask(rest.strip())}"
        return mask(value)
    return mask_text(value)
