"""EndpointPickerConfig loading (spec §5; checks 12-22)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyllmd.core.errors import ConfigError
from pyllmd.epp.config.loader import DEFAULT_CONFIG, load_config_file, load_config_text

HEAD = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config_text(text, env=env)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_epp_acc_12_unknown_feature_gate() -> None:
    msg = error_of(HEAD + "featureGates: [foo]\n")
    assert msg.startswith("failed to parse config - ")
    assert "feature gate 'foo' is unknown or unregistered" in msg


def test_epp_acc_13_unknown_plugin_type() -> None:
    msg = error_of(HEAD + "plugins:\n- type: bar\n")
    assert msg.startswith("failed to load the configuration - ")
    assert "plugin type 'bar' is not registered" in msg


def test_epp_acc_14_duplicate_plugin_name() -> None:
    msg = error_of(
        HEAD
        + "plugins:\n- {name: x, type: queue-scorer}\n"
        + "- {name: x, type: kv-cache-utilization-scorer}\n"
    )
    assert "duplicate plugin name 'x'" in msg


def test_epp_acc_15_undefined_plugin_reference() -> None:
    text = (
        HEAD
        + "plugins:\n- type: queue-scorer\n"
        + "schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: nope\n"
    )
    assert "schedulingProfiles[default] references undefined plugin 'nope'" in error_of(text)


def test_epp_acc_16_single_handler_with_two_profiles() -> None:
    text = HEAD + (
        "plugins:\n- type: single-profile-handler\n- type: queue-scorer\n"
        "schedulingProfiles:\n- name: a\n  plugins: [{pluginRef: queue-scorer}]\n"
        "- name: b\n  plugins: [{pluginRef: queue-scorer}]\n"
    )
    assert "SingleProfileHandler cannot support multiple scheduling profiles" in error_of(text)


def test_epp_acc_17_two_profile_handlers() -> None:
    text = (
        HEAD
        + "plugins:\n- {name: h1, type: single-profile-handler}\n"
        + "- {name: h2, type: single-profile-handler}\n"
    )
    assert "multiple profile handlers found ('h1', 'h2'); only one is allowed" in error_of(text)


def test_epp_acc_18_defaults_fill_profile_handler_and_picker() -> None:
    cfg = load_config_text(HEAD + "plugins: [{type: queue-scorer}]\n")
    [profile] = cfg.profile_specs
    assert profile.name == "default"
    assert [(r.plugin_ref, r.weight) for r in profile.plugins] == [
        ("queue-scorer", 1.0),
        ("max-score-picker", None),
    ]
    assert cfg.handler_name == "single-profile-handler"
    built = cfg.profiles["default"]
    assert [(s.type_name, w) for s, w in built.scorers] == [("queue-scorer", 1.0)]
    assert built.picker.type_name == "max-score-picker"


def test_epp_acc_19_unknown_top_level_field() -> None:
    msg = error_of(HEAD + "plugin:\n- type: queue-scorer\n")
    assert msg.startswith("failed to parse config - failed to decode configuration JSON/YAML: ")
    assert 'unknown field "plugin"' in msg


def test_strict_decoding_nested_unknown_duplicate_and_kind() -> None:
    assert 'unknown field "schedulingProfiles[0].plugins[0].wieght"' in error_of(
        HEAD + "schedulingProfiles:\n- name: d\n  plugins: [{pluginRef: x, wieght: 2}]\n"
    )
    assert 'key "plugins" already set in map' in error_of(HEAD + "plugins: []\nplugins: []\n")
    assert 'no kind "Other"' in error_of(
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: Other\n"
    )
    assert "failed to decode configuration JSON/YAML" in error_of("{not: [valid")


def test_epp_acc_20_saturation_values_and_env_override() -> None:
    text = (
        HEAD
        + "saturationDetector:\n  queueDepthThreshold: 3\n  kvCacheUtilThreshold: 1.5\n"
        + "  metricsStalenessThreshold: 1s\n"
    )
    cfg = load_config_text(text, env={})
    assert cfg.saturation.kv_cache_util_threshold == 0.8
    assert cfg.saturation.queue_depth_threshold == 3
    assert cfg.saturation.metrics_staleness_threshold == 1.0
    cfg = load_config_text(text, env={"SD_QUEUE_DEPTH_THRESHOLD": "10"})
    assert cfg.saturation.queue_depth_threshold == 10
    cfg = load_config_text(
        text,
        env={
            "SD_QUEUE_DEPTH_THRESHOLD": "x",
            "SD_KV_CACHE_UTIL_THRESHOLD": "0.5",
            "SD_METRICS_STALENESS_THRESHOLD": "-1s",
        },
    )
    assert cfg.saturation.queue_depth_threshold == 5
    assert cfg.saturation.kv_cache_util_threshold == 0.5
    assert cfg.saturation.metrics_staleness_threshold == 0.2


def test_epp_acc_21_data_layer_gate_requires_data_section() -> None:
    msg = error_of(HEAD + "featureGates: [dataLayer]\n")
    assert (
        "the Datalayer has been enabled. You must specify the Data section in the configuration"
        in msg
    )
    assert "data layer enabled but no data sources configured" in error_of(
        HEAD + "featureGates: [dataLayer]\ndata:\n  sources: []\n"
    )
    env_gate = error_of(HEAD, env={"ENABLE_EXPERIMENTAL_DATALAYER_V2": "true"})
    assert "the Datalayer has been enabled" in env_gate


def test_epp_acc_22_prefix_block_size_only_fails() -> None:
    msg = error_of(HEAD + "plugins:\n- type: prefix-cache-scorer\n  parameters: {blockSize: 64}\n")
    assert "failed to create plugin 'prefix-cache-scorer' (type: prefix-cache-scorer): " in msg
    assert "BlockSizeTokens" in msg


def test_bad_scorer_weight_type() -> None:
    text = (
        HEAD
        + "plugins: [{type: queue-scorer}]\nschedulingProfiles:\n- name: d\n"
        + "  plugins: [{pluginRef: queue-scorer, weight: heavy}]\n"
    )
    msg = error_of(text)
    assert (
        "cannot unmarshal string into Go struct field "
        "SchedulingPlugin.schedulingProfiles.plugins.weight of type float64" in msg
    )


def test_missing_plugin_ref_and_profile_name() -> None:
    assert "schedulingProfiles[d].plugins[0] is missing a 'pluginRef'" in error_of(
        HEAD + "schedulingProfiles:\n- name: d\n  plugins: [{weight: 2}]\n"
    )
    assert "schedulingProfiles[0] is missing a name" in error_of(
        HEAD + "schedulingProfiles:\n- plugins: []\n"
    )
    assert "plugin '' is missing a type" in error_of(HEAD + "plugins:\n- parameters: {}\n")


def test_second_picker_in_profile_is_rejected() -> None:
    text = HEAD + (
        "plugins:\n- type: max-score-picker\n- type: random-picker\n"
        "schedulingProfiles:\n- name: d\n"
        "  plugins: [{pluginRef: max-score-picker}, {pluginRef: random-picker}]\n"
    )
    assert "already have a registered picker plugin" in error_of(text)


def test_first_declared_picker_is_appended_and_json_accepted() -> None:
    text = (
        '{"apiVersion": "inference.networking.x-k8s.io/v1alpha1", "kind": "EndpointPickerConfig",'
        ' "plugins": [{"type": "random-picker"}, {"type": "queue-scorer", "name": "q"},'
        ' {"type": "weighted-random-picker"}],'
        ' "schedulingProfiles": [{"name": "p", "plugins": [{"pluginRef": "q", "weight": 2.5}]}]}'
    )
    cfg = load_config_text(text)
    assert [r.plugin_ref for r in cfg.profile_specs[0].plugins] == ["q", "random-picker"]
    assert "max-score-picker" not in cfg.plugins
    assert cfg.profiles["p"].scorers[0][1] == 2.5


def test_default_config_when_none_given() -> None:
    cfg = load_config_text(None)
    assert cfg.raw == load_config_text(DEFAULT_CONFIG).raw
    weights = {s.type_name: w for s, w in cfg.profiles["default"].scorers}
    assert weights == {
        "queue-scorer": 2.0,
        "kv-cache-utilization-scorer": 2.0,
        "prefix-cache-scorer": 3.0,
    }
    assert list(cfg.plugins)[-2:] == ["single-profile-handler", "max-score-picker"]


def test_flow_control_and_data_sections_are_kept() -> None:
    text = HEAD + (
        "featureGates: [flowControl]\n"
        "flowControl:\n  maxBytes: 10\n  defaultRequestTTL: 30s\n"
        "  defaultPriorityBand: {maxBytes: 100}\n"
        "  priorityBands:\n  - {priority: 10, maxBytes: 5}\n"
        "data:\n  sources:\n  - pluginRef: metrics-data-source\n    extractors: [{pluginRef: x}]\n"
    )
    cfg = load_config_text(text)
    assert cfg.enabled("flowControl")
    fc = cfg.raw.flow_control
    assert fc is not None and fc.default_request_ttl == 30.0 and fc.priority_bands[0].priority == 10
    assert cfg.raw.data_sources is not None and cfg.raw.data_sources[0].extractors == ("x",)
    assert 'unknown field "flowControl.priorityBands[0].fairnessPolicyRef"' in error_of(
        HEAD + "flowControl:\n  priorityBands:\n  - {priority: 1, fairnessPolicyRef: x}\n"
    )


def test_load_config_file(tmp_path: Path) -> None:
    path = tmp_path / "epp.yaml"
    path.write_text(
        HEAD + "plugins: [{type: load-aware-scorer, parameters: {threshold: 4, unknown: 1}}]\n"
    )
    cfg = load_config_file(path)
    assert cfg.plugins["load-aware-scorer"].threshold == 4  # type: ignore[attr-defined]
    with pytest.raises(
        ConfigError, match=r"failed to load config from a file '.*missing.yaml' - open "
    ):
        load_config_file(tmp_path / "missing.yaml")
