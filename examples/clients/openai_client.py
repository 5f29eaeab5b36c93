"""The openai Python SDK streaming a chat completion, as its README teaches.

    OPENAI_BASE_URL=... python examples/clients/openai_client.py

Prints the streamed text; an error the SDK raises ends the script with exit 1 (its traceback on
stderr). Sends the request of cassettes/examples/openai-chat-text.msgpack.
"""

from openai import OpenAI

client = OpenAI(timeout=5.0)  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment

stream = client.chat.completions.create(
    model="gpt-4o-2024-08-06",
    messages=[{"role": "user", "content": "What's the weather like in SF?"}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
