"""A careful OpenAI Realtime consumer: prints the response's text only when it really ended.

It connects with the official ``openai`` SDK's Realtime client to ``SSEVCR_URL`` (what ``ssevcr
replay`` and ``ssevcr sweep`` set), updates the session, asks for a response and reads until
``response.done``, and fails (non-zero exit, a message on stderr) on an ``error`` event, a
connection closed before ``response.done`` (any close code), a message that is no JSON, a read
that waits past its timeout, or a handshake refused with an HTTP error. ``ssevcr sweep`` passes
it on every fault of a Realtime cassette.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import openai
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def talk() -> str:
    client = openai.AsyncOpenAI(
        api_key="sk-ssevcr-dummy", base_url=os.environ["SSEVCR_URL"] + "/v1"
    )
    text = []
    async with client.realtime.connect(model="gpt-realtime") as conn:

        async def recv() -> object:
            event = await asyncio.wait_for(conn.recv(), 2.0)
            if event.type == "error":
                raise RuntimeError(f"error event: {event.error.message}")
            return event

        await recv()  # session.created
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await recv()  # session.updated
        await conn.response.create()
        while True:
            event = await recv()
            if event.type == "response.output_text.delta":
                text.append(event.delta)
            elif event.type == "response.done":
                return "".join(text)


def main() -> int:
    try:
        print(asyncio.run(talk()))
    except InvalidStatus as e:
        print(f"handshake refused: HTTP {e.response.status_code}", file=sys.stderr)
        return 3
    except RuntimeError as e:
        print(str(e), file=sys.stderr)
        return 4
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd is not None else 1006
        print(f"closed before response.done: {code}", file=sys.stderr)
        return 5
    except TimeoutError:
        print("no message within the read timeout", file=sys.stderr)
        return 6
    except json.JSONDecodeError as e:
        print(f"broken message: {e}", file=sys.stderr)
        return 7
    return 0


if __name__ == "__main__":
    sys.exit(main())
