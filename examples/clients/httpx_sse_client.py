"""httpx-sse reading an OpenAI chat completion stream, as its README teaches: ``connect_sse``,
then ``iter_sse()``; the OpenAI events are decoded by hand, up to ``[DONE]``.

    OPENAI_BASE_URL=... python examples/clients/httpx_sse_client.py

Prints the streamed text; an error httpx or httpx-sse raises ends the script with exit 1. Sends
the request of cassettes/examples/openai-chat-text.msgpack.
"""

import json
import os

import httpx
from httpx_sse import connect_sse

base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
request = {
    "model": "gpt-4o-2024-08-06",
    "messages": [{"role": "user", "content": "What's the weather like in SF?"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
headers = {"authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"}
url = f"{base}/chat/completions"
with (
    httpx.Client(timeout=5.0) as client,
    connect_sse(client, "POST", url, json=request, headers=headers) as source,
):
    for sse in source.iter_sse():
        if sse.data == "[DONE]":
            break
        for choice in json.loads(sse.data)["choices"]:
            print(choice["delta"].get("content") or "", end="", flush=True)
print()
