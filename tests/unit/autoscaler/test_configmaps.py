"""Saturation and scale-to-zero ConfigMaps: parsing, skipping bad entries, resolution."""

from __future__ import annotations

import pytest

from pyllmd.autoscaler.decide.configmaps import (
    ScaleToZeroConfig,
    cycle_settings,
    format_retention,
    resolve_saturation,
    resolve_scale_to_zero,
)
from pyllmd.autoscaler.decide.model import SaturationConfig
from pyllmd.autoscaler.yaml12 import parse_saturation_configmap, parse_scale_to_zero

DEFAULT = (
    "kvCacheThreshold: 0.80\nqueueLengthThreshold: 5\nkvSpareTrigger: 0.1\nqueueSpareTrigger: 3\n"
)


def parse(data: dict[str, str]) -> dict[str, SaturationConfig]:
    entries, _ = parse_saturation_configmap(data)
    return entries


def test_shipped_default_entry() -> None:
    entries, errors = parse_saturation_configmap({"default": DEFAULT + "enableLimiter: false\n"})
    assert errors == []
    cfg = entries["default"]
    assert (cfg.kv_cache_threshold, cfg.queue_length_threshold) == (0.80, 5.0)
    assert (cfg.kv_spare_trigger, cfg.queue_spare_trigger) == (0.1, 3.0)
    assert (cfg.enable_limiter, cfg.analyzer_name) == (False, "")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("kvCacheThreshold: 1.5", "kvCacheThreshold must be within [0, 1], got 1.5"),
        ("kvCacheThreshold: -0.01", "kvCacheThreshold must be within [0, 1]"),
        (
            "kvCacheThreshold: 0.5\nkvSpareTrigger: 0.6",
            "kvCacheThreshold (0.5) must be >= kvSpareTrigger (0.6)",
        ),
        ("queueLengthThreshold: -1", "queueLengthThreshold must be >= 0"),
        ("kvSpareTrigger: 1.1\nkvCacheThreshold: 1", "kvSpareTrigger must be within [0, 1]"),
        ("queueSpareTrigger: -0.5", "queueSpareTrigger must be >= 0"),
        ("kvCacheThreshold: '0.8'", "kvCacheThreshold must be a number"),
        ("enableLimiter: 'yes please'", "enableLimiter must be true or false"),
        ("kvCacheThreshold: [", "invalid YAML"),
        ("- 1", "must be a YAML mapping"),
    ],
)
def test_wva_acc_08_invalid_entry_skipped(entry: str, message: str) -> None:
    override = "model_id: m\nqueueLengthThreshold: 2\n"
    entries, errors = parse_saturation_configmap({"default": DEFAULT, "bad": entry, "ok": override})
    assert set(entries) == {"default", "ok"}
    assert len(errors) == 1
    assert errors[0].startswith('saturation config entry "bad" skipped: ')
    assert message in errors[0]


def test_thresholds_at_boundaries_are_valid() -> None:
    entries, errors = parse_saturation_configmap(
        {
            "a": "kvCacheThreshold: 1\nkvSpareTrigger: 1\n"
            "queueLengthThreshold: 0\nqueueSpareTrigger: 0",
            "b": "kvCacheThreshold: 0\nkvSpareTrigger: 0",
            "c": "kvCacheThreshold: 0.3\nkvSpareTrigger: 0.3",
        }
    )
    assert errors == [] and set(entries) == {"a", "b", "c"}


def test_omitted_keys_take_shipped_defaults() -> None:
    cfg = parse({"default": "queueLengthThreshold: 8"})["default"]
    assert (cfg.kv_cache_threshold, cfg.queue_length_threshold, cfg.kv_spare_trigger) == (
        0.8,
        8,
        0.1,
    )
    assert parse({"default": ""})["default"] == SaturationConfig()


def test_wva_acc_33_v2_defaults() -> None:
    cfg = parse({"default": DEFAULT + "analyzerName: saturation\n"})["default"]
    assert (cfg.scale_up_threshold, cfg.scale_down_boundary) == (0.85, 0.70)
    zero = parse({"default": DEFAULT + "analyzerName: saturation\nscaleUpThreshold: 0\n"})
    assert zero["default"].scale_up_threshold == 0.85  # zero means omitted, as upstream


