"""Serve this folder (the chat UI example) over HTTP:
``python examples/chat-ui/serve.py [--port 8000]``.

The pages are static files (no build step). Open them with the replay server's URL in the query,
from another origin than the one serving them (another port is enough), so the browser applies
CORS exactly as it would against a real API::

    ssevcr replay cassettes/examples/openai-chat-text.msgpack --cors --listen 127.0.0.1:8080
    python examples/chat-ui/serve.py --port 8000
    # http://127.0.0.1:8000/index.html?api=http://127.0.0.1:8080

``start()`` runs the same server in a background thread (tests/test_browser.py uses it).
"""

from __future__ import annotations

import argparse
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class _Handler(SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("cache-control", "no-store")  # an edited page is never served stale
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)


def start(
    host: str = "127.0.0.1", port: int = 0, *, directory: Path = HERE, verbose: bool = False
) -> ThreadingHTTPServer:
    """Serve ``directory`` in a daemon thread; ``server.server_address`` has the port.
    Stop it with ``server.shutdown(); server.server_close()``."""
    server = ThreadingHTTPServer(
        (host, port), functools.partial(_Handler, directory=str(directory))
    )
    server.daemon_threads = True
    server.verbose = verbose  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="chat-ui-static", daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    server = start(args.host, args.port, verbose=True)
    port = server.server_address[1]
    print(
        f"chat UI: http://{args.host}:{port}/index.html?api=http://127.0.0.1:8080  "
        "(EventSource: eventsource.html)",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
