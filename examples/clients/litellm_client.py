"""litellm streaming a completion from an OpenAI model, as its docs teach: ``completion(...,
stream=True)``. ``LITELLM_LOCAL_MODEL_COST_MAP=True`` keeps litellm from fetching its price list.

    OPENAI_BASE_URL=... python examples/clients/litellm_client.py

Prints the streamed text; an error litellm raises ends the script with exit 1. Sends the request
of cassettes/examples/openai-chat-text.msgpack.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

response = litellm.completion(
    model="openai/gpt-4o-2024-08-06",
    messages=[{"role": "user", "content": "What's the weather like in SF?"}],
    stream=True,
    stream_options={"include_usage": True},
    api_base=os.environ.get("OPENAI_BASE_URL"),
    timeout=5.0,
)
for chunk in response:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
print()