@pytest.mark.parametrize(
    ("up", "down", "ok"),
    [
        (0.85, 0.70, True),
        (0.70, 0.70, False),
        (0.69, 0.70, False),
        (1.0, 0.99, True),
        (1.01, 0.5, False),
        (0.9, 1.2, False),
        (0.5, -0.1, False),
    ],
)
def test_wva_acc_33_v2_threshold_rules(up: float, down: float, ok: bool) -> None:
    text = f"analyzerName: saturation\nscaleUpThreshold: {up}\nscaleDownBoundary: {down}\n"
    entries, errors = parse_saturation_configmap({"default": text})
    assert ("default" in entries) is ok
    if not ok:
        assert "scaleUpThreshold" in errors[0] or "scaleDownBoundary" in errors[0]


def test_v1_entry_ignores_v2_fields() -> None:
    assert "default" in parse({"default": "scaleUpThreshold: 0.5\nscaleDownBoundary: 0.9"})


def test_local_replaces_global() -> None:
    global_ = parse({"default": DEFAULT})
    local = parse({"default": "kvCacheThreshold: 0.6\nkvSpareTrigger: 0.2"})
    assert resolve_saturation(global_, local, "ns", "m") == local["default"]
    assert resolve_saturation(global_, {}, "ns", "m") == global_["default"]
    no_default_local = parse({"x": "model_id: m\nkvCacheThreshold: 0.5"})
    assert resolve_saturation(global_, no_default_local, "ns", "m") is None
    assert resolve_saturation({}, {}, "ns", "m") is None


def test_per_model_override_applies_only_set_fields() -> None:
    entries = parse(
        {
            "default": DEFAULT + "enableLimiter: true\n",
            "m-prod": "model_id: m\nnamespace: prod\nkvCacheThreshold: 0.7\n"
            "analyzerName: saturation\nenableLimiter: false",
            "m-any": "model_id: m\nqueueLengthThreshold: 2",
        }
    )
    prod = resolve_saturation(entries, {}, "prod", "m")
    assert prod is not None
    assert (prod.kv_cache_threshold, prod.queue_length_threshold) == (0.7, 5)
    assert (prod.analyzer_name, prod.enable_limiter) == ("", True)  # cycle-wide: default only
    other = resolve_saturation(entries, {}, "dev", "m")
    assert other is not None and (other.kv_cache_threshold, other.queue_length_threshold) == (
        0.8,
        2,
    )
    assert resolve_saturation(entries, {}, "prod", "other-model") == entries["default"]


def test_override_that_breaks_a_rule_when_merged_is_ignored() -> None:
    entries = parse(
        {
            "default": "kvCacheThreshold: 0.9\nkvSpareTrigger: 0.5",
            "o": "model_id: m\nkvCacheThreshold: 0.4",
        }
    )
    assert resolve_saturation(entries, {}, "ns", "m") == entries["default"]


def test_cycle_settings_from_global_default() -> None:
    assert cycle_settings(parse({"default": "analyzerName: saturation\nenableLimiter: true"})) == (
        "saturation",
        True,
    )
    assert cycle_settings({}) == ("", False)


# ---------------------------------------------------------------- scale to zero


def s2z(data: dict[str, str]) -> ScaleToZeroConfig:
    return parse_scale_to_zero(data)[0]


def test_wva_acc_43_retention_resolution() -> None:
    cfg = s2z(
        {
            "default": 'enable_scale_to_zero: true\nretention_period: "15m"',
            "a": 'model_id: m\nretention_period: "5m"',
            "b": 'model_id: bad\nretention_period: "abc"',
        }
    )
    empty = s2z({})
    assert resolve_scale_to_zero(cfg, empty, "m", False).retention_seconds == 300
    assert format_retention(resolve_scale_to_zero(cfg, empty, "m", False).retention_seconds) == "5m"
    assert resolve_scale_to_zero(cfg, empty, "bad", False).retention_seconds == 900
    assert resolve_scale_to_zero(cfg, empty, "other", False).retention_seconds == 900
    assert resolve_scale_to_zero(empty, empty, "m", False).retention_seconds == 600
    invalid_default = s2z({"default": 'retention_period: "-5m"', "a": "model_id: m"})
    assert resolve_scale_to_zero(invalid_default, empty, "m", False).retention_seconds == 600
    zero = s2z({"default": 'retention_period: "0s"'})
    assert resolve_scale_to_zero(zero, empty, "m", False).retention_seconds == 600


