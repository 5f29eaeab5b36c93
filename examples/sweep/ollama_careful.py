"""A careful Ollama consumer: prints the generated text only when the stream really ended.

It reads ``/api/generate`` through the official ``ollama`` client at ``SSEVCR_URL`` (what
``ssevcr replay`` and ``ssevcr sweep`` set), stops at the line that says ``done``, and fails
(non-zero exit, a message on stderr) on an HTTP error, a cut connection, a broken line, Ollama's
own error line, a read timeout, or a stream that ends without ``done``. ``ssevcr sweep`` passes
it on every fault of an Ollama cassette.
"""

from __future__ import annotations

import json
import os
import sys

import httpx
import ollama


def main() -> int:
    client = ollama.Client(host=os.environ["SSEVCR_URL"], timeout=httpx.Timeout(5.0, read=2.0))
    text, done = [], False
    try:
        for part in client.generate(model="llama3.2", prompt="Why is the sky blue?", stream=True):
            text.append(part.response)
            if part.done:
                done = True
                break
    except ollama.ResponseError as e:
        print(f"ollama error ({e.status_code}): {e.error}", file=sys.stderr)
        return 4
    except httpx.TimeoutException:
        print("stream stalled past the read timeout", file=sys.stderr)
        return 6
    except (httpx.TransportError, ConnectionError) as e:
        print(f"stream cut: {type(e).__name__}", file=sys.stderr)
        return 5
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
        print(f"broken line: {e}", file=sys.stderr)
        return 7
    if not done:
        print("stream ended without done", file=sys.stderr)
        return 8
    print("".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
