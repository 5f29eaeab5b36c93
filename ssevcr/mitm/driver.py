"""Run mitmdump as a child process with an ssevcr addon file, and talk to it.

mitmproxy lives where it can: on Python 3.11 mitmproxy 11 (h11 <= 0.14) cannot share an
environment with httpx2 (h11 >= 0.16), so ssevcr never imports mitmproxy itself. It starts
``mitmdump -s <addon file>``, found in this order: an explicit path (``--mitmdump``), the
``SSEVCR_MITMDUMP`` environment variable, mitmproxy importable in this interpreter, ``mitmdump``
on PATH. The child finds ssevcr through ``scripts/_ssevcr_import.py``, loaded first (this very
package, never a site-packages directory), so any addon file can import it.

:class:`Mitmdump` starts the child, waits for the addon's ready line (bound address, CA path),
passes the addon's progress lines to a callback, and stops it cleanly (SIGTERM, so the addon
saves what is finished); if mitmdump cannot start it raises one clear error (port taken, bad
option) instead of mitmproxy's log. The child reads nothing but its stdin, which closes when the
launcher dies, so it never outlives us. Any addon file that includes
:class:`ssevcr.mitm.announce.Announce` can be launched this way (the recorder, a replay proxy).

This module must not import mitmproxy, httpx or click.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from .._errors import ConfigError, SsevcrError
from .protocol import LENT, READY, lent_variable, parse_line

__all__ = [
    "RECORD_ADDON",
    "REPLAY_PROXY_ADDON",
    "Mitmdump",
    "Ready",
    "check_upstream",
    "locate_mitmdump",
]

SCRIPTS = Path(__file__).resolve().parent / "scripts"
RECORD_ADDON = SCRIPTS / "record.py"
"""The recording addon, as mitmdump loads it (``mitmdump -s RECORD_ADDON``)."""
REPLAY_PROXY_ADDON = SCRIPTS / "replay_proxy.py"
"""The ``ssevcr replay --proxy`` addon."""
_IMPORT_SHIM = SCRIPTS / "_ssevcr_import.py"

INSTALL_HINT = (
    "mitmdump not found. Install the recording extra: pip install 'ssevcr[record]' "
    "(Python >= 3.12), or install mitmproxy in its own environment (pipx install mitmproxy, or a "
    "venv with mitmproxy>=11.0.2) and point ssevcr at it with "
    "SSEVCR_MITMDUMP=/path/to/mitmdump or --mitmdump PATH"
)


def locate_mitmdump(explicit: str | os.PathLike[str] | None = None) -> list[str]:
    """The command (argv prefix) that runs mitmdump; raises a clear error when there is none."""
    if explicit:
        path = os.fspath(explicit)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            found = shutil.which(path)
            if found is None:
                raise ConfigError(f"--mitmdump {path!r} is not an executable file")
            path = found
        return [path]
    env = os.environ.get("SSEVCR_MITMDUMP")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise ConfigError(f"SSEVCR_MITMDUMP={env!r} is not an executable file")
        return [env]
    import importlib.util

    if importlib.util.find_spec("mitmproxy") is not None:
        return [sys.executable, "-c", "from mitmproxy.tools.main import mitmdump; mitmdump()"]
    found = shutil.which("mitmdump")
    if found:
        return [found]
    raise SsevcrError(INSTALL_HINT)


def check_upstream(url: str) -> str:
    """Validate a reverse-proxy upstream (scheme, host, optional port, no path); returns it
    normalised without a trailing slash, or raises ConfigError with one clear line."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"bad upstream URL {url!r}: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"bad upstream URL {url!r}: expected http:// or https://")
    if not parts.hostname:
        raise ConfigError(f"bad upstream URL {url!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"bad upstream URL {url!r}: give only scheme, host and port (clients keep their own "
            "path, e.g. base URL http://127.0.0.1:PORT/v1)"
        )
    if parts.username or parts.password:
        raise ConfigError(f"bad upstream URL {url!r}: credentials in the URL are not supported")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


@dataclass(frozen=True, slots=True)
class Ready:
    """What the addon announced once mitmproxy listened."""

    pid: int
    host: str
    port: int
    mode: tuple[str, ...]
    confdir: str
    ca_cert: str
    mitmproxy: str

    @property
    def url(self) -> str:
        """The proxy URL (forward mode) or base URL (reverse mode) for clients on this machine
        (an address bound on every interface is reached through 127.0.0.1)."""
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def bound_url(self) -> str:
        """The address mitmproxy really bound, as a URL (``http://0.0.0.0:8080``: every
        interface)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


_TIMESTAMP = re.compile(r"^\[\d\d:\d\d:\d\d(?:\.\d+)?\]\s*")


def _explain_failure(lines: Sequence[str], host: str, port: int) -> str:
    """One clear line from mitmdump's startup output."""
    text = "\n".join(lines)
    if (
        "address already in use" in text.lower()
        or "errno 98" in text.lower()
        or "errno 48" in text.lower()
    ):
        return (
            f"cannot listen on {host}:{port}: address already in use "
            "(choose another with --listen HOST:PORT; port 0 picks a free one)"
        )
    if "permission denied" in text.lower() and "listen" in text.lower():
        return f"cannot listen on {host}:{port}: permission denied"
    script_failed = "error in script" in text
    m = re.search(r"Invalid proxy mode specification: (.*)", text)
    if m:
        return f"mitmdump refused the proxy mode: {m.group(1).strip()}"
    useful = [
        _TIMESTAMP.sub("", ln).strip()
        for ln in lines
        if ln.strip()
        and "logged during startup" not in ln
        and not ln.startswith((" ", "\t", "Traceback"))
    ]
    if useful:
        last = useful[-1]
        if script_failed:
            return f"the ssevcr addon failed to load in mitmdump: {last}"
        return f"mitmdump could not start: {last}"
    return "mitmdump exited before it was ready (no output)"


class Mitmdump:
    """One mitmdump child running an addon file.

    ``mode`` is a mitmproxy mode (``regular``, ``reverse:https://api.openai.com``), ``options``
    extra ``--set`` options (a list value is set once per item). Use as a context manager, or
    call :meth:`start` and :meth:`stop`. ``on_line(prefix, info)`` receives the addon's
    machine-readable lines after the ready line; other output goes to ``log`` (stderr).
    """

    def __init__(
        self,
        addon: str | os.PathLike[str] = RECORD_ADDON,
        *,
        mode: str = "regular",
        listen_host: str = "127.0.0.1",
        listen_port: int = 8080,
        options: Mapping[str, str | bool | int | Sequence[str]] | None = None,
        confdir: str | os.PathLike[str] | None = None,
        insecure_upstream: bool = False,
        mitmdump: str | os.PathLike[str] | None = None,
        on_line: Callable[[str, dict[str, Any]], None] | None = None,
        log: Callable[[str], None] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.command = locate_mitmdump(mitmdump)
        self.addon = Path(addon).resolve()
        self.mode = mode
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.options = dict(options or {})
        self.confdir = os.fspath(Path(confdir).expanduser().resolve()) if confdir else None
        self.insecure_upstream = insecure_upstream
        self.on_line = on_line
        self.log = log if log is not None else _stderr
        self.extra_args = list(extra_args)
        self.ready: Ready | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._ready_event = threading.Event()
        self._startup_output: collections.deque[str] = collections.deque(maxlen=200)
        self._reader: threading.Thread | None = None
        self._stopping = False

    # -- command line ----------------------------------------------------------------------

    def argv(self) -> list[str]:
        args = [
            *self.command,
            "--quiet",
            "--mode",
            self.mode,
            "--listen-host",
            self.listen_host,
            "--listen-port",
            str(self.listen_port),
            "-s",
            str(_IMPORT_SHIM),
            "-s",
            str(self.addon),
            "--set",
            "termlog_verbosity=warn",
            "--set",
            "flow_detail=0",
            "--set",
            "ssevcr_exit_on_eof=true",
        ]
        if self.confdir:
            args += ["--set", f"confdir={self.confdir}"]
        if self.insecure_upstream:
            args += ["--set", "ssl_insecure=true"]
        for name, value in self.options.items():
            values: Sequence[Any] = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                if isinstance(v, bool):
                    v = "true" if v else "false"
                args += ["--set", f"{name}={v}"]
        return [*args, *self.extra_args]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # mitmdump may be another Python's: only its own packages
        for name in LENT:  # for a mitmdump without them: see scripts/_ssevcr_import.py
            folder = _package_folder(name)
            if folder:
                env[lent_variable(name)] = folder
        env.pop("PYTEST_CURRENT_TEST", None)  # mitmproxy changes its logging inside pytest
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("PYTHONIOENCODING", "utf-8")
        return env

    # -- life cycle ------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Ready:
        """Launch mitmdump and wait for its ready line; raises SsevcrError if it cannot start."""
        if self.process is not None:
            raise RuntimeError("already started")
        try:
            self.process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,  # Ctrl-C reaches us; we stop mitmdump in order
            )
        except OSError as e:
            raise SsevcrError(
                f"cannot run mitmdump ({' '.join(self.command)}): {e.strerror or e}"
            ) from None
        self._reader = threading.Thread(
            target=self._read, name="ssevcr-mitmdump-output", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready_event.wait(0.05):
            if self.process.poll() is not None:
                self._reader.join(2.0)
                if self._ready_event.is_set():
                    break
                lines = list(self._startup_output)
                raise ConfigError(_explain_failure(lines, self.listen_host, self.listen_port))
            if time.monotonic() > deadline:
                lines = list(self._startup_output)
                self.stop()
                tail = f" (last output: {lines[-1].strip()})" if lines else ""
                raise SsevcrError(f"mitmdump did not become ready within {timeout:g} s{tail}")
        assert self.ready is not None
        return self.ready

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            parsed = parse_line(line)
            if parsed is not None:
                prefix, info, rest = parsed
                if prefix == READY:
                    if self.ready is None:  # later ones: mitmproxy reloaded the addon file
                        self.ready = _ready_from(info, self.listen_host, self.listen_port)
                        self._ready_event.set()
                elif self.on_line is not None:
                    try:
                        self.on_line(prefix, info)
                    except Exception as e:  # a broken callback must not stop draining the pipe
                        self.log(f"ssevcr: progress callback failed: {e}")
                line = rest
                if not line.strip():
                    continue
            if self.ready is None:
                self._startup_output.append(line)
            elif line.strip() and not self._stopping:
                # (once asked to stop, mitmproxy may print tracebacks of cancelled connections)
                self.log(line)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for mitmdump to exit; its exit code, or None on timeout."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """Ask mitmdump to shut down (SIGTERM: finished exchanges are saved), kill it if it
        does not within ``timeout``; returns its exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            self._stopping = True
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(5.0)
        return proc.returncode

    def __enter__(self) -> Mitmdump:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _package_folder(name: str) -> str | None:
    """Where this Python would import the package ``name`` from (without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.fspath(next(iter(spec.submodule_search_locations)))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _ready_from(info: dict[str, Any], host: str, port: int) -> Ready:
    listen = info.get("listen") or []
    # prefer the address we asked for; IPv4 first
    chosen = (
        next((a for a in listen if a[0] == host), None)
        or next((a for a in listen if ":" not in str(a[0])), None)
        or (listen[0] if listen else [host, port])
    )
    return Ready(
        pid=int(info.get("pid", 0)),
        host=str(chosen[0]),
        port=int(chosen[1]),
        mode=tuple(info.get("mode") or ()),
        confdir=str(info.get("confdir", "")),
        ca_cert=str(info.get("ca_cert", "")),
        mitmproxy=str(info.get("mitmproxy", "")),
    )