def test_retention_messages() -> None:
    _, notes = parse_scale_to_zero(
        {
            "a": 'model_id: m\nretention_period: "abc"',
            "b": 'model_id: n\nretention_period: "25h"',
            "c": 'model_id: o\nretention_period: "24h"',
        }
    )
    assert any('"a"' in n and "falling back" in n for n in notes)
    assert any('"b"' in n and "unusually long" in n for n in notes)
    assert not any('"c"' in n for n in notes)


def test_wva_acc_44_enable_resolution() -> None:
    empty = s2z({})
    cfg = s2z(
        {
            "default": "enable_scale_to_zero: true",
            "a": "model_id: inherit\nretention_period: 5m",
            "b": "model_id: off\nenable_scale_to_zero: false",
        }
    )
    assert resolve_scale_to_zero(cfg, empty, "inherit", False).enabled is True
    assert resolve_scale_to_zero(cfg, empty, "off", True).enabled is False
    assert resolve_scale_to_zero(empty, empty, "m", True).enabled is True
    assert resolve_scale_to_zero(empty, empty, "m", False).enabled is False
    no_enable_default = s2z({"default": "retention_period: 5m"})
    assert resolve_scale_to_zero(no_enable_default, empty, "m", True).enabled is True
    off_default = s2z({"default": "enable_scale_to_zero: false"})
    assert resolve_scale_to_zero(off_default, empty, "m", True).enabled is False


def test_local_scale_to_zero_replaces_global() -> None:
    global_ = s2z({"default": "enable_scale_to_zero: true"})
    local = s2z({"x": "model_id: other\nenable_scale_to_zero: true"})
    assert resolve_scale_to_zero(global_, local, "m", False).enabled is False
    assert resolve_scale_to_zero(global_, s2z({}), "m", False).enabled is True


def test_wva_acc_45_duplicate_model_id() -> None:
    cfg, notes = parse_scale_to_zero(
        {
            "zz": "model_id: m\nenable_scale_to_zero: false",
            "aa": "model_id: m\nenable_scale_to_zero: true\nretention_period: 1m",
        }
    )
    policy = resolve_scale_to_zero(cfg, s2z({}), "m", False)
    assert (policy.enabled, policy.retention_seconds) == (True, 60)
    assert any('"zz" skipped' in n and '"aa"' in n for n in notes)


def test_scale_to_zero_entries_skipped() -> None:
    cfg, notes = parse_scale_to_zero(
        {
            "nomodel": "enable_scale_to_zero: true",
            "badbool": "model_id: m\nenable_scale_to_zero: maybe",
            "badyaml": "model_id: [",
            "ok": "model_id: n\nenable_scale_to_zero: true",
        }
    )
    assert set(cfg.models) == {"n"}
    assert len(notes) == 3
    assert any("model_id is required" in n for n in notes)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (600, "10m"),
        (90, "90s"),
        (86400, "1d"),
        (172800, "2d"),
        (3600, "1h"),
        (5400, "90m"),
        (90000, "25h"),
        (1, "1s"),
        (0.5, "1s"),
        (0, "1s"),
        (61.5, "61s"),
    ],
)
def test_format_retention(seconds: float, text: str) -> None:
    assert format_retention(seconds) == text


def test_yaml_1_1_words_stay_strings_but_count_as_bools() -> None:
    cfg = s2z({"a": "model_id: off\nnamespace: no\nenable_scale_to_zero: yes"})
    assert cfg.models["off"].namespace == "no"
    assert cfg.models["off"].enable is True
