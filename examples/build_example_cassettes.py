"""Build the bundled example cassettes in ``cassettes/examples/`` from real provider streams.

Usage::

    python examples/build_example_cassettes.py [OUTPUT_DIR]     # default: cassettes/examples

The response *bytes* of every cassette are a real provider stream, copied byte-exact from
``tests/fixtures/providers/`` (see PROVENANCE.md there). The sources kept only the de-chunked
body, so the chunk boundaries and every time in these cassettes are SYNTHESIZED here, from a
fixed seed, and each cassette says so in its meta (``"timing": "synthesized"``):

* response headers arrive 0.15-0.45 s after the request (where the source recorded
  ``openai-processing-ms``, a little after that);
* the first event arrives 0.05-0.30 s after the headers, then 10-60 ms between events;
* chunking follows the parser's frames: mostly one event per chunk, sometimes two events in
  one chunk, sometimes one event split inside its JSON over two chunks ~1 ms apart; comments
  (keep-alives) stay whole;
* the response ends ~1 ms after the last chunk.

The requests are what the official SDKs send for these streams (body as compact JSON, model
taken from the stream, credentials ``REDACTED``). Running the script twice gives byte-identical
files.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ssevcr import _store
from ssevcr._cassette import Cassette, End, Headers, Interaction, Outcome, Request, Response
from ssevcr._sse import Event, Frame, parse

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = ROOT / "tests" / "fixtures" / "providers"
PROVENANCE = PROVIDERS / "PROVENANCE.md"
DEFAULT_OUT = ROOT / "cassettes" / "examples"
SCRIPT = "examples/build_example_cassettes.py"

SEED = 20240926

# Synthesized timing (seconds). tests/test_examples.py checks the cassettes against these.
HEADERS_AT = (0.15, 0.45)
FIRST_EVENT_AFTER_HEADERS = (0.05, 0.30)
EVENT_GAP = (0.010, 0.060)
SPLIT_GAP = (0.0007, 0.0013)
END_AFTER_LAST_CHUNK = (0.0008, 0.0012)
P_COALESCE = 0.10  # two events in one chunk
P_SPLIT = 0.10  # one event over two chunks

# Request headers as the official SDKs send them (openai 3.54.0 / anthropic 2.12.0 observed
# through an httpx2 MockTransport; google-genai as in pydantic-ai's recordings). Credentials are
# REDACTED, as ssevcr does at record time, in the header each provider documents.
_STAINLESS = [
    ("x-stainless-lang", "python"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "CPython"),
    ("x-stainless-runtime-version", "3.11.7"),
    ("x-stainless-async", "false"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-read-timeout", "600"),
]
OPENAI_REQUEST_HEADERS: Headers = (
    ("accept-encoding", "gzip, deflate"),
    ("authorization", "REDACTED"),
    ("accept", "application/json"),
    ("content-type", "application/json"),
    ("user-agent", "OpenAI/Python 3.54.0"),
    ("x-stainless-package-version", "3.54.0"),
    *_STAINLESS,
)
ANTHROPIC_REQUEST_HEADERS: Headers = (
    ("accept-encoding", "gzip, deflate"),
    ("accept", "application/json"),
    ("content-type", "application/json"),
    ("user-agent", "Anthropic/Python 2.12.0"),
    ("x-stainless-package-version", "2.12.0"),
    *_STAINLESS,
    ("x-api-key", "REDACTED"),  # anthropic 2.12.0 sends an API key as "authorization: Bearer"
    ("anthropic-version", "2026-10-21"),
)
GEMINI_REQUEST_HEADERS: Headers = (
    ("accept", "*/*"),
    ("accept-encoding", "gzip, deflate"),
    ("content-type", "application/json"),
    ("user-agent", "google-genai-sdk/1.21.1 gl-python/3.11.7"),
    ("x-goog-api-client", "google-genai-sdk/1.21.1 gl-python/3.11.7"),
    ("x-goog-api-key", "REDACTED"),
)

REQUEST_HEADERS_NOTE = {
    "openai": "headers as openai-python 3.54.0 sends them, authorization REDACTED",
    "groq": "headers as openai-python 3.54.0 sends them, authorization REDACTED",
    "anthropic": "headers as anthropic-python 2.12.0 sends them, except that the key is in "
    "x-api-key (REDACTED), the header the API documents; 2.12.0 itself sends authorization: Bearer",
    "gemini": "headers in the shape google-genai sends (SDK version illustrative), "
    "x-goog-api-key REDACTED",
}

# ---------------------------------------------------------------------------------------------
# PROVENANCE.md


def provenance(fixture: str, text: str | None = None) -> dict[str, str]:
    """The ``- key: value`` lines of the fixture's section in PROVENANCE.md (first of each key)."""
    if text is None:
        text = PROVENANCE.read_text(encoding="utf-8")
    m = re.search(rf"^### `{re.escape(fixture)}`\n(.*?)(?=^### |\Z)", text, re.M | re.S)
    if m is None:
        raise KeyError(f"{fixture} has no section in {PROVENANCE}")
    out: dict[str, str] = {}
    for line in m.group(1).splitlines():
        kv = re.match(r"- ([^:]+): (.*)", line)
        if kv:
            out.setdefault(kv.group(1), kv.group(2))
    return out


