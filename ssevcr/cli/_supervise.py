"""What ``ssevcr record`` and ``ssevcr replay`` share as long-running commands: ``--listen``,
the warning for an address other machines can reach, SIGINT/SIGTERM, and ``-- CMD``.

- ``-- CMD``: everything after the first ``--`` is the command (:class:`SupervisingCommand`).
- Signals (:class:`Stop`): SIGINT and SIGTERM are caught from before anything starts, so a
  signal at any moment stops the command cleanly; the caller then stops its servers in order.
- The command (:func:`run_command`) runs in our process group, so the terminal's Ctrl-C
  reaches it directly; other signals are passed on to it. It gets ``GRACE`` seconds to exit after
  a signal, then SIGTERM; a second signal kills it. Its exit code comes back (128+N when a
  signal N ended it). A helper that dies meanwhile (``watch`` returns why) stops it too.

It only supervises: the servers are the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterable, Sequence

import click

from .._errors import SsevcrError

__all__ = [
    "GRACE",
    "Stop",
    "SupervisingCommand",
    "exit_code",
    "exposure_warning",
    "parse_listen",
    "proxy_env",
    "run_command",
    "wait_until_stopped",
]

GRACE = 5.0
"""Seconds the command gets to exit after a signal, before it is sent SIGTERM."""

Watch = Callable[[], str | None]
"""Returns why a supervised helper (mitmdump) is gone, or None while it runs."""


class SupervisingCommand(click.Command):
    """A click command that takes everything after the first ``--`` as the command to run
    (``ctx.meta["ssevcr_command"]``, a list; empty without ``--``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        command: list[str] = []
        if "--" in args:
            at = args.index("--")
            command = args[at + 1 :]
            if not command:
                raise click.UsageError("nothing to run after --", ctx=ctx)
            args = args[:at]
        ctx.meta["ssevcr_command"] = command
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- CMD ...]"]


def proxy_env(proxy_url: str, ca_cert: str, base: dict[str, str]) -> dict[str, str]:
    """``base`` plus what points a command's HTTP clients at a forward proxy that intercepts
    HTTPS with its own CA: the proxy variables and the CA bundle variables."""
    env = dict(base)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = proxy_url
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE"):
        env[name] = ca_cert
    return env


def parse_listen(value: str, param_hint: str = "--listen") -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT``, ``:PORT`` or ``PORT`` (port 0 picks a free one)."""
    text = value.strip()
    host, port_text = "127.0.0.1", text
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise click.BadParameter(f"{value!r}: expected [IPV6]:PORT", param_hint=param_hint)
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        host = host or "127.0.0.1"
    if not (port_text.isascii() and port_text.isdigit()):
        raise click.BadParameter(f"{value!r}: expected HOST:PORT", param_hint=param_hint)
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise click.BadParameter(f"{value!r}: port must be 0-65535", param_hint=param_hint)
    return host, port


def _loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def exposure_warning(what: str, addresses: Iterable[str]) -> str | None:
    """The warning for listening where other machines can connect (None on loopback only)."""
    exposed = [a for a in dict.fromkeys(addresses) if not _loopback(a)]
    if not exposed:
        return None
    everywhere = any(a in ("", "0.0.0.0", "::") for a in exposed)
    where = "on every network interface" if everywhere else "on " + ", ".join(exposed)
    return (
        f"Warning: {what} listens {where}: anyone who can reach this machine can use it "
        "(and read what it serves). Use --listen 127.0.0.1:PORT unless you mean it."
    )


def exit_code(returncode: int) -> int:
    """A child's exit code as a shell reports it: 128+N when signal N ended it."""
    return returncode if returncode >= 0 else 128 - returncode


class Stop:
    """SIGINT/SIGTERM while the loop runs: remembered in order, and they wake the waiters."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signals: list[int] = []
        self.event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> Stop:
        self._loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            self._loop.add_signal_handler(sig, self._handle, sig)
        return self

    def _handle(self, sig: int) -> None:
        self.signals.append(sig)
        self.event.set()

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        for sig in self.SIGNALS:
            self._loop.remove_signal_handler(sig)

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a signal; True when one came (and is not yet handled)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        return self.event.is_set()


async def wait_until_stopped(stop: Stop, watch: Watch | None = None) -> None:
    """Serve until SIGINT/SIGTERM; raises SsevcrError if the ``watch``ed helper dies first."""
    while not await stop.wait(0.2):
        problem = watch() if watch is not None else None
        if problem:
            raise SsevcrError(problem)


async def run_command(
    command: Sequence[str], env: dict[str, str], stop: Stop, watch: Watch | None = None
) -> int:
    """Run CMD until it exits (see the module); returns its exit code, or 1 when the watched
    helper died first (the command is stopped then)."""
    if stop.signals:  # stopped before the command could start
        return 128 + stop.signals[0]
    try:
        child = await asyncio.create_subprocess_exec(*command, env=env)
    except OSError as e:
        raise click.ClickException(f"cannot run {command[0]!r}: {e.strerror or e}") from None
    waiting = asyncio.ensure_future(child.wait())
    handled = 0
    deadline: float | None = None
    loop = asyncio.get_running_loop()
    while not waiting.done():
        stopping = asyncio.ensure_future(stop.event.wait())
        await asyncio.wait([waiting, stopping], timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if waiting.done():
            break
        if stop.event.is_set():
            stop.event.clear()
            with contextlib.suppress(ProcessLookupError):
                for sig in stop.signals[handled:]:
                    if sig != signal.SIGINT:  # SIGINT: the terminal sent it to CMD too
                        child.send_signal(sig)
                if len(stop.signals) > 1:
                    child.kill()  # a second signal: no more waiting
            handled = len(stop.signals)
            if deadline is None:
                deadline = loop.time() + GRACE
        if deadline is not None and loop.time() > deadline:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
            deadline = loop.time() + GRACE
        problem = watch() if watch is not None else None
        if problem:
            click.echo(f"Error: {problem}; stopping the command", err=True)
            await _end(child, waiting)
            return 1
    return exit_code(waiting.result())


async def _end(child: asyncio.subprocess.Process, waiting: asyncio.Future[int]) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.terminate()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiting), GRACE * 2)
    if not waiting.done():
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await waiting
