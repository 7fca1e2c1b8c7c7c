"""Service classes from `service-classes-config` (spec §2.3, §5.3)."""

from __future__ import annotations

import pytest

from pyllmd.autoscaler.decide.analyze.queueing import (
    DEFAULT_CLASS_NAME,
    ModelSlo,
    Targets,
)
from pyllmd.autoscaler.yaml12 import parse_service_classes

# The shape upstream ships in deploy/configmap-serviceclass.yaml.
SHIPPED = {
    "premium.yaml": """\
name: Premium
priority: 1
data:
  - model: default/default
    slo-tpot: 24
    slo-ttft: 500
  - model: meta/llama0-70b
    slo-tpot: 80
    slo-ttft: 500
""",
    "freemium.yaml": """\
name: Freemium
priority: 10
data:
  - model: ibm/granite-13b
    slo-tpot: 200
    slo-ttft: 2000
""",
}


def test_shipped_config_map() -> None:
    parsed = parse_service_classes(SHIPPED)
    assert parsed.errors == ()
    assert sorted(parsed.classes) == ["Free", "Freemium", "Premium"]
    premium = parsed.classes["Premium"]
    assert premium.priority == 1
    assert premium.models["meta/llama0-70b"] == ModelSlo(slo_tpot_ms=80, slo_ttft_ms=500)
    assert premium.targets_for("default/default") == Targets(ttft_ms=500, itl_ms=24)
    assert premium.targets_for("ibm/granite-13b") is None
    assert parsed.classes["Freemium"].priority == 10


def test_default_class_is_free_with_lowest_priority() -> None:
    parsed = parse_service_classes({})
    assert DEFAULT_CLASS_NAME == "Free"
    free = parsed.get("")
    assert free is not None
    assert free.name == "Free"
    assert free.priority == 100
    assert free.models == {}
    assert parsed.get("Premium") is None


def test_config_map_may_define_free() -> None:
    parsed = parse_service_classes(
        {"free.yaml": "name: Free\npriority: 50\ndata:\n  - {model: m, slo-tpot: 9, slo-ttft: 90}"}
    )
    free = parsed.get()
    assert free is not None
    assert free.priority == 50
    assert free.targets_for("m") == Targets(ttft_ms=90, itl_ms=9)


@pytest.mark.parametrize(
    ("priority", "want"),
    [("1", 1), ("100", 100), ("0", 100), ("101", 100), ("-3", 100), ("null", 100)],
)
def test_priority_range(priority: str, want: int) -> None:
    parsed = parse_service_classes({"c.yaml": f"name: C\npriority: {priority}\n"})
    assert parsed.errors == ()
    assert parsed.classes["C"].priority == want


def test_missing_priority_is_lowest() -> None:
    assert parse_service_classes({"c.yaml": "name: C\n"}).classes["C"].priority == 100


def test_missing_slo_means_no_target() -> None:
    parsed = parse_service_classes({"c.yaml": "name: C\ndata:\n  - model: m\n    slo-tpot: 30\n"})
    assert parsed.classes["C"].targets_for("m") == Targets(ttft_ms=0, itl_ms=30)


@pytest.mark.parametrize(
    "text",
    [
        "name: [unclosed",
        "- just a list",
        "priority: 3",
        "name: C\npriority: high",
        "name: C\ndata: {model: m}",
        "name: C\ndata:\n  - slo-tpot: 3",
        "name: C\ndata:\n  - {model: m, slo-tpot: -1}",
        "name: C\ndata:\n  - {model: m, slo-ttft: fast}",
    ],
)
def test_bad_entry_is_skipped_and_reported(text: str) -> None:
    parsed = parse_service_classes({"bad.yaml": text, **SHIPPED})
    assert "Premium" in parsed.classes
    assert "C" not in parsed.classes
    assert len(parsed.errors) == 1
    assert parsed.errors[0].startswith("bad.yaml: ")


def test_duplicate_class_first_sorted_key_wins() -> None:
    parsed = parse_service_classes(
        {"b.yaml": "name: Gold\npriority: 2\n", "a.yaml": "name: Gold\npriority: 3\n"}
    )
    assert parsed.classes["Gold"].priority == 3
    assert parsed.errors == ("b.yaml: duplicate class 'Gold', ignored",)
