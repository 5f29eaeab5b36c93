"""A streaming proxy in Starlette: the pattern the LLM guides teach. The app forwards its
upstream's chat-completion stream to its own client, and must stop reading upstream (and so stop
paying for tokens nobody reads) as soon as its client disconnects.

    UPSTREAM_URL=http://127.0.0.1:8080 uvicorn examples.streaming_proxy.app:app --port 8000

``POST /chat`` relays the upstream stream as it comes. Its generator reads the upstream inside
``async with``: when the client leaves, Starlette cancels the response (it listens for the
client's ``http.disconnect`` while streaming), the cancellation reaches the read, and leaving the
``async with`` closes the upstream connection at once.

``POST /chat-buggy`` is the same relay with a bug that is easy to write and hard to see: the
upstream is read by a background task (to keep the whole answer for a log), so when the client
leaves the task goes on reading the upstream to its end. Both answer the client the same bytes;
only the upstream's view differs, which is what ``ssevcr replay``'s delivery journal shows
(tests/test_streaming_proxy.py).

With ``ssevcr replay`` as the upstream (``UPSTREAM_URL`` its URL, or a control-API session's
base URL), the journal of each play says when the app closed its upstream stream and after which
event.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

UPSTREAM_PATH = "/v1/chat/completions"


def upstream_url() -> str:
    return os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8080").rstrip("/") + UPSTREAM_PATH


@asynccontextmanager
async def upstream_stream(body: bytes) -> AsyncIterator[httpx.Response]:
    """The upstream's streamed answer to ``body``: its connection is closed when the ``async
    with`` block is left, however it is left."""
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30, read=60)) as client,
        client.stream(
            "POST", upstream_url(), content=body, headers={"content-type": "application/json"}
        ) as upstream,
    ):
        yield upstream


async def chat(request: Request) -> StreamingResponse:
    body = await request.body()

    async def relay() -> AsyncIterator[bytes]:
        async with upstream_stream(body) as upstream:
            async for chunk in upstream.aiter_raw():
                yield chunk  # a cancellation here (the client left) closes the upstream

    return StreamingResponse(relay(), media_type="text/event-stream")


async def chat_buggy(request: Request) -> StreamingResponse:
    body = await request.body()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    transcript: list[bytes] = []

    async def pump() -> None:  # THE BUG: nothing stops this when the client leaves
        async with upstream_stream(body) as upstream:
            async for chunk in upstream.aiter_raw():
                transcript.append(chunk)
                await queue.put(chunk)
        await queue.put(None)

    task = asyncio.get_running_loop().create_task(pump())
    request.app.state.pumps.add(task)
    task.add_done_callback(request.app.state.pumps.discard)

    async def relay() -> AsyncIterator[bytes]:
        while (chunk := await queue.get()) is not None:
            yield chunk

    return StreamingResponse(relay(), media_type="text/event-stream")


app = Starlette(
    routes=[
        Route("/chat", chat, methods=["POST"]),
        Route("/chat-buggy", chat_buggy, methods=["POST"]),
    ]
)
app.state.pumps = set()  # (the background tasks, kept referenced)
