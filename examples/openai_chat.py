"""Stream a chat completion with the official OpenAI SDK and show when each token arrives.

Runs two ways, unchanged:

  * against ``ssevcr replay`` (which sets OPENAI_BASE_URL and a dummy OPENAI_API_KEY)::

        ssevcr replay cassettes/examples/openai-chat-text.msgpack -- python examples/openai_chat.py

  * on its own, replaying the bundled cassette in process through ``ssevcr.ReplayTransport``::

        python examples/openai_chat.py [--fault truncate:after=5,end=abort] [--timing scale:0.5]

The request it sends is the one recorded in the cassette, so it matches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import httpx2
import openai

import ssevcr
from ssevcr import _store

CASSETTE = (
    Path(__file__).resolve().parent.parent / "cassettes" / "examples" / "openai-chat-text.msgpack"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cassette", default=str(CASSETTE))
    parser.add_argument("--timing", default="original")
    parser.add_argument("--fault", action="append", default=[])
    args = parser.parse_args()

    request = _store.load(args.cassette).interactions[0].request
    params = json.loads(request.body)
    if os.environ.get("OPENAI_BASE_URL"):
        client = openai.OpenAI(
            max_retries=0
        )  # configured by the environment (ssevcr replay -- ...)
        where = os.environ["OPENAI_BASE_URL"]
    else:
        transport = ssevcr.ReplayTransport(args.cassette, timing=args.timing, faults=args.fault)
        client = openai.OpenAI(
            api_key="replay", max_retries=0, http_client=httpx2.Client(transport=transport)
        )
        where = f"in process ({args.timing}{', ' + ', '.join(args.fault) if args.fault else ''})"
    print(f"replaying {Path(args.cassette).name} {where}", file=sys.stderr)

    start = time.monotonic()
    first = last = None
    chunks = 0
    text = []
    try:
        for chunk in client.chat.completions.create(**params):
            now = time.monotonic() - start
            first = now if first is None else first
            last = now
            chunks += 1
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
                print(chunk.choices[0].delta.content, end="", flush=True)
    except openai.APIError as e:
        print(f"\n[stream failed after {chunks} chunks: {type(e).__name__}: {e}]", file=sys.stderr)
        return 1
    print()
    assert first is not None and last is not None
    print(
        f"[{chunks} chunks, {len(''.join(text))} characters; "
        f"first token after {first * 1000:.0f} ms, last after {last * 1000:.0f} ms]",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