def stated_event_count(fixture: str, text: str | None = None) -> int:
    """The event count PROVENANCE.md states (``WHATWG reference parser -> N events``)."""
    m = re.search(r"-> (\d+) events", provenance(fixture, text)["checked"])
    assert m, fixture
    return int(m.group(1))


def _sha256(fixture: str, text: str) -> str:
    m = re.search(r"sha256 `([0-9a-f]{64})`", provenance(fixture, text)["size"])
    assert m, fixture
    return m.group(1)


def _recorded_headers(fixture: str, text: str) -> dict[str, str]:
    raw = provenance(fixture, text).get("recorded response headers (subset)")
    if raw is None:
        return {}
    return {k: v[0] for k, v in json.loads(raw.strip("`")).items()}


def _provenance_line(fixture: str, text: str) -> str:
    p = provenance(fixture, text)
    repo, path = (s.strip() for s in p["source"].replace("`", "").split(" : ", 1))
    licence = p["snapshot HEAD"].rsplit("license: ", 1)[1]
    return f"{p['kind']}; from {repo} {path}; licence {licence}"


def _last_commit_time(fixture: str, text: str) -> float:
    m = re.search(
        r"file last commit: `[0-9a-f]+ ([^`]+)`", provenance(fixture, text)["snapshot HEAD"]
    )
    assert m, fixture
    return datetime.fromisoformat(m.group(1)).timestamp()


# ---------------------------------------------------------------------------------------------
# Timing and chunking (synthesized)


def _splittable(frame: Frame) -> bool:
    return isinstance(frame, Event) and frame.data.startswith("{") and len(frame.data) >= 16


def _cut(frame: Event, rng: random.Random) -> int:
    """A byte offset inside the JSON of the event's data line, never inside a UTF-8 character."""
    raw = frame.raw
    start = raw.index(b"data:") + len(b"data:")
    if raw[start : start + 1] == b" ":
        start += 1
    end = min(i for i in (raw.find(b"\r", start), raw.find(b"\n", start)) if i >= 0)
    while True:
        cut = rng.randrange(start + 4, end - 4)
        if raw[cut] & 0xC0 != 0x80:
            return cut


def plan_chunks(frames: Sequence[Frame], rng: random.Random) -> list[str]:
    """Per frame: ``one`` (a chunk of its own), ``pair`` (shares a chunk with the next frame),
    ``joined`` (the second of a pair) or ``split`` (over two chunks)."""
    n = len(frames)
    plan = ["one"] * n
    i = 0
    while i < n:
        r = rng.random()
        if (
            r < P_COALESCE
            and i + 1 < n
            and isinstance(frames[i], Event)
            and isinstance(frames[i + 1], Event)
        ):
            plan[i], plan[i + 1] = "pair", "joined"
            i += 2
            continue
        if r < P_COALESCE + P_SPLIT and _splittable(frames[i]):
            plan[i] = "split"
        i += 1
    # Every example shows each kind of chunking at least once where the stream allows it.
    if "split" not in plan:
        candidates = [i for i in range(n) if plan[i] == "one" and _splittable(frames[i])]
        if candidates:
            plan[rng.choice(candidates)] = "split"
    if "pair" not in plan:
        candidates = [
            i
            for i in range(n - 1)
            if plan[i] == plan[i + 1] == "one"
            and isinstance(frames[i], Event)
            and isinstance(frames[i + 1], Event)
        ]
        if n >= 4 and candidates:
            i = rng.choice(candidates)
            plan[i], plan[i + 1] = "pair", "joined"
    return plan


