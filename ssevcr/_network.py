"""The network guard: while a cassette replays (record mode ``none``, or ``once`` with the file
there), no connection leaves the machine, whatever client makes it.

    with ssevcr.use_cassette("x.msgpack"):
        socket.create_connection(("192.0.2.1", 443))
        # NetworkBlockedError: network blocked while replaying cassette 'x.msgpack': 192.0.2.1:443

It works at the socket level, as pytest-recording's ``block_network`` does: ``connect``,
``connect_ex``, ``sendto`` and ``sendmsg`` of ``socket.socket`` (so also ``ssl.SSLSocket``,
asyncio's ``sock_connect``, urllib3, http.client, raw sockets, other libraries) check the address
first and raise :class:`~ssevcr._errors.NetworkBlockedError` *before* connecting; the socket is
closed. Allowed: loopback addresses (127.0.0.0/8, ::1, ``localhost``), Unix sockets, the
cassette's ``allowed_hosts`` and ``ignore_hosts`` (names match the address they resolved to:
``getaddrinfo`` is watched, never changed). Each refusal is also kept on the cassette
(``ActiveCassette.blocked``), so a test whose client swallowed the error, or whose background
thread made the connection, can still fail at teardown (see :func:`report`).

Which cassette decides: the one that answers the calling thread or task (``active()``); a thread
with none (a plain thread, a pool worker) is refused while any open cassette replays, in the
name of the latest one. A cassette that records (``once`` without the file, ``new_episodes``,
``all``) lets connections through.

Not covered: code that connects outside Python's socket objects (C extensions with their own
sockets, uvloop's TCP connect, subprocesses); in-process clients are answered before they connect.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError, NetworkBlockedError

if TYPE_CHECKING:
    from ._intercept import ActiveCassette

__all__ = ["HostSet", "install", "is_loopback", "report", "uninstall"]

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_NAMES_KEPT = 4096  # addresses remembered with the name they were resolved from


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(host: str) -> bool:
    """``localhost`` and the loopback addresses (127.0.0.0/8, ::1, IPv4-mapped forms)."""
    lowered = host.lower().rstrip(".")
    if lowered in _LOCAL_NAMES or lowered.endswith(".localhost"):
        return True
    address = _address(lowered)
    return address is not None and address.is_loopback


@dataclass(frozen=True, slots=True)
class HostSet:
    """Hosts named by a user: exact names, ``*.example.com`` (the domain and its subdomains),
    addresses and networks (``10.0.0.0/8``), and with ``loopback`` every loopback name and
    address plus ``0.0.0.0`` (vcrpy's ``ignore_localhost``)."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    loopback: bool = False

    @classmethod
    def parse(cls, items: Iterable[str] | str, *, what: str, loopback: bool = False) -> HostSet:
        if isinstance(items, str):
            items = [items]
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in items:
            item = str(raw).strip().lower().rstrip(".")
            if not item or (any(c in item for c in " /\\:@") and not _is_network(item)):
                raise ConfigError(
                    f"bad host {raw!r} in {what}: expected a name (api.example.com), "
                    "*.example.com, an address or a network (10.0.0.0/8), without a port"
                )
            if item.startswith("*."):
                suffixes.append(item[1:])
            elif _is_network(item):
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            else:
                names.add(item)
        return cls(frozenset(names), tuple(suffixes), tuple(networks), loopback)

    def __bool__(self) -> bool:
        return bool(self.names or self.suffixes or self.networks or self.loopback)

    def matches(self, host: str) -> bool:
        """Whether ``host`` (a name or an address) is one of these."""
        if not self:
            return False
        lowered = host.lower().rstrip(".")
        if self.loopback and (is_loopback(lowered) or lowered in ("0.0.0.0", "::")):
            return True
        if lowered in self.names:
            return True
        if any(lowered.endswith(s) or lowered == s[1:] for s in self.suffixes):
            return True
        if self.networks:
            address = _address(lowered)
            if address is not None:
                return any(address in n for n in self.networks)
            return False
        return False


def _is_network(item: str) -> bool:
    try:
        ipaddress.ip_network(item.strip("[]"), strict=False)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# names seen resolving: the guard names what the client asked for, and allowed names match


_names: OrderedDict[str, str] = OrderedDict()  # address -> the name it was resolved from
_names_lock = threading.Lock()


def _remember(host: object, result: list[Any]) -> None:
    if not isinstance(host, str | bytes) or not result:
        return
    name = host.decode("idna", "replace") if isinstance(host, bytes) else host
    if _address(name) is not None:
        return
    with _names_lock:
        for info in result:
            sockaddr = info[4]
            if isinstance(sockaddr, tuple) and sockaddr and isinstance(sockaddr[0], str):
                _names[sockaddr[0]] = name
                _names.move_to_end(sockaddr[0])
        while len(_names) > _NAMES_KEPT:
            _names.popitem(last=False)


def _name_of(address: str) -> str | None:
    with _names_lock:
        return _names.get(address)


# ---------------------------------------------------------------------------------------------
# the decision


def _replaying() -> ActiveCassette | None:
    """The cassette in whose name a connection is refused, or None (it may go)."""
    from ._intercept import active, open_cassettes

    cassette = active()
    if cassette is not None:
        return cassette if cassette.mode == "replay" else None
    replaying = [c for c in open_cassettes() if c.mode == "replay" and not c.closed]
    return replaying[-1] if replaying else None


def _refusal(host: str, port: int | None) -> NetworkBlockedError | None:
    if is_loopback(host):
        return None
    cassette = _replaying()
    if cassette is None:
        return None
    name = _name_of(host)
    options = cassette.options
    for candidate in (host, name):
        if candidate is not None and (
            options.allowed_hosts.matches(candidate) or cassette.passes(candidate, port)
        ):
            return None
    where = f"{host}:{port}" if port is not None else host
    if ":" in host and port is not None:
        where = f"[{host}]:{port}"
    if name is not None:
        where = f"{name}:{port} ({host})" if port is not None else f"{name} ({host})"
    message = f"network blocked while replaying cassette {str(cassette.path)!r}: {where}"
    cassette.blocked.append(message)
    return NetworkBlockedError(
        f"{message} (only loopback addresses and allowed_hosts are reachable in record mode "
        "'none'; record with record='once' or pytest --ssevcr-record=once)",
        host=name or host,
        port=port,
    )


def _host_port(family: int, address: Any) -> tuple[str, int | None] | None:
    """Where a socket address points, for the families that reach other machines."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        if isinstance(host, bytes):
            host = host.decode("idna", "replace")
        try:
            port = int(address[1])
        except (TypeError, ValueError):
            port = None
        return str(host), port
    return None


def _check(sock: socket.socket, address: Any) -> None:
    where = _host_port(sock.family, address)
    if where is None:
        return
    error = _refusal(*where)
    if error is not None:
        sock.close()
        raise error


def report(cassette: ActiveCassette, start: int = 0) -> str:
    """What the pytest plugin fails a test with: the connections of its cassette refused from
    the ``start``-th on, once each, or an empty string."""
    lines = list(dict.fromkeys(cassette.blocked[start:]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the patches (installed while any cassette is open; they cost nothing while none replays)

_installed: list[tuple[Any, str, Any, Any]] = []  # (owner, attribute, its own value or None, ours)


def _guard_connect(original: Callable[..., Any]) -> Callable[..., Any]:
    def connect(self: socket.socket, address: Any) -> Any:
        _check(self, address)
        return original(self, address)

    connect.__name__ = getattr(original, "__name__", "connect")
    connect.__doc__ = original.__doc__
    return connect


def _guard_sendto(original: Callable[..., Any]) -> Callable[..., Any]:
    def sendto(self: socket.socket, data: Any, *args: Any) -> Any:
        if args:
            _check(self, args[-1])
        return original(self, data, *args)

    sendto.__doc__ = original.__doc__
    return sendto


def _guard_sendmsg(original: Callable[..., Any]) -> Callable[..., Any]:
    def sendmsg(self: socket.socket, buffers: Any, *args: Any) -> Any:
        if len(args) >= 3 and args[2] is not None:
            _check(self, args[2])
        return original(self, buffers, *args)

    sendmsg.__doc__ = original.__doc__
    return sendmsg


def _watch_getaddrinfo(original: Callable[..., Any]) -> Callable[..., Any]:
    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(host, port, *args, **kwargs)
        _remember(host, result)
        return result

    getaddrinfo.__doc__ = original.__doc__
    return getaddrinfo


def install() -> None:
    if _installed:
        return
    cls = socket.socket
    for attr, wrap in (
        ("connect", _guard_connect),
        ("connect_ex", _guard_connect),
        ("sendto", _guard_sendto),
        ("sendmsg", _guard_sendmsg),
    ):
        ours = wrap(getattr(cls, attr))
        _installed.append((cls, attr, cls.__dict__.get(attr), ours))
        setattr(cls, attr, ours)
    original = socket.getaddrinfo
    _installed.append((socket, "getaddrinfo", original, _watch_getaddrinfo(original)))
    socket.getaddrinfo = _installed[-1][3]


def uninstall() -> None:
    while _installed:
        owner, attr, original, ours = _installed.pop()
        if getattr(owner, attr, None) is ours:  # leave alone what another tool patched over us
            if original is None:
                delattr(owner, attr)  # it was inherited (from _socket.socket)
            else:
                setattr(owner, attr, original)
