"""What a start-up imports: ``ssevcr replay`` comes to its ready line without the modules it
does not need before it listens (the framings, h11, resumption: the server imports them right
after the ready line; wsproto and the WebSocket replay, the control API, configured responses,
the mitmproxy driver: imported on first use only), and answers a plain recorded stream without
the latter ever. A module-level import added back fails here, not as a slower start-up nobody
notices (``bench/bench_cli.py`` measures the time)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import h11
from replay_helpers import OPENAI_CHAT, example_path, interaction, read_response

# never needed to serve a plain recorded HTTP stream
_NOT_FOR_PLAIN_REPLAY = (
    "wsproto",
    "ssevcr._websocket",
    "ssevcr._conversation",
    "ssevcr._control",
    "ssevcr._configured",
    "ssevcr.mitm.driver",
)
# imported right after the ready line: what any answer may need
_AFTER_READY = (
    "ssevcr._framing",
    "ssevcr._sse",
    "ssevcr._ndjson",
    "ssevcr._jsonarray",
    "h11",
    "ssevcr._resume",
)

_REPORT_MODULES_AT_EXIT = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
    "from ssevcr.cli import main\n"
    "main()\n"
)


def test_a_plain_replay_never_imports_what_other_features_need() -> None:
    """The real command, a real request over a socket: the answer is the recording, and the
    process never imported the modules of the features it did not use."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _REPORT_MODULES_AT_EXIT,
            "replay",
            example_path(OPENAI_CHAT),
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert "serving http://127.0.0.1:" in ready, ready
        port = int(ready.split("http://127.0.0.1:")[1].split()[0])
        recorded = interaction(OPENAI_CHAT)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            conn = h11.Connection(h11.CLIENT)
            target = recorded.request.path
            head = (
                f"{recorded.request.method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\n"
                f"Content-Length: {len(recorded.request.body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + recorded.request.body)  # a simple request
            got = read_response(sock, conn, time.monotonic())
        assert got.status == 200 and got.end == "complete"
        assert b"".join(got.chunks) == recorded.response.body
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    modules = set(json.loads(err.strip().splitlines()[-1]))
    assert set(_AFTER_READY) <= modules  # (the report is real, and the server warmed up)
    assert not modules & set(_NOT_FOR_PLAIN_REPLAY), sorted(modules & set(_NOT_FOR_PLAIN_REPLAY))


def test_the_replay_command_and_server_modules_defer_the_framings() -> None:
    """Importing the replay command, the server and the player (what runs before the ready line)
    leaves out the framings and the modules of the other features."""
    code = (
        "import json, sys, ssevcr.cli.replay, ssevcr._server, ssevcr._player, ssevcr._store\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = set(json.loads(out.stdout))
    assert "ssevcr._http1" in modules and "ssevcr._journal" in modules  # (the report is real)
    deferred = set(_NOT_FOR_PLAIN_REPLAY) | set(_AFTER_READY)
    assert not modules & deferred, sorted(modules & deferred)