def synthesize_chunks(
    body: bytes, headers_at: float, rng: random.Random
) -> tuple[list[tuple[float, bytes]], float]:
    """Chunks ``(at, bytes)`` for the body and the time the response ends."""
    parsed = parse(body)
    frames = parsed.frames
    plan = plan_chunks(frames, rng)
    chunks: list[tuple[float, bytes]] = []
    t = headers_at + rng.uniform(*FIRST_EVENT_AFTER_HEADERS)
    for i, frame in enumerate(frames):
        if plan[i] == "joined":
            continue
        if chunks:
            t += rng.uniform(*EVENT_GAP)
        if plan[i] == "pair":
            chunks.append((round(t, 6), frame.raw + frames[i + 1].raw))
        elif plan[i] == "split":
            assert isinstance(frame, Event)
            cut = _cut(frame, rng)
            chunks.append((round(t, 6), frame.raw[:cut]))
            t += rng.uniform(*SPLIT_GAP)
            chunks.append((round(t, 6), frame.raw[cut:]))
        else:  # an event or a comment (keep-alive) as is
            chunks.append((round(t, 6), frame.raw))
    if parsed.tail:  # an unterminated last block still went over the wire
        t += rng.uniform(*EVENT_GAP)
        chunks.append((round(t, 6), parsed.tail))
    assert b"".join(d for _, d in chunks) == body, "chunks must join to the fixture bytes"
    end = round(t + rng.uniform(*END_AFTER_LAST_CHUNK), 6)
    return chunks, end


# ---------------------------------------------------------------------------------------------
# The examples


def _first_json(body: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(parse(body).events[0].data)
    return data


def _chat_model(body: bytes) -> str:
    return str(_first_json(body)["model"])


def _responses_model(body: bytes) -> str:
    return str(_first_json(body)["response"]["model"])


def _anthropic_model(body: bytes) -> str:
    return str(_first_json(body)["message"]["model"])


def _gemini_model(body: bytes) -> str:
    return str(_first_json(body)["modelVersion"])


def _rand_id(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


_HEX = "0123456789abcdef"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _cf_ray(rng: random.Random) -> str:
    return f"{_rand_id(rng, _HEX, 16)}-{rng.choice(['SJC', 'SEA', 'IAD', 'AMS', 'FRA', 'LHR'])}"


def _date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


@dataclass(frozen=True)
class Example:
    name: str
    fixture: str
    provider: str  # openai | anthropic | gemini | groq
    url: str  # "{model}" is replaced by the model name
    model: Callable[[bytes], str]  # the model name, read from the stream
    body: Callable[[str, random.Random], dict[str, Any]]  # model, rng -> request JSON
    request_origin: str
    created: Callable[[bytes], float | None] = lambda body: None


def _openai_chat_text(model: str, rng: random.Random) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": "What's the weather like in SF?"}],
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def _openai_chat_tools(model: str, rng: random.Random) -> dict[str, Any]:
    # openai.pydantic_function_tool(GetWeatherArgs) and (GetStockPrice, name=..., description=...)
    weather = {
        "type": "function",
        "function": {
            "name": "GetWeatherArgs",
            "strict": True,
            "parameters": {
                "description": "Get the temperature for the given country/city combo",
                "properties": {
                    "city": {"title": "City", "type": "string"},
                    "country": {"title": "Country", "type": "string"},
                    "units": {
                        "default": "c",
                        "enum": ["c", "f"],
                        "title": "Units",
                        "type": "string",
                    },
                },
                "required": ["city", "country", "units"],
                "title": "GetWeatherArgs",
                "type": "object",
                "additionalProperties": False,
            },
            "description": "Get the temperature for the given country/city combo",
        },
    }
    stock = {
        "type": "function",
        "function": {
            "name": "get_stock_price",
            "strict": True,
            "parameters": {
                "properties": {
                    "ticker": {"title": "Ticker", "type": "string"},
                    "exchange": {"title": "Exchange", "type": "string"},
                },
                "required": ["ticker", "exchange"],
                "title": "GetStockPrice",
                "type": "object",
                "additionalProperties": False,
            },
            "description": "Fetch the latest price for a given ticker",
        },
    }
    return {
        "messages": [
            {"role": "user", "content": "What's the weather like in Edinburgh?"},
            {"role": "user", "content": "What's the price of AAPL?"},
        ],
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [weather, stock],
    }


def _openai_responses_text(model: str, rng: random.Random) -> dict[str, Any]:
    call_id = "call_" + _rand_id(rng, _B62, 24)
    return {
        "input": [
            {"role": "user", "content": "What is the capital of France?"},
            {
                "type": "function_call",
                "call_id": call_id,
                "name": "get_capital",
                "arguments": '{"country":"France"}',
            },
            {"type": "function_call_output", "call_id": call_id, "output": "Paris"},
        ],
        "model": model,
        "stream": True,
        "tool_choice": "auto",
        "tools": [
            {
                "type": "function",
                "name": "get_capital",
                "description": None,
                "parameters": {
                    "additionalProperties": False,
                    "properties": {"country": {"type": "string"}},
                    "required": ["country"],
                    "type": "object",
                },
                "strict": True,
            }
        ],
    }


def _openai_responses_function_call(model: str, rng: random.Random) -> dict[str, Any]:
    return {
        "include": ["reasoning.encrypted_content"],
        "input": [{"role": "user", "content": "Calculate 100 * 200 / 3"}],
        "model": model,
        "reasoning": {"effort": "low", "summary": None},
        "service_tier": "flex",
        "stream": True,
        "tool_choice": "required",
        "tools": [
            {
                "type": "function",
                "name": "final_result",
                "description": "The final response which ends this conversation",
                "parameters": {
                    "additionalProperties": False,
                    "properties": {"result": {"type": "integer"}},
                    "required": ["result"],
                    "type": "object",
                },
                "strict": True,
            }
        ],
    }


def _anthropic_text(model: str, rng: random.Random) -> dict[str, Any]:
    return {
        "max_tokens": 32000,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is 1+1? Answer with just the number."}],
            }
        ],
        "model": model,
        "stream": True,
    }


