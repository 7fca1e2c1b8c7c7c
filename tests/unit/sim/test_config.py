"""Simulator configuration: flags, YAML, environment, validation, docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import HelpRequested
from pyllmd.sim.config import (
    LoadedConfig,
    SimConfig,
    config_to_json,
    flags_markdown,
    load_config,
    sim_flag_specs,
)

FAILURE_TYPES = "rate_limit, invalid_api_key, context_length, server_error, invalid_request, "
FAILURE_TYPES += "model_not_found"
DOC = Path(__file__).resolve().parents[3] / "docs" / "user-guide" / "admin" / "flags.md"


def load(*argv: str, env: dict[str, str] | None = None, now: int = 42) -> LoadedConfig:
    return load_config(["--model", "m", *argv], env or {}, now)


def cfg(*argv: str, env: dict[str, str] | None = None) -> SimConfig:
    return load(*argv, env=env).config


def error(*argv: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(*argv, env=env)
    text = str(info.value)
    assert "\n" not in text
    return text


def yaml_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sim.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# ------------------------------------------------------------ acceptance checks


def test_sim_acc_01_no_model() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(["--port", "8000"], {}, 0)
    assert str(info.value) == "--model: model parameter is empty"


def test_sim_acc_02_block_size() -> None:
    assert error("--block-size", "12") == (
        "--block-size: token block size should be one of the following: 8, 16, 32, 64, 128"
    )
    for size in (8, 16, 32, 64, 128):
        assert cfg("--block-size", str(size)).block_size == size


def test_sim_acc_03_std_dev_30pct() -> None:
    assert error("--time-to-first-token", "100", "--time-to-first-token-std-dev", "40ms") == (
        "--time-to-first-token-std-dev: time to first token standard deviation cannot be "
        "more than 30% of time to first token"
    )
    ok = cfg("--time-to-first-token", "100ms", "--time-to-first-token-std-dev", "30ms")
    assert ok.time_to_first_token_std_dev == pytest.approx(0.03)


def test_sim_acc_04_duration_forms() -> None:
    loaded = load("--time-to-first-token", "100")
    assert loaded.config.time_to_first_token == pytest.approx(0.1)
    assert cfg("--time-to-first-token", "100ms").time_to_first_token == pytest.approx(0.1)
    assert len(loaded.warnings) == 1 and "--time-to-first-token" in loaded.warnings[0]
    precise = load("--time-to-first-token", "1.5s")
    assert precise.config.time_to_first_token == 1.5
    assert precise.warnings == ()
    assert cfg("--inter-token-latency=1m30s").inter_token_latency == 90.0


def test_sim_acc_05_yaml_cli_precedence(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "port: 9000\nmax-num-seqs: 7\n")
    both = cfg("--config", path, "--port", "9001")
    assert both.port == 9001
    assert both.max_num_seqs == 7
    assert cfg("--config", path).port == 9000


def test_sim_acc_38_fake_metrics_bad_reason() -> None:
    assert error("--fake-metrics", '{"request-success-total":{"bogus":1}}') == (
        "--fake-metrics: invalid finish reason in request-success-total: bogus "
        "(valid reasons: [stop length tool_calls remote_decode cache_threshold])"
    )


def test_sim_acc_48_bad_failure_type() -> None:
    assert error("--failure-types", "rate_limit", "foo") == (
        f"--failure-types: invalid failure type 'foo', valid types are: {FAILURE_TYPES}"
    )
    assert cfg("--failure-types", "rate_limit", "server_error").failure_types == (
        "rate_limit",
        "server_error",
    )


def test_sim_acc_56_kvcache_needs_pod_ip(tmp_path: Path) -> None:
    assert error("--enable-kvcache") == (
        "--enable-kvcache: IP should be defined in the environment (POD_IP)"
    )
    assert cfg("--enable-kvcache", env={"POD_IP": "1.2.3.4"}).ip == "1.2.3.4"
    path = yaml_file(tmp_path, "ip: 10.0.0.7\n")
    from_yaml = cfg("--config", path, "--enable-kvcache", env={"POD_IP": "1.2.3.4"})
    assert from_yaml.ip == "10.0.0.7"


# ------------------------------------------------------------ every other rule

RULES = [
    (["--mode", "x"], "--mode: invalid mode 'x', valid values are 'random' and 'echo'"),
    (["--port", "0"], "--port: invalid port '0'"),
    (
        ["--inter-token-latency=-1ms"],
        "--inter-token-latency: inter token latency cannot be negative",
    ),
    (
        ["--inter-token-latency-std-dev=-1ms"],
        "--inter-token-latency-std-dev: inter token latency standard deviation cannot be negative",
    ),
    (
        ["--inter-token-latency", "10ms", "--inter-token-latency-std-dev", "4ms"],
        "--inter-token-latency-std-dev: inter token latency standard deviation cannot be more "
        "than 30% of inter token latency",
    ),
    (
        ["--time-to-first-token=-1s"],
        "--time-to-first-token: time to first token cannot be negative",
    ),
    (
        ["--time-to-first-token-std-dev=-1s"],
        "--time-to-first-token-std-dev: time to first token standard deviation cannot be negative",
    ),
    (["--prefill-overhead=-1ms"], "--prefill-overhead: prefill overhead cannot be negative"),
    (
        ["--prefill-time-per-token=-1ms"],
        "--prefill-time-per-token: prefill time per token cannot be negative",
    ),
    (
        ["--prefill-time-std-dev=-1ms"],
        "--prefill-time-std-dev: prefill time standard deviation cannot be negative",
    ),
    (
        ["--prefill-time-per-token", "10ms", "--prefill-time-std-dev", "4ms"],
        "--prefill-time-std-dev: prefill time standard deviation cannot be more than 30% of "
        "prefill time per token",
    ),
    (
        ["--kv-cache-transfer-time-per-token=-1ms"],
        "--kv-cache-transfer-time-per-token: kv-cache tranfer time per token cannot be negative",
    ),
    (
        ["--kv-cache-transfer-time-std-dev=-1ms"],
        "--kv-cache-transfer-time-std-dev: kv-cache tranfer time standard deviation cannot be "
        "negative",
    ),
    (
        ["--kv-cache-transfer-time-per-token", "10ms", "--kv-cache-transfer-time-std-dev", "4ms"],
        "--kv-cache-transfer-time-std-dev: kv-cache tranfer time standard deviation cannot be "
        "more than 30% of kv-cache tranfer time",
    ),
    (
        ["--kv-cache-transfer-latency=-1ms"],
        "--kv-cache-transfer-latency: kv-cache tranfer time cannot be negative",
    ),
    (
        ["--kv-cache-transfer-latency-std-dev=-1ms"],
        "--kv-cache-transfer-latency-std-dev: kv-cache tranfer time standard deviation cannot "
        "be negative",
    ),
    (
        ["--kv-cache-transfer-latency", "10ms", "--kv-cache-transfer-latency-std-dev", "4ms"],
        "--kv-cache-transfer-latency-std-dev: kv-cache tranfer standard deviation cannot be "
        "more than 30% of kv-cache tranfer",
    ),
    (
        ["--time-factor-under-load", "0.5"],
        "--time-factor-under-load: time factor under load cannot be less than 1.0",
    ),
    (["--max-loras", "0"], "--max-loras: max LoRAs cannot be less than 1"),
    (
        ["--max-loras", "2", "--max-cpu-loras", "1"],
        "--max-cpu-loras: max CPU LoRAs cannot be less than max LoRAs",
    ),
    (["--max-model-len", "0"], "--max-model-len: max model len cannot be less than 1"),
    (["--max-num-seqs", "0"], "--max-num-seqs: max num seqs cannot be less than 1"),
    (
        ["--max-waiting-queue-length", "0"],
        "--max-waiting-queue-length: max waiting queue size cannot be less than 1",
    ),
    (["--lora-modules", '{"name":""}'], "--lora-modules: empty LoRA name"),
    (
        ["--lora-modules", '{"name":"a"}', '{"name":"l","base_model_name":"x"}'],
        "--lora-modules: unknown base model 'x' for LoRA 'l'",
    ),
    (
        ["--max-tool-call-integer-param", "1", "--min-tool-call-integer-param", "2"],
        "--max-tool-call-integer-param: MaxToolCallIntegerParam cannot be less than "
        "MinToolCallIntegerParam (--min-tool-call-integer-param)",
    ),
    (
        ["--max-tool-call-number-param", "1.5", "--min-tool-call-number-param", "2"],
        "--max-tool-call-number-param: MaxToolCallNumberParam cannot be less than "
        "MinToolCallNumberParam (--min-tool-call-number-param)",
    ),
    (
        ["--max-tool-call-array-param-length", "1", "--min-tool-call-array-param-length", "2"],
        "--max-tool-call-array-param-length: MaxToolCallArrayParamLength cannot be less than "
        "MinToolCallArrayParamLength (--min-tool-call-array-param-length)",
    ),
    (
        ["--min-tool-call-array-param-length", "-1"],
        "--min-tool-call-array-param-length: MinToolCallArrayParamLength cannot be negative",
    ),
    (
        ["--tool-call-not-required-param-probability", "101"],
        "--tool-call-not-required-param-probability: ToolCallNotRequiredParamProbability "
        "should be between 0 and 100",
    ),
    (
        ["--object-tool-call-not-required-field-probability", "-1"],
        "--object-tool-call-not-required-field-probability: "
        "ObjectToolCallNotRequiredParamProbability should be between 0 and 100",
    ),
    (["--kv-cache-size", "-1"], "--kv-cache-size: KV cache size cannot be negative"),
    (["--event-batch-size", "0"], "--event-batch-size: event batch size cannot less than 1"),
    (
        ["--failure-injection-rate", "101"],
        "--failure-injection-rate: failure injection rate should be between 0 and 100",
    ),
    (
        ["--zmq-max-connect-attempts", "11"],
        "--zmq-max-connect-attempts: zmq retries times cannot be more than 10",
    ),
    (
        ["--zmq-max-connect-attempts", "-1"],
        "--zmq-max-connect-attempts: zmq retries times cannot be negative",
    ),
    (
        ["--data-parallel-size", "0"],
        "--data-parallel-size: data parallel size must be between 1 and 8",
    ),
    (
        ["--data-parallel-size", "9"],
        "--data-parallel-size: data parallel size must be between 1 and 8",
    ),
    (
        ["--data-parallel-rank", "8"],
        "--data-parallel-rank: data parallel rank must be between 0 and 7",
    ),
    (["--ssl-certfile", "c"], "both ssl-certfile and ssl-keyfile must be provided together"),
    (["--ssl-keyfile", "k"], "both ssl-certfile and ssl-keyfile must be provided together"),
    (
        ["--self-signed-certs", "--ssl-certfile", "c", "--ssl-keyfile", "k"],
        "cannot use both self-signed-certs and explicit ssl-certfile/ssl-keyfile",
    ),
    (["--dataset-url", "http://x"], "dataset-path is required when dataset-url is set"),
    (["--mode", "echo", "--dataset-path", "d"], "--mode: dataset cannot be defined in echo mode"),
    (
        ["--latency-calculator", "x"],
        "unknown latency-calculator x, supported calculators are: constant and per-token",
    ),
    (
        ["--global-cache-hit-threshold", "1.5"],
        "--global-cache-hit-threshold: global cache hit threshold must be between in range [0, 1]",
    ),
]


@pytest.mark.parametrize(("argv", "message"), RULES, ids=[m[:50] for _, m in RULES])
def test_validation_rule(argv: list[str], message: str) -> None:
    assert error(*argv) == message


def test_first_failing_rule_wins() -> None:
    assert error("--block-size", "12", "--max-loras", "0").startswith("--max-loras:")
    assert error("--port", "0", "--mode", "x").startswith("--mode:")
    assert error("--inter-token-latency=-1s", "--time-to-first-token=-1s").startswith(
        "--inter-token-latency:"
    )


def test_rules_boundaries_accepted() -> None:
    ok = cfg(
        "--data-parallel-size=8",
        "--data-parallel-rank=7",
        "--zmq-max-connect-attempts=10",
        "--failure-injection-rate=100",
        "--global-cache-hit-threshold=1",
        "--time-factor-under-load=1",
        "--kv-cache-size=0",
        "--tool-call-not-required-param-probability=0",
        "--self-signed-certs",
        "--latency-calculator=per-token",
        "--dataset-url=http://x",
        "--dataset-path=d",
    )
    assert ok.data_parallel_size == 8 and ok.latency_calculator == "per-token"


@given(st.integers(min_value=1, max_value=10**7), st.floats(min_value=0, max_value=0.29))
def test_std_dev_within_30pct_is_accepted(base_us: int, share: float) -> None:
    std_us = int(base_us * share)
    loaded = load(f"--inter-token-latency={base_us}us", f"--inter-token-latency-std-dev={std_us}us")
    assert loaded.config.inter_token_latency_std_dev == pytest.approx(std_us / 1e6)


@given(st.integers(min_value=10, max_value=10**7), st.floats(min_value=0.31, max_value=5))
def test_std_dev_over_30pct_is_rejected(base_us: int, share: float) -> None:
    std_us = int(base_us * share) + 1
    message = error(
        f"--time-to-first-token={base_us}us", f"--time-to-first-token-std-dev={std_us}us"
    )
    assert message.startswith("--time-to-first-token-std-dev:")


@given(st.integers(min_value=-(2**31), max_value=2**31))
def test_block_size_rule(size: int) -> None:
    if size in (8, 16, 32, 64, 128):
        assert cfg(f"--block-size={size}").block_size == size
    else:
        assert error(f"--block-size={size}").startswith("--block-size:")


# ------------------------------------------------------------ fake metrics

FAKE_RULES = [
    ({"running-requests": -1}, "fake metrics request counters cannot be negative"),
    ({"waiting-requests": -1}, "fake metrics request counters cannot be negative"),
    ({"kv-cache-usage": 1.5}, "fake metrics KV cache usage must be between 0 and 1"),
    ({"ttft-buckets-values": [0] * 24}, "fake time-to-first-token array is too long"),
    (
        {"ttft-buckets-values": [1, -1]},
        "time-to-first-token fake metrics should contain only non-negative values",
    ),
    ({"tpot-buckets-values": [0] * 21}, "fake time-per-output-token array is too long"),
    (
        {"tpot-buckets-values": [-1]},
        "time-per-output-token fake metrics should contain only non-negative values",
    ),
    (
        {"request-success-total": {"stop": -1}},
        "fake metrics request-success-total.stop cannot be negative, got -1",
    ),
] + [
    ({key: [1, -1]}, f"fake metrics {key} cannot contain negative values")
    for key in (
        "request-prompt-tokens",
        "request-generation-tokens",
        "request-params-max-tokens",
        "request-max-generation-tokens",
        "e2erl-buckets-values",
        "queue-time-buckets-values",
        "inf-time-buckets-values",
        "prefill-time-buckets-values",
        "decode-time-buckets-values",
    )
]


@pytest.mark.parametrize(("fake", "message"), FAKE_RULES, ids=[m for _, m in FAKE_RULES])
def test_fake_metrics_rule(fake: dict[str, object], message: str) -> None:
    assert error("--fake-metrics", json.dumps(fake)) == f"--fake-metrics: {message}"


def test_fake_metrics_json_is_parsed() -> None:
    fake_json = json.dumps(
        {
            "running-requests": 10,
            "waiting-requests": 30,
            "kv-cache-usage": 0.4,
            "ttft-buckets-values": [1, 2] + [0] * 21,
            "loras": [{"running": "a,b", "waiting": "c", "timestamp": 1.5, "extra": 1}],
            "request-success-total": {"length": 3},
            "total-prompt-tokens": 5,
            "unknown-key": True,
        }
    )
    fake = cfg("--fake-metrics", fake_json, "ignored-second-value").fake_metrics
    assert fake is not None
    assert (fake.running_requests, fake.waiting_requests, fake.kv_cache_usage) == (10, 30, 0.4)
    assert fake.ttft_buckets_values is not None and fake.ttft_buckets_values[:2] == (1, 2)
    assert fake.loras[0].running == "a,b" and fake.loras[0].timestamp == 1.5
    assert fake.request_success_total == {
        "stop": 0,
        "length": 3,
        "tool_calls": 0,
        "remote_decode": 0,
        "cache_threshold": 0,
    }
    assert fake.total_prompt_tokens == 5


@pytest.mark.parametrize(
    ("value", "start"),
    [
        ("{", "--fake-metrics: invalid JSON"),
        ("[1]", "--fake-metrics: expected a JSON object"),
        ('{"running-requests": "x"}', "--fake-metrics: invalid value for 'running-requests'"),
        ('{"running-requests": 1.5}', "--fake-metrics: invalid value for 'running-requests'"),
    ],
)
def test_fake_metrics_bad_json(value: str, start: str) -> None:
    assert error("--fake-metrics", value).startswith(start)


def test_fake_metrics_without_value() -> None:
    assert error("--fake-metrics") == "flag needs an argument: --fake-metrics"
    assert cfg("--fake-metrics", "null").fake_metrics is None


# ------------------------------------------------------------ lists, LoRA, defaults, env


def test_lora_modules_json() -> None:
    loras = cfg(
        "--lora-modules",
        '{"name":"l1","path":"/p"}',
        '{"name":"l2","base_model_name":"m","extra":1}',
    ).lora_modules
    assert [(lora.name, lora.path, lora.base_model_name) for lora in loras] == [
        ("l1", "/p", ""),
        ("l2", "", "m"),
    ]
    assert error("--lora-modules", "{bad").startswith("--lora-modules: invalid JSON")


def test_served_model_names() -> None:
    both = cfg("--served-model-name", "a", "b", "--port", "8001")
    assert both.served_model_name == ("a", "b") and both.port == 8001
    assert both.display_model == "a"
    assert cfg().served_model_name == ("m",)
    assert cfg("--served-model-name").served_model_name == ("m",)
    assert cfg("--served-model-name=x", "y").served_model_name == ("x",)


def test_defaults_and_fill_ins() -> None:
    loaded = load(now=123456789)
    c = loaded.config
    assert loaded.warnings == ()
    assert c.seed == 123456789
    assert (c.port, c.max_num_seqs, c.max_model_len, c.block_size) == (8000, 5, 1024, 16)
    assert c.max_cpu_loras == c.max_loras == 1
    assert cfg("--max-loras", "3").max_cpu_loras == 3
    assert cfg("--seed", "7").seed == 7
    assert c.v == 2 and c.host == "0.0.0.0"


def test_environment() -> None:
    env = {
        "POD_NAME": "p",
        "POD_NAMESPACE": "n",
        "POD_IP": "1.2.3.4",
        "PYTHONHASHSEED": "17",
        "VLLM_SERVER_DEV_MODE": "1",
    }
    c = cfg(env=env)
    assert (c.pod_name, c.pod_namespace, c.ip, c.hash_seed, c.dev_mode) == (
        "p",
        "n",
        "1.2.3.4",
        "17",
        True,
    )
    assert cfg("--hash-seed", "x", env=env).hash_seed == "x"
    assert cfg(env={"VLLM_SERVER_DEV_MODE": "true"}).dev_mode is False


def test_klog_flags_are_accepted() -> None:
    c = cfg("-v", "5", "--logtostderr=false", "--vmodule", "x=2", "--log_file_max_size", "10")
    assert c.v == 5
    assert cfg("--v=4").v == 4


def test_command_line_errors() -> None:
    assert error("--bogus") == "unknown flag: --bogus"
    assert error("--port") == "flag needs an argument: --port"
    assert error("--port", "abc").startswith('invalid argument "abc" for "--port" flag:')
    assert error("--time-to-first-token", "-1s") == (
        "--time-to-first-token: time to first token cannot be negative"
    )
    assert error("--time-to-first-token", "1.5") == (
        'invalid argument "1.5" for "--time-to-first-token" flag: invalid duration format: 1.5'
    )


def test_bool_false_needs_equals() -> None:
    assert cfg("--enable-sleep-mode", "false").enable_sleep_mode is True
    assert cfg("--enable-sleep-mode=false").enable_sleep_mode is False


def test_help_lists_every_flag() -> None:
    with pytest.raises(HelpRequested) as info:
        load_config(["--help"], {}, 0)
    for spec in sim_flag_specs():
        assert f"--{spec.name}" in info.value.usage


def test_config_to_json() -> None:
    data = json.loads(config_to_json(cfg("--time-to-first-token", "1m30s", "--port", "9")))
    assert data["time-to-first-token"] == "1m30s"
    assert data["inter-token-latency"] == "0s"
    assert data["port"] == 9 and data["served-model-name"] == ["m"]


# ------------------------------------------------------------ YAML


def test_yaml_forms(tmp_path: Path) -> None:
    path = yaml_file(
        tmp_path,
        """
