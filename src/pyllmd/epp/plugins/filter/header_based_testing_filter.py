"""`header-based-testing-filter` (conformance tests): endpoints named by a request header.

The header `test-epp-endpoint-selection` lists comma-separated entries, each an
`IP` or an `IP:port` (IPv6 bracketed with a port, `[fd00::1]:8000`, or bare
without one). As upstream's filter at the pinned GIE revision:

* an `IP:port` entry keeps exactly that endpoint;
* a bare `IP` keeps one endpoint of that IP: the last of the candidates with it;
* the result follows the header's order and holds at most one endpoint per IP
  (a later entry naming an IP already kept adds nothing);
* an absent or blank header keeps nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest

TYPE = "header-based-testing-filter"
HEADER = "test-epp-endpoint-selection"


def split_host_port(entry: str) -> tuple[str, str] | None:
    """Go's `net.SplitHostPort`: (host, port), or None when `entry` is not host:port."""
    colon = entry.rfind(":")
    if colon < 0:
        return None
    start, after = 0, 0  # where a stray '[' resp. ']' may no longer appear
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0 or end + 1 != colon:  # no ']', or it is not right before the last ':'
            return None
        host, start, after = entry[1:end], 1, end + 1
    else:
        host = entry[:colon]
        if ":" in host:  # an IPv6 address without brackets
            return None
    if "[" in entry[start:] or "]" in entry[after:]:
        return None
    return host, entry[colon + 1 :]


def _ip(address: str) -> str:
    return address.strip().strip("[]")


class HeaderBasedTestingFilter(PluginBase):
    """Keeps the endpoints the header names, in its order (module doc)."""

    TYPE = TYPE

    def filter(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> list[Endpoint]:
        value = request.headers.get(HEADER, "")
        if not value.strip():
            return []
        by_ip: dict[str, Endpoint] = {}
        by_host_port: dict[str, Endpoint] = {}
        for endpoint in endpoints:
            ip = _ip(endpoint.address)
            if ip:
                by_ip[ip] = endpoint  # the last endpoint of an IP wins
                by_host_port[f"{ip}:{endpoint.port}"] = endpoint
        kept: list[Endpoint] = []
        seen: set[str] = set()
        for entry in (part.strip() for part in value.split(",")):
            if not entry:
                continue
            split = split_host_port(entry)
            host, port = split if split is not None else (entry, "")
            host = _ip(host)
            chosen = by_host_port.get(f"{host}:{port}") if port else by_ip.get(host)
            if chosen is not None and (ip := _ip(chosen.address)) not in seen:
                seen.add(ip)
                kept.append(chosen)
        return kept


def factory(name: str, raw: Any, handle: Handle) -> HeaderBasedTestingFilter:
    """No parameters."""
    return HeaderBasedTestingFilter(name)
