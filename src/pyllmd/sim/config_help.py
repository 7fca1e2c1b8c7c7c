"""Help and rule texts of the simulator's flags, keyed by flag name.

Pure data, kept apart from `config.py` so the flag table (names, types and
defaults come from the `SimConfig` model) stays short. `flags.md` and
`--help` are both generated from these texts plus the model.
"""

from __future__ import annotations

from typing import NamedTuple


class FlagDoc(NamedTuple):
    """Help line for `--help`, rule summary and (optional) type wording for the docs."""

    help: str
    rule: str = ""
    type_text: str = ""


FLAG_DOCS: dict[str, FlagDoc] = {
    "config": FlagDoc(
        "YAML file whose keys are flag names; command-line flags override it",
        "loaded only when exactly one value follows `--config`",
        "path",
    ),
    "port": FlagDoc(
        "HTTP (and gRPC) port; rank i of data parallel uses port+i",
        "1..65535 (upstream: > 0); port + data-parallel-size − 1 <= 65535",
    ),
    "host": FlagDoc(
        "Listen address (pyllmd extension; upstream always binds 0.0.0.0)", "an IPv4 address"
    ),
    "shutdown-timeout": FlagDoc(
        "Seconds SIGTERM waits for in-flight requests before ending them with an error "
        "(pyllmd extension, vLLM's flag)",
        ">= 0, finite",
        "float (seconds)",
    ),
    "model": FlagDoc("Base model name served (required)", "must not be empty"),
    "served-model-name": FlagDoc(
        "Model names exposed by the API, space-separated; the first is reported in responses",
        "empty means `[<model>]`",
        "list of strings",
    ),
    "lora-modules": FlagDoc(
        'LoRA adapters loaded at start, each a JSON string {"name":..,"path":..,'
        '"base_model_name":..}, space-separated',
        "name not empty; base_model_name empty or equal to `--model`",
        "list of JSON strings",
    ),
    "max-loras": FlagDoc("LoRA adapters that may run at the same time", ">= 1"),
    "max-cpu-loras": FlagDoc(
        "LoRA adapters kept in CPU memory (0 means max-loras)", ">= max-loras (after 0 → max-loras)"
    ),
    "max-model-len": FlagDoc("Context window: prompt plus completion tokens", ">= 1"),
    "max-num-seqs": FlagDoc("Requests processed at the same time", ">= 1"),
    "max-waiting-queue-length": FlagDoc("Requests that may wait for a free slot", ">= 1"),
    "mode": FlagDoc(
        "Response text: `echo` repeats the prompt, `random` invents text", "`random` or `echo`"
    ),
    "seed": FlagDoc("Seed of the random generator (default: start time in ns)", "", "int64"),
    "time-to-first-token": FlagDoc("Time before the first token", ">= 0"),
    "time-to-first-token-std-dev": FlagDoc(
        "Standard deviation of time-to-first-token", ">= 0 and <= 30% of time-to-first-token"
    ),
    "inter-token-latency": FlagDoc("Time between two generated tokens", ">= 0"),
    "inter-token-latency-std-dev": FlagDoc(
        "Standard deviation of inter-token-latency", ">= 0 and <= 30% of inter-token-latency"
    ),
    "kv-cache-transfer-latency": FlagDoc(
        "Time to fetch the KV cache from a prefill pod (P/D, constant calculator)", ">= 0"
    ),
    "kv-cache-transfer-latency-std-dev": FlagDoc(
        "Standard deviation of kv-cache-transfer-latency",
        ">= 0 and <= 30% of kv-cache-transfer-latency",
    ),
    "prefill-overhead": FlagDoc(
        "Fixed prefill time; used when time-to-first-token is 0 or by `per-token`", ">= 0"
    ),
    "prefill-time-per-token": FlagDoc("Prefill time per uncached prompt token", ">= 0"),
    "prefill-time-std-dev": FlagDoc(
        "Standard deviation of the prefill time", ">= 0 and <= 30% of prefill-time-per-token"
    ),
    "kv-cache-transfer-time-per-token": FlagDoc(
        "KV-cache transfer time per prompt token (P/D, per-token calculator)", ">= 0"
    ),
    "kv-cache-transfer-time-std-dev": FlagDoc(
        "Standard deviation of the KV-cache transfer time",
        ">= 0 and <= 30% of kv-cache-transfer-time-per-token",
    ),
    "time-factor-under-load": FlagDoc(
        "Latency multiplier reached when max-num-seqs requests run at once",
        ">= 1.0 and finite (upstream accepts NaN and Inf)",
    ),
    "latency-calculator": FlagDoc(
        "Latency model: empty (load-aware default), `constant` or `per-token`",
        'one of `""`, `constant`, `per-token`',
    ),
    "max-tool-call-integer-param": FlagDoc(
        "Largest integer generated for a tool-call argument", ">= min-tool-call-integer-param"
    ),
    "min-tool-call-integer-param": FlagDoc("Smallest integer generated for a tool-call argument"),
    "max-tool-call-number-param": FlagDoc(
        "Largest number generated for a tool-call argument",
        ">= min-tool-call-number-param; finite",
    ),
    "min-tool-call-number-param": FlagDoc(
        "Smallest number generated for a tool-call argument", "finite"
    ),
    "max-tool-call-array-param-length": FlagDoc(
        "Longest array generated for a tool-call argument", ">= min-tool-call-array-param-length"
    ),
    "min-tool-call-array-param-length": FlagDoc(
        "Shortest array generated for a tool-call argument", ">= 0"
    ),
    "tool-call-not-required-param-probability": FlagDoc(
        "Percent chance that an optional tool parameter is generated", "0..100"
    ),
    "object-tool-call-not-required-field-probability": FlagDoc(
        "Percent chance that an optional object field is generated", "0..100"
    ),
    "enable-kvcache": FlagDoc(
        "Simulate the KV block cache and publish KV events over ZMQ",
        "needs env `POD_IP` (or YAML `ip`)",
    ),
    "kv-cache-size": FlagDoc("KV cache capacity in blocks", ">= 0"),
    "block-size": FlagDoc("Tokens per KV block", "one of 8, 16, 32, 64, 128"),
    "global-cache-hit-threshold": FlagDoc(
        "Default cache-hit threshold of requests that give none",
        "0..1; a YAML value is honoured (upstream ignores it)",
    ),
    "tokenizers-cache-dir": FlagDoc(
        "Directory searched for a local tokenizer.json of --model (never downloaded)"
    ),
    "hash-seed": FlagDoc("Seed of KV block hashes (default: env PYTHONHASHSEED)"),
    "zmq-endpoint": FlagDoc(
        "ZMQ address the KV-event publisher connects to; empty disables it",
        "a `tcp://` address ends in a port 1..65535 (checked at start; upstream does not)",
    ),
    "zmq-max-connect-attempts": FlagDoc("ZMQ connect attempts before giving up", "0..10"),
    "event-batch-size": FlagDoc("KV events sent per ZMQ message at most", ">= 1"),
    "fake-metrics": FlagDoc(
        "Metric values reported instead of real ones (JSON; see metrics.md)",
        "counts >= 0, kv-cache-usage 0..1, finish reasons valid",
        "JSON string (YAML: mapping)",
    ),
    "failure-injection-rate": FlagDoc(
        "Percent of completion requests answered with an error", "0..100"
    ),
    "failure-types": FlagDoc(
        "Error types to inject, space-separated (default: all)",
        "each of rate_limit, invalid_api_key, context_length, server_error, invalid_request, "
        "model_not_found",
        "list of strings",
    ),
    "data-parallel-size": FlagDoc("Ranks to run, on consecutive ports", "1..8"),
    "data-parallel-rank": FlagDoc(
        "Rank of this process when ranks run as separate processes", "<= 7"
    ),
    "dataset-path": FlagDoc(
        "SQLite file of responses (random mode)", "required when dataset-url is set; not with echo"
    ),
    "dataset-url": FlagDoc(
        "Where to download dataset-path from when it is missing", "not with echo"
    ),
    "dataset-in-memory": FlagDoc("Load the whole dataset into memory"),
    "dataset-table-name": FlagDoc("Table name inside the dataset file"),
    "enable-sleep-mode": FlagDoc("Allow /sleep (needs env VLLM_SERVER_DEV_MODE=1)"),
    "enable-request-id-headers": FlagDoc("Echo X-Request-Id and use it in response ids"),
    "ssl-certfile": FlagDoc("TLS certificate file", "together with ssl-keyfile", "path"),
    "ssl-keyfile": FlagDoc("TLS private key file", "together with ssl-certfile", "path"),
    "self-signed-certs": FlagDoc(
        "Serve HTTPS with a generated self-signed certificate", "not with ssl-certfile/ssl-keyfile"
    ),
}
