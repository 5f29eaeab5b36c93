"""Build ``cassettes/examples/websocket/openai-realtime-text.msgpack``, a WebSocket cassette in
the shape of OpenAI's Realtime API (GA event names), for examples/chat-ui/realtime.html and the
Node ``openai`` Realtime client (examples/clients/node/realtime.mjs).

Usage::

    python examples/chat-ui/build_realtime_cassette.py [OUTPUT_DIR]
    # default: cassettes/examples/websocket

The conversation is **synthesized**, not recorded from OpenAI: ``session.created``; the client's
``session.update`` answered by ``session.updated``; its ``response.create`` answered by
``response.created``, one ``response.output_text.delta`` per word 25-45 ms apart (from a fixed
seed), ``response.output_text.done`` and ``response.done``; then the client closes with 1000.
Times are seconds from the handshake, as a recording keeps them; the meta says it is synthesized.
Running it twice gives identical files.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # ssevcr from this checkout
sys.path.insert(0, str(HERE.parent))  # build_example_cassettes.py is a script next to this folder

from build_example_cassettes import output_dir  # noqa: E402

from ssevcr import _store  # noqa: E402
from ssevcr._cassette import (  # noqa: E402
    Cassette,
    Interaction,
    Request,
    Response,
    WebSocket,
    WsClose,
    WsMessage,
)

NAME = "openai-realtime-text"
SCRIPT = "examples/chat-ui/build_realtime_cassette.py"
DEFAULT_OUT = HERE.parent.parent / "cassettes" / "examples" / "websocket"
URL = "https://api.openai.com/v1/realtime?model=gpt-realtime"
TEXT = "Recorded streams replay with their own timing, byte for byte."
SEED = "20261202:openai-realtime-text"
SESSION = {
    "type": "realtime",
    "object": "realtime.session",
    "id": "sess_ssevcr_example",
    "model": "gpt-realtime",
    "output_modalities": ["text"],
}
# what both clients of this cassette send, in order (replay matches each by its "type")
SESSION_UPDATE = {
    "type": "session.update",
    "session": {"type": "realtime", "output_modalities": ["text"]},
}
RESPONSE_CREATE = {"type": "response.create"}


def words(text: str) -> list[str]:
    """The deltas: each word with the space before it."""
    parts = text.split(" ")
    return [parts[0], *(f" {p}" for p in parts[1:])]


def conversation() -> list[tuple[float, bool, dict[str, Any]]]:
    """(seconds from the handshake, from the client, event), in order."""
    rng = random.Random(SEED)
    rid, iid = "resp_ssevcr_example", "item_ssevcr_example"
    base = {"response_id": rid, "item_id": iid, "output_index": 0, "content_index": 0}
    t = 0.04
    out: list[tuple[float, bool, dict[str, Any]]] = [
        (t, False, {"type": "session.created", "event_id": "event_1", "session": SESSION}),
        (t + 0.03, True, SESSION_UPDATE),
        (t + 0.06, False, {"type": "session.updated", "event_id": "event_2", "session": SESSION}),
        (t + 0.08, True, RESPONSE_CREATE),
    ]
    t += 0.08 + 0.12  # time to the first token
    response = {"id": rid, "object": "realtime.response", "status": "in_progress", "output": []}
    out.append(
        (t, False, {"type": "response.created", "event_id": "event_3", "response": response})
    )
    for n, word in enumerate(words(TEXT)):
        t += rng.uniform(0.025, 0.045)
        event = {
            "type": "response.output_text.delta",
            "event_id": f"event_d{n}",
            **base,
            "delta": word,
        }
        out.append((t, False, event))
    t += 0.01
    out.append(
        (
            t,
            False,
            {"type": "response.output_text.done", "event_id": "event_4", **base, "text": TEXT},
        )
    )
    t += 0.01
    usage = {"total_tokens": 31, "input_tokens": 18, "output_tokens": 13}
    done = {**response, "status": "completed", "usage": usage}
    out.append((t, False, {"type": "response.done", "event_id": "event_5", "response": done}))
    return out


def build_cassette() -> Cassette:
    messages = tuple(
        WsMessage(round(at, 6), from_client, json.dumps(event, separators=(",", ":")).encode())
        for at, from_client, event in conversation()
    )
    websocket = WebSocket(messages, WsClose(round(messages[-1].at + 0.05, 6), 1000, "", "client"))
    request = Request(
        "GET",
        URL,
        (
            ("host", "api.openai.com"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-version", "13"),
            ("authorization", "REDACTED"),
        ),
    )
    response = Response(
        101,
        "Switching Protocols",
        headers=(("upgrade", "websocket"), ("connection", "Upgrade")),
        headers_at=0.21,
    )
    meta = {
        "timing": "synthesized",
        "note": (
            "A synthesized OpenAI Realtime (GA) text conversation over WebSocket, not recorded "
            f"from OpenAI; built by {SCRIPT} from a fixed seed."
        ),
    }
    return Cassette(interactions=(Interaction(request, response, websocket=websocket),), meta=meta)


def main(argv: Sequence[str] | None = None) -> int:
    out = output_dir(argv, SCRIPT, DEFAULT_OUT)
    if out is None:
        return 2
    cassette = build_cassette()
    path = out / f"{NAME}.msgpack"
    _store.save(cassette, path)
    ws = cassette.interactions[0].websocket
    assert ws is not None
    print(f"{path}: {len(ws.server_messages)} server and {len(ws.client_messages)} client messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