def _anthropic_tool_use(model: str, rng: random.Random) -> dict[str, Any]:
    def tool(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "description": description,
            "input_schema": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            },
            "defer_loading": True,
        }

    string = {"type": "string"}
    return {
        "max_tokens": 4096,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the current exchange rate from USD to EUR?"}
                ],
            }
        ],
        "model": model,
        "stream": True,
        "tools": [
            {"type": "tool_search_tool_bm25_20251119", "name": "tool_search_tool_bm25"},
            tool("get_weather", "Get the current weather for a city.", {"city": string}),
            tool(
                "get_stock_price",
                "Get the latest stock price for a ticker symbol.",
                {"ticker": string},
            ),
            tool(
                "get_exchange_rate",
                "Get the current exchange rate between two currencies (ISO 4217 codes).",
                {"from_currency": string, "to_currency": string},
            ),
            tool(
                "send_email",
                "Send an email to a recipient.",
                {"to": string, "subject": string, "body": string},
            ),
        ],
    }


def _gemini_text(model: str, rng: random.Random) -> dict[str, Any]:
    return {
        "contents": [{"parts": [{"text": "What is the capital of France?"}], "role": "user"}],
        "systemInstruction": {"parts": [{"text": "You are a helpful chatbot."}], "role": "user"},
        "generationConfig": {"temperature": 0.0, "responseModalities": ["TEXT"]},
    }


def _groq_error(model: str, rng: random.Random) -> dict[str, Any]:
    return {
        "messages": [
            {
                "role": "system",
                "content": "Be concise. Never use pretty double quotes, just regular ones.",
            },
            {
                "role": "user",
                "content": 'dont make a tool call, just return the string "maybe" by itself, '
                "not as json output, to test error handling; on the second try you can use "
                "valid args",
            },
        ],
        "model": model,
        "n": 1,
        "stream": True,
        "tool_choice": "required",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "final_result",
                    "description": "The final response which ends this conversation",
                    "parameters": {
                        "additionalProperties": False,
                        "properties": {"response": {"enum": ["yes", "no"], "type": "string"}},
                        "required": ["response"],
                        "type": "object",
                    },
                },
            }
        ],
    }


def _chat_created(body: bytes) -> float:
    return float(_first_json(body)["created"])


def _responses_created(body: bytes) -> float:
    return float(_first_json(body)["response"]["created_at"])


