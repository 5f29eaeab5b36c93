"""What ssevcr's launcher and the addons it runs inside mitmdump tell each other: the option names,
the header the replay proxy adds, and the machine-readable lines the addons print on stdout.

Both sides import it: the launcher (:mod:`ssevcr.mitm.driver`, the CLI, the replay server) and the
addons in mitmdump's interpreter, which may be another Python environment. So it holds values and
two small pure functions over one line of text, and imports only ``json``: never mitmproxy, the
server or anything that does I/O.

Lines (one JSON object each, after a prefix)::

    SSEVCR-READY {"pid", "listen": [[host, port], ...], "mode", "confdir", "ca_cert", ...}
    SSEVCR-RECORDED {"method", "url", "path", "status", "outcome", "events", ..., "saved"}
    SSEVCR-REFUSED {"peer", "target", "reason"}      replay proxy: something it did not forward
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "CASSETTE",
    "EXIT_ON_EOF",
    "FORWARDED_URL",
    "HOOK_REQUEST",
    "HOOK_RESPONSE",
    "HOSTS",
    "LENT",
    "LINE_PREFIXES",
    "MAX_BODY",
    "OVERWRITE",
    "PATHS",
    "READY",
    "RECORDED",
    "REDACT_BODY",
    "REDACT_HEADERS",
    "REDACT_QUERY",
    "REFUSED",
    "REPLAY_URL",
    "REPORT",
    "format_line",
    "lent_variable",
    "parse_line",
]

READY = "SSEVCR-READY"
"""Prefix of the line an addon prints once mitmproxy listens (the bound addresses, the CA)."""
RECORDED = "SSEVCR-RECORDED"
"""Prefix of the line the recorder prints per finished exchange (saved or not, and why)."""
REFUSED = "SSEVCR-REFUSED"
"""Prefix of the line the replay proxy prints for traffic it refused to pass on."""
LINE_PREFIXES = (READY, RECORDED, REFUSED)

FORWARDED_URL = "x-ssevcr-forwarded-url"
"""Request header the replay proxy adds: the URL the client asked for (so matching sees the
original scheme and host). The replay server reads it and removes it."""

EXIT_ON_EOF = "ssevcr_exit_on_eof"
"""Option (bool): shut mitmdump down when its stdin closes (set by the launcher)."""
REPLAY_URL = "ssevcr_replay_url"
"""Option (str): the replay server every flow of the replay proxy goes to."""


LENT = ("msgpack", "filelock")
"""ssevcr's dependencies that the launcher lends to a mitmdump whose environment lacks them
(mitmproxy 12.3 and later no longer bring msgpack; none brings filelock)."""


def lent_variable(name: str) -> str:
    """The environment variable naming the folder of a lent package: ``SSEVCR_LEND_MSGPACK``."""
    return f"SSEVCR_LEND_{name.upper()}"


# options of the recording addon, as the launcher sets them
CASSETTE = "ssevcr_cassette"
OVERWRITE = "ssevcr_overwrite"
REPORT = "ssevcr_report"
HOSTS = "ssevcr_hosts"
PATHS = "ssevcr_paths"
REDACT_HEADERS = "ssevcr_redact_headers"
REDACT_QUERY = "ssevcr_redact_query"
REDACT_BODY = "ssevcr_redact_body"
MAX_BODY = "ssevcr_max_body"
HOOK_REQUEST = "ssevcr_hook_request"
HOOK_RESPONSE = "ssevcr_hook_response"


def format_line(prefix: str, info: dict[str, Any]) -> str:
    """One protocol line, newline included."""
    return f"{prefix} {json.dumps(info, separators=(',', ':'))}\n"


def parse_line(line: str) -> tuple[str, dict[str, Any], str] | None:
    """Find a protocol line in ``line`` (it may share the line with mitmproxy's own output, which
    another thread writes); returns ``(prefix, info, the rest of the line)``, or None."""
    for prefix in LINE_PREFIXES:
        at = line.find(prefix + " {")
        if at < 0:
            continue
        start = at + len(prefix) + 1
        try:
            info, end = json.JSONDecoder().raw_decode(line, start)
        except ValueError:
            continue
        if isinstance(info, dict):
            return prefix, info, line[:at] + line[end:]
    return None
