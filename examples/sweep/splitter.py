"""A consumer with a classic bug: it splits every network read into lines on its own, so a line
that arrives in two reads becomes two broken halves, which it skips. Whole-event reads hide the
bug; ``ssevcr sweep`` shows it as ``broken`` under ``rechunk`` faults (lossless: the output must
not change).
"""

from __future__ import annotations

import json

from _chat import content_of, open_stream

response = open_stream()
text = []
while chunk := response.read1(65536):
    for line in chunk.split(b"\n"):  # the bug: no carry-over of a partial line to the next read
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            try:
                text.append(content_of(json.loads(line[6:])))
            except ValueError:
                continue  # "skip malformed lines": how the bug stays hidden
print("".join(text))