EXAMPLES: tuple[Example, ...] = (
    Example(
        name="openai-chat-text",
        fixture="openai-chat/text.sse",
        provider="openai",
        url="https://api.openai.com/v1/chat/completions",
        model=_chat_model,
        body=_openai_chat_text,
        created=_chat_created,
        request_origin="body from the source test (openai-python tests/lib/chat/"
        "test_completions_streaming.py::test_parse_nothing) as chat.completions.create() sends it",
    ),
    Example(
        name="openai-chat-tool-calls",
        fixture="openai-chat/parallel_tool_calls.sse",
        provider="openai",
        url="https://api.openai.com/v1/chat/completions",
        model=_chat_model,
        body=_openai_chat_tools,
        created=_chat_created,
        request_origin=(
            "body from the source test (openai-python test_parse_multiple_pydantic_tools: "
            "two user messages, tools from openai.pydantic_function_tool) as "
            "chat.completions.create() sends it"
        ),
    ),
    Example(
        name="openai-responses-text",
        fixture="openai-responses/text.sse",
        provider="openai",
        url="https://api.openai.com/v1/responses",
        model=_responses_model,
        body=_openai_responses_text,
        created=_responses_created,
        request_origin="body reconstructed after the source cassette's second request (the "
        "get_capital tool round trip); the call_id is invented",
    ),
    Example(
        name="openai-responses-function-call",
        fixture="openai-responses/function_call.sse",
        provider="openai",
        url="https://api.openai.com/v1/responses",
        model=_responses_model,
        body=_openai_responses_function_call,
        created=_responses_created,
        request_origin="body as recorded in the source cassette, with the model name taken from "
        "the stream",
    ),
    Example(
        name="anthropic-text",
        fixture="anthropic/text.sse",
        provider="anthropic",
        url="https://api.anthropic.com/v1/messages",
        model=_anthropic_model,
        body=_anthropic_text,
        request_origin="body as recorded in the source cassette, with the model name taken from "
        "the stream; sent to /v1/messages (the source used the beta client, ?beta=true)",
    ),
    Example(
        name="anthropic-tool-use",
        fixture="anthropic/tool_use_padded.sse",
        provider="anthropic",
        url="https://api.anthropic.com/v1/messages",
        model=_anthropic_model,
        body=_anthropic_tool_use,
        request_origin=(
            "body reconstructed (the source cassette's request was not available to us): "
            "a tool-search tool and deferred client tools consistent with the stream; sent to "
            "/v1/messages"
        ),
    ),
    Example(
        name="gemini-text",
        fixture="gemini/text.sse",
        provider="gemini",
        url="https://generativelanguage.googleapis.com/v1beta/models/{model}:streamGenerateContent?alt=sse",
        model=_gemini_model,
        body=_gemini_text,
        request_origin="body in the shape the source test sends (google-genai "
        "generate_content_stream), model in the URL",
    ),
    Example(
        name="groq-error-midstream",
        fixture="groq/error_midstream.sse",
        provider="groq",
        url="https://api.groq.com/openai/v1/chat/completions",
        model=_chat_model,
        body=_groq_error,
        created=_chat_created,
        request_origin="body as recorded in the source cassette (sent with the openai SDK "
        "against Groq)",
    ),
)


def _request_headers(ex: Example, url: str, body: bytes) -> Headers:
    host = url.split("/")[2]
    base = {"anthropic": ANTHROPIC_REQUEST_HEADERS, "gemini": GEMINI_REQUEST_HEADERS}.get(
        ex.provider, OPENAI_REQUEST_HEADERS
    )
    return (("host", host), *base, ("content-length", str(len(body))))


