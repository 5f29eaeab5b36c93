"""``ssevcr record``: run a recording proxy (mitmdump + the ssevcr addon) until stopped, or around
one command.

Forward proxy by default (clients use HTTP_PROXY/HTTPS_PROXY and trust the mitmproxy CA), reverse
proxy with ``--upstream URL`` (clients use the printed URL as their base URL). Prints one ready
line with the URL on stdout; the CA hint, one line per exchange and the summary go to stderr.
Appends to an existing cassette unless ``--overwrite``. Ctrl-C / SIGTERM stop it cleanly: streams
still open are saved with what arrived.

Exit code: the command's when it failed; else 1 when an exchange it saw was not saved (no
response from upstream, a cassette that cannot be written), with what was lost and why; else 0.

It only parses options, supervises and reports: recording happens in
:mod:`ssevcr.mitm.recorder`, the child process in :mod:`ssevcr.mitm.driver`, supervision in
:mod:`ssevcr.cli._supervise`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any

import click

from .. import _store
from .._capture import DEFAULT_MAX_BODY
from .._content import format_size, parse_size
from ..mitm import protocol
from ..mitm.driver import RECORD_ADDON, Mitmdump, Ready, check_upstream
from ._supervise import (
    Stop,
    SupervisingCommand,
    exposure_warning,
    parse_listen,
    proxy_env,
    run_command,
    wait_until_stopped,
)

__all__ = ["command_env", "record_command"]

CERT_HINT = (
    "The upstream's TLS certificate is not trusted (certificate verify failed). For a test "
    "server with a self-signed certificate, record with --insecure-upstream; otherwise fix the "
    "server's certificate chain or this machine's CA bundle."
)


def command_env(ready: Ready, *, forward: bool) -> dict[str, str]:
    """The environment for ``-- CMD``: ``SSEVCR_URL`` (both modes), and in forward mode the
    proxy variables and the CA bundle."""
    env = {**os.environ, "SSEVCR_URL": ready.url}
    return proxy_env(ready.url, ready.ca_cert, env) if forward else env


def _max_body(ctx: click.Context, param: click.Parameter, value: str) -> int:
    size = parse_size(value)
    if size is None:
        raise click.BadParameter(f"{value!r}: expected a size like 64MiB, 512KiB or 1048576")
    return size


def _why(info: dict[str, Any]) -> str:
    """Why an exchange was not saved, in one phrase."""
    if info.get("save_error"):
        return str(info["save_error"])
    return f"no response: {info.get('error') or 'the upstream did not answer'}"


class _Report:
    """The progress lines (one per exchange, stderr) and what the summary needs."""

    def __init__(self) -> None:
        self.saved = 0
        self.dropped = 0  # by a recording hook, as asked
        self.lost: dict[str, int] = {}  # why -> how many exchanges
        self._lock = threading.Lock()

    def line(self, prefix: str, info: dict[str, Any]) -> None:
        if prefix != protocol.RECORDED:
            return
        status = info.get("status")
        if isinstance(info.get("messages"), int):
            size = f"{info['messages']} WebSocket messages"
        elif info.get("events") is not None:
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
            f"{duration:.3f} s" if isinstance(duration, int | float) else "",
        ]
        text = " ".join(p for p in parts if p)
        outcome = info.get("outcome", "")
        if outcome and outcome not in ("complete", "no_response"):
            text += f"  [{outcome}{': ' + str(info['error']) if info.get('error') else ''}]"
        with self._lock:
            if info.get("saved"):
                self.saved += 1
            elif info.get("dropped"):
                text += "  dropped by a recording hook"
                self.dropped += 1
            else:
                why = _why(info)
                text += f"  NOT SAVED ({why})"
                self.lost[why] = self.lost.get(why, 0) + 1
        click.echo(text, err=True)

    def summary(self, cassette: str) -> list[str]:
        lines = [f"Saved {self.saved} exchange{'s' if self.saved != 1 else ''} to {cassette}"]
        if self.dropped:
            lines[0] += f"; {self.dropped} dropped by a recording hook"
        n = sum(self.lost.values())
        if n:
            lines[0] += f"; {n} exchange{'s' if n != 1 else ''} NOT saved:"
            whys = list(self.lost.items())
            lines += [f"  {count} x {why}" for why, count in whys[:10]]
            if len(whys) > 10:
                lines.append(f"  ... and {sum(c for _, c in whys[10:])} more")
            if any("certificate verify failed" in why.lower() for why in self.lost):
                lines.append(CERT_HINT)
        return lines


def _check_writable(path: str) -> None:
    """Refuse to start recording into a folder that cannot take the cassette (read-only)."""
    folder = os.path.dirname(path)
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    if folder and not os.access(folder, os.W_OK | os.X_OK):
        raise click.ClickException(
            f"cannot record into {path!r}: the folder {folder!r} is not writable "
            "(read-only or no permission); nothing would be saved"
        )


async def _supervise(
    proxy: Mitmdump, command: list[str], *, forward: bool, upstream: str | None, cassette: str
) -> int:
    loop = asyncio.get_running_loop()

    def watch() -> str | None:
        if proxy.running:
            return None
        code = proxy.process.returncode if proxy.process else "?"
        return f"mitmdump stopped unexpectedly (exit code {code})"

    # signals are caught from before mitmdump starts: a SIGTERM at any moment stops it cleanly
    with Stop() as stop:
        try:
            ready = await loop.run_in_executor(None, proxy.start)
            warning = exposure_warning("the recording proxy", [ready.host])
            if warning:
                click.echo(warning, err=True)
            if forward:
                click.echo(
                    f"CA certificate: {ready.ca_cert}\n"
                    "  Trust it in the client: SSL_CERT_FILE / REQUESTS_CA_BUNDLE / "
                    f"NODE_EXTRA_CA_CERTS={ready.ca_cert},\n"
                    f"  curl --cacert {ready.ca_cert}; proxy: HTTPS_PROXY={ready.url} "
                    "(`-- CMD` sets all of these).",
                    err=True,
                )
                click.echo(f"Recording on {ready.bound_url} (forward proxy) into {cassette}")
            else:
                click.echo(
                    f"Recording on {ready.bound_url} (reverse proxy to {upstream}) into {cassette}"
                )
            sys.stdout.flush()
            if command:
                return await run_command(command, command_env(ready, forward=forward), stop, watch)
            await wait_until_stopped(stop, watch)
            return 0
        finally:
            await loop.run_in_executor(None, proxy.stop)


@click.command(
    "record", cls=SupervisingCommand, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.argument("cassette", type=click.Path(dir_okay=False))
@click.option(
    "--upstream",
    metavar="URL",
    help="Reverse proxy to this server (scheme://host[:port]); clients use the printed URL as "
    "base URL. Without it: a forward proxy.",
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
    "--hook-request",
    metavar="MODULE:FUNC",
    help="A before_record_request hook, as the pytest marker's: it gets each request and "
    "returns it (edited) or None to drop the exchange; imported from the current folder. "
    "Redaction runs after it.",
)
@click.option(
    "--hook-response",
    metavar="MODULE:FUNC",
    help="A before_record_response hook (edit the response, or None to drop the exchange).",
)
@click.option(
    "--max-body",
    default=format_size(DEFAULT_MAX_BODY).replace(" ", ""),
    show_default=True,
    callback=_max_body,
    metavar="SIZE",
    help="Response body bytes kept per exchange (a stream that never ends stays bounded); "
    "past it the rest is not recorded and the exchange is saved as upstream_error.",
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
    help="The mitmdump to run [default: $SSEVCR_MITMDUMP, then mitmproxy in this Python, "
    "then PATH].",
)
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
    hook_request: str | None,
    hook_response: str | None,
    max_body: int,
    insecure_upstream: bool,
    confdir: str | None,
    mitmdump: str | None,
) -> None:
    """Record every HTTP exchange through a proxy into CASSETTE, with the arrival time of each
    chunk. Credentials (authorization, x-api-key, cookies, ?key=, ...) are redacted.

    \b
    Forward proxy (default):  ssevcr record c.msgpack -- python app.py
    Reverse proxy:            ssevcr record c.msgpack --upstream https://api.openai.com
                              (then OPENAI_BASE_URL=http://127.0.0.1:8080/v1)
    """
    ctx = click.get_current_context()
    command: list[str] = ctx.meta.get("ssevcr_command", [])
    host, port = parse_listen(listen)
    target = None if upstream is None else check_upstream(upstream)
    mode = "regular" if target is None else f"reverse:{target}"
    path = os.path.abspath(cassette)
    if not overwrite and _store.present(path):
        _store.load(path, check=True)  # a damaged cassette is refused before anything is recorded
    _check_writable(path)
    for pattern in redact_body:
        if not pattern.strip() or any(not p for p in pattern.strip().split(".")):
            raise click.BadParameter(
                f"{pattern!r}: expected dotted keys like auth.token", param_hint="--redact-body"
            )
    for spec, option in ((hook_request, "--hook-request"), (hook_response, "--hook-response")):
        if spec:
            from ..mitm.recorder import load_hook

            load_hook(spec, option)  # a wrong one is refused before the proxy starts
    report = _Report()
    proxy = Mitmdump(
        RECORD_ADDON,
        mode=mode,
        listen_host=host,
        listen_port=port,
        options={
            protocol.CASSETTE: path,
            protocol.OVERWRITE: overwrite,
            protocol.REPORT: True,
            protocol.HOSTS: list(hosts),
            protocol.PATHS: list(paths),
            protocol.REDACT_HEADERS: list(redact_headers),
            protocol.REDACT_QUERY: list(redact_query),
            protocol.REDACT_BODY: list(redact_body),
            protocol.MAX_BODY: max_body,
            protocol.HOOK_REQUEST: hook_request or "",
            protocol.HOOK_RESPONSE: hook_response or "",
        },
        confdir=confdir,
        insecure_upstream=insecure_upstream,
        mitmdump=mitmdump,
        on_line=report.line,
    )
    code = asyncio.run(
        _supervise(proxy, command, forward=target is None, upstream=target, cassette=cassette)
    )
    for line in report.summary(cassette):
        click.echo(line, err=True)
    if not code and report.lost:
        code = 1
    if code:
        ctx.exit(code)
