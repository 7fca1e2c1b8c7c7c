"""Filters: header-based testing, by-label, by-label-selector, prefill/decode (check 52)."""

from __future__ import annotations

import pytest

from pyllmd.epp.plugins.filter import (
    by_label,
    by_label_selector,
    decode_filter,
    header_based_testing_filter,
    prefill_filter,
)
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.types import Endpoint
from tests.unit.epp.plugin_helpers import endpoint, request, state

ROLE = "llm-d.ai/role"


def names(eps: list[Endpoint]) -> list[str]:
    return [ep.name for ep in eps]


def role_endpoints() -> list[Endpoint]:
    return [
        endpoint("p-rank-0", labels={ROLE: "prefill"}),
        endpoint("d-rank-0", labels={ROLE: "decode"}),
        endpoint("b-rank-0", labels={ROLE: "both"}),
        endpoint("u-rank-0"),
        endpoint("x-rank-0", labels={ROLE: "other"}),
    ]


def test_epp_acc_52_decode_and_prefill_filters() -> None:
    eps = role_endpoints()
    decode = decode_filter.factory("decode-filter", None, Handle())
    prefill = prefill_filter.factory("prefill-filter", None, Handle())
    assert names(decode.filter(state(), request(), eps)) == ["d-rank-0", "b-rank-0", "u-rank-0"]
    assert names(prefill.filter(state(), request(), eps)) == ["p-rank-0"]
    assert decode.type_name == "decode-filter" and prefill.type_name == "prefill-filter"


def test_by_label_parameters_and_errors() -> None:
    flt = by_label.factory("bl", {"label": ROLE, "validValues": ["decode"]}, Handle())
    assert names(flt.filter(state(), request(), role_endpoints())) == ["d-rank-0"]
    with pytest.raises(ParamError, match="'label' must be specified"):
        by_label.factory("bl", {"validValues": ["a"]}, Handle())
    with pytest.raises(ParamError, match="either 'validValues' must be non-empty"):
        by_label.factory("bl", {"label": ROLE}, Handle())


def test_by_label_selector_match_labels_and_expressions() -> None:
    raw = {
        "matchLabels": {"app": "vllm"},
        "matchExpressions": [{"key": ROLE, "operator": "NotIn", "values": ["prefill"]}],
    }
    flt = by_label_selector.factory("sel", raw, Handle())
    eps = [
        endpoint("a-rank-0", labels={"app": "vllm", ROLE: "decode"}),
        endpoint("b-rank-0", labels={"app": "vllm", ROLE: "prefill"}),
        endpoint("c-rank-0", labels={"app": "vllm"}),
        endpoint("d-rank-0", labels={"app": "other"}),
    ]
    assert names(flt.filter(state(), request(), eps)) == ["a-rank-0", "c-rank-0"]
    exists = by_label_selector.factory(
        "sel", {"matchExpressions": [{"key": ROLE, "operator": "Exists"}]}, Handle()
    )
    assert names(exists.filter(state(), request(), eps)) == ["a-rank-0", "b-rank-0"]
    everything = by_label_selector.factory("sel", None, Handle())
    assert len(everything.filter(state(), request(), eps)) == 4


def test_by_label_selector_rejects_bad_requirements() -> None:
    with pytest.raises(ParamError, match="not a valid label selector operator"):
        by_label_selector.factory(
            "s", {"matchExpressions": [{"key": "a", "operator": "Is"}]}, Handle()
        )
    with pytest.raises(ParamError, match="values set can't be empty"):
        by_label_selector.factory(
            "s", {"matchExpressions": [{"key": "a", "operator": "In"}]}, Handle()
        )


def test_header_based_testing_filter() -> None:
    flt = header_based_testing_filter.factory("h", None, Handle())
    eps = [endpoint("a-rank-0", "10.0.0.1"), endpoint("b-rank-0", "10.0.0.2")]
    hdr = {"test-epp-endpoint-selection": "10.0.0.2, 10.0.0.9,10.0.0.1"}
    assert names(flt.filter(state(), request(headers=hdr), eps)) == ["b-rank-0", "a-rank-0"]
    assert flt.filter(state(), request(), eps) == []


HEADER = "test-epp-endpoint-selection"
RANKS = [  # two pods, the first with two ports (data-parallel ranks), one IPv6 pod
    endpoint("a-rank-0", "10.0.0.1", 8000),
    endpoint("a-rank-1", "10.0.0.1", 8001),
    endpoint("b-rank-0", "10.0.0.2", 8000),
    endpoint("c-rank-0", "fd00::1", 8000),
]


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("10.0.0.1:8001", ["a-rank-1"]),  # ip:port: exactly that endpoint
        ("10.0.0.1:8000", ["a-rank-0"]),
        ("10.0.0.1:9999", []),  # no endpoint on that port
        ("10.0.0.1", ["a-rank-1"]),  # a bare IP keeps one endpoint: the last with that IP
        ("10.0.0.2,10.0.0.1:8000", ["b-rank-0", "a-rank-0"]),  # header order
        ("10.0.0.1:8000,10.0.0.1:8001", ["a-rank-0"]),  # one endpoint per IP
        ("10.0.0.1:8000,10.0.0.1", ["a-rank-0"]),
        ("[fd00::1]:8000", ["c-rank-0"]),
        ("fd00::1", ["c-rank-0"]),
        ("[fd00::1]", ["c-rank-0"]),
        ("[fd00::1]:8001", []),
        ("10.0.0.1:", ["a-rank-1"]),  # empty port: an IP-only entry, as Go splits it
        (" , ,", []),
        ("   ", []),
    ],
)
def test_header_filter_matches_ip_port_exactly_and_keeps_one_endpoint_per_ip(
    value: str, kept: list[str]
) -> None:
    flt = header_based_testing_filter.factory("h", None, Handle())
    assert names(flt.filter(state(), request(headers={HEADER: value}), RANKS)) == kept


@pytest.mark.parametrize(
    ("entry", "split"),
    [
        ("10.0.0.1:80", ("10.0.0.1", "80")),
        ("[fd00::1]:80", ("fd00::1", "80")),
        ("host:", ("host", "")),
        ("10.0.0.1", None),  # missing port
        ("fd00::1", None),  # too many colons
        ("[fd00::1]", None),
        ("[fd00::1]x:80", None),
        ("a[b:80", None),
        ("a]:80", None),
    ],
)
def test_split_host_port_follows_go(entry: str, split: tuple[str, str] | None) -> None:
    assert header_based_testing_filter.split_host_port(entry) == split
