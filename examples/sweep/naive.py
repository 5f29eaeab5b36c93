"""A naive consumer: prints the streamed text and trusts that the stream ended well.

It never checks for ``[DONE]`` or a ``finish_reason``, so a stream cut at an event boundary or
missing its terminal event looks like success. ``ssevcr sweep`` flags it ``silent`` on those.
"""

from __future__ import annotations

import json
import sys

from _chat import content_of, open_stream

response = open_stream()
text = []
for raw in response:  # http.client buffers lines across reads
    line = raw.rstrip(b"\r\n")
    if line.startswith(b"data: ") and line != b"data: [DONE]":
        text.append(content_of(json.loads(line[6:])))
print("".join(text))
sys.exit(0)
