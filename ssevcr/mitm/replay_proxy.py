"""The ``ssevcr replay --proxy`` addon for mitmproxy: forward-proxy clients get the replay.

Every request that reaches the proxy (plain HTTP or intercepted HTTPS) is redirected to the replay
server given by ``ssevcr_replay_url``, with the URL the client asked for in ``x-ssevcr-forwarded-url``
(so matching sees the original scheme and host), and every response is streamed back as it comes
(``flow.response.stream = True``): timing and faults are the replay server's. Run it with
``upstream_cert=false`` and ``connection_strategy=lazy`` so mitmproxy never contacts the real host:
it works with no network at all.

Runs inside mitmdump's interpreter (possibly another environment): standard library and ssevcr's
core only, mitmproxy only through ``ctx`` inside hooks. It must not buffer bodies or change bytes.
"""

from __future__ import annotations

import os
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
ADDON_FILE = os.path.abspath(__file__)
OPTION = "ssevcr_replay_url"

# mitmproxy's script loader puts this file's directory first on sys.path; never let the package's
# modules shadow top-level ones.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    del sys.path[0]

try:
    import ssevcr  # noqa: F401
except ImportError:  # loaded by hand into a mitmdump without ssevcr: expose only this package
    _shim = tempfile.mkdtemp(prefix="ssevcr-addon-")
    os.symlink(os.path.dirname(_HERE), os.path.join(_shim, "ssevcr"))
    sys.path.insert(0, _shim)

from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

from ssevcr._server import FORWARDED_URL  # noqa: E402
from ssevcr.mitm.recorder import Announce  # noqa: E402

__all__ = ["ADDON_FILE", "OPTION", "ReplayRedirect", "addons"]


class ReplayRedirect:
    """Send every flow to the replay server; stream every response back unbuffered."""

    def load(self, loader: Any) -> None:
        loader.add_option(
            OPTION, str, "", "Replay server URL (http://HOST:PORT) that receives every flow."
        )

    def request(self, flow: Any) -> None:
        from mitmproxy import ctx

        target = urlsplit(getattr(ctx.options, OPTION))
        if not target.hostname:
            return
        flow.request.headers[FORWARDED_URL] = flow.request.url
        flow.request.scheme = "http"
        flow.request.host = target.hostname
        flow.request.port = target.port or 80

    def responseheaders(self, flow: Any) -> None:
        flow.response.stream = True


addons = [Announce(), ReplayRedirect()]