model: from-yaml
served-model-name: [a, b]
mode: echo
time-to-first-token: 100
inter-token-latency: "20ms"
time-factor-under-load: 2
enable-kvcache: true
global-cache-hit-threshold: 0.5
lora-modules:
  - '{"name":"l1","path":"/x"}'
  - {name: l2}
fake-metrics:
  running-requests: 3
  loras:
    - '{"running":"l1","waiting":"","timestamp":7}'
  total-prompt-tokens: 99
failure-types: [rate_limit]
unknown-key: whatever
ip: 10.1.1.1
""",
    )
    loaded = load_config(["--config", path], {}, 0)
    c = loaded.config
    assert c.model == "from-yaml" and c.served_model_name == ("a", "b") and c.mode == "echo"
    assert c.time_to_first_token == pytest.approx(0.1)
    assert c.inter_token_latency == pytest.approx(0.02)
    assert c.time_factor_under_load == 2.0 and c.enable_kvcache and c.ip == "10.1.1.1"
    # Deliberate deviation: upstream discards a YAML global-cache-hit-threshold.
    assert c.global_cache_hit_threshold == 0.5
    assert [lora.name for lora in c.lora_modules] == ["l1", "l2"]
    assert c.fake_metrics is not None and c.fake_metrics.running_requests == 3
    assert c.fake_metrics.loras[0].running == "l1" and c.fake_metrics.loras[0].timestamp == 7
    assert c.fake_metrics.total_prompt_tokens is None  # JSON-only key, as upstream
    assert c.failure_types == ("rate_limit",)
    assert len(loaded.warnings) == 1 and "time-to-first-token" in loaded.warnings[0]


def test_yaml_lists_are_replaced_by_the_command_line(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "served-model-name: [a, b]\nfailure-types: [rate_limit]\n")
    c = cfg("--config", path, "--served-model-name", "c", "--failure-types")
    assert c.served_model_name == ("c",)
    assert c.failure_types == ()
    assert cfg("--config", path, "--served-model-name").served_model_name == ("m",)
    assert (
        cfg("--config", path, "--global-cache-hit-threshold=0.2").global_cache_hit_threshold == 0.2
    )


def test_config_with_two_values_is_not_loaded(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "port: 9000\n")
    loaded = load("--config", path, "extra")
    assert loaded.config.port == 8000
    assert any("--config" in w for w in loaded.warnings)
    assert cfg(f"--config={path}").port == 9000


def test_yaml_null_resets_to_zero_value(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "max-model-len:\n")
    assert error("--config", path) == "--max-model-len: max model len cannot be less than 1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "port: abc\n",
            "failed to unmarshal configuration: line 1: cannot unmarshal !!str `abc` into int "
            "(key 'port')",
        ),
        (
            "model: m\ntime-to-first-token: 1.5\n",
            "failed to unmarshal configuration: invalid duration format at line 2 "
            "(key 'time-to-first-token')",
        ),
        (
            "enable-kvcache: 3\n",
            "failed to unmarshal configuration: line 1: cannot unmarshal !!int `3` into bool "
            "(key 'enable-kvcache')",
        ),
        (
            "served-model-name: a\n",
            "failed to unmarshal configuration: line 1: cannot unmarshal !!str `a` into a list "
            "(key 'served-model-name')",
        ),
        ("- a\n", "failed to unmarshal configuration: line 1: cannot unmarshal !!seq"),
        ("port: [\n", "failed to unmarshal configuration: yaml: line"),
        (
            "port: 1\nport: 2\n",
            'failed to unmarshal configuration: yaml: line 2: mapping key "port"',
        ),
        ("lora-modules: ['{bad']\n", "lora-modules: invalid JSON"),
    ],
)
def test_yaml_errors(tmp_path: Path, text: str, message: str) -> None:
    # errors of the file as a whole name the flag; a key's JSON value names the key
    expected = message if message.startswith("lora-modules") else f"--config: {message}"
    assert error("--config", yaml_file(tmp_path, text)).startswith(expected)


def test_yaml_strings_keep_their_source_text(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "hash-seed: 012\ndataset-table-name: on\nmax-num-seqs: 0x10\n")
    c = cfg("--config", path)
    assert (c.hash_seed, c.dataset_table_name, c.max_num_seqs) == ("012", "on", 16)


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    assert error("--config", str(missing)) == (
        f"--config: failed to read configuration file: open {missing}: no such file or directory"
    )


def test_empty_yaml_file(tmp_path: Path) -> None:
    assert cfg("--config", yaml_file(tmp_path, "")).port == 8000


# ------------------------------------------------------------ docs


def test_flags_doc_is_generated_from_the_table() -> None:
    assert DOC.read_text(encoding="utf-8") == flags_markdown(), (
        "regenerate: python -m pyllmd.sim.config --markdown > docs/user-guide/admin/flags.md"
    )


def test_flags_doc_names_every_flag() -> None:
    text = flags_markdown()
    for spec in sim_flag_specs():
        assert f"`--{spec.name}`" in text
