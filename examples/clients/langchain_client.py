"""langchain-openai streaming a chat model's answer, as its docs teach: ``ChatOpenAI(...).stream``.

    OPENAI_BASE_URL=... python examples/clients/langchain_client.py

Prints the streamed text; an error it raises ends the script with exit 1. Sends the request of
cassettes/examples/openai-chat-text.msgpack (``stream_usage=True`` asks for the usage chunk).
"""

from langchain_openai import ChatOpenAI

llm = ChatOpenAI(model="gpt-4o-2024-08-06", timeout=5.0, stream_usage=True)
for chunk in llm.stream("What's the weather like in SF?"):
    print(chunk.content, end="", flush=True)
print()