def _response_headers(
    ex: Example, stream: bytes, recorded: dict[str, str], date: str, rng: random.Random
) -> Headers:
    ctype = recorded.get("content-type", "text/event-stream; charset=utf-8")
    h: list[tuple[str, str]] = [("date", date), ("content-type", ctype)]
    if ex.provider == "openai":
        h.append(("openai-version", "2020-10-01"))
        if "openai-processing-ms" in recorded:
            h.append(("openai-processing-ms", recorded["openai-processing-ms"]))
        h += [
            ("x-request-id", "req_" + _rand_id(rng, _HEX, 32)),
            ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
            ("server", "cloudflare"),
            ("cf-ray", _cf_ray(rng)),
        ]
    elif ex.provider == "anthropic":
        h += [
            ("cache-control", "no-cache"),
            ("request-id", "req_011C" + _rand_id(rng, _B58, 20)),
            ("server", "cloudflare"),
            ("cf-ray", _cf_ray(rng)),
        ]
    elif ex.provider == "groq":
        h += [
            ("cache-control", "no-cache"),
            ("vary", "Origin"),
            ("x-request-id", str(_first_json(stream)["x_groq"]["id"])),  # the id the stream reports
            ("server", "cloudflare"),
            ("cf-ray", _cf_ray(rng)),
        ]
    elif ex.provider == "gemini":
        h = [
            ("content-type", ctype),
            ("content-disposition", "attachment"),
            ("vary", "Origin"),
            ("vary", "X-Origin"),
            ("vary", "Referer"),
            ("date", date),
            ("server", "scaffolding on HTTPServer2"),
        ]
        if "server-timing" in recorded:
            h.append(("server-timing", recorded["server-timing"]))
        h.append(("alt-svc", 'h3=":443"; ma=2592000,h3-29=":443"; ma=2592000'))
    return tuple(h)


def build(ex: Example, provenance_text: str) -> Cassette:
    fixture_path = PROVIDERS / ex.fixture
    stream = fixture_path.read_bytes()
    digest = hashlib.sha256(stream).hexdigest()
    assert digest == _sha256(ex.fixture, provenance_text), (
        f"{ex.fixture} differs from PROVENANCE.md"
    )
    assert parse(stream).tail == b"", f"{ex.fixture} ends inside a block"

    rng = random.Random(f"{SEED}:{ex.name}")
    model = ex.model(stream)
    url = ex.url.format(model=model)
    body = json.dumps(ex.body(model, rng), separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )
    request = Request("POST", url, _request_headers(ex, url, body), body)

    recorded = _recorded_headers(ex.fixture, provenance_text)
    if "openai-processing-ms" in recorded:  # headers follow the server's processing time
        headers_at = int(recorded["openai-processing-ms"]) / 1000 + rng.uniform(0.03, 0.08)
        headers_at = min(max(headers_at, HEADERS_AT[0]), HEADERS_AT[1])
    else:
        headers_at = rng.uniform(*HEADERS_AT)
    headers_at = round(headers_at, 6)
    created = ex.created(stream)
    if created is None:  # no time in the stream: shortly before the source file was committed
        created = _last_commit_time(ex.fixture, provenance_text) - rng.randrange(600, 7200)
    date = _date(created)

    chunks, end_at = synthesize_chunks(stream, headers_at, rng)
    response = Response.from_chunks(
        200,
        chunks,
        reason="OK",
        http_version="HTTP/1.1",
        headers=_response_headers(ex, stream, recorded, date, rng),
        headers_at=headers_at,
        end=End(end_at, Outcome.COMPLETE),
    )
    meta = {
        "timing": "synthesized",
        "source": f"tests/fixtures/providers/{ex.fixture}",
        "provenance": _provenance_line(ex.fixture, provenance_text),
        "note": (
            "Bytes are a real provider stream; chunk boundaries and times are synthesized by "
            f"{SCRIPT} (seed {SEED})."
        ),
        "request": f"{ex.request_origin}; {REQUEST_HEADERS_NOTE[ex.provider]}",
    }
    return Cassette(interactions=(Interaction(request, response),), meta=meta)


def output_dir(argv: Sequence[str] | None, script: str, default: Path) -> Path | None:
    """The ``[OUTPUT_DIR]`` argument of a build script (``default`` without one), created; None
    after printing the usage for any other arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or (args and args[0] in ("-h", "--help")):
        print(f"usage: python {script} [OUTPUT_DIR]", file=sys.stderr)
        return None
    out = Path(args[0]) if args else default
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_stream(cassette: Cassette, path: Path) -> None:
    """Write an event-stream cassette and print what its response holds."""
    _store.save(cassette, path)
    resp = cassette.interactions[0].response
    events = len(parse(resp.body).events)
    print(f"{path}: {events} events in {len(resp.chunk_sizes)} chunks, {len(resp.body)} bytes")


def main(argv: Sequence[str] | None = None) -> int:
    out = output_dir(argv, SCRIPT, DEFAULT_OUT)
    if out is None:
        return 2
    text = PROVENANCE.read_text(encoding="utf-8")
    for ex in EXAMPLES:
        save_stream(build(ex, text), out / f"{ex.name}.msgpack")
    return 0


if __name__ == "__main__":
    sys.exit(main())
