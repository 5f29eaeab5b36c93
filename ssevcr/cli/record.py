"""``ssevcr record``: run a recording proxy (mitmdump + the ssevcr addon) until stopped, or around
one command.

Forward proxy by default (clients use HTTP_PROXY/HTTPS_PROXY and trust the mitmproxy CA), reverse
proxy with ``--upstream URL`` (clients use the printed URL as their base URL). Prints one ready
line with the URL on stdout; the CA hint and one line per recorded exchange go to stderr. Appends
to an existing cassette unless ``--overwrite``. Ctrl-C / SIGTERM stop it cleanly; finished
exchanges are already on disk.

It only parses options and supervises processes: recording happens in :mod:`ssevcr.mitm.recorder`,
the child process in :mod:`ssevcr.mitm.driver`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import click

from .. import _store
from .._errors import SsevcrError
from ..mitm.driver import ADDON, Mitmdump, Ready, check_upstream

__all__ = ["parse_listen", "proxy_env", "record_command"]


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT``, ``:PORT`` or ``PORT`` (port 0 picks a free one)."""
    text = value.strip()
    host, port_text = "127.0.0.1", text
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise click.BadParameter(f"{value!r}: expected [IPV6]:PORT", param_hint="--listen")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        host = host or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT", param_hint="--listen") from None
    if not 0 <= port <= 65535:
        raise click.BadParameter(f"{value!r}: port must be 0-65535", param_hint="--listen")
    return host, port


