"""Build ``cassettes/examples/anthropic-text-eventsource.msgpack``, the cassette of the
EventSource page.

Usage::

    python examples/chat-ui/build_eventsource_cassette.py [OUTPUT_DIR]
    # default: cassettes/examples

``EventSource`` can only GET, and no provider streams to a GET, so this cassette pairs a
**synthesized request** (the GET the page sends to an app backend that relays an Anthropic
Messages stream as is) with the response of ``anthropic-text.msgpack``: the real bytes of
``tests/fixtures/providers/anthropic/text.sse`` with the chunking and timing that
``examples/build_example_cassettes.py`` **synthesizes** for it (same seed, so the same response,
byte for byte and time for time). The meta says both. Running it twice gives identical files.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # build_example_cassettes.py is a script next to this folder

from build_example_cassettes import (  # noqa: E402
    DEFAULT_OUT,
    EXAMPLES,
    PROVENANCE,
    build,
    output_dir,
    save_stream,
)

from ssevcr._cassette import Cassette, Interaction, Request  # noqa: E402

NAME = "anthropic-text-eventsource"
SOURCE = "anthropic-text"
SCRIPT = "examples/chat-ui/build_eventsource_cassette.py"
BASE_URL = "https://chat.example.com/api/chat/stream"
# What Chromium's EventSource sends (besides host, user-agent and the like, which matching ignores)
REQUEST_HEADERS = (("accept", "text/event-stream"), ("cache-control", "no-cache"))


def build_cassette() -> Cassette:
    example = next(ex for ex in EXAMPLES if ex.name == SOURCE)
    source = build(example, PROVENANCE.read_text(encoding="utf-8"))
    original = source.interactions[0]
    body = json.loads(original.request.body)
    prompt = body["messages"][0]["content"][0]["text"]
    url = f"{BASE_URL}?{urlencode({'prompt': prompt})}"
    host = url.split("/")[2]
    request = Request("GET", url, (("host", host), *REQUEST_HEADERS), b"")
    meta = dict(source.meta)
    meta["note"] = (
        f"{meta['note']} The response is the one of {SOURCE}.msgpack; the request is not a "
        f"provider request (see 'request')."
    )
    meta["request"] = (
        "synthesized: the GET that examples/chat-ui/eventsource.html sends with EventSource to an "
        "app backend relaying the Anthropic stream unchanged; the prompt is the one of "
        f"{SOURCE}.msgpack; built by {SCRIPT}"
    )
    return Cassette(interactions=(Interaction(request, original.response),), meta=meta)


def main(argv: Sequence[str] | None = None) -> int:
    out = output_dir(argv, SCRIPT, DEFAULT_OUT)
    if out is None:
        return 2
    save_stream(build_cassette(), out / f"{NAME}.msgpack")
    return 0


if __name__ == "__main__":
    sys.exit(main())
