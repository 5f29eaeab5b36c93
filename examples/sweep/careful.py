"""A careful consumer: prints the streamed text only when the stream really ended.

It fails (non-zero exit, a message on stderr) on an HTTP error, a body that is not an event
stream, a cut connection, broken JSON, a
provider error event, a read timeout, or a stream without ``finish_reason`` and ``[DONE]``.
``ssevcr sweep`` passes it on every fault.
"""

from __future__ import annotations

import http.client
import json
import sys

from _chat import content_of, open_stream


def main() -> int:
    try:
        response = open_stream(timeout=5.0)
    except OSError as e:
        print(f"cannot connect: {e}", file=sys.stderr)
        return 2
    if response.status != 200:
        print(f"HTTP {response.status}: {response.read()[:200]!r}", file=sys.stderr)
        return 3
    content_type = response.getheader("content-type", "")
    if not content_type.startswith("text/event-stream"):
        print(f"not an event stream: content-type {content_type!r}", file=sys.stderr)
        return 3
    text, finished, done = [], False, False
    try:
        for raw in response:
            line = raw.rstrip(b"\r\n")
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            payload = json.loads(data)
            if "error" in payload:
                print(f"provider error: {payload['error']}", file=sys.stderr)
                return 4
            text.append(content_of(payload))
            finished = finished or any(c.get("finish_reason") for c in payload.get("choices", []))
    except (http.client.IncompleteRead, ConnectionError) as e:
        print(f"stream cut: {type(e).__name__}", file=sys.stderr)
        return 5
    except TimeoutError:
        print("stream stalled past the read timeout", file=sys.stderr)
        return 6
    except (ValueError, UnicodeDecodeError) as e:
        print(f"broken event: {e}", file=sys.stderr)
        return 7
    if not (finished and done):
        print(f"stream ended early (finish_reason {finished}, [DONE] {done})", file=sys.stderr)
        return 8
    print("".join(text))
    return 0


sys.exit(main())
