"""The generated Envoy bootstrap passes `envoy --mode validate` and wires ext_proc as spec §2.2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyllmd.stack.envoy import envoy_bootstrap, validate_bootstrap, write_bootstrap


def _filter(bootstrap: dict[str, Any]) -> dict[str, Any]:
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    first: dict[str, Any] = hcm["typed_config"]["http_filters"][0]["typed_config"]
    return first


def _clusters(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}


@pytest.mark.parametrize("tls", [True, False])
def test_bootstrap_is_valid_for_envoy(tmp_path: Path, tls: bool) -> None:
    bootstrap = envoy_bootstrap(18000, 19002, 19901, ext_proc_tls=tls, health_check=tls)
    result = validate_bootstrap(write_bootstrap(tmp_path / "envoy.yaml", bootstrap))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
    assert ("transport_socket" in _clusters(bootstrap)["ext_proc"]) is tls


def test_envoy_rejects_a_broken_bootstrap(tmp_path: Path) -> None:
    bootstrap = envoy_bootstrap(18000, 19002, 19901)
    _filter(bootstrap)["processing_mode"]["request_body_mode"] = "SIDEWAYS"
    result = validate_bootstrap(write_bootstrap(tmp_path / "envoy.yaml", bootstrap))
    assert result.returncode != 0


def test_bootstrap_matches_the_sample_wiring() -> None:
    bootstrap = envoy_bootstrap(18000, 19002, 19901)
    ext_proc = _filter(bootstrap)
    assert ext_proc["processing_mode"] == {
        "request_header_mode": "SEND",
        "response_header_mode": "SEND",
        "request_body_mode": "FULL_DUPLEX_STREAMED",
        "response_body_mode": "FULL_DUPLEX_STREAMED",
        "request_trailer_mode": "SEND",
        "response_trailer_mode": "SEND",
    }
    assert ext_proc["metadata_options"] == {"receiving_namespaces": {"untyped": ["envoy.lb"]}}
    upstream = _clusters(bootstrap)["original_destination_cluster"]
    assert (upstream["type"], upstream["lb_policy"]) == ("ORIGINAL_DST", "CLUSTER_PROVIDED")
    assert upstream["original_dst_lb_config"]["http_header_name"] == (
        "x-gateway-destination-endpoint"
    )
    admin = bootstrap["admin"]["address"]["socket_address"]
    listener = bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert admin["address"] == listener["address"] == "127.0.0.1"
