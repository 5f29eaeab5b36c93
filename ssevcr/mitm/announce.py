"""The addon part every ssevcr addon file shares: the ready line and the launcher's leash.

Runs inside mitmdump (see :mod:`ssevcr.mitm.scripts`); reaches mitmproxy only through ``ctx``
inside hooks, so importing it never imports mitmproxy.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from .protocol import EXIT_ON_EOF, READY, format_line

__all__ = ["Announce", "emit"]

_stdout_lock = threading.Lock()


def emit(prefix: str, info: dict[str, Any]) -> None:
    """Write one protocol line on stdout (thread-safe)."""
    line = format_line(prefix, info)
    with _stdout_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


class Announce:
    """Prints the ready line when mitmproxy listens (the addresses it bound, so port 0 works, and
    where the CA is); with ``ssevcr_exit_on_eof`` it also shuts mitmproxy down when its stdin
    closes, so a launched mitmdump never outlives its launcher (even one killed with SIGKILL)."""

    def load(self, loader: Any) -> None:
        loader.add_option(
            EXIT_ON_EOF,
            bool,
            False,
            "Shut down when stdin reaches end of file (set by ssevcr's launcher).",
        )

    def running(self) -> None:
        from mitmproxy import ctx

        listen: list[list[Any]] = []
        ps = ctx.master.addons.get("proxyserver")
        if ps is not None:
            if callable(getattr(ps, "listen_addrs", None)):  # mitmproxy 11 and 12
                addrs = list(ps.listen_addrs())
            else:  # pragma: no cover - a future layout: ask each server instance
                addrs = [a for server in getattr(ps, "servers", ()) for a in server.listen_addrs]
            for addr in addrs:
                listen.append([str(addr[0]), int(addr[1])])
        confdir = os.path.expanduser(ctx.options.confdir)
        try:
            from mitmproxy.version import VERSION as mitmproxy_version
        except ImportError:  # pragma: no cover
            mitmproxy_version = "?"
        emit(
            READY,
            {
                "pid": os.getpid(),
                "listen": listen,
                "mode": list(ctx.options.mode),
                "confdir": confdir,
                "ca_cert": os.path.join(confdir, "mitmproxy-ca-cert.pem"),
                "mitmproxy": mitmproxy_version,
                "python": sys.version.split()[0],
            },
        )
        if getattr(ctx.options, EXIT_ON_EOF):
            master = ctx.master

            def watch() -> None:
                # os.read, not sys.stdin: a daemon thread blocked in a buffered read would abort
                # the interpreter at exit.
                try:
                    fd = sys.stdin.fileno()
                    while os.read(fd, 65536):
                        pass
                except (OSError, ValueError):
                    pass
                master.shutdown()

            threading.Thread(target=watch, name="ssevcr-stdin-watch", daemon=True).start()
