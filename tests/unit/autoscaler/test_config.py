"""Controller configuration: flags > env > config file > defaults, and the start-up rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyllmd.autoscaler.config import (
    ControllerConfig,
    HelpRequested,
    flags_markdown,
    load_controller_config,
)
from pyllmd.core.errors import ConfigError

URL = "https://prometheus.monitoring.svc:9090"
ENV = {"PROMETHEUS_BASE_URL": URL}
DOC = Path(__file__).parents[3] / "docs/user-guide/admin/autoscaler-flags.md"


def load(
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
    existing: set[str] | None = None,
) -> ControllerConfig:
    store = files or {}

    def read(path: str) -> str:
        if path not in store:
            raise FileNotFoundError(2, "No such file or directory")
        return store[path]

    present = set(store) | (existing or set())
    return load_controller_config(
        argv or [], ENV if env is None else env, read_file=read, file_exists=present.__contains__
    )


def test_defaults() -> None:
    cfg = load()
    assert cfg.metrics_bind_address == "0"
    assert cfg.health_probe_bind_address == ":8081"
    assert cfg.leader_elect is False
    assert cfg.leader_election_id == "72dd1cf1.llm-d.ai"
    assert (cfg.leader_election_lease_duration, cfg.leader_election_renew_deadline) == (60, 50)
    assert cfg.leader_election_retry_period == 10 and cfg.rest_client_timeout == 60
    assert cfg.metrics_secure is True and cfg.enable_http2 is False
    assert (cfg.log_verbosity, cfg.v) == (2, 0)
    assert cfg.global_opt_interval == 60
    assert cfg.scale_from_zero_engine_max_concurrency == 10
    assert cfg.pod_namespace == "workload-variant-autoscaler-system"
    assert cfg.config_map_name == "wva-variantautoscaling-config"
    assert cfg.saturation_config_map_name == "wva-saturation-scaling-config"
    assert cfg.pool_group == "inference.networking.x-k8s.io"
    assert (cfg.webhook_cert_name, cfg.metrics_cert_key) == ("tls.crt", "tls.key")
    assert cfg.prometheus_metrics_cache_unavailable_threshold == 300
    assert cfg.zap_devel is True


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "PROMETHEUS_BASE_URL: required"),
        ({"PROMETHEUS_BASE_URL": ""}, "PROMETHEUS_BASE_URL: required"),
        ({"PROMETHEUS_BASE_URL": "http://p:9090"}, 'must be an https:// URL, got "http://p:9090"'),
        ({"PROMETHEUS_BASE_URL": "https://"}, "must be an https:// URL"),
        ({"PROMETHEUS_BASE_URL": "p:9090"}, "must be an https:// URL"),
    ],
)
def test_wva_acc_05_prometheus_url_https(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(env=env)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_wva_acc_06_precedence() -> None:
    files = {"/c.yaml": "LEADER_ELECTION_LEASE_DURATION: 50s\nPROMETHEUS_BASE_URL: " + URL}
    argv = ["--config-file=/c.yaml"]
    assert load(argv, {}, files).leader_election_lease_duration == 50
    env = {"LEADER_ELECTION_LEASE_DURATION": "45s"}
    assert load(argv, env, files).leader_election_lease_duration == 45
    argv2 = [*argv, "--leader-election-lease-duration=30s"]
    assert load(argv2, env, files).leader_election_lease_duration == 30
    # A flag left at its default does not beat the environment.
    assert (
        load(["--leader-elect=false"], {**ENV, "METRICS_SECURE": "false"}).metrics_secure is False
    )


def test_empty_env_counts_as_unset() -> None:
    files = {"/c.yaml": "WVA_NODE_SELECTOR: gpu=yes\n"}
    cfg = load(["--config-file", "/c.yaml"], {**ENV, "WVA_NODE_SELECTOR": ""}, files)
    assert cfg.wva_node_selector == "gpu=yes"


def test_config_file_keys_are_case_insensitive_and_typed() -> None:
    files = {
        "/c.yaml": "prometheus_base_url: " + URL + "\nLEADER_ELECT: true\n"
        "SCALE_FROM_ZERO_ENGINE_MAX_CONCURRENCY: 3\nGLOBAL_OPT_INTERVAL: 15s\n"
        "WVA_SCALE_TO_ZERO: true\nPOD_NAMESPACE: sys\n"
    }
    cfg = load(["--config-file=/c.yaml"], {}, files)
    assert cfg.prometheus_base_url == URL
    assert cfg.leader_elect is True
    assert cfg.scale_from_zero_engine_max_concurrency == 3
    assert cfg.global_opt_interval == 15
    assert cfg.wva_scale_to_zero is True  # the file counts (upstream: env only)
    assert cfg.pod_namespace == "sys"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GLOBAL_OPT_INTERVAL: 60\n", "GLOBAL_OPT_INTERVAL: invalid duration"),
        ("LEADER_ELECT: maybe\n", 'LEADER_ELECT: invalid bool "maybe" from the config file'),
        ("- a\n", "must be a mapping"),
        ("a: [\n", "is not valid YAML"),
    ],
)
def test_bad_config_file(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[")):
        load(["--config-file=/c.yaml"], ENV, {"/c.yaml": text})


def test_unreadable_config_file() -> None:
    with pytest.raises(ConfigError, match='--config-file: cannot read "/missing.yaml"'):
        load(["--config-file=/missing.yaml"])


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GLOBAL_OPT_INTERVAL": "0s"}, "GLOBAL_OPT_INTERVAL: must be > 0"),
        ({"GLOBAL_OPT_INTERVAL": "-1s"}, "GLOBAL_OPT_INTERVAL: must be > 0"),
        ({"GLOBAL_OPT_INTERVAL": "60"}, 'GLOBAL_OPT_INTERVAL: invalid duration "60"'),
        ({"SCALE_FROM_ZERO_ENGINE_MAX_CONCURRENCY": "0"}, "must be > 0, got 0"),
        ({"SCALE_FROM_ZERO_ENGINE_MAX_CONCURRENCY": "ten"}, 'invalid int "ten"'),
        ({"POOL_GROUP": "inference.networking.example.com"}, "POOL_GROUP: must be"),
        ({"WVA_NODE_SELECTOR": "a in (b"}, "WVA_NODE_SELECTOR: invalid label selector"),
        ({"WVA_NODE_SELECTOR": "-bad=x"}, "WVA_NODE_SELECTOR: invalid label selector"),
        ({"CONTROLLER_INSTANCE": "not valid!"}, "CONTROLLER_INSTANCE: must be a valid label"),
        ({"LEADER_ELECT": "yes"}, 'LEADER_ELECT: invalid bool "yes" from the environment'),
    ],
)
def test_rules(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(env={**ENV, **env})
    assert expected in str(err.value)


def test_boundaries_accepted() -> None:
    cfg = load(
        env={
            **ENV,
            "GLOBAL_OPT_INTERVAL": "1ns",
            "SCALE_FROM_ZERO_ENGINE_MAX_CONCURRENCY": "1",
            "POOL_GROUP": "inference.networking.k8s.io",
            "WVA_NODE_SELECTOR": "wva.llmd.ai/shard=a,gpu in (h100, a100),!cordon",
        }
    )
    assert cfg.global_opt_interval == 1e-9
    assert cfg.pool_group == "inference.networking.k8s.io"


def test_tls_files() -> None:
    env = {**ENV, "PROMETHEUS_CA_CERT_PATH": "/ca.pem"}
    with pytest.raises(ConfigError, match='PROMETHEUS_CA_CERT_PATH: file "/ca.pem" not found'):
        load(env=env)
    assert load(env=env, existing={"/ca.pem"}).prometheus_ca_cert_path == "/ca.pem"
    insecure = {**env, "PROMETHEUS_TLS_INSECURE_SKIP_VERIFY": "true"}
    assert load(env=insecure).prometheus_tls_insecure_skip_verify is True
    with pytest.raises(ConfigError, match="set both or neither"):
        load(env={**insecure, "PROMETHEUS_CLIENT_CERT_PATH": "/c.pem"})
    both = {**env, "PROMETHEUS_CLIENT_CERT_PATH": "/c.pem", "PROMETHEUS_CLIENT_KEY_PATH": "/k.pem"}
    with pytest.raises(ConfigError, match="PROMETHEUS_CLIENT_KEY_PATH: file"):
        load(env=both, existing={"/ca.pem", "/c.pem"})
    assert load(env=both, existing={"/ca.pem", "/c.pem", "/k.pem"}).prometheus_client_key_path


def test_leader_election_timings_checked_only_when_enabled() -> None:
    short = ["--leader-election-lease-duration=10s"]
    assert load(short).leader_election_lease_duration == 10
    with pytest.raises(ConfigError, match="LEADER_ELECTION_LEASE_DURATION: must be greater"):
        load([*short, "--leader-elect"])
    with pytest.raises(ConfigError, match="RENEW_DEADLINE: must be greater than 1.2"):
        load(["--leader-elect", "--leader-election-renew-deadline=12s"])
    ok = load(["--leader-elect", "--leader-election-renew-deadline=12.1s"])
    assert ok.leader_elect is True


def test_pflag_syntax_and_errors() -> None:
    cfg = load(["--leader-elect", "--metrics-secure=false", "--watch-namespace", "ns", "--v=4"])
    assert (cfg.leader_elect, cfg.metrics_secure, cfg.watch_namespace) == (True, False, "ns")
    assert (cfg.log_verbosity, cfg.v, cfg.zap_level) == (4, 4, -4)
    with pytest.raises(ConfigError, match="unknown flag: --nope"):
        load(["--nope"])
    with pytest.raises(ConfigError, match='invalid argument "x" for "--rest-client-timeout"'):
        load(["--rest-client-timeout=x"])


def test_v_key_is_separate_from_flag() -> None:
    cfg = load(env={**ENV, "V": "5"})
    assert (cfg.v, cfg.log_verbosity) == (5, 2)


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["--zap-log-level=debug"], -1),
        (["--zap-log-level=3", "--v=1"], -3),
        (["--zap-log-level", "error"], 2),
        (["--zap-log-level=info"], 0),
    ],
)
def test_zap_flags(argv: list[str], level: int) -> None:
    assert load(argv).zap_level == level


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--zap-log-level=loud"],
            'invalid argument "loud" for "--zap-log-level" flag: invalid log level "loud"',
        ),
        (["--zap-log-level=0x"], "invalid log level"),
        (["--zap-encoder=xml"], 'invalid encoder value "xml"'),
        (["--zap-stacktrace-level=trace"], 'invalid stacktrace level "trace"'),
        (["--zap-time-encoding=unix"], 'invalid time-encoding value "unix"'),
    ],
)
def test_zap_flag_errors(argv: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load(argv)


def test_zap_flags_accepted() -> None:
    cfg = load(
        [
            "--zap-devel=false",
            "--zap-encoder=JSON",
            "--zap-stacktrace-level=panic",
            "--zap-time-encoding=rfc3339",
        ]
    )
    assert (cfg.zap_devel, cfg.zap_encoder) == (False, "JSON")


def test_help() -> None:
    with pytest.raises(HelpRequested) as req:
        load(["--help"])
    assert "--leader-election-lease-duration duration" in req.value.usage
    assert "(default 1m0s)" in req.value.usage


def test_committed_flags_doc_matches() -> None:
    assert DOC.read_text(encoding="utf-8") == flags_markdown(), (
        "regenerate: python -m pyllmd.autoscaler.config --markdown "
        "> docs/user-guide/admin/autoscaler-flags.md"
    )


def test_flags_doc_lists_every_flag_and_key() -> None:
    text = flags_markdown()
    for name in ("--metrics-bind-address", "--zap-log-level", "--config-file", "--v"):
        assert f"`{name}`" in text
    for key in (
        "PROMETHEUS_BASE_URL",
        "GLOBAL_OPT_INTERVAL",
        "POOL_GROUP",
        "WVA_NODE_SELECTOR",
        "SCALE_FROM_ZERO_ENGINE_MAX_CONCURRENCY",
        "LEADER_ELECTION_ID",
        "LOG_LEVEL",
    ):
        assert f"`{key}`" in text
