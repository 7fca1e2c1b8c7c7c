"""EPP command line and environment (spec §1, acceptance checks 1-11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyllmd.core.errors import ConfigError
from pyllmd.epp.options import (
    EppOptions,
    HelpRequested,
    StaticEndpoint,
    flags_markdown,
    help_text,
    load_options,
    parse_static_endpoints,
)

DOC = Path(__file__).parents[3] / "docs/user-guide/admin/epp-flags.md"
POOL = ["--pool-name=p"]
STANDALONE_ENV = {"POD_NAME": "epp-5d9f7c-abcde"}


def fails(argv: list[str], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_options(argv, env or {})
    return str(info.value)


def test_epp_acc_01_no_pool_no_selector() -> None:
    # upstream's sentence starts the line; the hint names the Kubernetes-free flags
    assert fails([]) == (
        "either pool-name or endpoint-selector must be set "
        "(or, without Kubernetes, --static-endpoints or --endpoints-file)"
    )


def test_epp_acc_02_pool_and_selector() -> None:
    msg = fails(["--pool-name=p", "--endpoint-selector=a=b"], STANDALONE_ENV)
    assert msg == "either pool-name or endpoint-selector must be set"


def test_epp_acc_03_selector_without_ports() -> None:
    msg = fails(["--endpoint-selector=app=x"], STANDALONE_ENV)
    assert msg == 'flag "endpoint-target-ports" should have length from 1 to 8'


def test_epp_acc_04_port_count_and_duplicates() -> None:
    msg = fails(["--endpoint-selector=app=x", "--endpoint-target-ports=1,2,3,4,5,6,7,8,9"])
    assert msg == 'flag "endpoint-target-ports" should have length from 1 to 8'
    opts = load_options(
        ["--endpoint-selector=app=x", "--endpoint-target-ports=8000,8000"], STANDALONE_ENV
    )
    assert opts.endpoint_target_ports == (8000,)
    # Duplicates do not count towards the limit of 8.
    nine = ",".join(["8000"] * 2 + [str(p) for p in range(8001, 8008)])
    ok = load_options(
        ["--endpoint-selector=app=x", f"--endpoint-target-ports={nine}"], STANDALONE_ENV
    )
    assert len(ok.endpoint_target_ports) == 8


def test_epp_acc_05_port_out_of_range() -> None:
    msg = fails(["--endpoint-selector=app=x", "--endpoint-target-ports=70000"], STANDALONE_ENV)
    assert msg == 'invalid port number 70000 in "endpoint-target-ports"'


def test_epp_acc_06_config_file_and_text() -> None:
    msg = fails([*POOL, "--config-file=x", "--config-text=y"])
    assert msg == 'both the "configText" and "configFile" flags can not be set at the same time'


def test_epp_acc_07_metrics_scheme() -> None:
    msg = fails([*POOL, "--model-server-metrics-scheme=ftp"])
    assert msg == (
        'unexpected "ftp" value for "model-server-metrics-scheme" flag, '
        "it can only be set to 'http' or 'https'"
    )
    assert load_options([*POOL, "--model-server-metrics-scheme=https"], {})


@pytest.mark.parametrize(
    ("flag", "param"),
    [
        ("total-queued-requests-metric", "queueRequestsSpec"),
        ("total-running-requests-metric", "runningRequestsSpec"),
        ("kv-cache-usage-percentage-metric", "kvUsageSpec"),
        ("lora-info-metric", "loraSpec"),
        ("cache-info-metric", "cacheInfoSpec"),
    ],
)
def test_epp_acc_08_deprecated_metric_flags_are_errors(flag: str, param: str) -> None:
    msg = fails([*POOL, f"--{flag}=sglang:num_queue_reqs"])
    assert "\n" not in msg
    assert f"--{flag}" in msg and param in msg
    assert "engineConfigs" in msg and "model-server-protocol-metrics" in msg
    # Even the default value counts as explicit use.
    assert f"--{flag}" in fails([*POOL, f"--{flag}", "vllm:x"])


def test_epp_acc_08_default_metric_specs_remain() -> None:
    specs = load_options(POOL, {}).metric_specs
    assert specs["total-queued-requests-metric"] == "vllm:num_requests_waiting"
    assert specs["kv-cache-usage-percentage-metric"] == "vllm:kv_cache_usage_perc"


def test_epp_acc_09_standalone_pod_name() -> None:
    argv = ["--endpoint-selector=app=x", "--endpoint-target-ports=8000"]
    assert fails(argv) == "failed to get environment variable POD_NAME"
    assert fails(argv, {"POD_NAME": ""}) == "failed to get environment variable POD_NAME"
    assert fails(argv, {"POD_NAME": "epp"}) == "failed to parse deployment name from pod name epp"
    opts = load_options(argv, STANDALONE_ENV)
    assert opts.pool_name == "epp"
    assert opts.mode == "standalone"
    assert opts.endpoint_selector == {"app": "x"}
    multi = load_options(argv, {"POD_NAME": "my-epp-x-7c9b-abcde"})
    assert multi.pool_name == "my-epp-x"


def test_epp_acc_10_namespace_resolution() -> None:
    assert load_options(POOL, {"NAMESPACE": "ns1"}).pool_namespace == "ns1"
    assert load_options(POOL, {}).pool_namespace == "default"
    assert load_options(POOL, {"NAMESPACE": ""}).pool_namespace == "default"
    flagged = load_options([*POOL, "--pool-namespace=ns2"], {"NAMESPACE": "ns1"})
    assert flagged.pool_namespace == "ns2"
    argv = ["--endpoint-selector=app=x", "--endpoint-target-ports=8000"]
    assert load_options(argv, {**STANDALONE_ENV, "NAMESPACE": "ns3"}).pool_namespace == "ns3"


def test_epp_acc_11_defaults() -> None:
    opts = load_options(POOL, {})
    assert (opts.grpc_port, opts.grpc_health_port, opts.metrics_port) == (9002, 9003, 9090)
    assert opts.secure_serving is True
    assert opts.pool_group == "inference.networking.k8s.io"
    assert opts.refresh_metrics_interval == pytest.approx(0.05)
    assert opts.refresh_prometheus_metrics_interval == 5.0
    assert opts.metrics_staleness_threshold == 2.0
    assert opts.model_server_metrics_scheme == "http"
    assert opts.model_server_metrics_path == "/metrics"
    assert opts.model_server_metrics_https_insecure_skip_verify is True
    assert (opts.tracing, opts.enable_pprof, opts.metrics_endpoint_auth) == (True, True, True)
    assert (opts.log_verbosity, opts.zap_devel) == (2, True)
    assert opts.mode == "pool" and opts.pool_name == "p"
    assert opts.warnings == ()
    assert isinstance(opts, EppOptions)


def test_order_pool_choice_before_config_checks() -> None:
    assert fails(["--config-file=x", "--config-text=y"]).startswith(
        "either pool-name or endpoint-selector must be set"
    )


def test_pflag_syntax_and_verbosity() -> None:
    opts = load_options(["--pool-name", "p", "-v", "4", "--secure-serving=false"], {})
    assert (opts.log_verbosity, opts.secure_serving) == (4, False)
    assert load_options([*POOL, "--v=5"], {}).log_verbosity == 5
    assert load_options([*POOL, "-v3"], {}).log_verbosity == 3
    opts = load_options([*POOL, "--refresh-metrics-interval=1s", "--kubeconfig=/k"], {})
    assert (opts.refresh_metrics_interval, opts.kubeconfig) == (1.0, "/k")
    assert fails([*POOL, "--nope"]) == "unknown flag: --nope"
    assert "missing unit" in fails([*POOL, "--refresh-metrics-interval=50"])
    # Go's time.ParseDuration texts, as pflag shows them
    assert fails([*POOL, "--refresh-metrics-interval=5x"]) == (
        'invalid argument "5x" for "--refresh-metrics-interval" flag: '
        'time: unknown unit "x" in duration "5x"'
    )
    assert fails([*POOL, "--metrics-staleness-threshold=1.5"]) == (
        'invalid argument "1.5" for "--metrics-staleness-threshold" flag: '
        'time: missing unit in duration "1.5"'
    )
    assert fails([*POOL, "--metrics-staleness-threshold=soon"]) == (
        'invalid argument "soon" for "--metrics-staleness-threshold" flag: '
        'time: invalid duration "soon"'
    )
    assert fails([*POOL, "--grpc-port=x"]).startswith('invalid argument "x" for "--grpc-port"')


def test_zap_flags() -> None:
    opts = load_options([*POOL, "--zap-log-level=3", "--zap-encoder=json"], {})
    assert (opts.zap_log_level, opts.zap_encoder) == ("3", "json")
    assert (
        load_options([*POOL, "--zap-log-level=debug", "--zap-devel=false"], {}).zap_devel is False
    )
    assert "invalid log level" in fails([*POOL, "--zap-log-level=0"])
    assert "invalid encoder value" in fails([*POOL, "--zap-encoder=xml"])
    assert "invalid stacktrace level" in fails([*POOL, "--zap-stacktrace-level=debug"])
    assert "invalid time-encoding value" in fails([*POOL, "--zap-time-encoding=unix"])


def test_target_port_syntax_and_selector_parsing() -> None:
    argv = ["--endpoint-selector=app=x"]
    assert "strconv.Atoi" in fails([*argv, "--endpoint-target-ports=8000,a"], STANDALONE_ENV)
    opts = load_options(
        ["--endpoint-selector=app=vllm,env=prod", "--endpoint-target-ports=8000,8001"],
        STANDALONE_ENV,
    )
    assert opts.endpoint_selector == {"app": "vllm", "env": "prod"}
    assert opts.endpoint_target_ports == (8000, 8001)
    msg = fails(["--endpoint-selector=app", "--endpoint-target-ports=8000"], STANDALONE_ENV)
    assert msg.startswith('failed to parse flag "endpoint-selector"')
    bad = fails(["--endpoint-selector=app=a b", "--endpoint-target-ports=8000"], STANDALONE_ENV)
    assert "invalid label value" in bad


def test_deprecated_metrics_port_warns() -> None:
    opts = load_options([*POOL, "--model-server-metrics-port=9100"], {})
    assert opts.model_server_metrics_port == 9100
    assert any("model-server-metrics-port" in w for w in opts.warnings)


def test_deprecated_environment_variables() -> None:
    env = {
        "ENABLE_EXPERIMENTAL_DATALAYER_V2": "true",
        "ENABLE_EXPERIMENTAL_FLOW_CONTROL_LAYER": "maybe",
        "SD_QUEUE_DEPTH_THRESHOLD": "10",
        "SD_KV_CACHE_UTIL_THRESHOLD": "1.5",
        "SD_METRICS_STALENESS_THRESHOLD": "500ms",
    }
    opts = load_options(POOL, env)
    assert opts.env_feature_gates == ("dataLayer",)
    assert opts.sd_queue_depth_threshold == 10
    assert opts.sd_kv_cache_util_threshold == 0.8
    assert opts.sd_metrics_staleness_threshold == 0.5
    assert len(opts.warnings) >= 4
    bad = load_options(
        POOL, {"SD_QUEUE_DEPTH_THRESHOLD": "-1", "SD_METRICS_STALENESS_THRESHOLD": "x"}
    )
    assert (bad.sd_queue_depth_threshold, bad.sd_metrics_staleness_threshold) == (5, 0.2)
    plain = load_options(POOL, {})
    assert plain.sd_queue_depth_threshold is None and plain.env_feature_gates == ()


def test_static_endpoints_mode() -> None:
    text = "10.0.0.1:8000;llm-d.ai/role=prefill;tier=a, 10.0.0.2:8001,[::1]:9000"
    opts = load_options([f"--static-endpoints={text}"], {"NAMESPACE": "dev"})
    assert opts.mode == "static"
    assert opts.pool_namespace == "dev"
    assert opts.static_endpoints == (
        StaticEndpoint("10.0.0.1", 8000, {"llm-d.ai/role": "prefill", "tier": "a"}),
        StaticEndpoint("10.0.0.2", 8001, {}),
        StaticEndpoint("::1", 9000, {}),
    )
    msg = fails(["--static-endpoints=10.0.0.1:8000", "--pool-name=p"])
    assert "can not be combined" in msg


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.1",
        "10.0.0.1:0",
        "10.0.0.1:70000",
        ":8000",
        "::1:8000",
        "a:1;bad",
        "a:1;=v",
        "a:1,a:1",
        ",",
    ],
)
def test_static_endpoints_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="--static-endpoints"):
        parse_static_endpoints(text)


def test_help() -> None:
    with pytest.raises(HelpRequested) as info:
        load_options(["--help"], {})
    assert "--pool-name" in info.value.usage and "--static-endpoints" in info.value.usage
    assert help_text() == info.value.usage


def test_flags_doc_is_generated() -> None:
    assert DOC.read_text(encoding="utf-8") == flags_markdown(), (
        "regenerate: .venv/bin/python -m pyllmd.epp.options --markdown > " + str(DOC)
    )
    text = flags_markdown()
    for flag in ("--grpc-port", "--static-endpoints", "--zap-log-level", "--kubeconfig"):
        assert f"`{flag}`" in text
