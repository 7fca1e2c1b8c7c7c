"""Label selector strings (WVA_NODE_SELECTOR) as Kubernetes parses and matches them."""

from __future__ import annotations

import pytest

from pyllmd.autoscaler.kube.selector import parse_label_selector, selector_matches

LABELS = {"wva.llmd.ai/shard": "a", "gpu": "h100", "count": "4"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("wva.llmd.ai/shard=a", True),
        ("wva.llmd.ai/shard==b", False),
        ("gpu!=a100", True),
        ("missing!=x", True),
        ("gpu in (a100, h100)", True),
        ("gpu notin (h100)", False),
        ("gpu,!cordoned", True),
        ("!gpu", False),
        ("count>3,count<5", True),
        ("count>4", False),
        ("wva.llmd.ai/shard=a, gpu in (h100,l40s), count", True),
    ],
)
def test_parse_and_match(text: str, matches: bool) -> None:
    assert selector_matches(parse_label_selector(text), LABELS) is matches


@pytest.mark.parametrize(
    "text",
    ["a in (b", "=x", "a=b=c", "-a=b", "a=" + "x" * 64, "a,,b", "UPPER.example/x=y", "a>b", "a b"],
)
def test_invalid(text: str) -> None:
    with pytest.raises(ValueError):
        parse_label_selector(text)


def test_value_of_63_chars_is_valid() -> None:
    assert parse_label_selector("a=" + "x" * 63)[0].values == ("x" * 63,)
