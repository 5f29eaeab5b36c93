"""The anthropic Python SDK streaming a message with its helper, as its README teaches.

    ANTHROPIC_BASE_URL=... python examples/clients/anthropic_client.py

Prints the streamed text; an error the SDK raises ends the script with exit 1. Sends the request
of cassettes/examples/anthropic-text.msgpack.
"""

from anthropic import Anthropic

client = Anthropic(timeout=5.0)  # ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY from the environment

with client.messages.stream(
    model="claude-sonnet-4-5-20250929",
    max_tokens=32000,
    messages=[
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is 1+1? Answer with just the number."}],
        }
    ],
) as stream:
    for text in stream.text_stream:
        print(text, end="", flush=True)
print()
