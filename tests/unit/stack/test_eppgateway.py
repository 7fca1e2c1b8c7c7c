"""The local stack's `gateway: envoy-epp` choice: stack-file keys, the EPP's pool file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyllmd.core.errors import ConfigError
from pyllmd.epp.config.gateway import DEFAULT_EPP_CONFIG, gateway_settings
from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.config.sections import GATE_FLOW_CONTROL
from pyllmd.epp.datalayer.filesd import parse_endpoints_file
from pyllmd.epp.options import StaticEndpoint, load_options
from pyllmd.stack.eppgateway import EnvoyEppGateway, pool_groups
from pyllmd.stack.localcluster import LocalCluster, parse_local_spec
from pyllmd.stack.run import single_model


def _variant(name: str, model: str) -> dict[str, object]:
    return {
        "variantAutoscaling": {
            "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": name}, "modelID": model},
        },
        "deployment": {"replicas": 0},
    }


def test_gateway_defaults_to_the_stand_in_and_checks_its_keys() -> None:
    assert gateway_settings({}, "s.yaml") == ("builtin", DEFAULT_EPP_CONFIG)
    assert gateway_settings({"gateway": "envoy-epp"}, "s.yaml") == ("envoy-epp", DEFAULT_EPP_CONFIG)
    assert gateway_settings({"gateway": "envoy-epp", "eppConfig": "x: 1"}, "s")[1] == "x: 1"
    for doc, message in (
        ({"gateway": "nginx"}, "s: gateway must be builtin or envoy-epp, not 'nginx'"),
        ({"eppConfig": "x: 1"}, "s: eppConfig needs gateway: envoy-epp"),
        ({"gateway": "envoy-epp", "eppConfig": {"a": 1}}, "s: eppConfig must be"),
    ):
        with pytest.raises(ConfigError) as err:
            gateway_settings(doc, "s")
        assert str(err.value).startswith(message)


def test_default_epp_config_turns_flow_control_on() -> None:
    assert load_config_text(DEFAULT_EPP_CONFIG, {}).enabled(GATE_FLOW_CONTROL)


def test_envoy_epp_needs_a_single_model() -> None:
    one = LocalCluster(parse_local_spec({"variants": [_variant("a", "m"), _variant("b", "m")]}))
    assert single_model(one, "s") == "m"
    two = LocalCluster(parse_local_spec({"variants": [_variant("a", "m"), _variant("b", "n")]}))
    with pytest.raises(ConfigError, match=r"envoy-epp serves exactly one model.*\['m', 'n'\]"):
        single_model(two, "s")


def test_published_pool_is_what_the_epp_reads(tmp_path: Path) -> None:
    pods: list[tuple[str, int, dict[str, str]]] = []
    gw = EnvoyEppGateway(tmp_path, 0, lambda: pool_groups(pods), "llm")
    assert gw.publish() and not gw.publish()  # written once, then only on change
    assert json.loads(gw.endpoints_file.read_text()) == []
    pods += [("127.0.0.1", 9002, {"app": "sim"}), ("127.0.0.1", 9001, {"app": "sim"})]
    assert gw.publish()
    assert parse_endpoints_file(gw.endpoints_file.read_text(), "e.json") == (
        StaticEndpoint("127.0.0.1", 9001, {"app": "sim"}),
        StaticEndpoint("127.0.0.1", 9002, {"app": "sim"}),
    )
    options = load_options(gw.epp_argv()[4:], {})  # the command line the stack runs
    assert options.mode == "file" and options.endpoints_file == str(gw.endpoints_file)
    assert options.pool_namespace == "llm" and not options.metrics_endpoint_auth
    assert gw.metrics_url == f"http://127.0.0.1:{gw.metrics_port}/metrics"