def proxy_env(ready: Ready, *, forward: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``-- CMD``: proxy variables and CA bundle (forward mode), and
    ``SSEVCR_URL`` (both modes)."""
    env = dict(os.environ if base is None else base)
    env["SSEVCR_URL"] = ready.url
    if forward:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env[name] = ready.url
        for name in (
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "NODE_EXTRA_CA_CERTS",
            "CURL_CA_BUNDLE",
        ):
            env[name] = ready.ca_cert
    return env


def _progress(prefix: str, info: dict[str, Any]) -> None:
    status = info.get("status")
    outcome = info.get("outcome", "")
    if info.get("events") is not None:
        size = f"{info['events']} events"
    elif "bytes" in info:
        size = f"{info['bytes']} bytes"
    else:
        size = "-"
    duration = info.get("duration")
    parts = [
        "  " + str(info.get("method", "?")),
        str(info.get("path", "?")),
        str(status if status is not None else "---"),
        size,
        f"{duration:.3f} s" if isinstance(duration, (int, float)) else "",
    ]
    line = " ".join(p for p in parts if p)
    if outcome and outcome != "complete":
        line += f"  [{outcome}{': ' + str(info['error']) if info.get('error') else ''}]"
    if info.get("saved") is False:
        line += "  NOT SAVED" + (f": {info['save_error']}" if info.get("save_error") else "")
    click.echo(line, err=True)


class _Signals:
    """SIGINT/SIGTERM handling while we supervise: remember them, let the main loop act."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.event = threading.Event()
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        self.event.set()

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _run_command(
    command: Sequence[str], env: dict[str, str], proxy: Mitmdump, signals: _Signals
) -> int:
    """Run CMD in our process group (the terminal's Ctrl-C reaches it directly); forward
    SIGTERM to it; stop when it exits. Returns its exit code (128+N when killed by signal N)."""
    if signals.received:  # stopped before the command could start
        return 128 + signals.received[0]
    try:
        child = subprocess.Popen(list(command), env=env)
    except OSError as e:
        raise click.ClickException(f"cannot run {command[0]!r}: {e.strerror or e}") from None
    while True:
        try:
            code = child.wait(0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        while signals.received:
            signum = signals.received.pop(0)
            if signum != signal.SIGINT:  # SIGINT: the terminal already sent it to CMD
                child.send_signal(signum)
        if not proxy.running:
            click.echo("Error: mitmdump stopped unexpectedly; stopping the command", err=True)
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            return 1
    return code if code >= 0 else 128 - code


@click.command("record", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("cassette", type=click.Path(dir_okay=False))
@click.option(
    "--upstream",
    metavar="URL",
    help="Reverse proxy to this server (scheme://host[:port]); clients use the printed URL as base URL. Without it: a forward proxy.",
)
@click.option(
    "--listen",
    "listen",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on; port 0 picks a free port.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace the cassette's interactions (default: append)."
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="PATTERN",
    help="Record only hosts matching this glob (host or host:port); repeatable.",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    metavar="PATTERN",
    help="Record only URL paths matching this glob (/v1/*); repeatable.",
)
@click.option(
    "--redact-header",
    "redact_headers",
    multiple=True,
    metavar="NAME",
    help="Also redact this header; repeatable.",
)
@click.option(
    "--redact-query",
    "redact_query",
    multiple=True,
    metavar="KEY",
    help="Also redact this URL query key; repeatable.",
)
@click.option(
    "--redact-body",
    "redact_body",
    multiple=True,
    metavar="PATH",
    help="Also redact this dotted JSON path of request bodies (auth.token); repeatable.",
)
@click.option(
    "--insecure-upstream",
    is_flag=True,
    help="Do not verify upstream TLS certificates (self-signed test servers only).",
)
@click.option(
    "--confdir",
    type=click.Path(file_okay=False),
    help="mitmproxy configuration directory holding the CA [default: ~/.mitmproxy].",
)
@click.option(
    "--mitmdump",
    "mitmdump",
    metavar="PATH",
    help="The mitmdump to run [default: $SSEVCR_MITMDUMP, then mitmproxy in this Python, then PATH].",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD ...]")
def record_command(
    cassette: str,
    upstream: str | None,
    listen: str,
    overwrite: bool,
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    redact_headers: tuple[str, ...],
    redact_query: tuple[str, ...],
    redact_body: tuple[str, ...],
    insecure_upstream: bool,
    confdir: str | None,
    mitmdump: str | None,
    command: tuple[str, ...],
) -> None:
    """Record every HTTP exchange through a proxy into CASSETTE, with the arrival time of each
    chunk. Credentials (authorization, x-api-key, cookies, ?key=, ...) are redacted.

    \b
    Forward proxy (default):  ssevcr record c.msgpack -- python app.py
    Reverse proxy:            ssevcr record c.msgpack --upstream https://api.openai.com
                              (then OPENAI_BASE_URL=http://127.0.0.1:8080/v1)
    """
    host, port = parse_listen(listen)
    mode = "regular" if upstream is None else f"reverse:{check_upstream(upstream)}"
    path = os.path.abspath(cassette)
    if not overwrite and _store.present(path):
        _store.load(path)  # a damaged cassette is refused before anything is recorded
    for pattern in redact_body:
        if not pattern.strip() or any(not p for p in pattern.strip().split(".")):
            raise click.BadParameter(
                f"{pattern!r}: expected dotted keys like auth.token", param_hint="--redact-body"
            )

    saved = [0]

    def on_line(prefix: str, info: dict[str, Any]) -> None:
        if info.get("saved"):
            saved[0] += 1
        _progress(prefix, info)

    proxy = Mitmdump(
        ADDON,
        mode=mode,
        listen_host=host,
        listen_port=port,
        options={
            "ssevcr_cassette": path,
            "ssevcr_overwrite": overwrite,
            "ssevcr_report": True,
            "ssevcr_hosts": list(hosts),
            "ssevcr_paths": list(paths),
            "ssevcr_redact_headers": list(redact_headers),
            "ssevcr_redact_query": list(redact_query),
            "ssevcr_redact_body": list(redact_body),
        },
        confdir=confdir,
        insecure_upstream=insecure_upstream,
        mitmdump=mitmdump,
        on_line=on_line,
    )
    code = 0
    # signals are caught from before mitmdump starts: a SIGTERM at any moment stops it cleanly
    with _Signals() as signals:
        try:
            ready = proxy.start()
            forward = upstream is None
            if forward:
                click.echo(
                    f"CA certificate: {ready.ca_cert}\n"
                    f"  Trust it in the client: SSL_CERT_FILE / REQUESTS_CA_BUNDLE / NODE_EXTRA_CA_CERTS={ready.ca_cert},\n"
                    f"  curl --cacert {ready.ca_cert}; proxy: HTTPS_PROXY={ready.url} (`-- CMD` sets all of these).",
                    err=True,
                )
                click.echo(f"Recording on {ready.url} (forward proxy) into {cassette}")
            else:
                click.echo(
                    f"Recording on {ready.url} (reverse proxy to {check_upstream(upstream or '')}) into {cassette}"
                )
            sys.stdout.flush()
            if command:
                code = _run_command(command, proxy_env(ready, forward=forward), proxy, signals)
            else:
                while not signals.received and not signals.event.wait(0.2):
                    if not proxy.running:
                        raise SsevcrError(
                            f"mitmdump stopped unexpectedly (exit code {proxy.process.returncode if proxy.process else '?'})"
                        )
        finally:
            proxy.stop()
    click.echo(f"Saved {saved[0]} exchange{'s' if saved[0] != 1 else ''} to {cassette}", err=True)
    if code:
        click.get_current_context().exit(code)
