"""Listening-address checks: host syntax and the trial bind that names the flag at fault."""

from __future__ import annotations

import socket

import pytest

from pyllmd.core.listen import bind_error, host_error


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::1", "localhost", "epp.svc.local"])
def test_addresses_and_host_names_are_accepted(host: str) -> None:
    assert host_error(host) is None


@pytest.mark.parametrize("host", ["not a host", "a..b", "-x", "1.2.3.4:80", "x\n", "[::1]"])
def test_anything_else_is_refused(host: str) -> None:
    assert host_error(host) == f"{host!r} is not an IP address or host name"


def test_a_free_port_binds_and_a_busy_one_names_the_port_flag() -> None:
    assert bind_error("127.0.0.1", 0, "--grpc-port") is None
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert bind_error("127.0.0.1", port, "--grpc-port") == (
            f"--grpc-port: cannot listen on 127.0.0.1:{port}: address already in use"
        )


def test_an_address_not_on_this_host_names_the_address_flag() -> None:
    error = bind_error("192.0.2.1", 0, "--grpc-port")  # TEST-NET-1: never a local address
    assert error == "--bind-address: cannot listen on 192.0.2.1:0: cannot assign requested address"
