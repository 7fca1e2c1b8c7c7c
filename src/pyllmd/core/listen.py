"""Listening addresses: host syntax, a trial bind at start-up, and free loopback ports.

Servers are started by libraries (grpc, aiohttp) whose bind failures are not
one clear line naming the flag: grpc also writes its own log line to stderr,
and aiohttp's message names neither the flag nor the cause plainly. A trial
bind just before the real one turns the common failures (port in use, address
not on this host, unresolvable host) into one line that names the flag.
The local stack and the tests place their children on free loopback ports.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket

__all__ = ["LOOPBACK", "bind_error", "free_port", "host_error"]

LOOPBACK = "127.0.0.1"
"""Where local children (pods, Prometheus, Envoy, the EPP) listen: never beyond this host."""

_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def host_error(host: str) -> str | None:
    """Why `host` is neither an IP address nor a host name, or None when it is one."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(host):
        return None
    return f"{host!r} is not an IP address or host name"


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_error(
    host: str, port: int, port_flag: str, host_flag: str = "--bind-address"
) -> str | None:
    """One line naming the flag at fault when `host:port` cannot be listened on, else None.

    `host` "" means every interface. The trial socket sets SO_REUSEADDR, as
    the servers do, and never SO_REUSEPORT: a port another process listens on
    is refused rather than shared.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as err:
        reason = err.strerror if isinstance(err, socket.gaierror) else str(err)
        return f"{host_flag}: cannot resolve {host!r}: {reason}"
    family, kind, proto, _, address = infos[0]
    shown = _show(host or str(address[0]), port)
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as err:
            reason = (err.strerror or str(err)).lower()
            if err.errno == errno.EADDRNOTAVAIL:
                return f"{host_flag}: cannot listen on {shown}: {reason}"
            return f"{port_flag}: cannot listen on {shown}: {reason}"
    return None


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on `host` right now (the OS picks it; a child binds it next)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
