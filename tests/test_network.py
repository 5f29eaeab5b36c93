"""The network guard (``ssevcr._network``). Every case that aims at a non-loopback address runs in
tests/netns_cases.py, inside ``unshare -n`` (a network namespace whose only interface is
loopback, brought up), started here: nothing can leave the machine even if the guard fails.
The rest here is pure (host lists) or touches no address at all."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import ssevcr
from ssevcr import ConfigError
from ssevcr._network import HostSet, is_loopback

ROOT = Path(__file__).resolve().parent.parent


def _namespace_problem() -> str | None:
    if shutil.which("unshare") is None:
        return "the unshare command is not installed (util-linux)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -n is not permitted here: {probe.stderr.strip() or probe.returncode}"
    return None


def test_the_guard_inside_a_network_namespace() -> None:
    problem = _namespace_problem()
    if problem is not None:
        pytest.skip(f"the network-namespace cases need `unshare -n`: {problem}")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    script = (
        'ip link set lo up 2>/dev/null || true; exec "$0" -m pytest -q -p no:cacheprovider "$1"'
    )
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", script, sys.executable, "tests/netns_cases.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = output.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, output


def test_loopback_names_and_addresses() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "localhost", "a.localhost"):
        assert is_loopback(host), host
    for host in ("192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "example.com", "10.0.0.1"):
        assert not is_loopback(host), host


def test_host_lists() -> None:
    hosts = HostSet.parse(
        ["api.example.com", "*.corp.test", "10.0.0.0/8", "2001:db8::/32"], what="x"
    )
    assert hosts.matches("API.example.com") and hosts.matches("api.example.com.")
    assert hosts.matches("a.b.corp.test") and hosts.matches("corp.test")
    assert not hosts.matches("xcorp.test") and not hosts.matches("example.com")
    assert hosts.matches("10.1.2.3") and hosts.matches("2001:db8::5")
    assert not hosts.matches("11.0.0.1")
    local = HostSet.parse([], what="x", loopback=True)
    assert local.matches("127.0.0.1") and local.matches("localhost") and local.matches("0.0.0.0")
    assert not local.matches("192.0.2.1") and not HostSet().matches("localhost")
    for bad in ("api.example.com:443", "http://x", "", "a b"):
        with pytest.raises(ConfigError, match="bad host"):
            HostSet.parse([bad], what="allowed_hosts")
    with pytest.raises(ConfigError, match="ignore_hosts"):
        ssevcr.use_cassette("x.msgpack", ignore_hosts=["x:1"])


def test_the_socket_methods_are_restored(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    ssevcr.save(ssevcr.Cassette(), path)
    before = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "sendto")}
    getaddrinfo = socket.getaddrinfo
    with ssevcr.use_cassette(path):
        assert socket.socket.connect is not before["connect"]
        server = socket.create_server(("127.0.0.1", 0))  # loopback goes through
        socket.create_connection(server.getsockname()).close()
        server.close()
    assert {name: getattr(socket.socket, name) for name in before} == before
    assert socket.getaddrinfo is getaddrinfo and "connect" not in socket.socket.__dict__
